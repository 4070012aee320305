//! Classification metrics, computed as scikit-learn does (`f1_score(average="macro")`
//! over the labels present in the truth or the predictions, zero when undefined).

use serde::Serialize;

/// Counts of (true class, predicted class) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    pub classes: usize,
    /// Row-major: `counts[truth * classes + predicted]`.
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl Confusion {
    /// Panics if a label is outside `0..classes` (callers check ranges first).
    pub fn new(truth: &[i64], predicted: &[i64], classes: usize) -> Confusion {
        assert_eq!(
            truth.len(),
            predicted.len(),
            "truth and predictions differ in length"
        );
        let mut counts = vec![0u64; classes * classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            counts[t as usize * classes + p as usize] += 1;
        }
        Confusion { classes, counts }
    }

    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.classes).map(|c| self.get(c, c)).sum();
        ratio(correct, self.total())
    }

    pub fn per_class(&self) -> Vec<ClassScores> {
        (0..self.classes)
            .map(|c| {
                let tp = self.get(c, c);
                let support: u64 = (0..self.classes).map(|p| self.get(c, p)).sum();
                let predicted: u64 = (0..self.classes).map(|t| self.get(t, c)).sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores {
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// Mean F1 over the classes that occur in the truth or the predictions.
    pub fn macro_f1(&self) -> f64 {
        let scores = self.per_class();
        let present: Vec<f64> = (0..self.classes)
            .filter(|&c| scores[c].support > 0 || (0..self.classes).any(|t| self.get(t, c) > 0))
            .map(|c| scores[c].f1)
            .collect();
        if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Mean and sample standard deviation (none below two values) of the values present.
pub fn mean_sd(values: impl Iterator<Item = Option<f64>>) -> (Option<f64>, Option<f64>) {
    let v: Vec<f64> = values.flatten().collect();
    if v.is_empty() {
        return (None, None);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt());
    (Some(mean), sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sklearn_on_a_hand_checked_case() {
        // Checked by hand (and against sklearn.metrics): 4 of 6 right;
        // y_true = [0, 0, 1, 1, 2, 2], y_pred = [0, 1, 1, 1, 0, 2]
        let c = Confusion::new(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 0, 2], 4);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        // class 0: p=1/2 r=1/2 f1=.5; class 1: p=2/3 r=1 f1=.8; class 2: p=1 r=1/2 f1=2/3; class 3 absent
        let expected = (0.5 + 0.8 + 2.0 / 3.0) / 3.0;
        assert!((c.macro_f1() - expected).abs() < 1e-12, "{}", c.macro_f1());
        assert_eq!(c.per_class()[1].support, 2);
    }
}
