//! The stage kinds of this crate, one file per kind.

mod export;
mod submission;

pub use export::Export;
pub use submission::Submission;
