//! The stage kinds of this crate, one file per kind.

mod read_records;
mod vectorize;

pub use read_records::ReadRecords;
pub use vectorize::{python_json_records, UnknownLabels, Vectorize};
