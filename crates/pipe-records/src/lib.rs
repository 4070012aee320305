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

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// A file (or input) that cannot be read as records, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", .path.display())]
pub struct InputError {
    pub path: PathBuf,
    pub message: String,
}

mod parquet_check;

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

/// How far input discovery goes and how large one record may be: limits
/// that keep a mistaken or hostile input from exhausting the machine, each
/// a named error when crossed.
pub mod limits {
    /// Bytes in one CSV record or one JSON line (its text field included).
    pub const MAX_RECORD_BYTES: usize = 16 << 20;
    /// `[`/`{` nesting of one JSON line; deeper rows are refused before any
    /// JSON parser sees them (type inference recurses once per level).
    pub const MAX_JSON_NESTING: usize = 64;
    /// Files one input may name.
    pub const MAX_FILES: usize = 100_000;
    /// Directory levels below the input directory (or a glob's fixed prefix).
    pub const MAX_DIRECTORY_DEPTH: usize = 64;
}

use limits::*;

/// The files `input` names, sorted: a file; a directory, searched
/// recursively for `.parquet`, `.csv`, `.jsonl` files (names starting with
/// `.` or `_`, such as Spark's `_SUCCESS`, skipped); or a glob pattern
/// (`*` stays within a directory, `**` crosses them).
///
/// A file reached twice (through a link, or two patterns' paths) is read
/// once. Symbolic links to directories are followed only when
/// `follow_links` is set, and then each directory is entered once, so a link
/// to `.` or `..` cannot loop.
pub fn discover(input: &str, follow_links: bool) -> Result<Vec<PathBuf>, InputError> {
    let path = Path::new(input);
    let mut found = Found::default();
    if path.is_file() {
        found.add(path)?;
    } else if path.is_dir() {
        walk(
            path,
            &Walk {
                depth: 0,
                max_depth: MAX_DIRECTORY_DEPTH,
                follow_links,
                skip_hidden: true,
                pattern: None,
            },
            &mut found,
        )?;
    } else if input.contains(['*', '?', '[']) {
        let pattern = glob::Pattern::new(input)
            .map_err(|e| input_err(path, format!("not a valid glob: {e}")))?;
        let root = glob_root(input);
        if root.is_dir() {
            let max_depth = glob_depth(input, &root);
            walk(
                &root,
                &Walk {
                    depth: 0,
                    max_depth,
                    follow_links,
                    skip_hidden: false,
                    pattern: Some(&pattern),
                },
                &mut found,
            )?;
        }
    } else {
        return Err(input_err(path, "no such file or directory"));
    }
    let mut files = found.files;
    files.sort();
    if files.is_empty() {
        return Err(input_err(path, "names no .parquet, .csv or .jsonl file"));
    }
    Ok(files)
}

/// Files found so far, each real file once.
#[derive(Default)]
struct Found {
    files: Vec<PathBuf>,
    real_files: HashSet<PathBuf>,
    real_dirs: HashSet<PathBuf>,
}

impl Found {
    fn add(&mut self, path: &Path) -> Result<(), InputError> {
        let real = std::fs::canonicalize(path).map_err(|e| input_err(path, e))?;
        if self.real_files.insert(real) {
            self.files.push(path.to_path_buf());
        }
        if self.files.len() > MAX_FILES {
            return Err(input_err(
                path,
                format!("the input names more than {MAX_FILES} files; split it into several jobs"),
            ));
        }
        Ok(())
    }
}

struct Walk<'a> {
    depth: usize,
    /// Directories deeper than this are not entered (a glob without `**`
    /// matches only so deep).
    max_depth: usize,
    follow_links: bool,
    skip_hidden: bool,
    /// A glob every file must match; none takes every records file.
    pattern: Option<&'a glob::Pattern>,
}

fn walk(dir: &Path, how: &Walk, found: &mut Found) -> Result<(), InputError> {
    if how.depth > MAX_DIRECTORY_DEPTH {
        return Err(input_err(
            dir,
            format!("lies more than {MAX_DIRECTORY_DEPTH} directories deep in the input"),
        ));
    }
    // Entering a directory twice (a followed link to it) would read its files twice or loop.
    let real = std::fs::canonicalize(dir).map_err(|e| input_err(dir, e))?;
    if !found.real_dirs.insert(real) {
        return Ok(());
    }
    let io = |e: std::io::Error| input_err(dir, e);
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(['.', '_']));
        if hidden && how.skip_hidden {
            continue;
        }
        // The entry's own type: a link is a link here, whatever it points to.
        let own_type = entry.file_type().map_err(io)?;
        let is_dir = if own_type.is_symlink() {
            how.follow_links && path.is_dir()
        } else {
            own_type.is_dir()
        };
        if is_dir {
            if how.depth < how.max_depth {
                walk(
                    &path,
                    &Walk {
                        depth: how.depth + 1,
                        ..*how
                    },
                    found,
                )?;
            }
        } else if path.is_file()
            && Format::of(&path).is_some()
            && how.pattern.is_none_or(|p| matches_glob(p, &path))
        {
            found.add(&path)?;
        }
    }
    Ok(())
}

fn matches_glob(pattern: &glob::Pattern, path: &Path) -> bool {
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::new()
    };
    // A pattern with no directory part (`*.csv`) is walked from `.`, whose
    // paths read `./a.csv`.
    let path = if pattern.as_str().starts_with("./") {
        path
    } else {
        path.strip_prefix(".").unwrap_or(path)
    };
    pattern.matches_path_with(path, options)
}

/// How many directories below its root a glob can match: its components
/// after the fixed ones, or the walk's limit when it has a `**`.
fn glob_depth(pattern: &str, root: &Path) -> usize {
    if pattern.contains("**") {
        return MAX_DIRECTORY_DEPTH;
    }
    let below = Path::new(pattern)
        .components()
        .count()
        .saturating_sub(root.components().count());
    below.saturating_sub(1)
}

/// The directory a glob's matches lie under: its components before the
/// first one with a wildcard.
fn glob_root(pattern: &str) -> PathBuf {
    let fixed: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect();
    if fixed.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        fixed
    }
}

/// Opens `path`, checks it has `columns`, and reads its format, size and
/// row count. Every record is read once here (CSV, JSON lines), so a record
/// over the size or nesting limit is refused before anything is scored.
pub fn inspect(path: &Path, columns: &[String]) -> Result<InputFile, InputError> {
    let format =
        Format::of(path).ok_or_else(|| input_err(path, "is not .parquet, .csv or .jsonl"))?;
    let meta = std::fs::metadata(path).map_err(|e| input_err(path, e))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let rows = match format {
        Format::Parquet => {
            parquet_check::check(path, columns).map_err(|e| input_err(path, e))?;
            let (schema, rows) = by_polars(path, || {
                let mut reader = parquet_reader(path)?;
                let schema = reader
                    .schema()
                    .map_err(|e| input_err(path, format!("not a Parquet file: {e}")))?;
                Ok((
                    schema,
                    reader
                        .num_rows()
                        .map_err(|e| input_err(path, format!("not a Parquet file: {e}")))?
                        as u64,
                ))
            })?;
            check_columns(path, columns, schema.iter_names().map(|n| n.as_str()))?;
            rows
        }
        Format::Csv => {
            let mut csv = CsvRecords::open(path)?;
            check_columns(path, columns, csv.header.iter())?;
            let mut record = csv::StringRecord::new();
            let mut rows = 0u64;
            while csv.next(&mut record)? {
                rows += 1;
            }
            csv.check_last_record_closed()?;
            rows
        }
        Format::JsonLines => {
            let schema = json_lines_schema(path)?;
            check_columns(path, columns, schema.iter_names().map(|n| n.as_str()))?;
            let mut rows = 0u64;
            for_each_line(path, |_| {
                rows += 1;
                Ok(true)
            })?;
            rows
        }
    };
    Ok(InputFile {
        path: path.to_path_buf(),
        format,
        rows,
        bytes: meta.len(),
        modified_ns,
    })
}

impl InputFile {
    /// Whether the file on disk is still the one inspected (same size and
    /// modification time): checked before a shard's output is committed.
    pub fn unchanged(&self) -> Result<(), InputError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| input_err(&self.path, e))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        if meta.len() != self.bytes || modified_ns != self.modified_ns {
            return Err(input_err(
                &self.path,
                "changed while it was being scored; nothing was committed, run the job again",
            ));
        }
        Ok(())
    }
}

/// Reads rows `rows` of `file`, at most `batch_rows` at a time, with only
/// `columns` (each must exist), and hands each batch to `each`. Every row of
/// the range is delivered, or it is an error naming the file: a file that
/// holds fewer rows than counted was changed, or its footer lies.
pub fn read_batches(
    file: &InputFile,
    rows: Range<u64>,
    batch_rows: usize,
    columns: &[String],
    each: &mut dyn FnMut(DataFrame) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let mut delivered = 0u64;
    let mut counted = |frame: DataFrame| {
        delivered += frame.height() as u64;
        each(frame)
    };
    match file.format {
        Format::Parquet => {
            read_parquet(&file.path, rows.clone(), batch_rows, columns, &mut counted)?
        }
        Format::Csv => read_csv(&file.path, rows.clone(), batch_rows, columns, &mut counted)?,
        Format::JsonLines => {
            read_json_lines(&file.path, rows.clone(), batch_rows, columns, &mut counted)?
        }
    }
    let wanted = rows.end - rows.start;
    if delivered != wanted {
        return Err(input_err(
            &file.path,
            format!(
                "rows {}..{}: read {delivered} rows where {wanted} were counted",
                rows.start, rows.end
            ),
        ));
    }
    Ok(())
}

fn read_parquet(
    path: &Path,
    rows: Range<u64>,
    batch_rows: usize,
    columns: &[String],
    each: &mut dyn FnMut(DataFrame) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let schema = by_polars(path, || {
        parquet_reader(path)?
            .schema()
            .map_err(|e| input_err(path, e))
    })?;
    check_columns(path, columns, schema.iter_names().map(|n| n.as_str()))?;
    let mut start = rows.start;
    while start < rows.end {
        let len = (rows.end - start).min(batch_rows as u64);
        let frame = by_polars(path, || {
            parquet_reader(path)?
                .with_columns(Some(columns.to_vec()))
                .with_slice(Some((start as usize, len as usize)))
                .finish()
                .map_err(|e| input_err(path, format!("rows {start}..{}: {e}", start + len)))
        })?;
        // A footer may claim more rows than the file holds: a short batch
        // ends the read here, with an error, instead of empty batches forever.
        if frame.height() as u64 != len {
            let message = format!(
                "rows {start}..{}: the file holds {} of them, though its footer counts {} rows",
                start + len,
                frame.height(),
                rows.end
            );
            return Err(input_err(path, message));
        }
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
    each: &mut dyn FnMut(DataFrame) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let mut csv = CsvRecords::open(path)?;
    check_columns(path, columns, csv.header.iter())?;
    let positions: Vec<usize> = columns
        .iter()
        .map(|c| {
            csv.header
                .iter()
                .position(|h| h == c)
                .expect("checked above")
        })
        .collect();
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    let mut batch: Vec<Vec<String>> = vec![Vec::new(); columns.len()];
    while row < rows.end && csv.next(&mut record)? {
        if row >= rows.start {
            for (values, &at) in batch.iter_mut().zip(&positions) {
                values.push(record.get(at).unwrap_or_default().to_string());
            }
            if batch[0].len() == batch_rows {
                each(string_frame(
                    path,
                    columns,
                    std::mem::replace(&mut batch, vec![Vec::new(); columns.len()]),
                )?)?;
            }
        }
        row += 1;
    }
    if !batch[0].is_empty() {
        each(string_frame(path, columns, batch)?)?;
    }
    Ok(())
}

fn string_frame(
    path: &Path,
    columns: &[String],
    values: Vec<Vec<String>>,
) -> Result<DataFrame, InputError> {
    let series: Vec<Column> = columns
        .iter()
        .zip(values)
        .map(|(name, v)| Series::new(name.as_str().into(), v).into())
        .collect();
    DataFrame::new_infer_height(series).map_err(|e| input_err(path, e))
}

/// A CSV file's records, each at most [`MAX_RECORD_BYTES`]: the csv crate
/// buffers a whole record, so a record is bounded by counting the bytes read
/// since the last one ended (a text of gigabytes, or an unclosed quote that
/// swallows the rest of the file, stops at the limit).
struct CsvRecords {
    reader: csv::Reader<BoundedRead<File>>,
    header: csv::StringRecord,
    path: PathBuf,
    /// Records read after the header.
    rows: u64,
    last_record_start: u64,
}

impl CsvRecords {
    fn open(path: &Path) -> Result<CsvRecords, InputError> {
        let file = File::open(path).map_err(|e| input_err(path, e))?;
        let bounded = BoundedRead {
            inner: file,
            consumed: 0,
            record_start: Cell::new(0),
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .buffer_capacity(1 << 20)
            .from_reader(bounded);
        let header = reader.headers().map_err(|e| csv_err(path, 0, e))?.clone();
        reader.get_ref().record_start.set(reader.position().byte());
        Ok(CsvRecords {
            reader,
            header,
            path: path.to_path_buf(),
            rows: 0,
            last_record_start: 0,
        })
    }

    /// Reads the next record; false at the end of the file.
    fn next(&mut self, record: &mut csv::StringRecord) -> Result<bool, InputError> {
        let start = self.reader.position().byte();
        let more = self
            .reader
            .read_record(record)
            .map_err(|e| csv_err(&self.path, self.rows + 1, e))?;
        if more {
            self.rows += 1;
            self.last_record_start = start;
            let end = self.reader.position().byte();
            self.reader.get_ref().record_start.set(end);
        }
        Ok(more)
    }

    /// An unclosed quote makes the csv crate read every following row into
    /// one field, to the end of the file, without an error: the last record
    /// then ends inside a quoted field. Its bytes are read again with the
    /// RFC 4180 rules the csv crate follows (a field that starts with `"` is
    /// quoted, `""` inside it is a quote, a `"` inside an unquoted field is
    /// a plain character).
    fn check_last_record_closed(&self) -> Result<(), InputError> {
        let mut file = File::open(&self.path).map_err(|e| input_err(&self.path, e))?;
        file.seek(SeekFrom::Start(self.last_record_start))
            .map_err(|e| input_err(&self.path, e))?;
        let mut tail = Vec::new();
        file.take(MAX_RECORD_BYTES as u64 + (4 << 20))
            .read_to_end(&mut tail)
            .map_err(|e| input_err(&self.path, e))?;
        if ends_inside_quotes(&tail) {
            let row = self.rows.max(1);
            return Err(input_err(&self.path, format!("row {row}: a quoted field is never closed (an unclosed `\"` swallows every row after it)")));
        }
        Ok(())
    }
}

/// Whether CSV text ends inside a quoted field.
fn ends_inside_quotes(csv: &[u8]) -> bool {
    let (mut at_field_start, mut quoted, mut quote_seen) = (true, false, false);
    for &byte in csv {
        if quoted {
            match (byte, quote_seen) {
                (b'"', false) => quote_seen = true,
                (b'"', true) => quote_seen = false,
                (_, true) => {
                    // The quote closed the field; this byte follows it.
                    (quoted, quote_seen) = (false, false);
                    at_field_start = matches!(byte, b',' | b'\n' | b'\r');
                }
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' if at_field_start => (quoted, at_field_start) = (true, false),
            b',' | b'\n' | b'\r' => at_field_start = true,
            _ => at_field_start = false,
        }
    }
    quoted && !quote_seen
}

/// Counts the bytes the csv reader pulls and fails once one record spans
/// more than [`MAX_RECORD_BYTES`] (plus the reader's own buffer).
struct BoundedRead<R> {
    inner: R,
    consumed: u64,
    record_start: Cell<u64>,
}

/// The io error's message, recognised by [`csv_err`].
const RECORD_TOO_LONG: &str = "record over the size limit";

impl<R: Read> Read for BoundedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.consumed.saturating_sub(self.record_start.get())
            > (MAX_RECORD_BYTES + (2 << 20)) as u64
        {
            return Err(std::io::Error::other(RECORD_TOO_LONG));
        }
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

fn csv_err(path: &Path, row: u64, e: csv::Error) -> InputError {
    let message = match e.kind() {
        csv::ErrorKind::Io(io) if io.to_string() == RECORD_TOO_LONG => format!(
            "row {row}: a record longer than the {} MiB limit (one huge text, or an unclosed `\"` swallowing the rows after it)",
            MAX_RECORD_BYTES >> 20
        ),
        _ => format!("row {row}: {e}"),
    };
    input_err(path, message)
}

fn read_json_lines(
    path: &Path,
    rows: Range<u64>,
    batch_rows: usize,
    columns: &[String],
    each: &mut dyn FnMut(DataFrame) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let schema = json_lines_schema(path)?;
    check_columns(path, columns, schema.iter_names().map(|n| n.as_str()))?;
    let mut row = 0u64;
    let mut first_in_batch = rows.start;
    let mut batch = Vec::new();
    let mut in_batch = 0usize;
    let mut parse = |bytes: Vec<u8>, first: u64, count: usize| -> Result<(), InputError> {
        let frame = by_polars(path, || {
            JsonReader::new(Cursor::new(bytes))
                .with_json_format(JsonFormat::JsonLines)
                .with_schema(schema.clone())
                .finish()
                .and_then(|f| f.select(columns.iter().map(|c| c.as_str())))
                .map_err(|e| {
                    input_err(path, format!("rows {first}..{}: {e}", first + count as u64))
                })
        })?;
        // One row per line, or the rows after it would shift.
        if frame.height() != count {
            return Err(input_err(
                path,
                format!(
                    "rows {first}..{}: {count} lines parsed as {} rows",
                    first + count as u64,
                    frame.height()
                ),
            ));
        }
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
fn json_lines_schema(path: &Path) -> Result<SchemaRef, InputError> {
    let mut head = Vec::new();
    let mut rows = 0;
    for_each_line(path, |line| {
        head.extend_from_slice(line);
        head.push(b'\n');
        rows += 1;
        Ok(rows < SCHEMA_ROWS)
    })?;
    let frame = by_polars(path, || {
        JsonReader::new(Cursor::new(head))
            .with_json_format(JsonFormat::JsonLines)
            .infer_schema_len(NonZeroUsize::new(SCHEMA_ROWS))
            .finish()
            .map_err(|e| input_err(path, format!("not JSON lines: {e}")))
    })?;
    Ok(Arc::new(frame.schema().as_ref().clone()))
}

/// Runs a polars reader on `path`'s contents. polars panics on some input
/// it does not support (a JSON number past 64 bits infers an `Int128`
/// column, which this build of polars has no type for): the panic is this
/// file's error, with polars' message, not the caller's crash.
fn by_polars<T>(
    path: &Path,
    read: impl FnOnce() -> Result<T, InputError>,
) -> Result<T, InputError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
        Err(input_err(
            path,
            format!(
                "polars could not read it: {}",
                message.unwrap_or_else(|| "(no message)".into())
            ),
        ))
    })
}

/// Calls `each` with every non-blank line (without its end), until it
/// returns false. A line over [`MAX_RECORD_BYTES`] or nested deeper than
/// [`MAX_JSON_NESTING`] is an error naming its line number, read no further.
fn for_each_line(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> Result<bool, InputError>,
) -> Result<(), InputError> {
    let mut reader =
        BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| input_err(path, e))?);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        number += 1;
        let read = (&mut reader)
            .take(MAX_RECORD_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| input_err(path, e))?;
        if read == 0 {
            return Ok(());
        }
        if line.len() > MAX_RECORD_BYTES && line.last() != Some(&b'\n') {
            return Err(input_err(
                path,
                format!(
                    "line {number}: longer than the {} MiB limit on one record",
                    MAX_RECORD_BYTES >> 20
                ),
            ));
        }
        let trimmed = line.trim_ascii();
        if json_nesting_exceeds(trimmed, MAX_JSON_NESTING) {
            return Err(input_err(
                path,
                format!("line {number}: nested deeper than {MAX_JSON_NESTING} levels"),
            ));
        }
        if !trimmed.is_empty() && !each(trimmed)? {
            return Ok(());
        }
    }
}

/// Whether `[`/`{` nest deeper than `limit` in a JSON text, strings skipped.
/// A byte scan: it needs no parse, so it runs before any parser recurses.
fn json_nesting_exceeds(json: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn parquet_reader(path: &Path) -> Result<ParquetReader<File>, InputError> {
    Ok(ParquetReader::new(
        File::open(path).map_err(|e| input_err(path, e))?,
    ))
}

fn check_columns<'a>(
    path: &Path,
    wanted: &[String],
    present: impl Iterator<Item = &'a str>,
) -> Result<(), InputError> {
    let present: Vec<&str> = present.collect();
    match wanted.iter().find(|w| !present.contains(&w.as_str())) {
        Some(missing) => Err(input_err(
            path,
            format!(
                "has no column `{missing}` (its columns: {})",
                present.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn input_err(path: &Path, message: impl ToString) -> InputError {
    InputError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing findings (`fuzz/`, target `records`), kept: each must be a
    /// named error, not a panic.
    #[test]
    fn a_json_number_past_64_bits_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge-number.jsonl");
        // fuzz/artifacts/records/crash-0f52c97e…, its format byte dropped.
        std::fs::write(
            &path,
            b"555555555555555555555555555555\x15555555555555555555555555555555555555555555555555555555555555555555555555555555555\x02\x02",
        )
        .unwrap();
        let err = inspect(&path, &["Text".to_string()]).unwrap_err();
        assert_eq!(err.path, path);
        assert!(
            err.message.contains("polars could not read it") && err.message.contains("Int128"),
            "{err}"
        );
    }

    #[test]
    fn an_unclosed_quote_is_told_from_a_quote_inside_a_field() {
        assert!(ends_inside_quotes(b"1,\"a bird\n2,a tree\n"));
        assert!(!ends_inside_quotes(b"1,\"a \"\"quoted\"\" bird\"\n"));
        assert!(!ends_inside_quotes(b"1,a 5\" screen\n"));
        assert!(!ends_inside_quotes(b"1,\"two\nlines\",x\n"));
        assert!(!ends_inside_quotes(b"1,\"ends quoted\""));
    }

    #[test]
    fn a_bare_glob_matches_files_in_the_working_directory() {
        let pattern = glob::Pattern::new("*.csv").unwrap();
        assert!(matches_glob(&pattern, Path::new("./a.csv")));
        assert!(!matches_glob(&pattern, Path::new("./d/a.csv")));
        assert_eq!(glob_depth("*.csv", &glob_root("*.csv")), 0);
        assert_eq!(glob_depth("in/*/x/*.csv", &glob_root("in/*/x/*.csv")), 2);
        assert_eq!(
            glob_depth("in/**/*.csv", &glob_root("in/**/*.csv")),
            MAX_DIRECTORY_DEPTH
        );
    }

    #[test]
    fn json_nesting_is_measured_outside_strings() {
        assert!(!json_nesting_exceeds(
            br#"{"a": "[[[[[[[[", "b": [1, [2]]}"#,
            3
        ));
        assert!(json_nesting_exceeds(br#"{"a": [[1]]}"#, 2));
        assert!(!json_nesting_exceeds(br#"{"a": "\"[[[", "b": 1}"#, 1));
    }
}
