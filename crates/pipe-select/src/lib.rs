//! Model selection and ensembles: which model to trust on the user's data
//! is measured, not guessed.
//!
//! - The `select` stage ([`Select`]) fits each candidate model kind on part
//!   of the training rows (a stratified validation split, or k stratified
//!   folds for small data), calibrates each one's probabilities with a
//!   temperature, builds a weighted ensemble by greedy forward selection,
//!   keeps whichever scores the best validation macro-F1, refits it on all
//!   rows and reports the table. Its `model` ([`EnsembleModel`]) goes to the
//!   `predict` stage like any model.
//! - The `ensemble` stage ([`Ensemble`]) averages the class probabilities of
//!   `predict` stages over the same rows, with fixed weights.
//! - The stage file (`src/stages/select.rs`) is the list of steps; each
//!   policy is a type with its own tests: [`Validation`] (folds or a
//!   hold-out), [`calibrate`] (temperature scaling, greedy ensemble
//!   selection), [`Choice`] (ensemble or best single model), [`FinalFit`]
//!   (refit or keep) and [`Budget`] (the time budget).
//! - [`Candidate`] is what `select` can fit: `tfidf_linear`, the recurrent
//!   classifiers and `bag_of_ngrams`, each with its own settings.

mod budget;
pub mod calibrate;
mod candidate;
mod choice;
mod ensemble_model;
mod final_fit;
mod scoring;
mod stages;
mod validation;

pub use budget::Budget;
pub use candidate::{Candidate, FitData, MAX_ROWS};
pub use choice::{Choice, EnsembleTried};
pub use ensemble_model::{EnsembleModel, Member, MemberModel, NgramInput};
pub use final_fit::FinalFit;
pub use stages::{Ensemble, Select, MAX_ENSEMBLE_ROUNDS, MAX_FOLDS, MAX_TIME_BUDGET_SECONDS};
pub use validation::Validation;

/// Why a candidate could not be fitted or scored.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Linear(#[from] pipe_linear::LinearError),
    #[error(transparent)]
    Model(#[from] pipe_model::ModelError),
    #[error(transparent)]
    Train(#[from] pipe_train::TrainError),
    #[error(transparent)]
    Score(#[from] pipe_predict::ScoreError),
}

/// A candidate that failed, named.
#[derive(Debug, thiserror::Error)]
#[error("candidate `{name}`: {source}")]
pub struct CandidateFailed {
    pub name: String,
    pub source: FitError,
}
