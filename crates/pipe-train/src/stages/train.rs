//! The `train` stage: a model checkpoint trained on token tensors.

use std::collections::BTreeMap;

use pipe_core::{
    stage, Artifacts, Files, InvalidSetting, JsonDoc, Port, PortOf, Stage, StageContext, StageError,
};
use pipe_model::Checkpoint;
use pipe_runtime::runtime;
use pipe_tensor::{PaddingSide, TokenTensors};
use serde::{Deserialize, Serialize};

use crate::{train, ClassWeighting, EpochMetrics, Monitor, Schedule, SmallDataLr, Trained};

/// The most epochs: 100,000. The notebook trains 15; past this a run is a
/// typo that would loop for months (and epochs × steps sizes the schedule).
pub const MAX_EPOCHS: usize = 100_000;

/// The largest batch, for training and for validation passes: 2^20 rows.
/// A batch's activations are rows × time × width floats, so a larger one is
/// gigabytes per layer, and `bucketing` windows are 50 batches.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// The largest `lr_reference_steps`: 2^30 optimizer steps an epoch, more
/// than any data set gives (a billion rows at batch 1). The rate rises by at
/// most 3x whatever the value.
pub const MAX_REFERENCE_STEPS: usize = 1 << 30;

/// The `train` stage: its settings; the defaults are the notebook's loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Train {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// The optimizer steps an epoch had where `lr` was tuned: with fewer
    /// (smaller data) the rate rises by sqrt(reference / steps), at most 3x
    /// ([`SmallDataLr`]); unset, `lr` is used as given.
    pub lr_reference_steps: Option<usize>,
    pub betas: (f64, f64),
    pub eps: f64,
    /// L2 penalty added to the gradient, as `torch.optim.Adam(weight_decay=…)`.
    pub weight_decay: f64,
    pub class_weights: ClassWeighting,
    pub label_smoothing: f64,
    /// Clip the global gradient norm to this value.
    pub grad_clip: Option<f64>,
    pub schedule: Schedule,
    pub warmup_epochs: f64,
    /// Cut each batch to its longest real sequence (exact for masked poolings
    /// and `last_valid`; changes what `last_step` reads on post-padded data).
    pub trim_padding: bool,
    /// Batches of similar lengths (in a shuffled batch order).
    pub bucketing: bool,
    /// Fraction of the training rows held out, stratified, for validation.
    pub validation_fraction: f64,
    /// Stop after this many epochs without improvement of `monitor`.
    pub patience: Option<usize>,
    pub monitor: Monitor,
    /// Return the best validation epoch's weights rather than the last.
    pub restore_best: bool,
    /// Batch size for validation passes.
    pub eval_batch_size: usize,
    /// On the CPU, with the dense (non-sparse) embedding update: update the
    /// embedding rows a batch does not use only when something next reads
    /// them. The same update, bit for bit, without a pass over the whole
    /// table every step; off (or `grad_clip` set) gives the eager pass.
    pub defer_idle_embedding_rows: bool,
    /// On a GPU, record the training step's kernels once as a CUDA graph and
    /// replay it for every full batch: the same kernels without the host's
    /// per-op launch cost, which bounds a small model's step there. Needs
    /// fixed shapes, so not with `trim_padding` or sparse embeddings (those
    /// run eagerly); a capture that fails falls back to eager steps.
    pub cuda_graphs: bool,
}

impl Default for Train {
    fn default() -> Self {
        Train {
            epochs: 15,
            batch_size: 32,
            lr: 1e-3,
            lr_reference_steps: None,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            class_weights: ClassWeighting::InverseFrequency,
            label_smoothing: 0.0,
            grad_clip: None,
            schedule: Schedule::Constant,
            warmup_epochs: 0.0,
            trim_padding: false,
            bucketing: false,
            validation_fraction: 0.0,
            patience: None,
            monitor: Monitor::MacroF1,
            restore_best: true,
            eval_batch_size: 512,
            defer_idle_embedding_rows: true,
            cuda_graphs: true,
        }
    }
}

impl Train {
    /// The peak learning rate for epochs of `steps_per_epoch` steps.
    pub fn lr_for(&self, steps_per_epoch: usize) -> f64 {
        match self.lr_reference_steps {
            Some(reference_steps) => {
                SmallDataLr { reference_steps }.scale(self.lr, steps_per_epoch)
            }
            None => self.lr,
        }
    }

    /// Checks every setting on its own (and `patience` against
    /// `validation_fraction`): when the pipeline is loaded, and again when
    /// training starts.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |setting: &str, problem: String| Err(InvalidSetting::new(setting, problem));
        let counts = [
            ("epochs", Some(self.epochs), MAX_EPOCHS),
            ("batch_size", Some(self.batch_size), MAX_BATCH_SIZE),
            (
                "eval_batch_size",
                Some(self.eval_batch_size),
                MAX_BATCH_SIZE,
            ),
            (
                "lr_reference_steps",
                self.lr_reference_steps,
                MAX_REFERENCE_STEPS,
            ),
            ("patience", self.patience, MAX_EPOCHS),
        ];
        for (name, n, max) in counts {
            if let Some(n) = n.filter(|n| !(1..=max).contains(n)) {
                return bad(name, format!("must be between 1 and {max}, got {n}"));
            }
        }
        // Adam's lr is a step size in the weights' own units: past 1 every
        // step overshoots, and 1e30 turns every loss into NaN.
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return bad("lr", format!("must be in (0, 1], got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.betas.0) || !(0.0..1.0).contains(&self.betas.1) {
            return bad(
                "betas",
                format!(
                    "must each be in [0, 1), got ({}, {})",
                    self.betas.0, self.betas.1
                ),
            );
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad(
                "eps",
                format!("must be positive and finite, got {}", self.eps),
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(
                "weight_decay",
                format!("must be zero or positive, got {}", self.weight_decay),
            );
        }
        if let Some(clip) = self.grad_clip {
            if !(clip > 0.0 && clip.is_finite()) {
                return bad(
                    "grad_clip",
                    format!("must be positive and finite, got {clip}"),
                );
            }
        }
        if !(0.0..=MAX_EPOCHS as f64).contains(&self.warmup_epochs) {
            return bad(
                "warmup_epochs",
                format!(
                    "must be between 0 and {MAX_EPOCHS}, got {}",
                    self.warmup_epochs
                ),
            );
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return bad(
                "validation_fraction",
                format!("must be in [0, 1), got {}", self.validation_fraction),
            );
        }
        if self.patience.is_some() && self.validation_fraction == 0.0 {
            return bad(
                "patience",
                "needs a validation split: set validation_fraction".into(),
            );
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "label_smoothing",
                format!("must be in [0, 1), got {}", self.label_smoothing),
            );
        }
        Ok(())
    }
}

impl Train {
    pub const MODEL: PortOf<Checkpoint> =
        PortOf::new("model", "the initialised (or pre-trained) model");
    pub const TRAIN: PortOf<TokenTensors> = PortOf::new("train", "labelled training rows");
    pub const MODEL_OUT: PortOf<Checkpoint> = PortOf::new(
        "model",
        "the trained model (best validation epoch when there is one)",
    );
    pub const METRICS: PortOf<JsonDoc> =
        PortOf::new("metrics", "per-epoch loss, accuracy and validation metrics");
    pub const REPORT: PortOf<Files> =
        PortOf::new("report", "metrics.json and the training curve (curve.svg)");
}

#[stage(
    kind = "train",
    summary = "train a model: class-weighted cross-entropy + Adam (the notebook's loop by default)"
)]
impl Stage for Train {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::MODEL.port(), Self::TRAIN.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![
            Self::MODEL_OUT.port(),
            Self::METRICS.port(),
            Self::REPORT.port(),
        ]
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        Train::validate(self)
    }
    fn code_version(&self) -> u32 {
        // 2: CPU dropout masks from pipe's own generator; fused lazy Adam.
        // 3: deferred idle embedding rows (the embedding gradient's repeats
        // are summed in another order: last-bit differences).
        3
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let initial = inputs.read(&Self::MODEL)?;
        let data = inputs.read(&Self::TRAIN)?;
        let device = runtime::device(ctx.device).map_err(StageError::other)?;
        warn_about_settings(initial, data, device, ctx);
        ctx.info(format!(
            "{} rows, {} epochs of batch {}, lr {}, on {} ({} torch threads; Adam's kernel: {})",
            data.rows(),
            self.epochs,
            self.batch_size,
            self.lr,
            ctx.device,
            tch::get_num_threads(),
            pipe_runtime::cpu::simd_level().name(),
        ));
        let mut progress = |done: u64, total: u64, message: &str| {
            ctx.progress(done, total, message);
            std::ops::ControlFlow::Continue(())
        };
        let mut on_epoch = |m: &EpochMetrics| {
            ctx.info(epoch_line(m, self.epochs));
            ctx.metric(serde_json::to_value(m).unwrap_or_default());
        };
        let trained = train(
            initial,
            data,
            self,
            device,
            ctx.seed,
            &mut progress,
            &mut on_epoch,
        )
        .map_err(StageError::other)?;
        if trained.lr != self.lr {
            ctx.info(format!(
                "lr {} was raised to {:.4} for small data: {} steps an epoch against lr_reference_steps {}",
                self.lr,
                trained.lr,
                trained.steps_per_epoch,
                self.lr_reference_steps.unwrap_or_default()
            ));
        }
        let metrics = report(&trained, initial, ctx.device);
        let files = BTreeMap::from([
            (
                "metrics.json".to_string(),
                serde_json::to_vec_pretty(&metrics).expect("json").to_vec(),
            ),
            (
                "curve.svg".to_string(),
                curve_svg(&trained.history, trained.best_epoch).into_bytes(),
            ),
        ]);
        let mut out = Artifacts::new();
        out.put(&Self::MODEL_OUT, trained.checkpoint)
            .put(&Self::METRICS, JsonDoc(metrics))
            .put(&Self::REPORT, Files { files });
        Ok(out)
    }
}

/// Settings that work but are probably not what the user wants here.
fn warn_about_settings(
    initial: &Checkpoint,
    data: &TokenTensors,
    device: tch::Device,
    ctx: &StageContext,
) {
    if data.padding == PaddingSide::Post && initial.spec.pooling == pipe_model::Pooling::LastStep {
        ctx.warn(
            "pooling `last_step` on post-padded rows reads the LSTM state after all the pads \
             (the notebook's behaviour); `pooling: last_valid` or `mean_max` reads the real tokens",
        );
    }
    if initial.spec.precision == pipe_model::Precision::Bfloat16 {
        if device.is_cuda() {
            ctx.warn("`precision: bfloat16` applies on the CPU; on CUDA the recurrent layer computes in float32");
        } else if !pipe_model::CpuFacts::of_this_machine().native_bfloat16() {
            ctx.warn(
                "this CPU has no native bfloat16 (AVX-512 BF16, or ONEDNN_MAX_CPU_ISA caps it): `precision: bfloat16` is emulated \
                 and about 10x slower than float32; `precision: auto` picks float32 here",
            );
        }
    }
}

/// The notebook's per-epoch line, with validation numbers when there are some.
fn epoch_line(m: &EpochMetrics, epochs: usize) -> String {
    let val = match (m.val_accuracy, m.val_macro_f1) {
        (Some(a), Some(f)) => format!(" — val acc {a:.4} — val macro-F1 {f:.4}"),
        _ => String::new(),
    };
    format!(
        "Epoch {}/{epochs} — loss: {:.4} — acc: {:.4}{val} ({:.1}s)",
        m.epoch, m.loss, m.accuracy, m.seconds
    )
}

/// `metrics.json`: the history, the best epoch and the machine it ran on.
fn report(trained: &Trained, initial: &Checkpoint, device: &str) -> serde_json::Value {
    serde_json::json!({
        "epochs": trained.history,
        "best_epoch": trained.best_epoch,
        "lr": trained.lr,
        "steps_per_epoch": trained.steps_per_epoch,
        "train_rows": trained.train_rows,
        "validation_rows": trained.validation_rows,
        "device": device,
        "cuda_graph": trained.cuda_graph,
        "precision": initial.spec.precision,
        "cpu": cpu_report(),
    })
}

/// The CPU facts behind machine-dependent choices, for the report.
fn cpu_report() -> serde_json::Value {
    let facts = pipe_model::CpuFacts::of_this_machine();
    serde_json::json!({
        "avx512_bf16": facts.avx512_bf16,
        "onednn_max_cpu_isa": facts.onednn_max_cpu_isa,
        "native_bfloat16": facts.native_bfloat16(),
        "model": pipe_runtime::cpu::model_name(),
        "torch_threads": tch::get_num_threads(),
        "threads_reason": pipe_runtime::runtime::thread_decision().map(|d| d.reason.clone()),
        "optimizer_simd": pipe_runtime::cpu::simd_level().name(),
    })
}

/// The training curves, drawn by `pipe_eval::plot` as `pipe report` draws them.
fn curve_svg(history: &[EpochMetrics], best_epoch: usize) -> String {
    let points: Vec<pipe_eval::plot::EpochPoint> = history
        .iter()
        .map(|m| pipe_eval::plot::EpochPoint {
            loss: Some(m.loss),
            accuracy: Some(m.accuracy),
            val_loss: m.val_loss,
            val_accuracy: m.val_accuracy,
            val_macro_f1: m.val_macro_f1,
            lr: Some(m.lr),
        })
        .collect();
    pipe_eval::plot::training_curves(&points, best_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: Train) -> InvalidSetting {
        config
            .validate()
            .expect_err("the setting passed validation")
    }

    #[test]
    fn every_count_is_bounded_at_load() {
        assert_eq!(Train::default().validate(), Ok(()));
        let between = |setting: &str, max: usize, got: usize| {
            InvalidSetting::new(setting, format!("must be between 1 and {max}, got {got}"))
        };
        let cases = [
            (
                Train {
                    epochs: MAX_EPOCHS + 1,
                    ..Train::default()
                },
                between("epochs", MAX_EPOCHS, MAX_EPOCHS + 1),
            ),
            (
                Train {
                    epochs: 100_000_000_000,
                    ..Train::default()
                },
                between("epochs", MAX_EPOCHS, 100_000_000_000),
            ),
            (
                Train {
                    epochs: 0,
                    ..Train::default()
                },
                between("epochs", MAX_EPOCHS, 0),
            ),
            (
                Train {
                    batch_size: MAX_BATCH_SIZE + 1,
                    ..Train::default()
                },
                between("batch_size", MAX_BATCH_SIZE, MAX_BATCH_SIZE + 1),
            ),
            (
                Train {
                    batch_size: 0,
                    ..Train::default()
                },
                between("batch_size", MAX_BATCH_SIZE, 0),
            ),
            (
                Train {
                    eval_batch_size: MAX_BATCH_SIZE + 1,
                    ..Train::default()
                },
                between("eval_batch_size", MAX_BATCH_SIZE, MAX_BATCH_SIZE + 1),
            ),
            (
                Train {
                    lr_reference_steps: Some(MAX_REFERENCE_STEPS + 1),
                    ..Train::default()
                },
                between(
                    "lr_reference_steps",
                    MAX_REFERENCE_STEPS,
                    MAX_REFERENCE_STEPS + 1,
                ),
            ),
            (
                Train {
                    lr_reference_steps: Some(0),
                    ..Train::default()
                },
                between("lr_reference_steps", MAX_REFERENCE_STEPS, 0),
            ),
            (
                Train {
                    patience: Some(MAX_EPOCHS + 1),
                    validation_fraction: 0.2,
                    ..Train::default()
                },
                between("patience", MAX_EPOCHS, MAX_EPOCHS + 1),
            ),
            (
                Train {
                    patience: Some(0),
                    validation_fraction: 0.2,
                    ..Train::default()
                },
                between("patience", MAX_EPOCHS, 0),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(refused(config), expected);
        }
        let at_the_bounds = Train {
            epochs: MAX_EPOCHS,
            batch_size: MAX_BATCH_SIZE,
            eval_batch_size: MAX_BATCH_SIZE,
            lr_reference_steps: Some(MAX_REFERENCE_STEPS),
            patience: Some(MAX_EPOCHS),
            validation_fraction: 0.2,
            warmup_epochs: MAX_EPOCHS as f64,
            ..Train::default()
        };
        assert_eq!(at_the_bounds.validate(), Ok(()));
    }

    #[test]
    fn warmup_epochs_are_bounded_like_epochs() {
        for bad in [
            MAX_EPOCHS as f64 + 1.0,
            1e300,
            f64::INFINITY,
            f64::NAN,
            -1.0,
        ] {
            let e = refused(Train {
                warmup_epochs: bad,
                ..Train::default()
            });
            assert_eq!(
                e,
                InvalidSetting::new(
                    "warmup_epochs",
                    format!("must be between 0 and {MAX_EPOCHS}, got {bad}")
                )
            );
        }
    }
}
