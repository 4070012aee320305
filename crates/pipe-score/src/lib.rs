//! Batch scoring at scale (`pipe score`): records from Parquet, CSV or
//! JSON-lines files stream through a trained classifier into Parquet parts.
//!
//! - Memory is bounded by the batch size, not by the input: rows are read,
//!   vectorized, scored and written `batch_rows` at a time ([`input`]).
//! - `n` processes split one input with no coordinator: shard `i` takes the
//!   `i`-th contiguous row range across the files in order ([`shard`]), so
//!   a Slurm array, a Kubernetes indexed job or `xargs -P` fans out.
//! - Each shard commits atomically and writes a manifest; a rerun skips
//!   shards already complete for the same model and input ([`output`]).
//!
//! The model comes from a pipeline's run ([`model`]): the model, labels and
//! vectorizer its `predict` stage uses. [`TextClassifier`] is that model for
//! a few texts or one DataFrame at a time, in process.

mod classify;
pub mod model;
pub mod output;
pub mod shard;

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use pipe_data::IntArray;
use pipe_vectorize::Vectorizer;
use polars::prelude::{Column, DataFrame, DataType, NamedFrom, Series};
use serde::Serialize;

pub use classify::{
    load_model, output_dir, Classification, ClassifyError, FrameColumns, TextClassifier,
};
pub use model::{classifier_from_run, is_bundle, ScoringModel};
pub use output::Manifest;
pub use pipe_records::{self as input, Format, InputFile};
pub use shard::Shard;

/// Why a `pipe score` job failed: its input, its output directory, one
/// row, or the model. (Why a model could not score a batch of rows is
/// `pipe_predict::ScoreError`, one level down.)
#[derive(Debug, thiserror::Error)]
pub enum ScoreJobError {
    #[error("{}: {message}", .path.display())]
    Input { path: PathBuf, message: String },
    #[error("{}: {message}", .path.display())]
    Output { path: PathBuf, message: String },
    #[error("{}: row {row}: {message}", .path.display())]
    Row {
        path: PathBuf,
        row: u64,
        message: String,
    },
    #[error("the pipeline's model: {0}")]
    Model(String),
    #[error(transparent)]
    Classify(#[from] crate::ClassifyError),
    #[error("scoring {input} failed inside: {message}")]
    Panic { input: String, message: String },
}

impl From<input::InputError> for ScoreJobError {
    fn from(e: input::InputError) -> ScoreJobError {
        ScoreJobError::Input {
            path: e.path,
            message: e.message,
        }
    }
}

/// What to read and write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreJob {
    /// A file, a directory of parts or a glob.
    pub input: String,
    pub output: PathBuf,
    pub text_column: String,
    /// Carried into the output first, when set.
    pub id_column: Option<String>,
    /// Further input columns carried into the output.
    pub keep_columns: Vec<String>,
    /// Besides `Category`/`Probability`, the next most likely classes as
    /// `Category_2`/`Probability_2` … up to this rank.
    pub top_k: usize,
    pub shard: Shard,
    /// Rows read, scored and written at a time.
    pub batch_rows: usize,
    /// Follow symbolic links to directories inside an input directory (each
    /// directory is still entered once).
    pub follow_links: bool,
}

/// The most rows one batch may hold.
pub const MAX_BATCH_ROWS: usize = 1 << 20;
/// The most token ids one batch may hold (`batch_rows × max_len`, 8 bytes
/// each): 1 GiB.
pub const MAX_BATCH_IDS: usize = 1 << 27;

impl ScoreJob {
    fn columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self
            .id_column
            .iter()
            .chain(&self.keep_columns)
            .cloned()
            .collect();
        if !columns.contains(&self.text_column) {
            columns.push(self.text_column.clone());
        }
        columns
    }

    /// The output columns that are not scores, in order.
    fn carried(&self) -> Vec<String> {
        let mut carried: Vec<String> = Vec::new();
        for c in self.id_column.iter().chain(&self.keep_columns) {
            if !carried.contains(c) {
                carried.push(c.clone());
            }
        }
        carried
    }
}

/// What happened, for progress displays and `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ScoreEvent {
    Planned {
        files: usize,
        input_rows: u64,
        shard: Shard,
        shard_rows: u64,
    },
    /// Already complete for this model and input.
    Skipped {
        shard: Shard,
        manifest: PathBuf,
    },
    Batch {
        rows_done: u64,
        shard_rows: u64,
    },
    Finished(ScoreSummary),
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreSummary {
    pub shard: Shard,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// The process's peak resident memory while scoring, bytes (Linux; the
    /// process's whole-life peak where the kernel cannot reset it).
    pub peak_rss_bytes: Option<u64>,
    pub part: Option<PathBuf>,
    pub manifest: PathBuf,
    pub skipped: bool,
}

/// Scores this job's shard of the input with `model` into `job.output`.
///
/// A panic inside (a reader or writer meeting input it did not expect)
/// becomes [`ScoreJobError::Panic`]; the part being written is removed.
pub fn score(
    model: &ScoringModel,
    job: &ScoreJob,
    on_event: &mut dyn FnMut(&ScoreEvent),
) -> Result<ScoreSummary, ScoreJobError> {
    let run = std::panic::AssertUnwindSafe(|| score_shard(model, job, on_event));
    std::panic::catch_unwind(run).unwrap_or_else(|payload| {
        Err(ScoreJobError::Panic {
            input: job.input.clone(),
            message: panic_message(payload),
        })
    })
}

/// The stack of the threads that read input files: polars decodes a Parquet
/// file's embedded Arrow schema recursively, and a large stack (reserved,
/// touched only if used) keeps a deeply nested one within bounds.
const WORKER_STACK_BYTES: usize = 256 << 20;

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
    message.unwrap_or_else(|| "(no message)".into())
}

fn score_shard(
    model: &ScoringModel,
    job: &ScoreJob,
    on_event: &mut dyn FnMut(&ScoreEvent),
) -> Result<ScoreSummary, ScoreJobError> {
    let started = Instant::now();
    reset_peak_rss();
    check_job(
        job,
        model.classifier.labels().len(),
        model.classifier.vectorizer().options.max_len,
    )?;
    let files: Vec<InputFile> = on_reading_thread(job, || {
        let columns = job.columns();
        let paths = input::discover(&job.input, job.follow_links)?;
        Ok(paths
            .iter()
            .map(|p| input::inspect(p, &columns))
            .collect::<Result<_, _>>()?)
    })?;
    let input_digest = input_digest(&files, job);
    let owner = output::JobRecord {
        model: model.digest.clone(),
        input: input_digest.clone(),
        shards: job.shard.count,
    };
    let shard_lock = output::claim(&job.output, &owner, job.shard)?;
    let scored = score_claimed(
        model,
        job,
        &files,
        input_digest,
        &shard_lock,
        started,
        on_event,
    );
    shard_lock.release(scored.is_err());
    scored
}

/// Runs `read` on a thread with the readers' large stack, a panic in it
/// an error that keeps its message.
fn on_reading_thread<T: Send>(
    job: &ScoreJob,
    read: impl FnOnce() -> Result<T, ScoreJobError> + Send,
) -> Result<T, ScoreJobError> {
    let panicked = |payload| ScoreJobError::Panic {
        input: job.input.clone(),
        message: panic_message(payload),
    };
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("pipe-score-read".into())
            .stack_size(WORKER_STACK_BYTES);
        let handle = thread
            .spawn_scoped(scope, read)
            .map_err(|e| ScoreJobError::Output {
                path: job.output.clone(),
                message: format!("could not start a thread: {e}"),
            })?;
        handle
            .join()
            .unwrap_or_else(|payload| Err(panicked(payload)))
    })
}

/// Scores the shard this process holds the lock of, unless its manifest
/// says it is already complete.
fn score_claimed(
    model: &ScoringModel,
    job: &ScoreJob,
    files: &[InputFile],
    input_digest: String,
    shard_lock: &output::ShardLock,
    started: Instant,
    on_event: &mut dyn FnMut(&ScoreEvent),
) -> Result<ScoreSummary, ScoreJobError> {
    let manifest_path = Manifest::path(&job.output, job.shard);
    if let Some((_, done)) = output::manifests(&job.output)?
        .into_iter()
        .find(|(p, _)| *p == manifest_path)
    {
        if done.is_complete(&job.output, &model.digest, &input_digest) {
            on_event(&ScoreEvent::Skipped {
                shard: job.shard,
                manifest: manifest_path.clone(),
            });
            return Ok(summary(
                job,
                done.rows,
                started,
                done.part.map(|p| job.output.join(p)),
                manifest_path,
                true,
            ));
        }
    }

    let file_rows: Vec<u64> = files.iter().map(|f| f.rows).collect();
    let pieces = shard::pieces(&file_rows, job.shard);
    let shard_rows: u64 = pieces.iter().map(|p| p.rows.end - p.rows.start).sum();
    on_event(&ScoreEvent::Planned {
        files: files.len(),
        input_rows: file_rows.iter().sum(),
        shard: job.shard,
        shard_rows,
    });

    let mut part = output::PartWriter::new(&job.output, job.shard, shard_lock)?;
    // Two steps overlap: a reader thread reads and encodes the next batch
    // while this thread scores and writes the current one. The channel holds
    // one batch, so at most three are in memory.
    std::thread::scope(|scope| {
        let (ready, encoded) = std::sync::mpsc::sync_channel::<Result<Encoded, ScoreJobError>>(1);
        let vectorizer = model.classifier.vectorizer();
        let pieces = &pieces;
        let reader = std::thread::Builder::new()
            .name("pipe-score-read".into())
            .stack_size(WORKER_STACK_BYTES);
        let started = reader.spawn_scoped(scope, move || {
            // A panic here would reach the scorer as "a scoped thread
            // panicked", its message lost: it is sent on as an error instead.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                read_and_encode(job, files, pieces, vectorizer, &ready)
            }))
            .unwrap_or_else(|payload| {
                Err(ScoreJobError::Panic {
                    input: job.input.clone(),
                    message: panic_message(payload),
                })
            });
            // A send fails only when the scorer stopped, having its own error.
            if let Err(e) = read {
                let _ = ready.send(Err(e));
            }
        });
        started.map_err(|e| ScoreJobError::Output {
            path: job.output.clone(),
            message: format!("could not start the reading thread: {e}"),
        })?;
        for batch in encoded {
            let scored = score_batch(&model.classifier, job, batch?)?;
            part.write(&scored)?;
            on_event(&ScoreEvent::Batch {
                rows_done: part.rows(),
                shard_rows,
            });
        }
        Ok::<(), ScoreJobError>(())
    })?;
    let rows = part.rows();
    // Exit 0 means every planned row was scored once, from the files planned.
    if rows != shard_rows {
        let message = format!(
            "shard {} scored {rows} rows where {shard_rows} were planned; nothing was committed",
            job.shard
        );
        return Err(ScoreJobError::Output {
            path: job.output.clone(),
            message,
        });
    }
    for file in files {
        file.unchanged()?;
    }
    let written = part.commit()?;
    pipe_core::fault::point("score-before-manifest");
    let manifest = Manifest {
        shard: job.shard,
        rows,
        part: written.as_ref().map(|(name, _)| name.clone()),
        part_bytes: written.as_ref().map_or(0, |(_, bytes)| *bytes),
        model: model.digest.clone(),
        input: input_digest,
        seconds: started.elapsed().as_secs_f64(),
        pipe_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    pipe_core::fsutil::atomic_write(&manifest_path, &bytes).map_err(|e| ScoreJobError::Output {
        path: manifest_path.clone(),
        message: e.to_string(),
    })?;
    let done = summary(
        job,
        rows,
        started,
        written.map(|(name, _)| job.output.join(name)),
        manifest_path,
        false,
    );
    on_event(&ScoreEvent::Finished(done.clone()));
    Ok(done)
}

fn check_job(job: &ScoreJob, classes: usize, max_len: usize) -> Result<(), ScoreJobError> {
    let bad = |message: String| ScoreJobError::Input {
        path: PathBuf::from(&job.input),
        message,
    };
    if job.batch_rows == 0 || job.batch_rows > MAX_BATCH_ROWS {
        return Err(bad(format!(
            "--batch-rows must be between 1 and {MAX_BATCH_ROWS}, not {}",
            job.batch_rows
        )));
    }
    if job.batch_rows.saturating_mul(max_len) > MAX_BATCH_IDS {
        let most = MAX_BATCH_IDS / max_len.max(1);
        return Err(bad(format!(
            "--batch-rows {} × the model's max_len {max_len} is over {MAX_BATCH_IDS} token ids a batch; use at most {most}",
            job.batch_rows
        )));
    }
    if job.top_k == 0 || job.top_k > classes {
        return Err(bad(format!(
            "--top-k must be between 1 and the model's {classes} classes, not {}",
            job.top_k
        )));
    }
    let scores = score_columns(job.top_k);
    if let Some(clash) = job.carried().into_iter().find(|c| scores.contains(c)) {
        return Err(bad(format!(
            "the carried column `{clash}` has the name of a score column; rename it"
        )));
    }
    Ok(())
}

/// `Category`, `Probability`, then `Category_2`, `Probability_2`, … up to `top_k`.
fn score_columns(top_k: usize) -> Vec<String> {
    (1..=top_k)
        .flat_map(|rank| {
            if rank == 1 {
                ["Category".to_string(), "Probability".to_string()]
            } else {
                [format!("Category_{rank}"), format!("Probability_{rank}")]
            }
        })
        .collect()
}

/// A batch as read, with its texts' token ids.
struct Encoded {
    batch: DataFrame,
    ids: IntArray,
    path: PathBuf,
    first_row: u64,
}

/// Reads the shard's pieces batch by batch, encodes each batch's texts and
/// sends it on; stops quietly when the receiver is gone.
fn read_and_encode(
    job: &ScoreJob,
    files: &[InputFile],
    pieces: &[shard::Piece],
    vectorizer: &Vectorizer,
    ready: &SyncSender<Result<Encoded, ScoreJobError>>,
) -> Result<(), ScoreJobError> {
    let columns = job.columns();
    for piece in pieces {
        let file = &files[piece.file];
        let mut next_row = piece.rows.start;
        // The reader stops at the first `Err` the callback returns; the
        // callback's own error (or the scorer having stopped) is kept here.
        let mut stopped: Option<Result<(), ScoreJobError>> = None;
        let read = input::read_batches(
            file,
            piece.rows.clone(),
            job.batch_rows,
            &columns,
            &mut |batch| {
                pipe_core::fault::point("score-read-batch");
                let ids = match batch_texts(job, &batch, &file.path, next_row) {
                    Ok(texts) => vectorizer.encode(&texts),
                    Err(e) => {
                        stopped = Some(Err(e));
                        return Err(stop_reading(&file.path));
                    }
                };
                let height = batch.height() as u64;
                if ready
                    .send(Ok(Encoded {
                        batch,
                        ids,
                        path: file.path.clone(),
                        first_row: next_row,
                    }))
                    .is_err()
                {
                    // The scorer stopped, having its own error to report.
                    stopped = Some(Ok(()));
                    return Err(stop_reading(&file.path));
                }
                next_row += height;
                Ok(())
            },
        );
        if let Some(outcome) = stopped {
            return outcome;
        }
        read?;
    }
    Ok(())
}

/// What the batch callback returns to stop the reader; the reason is kept
/// beside it.
fn stop_reading(path: &Path) -> input::InputError {
    input::InputError {
        path: path.to_path_buf(),
        message: "reading stopped".into(),
    }
}

/// The text column of `batch`; a null or a non-text column names its row.
/// A categorical (dictionary) column is read through its categories, without
/// a copy per row.
fn batch_texts<'a>(
    job: &ScoreJob,
    batch: &'a DataFrame,
    path: &Path,
    first_row: u64,
) -> Result<Vec<&'a str>, ScoreJobError> {
    let row_err = |row: usize, message: String| ScoreJobError::Row {
        path: path.to_path_buf(),
        row: first_row + row as u64,
        message,
    };
    let text = batch
        .column(&job.text_column)
        .map_err(|e| row_err(0, e.to_string()))?;
    let values: Vec<Option<&str>> = match text.dtype() {
        DataType::Categorical(..) | DataType::Enum(..) => categorical_texts(text),
        _ => text.str().ok().map(|strings| strings.iter().collect()),
    }
    .ok_or_else(|| {
        row_err(
            0,
            format!(
                "column `{}` holds {}, not text",
                job.text_column,
                text.dtype()
            ),
        )
    })?;
    values
        .into_iter()
        .enumerate()
        .map(|(row, t)| {
            t.ok_or_else(|| row_err(row, format!("column `{}` is null", job.text_column)))
        })
        .collect()
}

/// A categorical column's values as the strings of its categories, whichever
/// width its codes have.
fn categorical_texts(column: &Column) -> Option<Vec<Option<&str>>> {
    if let Ok(codes) = column.cat8() {
        return Some(codes.iter_str().collect());
    }
    if let Ok(codes) = column.cat16() {
        return Some(codes.iter_str().collect());
    }
    column.cat32().ok().map(|codes| codes.iter_str().collect())
}

/// The carried columns of the batch, then the predicted classes and probabilities.
fn score_batch(
    classifier: &TextClassifier,
    job: &ScoreJob,
    encoded: Encoded,
) -> Result<DataFrame, ScoreJobError> {
    let Encoded {
        batch,
        ids,
        path,
        first_row,
    } = encoded;
    let row_err = |row: usize, message: String| ScoreJobError::Row {
        path: path.clone(),
        row: first_row + row as u64,
        message,
    };
    let classes = classifier.labels().len();
    let scores = classifier.scores_of_ids(&ids)?;
    let probabilities = pipe_predict::softmax_rows(&scores, classes);
    let ranked: Vec<Vec<usize>> = scores
        .chunks(classes)
        .map(|row| top_classes(row, job.top_k))
        .collect();

    let mut columns: Vec<Column> = Vec::new();
    for name in job.carried() {
        columns.push(
            batch
                .column(&name)
                .map_err(|e| row_err(0, e.to_string()))?
                .clone(),
        );
    }
    let names = score_columns(job.top_k);
    for (rank, pair) in names.chunks(2).enumerate() {
        let labels: Vec<String> = ranked
            .iter()
            .map(|r| classifier.label(r[rank]))
            .collect::<Result<_, _>>()?;
        let p: Vec<f32> = ranked
            .iter()
            .enumerate()
            .map(|(row, r)| probabilities[row * classes + r[rank]])
            .collect();
        columns.push(Series::new(pair[0].as_str().into(), labels).into());
        columns.push(Series::new(pair[1].as_str().into(), p).into());
    }
    DataFrame::new_infer_height(columns).map_err(|e| row_err(0, e.to_string()))
}

/// The `k` highest-scoring classes, best first; equal scores in class order
/// (the first is the class `predict` picks).
pub fn top_classes(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

fn input_digest(files: &[InputFile], job: &ScoreJob) -> String {
    let options = serde_json::json!({
        "files": files,
        "text_column": job.text_column,
        "id_column": job.id_column,
        "keep_columns": job.keep_columns,
        "top_k": job.top_k,
    });
    blake3::hash(options.to_string().as_bytes())
        .to_hex()
        .to_string()
}

fn summary(
    job: &ScoreJob,
    rows: u64,
    started: Instant,
    part: Option<PathBuf>,
    manifest: PathBuf,
    skipped: bool,
) -> ScoreSummary {
    let seconds = started.elapsed().as_secs_f64();
    ScoreSummary {
        shard: job.shard,
        rows,
        seconds,
        rows_per_second: if skipped || seconds <= 0.0 {
            0.0
        } else {
            rows as f64 / seconds
        },
        peak_rss_bytes: peak_rss_bytes(),
        part,
        manifest,
        skipped,
    }
}

/// Starts `VmHWM` afresh from the current resident size, so the peak read
/// later is scoring's own, not start-up's (loading libtorch briefly touches
/// more than scoring a batch holds).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `VmHWM` from `/proc/self/status`: the most memory this process has held
/// (since the last reset).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_classes_are_best_first_with_ties_in_class_order() {
        assert_eq!(top_classes(&[0.1, 0.9, 0.9, 0.3], 3), vec![1, 2, 3]);
        assert_eq!(top_classes(&[2.0], 1), vec![0]);
    }

    #[test]
    fn score_columns_pair_each_rank() {
        assert_eq!(score_columns(1), ["Category", "Probability"]);
        assert_eq!(
            score_columns(2),
            ["Category", "Probability", "Category_2", "Probability_2"]
        );
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 1 << 20);
        }
    }
}
