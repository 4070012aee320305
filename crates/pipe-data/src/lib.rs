//! The data the ML stages exchange, as artifacts the engine stores without
//! knowing what they mean: token-id arrays ([`IntArray`], `.npy`), the
//! [`Vocabulary`], the [`LabelSet`] (scikit-learn's `classes_`), small
//! [`Table`]s of JSON columns; and [`csv`] fields as pandas writes them.

pub mod csv;
pub mod split;

use std::any::Any;
use std::fs;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

/// The ndarray version [`IntArray`] holds.
pub use ndarray;
use pipe_core::{json_artifact, register_artifact, Artifact, ArtifactError, LoadArtifact};
use serde::{Deserialize, Serialize};

/// The class a row of scores picks: the index of its first largest value,
/// as `torch.argmax` and scikit-learn's `predict` take it. Every model kind
/// turns scores into a class here, so ties break the same way everywhere.
pub fn argmax(scores: &[f32]) -> usize {
    scores
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &s)| {
            if s > best.1 {
                (i, s)
            } else {
                best
            }
        })
        .0
}

/// An n-dimensional integer array (token ids, labels), stored as `.npy`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntArray(pub ArrayD<i64>);

impl IntArray {
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }
}

const ARRAY_FILE: &str = "array.npy";

impl Artifact for IntArray {
    fn type_name(&self) -> &'static str {
        Self::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let path = dir.join(ARRAY_FILE);
        let file = fs::File::create(&path).map_err(|e| ArtifactError::io(&path, e))?;
        let standard = self.0.as_standard_layout();
        ndarray_npy::WriteNpyExt::write_npy(&standard.view(), std::io::BufWriter::new(file))
            .map_err(|e| ArtifactError::invalid(&path, e))
    }
    fn summary(&self) -> String {
        format!("i64{:?}", self.0.shape())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LoadArtifact for IntArray {
    const TYPE_NAME: &'static str = "int_array";
    fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(ARRAY_FILE);
        let file = fs::File::open(&path).map_err(|e| ArtifactError::io(&path, e))?;
        let array: ArrayD<i64> = ndarray_npy::ReadNpyExt::read_npy(std::io::BufReader::new(file))
            .map_err(|e| ArtifactError::invalid(&path, e))?;
        Ok(IntArray(
            array
                .into_dimensionality::<IxDyn>()
                .expect("dynamic dimension"),
        ))
    }
}

register_artifact!(IntArray, "n-dimensional int64 array (.npy)");

/// A token vocabulary: `tokens[id]` is the token with that id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub tokens: Vec<String>,
    pub pad_id: i64,
    /// Id of the unknown-token entry, when the vocabulary has one.
    pub unk_id: Option<i64>,
}

impl Vocabulary {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The class names a label id maps back to (scikit-learn's `classes_`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dtype", content = "values", rename_all = "snake_case")]
pub enum LabelSet {
    Strings(Vec<String>),
    Integers(Vec<i64>),
}

impl LabelSet {
    pub fn len(&self) -> usize {
        match self {
            LabelSet::Strings(v) => v.len(),
            LabelSet::Integers(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The class name of label id `i`, as it goes into a CSV.
    pub fn name(&self, i: usize) -> Option<String> {
        match self {
            LabelSet::Strings(v) => v.get(i).cloned(),
            LabelSet::Integers(v) => v.get(i).map(|x| x.to_string()),
        }
    }
}

/// A small table of named columns (record ids, predictions joined to ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub values: Vec<serde_json::Value>,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

json_artifact!(
    Vocabulary,
    "vocabulary",
    "vocabulary.json",
    "token vocabulary with its <PAD> id",
    |s| format!("{} tokens", s.len())
);
json_artifact!(
    LabelSet,
    "label_set",
    "labels.json",
    "class names for label ids",
    |s| format!("{} classes", s.len())
);
json_artifact!(
    Table,
    "table",
    "table.json",
    "named columns of JSON values",
    |s| format!("{} rows × {} columns", s.rows(), s.columns.len())
);

#[cfg(test)]
mod argmax_tests {
    use super::argmax;

    #[test]
    fn argmax_takes_the_first_of_equal_scores() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
        assert_eq!(argmax(&[2.0, -1.0]), 0);
    }
}
