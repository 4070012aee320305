//! Text classifiers with PyTorch's parameter names and initialisation, their
//! checkpoints, and the stages that create them.
//!
//! Overview:
//! - [`ModelSpec`] describes a model; [`Classifier::new`] builds it under a
//!   `tch` var-store path and [`Classifier::forward_t`] returns logits.
//! - [`Checkpoint`] holds a spec and its weights; stored as safetensors with
//!   the notebook's `state_dict` names (`embedding.weight`, `lstm.weight_ih_l0`, …).
//! - Stage kinds `lstm_classifier`, `gru_classifier` and `bag_of_ngrams`
//!   (`src/stages/<kind>.rs`) initialise a model from the vocabulary and
//!   label set, seeded by the pipeline.

mod checkpoint;
mod dropout;
mod error;
mod model;
pub mod precision;
mod stages;

pub use checkpoint::Checkpoint;
pub use dropout::dropout;
pub use error::ModelError;
pub use model::{
    check_token_ids, Architecture, Classifier, ModelSpec, Pooling, MAX_CLASSES, MAX_EMBED_DIM,
    MAX_HIDDEN_DIM, MAX_LAYERS, MAX_PARAMETERS, MAX_VOCAB_SIZE,
};
pub use precision::{CpuFacts, Precision, PrecisionChoice, PrecisionDecision};
pub use stages::{
    initialise, BagOfNgrams, GruClassifier, LstmClassifier, ModelPorts, Recurrent, RecurrentConfig,
    RecurrentLayer,
};

/// Serialises the tests that seed or draw from torch's global generator:
/// cargo runs a crate's tests on parallel threads, and a draw made between
/// another test's `manual_seed` and its own draws changes what that test sees.
/// The process's one lock on torch's global state
/// ([`pipe_runtime::runtime::torch_global_lock`]).
#[cfg(test)]
pub(crate) fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    pipe_runtime::runtime::torch_global_lock()
}
