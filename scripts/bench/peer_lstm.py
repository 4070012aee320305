#!/usr/bin/env python3
"""A tuned PyTorch peer for the benchmark: what a careful PyTorch user would
write for the notebook's task without `pipe`. One-layer LSTM-64 read at each
row's last real token, each batch trimmed to its longest
row, rows bucketed by length (sorted within chunks of 50 batches, batches
shuffled), class-weighted cross-entropy, fused Adam; the notebook's batch 32
and lr 1e-3 unless told (`--batch-size 128 --lr 4e-3`: bench.py's peer-b128).

Reports in notebook_reference.py's format, so bench.py treats it the same.

    peer_lstm.py DATA_DIR [--epochs 3] [--seed 42] [--threads N] [--batch-size 32] [--lr 1e-3]
                 [--out submission.csv] [--report report.json] [--device cpu|cuda]
"""
import argparse, json, os, random, resource, time

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--batch-size", type=int, default=32)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--out", default="submission.csv")
ap.add_argument("--report", default="")
ap.add_argument("--device", default="cpu")
a = ap.parse_args()

t_start = time.perf_counter()
import numpy as np
import joblib
import torch
import torch.nn as nn
import pandas as pd

if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
random.seed(a.seed)
device = torch.device(a.device)
p = lambda f: os.path.join(a.data, f)

X_train = np.load(p("X_train_seq.npy"))
y_train = np.load(p("y_train.npy"))
X_test = np.load(p("X_test_seq.npy"))
stoi = joblib.load(p("vocab_stoi.pkl"))
le = joblib.load(p("label_encoder.pkl"))
pad = stoi["<PAD>"]
num_classes = len(le.classes_)


def compact(x):
    """Rows as (tokens moved to the front, lengths): works for pre- and post-padding."""
    x = torch.tensor(x, dtype=torch.long)
    real = x != pad
    lengths = real.sum(1).clamp(min=1)
    order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)
    return torch.gather(x, 1, order), lengths


class Peer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(len(stoi), 128, padding_idx=pad)
        self.lstm = nn.LSTM(128, 64, batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x, lengths):
        # Rows are compacted to the front: the output at each row's last real
        # token has seen no padding (cheaper than packed sequences on a CPU).
        out, _ = self.lstm(self.embedding(x))
        last = out[torch.arange(len(x), device=x.device), (lengths - 1).to(x.device)]
        return self.fc(self.dropout(last))


def batches(lengths, size, shuffle):
    idx = list(range(len(lengths)))
    if shuffle:
        random.shuffle(idx)
    chunk = size * 50
    out = []
    for c in range(0, len(idx), chunk):
        part = sorted(idx[c:c + chunk], key=lambda i: lengths[i])
        out += [part[b:b + size] for b in range(0, len(part), size)]
    if shuffle:
        random.shuffle(out)
    return out


x_tr, len_tr = compact(X_train)
y_tr = torch.tensor(y_train, dtype=torch.long)
x_te, len_te = compact(X_test)
model = Peer().to(device)
counts = np.maximum(np.bincount(y_train, minlength=num_classes), 1)
criterion = nn.CrossEntropyLoss(weight=torch.tensor(len(y_train) / counts, dtype=torch.float, device=device))
optimizer = torch.optim.Adam(model.parameters(), lr=a.lr, fused=True)
len_list = len_tr.tolist()

history, epoch_seconds = [], []
for epoch in range(1, a.epochs + 1):
    t0 = time.perf_counter()
    model.train()
    total_loss, correct = 0.0, 0
    steps = batches(len_list, a.batch_size, True)
    for b in steps:
        b = torch.tensor(b)
        n = int(len_tr[b].max())
        xb, lb, yb = x_tr[b, :n].to(device), len_tr[b], y_tr[b].to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(xb, lb)
        loss = criterion(logits, yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        correct += (logits.argmax(1) == yb).sum().item()
    epoch_seconds.append(time.perf_counter() - t0)
    history.append({"epoch": epoch, "loss": total_loss / len(steps), "accuracy": correct / len(y_train), "seconds": epoch_seconds[-1]})
    print(f"Epoch {epoch}/{a.epochs} — loss: {history[-1]['loss']:.4f} — acc: {history[-1]['accuracy']:.4f} ({epoch_seconds[-1]:.1f}s)", flush=True)

t0 = time.perf_counter()
model.eval()
preds = torch.empty(len(x_te), dtype=torch.long)
with torch.no_grad():
    for b in batches(len_te.tolist(), 1024, False):
        b = torch.tensor(b)
        n = int(len_te[b].max())
        preds[b] = model(x_te[b, :n].to(device), len_te[b]).argmax(1).cpu()
cats = le.inverse_transform(preds.numpy())
predict_seconds = time.perf_counter() - t0

test_ids = pd.read_json(p("test_mini.json"), orient="records")["Id"]
os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
pd.DataFrame({"Id": test_ids, "Category": cats}).to_csv(a.out, index=True)
report = {
    "epochs": history,
    "mean_epoch_seconds": sum(epoch_seconds) / max(len(epoch_seconds), 1),
    "predict_seconds": predict_seconds,
    "predict_rows_per_second": len(x_te) / predict_seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "end_to_end_seconds": time.perf_counter() - t_start,
}
labels_path = p("test_labels.json")
if os.path.exists(labels_path):
    from sklearn.metrics import accuracy_score, f1_score
    truth = pd.read_json(labels_path, orient="records")["Category"].astype(str)
    report["accuracy"] = accuracy_score(truth, cats.astype(str))
    report["macro_f1"] = f1_score(truth, cats.astype(str), average="macro")
    print(f"test accuracy {report['accuracy']:.4f} macro-F1 {report['macro_f1']:.4f}")
if a.report:
    json.dump(report, open(a.report, "w"), indent=1)
