//! The stage kinds of this crate, one file per kind.

mod evaluate;

pub use evaluate::{evaluate, Evaluate};
