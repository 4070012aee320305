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

use pipe_core::{Artifacts, Port, PortOf, StageContext, StageError};
use pipe_data::{LabelSet, Vocabulary};
use tch::{nn, Device};

use crate::checkpoint::Checkpoint;
use crate::model::{Classifier, ModelSpec};
use crate::ModelError;

/// The vocabulary size a model stage's config is checked with when the
/// pipeline is loaded, before the data gives the real one: `<PAD>` and
/// `<UNK>`. Every size the config sets is checked then; the tables that grow
/// with the vocabulary are checked again when the stage builds the model.
const STAND_IN_VOCAB: i64 = 2;

/// The class count a model stage's config is checked with at load (see [`STAND_IN_VOCAB`]).
const STAND_IN_CLASSES: i64 = 2;

/// The ports every model stage has: the vocabulary and label set in, the
/// initialised model out.
pub struct ModelPorts;

impl ModelPorts {
    pub const VOCAB: PortOf<Vocabulary> =
        PortOf::new("vocab", "sets the embedding size and padding id");
    pub const LABELS: PortOf<LabelSet> = PortOf::new("labels", "sets the number of classes");
    pub const MODEL: PortOf<Checkpoint> = PortOf::new("model", "the initialised model");
}

/// The inputs every model stage takes.
fn model_inputs() -> Vec<Port> {
    vec![ModelPorts::VOCAB.port(), ModelPorts::LABELS.port()]
}

/// The output every model stage returns.
fn model_outputs() -> Vec<Port> {
    vec![ModelPorts::MODEL.port()]
}

/// What every model stage's `run` does: the spec from the vocabulary and
/// label set, initialised with the pipeline's seed, as the `model` output.
fn run_model_stage(
    inputs: &Artifacts,
    ctx: &StageContext,
    spec: impl Fn(&Vocabulary, &LabelSet) -> ModelSpec,
) -> Result<Artifacts, StageError> {
    let vocab = inputs.read(&ModelPorts::VOCAB)?;
    let labels = inputs.read(&ModelPorts::LABELS)?;
    let checkpoint = initialise(&spec(vocab, labels), ctx.seed).map_err(StageError::other)?;
    ctx.info(pipe_core::Artifact::summary(&checkpoint));
    let mut out = Artifacts::new();
    out.put(&ModelPorts::MODEL, checkpoint);
    Ok(out)
}

/// Initialises `spec` with the pipeline's seed, on the CPU (the same weights on every device).
pub fn initialise(spec: &ModelSpec, seed: u64) -> Result<Checkpoint, ModelError> {
    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    Classifier::new(&vs.root(), spec)?;
    Ok(Checkpoint::from_var_store(spec, &vs))
}

#[cfg(test)]
mod tests {
    use pipe_core::{InvalidSetting, LoadArtifact, Stage};

    use super::*;
    use crate::model::{
        Architecture, MAX_CLASSES, MAX_EMBED_DIM, MAX_HIDDEN_DIM, MAX_LAYERS, MAX_PARAMETERS,
        MAX_VOCAB_SIZE,
    };
    use crate::{BagOfNgrams, GruClassifier, LstmClassifier, RecurrentConfig};

    fn refused(result: Result<(), InvalidSetting>) -> InvalidSetting {
        result.expect_err("the setting passed validation")
    }

    #[test]
    fn the_default_configs_pass() {
        assert_eq!(Stage::validate(&LstmClassifier::default()), Ok(()));
        assert_eq!(Stage::validate(&GruClassifier::default()), Ok(()));
        assert_eq!(Stage::validate(&BagOfNgrams::default()), Ok(()));
        assert_eq!(ModelSpec::notebook(50_000, 0, 45).validate(), Ok(()));
    }

    #[test]
    fn each_recurrent_size_is_bounded_at_load() {
        let lstm = |config: RecurrentConfig| Stage::validate(&LstmClassifier::new(config));
        let gru = |config: RecurrentConfig| Stage::validate(&GruClassifier::new(config));
        let cases = [
            (
                "embed_dim",
                RecurrentConfig {
                    embed_dim: MAX_EMBED_DIM + 1,
                    ..Default::default()
                },
                MAX_EMBED_DIM + 1,
                MAX_EMBED_DIM,
            ),
            (
                "embed_dim",
                RecurrentConfig {
                    embed_dim: 0,
                    ..Default::default()
                },
                0,
                MAX_EMBED_DIM,
            ),
            (
                "hidden_dim",
                RecurrentConfig {
                    hidden_dim: MAX_HIDDEN_DIM + 1,
                    ..Default::default()
                },
                MAX_HIDDEN_DIM + 1,
                MAX_HIDDEN_DIM,
            ),
            (
                "hidden_dim",
                RecurrentConfig {
                    hidden_dim: 1_000_000_000,
                    ..Default::default()
                },
                1_000_000_000,
                MAX_HIDDEN_DIM,
            ),
            (
                "layers",
                RecurrentConfig {
                    layers: MAX_LAYERS + 1,
                    ..Default::default()
                },
                MAX_LAYERS + 1,
                MAX_LAYERS,
            ),
            (
                "layers",
                RecurrentConfig {
                    layers: 0,
                    ..Default::default()
                },
                0,
                MAX_LAYERS,
            ),
        ];
        for (setting, config, got, max) in cases {
            for check in [
                &lstm as &dyn Fn(RecurrentConfig) -> Result<(), InvalidSetting>,
                &gru,
            ] {
                let e = refused(check(config.clone()));
                assert_eq!(
                    e,
                    InvalidSetting::new(setting, format!("must be between 1 and {max}, got {got}"))
                );
            }
        }
        // At the bounds, each on its own, the configs pass.
        for config in [
            RecurrentConfig {
                embed_dim: MAX_EMBED_DIM,
                ..Default::default()
            },
            RecurrentConfig {
                hidden_dim: MAX_HIDDEN_DIM,
                ..Default::default()
            },
            RecurrentConfig {
                layers: MAX_LAYERS,
                ..Default::default()
            },
        ] {
            assert_eq!(lstm(config.clone()), Ok(()), "{config:?}");
            assert_eq!(gru(config), Ok(()));
        }
        // Dropouts are checked at load too, not only when the model is built.
        assert_eq!(
            refused(lstm(RecurrentConfig {
                dropout: 1.0,
                ..Default::default()
            }))
            .setting,
            "dropout"
        );
    }

    #[test]
    fn the_recurrent_layers_weights_are_bounded_together() {
        // Each size is allowed, but 2 bidirectional layers of the widest
        // LSTM are 6.4 billion parameters.
        let wide = RecurrentConfig {
            hidden_dim: MAX_HIDDEN_DIM,
            layers: 2,
            bidirectional: true,
            ..Default::default()
        };
        let e = refused(Stage::validate(&LstmClassifier::new(wide)));
        assert_eq!(e.setting, "hidden_dim");
        assert!(
            e.problem
                .contains(&format!("more than the {MAX_PARAMETERS} allowed")),
            "{e}"
        );
    }

    #[test]
    fn the_bag_of_ngrams_buckets_and_width_are_bounded_at_load() {
        let bag = |buckets: i64, embed_dim: i64| {
            Stage::validate(&BagOfNgrams {
                buckets,
                embed_dim,
                ..Default::default()
            })
        };
        let max_buckets = pipe_tensor::ngrams::MAX_BUCKETS;
        assert_eq!(
            refused(bag(max_buckets + 1, 64)),
            InvalidSetting::new(
                "buckets",
                format!(
                    "must be between 1 and {max_buckets}, got {}",
                    max_buckets + 1
                )
            )
        );
        assert_eq!(refused(bag(0, 64)).setting, "buckets");
        assert_eq!(
            refused(bag(1 << 16, MAX_EMBED_DIM + 1)),
            InvalidSetting::new(
                "embed_dim",
                format!(
                    "must be between 1 and {MAX_EMBED_DIM}, got {}",
                    MAX_EMBED_DIM + 1
                )
            )
        );
        // Both within their bounds, but a 2^24 × 256 table is 2^32 floats.
        let e = refused(bag(max_buckets, 256));
        assert_eq!(e.setting, "buckets");
        assert!(
            e.problem
                .contains("makes an embedding table of 4294967296 parameters"),
            "{e}"
        );
        assert_eq!(bag(max_buckets, 64), Ok(()));
        assert_eq!(
            refused(Stage::validate(&BagOfNgrams {
                dropout: -0.1,
                ..Default::default()
            }))
            .setting,
            "dropout"
        );
    }

    #[test]
    fn a_spec_is_bounded_in_each_size_and_in_its_parameters() {
        let notebook = ModelSpec::notebook(50, 0, 7);
        let refused_spec = |spec: ModelSpec| refused(spec.validate());
        assert_eq!(
            refused_spec(ModelSpec {
                vocab_size: MAX_VOCAB_SIZE + 1,
                ..notebook.clone()
            }),
            InvalidSetting::new(
                "vocab_size",
                format!(
                    "must be between 1 and {MAX_VOCAB_SIZE}, got {}",
                    MAX_VOCAB_SIZE + 1
                )
            )
        );
        assert_eq!(
            refused_spec(ModelSpec {
                num_classes: MAX_CLASSES + 1,
                ..notebook.clone()
            }),
            InvalidSetting::new(
                "num_classes",
                format!(
                    "must be between 1 and {MAX_CLASSES}, got {}",
                    MAX_CLASSES + 1
                )
            )
        );
        assert_eq!(
            refused_spec(ModelSpec {
                hidden_dim: MAX_HIDDEN_DIM + 1,
                ..notebook.clone()
            })
            .setting,
            "hidden_dim"
        );
        // A bag of embeddings has no recurrent layer: its hidden_dim and layers are not read.
        let bag = ModelSpec {
            architecture: Architecture::BagOfEmbeddings,
            hidden_dim: 0,
            layers: 0,
            ..notebook.clone()
        };
        assert_eq!(bag.validate(), Ok(()));
        // Each size allowed, but a 2^20 × 2^12 embedding table is 2^32 floats.
        let e = refused_spec(ModelSpec {
            vocab_size: 1 << 20,
            embed_dim: 1 << 12,
            ..notebook.clone()
        });
        assert_eq!(e.setting, "embed_dim");
        assert!(
            e.problem.contains("(4294967296 in the part it sizes)"),
            "{e}"
        );
        // And a per-word logits table of 2^22 words × 2^10 classes.
        let wide = ModelSpec {
            vocab_size: 1 << 22,
            embed_dim: 8,
            num_classes: 1 << 10,
            word_logits: true,
            ..notebook.clone()
        };
        assert_eq!(refused_spec(wide.clone()).setting, "word_logits");
        assert_eq!(
            ModelSpec {
                word_logits: false,
                ..wide
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn the_parameter_count_is_the_models() {
        for (architecture, bidirectional, layers) in [
            (Architecture::Lstm, true, 2),
            (Architecture::Gru, false, 3),
            (Architecture::BagOfEmbeddings, false, 1),
        ] {
            let spec = ModelSpec {
                architecture,
                bidirectional,
                layers,
                embed_dim: 6,
                hidden_dim: 5,
                pooling: crate::Pooling::MeanMax,
                embedding_shortcut: true,
                word_logits: true,
                ..ModelSpec::notebook(30, 0, 4)
            };
            let checkpoint = {
                // Initialising draws from torch's generator.
                let _rng = crate::torch_rng_lock();
                initialise(&spec, 0).unwrap()
            };
            let count: usize = checkpoint.tensors.iter().map(|(_, t)| t.numel()).sum();
            assert_eq!(spec.parameters(), count as u128, "{architecture:?}");
        }
    }

    #[test]
    fn a_stored_spec_out_of_bounds_is_refused_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = serde_json::to_value(ModelSpec::notebook(50, 0, 7)).unwrap();
        spec["hidden_dim"] = serde_json::json!(1_000_000_000);
        std::fs::write(dir.path().join("spec.json"), spec.to_string()).unwrap();
        // Refused before the weights are read (there are none here).
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("spec.json")
                && e.contains(&format!(
                    "hidden_dim must be between 1 and {MAX_HIDDEN_DIM}, got 1000000000"
                )),
            "{e}"
        );
        spec["hidden_dim"] = serde_json::json!(1e9);
        std::fs::write(dir.path().join("spec.json"), spec.to_string()).unwrap();
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("spec.json"), "{e}");
        spec["hidden_dim"] = serde_json::json!(64);
        spec["vocab_size"] = serde_json::json!(1_i64 << 40);
        std::fs::write(dir.path().join("spec.json"), spec.to_string()).unwrap();
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("spec.json") && e.contains("vocab_size must be between 1 and"),
            "{e}"
        );
    }
}
