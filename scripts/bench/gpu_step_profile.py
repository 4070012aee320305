#!/usr/bin/env python3
"""Where a notebook-sized training step spends its time on a GPU.

Times the notebook's model (Embedding 128 -> LSTM 64 -> last step -> Dropout
-> Linear, weighted cross-entropy, Adam 1e-3, batch 32, max_len 64) four ways
on the same data and device:
  notebook  batches copied from the host, two host syncs per step (its loop)
  eager     data on the device, no per-step sync, torch.optim.Adam (foreach)
  fused     as eager, Adam(fused=True)
  graph     the whole step (forward, backward, Adam) captured once as a CUDA
            graph and replayed: what is left once per-op host cost is gone
and profiles `eager` to count kernels and sum their GPU time per step.

    gpu_step_profile.py DATA_DIR [--steps 300] [--json out.json]
"""
import argparse, json, os, time

import numpy as np
import torch
import torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--steps", type=int, default=300)
ap.add_argument("--device", default="cuda")
ap.add_argument("--json", default="")
a = ap.parse_args()

device = torch.device(a.device)
cuda = device.type == "cuda"
X = torch.from_numpy(np.load(os.path.join(a.data, "X_train_seq.npy")).astype(np.int64))
y = torch.from_numpy(np.load(os.path.join(a.data, "y_train.npy")).astype(np.int64))
vocab, classes = int(X.max()) + 1, int(y.max()) + 1
counts = np.bincount(y.numpy(), minlength=classes)
weights = torch.tensor(len(y) / np.where(counts == 0, 1, counts), dtype=torch.float, device=device)
B = 32


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 128, padding_idx=0)
        self.lstm = nn.LSTM(128, 64, batch_first=True)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        out, _ = self.lstm(self.embedding(x))
        return self.fc(self.dropout(out[:, -1, :]))


def sync():
    if cuda:
        torch.cuda.synchronize()


def setup(**adam):
    torch.manual_seed(0)
    model = LSTMClassifier().to(device)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, **adam), nn.CrossEntropyLoss(weight=weights)


def batches(n, on_device):
    g = torch.Generator().manual_seed(1)
    src_x, src_y = (X.to(device), y.to(device)) if on_device else (X, y)
    while True:
        order = torch.randperm(len(X), generator=g)
        for i in range(0, len(order) - B + 1, B):
            idx = order[i:i + B]
            if on_device:
                idx = idx.to(device)
            yield src_x[idx], src_y[idx]


def run(mode, steps):
    model, opt, crit = setup(**({"fused": True} if mode == "fused" else {}))
    model.train()
    it = batches(steps, on_device=mode != "notebook")
    loss_sum = torch.zeros((), device=device)

    def step(xb, yb):
        opt.zero_grad()
        out = model(xb)
        loss = crit(out, yb)
        loss.backward()
        opt.step()
        return loss, out

    for _ in range(30):  # warm-up: cuDNN plans, allocator
        step(*(t.to(device) for t in next(it)))
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        xb, yb = next(it)
        if mode == "notebook":
            xb, yb = xb.to(device), yb.to(device)
            loss, out = step(xb, yb)
            loss.item()
            (out.argmax(1) == yb).sum().item()
        else:
            loss_sum += step(xb, yb)[0].detach()
    sync()
    return (time.perf_counter() - t) / steps * 1e3


def run_graph(steps):
    model, opt, crit = setup(capturable=True, foreach=True)
    model.train()
    it = batches(steps, on_device=True)
    sx, sy = next(it)
    sx, sy = sx.clone(), sy.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            crit(model(sx), sy).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        out = model(sx)
        loss = crit(out, sy)
        loss.backward()
        opt.step()
    loss_sum = torch.zeros((), device=device)
    for _ in range(30):
        xb, yb = next(it)
        sx.copy_(xb); sy.copy_(yb); g.replay()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        xb, yb = next(it)
        sx.copy_(xb)
        sy.copy_(yb)
        g.replay()
        loss_sum += loss.detach()
    sync()
    return (time.perf_counter() - t) / steps * 1e3


def profile_eager(steps=50):
    from torch.profiler import profile, ProfilerActivity
    model, opt, crit = setup()
    it = batches(steps, on_device=True)
    for _ in range(30):
        xb, yb = next(it); opt.zero_grad(); crit(model(xb), yb).backward(); opt.step()
    sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            xb, yb = next(it); opt.zero_grad(); crit(model(xb), yb).backward(); opt.step()
        sync()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total_us = sum(e.device_time for e in kernels) if kernels else 0.0
    by_name = {}
    for e in kernels:
        n, s = by_name.get(e.name, (0, 0.0))
        by_name[e.name] = (n + 1, s + e.device_time)
    top = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:15]
    return {
        "kernels_per_step": len(kernels) / steps,
        "gpu_kernel_ms_per_step": total_us / steps / 1e3,
        "top": [{"name": k[:90], "calls_per_step": n / steps, "ms_per_step": s / steps / 1e3} for k, (n, s) in top],
    }


result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__, "steps": a.steps}
for mode in ["notebook", "eager", "fused"] if cuda else ["eager"]:
    result[f"{mode}_ms_per_step"] = run(mode, a.steps)
    print(mode, round(result[f"{mode}_ms_per_step"], 3), "ms/step", flush=True)
if cuda:
    try:
        result["graph_ms_per_step"] = run_graph(a.steps)
        print("graph", round(result["graph_ms_per_step"], 3), "ms/step", flush=True)
    except Exception as e:  # report, keep the rest
        result["graph_error"] = repr(e)
        print("graph failed:", e, flush=True)
result["profile_eager"] = profile_eager()
print(json.dumps(result["profile_eager"], indent=1))
if a.json:
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
