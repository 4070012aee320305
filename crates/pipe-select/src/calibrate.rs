//! The two policies `select` applies to validation scores:
//!
//! - [`fit_temperature`]: one temperature per model so that
//!   `softmax(scores / T)` are honest probabilities (Guo et al., 2017). An
//!   SVM's margins and an LSTM's logits live on different scales; averaging
//!   them raw would let the sharper model outvote the better one.
//! - [`greedy_ensemble`]: Caruana et al.'s (2004) forward selection with
//!   replacement: repeatedly add the model whose addition most lowers the
//!   ensemble's log-loss, so weights are counts and a weak model gets none.

use pipe_eval::Confusion;

/// Row-wise softmax of `scores / temperature`.
pub fn probabilities(scores: &[f32], classes: usize, temperature: f32) -> Vec<f32> {
    let scaled: Vec<f32> = scores.iter().map(|s| s / temperature).collect();
    pipe_predict::softmax_rows(&scaled, classes)
}

/// Mean negative log-likelihood of the true labels under `probabilities`.
pub fn log_loss(probabilities: &[f32], classes: usize, truth: &[i64]) -> f64 {
    let total: f64 = truth
        .iter()
        .enumerate()
        .map(|(r, &y)| -(probabilities[r * classes + y as usize].max(1e-12) as f64).ln())
        .sum();
    total / truth.len().max(1) as f64
}

/// Macro-F1 of each row's most probable class, as scikit-learn computes it.
pub fn macro_f1(probabilities: &[f32], classes: usize, truth: &[i64]) -> f64 {
    let predicted: Vec<i64> = probabilities
        .chunks(classes)
        .map(|row| pipe_predict::argmax(row) as i64)
        .collect();
    Confusion::new(truth, &predicted, classes).macro_f1()
}

/// The temperature in [0.01, 100] minimising the log-loss of `softmax(scores / T)`
/// (golden-section search on ln T; the loss is unimodal in T for fixed scores).
pub fn fit_temperature(scores: &[f32], classes: usize, truth: &[i64]) -> f32 {
    let loss = |ln_t: f64| {
        log_loss(
            &probabilities(scores, classes, ln_t.exp() as f32),
            classes,
            truth,
        )
    };
    let (mut lo, mut hi) = (0.01f64.ln(), 100f64.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (hi - ratio * (hi - lo), lo + ratio * (hi - lo));
    let (mut fa, mut fb) = (loss(a), loss(b));
    for _ in 0..40 {
        if fa < fb {
            hi = b;
            (b, fb) = (a, fa);
            a = hi - ratio * (hi - lo);
            fa = loss(a);
        } else {
            lo = a;
            (a, fa) = (b, fb);
            b = lo + ratio * (hi - lo);
            fb = loss(b);
        }
    }
    ((lo + hi) / 2.0).exp() as f32
}

/// How many times each model was picked (its weight is count / rounds).
#[derive(Debug, Clone, PartialEq)]
pub struct EnsembleChoice {
    pub counts: Vec<usize>,
    pub log_loss: f64,
}

impl EnsembleChoice {
    pub fn weights(&self) -> Vec<f32> {
        let total: usize = self.counts.iter().sum();
        self.counts
            .iter()
            .map(|&c| c as f32 / total.max(1) as f32)
            .collect()
    }

    /// The weighted mean of the models' probabilities.
    pub fn mix(&self, models: &[&[f32]]) -> Vec<f32> {
        mix(models, &self.weights())
    }
}

/// The weighted mean of probability matrices of equal shape.
pub fn mix(models: &[&[f32]], weights: &[f32]) -> Vec<f32> {
    let len = models.first().map_or(0, |m| m.len());
    let mut out = vec![0f32; len];
    for (m, &w) in models.iter().zip(weights) {
        if w != 0.0 {
            out.iter_mut().zip(m.iter()).for_each(|(o, p)| *o += w * p);
        }
    }
    out
}

/// Forward selection with replacement over calibrated validation
/// probabilities: up to `rounds` picks, stopping when no pick lowers the
/// log-loss. Ties go to the earlier model.
pub fn greedy_ensemble(
    models: &[&[f32]],
    classes: usize,
    truth: &[i64],
    rounds: usize,
) -> EnsembleChoice {
    let mut counts = vec![0usize; models.len()];
    let mut sum = vec![0f32; models.first().map_or(0, |m| m.len())];
    let mut best_loss = f64::INFINITY;
    for round in 1..=rounds {
        let trial = |m: &[f32]| -> f64 {
            let mixed: Vec<f32> = sum
                .iter()
                .zip(m)
                .map(|(s, p)| (s + p) / round as f32)
                .collect();
            log_loss(&mixed, classes, truth)
        };
        let (pick, loss) = models
            .iter()
            .enumerate()
            .map(|(i, m)| (i, trial(m)))
            .fold((0, f64::INFINITY), |b, c| if c.1 < b.1 { c } else { b });
        if loss >= best_loss - 1e-9 {
            break;
        }
        best_loss = loss;
        counts[pick] += 1;
        sum.iter_mut()
            .zip(models[pick].iter())
            .for_each(|(s, p)| *s += p);
    }
    EnsembleChoice {
        counts,
        log_loss: best_loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores that rank the truth first on most rows, scaled by `sharpness`.
    fn scores(truth: &[i64], classes: usize, sharpness: f32, wrong_every: usize) -> Vec<f32> {
        let mut s = vec![0f32; truth.len() * classes];
        for (r, &y) in truth.iter().enumerate() {
            let top = if wrong_every > 0 && r % wrong_every == 0 {
                (y as usize + 1) % classes
            } else {
                y as usize
            };
            s[r * classes + top] = sharpness;
        }
        s
    }

    #[test]
    fn temperature_undoes_a_scale_and_lowers_the_loss() {
        let truth: Vec<i64> = (0..400).map(|i| i % 4).collect();
        // Correct 3 rows in 4; overconfident scores need T > 1.
        let sharp = scores(&truth, 4, 20.0, 4);
        let t = fit_temperature(&sharp, 4, &truth);
        assert!(t > 2.0, "temperature {t}");
        let before = log_loss(&probabilities(&sharp, 4, 1.0), 4, &truth);
        let after = log_loss(&probabilities(&sharp, 4, t), 4, &truth);
        assert!(after < before * 0.5, "{before} -> {after}");
        // The same scores at a tenth of the scale get a tenth of the temperature.
        let flat: Vec<f32> = sharp.iter().map(|s| s / 10.0).collect();
        let t_flat = fit_temperature(&flat, 4, &truth);
        assert!((t / t_flat - 10.0).abs() < 0.1, "{t} vs {t_flat}");
    }

    #[test]
    fn greedy_ensemble_gives_no_weight_to_a_useless_model() {
        let truth: Vec<i64> = (0..300).map(|i| i % 3).collect();
        let good = probabilities(&scores(&truth, 3, 2.0, 5), 3, 1.0);
        let noise = vec![1.0f32 / 3.0; truth.len() * 3];
        let choice = greedy_ensemble(&[&noise, &good], 3, &truth, 10);
        assert_eq!(choice.counts[0], 0, "{choice:?}");
        assert!(choice.counts[1] > 0);
        assert_eq!(choice.weights(), vec![0.0, 1.0]);
    }

    #[test]
    fn greedy_ensemble_mixes_models_that_err_on_different_rows() {
        let truth: Vec<i64> = (0..300).map(|i| i % 3).collect();
        // One is wrong on rows 0, 4, 8…; the other on rows 2, 6, 10…: together right everywhere.
        let a = probabilities(&scores(&truth, 3, 3.0, 4), 3, 1.0);
        let shifted: Vec<i64> = truth
            .iter()
            .enumerate()
            .map(|(r, &y)| if r % 4 == 2 { (y + 1) % 3 } else { y })
            .collect();
        let b = probabilities(&scores(&shifted, 3, 3.0, 0), 3, 1.0);
        let choice = greedy_ensemble(&[&a, &b], 3, &truth, 10);
        assert!(choice.counts.iter().all(|&c| c > 0), "{choice:?}");
        let mixed = choice.mix(&[&a, &b]);
        assert!(macro_f1(&mixed, 3, &truth) > macro_f1(&a, 3, &truth).max(macro_f1(&b, 3, &truth)));
    }
}
