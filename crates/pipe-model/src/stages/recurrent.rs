//! What `lstm_classifier` and `gru_classifier` share: the settings (sizes,
//! dropouts, pooling, sparse embeddings, precision; the defaults are the
//! notebook's model, written here once) and the stage type they both are,
//! [`Recurrent`], told apart by its architecture.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use pipe_core::{Artifacts, InvalidSetting, StageContext, StageError};
use pipe_data::{LabelSet, Vocabulary};
use serde::{Deserialize, Serialize};

use crate::model::{Architecture, ModelSpec, Pooling};
use crate::precision::{self, CpuFacts, Precision, PrecisionChoice, PrecisionDecision};

/// A recurrent classifier's config: Embedding → RNN → pooling → dropout → linear.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecurrentConfig {
    pub embed_dim: i64,
    pub hidden_dim: i64,
    pub layers: i64,
    pub bidirectional: bool,
    pub dropout: f64,
    pub layer_dropout: f64,
    pub embedding_dropout: f64,
    pub pooling: Pooling,
    /// Sparse embedding gradients updated lazily (only the rows a
    /// batch uses, as `torch.optim.SparseAdam`): skips a dense
    /// vocabulary-sized gradient and Adam pass every step.
    pub sparse_embedding: bool,
    /// `auto` (bfloat16 where oneDNN runs it natively, float32
    /// elsewhere), `float32`, or `bfloat16`: the recurrent layer in
    /// mixed precision on the CPU.
    pub precision: PrecisionChoice,
    /// The mean of the row's word embeddings joins the pooled features
    /// the output layer reads (a bag-of-words path beside the RNN).
    pub embedding_shortcut: bool,
    /// A per-word, per-class weight table whose rows, summed over the
    /// row's words, add to the logits (a linear bag-of-words model
    /// trained with the network).
    pub word_logits: bool,
}

impl Default for RecurrentConfig {
    /// The notebook's sizes: 128-d embeddings, 64 hidden units, one layer, dropout 0.3, last step.
    fn default() -> Self {
        RecurrentConfig {
            embed_dim: 128,
            hidden_dim: 64,
            layers: 1,
            bidirectional: false,
            dropout: 0.3,
            layer_dropout: 0.0,
            embedding_dropout: 0.0,
            pooling: Pooling::LastStep,
            sparse_embedding: false,
            precision: PrecisionChoice::Auto,
            embedding_shortcut: false,
            word_logits: false,
        }
    }
}

impl RecurrentConfig {
    /// What `precision` means for `architecture` on `device` of this machine, and why.
    pub fn precision_decision(
        &self,
        architecture: Architecture,
        device: &str,
    ) -> PrecisionDecision {
        precision::resolve(
            self.precision,
            architecture,
            device,
            &CpuFacts::of_this_machine(),
        )
    }

    /// The model this config describes for these sizes, in `precision`.
    pub fn spec_with(
        &self,
        architecture: Architecture,
        vocab_size: i64,
        pad_id: i64,
        num_classes: i64,
        precision: Precision,
    ) -> ModelSpec {
        ModelSpec {
            architecture,
            vocab_size,
            pad_id,
            num_classes,
            embed_dim: self.embed_dim,
            hidden_dim: self.hidden_dim,
            layers: self.layers,
            bidirectional: self.bidirectional,
            dropout: self.dropout,
            layer_dropout: self.layer_dropout,
            embedding_dropout: self.embedding_dropout,
            pooling: self.pooling,
            sparse_embedding: self.sparse_embedding,
            precision,
            front_align: true,
            embedding_shortcut: self.embedding_shortcut,
            word_logits: self.word_logits,
        }
    }

    /// Checks every size and rate the config sets, when the pipeline is
    /// loaded: the model's spec with stand-in vocabulary and class counts
    /// (`STAND_IN_VOCAB`), since the data gives the real ones only
    /// when the stage runs, where the spec is checked again with them.
    pub fn validate(&self, architecture: Architecture) -> Result<(), InvalidSetting> {
        self.spec_with(
            architecture,
            super::STAND_IN_VOCAB,
            0,
            super::STAND_IN_CLASSES,
            Precision::Float32,
        )
        .validate()
    }

    /// The model this config describes, its precision resolved for `device`.
    pub fn spec(
        &self,
        architecture: Architecture,
        vocab: &Vocabulary,
        labels: &LabelSet,
        device: &str,
    ) -> ModelSpec {
        let precision = self.precision_decision(architecture, device).precision;
        self.spec_with(
            architecture,
            vocab.len() as i64,
            vocab.pad_id,
            labels.len() as i64,
            precision,
        )
    }
}

/// Which recurrent layer a [`Recurrent`] stage builds.
pub trait RecurrentLayer {
    const ARCHITECTURE: Architecture;
}

/// A recurrent classifier stage: [`RecurrentConfig`] for the layer `L`
/// (`LstmClassifier`, `GruClassifier`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Recurrent<L> {
    pub config: RecurrentConfig,
    #[serde(skip)]
    layer: PhantomData<L>,
}

impl<L> Default for Recurrent<L> {
    fn default() -> Self {
        Recurrent {
            config: RecurrentConfig::default(),
            layer: PhantomData,
        }
    }
}

impl<L> std::ops::Deref for Recurrent<L> {
    type Target = RecurrentConfig;
    fn deref(&self) -> &RecurrentConfig {
        &self.config
    }
}

impl<L: RecurrentLayer> Recurrent<L> {
    pub fn new(config: RecurrentConfig) -> Self {
        Recurrent {
            config,
            layer: PhantomData,
        }
    }

    /// What `precision` means on `device` of this machine, and why.
    pub fn precision_decision(&self, device: &str) -> PrecisionDecision {
        self.config.precision_decision(L::ARCHITECTURE, device)
    }

    /// Checks the config's sizes and rates ([`RecurrentConfig::validate`]).
    pub fn validate_config(&self) -> Result<(), InvalidSetting> {
        self.config.validate(L::ARCHITECTURE)
    }

    /// The model this config describes, its precision resolved for `device`.
    pub fn spec(&self, vocab: &Vocabulary, labels: &LabelSet, device: &str) -> ModelSpec {
        self.config.spec(L::ARCHITECTURE, vocab, labels, device)
    }

    /// The stage's machine choice: a bfloat16 model is not a float32 model,
    /// so the decision is part of the key.
    pub(super) fn precision_choice(&self, device: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(
            "precision".to_string(),
            self.precision_decision(device).precision.name().to_string(),
        )])
    }

    /// The stage's run: logs the precision decision, then initialises the model.
    pub(super) fn initialise(
        &self,
        inputs: &Artifacts,
        ctx: &StageContext,
    ) -> Result<Artifacts, StageError> {
        let decision = self.precision_decision(ctx.device);
        ctx.info(format!(
            "recurrent layer in {}: {}",
            decision.precision.name(),
            decision.reason
        ));
        super::run_model_stage(inputs, ctx, |vocab, labels| {
            self.spec(vocab, labels, ctx.device)
        })
    }
}
