//! Trains a model checkpoint on token tensors, as the notebook does and
//! better when asked: class-weighted cross-entropy, a fused Adam with
//! `torch.optim.Adam`'s exact update, per-batch padding trimming, length
//! bucketing, a stratified validation split, early stopping and schedules.
//!
//! Overview:
//! - [`TrainConfig`] holds the settings (defaults: the notebook's) and is the
//!   `train` stage itself.
//! - [`train`] runs the loop and returns a [`Trained`] checkpoint and history;
//!   on a GPU it records the step once as a CUDA graph and replays it.
//! - [`optim::Adam`] is the optimizer; on the CPU it updates the embedding
//!   rows a batch does not use when they are next read (the same update);
//!   [`class_weights`] the notebook's weights.

pub mod optim;
pub mod sampler;
mod trainer;

use std::collections::BTreeMap;

use pipe_core::{register_stage, Artifacts, Files, JsonDoc, Port, Stage, StageContext, StageError};
use pipe_model::Checkpoint;
use pipe_tensor::{runtime, PaddingSide, TokenTensors};

pub use trainer::{class_weights, train, ClassWeighting, EpochMetrics, Monitor, Progress, Schedule, TrainConfig, Trained};

#[typetag::serde(name = "train")]
impl Stage for TrainConfig {
    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::new("model", "checkpoint", "the initialised (or pre-trained) model"),
            Port::new("train", "token_tensors", "labelled training rows"),
        ]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::new("model", "checkpoint", "the trained model (best validation epoch when there is one)"),
            Port::new("metrics", "json", "per-epoch loss, accuracy and validation metrics"),
            Port::new("report", "files", "metrics.json and the training curve (curve.svg)"),
        ]
    }
    fn validate(&self) -> Result<(), String> {
        TrainConfig::validate(self)
    }
    fn code_version(&self) -> u32 {
        // 2: CPU dropout masks from pipe's own generator; fused lazy Adam.
        // 3: deferred idle embedding rows (the embedding gradient's repeats
        // are summed in another order: last-bit differences).
        3
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let initial = inputs.get::<Checkpoint>("model")?;
        let data = inputs.get::<TokenTensors>("train")?;
        let device = runtime::device(ctx.device).map_err(StageError::invalid)?;
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
        ctx.info(format!(
            "{} rows, {} epochs of batch {}, lr {}, on {} ({} torch threads; Adam's kernel: {})",
            data.rows(),
            self.epochs,
            self.batch_size,
            self.lr,
            ctx.device,
            tch::get_num_threads(),
            pipe_tensor::cpu::simd_level().name(),
        ));
        let mut progress = |done: u64, total: u64, message: &str| {
            ctx.progress(done, total, message);
            std::ops::ControlFlow::Continue(())
        };
        let mut on_epoch = |m: &EpochMetrics| {
            let val = match (m.val_accuracy, m.val_macro_f1) {
                (Some(a), Some(f)) => format!(" — val acc {a:.4} — val macro-F1 {f:.4}"),
                _ => String::new(),
            };
            ctx.info(format!("Epoch {}/{} — loss: {:.4} — acc: {:.4}{val} ({:.1}s)", m.epoch, self.epochs, m.loss, m.accuracy, m.seconds));
            ctx.metric(serde_json::to_value(m).unwrap_or_default());
        };
        let trained = train(initial, data, self, device, ctx.seed, &mut progress, &mut on_epoch).map_err(StageError::invalid)?;
        let metrics = serde_json::json!({
            "epochs": trained.history,
            "best_epoch": trained.best_epoch,
            "train_rows": trained.train_rows,
            "validation_rows": trained.validation_rows,
            "device": ctx.device,
            "cuda_graph": trained.cuda_graph,
            "precision": initial.spec.precision,
            "cpu": cpu_report(),
        });
        let curve = curve_svg(&trained.history);
        let files = BTreeMap::from([
            ("metrics.json".to_string(), serde_json::to_vec_pretty(&metrics).expect("json").to_vec()),
            ("curve.svg".to_string(), curve.into_bytes()),
        ]);
        let mut out = Artifacts::new();
        out.insert("model", trained.checkpoint).insert("metrics", JsonDoc(metrics)).insert("report", Files { files });
        Ok(out)
    }
}
register_stage!(TrainConfig, "train", "train a model: class-weighted cross-entropy + Adam (the notebook's loop by default)");

/// The CPU facts behind machine-dependent choices, for the report.
fn cpu_report() -> serde_json::Value {
    let facts = pipe_model::CpuFacts::of_this_machine();
    serde_json::json!({
        "avx512_bf16": facts.avx512_bf16,
        "onednn_max_cpu_isa": facts.onednn_max_cpu_isa,
        "native_bfloat16": facts.native_bfloat16(),
        "model": pipe_tensor::cpu::model_name(),
        "torch_threads": tch::get_num_threads(),
        "threads_reason": pipe_tensor::runtime::thread_decision().map(|d| d.reason.clone()),
        "optimizer_simd": pipe_tensor::cpu::simd_level().name(),
    })
}

fn curve_svg(history: &[EpochMetrics]) -> String {
    let series = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<f64> { history.iter().map(|m| f(m).unwrap_or(f64::NAN)).collect() };
    let mut loss = vec![("train loss", series(&|m| Some(m.loss)))];
    let mut quality = vec![("train accuracy", series(&|m| Some(m.accuracy)))];
    if history.iter().any(|m| m.val_loss.is_some()) {
        loss.push(("validation loss", series(&|m| m.val_loss)));
        quality.push(("validation accuracy", series(&|m| m.val_accuracy)));
        quality.push(("validation macro-F1", series(&|m| m.val_macro_f1)));
    }
    pipe_eval::plot::line_chart("training", &[("loss", loss), ("accuracy / macro-F1", quality)])
}
