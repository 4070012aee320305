//! The `submission` stage: the submission CSV, stored and published.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipe_core::{fsutil, stage, Artifacts, Files, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::Table;
use serde::{Deserialize, Serialize};

use crate::submission_csv;

/// The submission CSV (`Id`, `Category`) as pandas writes it, published to `path` atomically.
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
        Submission {
            path: PathBuf::from("submission.csv"),
            id_field: "Id".into(),
            label_field: "Category".into(),
            index: true,
        }
    }
}

impl Submission {
    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "submission.csv".into())
    }
}

impl Submission {
    pub const PREDICTIONS: PortOf<Table> =
        PortOf::new("predictions", "a `label` column, one row per test row");
    pub const IDS: PortOf<Table> = PortOf::new("ids", "the test rows' ids");
    pub const SUBMISSION: PortOf<Files> = PortOf::new("submission", "the CSV");
}

#[stage(
    kind = "submission",
    summary = "the submission CSV (Id, Category) as pandas writes it, published atomically"
)]
impl Stage for Submission {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::PREDICTIONS.port(), Self::IDS.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::SUBMISSION.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let predictions = inputs.read(&Self::PREDICTIONS)?;
        let ids = inputs.read(&Self::IDS)?;
        let labels = predictions
            .column("label")
            .ok_or_else(|| StageError::invalid("the predictions table has no `label` column"))?;
        let id_column = ids.column(&self.id_field).ok_or_else(|| {
            StageError::invalid(format!("the ids table has no `{}` column", self.id_field))
        })?;
        if id_column.values.len() != labels.values.len() {
            return Err(StageError::invalid(format!(
                "{} ids for {} predictions",
                id_column.values.len(),
                labels.values.len()
            )));
        }
        let csv = submission_csv(
            &id_column.values,
            &labels.values,
            &self.id_field,
            &self.label_field,
            self.index,
        );
        ctx.info(format!("{} rows", labels.values.len()));
        let mut out = Artifacts::new();
        out.put(
            &Self::SUBMISSION,
            Files {
                files: BTreeMap::from([(self.file_name(), csv.into_bytes())]),
            },
        );
        Ok(out)
    }
    fn publish(
        &self,
        outputs: &BTreeMap<String, PathBuf>,
        ctx: &StageContext,
    ) -> Result<(), StageError> {
        let stored = outputs["submission"].join(self.file_name());
        let bytes = std::fs::read(&stored).map_err(|e| StageError::io(&stored, e))?;
        if std::fs::read(&self.path).ok().as_deref() != Some(&bytes[..]) {
            fsutil::atomic_write(Path::new(&self.path), &bytes)
                .map_err(|e| StageError::io(&self.path, e))?;
        }
        ctx.info(format!("wrote {}", self.path.display()));
        Ok(())
    }
}
