//! Pipelines: YAML → [`PipelineSpec`] (plain serde, with source positions) →
//! [`Pipeline::from_spec`] (validated, wiring resolved, topologically ordered).
//! The runner only ever sees a [`Pipeline`].
//!
//! ```yaml
//! seed: 42
//! stages:
//!   load:
//!     kind: load_artifacts
//!     dir: data/wordnet
//!   tensors:
//!     kind: to_tensors
//!     inputs: { x_train: load.x_train, y_train: load.y_train }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::key::canonical_json;
use crate::stage::{registered_stages, InvalidSetting, Port, Stage};

/// A position in the pipeline file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl Location {
    fn from_saphyr(loc: &serde_saphyr::Location) -> Option<Location> {
        (loc.line() > 0).then(|| Location {
            line: loc.line(),
            column: loc.column(),
        })
    }
}

/// Why a pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}: cannot read the pipeline: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A problem at a known place in the file.
    #[error("{file}{}: {problem}", .at.map(|l| format!(":{}:{}", l.line, l.column)).unwrap_or_default())]
    Invalid {
        file: String,
        at: Option<Location>,
        problem: Box<PipelineProblem>,
    },
    #[error("{file}: {source}")]
    Override { file: String, source: OverrideError },
}

/// What is wrong in a pipeline file, one variant per check, so a caller
/// (an editor plugin, a test) can tell them apart without reading text.
#[derive(Debug, thiserror::Error)]
pub enum PipelineProblem {
    /// Not YAML, or not the pipeline schema.
    #[error("{0}")]
    Syntax(String),
    #[error("the pipeline has no stages")]
    NoStages,
    #[error("stage name `{0}` must be non-empty and contain no `.`")]
    BadStageName(String),
    #[error("stage `{stage}` has no `kind:`; known kinds: {}", .known.join(", "))]
    NoKind {
        stage: String,
        known: Vec<&'static str>,
    },
    #[error("stage `{stage}`: `kind` must be a string")]
    KindNotString { stage: String },
    #[error("stage `{stage}`: unknown stage kind `{kind}`{hint}; known kinds: {}", .known.join(", "))]
    UnknownKind {
        stage: String,
        kind: String,
        hint: String,
        known: Vec<&'static str>,
    },
    /// A field the kind does not have, or a value of the wrong shape.
    #[error("stage `{stage}` ({kind}){at_path}: {message}{hint}")]
    BadConfig {
        stage: String,
        kind: String,
        at_path: String,
        message: String,
        hint: String,
    },
    /// A setting the stage's `validate` refuses.
    #[error("stage `{stage}` ({kind}): {setting}")]
    BadSetting {
        stage: String,
        kind: String,
        setting: InvalidSetting,
    },
    /// The config does not serialize back (a stage's own serde bug).
    #[error("{0}")]
    Unserializable(String),
    #[error("stage `{stage}`: `inputs` must map input names to `stage.output`")]
    InputsNotMap { stage: String },
    #[error("stage `{stage}`: input `{port}` must be a string `stage.output`")]
    InputNotString { stage: String, port: String },
    #[error("stage `{stage}`: input `{port}` = `{target}` is not of the form `stage.output`")]
    InputNotReference {
        stage: String,
        port: String,
        target: String,
    },
    #[error("stage `{stage}` ({kind}) has no input `{port}`{hint}; its inputs: {inputs}")]
    UnknownInput {
        stage: String,
        kind: String,
        port: String,
        hint: String,
        inputs: String,
    },
    #[error("stage `{stage}` ({kind}): required input `{port}` ({type_name}) is not wired; add `inputs: {{ {port}: STAGE.OUTPUT }}`")]
    UnwiredInput {
        stage: String,
        kind: String,
        port: String,
        type_name: &'static str,
    },
    #[error(
        "stage `{stage}`: input `{port}` refers to stage `{upstream}`, which does not exist{hint}"
    )]
    UnknownUpstream {
        stage: String,
        port: String,
        upstream: String,
        hint: String,
    },
    #[error("stage `{stage}`: input `{port}` refers to `{upstream}.{output}`, but `{upstream}` ({upstream_kind}) has no output `{output}`{hint}; its outputs: {outputs}")]
    UnknownOutput {
        stage: String,
        port: String,
        upstream: String,
        upstream_kind: String,
        output: String,
        hint: String,
        outputs: String,
    },
    #[error(
        "stage `{stage}`: input `{port}` takes `{takes}`, but `{upstream}.{output}` is `{is}`"
    )]
    TypeMismatch {
        stage: String,
        port: String,
        takes: &'static str,
        upstream: String,
        output: String,
        is: &'static str,
    },
    #[error("the stages form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// A problem and where in the file it is (boxed: the problems carry the
/// names a message needs, and an error path should stay small).
type Located = Box<(Option<Location>, PipelineProblem)>;

fn located(at: Option<Location>, problem: PipelineProblem) -> Located {
    Box::new((at, problem))
}

/// One `--set stage.field[.sub]=value` override, applied before validation so
/// it changes the cache key exactly like editing the YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub stage: String,
    pub path: Vec<String>,
    pub value: Value,
}

impl Override {
    /// Parses `stage.field=value`; the value is read as a YAML scalar or flow value.
    pub fn parse(text: &str) -> Result<Override, OverrideError> {
        let syntax = || OverrideError::Syntax(text.to_string());
        let (lhs, rhs) = text.split_once('=').ok_or_else(syntax)?;
        let mut parts = lhs.trim().split('.').map(str::to_string);
        let stage = parts.next().filter(|s| !s.is_empty());
        let path: Vec<String> = parts.collect();
        let (Some(stage), false) = (stage, path.is_empty() || path.iter().any(|p| p.is_empty()))
        else {
            return Err(syntax());
        };
        let value: Value = if rhs.trim().is_empty() {
            Value::String(String::new())
        } else {
            serde_saphyr::from_str(rhs).map_err(|e| OverrideError::Value {
                text: text.to_string(),
                source: Box::new(e),
            })?
        };
        Ok(Override { stage, path, value })
    }
}

/// Why a `--set` override cannot be parsed or applied.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("`{0}`: expected stage.field=value")]
    Syntax(String),
    #[error("`{text}`: value is not valid YAML: {source}")]
    Value {
        text: String,
        source: Box<serde_saphyr::Error>,
    },
    #[error("--set {stage}.{field}: no stage named `{stage}`{hint}")]
    NoSuchStage {
        stage: String,
        field: String,
        hint: String,
    },
    #[error("--set {stage}.{field}: only config fields can be overridden")]
    NotAConfigField { stage: String, field: String },
}

/// A stage name (from `--only`, `--from`, ...) that the pipeline lacks.
#[derive(Debug, thiserror::Error)]
#[error("no stage named `{name}` in {pipeline}{hint}; stages: {}", .stages.join(", "))]
pub struct UnknownStage {
    pub name: String,
    pub pipeline: String,
    /// `; did you mean ...?` or empty.
    pub hint: String,
    pub stages: Vec<String>,
}

type RawStage = IndexMap<String, Spanned<Value>>;

/// An input port's wiring as written: upstream stage, its output, where.
type Wire = (String, String, Option<Location>);

/// A stage's inputs resolved: input port → (upstream stage index, its output port).
type ResolvedInputs = BTreeMap<String, (usize, String)>;

/// The pipeline file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// Seed for every stage that draws random numbers; part of their keys.
    #[serde(default)]
    pub seed: Option<u64>,
    /// `auto`, `cpu` or `cuda[:N]`.
    #[serde(default)]
    pub device: Option<String>,
    stages: IndexMap<String, RawStage>,
}

impl PipelineSpec {
    pub fn from_yaml(file: &str, text: &str) -> Result<PipelineSpec, PipelineError> {
        serde_saphyr::from_str(text).map_err(|e| PipelineError::Invalid {
            file: file.to_string(),
            at: None,
            problem: Box::new(PipelineProblem::Syntax(e.to_string())),
        })
    }

    pub fn stage_names(&self) -> impl Iterator<Item = &String> {
        self.stages.keys()
    }
}

/// A stage with its config deserialized and its inputs resolved to upstream outputs.
#[derive(Debug)]
pub struct PipelineStage {
    pub name: String,
    pub kind: String,
    pub stage: Box<dyn Stage>,
    /// The canonical config (kind included), as hashed into the key.
    pub config: Value,
    /// Input port → (index of the producing stage in [`Pipeline::stages`], its output port).
    pub inputs: BTreeMap<String, (usize, String)>,
    pub location: Option<Location>,
}

/// A validated pipeline, stages in a topological order that keeps file order where it can.
#[derive(Debug)]
pub struct Pipeline {
    /// Where the pipeline came from (a path, or a name for pipelines given as strings).
    pub source: String,
    /// The file's absolute path, when the pipeline was loaded from one:
    /// names its run record in the cache from any working directory.
    pub path: Option<std::path::PathBuf>,
    pub description: Option<String>,
    pub seed: u64,
    pub device: String,
    pub stages: Vec<PipelineStage>,
}

pub const DEFAULT_SEED: u64 = 42;

impl Pipeline {
    /// Reads, parses and validates a pipeline file.
    pub fn load(path: &Path, overrides: &[Override]) -> Result<Pipeline, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|source| PipelineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut pipeline = Self::from_yaml_str(&path.display().to_string(), &text, overrides)?;
        pipeline.path = path.canonicalize().ok();
        Ok(pipeline)
    }

    /// What names this pipeline's run record in the cache: its absolute
    /// path when it came from a file, else its source name.
    pub fn record_id(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| self.source.clone(), |p| p.display().to_string())
    }

    /// Parses and validates a pipeline given as YAML text; `source` names it in errors.
    pub fn from_yaml_str(
        source: &str,
        text: &str,
        overrides: &[Override],
    ) -> Result<Pipeline, PipelineError> {
        let spec = PipelineSpec::from_yaml(source, text)?;
        Self::from_spec(source, spec, overrides)
    }

    /// Validates a parsed pipeline file, as a list of steps: apply the
    /// overrides; parse each stage (its kind and config, validated) and
    /// wire its inputs (each names a port it has, every required one is
    /// wired); resolve each wire to an upstream output of the type the input
    /// takes; order the stages.
    pub fn from_spec(
        source: &str,
        mut spec: PipelineSpec,
        overrides: &[Override],
    ) -> Result<Pipeline, PipelineError> {
        let invalid = |located: Located| {
            let (at, problem) = *located;
            PipelineError::Invalid {
                file: source.to_string(),
                at,
                problem: Box::new(problem),
            }
        };
        if spec.stages.is_empty() {
            return Err(invalid(located(None, PipelineProblem::NoStages)));
        }
        apply_overrides(&mut spec, overrides).map_err(|e| PipelineError::Override {
            file: source.to_string(),
            source: e,
        })?;
        let mut parsed = Vec::new();
        let mut wiring = Vec::new();
        for (name, raw) in &spec.stages {
            let stage = parse_stage(name, raw).map_err(invalid)?;
            wiring.push(wire_inputs(&stage, raw).map_err(invalid)?);
            parsed.push(stage);
        }
        let resolved = resolve_wiring(&parsed, &wiring).map_err(invalid)?;
        let stages = in_topological_order(parsed, resolved).map_err(invalid)?;
        Ok(Pipeline {
            source: source.to_string(),
            path: None,
            description: spec.description,
            seed: spec.seed.unwrap_or(DEFAULT_SEED),
            device: spec.device.unwrap_or_else(|| "auto".to_string()),
            stages,
        })
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Like [`index_of`](Self::index_of), with an error that lists the stages.
    pub fn require(&self, name: &str) -> Result<usize, UnknownStage> {
        self.index_of(name).ok_or_else(|| UnknownStage {
            name: name.to_string(),
            pipeline: self.source.clone(),
            hint: did_you_mean(name, self.stages.iter().map(|s| s.name.as_str())),
            stages: self.stages.iter().map(|s| s.name.clone()).collect(),
        })
    }

    /// Indices of `start` and every stage downstream of it.
    pub fn downstream_of(&self, start: usize) -> Vec<usize> {
        let mut marked = vec![false; self.stages.len()];
        marked[start] = true;
        for (i, s) in self.stages.iter().enumerate().skip(start + 1) {
            if s.inputs.values().any(|(j, _)| marked[*j]) {
                marked[i] = true;
            }
        }
        (0..self.stages.len()).filter(|&i| marked[i]).collect()
    }

    /// The DAG as text, Mermaid or Graphviz dot.
    pub fn render_dag(&self, format: DagFormat) -> String {
        let mut out = String::new();
        let edges = || {
            self.stages.iter().flat_map(move |s| {
                s.inputs.iter().map(move |(port, (j, output))| {
                    (
                        self.stages[*j].name.as_str(),
                        output.as_str(),
                        s.name.as_str(),
                        port.as_str(),
                    )
                })
            })
        };
        match format {
            DagFormat::Text => {
                for s in &self.stages {
                    out.push_str(&format!("{} ({})\n", s.name, s.kind));
                    for (port, (j, output)) in &s.inputs {
                        out.push_str(&format!("  {port} <- {}.{output}\n", self.stages[*j].name));
                    }
                }
            }
            DagFormat::Mermaid => {
                out.push_str("flowchart LR\n");
                for s in &self.stages {
                    out.push_str(&format!(
                        "  {}[\"{}<br/><small>{}</small>\"]\n",
                        s.name, s.name, s.kind
                    ));
                }
                for (from, output, to, port) in edges() {
                    out.push_str(&format!("  {from} -- \"{output} → {port}\" --> {to}\n"));
                }
            }
            DagFormat::Dot => {
                out.push_str("digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n");
                for s in &self.stages {
                    out.push_str(&format!(
                        "  \"{}\" [label=\"{}\\n({})\"];\n",
                        s.name, s.name, s.kind
                    ));
                }
                for (from, output, to, port) in edges() {
                    out.push_str(&format!(
                        "  \"{from}\" -> \"{to}\" [label=\"{output} → {port}\"];\n"
                    ));
                }
                out.push_str("}\n");
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagFormat {
    Text,
    Mermaid,
    Dot,
}

/// Step 1: a stage's name checked, its kind and config deserialized and
/// validated, the config made canonical for its key.
fn parse_stage(name: &str, raw: &RawStage) -> Result<PipelineStage, Located> {
    if name.contains('.') || name.is_empty() {
        return Err(located(
            stage_location(raw),
            PipelineProblem::BadStageName(name.to_string()),
        ));
    }
    let (stage, kind, location) = deserialize_stage(name, raw)?;
    stage.validate().map_err(|setting| {
        located(
            location,
            PipelineProblem::BadSetting {
                stage: name.to_string(),
                kind: kind.clone(),
                setting,
            },
        )
    })?;
    let config = serde_json::to_value(&stage)
        .map_err(|e| located(location, PipelineProblem::Unserializable(e.to_string())))?;
    Ok(PipelineStage {
        name: name.to_string(),
        kind,
        stage,
        config: canonical_json(&config),
        inputs: BTreeMap::new(),
        location,
    })
}

/// Step 2: the stage's `inputs:` read as wires, each to a port the stage
/// has, and every required port wired.
fn wire_inputs(stage: &PipelineStage, raw: &RawStage) -> Result<BTreeMap<String, Wire>, Located> {
    let name = || stage.name.clone();
    let mut wires = BTreeMap::new();
    if let Some(inputs) = raw.get("inputs") {
        let at = Location::from_saphyr(&inputs.referenced);
        let Value::Object(map) = &inputs.value else {
            return Err(located(at, PipelineProblem::InputsNotMap { stage: name() }));
        };
        for (port, target) in map {
            let Some(target) = target.as_str() else {
                return Err(located(
                    at,
                    PipelineProblem::InputNotString {
                        stage: name(),
                        port: port.clone(),
                    },
                ));
            };
            let Some((up, out)) = target.split_once('.') else {
                return Err(located(
                    at,
                    PipelineProblem::InputNotReference {
                        stage: name(),
                        port: port.clone(),
                        target: target.to_string(),
                    },
                ));
            };
            wires.insert(port.clone(), (up.to_string(), out.to_string(), at));
        }
    }
    let ports = stage.stage.inputs();
    for (port, (_, _, at)) in &wires {
        if !ports.iter().any(|p| p.name == port.as_str()) {
            return Err(located(
                *at,
                PipelineProblem::UnknownInput {
                    stage: name(),
                    kind: stage.kind.clone(),
                    port: port.clone(),
                    hint: did_you_mean(port, ports.iter().map(|p| p.name.as_ref())),
                    inputs: port_list(&ports),
                },
            ));
        }
    }
    if let Some(p) = ports
        .iter()
        .find(|p| p.required && !wires.contains_key(p.name.as_ref()))
    {
        return Err(located(
            stage.location,
            PipelineProblem::UnwiredInput {
                stage: name(),
                kind: stage.kind.clone(),
                port: p.name.to_string(),
                type_name: p.type_name,
            },
        ));
    }
    Ok(wires)
}

/// Step 3: each wire resolved to (upstream stage index, output port),
/// checked to exist and to carry the type the input takes.
fn resolve_wiring(
    parsed: &[PipelineStage],
    wiring: &[BTreeMap<String, Wire>],
) -> Result<Vec<ResolvedInputs>, Located> {
    let index: HashMap<&str, usize> = parsed
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut resolved = Vec::new();
    for (me, wires) in parsed.iter().zip(wiring) {
        let in_ports = me.stage.inputs();
        let mut map = BTreeMap::new();
        for (port, (up, out, at)) in wires {
            let Some(&j) = index.get(up.as_str()) else {
                let hint = did_you_mean(up, parsed.iter().map(|s| s.name.as_str()));
                return Err(located(
                    *at,
                    PipelineProblem::UnknownUpstream {
                        stage: me.name.clone(),
                        port: port.clone(),
                        upstream: up.clone(),
                        hint,
                    },
                ));
            };
            let out_ports = parsed[j].stage.outputs();
            let Some(out_port) = out_ports.iter().find(|p| p.name == out.as_str()) else {
                return Err(located(
                    *at,
                    PipelineProblem::UnknownOutput {
                        stage: me.name.clone(),
                        port: port.clone(),
                        upstream: up.clone(),
                        upstream_kind: parsed[j].kind.clone(),
                        output: out.clone(),
                        hint: did_you_mean(out, out_ports.iter().map(|p| p.name.as_ref())),
                        outputs: port_list(&out_ports),
                    },
                ));
            };
            let in_port = in_ports
                .iter()
                .find(|p| p.name == port.as_str())
                .expect("wire_inputs checked the port");
            if in_port.type_name != crate::stage::ANY_TYPE
                && in_port.type_name != out_port.type_name
            {
                return Err(located(
                    *at,
                    PipelineProblem::TypeMismatch {
                        stage: me.name.clone(),
                        port: port.clone(),
                        takes: in_port.type_name,
                        upstream: up.clone(),
                        output: out.clone(),
                        is: out_port.type_name,
                    },
                ));
            }
            map.insert(port.clone(), (j, out.clone()));
        }
        resolved.push(map);
    }
    Ok(resolved)
}

/// Step 4: the stages in a topological order that keeps file order where
/// it can, each one's inputs remapped to the new indices.
fn in_topological_order(
    parsed: Vec<PipelineStage>,
    resolved: Vec<ResolvedInputs>,
) -> Result<Vec<PipelineStage>, Located> {
    let order = topological_order(&resolved).map_err(|cycle| {
        let path = cycle.iter().map(|&i| parsed[i].name.clone()).collect();
        located(parsed[cycle[0]].location, PipelineProblem::Cycle(path))
    })?;
    let mut new_index = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut slots: Vec<Option<PipelineStage>> = parsed.into_iter().map(Some).collect();
    let mut stages = Vec::new();
    for &old in &order {
        let mut stage = slots[old].take().expect("each stage once");
        stage.inputs = resolved[old]
            .iter()
            .map(|(p, (j, o))| (p.clone(), (new_index[*j], o.clone())))
            .collect();
        stages.push(stage);
    }
    Ok(stages)
}

fn stage_location(raw: &RawStage) -> Option<Location> {
    raw.get("kind")
        .or_else(|| raw.values().next())
        .and_then(|v| Location::from_saphyr(&v.referenced))
}

/// A stage's config deserialized: the stage, its kind, where it is.
type Deserialized = (Box<dyn Stage>, String, Option<Location>);

fn deserialize_stage(name: &str, raw: &RawStage) -> Result<Deserialized, Located> {
    let location = stage_location(raw);
    let kind = match raw.get("kind") {
        None => {
            return Err(located(
                location,
                PipelineProblem::NoKind {
                    stage: name.to_string(),
                    known: known_kinds(),
                },
            ))
        }
        Some(Spanned {
            value: Value::String(k),
            ..
        }) => k.clone(),
        Some(other) => {
            return Err(located(
                Location::from_saphyr(&other.referenced),
                PipelineProblem::KindNotString {
                    stage: name.to_string(),
                },
            ))
        }
    };
    let kind_at = raw
        .get("kind")
        .and_then(|v| Location::from_saphyr(&v.referenced));
    let kinds = known_kinds();
    if !kinds.iter().any(|k| *k == kind) {
        let hint = did_you_mean(&kind, kinds.iter().copied());
        return Err(located(
            kind_at,
            PipelineProblem::UnknownKind {
                stage: name.to_string(),
                kind,
                hint,
                known: kinds,
            },
        ));
    }
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), Value::String(kind.clone()));
    for (field, value) in raw {
        if field != "kind" && field != "inputs" {
            object.insert(field.clone(), value.value.clone());
        }
    }
    let stage: Box<dyn Stage> =
        serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
            let inner = e.inner().to_string();
            let path = e.path().to_string();
            let field = unknown_field_name(&inner).or_else(|| {
                path.split('.')
                    .next()
                    .filter(|p| *p != "?" && !p.is_empty())
                    .map(str::to_string)
            });
            let at = field
                .as_deref()
                .and_then(|f| raw.get(f))
                .and_then(|v| Location::from_saphyr(&v.referenced))
                .or(kind_at);
            let fields = stage_fields(&kind);
            let hint = match unknown_field_name(&inner) {
                Some(f) => format!(
                    "{}; fields of `{kind}`: {}",
                    did_you_mean(&f, fields.iter().map(String::as_str)),
                    fields.join(", ")
                ),
                None => String::new(),
            };
            let at_path = if path == "." || path == "?" || path.is_empty() {
                String::new()
            } else {
                format!(" at `{path}`")
            };
            located(
                at,
                PipelineProblem::BadConfig {
                    stage: name.to_string(),
                    kind: kind.clone(),
                    at_path,
                    message: inner,
                    hint,
                },
            )
        })?;
    Ok((stage, kind, location))
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_string)
}

fn stage_fields(kind: &str) -> Vec<String> {
    registered_stages()
        .into_iter()
        .find(|s| s.kind == kind)
        .and_then(|s| {
            crate::stage::default_config(s)
                .as_object()
                .map(|m| m.keys().cloned().collect())
        })
        .unwrap_or_default()
}

fn known_kinds() -> Vec<&'static str> {
    registered_stages().iter().map(|s| s.kind).collect()
}

fn port_list(ports: &[Port]) -> String {
    if ports.is_empty() {
        return "none".into();
    }
    ports
        .iter()
        .map(|p| format!("{} ({})", p.name, p.type_name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `; did you mean `x`?` when a candidate is close enough, else empty.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let best = candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= (word.len() / 3).max(2) => format!("; did you mean `{c}`?"),
        _ => String::new(),
    }
}

fn apply_overrides(spec: &mut PipelineSpec, overrides: &[Override]) -> Result<(), OverrideError> {
    for o in overrides {
        let names: Vec<&str> = spec.stages.keys().map(String::as_str).collect();
        let hint = did_you_mean(&o.stage, names.iter().copied());
        let Some(raw) = spec.stages.get_mut(&o.stage) else {
            return Err(OverrideError::NoSuchStage {
                stage: o.stage.clone(),
                field: o.path.join("."),
                hint,
            });
        };
        if o.path[0] == "kind" || o.path[0] == "inputs" {
            return Err(OverrideError::NotAConfigField {
                stage: o.stage.clone(),
                field: o.path[0].clone(),
            });
        }
        let entry = raw.entry(o.path[0].clone()).or_insert_with(|| {
            Spanned::new(
                Value::Null,
                serde_saphyr::Location::UNKNOWN,
                serde_saphyr::Location::UNKNOWN,
            )
        });
        let mut slot = &mut entry.value;
        for key in &o.path[1..] {
            if !slot.is_object() {
                *slot = Value::Object(Default::default());
            }
            slot = slot
                .as_object_mut()
                .expect("object")
                .entry(key.clone())
                .or_insert(Value::Null);
        }
        *slot = o.value.clone();
    }
    Ok(())
}

/// Kahn's algorithm, taking the lowest file index first so file order is kept
/// where dependencies allow. On a cycle, returns one cycle's stage indices.
fn topological_order(
    inputs: &[BTreeMap<String, (usize, String)>],
) -> Result<Vec<usize>, Vec<usize>> {
    let n = inputs.len();
    let mut indegree = vec![0usize; n];
    let mut dependents = vec![Vec::new(); n];
    for (i, map) in inputs.iter().enumerate() {
        let mut ups: Vec<usize> = map.values().map(|(j, _)| *j).collect();
        ups.sort_unstable();
        ups.dedup();
        indegree[i] = ups.len();
        for j in ups {
            dependents[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk upstream from a stage left over until a stage repeats: that is a cycle.
    let start = (0..n).find(|&i| indegree[i] > 0).expect("a stage is left");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = inputs[current]
            .values()
            .map(|(j, _)| *j)
            .find(|&j| indegree[j] > 0)
            .expect("cycle continues");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(next);
        current = next;
    }
}

impl fmt::Display for DagFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DagFormat::Text => "text",
            DagFormat::Mermaid => "mermaid",
            DagFormat::Dot => "dot",
        })
    }
}
