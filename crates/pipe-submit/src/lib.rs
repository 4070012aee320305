//! The submission file: `Id` and `Category` columns written byte for byte as
//! `pd.DataFrame({'Id': ids, 'Category': cats}).to_csv(path, index=True)`
//! writes them (a leading unnamed index column, minimal quoting, `\n`).
//!
//! Overview:
//! - [`submission_csv`] renders the CSV from ids and labels.
//! - The `submission` stage stores it in the cache and publishes it to its
//!   `path` atomically (temp file, fsync, rename), after a run or a cache hit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipe_core::{fsutil, register_stage, Artifacts, Files, Port, Stage, StageContext, StageError, Table};
use serde::{Deserialize, Serialize};

/// A JSON value as pandas prints it in a CSV cell.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Bool(true) => "True".into(),
        serde_json::Value::Bool(false) => "False".into(),
        serde_json::Value::String(s) => pipe_core::csv::field(s),
        serde_json::Value::Number(n) => n.to_string(),
        other => pipe_core::csv::field(&other.to_string()),
    }
}

/// Renders the submission CSV. `index` adds pandas' leading unnamed index column.
pub fn submission_csv(ids: &[serde_json::Value], labels: &[serde_json::Value], id_name: &str, label_name: &str, index: bool) -> String {
    let mut out = String::with_capacity(ids.len() * 24);
    if index {
        out.push(',');
    }
    out.push_str(&pipe_core::csv::field(id_name));
    out.push(',');
    out.push_str(&pipe_core::csv::field(label_name));
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

/// The `submission` stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Submission {
    /// Where the CSV is published (relative to the working directory).
    pub path: PathBuf,
    pub id_field: String,
    pub label_field: String,
    /// Write pandas' index column (the notebook's `index=True`).
    pub index: bool,
}

impl Default for Submission {
    fn default() -> Self {
        Submission { path: PathBuf::from("submission.csv"), id_field: "Id".into(), label_field: "Category".into(), index: true }
    }
}

impl Submission {
    fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "submission.csv".into())
    }
}

#[typetag::serde(name = "submission")]
impl Stage for Submission {
    fn inputs(&self) -> Vec<Port> {
        vec![Port::new("predictions", "table", "a `label` column, one row per test row"), Port::new("ids", "table", "the test rows' ids")]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("submission", "files", "the CSV")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let predictions = inputs.get::<Table>("predictions")?;
        let ids = inputs.get::<Table>("ids")?;
        let labels = predictions.column("label").ok_or_else(|| StageError::invalid("the predictions table has no `label` column"))?;
        let id_column = ids.column(&self.id_field).ok_or_else(|| StageError::invalid(format!("the ids table has no `{}` column", self.id_field)))?;
        if id_column.values.len() != labels.values.len() {
            return Err(StageError::invalid(format!("{} ids for {} predictions", id_column.values.len(), labels.values.len())));
        }
        let csv = submission_csv(&id_column.values, &labels.values, &self.id_field, &self.label_field, self.index);
        ctx.info(format!("{} rows", labels.values.len()));
        let mut out = Artifacts::new();
        out.insert("submission", Files { files: BTreeMap::from([(self.file_name(), csv.into_bytes())]) });
        Ok(out)
    }
    fn publish(&self, outputs: &BTreeMap<String, PathBuf>, ctx: &StageContext) -> Result<(), StageError> {
        let stored = outputs["submission"].join(self.file_name());
        let bytes = std::fs::read(&stored).map_err(|e| StageError::io(&stored, e))?;
        if std::fs::read(&self.path).ok().as_deref() != Some(&bytes[..]) {
            fsutil::atomic_write(Path::new(&self.path), &bytes).map_err(|e| StageError::io(&self.path, e))?;
        }
        ctx.info(format!("wrote {}", self.path.display()));
        Ok(())
    }
}
register_stage!(Submission, "submission", "the submission CSV (Id, Category) as pandas writes it, published atomically");

/// Copies files and JSON documents out of the cache into a directory people
/// look at (`out/...`), atomically, after a run or a cache hit alike. Export
/// paths are not part of any training stage's key, so moving them retrains nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    pub dir: PathBuf,
    /// File name for the `json` input.
    pub json_name: String,
}

impl Default for Export {
    fn default() -> Self {
        Export { dir: PathBuf::from("out"), json_name: "metrics.json".into() }
    }
}

#[typetag::serde(name = "export")]
impl Stage for Export {
    fn inputs(&self) -> Vec<Port> {
        vec![Port::optional("files", "files", "files to copy as they are"), Port::optional("json", "json", "a JSON document, written as `json_name`")]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("exported", "files", "what was exported")]
    }
    fn validate(&self) -> Result<(), String> {
        fsutil::check_file_name(&self.json_name).map_err(|m| format!("json_name: {m}"))
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn build_independent(&self) -> bool {
        // Its outputs are its inputs' bytes, and one JSON document.
        true
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        let mut files = inputs.get_opt::<Files>("files")?.map(|f| f.files.clone()).unwrap_or_default();
        if let Some(doc) = inputs.get_opt::<pipe_core::JsonDoc>("json")? {
            files.insert(self.json_name.clone(), serde_json::to_vec_pretty(&doc.0).expect("json"));
        }
        let mut out = Artifacts::new();
        out.insert("exported", Files { files });
        Ok(out)
    }
    fn publish(&self, outputs: &BTreeMap<String, PathBuf>, ctx: &StageContext) -> Result<(), StageError> {
        let stored = &outputs["exported"];
        let entries = std::fs::read_dir(stored).map_err(|e| StageError::io(stored, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StageError::io(stored, e))?;
            let bytes = std::fs::read(entry.path()).map_err(|e| StageError::io(entry.path(), e))?;
            let target = self.dir.join(entry.file_name());
            if std::fs::read(&target).ok().as_deref() != Some(&bytes[..]) {
                fsutil::atomic_write(&target, &bytes).map_err(|e| StageError::io(&target, e))?;
            }
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        ctx.info(format!("{}: {}", self.dir.display(), names.join(", ")));
        Ok(())
    }
}
register_stage!(Export, "export", "copy reports and metrics out of the cache into a directory, atomically");
