//! `pipe._pipe`, the native half of the `pipe` Python package: the library
//! API's `run`, and a trained classifier that scores lists of texts and
//! Arrow record batches. The Python half (`python/pipe/__init__.py`) checks
//! the torch version, converts pandas/polars/pyarrow inputs and holds the
//! docstrings users read.
//!
//! The GIL is released while Rust works. One classifier may be shared by
//! threads: its model sits behind a mutex (torch tensors are `Send`, not
//! `Sync`), so calls on it run one at a time, each using torch's threads.

mod arrow;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pipe::core::{Cache, NullSink, Override, Pipeline, RunOptions};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule};

create_exception!(_pipe, PipeError, PyException, "A pipeline, model or input problem, with the message `pipe` would print.");

fn pipe_err(e: impl std::fmt::Display) -> PyErr {
    PipeError::new_err(e.to_string())
}

/// The full message of an error and its causes, as the `pipe` command prints it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    pipe::core::error_chain(e)
}

fn load_pipeline(path: &Path, overrides: &[String]) -> Result<Pipeline, String> {
    let overrides: Vec<Override> = overrides.iter().map(|o| Override::parse(o)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    Pipeline::load(path, &overrides).map_err(|e| chain(&e))
}

/// Runs `pipeline` like `pipe run` and returns its report as JSON.
fn run_pipeline(
    path: &Path,
    only: Vec<String>,
    overrides: &[String],
    force: bool,
    cache_dir: Option<PathBuf>,
) -> Result<(Pipeline, pipe::RunReport), String> {
    let pipeline = load_pipeline(path, overrides)?;
    let cache = Cache::open(cache_dir.unwrap_or_else(|| PathBuf::from(".pipe"))).map_err(|e| chain(&e))?;
    let device = pipe::runtime::runtime::resolve_device(&pipeline.device).map_err(|e| e.to_string())?;
    let options = RunOptions { only, force, device, ..RunOptions::default() };
    let report = pipe::run(&pipeline, &cache, &options, &NullSink).map_err(|e| chain(&e))?;
    Ok((pipeline, report))
}

/// run(pipeline, only, overrides, force, cache_dir) -> str (the report as JSON)
#[pyfunction]
#[pyo3(signature = (pipeline, only = Vec::new(), overrides = Vec::new(), force = false, cache_dir = None))]
fn run(py: Python<'_>, pipeline: PathBuf, only: Vec<String>, overrides: Vec<String>, force: bool, cache_dir: Option<PathBuf>) -> PyResult<String> {
    let report = py.detach(|| run_pipeline(&pipeline, only, &overrides, force, cache_dir).map(|(_, report)| report)).map_err(pipe_err)?;
    serde_json::to_string(&report).map_err(pipe_err)
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
    fn with<T>(&self, f: impl FnOnce(&pipe::TextClassifier) -> Result<T, String>) -> Result<T, String> {
        // A panic inside a call poisons the lock, not the model: the next call may go on.
        let model = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&model.classifier)
    }

    fn new(model: pipe_score::ScoringModel) -> PyResult<NativeClassifier> {
        let classifier = &model.classifier;
        let classes = (0..classifier.labels().len()).map(|c| classifier.label(c)).collect::<Result<_, _>>().map_err(pipe_err)?;
        let (description, digest) = (model.description.clone(), model.digest.clone());
        Ok(NativeClassifier { inner: Mutex::new(model), classes, description, digest })
    }
}

#[pymethods]
impl NativeClassifier {
    /// The classifier behind the pipeline's `predict` stage, after running
    /// the pipeline (cached stages are reused).
    #[staticmethod]
    #[pyo3(signature = (pipeline, overrides = Vec::new(), cache_dir = None))]
    fn from_pipeline(py: Python<'_>, pipeline: PathBuf, overrides: Vec<String>, cache_dir: Option<PathBuf>) -> PyResult<NativeClassifier> {
        let model = py
            .detach(|| {
                let (pipeline, report) = run_pipeline(&pipeline, Vec::new(), &overrides, false, cache_dir)?;
                pipe_score::classifier_from_run(&pipeline, &report).map_err(|e| chain(&e))
            })
            .map_err(pipe_err)?;
        NativeClassifier::new(model)
    }

    /// The classifier a bundle directory holds (written by `save` or `pipe bundle`).
    #[staticmethod]
    fn from_bundle(py: Python<'_>, dir: PathBuf) -> PyResult<NativeClassifier> {
        let model = py.detach(|| pipe_score::ScoringModel::load_bundle(&dir).map_err(|e| chain(&e))).map_err(pipe_err)?;
        NativeClassifier::new(model)
    }

    /// Writes the classifier as a self-contained bundle directory.
    fn save(&self, py: Python<'_>, dir: PathBuf) -> PyResult<()> {
        py.detach(|| {
            let model = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            model.save_bundle(&dir).map_err(|e| chain(&e))
        })
        .map_err(pipe_err)
    }

    /// The predicted class name of each text.
    fn predict(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<String>> {
        py.detach(|| self.with(|c| c.classify(&texts).map(|r| r.into_iter().map(|c| c.label).collect()).map_err(|e| chain(&e)))).map_err(pipe_err)
    }

    /// Class probabilities as float32 bytes, `[texts × classes]` row-major.
    fn predict_proba_bytes<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<Bound<'py, PyBytes>> {
        let p = py.detach(|| self.with(|c| c.probabilities(&texts).map_err(|e| chain(&e)))).map_err(pipe_err)?;
        let bytes: Vec<u8> = p.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(PyBytes::new(py, &bytes))
    }

    /// Scores one Arrow record batch given as Arrow C data interface
    /// capsules; returns the capsules of a batch with `Category`,
    /// `Probability` (and the next `top_k - 1` classes).
    #[pyo3(signature = (schema, array, text_column, top_k = 1))]
    fn predict_arrow_capsules<'py>(
        &self,
        py: Python<'py>,
        schema: &Bound<'py, PyCapsule>,
        array: &Bound<'py, PyCapsule>,
        text_column: &str,
        top_k: usize,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let batch = arrow::import_batch(schema, array)?;
        let scored = py.detach(|| self.with(|c| arrow::score_batch(c, &batch, text_column, top_k))).map_err(pipe_err)?;
        arrow::export_batch(py, scored)
    }
}

#[pymodule]
fn _pipe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("PipeError", m.py().get_type::<PipeError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_class::<NativeClassifier>()?;
    Ok(())
}
