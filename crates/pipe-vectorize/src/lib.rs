//! Raw text into the notebook's artifacts: tokenizing, a vocabulary fitted on
//! the training texts, label encoding, and padded id matrices — the upstream
//! preprocessing the notebook assumes, done the same way so its results match
//! the Python script's exactly.
//!
//! Overview:
//! - [`tokenize`]: lowercase, then `\w+|[^\w\s]` (Python's `re.findall`).
//! - [`Vectorizer::fit`] builds the vocabulary (`<PAD>`=0, `<UNK>`=1, then
//!   tokens by descending frequency, ties in order of first appearance, kept
//!   when seen at least `min_freq` times), and [`Vectorizer::encode`] turns
//!   texts into a `[rows, max_len]` id matrix. A fitted vectorizer is an
//!   artifact: saved as `vocab_stoi.pkl` (readable by `joblib.load`) plus
//!   `vectorizer.json`, and reused to encode new texts.
//! - [`LabelEncoder`] mirrors scikit-learn's: sorted distinct classes.
//! - [`read_frame`] reads JSON records, JSON lines, CSV or Parquet with polars;
//!   [`TextColumns`] pulls the id, text and label columns out of a frame.
//! - The `vectorize` stage does all of it for a pipeline and can export the
//!   notebook's six files; it reads its records from files or from
//!   [`Frame`]s another stage produced (`read_records`, then a Python
//!   function that cleans them, say).

mod frame;
mod labels;
mod stages;
mod vectorizer;

pub use frame::{read_frame, Frame, FrameFormat, TextColumns};
pub use labels::LabelEncoder;
pub use stages::{python_json_records, ReadRecords, UnknownLabels, Vectorize};
pub use vectorizer::{
    tokenize, tokenize_truncated, Side, Vectorizer, VectorizerOptions, MAX_LEN_LIMIT,
};

use std::path::PathBuf;

/// The polars version [`read_frame`] returns frames of.
pub use polars;

/// Why raw records could not be read or vectorized; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum VectorizeError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: no column `{column}`; its columns: {available}")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{path}: column `{column}` is empty (null) in row {row}")]
    Null {
        path: PathBuf,
        column: String,
        row: usize,
    },
    #[error("{path}: column `{column}` has type {dtype}; expected {expected}")]
    ColumnType {
        path: PathBuf,
        column: String,
        dtype: String,
        expected: &'static str,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}
