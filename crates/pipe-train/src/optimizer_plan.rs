//! Which Adam a run gets, decided from the model, the settings and the
//! device before any parameter is touched.

use pipe_model::Classifier;
use tch::{nn::VarStore, Device, Tensor};

use crate::optim::{Adam, AdamConfig};
use crate::TrainError;

/// How the parameters are updated. Every plan computes `torch.optim.Adam`'s
/// update (or `SparseAdam`'s, for sparse embeddings); they differ in cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerPlan {
    /// Sparse embedding gradients: the rows a batch uses are updated lazily,
    /// as `torch.optim.SparseAdam`; every other tensor densely.
    SparseEmbedding,
    /// A dense update whose embedding rows a batch does not use are updated
    /// only when something next reads them: the same numbers without a pass
    /// over the whole table each step (CPU, no gradient clipping).
    DeferredIdleRows,
    /// One flat buffer over every parameter, updated eagerly.
    Dense,
}

/// An optimizer built from a plan.
pub struct PlannedOptimizer {
    pub adam: Adam,
    /// The parameter (the embedding table) whose idle rows wait, if any.
    pub deferred_table: Option<usize>,
}

impl OptimizerPlan {
    /// The plan for a model with `sparse_embedding` trained on `device`.
    pub fn choose(
        sparse_embedding: bool,
        defer_idle_rows: bool,
        grad_clip: Option<f64>,
        weight_decay: f64,
        device: Device,
    ) -> Result<OptimizerPlan, TrainError> {
        if sparse_embedding {
            if grad_clip.is_some() || weight_decay != 0.0 {
                return Err(TrainError::SparseWithClipOrDecay);
            }
            return Ok(OptimizerPlan::SparseEmbedding);
        }
        Ok(
            if defer_idle_rows && device == Device::Cpu && grad_clip.is_none() {
                OptimizerPlan::DeferredIdleRows
            } else {
                OptimizerPlan::Dense
            },
        )
    }

    /// Adam over `model`'s trainable parameters, in the model's order (not
    /// the store's hash order: a flat buffer then keeps the recurrent
    /// weights where cuDNN reads them in place).
    pub fn build(
        self,
        model: &mut Classifier,
        vs: &VarStore,
        config: AdamConfig,
    ) -> Result<PlannedOptimizer, TrainError> {
        let params: Vec<Tensor> = model
            .parameters()
            .into_iter()
            .filter(Tensor::requires_grad)
            .collect();
        let store = vs.trainable_variables().len();
        if params.len() != store {
            return Err(TrainError::ParameterMismatch {
                model: params.len(),
                store,
            });
        }
        let table = params
            .iter()
            .position(|p| p.data_ptr() == model.embedding_weight().data_ptr());
        Ok(match (self, table) {
            (OptimizerPlan::SparseEmbedding, _) => PlannedOptimizer {
                adam: Adam::per_tensor(params, config),
                deferred_table: None,
            },
            (OptimizerPlan::DeferredIdleRows, Some(table)) => {
                let mut adam = Adam::per_tensor(params, config);
                adam.defer_idle_rows(table)?;
                model.set_sparse_embedding_gradient(true);
                PlannedOptimizer {
                    adam,
                    deferred_table: Some(table),
                }
            }
            // No embedding table found among the parameters: nothing to defer.
            (OptimizerPlan::DeferredIdleRows, None) | (OptimizerPlan::Dense, _) => {
                PlannedOptimizer {
                    adam: Adam::new(params, config),
                    deferred_table: None,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_embeddings_get_lazy_adam_and_refuse_clip_and_decay() {
        assert_eq!(
            OptimizerPlan::choose(true, true, None, 0.0, Device::Cpu).unwrap(),
            OptimizerPlan::SparseEmbedding
        );
        assert_eq!(
            OptimizerPlan::choose(true, false, None, 0.0, Device::Cuda(0)).unwrap(),
            OptimizerPlan::SparseEmbedding
        );
        assert!(matches!(
            OptimizerPlan::choose(true, true, Some(1.0), 0.0, Device::Cpu),
            Err(TrainError::SparseWithClipOrDecay)
        ));
        assert!(matches!(
            OptimizerPlan::choose(true, true, None, 1e-4, Device::Cpu),
            Err(TrainError::SparseWithClipOrDecay)
        ));
    }

    #[test]
    fn idle_rows_wait_only_on_the_cpu_without_clipping() {
        assert_eq!(
            OptimizerPlan::choose(false, true, None, 0.0, Device::Cpu).unwrap(),
            OptimizerPlan::DeferredIdleRows
        );
        assert_eq!(
            OptimizerPlan::choose(false, true, None, 1e-3, Device::Cpu).unwrap(),
            OptimizerPlan::DeferredIdleRows
        );
        assert_eq!(
            OptimizerPlan::choose(false, true, Some(1.0), 0.0, Device::Cpu).unwrap(),
            OptimizerPlan::Dense
        );
        assert_eq!(
            OptimizerPlan::choose(false, true, None, 0.0, Device::Cuda(0)).unwrap(),
            OptimizerPlan::Dense
        );
        assert_eq!(
            OptimizerPlan::choose(false, false, None, 0.0, Device::Cpu).unwrap(),
            OptimizerPlan::Dense
        );
    }
}
