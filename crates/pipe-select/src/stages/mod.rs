//! The stage kinds of this crate, one file per kind.

mod ensemble;
mod select;

pub use ensemble::Ensemble;
pub use select::{Select, MAX_ENSEMBLE_ROUNDS, MAX_FOLDS, MAX_TIME_BUDGET_SECONDS};
