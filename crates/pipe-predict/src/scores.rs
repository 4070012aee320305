//! Class scores from any trained model, and class probabilities as an
//! artifact.
//!
//! A model artifact becomes scoreable by implementing [`ScoreRows`] and
//! registering with [`register_scorer!`]: the `predict` stage finds the
//! scorer by the artifact's type name, so a crate that adds a model kind
//! (for example `pipe-select`'s ensembles) needs no change here.

use std::any::Any;
use std::path::Path;

use ndarray::Array2;
use pipe_core::{register_artifact, Artifact, ArtifactError, LoadArtifact};
use pipe_linear::LinearModel;
use pipe_model::{Checkpoint, ModelError};
use pipe_tensor::TokenTensors;
use tch::Device;

use crate::{Predictor, Trim};

/// Why a model could not score rows.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The rows do not fit the model (token ids beyond its vocabulary), or its weights do not load.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the model's score for row {row} is not finite ({value}): its weights may hold NaN")]
    NotFinite { row: usize, value: f32 },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A model kind's own reason (a linear model's, an ensemble member's).
    #[error("{0}")]
    Other(String),
}

/// How to run a model over rows.
#[derive(Debug, Clone, Copy)]
pub struct ScoreOptions {
    pub device: Device,
    /// Rows per forward pass.
    pub batch_size: usize,
    pub trim: Trim,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            device: Device::Cpu,
            batch_size: 256,
            trim: Trim::Auto,
        }
    }
}

/// A trained model that scores token rows.
pub trait ScoreRows {
    fn classes(&self) -> usize;
    /// Scores `[rows × classes]`, row-major, in input order, whose softmax
    /// is the model's class probabilities (logits, margins or log-probabilities).
    fn scores(&self, data: &TokenTensors, options: &ScoreOptions) -> Result<Vec<f32>, ScoreError>;
}

/// A registered scoreable artifact type.
pub struct ScorerType {
    pub type_name: &'static str,
    pub as_scorer: fn(&dyn Artifact) -> Option<&dyn ScoreRows>,
}

inventory::collect!(ScorerType);

/// Makes an artifact type scoreable by the `predict` stage.
#[macro_export]
macro_rules! register_scorer {
    ($ty:ty) => {
        $crate::inventory::submit! {
            $crate::ScorerType {
                type_name: <$ty as $crate::pipe_core::LoadArtifact>::TYPE_NAME,
                as_scorer: |a| a.as_any().downcast_ref::<$ty>().map(|m| m as &dyn $crate::ScoreRows),
            }
        }
    };
}

/// The scorer behind a model artifact, if its type registered one.
pub fn scorer(model: &dyn Artifact) -> Option<&dyn ScoreRows> {
    inventory::iter::<ScorerType>
        .into_iter()
        .find(|t| t.type_name == model.type_name())
        .and_then(|t| (t.as_scorer)(model))
}

/// The type names `predict` can score, for error messages.
pub fn scoreable_types() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<ScorerType>
        .into_iter()
        .map(|t| t.type_name)
        .collect();
    names.sort();
    names
}

impl ScoreRows for Checkpoint {
    fn classes(&self) -> usize {
        self.spec.num_classes as usize
    }
    fn scores(&self, data: &TokenTensors, options: &ScoreOptions) -> Result<Vec<f32>, ScoreError> {
        pipe_model::check_token_ids(&self.spec, &data.ids)?;
        let predictor = Predictor::new(self, options.device)?;
        let logits = predictor.logits(data, options.batch_size, options.trim);
        Ok(Vec::<f32>::try_from(logits.reshape([-1]))?)
    }
}
register_scorer!(Checkpoint);

impl ScoreRows for LinearModel {
    fn classes(&self) -> usize {
        self.classifier.classes()
    }
    /// The classifier's scores, on the CPU whatever the device.
    fn scores(&self, data: &TokenTensors, _options: &ScoreOptions) -> Result<Vec<f32>, ScoreError> {
        let width = data.ids.size().get(1).copied().unwrap_or(0).max(0) as usize;
        let ids = Vec::<i64>::try_from(data.ids.reshape([-1]).to_device(Device::Cpu))?;
        let rows: Vec<&[i64]> = if width == 0 {
            vec![&[][..]; data.rows() as usize]
        } else {
            ids.chunks(width).collect()
        };
        Ok(self.decision(&rows).into_iter().flatten().collect())
    }
}
register_scorer!(LinearModel);

/// Row-wise softmax of `[rows × classes]` scores.
pub fn softmax_rows(scores: &[f32], classes: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(scores.len());
    for row in scores.chunks(classes.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let start = out.len();
        out.extend(row.iter().map(|&s| (s - max).exp()));
        let total: f32 = out[start..].iter().sum();
        out[start..].iter_mut().for_each(|p| *p /= total);
    }
    out
}

/// Refuses scores a class cannot be read from: a NaN or an infinity names
/// its row (a model trained into NaN, a tampered file).
pub fn check_finite(scores: &[f32], classes: usize) -> Result<(), ScoreError> {
    match scores.iter().position(|s| !s.is_finite()) {
        Some(i) => Err(ScoreError::NotFinite {
            row: i / classes.max(1),
            value: scores[i],
        }),
        None => Ok(()),
    }
}

/// Class probabilities `[rows × classes]` of a model over rows: what an
/// `ensemble` stage averages. Stored as `probabilities.npy` (float32).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassProbabilities {
    pub rows: usize,
    pub classes: usize,
    /// Row-major.
    pub values: Vec<f32>,
}

impl ClassProbabilities {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.values[r * self.classes..(r + 1) * self.classes]
    }
}

const PROBABILITIES_FILE: &str = "probabilities.npy";

impl Artifact for ClassProbabilities {
    fn type_name(&self) -> &'static str {
        Self::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let path = dir.join(PROBABILITIES_FILE);
        let array = Array2::from_shape_vec((self.rows, self.classes), self.values.clone())
            .map_err(|e| ArtifactError::invalid(&path, e))?;
        let file = std::fs::File::create(&path).map_err(|e| ArtifactError::io(&path, e))?;
        ndarray_npy::WriteNpyExt::write_npy(&array, std::io::BufWriter::new(file))
            .map_err(|e| ArtifactError::invalid(&path, e))
    }
    fn summary(&self) -> String {
        format!("f32[{}, {}] class probabilities", self.rows, self.classes)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LoadArtifact for ClassProbabilities {
    const TYPE_NAME: &'static str = "class_probabilities";
    fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(PROBABILITIES_FILE);
        let file = std::fs::File::open(&path).map_err(|e| ArtifactError::io(&path, e))?;
        let array: Array2<f32> = ndarray_npy::ReadNpyExt::read_npy(std::io::BufReader::new(file))
            .map_err(|e| ArtifactError::invalid(&path, e))?;
        let (rows, classes) = array.dim();
        let values = array.as_standard_layout().iter().copied().collect();
        Ok(ClassProbabilities {
            rows,
            classes,
            values,
        })
    }
}
register_artifact!(
    ClassProbabilities,
    "class probabilities per row, float32 [rows, classes] (.npy)"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_keep_the_order() {
        let p = softmax_rows(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], 3);
        assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] < p[1] && p[1] < p[2]);
        assert!((p[3] - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn non_finite_scores_are_refused_with_their_row() {
        assert!(check_finite(&[0.1, 0.2, 0.3, 0.4], 2).is_ok());
        let err = check_finite(&[0.1, 0.2, f32::NAN, 0.4], 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1") && err.contains("NaN"), "{err}");
        assert!(check_finite(&[f32::INFINITY, 0.0], 2)
            .unwrap_err()
            .to_string()
            .contains("row 0"));
    }

    #[test]
    fn probabilities_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = ClassProbabilities {
            rows: 2,
            classes: 3,
            values: vec![0.2, 0.3, 0.5, 1.0, 0.0, 0.0],
        };
        p.save(dir.path()).unwrap();
        assert_eq!(ClassProbabilities::load(dir.path()).unwrap(), p);
    }

    #[test]
    fn checkpoints_and_linear_models_are_scoreable() {
        let names = scoreable_types();
        assert!(
            names.contains(&"checkpoint") && names.contains(&"linear_model"),
            "{names:?}"
        );
    }
}
