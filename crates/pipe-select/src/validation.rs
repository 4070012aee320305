//! How `select` scores candidates out of sample: the validation policy and
//! the plan of (train rows, validation rows) it makes for a seed.

use pipe_data::split::{stratified_folds, stratified_split, Rng};
use serde::{Deserialize, Serialize};

/// How candidates are scored out of sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// Three stratified folds below 10,000 rows (every row is scored once,
    /// which small data needs), else a stratified 20% hold-out.
    #[default]
    Auto,
    /// A stratified hold-out of this fraction of the rows.
    Holdout(f64),
    /// Stratified k-fold: each row scored by a model that did not see it.
    Folds(usize),
}

impl Validation {
    /// Below this many rows `auto` uses folds.
    pub const AUTO_FOLDS_BELOW: usize = 10_000;

    /// (train rows, validation rows) for each fit.
    pub fn plan(&self, labels: &[i64], seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
        let mut rng = Rng::new(seed ^ 0x5e1ec7);
        match *self {
            Validation::Auto if labels.len() < Self::AUTO_FOLDS_BELOW => {
                Validation::Folds(3).plan(labels, seed)
            }
            Validation::Auto => Validation::Holdout(0.2).plan(labels, seed),
            Validation::Holdout(fraction) => vec![stratified_split(labels, fraction, &mut rng)],
            Validation::Folds(k) => {
                let folds = stratified_folds(labels, k, &mut rng);
                (0..k)
                    .map(|f| {
                        let mut train: Vec<usize> = folds
                            .iter()
                            .enumerate()
                            .filter(|(g, _)| *g != f)
                            .flat_map(|(_, rows)| rows.iter().copied())
                            .collect();
                        train.sort_unstable();
                        (train, folds[f].clone())
                    })
                    .collect()
            }
        }
    }

    /// How the plan reads in a log line and the report.
    pub fn describe(&self, rows: usize) -> String {
        match *self {
            Validation::Auto if rows < Self::AUTO_FOLDS_BELOW => "3 stratified folds".into(),
            Validation::Auto => "a stratified 20% hold-out".into(),
            Validation::Holdout(f) => format!("a stratified {:.0}% hold-out", f * 100.0),
            Validation::Folds(k) => format!("{k} stratified folds"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_partition_the_rows_and_keep_each_class_share() {
        let labels: Vec<i64> = (0..90).map(|i| if i < 60 { 0 } else { 1 }).collect();
        let plan = Validation::Folds(3).plan(&labels, 7);
        let mut seen: Vec<usize> = plan.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..90).collect::<Vec<_>>(),
            "each row is scored exactly once"
        );
        for (train, val) in &plan {
            assert_eq!(train.len() + val.len(), 90);
            assert!(train.iter().all(|r| !val.contains(r)));
            assert_eq!(
                val.iter().filter(|&&r| labels[r] == 1).count(),
                10,
                "a third of class 1 per fold"
            );
        }
    }

    #[test]
    fn auto_validation_uses_folds_for_small_data_and_a_holdout_for_large() {
        let small: Vec<i64> = (0..300).map(|i| i % 3).collect();
        assert_eq!(Validation::Auto.plan(&small, 1).len(), 3);
        let large: Vec<i64> = (0..Validation::AUTO_FOLDS_BELOW as i64)
            .map(|i| i % 3)
            .collect();
        let plan = Validation::Auto.plan(&large, 1);
        assert_eq!(plan.len(), 1);
        // 20% of each class, rounded per class.
        assert!(
            plan[0].1.len().abs_diff(Validation::AUTO_FOLDS_BELOW / 5) <= 3,
            "{}",
            plan[0].1.len()
        );
    }
}
