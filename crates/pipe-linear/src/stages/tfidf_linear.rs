//! The `tfidf_linear` stage: fits TF-IDF features and a linear classifier
//! (one-vs-rest SVMs, or complement naive Bayes) on the notebook's arrays
//! (token ids back to n-grams through the vocabulary: no raw text needed).
//! Its `model` goes to the `predict` stage like a torch checkpoint.

use std::time::Instant;

use pipe_core::{
    stage, Artifacts, InvalidSetting, JsonDoc, Port, PortOf, Stage, StageContext, StageError,
};
use pipe_data::{IntArray, LabelSet, Vocabulary};
use serde::{Deserialize, Serialize};

use crate::features::{TfidfConfig, TfidfVectorizer};
use crate::svm::{ClassWeight, SvmConfig};
use crate::{naive_bayes, svm, LinearError, LinearModel};

/// The most solver passes per class: 100,000, a hundred times
/// scikit-learn's default of 1,000 (each is a pass over every training row,
/// so more is a run that never ends rather than a better fit).
pub const MAX_ITER: usize = 100_000;

/// Which linear classifier fits the TF-IDF features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classifier {
    /// One-vs-rest SVMs, as scikit-learn's `LinearSVC` ([`svm`]); reads `c`,
    /// `class_weight`, `tol`, `max_iter`.
    #[default]
    LinearSvc,
    /// Complement naive Bayes, as scikit-learn's `ComplementNB` ([`naive_bayes`]);
    /// reads `alpha`.
    ComplementNb,
}

/// Config of the `tfidf_linear` stage: scikit-learn's `TfidfVectorizer`
/// (word 1–2-grams, sublinear TF) and `LinearSVC` (C = 1, balanced class
/// weights) by default. The feature fields repeat [`TfidfConfig`]'s rather
/// than `#[serde(flatten)]` it: serde cannot deny unknown fields through a
/// flattened struct, and a misspelt setting must be an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TfidfLinear {
    pub classifier: Classifier,
    /// Smallest and largest word n-gram.
    pub word_ngrams: [usize; 2],
    /// Smallest and largest character n-gram within tokens; none by default.
    pub char_ngrams: Option<[usize; 2]>,
    /// 1 + ln(tf) instead of raw counts.
    pub sublinear_tf: bool,
    /// Keep n-grams that occur in at least this many training rows.
    pub min_df: usize,
    /// Inverse regularisation strength.
    pub c: f64,
    pub class_weight: ClassWeight,
    /// The solver stops when its projected gradients span at most this.
    pub tol: f64,
    pub max_iter: usize,
    /// Naive Bayes' additive smoothing (scikit-learn's default, 1).
    pub alpha: f64,
}

impl Default for TfidfLinear {
    fn default() -> Self {
        let (svm, f) = (SvmConfig::default(), TfidfConfig::default());
        TfidfLinear {
            classifier: Classifier::default(),
            word_ngrams: f.word_ngrams,
            char_ngrams: f.char_ngrams,
            sublinear_tf: f.sublinear_tf,
            min_df: f.min_df,
            c: svm.c,
            class_weight: svm.class_weight,
            tol: svm.tol,
            max_iter: svm.max_iter,
            alpha: 1.0,
        }
    }
}

/// How a fit went: sizes, times, the SVM solver's iterations per class
/// (none for naive Bayes, fitted in closed form).
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub rows: usize,
    pub features: usize,
    pub seconds: f64,
    pub vectorize_seconds: f64,
    pub iterations: Vec<usize>,
    pub unconverged_classes: usize,
}

impl TfidfLinear {
    fn feature_config(&self) -> TfidfConfig {
        TfidfConfig {
            word_ngrams: self.word_ngrams,
            char_ngrams: self.char_ngrams,
            sublinear_tf: self.sublinear_tf,
            min_df: self.min_df,
        }
    }

    /// Fits the vectorizer and the classifier on rows of token ids with labels in `0..classes`.
    pub fn fit(
        &self,
        rows: &[&[i64]],
        y: &[i64],
        vocab: &Vocabulary,
        classes: usize,
        seed: u64,
        threads: usize,
    ) -> Result<(LinearModel, FitReport), LinearError> {
        let start = Instant::now();
        let vectorizer =
            TfidfVectorizer::fit(self.feature_config(), rows, vocab.pad_id, &vocab.tokens)?;
        let features = vectorizer.transform(rows);
        let vectorize_seconds = start.elapsed().as_secs_f64();
        let (classifier, convergence) = match self.classifier {
            Classifier::LinearSvc => {
                let config = SvmConfig {
                    c: self.c,
                    class_weight: self.class_weight,
                    tol: self.tol,
                    max_iter: self.max_iter,
                    seed,
                    threads,
                };
                svm::fit(&features, vectorizer.features(), y, classes, config)?
            }
            Classifier::ComplementNb => (
                naive_bayes::fit(&features, vectorizer.features(), y, classes, self.alpha)?,
                Vec::new(),
            ),
        };
        let report = FitReport {
            rows: rows.len(),
            features: vectorizer.features(),
            seconds: start.elapsed().as_secs_f64(),
            vectorize_seconds,
            iterations: convergence.iter().map(|c| c.iterations).collect(),
            unconverged_classes: convergence.iter().filter(|c| !c.converged).count(),
        };
        Ok((
            LinearModel {
                vectorizer,
                classifier,
            },
            report,
        ))
    }
}

impl TfidfLinear {
    pub const MODEL: PortOf<LinearModel> =
        PortOf::new("model", "the fitted vectorizer and classifier weights");
    pub const METRICS: PortOf<JsonDoc> = PortOf::new(
        "metrics",
        "features, training time, solver convergence per class",
    );
}

#[stage(
    kind = "tfidf_linear",
    summary = "TF-IDF word (and character) n-grams + one-vs-rest linear SVMs or complement naive Bayes, as scikit-learn's TfidfVectorizer + LinearSVC or ComplementNB"
)]
impl Stage for TfidfLinear {
    fn inputs(&self) -> Vec<Port> {
        TrainingRowsPorts::ports()
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::MODEL.port(), Self::METRICS.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.feature_config().validate()?;
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(InvalidSetting::new(
                "c",
                format!("must be a positive number, got {}", self.c),
            ));
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(InvalidSetting::new(
                "tol",
                format!("must be a positive number, got {}", self.tol),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(InvalidSetting::new(
                "alpha",
                format!("must be a positive number, got {}", self.alpha),
            ));
        }
        if !(1..=MAX_ITER).contains(&self.max_iter) {
            return Err(InvalidSetting::new(
                "max_iter",
                format!("must be between 1 and {MAX_ITER}, got {}", self.max_iter),
            ));
        }
        Ok(())
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let x = inputs.read(&TrainingRowsPorts::X)?;
        let y = inputs.read(&TrainingRowsPorts::Y)?;
        let vocab = inputs.read(&TrainingRowsPorts::VOCAB)?;
        let labels = inputs.read(&TrainingRowsPorts::LABELS)?;
        let fail = |e: LinearError| StageError::invalid(e);
        let rows = rows_of(x).map_err(fail)?;
        let y: Vec<i64> = y.0.iter().copied().collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (model, fit) = self
            .fit(&rows, &y, vocab, labels.len(), ctx.seed, threads)
            .map_err(fail)?;
        ctx.info(format!(
            "{} rows, {} n-gram features ({:.1}s)",
            rows.len(),
            model.vectorizer.features(),
            fit.vectorize_seconds
        ));
        if fit.unconverged_classes > 0 {
            ctx.warn(format!(
                "{} of {} classes reached max_iter ({}) before tol",
                fit.unconverged_classes,
                labels.len(),
                self.max_iter
            ));
        }
        let what = match self.classifier {
            Classifier::LinearSvc => "linear SVMs",
            Classifier::ComplementNb => "complement naive Bayes classes",
        };
        ctx.info(format!("{} {what} in {:.1}s", labels.len(), fit.seconds));
        let metrics = serde_json::to_value(&fit).expect("json");
        ctx.metric(metrics.clone());
        let mut out = Artifacts::new();
        out.put(&Self::MODEL, model)
            .put(&Self::METRICS, JsonDoc(metrics));
        Ok(out)
    }
}

/// The inputs of a stage that fits a model on the notebook's arrays
/// (`tfidf_linear`, `select`): token ids, labels, vocabulary, class names.
pub struct TrainingRowsPorts;

impl TrainingRowsPorts {
    pub const X: PortOf<IntArray> = PortOf::new("x", "training token ids [rows, max_len]");
    pub const Y: PortOf<IntArray> = PortOf::new("y", "training class ids [rows]");
    pub const VOCAB: PortOf<Vocabulary> =
        PortOf::new("vocab", "token texts by id, and the padding id");
    pub const LABELS: PortOf<LabelSet> = PortOf::new("labels", "the class names");

    pub fn ports() -> Vec<Port> {
        vec![
            Self::X.port(),
            Self::Y.port(),
            Self::VOCAB.port(),
            Self::LABELS.port(),
        ]
    }
}

/// The rows of a 2-D id array.
pub fn rows_of(x: &IntArray) -> Result<Vec<&[i64]>, LinearError> {
    let shape = x.0.shape().to_vec();
    let (Some(&width), 2) = (shape.get(1), shape.len()) else {
        return Err(LinearError::NotTwoDimensional(shape));
    };
    let flat =
        x.0.as_slice()
            .ok_or_else(|| LinearError::NotTwoDimensional(shape.clone()))?;
    Ok(if width == 0 {
        vec![&[][..]; shape[0]]
    } else {
        flat.chunks(width).collect()
    })
}

#[cfg(test)]
mod tests {
    use pipe_core::{Artifact, LoadArtifact};

    use super::*;

    #[test]
    fn max_iter_is_bounded_at_load() {
        assert_eq!(Stage::validate(&TfidfLinear::default()), Ok(()));
        assert_eq!(
            Stage::validate(&TfidfLinear {
                max_iter: MAX_ITER,
                ..TfidfLinear::default()
            }),
            Ok(())
        );
        for (max_iter, got) in [(MAX_ITER + 1, MAX_ITER + 1), (0, 0)] {
            assert_eq!(
                Stage::validate(&TfidfLinear {
                    max_iter,
                    ..TfidfLinear::default()
                }),
                Err(InvalidSetting::new(
                    "max_iter",
                    format!("must be between 1 and {MAX_ITER}, got {got}")
                ))
            );
        }
    }

    #[test]
    fn a_stored_model_with_out_of_range_ngrams_is_refused_naming_its_file() {
        let vocab = Vocabulary {
            tokens: ["<pad>", "<unk>", "red", "blue"].map(String::from).to_vec(),
            pad_id: 0,
            unk_id: Some(1),
        };
        let rows: Vec<&[i64]> = vec![&[2, 2, 0], &[3, 3, 0], &[2, 0, 0], &[3, 0, 0]];
        let (model, _) = TfidfLinear::default()
            .fit(&rows, &[0, 1, 0, 1], &vocab, 2, 0, 1)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        assert_eq!(LinearModel::load(dir.path()).unwrap(), model);
        let path = dir.path().join("linear_model.json");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"word_ngrams\":[1,2]"), "{text}");
        std::fs::write(
            &path,
            text.replacen("\"word_ngrams\":[1,2]", "\"word_ngrams\":[1,1000000000]", 1),
        )
        .unwrap();
        let err = LinearModel::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("linear_model.json")
                && err.contains("word_ngrams must be [min, max] with 1 <= min <= max <= 9"),
            "{err}"
        );
    }
}
