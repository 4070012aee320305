#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine (no Rust there): the `pipe` binary
# built here and stripped into .bin/pipe, torch from that machine's python3.
#   scripts/gpu_check.sh OUT_DIR [EPOCHS] [ROUNDS]
# Test binaries stripped into .bin/*_test (cargo test --no-run) run first:
# the CUDA graph tests only exercise the GPU where there is one.
set -uo pipefail
OUT="${1:?output dir}"; EPOCHS="${2:-3}"; ROUNDS="${3:-2}"
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH="$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__) + "/lib")')"
export PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' | tee -a "$OUT/device.txt"
for test in .bin/*_test; do
  [ -x "$test" ] && "$test" --test-threads=1 2>&1 | grep -E "^test |test result" | tee -a "$OUT/tests.txt"
done
# Smoke test: the tiny pipeline on the GPU, through the binary.
tmp=$(mktemp -d); mkdir -p "$tmp/data"; cp tests/data/tiny/* "$tmp/data/"; cp tests/pipelines/tiny.yaml "$tmp/"
(cd "$tmp" && "$OLDPWD/.bin/pipe" run tiny.yaml --device cuda 2>&1 | tail -15) | tee "$OUT/smoke.txt"
# Where a notebook-sized step spends its time: eager, fused Adam, CUDA graph.
python3 scripts/gpu_step_profile.py data/wordnet --json "$OUT/step-profile.json" 2>&1 | grep "ms/step" | tee "$OUT/step-profile.txt"
python3 scripts/bench.py --pipe .bin/pipe --python python3 --device cuda --epochs "$EPOCHS" --rounds "$ROUNDS" \
  --contenders notebook,pipe-nb,pipe-nb-eager,pipe-lstm --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"
