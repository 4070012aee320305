//! Step 4 of `select`: the choice between the best single candidate and a
//! greedy ensemble of them, a policy with its own tests. The ensemble wins
//! only when it mixes more than one model and its validation macro-F1 is
//! strictly higher; otherwise the first best single model is the choice.

use crate::calibrate::{self, greedy_ensemble};
use crate::scoring::Scored;

/// The weight of each scored candidate in the final model (0 for those
/// not chosen), and the ensemble that was tried, if one was.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub weights: Vec<f32>,
    pub ensemble: Option<EnsembleTried>,
}

/// The greedy ensemble's result on the validation rows.
#[derive(Debug, Clone, PartialEq)]
pub struct EnsembleTried {
    /// Candidates it mixes (weight > 0).
    pub used: usize,
    pub macro_f1: f64,
    pub log_loss: f64,
    pub weights: Vec<f32>,
}

impl EnsembleTried {
    /// Its entry in `select`'s metrics.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({ "macro_f1": self.macro_f1, "log_loss": self.log_loss, "weights": self.weights })
    }
}

impl Choice {
    /// The choice among `scored` (at least one), made by
    /// [`Choice::decide`]; `ensemble_rounds` is `None` when the ensemble is off.
    pub fn of_scored(
        scored: &[Scored],
        ensemble_rounds: Option<usize>,
        classes: usize,
        truth: &[i64],
    ) -> Choice {
        let macro_f1s: Vec<f64> = scored.iter().map(|s| s.macro_f1).collect();
        let probabilities: Vec<&[f32]> =
            scored.iter().map(|s| s.probabilities.as_slice()).collect();
        Choice::decide(&macro_f1s, &probabilities, ensemble_rounds, classes, truth)
    }

    /// The policy, over each candidate's validation macro-F1 and calibrated
    /// probabilities `[rows × classes]`.
    pub fn decide(
        macro_f1s: &[f64],
        probabilities: &[&[f32]],
        ensemble_rounds: Option<usize>,
        classes: usize,
        truth: &[i64],
    ) -> Choice {
        let best_single =
            macro_f1s
                .iter()
                .enumerate()
                .fold(0, |b, (i, &f1)| if f1 > macro_f1s[b] { i } else { b });
        let mut weights = vec![0f32; macro_f1s.len()];
        weights[best_single] = 1.0;
        let ensemble = match ensemble_rounds {
            Some(rounds) if macro_f1s.len() > 1 => {
                let greedy = greedy_ensemble(probabilities, classes, truth, rounds);
                Some(EnsembleTried {
                    used: greedy.counts.iter().filter(|&&c| c > 0).count(),
                    macro_f1: calibrate::macro_f1(&greedy.mix(probabilities), classes, truth),
                    log_loss: greedy.log_loss,
                    weights: greedy.weights(),
                })
            }
            _ => None,
        };
        if let Some(tried) = &ensemble {
            if tried.used > 1 && tried.macro_f1 > macro_f1s[best_single] {
                weights = tried.weights.clone();
            }
        }
        Choice { weights, ensemble }
    }

    /// The chosen candidates' names, in scoring order.
    pub fn chosen(&self, scored: &[Scored]) -> Vec<String> {
        scored
            .iter()
            .zip(&self.weights)
            .filter(|(_, &w)| w > 0.0)
            .map(|(s, _)| s.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes, four rows: `a` is sure and right on rows 0-1 and unsure
    /// on 2-3; `b` the other way round. Each alone gets half the rows right
    /// at best; their mix gets all four.
    fn complementary() -> (Vec<i64>, Vec<f32>, Vec<f32>) {
        let truth = vec![0, 0, 1, 1];
        let a = vec![0.95, 0.05, 0.95, 0.05, 0.55, 0.45, 0.55, 0.45];
        let b = vec![0.45, 0.55, 0.45, 0.55, 0.05, 0.95, 0.05, 0.95];
        (truth, a, b)
    }

    #[test]
    fn a_mix_of_two_that_scores_higher_is_chosen() {
        let (truth, a, b) = complementary();
        let f1 = |p: &[f32]| calibrate::macro_f1(p, 2, &truth);
        let choice = Choice::decide(&[f1(&a), f1(&b)], &[&a, &b], Some(10), 2, &truth);
        let tried = choice.ensemble.as_ref().expect("tried");
        assert_eq!(tried.used, 2);
        assert!(tried.macro_f1 > f1(&a).max(f1(&b)), "{tried:?}");
        assert_eq!(choice.weights, tried.weights);
        assert!(
            choice.weights.iter().all(|&w| w > 0.0),
            "{:?}",
            choice.weights
        );
    }

    #[test]
    fn without_the_ensemble_the_first_best_single_model_is_chosen() {
        let (truth, a, b) = complementary();
        let choice = Choice::decide(&[0.5, 0.5], &[&a, &b], None, 2, &truth);
        assert_eq!(
            choice,
            Choice {
                weights: vec![1.0, 0.0],
                ensemble: None
            }
        );
        let choice = Choice::decide(&[0.4, 0.6], &[&a, &b], None, 2, &truth);
        assert_eq!(choice.weights, vec![0.0, 1.0]);
    }

    #[test]
    fn an_ensemble_of_one_model_or_no_better_loses_to_the_single_model() {
        let truth = vec![0, 1, 0, 1];
        let right = vec![0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.9];
        let worse = vec![0.6, 0.4, 0.6, 0.4, 0.6, 0.4, 0.6, 0.4];
        let f1 = |p: &[f32]| calibrate::macro_f1(p, 2, &truth);
        let choice = Choice::decide(
            &[f1(&right), f1(&worse)],
            &[&right, &worse],
            Some(10),
            2,
            &truth,
        );
        assert_eq!(choice.weights, vec![1.0, 0.0], "{:?}", choice.ensemble);
        // A single candidate: nothing to mix.
        assert_eq!(
            Choice::decide(&[f1(&right)], &[&right], Some(10), 2, &truth).ensemble,
            None
        );
    }
}
