#!/usr/bin/env bash
# Creates (once) the pinned Python venv that provides libtorch for `tch` and
# the numpy/joblib/scikit-learn/pandas used by the data, fixture and reference
# scripts. It lives outside the clone, keyed by the torch version, so every
# clone (and CI on the same machine) reuses it instead of downloading 5 GB
# again; when scripts/setup/requirements.txt changes, only what is new is installed.
# Prints the venv path on stdout.
set -euo pipefail
TORCH_VERSION=2.11.0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQUIREMENTS="$HERE/requirements.txt"
VENV="${PIPE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pipe/venv-torch-$TORCH_VERSION}"
STAMP="$VENV/.pipe-requirements"
WANT="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "pipe: creating the torch $TORCH_VERSION venv at $VENV (one-time, about 5 GB)" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "pipe: installing scripts/setup/requirements.txt into $VENV" >&2
  "$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS" >&2
  "$VENV/bin/python" -c "import torch; assert torch.__version__.split('+')[0] == '$TORCH_VERSION', torch.__version__" >&2
  echo "$WANT" > "$STAMP"
fi
echo "$VENV"
