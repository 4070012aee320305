//! `pipe score` and `pipe bundle`: bring the pipeline's model up to date (or
//! read a bundle), then stream the input through it or write it out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::{Event, EventSink, RunOptions};
use anyhow::Context as _;
use pipe_score::{ScoreEvent, ScoreJob, ScoringModel};

use super::{open_cache, render, Settings};

/// The classifier to score with: a bundle directory as written by `pipe
/// bundle`, or a pipeline, run first (cached stages are reused).
pub fn load_model(
    path: &Path,
    settings: &Settings,
    cache_dir: &Option<PathBuf>,
    lock_timeout: Duration,
    renderer: &render::Renderer,
) -> anyhow::Result<ScoringModel> {
    if path.is_dir() {
        anyhow::ensure!(
            pipe_score::is_bundle(path),
            "{}: a directory that is not a bundle (no bundle.json); give a pipeline file or a directory written by `pipe bundle`",
            path.display()
        );
        return ScoringModel::load_bundle(path)
            .with_context(|| format!("loading the bundle {}", path.display()));
    }
    let (pipeline, device) = settings.load(path)?;
    let cache = open_cache(cache_dir)?;
    let options = RunOptions {
        device,
        lock_timeout,
        ..RunOptions::default()
    };
    let report = crate::core::run(&pipeline, &cache, &options, renderer);
    let report = report.with_context(|| format!("running {}", pipeline.source))?;
    Ok(pipe_score::classifier_from_run(&pipeline, &report)?)
}

/// Scores `job` with `model`, showing progress (or `--json` events) and a
/// summary.
pub fn run(
    model: &ScoringModel,
    job: &ScoreJob,
    renderer: &render::Renderer,
    json: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if !json && !quiet {
        eprintln!("scoring with {}", model.description);
    }
    let mut on_event = |event: &ScoreEvent| {
        if json {
            render::print_json_line(&serde_json::to_value(event).expect("events serialize"));
            return;
        }
        match event {
            ScoreEvent::Batch {
                rows_done,
                shard_rows,
            } => renderer.emit(&Event::Progress {
                stage: "score".into(),
                done: *rows_done,
                total: *shard_rows,
                message: "rows".into(),
            }),
            ScoreEvent::Planned {
                files,
                input_rows,
                shard,
                shard_rows,
            } if !quiet => {
                eprintln!("{input_rows} rows in {files} file(s); shard {shard} scores {shard_rows}")
            }
            ScoreEvent::Skipped { shard, manifest } if !quiet => {
                eprintln!(
                    "shard {shard} is already complete for this model and input ({}): skipped",
                    manifest.display()
                )
            }
            _ => {}
        }
    };
    let summary = pipe_score::score(model, job, &mut on_event);
    renderer.finish();
    let summary = summary.with_context(|| format!("scoring {}", job.input))?;
    if !json && !quiet && !summary.skipped {
        let rss = summary
            .peak_rss_bytes
            .map(|b| format!(", peak RSS {:.0} MB", b as f64 / 1e6))
            .unwrap_or_default();
        println!(
            "scored {} rows in {:.1} s ({:.0} rows/s{rss}) -> {}",
            summary.rows,
            summary.seconds,
            summary.rows_per_second,
            summary
                .part
                .as_deref()
                .unwrap_or(&summary.manifest)
                .display()
        );
    }
    Ok(())
}
