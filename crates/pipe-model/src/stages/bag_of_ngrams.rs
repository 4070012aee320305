//! The `bag_of_ngrams` stage: fastText's model, initialised.

use pipe_core::{stage, Artifacts, InvalidSetting, Port, Stage, StageContext, StageError};
use pipe_data::{LabelSet, Vocabulary};
use serde::{Deserialize, Serialize};

use crate::model::{Architecture, ModelSpec, Pooling, MAX_EMBED_DIM, MAX_PARAMETERS};
use crate::precision::Precision;

/// fastText's model: the mean of word and hashed-bigram embeddings, then a
/// linear layer. Feed it rows from an `ngrams` stage with the same `buckets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BagOfNgrams {
    pub embed_dim: i64,
    /// Bigram hash buckets: must equal the `ngrams` stage's.
    pub buckets: i64,
    pub dropout: f64,
    pub embedding_dropout: f64,
    /// Update only the embedding rows each batch uses (lazy Adam, as
    /// `torch.optim.SparseAdam`), as fastText's sparse SGD does.
    pub sparse: bool,
}

impl Default for BagOfNgrams {
    fn default() -> Self {
        BagOfNgrams {
            embed_dim: 64,
            buckets: 1 << 16,
            dropout: 0.0,
            embedding_dropout: 0.0,
            sparse: true,
        }
    }
}

impl BagOfNgrams {
    pub fn spec(&self, vocab: &Vocabulary, labels: &LabelSet) -> ModelSpec {
        self.spec_with(vocab.len() as i64, vocab.pad_id, labels.len() as i64)
    }

    /// The model for a vocabulary of `vocab_size` tokens (the buckets come after them).
    pub fn spec_with(&self, vocab_size: i64, pad_id: i64, num_classes: i64) -> ModelSpec {
        ModelSpec {
            architecture: Architecture::BagOfEmbeddings,
            vocab_size: vocab_size.saturating_add(self.buckets),
            pad_id,
            num_classes,
            embed_dim: self.embed_dim,
            hidden_dim: 0,
            layers: 0,
            bidirectional: false,
            dropout: self.dropout,
            layer_dropout: 0.0,
            embedding_dropout: self.embedding_dropout,
            pooling: Pooling::Mean,
            sparse_embedding: self.sparse,
            precision: Precision::Float32,
            // A mean of embeddings reads a row the same wherever its pads are.
            front_align: false,
            embedding_shortcut: false,
            word_logits: false,
        }
    }
}

impl BagOfNgrams {
    /// Checks every size and rate, when the pipeline is loaded: the buckets,
    /// the width, the embedding table they make (the vocabulary's rows,
    /// known only when the stage runs, are checked then) and the dropouts.
    pub fn validate_config(&self) -> Result<(), InvalidSetting> {
        pipe_tensor::ngrams::check_settings(self.buckets, None)?;
        if !(1..=MAX_EMBED_DIM).contains(&self.embed_dim) {
            return Err(InvalidSetting::new(
                "embed_dim",
                format!(
                    "must be between 1 and {MAX_EMBED_DIM}, got {}",
                    self.embed_dim
                ),
            ));
        }
        let table = self.buckets as u128 * self.embed_dim as u128;
        if table > MAX_PARAMETERS as u128 {
            return Err(InvalidSetting::new(
                "buckets",
                format!(
                    "({}) × embed_dim ({}) makes an embedding table of {table} parameters, more than the {MAX_PARAMETERS} allowed",
                    self.buckets, self.embed_dim
                ),
            ));
        }
        self.spec_with(super::STAND_IN_VOCAB, 0, super::STAND_IN_CLASSES)
            .validate()
    }
}

#[stage(
    kind = "bag_of_ngrams",
    summary = "mean of word and hashed-bigram embeddings → linear (fastText)"
)]
impl Stage for BagOfNgrams {
    fn inputs(&self) -> Vec<Port> {
        super::model_inputs()
    }
    fn outputs(&self) -> Vec<Port> {
        super::model_outputs()
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.validate_config()
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        super::run_model_stage(inputs, ctx, |vocab, labels| self.spec(vocab, labels))
    }
}
