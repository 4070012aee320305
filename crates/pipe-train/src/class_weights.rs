//! How the loss weighs each class: the notebook's inverse frequencies, a
//! milder square root of them, or none.

use serde::{Deserialize, Serialize};

/// The `class_weights` setting of a `train` stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeighting {
    /// total / count per class, a zero count counted as 1 (the notebook).
    #[default]
    InverseFrequency,
    /// sqrt of the above: a milder correction.
    SqrtInverseFrequency,
    None,
}

/// The notebook's class weights: total / bincount(y, minlength = classes), zeros as 1.
pub fn class_weights(labels: &[i64], classes: usize, weighting: ClassWeighting) -> Vec<f32> {
    let mut counts = vec![0u64; classes];
    for &y in labels {
        counts[y as usize] += 1;
    }
    let total = labels.len() as f64;
    counts
        .iter()
        .map(|&c| {
            let w = total / c.max(1) as f64;
            match weighting {
                ClassWeighting::InverseFrequency => w as f32,
                ClassWeighting::SqrtInverseFrequency => w.sqrt() as f32,
                ClassWeighting::None => 1.0,
            }
        })
        .collect()
}
