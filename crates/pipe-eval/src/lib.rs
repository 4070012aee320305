//! Scores predictions: accuracy, macro-F1, per-class precision/recall/F1 and
//! a confusion matrix (CSV and SVG), plus the SVG charts other stages draw.
//!
//! Overview:
//! - [`Confusion`] computes the metrics from label ids.
//! - [`plot::line_chart`] and [`plot::heatmap`] draw SVGs without dependencies.
//! - The `evaluate` stage (`src/stages/evaluate.rs`) compares a predictions table with the true labels.

pub mod metrics;
pub mod plot;
mod stages;

pub use metrics::{ClassScores, Confusion};
pub use stages::{evaluate, Evaluate};

/// The column of a predictions table that holds the predicted class name.
pub const PREDICTED_LABEL: &str = "label";

/// A JSON cell as the text a CSV or a comparison uses.
pub fn cell_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}
