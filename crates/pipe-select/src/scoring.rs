//! Step 3 of `select`: one candidate fitted on each plan entry's training
//! rows, scored on its validation rows, and calibrated.

use std::ops::ControlFlow;
use std::time::Instant;

use pipe_core::StageContext;
use pipe_predict::{ScoreOptions, Trim};
use serde::Serialize;

use crate::budget::Budget;
use crate::calibrate;
use crate::candidate::{Candidate, FitData};
use crate::ensemble_model::Member;
use crate::{CandidateFailed, FitError};

/// One candidate's validation result.
#[derive(Debug, Serialize)]
pub struct Scored {
    pub name: String,
    pub kind: &'static str,
    pub macro_f1: f64,
    pub log_loss: f64,
    pub temperature: f32,
    pub seconds: f64,
    #[serde(skip)]
    pub probabilities: Vec<f32>,
    /// The last validation fit's model (the hold-out's, or the last
    /// fold's), its training rows and seconds: kept when not refit.
    #[serde(skip)]
    pub last_fit: Option<(Member, usize, f64)>,
}

/// Why a candidate has no score.
pub enum Skipped {
    OverBudget(String),
    Failed(CandidateFailed),
}

/// Fits `candidate` once per plan entry, scores the held-out rows, and
/// calibrates; stops when its training is projected past the budget.
pub fn score_candidate(
    name: &str,
    candidate: &Candidate,
    data: &FitData,
    plan: &[(Vec<usize>, Vec<usize>)],
    truth: &[i64],
    budget: &Budget,
    ctx: &StageContext,
) -> Result<Scored, Skipped> {
    let started = Instant::now();
    let classes = data.label_set.len();
    let fail = |e: FitError| {
        Skipped::Failed(CandidateFailed {
            name: name.to_string(),
            source: e,
        })
    };
    let options = ScoreOptions {
        device: data.device,
        batch_size: 512,
        trim: Trim::Auto,
    };
    let mut scores = Vec::with_capacity(truth.len() * classes);
    let mut last_fit = None;
    for (fold, (train, val)) in plan.iter().enumerate() {
        // The fits still to come after this one: the other folds (a
        // refit waits for the choice, and for time left: `FinalFit`).
        let fits_after = (plan.len() - fold - 1) as f64;
        let fit_start = Instant::now();
        let mut over_budget = None;
        let mut progress = |done: u64, total: u64, message: &str| {
            ctx.progress(
                done,
                total,
                format!("{name}, fit {}/{}: {message}", fold + 1, plan.len()),
            );
            match budget.overrun(fit_start.elapsed().as_secs_f64(), done, total, fits_after) {
                Some(why) => {
                    over_budget = Some(why.clone());
                    ControlFlow::Break(why)
                }
                None => ControlFlow::Continue(()),
            }
        };
        let fitted = candidate.fit(name, data, train, &mut progress);
        let fit_seconds = fit_start.elapsed().as_secs_f64();
        if let Some(why) = over_budget {
            return Err(Skipped::OverBudget(why));
        }
        let member = fitted.map_err(fail)?;
        let fold_scores = member
            .scores(&data.tensors_of(val), &options)
            .map_err(|e| fail(e.into()))?;
        pipe_predict::check_finite(&fold_scores, classes).map_err(|e| fail(e.into()))?;
        scores.extend(fold_scores);
        last_fit = Some((member, train.len(), fit_seconds));
    }
    let temperature = calibrate::fit_temperature(&scores, classes, truth);
    let probabilities = calibrate::probabilities(&scores, classes, temperature);
    Ok(Scored {
        name: name.to_string(),
        kind: candidate.kind(),
        macro_f1: calibrate::macro_f1(&probabilities, classes, truth),
        log_loss: calibrate::log_loss(&probabilities, classes, truth),
        temperature,
        seconds: started.elapsed().as_secs_f64(),
        probabilities,
        last_fit,
    })
}
