//! A Python stage in a whole pipeline, through the `pipe` binary: the
//! example's cleaning function (pipelines/python/cleaning.py) between raw
//! records and `vectorize`, trained and scored on tests/data/raw; cached
//! like any stage, and rerun when its module changes.

use pipe_test_support::Scratch;

#[test]
fn a_python_stage_cleans_the_records_a_pipeline_trains_and_scores_on() {
    let s = Scratch::tiny_python();
    let first = s.pipe(&["run", "tiny_python.yaml"]).ok();
    assert!(
        first.ran().contains(&"clean".to_string()),
        "{}",
        first.stdout()
    );
    let submission = std::fs::read_to_string(s.path("out/submission.csv")).unwrap();
    let test_records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(s.path("data/raw/test.json")).unwrap()).unwrap();
    // One row per test record the training labels know, and a header.
    let rows = submission.lines().count() - 1;
    assert!(rows > 100 && rows <= test_records.len(), "{rows} rows");

    let again = s.pipe(&["run", "tiny_python.yaml"]).ok();
    assert!(again.ran().is_empty(), "{}", again.stdout());

    // An edit that changes what the function returns reruns it and what
    // reads its output; the records it reads stay cached.
    let module = s.path("python/cleaning.py");
    let source = std::fs::read_to_string(&module).unwrap();
    assert!(
        source.contains("texts.str.lower()"),
        "the example changed: {source}"
    );
    std::fs::write(
        &module,
        source.replace("texts.str.lower()", "texts.str.upper()"),
    )
    .unwrap();
    let edited = s.pipe(&["run", "tiny_python.yaml"]).ok();
    assert_eq!(
        edited.outcome("clean").as_deref(),
        Some("ran"),
        "{}",
        edited.stdout()
    );
    assert_eq!(edited.outcome("train_records").as_deref(), Some("cached"));
    assert_eq!(edited.outcome("vectorize").as_deref(), Some("ran"));

    // A comment alone reruns the function (its source is in the key); its
    // output is the same, so nothing after it reruns.
    std::fs::write(
        &module,
        format!(
            "{}\n# a comment\n",
            std::fs::read_to_string(&module).unwrap()
        ),
    )
    .unwrap();
    let commented = s.pipe(&["run", "tiny_python.yaml"]).ok();
    assert_eq!(
        commented.ran(),
        vec!["clean".to_string()],
        "{}",
        commented.stdout()
    );
}
