//! The content-addressed cache under `.pipe/`.
//!
//! ```text
//! .pipe/
//!   lock                    held by one `pipe run` at a time
//!   entries/<key hash>/     one committed entry: outputs/<port>/... and record.json
//!   tmp/                    entries being written; never read
//!   runs/<pipeline id>.json the key each stage of a pipeline last ran with
//! ```
//!
//! An entry is written in `tmp/`, every file fsynced, `record.json` written
//! last, and the directory renamed into `entries/`: an interrupted run leaves
//! nothing in `entries/` that reads as valid. Every hit re-hashes the entry's
//! files against its record, so a corrupted entry is detected and recomputed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::artifact::ArtifactError;
use crate::events::{Event, EventSink};
use crate::fsutil::{self, atomic_write, hash_file, sync_dir, sync_tree, unique_suffix};
use crate::key::StageKey;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache {path}: another `pipe` holds the lock ({holder}); gave up after {seconds} s (raise --lock-timeout, or wait for it to finish)")]
    LockTimeout {
        path: PathBuf,
        holder: String,
        seconds: u64,
    },
    #[error("cache {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One stored file of an output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub size: u64,
    pub blake3: String,
}

/// One output port of an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub type_name: String,
    /// Digest of the output's files; what downstream keys use.
    pub digest: String,
    pub files: BTreeMap<String, FileRecord>,
}

/// `record.json`: what an entry holds and the key it was computed for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub key_hash: String,
    pub key: StageKey,
    pub outputs: BTreeMap<String, OutputRecord>,
    pub seconds: f64,
    /// What the stage warned of while it computed this result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Missing,
    Valid(EntryRecord),
    /// The entry exists but does not match its record; it has been removed.
    Corrupt(CorruptEntry),
}

/// Why a cache entry failed verification.
#[derive(Debug, thiserror::Error)]
pub enum CorruptEntry {
    #[error("unreadable record: {0}")]
    UnreadableRecord(#[source] ArtifactError),
    #[error("record does not belong to this key")]
    WrongKey,
    #[error("{path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: size {size}, recorded {recorded}")]
    WrongSize {
        path: PathBuf,
        size: u64,
        recorded: u64,
    },
    #[error("{path}: contents do not match the recorded digest")]
    WrongDigest { path: PathBuf },
}

/// The key each stage of one pipeline last ran with (`runs/<id>.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub pipeline: String,
    /// The pipeline file's absolute path (records written before it was
    /// kept have none): `gc` keeps a record while this file exists.
    #[serde(default)]
    pub path: Option<PathBuf>,
    pub stages: BTreeMap<String, LastRun>,
    /// The latest runs, oldest first, at most [`RUN_HISTORY`]: what
    /// `pipe report --runs` compares. `gc` keeps only the last run's entries,
    /// so an older run's may be gone.
    #[serde(default)]
    pub history: Vec<PastRun>,
}

/// How many runs a [`RunRecord`] remembers.
pub const RUN_HISTORY: usize = 20;

/// A stage's failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedStage {
    pub stage: String,
    /// Its key's hash, if it got as far as its key (an external file it
    /// reads may be missing).
    pub key_hash: Option<String>,
    /// The config it failed with: its key's canonical config, else as
    /// the pipeline gives it.
    pub config: serde_json::Value,
    /// The error with its causes, as the run printed it.
    pub error: String,
}

/// One run of a pipeline: each stage's key as it stood at the end (a
/// failed run: each stage it reached).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastRun {
    /// When it ended, in seconds since the Unix epoch.
    pub finished_unix: u64,
    pub stages: BTreeMap<String, PastStage>,
    /// The stage it failed at, and how, if it failed.
    #[serde(default)]
    pub failed: Option<FailedStage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastStage {
    pub key_hash: String,
    /// Whether this run computed it (else it was reused from the cache, or
    /// not part of the run, as with `--only`).
    pub ran: bool,
}

/// What [`Cache::gc`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removal {
    /// Entry names (key hashes), sorted.
    pub entries: Vec<String>,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastRun {
    pub key_hash: String,
    pub key: StageKey,
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// Held while a run uses the cache; released on drop.
pub struct CacheLock {
    _file: fs::File,
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Cache, CacheError> {
        let root = root.into();
        for sub in ["entries", "tmp", "runs"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        // Absolute, so reports name output directories usable from anywhere.
        let root = root.canonicalize().map_err(io_err(&root))?;
        Ok(Cache { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the cache's exclusive lock, waiting up to `timeout` and telling
    /// `events` once that it waits.
    pub fn lock(&self, timeout: Duration, events: &dyn EventSink) -> Result<CacheLock, CacheError> {
        let path = self.root.join("lock");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = fs::read_to_string(&path)
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    let holder = if holder.is_empty() {
                        "another process".to_string()
                    } else {
                        holder
                    };
                    if !told {
                        events.emit(&Event::WaitingForLock {
                            path: path.display().to_string(),
                            holder: holder.clone(),
                        });
                        told = true;
                    }
                    if start.elapsed() >= timeout {
                        return Err(CacheError::LockTimeout {
                            path,
                            holder,
                            seconds: timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(fs::TryLockError::Error(e)) => return Err(CacheError::Io { path, source: e }),
            }
        }
        // Who holds it, for the message a waiting process prints.
        let _ = file.set_len(0);
        let _ = write!(file, "pid {}", std::process::id());
        // Entries half-written by a crashed run are garbage now that we hold the lock.
        let tmp = self.root.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        Ok(CacheLock { _file: file })
    }

    fn entry_dir(&self, key_hash: &str) -> PathBuf {
        self.root.join("entries").join(key_hash)
    }

    /// Directory holding output `port` of a committed entry.
    pub fn output_dir(&self, key_hash: &str, port: &str) -> PathBuf {
        self.entry_dir(key_hash).join("outputs").join(port)
    }

    /// Finds an entry and verifies every file against its record. A corrupt
    /// entry is removed so it is recomputed.
    pub fn lookup(&self, key_hash: &str) -> Result<Lookup, CacheError> {
        let dir = self.entry_dir(key_hash);
        if !dir.exists() {
            return Ok(Lookup::Missing);
        }
        let problem = match self.verify(key_hash, &dir) {
            Ok(record) => return Ok(Lookup::Valid(record)),
            Err(problem) => problem,
        };
        let trash = self
            .root
            .join("tmp")
            .join(format!("corrupt-{key_hash}-{}", unique_suffix()));
        fs::rename(&dir, &trash).map_err(io_err(&dir))?;
        let _ = fs::remove_dir_all(&trash);
        Ok(Lookup::Corrupt(problem))
    }

    fn verify(&self, key_hash: &str, dir: &Path) -> Result<EntryRecord, CorruptEntry> {
        let record_path = dir.join("record.json");
        let record: EntryRecord =
            fsutil::load_json(&record_path).map_err(CorruptEntry::UnreadableRecord)?;
        if record.key_hash != key_hash || record.key.hash() != key_hash {
            return Err(CorruptEntry::WrongKey);
        }
        for (port, output) in &record.outputs {
            let out_dir = dir.join("outputs").join(port);
            for (name, expected) in &output.files {
                let path = out_dir.join(name);
                let unreadable = |source| CorruptEntry::Unreadable {
                    path: path.clone(),
                    source,
                };
                let size = fs::metadata(&path).map_err(unreadable)?.len();
                if size != expected.size {
                    return Err(CorruptEntry::WrongSize {
                        path,
                        size,
                        recorded: expected.size,
                    });
                }
                let hash = hash_file(&path).map_err(unreadable)?;
                if hash != expected.blake3 {
                    return Err(CorruptEntry::WrongDigest { path });
                }
            }
        }
        Ok(record)
    }

    /// Starts writing an entry in `tmp/`.
    pub fn begin(&self, key_hash: &str) -> Result<PendingEntry, CacheError> {
        let dir = self.root.join("tmp").join(format!(
            "{key_hash}-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        fs::create_dir_all(dir.join("outputs")).map_err(io_err(&dir))?;
        Ok(PendingEntry {
            cache: self.clone(),
            key_hash: key_hash.to_string(),
            dir,
            committed: false,
        })
    }

    fn run_record_path(&self, pipeline: &str) -> PathBuf {
        let id = &blake3::hash(pipeline.as_bytes()).to_hex()[..16];
        self.root.join("runs").join(format!("{id}.json"))
    }

    /// The keys a pipeline's stages last ran with.
    pub fn run_record(&self, pipeline: &str) -> RunRecord {
        fsutil::load_json(&self.run_record_path(pipeline)).unwrap_or_else(|_| RunRecord {
            pipeline: pipeline.to_string(),
            ..RunRecord::default()
        })
    }

    pub fn save_run_record(&self, record: &RunRecord) -> Result<(), CacheError> {
        let path = self.run_record_path(&record.pipeline);
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        atomic_write(&path, &bytes).map_err(io_err(&path))
    }

    /// Removes entries that no pipeline's run record references, and run
    /// records of pipelines whose file is gone. A record is kept while its
    /// pipeline's absolute path exists; an old record with only a relative
    /// path is kept (from here it cannot be told whether its file is gone),
    /// so gc never removes what an existing pipeline's last run uses, from
    /// whatever directory it runs. `dry_run`: remove nothing, say what would go.
    pub fn gc(&self, dry_run: bool) -> Result<Removal, CacheError> {
        let runs = self.root.join("runs");
        let mut live = BTreeSet::new();
        for entry in fs::read_dir(&runs).map_err(io_err(&runs))?.flatten() {
            let Ok(record) = fsutil::load_json::<RunRecord>(&entry.path()) else {
                continue;
            };
            let gone = match &record.path {
                Some(path) => !path.exists(),
                None => {
                    Path::new(&record.pipeline).is_absolute()
                        && !Path::new(&record.pipeline).exists()
                }
            };
            if gone {
                if !dry_run {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            live.extend(record.stages.values().map(|s| s.key_hash.clone()));
        }
        let entries = self.root.join("entries");
        let mut removal = Removal::default();
        for entry in fs::read_dir(&entries).map_err(io_err(&entries))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                removal.bytes += dir_size(&entry.path());
                if !dry_run {
                    fs::remove_dir_all(entry.path()).map_err(io_err(&entry.path()))?;
                }
                removal.entries.push(name);
            }
        }
        removal.entries.sort();
        Ok(removal)
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// An entry being written. Dropped without [`commit`](Self::commit), it leaves nothing behind.
pub struct PendingEntry {
    cache: Cache,
    key_hash: String,
    dir: PathBuf,
    committed: bool,
}

impl PendingEntry {
    /// Where the entry is being written (under the cache's `tmp/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An empty directory for output `port`'s files.
    pub fn output_dir(&self, port: &str) -> Result<PathBuf, CacheError> {
        let dir = self.dir.join("outputs").join(port);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Digests what was written, fsyncs it, writes `record.json` last and
    /// renames the entry into place.
    pub fn commit(
        mut self,
        key: &StageKey,
        types: &BTreeMap<String, String>,
        seconds: f64,
        warnings: Vec<String>,
    ) -> Result<EntryRecord, CacheError> {
        let mut outputs = BTreeMap::new();
        for (port, type_name) in types {
            let out_dir = self.dir.join("outputs").join(port);
            let files = digest_files(&out_dir).map_err(io_err(&out_dir))?;
            let digest = output_digest(type_name, &files);
            outputs.insert(
                port.clone(),
                OutputRecord {
                    type_name: type_name.clone(),
                    digest,
                    files,
                },
            );
        }
        sync_tree(&self.dir).map_err(io_err(&self.dir))?;
        let record = EntryRecord {
            key_hash: self.key_hash.clone(),
            key: key.clone(),
            outputs,
            seconds,
            warnings,
        };
        let record_path = self.dir.join("record.json");
        atomic_write(
            &record_path,
            &serde_json::to_vec_pretty(&record).expect("records serialize"),
        )
        .map_err(io_err(&record_path))?;
        crate::fault::point("before-entry-rename");

        let target = self.cache.entry_dir(&self.key_hash);
        if target.exists() {
            // Replacing an entry (a forced rerun): move the old one aside first,
            // so the target name never holds a mix of the two.
            let trash = self.cache.root.join("tmp").join(format!(
                "old-{}-{}",
                self.key_hash,
                unique_suffix()
            ));
            fs::rename(&target, &trash).map_err(io_err(&target))?;
            let _ = fs::remove_dir_all(&trash);
        }
        fs::rename(&self.dir, &target).map_err(io_err(&target))?;
        let parent = target.parent().expect("entries dir");
        sync_dir(parent).map_err(io_err(parent))?;
        self.committed = true;
        Ok(record)
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn digest_files(dir: &Path) -> std::io::Result<BTreeMap<String, FileRecord>> {
    let mut files = BTreeMap::new();
    collect_files(dir, dir, &mut files)?;
    Ok(files)
}

fn collect_files(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<String, FileRecord>,
) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, files)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(
                rel,
                FileRecord {
                    size: entry.metadata()?.len(),
                    blake3: hash_file(&path)?,
                },
            );
        }
    }
    Ok(())
}

fn output_digest(type_name: &str, files: &BTreeMap<String, FileRecord>) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(type_name.as_bytes());
    for (name, f) in files {
        hasher.update(b"\0");
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(f.blake3.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}
