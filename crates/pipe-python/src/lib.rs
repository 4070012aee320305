//! `pipe._pipe`, the native half of the `pipe` Python package: the library
//! API's `run`, and a trained classifier that scores lists of texts and
//! Arrow record batches. The Python half (`python/pipe/__init__.py`) checks
//! the torch version, converts pandas/polars/pyarrow inputs and holds the
//! docstrings users read.
//!
//! The GIL is released while Rust works. One classifier may be shared by
//! threads: its model sits behind a mutex (torch tensors are `Send`, not
//! `Sync`), so calls on it run one at a time, each using torch's threads.
//!
//! Every entry point runs inside `guarded`: a Rust panic becomes a
//! `PipeError`, never pyo3's `PanicException` (a `BaseException` that
//! `except Exception` does not catch). Texts are encoded and scored
//! `batch_size` at a time, so memory follows the batch, not the input.
//! Pipelines run on a thread of their own so that Ctrl-C stops them
//! (`interrupt.rs`); classifier calls hold a gate that `os.fork()` waits on,
//! so that a forked child finds no classifier locked (`fork.rs`). Arrow
//! input is checked before it is read (`arrow.rs`).

mod arrow;
mod fork;
mod interrupt;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use pipe::core::{Cache, EventSink, Override, Pipeline, RunOptions};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyCapsule, PyList, PyString};

create_exception!(
    _pipe,
    PipeError,
    PyException,
    "A pipeline, model or input problem, with the message `pipe` would print."
);

/// Texts encoded and scored at a time when the caller does not say.
const DEFAULT_BATCH_SIZE: usize = 4096;

fn pipe_err(e: impl std::fmt::Display) -> PyErr {
    PipeError::new_err(e.to_string())
}

/// The full message of an error and its causes, as the `pipe` command prints it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    pipe::core::error_chain(e)
}

/// The text a panic carried (`panic!("…")`, an `expect` message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs the body of the entry point `what`, a panic in it becoming a
/// `PipeError` that names it.
fn guarded<T>(what: &str, body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        Err(PipeError::new_err(format!(
            "{what}: internal error: {}",
            panic_message(payload.as_ref())
        )))
    })
}

fn check_batch_size(batch_size: usize) -> PyResult<usize> {
    if batch_size == 0 {
        return Err(PyValueError::new_err("batch_size must be at least 1"));
    }
    Ok(batch_size)
}

fn load_pipeline(path: &Path, overrides: &[String]) -> Result<Pipeline, String> {
    let overrides: Vec<Override> = overrides
        .iter()
        .map(|o| Override::parse(o))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    Pipeline::load(path, &overrides).map_err(|e| chain(&e))
}

/// What `run` and `from_pipeline` are asked to run, owned so that it can go
/// to the run's thread.
struct RunRequest {
    pipeline: PathBuf,
    only: Vec<String>,
    overrides: Vec<String>,
    force: bool,
    cache_dir: Option<PathBuf>,
}

impl RunRequest {
    /// Runs the pipeline like `pipe run`, reporting events to `events`.
    fn run(self, events: &dyn EventSink) -> Result<(Pipeline, pipe::RunReport), String> {
        let pipeline = load_pipeline(&self.pipeline, &self.overrides)?;
        let cache = Cache::open(self.cache_dir.unwrap_or_else(|| PathBuf::from(".pipe")))
            .map_err(|e| chain(&e))?;
        let device =
            pipe::runtime::runtime::resolve_device(&pipeline.device).map_err(|e| e.to_string())?;
        let options = RunOptions {
            only: self.only,
            force: self.force,
            device,
            ..RunOptions::default()
        };
        let report = pipe::run(&pipeline, &cache, &options, events).map_err(|e| chain(&e))?;
        Ok((pipeline, report))
    }
}

/// run(pipeline, only, overrides, force, cache_dir) -> str (the report as JSON)
#[pyfunction]
#[pyo3(signature = (pipeline, only = Vec::new(), overrides = Vec::new(), force = false, cache_dir = None))]
fn run(
    py: Python<'_>,
    pipeline: PathBuf,
    only: Vec<String>,
    overrides: Vec<String>,
    force: bool,
    cache_dir: Option<PathBuf>,
) -> PyResult<String> {
    guarded("run", || {
        let request = RunRequest {
            pipeline,
            only,
            overrides,
            force,
            cache_dir,
        };
        let report = interrupt::interruptible(py, move |events| {
            request.run(events).map(|(_, report)| report)
        })?;
        serde_json::to_string(&report).map_err(pipe_err)
    })
}

#[pyclass(name = "NativeClassifier", module = "pipe._pipe", frozen)]
struct NativeClassifier {
    inner: Mutex<pipe_score::ScoringModel>,
    #[pyo3(get)]
    classes: Vec<String>,
    #[pyo3(get)]
    description: String,
    #[pyo3(get)]
    digest: String,
}

impl NativeClassifier {
    /// Runs `f` on the model, one call at a time. Call it without the GIL.
    fn with<T>(
        &self,
        f: impl FnOnce(&pipe_score::ScoringModel) -> Result<T, String>,
    ) -> Result<T, String> {
        // Held until the call ends, so that a fork waits for it (fork.rs).
        let _call = fork::enter_call();
        // A panic inside a call poisons the lock, not the model: the next call may go on.
        let model = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&model)
    }

    fn new(model: pipe_score::ScoringModel) -> PyResult<NativeClassifier> {
        let classifier = &model.classifier;
        let classes = (0..classifier.labels().len())
            .map(|c| classifier.label(c))
            .collect::<Result<_, _>>()
            .map_err(pipe_err)?;
        let (description, digest) = (model.description.clone(), model.digest.clone());
        Ok(NativeClassifier {
            inner: Mutex::new(model),
            classes,
            description,
            digest,
        })
    }

    /// `top_k` as a count of classes, or a ValueError that says the range.
    fn check_top_k(&self, top_k: i64) -> PyResult<usize> {
        let classes = self.classes.len();
        usize::try_from(top_k)
            .ok()
            .filter(|k| (1..=classes).contains(k))
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "top_k must be between 1 and the model's {classes} classes, not {top_k}"
                ))
            })
    }
}

/// The predicted class (the argmax of the scores, as the predict stage
/// takes it) of each text, `batch_size` texts at a time.
fn predicted_classes(
    classifier: &pipe::TextClassifier,
    texts: &[String],
    batch_size: usize,
) -> Result<Vec<usize>, String> {
    let classes = classifier.labels().len();
    let mut predicted = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch_size) {
        let scores = classifier.scores(chunk).map_err(|e| chain(&e))?;
        predicted.extend(scores.chunks(classes).map(pipe::predict::argmax));
    }
    Ok(predicted)
}

/// Class probabilities `[texts × classes]`, row-major, `batch_size` texts at a time.
fn probabilities(
    classifier: &pipe::TextClassifier,
    texts: &[String],
    batch_size: usize,
) -> Result<Vec<f32>, String> {
    let mut all = Vec::with_capacity(texts.len().saturating_mul(classifier.labels().len()));
    for chunk in texts.chunks(batch_size) {
        all.extend(classifier.probabilities(chunk).map_err(|e| chain(&e))?);
    }
    Ok(all)
}

#[pymethods]
impl NativeClassifier {
    /// The classifier behind the pipeline's `predict` stage, after running
    /// the pipeline (cached stages are reused). Ctrl-C stops the run.
    #[staticmethod]
    #[pyo3(signature = (pipeline, overrides = Vec::new(), cache_dir = None))]
    fn from_pipeline(
        py: Python<'_>,
        pipeline: PathBuf,
        overrides: Vec<String>,
        cache_dir: Option<PathBuf>,
    ) -> PyResult<NativeClassifier> {
        guarded("from_pipeline", || {
            let request = RunRequest {
                pipeline,
                only: Vec::new(),
                overrides,
                force: false,
                cache_dir,
            };
            let model = interrupt::interruptible(py, move |events| {
                let (pipeline, report) = request.run(events)?;
                pipe_score::classifier_from_run(&pipeline, &report).map_err(|e| chain(&e))
            })?;
            NativeClassifier::new(model)
        })
    }

    /// The classifier a bundle directory holds (written by `save` or `pipe bundle`).
    #[staticmethod]
    fn from_bundle(py: Python<'_>, dir: PathBuf) -> PyResult<NativeClassifier> {
        guarded("from_bundle", || {
            let model = py
                .detach(|| pipe_score::ScoringModel::load_bundle(&dir).map_err(|e| chain(&e)))
                .map_err(pipe_err)?;
            NativeClassifier::new(model)
        })
    }

    /// Writes the classifier as a self-contained bundle directory.
    fn save(&self, py: Python<'_>, dir: PathBuf) -> PyResult<()> {
        guarded("save", || {
            py.detach(|| self.with(|model| model.save_bundle(&dir).map_err(|e| chain(&e))))
                .map_err(pipe_err)
        })
    }

    /// The predicted class name of each text.
    #[pyo3(signature = (texts, batch_size = DEFAULT_BATCH_SIZE))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        guarded("predict", || {
            let batch_size = check_batch_size(batch_size)?;
            let predicted = py
                .detach(|| {
                    self.with(|model| predicted_classes(&model.classifier, &texts, batch_size))
                })
                .map_err(pipe_err)?;
            // One string object per class, shared by the rows that have it.
            let names: Vec<Bound<'py, PyString>> = self
                .classes
                .iter()
                .map(|name| PyString::new(py, name))
                .collect();
            PyList::new(py, predicted.into_iter().map(|class| &names[class]))
        })
    }

    /// Class probabilities as native float32 bytes, `[texts × classes]`
    /// row-major, in a bytearray (so numpy's view of it is writable).
    #[pyo3(signature = (texts, batch_size = DEFAULT_BATCH_SIZE))]
    fn predict_proba_bytes<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        guarded("predict_proba", || {
            let batch_size = check_batch_size(batch_size)?;
            let p = py
                .detach(|| self.with(|model| probabilities(&model.classifier, &texts, batch_size)))
                .map_err(pipe_err)?;
            PyByteArray::new_with(py, p.len() * std::mem::size_of::<f32>(), |bytes| {
                for (out, v) in bytes.chunks_exact_mut(4).zip(&p) {
                    out.copy_from_slice(&v.to_ne_bytes());
                }
                Ok(())
            })
        })
    }

    /// Scores one Arrow record batch given as Arrow C data interface
    /// capsules; returns the capsules of a batch with `Category`,
    /// `Probability` (and the next `top_k - 1` classes). `first_row` is the
    /// batch's first row in the caller's table, for errors that name rows.
    #[pyo3(signature = (schema, array, text_column, top_k = 1, first_row = 0, batch_size = DEFAULT_BATCH_SIZE))]
    #[allow(clippy::too_many_arguments)]
    fn predict_arrow_capsules<'py>(
        &self,
        py: Python<'py>,
        schema: &Bound<'py, PyCapsule>,
        array: &Bound<'py, PyCapsule>,
        text_column: &str,
        top_k: i64,
        first_row: usize,
        batch_size: usize,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        guarded("predict_arrow", || {
            let top_k = self.check_top_k(top_k)?;
            let batch_size = check_batch_size(batch_size)?;
            // Taken from its capsule here and released when it drops at the
            // end of this function, with the GIL (the producer may need it).
            let batch = arrow::import_batch(schema, array)?;
            let scored = py
                .detach(|| {
                    self.with(|model| {
                        arrow::score_batch(
                            &model.classifier,
                            &batch,
                            text_column,
                            top_k,
                            first_row,
                            batch_size,
                        )
                    })
                })
                .map_err(pipe_err)?;
            arrow::export_batch(py, scored)
        })
    }
}

#[pymodule]
fn _pipe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("PipeError", m.py().get_type::<PipeError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_BATCH_SIZE", DEFAULT_BATCH_SIZE)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(interrupt::_clean_up, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_after_fork, m)?)?;
    m.add_class::<NativeClassifier>()?;
    // A pipeline's `kind: python` stages run in this interpreter (unless
    // their `python:` or $PIPE_PYTHON says otherwise): the one with this
    // package, and whatever the user's functions import, installed.
    let executable: Option<PathBuf> = m.py().import("sys")?.getattr("executable")?.extract()?;
    if let Some(executable) = executable.filter(|e| !e.as_os_str().is_empty()) {
        pipe::exec::use_interpreter_by_default(executable);
    }
    Ok(())
}
