//! One-vs-rest linear SVMs with the squared hinge loss and L2
//! regularisation, trained in the dual by coordinate descent with shrinking:
//! liblinear's `solve_l2r_l1l2_svc` (Hsieh et al., ICML 2008), the solver
//! behind scikit-learn's `LinearSVC`. The intercept is a constant feature of
//! value 1, regularised like the others, as `LinearSVC(intercept_scaling=1)`.
//!
//! For class k, rows of class k are positive with cost C·weight\[k\] and all
//! others negative with cost C, as liblinear's one-vs-rest does.

use serde::{Deserialize, Serialize};

use crate::features::SparseRows;
use crate::{check_labels, LinearError, LinearWeights};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every class weighs 1.
    None,
    /// n / (classes · count of the class), as scikit-learn's `"balanced"`.
    #[default]
    Balanced,
}

/// Solver settings (scikit-learn's `LinearSVC` defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SvmConfig {
    pub c: f64,
    pub class_weight: ClassWeight,
    /// Stop when the projected gradients' range is at most this.
    pub tol: f64,
    pub max_iter: usize,
    pub seed: u64,
    /// Classes trained at once.
    pub threads: usize,
}

impl Default for SvmConfig {
    fn default() -> Self {
        SvmConfig {
            c: 1.0,
            class_weight: ClassWeight::Balanced,
            tol: 1e-4,
            max_iter: 1000,
            seed: 0,
            threads: 1,
        }
    }
}

/// How one class's problem ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convergence {
    pub iterations: usize,
    pub converged: bool,
}

/// Fits one SVM per class on `x` (rows of `features` columns) and labels
/// `y` in `0..classes`.
pub fn fit(
    x: &SparseRows,
    features: usize,
    y: &[i64],
    classes: usize,
    config: SvmConfig,
) -> Result<(LinearWeights, Vec<Convergence>), LinearError> {
    check_labels(x, y, classes)?;
    let weights = class_weights(y, classes, config.class_weight);
    let sq_norms: Vec<f64> = (0..x.rows())
        .map(|r| x.row(r).1.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() + 1.0)
        .collect();
    let solve = |k: usize| {
        let positive: Vec<bool> = y.iter().map(|&l| l as usize == k).collect();
        let problem = Binary {
            x,
            features,
            sq_norms: &sq_norms,
            positive: &positive,
        };
        problem.solve(
            config.c * weights[k],
            config.c,
            config,
            config.seed.wrapping_add(k as u64),
        )
    };
    let results = map_classes(classes, config.threads.max(1), solve);
    let mut svm = LinearWeights {
        weights: Vec::with_capacity(classes * features),
        intercepts: Vec::with_capacity(classes),
        features,
    };
    let mut convergence = Vec::with_capacity(classes);
    for (w, c) in results {
        svm.weights.extend(w[..features].iter().map(|&v| v as f32));
        svm.intercepts.push(w[features] as f32);
        convergence.push(c);
    }
    Ok((svm, convergence))
}

fn class_weights(y: &[i64], classes: usize, weight: ClassWeight) -> Vec<f64> {
    match weight {
        ClassWeight::None => vec![1.0; classes],
        ClassWeight::Balanced => {
            let mut counts = vec![0usize; classes];
            for &l in y {
                counts[l as usize] += 1;
            }
            // A class with no rows has no positive examples: its weight is never used.
            counts
                .iter()
                .map(|&n| {
                    if n == 0 {
                        1.0
                    } else {
                        y.len() as f64 / (classes as f64 * n as f64)
                    }
                })
                .collect()
        }
    }
}

/// Runs `solve` for every class on up to `threads` threads, results in class order.
fn map_classes<T: Send>(
    classes: usize,
    threads: usize,
    solve: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(classes))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if k >= classes {
                            return done;
                        }
                        done.push((k, solve(k)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results.sort_by_key(|(k, _)| *k);
    results.into_iter().map(|(_, r)| r).collect()
}

/// One class against the rest.
struct Binary<'a> {
    x: &'a SparseRows,
    features: usize,
    /// ‖x_i‖² including the intercept's constant 1.
    sq_norms: &'a [f64],
    positive: &'a [bool],
}

impl Binary<'_> {
    /// Dual coordinate descent; returns w with the intercept last.
    fn solve(&self, cp: f64, cn: f64, config: SvmConfig, seed: u64) -> (Vec<f64>, Convergence) {
        let rows = self.x.rows();
        let mut w = vec![0f64; self.features + 1];
        let mut alpha = vec![0f64; rows];
        let y = |i: usize| if self.positive[i] { 1.0 } else { -1.0 };
        let diag = |i: usize| if self.positive[i] { 0.5 / cp } else { 0.5 / cn };
        let qd: Vec<f64> = (0..rows).map(|i| self.sq_norms[i] + diag(i)).collect();
        let mut index: Vec<usize> = (0..rows).collect();
        let mut active = rows;
        // liblinear's shrinking threshold; with no upper bound on alpha (the
        // squared hinge), only the bound at 0 shrinks.
        let mut pg_max_old = f64::INFINITY;
        let mut rng = SplitMix(seed);
        let mut iterations = 0;
        let mut converged = false;
        while iterations < config.max_iter {
            let (mut pg_max, mut pg_min) = (f64::NEG_INFINITY, f64::INFINITY);
            for s in 0..active {
                let j = s + rng.below(active - s);
                index.swap(s, j);
            }
            let mut s = 0;
            while s < active {
                let i = index[s];
                let (cols, vals) = self.x.row(i);
                let margin = w[self.features]
                    + cols
                        .iter()
                        .zip(vals)
                        .map(|(&c, &v)| w[c as usize] * v as f64)
                        .sum::<f64>();
                let g = y(i) * margin - 1.0 + alpha[i] * diag(i);
                let mut pg = 0.0;
                if alpha[i] == 0.0 {
                    if g > pg_max_old {
                        // Bound and likely to stay there: shrink it away.
                        active -= 1;
                        index.swap(s, active);
                        continue;
                    } else if g < 0.0 {
                        pg = g;
                    }
                } else {
                    pg = g;
                }
                pg_max = pg_max.max(pg);
                pg_min = pg_min.min(pg);
                if pg.abs() > 1e-12 {
                    let old = alpha[i];
                    alpha[i] = (alpha[i] - g / qd[i]).max(0.0);
                    let d = (alpha[i] - old) * y(i);
                    for (&c, &v) in cols.iter().zip(vals) {
                        w[c as usize] += d * v as f64;
                    }
                    w[self.features] += d;
                }
                s += 1;
            }
            iterations += 1;
            if pg_max - pg_min <= config.tol {
                if active == rows {
                    converged = true;
                    break;
                }
                // Converged on the active set: check every row once more.
                active = rows;
                pg_max_old = f64::INFINITY;
                continue;
            }
            pg_max_old = if pg_max <= 0.0 { f64::INFINITY } else { pg_max };
        }
        (
            w,
            Convergence {
                iterations,
                converged,
            },
        )
    }
}

/// A small seeded generator for the visiting order (splitmix64).
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z as u128 * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(dense: &[&[f32]]) -> SparseRows {
        SparseRows::from_dense(dense)
    }

    #[test]
    fn separable_classes_are_separated() {
        let x = rows(&[
            &[1.0, 0.0],
            &[0.9, 0.1],
            &[0.0, 1.0],
            &[0.1, 0.9],
            &[0.5, 0.5],
        ]);
        let y = [0, 0, 1, 1, 0];
        let (svm, conv) = fit(&x, 2, &y, 2, SvmConfig::default()).unwrap();
        assert!(conv.iter().all(|c| c.converged), "{conv:?}");
        for (r, &label) in y.iter().enumerate().take(4) {
            let d = svm.decision(x.row(r));
            assert_eq!(pipe_data::argmax(&d), label as usize, "row {r}: {d:?}");
        }
    }

    /// The dual optimum satisfies the primal's optimality: w = Σ α_i y_i x_i
    /// with 0 ≤ α; at the optimum of the squared hinge, α_i = 2C·max(0, 1 - y_i w·x_i).
    #[test]
    fn the_solution_satisfies_the_optimality_conditions() {
        let x = rows(&[
            &[1.0, 0.2],
            &[0.8, 0.0],
            &[0.0, 1.0],
            &[0.3, 0.7],
            &[0.6, 0.6],
            &[0.2, 0.1],
        ]);
        let y = [0i64, 0, 1, 1, 1, 0];
        let config = SvmConfig {
            tol: 1e-10,
            class_weight: ClassWeight::None,
            ..SvmConfig::default()
        };
        let positive: Vec<bool> = y.iter().map(|&l| l == 1).collect();
        let sq: Vec<f64> = (0..6)
            .map(|r| x.row(r).1.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() + 1.0)
            .collect();
        let (w, conv) = Binary {
            x: &x,
            features: 2,
            sq_norms: &sq,
            positive: &positive,
        }
        .solve(1.0, 1.0, config, 3);
        assert!(conv.converged);
        // Primal gradient of ½‖w‖² + C Σ max(0, 1 - y w·x)² vanishes.
        let mut grad = w.clone();
        for (r, &is_positive) in positive.iter().enumerate().take(6) {
            let (cols, vals) = x.row(r);
            let yr = if is_positive { 1.0 } else { -1.0 };
            let margin = w[2]
                + cols
                    .iter()
                    .zip(vals)
                    .map(|(&c, &v)| w[c as usize] * v as f64)
                    .sum::<f64>();
            let slack = (1.0 - yr * margin).max(0.0);
            for (&c, &v) in cols.iter().zip(vals) {
                grad[c as usize] -= 2.0 * slack * yr * v as f64;
            }
            grad[2] -= 2.0 * slack * yr;
        }
        assert!(grad.iter().all(|g| g.abs() < 1e-4), "gradient {grad:?}");
    }

    #[test]
    fn balanced_weights_are_n_over_classes_times_count() {
        let w = class_weights(&[0, 0, 0, 1], 2, ClassWeight::Balanced);
        assert!((w[0] - 4.0 / 6.0).abs() < 1e-12 && (w[1] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn labels_outside_the_classes_are_refused() {
        let x = rows(&[&[1.0]]);
        assert!(matches!(
            fit(&x, 1, &[3], 2, SvmConfig::default()),
            Err(LinearError::LabelOutOfRange { .. })
        ));
        assert!(matches!(
            fit(&x, 1, &[0, 1], 2, SvmConfig::default()),
            Err(LinearError::LengthMismatch { .. })
        ));
    }
}
