//! The stage kinds of this crate, one file per kind.

mod ensemble;
mod select;

pub use ensemble::Ensemble;
pub use select::{stratified_folds, FinalFit, Select, Validation};
