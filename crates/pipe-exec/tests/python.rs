//! The `python` stage through the library API: values and types through the
//! worker and back, the function's mistakes as clear errors with nothing
//! cached, and a cache key that follows the function's source.
//!
//! They run `python3` from `PATH` (scripts/test puts the project's venv,
//! with numpy and pyarrow, first).

use std::path::{Path, PathBuf};

use pipe_core::{run, Cache, LoadArtifact, NullSink, Pipeline, RunOptions, RunReport};
use pipe_data::{IntArray, LabelSet, Table};
use pipe_vectorize::polars::prelude::*;
use pipe_vectorize::Frame;
// Linked for its stage kinds (`python`); `read_records` comes with pipe_vectorize.
use pipe_exec as _;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn pipeline(dir: &Path, yaml: &str) -> Result<Pipeline, String> {
    Pipeline::from_yaml_str(&dir.join("p.yaml").display().to_string(), yaml, &[])
        .map_err(|e| e.to_string())
}

fn run_yaml(dir: &Path, yaml: &str) -> Result<RunReport, String> {
    let pipeline = pipeline(dir, yaml)?;
    let cache = Cache::open(dir.join(".pipe")).unwrap();
    run(&pipeline, &cache, &RunOptions::default(), &NullSink)
        .map_err(|e| pipe_core::error_chain(&e))
}

/// Records with the column types users have: strings with a null, ints,
/// floats with a null, lists of ints (one empty).
const RECORDS: &str = r#"{"name": "ash", "count": 3, "score": 0.5, "tags": [1, 2]}
{"name": null, "count": -7, "score": null, "tags": []}
{"name": "élan «x»", "count": 9007199254740993, "score": 1e-300, "tags": [5]}
"#;

/// One stage reading the records, one Python stage calling `module:function`
/// on them (`outputs` and `args` as YAML flow maps).
fn one_call(dir: &Path, function: &str, outputs: &str, extra: &str) -> String {
    write(dir, "records.jsonl", RECORDS);
    format!(
        r#"
stages:
  records:
    kind: read_records
    path: {records}
  call:
    kind: python
    function: "{function}"
    python_path: ["{dir}"]
    input_types: {{ records: frame }}
    outputs: {outputs}
    inputs: {{ records: records.records }}
{extra}"#,
        records = dir.join("records.jsonl").display(),
        dir = dir.display(),
    )
}

fn frame_of(report: &RunReport, stage: &str, port: &str) -> DataFrame {
    Frame::load(&report.stage(stage).unwrap().outputs[port])
        .unwrap()
        .0
}

#[test]
fn a_frame_keeps_its_values_and_types_through_python() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "check.py",
        r#"
import pyarrow as pa

def same(records):
    # What Python sees: Arrow types, nulls where the records had them.
    assert records.schema.field("name").type == pa.large_string(), records.schema
    assert records.schema.field("count").type == pa.int64(), records.schema
    assert records.schema.field("score").type == pa.float64(), records.schema
    assert records.schema.field("tags").type.value_type == pa.int64(), records.schema
    assert records.column("name").null_count == 1
    assert records.column("count").to_pylist()[2] == 9007199254740993
    return {
        "same": records,
        "via_pandas": records.to_pandas(),
        "stats": {"rows": records.num_rows, "columns": records.column_names},
        "lengths": [len(t) for t in records.column("tags").to_pylist()],
        "columns": {"n": [1, 2], "s": ["a", None]},
        "classes": ["b", "a"],
    }
"#,
    );
    let yaml = one_call(
        dir.path(),
        "check:same",
        "{ same: frame, via_pandas: frame, stats: json, lengths: int_array, columns: table, classes: label_set }",
        "",
    );
    let report = run_yaml(dir.path(), &yaml).unwrap();
    let input = frame_of(&report, "records", "records");
    for port in ["same", "via_pandas"] {
        let back = frame_of(&report, "call", port);
        assert_eq!(back.schema(), input.schema(), "{port}");
        assert!(back.equals_missing(&input), "{port}: {back} != {input}");
    }
    let outputs = &report.stage("call").unwrap().outputs;
    let stats = pipe_core::JsonDoc::load(&outputs["stats"]).unwrap();
    assert_eq!(
        stats.0,
        serde_json::json!({"rows": 3, "columns": ["name", "count", "score", "tags"]})
    );
    let lengths = IntArray::load(&outputs["lengths"]).unwrap();
    assert_eq!(lengths.0.iter().copied().collect::<Vec<_>>(), vec![2, 0, 1]);
    let table = Table::load(&outputs["columns"]).unwrap();
    assert_eq!(
        table.column("s").unwrap().values,
        vec![serde_json::json!("a"), serde_json::Value::Null]
    );
    assert_eq!(
        LabelSet::load(&outputs["classes"]).unwrap(),
        LabelSet::Strings(vec!["b".into(), "a".into()])
    );
}

/// Runs `source` as `f.py` through `one_call` and returns the error.
fn failure(source: &str, function: &str, outputs: &str, extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f.py", source);
    let yaml = one_call(dir.path(), function, outputs, extra);
    let err = run_yaml(dir.path(), &yaml).unwrap_err();
    // A failed stage caches nothing: its key has no entry, and no scratch is left.
    let pipeline = pipeline(dir.path(), &yaml).unwrap();
    let cache = Cache::open(dir.path().join(".pipe")).unwrap();
    let statuses = pipe_core::status(
        &pipeline,
        &cache,
        "cpu",
        std::time::Duration::from_secs(10),
        &NullSink,
    )
    .unwrap();
    let call = statuses.iter().find(|(name, _)| name == "call").unwrap();
    assert!(
        !matches!(call.1, pipe_core::Freshness::Fresh),
        "a failed stage was cached: {:?}",
        call.1
    );
    let tmp = dir.path().join(".pipe/tmp");
    if tmp.exists() {
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "scratch left behind"
        );
    }
    err
}

#[test]
fn an_exception_fails_the_stage_with_its_traceback() {
    let err = failure(
        "def f(records):\n    rows = records.num_rows\n    raise ValueError(f'no good: {rows} rows')\n",
        "f:f",
        "{ out: json }",
        "",
    );
    assert!(
        err.contains("stage `call` failed: `f:f` failed while calling the function"),
        "{err}"
    );
    assert!(
        !err.contains("python_worker.py"),
        "the worker's frames are noise: {err}"
    );
    assert!(err.contains("ValueError: no good: 3 rows"), "{err}");
    assert!(err.contains("Traceback (most recent call last)"), "{err}");
    assert!(err.contains("f.py\", line 3, in f"), "{err}");
}

#[test]
fn a_wrong_return_names_the_port_and_what_came_back() {
    let err = failure(
        "def f(records):\n    return 'text'\n",
        "f:f",
        "{ out: frame }",
        "",
    );
    assert!(
        err.contains("output `out` is declared `frame`") && err.contains("not builtins.str"),
        "{err}"
    );
    let err = failure(
        "def f(records):\n    return {'a': 1}\n",
        "f:f",
        "{ a: json, b: json }",
        "",
    );
    assert!(err.contains("missing b"), "{err}");
    let err = failure(
        "def f(records):\n    return [0.5]\n",
        "f:f",
        "{ out: int_array }",
        "",
    );
    assert!(
        err.contains("output `out` is declared `int_array` but is an array of float64"),
        "{err}"
    );
    let err = failure(
        "def f(records):\n    return float('nan')\n",
        "f:f",
        "{ out: json }",
        "",
    );
    assert!(
        err.contains("output `out` is declared `json` but is not JSON"),
        "{err}"
    );
}

#[test]
fn a_missing_function_or_a_syntax_error_is_named() {
    let err = failure(
        "def g(records):\n    return {}\n",
        "f:f",
        "{ out: json }",
        "",
    );
    assert!(err.contains("`f` has no attribute `f`"), "{err}");
    let err = failure(
        "def f(records)\n    return {}\n",
        "f:f",
        "{ out: json }",
        "",
    );
    assert!(err.contains("SyntaxError"), "{err}");
    assert!(err.contains("f.py\", line 1"), "{err}");
    // A module that is not there at all: the run fails naming it (the
    // pipeline loads, as with a data file that is missing, since paths are
    // where `pipe` runs).
    let err = failure(
        "def f(records):\n    return {}\n",
        "nowhere:f",
        "{ out: json }",
        "",
    );
    assert!(
        err.contains("function module `nowhere` is not under python_path"),
        "{err}"
    );
}

#[test]
fn a_hang_past_timeout_s_is_killed_with_everything_it_started() {
    let keep = tempfile::tempdir().unwrap();
    let pids = keep.path().join("pids");
    let source = format!(
        "import os, subprocess, time\n\
         def f(records):\n    \
             child = subprocess.Popen(['sleep', '300'])\n    \
             open({pids:?}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n    \
             time.sleep(300)\n",
        pids = pids.display().to_string()
    );
    let start = std::time::Instant::now();
    let err = failure(&source, "f:f", "{ out: json }", "    timeout_s: 2\n");
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    assert!(
        err.contains("ran past timeout_s = 2 and was killed"),
        "{err}"
    );
    for pid in std::fs::read_to_string(&pids).unwrap().split_whitespace() {
        let pid: i32 = pid.parse().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let running = !status.is_empty()
            && !status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
        assert!(!running, "process {pid} outlived the stage:\n{status}");
    }
}

#[test]
fn bad_declarations_are_caught_when_the_pipeline_loads() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f.py", "def f(records):\n    return {}\n");
    let load = |outputs: &str, extra: &str| {
        pipeline(dir.path(), &one_call(dir.path(), "f:f", outputs, extra)).unwrap_err()
    };
    assert!(load("{ out: checkpoint }", "").contains(
        "outputs.out has type `checkpoint`; a Python stage passes frame, int_array, json, table, label_set, vocabulary, files"
    ));
    assert!(load("{}", "").contains("outputs must declare at least one output"));
    assert!(load("{ out: json }", "    args: { records: 1 }\n")
        .contains("args.records has the name of an input"));
    assert!(load("{ out: json }", "    timeout_s: 0\n").contains("timeout_s must be positive"));
    let err = pipeline(
        dir.path(),
        &one_call(dir.path(), "f.f", "{ out: json }", ""),
    )
    .unwrap_err();
    assert!(
        err.contains("function must be `package.module:function`"),
        "{err}"
    );
}

#[test]
fn the_key_follows_the_function_source_and_its_declared_files() {
    let dir = tempfile::tempdir().unwrap();
    let helper = write(dir.path(), "words.txt", "ash\n");
    write(
        dir.path(),
        "f.py",
        "def f(records, path):\n    return {'known': open(path).read().split()}\n",
    );
    let yaml = one_call(
        dir.path(),
        "f:f",
        "{ out: json }",
        &format!(
            "    files: [\"{h}\"]\n    args: {{ path: \"{h}\" }}\n",
            h = helper.display()
        ),
    );
    let outcome = |report: &RunReport| format!("{:?}", report.stage("call").unwrap().outcome);
    assert_eq!(outcome(&run_yaml(dir.path(), &yaml).unwrap()), "Ran");
    assert_eq!(outcome(&run_yaml(dir.path(), &yaml).unwrap()), "Cached");
    // An edit to the module reruns it, without any version bump.
    write(
        dir.path(),
        "f.py",
        "def f(records, path):\n    return {'known': open(path).read().split(), 'v': 2}\n",
    );
    let report = run_yaml(dir.path(), &yaml).unwrap();
    assert_eq!(outcome(&report), "Ran");
    assert_eq!(
        format!("{:?}", report.stage("records").unwrap().outcome),
        "Cached"
    );
    // So does an edit to a file it declares.
    write(dir.path(), "words.txt", "ash\nelm\n");
    let report = run_yaml(dir.path(), &yaml).unwrap();
    assert_eq!(outcome(&report), "Ran");
    let doc = pipe_core::JsonDoc::load(&report.stage("call").unwrap().outputs["out"]).unwrap();
    assert_eq!(doc.0["known"], serde_json::json!(["ash", "elm"]));
}

#[test]
fn what_a_frame_cannot_hold_is_refused_by_column() {
    let err = failure(
        "import decimal, pyarrow as pa\ndef f(records):\n    return pa.table({'price': [decimal.Decimal('1.10')]})\n",
        "f:f",
        "{ out: frame }",
        "",
    );
    assert!(
        err.contains("output `out`: column `price` is decimal128(3, 2) (decimal)"),
        "{err}"
    );
    let err = failure(
        "import pandas as pd\ndef f(records):\n    return pd.DataFrame({'when': pd.to_datetime(['2026-01-01'])})\n",
        "f:f",
        "{ out: frame }",
        "",
    );
    assert!(
        err.contains("column `when` is timestamp[") && err.contains("cast it first"),
        "{err}"
    );
    let err = failure(
        "import numpy as np\ndef f(records):\n    return np.array([2**64 - 1], dtype=np.uint64)\n",
        "f:f",
        "{ out: int_array }",
        "",
    );
    assert!(err.contains("a value is past int64's range"), "{err}");
    let err = failure(
        "def f(records):\n    return {'name': 'hello'}\n",
        "f:f",
        "{ out: table }",
        "",
    );
    assert!(err.contains("column `name` is a str, not a list"), "{err}");
}

#[test]
fn a_pandas_index_with_meaning_is_kept_as_columns() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "f.py",
        "def f(records):\n    return records.to_pandas().groupby('name', dropna=False)['count'].sum().to_frame()\n",
    );
    let report = run_yaml(
        dir.path(),
        &one_call(dir.path(), "f:f", "{ out: frame }", ""),
    )
    .unwrap();
    let out = frame_of(&report, "call", "out");
    assert_eq!(
        out.get_column_names()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["count", "name"]
    );
    assert_eq!(out.height(), 3);
}

#[test]
fn a_thread_left_running_does_not_hold_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "f.py",
        "import threading, time\ndef f(records):\n    threading.Thread(target=time.sleep, args=(600,)).start()\n    return 1\n",
    );
    let start = std::time::Instant::now();
    run_yaml(
        dir.path(),
        &one_call(dir.path(), "f:f", "{ out: json }", ""),
    )
    .unwrap();
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
}

#[test]
fn the_module_keyed_is_the_module_python_imports() {
    let dir = tempfile::tempdir().unwrap();
    // Python imports the package, not the module beside it; its parent
    // package's __init__ runs too, so both are in the key.
    std::fs::create_dir_all(dir.path().join("mymod")).unwrap();
    write(
        dir.path(),
        "mymod.py",
        "def f(records):\n    return 'module'\n",
    );
    write(dir.path(), "mymod/__init__.py", "WHO = 'package'\n");
    write(
        dir.path(),
        "mymod/sub.py",
        "from mymod import WHO\ndef f(records):\n    return WHO\n",
    );
    let yaml = one_call(dir.path(), "mymod.sub:f", "{ out: json }", "");
    let value = |report: &RunReport| {
        pipe_core::JsonDoc::load(&report.stage("call").unwrap().outputs["out"])
            .unwrap()
            .0
    };
    assert_eq!(value(&run_yaml(dir.path(), &yaml).unwrap()), "package");
    write(dir.path(), "mymod/__init__.py", "WHO = 'edited'\n");
    assert_eq!(value(&run_yaml(dir.path(), &yaml).unwrap()), "edited");
    let yaml = one_call(dir.path(), "mymod:WHO", "{ out: json }", "");
    let err = run_yaml(dir.path(), &yaml).unwrap_err();
    assert!(
        err.contains("`mymod.WHO` is a str, not a function"),
        "{err}"
    );
    // A module named like one of the standard library's: not silently the other one.
    write(dir.path(), "json.py", "def f(records):\n    return 1\n");
    let err = run_yaml(
        dir.path(),
        &one_call(dir.path(), "json:f", "{ out: json }", ""),
    )
    .unwrap_err();
    assert!(err.contains("rename your module"), "{err}");
}

#[test]
fn a_worker_that_ends_without_its_outputs_is_named() {
    let err = failure(
        "import os\ndef f(records):\n    os._exit(0)\n",
        "f:f",
        "{ out: json }",
        "",
    );
    assert!(err.contains("exited without writing its outputs"), "{err}");
    let err = failure(
        "import ctypes\ndef f(records):\n    ctypes.string_at(0)\n",
        "f:f",
        "{ out: json }",
        "",
    );
    assert!(err.contains("killed by signal 11 (SIGSEGV)"), "{err}");
    assert!(
        err.contains("Fatal Python error: Segmentation fault"),
        "{err}"
    );
    // Keywords and non-ASCII names cannot be keyword arguments.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f.py", "def f(records):\n    return 1\n");
    for port in ["class", "ﬁle"] {
        let err = pipeline(
            dir.path(),
            &one_call(dir.path(), "f:f", &format!("{{ {port}: json }}"), ""),
        )
        .unwrap_err();
        assert!(err.contains("is not a Python identifier"), "{port}: {err}");
    }
}
