//! The `bag_of_ngrams` stage: fastText's model, initialised.

use pipe_core::{stage, Artifacts, Port, Stage, StageContext, StageError};
use pipe_data::{LabelSet, Vocabulary};
use serde::{Deserialize, Serialize};

use crate::model::{Architecture, ModelSpec, Pooling, Precision};

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
        BagOfNgrams { embed_dim: 64, buckets: 1 << 16, dropout: 0.0, embedding_dropout: 0.0, sparse: true }
    }
}

impl BagOfNgrams {
    pub fn spec(&self, vocab: &Vocabulary, labels: &LabelSet) -> ModelSpec {
        ModelSpec {
            architecture: Architecture::BagOfEmbeddings,
            vocab_size: vocab.len() as i64 + self.buckets,
            pad_id: vocab.pad_id,
            num_classes: labels.len() as i64,
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

#[stage(kind = "bag_of_ngrams", summary = "mean of word and hashed-bigram embeddings → linear (fastText)")]
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
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        super::run_model_stage(inputs, ctx, |vocab, labels| self.spec(vocab, labels))
    }
}
