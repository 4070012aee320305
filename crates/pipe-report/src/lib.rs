//! `pipe report`: a pipeline's last run, or several runs side by side, read
//! from the cache, as one self-contained HTML page — no network, no
//! server, readable from `file://` with JavaScript off (it only adds
//! sorting).
//!
//! [`collect`] reads what the cache knows of each stage (status and why,
//! seconds, outputs, the config and what `--set` changed) and
//! [`collect_history`] the runs the cache remembers; [`render`] writes one
//! run's page: a summary with the DAG, the results by what they are
//! (training curves, evaluation, model selection, the submission against
//! the training labels) and a section per stage. [`render_comparison`]
//! puts runs side by side: the settings that differ, metrics (mean ± sd
//! over seeds), curves overlaid. The charts are `pipe_eval::plot`'s, the
//! same as the SVG files the stages write.

mod collect;
mod compare;
mod html;
mod results;

pub use collect::{
    collect, collect_history, config_diff, Entry, Output, RunView, StageView, Status,
};
pub use compare::{render_comparison, Run};
pub use html::render;

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Run(#[from] pipe_core::RunError),
    #[error("nothing to report for {0}: no stage has a result in the cache; run it first (`pipe run {0}`)")]
    NothingToReport(String),
}
