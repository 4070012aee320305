//! `pipe compare`: runs several pipelines (reusing their caches) and puts their
//! models side by side: accuracy, macro-F1, train time, predict throughput.

use std::path::{Path, PathBuf};

use pipe_core::{Cache, Pipeline, RunOptions, RunReport};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Row {
    pub pipeline: String,
    pub model: String,
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    /// Seconds the train stage took when it ran (cached: when it last ran).
    pub train_seconds: Option<f64>,
    pub predict_rows_per_second: Option<f64>,
}

fn read_json(dir: &Path, file: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(dir.join(file)).ok()?).ok()
}

/// Seconds recorded for a stage's cache entry (how long it ran, even when reused now).
fn recorded_seconds(report: &RunReport, kind: &str) -> Option<f64> {
    let stage = report.stages.iter().find(|s| s.kind == kind)?;
    let entry = stage.outputs.values().next()?.parent()?.parent()?;
    read_json(entry, "record.json")?.get("seconds")?.as_f64()
}

pub fn row(path: &Path, pipeline: &Pipeline, report: &RunReport) -> Row {
    let model = pipeline
        .stages
        .iter()
        .find(|s| s.kind.ends_with("_classifier") || s.kind == "bag_of_ngrams")
        .map(|s| s.kind.clone())
        .unwrap_or_else(|| "?".into());
    let evaluation = report
        .stages
        .iter()
        .find(|s| s.kind == "evaluate")
        .and_then(|s| read_json(&s.outputs["metrics"], "doc.json"));
    let rows = report
        .stages
        .iter()
        .find(|s| s.kind == "predict")
        .and_then(|s| read_json(&s.outputs["predictions"], "table.json"))
        .and_then(|t| t["columns"][0]["values"].as_array().map(Vec::len));
    let predict_seconds = recorded_seconds(report, "predict");
    Row {
        pipeline: path.display().to_string(),
        model,
        accuracy: evaluation.as_ref().and_then(|e| e["accuracy"].as_f64()),
        macro_f1: evaluation.as_ref().and_then(|e| e["macro_f1"].as_f64()),
        train_seconds: recorded_seconds(report, "train"),
        predict_rows_per_second: rows.zip(predict_seconds).map(|(r, s)| r as f64 / s.max(1e-9)),
    }
}

pub fn markdown(rows: &[Row]) -> String {
    let f = |v: Option<f64>, digits: usize| v.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    let mut out = String::from("| pipeline | model | accuracy | macro-F1 | train s | predict rows/s |\n|---|---|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.pipeline,
            r.model,
            f(r.accuracy, 4),
            f(r.macro_f1, 4),
            f(r.train_seconds, 1),
            f(r.predict_rows_per_second, 0)
        ));
    }
    out
}

pub fn compare(pipelines: &[PathBuf], cache: &Cache, options: &RunOptions, events: &dyn pipe_core::EventSink) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for path in pipelines {
        let pipeline = Pipeline::load(path, &[])?;
        let report = pipe_core::run(&pipeline, cache, options, events)?;
        rows.push(row(path, &pipeline, &report));
    }
    Ok(rows)
}
