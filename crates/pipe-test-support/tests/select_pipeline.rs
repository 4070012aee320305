//! Model selection and ensembles through the `pipe` binary on tiny data:
//! `select` scores every candidate out of sample and keeps the best by
//! validation macro-F1, its model is scored by the shared `predict` stage
//! (and reloaded from the cache by `--only predict`), and `ensemble`
//! averages predict stages' probabilities with the weights it is given.

use pipe_test_support::{repo_root, Scratch};

fn tiny_select() -> Scratch {
    let s = Scratch::tiny();
    std::fs::copy(
        repo_root().join("tests/pipelines/tiny_select.yaml"),
        s.path("select.yaml"),
    )
    .unwrap();
    s
}

fn json(s: &Scratch, rel: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(s.path(rel)).unwrap()).unwrap()
}

#[test]
fn select_keeps_the_best_validated_model_and_predict_scores_it() {
    let s = tiny_select();
    let run = s.pipe(&["run", "select.yaml"]).ok();
    assert!(
        run.ran().contains(&"select".to_string()),
        "{}",
        run.stdout()
    );

    // Every candidate was scored, cheapest kind first; the table has each.
    let metrics = json(&s, "out/selection/metrics.json");
    let candidates = metrics["candidates"].as_array().unwrap();
    let names: Vec<&str> = candidates
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["chars", "nb", "words", "bag", "lstm"], "{metrics}");
    assert_eq!(
        metrics["validation"], "3 stratified folds",
        "400 rows are scored by folds"
    );
    assert_eq!(metrics["scored_rows"], 400, "every row is scored once");
    let table = std::fs::read_to_string(s.path("out/selection/selection.csv")).unwrap();
    assert_eq!(table.lines().count(), 1 + names.len(), "{table}");

    // The choice is the best validation macro-F1: the ensemble's or a single model's.
    let best_single = candidates
        .iter()
        .map(|c| c["macro_f1"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let chosen = metrics["chosen"].as_array().unwrap();
    let weights: f64 = chosen.iter().map(|c| c["weight"].as_f64().unwrap()).sum();
    assert!((weights - 1.0).abs() < 1e-5, "{metrics}");
    if chosen.len() > 1 {
        assert!(
            metrics["ensemble"]["macro_f1"].as_f64().unwrap() > best_single,
            "{metrics}"
        );
    } else {
        let name = chosen[0]["name"].as_str().unwrap();
        let f1 = candidates.iter().find(|c| c["name"] == name).unwrap()["macro_f1"]
            .as_f64()
            .unwrap();
        assert_eq!(f1, best_single, "{metrics}");
    }
    for c in candidates {
        let t = c["temperature"].as_f64().unwrap();
        assert!(t > 0.01 && t < 100.0, "a fitted temperature: {c}");
    }
    let csv = std::fs::read_to_string(s.path("out/submission.csv")).unwrap();
    assert_eq!(csv.lines().count(), 61);

    // The cached ensemble model loads back and scores the same rows the same way.
    let again = s
        .pipe(&["run", "select.yaml", "--only", "predict", "--force"])
        .ok();
    assert_eq!(again.ran(), ["predict"], "{}", again.stdout());
    assert_eq!(
        std::fs::read_to_string(s.path("out/submission.csv")).unwrap(),
        csv
    );
}

#[test]
fn ensemble_weights_decide_whose_probabilities_count() {
    let s = tiny_select();
    s.pipe(&["run", "select.yaml"]).ok();
    // Weight 0 on the selected model: the ensemble is the TF-IDF model.
    let tfidf = std::fs::read_to_string(s.path("out/submission_tfidf.csv")).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.path("out/submission_ensemble.csv")).unwrap(),
        tfidf
    );

    let bad = s.pipe(&["run", "select.yaml", "--set", "ensemble.weights=[1]"]);
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr());
    assert!(
        bad.stderr().contains("1 weights for 2 members"),
        "{}",
        bad.stderr()
    );
    let unknown = s.pipe(&["run", "select.yaml", "--set", "select.validation=sometimes"]);
    assert_eq!(unknown.code(), Some(2), "{}", unknown.stderr());
}

#[test]
fn a_spent_time_budget_skips_candidates_and_says_so() {
    let s = tiny_select();
    let run = s.pipe(&[
        "run",
        "select.yaml",
        "--set",
        "select.time_budget_seconds=0.000001",
    ]);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("every candidate was skipped: raise time_budget_seconds"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr()
            .contains("candidate `chars` skipped: the time budget is spent"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_hold_out_fit_that_filled_its_row_cap_is_kept_not_refit() {
    let s = tiny_select();
    let lstm = "{ kind: lstm_classifier, model: { embed_dim: 8, hidden_dim: 8 }, train: { epochs: 2, batch_size: 32, lr: 0.01 }";
    let chosen_refit = |max_rows: usize| {
        let candidates = format!("select.candidates={{ lstm: {lstm}, max_rows: {max_rows} }} }}");
        s.pipe(&[
            "run",
            "select.yaml",
            "--set",
            "select.validation={ holdout: 0.25 }",
            "--set",
            &candidates,
        ])
        .ok();
        let metrics = json(&s, "out/selection/metrics.json");
        assert_eq!(
            metrics["validation"], "a stratified 25% hold-out",
            "{metrics}"
        );
        assert_eq!(
            std::fs::read_to_string(s.path("out/submission.csv"))
                .unwrap()
                .lines()
                .count(),
            61
        );
        metrics["chosen"][0].clone()
    };
    // 300 training rows of 400: a cap of 100 is filled either way; one of 1000 is not.
    let capped = chosen_refit(100);
    assert_eq!(capped["refit"], false, "{capped}");
    assert!(
        capped["kept_because"]
            .as_str()
            .unwrap()
            .contains("max_rows cap of 100 rows"),
        "{capped}"
    );
    let uncapped = chosen_refit(1000);
    assert_eq!(
        uncapped["refit"], true,
        "a refit trains on 400 rows instead of 300: {uncapped}"
    );
}
