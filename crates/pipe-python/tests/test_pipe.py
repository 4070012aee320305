"""The `pipe` Python package on tests/pipelines/tiny_raw.yaml (600 WordNet
records, a tiny LSTM): run, the classifier on lists, numpy, pyarrow, pandas
and polars, threads, the GIL, `pipe score` parity and the torch check.
Run by scripts/test after `maturin develop`."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import pipe

from conftest import PIPE_BIN, ROOT, held_out_texts, submission


def test_run_reports_each_stage_and_reuses_the_cache(workdir):
    report = pipe.run("tiny_raw.yaml")
    outcomes = {s["name"]: s["outcome"] for s in report["stages"]}
    assert set(outcomes.values()) == {"cached"}, outcomes
    assert 0.0 <= report["stages"][-2]["metrics"]["metrics"]["accuracy"] <= 1.0
    again = pipe.run("tiny_raw.yaml", only=["predict"], force=True)
    assert [s["outcome"] for s in again["stages"] if s["name"] == "predict"] == ["ran"]


def test_errors_carry_pipes_message(workdir):
    with pytest.raises(pipe.PipeError, match="no stage named `nope`"):
        pipe.run("tiny_raw.yaml", overrides={"nope.epochs": 1})
    with pytest.raises(pipe.PipeError, match="missing.yaml"):
        pipe.run("missing.yaml")


def test_predict_agrees_with_the_predict_stage(workdir, model):
    records = json.loads((workdir / "data" / "raw" / "test.json").read_text())
    expected = submission(workdir)
    predicted = model.predict([r["Text"] for r in records])
    compared = [(p, expected[r["Id"]]) for p, r in zip(predicted, records) if r["Id"] in expected]
    assert len(compared) > 100
    assert all(p == e for p, e in compared)
    # The same from a run's report.
    assert pipe.TextClassifier.load(pipe.run("tiny_raw.yaml")).predict(held_out_texts()[:20]) == predicted[:20]


def test_predict_proba_is_a_distribution_whose_argmax_is_predict(model):
    texts = held_out_texts()
    p = model.predict_proba(texts)
    assert p.shape == (len(texts), len(model.classes)) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert [model.classes[i] for i in p.argmax(axis=1)] == model.predict(texts)
    with pytest.raises(TypeError, match="text 1 is int"):
        model.predict(["ok", 3])


def test_arrow_pandas_and_polars_score_like_predict(model):
    texts = held_out_texts()
    table = pa.table({"Id": list(range(len(texts))), "Text": texts})
    # Three batches, so a Table's batches are scored and joined in order.
    table = pa.Table.from_batches(table.to_batches(max_chunksize=64))
    out = model.predict_arrow(table, top_k=3)
    assert out.column_names == ["Category", "Probability", "Category_2", "Probability_2", "Category_3", "Probability_3"]
    assert out["Category"].to_pylist() == model.predict(texts)
    p = out["Probability"].to_numpy()
    assert np.all(p >= out["Probability_2"].to_numpy()) and np.all(out["Probability_2"].to_numpy() >= out["Probability_3"].to_numpy())
    np.testing.assert_allclose(p, model.predict_proba(texts).max(axis=1), rtol=1e-6)
    assert table["Text"].to_pylist() == texts, "the input is left as it was"

    batch = model.predict_arrow(table.to_batches()[0])
    assert isinstance(batch, pa.RecordBatch) and batch.num_rows == 64
    # A slice shares its parent's buffers at an offset: its own rows are scored.
    sliced = model.predict_arrow(pa.record_batch({"Text": texts}).slice(5, 7))
    assert sliced["Category"].to_pylist() == model.predict(texts[5:12])
    for kind in (pa.large_string(), pa.string_view()):
        b = pa.record_batch({"Text": pa.array(texts[:5], kind)})
        assert model.predict_arrow(b)["Category"].to_pylist() == model.predict(texts[:5])

    import pandas as pd
    import polars as pl

    assert model.predict_arrow(pd.DataFrame({"Text": texts}))["Category"].to_pylist() == model.predict(texts)
    assert model.predict_arrow(pl.DataFrame({"Body": texts}), text_column="Body")["Category"].to_pylist() == model.predict(texts)
    empty = model.predict_arrow(pa.table({"Text": pa.array([], pa.string())}))
    assert empty.num_rows == 0 and empty.column_names == ["Category", "Probability"]


def test_bad_arrow_input_is_named(model):
    with pytest.raises(pipe.PipeError, match=r"no column `Body` \(its columns: Text\)"):
        model.predict_arrow(pa.table({"Text": ["a"]}), text_column="Body")
    with pytest.raises(pipe.PipeError, match="row 1: column `Text` is null"):
        model.predict_arrow(pa.table({"Text": ["a", None]}))
    with pytest.raises(pipe.PipeError, match="holds Int64, not text"):
        model.predict_arrow(pa.table({"Text": [1, 2]}))
    with pytest.raises(ValueError, match="top_k must be between 1"):
        model.predict_arrow(pa.table({"Text": ["a"]}), top_k=0)
    with pytest.raises(TypeError, match="not list"):
        model.predict_arrow([["a"]])


def test_one_classifier_shared_by_threads_gives_the_sequential_answers(model):
    texts = held_out_texts()
    expected = model.predict(texts)
    results = {}

    def work(i):
        results[i] = model.predict(texts[i::4])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert results[i] == expected[i::4]


def test_the_gil_is_released_while_rust_scores(model):
    texts = held_out_texts() * 300  # 45,000 texts
    ticks = [0]
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.05)
    before = ticks[0]
    started = time.perf_counter()
    model.predict(texts)
    elapsed = time.perf_counter() - started
    during = ticks[0] - before
    done.set()
    counter.join()
    assert elapsed > 0.1, "too fast to tell"
    # With the GIL held the counter could not run at all during the call.
    assert during > 20, f"{during} ticks in {elapsed:.2f} s"


def test_predict_arrow_equals_pipe_score_row_for_row(workdir, model, tmp_path):
    assert PIPE_BIN.exists(), f"{PIPE_BIN} is missing: scripts/test builds it"
    texts = held_out_texts()
    table = pa.table({"Id": list(range(len(texts))), "Text": texts})
    pq.write_table(table, tmp_path / "records.parquet", row_group_size=50)
    env = dict(os.environ, PIPE_THREADS="1")
    args = [str(PIPE_BIN), "score", "tiny_raw.yaml", "--input", str(tmp_path / "records.parquet"), "--output", str(tmp_path / "scored"), "--id-column", "Id", "--top-k", "2", "-q"]
    subprocess.run(args, check=True, env=env, cwd=workdir)
    scored = pq.read_table(tmp_path / "scored" / "part-00000-of-00001.parquet")
    ours = model.predict_arrow(table, top_k=2)
    assert scored["Id"].to_pylist() == table["Id"].to_pylist()
    for column in ("Category", "Category_2"):
        assert scored[column].to_pylist() == ours[column].to_pylist()
    np.testing.assert_allclose(scored["Probability"].to_numpy(), ours["Probability"].to_numpy(), rtol=1e-5)


def test_a_bundle_scores_like_its_pipeline_anywhere(workdir, model, tmp_path):
    texts = held_out_texts()
    model.save(tmp_path / "bundle")
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == ["bundle.json", "labels", "model", "vectorizer"]
    # Loaded from elsewhere: no pipeline, no cache.
    os.chdir(tmp_path)
    try:
        shipped = pipe.TextClassifier.load(tmp_path / "bundle")
    finally:
        os.chdir(workdir)
    assert shipped.classes == model.classes and shipped.digest == model.digest
    assert shipped.predict(texts) == model.predict(texts)
    np.testing.assert_array_equal(shipped.predict_proba(texts), model.predict_proba(texts))
    # Saved again over itself: replaced; over anything else: refused, left as it was.
    shipped.save(tmp_path / "bundle")
    assert pipe.TextClassifier.load(tmp_path / "bundle").digest == model.digest
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(pipe.PipeError, match="exists and is not a bundle"):
        model.save(tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    with pytest.raises(pipe.PipeError, match="bundle.json"):
        pipe.TextClassifier.load(tmp_path / "other")


def test_pipe_bundle_and_pipe_score_from_a_bundle_match_the_pipeline(workdir, tmp_path):
    texts = held_out_texts()
    pq.write_table(pa.table({"Id": list(range(len(texts))), "Text": texts}), tmp_path / "records.parquet")
    env = dict(os.environ, PIPE_THREADS="1")
    subprocess.run([str(PIPE_BIN), "bundle", "tiny_raw.yaml", str(tmp_path / "bundle"), "-q"], check=True, env=env, cwd=workdir)
    parts = {}
    for name, source in (("pipeline", "tiny_raw.yaml"), ("bundle", str(tmp_path / "bundle"))):
        out = tmp_path / name
        args = [str(PIPE_BIN), "score", source, "--input", str(tmp_path / "records.parquet"), "--output", str(out), "--id-column", "Id", "-q"]
        subprocess.run(args, check=True, env=env, cwd=workdir)
        parts[name] = pq.read_table(out / "part-00000-of-00001.parquet")
        parts[name + " manifest"] = json.loads((out / "_part-00000-of-00001.json").read_text())
    assert parts["bundle"].equals(parts["pipeline"])
    assert parts["bundle manifest"]["model"] == parts["pipeline manifest"]["model"]
    refused = subprocess.run([str(PIPE_BIN), "score", str(tmp_path), "--input", "x", "--output", "y"], capture_output=True, text=True, env=env)
    # A wrong MODEL argument is bad usage (exit 2), as a pipeline that fails to load.
    assert refused.returncode == 2 and "is not a bundle (no bundle.json)" in refused.stderr, refused.stderr


def test_another_torch_version_is_refused_at_import_with_a_reason(tmp_path):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "2.0.1+cpu"\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", "import pipe"], capture_output=True, text=True, env=env)
    assert run.returncode != 0
    assert "pipe was built against torch 2.11.0, but this environment has torch 2.0.1+cpu" in run.stderr, run.stderr


def test_run_calls_a_python_stage_with_this_interpreter(tmp_path, monkeypatch):
    """tests/pipelines/tiny_python.yaml from the package: its Python stage
    (the example's cleaning function) runs in a worker of this interpreter."""
    shutil.copytree(ROOT / "tests/data/raw", tmp_path / "data/raw")
    (tmp_path / "python").mkdir()
    shutil.copy(ROOT / "pipelines/python/cleaning.py", tmp_path / "python/cleaning.py")
    shutil.copy(ROOT / "tests/pipelines/tiny_python.yaml", tmp_path / "tiny_python.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PIPE_PYTHON", raising=False)
    report = pipe.run("tiny_python.yaml", only=["train_records", "test_records", "clean"])
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["clean"]["outcome"] == "ran"
    cleaned = pq.read_table(Path(stages["clean"]["outputs"]["train"]) / "frame.parquet")
    texts = cleaned.column("Text").to_pylist()
    assert texts and all(t == t.lower() and "  " not in t for t in texts)
