//! The core of `pipe`: the [`Stage`] trait every step implements, the
//! [`Artifact`] values that flow between stages, the YAML [`Pipeline`], the
//! content-addressed [`Cache`] and the [`run`] function that ties them together.
//!
//! Overview:
//! - A stage is a serde struct implementing [`Stage`], registered with
//!   `#[typetag::serde(name = "kind")]` and [`register_stage!`]; linking its
//!   crate is all it takes for a pipeline's `kind:` to find it.
//! - [`Pipeline::load`] reads and validates a pipeline file; errors carry the
//!   file, line and column.
//! - [`run`] executes stale stages and restores fresh ones from the [`Cache`],
//!   keyed by a blake3 hash of each stage's [`StageKey`].
//!
//! ```no_run
//! use pipe_core::{run, Cache, NullSink, Pipeline, RunOptions};
//! let pipeline = Pipeline::load("pipelines/toy.yaml".as_ref(), &[]).unwrap();
//! let cache = Cache::open(".pipe").unwrap();
//! let report = run(&pipeline, &cache, &RunOptions::default(), &NullSink).unwrap();
//! println!("ran: {:?}", report.ran());
//! ```

pub mod artifact;
pub mod cache;
pub mod csv;
pub mod events;
pub mod fault;
pub mod fsutil;
pub mod interrupt;
pub mod key;
pub mod pipeline;
pub mod runner;
pub mod stage;

pub use artifact::{
    artifact_type, load_artifact, Artifact, ArtifactError, ArtifactType, Artifacts, Column, Files, IntArray, JsonDoc, LabelSet, LoadArtifact, Table,
    Vocabulary,
};
pub use cache::{Cache, CacheError, Lookup};
pub use events::{Event, EventSink, Level, NullSink, RecordingSink};
pub use key::{StageKey, StaleReason};
pub use pipeline::{did_you_mean, DagFormat, Location, Override, Pipeline, PipelineError, PipelineStage, DEFAULT_SEED};
pub use runner::{error_chain, run, status, Freshness, RunError, RunOptions, RunReport, StageOutcome, StageReport};
pub use stage::{default_config, registered_stages, Port, Stage, StageContext, StageError, StageInfo, ANY_TYPE};

/// This build of `pipe`: the package version and a hash of the workspace's
/// sources and lock file (computed by `build.rs`). Part of every cache key.
pub const BUILD_ID: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("PIPE_SOURCE_HASH"));

// Re-exported so stage crates' registration macros resolve without their own dependency.
#[doc(hidden)]
pub use inventory;
#[doc(hidden)]
pub use typetag;

#[cfg(test)]
mod tests;
