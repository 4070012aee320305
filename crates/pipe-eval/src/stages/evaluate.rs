//! The `evaluate` stage: a predictions table against the true labels.

use std::collections::{BTreeMap, HashMap};

use pipe_core::{
    stage, Artifacts, Files, JsonDoc, Optional, Port, PortOf, Stage, StageContext, StageError,
};
use pipe_data::Table;
use serde::{Deserialize, Serialize};

use crate::{cell_text, plot, ClassScores, Confusion, PREDICTED_LABEL};

/// Compares predicted labels with true ones (matched by id when both tables have ids).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Evaluate {
    pub id_field: String,
    pub label_field: String,
}

impl Default for Evaluate {
    fn default() -> Self {
        Evaluate {
            id_field: "Id".into(),
            label_field: "Category".into(),
        }
    }
}

/// Metrics of predicted against true class names.
pub fn evaluate(truth: &[String], predicted: &[String]) -> (Vec<String>, Confusion) {
    let mut names: Vec<String> = truth.iter().chain(predicted).cloned().collect();
    names.sort();
    names.dedup();
    let index: HashMap<&str, i64> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as i64))
        .collect();
    let t: Vec<i64> = truth.iter().map(|n| index[n.as_str()]).collect();
    let p: Vec<i64> = predicted.iter().map(|n| index[n.as_str()]).collect();
    let confusion = Confusion::new(&t, &p, names.len());
    (names, confusion)
}

impl Evaluate {
    fn aligned(
        &self,
        predictions: &Table,
        truth: &Table,
        ids: Option<&Table>,
    ) -> Result<(Vec<String>, Vec<String>), StageError> {
        let column = |t: &Table, name: &str, what: &str| {
            t.column(name)
                .map(|c| c.values.iter().map(cell_text).collect::<Vec<_>>())
                .ok_or_else(|| StageError::invalid(format!("{what} has no `{name}` column")))
        };
        let predicted = column(predictions, PREDICTED_LABEL, "the predictions table")?;
        let true_labels = column(truth, &self.label_field, "the truth table")?;
        if let (Some(ids), Some(truth_ids)) = (ids, truth.column(&self.id_field)) {
            let ids = column(ids, &self.id_field, "the ids table")?;
            if ids.len() != predicted.len() {
                return Err(StageError::invalid(format!(
                    "{} ids for {} predictions",
                    ids.len(),
                    predicted.len()
                )));
            }
            let by_id: HashMap<String, &String> = truth_ids
                .values
                .iter()
                .map(cell_text)
                .zip(&true_labels)
                .collect();
            let truth =
                ids.iter()
                    .map(|id| {
                        by_id.get(id).map(|s| (*s).clone()).ok_or_else(|| {
                            StageError::invalid(format!("no true label for id {id}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            return Ok((truth, predicted));
        }
        if true_labels.len() != predicted.len() {
            return Err(StageError::invalid(format!(
                "{} true labels for {} predictions",
                true_labels.len(),
                predicted.len()
            )));
        }
        Ok((true_labels, predicted))
    }
}

impl Evaluate {
    pub const PREDICTIONS: PortOf<Table> =
        PortOf::new("predictions", "a `label` column of predicted classes");
    pub const TRUTH: PortOf<Table> =
        PortOf::new("truth", "the true label of each row (with ids to match on)");
    pub const IDS: PortOf<Table, Optional> =
        PortOf::optional("ids", "the id of each prediction, to match rows by id");
    pub const METRICS: PortOf<JsonDoc> =
        PortOf::new("metrics", "accuracy, macro-F1, per-class scores");
    pub const REPORT: PortOf<Files> =
        PortOf::new("report", "per_class.csv, confusion.csv, confusion.svg");
}

#[stage(
    kind = "evaluate",
    summary = "accuracy, macro-F1, per-class scores and confusion matrix against true labels"
)]
impl Stage for Evaluate {
    fn inputs(&self) -> Vec<Port> {
        vec![
            Self::PREDICTIONS.port(),
            Self::TRUTH.port(),
            Self::IDS.port(),
        ]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::METRICS.port(), Self::REPORT.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let predictions = inputs.read(&Self::PREDICTIONS)?;
        let truth = inputs.read(&Self::TRUTH)?;
        let ids = inputs.read_optional(&Self::IDS)?;
        let (truth, predicted) = self.aligned(predictions, truth, ids)?;
        let (names, confusion) = evaluate(&truth, &predicted);
        let scores = confusion.per_class();
        let (accuracy, macro_f1) = (confusion.accuracy(), confusion.macro_f1());
        ctx.info(format!(
            "accuracy {accuracy:.4}, macro-F1 {macro_f1:.4} on {} rows",
            truth.len()
        ));

        let per_class: BTreeMap<&str, &ClassScores> =
            names.iter().map(String::as_str).zip(&scores).collect();
        let metrics = serde_json::json!({ "rows": truth.len(), "accuracy": accuracy, "macro_f1": macro_f1, "per_class": per_class });
        let mut per_class_csv = String::from("class,precision,recall,f1,support\n");
        for (name, s) in names.iter().zip(&scores) {
            per_class_csv.push_str(&format!(
                "{},{:.6},{:.6},{:.6},{}\n",
                pipe_data::csv::field(name),
                s.precision,
                s.recall,
                s.f1,
                s.support
            ));
        }
        let mut confusion_csv = String::from("truth\\predicted");
        for name in &names {
            confusion_csv.push(',');
            confusion_csv.push_str(&pipe_data::csv::field(name));
        }
        confusion_csv.push('\n');
        for (r, name) in names.iter().enumerate() {
            confusion_csv.push_str(&pipe_data::csv::field(name));
            for c in 0..names.len() {
                confusion_csv.push_str(&format!(",{}", confusion.get(r, c)));
            }
            confusion_csv.push('\n');
        }
        let svg = plot::heatmap(
            &format!("confusion (accuracy {accuracy:.3}, macro-F1 {macro_f1:.3})"),
            &names,
            &confusion.counts,
        );
        let files = BTreeMap::from([
            ("per_class.csv".to_string(), per_class_csv.into_bytes()),
            ("confusion.csv".to_string(), confusion_csv.into_bytes()),
            ("confusion.svg".to_string(), svg.into_bytes()),
        ]);
        let mut out = Artifacts::new();
        out.put(&Self::METRICS, JsonDoc(metrics))
            .put(&Self::REPORT, Files { files });
        Ok(out)
    }
}
