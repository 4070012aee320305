//! Embedding `pipe` in larger jobs, on raw text (tests/data/raw, 600 WordNet
//! records): the library API's report and events, a classifier built from a
//! run scoring new texts and DataFrames, and the ETL example end to end.

use std::path::{Path, PathBuf};

use pipe::notebook::NotebookPorts;
use pipe::polars::prelude::*;
use pipe::train::Train;
use pipe::vectorize::Vectorize;
use pipe::{
    core::LoadArtifact, data::Table, Cache, Event, FrameColumns, Pipeline, RecordingSink,
    RunOptions, StageOutcome, TextClassifier,
};
use pipe_test_support::{pipe_bin, repo_root, Scratch};

fn test_records() -> Vec<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(repo_root().join("tests/data/raw/test.json")).unwrap())
        .unwrap()
}

/// Runs the pipeline in this process; paths in it are relative to `dir`.
fn run_in(dir: &Path, events: &RecordingSink) -> pipe::RunReport {
    pipe::runtime::runtime::set_threads(Some(1));
    let yaml = std::fs::read_to_string(dir.join("tiny_raw.yaml")).unwrap();
    let absolute = yaml
        .replace("data/raw/", &format!("{}/data/raw/", dir.display()))
        .replace("out/", &format!("{}/out/", dir.display()));
    let pipeline = Pipeline::from_yaml_str("tiny_raw.yaml", &absolute, &[]).unwrap();
    let cache = Cache::open(dir.join(".pipe")).unwrap();
    pipe::run(&pipeline, &cache, &RunOptions::default(), events).unwrap()
}

#[test]
fn library_api_reports_metrics_and_events_and_classifies_new_texts() {
    // The run in this process seeds and draws from torch's generator.
    let _torch = pipe::runtime::runtime::torch_global_lock();
    let s = Scratch::tiny_raw();
    let events = RecordingSink::default();
    let report = run_in(s.dir.path(), &events);
    assert!(report
        .stages
        .iter()
        .all(|st| st.outcome == StageOutcome::Ran));
    let accuracy = report.stage("evaluate").unwrap().metrics["metrics"]["accuracy"]
        .as_f64()
        .expect("accuracy in the report");
    assert!((0.0..=1.0).contains(&accuracy));
    let events = events.events.borrow();
    for stage in &report.stages {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::StageStarted { stage: s, .. } if *s == stage.name)),
            "{} started",
            stage.name
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::StageFinished { stage: s, .. } if *s == stage.name)),
            "{} finished",
            stage.name
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Progress { stage, .. } if stage == "train")),
        "training reports progress"
    );

    // Run again: every stage comes from the cache, and the metrics still do.
    let cached_events = RecordingSink::default();
    let again = run_in(s.dir.path(), &cached_events);
    assert!(again
        .stages
        .iter()
        .all(|st| st.outcome == StageOutcome::Cached));
    assert_eq!(
        again.stage("evaluate").unwrap().metrics["metrics"]["accuracy"].as_f64(),
        Some(accuracy)
    );
    assert!(cached_events
        .events
        .borrow()
        .iter()
        .any(|e| matches!(e, Event::StageCached { .. })));

    // A classifier from the run's outputs agrees with the pipeline's own predict stage.
    let classifier = TextClassifier::from_report(
        &again,
        Vectorize::VECTORIZER.of_stage("vectorize"),
        Train::MODEL_OUT.of_stage("train"),
        NotebookPorts::LABELS.of_stage("vectorize"),
    )
    .unwrap();
    let stage_predictions =
        Table::load(&again.stage("predict").unwrap().outputs["predictions"]).unwrap();
    let expected: Vec<String> = stage_predictions
        .column("label")
        .unwrap()
        .values
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // The test records the pipeline kept (those with a label seen in training).
    let kept = Table::load(&again.stage("vectorize").unwrap().outputs["test_records"]).unwrap();
    let texts: Vec<String> = kept
        .column("Text")
        .unwrap()
        .values
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(texts.len() > 100 && texts.len() <= test_records().len());
    let classified = classifier.classify(&texts).unwrap();
    let labels: Vec<String> = classified.iter().map(|c| c.label.clone()).collect();
    assert_eq!(
        labels, expected,
        "classify() and the predict stage disagree"
    );
    assert!(classified
        .iter()
        .all(|c| c.probability > 0.0 && c.probability <= 1.0));

    // A DataFrame in, the same frame out with the predicted class added, rows in order.
    let ids: Vec<i64> = (0..texts.len() as i64).rev().collect();
    let frame = df!("Id" => ids.clone(), "Text" => texts.clone()).unwrap();
    let scored = classifier
        .predict_frame(
            &frame,
            &FrameColumns {
                probability: Some("Probability".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        scored.get_column_names(),
        ["Id", "Text", "Category", "Probability"]
    );
    let got: Vec<String> = scored
        .column("Category")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        scored
            .column("Id")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .map(|v| v.unwrap())
            .collect::<Vec<_>>(),
        ids
    );

    let err = classifier
        .predict_frame(
            &frame,
            &FrameColumns {
                text: "Body".into(),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column `Body`") && err.contains("Id, Text"),
        "{err}"
    );
    let err = classifier
        .predict_frame(&scored, &FrameColumns::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already has a column `Category`"), "{err}");
    // An empty text is all padding: it still gets a class.
    assert_eq!(classifier.classify(&["", "???"]).unwrap().len(), 2);
}

fn example_bin() -> PathBuf {
    let bin = pipe_bin().parent().unwrap().join("examples/etl_job");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test` builds the examples",
        bin.display()
    );
    bin
}

#[test]
fn from_raw_exports_the_notebook_files_and_the_etl_example_scores_new_records() {
    let s = Scratch::tiny_raw();
    let run = s.pipe(&["run", "tiny_raw.yaml", "--json"]).ok();
    // Orchestrators read one JSON event per line; the last one carries the report.
    let events: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let report = &events.last().unwrap()["report"];
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    // The exec stage counted the submission's lines: a header and one per kept test record.
    let stages = report["stages"].as_array().unwrap();
    let output = |stage: &str, port: &str| {
        let st = stages.iter().find(|st| st["name"] == stage).unwrap();
        PathBuf::from(st["outputs"][port].as_str().unwrap())
    };
    let rows: usize = std::fs::read_to_string(
        s.dir
            .path()
            .join(output("count_rows", "count"))
            .join("rows.txt"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let kept = Table::load(&s.dir.path().join(output("vectorize", "test_ids")))
        .unwrap()
        .rows();
    assert_eq!(rows, kept + 1);
    assert!(
        stages.iter().find(|st| st["name"] == "evaluate").unwrap()["metrics"]["metrics"]
            ["accuracy"]
            .is_number()
    );
    // The exported artifacts are the notebook's own inputs.
    let exported =
        pipe::notebook::NotebookFiles::load(&s.path("out/artifacts"), &Default::default(), "Id")
            .unwrap();
    assert_eq!(exported.x_train.shape(), [600, 32]);
    assert_eq!(exported.vocab.tokens[..2], ["<PAD>", "<UNK>"]);
    assert!(s.path("out/artifacts/test_labels.json").exists());

    // New records: no label, an extra column that must come through untouched.
    let incoming: Vec<serde_json::Value> = test_records()
        .iter()
        .enumerate()
        .map(|(i, r)| serde_json::json!({ "Id": 5000 + i, "Text": r["Text"], "Source": format!("feed-{}", i % 3) }))
        .collect();
    s.write("incoming.json", &serde_json::to_string(&incoming).unwrap());
    let out = pipe_test_support::isolated(
        std::process::Command::new(example_bin()).current_dir(s.dir.path()),
    )
    .args([
        "--pipeline",
        "tiny_raw.yaml",
        "--records",
        "incoming.json",
        "--out",
        "out/etl/scored.parquet",
    ])
    .output()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "etl_job failed\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("0 stages ran"),
        "the trained pipeline is reused from the cache: {stderr}"
    );

    let scored = ParquetReader::new(std::fs::File::open(s.path("out/etl/scored.parquet")).unwrap())
        .finish()
        .unwrap();
    // The records' own columns (in the file's order), then the prediction's.
    assert_eq!(
        scored.get_column_names(),
        ["Id", "Source", "Text", "Category", "Probability"]
    );
    assert_eq!(scored.height(), incoming.len());
    let ids: Vec<i64> = scored
        .column("Id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(
        ids,
        (5000..5000 + incoming.len() as i64).collect::<Vec<_>>(),
        "rows keep their order"
    );
    let classes = exported.labels;
    for label in scored.column("Category").unwrap().str().unwrap().iter() {
        let label = label.expect("every row scored");
        assert!(
            (0..classes.len()).any(|i| classes.name(i).as_deref() == Some(label)),
            "{label} is a class"
        );
    }
    assert_eq!(
        scored.column("Source").unwrap().str().unwrap().get(4),
        Some("feed-1")
    );
    assert!(
        stdout.contains(&format!("wrote {} rows", incoming.len())),
        "{stdout}"
    );
}
