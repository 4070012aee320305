//! The model stages, one file per kind. Each builds a freshly initialised
//! model (seeded) from the vocabulary and label set; the `train` stage takes
//! it from there. Swapping `kind: lstm_classifier` for `kind: gru_classifier`
//! swaps the model.

mod bag_of_ngrams;
mod gru_classifier;
mod lstm_classifier;
mod recurrent;

pub use bag_of_ngrams::BagOfNgrams;
pub use gru_classifier::GruClassifier;
pub use lstm_classifier::LstmClassifier;
pub use recurrent::{Recurrent, RecurrentConfig, RecurrentLayer};

use pipe_core::{Artifacts, Port, StageContext, StageError};
use pipe_data::{LabelSet, Vocabulary};
use tch::{nn, Device};

use crate::checkpoint::Checkpoint;
use crate::model::{Classifier, ModelSpec};
use crate::ModelError;

/// The inputs every model stage takes.
fn model_inputs() -> Vec<Port> {
    vec![Port::of::<Vocabulary>("vocab", "sets the embedding size and padding id"), Port::of::<LabelSet>("labels", "sets the number of classes")]
}

/// The output every model stage returns.
fn model_outputs() -> Vec<Port> {
    vec![Port::of::<Checkpoint>("model", "the initialised model")]
}

/// What every model stage's `run` does: the spec from the vocabulary and
/// label set, initialised with the pipeline's seed, as the `model` output.
fn run_model_stage(inputs: &Artifacts, ctx: &StageContext, spec: impl Fn(&Vocabulary, &LabelSet) -> ModelSpec) -> Result<Artifacts, StageError> {
    let vocab = inputs.get::<Vocabulary>("vocab")?;
    let labels = inputs.get::<LabelSet>("labels")?;
    let checkpoint = initialise(&spec(vocab, labels), ctx.seed).map_err(StageError::other)?;
    ctx.info(pipe_core::Artifact::summary(&checkpoint));
    let mut out = Artifacts::new();
    out.insert("model", checkpoint);
    Ok(out)
}

/// Initialises `spec` with the pipeline's seed, on the CPU (the same weights on every device).
pub fn initialise(spec: &ModelSpec, seed: u64) -> Result<Checkpoint, ModelError> {
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    Classifier::new(&vs.root(), spec)?;
    Ok(Checkpoint::from_var_store(spec, &vs))
}
