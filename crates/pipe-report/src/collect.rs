//! What the cache knows of a pipeline's stages, read without running any.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pipe_core::{Cache, EntryRecord, Freshness, NullSink, Pipeline};
use serde_json::Value;

use crate::ReportError;

/// A stage against the cache.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Its result for the current config, inputs and code is cached.
    Fresh,
    /// It would run again, and why.
    Stale(Vec<String>),
    /// It has no result in the cache (never run, or removed by `gc`).
    NeverRun,
    /// The last run failed at this stage, with this error.
    Failed(String),
}

/// A cached result of a stage.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key_hash: String,
    pub seconds: f64,
    pub outputs: BTreeMap<String, Output>,
    /// What besides the config the result depends on: device, seed, machine choices.
    pub env: BTreeMap<String, String>,
    /// The config it was computed with, every setting spelled out (defaults
    /// too), without `kind`.
    pub config: Value,
    /// What the stage warned of while computing it.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub type_name: String,
    pub dir: PathBuf,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct StageView {
    pub name: String,
    pub kind: String,
    /// The effective config (after `--set`), without `kind`; for an older
    /// run ([`collect_history`]) the config of its result, null when that
    /// result is no longer cached.
    pub config: Value,
    /// Settings `--set` changed: (path, value in the YAML, value used).
    pub changed: Vec<(String, String, String)>,
    /// (input port, upstream stage, its output port).
    pub upstream: Vec<(String, String, String)>,
    pub status: Status,
    /// The result the report shows: the fresh one, else (marked stale) the
    /// last run's when it is still cached.
    pub entry: Option<Entry>,
    /// Whether the last run computed it (`Some(false)`: reused from the cache).
    pub ran: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct RunView {
    pub pipeline: String,
    pub description: Option<String>,
    /// When the run ended (seconds since the Unix epoch), if recorded.
    pub finished_unix: Option<u64>,
    pub stages: Vec<StageView>,
}

impl RunView {
    /// The stages in order with the (first) output of this type and its stage.
    pub fn outputs_of_type<'a>(
        &'a self,
        type_name: &'a str,
    ) -> impl Iterator<Item = (&'a StageView, &'a str, &'a Output)> + 'a {
        self.stages.iter().flat_map(move |stage| {
            stage
                .entry
                .iter()
                .flat_map(|e| e.outputs.iter())
                .filter(move |(_, o)| o.type_name == type_name)
                .map(move |(port, o)| (stage, port.as_str(), o))
        })
    }

    /// The output `port` of stage `name`, if cached.
    pub fn output(&self, name: &str, port: &str) -> Option<&Output> {
        let stage = self.stages.iter().find(|s| s.name == name)?;
        stage.entry.as_ref()?.outputs.get(port)
    }
}

/// Reads each stage's status and result. `as_written` is the pipeline
/// without `--set` overrides, to show what they changed.
pub fn collect(
    pipeline: &Pipeline,
    as_written: Option<&Pipeline>,
    cache: &Cache,
    device: &str,
) -> Result<RunView, ReportError> {
    let statuses = pipe_core::status_with_entries(
        pipeline,
        cache,
        device,
        Duration::from_secs(30),
        &NullSink,
    )?;
    let last = cache.run_record(&pipeline.record_id());
    let last_run = last.history.last();
    let mut stages = Vec::new();
    for (stage, (_, freshness, fresh)) in pipeline.stages.iter().zip(statuses) {
        // The last run's failure; an older one was followed by a run that
        // did not fail there.
        let failure = last_run
            .and_then(|run| run.failed.as_ref())
            .filter(|f| f.stage == stage.name);
        let status = match (freshness, failure) {
            (Freshness::Fresh, _) => Status::Fresh,
            (_, Some(failure)) => Status::Failed(failure.error.clone()),
            (Freshness::NeverRun, None) => Status::NeverRun,
            (Freshness::Stale { reasons }, None) => Status::Stale(reasons),
        };
        let ran = last_run
            .and_then(|run| run.stages.get(&stage.name))
            .filter(|past| fresh.as_ref().is_some_and(|f| f.key_hash == past.key_hash))
            .map(|past| past.ran);
        // A stale stage still shows its last result, if the cache has it.
        let record = fresh.or_else(|| {
            let last = last.stages.get(&stage.name)?;
            match cache.lookup(&last.key_hash) {
                Ok(pipe_core::Lookup::Valid(record)) => Some(record),
                _ => None,
            }
        });
        let config = without_kind(&stage.config);
        let written = as_written
            .and_then(|p| p.stages.iter().find(|s| s.name == stage.name))
            .map(|s| s.config.clone());
        let mut changed = Vec::new();
        if let Some(written) = &written {
            config_diff("", written, &stage.config, &mut changed);
        }
        stages.push(StageView {
            name: stage.name.clone(),
            kind: stage.kind.clone(),
            config,
            changed,
            upstream: upstream(pipeline, stage),
            status,
            entry: record.map(|r| entry(cache, r)),
            ran,
        });
    }
    let failed = stages.iter().any(|s| matches!(s.status, Status::Failed(_)));
    if stages.iter().all(|s| s.entry.is_none()) && !failed {
        return Err(ReportError::NothingToReport(pipeline.source.clone()));
    }
    Ok(RunView {
        pipeline: pipeline.source.clone(),
        description: pipeline.description.clone(),
        finished_unix: last_run.map(|r| r.finished_unix),
        stages,
    })
}

/// Each run of `pipeline` the cache remembers, oldest first, with the
/// results still cached (an older run's may have been removed by `gc`).
pub fn collect_history(pipeline: &Pipeline, cache: &Cache) -> Result<Vec<RunView>, ReportError> {
    let record = cache.run_record(&pipeline.record_id());
    let mut runs = Vec::new();
    for past in &record.history {
        let stages = pipeline
            .stages
            .iter()
            .map(|stage| {
                let this = past.stages.get(&stage.name);
                let failure = past.failed.as_ref().filter(|f| f.stage == stage.name);
                let entry = this.and_then(|s| match cache.lookup(&s.key_hash) {
                    Ok(pipe_core::Lookup::Valid(found)) => Some(entry(cache, found)),
                    _ => None,
                });
                let status = match (failure, &entry) {
                    (Some(failure), _) => Status::Failed(failure.error.clone()),
                    (None, Some(_)) => Status::Fresh,
                    (None, None) => Status::NeverRun,
                };
                // A result removed since (by `gc`) leaves its config unknown.
                let config = match (failure, &entry) {
                    (Some(failure), _) => without_kind(&failure.config),
                    (None, Some(entry)) => entry.config.clone(),
                    (None, None) => Value::Null,
                };
                StageView {
                    name: stage.name.clone(),
                    kind: stage.kind.clone(),
                    config,
                    changed: Vec::new(),
                    upstream: upstream(pipeline, stage),
                    status,
                    ran: this.map(|s| s.ran),
                    entry,
                }
            })
            .collect();
        runs.push(RunView {
            pipeline: pipeline.source.clone(),
            description: pipeline.description.clone(),
            finished_unix: Some(past.finished_unix),
            stages,
        });
    }
    if runs.is_empty() {
        return Err(ReportError::NothingToReport(pipeline.source.clone()));
    }
    Ok(runs)
}

fn without_kind(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(map) = config.as_object_mut() {
        map.remove("kind");
    }
    config
}

fn upstream(
    pipeline: &Pipeline,
    stage: &pipe_core::PipelineStage,
) -> Vec<(String, String, String)> {
    stage
        .inputs
        .iter()
        .map(|(port, (i, out))| (port.clone(), pipeline.stages[*i].name.clone(), out.clone()))
        .collect()
}

fn entry(cache: &Cache, record: EntryRecord) -> Entry {
    let outputs = record
        .outputs
        .iter()
        .map(|(port, output)| {
            (
                port.clone(),
                Output {
                    type_name: output.type_name.clone(),
                    dir: cache.output_dir(&record.key_hash, port),
                    bytes: output.files.values().map(|f| f.size).sum(),
                },
            )
        })
        .collect();
    let config = without_kind(&record.key.config);
    Entry {
        key_hash: record.key_hash.clone(),
        seconds: record.seconds,
        outputs,
        env: record.key.env.clone(),
        config,
        warnings: record.warnings.clone(),
    }
}

/// The settings whose values differ between two configs, by path
/// (`train.lr`, `candidates.0.epochs`), with both values as JSON.
pub fn config_diff(
    prefix: &str,
    old: &Value,
    new: &Value,
    out: &mut Vec<(String, String, String)>,
) {
    let path = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let null = Value::Null;
                config_diff(
                    &path(key),
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                config_diff(&path(&i.to_string()), x, y, out);
            }
        }
        (a, b) if a != b => out.push((prefix.to_string(), a.to_string(), b.to_string())),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::config_diff;
    use serde_json::json;

    #[test]
    fn the_diff_names_each_changed_setting_by_its_path() {
        let old = json!({"lr": 0.004, "epochs": 12, "model": {"hidden": 128, "layers": [1, 2]}, "gone": true});
        let new = json!({"lr": 0.01, "epochs": 12, "model": {"hidden": 64, "layers": [1, 3]}, "new": "x"});
        let mut out = Vec::new();
        config_diff("", &old, &new, &mut out);
        assert_eq!(
            out,
            vec![
                ("gone".into(), "true".into(), "null".into()),
                ("lr".into(), "0.004".into(), "0.01".into()),
                ("model.hidden".into(), "128".into(), "64".into()),
                ("model.layers.1".into(), "2".into(), "3".into()),
                ("new".into(), "null".into(), "\"x\"".into()),
            ]
        );
        let mut none = Vec::new();
        config_diff("", &old, &old, &mut none);
        assert!(none.is_empty());
        // Lists of another length differ as a whole.
        let mut lists = Vec::new();
        config_diff("", &json!({"a": [1]}), &json!({"a": [1, 2]}), &mut lists);
        assert_eq!(lists, vec![("a".into(), "[1]".into(), "[1,2]".into())]);
    }
}
