//! The `lstm_classifier` stage: the notebook's model, initialised.

use std::collections::BTreeMap;

use pipe_core::{stage, Artifacts, InvalidSetting, Port, Stage, StageContext, StageError};

use super::recurrent::{Recurrent, RecurrentLayer};
use crate::model::Architecture;

/// The LSTM layer.
#[derive(Debug, Clone, Copy)]
pub struct Lstm;

impl RecurrentLayer for Lstm {
    const ARCHITECTURE: Architecture = Architecture::Lstm;
}

/// Embedding → LSTM → pooling → dropout → linear; by default the
/// notebook's sizes (see [`super::RecurrentConfig`]).
pub type LstmClassifier = Recurrent<Lstm>;

#[stage(
    kind = "lstm_classifier",
    summary = "Embedding → LSTM → pooling → dropout → linear (the notebook's model by default)"
)]
impl Stage for LstmClassifier {
    fn inputs(&self) -> Vec<Port> {
        super::model_inputs()
    }
    fn outputs(&self) -> Vec<Port> {
        super::model_outputs()
    }
    fn code_version(&self) -> u32 {
        // 2: pre-padded rows are read front-aligned (`ModelSpec::front_align`).
        2
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.validate_config()
    }
    fn machine_choices(&self, device: &str) -> BTreeMap<String, String> {
        self.precision_choice(device)
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        self.initialise(inputs, ctx)
    }
}
