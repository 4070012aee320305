//! A shard's output: one Parquet part written batch by batch under a temp
//! name and renamed into place when complete, then a small manifest beside it
//! that says what it holds. The manifest is the commit: a part without one is
//! not done, and a rerun with the same model and input skips a shard whose
//! manifest and part are both there.
//!
//! An output directory belongs to one job: `_job.json` records its model,
//! input and shard count, written by whichever process comes first under the
//! directory's lock. A process of another job is refused before it scores
//! anything, and each shard is scored by one process at a time (it holds
//! `_part-XXXXX-of-YYYYY.lock` while it works). The locks are on regular
//! files (`_job.lock` stays), so they hold across machines on NFS. A job that fails with nothing
//! committed and no other process at work gives the directory up again.

use std::fs::File;
use std::path::{Path, PathBuf};

use pipe_core::interrupt::ScratchGuard;
use polars::prelude::{CompatLevel, DataFrame, KeyValueMetadata, ParquetWriter, SchemaExt as _};
use polars_parquet::write::schema_to_metadata_key;
use serde::{Deserialize, Serialize};

use crate::shard::Shard;
use crate::ScoreJobError;

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
            Some(name) => {
                std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == self.part_bytes)
            }
            None => true,
        };
        self.model == model && self.input == input && part_there
    }
}

/// The manifests already in `dir` (of any shard count).
pub fn manifests(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>, ScoreJobError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| ScoreJobError::Output {
                path: dir.into(),
                message: e.to_string(),
            })?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("_part-") && name.ends_with(".json") {
            let manifest =
                pipe_core::fsutil::load_json(&path).map_err(|e| ScoreJobError::Output {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            out.push((path, manifest));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The job an output directory belongs to: `_job.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Digest of the vectorizer, model and labels.
    pub model: String,
    /// Digest of the input files and the output options.
    pub input: String,
    /// How many shards the input is split into.
    pub shards: usize,
}

const JOB_FILE: &str = "_job.json";

/// Held while a process scores one shard (an exclusive lock on
/// `_part-XXXXX-of-YYYYY.lock`); given up by [`ShardLock::release`], or by the
/// kernel when the process dies.
#[derive(Debug)]
pub struct ShardLock {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
}

const JOB_LOCK: &str = "_job.lock";

/// The directory's lock, `_job.lock`, held while the job record or a
/// shard's lock file is read, made or removed: a moment. A regular file,
/// opened for writing and never removed, so that on NFS the lock reaches the
/// server and holds across machines (a lock on a directory would not).
fn lock_dir(dir: &Path) -> Result<File, ScoreJobError> {
    let path = dir.join(JOB_LOCK);
    let err = |e: std::io::Error| ScoreJobError::Output {
        path: path.clone(),
        message: e.to_string(),
    };
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(err)?;
    handle.lock().map_err(err)?;
    Ok(handle)
}

/// Makes `dir` this job's, or finds it already is, then takes `shard`'s
/// lock. Refused, with nothing written, when the directory belongs to
/// another job or another process is scoring the same shard.
pub fn claim(dir: &Path, job: &JobRecord, shard: Shard) -> Result<ShardLock, ScoreJobError> {
    let out_err = |path: &Path, message: String| ScoreJobError::Output {
        path: path.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| out_err(dir, e.to_string()))?;
    let _dir_lock = lock_dir(dir)?;
    let record_path = dir.join(JOB_FILE);
    if record_path.exists() {
        let owner: JobRecord = pipe_core::fsutil::load_json(&record_path)
            .map_err(|e| out_err(&record_path, e.to_string()))?;
        if owner != *job {
            let message = format!(
                "this output directory belongs to another job ({}); write to another directory, or remove it to start over",
                difference(&owner, job)
            );
            return Err(out_err(&record_path, message));
        }
    } else {
        check_unclaimed(dir, job)?;
        let bytes = serde_json::to_vec_pretty(job).expect("a job record serializes");
        pipe_core::fsutil::atomic_write(&record_path, &bytes)
            .map_err(|e| out_err(&record_path, e.to_string()))?;
    }
    let path = dir.join(format!("_{}.lock", shard.part_name()));
    let file = File::create(&path).map_err(|e| out_err(&path, e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(ShardLock { dir: dir.to_path_buf(), path, file: Some(file) }),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(out_err(dir, format!("shard {shard} is being scored by another process right now; a shard is scored by one process at a time")))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(out_err(&path, e.to_string())),
    }
}

impl ShardLock {
    /// Ends this process's work on the shard and removes its lock file. When
    /// the job `failed`, nothing of it is committed and no other process is
    /// at work in the directory, the job record goes too, so the directory
    /// is free for a corrected run.
    pub fn release(mut self, failed: bool) {
        self.release_once(failed);
    }

    fn release_once(&mut self, failed: bool) {
        let Some(file) = self.file.take() else { return };
        let Ok(_dir_lock) = lock_dir(&self.dir) else {
            return;
        };
        drop(file);
        let _ = std::fs::remove_file(&self.path);
        if failed && !holds_results(&self.dir) && remove_idle_shard_locks(&self.dir) {
            let _ = std::fs::remove_file(self.dir.join(JOB_FILE));
        }
    }
}

/// A shard given up without [`ShardLock::release`] (a panic unwinding
/// past it) was not completed.
impl Drop for ShardLock {
    fn drop(&mut self) {
        self.release_once(true);
    }
}

/// Whether `dir` holds a part or a manifest.
fn holds_results(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("part-") || (name.starts_with("_part-") && name.ends_with(".json"))
        })
}

/// Removes shard lock files no process holds (left by killed processes);
/// true when none is held. Called with the directory's lock held, under
/// which every shard lock file is made and taken.
fn remove_idle_shard_locks(dir: &Path) -> bool {
    let mut all_idle = true;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("_part-") && name.ends_with(".lock")) {
            continue;
        }
        match File::open(entry.path()).map(|f| f.try_lock().map(|()| f)) {
            Ok(Ok(_idle)) => {
                let _ = std::fs::remove_file(entry.path());
            }
            _ => all_idle = false,
        }
    }
    all_idle
}

/// What differs between the directory's job and this one, for the user.
fn difference(owner: &JobRecord, job: &JobRecord) -> String {
    if owner.shards != job.shards {
        format!(
            "its input is split in {} shards, this run splits it in {}",
            owner.shards, job.shards
        )
    } else if owner.model != job.model {
        "it was scored with a different model".to_string()
    } else {
        "a different input or different output options".to_string()
    }
}

/// A directory without `_job.json` may be new, empty, or written by a
/// `pipe` that kept no record: its manifests must agree with this job, and
/// a part no manifest accounts for is another job's until proven otherwise.
fn check_unclaimed(dir: &Path, job: &JobRecord) -> Result<(), ScoreJobError> {
    let manifests = manifests(dir)?;
    for (path, other) in &manifests {
        if other.shard.count != job.shards || other.model != job.model || other.input != job.input {
            let owner = JobRecord {
                model: other.model.clone(),
                input: other.input.clone(),
                shards: other.shard.count,
            };
            let message = format!(
                "this output directory holds parts of another job ({}); write to another directory, or remove it to start over",
                difference(&owner, job)
            );
            return Err(ScoreJobError::Output {
                path: path.clone(),
                message,
            });
        }
    }
    for entry in std::fs::read_dir(dir)
        .map_err(|e| ScoreJobError::Output {
            path: dir.into(),
            message: e.to_string(),
        })?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-")
            && !manifests
                .iter()
                .any(|(_, m)| m.part.as_deref() == Some(name.as_str()))
        {
            let message =
                "a part no manifest accounts for (left by an interrupted run of another job?); remove it, or write to another directory".to_string();
            return Err(ScoreJobError::Output {
                path: entry.path(),
                message,
            });
        }
    }
    Ok(())
}

/// A Parquet part being written; removed unless committed.
pub struct PartWriter {
    dir: PathBuf,
    name: String,
    /// A scratch directory holding the part while it is written: the
    /// interrupt handler removes it when `pipe` is stopped.
    scratch: PathBuf,
    _scratch_guard: ScratchGuard<'static>,
    tmp: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    rows: u64,
}

impl PartWriter {
    /// Starts `shard`'s part; `_lock` proves this process holds the
    /// shard, so temp files of the shard left by a killed process can go.
    pub fn new(dir: &Path, shard: Shard, _lock: &ShardLock) -> Result<PartWriter, ScoreJobError> {
        std::fs::create_dir_all(dir).map_err(|e| ScoreJobError::Output {
            path: dir.into(),
            message: e.to_string(),
        })?;
        let name = format!("{}.parquet", shard.part_name());
        remove_stale_temps(dir, &name);
        let scratch = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            pipe_core::fsutil::unique_suffix()
        ));
        std::fs::create_dir(&scratch).map_err(|e| ScoreJobError::Output {
            path: scratch.clone(),
            message: e.to_string(),
        })?;
        let guard = ScratchGuard::new(scratch.clone());
        let tmp = scratch.join(&name);
        Ok(PartWriter {
            dir: dir.to_path_buf(),
            name,
            scratch,
            _scratch_guard: guard,
            tmp,
            writer: None,
            rows: 0,
        })
    }

    pub fn write(&mut self, frame: &DataFrame) -> Result<(), ScoreJobError> {
        let err = |e: polars::error::PolarsError| ScoreJobError::Output {
            path: self.tmp.clone(),
            message: e.to_string(),
        };
        if self.writer.is_none() {
            let file = File::create(&self.tmp).map_err(|e| ScoreJobError::Output {
                path: self.tmp.clone(),
                message: e.to_string(),
            })?;
            // The Arrow schema embedded for readers, with strings as
            // `large_string`: polars would record `string_view`, which
            // pyarrow reads back but cannot sort or take.
            let arrow_schema =
                schema_to_metadata_key(&frame.schema().to_arrow(CompatLevel::oldest()));
            let metadata = Some(KeyValueMetadata::Static(vec![arrow_schema]));
            let writer = ParquetWriter::new(file).with_key_value_metadata(metadata);
            self.writer = Some(writer.batched(frame.schema()).map_err(err)?);
        }
        // The writer takes one chunk per column; columns carried from the
        // input can arrive in several (one per row group read).
        let mut frame = frame.clone();
        frame.rechunk_mut();
        self.writer
            .as_mut()
            .expect("opened above")
            .write_batch(&frame)
            .map_err(err)?;
        self.rows += frame.height() as u64;
        Ok(())
    }

    /// Finishes the file and renames it into place: `(name, bytes)`, or
    /// `None` when no row was written.
    pub fn commit(mut self) -> Result<Option<(String, u64)>, ScoreJobError> {
        let Some(writer) = self.writer.take() else {
            return Ok(None);
        };
        let out_err = |path: &Path, message: String| ScoreJobError::Output {
            path: path.to_path_buf(),
            message,
        };
        writer
            .finish()
            .map_err(|e| out_err(&self.tmp, e.to_string()))?;
        let file = File::open(&self.tmp).map_err(|e| out_err(&self.tmp, e.to_string()))?;
        file.sync_all()
            .map_err(|e| out_err(&self.tmp, e.to_string()))?;
        let bytes = file
            .metadata()
            .map_err(|e| out_err(&self.tmp, e.to_string()))?
            .len();
        let target = self.dir.join(&self.name);
        std::fs::rename(&self.tmp, &target).map_err(|e| out_err(&target, e.to_string()))?;
        pipe_core::fsutil::sync_dir(&self.dir).map_err(|e| out_err(&self.dir, e.to_string()))?;
        Ok(Some((self.name.clone(), bytes)))
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Temp files of this part left by a process that was killed.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}
