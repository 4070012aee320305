#!/usr/bin/env python3
"""The floor under an epoch: torch's LSTM kernel alone (oneDNN on x86 CPUs),
forward and backward, over one epoch's batches at a pipeline's shapes, with no
embedding, loss, optimizer or data handling around it.

No pipeline that keeps the model can train an epoch faster than this, so its
ratio to the notebook's epoch (measured in the same round by bench.py) is the
lowest ratio that pipeline could reach with this kernel on this machine.

Shapes:
  lstm      lstm.yaml: 128 -> 128, batches of 128 rows trimmed to their longest
            row, rows sorted by length (the least padding any bucketing gets);
            bfloat16 where `precision: auto` picks it (native AVX-512 BF16
            under the ONEDNN_MAX_CPU_ISA cap), float32 elsewhere
  notebook  notebook.yaml and the notebook: 128 -> 64, batches of 32 rows at
            the full padded width, float32

    python scripts/bench/lstm_floor.py data/wordnet --shape lstm --epochs 2 --report r.json
"""
import argparse, json, os, sys, tempfile, time

import numpy as np
import torch

from bench import machine  # the CPU class bench.py records: `precision: auto`'s rule


def epoch_batches(x, shape):
    """(rows, steps) of each batch of one epoch."""
    if shape == "notebook":
        return [(min(32, len(x) - i), x.shape[1]) for i in range(0, len(x), 32)]
    lengths = np.sort((x != 0).sum(axis=1))
    return [(len(chunk), max(int(chunk.max()), 1)) for chunk in np.array_split(lengths, -(-len(lengths) // 128))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--shape", choices=["lstm", "notebook"], required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: one per core, as pipe)")
    ap.add_argument("--report", required=True)
    a = ap.parse_args()
    if a.epochs < 1:
        sys.exit(f"--epochs must be at least 1, got {a.epochs}")
    path = os.path.join(a.data, "X_train_seq.npy")
    try:
        x = np.load(path)
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: cannot read the training rows: {e}")
    if x.ndim != 2 or len(x) == 0:
        sys.exit(f"{path}: expected a non-empty [rows, max_len] array, got shape {x.shape}")
    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    embed, hidden = (128, 128) if a.shape == "lstm" else (128, 64)
    kind = torch.bfloat16 if a.shape == "lstm" and machine()["cpu_class"] == "AVX-512 BF16" else torch.float32
    lstm = torch.nn.LSTM(embed, hidden, batch_first=True).to(kind)
    batches = epoch_batches(x, a.shape)
    inputs = {shape: torch.randn(*shape, embed, dtype=kind, requires_grad=True) for shape in set(batches)}

    def epoch():
        start = time.perf_counter()
        for shape in batches:
            out, _ = lstm(inputs[shape])
            out.float().sum().backward()
        return time.perf_counter() - start

    epoch()  # warm-up: oneDNN builds its kernels for each shape once
    seconds = [epoch() for _ in range(a.epochs)]
    tokens = sum(rows * steps for rows, steps in batches)
    report = {"shape": a.shape, "dtype": str(kind).removeprefix("torch."), "threads": torch.get_num_threads(),
              "batches": len(batches), "padded_tokens": tokens, "epochs": [{"seconds": s} for s in seconds],
              "mean_epoch_seconds": sum(seconds) / len(seconds),
              "gflop_per_second": 3 * 2 * tokens * 4 * hidden * (embed + hidden) / min(seconds) / 1e9}
    # Whole or not at all: bench.py reads the report after the process exits.
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(os.path.abspath(a.report)), delete=False) as out:
        json.dump(report, out, indent=1)
    os.replace(out.name, a.report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
