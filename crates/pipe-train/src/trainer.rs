//! The training loop, as a list of steps: check the data, split it, build
//! the model and its optimizer, then per epoch train, validate, keep the
//! best weights and maybe stop. Each policy it applies is a small type of
//! its own ([`LrSchedule`], [`EarlyStopping`], [`BestEpoch`],
//! [`OptimizerPlan`], [`StepRunner`]).

use std::ops::ControlFlow;
use std::time::Instant;

use pipe_eval::Confusion;
use pipe_model::{Checkpoint, Classifier};
use pipe_tensor::TokenTensors;
use serde::Serialize;
use tch::{Device, Kind, Reduction, Tensor};

use crate::best::{BestEpoch, Validation};
use crate::early_stopping::EarlyStopping;
use crate::optim::{Adam, AdamConfig};
use crate::optimizer_plan::OptimizerPlan;
use crate::sampler::plan_epoch;
use crate::schedule::LrSchedule;
use crate::step::{may_record, EpochTotals, Step, StepRunner, Timing};
use crate::{class_weights, Train, TrainError};
use pipe_data::split::{stratified_split, Rng};

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
    /// The peak learning rate (`lr`, raised for small data by `lr_reference_steps`).
    pub lr: f64,
    pub steps_per_epoch: usize,
}

/// Progress callback: (batches done, batches total, message). Returning
/// `Break(reason)` stops training, which then fails with that reason (a
/// caller's time budget, for example).
pub type Progress<'a> = dyn FnMut(u64, u64, &str) -> ControlFlow<String> + 'a;

/// Trains `initial` on `data` and returns the trained checkpoint with its history.
pub fn train(
    initial: &Checkpoint,
    data: &TokenTensors,
    config: &Train,
    device: Device,
    seed: u64,
    progress: &mut Progress,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<Trained, TrainError> {
    // 1. Check the data against the model, and split it.
    config.validate()?;
    let (labels, lengths) = labels_and_lengths(initial, data)?;
    pipe_model::check_token_ids(&initial.spec, &data.ids)?;
    let mut rng = Rng::new(seed);
    tch::manual_seed(seed.wrapping_add(1) as i64);
    let (train_rows, val_rows) = stratified_split(&labels, config.validation_fraction, &mut rng);
    if train_rows.is_empty() {
        return Err(TrainError::NoTrainingRows);
    }
    // The whole training set goes to the device once; batches are gathered there.
    let on_device = data.to_device(device);
    let train_labels: Vec<i64> = train_rows.iter().map(|&i| labels[i]).collect();
    let weights = Tensor::from_slice(&class_weights(
        &train_labels,
        initial.spec.num_classes as usize,
        config.class_weights,
    ))
    .to_device(device);

    // 2. The model, its optimizer and how steps run.
    let (vs, mut model) = initial.build(device)?;
    let adam = AdamConfig {
        lr: config.lr,
        beta1: config.betas.0,
        beta2: config.betas.1,
        eps: config.eps,
        weight_decay: config.weight_decay,
    };
    let plan = OptimizerPlan::choose(
        initial.spec.sparse_embedding,
        config.defer_idle_embedding_rows,
        config.grad_clip,
        config.weight_decay,
        device,
    )?;
    let planned = plan.build(&mut model, &vs, adam)?;
    let mut optimizer = planned.adam;
    let record = may_record(
        device,
        config.cuda_graphs,
        config.trim_padding,
        initial.spec.sparse_embedding,
    );
    let mut runner = StepRunner::new(record, device, &mut optimizer);
    let totals = EpochTotals::new(device);
    let step = Step {
        model: &model,
        data: &on_device,
        weights: &weights,
        label_smoothing: config.label_smoothing,
        grad_clip: config.grad_clip,
        deferred_table: planned.deferred_table,
        totals: &totals,
    };
    let mut epochs = Epochs::new(config, &train_rows, &lengths, device, rng);

    // 3. Per epoch: train, validate, keep the best weights, maybe stop.
    let mut history = Vec::new();
    let mut best = BestEpoch::default();
    let mut stopping = EarlyStopping::new(config.patience);
    for epoch in 1..=config.epochs {
        let start = Instant::now();
        let trained = epochs.train_one(epoch, &step, &mut runner, &mut optimizer, progress)?;
        let validation = (!val_rows.is_empty())
            .then(|| validate(&model, &on_device, &val_rows, &weights, config));
        let metrics = EpochMetrics {
            epoch,
            loss: totals.loss_sum() / trained.batches as f64,
            accuracy: totals.correct() as f64 / train_rows.len() as f64,
            val_loss: validation.map(|v| v.loss),
            val_accuracy: validation.map(|v| v.accuracy),
            val_macro_f1: validation.map(|v| v.macro_f1),
            lr: trained.last_lr,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&metrics);
        history.push(metrics);
        if let Some(v) = validation {
            let improved = best.offer(config.monitor.score(&v), epoch, || {
                Checkpoint::from_var_store(&initial.spec, &vs)
            });
            if stopping.should_stop(improved) {
                break;
            }
        }
    }

    // 4. The best epoch's weights (or the last's).
    let (best_epoch, checkpoint) = match best.into_best() {
        Some(best) if config.restore_best => best,
        _ => (
            history.len(),
            Checkpoint::from_var_store(&initial.spec, &vs),
        ),
    };
    Ok(Trained {
        checkpoint,
        history,
        best_epoch,
        train_rows: train_rows.len(),
        validation_rows: val_rows.len(),
        cuda_graph: runner.replays(),
        lr: epochs.schedule.lr,
        steps_per_epoch: epochs.steps_per_epoch,
    })
}

/// The passes over the training rows: their batches, the learning rate
/// schedule, and the step count it follows.
struct Epochs<'a> {
    config: &'a Train,
    train_rows: &'a [usize],
    lengths: &'a [i64],
    device: Device,
    rng: Rng,
    schedule: LrSchedule,
    steps_per_epoch: usize,
    steps_done: u64,
}

/// What one epoch of training leaves for its metrics.
struct EpochTrained {
    batches: usize,
    /// The learning rate of the epoch's last step.
    last_lr: f64,
}

impl<'a> Epochs<'a> {
    fn new(
        config: &'a Train,
        train_rows: &'a [usize],
        lengths: &'a [i64],
        device: Device,
        rng: Rng,
    ) -> Epochs<'a> {
        let steps_per_epoch = train_rows.len().div_ceil(config.batch_size);
        let schedule = LrSchedule::new(
            config.schedule,
            config.lr_for(steps_per_epoch),
            config.warmup_epochs,
            steps_per_epoch,
            config.epochs,
        );
        Epochs {
            config,
            train_rows,
            lengths,
            device,
            rng,
            schedule,
            steps_per_epoch,
            steps_done: 0,
        }
    }

    /// One pass: plans the batches, runs a step per batch at the scheduled
    /// learning rate (the loss and accuracy add up in the step's totals),
    /// reports progress, then brings deferred embedding rows up to date.
    fn train_one(
        &mut self,
        epoch: usize,
        step: &Step,
        runner: &mut StepRunner,
        optimizer: &mut Adam,
        progress: &mut Progress,
    ) -> Result<EpochTrained, TrainError> {
        let config = self.config;
        let batches = plan_epoch(
            self.train_rows,
            self.lengths,
            config.batch_size,
            config.bucketing,
            &mut self.rng,
        );
        step.totals.reset();
        let mut lr = self.schedule.lr;
        let mut timing: Timing = [0.0; 3];
        // The epoch's row order goes to the device in one copy: a copy from
        // pageable host memory per batch would synchronise the GPU each step.
        let order: Vec<i64> = batches
            .iter()
            .flat_map(|(rows, _)| rows.iter().copied())
            .collect();
        let order = Tensor::from_slice(&order).to_device(self.device);
        let mut offset = 0;
        for (b, (rows, longest)) in batches.iter().enumerate() {
            lr = self.schedule.at(self.steps_done);
            optimizer.set_lr(lr);
            let index = order.narrow(0, offset, rows.len() as i64);
            offset += rows.len() as i64;
            runner.run(
                step,
                optimizer,
                &index,
                config.trim_padding.then_some(*longest),
                rows.len() == config.batch_size,
                &mut timing,
            )?;
            self.steps_done += 1;
            if b % 20 == 0 || b + 1 == batches.len() {
                let done = ((epoch - 1) * self.steps_per_epoch + b + 1) as u64;
                if let ControlFlow::Break(reason) = progress(
                    done,
                    self.schedule.total_steps,
                    &format!("epoch {epoch}/{}", config.epochs),
                ) {
                    return Err(TrainError::Stopped(reason));
                }
            }
        }
        // Validation and checkpoints read the whole embedding table.
        let t_catch_up = Instant::now();
        optimizer.catch_up();
        timing[2] += t_catch_up.elapsed().as_secs_f64();
        tracing::debug!(
            epoch,
            forward = timing[0],
            backward = timing[1],
            optimizer = timing[2],
            "training time split (s)"
        );
        if let Some(batch) = step.totals.first_non_finite_batch() {
            return Err(TrainError::NonFiniteLoss {
                epoch,
                batch: batch + 1,
                batches: batches.len(),
                lr,
            });
        }
        Ok(EpochTrained {
            batches: batches.len(),
            last_lr: lr,
        })
    }
}

/// The labels (each a class of the model) and row lengths, on the CPU.
fn labels_and_lengths(
    initial: &Checkpoint,
    data: &TokenTensors,
) -> Result<(Vec<i64>, Vec<i64>), TrainError> {
    let labels = data.labels.as_ref().ok_or(TrainError::NoLabels)?;
    let labels = Vec::<i64>::try_from(&labels.to_device(Device::Cpu))?;
    let lengths = Vec::<i64>::try_from(&data.lengths.to_device(Device::Cpu))?;
    let classes = initial.spec.num_classes as usize;
    if let Some(&label) = labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(TrainError::LabelOutOfRange { label, classes });
    }
    Ok((labels, lengths))
}

/// Validation loss (weighted like training), accuracy and macro-F1 on `rows`.
fn validate(
    model: &Classifier,
    data: &TokenTensors,
    rows: &[usize],
    weights: &Tensor,
    config: &Train,
) -> Validation {
    tch::no_grad(|| {
        let labels = data.labels.as_ref().expect("checked before training");
        let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let mut predictions = Vec::with_capacity(rows.len());
        let mut truth = Vec::with_capacity(rows.len());
        let (mut loss_sum, mut weight_sum) = (0.0, 0.0);
        for batch in
            data.length_sorted_batches(Some(&rows), config.eval_batch_size, config.trim_padding)
        {
            let targets = labels.index_select(0, &batch.index);
            let logits = model.forward_t(&batch.ids, &batch.lengths, data.padding, false);
            let losses =
                logits.cross_entropy_loss(&targets, Some(weights), Reduction::None, -100, 0.0);
            loss_sum += losses.sum(Kind::Double).double_value(&[]);
            weight_sum += weights
                .index_select(0, &targets)
                .sum(Kind::Double)
                .double_value(&[]);
            predictions.extend(
                Vec::<i64>::try_from(&logits.argmax(1, false).to_device(Device::Cpu))
                    .expect("int64"),
            );
            truth.extend(Vec::<i64>::try_from(&targets.to_device(Device::Cpu)).expect("int64"));
        }
        let confusion = Confusion::new(&truth, &predictions, weights.size()[0] as usize);
        Validation {
            loss: loss_sum / weight_sum.max(f64::MIN_POSITIVE),
            accuracy: confusion.accuracy(),
            macro_f1: confusion.macro_f1(),
        }
    })
}
