//! The stage kinds of this crate, one file per kind.

mod ngrams;
mod to_tensors;

pub use ngrams::Ngrams;
pub use to_tensors::ToTensors;
