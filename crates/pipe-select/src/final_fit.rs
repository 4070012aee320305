//! Whether a model `select` chose is fitted again on all rows or kept as
//! its validation fit left it: a policy with its own tests.

/// How a chosen model joins the final one: fitted again on all rows, or
/// kept as its last validation fit left it, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum FinalFit {
    Refit,
    Kept(String),
}

impl FinalFit {
    /// The policy. After folds every model is refit (no fit saw all rows);
    /// after a hold-out only when `refit` is on. Either way a refit must add
    /// rows (a `max_rows` cap the training part already filled would train
    /// on as many again) and, projected from the last fit's seconds in
    /// proportion to the rows, end within the `budget_left`; heavier models
    /// are decided first.
    pub fn decide(
        refit: bool,
        folds: bool,
        rows: usize,
        last_fit: (usize, f64),
        cap: Option<usize>,
        budget_left: Option<f64>,
    ) -> FinalFit {
        let fitted = |n: usize| cap.map_or(n, |cap| n.min(cap));
        let (last_rows, last_seconds) = last_fit;
        if !folds && !refit {
            return FinalFit::Kept("refit is off".into());
        }
        if fitted(rows) <= fitted(last_rows) {
            return FinalFit::Kept(format!(
                "it already trained on its max_rows cap of {} rows",
                fitted(last_rows)
            ));
        }
        let projected = last_seconds * fitted(rows) as f64 / fitted(last_rows).max(1) as f64;
        match budget_left {
            Some(left) if projected > left => {
                FinalFit::Kept(format!("a refit, projected at {projected:.0}s, would end past the time budget ({:.0}s left)", left.max(0.0)))
            }
            _ => FinalFit::Refit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refit_must_add_rows_and_end_within_the_budget() {
        let kept = |d: FinalFit| match d {
            FinalFit::Kept(why) => why,
            FinalFit::Refit => panic!("refit"),
        };
        // A hold-out's 800 rows of 1000 fitted in 8 s: a refit projects to 10 s.
        assert_eq!(
            FinalFit::decide(true, false, 1000, (800, 8.0), None, None),
            FinalFit::Refit
        );
        assert_eq!(
            FinalFit::decide(true, false, 1000, (800, 8.0), None, Some(10.5)),
            FinalFit::Refit
        );
        let why = kept(FinalFit::decide(
            true,
            false,
            1000,
            (800, 8.0),
            None,
            Some(9.0),
        ));
        assert!(
            why.contains("projected at 10s") && why.contains("9s left"),
            "{why}"
        );
        assert_eq!(
            kept(FinalFit::decide(false, false, 1000, (800, 8.0), None, None)),
            "refit is off"
        );
        // Folds refit whatever `refit` says.
        assert_eq!(
            FinalFit::decide(false, true, 900, (600, 6.0), None, None),
            FinalFit::Refit
        );
        // A cap of 500 rows is filled by 800 training rows: a refit would add none.
        let why = kept(FinalFit::decide(
            true,
            false,
            1000,
            (800, 8.0),
            Some(500),
            None,
        ));
        assert!(why.contains("max_rows cap of 500 rows"), "{why}");
        // A cap of 900: the refit trains on 900 rows, not 1000 (9 s).
        assert_eq!(
            FinalFit::decide(true, false, 1000, (800, 8.0), Some(900), Some(9.5)),
            FinalFit::Refit
        );
        assert!(matches!(
            FinalFit::decide(true, false, 1000, (800, 8.0), Some(900), Some(8.5)),
            FinalFit::Kept(_)
        ));
    }
}
