//! Trains a model checkpoint on token tensors, as the notebook does and
//! better when asked: class-weighted cross-entropy, a fused Adam with
//! `torch.optim.Adam`'s exact update, per-batch padding trimming, length
//! bucketing, a stratified validation split, early stopping and schedules.
//!
//! Overview:
//! - [`Train`] (`src/stages/train.rs`) is the `train` stage: its fields are
//!   the settings, its defaults the notebook's.
//! - [`train`] (`src/trainer.rs`) runs the loop as a list of steps and
//!   returns a [`Trained`] checkpoint and history.
//! - The policies it applies, each with its own tests: [`LrSchedule`]
//!   (`schedule.rs`), [`EarlyStopping`] (`early_stopping.rs`), [`BestEpoch`]
//!   (`best.rs`: which epoch's weights are returned), [`OptimizerPlan`]
//!   (`optimizer_plan.rs`: which Adam), [`StepRunner`] (`step.rs`: eager
//!   steps, or a CUDA graph recorded once and replayed), [`class_weights`].
//! - [`optim::Adam`] is the optimizer; on the CPU it updates the embedding
//!   rows a batch does not use when they are next read (the same update).
//! - [`sampler`]: each epoch's batches.

mod best;
mod class_weights;
mod early_stopping;
mod error;
pub mod optim;
mod optimizer_plan;
pub mod sampler;
mod schedule;
mod stages;
mod step;
mod trainer;

pub use best::{BestEpoch, Monitor, Validation};
pub use class_weights::{class_weights, ClassWeighting};
pub use early_stopping::EarlyStopping;
pub use error::TrainError;
pub use optimizer_plan::{OptimizerPlan, PlannedOptimizer};
pub use schedule::{LrSchedule, Schedule, SmallDataLr};
pub use stages::{Train, MAX_BATCH_SIZE, MAX_EPOCHS, MAX_REFERENCE_STEPS};
pub use step::{may_record, StepRunner};
pub use trainer::{train, EpochMetrics, Progress, Trained};
