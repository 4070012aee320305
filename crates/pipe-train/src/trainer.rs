//! The training loop. Mechanism only: the config decides, the loop carries out.

use std::time::Instant;

use pipe_eval::Confusion;
use pipe_model::{Checkpoint, Classifier};
use pipe_tensor::cuda_graph::CudaGraph;
use pipe_tensor::TokenTensors;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::optim::{Adam, AdamConfig};
use crate::sampler::{plan_epoch, stratified_split, Rng};

/// How the loss weighs each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeighting {
    /// total / count per class, a zero count counted as 1 (the notebook).
    #[default]
    InverseFrequency,
    /// sqrt of the above: a milder correction.
    SqrtInverseFrequency,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Constant,
    /// Linear warm-up over `warmup_epochs`, then cosine decay to zero.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    #[default]
    MacroF1,
    Accuracy,
    Loss,
}

/// Training settings; defaults are the notebook's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
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

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 15,
            batch_size: 32,
            lr: 1e-3,
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

impl TrainConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err("epochs, batch_size and eval_batch_size must be positive".into());
        }
        // Adam's lr is a step size in the weights' own units: past 1 every
        // step overshoots, and 1e30 turns every loss into NaN.
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return Err(format!("lr must be in (0, 1], got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.betas.0) || !(0.0..1.0).contains(&self.betas.1) {
            return Err(format!("betas must each be in [0, 1), got ({}, {})", self.betas.0, self.betas.1));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(format!("eps must be positive and finite, got {}", self.eps));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(format!("weight_decay must be zero or positive, got {}", self.weight_decay));
        }
        if let Some(clip) = self.grad_clip {
            if !(clip > 0.0 && clip.is_finite()) {
                return Err(format!("grad_clip must be positive and finite, got {clip}"));
            }
        }
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs.is_finite()) {
            return Err(format!("warmup_epochs must be zero or positive, got {}", self.warmup_epochs));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(format!("validation_fraction must be in [0, 1), got {}", self.validation_fraction));
        }
        if self.patience.is_some() && self.validation_fraction == 0.0 {
            return Err("patience needs a validation split: set validation_fraction".into());
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!("label_smoothing must be in [0, 1), got {}", self.label_smoothing));
        }
        Ok(())
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean batch loss (the notebook's number).
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub val_macro_f1: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
}

/// What training returns.
pub struct Trained {
    pub checkpoint: Checkpoint,
    pub history: Vec<EpochMetrics>,
    /// The epoch whose weights were returned.
    pub best_epoch: usize,
    pub train_rows: usize,
    pub validation_rows: usize,
    /// Whether full batches replayed a recorded CUDA graph (`cuda_graphs`).
    pub cuda_graph: bool,
}

/// Progress callback: (batches done, batches total, message). Returning
/// `Break(reason)` stops training, which then fails with that reason (a
/// caller's time budget, for example).
pub type Progress<'a> = dyn FnMut(u64, u64, &str) -> std::ops::ControlFlow<String> + 'a;

/// The notebook's class weights: total / bincount(y, minlength = classes), zeros as 1.
pub fn class_weights(labels: &[i64], classes: usize, weighting: ClassWeighting) -> Vec<f32> {
    let mut counts = vec![0u64; classes];
    for &y in labels {
        counts[y as usize] += 1;
    }
    let total = labels.len() as f64;
    counts
        .iter()
        .map(|&c| {
            let w = total / c.max(1) as f64;
            match weighting {
                ClassWeighting::InverseFrequency => w as f32,
                ClassWeighting::SqrtInverseFrequency => w.sqrt() as f32,
                ClassWeighting::None => 1.0,
            }
        })
        .collect()
}

/// Trains `initial` on `data` and returns the trained checkpoint with its history.
pub fn train(
    initial: &Checkpoint,
    data: &TokenTensors,
    config: &TrainConfig,
    device: Device,
    seed: u64,
    progress: &mut Progress,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<Trained, String> {
    config.validate()?;
    let labels_tensor = data.labels.as_ref().ok_or("the training tensors have no labels: wire `y` into their to_tensors stage")?;
    let labels: Vec<i64> = Vec::<i64>::try_from(&labels_tensor.to_device(Device::Cpu)).map_err(|e| e.to_string())?;
    let lengths: Vec<i64> = Vec::<i64>::try_from(&data.lengths.to_device(Device::Cpu)).map_err(|e| e.to_string())?;
    let classes = initial.spec.num_classes as usize;
    if let Some(&bad) = labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(format!("label {bad} is outside the model's {classes} classes"));
    }

    pipe_model::check_token_ids(&initial.spec, &data.ids)?;
    let mut rng = Rng::new(seed);
    tch::manual_seed(seed.wrapping_add(1) as i64);
    let (train_rows, val_rows) = stratified_split(&labels, config.validation_fraction, &mut rng);
    if train_rows.is_empty() {
        return Err("no training rows".into());
    }
    // The whole training set goes to the device once; batches are gathered there.
    let on_device = data.to_device(device);
    let train_labels: Vec<i64> = train_rows.iter().map(|&i| labels[i]).collect();
    let weights = Tensor::from_slice(&class_weights(&train_labels, classes, config.class_weights)).to_device(device);

    let (vs, mut model) = initial.build(device)?;
    let adam = AdamConfig { lr: config.lr, beta1: config.betas.0, beta2: config.betas.1, eps: config.eps, weight_decay: config.weight_decay };
    // The model's order, not the store's (a hash map): a flat optimizer
    // buffer then keeps the recurrent weights where cuDNN reads them in place.
    let params: Vec<Tensor> = model.parameters().into_iter().filter(Tensor::requires_grad).collect();
    if params.len() != vs.trainable_variables().len() {
        return Err(format!("the model lists {} trainable parameters, its store {}", params.len(), vs.trainable_variables().len()));
    }
    // Which parameter is the embedding table whose idle rows wait, if any.
    let deferred_table = (!initial.spec.sparse_embedding && config.defer_idle_embedding_rows && device == Device::Cpu && config.grad_clip.is_none())
        .then(|| params.iter().position(|p| p.data_ptr() == model.embedding_weight().data_ptr()))
        .flatten();
    let mut optimizer = if initial.spec.sparse_embedding {
        if config.grad_clip.is_some() || config.weight_decay != 0.0 {
            return Err("sparse embeddings support neither grad_clip nor weight_decay (as torch.optim.SparseAdam)".into());
        }
        Adam::per_tensor(params, adam)
    } else if let Some(table) = deferred_table {
        let mut optimizer = Adam::per_tensor(params, adam);
        optimizer.defer_idle_rows(table)?;
        model.set_sparse_embedding_gradient(true);
        optimizer
    } else {
        Adam::new(params, adam)
    };

    let mut recording = Recording::Off;
    if device.is_cuda() && config.cuda_graphs && !config.trim_padding && !initial.spec.sparse_embedding {
        match optimizer.read_step_scalars_on_device().and_then(|()| CudaGraph::new(device).map_err(|e| e.to_string())) {
            Ok(graph) => recording = Recording::WarmingUp { graph, steps: 0 },
            Err(e) => tracing::warn!("training without a CUDA graph: {e}"),
        }
    }
    // Accumulated on the device and read once per epoch: no host sync per
    // step. The same tensors for the whole run: a recorded step adds into them.
    let totals = EpochTotals::new(device);
    let step_inputs = StepInputs { model: &model, data: &on_device, weights: &weights, config, deferred_table, totals: &totals };

    let steps_per_epoch = train_rows.len().div_ceil(config.batch_size);
    let total_steps = (steps_per_epoch * config.epochs) as u64;
    let warmup_steps = (config.warmup_epochs * steps_per_epoch as f64).round() as u64;
    let mut step: u64 = 0;
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Checkpoint)> = None;
    let mut since_best = 0;

    for epoch in 1..=config.epochs {
        let start = Instant::now();
        let plan = plan_epoch(&train_rows, &lengths, config.batch_size, config.bucketing, &mut rng);
        totals.reset();
        let mut lr = config.lr;
        // Host-side time in forward, backward and the optimizer (CPU: where the
        // time goes; GPU: launch cost only, kernels run asynchronously).
        let mut timing = [0.0f64; 3];
        // The epoch's row order goes to the device in one copy: a copy from
        // pageable host memory per batch would synchronise the GPU each step.
        let order: Vec<i64> = plan.iter().flat_map(|(rows, _)| rows.iter().copied()).collect();
        let order = Tensor::from_slice(&order).to_device(device);
        let mut offset = 0;
        for (b, (rows, longest)) in plan.iter().enumerate() {
            lr = learning_rate(config, step, warmup_steps, total_steps);
            optimizer.set_lr(lr);
            let index = order.narrow(0, offset, rows.len() as i64);
            offset += rows.len() as i64;
            let longest = config.trim_padding.then_some(*longest);
            let full_batch = rows.len() == config.batch_size;
            recording = match recording {
                Recording::Ready { graph, index: recorded_index } if full_batch => {
                    optimizer.begin_step();
                    tch::no_grad(|| recorded_index.shallow_clone().copy_(&index));
                    graph.replay().map_err(|e| e.to_string())?;
                    Recording::Ready { graph, index: recorded_index }
                }
                Recording::WarmingUp { mut graph, steps } if full_batch => {
                    graph.warm_up(|| step_inputs.run(&mut optimizer, &index, longest, false, &mut timing)).map_err(|e| e.to_string())??;
                    if steps + 1 < GRAPH_WARM_UP_STEPS {
                        Recording::WarmingUp { graph, steps: steps + 1 }
                    } else {
                        // Replays read their batch's rows from this tensor.
                        let recorded_index = index.copy();
                        match graph.capture(|| step_inputs.run(&mut optimizer, &recorded_index, longest, true, &mut [0.0; 3])) {
                            Ok(Err(e)) => return Err(e),
                            Ok(Ok(())) => {
                                tracing::info!("training step recorded as a CUDA graph");
                                Recording::Ready { graph, index: recorded_index }
                            }
                            Err(e) => {
                                tracing::warn!("training without a CUDA graph: {e}");
                                Recording::Off
                            }
                        }
                    }
                }
                other => {
                    step_inputs.run(&mut optimizer, &index, longest, false, &mut timing)?;
                    other
                }
            };
            step += 1;
            if b % 20 == 0 || b + 1 == plan.len() {
                let done = ((epoch - 1) * steps_per_epoch + b + 1) as u64;
                if let std::ops::ControlFlow::Break(reason) = progress(done, total_steps, &format!("epoch {epoch}/{}", config.epochs)) {
                    return Err(reason);
                }
            }
        }
        // Validation and checkpoints read the whole embedding table.
        let t_catch_up = Instant::now();
        optimizer.catch_up();
        timing[2] += t_catch_up.elapsed().as_secs_f64();
        tracing::debug!(epoch, forward = timing[0], backward = timing[1], optimizer = timing[2], "training time split (s)");
        if let Some(batch) = totals.first_non_finite_batch() {
            return Err(format!(
                "epoch {epoch}, batch {} of {}: the loss is not finite (NaN or infinite), so training stopped; \
                 a smaller lr (now {lr}) or grad_clip usually helps",
                batch + 1,
                plan.len()
            ));
        }
        let loss = totals.loss_sum.double_value(&[]) / plan.len() as f64;
        let accuracy = totals.correct.int64_value(&[]) as f64 / train_rows.len() as f64;
        let validation = if val_rows.is_empty() { None } else { Some(evaluate(&model, &on_device, &val_rows, &lengths, &weights, config)) };
        let metrics = EpochMetrics {
            epoch,
            loss,
            accuracy,
            val_loss: validation.map(|v| v.0),
            val_accuracy: validation.map(|v| v.1),
            val_macro_f1: validation.map(|v| v.2),
            lr,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&metrics);
        history.push(metrics);

        if let Some((val_loss, val_acc, val_f1)) = validation {
            let score = match config.monitor {
                Monitor::MacroF1 => val_f1,
                Monitor::Accuracy => val_acc,
                Monitor::Loss => -val_loss,
            };
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, epoch, Checkpoint::from_var_store(&initial.spec, &vs)));
                since_best = 0;
            } else {
                since_best += 1;
                if config.patience.is_some_and(|p| since_best >= p) {
                    break;
                }
            }
        }
    }
    let last_epoch = history.len();
    let (checkpoint, best_epoch) = match best {
        Some((_, epoch, checkpoint)) if config.restore_best => (checkpoint, epoch),
        _ => (Checkpoint::from_var_store(&initial.spec, &vs), last_epoch),
    };
    let cuda_graph = matches!(recording, Recording::Ready { .. });
    Ok(Trained { checkpoint, history, best_epoch, train_rows: train_rows.len(), validation_rows: val_rows.len(), cuda_graph })
}

/// Eager steps on the graph's stream before recording, as PyTorch advises:
/// what a stream sets up on first use is then not met while recording.
const GRAPH_WARM_UP_STEPS: usize = 3;

/// Where recording the training step as a CUDA graph stands.
enum Recording {
    Off,
    WarmingUp {
        graph: CudaGraph,
        steps: usize,
    },
    /// Recorded: each full batch copies its row indices into `index`, then
    /// replays.
    Ready {
        graph: CudaGraph,
        index: Tensor,
    },
}

/// The epoch's running loss sum and correct count, on the device.
struct EpochTotals {
    loss_sum: Tensor,
    correct: Tensor,
    /// Steps run this epoch, and the first whose loss was not finite (-1: none).
    steps: Tensor,
    first_bad: Tensor,
}

/// What every training step reads, fixed for the whole run.
struct StepInputs<'a> {
    model: &'a Classifier,
    data: &'a TokenTensors,
    weights: &'a Tensor,
    config: &'a TrainConfig,
    deferred_table: Option<usize>,
    totals: &'a EpochTotals,
}

impl StepInputs<'_> {
    /// One training step on the rows `index` names: forward, loss,
    /// backward, update, totals. `recording`: the kernels are being
    /// recorded, so the optimizer's host part (`begin_step`) is left to
    /// each replay.
    fn run(&self, optimizer: &mut Adam, index: &Tensor, longest: Option<i64>, recording: bool, timing: &mut [f64; 3]) -> Result<(), String> {
        let (ids, batch_lengths) = self.data.select_rows(index, longest);
        let targets = self.data.labels.as_ref().expect("checked by train").index_select(0, index);
        let t_catch_up = Instant::now();
        if let Some(table) = self.deferred_table {
            optimizer.catch_up_rows(table, &ids);
        }
        let t0 = Instant::now();
        let logits = self.model.forward_t(&ids, &batch_lengths, self.data.padding, true);
        let loss = logits.cross_entropy_loss(&targets, Some(self.weights), Reduction::Mean, -100, self.config.label_smoothing);
        let t1 = Instant::now();
        let grads = Tensor::run_backward(&[&loss], optimizer.params(), false, false);
        let t2 = Instant::now();
        if !recording {
            optimizer.begin_step();
        }
        optimizer.apply(grads, self.config.grad_clip).map_err(|e| e.to_string())?;
        timing[0] += (t1 - t0).as_secs_f64();
        timing[1] += (t2 - t1).as_secs_f64();
        timing[2] += t2.elapsed().as_secs_f64() + (t0 - t_catch_up).as_secs_f64();
        tch::no_grad(|| {
            let _ = self.totals.loss_sum.shallow_clone().g_add_(&loss.detach());
            let _ = self.totals.correct.shallow_clone().g_add_(&logits.argmax(1, false).eq_tensor(&targets).sum(Kind::Int64));
            // The epoch's first batch whose loss is not finite, kept on the
            // device: found without a host sync per step.
            let first_bad = &self.totals.first_bad;
            let newly_bad = loss.detach().isfinite().logical_not().logical_and(&first_bad.lt(0));
            first_bad.shallow_clone().copy_(&self.totals.steps.where_self(&newly_bad, first_bad));
            let _ = self.totals.steps.shallow_clone().g_add_scalar_(1);
        });
        Ok(())
    }
}

impl EpochTotals {
    fn new(device: Device) -> EpochTotals {
        let zero = |kind| Tensor::zeros([], (kind, device));
        EpochTotals { loss_sum: zero(Kind::Float), correct: zero(Kind::Int64), steps: zero(Kind::Int64), first_bad: zero(Kind::Int64) - 1 }
    }

    fn reset(&self) {
        tch::no_grad(|| {
            let _ = self.loss_sum.shallow_clone().zero_();
            let _ = self.correct.shallow_clone().zero_();
            let _ = self.steps.shallow_clone().zero_();
            let _ = self.first_bad.shallow_clone().fill_(-1);
        });
    }

    /// The first batch (0-based) of the epoch whose loss was not finite.
    fn first_non_finite_batch(&self) -> Option<usize> {
        usize::try_from(self.first_bad.int64_value(&[])).ok()
    }
}

fn learning_rate(config: &TrainConfig, step: u64, warmup: u64, total: u64) -> f64 {
    match config.schedule {
        Schedule::Constant => config.lr,
        Schedule::Cosine => {
            if step < warmup {
                config.lr * (step + 1) as f64 / warmup as f64
            } else {
                let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
                config.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Validation loss (weighted like training), accuracy and macro-F1.
fn evaluate(model: &Classifier, data: &TokenTensors, rows: &[usize], lengths: &[i64], weights: &Tensor, config: &TrainConfig) -> (f64, f64, f64) {
    tch::no_grad(|| {
        let labels = data.labels.as_ref().expect("validated");
        let mut predictions = Vec::with_capacity(rows.len());
        let mut truth = Vec::with_capacity(rows.len());
        let mut loss_sum = 0.0;
        let mut weight_sum = 0.0;
        let mut sorted = rows.to_vec();
        sorted.sort_by_key(|&i| lengths[i]);
        for chunk in sorted.chunks(config.eval_batch_size) {
            let index = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(data.ids.device());
            let longest = chunk.iter().map(|&i| lengths[i]).max().unwrap_or(1);
            let (ids, batch_lengths) = data.select_rows(&index, config.trim_padding.then_some(longest));
            let targets = labels.index_select(0, &index);
            let logits = model.forward_t(&ids, &batch_lengths, data.padding, false);
            let w = weights.index_select(0, &targets);
            let losses = logits.cross_entropy_loss(&targets, Some(weights), Reduction::None, -100, 0.0);
            loss_sum += losses.sum(Kind::Double).double_value(&[]);
            weight_sum += w.sum(Kind::Double).double_value(&[]);
            predictions.extend(Vec::<i64>::try_from(&logits.argmax(1, false).to_device(Device::Cpu)).expect("int64"));
            truth.extend(Vec::<i64>::try_from(&targets.to_device(Device::Cpu)).expect("int64"));
        }
        let classes = weights.size()[0] as usize;
        let confusion = Confusion::new(&truth, &predictions, classes);
        (loss_sum / weight_sum.max(f64::MIN_POSITIVE), confusion.accuracy(), confusion.macro_f1())
    })
}
