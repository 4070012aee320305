//! Model checkpoints: a [`ModelSpec`] and named weights, stored as
//! `spec.json` and `model.safetensors` with PyTorch's `state_dict` names, so
//! the notebook's class can `load_state_dict` them and `pipe` can use weights
//! trained in Python.

use std::any::Any;
use std::path::Path;

use pipe_core::{register_artifact, Artifact, ArtifactError, LoadArtifact};
use tch::{nn, Device, Tensor};

use crate::model::{Classifier, ModelSpec};
use crate::ModelError;

/// A model's spec and weights (on the CPU).
#[derive(Debug)]
pub struct Checkpoint {
    pub spec: ModelSpec,
    pub tensors: Vec<(String, Tensor)>,
}

const WEIGHTS_FILE: &str = "model.safetensors";
const SPEC_FILE: &str = "spec.json";

impl Checkpoint {
    /// Copies the weights out of a var store.
    pub fn from_var_store(spec: &ModelSpec, vs: &nn::VarStore) -> Checkpoint {
        let mut tensors: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.detach().to_device(Device::Cpu).copy()))
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Checkpoint {
            spec: spec.clone(),
            tensors,
        }
    }

    /// Builds the model on `device` and loads these weights into it.
    pub fn build(&self, device: Device) -> Result<(nn::VarStore, Classifier), ModelError> {
        let vs = nn::VarStore::new(device);
        let model = Classifier::zeroed(&vs.root(), &self.spec)?;
        self.load_into(&vs)?;
        Ok((vs, model))
    }

    /// Copies these weights into a var store holding the same parameters.
    pub fn load_into(&self, vs: &nn::VarStore) -> Result<(), ModelError> {
        let mut vars = vs.variables();
        if vars.len() != self.tensors.len() {
            let mut expected: Vec<_> = vars.keys().cloned().collect();
            expected.sort();
            let found: Vec<_> = self.tensors.iter().map(|(n, _)| n.clone()).collect();
            return Err(ModelError::TensorNames { found, expected });
        }
        tch::no_grad(|| {
            for (name, tensor) in &self.tensors {
                let var = vars
                    .get_mut(name)
                    .ok_or_else(|| ModelError::UnknownTensor(name.clone()))?;
                if var.size() != tensor.size() {
                    return Err(ModelError::ShapeMismatch {
                        name: name.clone(),
                        checkpoint: tensor.size(),
                        model: var.size(),
                    });
                }
                var.copy_(tensor);
            }
            Ok(())
        })
    }

    /// Reads a checkpoint written by [`Artifact::save`] or by Python
    /// (`safetensors.torch.save_file(model.state_dict(), ...)` plus a `spec.json`).
    pub fn read(dir: &Path) -> Result<Checkpoint, ArtifactError> {
        Self::load(dir)
    }
}

impl Artifact for Checkpoint {
    fn type_name(&self) -> &'static str {
        Self::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let path = dir.join(WEIGHTS_FILE);
        Tensor::write_safetensors(&self.tensors, &path)
            .map_err(|e| ArtifactError::invalid(&path, e))?;
        pipe_core::fsutil::save_json(&dir.join(SPEC_FILE), &self.spec)
    }
    fn summary(&self) -> String {
        let params: i64 = self.tensors.iter().map(|(_, t)| t.numel() as i64).sum();
        format!("{:?} model, {params} parameters", self.spec.architecture)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LoadArtifact for Checkpoint {
    const TYPE_NAME: &'static str = "checkpoint";
    fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let spec_path = dir.join(SPEC_FILE);
        let spec: ModelSpec = pipe_core::fsutil::load_json(&spec_path)?;
        // A spec from disk (a bundle's `model/`, weights trained in Python)
        // is checked before anything is sized by it: a hostile or mistaken
        // `hidden_dim` is a named error, not an allocation that aborts.
        spec.validate()
            .map_err(|e| ArtifactError::invalid(&spec_path, e))?;
        let path = dir.join(WEIGHTS_FILE);
        let mut tensors =
            Tensor::read_safetensors(&path).map_err(|e| ArtifactError::invalid(&path, e))?;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Checkpoint { spec, tensors })
    }
}

register_artifact!(
    Checkpoint,
    "model spec and weights (safetensors, PyTorch state_dict names)"
);
