//! The stage kinds of this crate, one file per kind.

mod vectorize;

pub use vectorize::{python_json_records, UnknownLabels, Vectorize};
