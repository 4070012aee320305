//! The `ensemble` stage: the weighted mean of several `predict` stages'
//! class probabilities over the same rows. Weights are given; `select`
//! fits them (and a temperature per model) on validation instead.

use pipe_core::{
    stage, Artifacts, InvalidSetting, LoadArtifact, Port, PortOf, Stage, StageContext, StageError,
};
use pipe_data::{LabelSet, Table};
use pipe_predict::{predictions_table, ClassProbabilities, Predictions, MAX_TOP_K};
use serde::{Deserialize, Serialize};

use crate::calibrate;

/// Config of the `ensemble` stage: each name in `members` is an input port.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ensemble {
    /// Input names, each wired to a `predict` stage's `probabilities`.
    pub members: Vec<String>,
    /// One weight per member (normalised); equal weights when absent.
    pub weights: Option<Vec<f64>>,
    /// Also output the `top_k` most likely classes with probabilities (0: none).
    pub top_k: usize,
}

impl Ensemble {
    fn normalised_weights(&self) -> Vec<f32> {
        let raw = self
            .weights
            .clone()
            .unwrap_or_else(|| vec![1.0; self.members.len()]);
        let total: f64 = raw.iter().sum();
        raw.iter().map(|w| (w / total) as f32).collect()
    }
}

impl Ensemble {
    pub const LABELS: PortOf<LabelSet> = PortOf::new("labels", "class names for the ids");
    pub const PREDICTIONS: PortOf<Table> = PortOf::new(
        "predictions",
        "class_id, label (and probability, top_k) per row, in input order",
    );
    pub const PROBABILITIES: PortOf<ClassProbabilities> =
        PortOf::new("probabilities", "the weighted mean probabilities");
}

#[stage(
    kind = "ensemble",
    summary = "average the class probabilities of several predict stages (optionally weighted)"
)]
impl Stage for Ensemble {
    fn inputs(&self) -> Vec<Port> {
        let mut ports: Vec<Port> = self
            .members
            .iter()
            .map(|m| {
                Port::named(
                    m.clone(),
                    ClassProbabilities::TYPE_NAME,
                    "a predict stage's `probabilities`",
                )
            })
            .collect();
        ports.push(Self::LABELS.port());
        ports
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::PREDICTIONS.port(), Self::PROBABILITIES.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.members.len() < 2 {
            return Err(InvalidSetting::new(
                "members",
                "must name at least two inputs to average",
            ));
        }
        if self.members.iter().any(|m| m == Self::LABELS.name) {
            return Err(InvalidSetting::new(
                "members",
                "cannot include `labels`, the label set's input; name the members otherwise",
            ));
        }
        if self.top_k > MAX_TOP_K {
            return Err(InvalidSetting::new(
                "top_k",
                format!("must be between 0 and {MAX_TOP_K}, got {}", self.top_k),
            ));
        }
        if let Some(w) = &self.weights {
            if w.len() != self.members.len() {
                return Err(InvalidSetting::new(
                    "weights",
                    format!(
                        "must give one weight per member: {} weights for {} members",
                        w.len(),
                        self.members.len()
                    ),
                ));
            }
            if w.iter().any(|x| !(x.is_finite() && *x >= 0.0)) || w.iter().sum::<f64>() <= 0.0 {
                return Err(InvalidSetting::new(
                    "weights",
                    "must be non-negative with a positive sum",
                ));
            }
        }
        Ok(())
    }
    fn run(&self, inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        let labels = inputs.read(&Self::LABELS)?;
        let members: Vec<&ClassProbabilities> = self
            .members
            .iter()
            .map(|m| inputs.get::<ClassProbabilities>(m))
            .collect::<Result<_, _>>()?;
        for (name, p) in self.members.iter().zip(&members) {
            if (p.rows, p.classes) != (members[0].rows, labels.len()) {
                return Err(StageError::invalid(format!(
                    "`{name}` has {} rows × {} classes; expected {} × {} (the first member's rows, the label set's classes)",
                    p.rows,
                    p.classes,
                    members[0].rows,
                    labels.len()
                )));
            }
        }
        let values: Vec<&[f32]> = members.iter().map(|p| p.values.as_slice()).collect();
        let mean = ClassProbabilities {
            rows: members[0].rows,
            classes: labels.len(),
            values: calibrate::mix(&values, &self.normalised_weights()),
        };
        let predictions = Predictions::from_scores(&mean.values, &mean, self.top_k);
        let mut out = Artifacts::new();
        out.put(&Self::PREDICTIONS, predictions_table(&predictions, labels))
            .put(&Self::PROBABILITIES, mean);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_bounded_at_load() {
        let ensemble = |top_k: usize| Ensemble {
            members: vec!["a".into(), "b".into()],
            weights: None,
            top_k,
        };
        assert_eq!(ensemble(0).validate(), Ok(()));
        assert_eq!(ensemble(MAX_TOP_K).validate(), Ok(()));
        assert_eq!(
            ensemble(MAX_TOP_K + 1).validate(),
            Err(InvalidSetting::new(
                "top_k",
                format!("must be between 0 and {MAX_TOP_K}, got {}", MAX_TOP_K + 1)
            ))
        );
    }
}
