//! The stage kinds of this crate, one file per kind.

mod tfidf_linear;

pub use tfidf_linear::{rows_of, training_rows_ports, Classifier, FitReport, TfidfLinear, MAX_ITER};
