//! The stage kinds of this crate, one file per kind.

mod train;

pub use train::{Train, MAX_BATCH_SIZE, MAX_EPOCHS, MAX_REFERENCE_STEPS};
