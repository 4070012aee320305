//! `pipe` as a library, for jobs that embed it: an orchestrator that runs a
//! pipeline and reads its report, a nightly ETL that scores new records with
//! the model a pipeline trained, a script that uses one stage directly.
//!
//! Depending on this crate links every stage kind, so any pipeline file the
//! `pipe` command runs also runs through [`run`].
//!
//! ```no_run
//! use pipe::notebook::NotebookPorts;
//! use pipe::train::Train;
//! use pipe::vectorize::Vectorize;
//! use pipe::{run, Cache, NullSink, Pipeline, RunOptions, TextClassifier};
//!
//! let pipeline = Pipeline::load("pipelines/from_raw.yaml".as_ref(), &[])?;
//! let report = run(&pipeline, &Cache::open(".pipe")?, &RunOptions::default(), &NullSink)?;
//! // Each part is a stage's output: the stage's name in the YAML, the port typed.
//! let classifier = TextClassifier::from_report(
//!     &report,
//!     Vectorize::VECTORIZER.of_stage("vectorize"),
//!     Train::MODEL_OUT.of_stage("train"),
//!     NotebookPorts::LABELS.of_stage("vectorize"),
//! )?;
//! for c in classifier.classify(&["a small songbird of the finch family"])? {
//!     println!("{} ({:.2})", c.label, c.probability);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The stage crates are re-exported by concern: [`core`], [`data`], [`notebook`],
//! [`vectorize`], [`tensor`], [`runtime`], [`model`], [`train`], [`linear`], [`select`], [`predict`], [`submit`],
//! [`eval`], [`exec`], [`score`], [`report`]; [`polars`] is the version the DataFrame functions take.
//!
//! [`cli::main`] is the `pipe` command itself: a crate of your own that
//! depends on this one and defines stages with `#[stage]` gets `pipe` with
//! its kinds added from a two-line `main.rs` (docs/plugins.md).

pub mod cli;

pub use pipe_core::{
    run, status, Cache, Event, EventSink, NullSink, Pipeline, RecordingSink, RunError, RunOptions,
    RunReport, Stage, StageOutcome, StageReport,
};
pub use pipe_score::{
    load_model, output_dir, Classification, ClassifyError, FrameColumns, TextClassifier,
};

pub use pipe_core as core;
pub use pipe_data as data;
pub use pipe_eval as eval;
pub use pipe_exec as exec;
pub use pipe_linear as linear;
pub use pipe_model as model;
pub use pipe_notebook as notebook;
pub use pipe_predict as predict;
pub use pipe_report as report;
pub use pipe_runtime as runtime;
pub use pipe_score as score;
pub use pipe_select as select;
pub use pipe_submit as submit;
pub use pipe_tensor as tensor;
pub use pipe_train as train;
pub use pipe_vectorize as vectorize;
pub use polars;

// What a stage of your own (a plugin crate, docs/plugins.md) needs besides
// this crate: `#[stage]`, the `Stage` trait and port types, and the crates
// their expansions and types name, at the versions `pipe` was built with.
pub use pipe_core::{inventory, stage, typetag};
pub use pipe_data::ndarray;
pub use serde;
pub use serde_json;
