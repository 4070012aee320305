//! The `predict` stage: class names and probabilities for token rows, from
//! any scoreable model.

use pipe_core::{
    stage, AnyPort, Artifacts, InvalidSetting, Port, PortOf, Stage, StageContext, StageError,
};
use pipe_data::{LabelSet, Table};
use pipe_runtime::runtime;
use pipe_tensor::TokenTensors;
use serde::{Deserialize, Serialize};

use crate::{
    check_finite, predictions_table, scoreable_types, scorer, softmax_rows, ClassProbabilities,
    Predictions, ScoreOptions, Trim,
};

/// The largest prediction batch: 2^20 rows. A batch's activations are
/// rows × time × width floats, gigabytes per layer past this.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// The largest `top_k` (of `predict` and `ensemble`): as many as a model may
/// have classes ([`pipe_model::MAX_CLASSES`]); each row's list holds
/// `min(top_k, classes)` entries.
pub const MAX_TOP_K: usize = pipe_model::MAX_CLASSES as usize;

/// Classifies rows with a trained model, in bounded batches, results in input order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Predict {
    /// Rows per forward pass: bounds memory whatever the test set's size.
    pub batch_size: usize,
    pub trim_padding: Trim,
    /// Also output the `top_k` most likely classes with probabilities (0: none).
    pub top_k: usize,
}

impl Default for Predict {
    fn default() -> Self {
        Predict {
            batch_size: 256,
            trim_padding: Trim::Auto,
            top_k: 0,
        }
    }
}

impl Predict {
    pub const MODEL: AnyPort =
        AnyPort::new("model", "the trained model: a `checkpoint` (torch), a `linear_model` (tfidf_linear), an `ensemble_model` (select)");
    pub const TENSORS: PortOf<TokenTensors> = PortOf::new("tensors", "rows to classify");
    pub const LABELS: PortOf<LabelSet> = PortOf::new("labels", "class names for the ids");
    pub const PREDICTIONS: PortOf<Table> = PortOf::new(
        "predictions",
        "class_id, label (and probability, top_k) per row, in input order",
    );
    pub const PROBABILITIES: PortOf<ClassProbabilities> = PortOf::new(
        "probabilities",
        "every class's probability per row (for an `ensemble` stage)",
    );
}

#[stage(
    kind = "predict",
    summary = "classify rows with a trained model, in bounded batches, results in input order"
)]
impl Stage for Predict {
    fn inputs(&self) -> Vec<Port> {
        vec![
            Self::MODEL.port(),
            Self::TENSORS.port(),
            Self::LABELS.port(),
        ]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::PREDICTIONS.port(), Self::PROBABILITIES.port()]
    }
    fn code_version(&self) -> u32 {
        // 2: the `probabilities` output.
        2
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(InvalidSetting::new(
                "batch_size",
                format!(
                    "must be between 1 and {MAX_BATCH_SIZE}, got {}",
                    self.batch_size
                ),
            ));
        }
        if self.top_k > MAX_TOP_K {
            return Err(InvalidSetting::new(
                "top_k",
                format!("must be between 0 and {MAX_TOP_K}, got {}", self.top_k),
            ));
        }
        Ok(())
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let model = inputs.read_any(&Self::MODEL)?;
        let data = inputs.read(&Self::TENSORS)?;
        let labels = inputs.read(&Self::LABELS)?;
        let scorer = scorer(model.as_ref()).ok_or_else(|| {
            StageError::invalid(format!(
                "`predict` cannot score a `{}`; it scores: {}",
                model.type_name(),
                scoreable_types().join(", ")
            ))
        })?;
        if labels.len() != scorer.classes() {
            return Err(StageError::invalid(format!(
                "the model has {} classes but the label set {}",
                scorer.classes(),
                labels.len()
            )));
        }
        let options = ScoreOptions {
            device: runtime::device(ctx.device).map_err(StageError::other)?,
            batch_size: self.batch_size,
            trim: self.trim_padding,
        };
        let start = std::time::Instant::now();
        let scores = scorer.scores(data, &options).map_err(StageError::other)?;
        check_finite(&scores, labels.len()).map_err(StageError::other)?;
        let seconds = start.elapsed().as_secs_f64();
        let rows_per_second = data.rows() as f64 / seconds.max(1e-9);
        ctx.info(format!(
            "{} rows in {seconds:.2}s ({rows_per_second:.0} rows/s)",
            data.rows()
        ));
        // The pass alone (no model loading, no output writing): what a
        // benchmark compares with another tool's forward pass.
        ctx.metric(serde_json::json!({ "rows": data.rows(), "seconds": seconds, "rows_per_second": rows_per_second }));
        let probabilities = ClassProbabilities {
            rows: data.rows() as usize,
            classes: labels.len(),
            values: softmax_rows(&scores, labels.len()),
        };
        let predictions = Predictions::from_scores(&scores, &probabilities, self.top_k);
        let mut out = Artifacts::new();
        out.put(&Self::PREDICTIONS, predictions_table(&predictions, labels))
            .put(&Self::PROBABILITIES, probabilities);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_and_top_k_are_bounded_at_load() {
        let predict = |batch_size: usize, top_k: usize| {
            Predict {
                batch_size,
                top_k,
                ..Predict::default()
            }
            .validate()
        };
        assert_eq!(Predict::default().validate(), Ok(()));
        assert_eq!(predict(MAX_BATCH_SIZE, MAX_TOP_K), Ok(()));
        for (batch_size, got) in [(MAX_BATCH_SIZE + 1, MAX_BATCH_SIZE + 1), (0, 0)] {
            assert_eq!(
                predict(batch_size, 0),
                Err(InvalidSetting::new(
                    "batch_size",
                    format!("must be between 1 and {MAX_BATCH_SIZE}, got {got}")
                ))
            );
        }
        assert_eq!(
            predict(256, MAX_TOP_K + 1),
            Err(InvalidSetting::new(
                "top_k",
                format!("must be between 0 and {MAX_TOP_K}, got {}", MAX_TOP_K + 1)
            ))
        );
    }
}
