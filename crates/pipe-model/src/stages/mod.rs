//! Model stages: each kind builds a freshly initialised model (seeded) from
//! the vocabulary and label set; the `train` stage takes it from there.
//! Swapping `kind: lstm_classifier` for `kind: gru_classifier` swaps the model.

use pipe_core::{register_stage, Artifacts, LabelSet, Port, Stage, StageContext, StageError, Vocabulary};
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

use crate::checkpoint::Checkpoint;
use crate::model::{Architecture, Classifier, ModelSpec, Pooling, Precision};
use crate::precision::{self, CpuFacts, PrecisionChoice};

fn ports() -> (Vec<Port>, Vec<Port>) {
    (
        vec![
            Port::new("vocab", "vocabulary", "sets the embedding size and padding id"),
            Port::new("labels", "label_set", "sets the number of classes"),
        ],
        vec![Port::new("model", "checkpoint", "the initialised model")],
    )
}

/// What every model stage's `run` does: the spec from the vocabulary and
/// label set, initialised with the pipeline's seed, as the `model` output.
fn run_model_stage(inputs: &Artifacts, ctx: &StageContext, spec: impl Fn(&Vocabulary, &LabelSet) -> ModelSpec) -> Result<Artifacts, StageError> {
    let vocab = inputs.get::<Vocabulary>("vocab")?;
    let labels = inputs.get::<LabelSet>("labels")?;
    let checkpoint = initialise(&spec(vocab, labels), ctx.seed)?;
    ctx.info(pipe_core::Artifact::summary(&checkpoint));
    let mut out = Artifacts::new();
    out.insert("model", checkpoint);
    Ok(out)
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Float32 => "float32",
        Precision::Bfloat16 => "bfloat16",
    }
}

/// Initialises `spec` with the pipeline's seed, on the CPU (the same weights on every device).
pub fn initialise(spec: &ModelSpec, seed: u64) -> Result<Checkpoint, StageError> {
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    Classifier::new(&vs.root(), spec).map_err(StageError::invalid)?;
    Ok(Checkpoint::from_var_store(spec, &vs))
}

macro_rules! recurrent_stage {
    ($name:ident, $kind:literal, $arch:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
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
        }

        impl Default for $name {
            /// The notebook's sizes: 128-d embeddings, 64 hidden units, one layer, dropout 0.3, last step.
            fn default() -> Self {
                $name {
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
                }
            }
        }

        impl $name {
            /// What `precision` means on `device` of this machine, and why.
            pub fn precision_decision(&self, device: &str) -> precision::PrecisionDecision {
                precision::resolve(self.precision, $arch, device, &CpuFacts::of_this_machine())
            }

            /// The model this config describes, its precision resolved for `device`.
            pub fn spec(&self, vocab: &Vocabulary, labels: &LabelSet, device: &str) -> ModelSpec {
                ModelSpec {
                    architecture: $arch,
                    vocab_size: vocab.len() as i64,
                    pad_id: vocab.pad_id,
                    num_classes: labels.len() as i64,
                    embed_dim: self.embed_dim,
                    hidden_dim: self.hidden_dim,
                    layers: self.layers,
                    bidirectional: self.bidirectional,
                    dropout: self.dropout,
                    layer_dropout: self.layer_dropout,
                    embedding_dropout: self.embedding_dropout,
                    pooling: self.pooling,
                    sparse_embedding: self.sparse_embedding,
                    precision: self.precision_decision(device).precision,
                }
            }
        }

        #[typetag::serde(name = $kind)]
        impl Stage for $name {
            fn inputs(&self) -> Vec<Port> {
                ports().0
            }
            fn outputs(&self) -> Vec<Port> {
                ports().1
            }
            fn code_version(&self) -> u32 {
                1
            }
            fn machine_choices(&self, device: &str) -> std::collections::BTreeMap<String, String> {
                // A bfloat16 model is not a float32 model: the decision is in the key.
                std::collections::BTreeMap::from([("precision".to_string(), precision_name(self.precision_decision(device).precision).to_string())])
            }
            fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
                let decision = self.precision_decision(ctx.device);
                ctx.info(format!("recurrent layer in {}: {}", precision_name(decision.precision), decision.reason));
                run_model_stage(inputs, ctx, |vocab, labels| self.spec(vocab, labels, ctx.device))
            }
        }
        register_stage!($name, $kind, $doc);
    };
}

recurrent_stage!(
    LstmClassifier,
    "lstm_classifier",
    Architecture::Lstm,
    "Embedding → LSTM → pooling → dropout → linear (the notebook's model by default)"
);
recurrent_stage!(GruClassifier, "gru_classifier", Architecture::Gru, "Embedding → GRU → pooling → dropout → linear");

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
        }
    }
}

#[typetag::serde(name = "bag_of_ngrams")]
impl Stage for BagOfNgrams {
    fn inputs(&self) -> Vec<Port> {
        ports().0
    }
    fn outputs(&self) -> Vec<Port> {
        ports().1
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        run_model_stage(inputs, ctx, |vocab, labels| self.spec(vocab, labels))
    }
}
register_stage!(BagOfNgrams, "bag_of_ngrams", "mean of word and hashed-bigram embeddings → linear (fastText)");
