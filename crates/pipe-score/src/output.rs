//! A shard's output: one Parquet part written batch by batch under a temp
//! name and renamed into place when complete, then a small manifest beside it
//! that says what it holds. The manifest is the commit: a part without one is
//! not done, and a rerun with the same model and input skips a shard whose
//! manifest and part are both there.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::{CompatLevel, DataFrame, KeyValueMetadata, ParquetWriter, SchemaExt as _};
use polars_parquet::write::schema_to_metadata_key;
use serde::{Deserialize, Serialize};

use crate::shard::Shard;
use crate::ScoreError;

/// Written beside each part as `_part-XXXXX-of-YYYYY.json`: the leading `_`
/// marks it as metadata, as Spark's `_SUCCESS`, so Spark, pyarrow, Dask and
/// `pipe score` itself read the output directory as Parquet parts only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub shard: Shard,
    pub rows: u64,
    /// The Parquet file's name in the same directory; none for a shard with no rows.
    pub part: Option<String>,
    pub part_bytes: u64,
    /// Digest of the vectorizer, model and labels.
    pub model: String,
    /// Digest of the input files (path, size, modification time, rows) and the output options.
    pub input: String,
    pub seconds: f64,
    pub pipe_version: String,
}

impl Manifest {
    pub fn path(dir: &Path, shard: Shard) -> PathBuf {
        dir.join(format!("_{}.json", shard.part_name()))
    }

    /// Whether this manifest's shard is complete for `model` and `input`: same
    /// digests, and its part is there at its recorded size.
    pub fn is_complete(&self, dir: &Path, model: &str, input: &str) -> bool {
        let part_there = match &self.part {
            Some(name) => std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == self.part_bytes),
            None => true,
        };
        self.model == model && self.input == input && part_there
    }
}

/// The manifests already in `dir` (of any shard count).
pub fn manifests(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>, ScoreError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| ScoreError::Output { path: dir.into(), message: e.to_string() })?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("_part-") && name.ends_with(".json") {
            let manifest = pipe::core::fsutil::load_json(&path).map_err(|e| ScoreError::Output { path: path.clone(), message: e.to_string() })?;
            out.push((path, manifest));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A Parquet part being written; removed unless committed.
pub struct PartWriter {
    dir: PathBuf,
    name: String,
    tmp: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    rows: u64,
}

impl PartWriter {
    pub fn new(dir: &Path, shard: Shard) -> Result<PartWriter, ScoreError> {
        std::fs::create_dir_all(dir).map_err(|e| ScoreError::Output { path: dir.into(), message: e.to_string() })?;
        let name = format!("{}.parquet", shard.part_name());
        remove_stale_temps(dir, &name);
        let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), pipe::core::fsutil::unique_suffix()));
        Ok(PartWriter { dir: dir.to_path_buf(), name, tmp, writer: None, rows: 0 })
    }

    pub fn write(&mut self, frame: &DataFrame) -> Result<(), ScoreError> {
        let err = |e: polars::error::PolarsError| ScoreError::Output { path: self.tmp.clone(), message: e.to_string() };
        if self.writer.is_none() {
            let file = File::create(&self.tmp).map_err(|e| ScoreError::Output { path: self.tmp.clone(), message: e.to_string() })?;
            // The Arrow schema embedded for readers, with strings as
            // `large_string`: polars would record `string_view`, which
            // pyarrow reads back but cannot sort or take.
            let arrow_schema = schema_to_metadata_key(&frame.schema().to_arrow(CompatLevel::oldest()));
            let metadata = Some(KeyValueMetadata::Static(vec![arrow_schema]));
            let writer = ParquetWriter::new(file).with_key_value_metadata(metadata);
            self.writer = Some(writer.batched(frame.schema()).map_err(err)?);
        }
        // The writer takes one chunk per column; columns carried from the
        // input can arrive in several (one per row group read).
        let mut frame = frame.clone();
        frame.rechunk_mut();
        self.writer.as_mut().expect("opened above").write_batch(&frame).map_err(err)?;
        self.rows += frame.height() as u64;
        Ok(())
    }

    /// Finishes the file and renames it into place: `(name, bytes)`, or
    /// `None` when no row was written.
    pub fn commit(mut self) -> Result<Option<(String, u64)>, ScoreError> {
        let Some(writer) = self.writer.take() else { return Ok(None) };
        let out_err = |path: &Path, message: String| ScoreError::Output { path: path.to_path_buf(), message };
        writer.finish().map_err(|e| out_err(&self.tmp, e.to_string()))?;
        let file = File::open(&self.tmp).map_err(|e| out_err(&self.tmp, e.to_string()))?;
        file.sync_all().map_err(|e| out_err(&self.tmp, e.to_string()))?;
        let bytes = file.metadata().map_err(|e| out_err(&self.tmp, e.to_string()))?.len();
        let target = self.dir.join(&self.name);
        std::fs::rename(&self.tmp, &target).map_err(|e| out_err(&target, e.to_string()))?;
        pipe::core::fsutil::sync_dir(&self.dir).map_err(|e| out_err(&self.dir, e.to_string()))?;
        Ok(Some((self.name.clone(), bytes)))
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Temp files of this part left by a process that was killed.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
