//! The `load_artifacts` stage: the notebook's six files into pipeline artifacts.

use std::path::PathBuf;

use pipe_core::{stage, Artifacts, Optional, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::{IntArray, LabelSet, Table, Vocabulary};
use serde::{Deserialize, Serialize};

use crate::{read_record_columns, NotebookFileNames, NotebookFiles};

/// Loads `X_train_seq.npy`, `y_train.npy`, `X_test_seq.npy`, `vocab_stoi.pkl`,
/// `label_encoder.pkl` and `test_mini.json` from `dir` (names configurable),
/// and optionally the test labels for evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadArtifacts {
    pub dir: PathBuf,
    pub files: NotebookFileNames,
    /// The record field that identifies a test row.
    pub id_field: String,
    /// A JSON array of records with the true label of each test row (`Id`, `Category`).
    pub test_labels: Option<String>,
    pub label_field: String,
}

impl Default for LoadArtifacts {
    fn default() -> Self {
        LoadArtifacts {
            dir: PathBuf::from("data"),
            files: NotebookFileNames::default(),
            id_field: "Id".into(),
            test_labels: None,
            label_field: "Category".into(),
        }
    }
}

/// The outputs of every stage that produces the notebook's artifacts
/// (`load_artifacts`, `vectorize`), so either feeds the same downstream stages.
pub struct NotebookPorts;

impl NotebookPorts {
    pub const X_TRAIN: PortOf<IntArray> = PortOf::new("x_train", "token ids [rows, max_len]");
    pub const Y_TRAIN: PortOf<IntArray> = PortOf::new("y_train", "label ids [rows]");
    pub const X_TEST: PortOf<IntArray> = PortOf::new("x_test", "token ids [rows, max_len]");
    pub const VOCAB: PortOf<Vocabulary> = PortOf::new("vocab", "token → id, with <PAD>");
    pub const LABELS: PortOf<LabelSet> = PortOf::new("labels", "classes_ of the LabelEncoder");
    pub const TEST_IDS: PortOf<Table> =
        PortOf::new("test_ids", "the id column of the test records");
    pub const TEST_LABELS: PortOf<Table, Optional> = PortOf::optional(
        "test_labels",
        "id and true label of each test row, when known",
    );

    pub fn ports() -> Vec<Port> {
        vec![
            Self::X_TRAIN.port(),
            Self::Y_TRAIN.port(),
            Self::X_TEST.port(),
            Self::VOCAB.port(),
            Self::LABELS.port(),
            Self::TEST_IDS.port(),
            Self::TEST_LABELS.port(),
        ]
    }
}

#[stage(
    kind = "load_artifacts",
    summary = "the notebook's .npy/joblib/JSON artifacts, loaded safely"
)]
impl Stage for LoadArtifacts {
    fn inputs(&self) -> Vec<Port> {
        vec![]
    }
    fn outputs(&self) -> Vec<Port> {
        NotebookPorts::ports()
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn external_files(&self) -> Vec<PathBuf> {
        let mut files = self.files.paths(&self.dir);
        if let Some(labels) = &self.test_labels {
            files.push(self.dir.join(labels));
        }
        files
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, _inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let a = NotebookFiles::load(&self.dir, &self.files, &self.id_field)
            .map_err(StageError::other)?;
        ctx.info(format!(
            "train {:?}, test {:?}, vocabulary {}, {} classes",
            a.x_train.shape(),
            a.x_test.shape(),
            a.vocab.len(),
            a.labels.len()
        ));
        let mut out = Artifacts::new();
        if let Some(labels) = &self.test_labels {
            let path = self.dir.join(labels);
            let table = read_record_columns(&path, &[&self.id_field, &self.label_field])
                .map_err(StageError::other)?;
            if table.rows() != a.x_test.shape()[0] {
                return Err(StageError::invalid(format!(
                    "{}: {} labels for {} test rows",
                    path.display(),
                    table.rows(),
                    a.x_test.shape()[0]
                )));
            }
            out.put(&NotebookPorts::TEST_LABELS, table);
        }
        out.put(&NotebookPorts::X_TRAIN, a.x_train)
            .put(&NotebookPorts::Y_TRAIN, a.y_train)
            .put(&NotebookPorts::X_TEST, a.x_test)
            .put(&NotebookPorts::VOCAB, a.vocab)
            .put(&NotebookPorts::LABELS, a.labels)
            .put(&NotebookPorts::TEST_IDS, a.test_ids);
        Ok(out)
    }
}
