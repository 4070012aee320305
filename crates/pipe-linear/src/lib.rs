//! Linear text classifiers over token ids: what scikit-learn's
//! `TfidfVectorizer` + `LinearSVC` do, reading the notebook's artifacts.
//!
//! - [`features`]: word n-grams of token ids and character n-grams of the
//!   tokens' text (`char_wb`), sublinear TF, smoothed IDF, L2 norm per block.
//! - [`svm`]: one-vs-rest linear SVMs with the squared hinge loss, trained by
//!   dual coordinate descent with shrinking, as liblinear does; class weights.
//! - [`naive_bayes`]: complement naive Bayes, in closed form; a linear
//!   scorer too, with other errors than the SVM's (a partner in ensembles).
//! - [`LinearModel`]: a vectorizer and either classifier's [`LinearWeights`],
//!   an artifact (`linear_model`) that the `predict` stage scores like a
//!   torch checkpoint.
//! - The `tfidf_linear` stage fits one.

pub mod features;
pub mod naive_bayes;
mod stages;
pub mod svm;

use std::any::Any;
use std::path::Path;

use pipe_core::{register_artifact, Artifact, ArtifactError, LoadArtifact};
use serde::{Deserialize, Serialize};

pub use features::{SparseRows, TfidfConfig, TfidfVectorizer};
pub use stages::{rows_of, Classifier, FitReport, TfidfLinear, TrainingRowsPorts, MAX_ITER};
pub use svm::{ClassWeight, SvmConfig};

/// Errors of fitting and scoring.
#[derive(Debug, thiserror::Error)]
pub enum LinearError {
    #[error("no training rows")]
    NoRows,
    #[error("{rows} rows but {labels} labels")]
    LengthMismatch { rows: usize, labels: usize },
    #[error("label {label} at row {row} is outside 0..{classes}")]
    LabelOutOfRange {
        row: usize,
        label: i64,
        classes: usize,
    },
    #[error("token id {id} at row {row} is outside the vocabulary (0..{vocab})")]
    TokenOutOfRange { row: usize, id: i64, vocab: usize },
    #[error("expected a 2-D array of token ids in C order, got shape {0:?}")]
    NotTwoDimensional(Vec<usize>),
    #[error("no n-gram occurs in at least min_df rows: nothing to learn from")]
    NoFeatures,
    #[error("naive Bayes' smoothing alpha must be a positive number, got {0}")]
    BadSmoothing(f64),
}

/// Checks what every classifier's fit needs: rows, one label per row, labels in `0..classes`.
pub(crate) fn check_labels(x: &SparseRows, y: &[i64], classes: usize) -> Result<(), LinearError> {
    if x.rows() == 0 {
        return Err(LinearError::NoRows);
    }
    if x.rows() != y.len() {
        return Err(LinearError::LengthMismatch {
            rows: x.rows(),
            labels: y.len(),
        });
    }
    if let Some((row, &label)) = y
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 0 || l as usize >= classes)
    {
        return Err(LinearError::LabelOutOfRange {
            row,
            label,
            classes,
        });
    }
    Ok(())
}

/// One linear scorer per class: weights `[classes × features]` row-major
/// and an intercept each. What both classifiers fit and `predict` scores.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearWeights {
    pub weights: Vec<f32>,
    pub intercepts: Vec<f32>,
    pub features: usize,
}

impl LinearWeights {
    pub fn classes(&self) -> usize {
        self.intercepts.len()
    }
    pub fn features(&self) -> usize {
        self.features
    }

    /// Each class's score for one row.
    pub fn decision(&self, (cols, vals): (&[u32], &[f32])) -> Vec<f32> {
        (0..self.classes())
            .map(|k| {
                let w = &self.weights[k * self.features..(k + 1) * self.features];
                self.intercepts[k]
                    + cols
                        .iter()
                        .zip(vals)
                        .map(|(&c, &v)| w[c as usize] * v)
                        .sum::<f32>()
            })
            .collect()
    }
}

/// A fitted vectorizer and the class scorers over its features.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub vectorizer: TfidfVectorizer,
    pub classifier: LinearWeights,
}

impl LinearModel {
    /// Class scores (SVM margins or naive Bayes log-likelihoods) for each row of token ids.
    pub fn decision(&self, rows: &[&[i64]]) -> Vec<Vec<f32>> {
        let x = self.vectorizer.transform(rows);
        (0..x.rows())
            .map(|r| self.classifier.decision(x.row(r)))
            .collect()
    }

    /// Predicted class ids: the first largest score of each row (top-k
    /// probabilities come from the `predict` stage, over these scores).
    pub fn predict_classes(&self, rows: &[&[i64]]) -> Vec<i64> {
        self.decision(rows)
            .iter()
            .map(|scores| pipe_data::argmax(scores) as i64)
            .collect()
    }
}

const MODEL_FILE: &str = "linear_model.json";
const WEIGHTS_FILE: &str = "weights.f32";

/// What `linear_model.json` holds; the weights are raw little-endian f32 beside it.
#[derive(Serialize, Deserialize)]
struct StoredModel {
    vectorizer: TfidfVectorizer,
    classes: usize,
    features: usize,
    intercepts: Vec<f32>,
}

impl Artifact for LinearModel {
    fn type_name(&self) -> &'static str {
        Self::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let stored = StoredModel {
            vectorizer: self.vectorizer.clone(),
            classes: self.classifier.classes(),
            features: self.classifier.features(),
            intercepts: self.classifier.intercepts.clone(),
        };
        pipe_core::fsutil::save_json(&dir.join(MODEL_FILE), &stored)?;
        let bytes: Vec<u8> = self
            .classifier
            .weights
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let path = dir.join(WEIGHTS_FILE);
        std::fs::write(&path, bytes).map_err(|e| ArtifactError::io(&path, e))
    }
    fn summary(&self) -> String {
        format!(
            "linear classifier: {} classes × {} features",
            self.classifier.classes(),
            self.classifier.features()
        )
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LoadArtifact for LinearModel {
    const TYPE_NAME: &'static str = "linear_model";
    fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let model_path = dir.join(MODEL_FILE);
        let stored: StoredModel = pipe_core::fsutil::load_json(&model_path)?;
        // The n-gram ranges size the work per row: checked as at load of a pipeline.
        stored
            .vectorizer
            .config
            .validate()
            .map_err(|e| ArtifactError::invalid(&model_path, e))?;
        let path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| ArtifactError::io(&path, e))?;
        let expected = stored
            .classes
            .checked_mul(stored.features)
            .and_then(|n| n.checked_mul(4));
        if expected != Some(bytes.len())
            || stored.intercepts.len() != stored.classes
            || stored.features != stored.vectorizer.features()
            || stored.vectorizer.idf.len() != stored.features
        {
            return Err(ArtifactError::invalid(
                &path,
                "the weights do not fit the model's classes and features",
            ));
        }
        let weights = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let classifier = LinearWeights {
            weights,
            intercepts: stored.intercepts,
            features: stored.features,
        };
        Ok(LinearModel {
            vectorizer: stored.vectorizer,
            classifier,
        })
    }
}

register_artifact!(
    LinearModel,
    "TF-IDF vectorizer and linear classifier weights (linear_model.json + weights.f32)"
);
