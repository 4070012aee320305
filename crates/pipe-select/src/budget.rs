//! The time budget of a `select` run. Candidates are tried cheapest kind
//! first; a candidate whose training, projected from its first steps, would
//! end past the budget (its remaining validation fits included) is stopped
//! and skipped; a chosen model is refit on all rows only if the refit,
//! projected from its last fit, ends within what is left
//! ([`crate::FinalFit`]). The projections are measured on
//! the machine that runs, so the same pipeline keeps an LSTM on a GPU or a
//! fast CPU and skips it on a slow one.

use std::time::Instant;

/// A fit's progress is trusted for a projection after this share of its
/// steps and this many seconds (the first steps include warm-up).
const MIN_SHARE: f64 = 0.02;
const MIN_SECONDS: f64 = 2.0;

/// Seconds allowed since `start`, if any.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    start: Instant,
    limit: Option<f64>,
}

impl Budget {
    pub fn new(limit: Option<f64>) -> Budget {
        Budget {
            start: Instant::now(),
            limit,
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Seconds left, if limited.
    pub fn left(&self) -> Option<f64> {
        self.limit.map(|limit| limit - self.elapsed())
    }

    /// Whether nothing new should start.
    pub fn spent(&self) -> bool {
        self.limit.is_some_and(|limit| self.elapsed() >= limit)
    }

    /// Why a fit that has run `done` of `total` steps in `fit_seconds`, with
    /// `fits_after` more fits of its size to come, would end past the budget
    /// (`None` while it fits, or while too little has run to tell).
    pub fn overrun(
        &self,
        fit_seconds: f64,
        done: u64,
        total: u64,
        fits_after: f64,
    ) -> Option<String> {
        overrun(
            self.limit?,
            self.elapsed(),
            fit_seconds,
            done,
            total,
            fits_after,
        )
    }
}

/// [`Budget::overrun`] with the clock read: `elapsed` seconds since the budget began.
pub fn overrun(
    limit: f64,
    elapsed: f64,
    fit_seconds: f64,
    done: u64,
    total: u64,
    fits_after: f64,
) -> Option<String> {
    if total == 0 || (done as f64) < MIN_SHARE * total as f64 || fit_seconds < MIN_SECONDS {
        return None;
    }
    let per_fit = fit_seconds * total as f64 / done as f64;
    let needed = (per_fit - fit_seconds) + fits_after * per_fit;
    let left = limit - elapsed;
    (needed > left).then(|| format!("projected to need {needed:.0}s more ({per_fit:.0}s a fit) with {:.0}s of the budget left", left.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fit_that_ends_within_the_budget_goes_on() {
        // A tenth done in 5 s: 45 s to go, then one 50 s refit = 95 s; 100 s left.
        assert_eq!(overrun(120.0, 20.0, 5.0, 10, 100, 1.0), None);
    }

    #[test]
    fn a_fit_projected_past_the_budget_stops_with_the_numbers() {
        // The same fit with 80 s left: 95 s needed.
        let why = overrun(120.0, 40.0, 5.0, 10, 100, 1.0).unwrap();
        assert!(
            why.contains("95s more") && why.contains("50s a fit") && why.contains("80s"),
            "{why}"
        );
    }

    #[test]
    fn no_projection_from_too_little_progress() {
        assert_eq!(
            overrun(10.0, 9.0, 1.0, 50, 100, 1.0),
            None,
            "under the minimum seconds"
        );
        assert_eq!(
            overrun(10.0, 9.0, 5.0, 1, 100, 1.0),
            None,
            "under the minimum share of steps"
        );
        assert_eq!(overrun(10.0, 9.0, 5.0, 0, 0, 1.0), None, "no steps");
    }

    #[test]
    fn without_a_limit_nothing_overruns_or_is_spent() {
        let budget = Budget::new(None);
        assert!(!budget.spent());
        assert_eq!(budget.left(), None);
        assert_eq!(budget.overrun(1e9, 1, 2, 10.0), None);
        assert!(Budget::new(Some(0.0)).spent());
    }
}
