#!/usr/bin/env python3
"""What a `kind: python` stage costs over the same function in plain Python,
on a table of ROWS records (Id, a ~60-character Text, Category):

  scripts/pipe run … is built first; then
  python scripts/bench/python_stage.py [--rows 1000000] [--repeat 3] [--pipe target/release/pipe]

Plain Python: read the Parquet file, call the function, write the result
(pyarrow). The stage: `read_records` reads the same file into a frame, and
the `python` stage hands it to the same function in a worker and reads its
result back; the time is the stage's own (from `pipe run --json`), which
covers pipe writing the input frame, starting the interpreter, the worker's
read, the call, its write and pipe loading the output. Each is the median
of --repeat runs (the stage forced to rerun with --force each time).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

import pyarrow as pa
import pyarrow.parquet as pq

FUNCTION = '''
import pyarrow as pa

def lower(records: pa.Table) -> pa.Table:
    frame = records.to_pandas()
    frame["Text"] = frame["Text"].str.lower()
    return frame
'''

PIPELINE = '''
stages:
  records:
    kind: read_records
    path: records.parquet
  lower:
    kind: python
    function: bench_fn:lower
    input_types: {{ records: frame }}
    outputs: {{ records: frame }}
    inputs: {{ records: records.records }}
'''


def make_records(path, rows):
    words = ["ash", "Birch", "CEDAR", "elm", "fir", "Hazel", "oak", "Pine", "yew", "Maple"]
    texts = [" ".join(words[(i * 7 + k) % 10] for k in range(i % 5 + 8)) for i in range(1000)]
    table = pa.table(
        {
            "Id": pa.array(range(rows), pa.int64()),
            "Text": pa.array([texts[i % 1000] for i in range(rows)]),
            "Category": pa.array([f"class.{i % 40}" for i in range(rows)]),
        }
    )
    pq.write_table(table, path)


def plain(directory):
    sys.path.insert(0, directory)
    from bench_fn import lower

    start = time.perf_counter()
    table = pq.read_table(os.path.join(directory, "records.parquet"))
    out = lower(table)
    pq.write_table(pa.Table.from_pandas(out, preserve_index=False), os.path.join(directory, "plain.parquet"))
    return time.perf_counter() - start


def stage_seconds(pipe, directory):
    result = subprocess.run(
        [pipe, "run", "p.yaml", "--json", "--force", "--only", "lower"],
        cwd=directory, capture_output=True, text=True, check=True,
    )
    for line in result.stdout.splitlines():
        event = json.loads(line)
        if event.get("event") == "stage_finished" and event.get("stage") == "lower":
            return event["seconds"]
    raise SystemExit(f"no timing for `lower` in:\n{result.stdout[-2000:]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pipe", default="target/release/pipe")
    args = parser.parse_args()
    pipe = os.path.abspath(args.pipe)
    with tempfile.TemporaryDirectory() as d:
        make_records(os.path.join(d, "records.parquet"), args.rows)
        with open(os.path.join(d, "bench_fn.py"), "w") as f:
            f.write(FUNCTION)
        with open(os.path.join(d, "p.yaml"), "w") as f:
            f.write(PIPELINE.format())
        subprocess.run([pipe, "run", "p.yaml", "-q"], cwd=d, check=True, env={**os.environ, "PIPE_PYTHON": sys.executable})
        os.environ["PIPE_PYTHON"] = sys.executable
        plain_s = statistics.median(plain(d) for _ in range(args.repeat))
        stage_s = statistics.median(stage_seconds(pipe, d) for _ in range(args.repeat))
    print(f"rows {args.rows}: plain Python {plain_s:.2f} s, python stage {stage_s:.2f} s, "
          f"overhead {stage_s - plain_s:.2f} s ({stage_s / plain_s:.2f}x)")


if __name__ == "__main__":
    main()
