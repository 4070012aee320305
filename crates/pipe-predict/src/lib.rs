//! Predicts classes for token tensors with a trained checkpoint: in batches
//! of bounded size, sorted by length so little padding is computed, results
//! returned in input order.
//!
//! Overview:
//! - [`Predictor`] wraps a checkpoint on a device; [`Predictor::predict`]
//!   returns [`Predictions`] (class ids and, on request, top-k probabilities).
//! - [`ScoreRows`] is what any model artifact implements to be scored
//!   (checkpoints and linear models here; others register with
//!   [`register_scorer!`]); [`ClassProbabilities`] is its per-class output.
//! - The `predict` stage turns scores into a table with the class names and
//!   the probabilities an `ensemble` stage averages.

mod scores;

use pipe_core::{register_stage, Artifacts, Column, LabelSet, LoadArtifact, Port, Stage, StageContext, StageError, Table, ANY_TYPE};
use pipe_model::{Checkpoint, Classifier, ModelSpec, Pooling};
use pipe_tensor::{runtime, PaddingSide, TokenTensors};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

pub use scores::{argmax, check_finite, scoreable_types, scorer, softmax_rows, ClassProbabilities, ScoreOptions, ScoreRows, ScorerType};
// For `register_scorer!` in other crates.
#[doc(hidden)]
pub use {inventory, pipe_core};

/// Whether cutting trailing pads leaves the model's output unchanged: true for
/// post-padded rows read by a unidirectional model through a masked pooling.
pub fn trimming_is_exact(spec: &ModelSpec, padding: PaddingSide) -> bool {
    padding == PaddingSide::Post && !spec.bidirectional && spec.pooling != Pooling::LastStep
}

/// Predictions in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub class_ids: Vec<i64>,
    /// For each row, the `k` most likely classes with their probabilities.
    pub top_k: Option<Vec<Vec<(i64, f32)>>>,
}

/// A trained model ready to score rows.
pub struct Predictor {
    _vs: nn::VarStore,
    model: Classifier,
    device: Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trim {
    /// Trim only when it cannot change the output ([`trimming_is_exact`]).
    #[default]
    Auto,
    Always,
    Never,
}

impl Predictor {
    pub fn new(checkpoint: &Checkpoint, device: Device) -> Result<Predictor, String> {
        let (vs, model) = checkpoint.build(device)?;
        Ok(Predictor { _vs: vs, model, device })
    }

    /// Logits for all rows, in input order (for parity checks and tools).
    pub fn logits(&self, data: &TokenTensors, batch_size: usize, trim: Trim) -> Tensor {
        let n = data.rows();
        let mut out = Tensor::zeros([n, self.model.spec().num_classes], (Kind::Float, Device::Cpu));
        self.for_batches(data, batch_size, trim, |index, logits| {
            let _ = out.index_copy_(0, &index.to_device(Device::Cpu), &logits.to_device(Device::Cpu));
        });
        out
    }

    /// Class ids (and top-k probabilities when `top_k > 0`), in input order.
    pub fn predict(&self, data: &TokenTensors, batch_size: usize, trim: Trim, top_k: usize) -> Predictions {
        let n = data.rows() as usize;
        let mut class_ids = vec![0i64; n];
        let mut top: Option<Vec<Vec<(i64, f32)>>> = (top_k > 0).then(|| vec![Vec::new(); n]);
        let k = top_k.min(self.model.spec().num_classes as usize) as i64;
        self.for_batches(data, batch_size, trim, |index, logits| {
            let rows = Vec::<i64>::try_from(&index.to_device(Device::Cpu)).expect("int64 index");
            let best = Vec::<i64>::try_from(&logits.argmax(1, false).to_device(Device::Cpu)).expect("int64");
            for (r, c) in rows.iter().zip(best) {
                class_ids[*r as usize] = c;
            }
            if let Some(top) = top.as_mut() {
                let (p, i) = logits.softmax(1, Kind::Float).topk(k, 1, true, true);
                let p = Vec::<f32>::try_from(&p.to_device(Device::Cpu).view([-1])).expect("f32");
                let i = Vec::<i64>::try_from(&i.to_device(Device::Cpu).view([-1])).expect("int64");
                for (j, r) in rows.iter().enumerate() {
                    top[*r as usize] = (0..k as usize).map(|t| (i[j * k as usize + t], p[j * k as usize + t])).collect();
                }
            }
        });
        Predictions { class_ids, top_k: top }
    }

    /// Runs the model over length-sorted batches; `f` gets each batch's row indices and logits.
    fn for_batches(&self, data: &TokenTensors, batch_size: usize, trim: Trim, mut f: impl FnMut(&Tensor, &Tensor)) {
        let lengths = Vec::<i64>::try_from(&data.lengths.to_device(Device::Cpu)).expect("int64 lengths");
        let mut order: Vec<i64> = (0..lengths.len() as i64).collect();
        order.sort_by_key(|&i| lengths[i as usize]);
        let trim = match trim {
            Trim::Auto => trimming_is_exact(self.model.spec(), data.padding),
            Trim::Always => true,
            Trim::Never => false,
        };
        tch::no_grad(|| {
            for chunk in order.chunks(batch_size.max(1)) {
                let index = Tensor::from_slice(chunk);
                let longest = chunk.iter().map(|&i| lengths[i as usize]).max().unwrap_or(1).max(1);
                let on_device = index.to_device(data.ids.device());
                let (ids, batch_lengths) = data.select_rows(&on_device, trim.then_some(longest));
                let logits = self.model.forward_t(&ids.to_device(self.device), &batch_lengths.to_device(self.device), data.padding, false);
                f(&index, &logits);
            }
        });
    }
}

/// The `predict` stage.
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
        Predict { batch_size: 256, trim_padding: Trim::Auto, top_k: 0 }
    }
}

#[typetag::serde(name = "predict")]
impl Stage for Predict {
    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::new("model", ANY_TYPE, "the trained model: a `checkpoint` (torch), a `linear_model` (tfidf_linear), an `ensemble_model` (select)"),
            Port::new("tensors", "token_tensors", "rows to classify"),
            Port::new("labels", "label_set", "class names for the ids"),
        ]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::new("predictions", "table", "class_id, label (and probability, top_k) per row, in input order"),
            Port::new("probabilities", ClassProbabilities::TYPE_NAME, "every class's probability per row (for an `ensemble` stage)"),
        ]
    }
    fn code_version(&self) -> u32 {
        // 2: the `probabilities` output.
        2
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let model = inputs.get_rc("model").ok_or_else(|| StageError::MissingInput("model".into()))?;
        let data = inputs.get::<TokenTensors>("tensors")?;
        let labels = inputs.get::<LabelSet>("labels")?;
        let scorer = scorer(model.as_ref()).ok_or_else(|| {
            StageError::invalid(format!("`predict` cannot score a `{}`; it scores: {}", model.type_name(), scoreable_types().join(", ")))
        })?;
        if labels.len() != scorer.classes() {
            return Err(StageError::invalid(format!("the model has {} classes but the label set {}", scorer.classes(), labels.len())));
        }
        let options =
            ScoreOptions { device: runtime::device(ctx.device).map_err(StageError::invalid)?, batch_size: self.batch_size, trim: self.trim_padding };
        let start = std::time::Instant::now();
        let scores = scorer.scores(data, &options).map_err(StageError::invalid)?;
        check_finite(&scores, labels.len()).map_err(StageError::invalid)?;
        let seconds = start.elapsed().as_secs_f64();
        let rows_per_second = data.rows() as f64 / seconds.max(1e-9);
        ctx.info(format!("{} rows in {seconds:.2}s ({rows_per_second:.0} rows/s)", data.rows()));
        // The pass alone (no model loading, no output writing): what a
        // benchmark compares with another tool's forward pass.
        ctx.metric(serde_json::json!({ "rows": data.rows(), "seconds": seconds, "rows_per_second": rows_per_second }));
        let probabilities = ClassProbabilities { rows: data.rows() as usize, classes: labels.len(), values: softmax_rows(&scores, labels.len()) };
        let predictions = Predictions::from_scores(&scores, &probabilities, self.top_k);
        let mut out = Artifacts::new();
        out.insert("predictions", predictions_table(&predictions, labels)).insert("probabilities", probabilities);
        Ok(out)
    }
}

impl Predictions {
    /// Class ids (the first best score) and top-k from one model's scores.
    pub fn from_scores(scores: &[f32], probabilities: &ClassProbabilities, top_k: usize) -> Predictions {
        let classes = probabilities.classes.max(1);
        let class_ids = scores.chunks(classes).map(|row| argmax(row) as i64).collect();
        let top_k = (top_k > 0).then(|| (0..probabilities.rows).map(|r| top_classes(probabilities.row(r), top_k)).collect());
        Predictions { class_ids, top_k }
    }
}

/// The `k` most likely classes of one row, most likely first.
fn top_classes(probabilities: &[f32], k: usize) -> Vec<(i64, f32)> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order.into_iter().take(k).map(|c| (c as i64, probabilities[c])).collect()
}

register_stage!(Predict, "predict", "classify rows with a trained model, in bounded batches, results in input order");

/// Predictions as a table: `class_id`, `label`, and with top-k `probability` and `top_k`.
pub fn predictions_table(p: &Predictions, labels: &LabelSet) -> Table {
    let name = |id: i64| -> serde_json::Value {
        match labels {
            LabelSet::Strings(v) => serde_json::Value::from(v[id as usize].clone()),
            LabelSet::Integers(v) => serde_json::Value::from(v[id as usize]),
        }
    };
    let mut columns = vec![
        Column { name: "class_id".into(), values: p.class_ids.iter().map(|&c| c.into()).collect() },
        Column { name: "label".into(), values: p.class_ids.iter().map(|&c| name(c)).collect() },
    ];
    if let Some(top) = &p.top_k {
        columns.push(Column { name: "probability".into(), values: top.iter().map(|t| serde_json::Value::from(t[0].1 as f64)).collect() });
        columns.push(Column {
            name: "top_k".into(),
            values: top
                .iter()
                .map(|t| {
                    serde_json::Value::Array(t.iter().map(|(c, p)| serde_json::json!({ "label": name(*c), "probability": *p as f64 })).collect())
                })
                .collect(),
        });
    }
    Table { columns }
}
