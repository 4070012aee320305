#!/usr/bin/env bash
# Seeds the fuzz corpora with the loader fixtures (good and bad files).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/pickle corpus/npy
cp ../crates/pipe-notebook/tests/fixtures/*.pkl ../crates/pipe-notebook/tests/fixtures/bad/*.pkl corpus/pickle/
cp ../crates/pipe-notebook/tests/fixtures/*.npy ../crates/pipe-notebook/tests/fixtures/bad/*.npy corpus/npy/
# `records`: small valid Parquet, CSV and JSON-lines files (the first byte
# picks the format), written by pandas/pyarrow from the project's venv.
mkdir -p corpus/records
"$(../scripts/setup/ensure-venv.sh)/bin/python" - <<'PY'
import io, json
import pandas as pd
frame = pd.DataFrame({"Id": [1, 2, 3], "Text": ["a small songbird", "an oak, a tree", None]})
def seed(name, prefix, payload):
    with open(f"corpus/records/{name}", "wb") as f:
        f.write(bytes([prefix]) + payload)
for i, compression in enumerate(["none", "snappy", "zstd"]):
    buffer = io.BytesIO()
    frame.to_parquet(buffer, compression=None if compression == "none" else compression)
    seed(f"parquet-{compression}", 0, buffer.getvalue())
seed("csv", 1, frame.to_csv(index=False).encode())
seed("csv-quoted", 1, b'Id,Text\n1,"a ""quoted"" bird"\n2,"two\nlines"\n')
seed("jsonl", 2, "\n".join(json.dumps({"Id": i, "Text": t}) for i, t in enumerate(["a bird", "a tree"])).encode())
PY
