//! Why a model could not be built, loaded or fed.

/// What can go wrong between a spec, its weights and the token ids fed to it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A size or rate out of range ([`crate::ModelSpec::validate`]).
    #[error(transparent)]
    InvalidSpec(#[from] pipe_core::InvalidSetting),
    #[error("token id {0} is negative")]
    NegativeTokenId(i64),
    #[error(
        "token id {id} is beyond the model's {rows} embedding rows (data from another vocabulary, or an `ngrams` stage with more buckets than the model?)"
    )]
    TokenIdBeyondEmbedding { id: i64, rows: i64 },
    #[error("checkpoint has tensors {found:?}, the model expects {expected:?}")]
    TensorNames {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("checkpoint tensor `{0}` is not a parameter of this model")]
    UnknownTensor(String),
    #[error("`{name}` has shape {checkpoint:?} in the checkpoint, {model:?} in the model")]
    ShapeMismatch {
        name: String,
        checkpoint: Vec<i64>,
        model: Vec<i64>,
    },
}
