//! Unit tests of validation, keys, the cache and the runner, on two tiny stages.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::*;

thread_local! {
    /// Names of the stages that ran, in order, in this test alone: libtest
    /// runs each test on a thread of its own and the runner runs stages on
    /// the calling thread, so a test never sees the stages of the tests
    /// running beside it (as it would in a process-wide list).
    static RAN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn take_ran() -> Vec<String> {
    RAN.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TSource {
    value: i64,
    rate: f64,
}

#[stage(kind = "t_source", summary = "test source")]
impl Stage for TSource {
    fn inputs(&self) -> Vec<Port> {
        vec![]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::of::<JsonDoc>("out", "")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn run(&self, _: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        RAN.with(|r| r.borrow_mut().push(ctx.stage.to_string()));
        let mut out = Artifacts::new();
        out.insert("out", JsonDoc(json!({ "value": self.value })));
        Ok(out)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TAdd {
    add: i64,
    /// Multiply by zero: the same output whatever the input.
    zero: bool,
    /// Fail instead.
    fail: bool,
    /// Warn of this first.
    warn: Option<String>,
}

#[stage(kind = "t_add", summary = "test adder")]
impl Stage for TAdd {
    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::of::<JsonDoc>("in", ""),
            Port::optional_of::<JsonDoc>("extra", ""),
        ]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::of::<JsonDoc>("out", "")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        RAN.with(|r| r.borrow_mut().push(ctx.stage.to_string()));
        if self.fail {
            return Err(StageError::invalid("asked to fail"));
        }
        if let Some(text) = &self.warn {
            ctx.warn(text.clone());
        }
        let v = inputs.get::<JsonDoc>("in")?.0["value"]
            .as_i64()
            .unwrap_or(0);
        let v = if self.zero { 0 } else { v + self.add };
        let mut out = Artifacts::new();
        out.insert("out", JsonDoc(json!({ "value": v })));
        Ok(out)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TFiles {}

#[stage(kind = "t_files", summary = "takes files")]
impl Stage for TFiles {
    fn inputs(&self) -> Vec<Port> {
        vec![Port::of::<Files>("in", "")]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn run(&self, _: &Artifacts, _: &StageContext) -> Result<Artifacts, StageError> {
        Ok(Artifacts::new())
    }
}

const CHAIN: &str = "
stages:
  a:
    kind: t_source
    value: 1
    rate: 0.001
  b:
    kind: t_add
    inputs: { in: a.out }
    add: 10
  c:
    kind: t_add
    inputs: { in: b.out }
    add: 100
";

fn pipeline(yaml: &str, overrides: &[&str]) -> Pipeline {
    let overrides: Vec<Override> = overrides
        .iter()
        .map(|o| Override::parse(o).unwrap())
        .collect();
    Pipeline::from_yaml_str("test.yaml", yaml, &overrides).unwrap_or_else(|e| panic!("{e}"))
}

fn error(yaml: &str) -> String {
    Pipeline::from_yaml_str("test.yaml", yaml, &[])
        .unwrap_err()
        .to_string()
}

fn run_with(p: &Pipeline, cache: &Cache, options: RunOptions) -> Result<RunReport, RunError> {
    take_ran();
    run(p, cache, &options, &NullSink)
}

fn output_value(cache: &Cache, report: &RunReport, stage: &str) -> i64 {
    let dir = &report.stage(stage).unwrap().outputs["out"];
    let _ = cache;
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("doc.json")).unwrap()).unwrap();
    doc["value"].as_i64().unwrap()
}

#[test]
fn canonical_config_ignores_key_order_and_number_spelling() {
    let a = pipeline(
        "stages:\n  a:\n    kind: t_source\n    value: 3\n    rate: 1e-3\n",
        &[],
    );
    let b = pipeline(
        "stages:\n  a:\n    rate: 0.001\n    value: 3\n    kind: t_source\n",
        &[],
    );
    assert_eq!(a.stages[0].config, b.stages[0].config);
    // Defaults written out or left implicit are the same config.
    let c = pipeline(
        "stages:\n  a:\n    kind: t_source\n    value: 3\n    rate: 0.001\n",
        &[],
    );
    let d = pipeline(
        "stages:\n  a: { kind: t_source, value: 3, rate: 0.001 }\n",
        &[],
    );
    assert_eq!(c.stages[0].config, d.stages[0].config);
    let e = pipeline(
        "stages:\n  a:\n    kind: t_source\n    value: 4\n    rate: 0.001\n",
        &[],
    );
    assert_ne!(a.stages[0].config, e.stages[0].config);
}

#[test]
fn second_run_runs_nothing_and_a_config_change_reruns_downstream_only() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let p = pipeline(CHAIN, &[]);
    run_with(&p, &cache, RunOptions::default()).unwrap();
    assert_eq!(take_ran(), vec!["a", "b", "c"]);
    let report = run_with(&p, &cache, RunOptions::default()).unwrap();
    assert!(take_ran().is_empty());
    assert!(report
        .stages
        .iter()
        .all(|s| s.outcome == StageOutcome::Cached));
    assert_eq!(output_value(&cache, &report, "c"), 111);

    // Same values, different spelling and order: still cached.
    let respelled = CHAIN.replace("value: 1\n    rate: 0.001", "rate: 1e-3\n    value: 1");
    run_with(&pipeline(&respelled, &[]), &cache, RunOptions::default()).unwrap();
    assert!(take_ran().is_empty());

    let changed = pipeline(CHAIN, &["b.add=20"]);
    let report = run_with(&changed, &cache, RunOptions::default()).unwrap();
    assert_eq!(take_ran(), vec!["b", "c"]);
    assert_eq!(output_value(&cache, &report, "c"), 121);
}

#[test]
fn set_changes_the_key_exactly_like_editing_the_yaml() {
    let edited = pipeline(&CHAIN.replace("add: 10", "add: 20"), &[]);
    let overridden = pipeline(CHAIN, &["b.add=20"]);
    assert_eq!(edited.stages[1].config, overridden.stages[1].config);
    let e = Pipeline::from_yaml_str("test.yaml", CHAIN, &[Override::parse("x.add=1").unwrap()])
        .unwrap_err();
    assert!(e.to_string().contains("no stage named `x`"), "{e}");
    let e = Pipeline::from_yaml_str("test.yaml", CHAIN, &[Override::parse("b.ad=1").unwrap()])
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown field `ad`")
            && e.to_string().contains("did you mean `add`"),
        "{e}"
    );
    assert!(Override::parse("novalue").is_err());
}

#[test]
fn identical_outputs_do_not_invalidate_downstream() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let yaml = CHAIN.replace("add: 10\n", "add: 10\n    zero: true\n");
    run_with(&pipeline(&yaml, &[]), &cache, RunOptions::default()).unwrap();
    take_ran();
    // a changes, b still outputs 0, so c is not rerun.
    run_with(
        &pipeline(&yaml, &["a.value=5"]),
        &cache,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(take_ran(), vec!["a", "b"]);
}

#[test]
fn only_from_and_force() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let p = pipeline(CHAIN, &[]);
    // --only before anything is cached: a clear error naming what to run.
    let e = run_with(
        &p,
        &cache,
        RunOptions {
            only: vec!["c".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("stage `a` has no cached outputs"),
        "{e}"
    );
    assert!(e.to_string().contains("--only a"), "{e}");

    run_with(&p, &cache, RunOptions::default()).unwrap();
    let report = run_with(
        &p,
        &cache,
        RunOptions {
            only: vec!["b".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(take_ran(), vec!["b"]);
    assert_eq!(report.stage("a").unwrap().outcome, StageOutcome::Restored);
    assert!(
        report.stage("c").is_none(),
        "downstream of --only is not touched"
    );

    run_with(
        &p,
        &cache,
        RunOptions {
            from: Some("b".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(take_ran(), vec!["b", "c"]);

    run_with(
        &p,
        &cache,
        RunOptions {
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(take_ran(), vec!["a", "b", "c"]);

    // --only with a stale upstream: refuses rather than use outputs of an old config.
    let changed = pipeline(CHAIN, &["a.value=2"]);
    let e = run_with(
        &changed,
        &cache,
        RunOptions {
            only: vec!["b".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("stage `a` has no cached outputs"),
        "{e}"
    );

    let e = run_with(
        &p,
        &cache,
        RunOptions {
            only: vec!["zz".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("no stage named `zz`"), "{e}");
}

#[test]
fn a_corrupted_entry_is_detected_and_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let p = pipeline(CHAIN, &[]);
    let report = run_with(&p, &cache, RunOptions::default()).unwrap();
    let file = report.stage("b").unwrap().outputs["out"].join("doc.json");
    std::fs::write(&file, br#"{"value":999}"#).unwrap();
    let events = RecordingSink::default();
    take_ran();
    let report = run(&p, &cache, &RunOptions::default(), &events).unwrap();
    assert_eq!(
        take_ran(),
        vec!["b"],
        "only the corrupt stage reruns; its output is the same, so c stays cached"
    );
    assert_eq!(output_value(&cache, &report, "c"), 111);
    assert!(events
        .events
        .borrow()
        .iter()
        .any(|e| matches!(e, Event::CacheCorrupt { stage, .. } if stage == "b")));
}

#[test]
fn an_interrupted_write_leaves_no_valid_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let key = StageKey {
        kind: "t_source".into(),
        code_version: 1,
        build: BUILD_ID.into(),
        config: json!({}),
        inputs: BTreeMap::new(),
        files: BTreeMap::new(),
        env: BTreeMap::new(),
    };
    let hash = key.hash();
    // Crash after writing outputs, before the commit: nothing in entries/.
    {
        let pending = cache.begin(&hash).unwrap();
        std::fs::write(pending.output_dir("out").unwrap().join("doc.json"), b"{}").unwrap();
    }
    assert!(matches!(cache.lookup(&hash).unwrap(), Lookup::Missing));
    // An entry directory without its record (as a crash between a copy and the record would leave).
    let entry = dir
        .path()
        .join("entries")
        .join(&hash)
        .join("outputs")
        .join("out");
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("doc.json"), b"{}").unwrap();
    assert!(matches!(cache.lookup(&hash).unwrap(), Lookup::Corrupt(_)));
    assert!(
        matches!(cache.lookup(&hash).unwrap(), Lookup::Missing),
        "the invalid entry was removed"
    );
    // A record for another key is not accepted either.
    let pending = cache.begin(&hash).unwrap();
    pending.output_dir("out").unwrap();
    let record = pending
        .commit(
            &key,
            &BTreeMap::from([("out".to_string(), "json".to_string())]),
            0.0,
            Vec::new(),
        )
        .unwrap();
    assert_eq!(record.key_hash, hash);
    assert!(matches!(cache.lookup(&hash).unwrap(), Lookup::Valid(_)));
}

#[test]
fn status_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let p = pipeline(CHAIN, &[]);
    let states = status(&p, &cache, "cpu", Duration::from_secs(600), &NullSink).unwrap();
    assert!(states.iter().all(|(_, f)| *f == Freshness::NeverRun));
    run_with(&p, &cache, RunOptions::default()).unwrap();
    assert!(
        status(&p, &cache, "cpu", Duration::from_secs(600), &NullSink)
            .unwrap()
            .iter()
            .all(|(_, f)| *f == Freshness::Fresh)
    );
    let changed = pipeline(CHAIN, &["b.add=11"]);
    let states = status(&changed, &cache, "cpu", Duration::from_secs(600), &NullSink).unwrap();
    assert_eq!(states[0].1, Freshness::Fresh);
    assert_eq!(
        states[1].1,
        Freshness::Stale {
            reasons: vec!["config `add` changed from 10 to 11".into()]
        }
    );
    match &states[2].1 {
        Freshness::Stale { reasons } => assert!(
            reasons.contains(&"upstream `b` is not fresh".to_string()),
            "{reasons:?}"
        ),
        other => panic!("{other:?}"),
    }
    let seeded = Pipeline {
        seed: 7,
        ..pipeline(CHAIN, &[])
    };
    let states = status(&seeded, &cache, "cpu", Duration::from_secs(600), &NullSink).unwrap();
    assert_eq!(
        states[0].1,
        Freshness::Stale {
            reasons: vec!["seed changed from `42` to `7`".into()]
        }
    );
}

#[test]
fn gc_keeps_what_runs_reference() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, CHAIN).unwrap();
    let p = Pipeline::load(&file, &[]).unwrap();
    run_with(&p, &cache, RunOptions::default()).unwrap();
    let p2 = Pipeline::load(&file, &[Override::parse("b.add=5").unwrap()]).unwrap();
    run_with(&p2, &cache, RunOptions::default()).unwrap();
    // The first run's b and c are no longer referenced.
    let dry = cache.gc(true).unwrap();
    assert_eq!(dry.entries.len(), 2);
    assert_eq!(
        cache.gc(false).unwrap(),
        dry,
        "a dry run lists what a real one removes"
    );
    run_with(&p2, &cache, RunOptions::default()).unwrap();
    assert!(take_ran().is_empty(), "gc kept the live entries");
}

/// The record names the pipeline by its absolute path: gc from any working
/// directory (here, with no file of that relative name) keeps its entries,
/// and removes them once the file is gone.
#[test]
fn gc_keeps_entries_of_pipelines_that_exist_whatever_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let sub = dir.path().join("pipelines");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("p.yaml");
    std::fs::write(&file, CHAIN).unwrap();
    let p = Pipeline::load(&file, &[]).unwrap();
    assert!(p.path.as_ref().is_some_and(|path| path.is_absolute()));
    run_with(&p, &cache, RunOptions::default()).unwrap();
    let record = cache.run_record(&p.record_id());
    assert_eq!(
        record.path.as_deref(),
        Some(file.canonicalize().unwrap().as_path())
    );
    assert!(
        cache.gc(false).unwrap().entries.is_empty(),
        "an existing pipeline's entries were removed"
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        cache.gc(false).unwrap().entries.len(),
        3,
        "a deleted pipeline's entries stay"
    );
}

#[test]
fn validation_errors_name_file_line_and_column() {
    let cases: &[(&str, &[&str])] = &[
        (
            "stages:\n  a:\n    kind: t_sourse\n",
            &["test.yaml:3:11", "unknown stage kind `t_sourse`", "did you mean `t_source`?", "known kinds:", "t_add"],
        ),
        ("stages:\n  a:\n    kind: t_source\n    valeu: 1\n", &["test.yaml:4:12", "unknown field `valeu`", "did you mean `value`"]),
        ("stages:\n  a:\n    kind: t_source\n    value: abc\n", &["test.yaml:4:12", "invalid type"]),
        ("stages:\n  b:\n    kind: t_add\n", &["test.yaml:3:11", "required input `in` (json) is not wired"]),
        ("stages:\n  b:\n    kind: t_add\n    inputs: { in: x.out }\n", &["test.yaml:4:13", "refers to stage `x`, which does not exist"]),
        (
            "stages:\n  a: { kind: t_source }\n  b:\n    kind: t_add\n    inputs: { in: a.outt }\n",
            &["test.yaml:5:13", "has no output `outt`", "did you mean `out`", "its outputs: out (json)"],
        ),
        ("stages:\n  a: { kind: t_source }\n  b:\n    kind: t_add\n    inputs: { inn: a.out }\n", &["has no input `inn`", "did you mean `in`"]),
        (
            "stages:\n  b:\n    kind: t_add\n    inputs: { in: c.out }\n  c:\n    kind: t_add\n    inputs: { in: b.out }\n",
            &["test.yaml:6:11", "cycle: c -> b -> c"],
        ),
        ("stages:\n  a: { kind: t_source }\n  f:\n    kind: t_files\n    inputs: { in: a.out }\n", &["takes `files`, but `a.out` is `json`"]),
        ("stages:\n  a:\n    kind: t_source\n   value: 1\n", &["test.yaml"]),
        ("stagez: {}\n", &["test.yaml", "unknown field"]),
        ("stages: {}\n", &["no stages"]),
        ("stages:\n  a:\n    value: 1\n", &["has no `kind:`"]),
    ];
    for (yaml, parts) in cases {
        let message = error(yaml);
        for part in *parts {
            assert!(
                message.contains(part),
                "`{message}` should contain `{part}`"
            );
        }
    }
}

fn problem(yaml: &str) -> PipelineProblem {
    match Pipeline::from_yaml_str("test.yaml", yaml, &[]).unwrap_err() {
        PipelineError::Invalid { problem, .. } => *problem,
        other => panic!("not a problem in the file: {other}"),
    }
}

#[test]
fn each_validation_failure_is_a_variant_a_caller_can_match() {
    assert!(matches!(problem("stages: {}\n"), PipelineProblem::NoStages));
    assert!(
        matches!(problem("stages:\n  a:\n    kind: t_sourse\n"), PipelineProblem::UnknownKind { kind, .. } if kind == "t_sourse")
    );
    assert!(matches!(
        problem("stages:\n  b:\n    kind: t_add\n"),
        PipelineProblem::UnwiredInput { port, type_name: "json", .. } if port == "in"
    ));
    assert!(matches!(
        problem("stages:\n  a: { kind: t_source }\n  f:\n    kind: t_files\n    inputs: { in: a.out }\n"),
        PipelineProblem::TypeMismatch { takes: "files", is: "json", .. }
    ));
    match problem("stages:\n  b:\n    kind: t_add\n    inputs: { in: c.out }\n  c:\n    kind: t_add\n    inputs: { in: b.out }\n") {
        PipelineProblem::Cycle(path) => assert_eq!(path, ["c", "b", "c"]),
        other => panic!("{other}"),
    }
    assert!(
        matches!(problem("stages:\n  a.b: { kind: t_source }\n"), PipelineProblem::BadStageName(name) if name == "a.b")
    );
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TTyped {
    /// Panic instead of running.
    panic: bool,
    /// Return an output the stage does not declare.
    undeclared: bool,
}

impl TTyped {
    const IN: PortOf<JsonDoc> = PortOf::new("in", "a value");
    const OUT: PortOf<JsonDoc> = PortOf::new("out", "the value doubled");
}

#[stage(kind = "t_typed", summary = "ports declared once")]
impl Stage for TTyped {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::IN.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::OUT.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn run(&self, inputs: &Artifacts, _: &StageContext) -> Result<Artifacts, StageError> {
        assert!(!self.panic, "asked to panic");
        let v = inputs.read(&Self::IN)?.0["value"].as_i64().unwrap_or(0);
        let mut out = Artifacts::new();
        out.put(&Self::OUT, JsonDoc(json!({ "value": 2 * v })));
        if self.undeclared {
            out.insert("extra", JsonDoc(json!(null)));
        }
        Ok(out)
    }
}

#[test]
fn a_port_declared_once_lists_reads_and_writes_under_one_name() {
    assert_eq!(TTyped::IN.port(), Port::of::<JsonDoc>("in", "a value"));
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let p = pipeline("stages:\n  a: { kind: t_source, value: 21 }\n  t:\n    kind: t_typed\n    inputs: { in: a.out }\n", &[]);
    let report = run_with(&p, &cache, RunOptions::default()).unwrap();
    assert_eq!(output_value(&cache, &report, "t"), 42);
}

#[test]
fn a_panic_and_an_undeclared_output_are_typed_failures() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let yaml = |setting: &str| {
        format!("stages:\n  a: {{ kind: t_source }}\n  t:\n    kind: t_typed\n    {setting}: true\n    inputs: {{ in: a.out }}\n")
    };
    match run_with(
        &pipeline(&yaml("panic"), &[]),
        &cache,
        RunOptions::default(),
    )
    .unwrap_err()
    {
        RunError::Stage {
            source: StageError::Panicked(message),
            ..
        } => assert!(message.contains("asked to panic"), "{message}"),
        other => panic!("{other}"),
    }
    match run_with(
        &pipeline(&yaml("undeclared"), &[]),
        &cache,
        RunOptions::default(),
    )
    .unwrap_err()
    {
        RunError::Output {
            problem: OutputProblem::Undeclared(port),
            ..
        } => assert_eq!(port, "extra"),
        other => panic!("{other}"),
    }
}

/// A failed run is remembered with the stage, its config and error, and
/// only the stages it reached; each run joins a bounded history saying what
/// it computed, and a run that computed nothing new adds no entry.
#[test]
fn the_run_record_keeps_failures_and_a_bounded_history() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let history = |p: &Pipeline| cache.run_record(&p.record_id()).history;
    let failing = pipeline(CHAIN, &["c.fail=true"]);
    let error = run_with(&failing, &cache, RunOptions::default()).unwrap_err();
    assert!(error.to_string().contains("`c`"), "{error}");
    let runs = history(&failing);
    assert_eq!(runs.len(), 1);
    let failure = runs[0].failed.as_ref().expect("the failure");
    assert_eq!(failure.stage, "c");
    assert!(failure.error.contains("asked to fail"), "{failure:?}");
    assert_eq!(failure.config["fail"], true, "the config it failed with");
    assert!(failure.key_hash.is_some());
    assert!(
        runs[0].stages["a"].ran && runs[0].stages["b"].ran && !runs[0].stages.contains_key("c")
    );

    let good = pipeline(CHAIN, &[]);
    run_with(&good, &cache, RunOptions::default()).unwrap();
    let last = history(&good).pop().unwrap();
    assert_eq!(last.failed, None);
    assert!(!last.stages["a"].ran && !last.stages["b"].ran && last.stages["c"].ran);

    // A middle stage fails: the run lists neither it nor c, whose key
    // in the record is the last success's.
    let middle = pipeline(CHAIN, &["b.fail=true"]);
    run_with(&middle, &cache, RunOptions::default()).unwrap_err();
    let last = history(&middle).pop().unwrap();
    assert_eq!(last.failed.as_ref().map(|f| f.stage.as_str()), Some("b"));
    assert_eq!(last.stages.keys().collect::<Vec<_>>(), ["a"]);

    // Reusing everything repeats the earlier good run: it moves to the end
    // (after the middle failure) rather than being listed twice.
    run_with(&good, &cache, RunOptions::default()).unwrap();
    let runs = history(&good);
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[1].failed.as_ref().map(|f| f.stage.as_str()), Some("b"));
    assert!(runs[2].failed.is_none() && runs[2].stages.len() == 3);
    run_with(&good, &cache, RunOptions::default()).unwrap();
    assert_eq!(
        history(&good).len(),
        3,
        "a run that changed nothing added an entry"
    );

    for add in 0..crate::RUN_HISTORY + 3 {
        let p = pipeline(CHAIN, &[&format!("c.add={add}")]);
        run_with(&p, &cache, RunOptions::default()).unwrap();
    }
    let runs = history(&good);
    assert_eq!(runs.len(), crate::RUN_HISTORY);
    assert!(
        runs.iter().all(|r| r.failed.is_none()),
        "the oldest runs went first"
    );
}

/// What a stage warned of is kept with its result, and still there when
/// the result is reused.
#[test]
fn a_stage_s_warnings_are_kept_with_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let p = pipeline(CHAIN, &["b.warn=rows were dropped"]);
    let sink = RecordingSink::default();
    run(&p, &cache, &RunOptions::default(), &sink).unwrap();
    assert!(
        sink.events
            .borrow()
            .iter()
            .any(|e| matches!(e, Event::Message { text, .. } if text == "rows were dropped")),
        "the warning still reaches the sink"
    );
    run_with(&p, &cache, RunOptions::default()).unwrap();
    let record = cache.run_record(&p.record_id());
    let entry = |stage: &str| match cache.lookup(&record.stages[stage].key_hash).unwrap() {
        Lookup::Valid(entry) => entry,
        other => panic!("{stage}: {other:?}"),
    };
    assert_eq!(entry("b").warnings, ["rows were dropped"]);
    assert!(entry("a").warnings.is_empty() && entry("c").warnings.is_empty());
}
