#!/usr/bin/env python3
"""The notebook (lstm_text_classification), as a script: the reference `pipe`
is measured against. The model, loss, optimizer, loop and submission are the
notebook's, line for line; around them it only adds timing, a seed, the data
directory, and a JSON report.

    notebook_reference.py DATA_DIR [--epochs 15] [--seed 42] [--threads N]
                          [--out submission.csv] [--report report.json]
                          [--flush-denormal] [--device cpu|cuda]
"""
import argparse, json, os, resource, sys, time

# The notebook's class (notebook_model.py) is shared with the fixture scripts in scripts/fixtures/.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "fixtures"))

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--epochs", type=int, default=15)
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--out", default="submission.csv")
ap.add_argument("--report", default="")
ap.add_argument("--flush-denormal", action="store_true")
ap.add_argument("--device", default="cpu")
a = ap.parse_args()

t_start = time.perf_counter()
import numpy as np
import joblib
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import TensorDataset, DataLoader
import pandas as pd

if a.threads:
    torch.set_num_threads(a.threads)
if a.flush_denormal:
    torch.set_flush_denormal(True)
torch.manual_seed(a.seed)
device = torch.device(a.device)
p = lambda f: os.path.join(a.data, f)

# 1. Load the artifacts
X_train = np.load(p('X_train_seq.npy'))
y_train = np.load(p('y_train.npy'))
X_test = np.load(p('X_test_seq.npy'))
stoi = joblib.load(p('vocab_stoi.pkl'))
le = joblib.load(p('label_encoder.pkl'))

# 2. Tensors and DataLoader
X_tr = torch.tensor(X_train, dtype=torch.long)
y_tr = torch.tensor(y_train, dtype=torch.long)
X_te = torch.tensor(X_test, dtype=torch.long)
train_ds = TensorDataset(X_tr, y_tr)
train_loader = DataLoader(train_ds, batch_size=32, shuffle=True)


# 3. The model
from notebook_model import LSTMClassifier  # the notebook's class, verbatim


vocab_size = len(stoi)
embed_dim = 128
hidden_dim = 64
num_classes = len(le.classes_)
model = LSTMClassifier(vocab_size, embed_dim, hidden_dim, num_classes, pad_idx=stoi['<PAD>']).to(device)

# 4. Class weights, loss, optimizer
counts = np.bincount(y_train, minlength=num_classes)
total = y_train.shape[0]
counts = np.where(counts == 0, 1, counts)
class_weights = torch.tensor((total / counts), dtype=torch.float).to(device)
criterion = nn.CrossEntropyLoss(weight=class_weights)
optimizer = optim.Adam(model.parameters(), lr=1e-3)
epochs = a.epochs

# 5. Training
epoch_seconds, history = [], []
for epoch in range(1, epochs + 1):
    t0 = time.perf_counter()
    model.train()
    total_loss = 0.0
    correct = 0
    total = 0
    for xb, yb in train_loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        logits = model(xb)
        loss = criterion(logits, yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        preds = logits.argmax(dim=1)
        correct += (preds == yb).sum().item()
        total += yb.size(0)
    train_loss = total_loss / len(train_loader)
    train_acc = correct / total
    epoch_seconds.append(time.perf_counter() - t0)
    history.append({"epoch": epoch, "loss": train_loss, "accuracy": train_acc, "seconds": epoch_seconds[-1]})
    print(f"Epoch {epoch}/{epochs} — loss: {train_loss:.4f} — acc: {train_acc:.4f} ({epoch_seconds[-1]:.1f}s)", flush=True)

# 6. Prediction (the whole test set in one pass, as the notebook does)
rss_before_predict = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
model.eval()
with torch.no_grad():
    logits = model(X_te.to(device))
    preds = torch.argmax(logits, dim=1).cpu().numpy()
    cats = le.inverse_transform(preds)
predict_seconds = time.perf_counter() - t0

# 7. Submission
test_ids = pd.read_json(p('test_mini.json'), orient='records')['Id']
submission = pd.DataFrame({'Id': test_ids, 'Category': cats})
os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
submission.to_csv(a.out, index=True)

report = {
    "epochs": history,
    "mean_epoch_seconds": sum(epoch_seconds) / max(len(epoch_seconds), 1),
    "predict_seconds": predict_seconds,
    "predict_rows_per_second": len(X_test) / predict_seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_before_predict_mb": rss_before_predict / 1024,
    "end_to_end_seconds": time.perf_counter() - t_start,
}
labels_path = p('test_labels.json')
if os.path.exists(labels_path):
    from sklearn.metrics import accuracy_score, f1_score
    truth = pd.read_json(labels_path, orient='records')['Category'].astype(str)
    report["accuracy"] = accuracy_score(truth, cats.astype(str))
    report["macro_f1"] = f1_score(truth, cats.astype(str), average="macro")
    print(f"test accuracy {report['accuracy']:.4f} macro-F1 {report['macro_f1']:.4f}")
if a.report:
    json.dump(report, open(a.report, "w"), indent=1)
