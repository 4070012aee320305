//! `pipe compare`: runs several pipelines (reusing their caches) and puts their
//! models side by side: accuracy, macro-F1 (mean ± sd over seeds), train time,
//! predict throughput.

use std::path::{Path, PathBuf};

use crate::core::{Cache, Override, Pipeline, RunOptions, RunReport};
use crate::eval::metrics::mean_sd;
use crate::eval::Evaluate;
use crate::predict::Predict;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Row {
    pub pipeline: String,
    pub model: String,
    /// The seeds it ran with; the numbers below are their mean.
    pub seeds: Vec<u64>,
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    /// Sample standard deviations over the seeds (none for one seed).
    pub accuracy_sd: Option<f64>,
    pub macro_f1_sd: Option<f64>,
    /// Seconds the model's fitting stage took when it ran (cached: when it last ran).
    pub train_seconds: Option<f64>,
    pub predict_rows_per_second: Option<f64>,
}

/// The stage kinds that fit a model, whose time is the "train" column.
const FITTING_KINDS: [&str; 3] = ["train", "tfidf_linear", "select"];

fn read_json(dir: &Path, file: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(dir.join(file)).ok()?).ok()
}

/// Seconds recorded for a stage's cache entry (how long it ran, even when reused now).
fn recorded_seconds(report: &RunReport, kinds: &[&str]) -> Option<f64> {
    let stage = report
        .stages
        .iter()
        .find(|s| kinds.contains(&s.kind.as_str()))?;
    let entry = stage.outputs.values().next()?.parent()?.parent()?;
    read_json(entry, "record.json")?.get("seconds")?.as_f64()
}

/// One run's numbers.
struct Measured {
    accuracy: Option<f64>,
    macro_f1: Option<f64>,
    train_seconds: Option<f64>,
    predict_rows_per_second: Option<f64>,
}

fn model_kind(pipeline: &Pipeline) -> String {
    pipeline
        .stages
        .iter()
        .find(|s| {
            s.kind.ends_with("_classifier")
                || ["bag_of_ngrams", "tfidf_linear", "select"].contains(&s.kind.as_str())
        })
        .map(|s| s.kind.clone())
        .unwrap_or_else(|| "?".into())
}

fn measure(report: &RunReport) -> Measured {
    let evaluation = report
        .stages
        .iter()
        .find(|s| s.kind == "evaluate")
        .and_then(|s| read_json(&s.outputs[Evaluate::METRICS.name], "doc.json"));
    let rows = report
        .stages
        .iter()
        .find(|s| s.kind == "predict")
        .and_then(|s| read_json(&s.outputs[Predict::PREDICTIONS.name], "table.json"))
        .and_then(|t| t["columns"][0]["values"].as_array().map(Vec::len));
    let predict_seconds = recorded_seconds(report, &["predict"]);
    Measured {
        accuracy: evaluation.as_ref().and_then(|e| e["accuracy"].as_f64()),
        macro_f1: evaluation.as_ref().and_then(|e| e["macro_f1"].as_f64()),
        train_seconds: recorded_seconds(report, &FITTING_KINDS),
        predict_rows_per_second: rows
            .zip(predict_seconds)
            .map(|(r, s)| r as f64 / s.max(1e-9)),
    }
}

fn row(path: &Path, pipeline: &Pipeline, seeds: Vec<u64>, runs: &[Measured]) -> Row {
    let (accuracy, accuracy_sd) = mean_sd(runs.iter().map(|m| m.accuracy));
    let (macro_f1, macro_f1_sd) = mean_sd(runs.iter().map(|m| m.macro_f1));
    Row {
        pipeline: path.display().to_string(),
        model: model_kind(pipeline),
        seeds,
        accuracy,
        macro_f1,
        accuracy_sd,
        macro_f1_sd,
        train_seconds: mean_sd(runs.iter().map(|m| m.train_seconds)).0,
        predict_rows_per_second: mean_sd(runs.iter().map(|m| m.predict_rows_per_second)).0,
    }
}

pub fn markdown(rows: &[Row]) -> String {
    let f =
        |v: Option<f64>, digits: usize| v.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    let with_sd = |v: Option<f64>, sd: Option<f64>| match sd {
        Some(sd) => format!("{} ± {}", f(v, 4), f(Some(sd), 4)),
        None => f(v, 4),
    };
    let mut out = String::from("| pipeline | model | seeds | accuracy | macro-F1 | train s | predict rows/s |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.pipeline,
            r.model,
            r.seeds.len(),
            with_sd(r.accuracy, r.accuracy_sd),
            with_sd(r.macro_f1, r.macro_f1_sd),
            f(r.train_seconds, 1),
            f(r.predict_rows_per_second, 0)
        ));
    }
    out
}

/// Runs each pipeline (with `overrides`) once per seed, or once with its own
/// seed when `seeds` is empty, and summarises each pipeline in one row.
pub fn compare(
    pipelines: &[PathBuf],
    overrides: &[Override],
    seeds: &[u64],
    cache: &Cache,
    options: &RunOptions,
    events: &dyn crate::core::EventSink,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for path in pipelines {
        let mut pipeline = Pipeline::load(path, overrides)?;
        let seeds = if seeds.is_empty() {
            vec![pipeline.seed]
        } else {
            seeds.to_vec()
        };
        let mut runs = Vec::new();
        for &seed in &seeds {
            pipeline.seed = seed;
            runs.push(measure(&crate::core::run(
                &pipeline, cache, options, events,
            )?));
        }
        rows.push(row(path, &pipeline, seeds, &runs));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd_over_the_values_present() {
        let (mean, sd) = mean_sd([Some(0.5), None, Some(0.7)].into_iter());
        assert!((mean.unwrap() - 0.6).abs() < 1e-12);
        assert!((sd.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd([Some(0.5)].into_iter()), (Some(0.5), None));
        assert_eq!(mean_sd(std::iter::empty()), (None, None));
    }
}
