//! End-to-end tests of the `pipe` binary on the toy stages: caching, the
//! run options, status, dag, stages, gc, failures, crashes and the lock.

use pipe_test_support::Scratch;
// Linked for its stage kinds, as in `pipe-testing`.
use pipe_toy as _;

const TOY: &str = "
stages:
  numbers:
    kind: toy_numbers
    count: 10
  scaled:
    kind: toy_scale
    inputs: { values: numbers.values }
    factor: 3
  total:
    kind: toy_sum
    inputs: { values: scaled.values }
  report:
    kind: export
    dir: out
    inputs: { json: total.total }
";

fn toy() -> Scratch {
    let s = Scratch::new().lab();
    s.write("p.yaml", TOY);
    s
}

fn total(s: &Scratch) -> i64 {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("out/metrics.json")).unwrap()).unwrap();
    doc["total"].as_i64().unwrap()
}

#[test]
fn second_run_runs_nothing() {
    let s = toy();
    let first = s.pipe(&["run", "p.yaml"]).ok();
    assert_eq!(first.ran(), ["numbers", "scaled", "total", "report"]);
    assert_eq!(total(&s), 135);
    let second = s.pipe(&["run", "p.yaml"]).ok();
    assert!(second.ran().is_empty(), "{}", second.stdout());
    assert_eq!(second.outcome("total").as_deref(), Some("cached"));
    // A published file that went missing is written again from the cache.
    std::fs::remove_file(s.path("out/metrics.json")).unwrap();
    s.pipe(&["run", "p.yaml"]).ok();
    assert_eq!(total(&s), 135);
}

#[test]
fn a_config_change_reruns_that_stage_and_downstream_only() {
    let s = toy();
    s.pipe(&["run", "p.yaml"]).ok();
    let run = s.pipe(&["run", "p.yaml", "--set", "scaled.factor=4"]).ok();
    assert_eq!(run.ran(), ["scaled", "total", "report"]);
    assert_eq!(run.outcome("numbers").as_deref(), Some("cached"));
    assert_eq!(total(&s), 180);
    // Editing the YAML the same way hits the cache --set filled.
    s.write("p.yaml", &TOY.replace("factor: 3", "factor: 4"));
    assert!(s.pipe(&["run", "p.yaml"]).ok().ran().is_empty());
}

#[test]
fn only_from_force() {
    let s = toy();
    let e = s.pipe(&["run", "p.yaml", "--only", "total"]);
    assert_eq!(e.code(), Some(3));
    assert!(
        e.stderr().contains("stage `numbers` has no cached outputs"),
        "{}",
        e.stderr()
    );
    s.pipe(&["run", "p.yaml"]).ok();
    let only = s.pipe(&["run", "p.yaml", "--only", "total"]).ok();
    assert_eq!(only.ran(), ["total"]);
    assert_eq!(only.outcome("scaled").as_deref(), Some("restored"));
    let from = s.pipe(&["run", "p.yaml", "--from", "scaled"]).ok();
    assert_eq!(from.ran(), ["scaled", "total", "report"]);
    let force = s.pipe(&["run", "p.yaml", "--force"]).ok();
    assert_eq!(force.ran(), ["numbers", "scaled", "total", "report"]);
    let bad = s.pipe(&["run", "p.yaml", "--only", "totl"]);
    assert_eq!(bad.code(), Some(2));
    assert!(
        bad.stderr().contains("did you mean `total`"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn status_reports_fresh_stale_and_why() {
    let s = toy();
    let never = s.pipe(&["status", "p.yaml"]).ok();
    assert!(
        never.stdout().contains("numbers          never run"),
        "{}",
        never.stdout()
    );
    s.pipe(&["run", "p.yaml"]).ok();
    let fresh = s.pipe(&["status", "p.yaml"]).ok().stdout();
    assert_eq!(fresh.matches(" fresh").count(), 4, "{fresh}");
    let stale = s
        .pipe(&["status", "p.yaml", "--set", "scaled.factor=5"])
        .ok()
        .stdout();
    assert!(stale.contains("scaled           stale"), "{stale}");
    assert!(
        stale.contains("config `factor` changed from 3 to 5"),
        "{stale}"
    );
    assert!(stale.contains("upstream `scaled` is not fresh"), "{stale}");
}

#[test]
fn external_file_contents_are_part_of_the_key() {
    let s = Scratch::new().lab();
    s.write("lines.txt", "ab\ncde\n");
    s.write(
        "p.yaml",
        "stages:\n  lines:\n    kind: toy_line_lengths\n    path: lines.txt\n  total:\n    kind: toy_sum\n    inputs: { values: lines.values }\n",
    );
    s.pipe(&["run", "p.yaml"]).ok();
    assert!(s.pipe(&["run", "p.yaml"]).ok().ran().is_empty());
    s.write("lines.txt", "ab\ncdef\n");
    assert_eq!(s.pipe(&["run", "p.yaml"]).ok().ran(), ["lines", "total"]);
    let status = s.pipe(&["status", "p.yaml"]).ok().stdout();
    assert!(status.contains("fresh"), "{status}");
    std::fs::remove_file(s.path("lines.txt")).unwrap();
    let missing = s.pipe(&["run", "p.yaml"]);
    assert_eq!(missing.code(), Some(1));
    assert!(
        missing.stderr().contains("lines.txt"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn a_failing_stage_exits_non_zero_with_its_error_and_leaves_nothing() {
    let s = Scratch::new().lab();
    s.write("p.yaml", "stages:\n  numbers:\n    kind: toy_numbers\n  boom:\n    kind: toy_fail\n    message: the disk is on fire\n    inputs: { values: numbers.values }\n");
    let run = s.pipe(&["run", "p.yaml"]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("stage `boom` failed"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("the disk is on fire"),
        "{}",
        run.stderr()
    );
    let entries = std::fs::read_dir(s.path(".pipe/entries")).unwrap().count();
    assert_eq!(entries, 1, "only `numbers` has an entry");
    assert_eq!(
        std::fs::read_dir(s.path(".pipe/tmp")).unwrap().count(),
        0,
        "no temp dirs left"
    );
}

#[test]
fn a_crash_between_writes_leaves_no_valid_entry() {
    for point in ["after-outputs", "before-entry-rename"] {
        let s = toy();
        let crashed = s.pipe_env(&["run", "p.yaml"], &[("PIPE_FAULT", point)]);
        assert_ne!(
            crashed.code(),
            Some(0),
            "{point}: the process should have aborted"
        );
        assert!(
            crashed.stderr().contains(&format!("PIPE_FAULT={point}")),
            "{}",
            crashed.stderr()
        );
        // The first stage died mid-write: nothing of it may read as a result.
        assert_eq!(
            std::fs::read_dir(s.path(".pipe/entries")).unwrap().count(),
            0,
            "{point}"
        );
        let again = s.pipe(&["run", "p.yaml"]).ok();
        assert_eq!(
            again.ran(),
            ["numbers", "scaled", "total", "report"],
            "{point}"
        );
        assert_eq!(total(&s), 135);
        assert_eq!(
            std::fs::read_dir(s.path(".pipe/tmp")).unwrap().count(),
            0,
            "{point}: leftovers cleaned"
        );
    }
}

#[test]
fn a_corrupted_entry_is_reported_and_recomputed() {
    let s = toy();
    s.pipe(&["run", "p.yaml"]).ok();
    let mut corrupted = 0;
    for entry in std::fs::read_dir(s.path(".pipe/entries")).unwrap() {
        let file = entry.unwrap().path().join("outputs/total/doc.json");
        if file.exists() {
            std::fs::write(&file, br#"{"total":1}"#).unwrap();
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 1);
    let run = s.pipe(&["run", "p.yaml"]).ok();
    assert!(
        run.stderr().contains("total: cache entry is corrupt"),
        "{}",
        run.stderr()
    );
    assert_eq!(run.ran(), ["total"]);
    assert_eq!(total(&s), 135);
}

#[test]
fn a_second_pipe_waits_for_the_lock_then_gives_up() {
    let s = toy();
    s.pipe(&["run", "p.yaml"]).ok();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(s.path(".pipe/lock"))
        .unwrap();
    lock.lock().unwrap();
    let blocked = s.pipe(&["run", "p.yaml", "--lock-timeout", "1"]);
    assert_eq!(blocked.code(), Some(3));
    assert!(
        blocked.stderr().contains("waiting for the cache lock"),
        "{}",
        blocked.stderr()
    );
    assert!(
        blocked.stderr().contains("gave up after 1 s"),
        "{}",
        blocked.stderr()
    );
    lock.unlock().unwrap();
    s.pipe(&["run", "p.yaml", "--lock-timeout", "1"]).ok();
}

#[test]
fn invalid_pipelines_exit_2_with_a_position() {
    let s = Scratch::new().lab();
    s.write("p.yaml", "stages:\n  numbers:\n    kind: toy_numbrs\n");
    let run = s.pipe(&["run", "p.yaml"]);
    assert_eq!(run.code(), Some(2));
    assert!(run.stderr().contains("p.yaml:3:11: stage `numbers`: unknown stage kind `toy_numbrs`; did you mean `toy_numbers`?"), "{}", run.stderr());
    let missing = s.pipe(&["run", "nope.yaml"]);
    assert_eq!(missing.code(), Some(2));
    assert!(
        missing
            .stderr()
            .contains("nope.yaml: cannot read the pipeline"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn dag_in_three_formats() {
    let s = toy();
    let text = s.pipe(&["dag", "p.yaml"]).ok().stdout();
    assert!(
        text.contains("scaled (toy_scale)\n  values <- numbers.values"),
        "{text}"
    );
    let mermaid = s
        .pipe(&["dag", "p.yaml", "--format", "mermaid"])
        .ok()
        .stdout();
    assert!(
        mermaid.starts_with("flowchart LR")
            && mermaid.contains("numbers -- \"values → values\" --> scaled"),
        "{mermaid}"
    );
    let dot = s.pipe(&["dag", "p.yaml", "--format", "dot"]).ok().stdout();
    assert!(
        dot.starts_with("digraph pipeline") && dot.contains("\"scaled\" -> \"total\""),
        "{dot}"
    );
}

#[test]
fn stages_lists_every_kind_with_defaults() {
    let s = Scratch::new().lab();
    let listing = s.pipe(&["stages", "--json"]).ok().stdout();
    let kinds: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    let names: Vec<&str> = kinds.iter().map(|k| k["kind"].as_str().unwrap()).collect();
    for kind in [
        "load_artifacts",
        "to_tensors",
        "lstm_classifier",
        "gru_classifier",
        "train",
        "predict",
        "submission",
        "evaluate",
        "export",
        "tfidf_linear",
        "toy_numbers",
    ] {
        assert!(names.contains(&kind), "{kind} missing from {names:?}");
    }
    let train = kinds.iter().find(|k| k["kind"] == "train").unwrap();
    assert_eq!(train["config"]["epochs"], 15);
    assert_eq!(train["config"]["batch_size"], 32);
    let text = s.pipe(&["stages", "predict"]).ok().stdout();
    assert!(text.contains("batch_size: 256"), "{text}");
    // From a kind to its code in one hop.
    assert!(
        text.contains("defined at crates/pipe-predict/src/stages/predict.rs:"),
        "{text}"
    );
    let line: usize = text
        .split("predict.rs:")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let source = std::fs::read_to_string(
        pipe_test_support::repo_root().join("crates/pipe-predict/src/stages/predict.rs"),
    )
    .unwrap();
    // The attribute starts on that line (rustfmt may put its arguments on
    // the lines below).
    let attribute: String = source.lines().skip(line - 1).take(3).collect();
    assert!(
        attribute.starts_with("#[stage(") && attribute.contains("kind = \"predict\""),
        "line {line}: {attribute}"
    );
    assert_eq!(s.pipe(&["stages", "predictt"]).code(), Some(2));
}

/// The product binary carries no test scaffolding: no toy stage kinds, and
/// `PIPE_FAULT` (which makes `pipe-testing` abort at a crash point) does nothing.
#[test]
fn the_product_binary_has_no_test_scaffolding() {
    let s = Scratch::tiny();
    let listing = s.pipe(&["stages", "--json"]).ok().stdout();
    let kinds: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert!(kinds.iter().any(|k| k["kind"] == "train"), "{listing}");
    assert!(
        !kinds
            .iter()
            .any(|k| k["kind"].as_str().unwrap().starts_with("toy_")),
        "{listing}"
    );
    assert_eq!(s.pipe(&["stages", "toy_fail"]).code(), Some(2));
    let run = s
        .pipe_env(&["run", "tiny.yaml"], &[("PIPE_FAULT", "after-outputs")])
        .ok();
    assert!(!run.stderr().contains("PIPE_FAULT"), "{}", run.stderr());
    assert!(s.path("out/submission.csv").exists(), "{}", run.stdout());
}

/// Every kind `pipe stages` lists deserializes from a pipeline under its
/// listed name (the typetag name and the registry entry agree). Parsed here,
/// in this process, which links the same stage crates as `pipe-testing`:
/// a process per kind cost a second each for libtorch's start-up alone.
#[test]
fn every_registered_kind_loads_from_yaml() {
    let s = Scratch::new().lab();
    let listing = s.pipe(&["stages", "--json"]).ok().stdout();
    let kinds: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert!(kinds.len() > 20, "{listing}");
    for kind in kinds {
        let name = kind["kind"].as_str().unwrap();
        // Wiring every required input to a source of the right type is beyond
        // a generic test; the kind and its config are checked before wiring.
        let yaml = format!("stages:\n  x:\n    kind: {name}\n");
        let Err(err) = pipe::Pipeline::from_yaml_str("one.yaml", &yaml, &[]) else {
            continue;
        };
        let err = err.to_string();
        assert!(
            !err.contains("unknown stage kind") && !err.contains("unknown variant"),
            "{name}: {err}"
        );
    }
}

/// The pipelines the README lists load and validate as shipped (kinds,
/// settings, wiring), from any directory.
#[test]
#[ignore = "slow: one `pipe` process per shipped pipeline (CONTRIBUTING.md)"]
fn every_shipped_pipeline_is_valid() {
    let s = Scratch::new().lab();
    let dir = pipe_test_support::repo_root().join("pipelines");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let dag = s.pipe(&["dag", path.to_str().unwrap()]).ok().stdout();
            assert!(
                dag.contains("predict") || dag.contains("toy"),
                "{}: {dag}",
                path.display()
            );
            checked.push(path.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    checked.sort();
    assert!(
        checked.contains(&"auto.yaml".to_string()) && checked.contains(&"lstm.yaml".to_string()),
        "{checked:?}"
    );
}

#[test]
fn json_events_for_orchestrators() {
    let s = toy();
    let run = s.pipe(&["run", "p.yaml", "--json"]).ok();
    let events: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events
        .iter()
        .any(|e| e["event"] == "stage_started" && e["stage"] == "numbers"));
    assert!(events
        .iter()
        .any(|e| e["event"] == "stage_finished" && e["stage"] == "total"));
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["report"]["stages"].as_array().unwrap().len(), 4);
}

#[test]
fn gc_removes_unreferenced_entries() {
    let s = toy();
    s.pipe(&["run", "p.yaml"]).ok();
    s.write("p.yaml", &TOY.replace("factor: 3", "factor: 7"));
    s.pipe(&["run", "p.yaml"]).ok();
    let gc = s.pipe(&["gc"]).ok().stdout();
    assert!(gc.starts_with("removed 3 cache entries"), "{gc}");
    assert!(s.pipe(&["run", "p.yaml"]).ok().ran().is_empty());
}
