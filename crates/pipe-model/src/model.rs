//! The classifiers: a plain struct per model, built with `new` from a
//! [`ModelSpec`] and a var-store path, run with `forward_t`.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

use pipe_core::InvalidSetting;
use pipe_tensor::PaddingSide;

use crate::dropout::dropout;
use crate::precision::Precision;
use crate::ModelError;

/// How a sequence of RNN outputs becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The output at the last time step, pads included (the notebook).
    #[default]
    LastStep,
    /// The output at the last real token (and, bidirectionally, the
    /// backward output at the first real token).
    LastValid,
    /// Mean over real tokens.
    Mean,
    /// Max over real tokens.
    Max,
    /// Mean and max, concatenated.
    MeanMax,
}

/// Checks that every token id names a row of the model's embedding: an id
/// outside `0..vocab_size` would make libtorch's embedding lookup fail.
pub fn check_token_ids(spec: &ModelSpec, ids: &Tensor) -> Result<(), ModelError> {
    if ids.numel() == 0 {
        return Ok(());
    }
    let (min, max) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
    if min < 0 {
        return Err(ModelError::NegativeTokenId(min));
    }
    if max >= spec.vocab_size {
        return Err(ModelError::TokenIdBeyondEmbedding {
            id: max,
            rows: spec.vocab_size,
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Lstm,
    Gru,
    /// Mean of word and hashed-n-gram embeddings, then a linear layer (fastText).
    BagOfEmbeddings,
}

/// The most rows an embedding table may have (vocabulary plus hashed
/// n-gram buckets): 2^27, 134 million, over 60 times fastText's default of
/// 2 million buckets with a large vocabulary beside them.
pub const MAX_VOCAB_SIZE: i64 = 1 << 27;

/// The most classes: 2^20, a million, past any label set a text classifier
/// here is trained on; the output layer and the per-word logits table grow
/// with it.
pub const MAX_CLASSES: i64 = 1 << 20;

/// The widest embedding: 16,384, fifty times the usual 300-d word vectors.
pub const MAX_EMBED_DIM: i64 = 1 << 14;

/// The widest recurrent layer: 16,384 units. An LSTM layer's hidden-to-hidden
/// weights are 4 × hidden² floats, 4 GiB at this width.
pub const MAX_HIDDEN_DIM: i64 = 1 << 14;

/// The most stacked recurrent layers: 64, far past the two to four that
/// help; each adds a layer of weights and a sequential pass.
pub const MAX_LAYERS: i64 = 64;

/// The most parameters a model may have, all parts together: 2^31 float32
/// values, 8 GiB of weights (training holds three more copies: the gradient
/// and Adam's two moments). An embedding table of vocabulary × embed_dim past
/// this would make libtorch's allocation fail and abort the process.
pub const MAX_PARAMETERS: u64 = 1 << 31;

/// Everything needed to rebuild a model; stored beside its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub architecture: Architecture,
    /// Rows of the embedding table (vocabulary plus any hashed n-gram buckets).
    pub vocab_size: i64,
    pub pad_id: i64,
    pub num_classes: i64,
    pub embed_dim: i64,
    pub hidden_dim: i64,
    pub layers: i64,
    pub bidirectional: bool,
    /// Dropout before the output layer (the notebook's 0.3).
    pub dropout: f64,
    /// Dropout between stacked RNN layers.
    pub layer_dropout: f64,
    /// Dropout on the embeddings.
    pub embedding_dropout: f64,
    pub pooling: Pooling,
    /// Sparse embedding gradients (only the rows a batch uses), updated
    /// lazily by the optimizer: much faster for large hashed vocabularies.
    #[serde(default)]
    pub sparse_embedding: bool,
    /// What the recurrent layer computes in.
    #[serde(default)]
    pub precision: Precision,
    /// Read pre-padded rows with their tokens moved to the front (unless
    /// pooling is `last_step`, which reads the last column): the recurrent
    /// layer then starts on each row's first token instead of after a run of
    /// padding, and a row gives the same logits however it was padded. False
    /// in checkpoints saved before this existed, which read rows as they lie.
    #[serde(default)]
    pub front_align: bool,
    /// Feed the output layer the mean of the row's word embeddings (taken
    /// before embedding dropout) beside the pooled recurrent features: a
    /// bag-of-words path that carries each word's identity straight to the
    /// classes. Recurrent models only; false in older checkpoints.
    #[serde(default)]
    pub embedding_shortcut: bool,
    /// Add to the logits a linear bag-of-words term: a per-word, per-class
    /// weight table (zero at the start), summed over the row's tokens and
    /// divided by √length (an L2-normalised count vector for distinct
    /// words; in training each token is dropped with probability `dropout`).
    /// It is the "wide" half of a wide & deep model: each word's evidence for
    /// each class, which dense embeddings learn slowly for rare words on small
    /// data. Recurrent models only; false in older checkpoints.
    #[serde(default)]
    pub word_logits: bool,
}

impl ModelSpec {
    /// The notebook's model: Embedding(V, 128) → LSTM(128 → 64) → last step → Dropout(0.3) → Linear,
    /// in float32: `lstm_classifier`'s defaults.
    pub fn notebook(vocab_size: i64, pad_id: i64, num_classes: i64) -> ModelSpec {
        crate::stages::RecurrentConfig::default().spec_with(
            Architecture::Lstm,
            vocab_size,
            pad_id,
            num_classes,
            Precision::Float32,
        )
    }

    /// The padding side the layers see for rows padded on `padding`.
    pub fn reads_as(&self, padding: PaddingSide) -> PaddingSide {
        if self.front_align && self.pooling != Pooling::LastStep {
            PaddingSide::Post
        } else {
            padding
        }
    }

    fn directions(&self) -> i64 {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of the pooled vector the output layer reads.
    fn features(&self) -> i64 {
        let width = match self.architecture {
            Architecture::BagOfEmbeddings => self.embed_dim,
            _ => self.hidden_dim * self.directions(),
        };
        let pooled = if self.pooling == Pooling::MeanMax {
            2 * width
        } else {
            width
        };
        // A bag of embeddings already is the mean embedding: only recurrent
        // models add the shortcut.
        if self.embedding_shortcut && self.architecture != Architecture::BagOfEmbeddings {
            pooled + self.embed_dim
        } else {
            pooled
        }
    }

    /// Whether the model has the linear bag-of-words term (recurrent models only).
    fn has_word_logits(&self) -> bool {
        self.word_logits && self.architecture != Architecture::BagOfEmbeddings
    }

    /// The parameters of each part of the model, with the setting that
    /// sizes it: the embedding table, the per-word logits table, the
    /// recurrent layers and the output layer. Exact (the tensors
    /// [`Classifier::new`] creates) once the sizes are within their bounds;
    /// in `u128`, so no bounded size overflows it.
    fn parameter_counts(&self) -> [(&'static str, u128); 4] {
        let n = |v: i64| v.max(0) as u128;
        let (vocab, embed, hidden, classes) = (
            n(self.vocab_size),
            n(self.embed_dim),
            n(self.hidden_dim),
            n(self.num_classes),
        );
        let embedding = vocab * embed;
        let word_logits = if self.has_word_logits() {
            vocab * classes
        } else {
            0
        };
        let recurrent = match self.architecture {
            Architecture::BagOfEmbeddings => 0,
            architecture => {
                let gates = if architecture == Architecture::Lstm {
                    4
                } else {
                    3
                } * hidden;
                let directions = n(self.directions());
                (0..n(self.layers))
                    .map(|layer| {
                        let input = if layer == 0 {
                            embed
                        } else {
                            hidden * directions
                        };
                        directions * (gates * input + gates * hidden + 2 * gates)
                    })
                    .sum::<u128>()
            }
        };
        let output = classes * (n(self.features()) + 1);
        [
            ("embed_dim", embedding),
            ("word_logits", word_logits),
            ("hidden_dim", recurrent),
            ("num_classes", output),
        ]
    }

    /// The model's parameter count (see [`MAX_PARAMETERS`]).
    pub fn parameters(&self) -> u128 {
        self.parameter_counts().iter().map(|(_, n)| n).sum()
    }

    /// Checks every size and rate: when a model stage's pipeline is loaded
    /// (with stand-in vocabulary and class counts), before a model is built,
    /// and when a checkpoint's `spec.json` is read from disk.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let mut sizes = vec![
            ("vocab_size", self.vocab_size, MAX_VOCAB_SIZE),
            ("num_classes", self.num_classes, MAX_CLASSES),
            ("embed_dim", self.embed_dim, MAX_EMBED_DIM),
        ];
        if self.architecture != Architecture::BagOfEmbeddings {
            sizes.extend([
                ("hidden_dim", self.hidden_dim, MAX_HIDDEN_DIM),
                ("layers", self.layers, MAX_LAYERS),
            ]);
        }
        for (name, v, max) in sizes {
            if !(1..=max).contains(&v) {
                return Err(InvalidSetting::new(
                    name,
                    format!("must be between 1 and {max}, got {v}"),
                ));
            }
        }
        if !(0..self.vocab_size).contains(&self.pad_id) {
            return Err(InvalidSetting::new(
                "pad_id",
                format!(
                    "{} is outside the vocabulary (0..{})",
                    self.pad_id, self.vocab_size
                ),
            ));
        }
        for (name, p) in [
            ("dropout", self.dropout),
            ("layer_dropout", self.layer_dropout),
            ("embedding_dropout", self.embedding_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(InvalidSetting::new(
                    name,
                    format!("must be in [0, 1), got {p}"),
                ));
            }
        }
        let parts = self.parameter_counts();
        let total: u128 = parts.iter().map(|(_, n)| n).sum();
        if total > MAX_PARAMETERS as u128 {
            // Named after the setting that sizes the largest part.
            let (name, largest) = parts
                .iter()
                .copied()
                .max_by_key(|(_, n)| *n)
                .expect("four parts");
            return Err(InvalidSetting::new(
                name,
                format!("makes a model of {total} parameters ({largest} in the part it sizes), more than the {MAX_PARAMETERS} allowed"),
            ));
        }
        Ok(())
    }
}

/// The cell a recurrent layer runs: the architectures that have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RnnCell {
    Lstm,
    Gru,
}

impl RnnCell {
    fn of(architecture: Architecture) -> Option<RnnCell> {
        match architecture {
            Architecture::Lstm => Some(RnnCell::Lstm),
            Architecture::Gru => Some(RnnCell::Gru),
            Architecture::BagOfEmbeddings => None,
        }
    }

    /// The variable-store prefix PyTorch's module names give its weights.
    fn prefix(self) -> &'static str {
        match self {
            RnnCell::Lstm => "lstm",
            RnnCell::Gru => "gru",
        }
    }

    /// Gates per hidden unit: the rows of each weight matrix are `gates × hidden`.
    fn gates(self) -> i64 {
        match self {
            RnnCell::Lstm => 4,
            RnnCell::Gru => 3,
        }
    }

    /// cuDNN's `cudnnRNNMode_t` for the cell.
    fn cudnn_mode(self) -> i64 {
        match self {
            RnnCell::Lstm => 2,
            RnnCell::Gru => 3,
        }
    }
}

/// A recurrent layer (LSTM or GRU) with PyTorch's parameter names and
/// initialisation. (The stages that train one are `stages::Recurrent`.)
#[derive(Debug)]
struct RnnLayer {
    weights: Vec<Tensor>,
    cell: RnnCell,
    layers: i64,
    bidirectional: bool,
    hidden: i64,
    dropout: f64,
    precision: Precision,
}

impl RnnLayer {
    fn new(vs: nn::Path, cell: RnnCell, input: i64, spec: &ModelSpec, random: bool) -> RnnLayer {
        let gates = cell.gates() * spec.hidden_dim;
        // PyTorch: every weight and bias uniform in ±1/sqrt(hidden).
        let bound = 1.0 / (spec.hidden_dim as f64).sqrt();
        let init = if random {
            Init::Uniform {
                lo: -bound,
                up: bound,
            }
        } else {
            Init::Const(0.0)
        };
        let mut weights = Vec::new();
        for layer in 0..spec.layers {
            let layer_input = if layer == 0 {
                input
            } else {
                spec.hidden_dim * spec.directions()
            };
            for direction in 0..spec.directions() {
                let suffix = if direction == 1 { "_reverse" } else { "" };
                weights.push(vs.var(
                    &format!("weight_ih_l{layer}{suffix}"),
                    &[gates, layer_input],
                    init,
                ));
                weights.push(vs.var(
                    &format!("weight_hh_l{layer}{suffix}"),
                    &[gates, spec.hidden_dim],
                    init,
                ));
                weights.push(vs.var(&format!("bias_ih_l{layer}{suffix}"), &[gates], init));
                weights.push(vs.var(&format!("bias_hh_l{layer}{suffix}"), &[gates], init));
            }
        }
        if vs.device().is_cuda() && tch::Cuda::cudnn_is_available() {
            // Lets cuDNN use the weights in place instead of copying them each step.
            let _ = Tensor::internal_cudnn_rnn_flatten_weight(
                &weights,
                4,
                input,
                cell.cudnn_mode(),
                spec.hidden_dim,
                0,
                spec.layers,
                true,
                spec.bidirectional,
            );
        }
        RnnLayer {
            weights,
            cell,
            layers: spec.layers,
            bidirectional: spec.bidirectional,
            hidden: spec.hidden_dim,
            dropout: spec.layer_dropout,
            precision: spec.precision,
        }
    }

    /// Outputs `[batch, time, hidden × directions]` (float32) for batch-first input.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let batch = xs.size()[0];
        let directions = if self.bidirectional { 2 } else { 1 };
        // The casts are differentiable: gradients reach the float32 parameters.
        let (xs, cast_weights) = match self.precision {
            Precision::Bfloat16 if xs.device() == Device::Cpu => (
                xs.to_kind(Kind::BFloat16),
                Some(
                    self.weights
                        .iter()
                        .map(|w| w.to_kind(Kind::BFloat16))
                        .collect::<Vec<_>>(),
                ),
            ),
            _ => (xs.shallow_clone(), None),
        };
        let weights = cast_weights.as_ref().unwrap_or(&self.weights);
        let h0 = Tensor::zeros(
            [self.layers * directions, batch, self.hidden],
            (xs.kind(), xs.device()),
        );
        let out = match self.cell {
            RnnCell::Lstm => {
                let weights: Vec<&Tensor> = weights.iter().collect();
                let (out, _, _) = xs.lstm(
                    &[&h0, &h0],
                    &weights,
                    true,
                    self.layers,
                    self.dropout,
                    train,
                    self.bidirectional,
                    true,
                );
                out
            }
            RnnCell::Gru => {
                let (out, _) = xs.gru(
                    &h0,
                    weights,
                    true,
                    self.layers,
                    self.dropout,
                    train,
                    self.bidirectional,
                    true,
                );
                out
            }
        };
        out.to_kind(Kind::Float)
    }
}

/// A text classifier: Embedding → (LSTM | GRU | nothing) → pooling → Dropout → Linear.
#[derive(Debug)]
pub struct Classifier {
    spec: ModelSpec,
    embedding: Tensor,
    /// Whether the embedding's gradient comes sparse (one row per token).
    sparse_gradient: bool,
    recurrent: Option<RnnLayer>,
    fc_weight: Tensor,
    fc_bias: Tensor,
    /// `[vocab, classes]`, with `spec.word_logits`.
    word_logits: Option<Tensor>,
}

impl Classifier {
    /// Creates the parameters under `vs` with PyTorch's names and initialisation:
    /// `embedding.weight` N(0, 1) with the padding row zeroed, RNN weights
    /// uniform ±1/√hidden, `fc` weight and bias uniform ±1/√in.
    pub fn new(vs: &nn::Path, spec: &ModelSpec) -> Result<Classifier, ModelError> {
        Self::build(vs, spec, true)
    }

    /// The same parameters, all zero, for weights about to be loaded: draws no
    /// random numbers (and so leaves torch's generator where it was).
    pub(crate) fn zeroed(vs: &nn::Path, spec: &ModelSpec) -> Result<Classifier, ModelError> {
        Self::build(vs, spec, false)
    }

    fn build(vs: &nn::Path, spec: &ModelSpec, random: bool) -> Result<Classifier, ModelError> {
        spec.validate()?;
        let init = |random_init: Init| {
            if random {
                random_init
            } else {
                Init::Const(0.0)
            }
        };
        let embedding = (vs / "embedding").var(
            "weight",
            &[spec.vocab_size, spec.embed_dim],
            init(Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            }),
        );
        tch::no_grad(|| {
            let _ = embedding.get(spec.pad_id).zero_();
        });
        let recurrent = RnnCell::of(spec.architecture)
            .map(|cell| RnnLayer::new(vs / cell.prefix(), cell, spec.embed_dim, spec, random));
        let features = spec.features();
        let bound = 1.0 / (features as f64).sqrt();
        let fc = vs / "fc";
        let fc_weight = fc.var(
            "weight",
            &[spec.num_classes, features],
            init(Init::Uniform {
                lo: -bound,
                up: bound,
            }),
        );
        let fc_bias = fc.var(
            "bias",
            &[spec.num_classes],
            init(Init::Uniform {
                lo: -bound,
                up: bound,
            }),
        );
        // Zero, as a linear model starts: no random draws, so the other
        // parameters start where they would without it.
        let word_logits = spec.has_word_logits().then(|| {
            (vs / "word_logits").var(
                "weight",
                &[spec.vocab_size, spec.num_classes],
                Init::Const(0.0),
            )
        });
        Ok(Classifier {
            spec: spec.clone(),
            embedding,
            sparse_gradient: spec.sparse_embedding,
            recurrent,
            fc_weight,
            fc_bias,
            word_logits,
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Every parameter, the recurrent weights first, in cuDNN's order
    /// (per layer and direction: `weight_ih`, `weight_hh`, `bias_ih`,
    /// `bias_hh`). cuDNN reads recurrent weights in place only when they
    /// start their storage in that layout, so an optimizer that moves the
    /// parameters into one flat buffer should lay it out in this order;
    /// otherwise every step copies them (and libtorch warns each time).
    pub fn parameters(&self) -> Vec<Tensor> {
        let recurrent = self.recurrent.iter().flat_map(|r| r.weights.iter());
        recurrent
            .chain([&self.embedding, &self.fc_weight, &self.fc_bias])
            .chain(&self.word_logits)
            .map(Tensor::shallow_clone)
            .collect()
    }

    /// The embedding table (`embedding.weight`), for an optimizer that
    /// treats its rows specially.
    pub fn embedding_weight(&self) -> &Tensor {
        &self.embedding
    }

    /// Makes the embedding's gradient sparse (the rows the batch used) or
    /// dense. The forward pass and the gradient's values are the same either
    /// way; `spec.sparse_embedding` sets the default, and with it the lazy
    /// optimizer update. A trainer that keeps the dense update's semantics
    /// can still ask for sparse gradients, to update idle rows late.
    pub fn set_sparse_embedding_gradient(&mut self, sparse: bool) {
        self.sparse_gradient = sparse;
    }

    /// Logits `[batch, classes]` for ids `[batch, time]` with per-row `lengths`.
    pub fn forward_t(
        &self,
        ids: &Tensor,
        lengths: &Tensor,
        padding: PaddingSide,
        train: bool,
    ) -> Tensor {
        let read_as = self.spec.reads_as(padding);
        let ids = if read_as != padding {
            to_front(ids, lengths)
        } else {
            ids.shallow_clone()
        };
        let padding = read_as;
        let embedded = Tensor::embedding(
            &self.embedding,
            &ids,
            self.spec.pad_id,
            false,
            self.sparse_gradient,
        );
        let xs = if self.spec.embedding_dropout > 0.0 {
            dropout(&embedded, self.spec.embedding_dropout, train)
        } else {
            embedded.shallow_clone()
        };
        let pooled = match &self.recurrent {
            Some(rnn) => {
                let out = rnn.forward_t(&xs, train);
                let pooled = pool(
                    &out,
                    lengths,
                    padding,
                    self.spec.pooling,
                    self.spec.bidirectional.then_some(self.spec.hidden_dim),
                );
                if self.spec.embedding_shortcut {
                    Tensor::cat(
                        &[
                            pooled,
                            pool(&embedded, lengths, padding, Pooling::Mean, None),
                        ],
                        1,
                    )
                } else {
                    pooled
                }
            }
            None => pool(&xs, lengths, padding, self.spec.pooling, None),
        };
        let logits =
            dropout(&pooled, self.spec.dropout, train).linear(&self.fc_weight, Some(&self.fc_bias));
        match &self.word_logits {
            Some(table) => logits + bag_of_words_logits(table, &ids, lengths, &self.spec, train),
            None => logits,
        }
    }
}

/// The linear bag-of-words term: `table`'s rows for the row's tokens (the
/// padding row is zero and gets no gradient), summed and divided by
/// √length. In training each token is dropped with probability `dropout`
/// (the survivors scaled up), as the output layer's dropout drops features:
/// without it the table memorises the training rows within a few epochs.
fn bag_of_words_logits(
    table: &Tensor,
    ids: &Tensor,
    lengths: &Tensor,
    spec: &ModelSpec,
    train: bool,
) -> Tensor {
    let per_token = Tensor::embedding(table, ids, spec.pad_id, false, spec.sparse_embedding);
    let per_token = if train && spec.dropout > 0.0 {
        let keep = dropout(
            &Tensor::ones(ids.size(), (Kind::Float, ids.device())),
            spec.dropout,
            true,
        );
        per_token * keep.unsqueeze(2)
    } else {
        per_token
    };
    let norm = lengths
        .to_device(ids.device())
        .to_kind(Kind::Float)
        .clamp_min(1.0)
        .rsqrt()
        .unsqueeze(1);
    per_token.sum_dim_intlist(1, false, Kind::Float) * norm
}

/// Pre-padded ids `[batch, time]` as post-padded ones: each row's last
/// `length` columns moved to the front, in order (a per-row rotation).
fn to_front(ids: &Tensor, lengths: &Tensor) -> Tensor {
    let time = ids.size()[1];
    let device = ids.device();
    let shift = (lengths
        .to_device(device)
        .to_kind(Kind::Int64)
        .clamp(0, time)
        .g_mul_scalar(-1)
        + time)
        .unsqueeze(1);
    let index =
        (Tensor::arange(time, (Kind::Int64, device)).unsqueeze(0) + shift).remainder(time.max(1));
    ids.gather(1, &index, false)
}

/// Pools `[batch, time, features]` to `[batch, features']`. With
/// `bidirectional_hidden`, "last" means the forward half at the last real
/// token and the backward half at the first.
fn pool(
    out: &Tensor,
    lengths: &Tensor,
    padding: PaddingSide,
    pooling: Pooling,
    bidirectional_hidden: Option<i64>,
) -> Tensor {
    let (mean, max) = match pooling {
        Pooling::Mean => (true, false),
        Pooling::Max => (false, true),
        Pooling::MeanMax => (true, true),
        _ => (false, false),
    };
    if (mean || max)
        && !out.requires_grad()
        && out.device() == Device::Cpu
        && out.kind() == Kind::Float
    {
        return mean_max_in_one_pass(out, lengths, padding, mean, max);
    }
    let time = out.size()[1];
    let device = out.device();
    let lengths = lengths.to_device(device).unsqueeze(1);
    // Which time steps hold real tokens. This and `real_ends` are built only
    // by the poolings that read them: a handful of ops each training step.
    let valid = || {
        let positions = Tensor::arange(time, (Kind::Int64, device)).unsqueeze(0);
        match padding {
            PaddingSide::Post => positions.lt_tensor(&lengths),
            PaddingSide::Pre => positions.ge_tensor(&(lengths.g_mul_scalar(-1) + time)),
        }
    };
    let at = |index: &Tensor| -> Tensor {
        let features = out.size()[2];
        out.gather(
            1,
            &index.view([-1, 1, 1]).expand([-1, 1, features], false),
            false,
        )
        .squeeze_dim(1)
    };
    let real_ends = || match padding {
        PaddingSide::Post => (
            Tensor::zeros_like(&lengths.squeeze_dim(1)),
            (lengths.squeeze_dim(1) - 1).clamp_min(0),
        ),
        PaddingSide::Pre => (
            (lengths.squeeze_dim(1).g_mul_scalar(-1) + time).clamp_max(time - 1),
            Tensor::full([out.size()[0]], time - 1, (Kind::Int64, device)),
        ),
    };
    let mean = || {
        let mask = valid().unsqueeze(2).to_kind(out.kind());
        let count = mask.sum_dim_intlist(1, false, out.kind()).clamp_min(1.0);
        (out * &mask).sum_dim_intlist(1, false, out.kind()) / count
    };
    let max = || {
        if out.device() == Device::Cpu && out.kind() == Kind::Float {
            return masked_max_by_gather(out, lengths.squeeze_dim(1), padding);
        }
        let masked = out.masked_fill(&valid().logical_not().unsqueeze(2), f64::NEG_INFINITY);
        let (m, _) = masked.max_dim(1, false);
        // Rows without any real token give zeros rather than -inf.
        m.masked_fill(&m.isinf(), 0.0)
    };
    match pooling {
        Pooling::LastStep => out.select(1, time - 1),
        Pooling::LastValid => match bidirectional_hidden {
            None => at(&real_ends().1),
            Some(h) => {
                let (first_real, last_real) = real_ends();
                let forward = at(&last_real).narrow(1, 0, h);
                let backward = at(&first_real).narrow(1, h, h);
                Tensor::cat(&[forward, backward], 1)
            }
        },
        Pooling::Mean => mean(),
        Pooling::Max => max(),
        Pooling::MeanMax => Tensor::cat(&[mean(), max()], 1),
    }
}

/// The real (non-padding) time steps of a row of `len` tokens in `time` steps.
fn real_steps(len: i64, time: usize, padding: PaddingSide) -> std::ops::Range<usize> {
    let len = len.clamp(0, time as i64) as usize;
    match padding {
        PaddingSide::Post => 0..len,
        PaddingSide::Pre => time - len..time,
    }
}

/// Masked max over time (`[batch, time, features]` → `[batch, features]`)
/// that autograd differentiates, for training on the CPU: the arg-max of
/// each row and feature found in one pass here, the values then gathered by
/// torch, whose backward sends each gradient to its arg-max as `max_dim`'s
/// does. With torch's masked_fill + max_dim, mean and max pooling of a
/// batch of 128 rows × 40 steps × 128 features took 4.2 ms forward and
/// backward on a 2-core AMD EPYC; with this, 2.4 ms. The values are
/// `pool`'s torch ops': ties go to the first step, NaN wins, and a maximum
/// that is infinite (every row without tokens) gives zero.
fn masked_max_by_gather(out: &Tensor, lengths: Tensor, padding: PaddingSide) -> Tensor {
    let (rows, time, features) = out.size3().expect("[batch, time, features]");
    let lengths: Vec<i64> =
        Vec::<i64>::try_from(&lengths.reshape([-1]).to_device(Device::Cpu)).expect("int64 lengths");
    assert_eq!(lengths.len(), rows as usize, "one length per row");
    if rows == 0 || time == 0 || features == 0 {
        // Nothing to search (and an empty tensor's data pointer may be null).
        return Tensor::zeros([rows, features], (Kind::Float, Device::Cpu));
    }
    let (rows, time, features) = (rows as usize, time as usize, features as usize);
    let values = out.detach().contiguous();
    assert!(
        values.kind() == Kind::Float && values.device() == Device::Cpu,
        "f32 CPU tensor"
    );
    // SAFETY: a contiguous f32 CPU tensor (checked and made contiguous
    // above) of rows × time × features elements, none of them zero, alive
    // until the end of this function and only read.
    let xs = unsafe {
        std::slice::from_raw_parts(values.data_ptr() as *const f32, rows * time * features)
    };
    let (mut arg_max, mut zeroed) = (vec![0i64; rows * features], vec![false; rows * features]);
    let rows_per_part = rows.div_ceil(pipe_runtime::parallel::threads()).max(1);
    let part_len = rows_per_part * features;
    let parts: Vec<_> = arg_max
        .chunks_mut(part_len)
        .zip(zeroed.chunks_mut(part_len))
        .enumerate()
        .collect();
    pipe_runtime::parallel::for_each(parts, |(part, (arg_max, zeroed))| {
        // Per feature, the best value and its step as f32 (exact below 2^24
        // steps), so that the comparison loop vectorises.
        let (mut best, mut best_step) = (vec![0f32; features], vec![0f32; features]);
        for (i, (row_arg_max, row_zeroed)) in arg_max
            .chunks_mut(features)
            .zip(zeroed.chunks_mut(features))
            .enumerate()
        {
            let r = part * rows_per_part + i;
            let row = &xs[r * time * features..][..time * features];
            let mut steps = real_steps(lengths[r], time, padding);
            best.fill(f32::NEG_INFINITY);
            best_step.fill(0.0);
            if let Some(first) = steps.next() {
                best.copy_from_slice(&row[first * features..][..features]);
                best_step.fill(first as f32);
            }
            for t in steps {
                let step = t as f32;
                for ((b, s), &x) in best
                    .iter_mut()
                    .zip(best_step.iter_mut())
                    .zip(&row[t * features..][..features])
                {
                    // Greater, or the first NaN.
                    let wins = x > *b || (x.is_nan() & !b.is_nan());
                    *b = if wins { x } else { *b };
                    *s = if wins { step } else { *s };
                }
            }
            row_arg_max
                .iter_mut()
                .zip(&best_step)
                .for_each(|(a, &s)| *a = s as i64);
            row_zeroed
                .iter_mut()
                .zip(&best)
                .for_each(|(z, b)| *z = b.is_infinite());
        }
    });
    let shape = [rows as i64, features as i64];
    let max = out
        .gather(
            1,
            &Tensor::from_slice(&arg_max).view([shape[0], 1, shape[1]]),
            false,
        )
        .squeeze_dim(1);
    if zeroed.contains(&true) {
        max.masked_fill(&Tensor::from_slice(&zeroed).view(shape), 0.0)
    } else {
        max
    }
}

/// Masked mean and/or max over time (`[batch, time, features]` →
/// `[batch, features × pooled]`) in one pass over the data, for inference on
/// the CPU: the values of `pool`'s torch ops (sums in the same order, rows
/// without tokens giving zeros), which autograd needs in training but which
/// take six passes and a fifth of a prediction batch's time.
fn mean_max_in_one_pass(
    out: &Tensor,
    lengths: &Tensor,
    padding: PaddingSide,
    mean: bool,
    max: bool,
) -> Tensor {
    let out = out.contiguous();
    let (rows, time, features) = out.size3().expect("[batch, time, features]");
    let (rows, time, features) = (rows as usize, time as usize, features as usize);
    let lengths: Vec<i64> =
        Vec::<i64>::try_from(&lengths.reshape([-1]).to_device(Device::Cpu)).expect("int64 lengths");
    assert_eq!(lengths.len(), rows, "one length per row");
    let width = features * (mean as usize + max as usize);
    if rows * time * features == 0 {
        // Zeros, as for rows without tokens (an empty tensor's data pointer may be null).
        return Tensor::zeros([rows as i64, width as i64], (Kind::Float, Device::Cpu));
    }
    // SAFETY: a contiguous f32 CPU tensor (checked by the caller, made
    // contiguous above) of rows × time × features elements, none of them
    // zero, alive until the end of this function and only read.
    let xs =
        unsafe { std::slice::from_raw_parts(out.data_ptr() as *const f32, rows * time * features) };
    let mut pooled = vec![0f32; rows * width];
    let rows_per_part = rows.div_ceil(pipe_runtime::parallel::threads()).max(1);
    let parts: Vec<(usize, &mut [f32])> = pooled
        .chunks_mut(rows_per_part * width.max(1))
        .enumerate()
        .collect();
    pipe_runtime::parallel::for_each(parts, |(part, chunk)| {
        for (i, row_out) in chunk.chunks_mut(width.max(1)).enumerate() {
            let r = part * rows_per_part + i;
            let steps = real_steps(lengths[r], time, padding);
            let len = steps.len();
            let (mean_out, max_out) = row_out.split_at_mut(if mean { features } else { 0 });
            let row = &xs[r * time * features..][..time * features];
            if mean {
                for t in steps.clone() {
                    mean_out
                        .iter_mut()
                        .zip(&row[t * features..][..features])
                        .for_each(|(s, &x)| *s += x);
                }
                let count = len.max(1) as f32;
                mean_out.iter_mut().for_each(|s| *s /= count);
            }
            if max {
                max_out.fill(f32::NEG_INFINITY);
                for t in steps {
                    max_out
                        .iter_mut()
                        .zip(&row[t * features..][..features])
                        .for_each(|(m, &x)| {
                            if x > *m || x.is_nan() {
                                *m = x
                            }
                        });
                }
                max_out
                    .iter_mut()
                    .filter(|m| m.is_infinite())
                    .for_each(|m| *m = 0.0);
            }
        }
    });
    Tensor::from_slice(&pooled).view([rows as i64, width as i64])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(architecture: Architecture, pooling: Pooling, bidirectional: bool) -> ModelSpec {
        ModelSpec {
            architecture,
            pooling,
            bidirectional,
            ..ModelSpec::notebook(50, 0, 7)
        }
    }

    #[test]
    fn output_shapes_for_every_architecture_and_pooling() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(0);
        let ids = Tensor::from_slice(&[3i64, 4, 5, 0, 0, 6, 7, 8, 9, 10]).view([2, 5]);
        let lengths = Tensor::from_slice(&[3i64, 5]);
        for arch in [
            Architecture::Lstm,
            Architecture::Gru,
            Architecture::BagOfEmbeddings,
        ] {
            for pooling in [
                Pooling::LastStep,
                Pooling::LastValid,
                Pooling::Mean,
                Pooling::Max,
                Pooling::MeanMax,
            ] {
                for bidirectional in [false, true] {
                    let vs = nn::VarStore::new(Device::Cpu);
                    let model =
                        Classifier::new(&vs.root(), &spec(arch, pooling, bidirectional)).unwrap();
                    let logits = model.forward_t(&ids, &lengths, PaddingSide::Post, false);
                    assert_eq!(
                        logits.size(),
                        vec![2, 7],
                        "{arch:?} {pooling:?} {bidirectional}"
                    );
                }
            }
        }
    }

    /// Inference pools mean and max in one pass; training keeps the ops
    /// autograd needs. Both give the same values, on either padding
    /// side, rows without tokens included.
    #[test]
    fn one_pass_mean_max_equals_the_torch_ops() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(5);
        let out = Tensor::randn([9, 7, 12], (Kind::Float, Device::Cpu));
        let lengths = Tensor::from_slice(&[0i64, 1, 3, 7, 2, 5, 6, 4, 7]);
        for padding in [PaddingSide::Post, PaddingSide::Pre] {
            for pooling in [Pooling::Mean, Pooling::Max, Pooling::MeanMax] {
                let one_pass = pool(&out, &lengths, padding, pooling, None);
                // requires_grad sends the same call down the torch-op path.
                let ops = pool(
                    &out.copy().set_requires_grad(true),
                    &lengths,
                    padding,
                    pooling,
                    None,
                )
                .detach();
                let diff = (&one_pass - &ops).abs().max().double_value(&[]);
                assert!(diff <= 1e-6, "{padding:?} {pooling:?}: {diff}");
                assert_eq!(one_pass.size(), ops.size());
            }
        }
        let empty_row = pool(&out, &lengths, PaddingSide::Post, Pooling::MeanMax, None).get(0);
        assert!(
            empty_row.eq(0.0).all().int64_value(&[]) == 1,
            "a row without tokens pools to zeros"
        );
    }

    /// Training's max (arg-max found here, values gathered) gives the
    /// values and the gradients of the torch ops (masked_fill + max_dim),
    /// which run for float64: ties to the first step, rows without tokens
    /// and infinite maxima to zero, on either padding side.
    #[test]
    fn gathered_max_has_the_torch_ops_values_and_gradients() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(6);
        let out = Tensor::randn([9, 7, 12], (Kind::Float, Device::Cpu));
        let _ = out.get(3).get(2).fill_(f64::INFINITY);
        let tied = out.get(5).get(1).copy();
        out.get(5).get(4).copy_(&tied);
        let lengths = Tensor::from_slice(&[0i64, 1, 3, 7, 2, 5, 6, 4, 7]);
        let upstream = Tensor::randn([9, 12], (Kind::Float, Device::Cpu));
        for padding in [PaddingSide::Post, PaddingSide::Pre] {
            let run = |kind: Kind| {
                let xs = out.to_kind(kind).copy().set_requires_grad(true);
                let pooled = pool(&xs, &lengths, padding, Pooling::Max, None);
                (pooled.to_kind(Kind::Float) * &upstream)
                    .sum(Kind::Float)
                    .backward();
                (
                    pooled.detach().to_kind(Kind::Float),
                    xs.grad().to_kind(Kind::Float),
                )
            };
            let ((gathered, gathered_grad), (ops, ops_grad)) =
                (run(Kind::Float), run(Kind::Double));
            assert!(gathered.equal(&ops), "{padding:?}: {gathered} vs {ops}");
            assert!(
                gathered_grad.equal(&ops_grad),
                "{padding:?}: gradients differ"
            );
            assert_eq!(
                gathered.get(0).abs().sum(Kind::Float).double_value(&[]),
                0.0,
                "a row without tokens pools to zeros"
            );
        }
    }

    /// Empty batches, zero-step batches and zero-width outputs pool without
    /// reading memory that is not there, in training and in inference.
    #[test]
    fn empty_shapes_pool_to_zeros() {
        // Dropout in training mode may draw from torch's generator.
        let _rng = crate::torch_rng_lock();
        for (rows, time, features) in [(0i64, 5i64, 4i64), (3, 0, 4), (3, 5, 0)] {
            let lengths = Tensor::full([rows], time.min(2), (Kind::Int64, Device::Cpu));
            for training in [false, true] {
                let out = Tensor::zeros([rows, time, features], (Kind::Float, Device::Cpu))
                    .set_requires_grad(training);
                let pooled = pool(&out, &lengths, PaddingSide::Post, Pooling::MeanMax, None);
                assert_eq!(
                    pooled.size(),
                    [rows, 2 * features],
                    "{rows}x{time}x{features}, training {training}"
                );
                assert_eq!(pooled.abs().sum(Kind::Float).double_value(&[]), 0.0);
            }
        }
        assert_eq!(
            crate::dropout::dropout(
                &Tensor::zeros([0, 8], (Kind::Float, Device::Cpu)),
                0.5,
                true
            )
            .size(),
            [0, 8]
        );
    }

    #[test]
    fn parameters_have_pytorch_names_and_shapes() {
        let _rng = crate::torch_rng_lock();
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = Classifier::new(&vs.root(), &ModelSpec::notebook(50, 0, 7)).unwrap();
        let mut names: Vec<(String, Vec<i64>)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                ("embedding.weight".to_string(), vec![50, 128]),
                ("fc.bias".to_string(), vec![7]),
                ("fc.weight".to_string(), vec![7, 64]),
                ("lstm.bias_hh_l0".to_string(), vec![256]),
                ("lstm.bias_ih_l0".to_string(), vec![256]),
                ("lstm.weight_hh_l0".to_string(), vec![256, 64]),
                ("lstm.weight_ih_l0".to_string(), vec![256, 128]),
            ]
        );
    }

    #[test]
    fn padding_row_is_zero_and_init_matches_pytorch() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = Classifier::new(&vs.root(), &ModelSpec::notebook(5000, 3, 45)).unwrap();
        let vars = vs.variables();
        let emb = &vars["embedding.weight"];
        assert_eq!(emb.get(3).abs().sum(Kind::Float).double_value(&[]), 0.0);
        // N(0, 1) elsewhere.
        let rest = emb.narrow(0, 4, 4996);
        assert!((rest.mean(Kind::Float).double_value(&[])).abs() < 0.01);
        assert!((rest.std(true).double_value(&[]) - 1.0).abs() < 0.01);
        // Uniform ±1/sqrt(64) = ±0.125 for the LSTM; std of U(-b, b) is b/sqrt(3).
        let w = &vars["lstm.weight_ih_l0"];
        assert!(w.abs().max().double_value(&[]) <= 0.125);
        assert!((w.std(true).double_value(&[]) - 0.125 / 3f64.sqrt()).abs() < 0.003);
        // Linear: ±1/sqrt(64) as well (fan_in 64).
        let fc = &vars["fc.weight"];
        assert!(fc.abs().max().double_value(&[]) <= 0.125);
        assert!(fc.abs().max().double_value(&[]) > 0.1);
    }

    #[test]
    fn last_valid_reads_the_last_real_token() {
        let _rng = crate::torch_rng_lock();
        // With mean pooling over a bag model, post and pre padding of the same tokens agree.
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let s = spec(Architecture::Lstm, Pooling::LastValid, false);
        let model = Classifier::new(&vs.root(), &s).unwrap();
        let post = Tensor::from_slice(&[3i64, 4, 5, 0, 0]).view([1, 5]);
        let pre = Tensor::from_slice(&[0i64, 0, 3, 4, 5]).view([1, 5]);
        let short = Tensor::from_slice(&[3i64, 4, 5]).view([1, 3]);
        let len = Tensor::from_slice(&[3i64]);
        let a = model.forward_t(&post, &len, PaddingSide::Post, false);
        let c = model.forward_t(&short, &len, PaddingSide::Post, false);
        assert!(
            a.allclose(&c, 1e-6, 1e-6, false),
            "trailing pads must not change last_valid"
        );
        let b = model.forward_t(&pre, &len, PaddingSide::Pre, false);
        assert!(
            a.allclose(&b, 1e-6, 1e-6, false),
            "a front-aligned model reads pre-padding as post-padding"
        );
    }

    #[test]
    fn front_alignment_makes_the_padding_side_irrelevant() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(4);
        for architecture in [Architecture::Lstm, Architecture::Gru] {
            for (pooling, bidirectional, embedding_shortcut) in [
                (Pooling::MeanMax, false, false),
                (Pooling::MeanMax, false, true),
                (Pooling::Mean, true, false),
                (Pooling::LastValid, true, true),
            ] {
                let vs = nn::VarStore::new(Device::Cpu);
                let model = Classifier::new(
                    &vs.root(),
                    &ModelSpec {
                        embedding_shortcut,
                        ..spec(architecture, pooling, bidirectional)
                    },
                )
                .unwrap();
                // Rows of 3, 5, 0 and 1 tokens, padded to 5 on either side.
                let post = Tensor::from_slice(&[
                    3i64, 4, 5, 0, 0, 6, 7, 8, 9, 10, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0,
                ])
                .view([4, 5]);
                let pre = Tensor::from_slice(&[
                    0i64, 0, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11,
                ])
                .view([4, 5]);
                let lengths = Tensor::from_slice(&[3i64, 5, 0, 1]);
                let a = model.forward_t(&post, &lengths, PaddingSide::Post, false);
                let b = model.forward_t(&pre, &lengths, PaddingSide::Pre, false);
                assert!(
                    a.allclose(&b, 1e-5, 1e-6, false),
                    "{architecture:?} {pooling:?} bidirectional {bidirectional}"
                );
            }
        }
    }

    #[test]
    fn the_embedding_shortcut_feeds_the_mean_embedding_to_the_output_layer() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(6);
        let vs = nn::VarStore::new(Device::Cpu);
        let with = ModelSpec {
            embedding_shortcut: true,
            embedding_dropout: 0.5,
            ..spec(Architecture::Lstm, Pooling::MeanMax, false)
        };
        let model = Classifier::new(&vs.root(), &with).unwrap();
        let (hidden, embed) = (with.hidden_dim, with.embed_dim);
        assert_eq!(
            vs.variables()["fc.weight"].size(),
            vec![7, 2 * hidden + embed]
        );
        // With the LSTM's weights at zero its outputs are zero for every row,
        // so the logits are the output layer over the mean embedding alone.
        tch::no_grad(|| {
            vs.variables()
                .iter()
                .filter(|(name, _)| name.starts_with("lstm."))
                .for_each(|(_, w)| _ = w.shallow_clone().zero_())
        });
        let ids = Tensor::from_slice(&[3i64, 4, 5, 0, 6, 0, 0, 0]).view([2, 4]);
        let lengths = Tensor::from_slice(&[3i64, 1]);
        let logits = model.forward_t(&ids, &lengths, PaddingSide::Post, false);
        let table = &vs.variables()["embedding.weight"];
        let means = Tensor::stack(
            &[
                table.narrow(0, 3, 3).mean_dim(0, false, Kind::Float),
                table.get(6),
            ],
            0,
        );
        let fc = &vs.variables()["fc.weight"];
        let expected = means.linear(
            &fc.narrow(1, 2 * hidden, embed),
            Some(&vs.variables()["fc.bias"]),
        );
        assert!(
            logits.allclose(&expected, 1e-5, 1e-6, false),
            "{logits} vs {expected}"
        );
        // A row without tokens averages nothing: finite logits, the bias alone.
        let empty = model.forward_t(
            &Tensor::zeros([1, 4], (Kind::Int64, Device::Cpu)),
            &Tensor::from_slice(&[0i64]),
            PaddingSide::Post,
            false,
        );
        assert!(
            empty
                .get(0)
                .allclose(&vs.variables()["fc.bias"], 1e-6, 1e-7, false),
            "{empty}"
        );
        // A bag of embeddings is its own shortcut: the flag adds nothing there.
        let bag = ModelSpec {
            embedding_shortcut: true,
            ..spec(Architecture::BagOfEmbeddings, Pooling::Mean, false)
        };
        assert_eq!(bag.features(), bag.embed_dim);
        // Checkpoints saved before the field existed have no shortcut.
        let mut json = serde_json::to_value(&with).unwrap();
        json.as_object_mut().unwrap().remove("embedding_shortcut");
        assert!(
            !serde_json::from_value::<ModelSpec>(json)
                .unwrap()
                .embedding_shortcut
        );
    }

    #[test]
    fn word_logits_add_each_words_class_weights_over_the_square_root_of_the_length() {
        let _rng = crate::torch_rng_lock();
        let plain_spec = ModelSpec {
            dropout: 0.5,
            ..spec(Architecture::Lstm, Pooling::MeanMax, false)
        };
        let wide_spec = ModelSpec {
            word_logits: true,
            ..plain_spec.clone()
        };
        tch::manual_seed(8);
        let plain_vs = nn::VarStore::new(Device::Cpu);
        let plain = Classifier::new(&plain_vs.root(), &plain_spec).unwrap();
        tch::manual_seed(8);
        let vs_wide = nn::VarStore::new(Device::Cpu);
        let model = Classifier::new(&vs_wide.root(), &wide_spec).unwrap();
        let table = vs_wide.variables()["word_logits.weight"].shallow_clone();
        assert_eq!(table.size(), vec![50, 7]);
        let post = Tensor::from_slice(&[3i64, 4, 5, 0, 6, 0, 0, 0]).view([2, 4]);
        let pre = Tensor::from_slice(&[0i64, 3, 4, 5, 0, 0, 0, 6]).view([2, 4]);
        let lengths = Tensor::from_slice(&[3i64, 1]);
        // The table starts at zero and draws no random numbers: the other
        // parameters, and so the logits, are those of the model without it.
        let without = plain.forward_t(&post, &lengths, PaddingSide::Post, false);
        assert!(model
            .forward_t(&post, &lengths, PaddingSide::Post, false)
            .equal(&without));
        tch::no_grad(|| {
            table
                .narrow(0, 1, 49)
                .copy_(&Tensor::randn([49, 7], (Kind::Float, Device::Cpu)))
        });
        let sums = Tensor::stack(
            &[
                table.narrow(0, 3, 3).sum_dim_intlist(0, false, Kind::Float) / 3f64.sqrt(),
                table.get(6),
            ],
            0,
        );
        for (ids, padding) in [(&post, PaddingSide::Post), (&pre, PaddingSide::Pre)] {
            let logits = model.forward_t(ids, &lengths, padding, false);
            assert!(
                logits.allclose(&(&without + &sums), 1e-5, 1e-6, false),
                "{padding:?}: {logits} vs {}",
                &without + &sums
            );
        }
        // Training drops tokens from the bag (as dropout drops features):
        // with the output layer's weights at zero only the bag varies.
        tch::no_grad(|| _ = vs_wide.variables()["fc.weight"].shallow_clone().zero_());
        let dropped: Vec<Tensor> = (0..2)
            .map(|_| model.forward_t(&post, &lengths, PaddingSide::Post, true))
            .collect();
        assert!(
            !dropped[0].equal(&dropped[1]),
            "two training passes drop different tokens"
        );
        // Gradients reach the rows of the row's tokens, never the padding row.
        let no_dropout = ModelSpec {
            dropout: 0.0,
            ..wide_spec.clone()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Classifier::new(&vs.root(), &no_dropout).unwrap();
        model
            .forward_t(&post, &lengths, PaddingSide::Post, true)
            .sum(Kind::Float)
            .backward();
        let grad = vs.variables()["word_logits.weight"].grad();
        let touched: Vec<i64> = (0..50)
            .filter(|&row| grad.get(row).abs().sum(Kind::Float).double_value(&[]) > 0.0)
            .collect();
        assert_eq!(touched, vec![3, 4, 5, 6]);
        // With sparse embeddings the table's gradient is sparse too (lazy Adam).
        let sparse = ModelSpec {
            sparse_embedding: true,
            ..no_dropout
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Classifier::new(&vs.root(), &sparse).unwrap();
        model
            .forward_t(&post, &lengths, PaddingSide::Post, true)
            .sum(Kind::Float)
            .backward();
        assert!(vs.variables()["word_logits.weight"].grad().is_sparse());
        // A bag of embeddings has no table; checkpoints saved before the field have none.
        let bag = ModelSpec {
            word_logits: true,
            ..spec(Architecture::BagOfEmbeddings, Pooling::Mean, false)
        };
        let vs = nn::VarStore::new(Device::Cpu);
        Classifier::new(&vs.root(), &bag).unwrap();
        assert!(!vs.variables().contains_key("word_logits.weight"));
        let mut json = serde_json::to_value(&wide_spec).unwrap();
        json.as_object_mut().unwrap().remove("word_logits");
        assert!(
            !serde_json::from_value::<ModelSpec>(json)
                .unwrap()
                .word_logits
        );
        // A spec that claims the table beside weights without it (or the
        // reverse) is refused, naming the tensors on each side.
        let plain_weights = crate::Checkpoint::from_var_store(&plain_spec, &plain_vs);
        let claims_table = crate::Checkpoint {
            spec: wide_spec.clone(),
            tensors: plain_weights.tensors,
        };
        let err = claims_table.build(Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, ModelError::TensorNames { expected, .. } if expected.iter().any(|n| n == "word_logits.weight")),
            "{err}"
        );
        let wide_weights = crate::Checkpoint::from_var_store(&wide_spec, &vs_wide);
        let lacks_table = crate::Checkpoint {
            spec: plain_spec,
            tensors: wide_weights.tensors,
        };
        let err = lacks_table.build(Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, ModelError::TensorNames { found, .. } if found.iter().any(|n| n == "word_logits.weight")),
            "{err}"
        );
    }

    #[test]
    fn moving_tokens_to_the_front_keeps_their_order_and_bounds_odd_lengths() {
        let pre =
            Tensor::from_slice(&[0i64, 0, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8, 0, 0, 0, 9]).view([4, 4]);
        // A length past the width (or below zero) is read as the whole row (or none).
        let lengths = Tensor::from_slice(&[2i64, 0, 9, -1]);
        let front = Vec::<i64>::try_from(&to_front(&pre, &lengths).view([-1])).unwrap();
        assert_eq!(front, vec![3, 4, 0, 0, 0, 0, 0, 0, 5, 6, 7, 8, 0, 0, 0, 9]);
        let empty = Tensor::zeros([2, 0], (Kind::Int64, Device::Cpu));
        assert_eq!(
            to_front(&empty, &Tensor::from_slice(&[0i64, 0])).size(),
            vec![2, 0]
        );
    }

    #[test]
    fn checkpoints_from_before_front_alignment_read_rows_as_they_lie() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let old = ModelSpec {
            front_align: false,
            ..spec(Architecture::Lstm, Pooling::MeanMax, false)
        };
        let json = serde_json::to_value(&old).unwrap();
        let mut without_field = json.as_object().unwrap().clone();
        without_field.remove("front_align");
        let read: ModelSpec = serde_json::from_value(without_field.into()).unwrap();
        assert_eq!(
            read, old,
            "a spec saved without the field is not front-aligned"
        );
        let model = Classifier::new(&vs.root(), &old).unwrap();
        let post = Tensor::from_slice(&[3i64, 4, 0, 0]).view([1, 4]);
        let pre = Tensor::from_slice(&[0i64, 0, 3, 4]).view([1, 4]);
        let len = Tensor::from_slice(&[2i64]);
        let a = model.forward_t(&post, &len, PaddingSide::Post, false);
        let b = model.forward_t(&pre, &len, PaddingSide::Pre, false);
        assert!(
            !a.allclose(&b, 1e-6, 1e-6, false),
            "the LSTM ran over the leading pads"
        );
        assert_eq!(old.reads_as(PaddingSide::Pre), PaddingSide::Pre);
    }

    #[test]
    fn bfloat16_precision_is_close_to_float32_and_trains_float32_weights() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(4);
        let ids = Tensor::randint_low(1, 50, [6, 9], (Kind::Int64, Device::Cpu));
        let lengths = Tensor::from_slice(&[9i64, 3, 5, 9, 1, 7]);
        for (architecture, prefix) in [(Architecture::Lstm, "lstm"), (Architecture::Gru, "gru")] {
            let full = ModelSpec {
                hidden_dim: 32,
                ..spec(architecture, Pooling::MeanMax, true)
            };
            let vs = nn::VarStore::new(Device::Cpu);
            let exact = Classifier::new(&vs.root(), &full).unwrap();
            // The same weights, computing in bfloat16.
            let mut checkpoint = crate::Checkpoint::from_var_store(&full, &vs);
            checkpoint.spec.precision = Precision::Bfloat16;
            let (mixed_vs, mixed) = checkpoint.build(Device::Cpu).unwrap();
            let a = exact.forward_t(&ids, &lengths, PaddingSide::Post, false);
            let b = mixed.forward_t(&ids, &lengths, PaddingSide::Post, false);
            assert_eq!(b.kind(), Kind::Float);
            let gap = (&a - &b).abs().max().double_value(&[]);
            assert!(
                gap > 0.0 && gap < 0.05,
                "{prefix}: bfloat16 logits should be close to, not equal to, float32's: {gap}"
            );
            // Gradients reach the float32 recurrent weights through the casts.
            let loss = mixed
                .forward_t(&ids, &lengths, PaddingSide::Post, true)
                .square()
                .sum(Kind::Float);
            let w = &mixed_vs.variables()[&format!("{prefix}.weight_hh_l0")];
            let grad = Tensor::run_backward(&[loss], &[w], false, false).remove(0);
            assert_eq!((w.kind(), grad.kind()), (Kind::Float, Kind::Float));
            assert!(
                grad.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                "{prefix}"
            );
        }
    }

    #[test]
    fn masked_mean_ignores_pads() {
        let _rng = crate::torch_rng_lock();
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Classifier::new(
            &vs.root(),
            &spec(Architecture::BagOfEmbeddings, Pooling::Mean, false),
        )
        .unwrap();
        let padded = Tensor::from_slice(&[3i64, 4, 0, 0]).view([1, 4]);
        let tight = Tensor::from_slice(&[3i64, 4]).view([1, 2]);
        let len = Tensor::from_slice(&[2i64]);
        let a = model.forward_t(&padded, &len, PaddingSide::Post, false);
        let b = model.forward_t(&tight, &len, PaddingSide::Post, false);
        assert!(a.allclose(&b, 1e-6, 1e-6, false));
    }
}
