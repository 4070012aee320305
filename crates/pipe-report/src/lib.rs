//! `pipe report`: a pipeline's last run, read from the cache, as one
//! self-contained HTML page — no network, no server, readable from
//! `file://` with JavaScript off (it only adds sorting).
//!
//! [`collect`] reads what the cache knows of each stage (status and why,
//! seconds, outputs, the config and what `--set` changed); [`render`]
//! writes the page: the DAG, a table of stages, and a section per stage
//! with what its kind produced (training curves, evaluation, a
//! submission's head and class counts, any small JSON output). The charts
//! are `pipe_eval::plot`'s, the same as the SVG files the stages write.

mod collect;
mod html;

pub use collect::{collect, Entry, Output, RunView, StageView, Status};
pub use html::render;

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Run(#[from] pipe_core::RunError),
    #[error("nothing to report for {0}: no stage has a result in the cache; run it first (`pipe run {0}`)")]
    NothingToReport(String),
}
