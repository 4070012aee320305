//! New texts through a trained pipeline: the fitted vectorizer, the
//! checkpoint and the class names, together.

use std::path::{Path, PathBuf};

use pipe_core::{LabelSet, LoadArtifact, RunReport};
use pipe_model::Checkpoint;
use pipe_predict::{Predictor, Trim};
use pipe_tensor::{PaddingSide, TokenTensors};
use pipe_vectorize::{Side, Vectorizer};
use polars::prelude::{DataFrame, NamedFrom, Series};
use tch::Device;

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("the run report has no stage `{0}`")]
    NoStage(String),
    #[error("stage `{stage}` has no output `{port}` (its outputs: {available})")]
    NoOutput { stage: String, port: String, available: String },
    #[error("`{0}` is not of the form `stage.output`")]
    BadReference(String),
    #[error(transparent)]
    Artifact(#[from] pipe_core::ArtifactError),
    #[error("the model and its inputs disagree: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Frame(String),
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
        FrameColumns { text: "Text".into(), label: "Category".into(), probability: None }
    }
}

/// A trained text classifier: raw text in, class names out.
pub struct TextClassifier {
    vectorizer: Vectorizer,
    predictor: Predictor,
    labels: LabelSet,
    /// Rows per forward pass; bounds memory for any number of texts.
    pub batch_size: usize,
}

impl TextClassifier {
    /// Checks that the three parts belong together.
    pub fn new(vectorizer: Vectorizer, checkpoint: &Checkpoint, labels: LabelSet, device: Device) -> Result<Self, ClassifyError> {
        let spec = &checkpoint.spec;
        if spec.num_classes != labels.len() as i64 {
            return Err(ClassifyError::Mismatch(format!("the model has {} classes, the label set {}", spec.num_classes, labels.len())));
        }
        if spec.vocab_size != vectorizer.vocab.len() as i64 {
            return Err(ClassifyError::Mismatch(format!(
                "the model embeds {} tokens, the vectorizer's vocabulary has {}",
                spec.vocab_size,
                vectorizer.vocab.len()
            )));
        }
        let predictor = Predictor::new(checkpoint, device).map_err(ClassifyError::Mismatch)?;
        Ok(TextClassifier { vectorizer, predictor, labels, batch_size: 256 })
    }

    /// From the stored artifacts' directories (a run report's output locations), on the CPU.
    pub fn load(vectorizer: &Path, checkpoint: &Path, labels: &Path) -> Result<Self, ClassifyError> {
        Self::new(Vectorizer::load(vectorizer)?, &Checkpoint::load(checkpoint)?, LabelSet::load(labels)?, Device::Cpu)
    }

    /// From a pipeline run: each part named `stage.output` as in the pipeline's wiring.
    pub fn from_report(report: &RunReport, vectorizer: &str, model: &str, labels: &str) -> Result<Self, ClassifyError> {
        Self::load(&output_dir(report, vectorizer)?, &output_dir(report, model)?, &output_dir(report, labels)?)
    }

    pub fn vectorizer(&self) -> &Vectorizer {
        &self.vectorizer
    }

    pub fn labels(&self) -> &LabelSet {
        &self.labels
    }

    /// The predicted class of each text, in order.
    pub fn classify<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Classification>, ClassifyError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.vectorizer.encode(texts);
        let padding = match self.vectorizer.options.padding {
            Side::Post => PaddingSide::Post,
            Side::Pre => PaddingSide::Pre,
        };
        let tensors = TokenTensors::from_arrays(&ids, None, self.vectorizer.vocab.pad_id, Some(padding), Device::Cpu)
            .map_err(|e| ClassifyError::Mismatch(e.to_string()))?;
        let predictions = self.predictor.predict(&tensors, self.batch_size, Trim::Auto, 1);
        let top = predictions.top_k.expect("asked for the top class");
        // The class is the argmax of the logits, as the predict stage takes it;
        // top-k of the softmax can order near-equal logits differently once
        // they round to the same probability, which is then the same number.
        Ok(predictions
            .class_ids
            .into_iter()
            .zip(top)
            .map(|(class_id, best)| {
                let label = self.labels.name(class_id as usize).expect("class id within the label set");
                Classification { class_id, label, probability: best[0].1 }
            })
            .collect())
    }

    /// `frame` with the predicted class (and optionally its probability)
    /// added as columns, rows in their original order.
    pub fn predict_frame(&self, frame: &DataFrame, columns: &FrameColumns) -> Result<DataFrame, ClassifyError> {
        let texts = pipe_vectorize::TextColumns::from_frame(frame, Path::new("<DataFrame>"), &columns.text, None, None)
            .map_err(|e| ClassifyError::Frame(e.to_string()))?
            .texts;
        for added in std::iter::once(&columns.label).chain(columns.probability.as_ref()) {
            if frame.schema().contains(added) {
                return Err(ClassifyError::Frame(format!("the frame already has a column `{added}`")));
            }
        }
        let classes = self.classify(&texts)?;
        let mut out = frame.clone();
        let labels: Vec<&str> = classes.iter().map(|c| c.label.as_str()).collect();
        let frame_err = |e: polars::error::PolarsError| ClassifyError::Frame(e.to_string());
        out.with_column(Series::new(columns.label.as_str().into(), labels).into()).map_err(frame_err)?;
        if let Some(name) = &columns.probability {
            let p: Vec<f32> = classes.iter().map(|c| c.probability).collect();
            out.with_column(Series::new(name.as_str().into(), p).into()).map_err(frame_err)?;
        }
        Ok(out)
    }
}

/// The stored directory of `stage.output` in a run report.
pub fn output_dir(report: &RunReport, reference: &str) -> Result<PathBuf, ClassifyError> {
    let (stage, port) = reference.split_once('.').ok_or_else(|| ClassifyError::BadReference(reference.to_string()))?;
    let s = report.stage(stage).ok_or_else(|| ClassifyError::NoStage(stage.to_string()))?;
    s.outputs.get(port).cloned().ok_or_else(|| ClassifyError::NoOutput {
        stage: stage.to_string(),
        port: port.to_string(),
        available: s.outputs.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}
