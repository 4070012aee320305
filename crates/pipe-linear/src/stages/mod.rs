//! The stage kinds of this crate, one file per kind.

mod tfidf_linear;

pub use tfidf_linear::{rows_of, Classifier, FitReport, TfidfLinear, TrainingRowsPorts, MAX_ITER};
