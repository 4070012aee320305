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
//! - The `predict` stage (`src/stages/predict.rs`) turns scores into a table with the class names and
//!   the probabilities an `ensemble` stage averages.

mod scores;
mod stages;

use pipe_data::{Column, LabelSet, Table};
use pipe_model::{Checkpoint, Classifier, ModelError, ModelSpec, Pooling};
use pipe_tensor::{PaddingSide, TokenTensors};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

pub use pipe_data::argmax;
pub use scores::{
    check_finite, scoreable_types, scorer, softmax_rows, ClassProbabilities, ScoreError,
    ScoreOptions, ScoreRows, ScorerType,
};
pub use stages::{Predict, MAX_BATCH_SIZE, MAX_TOP_K};
// For `register_scorer!` in other crates.
#[doc(hidden)]
pub use {inventory, pipe_core};

/// Whether cutting trailing pads leaves the model's output unchanged: true for
/// rows read as post-padded by a unidirectional model through a masked pooling.
pub fn trimming_is_exact(spec: &ModelSpec, padding: PaddingSide) -> bool {
    spec.reads_as(padding) == PaddingSide::Post
        && !spec.bidirectional
        && spec.pooling != Pooling::LastStep
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
    pub fn new(checkpoint: &Checkpoint, device: Device) -> Result<Predictor, ModelError> {
        let (vs, model) = checkpoint.build(device)?;
        Ok(Predictor {
            _vs: vs,
            model,
            device,
        })
    }

    /// Logits for all rows, in input order (for parity checks and tools).
    pub fn logits(&self, data: &TokenTensors, batch_size: usize, trim: Trim) -> Tensor {
        let n = data.rows();
        let mut out = Tensor::zeros(
            [n, self.model.spec().num_classes],
            (Kind::Float, Device::Cpu),
        );
        self.for_batches(data, batch_size, trim, |rows, logits| {
            let _ = out.index_copy_(0, &Tensor::from_slice(rows), &logits.to_device(Device::Cpu));
        });
        out
    }

    /// Class ids (and top-k probabilities when `top_k > 0`), in input order.
    pub fn predict(
        &self,
        data: &TokenTensors,
        batch_size: usize,
        trim: Trim,
        top_k: usize,
    ) -> Predictions {
        let n = data.rows() as usize;
        let mut class_ids = vec![0i64; n];
        let mut top: Option<Vec<Vec<(i64, f32)>>> = (top_k > 0).then(|| vec![Vec::new(); n]);
        let k = top_k.min(self.model.spec().num_classes as usize) as i64;
        self.for_batches(data, batch_size, trim, |rows, logits| {
            let best = Vec::<i64>::try_from(&logits.argmax(1, false).to_device(Device::Cpu))
                .expect("int64");
            for (r, c) in rows.iter().zip(best) {
                class_ids[*r as usize] = c;
            }
            if let Some(top) = top.as_mut() {
                let (p, i) = logits.softmax(1, Kind::Float).topk(k, 1, true, true);
                let p = Vec::<f32>::try_from(&p.to_device(Device::Cpu).view([-1])).expect("f32");
                let i = Vec::<i64>::try_from(&i.to_device(Device::Cpu).view([-1])).expect("int64");
                for (j, r) in rows.iter().enumerate() {
                    top[*r as usize] = (0..k as usize)
                        .map(|t| (i[j * k as usize + t], p[j * k as usize + t]))
                        .collect();
                }
            }
        });
        Predictions {
            class_ids,
            top_k: top,
        }
    }

    /// Runs the model over length-sorted batches; `f` gets each batch's row indices and logits.
    fn for_batches(
        &self,
        data: &TokenTensors,
        batch_size: usize,
        trim: Trim,
        mut f: impl FnMut(&[i64], &Tensor),
    ) {
        let trim = match trim {
            Trim::Auto => trimming_is_exact(self.model.spec(), data.padding),
            Trim::Always => true,
            Trim::Never => false,
        };
        tch::no_grad(|| {
            for batch in data.length_sorted_batches(None, batch_size, trim) {
                let logits = self.model.forward_t(
                    &batch.ids.to_device(self.device),
                    &batch.lengths.to_device(self.device),
                    data.padding,
                    false,
                );
                f(&batch.rows, &logits);
            }
        });
    }
}

impl Predictions {
    /// Class ids (the first best score) and top-k from one model's scores.
    pub fn from_scores(
        scores: &[f32],
        probabilities: &ClassProbabilities,
        top_k: usize,
    ) -> Predictions {
        let classes = probabilities.classes.max(1);
        let class_ids = scores
            .chunks(classes)
            .map(|row| argmax(row) as i64)
            .collect();
        let top_k = (top_k > 0).then(|| {
            (0..probabilities.rows)
                .map(|r| top_classes(probabilities.row(r), top_k))
                .collect()
        });
        Predictions { class_ids, top_k }
    }
}

/// The `k` most likely classes of one row, most likely first.
fn top_classes(probabilities: &[f32], k: usize) -> Vec<(i64, f32)> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(k)
        .map(|c| (c as i64, probabilities[c]))
        .collect()
}

/// Predictions as a table: `class_id`, `label`, and with top-k `probability` and `top_k`.
pub fn predictions_table(p: &Predictions, labels: &LabelSet) -> Table {
    let name = |id: i64| -> serde_json::Value {
        match labels {
            LabelSet::Strings(v) => serde_json::Value::from(v[id as usize].clone()),
            LabelSet::Integers(v) => serde_json::Value::from(v[id as usize]),
        }
    };
    let mut columns = vec![
        Column {
            name: "class_id".into(),
            values: p.class_ids.iter().map(|&c| c.into()).collect(),
        },
        Column {
            name: "label".into(),
            values: p.class_ids.iter().map(|&c| name(c)).collect(),
        },
    ];
    if let Some(top) = &p.top_k {
        columns.push(Column {
            name: "probability".into(),
            values: top
                .iter()
                .map(|t| serde_json::Value::from(t[0].1 as f64))
                .collect(),
        });
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

#[cfg(test)]
mod tests {
    use pipe_model::Architecture;

    use super::*;

    fn pre_padded_rows() -> TokenTensors {
        // Rows of 2, 4, 1 and 3 tokens in 6 columns, padded in front.
        let ids = [
            0i64, 0, 0, 0, 4, 5, 0, 0, 6, 7, 8, 9, 0, 0, 0, 0, 0, 3, 0, 0, 0, 9, 9, 2,
        ];
        TokenTensors {
            ids: Tensor::from_slice(&ids).view([4, 6]),
            lengths: Tensor::from_slice(&[2i64, 4, 1, 3]),
            labels: None,
            padding: PaddingSide::Pre,
            pad_id: 0,
        }
    }

    #[test]
    fn pre_padded_rows_are_trimmed_when_the_model_reads_them_front_aligned() {
        let _torch = pipe_runtime::runtime::torch_global_lock();
        let spec = ModelSpec {
            architecture: Architecture::Lstm,
            pooling: Pooling::MeanMax,
            hidden_dim: 8,
            embed_dim: 8,
            ..ModelSpec::notebook(12, 0, 3)
        };
        assert!(
            spec.front_align,
            "new models read pre-padding front-aligned"
        );
        assert!(trimming_is_exact(&spec, PaddingSide::Pre));
        assert!(!trimming_is_exact(
            &ModelSpec {
                front_align: false,
                ..spec.clone()
            },
            PaddingSide::Pre
        ));
        let predictor =
            Predictor::new(&pipe_model::initialise(&spec, 3).unwrap(), Device::Cpu).unwrap();
        let data = pre_padded_rows();
        // Batches of 2 rows: the short pair is cut to 2 columns, the long to 4.
        let trimmed = predictor.logits(&data, 2, Trim::Auto);
        let whole = predictor.logits(&data, 2, Trim::Never);
        assert!(
            trimmed.allclose(&whole, 1e-5, 1e-6, false),
            "{trimmed} vs {whole}"
        );
    }
}
