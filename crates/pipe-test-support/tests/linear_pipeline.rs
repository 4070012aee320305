//! `pipelines/tfidf.yaml` through the `pipe` binary on tiny data: the
//! `tfidf_linear` model goes through the same predict, submission and
//! evaluate stages as the LSTM, and `--only predict` reruns on the cached model.

use pipe_test_support::{repo_root, Scratch};

fn tiny_tfidf() -> Scratch {
    let s = Scratch::tiny();
    let yaml = std::fs::read_to_string(repo_root().join("pipelines/tfidf.yaml"))
        .unwrap()
        .replace("dir: data/wordnet", "dir: data");
    s.write("tfidf.yaml", &yaml);
    s
}

#[test]
fn tfidf_linear_predicts_through_the_shared_stages() {
    let s = tiny_tfidf();
    let run = s.pipe(&["run", "tfidf.yaml"]).ok();
    assert_eq!(
        run.ran(),
        [
            "load",
            "tfidf",
            "test_tensors",
            "predict",
            "submission",
            "evaluate",
            "export_evaluation"
        ],
        "{}",
        run.stdout()
    );
    let csv = std::fs::read_to_string(s.path("out/tfidf/submission.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some(",Id,Category"));
    assert_eq!(csv.lines().count(), 61);
    let metrics: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.path("out/tfidf/evaluation/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["rows"], 60);
    assert!(metrics["accuracy"].as_f64().unwrap() > 0.0, "{metrics}");

    let again = s
        .pipe(&[
            "run",
            "tfidf.yaml",
            "--only",
            "predict",
            "--set",
            "predict.top_k=3",
        ])
        .ok();
    assert_eq!(again.ran(), ["predict"], "{}", again.stdout());
    let bad = s.pipe(&["run", "tfidf.yaml", "--set", "tfidf.c=-1"]);
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr());
    assert!(
        bad.stderr().contains("c must be a positive number"),
        "{}",
        bad.stderr()
    );
}
