//! The learning-rate schedule: what the step size is at each optimizer step.

use serde::{Deserialize, Serialize};

/// The `schedule` setting of a `train` stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `lr` at every step (the notebook).
    #[default]
    Constant,
    /// Linear warm-up over `warmup_epochs`, then cosine decay to zero.
    Cosine,
}

/// The `lr_reference_steps` policy: `lr` was tuned where an epoch had this
/// many optimizer steps. Smaller data gives fewer steps an epoch, so the same
/// epochs move the weights less far and stop short; the rate then rises by
/// sqrt(reference / steps), at most [`SmallDataLr::MAX_FACTOR`] times (and
/// never past 1). More steps than the reference leave `lr` as it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmallDataLr {
    pub reference_steps: usize,
}

impl SmallDataLr {
    pub const MAX_FACTOR: f64 = 3.0;

    /// The rate to use for `lr` when an epoch has `steps_per_epoch` steps.
    pub fn scale(&self, lr: f64, steps_per_epoch: usize) -> f64 {
        let factor = (self.reference_steps as f64 / steps_per_epoch.max(1) as f64)
            .sqrt()
            .clamp(1.0, Self::MAX_FACTOR);
        // `lr` itself is at most 1 (`Train::validate`).
        (lr * factor).min(1.0)
    }
}

/// A schedule laid out over a run's steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub schedule: Schedule,
    /// The peak (and, constant, the only) rate.
    pub lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// `schedule` over `epochs` of `steps_per_epoch`, warming up for `warmup_epochs` (rounded to steps).
    pub fn new(
        schedule: Schedule,
        lr: f64,
        warmup_epochs: f64,
        steps_per_epoch: usize,
        epochs: usize,
    ) -> LrSchedule {
        LrSchedule {
            schedule,
            lr,
            warmup_steps: (warmup_epochs * steps_per_epoch as f64).round() as u64,
            total_steps: (steps_per_epoch * epochs) as u64,
        }
    }

    /// The rate for step `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                if step < self.warmup_steps {
                    self.lr * (step + 1) as f64 / self.warmup_steps as f64
                } else {
                    let progress = (step - self.warmup_steps) as f64
                        / (self.total_steps - self.warmup_steps).max(1) as f64;
                    self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_data_raises_lr_by_the_square_root_of_the_missing_steps() {
        let rule = SmallDataLr {
            reference_steps: 240,
        };
        assert_eq!(rule.scale(0.006, 240), 0.006, "at the reference");
        assert_eq!(
            rule.scale(0.006, 960),
            0.006,
            "more data is never scaled down"
        );
        assert!(
            (rule.scale(0.006, 60) - 0.012).abs() < 1e-12,
            "a quarter of the steps: twice the rate"
        );
        assert!(
            (rule.scale(0.006, 1) - 0.018).abs() < 1e-12,
            "at most three times"
        );
        assert!(
            (rule.scale(0.006, 0) - 0.018).abs() < 1e-12,
            "no steps is the smallest data"
        );
        assert_eq!(rule.scale(0.5, 1), 1.0, "never past 1");
    }

    #[test]
    fn constant_is_lr_at_every_step() {
        let s = LrSchedule::new(Schedule::Constant, 0.01, 1.0, 10, 3);
        assert!((0..30).all(|step| s.at(step) == 0.01));
    }

    #[test]
    fn cosine_warms_up_linearly_then_decays_to_zero() {
        let s = LrSchedule::new(Schedule::Cosine, 0.1, 0.5, 10, 4);
        assert_eq!((s.warmup_steps, s.total_steps), (5, 40));
        let rates: Vec<f64> = (0..40).map(|step| s.at(step)).collect();
        for (step, rate) in rates.iter().take(5).enumerate() {
            assert!(
                (rate - 0.1 * (step + 1) as f64 / 5.0).abs() < 1e-12,
                "warm-up step {step}: {rate}"
            );
        }
        assert_eq!(rates[5], 0.1, "the peak right after warm-up");
        assert!(
            rates[5..].windows(2).all(|w| w[1] < w[0]),
            "strictly decreasing after warm-up"
        );
        assert!(
            rates[39] > 0.0 && rates[39] < 0.1 * 0.01,
            "near zero at the end: {}",
            rates[39]
        );
    }

    #[test]
    fn cosine_without_warm_up_starts_at_the_peak() {
        let s = LrSchedule::new(Schedule::Cosine, 0.2, 0.0, 7, 2);
        assert_eq!(s.at(0), 0.2);
        assert!(
            (s.at(7) - 0.1).abs() < 0.02,
            "half-way is about half: {}",
            s.at(7)
        );
    }
}
