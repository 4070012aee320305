//! New texts through a trained pipeline: the fitted vectorizer, the
//! checkpoint and the class names, together.

use std::path::{Path, PathBuf};

use pipe_core::{load_artifact, Artifact, LoadArtifact, RunReport, StageOutput};
use pipe_data::{IntArray, LabelSet};
use pipe_model::Checkpoint;
use pipe_predict::{
    argmax, check_finite, scoreable_types, scorer, softmax_rows, ScoreOptions, ScoreRows, Trim,
};
use pipe_tensor::{PaddingSide, TokenTensors};
use pipe_vectorize::{Side, Vectorizer};
use polars::prelude::{DataFrame, NamedFrom, Series};
use tch::Device;

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("the run report has no stage `{0}`")]
    NoStage(String),
    #[error("stage `{stage}` has no output `{port}` (its outputs: {available})")]
    NoOutput {
        stage: String,
        port: String,
        available: String,
    },
    #[error("`{0}` is not of the form `stage.output`")]
    BadReference(String),
    #[error(transparent)]
    Artifact(#[from] pipe_core::ArtifactError),
    #[error("the model and its inputs disagree: {0}")]
    Mismatch(String),
    #[error("the model and its inputs disagree: {0}")]
    Score(#[from] pipe_predict::ScoreError),
    #[error("{0}")]
    Frame(String),
    #[error("a `{0}` artifact is not a model that can score texts (scoreable: {1})")]
    NotScoreable(&'static str, String),
    #[error("{} holds no model this build can load: {}", .dir.display(), .attempts)]
    NoModel { dir: PathBuf, attempts: String },
}

/// One text's predicted class.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub class_id: i64,
    pub label: String,
    /// The softmax probability of that class.
    pub probability: f32,
}

/// Which columns [`TextClassifier::predict_frame`] reads and adds.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameColumns {
    pub text: String,
    /// The predicted class name goes here.
    pub label: String,
    /// When set, the probability of the predicted class goes here.
    pub probability: Option<String>,
}

impl Default for FrameColumns {
    fn default() -> Self {
        FrameColumns {
            text: "Text".into(),
            label: "Category".into(),
            probability: None,
        }
    }
}

/// A trained text classifier: raw text in, class names out. The model is
/// any scoreable artifact (an LSTM `checkpoint`, a `linear_model`, an
/// `ensemble_model`): whatever `predict` scores, this scores the same way.
pub struct TextClassifier {
    vectorizer: Vectorizer,
    model: Box<dyn Artifact>,
    labels: LabelSet,
    device: Device,
    /// Rows per forward pass; bounds memory for any number of texts.
    pub batch_size: usize,
}

impl TextClassifier {
    /// Checks that the three parts belong together.
    pub fn new(
        vectorizer: Vectorizer,
        model: Box<dyn Artifact>,
        labels: LabelSet,
        device: Device,
    ) -> Result<Self, ClassifyError> {
        let scorer = scorer(model.as_ref()).ok_or_else(|| {
            ClassifyError::NotScoreable(model.type_name(), scoreable_types().join(", "))
        })?;
        if scorer.classes() != labels.len() {
            return Err(ClassifyError::Mismatch(format!(
                "the model has {} classes, the label set {}",
                scorer.classes(),
                labels.len()
            )));
        }
        if let Some(checkpoint) = model.as_any().downcast_ref::<Checkpoint>() {
            if checkpoint.spec.vocab_size != vectorizer.vocab.len() as i64 {
                return Err(ClassifyError::Mismatch(format!(
                    "the model embeds {} tokens, the vectorizer's vocabulary has {}",
                    checkpoint.spec.vocab_size,
                    vectorizer.vocab.len()
                )));
            }
        }
        Ok(TextClassifier {
            vectorizer,
            model,
            labels,
            device,
            batch_size: 256,
        })
    }

    /// From the stored artifacts' directories (a run report's output
    /// locations), on the CPU; the model directory may hold any scoreable type.
    pub fn load(vectorizer: &Path, model: &Path, labels: &Path) -> Result<Self, ClassifyError> {
        Self::new(
            Vectorizer::load(vectorizer)?,
            load_model(model)?,
            LabelSet::load(labels)?,
            Device::Cpu,
        )
    }

    /// From a pipeline run: each part one stage's output, typed by its port
    /// (the model may be any scoreable type):
    /// `from_report(&report, Vectorize::VECTORIZER.of_stage("vectorize"), Train::MODEL_OUT.of_stage("train"), NotebookPorts::LABELS.of_stage("vectorize"))`.
    pub fn from_report<M: ScoreRows>(
        report: &RunReport,
        vectorizer: StageOutput<Vectorizer>,
        model: StageOutput<M>,
        labels: StageOutput<LabelSet>,
    ) -> Result<Self, ClassifyError> {
        let dir = |stage: &str, port: &str| stage_output_dir(report, stage, port);
        Self::load(
            &dir(vectorizer.stage, vectorizer.port)?,
            &dir(model.stage, model.port)?,
            &dir(labels.stage, labels.port)?,
        )
    }

    pub fn vectorizer(&self) -> &Vectorizer {
        &self.vectorizer
    }

    pub fn labels(&self) -> &LabelSet {
        &self.labels
    }

    /// The model's artifact type (`checkpoint`, `linear_model`, ...).
    pub fn model_type(&self) -> &'static str {
        self.model.type_name()
    }

    /// Class probabilities `[texts × classes]`, row-major, in input order.
    pub fn probabilities<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>, ClassifyError> {
        let classes = self.labels.len();
        Ok(softmax_rows(&self.scores(texts)?, classes))
    }

    /// The predicted class of each text, in order.
    pub fn classify<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<Vec<Classification>, ClassifyError> {
        let classes = self.labels.len();
        let scores = self.scores(texts)?;
        let probabilities = softmax_rows(&scores, classes);
        // The class is the argmax of the scores, as the predict stage takes it.
        scores
            .chunks(classes)
            .zip(probabilities.chunks(classes))
            .map(|(row, p)| {
                let class = argmax(row);
                Ok(Classification {
                    class_id: class as i64,
                    label: self.label(class)?,
                    probability: p[class],
                })
            })
            .collect()
    }

    /// The name of class `class`.
    pub fn label(&self, class: usize) -> Result<String, ClassifyError> {
        self.labels.name(class).ok_or_else(|| {
            ClassifyError::Mismatch(format!("class {class} is outside the label set"))
        })
    }

    /// The model's raw scores `[texts × classes]`, row-major: logits,
    /// margins or log-probabilities, whose softmax is [`Self::probabilities`].
    pub fn scores<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<f32>, ClassifyError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.scores_of_ids(&self.vectorizer.encode(texts))
    }

    /// [`Self::scores`] of texts already encoded by [`Self::vectorizer`]
    /// (`encode`): a caller can encode the next batch on another thread
    /// while the model scores this one.
    pub fn scores_of_ids(&self, ids: &IntArray) -> Result<Vec<f32>, ClassifyError> {
        if ids.shape().first() == Some(&0) {
            return Ok(Vec::new());
        }
        let padding = match self.vectorizer.options.padding {
            Side::Post => PaddingSide::Post,
            Side::Pre => PaddingSide::Pre,
        };
        let tensors = TokenTensors::from_arrays(
            ids,
            None,
            self.vectorizer.vocab.pad_id,
            Some(padding),
            Device::Cpu,
        )
        .map_err(|e| ClassifyError::Mismatch(e.to_string()))?;
        let scorer = scorer(self.model.as_ref()).expect("checked in new()");
        let options = ScoreOptions {
            device: self.device,
            batch_size: self.batch_size,
            trim: Trim::Auto,
        };
        let scores = scorer.scores(&tensors, &options)?;
        check_finite(&scores, self.labels.len())?;
        Ok(scores)
    }

    /// `frame` with the predicted class (and optionally its probability)
    /// added as columns, rows in their original order.
    pub fn predict_frame(
        &self,
        frame: &DataFrame,
        columns: &FrameColumns,
    ) -> Result<DataFrame, ClassifyError> {
        let texts = pipe_vectorize::TextColumns::from_frame(
            frame,
            Path::new("<DataFrame>"),
            &columns.text,
            None,
            None,
        )
        .map_err(|e| ClassifyError::Frame(e.to_string()))?
        .texts;
        for added in std::iter::once(&columns.label).chain(columns.probability.as_ref()) {
            if frame.schema().contains(added) {
                return Err(ClassifyError::Frame(format!(
                    "the frame already has a column `{added}`"
                )));
            }
        }
        let classes = self.classify(&texts)?;
        let mut out = frame.clone();
        let labels: Vec<&str> = classes.iter().map(|c| c.label.as_str()).collect();
        let frame_err = |e: polars::error::PolarsError| ClassifyError::Frame(e.to_string());
        out.with_column(Series::new(columns.label.as_str().into(), labels).into())
            .map_err(frame_err)?;
        if let Some(name) = &columns.probability {
            let p: Vec<f32> = classes.iter().map(|c| c.probability).collect();
            out.with_column(Series::new(name.as_str().into(), p).into())
                .map_err(frame_err)?;
        }
        Ok(out)
    }
}

/// The stored directory of `stage.output` in a run report.
pub fn output_dir(report: &RunReport, reference: &str) -> Result<PathBuf, ClassifyError> {
    let (stage, port) = reference
        .split_once('.')
        .ok_or_else(|| ClassifyError::BadReference(reference.to_string()))?;
    stage_output_dir(report, stage, port)
}

/// Where the run stored `stage`'s output `port`.
fn stage_output_dir(report: &RunReport, stage: &str, port: &str) -> Result<PathBuf, ClassifyError> {
    let s = report
        .stage(stage)
        .ok_or_else(|| ClassifyError::NoStage(stage.to_string()))?;
    s.outputs
        .get(port)
        .cloned()
        .ok_or_else(|| ClassifyError::NoOutput {
            stage: stage.to_string(),
            port: port.to_string(),
            available: s.outputs.keys().cloned().collect::<Vec<_>>().join(", "),
        })
}

/// Loads whichever scoreable model type `dir` holds: each type's files are
/// its own, so at most one loader succeeds.
pub fn load_model(dir: &Path) -> Result<Box<dyn Artifact>, ClassifyError> {
    let mut attempts = Vec::new();
    for type_name in scoreable_types() {
        match load_artifact(type_name, dir) {
            Ok(model) => return Ok(model),
            Err(e) => attempts.push(format!("not a {type_name} ({e})")),
        }
    }
    Err(ClassifyError::NoModel {
        dir: dir.to_path_buf(),
        attempts: attempts.join("; "),
    })
}
