# Sourced by the other scripts: makes sure the pinned torch venv exists and
# points the build at it (tch's build script finds libtorch through python).
PIPE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PIPE_VENV="$("$PIPE_ROOT/scripts/setup/ensure-venv.sh")"
export PIPE_VENV
export LIBTORCH_USE_PYTORCH=1
export PATH="$PIPE_VENV/bin:$PATH"
# The Python package's build (pyo3, maturin) targets the same venv.
export VIRTUAL_ENV="$PIPE_VENV"
export PYO3_PYTHON="$PIPE_VENV/bin/python"
# What maturin sets for its cargo build, so that cargo's builds and
# maturin's see the same environment: otherwise each reruns pyo3's and
# pipe's build scripts for the other (they watch these variables) and
# recompiles pyo3, the `pipe` crate and everything linking them.
export PYTHON_SYS_EXECUTABLE="$PYO3_PYTHON"
PYO3_ENVIRONMENT_SIGNATURE="$("$PYO3_PYTHON" -c 'import struct, sys; print("%s-%d.%d-%dbit" % (sys.implementation.name, *sys.version_info[:2], struct.calcsize("P") * 8))')"
export PYO3_ENVIRONMENT_SIGNATURE
# Two cores here: one torch process at a time, threads bounded.
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-2}"
# Test binaries of library crates have no rpath to torch (the `pipe` binary
# does, from its build.rs); they find libtorch through this.
TORCH_LIB="$("$PIPE_VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export TORCH_LIB
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
