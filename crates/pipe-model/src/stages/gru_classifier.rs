//! The `gru_classifier` stage: the notebook's model with a GRU, initialised.

use std::collections::BTreeMap;

use pipe_core::{stage, Artifacts, InvalidSetting, Port, Stage, StageContext, StageError};

use super::recurrent::{Recurrent, RecurrentLayer};
use crate::model::Architecture;

/// The GRU layer.
#[derive(Debug, Clone, Copy)]
pub struct Gru;

impl RecurrentLayer for Gru {
    const ARCHITECTURE: Architecture = Architecture::Gru;
}

/// Embedding → GRU → pooling → dropout → linear; by default the
/// notebook's sizes (see [`super::RecurrentConfig`]).
pub type GruClassifier = Recurrent<Gru>;

#[stage(
    kind = "gru_classifier",
    summary = "Embedding → GRU → pooling → dropout → linear"
)]
impl Stage for GruClassifier {
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
