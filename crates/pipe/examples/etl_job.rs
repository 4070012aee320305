//! A nightly ETL job built on `pipe` as a library: it makes sure the model of
//! `pipelines/from_raw.yaml` is trained (from the cache when it is), reads new
//! records with polars, encodes them with the trained vocabulary, predicts
//! with the cached checkpoint, joins the predictions back onto the records
//! and writes Parquet.
//!
//! ```text
//! cargo run --release --example etl_job -- \
//!     [--pipeline pipelines/from_raw.yaml] [--records data/incoming/records.json] \
//!     [--out out/etl/predictions.parquet] [--cache .pipe] [--labels data/incoming/labels.json]
//! ```
//!
//! With `--labels`, it also reports the accuracy on records whose truth is known.

use std::error::Error;
use std::path::{Path, PathBuf};

use pipe::notebook::NotebookPorts;
use pipe::polars::prelude::*;
use pipe::train::Train;
use pipe::vectorize::{read_frame, FrameFormat, Vectorize};
use pipe::{run, Cache, Event, EventSink, FrameColumns, Pipeline, RunOptions, TextClassifier};

struct Args {
    pipeline: PathBuf,
    records: PathBuf,
    out: PathBuf,
    cache: PathBuf,
    labels: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pipeline: "pipelines/from_raw.yaml".into(),
        records: "data/incoming/records.json".into(),
        out: "out/etl/predictions.parquet".into(),
        cache: ".pipe".into(),
        labels: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(PathBuf::from)
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--pipeline" => args.pipeline = value()?,
            "--records" => args.records = value()?,
            "--out" => args.out = value()?,
            "--cache" => args.cache = value()?,
            "--labels" => args.labels = Some(value()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

/// Stage progress on stderr, as an orchestrator's log would take it.
struct Log;

impl EventSink for Log {
    fn emit(&self, event: &Event) {
        match event {
            Event::StageStarted { stage, .. } => eprintln!("[etl] running {stage}"),
            Event::StageFinished { stage, seconds, .. } => {
                eprintln!("[etl] {stage} done in {seconds:.1}s")
            }
            Event::StageCached { stage, .. } => eprintln!("[etl] {stage}: cached"),
            Event::StageFailed { stage, error } => eprintln!("[etl] {stage} failed: {error}"),
            _ => {}
        }
    }
}

/// Encodes in memory, then writes through pipe's atomic write (temp file,
/// fsync, rename), so readers never see half a file.
fn write_parquet_atomically(frame: &mut DataFrame, path: &Path) -> Result<(), Box<dyn Error>> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(frame)?;
    pipe::core::fsutil::atomic_write(path, &bytes)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;

    // 1. The trained model: a cache hit when the pipeline already ran.
    let pipeline = Pipeline::load(&args.pipeline, &[])?;
    let cache = Cache::open(&args.cache)?;
    let report = run(&pipeline, &cache, &RunOptions::default(), &Log)?;
    eprintln!(
        "[etl] pipeline: {} stages ran, {} from the cache",
        report.ran().len(),
        report.stages.len() - report.ran().len()
    );
    if let Some(metrics) = report
        .stage("evaluate")
        .and_then(|s| s.metrics.get("metrics"))
    {
        eprintln!(
            "[etl] model's test accuracy {} macro-F1 {}",
            metrics["accuracy"], metrics["macro_f1"]
        );
    }
    let classifier = TextClassifier::from_report(
        &report,
        Vectorize::VECTORIZER.of_stage("vectorize"),
        Train::MODEL_OUT.of_stage("train"),
        NotebookPorts::LABELS.of_stage("vectorize"),
    )?;

    // 2. New records, scored with the trained vocabulary and checkpoint.
    let records = read_frame(&args.records, FrameFormat::Auto)?;
    let scored = classifier.predict_frame(
        &records.select(["Id", "Text"])?,
        &FrameColumns {
            probability: Some("Probability".into()),
            ..FrameColumns::default()
        },
    )?;

    // 3. Join the predictions back onto the full records by id.
    let predictions = scored.select(["Id", "Category", "Probability"])?;
    let mut joined = records.join(
        &predictions,
        ["Id"],
        ["Id"],
        JoinArgs::new(JoinType::Left),
        None,
    )?;
    write_parquet_atomically(&mut joined, &args.out)?;

    // 4. Check what was written, as the next job in the chain would read it.
    let back = ParquetReader::new(std::fs::File::open(&args.out)?).finish()?;
    if back.height() != records.height()
        || back.column("Id")?.as_materialized_series()
            != records.column("Id")?.as_materialized_series()
    {
        return Err(format!(
            "{}: rows or their order changed on the way",
            args.out.display()
        )
        .into());
    }
    println!(
        "wrote {} rows with columns {:?} to {}",
        back.height(),
        back.get_column_names(),
        args.out.display()
    );
    if let Some(labels) = &args.labels {
        let truth = read_frame(labels, FrameFormat::Auto)?
            .rename("Category", "Truth".into())?
            .clone();
        let checked = back.join(&truth, ["Id"], ["Id"], JoinArgs::new(JoinType::Inner), None)?;
        let predicted = checked.column("Category")?.str()?;
        let expected = checked.column("Truth")?.str()?;
        let correct = predicted
            .iter()
            .zip(expected.iter())
            .filter(|(p, t)| p == t)
            .count();
        println!(
            "accuracy on the {} labelled records: {:.3}",
            checked.height(),
            correct as f64 / checked.height().max(1) as f64
        );
    }
    Ok(())
}
