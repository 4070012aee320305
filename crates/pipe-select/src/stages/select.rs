//! The `select` stage: model selection by validation, as a list of steps —
//! plan the validation, score each candidate out of sample, calibrate,
//! combine, choose, refit.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Instant;

use pipe_core::{stage, Artifacts, Files, InvalidSetting, JsonDoc, Port, Stage, StageContext, StageError};
use pipe_data::{IntArray, LabelSet, Vocabulary};
use pipe_predict::{ScoreOptions, Trim};
use pipe_runtime::runtime;
use pipe_tensor::TokenTensors;
use pipe_train::sampler::{stratified_split, Rng};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::budget::Budget;
use crate::calibrate::{self, greedy_ensemble};
use crate::candidate::{Candidate, FitData};
use crate::ensemble_model::{EnsembleModel, Member};
use crate::{CandidateFailed, FitError};

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
            Validation::Auto if labels.len() < Self::AUTO_FOLDS_BELOW => Validation::Folds(3).plan(labels, seed),
            Validation::Auto => Validation::Holdout(0.2).plan(labels, seed),
            Validation::Holdout(fraction) => vec![stratified_split(labels, fraction, &mut rng)],
            Validation::Folds(k) => {
                let folds = stratified_folds(labels, k, &mut rng);
                (0..k)
                    .map(|f| {
                        let train = folds.iter().enumerate().filter(|(g, _)| *g != f).flat_map(|(_, rows)| rows.iter().copied()).collect::<Vec<_>>();
                        let mut train = train;
                        train.sort_unstable();
                        (train, folds[f].clone())
                    })
                    .collect()
            }
        }
    }

    fn describe(&self, rows: usize) -> String {
        match *self {
            Validation::Auto if rows < Self::AUTO_FOLDS_BELOW => "3 stratified folds".into(),
            Validation::Auto => "a stratified 20% hold-out".into(),
            Validation::Holdout(f) => format!("a stratified {:.0}% hold-out", f * 100.0),
            Validation::Folds(k) => format!("{k} stratified folds"),
        }
    }
}

/// Rows dealt into `k` folds class by class (shuffled), so each fold has
/// each class's share; each fold's rows sorted.
pub fn stratified_folds(labels: &[i64], k: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y as usize].push(i);
    }
    let mut folds = vec![Vec::new(); k];
    let mut next = 0;
    for mut rows in by_class {
        rng.shuffle(&mut rows);
        for r in rows {
            folds[next % k].push(r);
            next += 1;
        }
    }
    folds.iter_mut().for_each(|f| f.sort_unstable());
    folds
}

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
        candidates.insert("tfidf".to_string(), Candidate::TfidfLinear(Default::default()));
        Select { candidates, validation: Validation::Auto, ensemble: true, ensemble_rounds: 10, refit: true, time_budget_seconds: None }
    }
}

/// One candidate's validation result.
#[derive(Debug, Serialize)]
struct Scored {
    name: String,
    kind: &'static str,
    macro_f1: f64,
    log_loss: f64,
    temperature: f32,
    seconds: f64,
    #[serde(skip)]
    probabilities: Vec<f32>,
    /// The last validation fit's model (the hold-out's, or the last
    /// fold's), its training rows and seconds: kept when not refit.
    #[serde(skip)]
    last_fit: Option<(Member, usize, f64)>,
}

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
    pub fn decide(refit: bool, folds: bool, rows: usize, last_fit: (usize, f64), cap: Option<usize>, budget_left: Option<f64>) -> FinalFit {
        let fitted = |n: usize| cap.map_or(n, |cap| n.min(cap));
        let (last_rows, last_seconds) = last_fit;
        if !folds && !refit {
            return FinalFit::Kept("refit is off".into());
        }
        if fitted(rows) <= fitted(last_rows) {
            return FinalFit::Kept(format!("it already trained on its max_rows cap of {} rows", fitted(last_rows)));
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

#[stage(kind = "select", summary = "model selection by validation: fit candidates on folds or a hold-out, calibrate, ensemble, keep the best, refit")]
impl Stage for Select {
    fn inputs(&self) -> Vec<Port> {
        pipe_linear::training_rows_ports()
    }
    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::of::<EnsembleModel>("model", "the chosen model or ensemble, calibrated (for `predict`)"),
            Port::of::<JsonDoc>("metrics", "each candidate's validation macro-F1, log-loss, temperature and time; the choice"),
            Port::of::<Files>("report", "selection.csv: the table of candidates"),
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
            choices.insert(format!("{name}.precision"), format!("{:?}", decision.precision).to_lowercase());
        }
        choices
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.candidates.is_empty() {
            return Err(InvalidSetting::new("candidates", "must list at least one candidate"));
        }
        for (name, c) in &self.candidates {
            c.validate().map_err(|e| e.within(&format!("candidates.{name}")))?;
        }
        match self.validation {
            Validation::Holdout(f) if !(f > 0.0 && f < 1.0) => {
                return Err(InvalidSetting::new("validation.holdout", format!("must be in (0, 1), got {f}")))
            }
            Validation::Folds(k) if !(2..=MAX_FOLDS).contains(&k) => {
                return Err(InvalidSetting::new("validation.folds", format!("must be between 2 and {MAX_FOLDS}, got {k}")))
            }
            _ => {}
        }
        if !(1..=MAX_ENSEMBLE_ROUNDS).contains(&self.ensemble_rounds) {
            return Err(InvalidSetting::new("ensemble_rounds", format!("must be between 1 and {MAX_ENSEMBLE_ROUNDS}, got {}", self.ensemble_rounds)));
        }
        if let Some(t) = self.time_budget_seconds.filter(|t| !(*t > 0.0 && *t <= MAX_TIME_BUDGET_SECONDS)) {
            return Err(InvalidSetting::new(
                "time_budget_seconds",
                format!("must be positive and at most {MAX_TIME_BUDGET_SECONDS} (30 days), got {t}"),
            ));
        }
        Ok(())
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let x = inputs.get::<IntArray>("x")?;
        let y = inputs.get::<IntArray>("y")?;
        let vocab = inputs.get::<Vocabulary>("vocab")?;
        let label_set = inputs.get::<LabelSet>("labels")?;
        let budget = Budget::new(self.time_budget_seconds);

        // 1. The rows, in the forms candidates read.
        let rows = pipe_linear::rows_of(x).map_err(StageError::invalid)?;
        let labels: Vec<i64> = y.0.iter().copied().collect();
        if let Some((row, &bad)) = labels.iter().enumerate().find(|(_, &l)| l < 0 || l as usize >= label_set.len()) {
            return Err(StageError::invalid(format!("label {bad} at row {row} is outside the {} classes", label_set.len())));
        }
        let tensors = TokenTensors::from_arrays(x, Some(y), vocab.pad_id, None, Device::Cpu).map_err(StageError::invalid)?;
        let device = runtime::device(ctx.device).map_err(StageError::other)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let data = FitData { rows, labels: &labels, tensors: &tensors, vocab, label_set, device, device_name: ctx.device, seed: ctx.seed, threads };

        // 2. The validation plan: which rows each fit trains on and scores.
        let plan = self.validation.plan(&labels, ctx.seed);
        let scored_rows: Vec<usize> = plan.iter().flat_map(|(_, val)| val.iter().copied()).collect();
        let truth: Vec<i64> = scored_rows.iter().map(|&r| labels[r]).collect();
        ctx.info(format!("{} candidates on {} rows, scored by {}", self.candidates.len(), labels.len(), self.validation.describe(labels.len())));

        // 3. Each candidate scored out of sample and calibrated.
        let mut scored = Vec::new();
        let mut skipped = Vec::new();
        for (name, candidate) in self.in_trial_order() {
            if budget.spent() {
                ctx.warn(format!("candidate `{name}` skipped: the time budget is spent"));
                skipped.push(serde_json::json!({ "name": name, "why": "the time budget is spent" }));
                continue;
            }
            let result = match self.score_candidate(name, candidate, &data, &plan, &truth, &budget, ctx) {
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

        // 4. The ensemble, and the choice: whichever scores best.
        if scored.is_empty() {
            return Err(StageError::invalid("every candidate was skipped: raise time_budget_seconds"));
        }
        let classes = label_set.len();
        let best_single = scored.iter().enumerate().fold(0, |b, (i, s)| if s.macro_f1 > scored[b].macro_f1 { i } else { b });
        let mut weights = vec![0f32; scored.len()];
        weights[best_single] = 1.0;
        let mut ensemble_report = serde_json::Value::Null;
        if self.ensemble && scored.len() > 1 {
            let models: Vec<&[f32]> = scored.iter().map(|s| s.probabilities.as_slice()).collect();
            let choice = greedy_ensemble(&models, classes, &truth, self.ensemble_rounds);
            let f1 = calibrate::macro_f1(&choice.mix(&models), classes, &truth);
            let used = choice.counts.iter().filter(|&&c| c > 0).count();
            ctx.info(format!("ensemble of {used}: validation macro-F1 {f1:.4}, log-loss {:.4}", choice.log_loss));
            ensemble_report = serde_json::json!({ "macro_f1": f1, "log_loss": choice.log_loss, "weights": choice.weights() });
            if used > 1 && f1 > scored[best_single].macro_f1 {
                weights = choice.weights();
            }
        }
        let chosen: Vec<String> = scored.iter().zip(&weights).filter(|(_, &w)| w > 0.0).map(|(s, _)| s.name.clone()).collect();
        ctx.info(format!("chosen: {}", chosen.join(" + ")));

        // 5. The chosen models, heaviest first: refit on all rows, or kept
        // as validation fitted them (see `FinalFit::decide`).
        let refit_start = Instant::now();
        let mut order: Vec<usize> = (0..scored.len()).filter(|&i| weights[i] > 0.0).collect();
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        let all: Vec<usize> = (0..labels.len()).collect();
        let mut members = Vec::new();
        let mut final_fits = Vec::new();
        for i in order {
            let s = &mut scored[i];
            let candidate = &self.candidates[&s.name];
            let last_fit = s.last_fit.take();
            let decision = match &last_fit {
                Some((_, rows, seconds)) => {
                    FinalFit::decide(self.refit, plan.len() > 1, labels.len(), (*rows, *seconds), candidate.max_rows(), budget.left())
                }
                None => FinalFit::Refit,
            };
            let mut member = match (&decision, last_fit) {
                (FinalFit::Kept(why), Some((kept, _, _))) => {
                    ctx.info(format!("{}: not refit ({why}); kept as validation fitted it", s.name));
                    kept
                }
                _ => {
                    let mut progress = |done: u64, total: u64, message: &str| {
                        ctx.progress(done, total, format!("refit {}: {message}", s.name));
                        ControlFlow::Continue(())
                    };
                    candidate
                        .fit(&s.name, &data, &all, &mut progress)
                        .map_err(|e| StageError::other(CandidateFailed { name: s.name.clone(), source: e }))?
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
        let refit_seconds = refit_start.elapsed().as_secs_f64();

        // 6. The report.
        let metrics = serde_json::json!({
            "validation": self.validation.describe(labels.len()),
            "rows": labels.len(),
            "scored_rows": truth.len(),
            "candidates": scored,
            "skipped": skipped,
            "ensemble": ensemble_report,
            "chosen": final_fits,
            "refit_seconds": refit_seconds,
            "seconds": budget.elapsed(),
            "time_budget_seconds": self.time_budget_seconds,
        });
        ctx.metric(metrics.clone());
        let mut csv = String::from("candidate,kind,validation_macro_f1,validation_log_loss,temperature,weight,seconds\n");
        for (s, w) in scored.iter().zip(&weights) {
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
        let mut out = Artifacts::new();
        out.insert("model", EnsembleModel { members })
            .insert("metrics", JsonDoc(metrics))
            .insert("report", Files { files: BTreeMap::from([("selection.csv".to_string(), csv.into_bytes())]) });
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

    /// Fits `candidate` once per plan entry, scores the held-out rows, and
    /// calibrates; stops when its training is projected past the budget.
    #[allow(clippy::too_many_arguments)]
    fn score_candidate(
        &self,
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
        let fail = |e: FitError| Skipped::Failed(CandidateFailed { name: name.to_string(), source: e });
        let options = ScoreOptions { device: data.device, batch_size: 512, trim: Trim::Auto };
        let mut scores = Vec::with_capacity(truth.len() * classes);
        let mut last_fit = None;
        for (fold, (train, val)) in plan.iter().enumerate() {
            // The fits still to come after this one: the other folds (a
            // refit waits for the choice, and for time left: `FinalFit`).
            let fits_after = (plan.len() - fold - 1) as f64;
            let fit_start = Instant::now();
            let mut over_budget = None;
            let mut progress = |done: u64, total: u64, message: &str| {
                ctx.progress(done, total, format!("{name}, fit {}/{}: {message}", fold + 1, plan.len()));
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
            let fold_scores = member.scores(&data.tensors_of(val), &options).map_err(|e| fail(e.into()))?;
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
}

/// Why a candidate has no score.
enum Skipped {
    OverBudget(String),
    Failed(CandidateFailed),
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
        assert_eq!(seen, (0..90).collect::<Vec<_>>(), "each row is scored exactly once");
        for (train, val) in &plan {
            assert_eq!(train.len() + val.len(), 90);
            assert!(train.iter().all(|r| !val.contains(r)));
            assert_eq!(val.iter().filter(|&&r| labels[r] == 1).count(), 10, "a third of class 1 per fold");
        }
    }

    #[test]
    fn auto_validation_uses_folds_for_small_data_and_a_holdout_for_large() {
        let small: Vec<i64> = (0..300).map(|i| i % 3).collect();
        assert_eq!(Validation::Auto.plan(&small, 1).len(), 3);
        let large: Vec<i64> = (0..Validation::AUTO_FOLDS_BELOW as i64).map(|i| i % 3).collect();
        let plan = Validation::Auto.plan(&large, 1);
        assert_eq!(plan.len(), 1);
        // 20% of each class, rounded per class.
        assert!(plan[0].1.len().abs_diff(Validation::AUTO_FOLDS_BELOW / 5) <= 3, "{}", plan[0].1.len());
    }

    #[test]
    fn a_refit_must_add_rows_and_end_within_the_budget() {
        let kept = |d: FinalFit| match d {
            FinalFit::Kept(why) => why,
            FinalFit::Refit => panic!("refit"),
        };
        // A hold-out's 800 rows of 1000 fitted in 8 s: a refit projects to 10 s.
        assert_eq!(FinalFit::decide(true, false, 1000, (800, 8.0), None, None), FinalFit::Refit);
        assert_eq!(FinalFit::decide(true, false, 1000, (800, 8.0), None, Some(10.5)), FinalFit::Refit);
        let why = kept(FinalFit::decide(true, false, 1000, (800, 8.0), None, Some(9.0)));
        assert!(why.contains("projected at 10s") && why.contains("9s left"), "{why}");
        assert_eq!(kept(FinalFit::decide(false, false, 1000, (800, 8.0), None, None)), "refit is off");
        // Folds refit whatever `refit` says.
        assert_eq!(FinalFit::decide(false, true, 900, (600, 6.0), None, None), FinalFit::Refit);
        // A cap of 500 rows is filled by 800 training rows: a refit would add none.
        let why = kept(FinalFit::decide(true, false, 1000, (800, 8.0), Some(500), None));
        assert!(why.contains("max_rows cap of 500 rows"), "{why}");
        // A cap of 900: the refit trains on 900 rows, not 1000 (9 s).
        assert_eq!(FinalFit::decide(true, false, 1000, (800, 8.0), Some(900), Some(9.5)), FinalFit::Refit);
        assert!(matches!(FinalFit::decide(true, false, 1000, (800, 8.0), Some(900), Some(8.5)), FinalFit::Kept(_)));
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_load() {
        let bad = |yaml: &str| pipe_core::Stage::validate(&serde_saphyr::from_str::<Select>(yaml).unwrap()).unwrap_err();
        assert_eq!(bad("candidates: {}").setting, "candidates");
        assert_eq!(bad("validation: { folds: 1 }"), InvalidSetting::new("validation.folds", format!("must be between 2 and {MAX_FOLDS}, got 1")));
        assert_eq!(bad("validation: { holdout: 1.5 }").setting, "validation.holdout");
        assert_eq!(bad("candidates: { t: { kind: tfidf_linear, c: -1 } }").setting, "candidates.t.c");
        assert_eq!(bad("candidates: { t: { kind: tfidf_linear, classifier: complement_nb, alpha: 0 } }").setting, "candidates.t.alpha");
        let e = bad("candidates: { l: { kind: lstm_classifier, train: { lr: 2 } } }");
        assert_eq!(e.to_string(), "candidates.l.train.lr must be in (0, 1], got 2");
    }

    #[test]
    fn every_count_and_the_time_budget_are_bounded_at_load() {
        let check = |yaml: &str| pipe_core::Stage::validate(&serde_saphyr::from_str::<Select>(yaml).unwrap());
        let bad = |yaml: &str| check(yaml).unwrap_err();
        assert_eq!(pipe_core::Stage::validate(&Select::default()), Ok(()));
        assert_eq!(
            bad(&format!("validation: {{ folds: {} }}", MAX_FOLDS + 1)),
            InvalidSetting::new("validation.folds", format!("must be between 2 and {MAX_FOLDS}, got {}", MAX_FOLDS + 1))
        );
        assert_eq!(bad("validation: { folds: 1000000000000 }").setting, "validation.folds");
        assert_eq!(check(&format!("validation: {{ folds: {MAX_FOLDS} }}")), Ok(()));
        assert_eq!(
            bad(&format!("ensemble_rounds: {}", MAX_ENSEMBLE_ROUNDS + 1)),
            InvalidSetting::new("ensemble_rounds", format!("must be between 1 and {MAX_ENSEMBLE_ROUNDS}, got {}", MAX_ENSEMBLE_ROUNDS + 1))
        );
        assert_eq!(bad("ensemble_rounds: 0").setting, "ensemble_rounds");
        for budget in ["0", "-5", ".nan", ".inf", "1e300", &(MAX_TIME_BUDGET_SECONDS + 1.0).to_string()] {
            let e = bad(&format!("time_budget_seconds: {budget}"));
            assert_eq!(e.setting, "time_budget_seconds", "{budget}");
            assert!(e.problem.starts_with(&format!("must be positive and at most {MAX_TIME_BUDGET_SECONDS}")), "{e}");
        }
        assert_eq!(check(&format!("time_budget_seconds: {MAX_TIME_BUDGET_SECONDS}")), Ok(()));
    }

    #[test]
    fn each_candidates_nested_settings_are_bounded_and_named_from_the_candidate() {
        let bad = |yaml: &str| pipe_core::Stage::validate(&serde_saphyr::from_str::<Select>(yaml).unwrap()).unwrap_err();
        let cases = [
            ("candidates: { l: { kind: lstm_classifier, train: { epochs: 100000000000 } } }", "candidates.l.train.epochs"),
            ("candidates: { l: { kind: lstm_classifier, train: { batch_size: 2000000 } } }", "candidates.l.train.batch_size"),
            ("candidates: { l: { kind: lstm_classifier, model: { hidden_dim: 1000000000 } } }", "candidates.l.model.hidden_dim"),
            ("candidates: { g: { kind: gru_classifier, model: { layers: 1000 } } }", "candidates.g.model.layers"),
            ("candidates: { g: { kind: gru_classifier, model: { embed_dim: 0 } } }", "candidates.g.model.embed_dim"),
            ("candidates: { b: { kind: bag_of_ngrams, model: { buckets: 100000000 } } }", "candidates.b.model.buckets"),
            ("candidates: { b: { kind: bag_of_ngrams, model: { embed_dim: 100000 } } }", "candidates.b.model.embed_dim"),
            ("candidates: { b: { kind: bag_of_ngrams, char_ngrams: [3, 1000] } }", "candidates.b.char_ngrams"),
            ("candidates: { b: { kind: bag_of_ngrams, max_rows: 0 } }", "candidates.b.max_rows"),
            ("candidates: { l: { kind: lstm_classifier, max_rows: 100000000000000 } }", "candidates.l.max_rows"),
            ("candidates: { t: { kind: tfidf_linear, max_iter: 1000000000 } }", "candidates.t.max_iter"),
        ];
        for (yaml, setting) in cases {
            assert_eq!(bad(yaml).setting, setting, "{yaml}");
        }
        let e = bad("candidates: { l: { kind: lstm_classifier, train: { epochs: 100000000000 } } }");
        assert_eq!(e.to_string(), format!("candidates.l.train.epochs must be between 1 and {}, got 100000000000", pipe_train::MAX_EPOCHS));
        let e = bad(&format!("candidates: {{ g: {{ kind: gru_classifier, max_rows: {} }} }}", crate::MAX_ROWS + 1));
        assert_eq!(e.to_string(), format!("candidates.g.max_rows must be between 1 and {}, got {}", crate::MAX_ROWS, crate::MAX_ROWS + 1));
    }
}
