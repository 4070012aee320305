#!/usr/bin/env bash
# Seeds the fuzz corpora with the loader fixtures (good and bad files).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/pickle corpus/npy
cp ../crates/pipe-artifacts/tests/fixtures/*.pkl ../crates/pipe-artifacts/tests/fixtures/bad/*.pkl corpus/pickle/
cp ../crates/pipe-artifacts/tests/fixtures/*.npy ../crates/pipe-artifacts/tests/fixtures/bad/*.npy corpus/npy/
