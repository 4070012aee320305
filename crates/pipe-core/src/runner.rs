//! Runs a [`Pipeline`] against a [`Cache`]: stale stages run, fresh ones are
//! restored, and every run is recorded so `pipe status` can say why a stage is stale.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::artifact::{load_artifact, Artifact, Artifacts};
use crate::cache::{
    Cache, CacheError, EntryRecord, FailedStage, LastRun, Lookup, PastRun, PastStage, RunRecord,
    RUN_HISTORY,
};
use crate::events::{Event, EventSink, WarningSink};
use crate::fsutil::{hash_file, unique_suffix};
use crate::key::{StageKey, StaleReason};
use crate::pipeline::{Pipeline, PipelineStage, UnknownStage};
use crate::stage::{StageContext, StageError};

/// How to run: which stages, and whether to ignore the cache.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run just these stages; their inputs come from the cache.
    pub only: Vec<String>,
    /// Run this stage and everything downstream; upstream comes from the cache.
    pub from: Option<String>,
    /// Run the selected stages even when their outputs are cached.
    pub force: bool,
    /// `cpu` or `cuda:N` (already resolved from `auto`).
    pub device: String,
    /// How long to wait for another `pipe` holding the cache.
    pub lock_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            only: Vec::new(),
            from: None,
            force: false,
            device: "cpu".into(),
            lock_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageOutcome {
    /// The stage ran.
    Ran,
    /// Selected, and its outputs were already cached.
    Cached,
    /// Not selected (`--only`/`--from`); its outputs were read from the cache.
    Restored,
}

/// What happened to one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub name: String,
    pub kind: String,
    pub outcome: StageOutcome,
    pub seconds: f64,
    pub key: String,
    /// Output port → the directory holding its files in the cache.
    pub outputs: BTreeMap<String, PathBuf>,
    /// The stage's JSON outputs (metrics, reports) by port, read back from the
    /// cache so a cached stage reports them as well as one that ran.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, serde_json::Value>,
}

/// The result of a run, stages in execution order.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub stages: Vec<StageReport>,
}

impl RunReport {
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.name == name)
    }
    pub fn ran(&self) -> Vec<&str> {
        self.stages
            .iter()
            .filter(|s| s.outcome == StageOutcome::Ran)
            .map(|s| s.name.as_str())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Selection(#[from] UnknownStage),
    #[error("stage `{stage}` has no cached outputs for its current config and inputs; run it first: `pipe run {pipeline} --only {stage}` (or a run without --only/--from)")]
    NotCached { stage: String, pipeline: String },
    #[error("stage `{stage}`: cannot read {path}: {source}")]
    ExternalFile {
        stage: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stage `{stage}` failed")]
    Stage { stage: String, source: StageError },
    #[error("stage `{stage}`: {problem}")]
    Output {
        stage: String,
        problem: OutputProblem,
    },
}

/// What is wrong with a stage's outputs against what it declares.
#[derive(Debug, thiserror::Error)]
pub enum OutputProblem {
    /// A cache entry the key pointed to lacks an output its stage declares.
    #[error("cached entry has no output `{0}`")]
    NotInCachedEntry(String),
    #[error("output `{port}` is `{found}`, declared `{declared}`")]
    WrongType {
        port: String,
        found: String,
        declared: &'static str,
    },
    #[error("did not produce output `{0}`")]
    NotProduced(String),
    #[error("produced undeclared output `{0}`")]
    Undeclared(String),
}

/// Freshness of one stage, as `pipe status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Freshness {
    Fresh,
    NeverRun,
    Stale { reasons: Vec<String> },
}

/// Output port → artifact already in memory.
type Loaded = BTreeMap<String, Rc<dyn crate::Artifact>>;

struct Resolved {
    key_hash: String,
    record: EntryRecord,
    loaded: RefCell<Loaded>,
}

/// Runs the pipeline. Holds the cache lock for the whole run.
pub fn run(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    events: &dyn EventSink,
) -> Result<RunReport, RunError> {
    let _lock = cache.lock(options.lock_timeout, events)?;
    let n = pipeline.stages.len();
    let selected = selection(pipeline, options)?;
    let explicit = !options.only.is_empty() || options.from.is_some();
    let mut resolved: Vec<Option<Resolved>> = (0..n).map(|_| None).collect();
    let mut run_record = cache.run_record(&pipeline.record_id());
    run_record.path = pipeline.path.clone();
    let mut report = RunReport {
        pipeline: pipeline.source.clone(),
        stages: Vec::new(),
    };
    // Which stages this run computed (true) or reused (false).
    let mut ran_now = BTreeMap::new();

    for i in 0..n {
        let stage = &pipeline.stages[i];
        if !selected[i] && !needed_by_selection(pipeline, &selected, i) {
            continue;
        }
        // Every error from here is this stage's failure, noted in the run record.
        macro_rules! or_fail {
            ($result:expr, $key:expr) => {
                $result.map_err(|error| {
                    let error = RunError::from(error);
                    record_failure(cache, &mut run_record, &ran_now, stage, $key, error)
                })?
            };
        }
        let key = or_fail!(stage_key(pipeline, i, &resolved, &options.device), None);
        let key_hash = key.hash();
        let start = Instant::now();

        let mut cached = None;
        // A stage named by --only/--from runs; others are reused when cached.
        if !(selected[i] && (explicit || options.force)) {
            match or_fail!(cache.lookup(&key_hash), Some(&key)) {
                Lookup::Valid(record) => cached = Some(record),
                Lookup::Corrupt(detail) => events.emit(&Event::CacheCorrupt {
                    stage: stage.name.clone(),
                    key: key_hash.clone(),
                    detail: detail.to_string(),
                }),
                Lookup::Missing => {}
            }
        }
        let (record, loaded, outcome) = match cached {
            Some(record) if selected[i] => {
                events.emit(&Event::StageCached {
                    stage: stage.name.clone(),
                    key: key_hash.clone(),
                });
                (record, BTreeMap::new(), StageOutcome::Cached)
            }
            Some(record) => {
                events.emit(&Event::StageRestored {
                    stage: stage.name.clone(),
                    key: key_hash.clone(),
                });
                (record, BTreeMap::new(), StageOutcome::Restored)
            }
            None if !selected[i] => {
                return Err(RunError::NotCached {
                    stage: stage.name.clone(),
                    pipeline: pipeline.source.clone(),
                });
            }
            None => {
                let executed = execute(
                    pipeline, cache, i, &key, &key_hash, &resolved, options, events,
                );
                let (record, outputs) = or_fail!(executed, Some(&key));
                (record, outputs, StageOutcome::Ran)
            }
        };

        let outputs: BTreeMap<String, PathBuf> = record
            .outputs
            .keys()
            .map(|port| (port.clone(), cache.output_dir(&key_hash, port)))
            .collect();
        let metrics = json_outputs(&record, &outputs);
        if selected[i] {
            let scratch = or_fail!(scratch_dir(cache), Some(&key));
            let ctx = StageContext {
                stage: &stage.name,
                device: &options.device,
                seed: pipeline.seed,
                scratch: &scratch,
                events,
            };
            let published = stage.stage.publish(&outputs, &ctx);
            let _ = std::fs::remove_dir_all(&scratch);
            let published = published.map_err(|source| RunError::Stage {
                stage: stage.name.clone(),
                source,
            });
            or_fail!(published, Some(&key));
        }
        ran_now.insert(stage.name.clone(), outcome == StageOutcome::Ran);
        run_record.stages.insert(
            stage.name.clone(),
            LastRun {
                key_hash: key_hash.clone(),
                key: key.clone(),
            },
        );
        cache.save_run_record(&run_record)?;
        report.stages.push(StageReport {
            name: stage.name.clone(),
            kind: stage.kind.clone(),
            outcome,
            seconds: if outcome == StageOutcome::Ran {
                record.seconds
            } else {
                start.elapsed().as_secs_f64()
            },
            key: key_hash.clone(),
            outputs,
            metrics,
        });
        resolved[i] = Some(Resolved {
            key_hash,
            record,
            loaded: RefCell::new(loaded),
        });
    }
    remember_run(&mut run_record, &ran_now, None);
    cache.save_run_record(&run_record)?;
    Ok(report)
}

/// Adds this run to the record's history: the key of each stage it
/// reached, and whether it computed it. A successful run also keeps the
/// keys of stages it did not touch (`--only`); a failed run only those it
/// reached, since the others' keys are older runs'.
fn remember_run(
    record: &mut RunRecord,
    ran_now: &BTreeMap<String, bool>,
    failed: Option<FailedStage>,
) {
    let stages: BTreeMap<String, PastStage> = record
        .stages
        .iter()
        .filter(|(name, _)| failed.is_none() || ran_now.contains_key(*name))
        .map(|(name, last)| {
            let stage = PastStage {
                key_hash: last.key_hash.clone(),
                ran: ran_now.get(name).copied().unwrap_or(false),
            };
            (name.clone(), stage)
        })
        .collect();
    let finished_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let same_keys = |previous: &PastRun| {
        previous.failed.is_none()
            && previous.stages.len() == stages.len()
            && previous
                .stages
                .iter()
                .zip(&stages)
                .all(|((a, x), (b, y))| a == b && x.key_hash == y.key_hash)
    };
    // A run that computed nothing repeats an earlier run with the same keys
    // (the seeds of `pipe compare --seeds`, run again): that run moves to
    // the end, so the history holds each outcome once.
    let computed_nothing = failed.is_none() && stages.values().all(|s| !s.ran);
    if computed_nothing {
        record.history.retain(|previous| !same_keys(previous));
    }
    record.history.push(PastRun {
        finished_unix,
        stages,
        failed,
    });
    let excess = record.history.len().saturating_sub(RUN_HISTORY);
    record.history.drain(..excess);
}

/// Notes in the run record that `stage` failed (with `key`, when it got
/// that far), so `pipe report` can say so, and hands the error back. An
/// interrupt is not the stage's failure and is not noted. Saving is best
/// effort: the run's own error is what the user must see.
fn record_failure(
    cache: &Cache,
    record: &mut RunRecord,
    ran_now: &BTreeMap<String, bool>,
    stage: &PipelineStage,
    key: Option<&StageKey>,
    error: RunError,
) -> RunError {
    if crate::interrupt::interrupted() {
        return error;
    }
    let failure = FailedStage {
        stage: stage.name.clone(),
        key_hash: key.map(StageKey::hash),
        config: key.map_or_else(|| stage.config.clone(), |k| k.config.clone()),
        error: error_chain(&error),
    };
    remember_run(record, ran_now, Some(failure));
    let _ = cache.save_run_record(record);
    error
}

/// The JSON documents among a stage's outputs; entries were verified on lookup.
fn json_outputs(
    record: &EntryRecord,
    dirs: &BTreeMap<String, PathBuf>,
) -> BTreeMap<String, serde_json::Value> {
    let json_type = <crate::JsonDoc as crate::LoadArtifact>::TYPE_NAME;
    record
        .outputs
        .iter()
        .filter(|(_, output)| output.type_name == json_type)
        .filter_map(|(port, _)| {
            let doc = <crate::JsonDoc as crate::LoadArtifact>::load(&dirs[port]).ok()?;
            Some((port.clone(), doc.0))
        })
        .collect()
}

/// Whether stage `i` (not selected) feeds a selected stage, directly or not.
fn needed_by_selection(pipeline: &Pipeline, selected: &[bool], i: usize) -> bool {
    let mut needed = selected.to_vec();
    for j in (0..pipeline.stages.len()).rev() {
        if needed[j] {
            for (up, _) in pipeline.stages[j].inputs.values() {
                needed[*up] = true;
            }
        }
    }
    needed[i]
}

fn selection(pipeline: &Pipeline, options: &RunOptions) -> Result<Vec<bool>, RunError> {
    let n = pipeline.stages.len();
    if options.only.is_empty() && options.from.is_none() {
        return Ok(vec![true; n]);
    }
    let mut selected = vec![false; n];
    for name in &options.only {
        selected[pipeline.require(name)?] = true;
    }
    if let Some(from) = &options.from {
        for i in pipeline.downstream_of(pipeline.require(from)?) {
            selected[i] = true;
        }
    }
    Ok(selected)
}

fn stage_key(
    pipeline: &Pipeline,
    i: usize,
    resolved: &[Option<Resolved>],
    device: &str,
) -> Result<StageKey, RunError> {
    let stage = &pipeline.stages[i];
    let mut inputs = BTreeMap::new();
    for (port, (j, output)) in &stage.inputs {
        let up = resolved[*j].as_ref().expect("upstream resolved first");
        let digest = up
            .record
            .outputs
            .get(output)
            .map(|o| o.digest.clone())
            .ok_or_else(|| RunError::Output {
                stage: pipeline.stages[*j].name.clone(),
                problem: OutputProblem::NotInCachedEntry(output.clone()),
            })?;
        inputs.insert(port.clone(), digest);
    }
    let files = external_file_digests(stage).map_err(|(path, source)| RunError::ExternalFile {
        stage: stage.name.clone(),
        path,
        source,
    })?;
    Ok(StageKey {
        inputs,
        files,
        ..stage_key_without_inputs(pipeline, i, device)
    })
}

fn external_file_digests(
    stage: &crate::PipelineStage,
) -> Result<BTreeMap<String, String>, (PathBuf, std::io::Error)> {
    let mut files = BTreeMap::new();
    for path in stage.stage.external_files() {
        let digest = hash_file(&path).map_err(|e| (path.clone(), e))?;
        files.insert(path.display().to_string(), digest);
    }
    Ok(files)
}

fn env_for(pipeline: &Pipeline, i: usize, device: &str) -> BTreeMap<String, String> {
    let mut env = pipeline.stages[i].stage.machine_choices(device);
    if pipeline.stages[i].stage.depends_on_env() {
        let kind = device.split(':').next().unwrap_or(device);
        env.insert("device".into(), kind.to_string());
        env.insert("seed".into(), pipeline.seed.to_string());
    }
    env
}

fn scratch_dir(cache: &Cache) -> Result<PathBuf, RunError> {
    let dir = cache.root().join("tmp").join(format!(
        "scratch-{}-{}",
        std::process::id(),
        unique_suffix()
    ));
    std::fs::create_dir_all(&dir).map_err(|source| CacheError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

#[allow(clippy::too_many_arguments)]
fn execute(
    pipeline: &Pipeline,
    cache: &Cache,
    i: usize,
    key: &StageKey,
    key_hash: &str,
    resolved: &[Option<Resolved>],
    options: &RunOptions,
    events: &dyn EventSink,
) -> Result<(EntryRecord, Loaded), RunError> {
    let stage = &pipeline.stages[i];
    let fail = |source: StageError| {
        events.emit(&Event::StageFailed {
            stage: stage.name.clone(),
            error: error_chain(&source),
        });
        RunError::Stage {
            stage: stage.name.clone(),
            source,
        }
    };
    let mut inputs = Artifacts::new();
    for (port, (j, output)) in &stage.inputs {
        let up = resolved[*j].as_ref().expect("upstream resolved first");
        let existing = up.loaded.borrow().get(output).cloned();
        let artifact = match existing {
            Some(a) => a,
            None => {
                let type_name = &up.record.outputs[output].type_name;
                let a: Rc<dyn Artifact> =
                    load_artifact(type_name, &cache.output_dir(&up.key_hash, output))
                        .map_err(|e| fail(e.into()))?
                        .into();
                up.loaded.borrow_mut().insert(output.clone(), a.clone());
                a
            }
        };
        inputs.insert_rc(port.clone(), artifact);
    }

    events.emit(&Event::StageStarted {
        stage: stage.name.clone(),
        kind: stage.kind.clone(),
        key: key_hash.to_string(),
    });
    let start = Instant::now();
    let pending = cache.begin(key_hash)?;
    let _pending_guard = crate::interrupt::ScratchGuard::new(pending.dir().to_path_buf());
    let scratch = scratch_dir(cache)?;
    let _scratch_guard = crate::interrupt::ScratchGuard::new(scratch.clone());
    let warnings = WarningSink::new(events);
    let ctx = StageContext {
        stage: &stage.name,
        device: &options.device,
        seed: pipeline.seed,
        scratch: &scratch,
        events: &warnings,
    };
    // A panic in a stage (a libtorch error tch turns into one, a bug) is
    // that stage's failure, reported like any other; nothing is cached.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stage.stage.run(&inputs, &ctx)
    }))
    .unwrap_or_else(|panic| Err(StageError::Panicked(panic_message(panic.as_ref()))));
    let _ = std::fs::remove_dir_all(&scratch);
    let outputs = result.map_err(fail)?;
    // An external file that changed while the stage read it would leave an
    // entry keyed by contents the stage may not have seen.
    let files_now =
        external_file_digests(stage).map_err(|(path, source)| RunError::ExternalFile {
            stage: stage.name.clone(),
            path,
            source,
        })?;
    if let Some(path) = key
        .files
        .iter()
        .find(|(path, digest)| files_now.get(*path) != Some(digest))
        .map(|(path, _)| path)
    {
        return Err(fail(StageError::InputFileChanged(path.clone())));
    }

    let declared = stage.stage.outputs();
    let mut types = BTreeMap::new();
    for port in &declared {
        match outputs.get_rc(&port.name) {
            Some(a) if a.type_name() == port.type_name => {
                a.save(&pending.output_dir(&port.name)?)
                    .map_err(|e| fail(e.into()))?;
                types.insert(port.name.to_string(), port.type_name.to_string());
            }
            Some(a) => {
                let problem = OutputProblem::WrongType {
                    port: port.name.to_string(),
                    found: a.type_name().to_string(),
                    declared: port.type_name,
                };
                return Err(RunError::Output {
                    stage: stage.name.clone(),
                    problem,
                });
            }
            None if port.required => {
                return Err(RunError::Output {
                    stage: stage.name.clone(),
                    problem: OutputProblem::NotProduced(port.name.to_string()),
                })
            }
            None => {}
        }
    }
    if let Some((extra, _)) = outputs
        .iter()
        .find(|(name, _)| !declared.iter().any(|p| p.name == name.as_str()))
    {
        return Err(RunError::Output {
            stage: stage.name.clone(),
            problem: OutputProblem::Undeclared(extra.clone()),
        });
    }
    crate::fault::point("after-outputs");
    let seconds = start.elapsed().as_secs_f64();
    let record = pending.commit(key, &types, seconds, warnings.warnings.into_inner())?;
    events.emit(&Event::StageFinished {
        stage: stage.name.clone(),
        key: key_hash.to_string(),
        seconds,
    });
    let loaded = outputs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((record, loaded))
}

/// The text a panic carried (`panic!("…")` or an `expect` message).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// An error and its sources, joined by `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Each stage's freshness against the cache and its last run, without running anything.
pub fn status(
    pipeline: &Pipeline,
    cache: &Cache,
    device: &str,
    lock_timeout: Duration,
    events: &dyn EventSink,
) -> Result<Vec<(String, Freshness)>, RunError> {
    Ok(
        status_with_entries(pipeline, cache, device, lock_timeout, events)?
            .into_iter()
            .map(|(name, freshness, _)| (name, freshness))
            .collect(),
    )
}

/// [`status`], with the cache entry each fresh stage would reuse (its
/// outputs, the seconds it took), for reports.
pub fn status_with_entries(
    pipeline: &Pipeline,
    cache: &Cache,
    device: &str,
    lock_timeout: Duration,
    events: &dyn EventSink,
) -> Result<Vec<(String, Freshness, Option<EntryRecord>)>, RunError> {
    let _lock = cache.lock(lock_timeout, events)?;
    let last = cache.run_record(&pipeline.record_id());
    let mut resolved: Vec<Option<Resolved>> = (0..pipeline.stages.len()).map(|_| None).collect();
    let mut out = Vec::new();
    for (i, stage) in pipeline.stages.iter().enumerate() {
        let stale_upstream: Vec<String> = stage
            .inputs
            .values()
            .filter(|(j, _)| resolved[*j].is_none())
            .map(|(j, _)| pipeline.stages[*j].name.clone())
            .collect();
        let previous = last.stages.get(&stage.name);
        if !stale_upstream.is_empty() {
            let mut reasons: Vec<String> = stale_upstream
                .iter()
                .map(|u| format!("upstream `{u}` is not fresh"))
                .collect();
            if previous.is_none() {
                out.push((stage.name.clone(), Freshness::NeverRun, None));
                continue;
            }
            // Config and code changes can still be told without the inputs' digests.
            let files = external_file_digests(stage).unwrap_or_default();
            let prev = &previous.expect("checked").key;
            let partial = StageKey {
                inputs: prev.inputs.clone(),
                files,
                ..stage_key_without_inputs(pipeline, i, device)
            };
            reasons.extend(partial.diff(prev).iter().map(StaleReason::to_string));
            out.push((stage.name.clone(), Freshness::Stale { reasons }, None));
            continue;
        }
        let key = stage_key(pipeline, i, &resolved, device)?;
        let hash = key.hash();
        match cache.lookup(&hash)? {
            Lookup::Valid(record) => {
                out.push((stage.name.clone(), Freshness::Fresh, Some(record.clone())));
                resolved[i] = Some(Resolved {
                    key_hash: hash,
                    record,
                    loaded: RefCell::new(BTreeMap::new()),
                });
            }
            other => {
                let freshness = match previous {
                    None => Freshness::NeverRun,
                    Some(prev) => {
                        let mut reasons: Vec<String> = key
                            .diff(&prev.key)
                            .iter()
                            .map(StaleReason::to_string)
                            .collect();
                        if reasons.is_empty() {
                            reasons.push(match other {
                                Lookup::Corrupt(detail) => format!(
                                    "cache entry was corrupt ({detail}) and has been removed"
                                ),
                                _ => "cache entry was removed (pipe gc?)".into(),
                            });
                        }
                        Freshness::Stale { reasons }
                    }
                };
                out.push((stage.name.clone(), freshness, None));
            }
        }
    }
    Ok(out)
}

fn stage_key_without_inputs(pipeline: &Pipeline, i: usize, device: &str) -> StageKey {
    let stage = &pipeline.stages[i];
    StageKey {
        kind: stage.kind.clone(),
        code_version: stage.stage.code_version(),
        build: if stage.stage.build_independent() {
            String::new()
        } else {
            crate::stage::build_of_kind(&stage.kind)
        },
        config: stage.config.clone(),
        inputs: BTreeMap::new(),
        files: BTreeMap::new(),
        env: env_for(pipeline, i, device),
    }
}
