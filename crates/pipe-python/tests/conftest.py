"""Shared by the Python package's tests: a trained copy of
tests/pipelines/tiny_raw.yaml (600 WordNet records, a tiny LSTM) as the
working directory, and its classifier."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import pipe

ROOT = Path(__file__).resolve().parents[3]
PIPE_BIN = ROOT / "target" / "release" / "pipe"
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """A trained copy of tiny_raw.yaml; the working directory for every test."""
    d = tmp_path_factory.mktemp("pipe")
    shutil.copytree(ROOT / "tests" / "data" / "raw", d / "data" / "raw")
    shutil.copy(ROOT / "tests" / "pipelines" / "tiny_raw.yaml", d / "tiny_raw.yaml")
    cwd = os.getcwd()
    os.chdir(d)
    pipe.run("tiny_raw.yaml")
    yield d
    os.chdir(cwd)


@pytest.fixture(scope="session")
def model(workdir):
    return pipe.TextClassifier.load("tiny_raw.yaml")


def held_out_texts():
    return [r["Text"] for r in json.loads((ROOT / "tests" / "data" / "raw" / "test.json").read_text())]


def submission(workdir):
    """The pipeline's own predict stage: Id -> Category (pandas' to_csv, index first)."""
    lines = (workdir / "out" / "submission.csv").read_text().splitlines()[1:]
    return {int(f[1]): f[2] for f in (line.split(",") for line in lines)}


def partitioned_records(directory, copies=4):
    """The held-out texts `copies` times with an `Id`, as an ETL job writes a
    dataset: a directory per day (`day=0`, `day=1`), a Parquet file in each."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = held_out_texts() * copies
    for day in range(2):
        ids = list(range(day, len(texts), 2))
        (directory / f"day={day}").mkdir(parents=True)
        pq.write_table(pa.table({"Id": ids, "Text": [texts[i] for i in ids]}), directory / f"day={day}" / "part-0.parquet")
    return len(texts)


def pipe_scored(bundle, records, out):
    """`pipe score BUNDLE` over `records` (one torch thread), as a pyarrow Table sorted by Id."""
    import subprocess

    import pyarrow.parquet as pq

    env = dict(os.environ, PIPE_THREADS="1")
    args = [str(PIPE_BIN), "score", str(bundle), "--input", str(records), "--output", str(out), "--id-column", "Id", "-q"]
    subprocess.run(args, check=True, env=env)
    return pq.read_table(out).sort_by("Id")


def assert_same_scores(got, expected, rows):
    """Row for row: the same ids and classes, probabilities to float32 rounding."""
    import numpy as np

    assert got.num_rows == expected.num_rows == rows
    assert got["Id"].to_pylist() == expected["Id"].to_pylist()
    assert got["Category"].to_pylist() == expected["Category"].to_pylist()
    np.testing.assert_allclose(got["Probability"].to_numpy(), expected["Probability"].to_numpy(), rtol=1e-5)
