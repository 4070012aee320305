#!/usr/bin/env bash
# Creates (once) a small venv with fastText for scripts/bench/baselines.py's
# `fasttext` baseline: fastText's wheel needs numpy < 2, which the torch venv
# cannot hold. Prints the venv's python on stdout.
#   $(scripts/setup/ensure-baseline-venv.sh) scripts/bench/baselines.py CORPUS --only fasttext
set -euo pipefail
VENV="${PIPE_BASELINE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe/venv-baselines}"
if ! "$VENV/bin/python" -c "import fasttext" 2>/dev/null; then
  echo "pipe: creating the fastText baseline venv at $VENV (one-time)" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "fasttext-wheel==0.9.2" "numpy<2" "scikit-learn" >&2
fi
echo "$VENV/bin/python"
