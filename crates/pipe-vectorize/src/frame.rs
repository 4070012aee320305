//! Raw records in, through polars: JSON, JSON lines, CSV and Parquet files
//! into a `DataFrame`, and the id/text/label columns out of it.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::VectorizeError;

/// The file format of raw records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameFormat {
    /// From the extension: `.json`, `.jsonl`/`.ndjson`, `.csv`, `.parquet`/`.pq`.
    #[default]
    Auto,
    /// A JSON array of records (pandas' `to_json(orient="records")`).
    Json,
    /// One JSON record per line.
    JsonLines,
    /// Comma-separated with a header row.
    Csv,
    Parquet,
}

impl FrameFormat {
    fn resolve(self, path: &Path) -> Result<FrameFormat, VectorizeError> {
        if self != FrameFormat::Auto {
            return Ok(self);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "json" => Ok(FrameFormat::Json),
            "jsonl" | "ndjson" => Ok(FrameFormat::JsonLines),
            "csv" => Ok(FrameFormat::Csv),
            "parquet" | "pq" => Ok(FrameFormat::Parquet),
            _ => Err(VectorizeError::Invalid {
                path: path.to_path_buf(),
                message: format!("cannot tell the format from the extension `.{ext}`; name it with `format:` (json, json_lines, csv, parquet)"),
            }),
        }
    }
}

/// Reads a file of records into a `DataFrame`.
pub fn read_frame(path: &Path, format: FrameFormat) -> Result<DataFrame, VectorizeError> {
    let read_err = |message: String| VectorizeError::Read {
        path: path.to_path_buf(),
        message,
    };
    let format = format.resolve(path)?;
    let open = || File::open(path).map_err(|e| read_err(format!("cannot open: {e}")));
    let result = match format {
        FrameFormat::Json | FrameFormat::JsonLines => {
            let json_format = if format == FrameFormat::Json {
                JsonFormat::Json
            } else {
                JsonFormat::JsonLines
            };
            // Every record decides the schema, so a field that first appears late is still found.
            JsonReader::new(open()?)
                .with_json_format(json_format)
                .infer_schema_len(None)
                .finish()
        }
        FrameFormat::Csv => CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish()),
        FrameFormat::Parquet => ParquetReader::new(open()?).finish(),
        FrameFormat::Auto => unreachable!("resolved above"),
    };
    result.map_err(|e| read_err(format!("not valid {format:?} records: {e}")))
}

/// The columns a text classifier reads from a frame of records.
#[derive(Debug, Clone, PartialEq)]
pub struct TextColumns {
    pub texts: Vec<String>,
    /// The label column as strings, when the frame has it.
    pub labels: Option<Vec<String>>,
    /// Whether that column holds integers (scikit-learn then keeps integer classes, sorted numerically).
    pub integer_labels: bool,
    /// The id column as JSON values (numbers stay numbers), when the frame has it.
    pub ids: Option<Vec<serde_json::Value>>,
}

impl TextColumns {
    /// Pulls `text` (required), `label` and `id` (each used when present) from
    /// `frame`; `path` names the source in errors.
    pub fn from_frame(
        frame: &DataFrame,
        path: &Path,
        text: &str,
        label: Option<&str>,
        id: Option<&str>,
    ) -> Result<TextColumns, VectorizeError> {
        let present = |name: &str| frame.schema().contains(name);
        Ok(TextColumns {
            texts: string_column(frame, path, text)?,
            labels: label
                .filter(|l| present(l))
                .map(|l| label_column(frame, path, l))
                .transpose()?,
            integer_labels: label
                .and_then(|l| frame.column(l).ok())
                .is_some_and(|c| c.dtype().is_integer()),
            ids: id
                .filter(|i| present(i))
                .map(|i| id_column(frame, path, i))
                .transpose()?,
        })
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The first `rows` records.
    pub fn head(mut self, rows: usize) -> TextColumns {
        self.texts.truncate(rows);
        if let Some(l) = self.labels.as_mut() {
            l.truncate(rows);
        }
        if let Some(i) = self.ids.as_mut() {
            i.truncate(rows);
        }
        self
    }

    /// Only the records where `keep[i]` holds.
    pub fn filter(self, keep: &[bool]) -> TextColumns {
        fn pick<T>(v: Vec<T>, keep: &[bool]) -> Vec<T> {
            v.into_iter()
                .zip(keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| x)
                .collect()
        }
        TextColumns {
            texts: pick(self.texts, keep),
            labels: self.labels.map(|l| pick(l, keep)),
            integer_labels: self.integer_labels,
            ids: self.ids.map(|i| pick(i, keep)),
        }
    }
}

fn column<'a>(frame: &'a DataFrame, path: &Path, name: &str) -> Result<&'a Column, VectorizeError> {
    frame
        .column(name)
        .map_err(|_| VectorizeError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
            available: frame
                .get_column_names()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn type_err(path: &Path, name: &str, dtype: &DataType, expected: &'static str) -> VectorizeError {
    VectorizeError::ColumnType {
        path: path.to_path_buf(),
        column: name.to_string(),
        dtype: dtype.to_string(),
        expected,
    }
}

fn no_nulls<T>(
    values: impl Iterator<Item = Option<T>>,
    path: &Path,
    name: &str,
) -> Result<Vec<T>, VectorizeError> {
    values
        .enumerate()
        .map(|(row, v)| {
            v.ok_or_else(|| VectorizeError::Null {
                path: PathBuf::from(path),
                column: name.to_string(),
                row,
            })
        })
        .collect()
}

/// A text column: strings only, no nulls.
pub(crate) fn string_column(
    frame: &DataFrame,
    path: &Path,
    name: &str,
) -> Result<Vec<String>, VectorizeError> {
    let col = column(frame, path, name)?;
    let strings = col
        .str()
        .map_err(|_| type_err(path, name, col.dtype(), "strings"))?;
    no_nulls(strings.iter().map(|s| s.map(str::to_string)), path, name)
}

/// A label column: strings, or integers written as their decimal text.
fn label_column(frame: &DataFrame, path: &Path, name: &str) -> Result<Vec<String>, VectorizeError> {
    let col = column(frame, path, name)?;
    if !(col.dtype().is_string() || col.dtype().is_integer()) {
        return Err(type_err(path, name, col.dtype(), "strings or integers"));
    }
    let cast = col
        .cast(&DataType::String)
        .map_err(|_| type_err(path, name, col.dtype(), "strings or integers"))?;
    let strings = cast.str().expect("cast to strings");
    no_nulls(strings.iter().map(|s| s.map(str::to_string)), path, name)
}

/// An id column: integers or strings, kept as JSON numbers or strings.
fn id_column(
    frame: &DataFrame,
    path: &Path,
    name: &str,
) -> Result<Vec<serde_json::Value>, VectorizeError> {
    let col = column(frame, path, name)?;
    if col.dtype().is_integer() {
        let ints = col
            .cast(&DataType::Int64)
            .map_err(|_| type_err(path, name, col.dtype(), "integers or strings"))?;
        let values = ints
            .i64()
            .expect("cast to int64")
            .iter()
            .map(|v| v.map(serde_json::Value::from));
        no_nulls(values, path, name)
    } else if col.dtype().is_string() {
        let values = col
            .str()
            .expect("string column")
            .iter()
            .map(|v| v.map(serde_json::Value::from));
        no_nulls(values, path, name)
    } else {
        Err(type_err(path, name, col.dtype(), "integers or strings"))
    }
}

/// A table of records between stages: a polars `DataFrame`, stored as one
/// Parquet file, so a Python stage gets it as an Arrow table (and pandas or
/// polars take it without a copy per row).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame(pub DataFrame);

const FRAME_FILE: &str = "frame.parquet";

impl pipe_core::Artifact for Frame {
    fn type_name(&self) -> &'static str {
        <Self as pipe_core::LoadArtifact>::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), pipe_core::ArtifactError> {
        let path = dir.join(FRAME_FILE);
        let file = File::create(&path).map_err(|e| pipe_core::ArtifactError::io(&path, e))?;
        let mut frame = self.0.clone();
        ParquetWriter::new(std::io::BufWriter::new(file))
            .finish(&mut frame)
            .map_err(|e| pipe_core::ArtifactError::invalid(&path, e))?;
        Ok(())
    }
    fn summary(&self) -> String {
        format!("{} rows × {} columns", self.0.height(), self.0.width())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl pipe_core::LoadArtifact for Frame {
    const TYPE_NAME: &'static str = "frame";
    fn load(dir: &Path) -> Result<Self, pipe_core::ArtifactError> {
        let path = dir.join(FRAME_FILE);
        let file = File::open(&path).map_err(|e| pipe_core::ArtifactError::io(&path, e))?;
        ParquetReader::new(file).finish().map(Frame).map_err(|e| {
            pipe_core::ArtifactError::invalid(&path, format!("not a readable frame: {e}"))
        })
    }
}

pipe_core::register_artifact!(
    Frame,
    "a table of records (one Parquet file; Arrow in Python)"
);
