//! The submission file: `Id` and `Category` columns written byte for byte as
//! `pd.DataFrame({'Id': ids, 'Category': cats}).to_csv(path, index=True)`
//! writes them (a leading unnamed index column, minimal quoting, `\n`).
//!
//! Overview:
//! - [`submission_csv`] renders the CSV from ids and labels.
//! - The `submission` stage (`src/stages/submission.rs`) stores it in the cache and publishes it to its
//!   `path` atomically (temp file, fsync, rename), after a run or a cache hit;
//!   `export` (`src/stages/export.rs`) copies reports out the same way.

mod stages;

pub use stages::{Export, Submission};

/// A JSON value as pandas prints it in a CSV cell.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Bool(true) => "True".into(),
        serde_json::Value::Bool(false) => "False".into(),
        serde_json::Value::String(s) => pipe_data::csv::field(s),
        serde_json::Value::Number(n) => n.to_string(),
        other => pipe_data::csv::field(&other.to_string()),
    }
}

/// Renders the submission CSV. `index` adds pandas' leading unnamed index column.
pub fn submission_csv(
    ids: &[serde_json::Value],
    labels: &[serde_json::Value],
    id_name: &str,
    label_name: &str,
    index: bool,
) -> String {
    let mut out = String::with_capacity(ids.len() * 24);
    if index {
        out.push(',');
    }
    out.push_str(&pipe_data::csv::field(id_name));
    out.push(',');
    out.push_str(&pipe_data::csv::field(label_name));
    out.push('\n');
    for (i, (id, label)) in ids.iter().zip(labels).enumerate() {
        if index {
            out.push_str(&i.to_string());
            out.push(',');
        }
        out.push_str(&cell(id));
        out.push(',');
        out.push_str(&cell(label));
        out.push('\n');
    }
    out
}
