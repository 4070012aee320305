//! The records to score: which files an input names (a file, a directory of
//! parts, a glob), how many rows each holds, and a row range of one file read
//! back in batches of bounded size.
//!
//! Parquet row counts come from the file's footer and a row range decodes
//! only the row groups it overlaps. CSV and JSON lines have no index: their
//! rows are counted in one pass, and a range is found by reading past the
//! rows before it. CSV values pass through as strings (CSV has no types);
//! JSON lines' types are inferred from a file's first rows, the same for
//! every shard.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ScoreError;

/// A JSON-lines file's column types come from this many first rows.
const SCHEMA_ROWS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Parquet,
    Csv,
    JsonLines,
}

impl Format {
    /// From the extension; `None` for a file that is not records.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            _ => None,
        }
    }
}

/// One input file, as fingerprinted for the shard manifests: a changed size
/// or modification time means a changed input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: Format,
    pub rows: u64,
    pub bytes: u64,
    pub modified_ns: u128,
}

/// The files `input` names, sorted: a file; a directory, searched
/// recursively for `.parquet`, `.csv`, `.jsonl` files (names starting with
/// `.` or `_`, such as Spark's `_SUCCESS`, skipped); or a glob pattern.
pub fn discover(input: &str) -> Result<Vec<PathBuf>, ScoreError> {
    let path = Path::new(input);
    let files = if path.is_file() {
        vec![path.to_path_buf()]
    } else if path.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files)?;
        files
    } else if input.contains(['*', '?', '[']) {
        let pattern = glob::glob(input).map_err(|e| ScoreError::Input { path: path.into(), message: format!("not a valid glob: {e}") })?;
        let mut files = Vec::new();
        for entry in pattern {
            let file = entry.map_err(|e| ScoreError::Input { path: e.path().into(), message: e.error().to_string() })?;
            if file.is_file() && Format::of(&file).is_some() {
                files.push(file);
            }
        }
        files
    } else {
        return Err(ScoreError::Input { path: path.into(), message: "no such file or directory".into() });
    };
    let mut files = files;
    files.sort();
    if files.is_empty() {
        return Err(ScoreError::Input { path: path.into(), message: "names no .parquet, .csv or .jsonl file".into() });
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ScoreError> {
    let io = |e: std::io::Error| ScoreError::Input { path: dir.into(), message: e.to_string() };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(['.', '_']));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if Format::of(&path).is_some() {
            files.push(path);
        }
    }
    Ok(())
}

/// Opens `path`: its format, size and row count.
pub fn inspect(path: &Path) -> Result<InputFile, ScoreError> {
    let format = Format::of(path).ok_or_else(|| input_err(path, "is not .parquet, .csv or .jsonl"))?;
    let meta = std::fs::metadata(path).map_err(|e| input_err(path, e))?;
    let modified_ns = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    let rows = match format {
        Format::Parquet => parquet_reader(path)?.num_rows().map_err(|e| input_err(path, format!("not a Parquet file: {e}")))? as u64,
        Format::Csv => {
            let mut csv = csv_reader(path)?;
            let mut record = csv::ByteRecord::new();
            let mut rows = 0u64;
            while csv.read_byte_record(&mut record).map_err(|e| input_err(path, e))? {
                rows += 1;
            }
            rows
        }
        Format::JsonLines => {
            let mut rows = 0u64;
            for_each_line(path, |_| {
                rows += 1;
                Ok(true)
            })?;
            rows
        }
    };
    Ok(InputFile { path: path.to_path_buf(), format, rows, bytes: meta.len(), modified_ns })
}

/// Reads rows `rows` of `file`, at most `batch_rows` at a time, with only
/// `columns` (each must exist), and hands each batch to `each`.
pub fn read_batches(
    file: &InputFile,
    rows: Range<u64>,
    batch_rows: usize,
    columns: &[String],
    each: &mut dyn FnMut(DataFrame) -> Result<(), ScoreError>,
) -> Result<(), ScoreError> {
    match file.format {
        Format::Parquet => read_parquet(&file.path, rows, batch_rows, columns, each),
        Format::Csv => read_csv(&file.path, rows, batch_rows, columns, each),
        Format::JsonLines => read_json_lines(&file.path, rows, batch_rows, columns, each),
    }
}

fn read_parquet(
    path: &Path,
    rows: Range<u64>,
    batch_rows: usize,
    columns: &[String],
    each: &mut dyn FnMut(DataFrame) -> Result<(), ScoreError>,
) -> Result<(), ScoreError> {
    let schema = parquet_reader(path)?.schema().map_err(|e| input_err(path, e))?;
    check_columns(path, columns, schema.iter_names().map(|n| n.as_str()))?;
    let mut start = rows.start;
    while start < rows.end {
        let len = (rows.end - start).min(batch_rows as u64);
        let frame = parquet_reader(path)?
            .with_columns(Some(columns.to_vec()))
            .with_slice(Some((start as usize, len as usize)))
            .finish()
            .map_err(|e| input_err(path, format!("rows {start}..{}: {e}", start + len)))?;
        each(frame)?;
        start += len;
    }
    Ok(())
}

fn read_csv(
    path: &Path,
    rows: Range<u64>,
    batch_rows: usize,
    columns: &[String],
    each: &mut dyn FnMut(DataFrame) -> Result<(), ScoreError>,
) -> Result<(), ScoreError> {
    let mut csv = csv_reader(path)?;
    let header = csv.headers().map_err(|e| input_err(path, e))?.clone();
    check_columns(path, columns, header.iter())?;
    let positions: Vec<usize> = columns.iter().map(|c| header.iter().position(|h| h == c).expect("checked above")).collect();
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    let mut batch: Vec<Vec<String>> = vec![Vec::new(); columns.len()];
    while row < rows.end && csv.read_record(&mut record).map_err(|e| input_err(path, format!("row {row}: {e}")))? {
        if row >= rows.start {
            for (values, &at) in batch.iter_mut().zip(&positions) {
                values.push(record.get(at).unwrap_or_default().to_string());
            }
            if batch[0].len() == batch_rows {
                each(string_frame(path, columns, std::mem::replace(&mut batch, vec![Vec::new(); columns.len()]))?)?;
            }
        }
        row += 1;
    }
    if !batch[0].is_empty() {
        each(string_frame(path, columns, batch)?)?;
    }
    Ok(())
}

fn string_frame(path: &Path, columns: &[String], values: Vec<Vec<String>>) -> Result<DataFrame, ScoreError> {
    let series: Vec<Column> = columns.iter().zip(values).map(|(name, v)| Series::new(name.as_str().into(), v).into()).collect();
    DataFrame::new_infer_height(series).map_err(|e| input_err(path, e))
}

fn read_json_lines(
    path: &Path,
    rows: Range<u64>,
    batch_rows: usize,
    columns: &[String],
    each: &mut dyn FnMut(DataFrame) -> Result<(), ScoreError>,
) -> Result<(), ScoreError> {
    let schema = json_lines_schema(path)?;
    check_columns(path, columns, schema.iter_names().map(|n| n.as_str()))?;
    let mut row = 0u64;
    let mut first_in_batch = rows.start;
    let mut batch = Vec::new();
    let mut in_batch = 0usize;
    let mut parse = |bytes: Vec<u8>, first: u64, count: usize| -> Result<(), ScoreError> {
        let frame = JsonReader::new(Cursor::new(bytes))
            .with_json_format(JsonFormat::JsonLines)
            .with_schema(schema.clone())
            .finish()
            .and_then(|f| f.select(columns.iter().map(|c| c.as_str())))
            .map_err(|e| input_err(path, format!("rows {first}..{}: {e}", first + count as u64)))?;
        each(frame)
    };
    for_each_line(path, |line| {
        if row >= rows.end {
            return Ok(false);
        }
        if row >= rows.start {
            batch.extend_from_slice(line);
            batch.push(b'\n');
            in_batch += 1;
            if in_batch == batch_rows {
                parse(std::mem::take(&mut batch), first_in_batch, in_batch)?;
                first_in_batch += in_batch as u64;
                in_batch = 0;
            }
        }
        row += 1;
        Ok(true)
    })?;
    if in_batch > 0 {
        parse(batch, first_in_batch, in_batch)?;
    }
    Ok(())
}

/// The column types of a JSON-lines file, from its first rows.
fn json_lines_schema(path: &Path) -> Result<SchemaRef, ScoreError> {
    let mut head = Vec::new();
    let mut rows = 0;
    for_each_line(path, |line| {
        head.extend_from_slice(line);
        head.push(b'\n');
        rows += 1;
        Ok(rows < SCHEMA_ROWS)
    })?;
    let frame = JsonReader::new(Cursor::new(head))
        .with_json_format(JsonFormat::JsonLines)
        .infer_schema_len(NonZeroUsize::new(SCHEMA_ROWS))
        .finish()
        .map_err(|e| input_err(path, format!("not JSON lines: {e}")))?;
    Ok(Arc::new(frame.schema().as_ref().clone()))
}

/// Calls `each` with every non-blank line (without its end), until it returns false.
fn for_each_line(path: &Path, mut each: impl FnMut(&[u8]) -> Result<bool, ScoreError>) -> Result<(), ScoreError> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| input_err(path, e))?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| input_err(path, e))? == 0 {
            return Ok(());
        }
        let trimmed = line.trim_ascii();
        if !trimmed.is_empty() && !each(trimmed)? {
            return Ok(());
        }
    }
}

fn parquet_reader(path: &Path) -> Result<ParquetReader<File>, ScoreError> {
    Ok(ParquetReader::new(File::open(path).map_err(|e| input_err(path, e))?))
}

fn csv_reader(path: &Path) -> Result<csv::Reader<impl Read>, ScoreError> {
    let file = File::open(path).map_err(|e| input_err(path, e))?;
    Ok(csv::ReaderBuilder::new().has_headers(true).from_reader(BufReader::with_capacity(1 << 20, file)))
}

fn check_columns<'a>(path: &Path, wanted: &[String], present: impl Iterator<Item = &'a str>) -> Result<(), ScoreError> {
    let present: Vec<&str> = present.collect();
    match wanted.iter().find(|w| !present.contains(&w.as_str())) {
        Some(missing) => Err(input_err(path, format!("has no column `{missing}` (its columns: {})", present.join(", ")))),
        None => Ok(()),
    }
}

fn input_err(path: &Path, message: impl ToString) -> ScoreError {
    ScoreError::Input { path: path.to_path_buf(), message: message.to_string() }
}
