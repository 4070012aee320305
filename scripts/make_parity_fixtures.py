#!/usr/bin/env python3
"""Writes the fixtures that pin `pipe` to PyTorch and pandas, with the real
libraries, so the Rust tests need no Python:

- crates/pipe-model/tests/fixtures/notebook_lstm/: the notebook's LSTMClassifier
  (seeded) as a pipe checkpoint (state_dict in safetensors + spec.json), some
  inputs, and the logits PyTorch computes for them in eval mode.
- crates/pipe-train/tests/fixtures/adam/: a parameter, 50 recorded gradients and
  the parameters torch.optim.Adam reaches after each of two configurations.
- crates/pipe-train/tests/fixtures/adam/sparse_adam.safetensors: an embedding
  table, 30 batches of ids (repeated ids, padding) with their output
  gradients, and the table torch.optim.SparseAdam reaches.
- crates/pipe-submit/tests/fixtures/pandas/: awkward ids and categories, and the
  CSV pandas' to_csv(index=True) writes for them.

    scripts/make_parity_fixtures.py        (from the repository root)
"""
import json, os

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from notebook_model import LSTMClassifier  # the notebook's class, verbatim

torch.manual_seed(0)


def mkdir(path):
    os.makedirs(path, exist_ok=True)
    return path


# --- the notebook's model: logits parity ----------------------------------------


out = mkdir("crates/pipe-model/tests/fixtures/notebook_lstm")
vocab, classes, pad = 60, 7, 0
model = LSTMClassifier(vocab, 128, 64, classes, pad_idx=pad).eval()
# Post-padded rows of different lengths, and one full row.
rows, width = 6, 12
lengths = [3, 12, 1, 7, 5, 9]
ids = torch.zeros(rows, width, dtype=torch.long)
for r, n in enumerate(lengths):
    ids[r, :n] = torch.randint(1, vocab, (n,))
with torch.no_grad():
    logits = model(ids)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "model.safetensors"))
spec = {
    "architecture": "lstm", "vocab_size": vocab, "pad_id": pad, "num_classes": classes,
    "embed_dim": 128, "hidden_dim": 64, "layers": 1, "bidirectional": False,
    "dropout": 0.3, "layer_dropout": 0.0, "embedding_dropout": 0.0, "pooling": "last_step",
}
json.dump(spec, open(os.path.join(out, "spec.json"), "w"), indent=1)
json.dump({"ids": ids.tolist(), "lengths": lengths, "logits": logits.tolist()}, open(os.path.join(out, "expected.json"), "w"))

# --- Adam: 50 steps on recorded gradients ---------------------------------------
out = mkdir("crates/pipe-train/tests/fixtures/adam")
tensors, configs = {}, {"a": dict(lr=1e-3), "b": dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)}
p0 = [torch.randn(300, 16), torch.randn(37)]
grads = [[torch.randn_like(p) * (0.1 ** (i % 4)) for p in p0] for i in range(50)]
for i, p in enumerate(p0):
    tensors[f"initial.{i}"] = p.clone()
for s, gs in enumerate(grads):
    for i, g in enumerate(gs):
        tensors[f"grad.{s}.{i}"] = g
for name, cfg in configs.items():
    params = [p.clone().requires_grad_(True) for p in p0]
    opt = torch.optim.Adam(params, **cfg)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    for i, p in enumerate(params):
        tensors[f"final.{name}.{i}"] = p.detach().clone()
save_file(tensors, os.path.join(out, "adam.safetensors"))
json.dump({k: {"lr": v["lr"], "betas": list(v.get("betas", (0.9, 0.999))), "eps": v.get("eps", 1e-8),
               "weight_decay": v.get("weight_decay", 0.0)} for k, v in configs.items()},
          open(os.path.join(out, "configs.json"), "w"), indent=1)

# --- pandas CSV ------------------------------------------------------------------
out = mkdir("crates/pipe-submit/tests/fixtures/pandas")
cases = {
    "plain": {"ids": [0, 1, 2], "categories": ["noun.animal", "verb.motion", "adj.all"]},
    "awkward": {
        "ids": [10, 11, 12, 13, 14, 15],
        "categories": ["a,b", 'say "hi"', "line\nbreak", "é日本", " padded ", ""],
    },
    "integer_classes": {"ids": [5, 6, 7], "categories": [30, 10, 20]},
    "string_ids": {"ids": ["x-1", "y,2", 'z"3'], "categories": ["a", "b", "c"]},
}
for name, case in cases.items():
    pd.DataFrame({"Id": case["ids"], "Category": case["categories"]}).to_csv(os.path.join(out, f"{name}.csv"), index=True)
json.dump(cases, open(os.path.join(out, "cases.json"), "w"), indent=1, ensure_ascii=False)
# --- SparseAdam: 30 lazy steps on an embedding's sparse gradients ----------------
out = mkdir("crates/pipe-train/tests/fixtures/adam")
table = torch.randn(40, 8)
sparse = {"initial": table.clone()}
weight = table.clone().requires_grad_(True)
opt = torch.optim.SparseAdam([weight], lr=4e-3)
for step in range(30):
    ids = torch.randint(0, 12 if step % 3 else 40, (5, 6))  # small ranges repeat rows
    upstream = torch.randn(5, 6, 8) * (0.1 ** (step % 3))
    sparse[f"ids.{step}"], sparse[f"upstream.{step}"] = ids, upstream
    opt.zero_grad()
    (torch.nn.functional.embedding(ids, weight, padding_idx=0, sparse=True) * upstream).sum().backward()
    opt.step()
sparse["final"] = weight.detach().clone()
save_file(sparse, os.path.join(out, "sparse_adam.safetensors"))
print("wrote parity fixtures")
