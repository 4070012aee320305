//! The `select` stage: model selection by validation, as a list of steps —
//! plan the validation, score each candidate out of sample, calibrate,
//! combine, choose, refit.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Instant;

use pipe_core::{
    stage, Artifacts, Files, InvalidSetting, JsonDoc, Port, PortOf, Stage, StageContext, StageError,
};
use pipe_data::{IntArray, LabelSet};
use pipe_linear::TrainingRowsPorts;
use pipe_runtime::runtime;
use pipe_tensor::TokenTensors;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::budget::Budget;
use crate::candidate::{Candidate, FitData};
use crate::choice::{Choice, EnsembleTried};
use crate::ensemble_model::{EnsembleModel, Member};
use crate::final_fit::FinalFit;
use crate::scoring::{score_candidate, Scored, Skipped};
use crate::validation::Validation;
use crate::CandidateFailed;

/// The most folds: 100. Each fold fits every candidate once more, and a
/// fold must hold rows of each class to score them.
pub const MAX_FOLDS: usize = 100;

/// The most picks of the greedy ensemble selection: 10,000 (the default is
/// 10). Each pick scores every candidate over every validation row.
pub const MAX_ENSEMBLE_ROUNDS: usize = 10_000;

/// The longest time budget: 30 days, in seconds. A budget is there to bound
/// a run; a longer one is a typo (or a unit mistake) and bounds nothing.
pub const MAX_TIME_BUDGET_SECONDS: f64 = 30.0 * 24.0 * 3600.0;

/// Config of the `select` stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Select {
    /// Named candidate models. They are tried cheapest kind first (linear,
    /// then bag of n-grams, then recurrent; by name within a kind), so a
    /// time budget skips the expensive ones.
    pub candidates: BTreeMap<String, Candidate>,
    pub validation: Validation,
    /// Also try a weighted average of the candidates' calibrated probabilities.
    pub ensemble: bool,
    /// Picks of the greedy ensemble selection (with replacement).
    pub ensemble_rounds: usize,
    /// Fit the chosen models again on all rows (otherwise a hold-out's
    /// training part is kept; folds always refit). See [`FinalFit`].
    pub refit: bool,
    /// Seconds for scoring candidates and refitting: a candidate not
    /// started in time, or whose training is projected to end past it, is
    /// skipped (see [`Budget`]); a refit projected past it is not made, the
    /// model being kept as validation fitted it.
    pub time_budget_seconds: Option<f64>,
}

impl Default for Select {
    fn default() -> Self {
        let mut candidates = BTreeMap::new();
        candidates.insert(
            "tfidf".to_string(),
            Candidate::TfidfLinear(Default::default()),
        );
        Select {
            candidates,
            validation: Validation::Auto,
            ensemble: true,
            ensemble_rounds: 10,
            refit: true,
            time_budget_seconds: None,
        }
    }
}

impl Select {
    pub const MODEL: PortOf<EnsembleModel> = PortOf::new(
        "model",
        "the chosen model or ensemble, calibrated (for `predict`)",
    );
    pub const METRICS: PortOf<JsonDoc> = PortOf::new(
        "metrics",
        "each candidate's validation macro-F1, log-loss, temperature and time; the choice",
    );
    pub const REPORT: PortOf<Files> =
        PortOf::new("report", "selection.csv: the table of candidates");
}

#[stage(
    kind = "select",
    summary = "model selection by validation: fit candidates on folds or a hold-out, calibrate, ensemble, keep the best, refit"
)]
impl Stage for Select {
    fn inputs(&self) -> Vec<Port> {
        TrainingRowsPorts::ports()
    }
    fn outputs(&self) -> Vec<Port> {
        vec![
            Self::MODEL.port(),
            Self::METRICS.port(),
            Self::REPORT.port(),
        ]
    }
    fn code_version(&self) -> u32 {
        2
    }
    fn machine_choices(&self, device: &str) -> BTreeMap<String, String> {
        // A bfloat16 LSTM is not a float32 one: each recurrent candidate's precision joins the key.
        let mut choices = BTreeMap::new();
        for (name, c) in &self.candidates {
            let decision = match c {
                Candidate::LstmClassifier { model, .. } => model.precision_decision(device),
                Candidate::GruClassifier { model, .. } => model.precision_decision(device),
                _ => continue,
            };
            choices.insert(
                format!("{name}.precision"),
                format!("{:?}", decision.precision).to_lowercase(),
            );
        }
        choices
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.candidates.is_empty() {
            return Err(InvalidSetting::new(
                "candidates",
                "must list at least one candidate",
            ));
        }
        for (name, c) in &self.candidates {
            c.validate()
                .map_err(|e| e.within(&format!("candidates.{name}")))?;
        }
        match self.validation {
            Validation::Holdout(f) if !(f > 0.0 && f < 1.0) => {
                return Err(InvalidSetting::new(
                    "validation.holdout",
                    format!("must be in (0, 1), got {f}"),
                ))
            }
            Validation::Folds(k) if !(2..=MAX_FOLDS).contains(&k) => {
                return Err(InvalidSetting::new(
                    "validation.folds",
                    format!("must be between 2 and {MAX_FOLDS}, got {k}"),
                ))
            }
            _ => {}
        }
        if !(1..=MAX_ENSEMBLE_ROUNDS).contains(&self.ensemble_rounds) {
            return Err(InvalidSetting::new(
                "ensemble_rounds",
                format!(
                    "must be between 1 and {MAX_ENSEMBLE_ROUNDS}, got {}",
                    self.ensemble_rounds
                ),
            ));
        }
        if let Some(t) = self
            .time_budget_seconds
            .filter(|t| !(*t > 0.0 && *t <= MAX_TIME_BUDGET_SECONDS))
        {
            return Err(InvalidSetting::new(
                "time_budget_seconds",
                format!(
                    "must be positive and at most {MAX_TIME_BUDGET_SECONDS} (30 days), got {t}"
                ),
            ));
        }
        Ok(())
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let budget = Budget::new(self.time_budget_seconds);

        // 1. The rows, in the forms candidates read.
        let (x, y) = (
            inputs.read(&TrainingRowsPorts::X)?,
            inputs.read(&TrainingRowsPorts::Y)?,
        );
        let vocab = inputs.read(&TrainingRowsPorts::VOCAB)?;
        let label_set = inputs.read(&TrainingRowsPorts::LABELS)?;
        let rows = pipe_linear::rows_of(x).map_err(StageError::invalid)?;
        let labels = checked_labels(y, label_set)?;
        let tensors = TokenTensors::from_arrays(x, Some(y), vocab.pad_id, None, Device::Cpu)
            .map_err(StageError::invalid)?;
        let device = runtime::device(ctx.device).map_err(StageError::other)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let data = FitData {
            rows,
            labels: &labels,
            tensors: &tensors,
            vocab,
            label_set,
            device,
            device_name: ctx.device,
            seed: ctx.seed,
            threads,
        };

        // 2. The validation plan: which rows each fit trains on and scores.
        let plan = self.validation.plan(&labels, ctx.seed);
        let truth: Vec<i64> = plan
            .iter()
            .flat_map(|(_, val)| val.iter().map(|&r| labels[r]))
            .collect();
        ctx.info(format!(
            "{} candidates on {} rows, scored by {}",
            self.candidates.len(),
            labels.len(),
            self.validation.describe(labels.len())
        ));

        // 3. Each candidate scored out of sample and calibrated.
        let (mut scored, skipped) = self.score_candidates(&data, &plan, &truth, &budget, ctx)?;

        // 4. The ensemble, and the choice: whichever scores best.
        let choice = Choice::of_scored(
            &scored,
            self.ensemble.then_some(self.ensemble_rounds),
            label_set.len(),
            &truth,
        );
        if let Some(tried) = &choice.ensemble {
            ctx.info(format!(
                "ensemble of {}: validation macro-F1 {:.4}, log-loss {:.4}",
                tried.used, tried.macro_f1, tried.log_loss
            ));
        }
        ctx.info(format!("chosen: {}", choice.chosen(&scored).join(" + ")));

        // 5. The chosen models, heaviest first: refit on all rows, or kept
        // as validation fitted them (see `FinalFit::decide`).
        let refit_start = Instant::now();
        let (members, final_fits) = self.final_models(
            &mut scored,
            &choice.weights,
            &data,
            plan.len() > 1,
            &budget,
            ctx,
        )?;
        let refit_seconds = refit_start.elapsed().as_secs_f64();

        // 6. The report.
        let metrics = serde_json::json!({
            "validation": self.validation.describe(labels.len()),
            "rows": labels.len(),
            "scored_rows": truth.len(),
            "candidates": scored,
            "skipped": skipped,
            "ensemble": choice.ensemble.as_ref().map_or(serde_json::Value::Null, EnsembleTried::report),
            "chosen": final_fits,
            "refit_seconds": refit_seconds,
            "seconds": budget.elapsed(),
            "time_budget_seconds": self.time_budget_seconds,
        });
        ctx.metric(metrics.clone());
        let mut out = Artifacts::new();
        let report = Files {
            files: BTreeMap::from([(
                "selection.csv".to_string(),
                selection_csv(&scored, &choice.weights).into_bytes(),
            )]),
        };
        out.put(&Self::MODEL, EnsembleModel { members })
            .put(&Self::METRICS, JsonDoc(metrics))
            .put(&Self::REPORT, report);
        Ok(out)
    }
}

impl Select {
    /// The candidates, cheapest kind first.
    fn in_trial_order(&self) -> Vec<(&String, &Candidate)> {
        let mut order: Vec<_> = self.candidates.iter().collect();
        order.sort_by_key(|(name, c)| (c.cost_rank(), name.as_str()));
        order
    }

    /// Step 3: every candidate scored, in trial order, until the budget is
    /// spent; the skipped ones with why. A candidate that fails fails the stage.
    fn score_candidates(
        &self,
        data: &FitData,
        plan: &[(Vec<usize>, Vec<usize>)],
        truth: &[i64],
        budget: &Budget,
        ctx: &StageContext,
    ) -> Result<(Vec<Scored>, Vec<serde_json::Value>), StageError> {
        let mut scored = Vec::new();
        let mut skipped = Vec::new();
        for (name, candidate) in self.in_trial_order() {
            if budget.spent() {
                ctx.warn(format!(
                    "candidate `{name}` skipped: the time budget is spent"
                ));
                skipped
                    .push(serde_json::json!({ "name": name, "why": "the time budget is spent" }));
                continue;
            }
            let result = match score_candidate(name, candidate, data, plan, truth, budget, ctx) {
                Ok(result) => result,
                Err(Skipped::OverBudget(why)) => {
                    ctx.warn(format!("candidate `{name}` skipped: {why}"));
                    skipped.push(serde_json::json!({ "name": name, "why": why }));
                    continue;
                }
                Err(Skipped::Failed(e)) => return Err(StageError::invalid(e)),
            };
            ctx.info(format!(
                "{name} ({}): validation macro-F1 {:.4}, log-loss {:.4} at temperature {:.3} ({:.1}s)",
                result.kind, result.macro_f1, result.log_loss, result.temperature, result.seconds
            ));
            scored.push(result);
        }
        if scored.is_empty() {
            return Err(StageError::invalid(
                "every candidate was skipped: raise time_budget_seconds",
            ));
        }
        Ok((scored, skipped))
    }

    /// Step 5: each chosen model (weight > 0), heaviest first, refit on all
    /// rows or kept as its last validation fit, as [`FinalFit::decide`]
    /// says; with a line of the report each.
    fn final_models(
        &self,
        scored: &mut [Scored],
        weights: &[f32],
        data: &FitData,
        folds: bool,
        budget: &Budget,
        ctx: &StageContext,
    ) -> Result<(Vec<Member>, Vec<serde_json::Value>), StageError> {
        let mut order: Vec<usize> = (0..scored.len()).filter(|&i| weights[i] > 0.0).collect();
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        let all: Vec<usize> = (0..data.labels.len()).collect();
        let mut members = Vec::new();
        let mut final_fits = Vec::new();
        for i in order {
            let s = &mut scored[i];
            let candidate = &self.candidates[&s.name];
            let last_fit = s.last_fit.take();
            let decision = match &last_fit {
                Some((_, rows, seconds)) => FinalFit::decide(
                    self.refit,
                    folds,
                    data.labels.len(),
                    (*rows, *seconds),
                    candidate.max_rows(),
                    budget.left(),
                ),
                None => FinalFit::Refit,
            };
            let mut member = match (&decision, last_fit) {
                (FinalFit::Kept(why), Some((kept, _, _))) => {
                    ctx.info(format!(
                        "{}: not refit ({why}); kept as validation fitted it",
                        s.name
                    ));
                    kept
                }
                _ => {
                    let mut progress = |done: u64, total: u64, message: &str| {
                        ctx.progress(done, total, format!("refit {}: {message}", s.name));
                        ControlFlow::Continue(())
                    };
                    candidate
                        .fit(&s.name, data, &all, &mut progress)
                        .map_err(|e| {
                            StageError::other(CandidateFailed {
                                name: s.name.clone(),
                                source: e,
                            })
                        })?
                }
            };
            member.weight = weights[i];
            member.temperature = s.temperature;
            members.push(member);
            final_fits.push(match decision {
                FinalFit::Refit => serde_json::json!({ "name": s.name, "weight": weights[i], "refit": true }),
                FinalFit::Kept(why) => serde_json::json!({ "name": s.name, "weight": weights[i], "refit": false, "kept_because": why }),
            });
        }
        Ok((members, final_fits))
    }
}

/// The training labels as class ids, each one of the label set's classes.
fn checked_labels(y: &IntArray, label_set: &LabelSet) -> Result<Vec<i64>, StageError> {
    let labels: Vec<i64> = y.0.iter().copied().collect();
    if let Some((row, &bad)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 0 || l as usize >= label_set.len())
    {
        return Err(StageError::invalid(format!(
            "label {bad} at row {row} is outside the {} classes",
            label_set.len()
        )));
    }
    Ok(labels)
}

/// `selection.csv`: one line per scored candidate with its weight.
fn selection_csv(scored: &[Scored], weights: &[f32]) -> String {
    let mut csv = String::from(
        "candidate,kind,validation_macro_f1,validation_log_loss,temperature,weight,seconds\n",
    );
    for (s, w) in scored.iter().zip(weights) {
        csv.push_str(&format!(
            "{},{},{:.6},{:.6},{:.4},{:.3},{:.2}\n",
            pipe_data::csv::field(&s.name),
            s.kind,
            s.macro_f1,
            s.log_loss,
            s.temperature,
            w,
            s.seconds
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_at_load() {
        let bad = |yaml: &str| {
            pipe_core::Stage::validate(&serde_saphyr::from_str::<Select>(yaml).unwrap())
                .unwrap_err()
        };
        assert_eq!(bad("candidates: {}").setting, "candidates");
        assert_eq!(
            bad("validation: { folds: 1 }"),
            InvalidSetting::new(
                "validation.folds",
                format!("must be between 2 and {MAX_FOLDS}, got 1")
            )
        );
        assert_eq!(
            bad("validation: { holdout: 1.5 }").setting,
            "validation.holdout"
        );
        assert_eq!(
            bad("candidates: { t: { kind: tfidf_linear, c: -1 } }").setting,
            "candidates.t.c"
        );
        assert_eq!(
            bad("candidates: { t: { kind: tfidf_linear, classifier: complement_nb, alpha: 0 } }")
                .setting,
            "candidates.t.alpha"
        );
        let e = bad("candidates: { l: { kind: lstm_classifier, train: { lr: 2 } } }");
        assert_eq!(
            e.to_string(),
            "candidates.l.train.lr must be in (0, 1], got 2"
        );
    }

    #[test]
    fn every_count_and_the_time_budget_are_bounded_at_load() {
        let check = |yaml: &str| {
            pipe_core::Stage::validate(&serde_saphyr::from_str::<Select>(yaml).unwrap())
        };
        let bad = |yaml: &str| check(yaml).unwrap_err();
        assert_eq!(pipe_core::Stage::validate(&Select::default()), Ok(()));
        assert_eq!(
            bad(&format!("validation: {{ folds: {} }}", MAX_FOLDS + 1)),
            InvalidSetting::new(
                "validation.folds",
                format!("must be between 2 and {MAX_FOLDS}, got {}", MAX_FOLDS + 1)
            )
        );
        assert_eq!(
            bad("validation: { folds: 1000000000000 }").setting,
            "validation.folds"
        );
        assert_eq!(
            check(&format!("validation: {{ folds: {MAX_FOLDS} }}")),
            Ok(())
        );
        assert_eq!(
            bad(&format!("ensemble_rounds: {}", MAX_ENSEMBLE_ROUNDS + 1)),
            InvalidSetting::new(
                "ensemble_rounds",
                format!(
                    "must be between 1 and {MAX_ENSEMBLE_ROUNDS}, got {}",
                    MAX_ENSEMBLE_ROUNDS + 1
                )
            )
        );
        assert_eq!(bad("ensemble_rounds: 0").setting, "ensemble_rounds");
        for budget in [
            "0",
            "-5",
            ".nan",
            ".inf",
            "1e300",
            &(MAX_TIME_BUDGET_SECONDS + 1.0).to_string(),
        ] {
            let e = bad(&format!("time_budget_seconds: {budget}"));
            assert_eq!(e.setting, "time_budget_seconds", "{budget}");
            assert!(
                e.problem.starts_with(&format!(
                    "must be positive and at most {MAX_TIME_BUDGET_SECONDS}"
                )),
                "{e}"
            );
        }
        assert_eq!(
            check(&format!("time_budget_seconds: {MAX_TIME_BUDGET_SECONDS}")),
            Ok(())
        );
    }

    #[test]
    fn each_candidates_nested_settings_are_bounded_and_named_from_the_candidate() {
        let bad = |yaml: &str| {
            pipe_core::Stage::validate(&serde_saphyr::from_str::<Select>(yaml).unwrap())
                .unwrap_err()
        };
        let cases = [
            (
                "candidates: { l: { kind: lstm_classifier, train: { epochs: 100000000000 } } }",
                "candidates.l.train.epochs",
            ),
            (
                "candidates: { l: { kind: lstm_classifier, train: { batch_size: 2000000 } } }",
                "candidates.l.train.batch_size",
            ),
            (
                "candidates: { l: { kind: lstm_classifier, model: { hidden_dim: 1000000000 } } }",
                "candidates.l.model.hidden_dim",
            ),
            (
                "candidates: { g: { kind: gru_classifier, model: { layers: 1000 } } }",
                "candidates.g.model.layers",
            ),
            (
                "candidates: { g: { kind: gru_classifier, model: { embed_dim: 0 } } }",
                "candidates.g.model.embed_dim",
            ),
            (
                "candidates: { b: { kind: bag_of_ngrams, model: { buckets: 100000000 } } }",
                "candidates.b.model.buckets",
            ),
            (
                "candidates: { b: { kind: bag_of_ngrams, model: { embed_dim: 100000 } } }",
                "candidates.b.model.embed_dim",
            ),
            (
                "candidates: { b: { kind: bag_of_ngrams, char_ngrams: [3, 1000] } }",
                "candidates.b.char_ngrams",
            ),
            (
                "candidates: { b: { kind: bag_of_ngrams, max_rows: 0 } }",
                "candidates.b.max_rows",
            ),
            (
                "candidates: { l: { kind: lstm_classifier, max_rows: 100000000000000 } }",
                "candidates.l.max_rows",
            ),
            (
                "candidates: { t: { kind: tfidf_linear, max_iter: 1000000000 } }",
                "candidates.t.max_iter",
            ),
        ];
        for (yaml, setting) in cases {
            assert_eq!(bad(yaml).setting, setting, "{yaml}");
        }
        let e =
            bad("candidates: { l: { kind: lstm_classifier, train: { epochs: 100000000000 } } }");
        assert_eq!(
            e.to_string(),
            format!(
                "candidates.l.train.epochs must be between 1 and {}, got 100000000000",
                pipe_train::MAX_EPOCHS
            )
        );
        let e = bad(&format!(
            "candidates: {{ g: {{ kind: gru_classifier, max_rows: {} }} }}",
            crate::MAX_ROWS + 1
        ));
        assert_eq!(
            e.to_string(),
            format!(
                "candidates.g.max_rows must be between 1 and {}, got {}",
                crate::MAX_ROWS,
                crate::MAX_ROWS + 1
            )
        );
    }
}
