//! The engine of `pipe`, which knows nothing of ML: the [`Stage`] trait every
//! step implements, the [`Artifact`]s that flow between stages (typed
//! directories of files; the domain's types live in `pipe-data` and the stage
//! crates), the YAML [`Pipeline`], the content-addressed [`Cache`] and the
//! [`run`] function that ties them together.
//!
//! Overview:
//! - A stage is a serde struct implementing [`Stage`], declared with
//!   `#[stage(kind = "...", summary = "...")]` on that impl; linking its
//!   crate is all it takes for a pipeline's `kind:` to find it.
//! - [`Pipeline::load`] reads and validates a pipeline file; errors carry the
//!   file, line and column.
//! - [`run`] executes stale stages and restores fresh ones from the [`Cache`],
//!   keyed by a blake3 hash of each stage's [`StageKey`].
//!
//! ```no_run
//! use pipe_core::{run, Cache, NullSink, Pipeline, RunOptions};
//! let pipeline = Pipeline::load("pipelines/tfidf.yaml".as_ref(), &[]).unwrap();
//! let cache = Cache::open(".pipe").unwrap();
//! let report = run(&pipeline, &cache, &RunOptions::default(), &NullSink).unwrap();
//! println!("ran: {:?}", report.ran());
//! ```

pub mod artifact;
pub mod cache;
pub mod events;
pub mod fault;
pub mod fsutil;
pub mod interrupt;
pub mod key;
pub mod pipeline;
pub mod runner;
pub mod stage;

pub use artifact::{
    artifact_type, load_artifact, Artifact, ArtifactError, ArtifactType, Artifacts, Files, JsonDoc,
    LoadArtifact,
};
pub use cache::{
    Cache, CacheError, CorruptEntry, EntryRecord, FailedStage, LastRun, Lookup, PastRun, PastStage,
    RunRecord, RUN_HISTORY,
};
pub use events::{Event, EventSink, Level, NullSink, RecordingSink, WarningSink};
pub use key::{StageKey, StaleReason};
pub use pipe_macros::stage;
pub use pipeline::{
    did_you_mean, DagFormat, Location, Override, OverrideError, Pipeline, PipelineError,
    PipelineProblem, PipelineStage, UnknownStage, DEFAULT_SEED,
};
pub use runner::{
    error_chain, run, status, status_with_entries, Freshness, OutputProblem, RunError, RunOptions,
    RunReport, StageOutcome, StageReport,
};
pub use stage::{
    default_config, registered_stages, AnyPort, InvalidSetting, Optional, PluginCode, Port, PortOf,
    Presence, Required, Stage, StageContext, StageError, StageInfo, StageOutput, ANY_TYPE,
};

/// This build of `pipe`: the package version and a hash of the workspace's
/// sources and lock file (computed by `build.rs`). Part of every cache key.
pub const BUILD_ID: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("PIPE_SOURCE_HASH"));

// The `#[stage]` attribute's expansion names `::pipe_core`, here too (tests).
extern crate self as pipe_core;

// Re-exported so stage crates' registration macros resolve without their own dependency.
#[doc(hidden)]
pub use inventory;
#[doc(hidden)]
pub use typetag;

#[cfg(test)]
mod tests;
