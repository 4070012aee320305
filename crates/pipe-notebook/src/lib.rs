//! Loads the notebook's files exactly, in pure Rust, and never executes
//! anything: `.npy` arrays, `joblib.dump` pickles of the vocabulary and the
//! `LabelEncoder`, and the JSON test records. (The notebook calls them its
//! "preprocessed artifacts", hence the stage kind `load_artifacts`; in this
//! workspace's code an *artifact* is what the engine caches, `pipe_core::Artifact`.)
//!
//! Overview:
//! - [`read_npy`], [`read_vocabulary`], [`read_label_encoder`], [`read_records`]
//!   read one file each; every error is a [`LoadError`] naming the file, the
//!   byte offset where it applies, the problem and what to do.
//! - [`NotebookFiles::load`] reads the six files and checks them against
//!   each other (row counts, widths, id ranges).
//! - The `load_artifacts` stage wraps it for pipelines.
//! - [`dump`] writes the same formats back ([`write_npy`],
//!   [`write_vocabulary`], [`write_label_encoder`]) for tools that produce
//!   artifacts the notebook reads.
//!
//! The pickle layers follow candle's split: [`pickle`] is a VM that knows
//! only pickle, [`numpy`], [`joblib`] and [`sklearn`] interpret its objects.

pub mod dump;
pub mod error;
pub mod joblib;
pub mod npy;
pub mod numpy;
pub mod pickle;
pub mod sklearn;
mod stages;

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use pipe_data::{Column, IntArray, LabelSet, Table, Vocabulary};

pub use dump::{write_label_encoder, write_npy, write_vocabulary};
pub use error::LoadError;
pub use stages::{LoadArtifacts, NotebookPorts};

fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::new(path, None, format!("cannot read: {e}"), ""))
}

/// An integer `.npy` array (any integer dtype, C or Fortran order) as int64.
pub fn read_npy(path: &Path) -> Result<IntArray, LoadError> {
    let bytes = read_file(path)?;
    let array = npy::parse(path, &bytes)?;
    let (shape, values) = npy::int_array(path, array)?;
    Ok(IntArray(
        ArrayD::from_shape_vec(IxDyn(&shape), values).expect("length checked against shape"),
    ))
}

/// A `joblib.dump`ed dict of token → id.
pub fn read_vocabulary(path: &Path) -> Result<Vocabulary, LoadError> {
    let value = joblib::load_bytes(path, &read_file(path)?)?;
    sklearn::vocabulary(&value).map_err(|e| {
        LoadError::new(
            path,
            None,
            e.to_string(),
            "expected joblib.dump of a dict mapping each token to its id",
        )
    })
}

/// A `joblib.dump`ed fitted `LabelEncoder`'s classes.
pub fn read_label_encoder(path: &Path) -> Result<LabelSet, LoadError> {
    let value = joblib::load_bytes(path, &read_file(path)?)?;
    sklearn::label_encoder(&value).map_err(|e| {
        LoadError::new(
            path,
            None,
            e.to_string(),
            "expected joblib.dump of a fitted sklearn LabelEncoder",
        )
    })
}

/// The `id_field` of a JSON array of records, as a one-column table.
pub fn read_records(path: &Path, id_field: &str) -> Result<Table, LoadError> {
    read_record_columns(path, &[id_field])
}

/// Selected fields of a JSON array of records; every record must have them.
pub fn read_record_columns(path: &Path, fields: &[&str]) -> Result<Table, LoadError> {
    let bytes = read_file(path)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        LoadError::new(
            path,
            None,
            format!(
                "invalid JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
            "expected a JSON array of records",
        )
    })?;
    let serde_json::Value::Array(records) = value else {
        return Err(LoadError::new(
            path,
            None,
            "not a JSON array",
            "expected a JSON array of records, as pandas' to_json(orient='records') writes",
        ));
    };
    let mut columns: Vec<Column> = fields
        .iter()
        .map(|f| Column {
            name: f.to_string(),
            values: Vec::with_capacity(records.len()),
        })
        .collect();
    for (i, record) in records.into_iter().enumerate() {
        let serde_json::Value::Object(mut map) = record else {
            return Err(LoadError::new(
                path,
                None,
                format!("record {i} is not an object"),
                "expected a JSON array of records",
            ));
        };
        for column in &mut columns {
            let value = map.remove(&column.name).ok_or_else(|| {
                LoadError::new(
                    path,
                    None,
                    format!("record {i} has no `{}` field", column.name),
                    "",
                )
            })?;
            column.values.push(value);
        }
    }
    Ok(Table { columns })
}

/// File names inside the artifact directory, defaulting to the notebook's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotebookFileNames {
    pub x_train: String,
    pub y_train: String,
    pub x_test: String,
    pub vocab: String,
    pub label_encoder: String,
    pub test_records: String,
}

impl Default for NotebookFileNames {
    fn default() -> Self {
        NotebookFileNames {
            x_train: "X_train_seq.npy".into(),
            y_train: "y_train.npy".into(),
            x_test: "X_test_seq.npy".into(),
            vocab: "vocab_stoi.pkl".into(),
            label_encoder: "label_encoder.pkl".into(),
            test_records: "test_mini.json".into(),
        }
    }
}

impl NotebookFileNames {
    pub fn paths(&self, dir: &Path) -> Vec<PathBuf> {
        [
            &self.x_train,
            &self.y_train,
            &self.x_test,
            &self.vocab,
            &self.label_encoder,
            &self.test_records,
        ]
        .iter()
        .map(|f| dir.join(f))
        .collect()
    }
}

/// Everything the notebook loads, checked for consistency.
#[derive(Debug, Clone)]
pub struct NotebookFiles {
    pub x_train: IntArray,
    pub y_train: IntArray,
    pub x_test: IntArray,
    pub vocab: Vocabulary,
    pub labels: LabelSet,
    pub test_ids: Table,
}

impl NotebookFiles {
    pub fn load(
        dir: &Path,
        files: &NotebookFileNames,
        id_field: &str,
    ) -> Result<NotebookFiles, LoadError> {
        let path = |f: &String| dir.join(f);
        let x_train = read_npy(&path(&files.x_train))?;
        let y_train = read_npy(&path(&files.y_train))?;
        let x_test = read_npy(&path(&files.x_test))?;
        let vocab = read_vocabulary(&path(&files.vocab))?;
        let labels = read_label_encoder(&path(&files.label_encoder))?;
        let test_ids = read_records(&path(&files.test_records), id_field)?;

        let fail = |f: &String, m: String| LoadError::new(&path(f), None, m, "");
        for (f, x) in [(&files.x_train, &x_train), (&files.x_test, &x_test)] {
            if x.shape().len() != 2 {
                return Err(fail(
                    f,
                    format!(
                        "shape {:?}: expected a 2-D matrix [rows, max_len]",
                        x.shape()
                    ),
                ));
            }
            if x.shape()[0] == 0 || x.shape()[1] == 0 {
                return Err(fail(
                    f,
                    format!("shape {:?}: the matrix is empty", x.shape()),
                ));
            }
            if let Some((pos, &bad)) =
                x.0.iter()
                    .enumerate()
                    .find(|(_, &t)| t < 0 || t as usize >= vocab.len())
            {
                let (row, col) = (pos / x.shape()[1], pos % x.shape()[1]);
                return Err(fail(
                    f,
                    format!("token id {bad} at row {row}, column {col} is outside the vocabulary (0..{}, from {})", vocab.len(), files.vocab),
                ));
            }
        }
        if y_train.shape().len() != 1 {
            return Err(fail(
                &files.y_train,
                format!("shape {:?}: expected a 1-D label vector", y_train.shape()),
            ));
        }
        if y_train.shape()[0] != x_train.shape()[0] {
            return Err(fail(
                &files.y_train,
                format!(
                    "{} labels for {} rows of {}",
                    y_train.shape()[0],
                    x_train.shape()[0],
                    files.x_train
                ),
            ));
        }
        if let Some((i, &bad)) = y_train
            .0
            .iter()
            .enumerate()
            .find(|(_, &y)| y < 0 || y as usize >= labels.len())
        {
            return Err(fail(
                &files.y_train,
                format!(
                    "label {bad} at index {i} is outside classes_ (0..{}, from {})",
                    labels.len(),
                    files.label_encoder
                ),
            ));
        }
        if x_train.shape()[1] != x_test.shape()[1] {
            return Err(fail(
                &files.x_test,
                format!(
                    "width {} differs from {}'s {}: both must be padded to the same max_len",
                    x_test.shape()[1],
                    files.x_train,
                    x_train.shape()[1]
                ),
            ));
        }
        if test_ids.rows() != x_test.shape()[0] {
            return Err(fail(
                &files.test_records,
                format!(
                    "{} records for {} rows of {}",
                    test_ids.rows(),
                    x_test.shape()[0],
                    files.x_test
                ),
            ));
        }
        Ok(NotebookFiles {
            x_train,
            y_train,
            x_test,
            vocab,
            labels,
            test_ids,
        })
    }
}
