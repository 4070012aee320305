//! Complement naive Bayes (Rennie et al., ICML 2003), as scikit-learn's
//! `ComplementNB(norm=False)`: each class is scored by how unlike the
//! *other* classes' text a row is, which holds up on unbalanced classes where
//! plain multinomial naive Bayes favours the large ones.
//!
//! For class c and feature j, with `n[c][j]` the sum of feature j over the
//! rows of c and α the additive smoothing:
//!
//! - complement count `q[c][j] = Σ_c' n[c'][j] + α − n[c][j]`
//! - weight `w[c][j] = −ln(q[c][j] / Σ_j q[c][j])`
//!
//! and a row's score for c is `Σ_j x[j] · w[c][j]`. That is a linear scorer
//! fitted in one pass over the rows, with errors unlike the SVM's: what makes
//! it worth a place in an ensemble beside one.

use crate::features::SparseRows;
use crate::{check_labels, LinearError, LinearWeights};

/// Score of a class with no training rows. Trained classes never score
/// below 0 (non-negative features times `−ln` of a probability), so this
/// ranks such a class last for every row while keeping scores finite for
/// calibration.
const UNSEEN_CLASS_SCORE: f32 = -1.0;

/// Fits the per-class weights on `x` (rows of non-negative values over
/// `features` columns) and labels `y` in `0..classes`, with smoothing `alpha > 0`.
pub fn fit(
    x: &SparseRows,
    features: usize,
    y: &[i64],
    classes: usize,
    alpha: f64,
) -> Result<LinearWeights, LinearError> {
    check_labels(x, y, classes)?;
    // ln(0) for a feature no other class has would make scores infinite.
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(LinearError::BadSmoothing(alpha));
    }
    let mut rows_of_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (row, &label) in y.iter().enumerate() {
        rows_of_class[label as usize].push(row);
    }
    let all = column_sums(x, features, 0..x.rows());
    let all_total: f64 = all.iter().sum();
    let mut out = LinearWeights {
        weights: Vec::with_capacity(classes * features),
        intercepts: Vec::with_capacity(classes),
        features,
    };
    for rows in &rows_of_class {
        if rows.is_empty() {
            out.weights.extend(std::iter::repeat_n(0.0, features));
            out.intercepts.push(UNSEEN_CLASS_SCORE);
            continue;
        }
        let own = column_sums(x, features, rows.iter().copied());
        let complement_total = all_total + alpha * features as f64 - own.iter().sum::<f64>();
        // max(0): the two sums add in different orders, so a - o may round below 0.
        out.weights.extend(
            all.iter()
                .zip(&own)
                .map(|(&a, &o)| -(((a - o).max(0.0) + alpha) / complement_total).ln() as f32),
        );
        out.intercepts.push(0.0);
    }
    Ok(out)
}

/// Each column's sum over `rows` of `x`.
fn column_sums(x: &SparseRows, features: usize, rows: impl Iterator<Item = usize>) -> Vec<f64> {
    let mut sums = vec![0f64; features];
    for r in rows {
        let (cols, vals) = x.row(r);
        for (&c, &v) in cols.iter().zip(vals) {
            sums[c as usize] += v as f64;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(dense: &[&[f32]]) -> SparseRows {
        SparseRows::from_dense(dense)
    }

    #[test]
    fn weights_are_minus_log_complement_frequencies() {
        // Class 0 uses feature 0, class 1 features 1 and 2.
        let x = rows(&[&[2.0, 0.0, 0.0], &[1.0, 1.0, 0.0], &[0.0, 3.0, 1.0]]);
        let w = fit(&x, 3, &[0, 0, 1], 2, 0.5).unwrap();
        // Class 0's complement is class 1's counts [0, 3, 1] + α.
        let q0 = [0.5, 3.5, 1.5];
        // Class 1's complement is class 0's counts [3, 1, 0] + α.
        let q1 = [3.5, 1.5, 0.5];
        let expected: Vec<f32> = [q0, q1]
            .iter()
            .flat_map(|q| q.iter().map(|v| -(v / q.iter().sum::<f64>()).ln() as f32))
            .collect();
        for (got, want) in w.weights.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-6, "{:?} vs {expected:?}", w.weights);
        }
        assert_eq!(w.intercepts, vec![0.0, 0.0]);
        // A row of feature 0 alone is class 0's; of feature 2 alone, class 1's.
        assert!(w.decision((&[0], &[1.0]))[0] > w.decision((&[0], &[1.0]))[1]);
        assert!(w.decision((&[2], &[1.0]))[1] > w.decision((&[2], &[1.0]))[0]);
    }

    #[test]
    fn a_class_without_rows_ranks_last_with_finite_scores() {
        let x = rows(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let w = fit(&x, 2, &[0, 2], 3, 1.0).unwrap();
        for row in [(&[0u32][..], &[1.0f32][..]), (&[1], &[1.0]), (&[], &[])] {
            let scores = w.decision(row);
            assert!(scores.iter().all(|s| s.is_finite()), "{scores:?}");
            assert!(scores[1] < scores[0] && scores[1] < scores[2], "{scores:?}");
        }
    }

    #[test]
    fn bad_labels_and_smoothing_are_refused() {
        let x = rows(&[&[1.0]]);
        assert!(matches!(
            fit(&x, 1, &[3], 2, 1.0),
            Err(LinearError::LabelOutOfRange { .. })
        ));
        assert!(matches!(
            fit(&x, 1, &[0, 1], 2, 1.0),
            Err(LinearError::LengthMismatch { .. })
        ));
        assert!(matches!(
            fit(&rows(&[]), 1, &[], 2, 1.0),
            Err(LinearError::NoRows)
        ));
        for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    fit(&x, 1, &[0], 2, alpha),
                    Err(LinearError::BadSmoothing(_))
                ),
                "alpha {alpha}"
            );
        }
    }
}
