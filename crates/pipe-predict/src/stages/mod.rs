//! The stage kinds of this crate, one file per kind.

mod predict;

pub use predict::{Predict, MAX_BATCH_SIZE, MAX_TOP_K};
