//! One training step (forward, loss, backward, update), and how steps run:
//! eagerly, or on a GPU by replaying a CUDA graph recorded once.

use std::time::Instant;

use pipe_model::Classifier;
use pipe_runtime::cuda_graph::CudaGraph;
use pipe_tensor::TokenTensors;
use tch::{Device, Kind, Reduction, Tensor};

use crate::optim::Adam;
use crate::TrainError;

/// What every training step reads, fixed for the whole run.
pub struct Step<'a> {
    pub model: &'a Classifier,
    /// The training set, on the device; batches are gathered there.
    pub data: &'a TokenTensors,
    /// The loss's class weights.
    pub weights: &'a Tensor,
    pub label_smoothing: f64,
    pub grad_clip: Option<f64>,
    /// The embedding table whose idle rows the optimizer defers, if any.
    pub deferred_table: Option<usize>,
    pub totals: &'a EpochTotals,
}

/// Host-side seconds in forward, backward and the optimizer (CPU: where
/// the time goes; GPU: launch cost only, kernels run asynchronously).
pub type Timing = [f64; 3];

impl Step<'_> {
    /// One step on the rows `index` names, cut to `longest` tokens when
    /// trimming. `recording`: the kernels are being recorded, so the
    /// optimizer's host part (`begin_step`) is left to each replay.
    pub fn run(
        &self,
        optimizer: &mut Adam,
        index: &Tensor,
        longest: Option<i64>,
        recording: bool,
        timing: &mut Timing,
    ) -> Result<(), TrainError> {
        let (ids, batch_lengths) = self.data.select_rows(index, longest);
        let targets = self
            .data
            .labels
            .as_ref()
            .ok_or(TrainError::NoLabels)?
            .index_select(0, index);
        let t_catch_up = Instant::now();
        if let Some(table) = self.deferred_table {
            optimizer.catch_up_rows(table, &ids);
        }
        let t0 = Instant::now();
        let logits = self
            .model
            .forward_t(&ids, &batch_lengths, self.data.padding, true);
        let loss = logits.cross_entropy_loss(
            &targets,
            Some(self.weights),
            Reduction::Mean,
            -100,
            self.label_smoothing,
        );
        let t1 = Instant::now();
        let grads = Tensor::run_backward(&[&loss], optimizer.params(), false, false);
        let t2 = Instant::now();
        if !recording {
            optimizer.begin_step();
        }
        optimizer.apply(grads, self.grad_clip)?;
        timing[0] += (t1 - t0).as_secs_f64();
        timing[1] += (t2 - t1).as_secs_f64();
        timing[2] += t2.elapsed().as_secs_f64() + (t0 - t_catch_up).as_secs_f64();
        self.totals.add(&loss, &logits, &targets);
        Ok(())
    }
}

/// The epoch's running loss sum and correct count, on the device: read
/// once per epoch, so no step waits for the host. The same tensors for the
/// whole run, because a recorded step adds into them.
pub struct EpochTotals {
    loss_sum: Tensor,
    correct: Tensor,
    /// Steps run this epoch, and the first whose loss was not finite (-1: none).
    steps: Tensor,
    first_bad: Tensor,
}

impl EpochTotals {
    pub fn new(device: Device) -> EpochTotals {
        let zero = |kind| Tensor::zeros([], (kind, device));
        EpochTotals {
            loss_sum: zero(Kind::Float),
            correct: zero(Kind::Int64),
            steps: zero(Kind::Int64),
            first_bad: zero(Kind::Int64) - 1,
        }
    }

    pub fn reset(&self) {
        tch::no_grad(|| {
            let _ = self.loss_sum.shallow_clone().zero_();
            let _ = self.correct.shallow_clone().zero_();
            let _ = self.steps.shallow_clone().zero_();
            let _ = self.first_bad.shallow_clone().fill_(-1);
        });
    }

    fn add(&self, loss: &Tensor, logits: &Tensor, targets: &Tensor) {
        tch::no_grad(|| {
            let _ = self.loss_sum.shallow_clone().g_add_(&loss.detach());
            let _ = self
                .correct
                .shallow_clone()
                .g_add_(&logits.argmax(1, false).eq_tensor(targets).sum(Kind::Int64));
            // The epoch's first batch whose loss is not finite, kept on the
            // device: found without a host sync per step.
            let newly_bad = loss
                .detach()
                .isfinite()
                .logical_not()
                .logical_and(&self.first_bad.lt(0));
            self.first_bad
                .shallow_clone()
                .copy_(&self.steps.where_self(&newly_bad, &self.first_bad));
            let _ = self.steps.shallow_clone().g_add_scalar_(1);
        });
    }

    /// The sum of the epoch's batch losses.
    pub fn loss_sum(&self) -> f64 {
        self.loss_sum.double_value(&[])
    }

    /// How many training rows the model classified right this epoch.
    pub fn correct(&self) -> i64 {
        self.correct.int64_value(&[])
    }

    /// The first batch (0-based) of the epoch whose loss was not finite.
    pub fn first_non_finite_batch(&self) -> Option<usize> {
        usize::try_from(self.first_bad.int64_value(&[])).ok()
    }
}

/// Eager steps on the graph's stream before recording, as PyTorch advises:
/// what a stream sets up on first use is then not met while recording.
const GRAPH_WARM_UP_STEPS: usize = 3;

/// Runs the steps: eagerly, or (a GPU, fixed shapes) warms up, records the
/// step once as a CUDA graph and replays it for every full batch.
pub enum StepRunner {
    Eager,
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

/// Whether the step may be recorded: a GPU, graphs on, and fixed shapes
/// (no trimming; sparse embedding gradients change shape every batch).
pub fn may_record(
    device: Device,
    cuda_graphs: bool,
    trim_padding: bool,
    sparse_embedding: bool,
) -> bool {
    device.is_cuda() && cuda_graphs && !trim_padding && !sparse_embedding
}

impl StepRunner {
    /// A runner that will record the step when `record`, else eager; a graph
    /// that cannot be set up leaves it eager, with a warning.
    pub fn new(record: bool, device: Device, optimizer: &mut Adam) -> StepRunner {
        if !record {
            return StepRunner::Eager;
        }
        match optimizer
            .read_step_scalars_on_device()
            .map_err(TrainError::from)
            .and_then(|()| Ok(CudaGraph::new(device)?))
        {
            Ok(graph) => StepRunner::WarmingUp { graph, steps: 0 },
            Err(e) => {
                tracing::warn!("training without a CUDA graph: {e}");
                StepRunner::Eager
            }
        }
    }

    /// Runs one step on the rows `index` names. Only full batches (the
    /// recorded shape) replay; a last, smaller batch runs eagerly.
    pub fn run(
        &mut self,
        step: &Step,
        optimizer: &mut Adam,
        index: &Tensor,
        longest: Option<i64>,
        full_batch: bool,
        timing: &mut Timing,
    ) -> Result<(), TrainError> {
        *self = match std::mem::replace(self, StepRunner::Eager) {
            StepRunner::Ready {
                graph,
                index: recorded_index,
            } if full_batch => {
                optimizer.begin_step();
                tch::no_grad(|| recorded_index.shallow_clone().copy_(index));
                graph.replay()?;
                StepRunner::Ready {
                    graph,
                    index: recorded_index,
                }
            }
            StepRunner::WarmingUp { graph, steps } if full_batch => {
                graph.warm_up(|| step.run(optimizer, index, longest, false, timing))??;
                if steps + 1 < GRAPH_WARM_UP_STEPS {
                    StepRunner::WarmingUp {
                        graph,
                        steps: steps + 1,
                    }
                } else {
                    Self::record(graph, step, optimizer, index, longest)?
                }
            }
            other => {
                step.run(optimizer, index, longest, false, timing)?;
                other
            }
        };
        Ok(())
    }

    /// Records the step; replays will read their batch's rows from a copy of `index`.
    fn record(
        mut graph: CudaGraph,
        step: &Step,
        optimizer: &mut Adam,
        index: &Tensor,
        longest: Option<i64>,
    ) -> Result<StepRunner, TrainError> {
        let recorded_index = index.copy();
        match graph.capture(|| step.run(optimizer, &recorded_index, longest, true, &mut [0.0; 3])) {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => {
                tracing::info!("training step recorded as a CUDA graph");
                Ok(StepRunner::Ready {
                    graph,
                    index: recorded_index,
                })
            }
            Err(e) => {
                tracing::warn!("training without a CUDA graph: {e}");
                Ok(StepRunner::Eager)
            }
        }
    }

    /// Whether full batches replay a recorded graph.
    pub fn replays(&self) -> bool {
        matches!(self, StepRunner::Ready { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fixed_shapes_on_a_gpu_are_recorded() {
        assert!(may_record(Device::Cuda(0), true, false, false));
        assert!(
            !may_record(Device::Cpu, true, false, false),
            "no graphs on the CPU"
        );
        assert!(
            !may_record(Device::Cuda(0), false, false, false),
            "switched off"
        );
        assert!(
            !may_record(Device::Cuda(0), true, true, false),
            "trimmed batches change shape"
        );
        assert!(
            !may_record(Device::Cuda(0), true, false, true),
            "sparse gradients change shape"
        );
    }

    #[test]
    fn a_cpu_runner_is_eager() {
        let mut adam = Adam::new(
            vec![Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true)],
            Default::default(),
        );
        assert!(!StepRunner::new(
            may_record(Device::Cpu, true, false, false),
            Device::Cpu,
            &mut adam
        )
        .replays());
    }
}
