//! Which epoch's weights training returns: the best validated epoch by the
//! monitored metric, kept as it happens.

use serde::{Deserialize, Serialize};

/// The validation metric that decides the best epoch (and early stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    #[default]
    MacroF1,
    Accuracy,
    Loss,
}

/// One validation pass: weighted loss, accuracy and macro-F1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    pub loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
}

impl Monitor {
    /// The score to maximise (a loss counts negated).
    pub fn score(self, v: &Validation) -> f64 {
        match self {
            Monitor::MacroF1 => v.macro_f1,
            Monitor::Accuracy => v.accuracy,
            Monitor::Loss => -v.loss,
        }
    }
}

/// The best epoch so far and a copy of its weights (`T`: a checkpoint).
#[derive(Debug)]
pub struct BestEpoch<T> {
    best: Option<(f64, usize, T)>,
}

impl<T> Default for BestEpoch<T> {
    fn default() -> Self {
        BestEpoch { best: None }
    }
}

impl<T> BestEpoch<T> {
    /// Offers epoch `epoch`'s score; when it beats every earlier one (ties
    /// keep the earlier epoch), `snapshot` copies its weights. Returns
    /// whether it did.
    pub fn offer(&mut self, score: f64, epoch: usize, snapshot: impl FnOnce() -> T) -> bool {
        let improved = self.best.as_ref().is_none_or(|(best, _, _)| score > *best);
        if improved {
            self.best = Some((score, epoch, snapshot()));
        }
        improved
    }

    /// The best epoch and its weights, if any epoch was validated.
    pub fn into_best(self) -> Option<(usize, T)> {
        self.best.map(|(_, epoch, weights)| (epoch, weights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_score_and_the_earlier_of_ties() {
        let mut best = BestEpoch::default();
        let offers = [(0.5, 1), (0.7, 2), (0.7, 3), (0.6, 4)];
        let improved: Vec<bool> = offers
            .iter()
            .map(|&(score, epoch)| best.offer(score, epoch, || format!("weights of {epoch}")))
            .collect();
        assert_eq!(improved, [true, true, false, false]);
        assert_eq!(best.into_best(), Some((2, "weights of 2".to_string())));
    }

    #[test]
    fn copies_weights_only_on_improvement() {
        let mut best = BestEpoch::default();
        let mut copies = 0;
        for (epoch, score) in [0.3, 0.2, 0.1, 0.4].into_iter().enumerate() {
            best.offer(score, epoch + 1, || copies += 1);
        }
        assert_eq!(copies, 2);
    }

    #[test]
    fn nothing_validated_means_no_best_epoch() {
        assert!(BestEpoch::<()>::default().into_best().is_none());
    }

    #[test]
    fn a_lower_loss_is_a_better_score() {
        let v = |loss| Validation {
            loss,
            accuracy: 0.5,
            macro_f1: 0.5,
        };
        assert!(Monitor::Loss.score(&v(0.1)) > Monitor::Loss.score(&v(0.2)));
        assert_eq!(
            Monitor::MacroF1.score(&Validation {
                loss: 1.0,
                accuracy: 0.2,
                macro_f1: 0.9
            }),
            0.9
        );
        assert_eq!(
            Monitor::Accuracy.score(&Validation {
                loss: 1.0,
                accuracy: 0.2,
                macro_f1: 0.9
            }),
            0.2
        );
    }
}
