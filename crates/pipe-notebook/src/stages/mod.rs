//! The stage kinds of this crate, one file per kind.

mod load_artifacts;

pub use load_artifacts::{LoadArtifacts, NotebookPorts};
