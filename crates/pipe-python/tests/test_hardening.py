"""The Python package under hostile or unusual use: Arrow buffers that are
not what they claim, forked processes, inputs too big to encode at once,
Ctrl-C and SIGTERM during a run, torch's random state, inputs of the wrong
shape, and saving a bundle whose files changed.

What could crash or hang the interpreter runs in a subprocess with a
timeout, so that a segfault or a hang fails its test instead of the suite."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

import pipe

from conftest import ROOT, held_out_texts

TEST_JSON = ROOT / "tests" / "data" / "raw" / "test.json"


def python(code, cwd, timeout=120, args=()):
    """Runs `code` in a fresh interpreter (one torch thread unless it says
    otherwise); a crash or a hang shows in the result, not in this process."""
    env = dict(os.environ, PIPE_THREADS="1", PYTHONUNBUFFERED="1")
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung for {timeout} s; output so far:\n{e.stdout}\n{e.stderr}")


def assert_clean_exit(run):
    assert run.returncode == 0, f"exit status {run.returncode} (a negative one is a signal)\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"


# 1. Arrow buffers are checked before Rust reads them as text.


def test_arrow_text_that_is_not_utf8_is_refused_naming_column_and_row(workdir):
    run = python(
        """
        import json
        import pyarrow as pa
        import pipe

        model = pipe.TextClassifier.load("tiny_raw.yaml")
        messages = {}

        def attempt(name, data, **kwargs):
            try:
                model.predict_arrow(data, **kwargs)
                messages[name] = "scored"
            except pipe.PipeError as e:
                messages[name] = str(e)

        bad = [b"fine", b"also fine", b"abc\\xff"]
        attempt("string", pa.table({"Text": pa.array(bad, pa.binary()).view(pa.string())}))
        attempt("large_string", pa.table({"Text": pa.array(bad, pa.large_binary()).view(pa.large_string())}))
        # Views: an inline value (12 bytes or fewer) and one in a data buffer.
        long_bad = [b"fine", b"a rather long value, then \\xc3\\x28"]
        attempt("string_view inline", pa.record_batch({"Text": pa.array(bad, pa.binary_view()).view(pa.string_view())}))
        attempt("string_view buffer", pa.record_batch({"Text": pa.array(long_bad, pa.binary_view()).view(pa.string_view())}))
        # Row numbers count from the table's first row, across its batches.
        rows = [b"ok"] * 100
        rows[70] = b"\\xfe"
        table = pa.table({"Id": list(range(100)), "Body": pa.array(rows, pa.binary()).view(pa.string())})
        attempt("table row 70", pa.Table.from_batches(table.to_batches(max_chunksize=32)), text_column="Body")
        print(json.dumps(messages))
        """,
        workdir,
    )
    assert_clean_exit(run)
    messages = json.loads(run.stdout)
    for name in ("string", "large_string", "string_view inline"):
        assert "row 2: column `Text` is not valid UTF-8" in messages[name], messages
    assert "row 1: column `Text` is not valid UTF-8" in messages["string_view buffer"], messages
    assert "row 70: column `Body` is not valid UTF-8" in messages["table row 70"], messages


def test_malformed_arrow_buffers_are_refused_not_read(workdir):
    """Arrays whose offsets, views, lengths or buffers break the Arrow
    format, through the public API (pyarrow validates what it knows) and
    straight to the native call (our own checks)."""
    run = python(
        """
        import ctypes, json
        import pyarrow as pa
        import pipe

        model = pipe.TextClassifier.load("tiny_raw.yaml")
        native = model._native
        messages = {}

        def attempt(name, call):
            try:
                call()
                messages[name] = "scored"
            except (pipe.PipeError, ValueError) as e:
                messages[name] = f"{type(e).__name__}: {e}"

        def strings(offsets, data, kind=pa.string(), dtype="int32"):
            # A string array over numpy offsets, which stay editable after
            # pyarrow validated them at construction.
            import numpy as np
            offsets = np.array(offsets, dtype=dtype)
            array = pa.Array.from_buffers(kind, len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
            return array, offsets

        def native_call(batch):
            schema, array = batch.__arrow_c_array__()
            return lambda: native.predict_arrow_capsules(schema, array, "Text")

        def edited_batch(offsets, data, edit, kind=pa.string(), dtype="int32"):
            # Edited after pyarrow validated the batch.
            array, offsets = strings(offsets, data, kind, dtype)
            batch = pa.record_batch({"Text": array})
            edit(offsets)
            return batch

        decreasing = pa.record_batch({"Text": strings([0, 5, 2], b"hello")[0]})
        decreasing_large = pa.record_batch({"Text": strings([0, 5, 2], b"hello", pa.large_string(), "int64")[0]})
        past_the_end = edited_batch([0, 3, 3], b"abc", lambda o: o.__setitem__(1, 1_000_000))
        negative = edited_batch([0, 2], b"ab", lambda o: o.__setitem__(0, -4))
        attempt("public decreasing", lambda: model.predict_arrow(decreasing))
        # Sliced to its first row, whose own offsets grow: only the buffer's size tells.
        attempt("public past the end", lambda: model.predict_arrow(past_the_end.slice(0, 1)))
        attempt("native decreasing", native_call(decreasing))
        attempt("native negative", native_call(negative))
        attempt("native decreasing large", native_call(decreasing_large))

        # The C structs themselves: a copy of what pyarrow exported, edited,
        # with a release callback that does nothing (pyarrow's own release,
        # run when its capsule goes, reads some of the fields edited here).
        class ArrowArray(ctypes.Structure):
            pass
        ArrowArray._fields_ = [
            ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
            ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
            ("buffers", ctypes.POINTER(ctypes.c_void_p)), ("children", ctypes.POINTER(ctypes.POINTER(ArrowArray))),
            ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p),
        ]
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        new_capsule = ctypes.pythonapi.PyCapsule_New
        new_capsule.restype, new_capsule.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        no_release = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda pointer: None)
        kept = []

        def copy(struct):
            out = ArrowArray.from_buffer_copy(struct)
            out.release = ctypes.cast(no_release, ctypes.c_void_p).value
            out.private_data = None
            buffers = (ctypes.c_void_p * struct.n_buffers)(*[struct.buffers[i] for i in range(struct.n_buffers)])
            out.buffers = ctypes.cast(buffers, ctypes.POINTER(ctypes.c_void_p))
            kept.append(buffers)
            return out

        def edited(name, batch, edit):
            schema, array = batch.__arrow_c_array__()
            original = ArrowArray.from_address(get_pointer(array, b"arrow_array"))
            top, column = copy(original), copy(original.children[0].contents)
            children = (ctypes.POINTER(ArrowArray) * 1)(ctypes.pointer(column))
            top.children = children
            edit(top, column)
            name_bytes = b"arrow_array"
            kept.extend([array, top, column, children, name_bytes])
            capsule = new_capsule(ctypes.addressof(top), name_bytes, None)
            attempt(name, lambda: native.predict_arrow_capsules(schema, capsule, "Text"))

        good = lambda kind=pa.string(): pa.record_batch({"Text": pa.array(["a bird", "a long enough text to sit in a buffer"], kind)})
        edited("unedited copy", good(), lambda s, c: None)
        edited("unedited view copy", good(pa.string_view()), lambda s, c: None)
        edited("negative length", good(), lambda s, c: setattr(c, "length", -1))
        edited("short column", good(), lambda s, c: setattr(c, "length", 1))
        edited("negative offset", good(), lambda s, c: setattr(c, "offset", -3))
        edited("two buffers", good(), lambda s, c: setattr(c, "n_buffers", 2))
        edited("null offsets", good(), lambda s, c: c.buffers.__setitem__(1, None))
        edited("nulls without bitmap", good(), lambda s, c: setattr(c, "null_count", 1))
        edited("batch children", good(), lambda s, c: setattr(s, "n_children", 2))
        edited("batch buffers", good(), lambda s, c: setattr(s, "n_buffers", 0))
        edited("batch length", good(), lambda s, c: setattr(s, "length", -5))
        edited("batch past its column", good(), lambda s, c: setattr(s, "offset", 1))

        def view_field(c, row, at, value):
            views = ctypes.cast(c.buffers[1], ctypes.POINTER(ctypes.c_int32))
            views[row * 4 + at] = value

        edited("view buffer index", good(pa.string_view()), lambda s, c: view_field(c, 1, 2, 7))
        edited("view offset", good(pa.string_view()), lambda s, c: view_field(c, 1, 3, 1 << 30))
        edited("view length", good(pa.string_view()), lambda s, c: view_field(c, 1, 0, -20))
        print(json.dumps(messages))
        """,
        workdir,
    )
    assert_clean_exit(run)
    messages = json.loads(run.stdout)
    assert messages["unedited copy"] == messages["unedited view copy"] == "scored", messages
    expected = {
        "public decreasing": "PipeError: column `Text` (rows 0 to 1) is not a well-formed Arrow array",
        "public past the end": "PipeError: column `Text` (rows 0 to 0) is not a well-formed Arrow array",
        "native decreasing": "offset 2 is 2, less than the one before it",
        "native negative": "offset 0 is -4",
        "native decreasing large": "offset 2 is 2, less than the one before it",
        "negative length": "the Arrow array's length is -1",
        "short column": "its Arrow array has 1 rows, the batch needs 2",
        "negative offset": "the Arrow array's offset is -3",
        "two buffers": "with 2 buffers",
        "null offsets": "its offsets buffer is a null pointer",
        "nulls without bitmap": "claims 1 nulls but has no validity bitmap",
        "batch children": "the schema has 1 columns but the Arrow array 2",
        "batch buffers": "has 1 buffer, this one 0",
        "batch length": "the Arrow array's length is -5",
        "batch past its column": "its Arrow array has 2 rows, the batch needs 3",
        "view buffer index": "row 1: column `Text`: its view points into data buffer 7",
        "view offset": "row 1: column `Text`: its view's bytes",
        "view length": "row 1: column `Text`: its view has length -20",
    }
    for name, text in expected.items():
        assert text in messages[name], (name, messages[name])


# 2. Forked children.


def test_a_fork_pool_scores_with_a_classifier_loaded_before_the_fork(workdir):
    run = python(
        f"""
        import json, multiprocessing, torch
        import pipe

        torch.set_num_threads(2)
        model = pipe.TextClassifier.load("tiny_raw.yaml")
        texts = [r["Text"] for r in json.load(open({str(TEST_JSON)!r}))]
        expected = model.predict(texts)
        # Start torch's OpenMP thread pool in the parent, as real work would.
        torch.randn(1024, 1024) @ torch.randn(1024, 1024)

        def work(chunk):
            return model.predict(chunk)

        with multiprocessing.get_context("fork").Pool(2) as pool:
            got = pool.map_async(work, [texts[i::4] for i in range(4)]).get(timeout=60)
        assert all(g == expected[i::4] for i, g in enumerate(got)), "the children disagree with the parent"
        assert torch.get_num_threads() == 2, "the parent keeps its threads"
        print("ok")
        """,
        workdir,
    )
    assert_clean_exit(run)
    assert run.stdout.strip() == "ok"


def test_a_fork_while_another_thread_predicts_leaves_the_child_a_working_classifier(workdir):
    run = python(
        f"""
        import json, os, threading, time
        import pipe

        model = pipe.TextClassifier.load("tiny_raw.yaml")
        texts = [r["Text"] for r in json.load(open({str(TEST_JSON)!r}))]
        expected = model.predict(texts[:10])
        busy = texts * 40
        inside, stop = threading.Event(), threading.Event()

        def keep_predicting():
            while not stop.is_set():
                inside.set()
                model.predict(busy)

        thread = threading.Thread(target=keep_predicting)
        thread.start()
        inside.wait()
        time.sleep(0.05)  # well inside a call of a few tenths of a second
        pid = os.fork()
        if pid == 0:
            try:
                ok = model.predict(texts[:10]) == expected and model.predict_proba(texts[:3]).shape[0] == 3
            except BaseException as e:
                print("child:", type(e).__name__, e, flush=True)
                ok = False
            os._exit(0 if ok else 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = "hung"
        stop.set()
        thread.join()
        print("child", "hung" if status == "hung" else os.waitstatus_to_exitcode(status))
        """,
        workdir,
    )
    assert_clean_exit(run)
    assert run.stdout.strip().splitlines()[-1] == "child 0", run.stdout


# 3. Big inputs: scored in batches; no panic reaches Python.


def test_many_texts_are_scored_in_batches_like_one_batch(model, monkeypatch):
    # Short texts (three words), so that 200,000 of them score in seconds.
    texts = [" ".join(t.split()[:3]) for t in held_out_texts()]
    many = (texts * (200_000 // len(texts) + 1))[:200_000]
    expected = model.predict(texts)
    monkeypatch.setattr(model, "batch_size", 997)  # batches that do not divide the rows
    predicted = model.predict(many)
    assert predicted == [expected[i % len(texts)] for i in range(len(many))]
    texts = held_out_texts()
    expected = model.predict(texts)
    p = model.predict_proba(texts)
    monkeypatch.setattr(model, "batch_size", 7)
    np.testing.assert_allclose(model.predict_proba(texts), p, rtol=1e-6)
    out = model.predict_arrow(pa.table({"Text": texts}), top_k=2)
    assert out["Category"].to_pylist() == expected
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        model._native.predict(["a bird"], 0)


def test_one_enormous_text_does_not_bring_the_interpreter_down(workdir):
    """50 MB in one text: a class or a PipeError, not an abort (the tokenizer
    stops after max_len tokens; a panic would be a PipeError)."""
    run = python(
        """
        import pipe
        model = pipe.TextClassifier.load("tiny_raw.yaml")
        try:
            print("predicted", model.predict(["." * 50_000_000, "a bird"])[1] == model.predict(["a bird"])[0])
        except pipe.PipeError as e:
            print("PipeError", e)
        """,
        workdir,
        timeout=300,
    )
    assert_clean_exit(run)
    assert run.stdout.startswith(("predicted True", "PipeError")), run.stdout


# 4. Ctrl-C and SIGTERM during a run.

SLEEPING_PIPELINE = """\
seed: 1
device: cpu
stages:
  wait:
    kind: exec
    command: "sleep {seconds}; echo done > {{out.result}}"
    outputs: {{ result: result.txt }}
"""

# Python gives Ctrl-C its KeyboardInterrupt handler only when the process
# starts with SIGINT at its default; a background job of a non-interactive
# shell (how CI may start the suite) starts with it ignored. The child
# scripts install the handler themselves, as an interactive Python has it.
CTRL_C_RAISES = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"

RUN_AND_REPORT = CTRL_C_RAISES + """
import sys
import pipe
try:
    pipe.run(sys.argv[1], cache_dir=sys.argv[2])
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(42)
print("finished", flush=True)
"""


def processes_running(argv):
    """Pids of the live (not zombie) processes whose command line is `argv`."""
    wanted = "\0".join(argv).encode() + b"\0"
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == wanted and (proc / "stat").read_text().split(")")[-1].split()[0] != "Z":
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def start_sleeping_run(tmp_path):
    """A subprocess whose pipe.run waits in an `exec` stage's `sleep`; returns it and the sleep's argv."""
    seconds = f"30.{random.randrange(10**6):06d}"  # a command line no other process has
    (tmp_path / "sleep.yaml").write_text(SLEEPING_PIPELINE.format(seconds=seconds))
    env = dict(os.environ, PIPE_THREADS="1", PYTHONUNBUFFERED="1")
    args = [sys.executable, "-c", RUN_AND_REPORT, str(tmp_path / "sleep.yaml"), str(tmp_path / "cache")]
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    argv = ["sleep", seconds]
    deadline = time.monotonic() + 60
    while not processes_running(argv):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the exec stage's sleep never started: {process.communicate()}")
        time.sleep(0.05)
    return process, argv


def assert_gone_and_clean(argv, cache):
    deadline = time.monotonic() + 2
    while processes_running(argv) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_running(argv), "the exec stage's command outlived the run"
    assert not any((cache / "entries").iterdir()), "the interrupted stage was cached"
    assert not (cache / "tmp").exists() or not any((cache / "tmp").iterdir()), "scratch was left in the cache"


def test_ctrl_c_stops_a_run_kills_its_command_and_caches_nothing(tmp_path):
    process, argv = start_sleeping_run(tmp_path)
    try:
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
        took = time.monotonic() - interrupted
    finally:
        process.kill()
    assert process.returncode == 42 and out.strip() == "KeyboardInterrupt", (process.returncode, out, err)
    assert took < 2.5, f"KeyboardInterrupt came {took:.1f} s after SIGINT"
    assert_gone_and_clean(argv, tmp_path / "cache")


def test_sigterm_during_a_run_kills_its_command_before_the_process_ends(tmp_path):
    process, argv = start_sleeping_run(tmp_path)
    try:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGTERM, (process.returncode, out, err)
    assert_gone_and_clean(argv, tmp_path / "cache")


def test_ctrl_c_stops_training_at_its_next_step_and_caches_none_of_it(workdir, tmp_path):
    shutil.copytree(workdir / "data" / "raw", tmp_path / "data" / "raw")
    shutil.copy(workdir / "tiny_raw.yaml", tmp_path / "tiny_raw.yaml")
    run = python(
        """
        import glob, json, os, signal, threading, time
        import pipe

        signal.signal(signal.SIGINT, signal.default_int_handler)  # see CTRL_C_RAISES

        def kinds():
            return [json.load(open(r))["key"]["kind"] for r in glob.glob("cache/entries/*/record.json")]

        sent = []

        def interrupt_once_training_runs():
            # The model stage is cached just before training starts.
            while "lstm_classifier" not in kinds():
                time.sleep(0.02)
            time.sleep(0.5)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_once_training_runs, daemon=True).start()
        try:
            pipe.run("tiny_raw.yaml", overrides={"train.epochs": 500}, cache_dir="cache")
            raise SystemExit("the run finished")
        except KeyboardInterrupt:
            took = time.monotonic() - sent[0]
        # The stopped run let go of the cache's lock: another run takes it at once.
        started = time.monotonic()
        pipe.run("tiny_raw.yaml", only=["vectorize"], cache_dir="cache")
        print(json.dumps({"took": took, "second run": time.monotonic() - started, "kinds": kinds()}))
        """,
        tmp_path,
    )
    assert_clean_exit(run)
    result = json.loads(run.stdout)
    assert result["took"] < 2, result
    assert "lstm_classifier" in result["kinds"] and "train" not in result["kinds"], result
    assert result["second run"] < 10, result


def test_run_restores_the_sigterm_handler(workdir):
    before = signal.getsignal(signal.SIGTERM)
    pipe.run("tiny_raw.yaml")
    assert signal.getsignal(signal.SIGTERM) is before


# 5. torch's random state.


def test_run_leaves_torchs_global_random_state_as_it_was(workdir):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    expected = torch.rand(5)
    torch.set_rng_state(state)
    # The model stage seeds torch (`seed: 5`) to initialise its weights.
    report = pipe.run("tiny_raw.yaml", only=["model"], force=True)
    assert [s["outcome"] for s in report["stages"] if s["name"] == "model"] == ["ran"]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(5), expected)


# 6. Inputs of the wrong shape, and the shapes people have.


def test_one_string_is_refused_not_scored_letter_by_letter(model):
    for one in ("a small songbird", b"a small songbird"):
        with pytest.raises(TypeError, match="pass \\[text\\]"):
            model.predict(one)
        with pytest.raises(TypeError, match="pass \\[text\\]"):
            model.predict_proba(one)
    with pytest.raises(TypeError, match="text 1 is missing \\(None\\)"):
        model.predict(["a bird", None])


def test_predict_proba_is_writable(model):
    p = model.predict_proba(held_out_texts()[:4])
    assert p.flags.writeable
    p[0, 0] = 7.0
    assert p[0, 0] == 7.0


def test_a_null_is_reported_at_its_row_in_the_table(model):
    texts = held_out_texts()[:100]
    texts[50] = None
    table = pa.Table.from_batches(pa.table({"Text": texts}).to_batches(max_chunksize=32))
    assert table.num_rows == 100 and len(table.to_batches()) == 4
    with pytest.raises(pipe.PipeError, match="row 50: column `Text` is null"):
        model.predict_arrow(table)


def test_an_empty_table_has_its_columns_checked(model):
    with pytest.raises(pipe.PipeError, match=r"no column `Text` \(its columns: Body\)"):
        model.predict_arrow(pa.table({"Body": pa.array([], pa.string())}))
    with pytest.raises(pipe.PipeError, match="holds Int64, not text"):
        model.predict_arrow(pa.table({"Text": pa.array([], pa.int64())}))
    empty = model.predict_arrow(pa.table({"Text": pa.array([], pa.large_string())}), top_k=2)
    assert empty.num_rows == 0 and empty.column_names == ["Category", "Probability", "Category_2", "Probability_2"]


def test_top_k_outside_the_classes_is_a_value_error(model):
    table = pa.table({"Text": ["a bird"]})
    classes = len(model.classes)
    for bad in (-1, 0, classes + 1, 2**70):
        with pytest.raises(ValueError, match=f"top_k must be between 1 and the model's {classes} classes, not {bad}"):
            model.predict_arrow(table, top_k=bad)
    with pytest.raises(TypeError, match="top_k must be an int"):
        model.predict_arrow(table, top_k=1.5)
    assert model.predict_arrow(table, top_k=classes).num_columns == 2 * classes


def test_pandas_and_polars_series_are_texts(model):
    import pandas as pd
    import polars as pl

    texts = held_out_texts()[:40]
    expected = model.predict(texts)
    series = {
        "pandas": pd.Series(texts),
        "pandas object": pd.Series(texts, dtype=object),
        "pandas categorical": pd.Series(texts, dtype="category"),
        "polars": pl.Series("t", texts),
        "polars categorical": pl.Series("t", texts, dtype=pl.Categorical),
        "pyarrow": pa.chunked_array([texts[:10], texts[10:]]),
        "pyarrow dictionary": pa.array(texts).dictionary_encode(),
    }
    for name, s in series.items():
        assert model.predict(s) == expected, name
        np.testing.assert_allclose(model.predict_proba(s), model.predict_proba(texts), rtol=1e-6, err_msg=name)
        assert model.predict_arrow(s)["Category"].to_pylist() == expected, name
    frames = {
        "pandas categorical column": pd.DataFrame({"Text": pd.Series(texts, dtype="category")}),
        "polars categorical column": pl.DataFrame({"Text": pl.Series(texts, dtype=pl.Categorical)}),
        "dictionary batch": pa.record_batch({"Text": pa.array(texts).dictionary_encode()}),
    }
    for name, frame in frames.items():
        assert model.predict_arrow(frame)["Category"].to_pylist() == expected, name
    with pytest.raises(TypeError, match="text 1 is missing"):
        model.predict(pd.Series(["a bird", None]))


# 7. save() writes the model that was loaded, or refuses.


@pytest.fixture(scope="module")
def other_bundle(workdir, tmp_path_factory):
    """A bundle of a different model (one epoch instead of two), trained in
    a directory of its own so that the shared one's outputs stay as they are."""
    other = tmp_path_factory.mktemp("other")
    shutil.copytree(workdir / "data" / "raw", other / "data" / "raw")
    shutil.copy(workdir / "tiny_raw.yaml", other / "tiny_raw.yaml")
    os.chdir(other)
    try:
        pipe.TextClassifier.load("tiny_raw.yaml", overrides={"train.epochs": 1}).save(other / "bundle")
    finally:
        os.chdir(workdir)
    return other / "bundle"


def test_save_after_the_bundle_on_disk_changed_refuses_or_saves_what_was_loaded(model, other_bundle, tmp_path):
    model.save(tmp_path / "bundle")
    loaded = pipe.TextClassifier.load(tmp_path / "bundle")
    assert pipe.TextClassifier.load(other_bundle).digest != loaded.digest
    shutil.rmtree(tmp_path / "bundle")
    shutil.copytree(other_bundle, tmp_path / "bundle")
    try:
        loaded.save(tmp_path / "copy")
    except pipe.PipeError:
        assert not (tmp_path / "copy").exists()
    else:
        assert pipe.TextClassifier.load(tmp_path / "copy").digest == loaded.digest


def test_save_inside_the_loaded_bundle_is_refused(model, tmp_path):
    model.save(tmp_path / "bundle")
    loaded = pipe.TextClassifier.load(tmp_path / "bundle")
    for inside in (tmp_path / "bundle" / "again", tmp_path / "bundle" / "model" / "again"):
        with pytest.raises(pipe.PipeError):
            loaded.save(inside)
        assert not inside.exists()
    assert pipe.TextClassifier.load(tmp_path / "bundle").digest == model.digest
