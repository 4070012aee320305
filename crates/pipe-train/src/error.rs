//! Why training failed.

use pipe_model::ModelError;
use pipe_runtime::cuda_graph::CudaGraphError;

use crate::optim::AdamError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting out of range (what [`crate::Train::validate`] refuses).
    #[error(transparent)]
    Settings(#[from] pipe_core::InvalidSetting),
    #[error("the training tensors have no labels: wire `y` into their to_tensors stage")]
    NoLabels,
    #[error("label {label} is outside the model's {classes} classes")]
    LabelOutOfRange { label: i64, classes: usize },
    #[error("no training rows")]
    NoTrainingRows,
    /// The model could not be built from its checkpoint, or the data does not fit it.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the model lists {model} trainable parameters, its store {store}")]
    ParameterMismatch { model: usize, store: usize },
    #[error(
        "sparse embeddings support neither grad_clip nor weight_decay (as torch.optim.SparseAdam)"
    )]
    SparseWithClipOrDecay,
    #[error(transparent)]
    Optimizer(#[from] AdamError),
    #[error(transparent)]
    CudaGraph(#[from] CudaGraphError),
    #[error(
        "epoch {epoch}, batch {batch} of {batches}: the loss is not finite (NaN or infinite), so training stopped; \
         a smaller lr (now {lr}) or grad_clip usually helps"
    )]
    NonFiniteLoss {
        epoch: usize,
        batch: usize,
        batches: usize,
        lr: f64,
    },
    /// The progress callback asked to stop (a caller's time budget, say).
    #[error("{0}")]
    Stopped(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
