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
//! - [`calibrate`] holds the two policies: temperature scaling and greedy
//!   ensemble selection; [`Budget`] the time budget's. Each has its own tests.
//! - [`Candidate`] is what `select` can fit: `tfidf_linear`, the recurrent
//!   classifiers and `bag_of_ngrams`, each with its own settings.

mod budget;
pub mod calibrate;
mod candidate;
mod ensemble_model;
mod stages;

pub use budget::Budget;
pub use candidate::{Candidate, FitData, MAX_ROWS};
pub use ensemble_model::{EnsembleModel, Member, MemberModel, NgramInput};
pub use stages::{stratified_folds, Ensemble, FinalFit, Select, Validation, MAX_ENSEMBLE_ROUNDS, MAX_FOLDS, MAX_TIME_BUDGET_SECONDS};

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
