//! The stage kinds of this crate, one file per kind.

mod train;

pub use train::Train;
