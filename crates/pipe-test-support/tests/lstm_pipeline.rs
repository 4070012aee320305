//! The real stages end to end, through the `pipe` binary, on a tiny copy of
//! the notebook's artifacts (tests/data/tiny, made by scripts/fixtures/make_artifacts.py).

use std::path::Path;

use pipe_test_support::{repo_root, Scratch};

fn tiny() -> Scratch {
    Scratch::tiny()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[test]
fn writes_submission_metrics_and_plots_then_reuses_the_cache() {
    let s = tiny();
    let first = s.pipe(&["run", "tiny.yaml"]).ok();
    assert_eq!(first.ran().len(), 10, "{}", first.stdout());

    let csv = std::fs::read_to_string(s.path("out/submission.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], ",Id,Category");
    assert_eq!(lines.len(), 61);
    let labels = json(&s.path("data/test_labels.json"));
    let classes: std::collections::HashSet<String> = json(&s.path("data/test_labels.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Category"].as_str().unwrap().to_string())
        .collect();
    assert!(!classes.is_empty());
    for (i, line) in lines[1..].iter().enumerate() {
        let cols: Vec<&str> = line.splitn(3, ',').collect();
        assert_eq!(cols[0], i.to_string());
        assert_eq!(cols[1], labels[i]["Id"].to_string());
        assert!(
            cols[2].contains('.'),
            "a lexicographer class like noun.act: {line}"
        );
    }
    let training = json(&s.path("out/training/metrics.json"));
    assert_eq!(training["epochs"].as_array().unwrap().len(), 2);
    assert!(training["epochs"][0]["loss"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(s.path("out/training/curve.svg"))
        .unwrap()
        .starts_with("<svg"));
    let evaluation = json(&s.path("out/evaluation/metrics.json"));
    assert_eq!(evaluation["rows"], 60);
    assert!((0.0..=1.0).contains(&evaluation["accuracy"].as_f64().unwrap()));
    assert!(
        s.path("out/evaluation/confusion.svg").exists()
            && s.path("out/evaluation/per_class.csv").exists()
    );

    let second = s.pipe(&["run", "tiny.yaml"]).ok();
    assert!(second.ran().is_empty(), "{}", second.stdout());
}

#[test]
fn a_predict_setting_reruns_only_predict_and_only_predict_runs_from_cache() {
    let s = tiny();
    s.pipe(&["run", "tiny.yaml"]).ok();
    let before = std::fs::read(s.path("out/submission.csv")).unwrap();
    // Another batch size gives the same predictions: what follows stays cached.
    let rerun = s
        .pipe(&["run", "tiny.yaml", "--set", "predict.batch_size=7"])
        .ok();
    assert_eq!(rerun.ran(), ["predict"], "{}", rerun.stdout());
    assert_eq!(std::fs::read(s.path("out/submission.csv")).unwrap(), before);
    let only = s.pipe(&["run", "tiny.yaml", "--only", "predict"]).ok();
    assert_eq!(only.ran(), ["predict"]);
    assert_eq!(only.outcome("train").as_deref(), Some("restored"));
    // A training setting retrains and predicts again.
    let retrain = s
        .pipe(&["run", "tiny.yaml", "--set", "train.epochs=1"])
        .ok();
    assert!(
        retrain
            .ran()
            .starts_with(&["train".to_string(), "predict".to_string()]),
        "{}",
        retrain.stdout()
    );
}

#[test]
fn swapping_the_model_kind_is_one_line() {
    let s = tiny();
    let yaml = std::fs::read_to_string(s.path("tiny.yaml"))
        .unwrap()
        .replace("kind: lstm_classifier", "kind: gru_classifier");
    s.write("gru.yaml", &yaml);
    let run = s.pipe(&["run", "gru.yaml"]).ok();
    assert!(run.ran().contains(&"model".to_string()));
    let entries = std::fs::read_dir(s.path(".pipe/entries")).unwrap();
    let has_gru = entries.flatten().any(|e| {
        let spec = e.path().join("outputs/model/spec.json");
        spec.exists() && std::fs::read_to_string(spec).unwrap().contains("\"gru\"")
    });
    assert!(has_gru);
}

#[test]
fn bad_artifacts_fail_with_the_file_named() {
    let s = tiny();
    std::fs::write(s.path("data/vocab_stoi.pkl"), b"\x80\x04\x95").unwrap();
    let run = s.pipe(&["run", "tiny.yaml"]);
    assert_eq!(run.code(), Some(1));
    assert!(
        run.stderr().contains("data/vocab_stoi.pkl"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("truncated"), "{}", run.stderr());
    assert!(
        !s.path("out/submission.csv").exists(),
        "nothing half-written"
    );
}

/// The notebook's own PyTorch class loads pipe's trained checkpoint with
/// `load_state_dict` and predicts the same classes. Needs the pinned venv
/// (scripts/test provides it through PIPE_VENV).
#[test]
fn pytorch_loads_the_checkpoint_and_agrees() {
    let Some(venv) = std::env::var_os("PIPE_VENV") else {
        eprintln!("skipped: PIPE_VENV is not set (run the suite with scripts/test)");
        return;
    };
    let s = tiny();
    // In float32 as the notebook's class computes: on a CPU with native
    // bfloat16, `precision: auto` trains and predicts in bfloat16, whose
    // rounding can flip a near-tie between two classes.
    let run = s
        .pipe(&[
            "run",
            "tiny.yaml",
            "--json",
            "--set",
            "model.precision=float32",
        ])
        .ok();
    let report = run
        .stdout()
        .lines()
        .last()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap();
    let stages = report["report"]["stages"].as_array().unwrap();
    let dir = |name: &str, port: &str| {
        stages.iter().find(|st| st["name"] == name).unwrap()["outputs"][port]
            .as_str()
            .unwrap()
            .to_string()
    };
    let checkpoint = dir("train", "model");
    let predictions = json(&Path::new(&dir("predict", "predictions")).join("table.json"));
    let ours: Vec<i64> = predictions["columns"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let out = std::process::Command::new(Path::new(&venv).join("bin/python"))
        .arg(repo_root().join("scripts/fixtures/check_state_dict.py"))
        .arg(s.path(&checkpoint))
        .arg(s.path("data/X_test_seq.npy"))
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn bag_of_ngrams_with_top_k_and_a_bucket_mismatch_caught() {
    let s = tiny();
    std::fs::copy(
        repo_root().join("tests/pipelines/tiny_bag.yaml"),
        s.path("bag.yaml"),
    )
    .unwrap();
    let run = s.pipe(&["run", "bag.yaml", "--json"]).ok();
    let report: serde_json::Value =
        serde_json::from_str(run.stdout().lines().last().unwrap()).unwrap();
    let predict = report["report"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["name"] == "predict")
        .unwrap();
    let table =
        json(&Path::new(predict["outputs"]["predictions"].as_str().unwrap()).join("table.json"));
    let names: Vec<&str> = table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["class_id", "label", "probability", "top_k"]);
    let top = &table["columns"][3]["values"][0];
    assert_eq!(top.as_array().unwrap().len(), 3);
    let p: Vec<f64> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(p[0] >= p[1] && p[1] >= p[2] && p[0] <= 1.0);
    assert_eq!(table["columns"][2]["values"][0].as_f64().unwrap(), p[0]);
    // More buckets in the data than rows in the model's embedding: a clear error, not a crash.
    let bad = s.pipe(&["run", "bag.yaml", "--set", "train_tensors.buckets=4096"]);
    assert_eq!(bad.code(), Some(1));
    assert!(
        bad.stderr().contains("beyond the model's"),
        "{}",
        bad.stderr()
    );

    // Character n-grams of each word join the bigrams in the same buckets:
    // longer rows, still within the model's embedding rows.
    let chars = [
        "--set",
        "train_tensors.char_ngrams=[2, 4]",
        "--set",
        "test_tensors.char_ngrams=[2, 4]",
    ];
    let run = s
        .pipe(&[&["run", "bag.yaml", "--json"][..], &chars[..]].concat())
        .ok();
    let report: serde_json::Value =
        serde_json::from_str(run.stdout().lines().last().unwrap()).unwrap();
    let stage = |name: &str| {
        report["report"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(stage("train_tensors")["outcome"], "ran");
    assert_eq!(
        stage("model")["outcome"],
        "cached",
        "the model's shape does not change"
    );
    let plain = s.pipe(&["run", "bag.yaml", "--json"]).ok();
    let plain: serde_json::Value =
        serde_json::from_str(plain.stdout().lines().last().unwrap()).unwrap();
    let width = |r: &serde_json::Value| {
        let st = r["report"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["name"] == "train_tensors")
            .unwrap();
        let dir = Path::new(st["outputs"]["tensors"].as_str().unwrap());
        <pipe::tensor::TokenTensors as pipe::core::LoadArtifact>::load(dir)
            .unwrap()
            .width()
    };
    assert!(
        width(&report) > width(&plain),
        "character n-grams add ids to each row"
    );
    let bad = s.pipe(&[
        "run",
        "bag.yaml",
        "--set",
        "train_tensors.char_ngrams=[4, 2]",
    ]);
    assert_eq!(bad.code(), Some(2));
    assert!(
        bad.stderr().contains("char_ngrams must be [min, max]"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn compare_puts_models_side_by_side() {
    let s = tiny();
    let yaml = std::fs::read_to_string(s.path("tiny.yaml")).unwrap();
    s.write(
        "gru.yaml",
        &yaml.replace("kind: lstm_classifier", "kind: gru_classifier"),
    );
    let table = s.pipe(&["compare", "tiny.yaml", "gru.yaml"]).ok().stdout();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[2].starts_with("| tiny.yaml | lstm_classifier | 1 | 0."),
        "{table}"
    );
    assert!(
        lines[3].starts_with("| gru.yaml | gru_classifier | 1 | 0."),
        "{table}"
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(
        &s.pipe(&["compare", "tiny.yaml", "gru.yaml", "--json"])
            .ok()
            .stdout(),
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["train_seconds"].as_f64().unwrap() > 0.0);
    assert!(rows[1]["predict_rows_per_second"].as_f64().unwrap() > 0.0);

    // Over seeds: one row per pipeline, the mean with a sample standard deviation.
    let rows: Vec<serde_json::Value> = serde_json::from_str(
        &s.pipe(&["compare", "tiny.yaml", "--seeds", "1,2,3", "--json"])
            .ok()
            .stdout(),
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["seeds"], serde_json::json!([1, 2, 3]));
    let sd = rows[0]["macro_f1_sd"].as_f64().unwrap();
    assert!((0.0..0.5).contains(&sd), "{}", rows[0]);
    let table = s
        .pipe(&[
            "compare",
            "tiny.yaml",
            "--seeds",
            "1,2",
            "--set",
            "train.epochs=1",
        ])
        .ok()
        .stdout();
    assert!(
        table.lines().nth(2).unwrap().contains(" | 2 | ") && table.contains(" ± "),
        "{table}"
    );
}

/// Flushing denormals to zero (the default) must not change what is learnt.
#[test]
fn flushing_denormals_leaves_results_unchanged() {
    let flushed = tiny();
    flushed.pipe(&["run", "tiny.yaml"]).ok();
    let kept = tiny();
    kept.pipe(&["--keep-denormals", "run", "tiny.yaml"]).ok();
    let a = json(&flushed.path("out/training/metrics.json"));
    let b = json(&kept.path("out/training/metrics.json"));
    assert_eq!(a["epochs"][1]["loss"], b["epochs"][1]["loss"]);
    assert_eq!(
        std::fs::read(flushed.path("out/submission.csv")).unwrap(),
        std::fs::read(kept.path("out/submission.csv")).unwrap()
    );
}

/// With `--json` the predict stage reports its pass (no model loading, no
/// output writing) as a metrics event: what `scripts/bench/bench.py` compares with
/// the notebook's own prediction timing.
#[test]
fn predict_reports_its_pass_as_a_metric() {
    let s = tiny();
    let run = s.pipe(&["run", "tiny.yaml", "--json"]).ok();
    let events: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pass = events
        .iter()
        .find(|e| e["event"] == "metrics" && e["stage"] == "predict")
        .expect("a predict metrics event")["values"]
        .clone();
    let test_rows = json(&s.path("data/test_mini.json"))
        .as_array()
        .unwrap()
        .len();
    assert_eq!(pass["rows"].as_u64(), Some(test_rows as u64));
    let (seconds, rate) = (
        pass["seconds"].as_f64().unwrap(),
        pass["rows_per_second"].as_f64().unwrap(),
    );
    assert!(
        seconds > 0.0 && (rate * seconds - test_rows as f64).abs() < 1e-6 * test_rows as f64,
        "{pass}"
    );
    let stage = events
        .iter()
        .find(|e| e["event"] == "stage_finished" && e["stage"] == "predict")
        .expect("predict finished");
    assert!(
        stage["seconds"].as_f64().unwrap() >= seconds,
        "the stage covers its pass"
    );
}
