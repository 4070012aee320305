#!/usr/bin/env bash
# Creates (once) the pinned Python venv that provides libtorch for `tch` and the
# numpy/joblib/scikit-learn/pandas used by the fixture and reference scripts.
# The venv lives outside the clone, keyed by the torch version, so every clone
# (and CI on the same machine) reuses it instead of downloading 5 GB again.
# Prints the venv path on stdout.
set -euo pipefail
TORCH_VERSION=2.11.0
VENV="${PIPE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe/venv-torch-$TORCH_VERSION}"
STAMP="$VENV/.pipe-complete"
if [ ! -f "$STAMP" ]; then
  echo "pipe: creating the torch $TORCH_VERSION venv at $VENV (one-time, about 5 GB)" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" numpy joblib scikit-learn pandas pyarrow >&2
  "$VENV/bin/python" -c "import torch; assert torch.__version__.split('+')[0] == '$TORCH_VERSION', torch.__version__" >&2
  touch "$STAMP"
fi
echo "$VENV"
