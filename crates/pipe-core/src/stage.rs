//! The `Stage` trait every pipeline step implements, and its registry.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::artifact::{ArtifactError, Artifacts, LoadArtifact};
use crate::events::{Event, EventSink, Level};

/// A named, typed input or output of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Fixed for most stages; taken from the config for stages like `exec`.
    pub name: Cow<'static, str>,
    /// The artifact type name (see [`crate::ArtifactType`]), or [`ANY_TYPE`]
    /// for an input that takes any artifact.
    pub type_name: &'static str,
    pub required: bool,
    pub doc: &'static str,
}

impl Port {
    pub const fn new(name: &'static str, type_name: &'static str, doc: &'static str) -> Self {
        Port {
            name: Cow::Borrowed(name),
            type_name,
            required: true,
            doc,
        }
    }
    pub const fn optional(name: &'static str, type_name: &'static str, doc: &'static str) -> Self {
        Port {
            name: Cow::Borrowed(name),
            type_name,
            required: false,
            doc,
        }
    }
    /// A required port whose name comes from the stage's config.
    pub fn named(name: impl Into<String>, type_name: &'static str, doc: &'static str) -> Self {
        Port {
            name: Cow::Owned(name.into()),
            type_name,
            required: true,
            doc,
        }
    }
    /// A required port carrying artifacts of type `T`.
    pub const fn of<T: LoadArtifact>(name: &'static str, doc: &'static str) -> Self {
        Port::new(name, T::TYPE_NAME, doc)
    }
    /// An optional input of type `T`.
    pub const fn optional_of<T: LoadArtifact>(name: &'static str, doc: &'static str) -> Self {
        Port::optional(name, T::TYPE_NAME, doc)
    }
}

/// A port declared once, as a constant of its stage: its name, its artifact
/// type and its doc. The stage lists it in `inputs()`/`outputs()` with
/// [`port`](Self::port), reads it with [`Artifacts::read`] and writes it with
/// [`Artifacts::put`]: the name is spelled in one place, and the type a
/// stage reads or writes is the type it declared, checked by the compiler.
///
/// ```ignore
/// const COUNTS: PortOf<IntArray> = PortOf::new("counts", "real tokens per row");
/// fn outputs(&self) -> Vec<Port> { vec![COUNTS.port()] }
/// // in run():
/// out.put(&COUNTS, IntArray(counts));
/// ```
/// `P` says whether a pipeline must wire it: [`Required`] (the default,
/// read with [`Artifacts::read`]) or [`Optional`] (read with
/// [`Artifacts::read_optional`]):
///
/// ```
/// use pipe_core::{Artifacts, Files, Optional, PortOf};
/// const EXTRA: PortOf<Files, Optional> = PortOf::optional("extra", "may be unwired");
/// fn run(inputs: &Artifacts) {
///     let _ = inputs.read_optional(&EXTRA);
/// }
/// assert!(!EXTRA.port().required);
/// assert!(PortOf::<Files>::new("files", "always wired").port().required);
/// ```
///
/// Reading a port the other way does not compile:
///
/// ```compile_fail
/// use pipe_core::{Artifacts, Files, PortOf};
/// const EXTRA: PortOf<Files> = PortOf::new("extra", "always wired");
/// fn run(inputs: &Artifacts) {
///     let _ = inputs.read_optional(&EXTRA);
/// }
/// ```
pub struct PortOf<T, P = Required> {
    pub name: &'static str,
    pub doc: &'static str,
    _type: std::marker::PhantomData<fn() -> (T, P)>,
}

/// A port every pipeline must wire (see [`PortOf`]).
pub enum Required {}

/// An input a pipeline may leave unwired, or an output a stage may not
/// write (see [`PortOf`]).
pub enum Optional {}

/// Whether a [`PortOf`] must be wired: [`Required`] or [`Optional`].
pub trait Presence {
    const REQUIRED: bool;
}

impl Presence for Required {
    const REQUIRED: bool = true;
}

impl Presence for Optional {
    const REQUIRED: bool = false;
}

impl<T: LoadArtifact> PortOf<T, Required> {
    /// A required port.
    pub const fn new(name: &'static str, doc: &'static str) -> Self {
        PortOf {
            name,
            doc,
            _type: std::marker::PhantomData,
        }
    }
}

impl<T: LoadArtifact> PortOf<T, Optional> {
    /// An input a pipeline may leave unwired, or an output a stage may not write.
    pub const fn optional(name: &'static str, doc: &'static str) -> Self {
        PortOf {
            name,
            doc,
            _type: std::marker::PhantomData,
        }
    }
}

impl<T: LoadArtifact, P: Presence> PortOf<T, P> {
    /// Its entry in `inputs()` or `outputs()`.
    pub const fn port(&self) -> Port {
        Port {
            name: Cow::Borrowed(self.name),
            type_name: T::TYPE_NAME,
            required: P::REQUIRED,
            doc: self.doc,
        }
    }

    /// This output of the pipeline stage named `stage` (the stage's name in
    /// the YAML, which only the pipeline knows): what an embedding job asks
    /// a run report for, typed, e.g. `Vectorize::VECTORIZER.of_stage("vectorize")`.
    pub const fn of_stage<'a>(&self, stage: &'a str) -> StageOutput<'a, T> {
        StageOutput {
            stage,
            port: self.name,
            _type: std::marker::PhantomData,
        }
    }
}

/// One stage's output in a pipeline, typed: see [`PortOf::of_stage`].
#[derive(Debug)]
pub struct StageOutput<'a, T> {
    pub stage: &'a str,
    pub port: &'static str,
    _type: std::marker::PhantomData<fn() -> T>,
}

/// An input declared once that takes an artifact of any type (as
/// [`PortOf`] for one type): `predict`'s model, which may be any
/// scoreable model. Read with [`Artifacts::read_any`].
pub struct AnyPort {
    pub name: &'static str,
    pub doc: &'static str,
}

impl AnyPort {
    pub const fn new(name: &'static str, doc: &'static str) -> Self {
        AnyPort { name, doc }
    }
    pub const fn port(&self) -> Port {
        Port {
            name: Cow::Borrowed(self.name),
            type_name: ANY_TYPE,
            required: true,
            doc: self.doc,
        }
    }
}

/// The input type that accepts an output of any artifact type.
pub const ANY_TYPE: &str = "any";

/// One step of a pipeline.
///
/// Implementations are plain serde structs whose fields are the stage's
/// config (`#[serde(deny_unknown_fields, default)]`), one per file
/// (`src/stages/<kind>.rs`), declared with
/// `#[stage(kind = "...", summary = "...")]` on this impl: that registers the
/// kind with `typetag` (a YAML `kind:` selects the type) and with
/// `pipe stages`, in one place.
#[typetag::serde(tag = "kind")]
pub trait Stage: fmt::Debug {
    /// The inputs this stage takes; the runner hands them over in [`Stage::run`].
    fn inputs(&self) -> Vec<Port>;
    /// The outputs [`Stage::run`] must return.
    fn outputs(&self) -> Vec<Port>;
    /// Bumped whenever the stage's code changes what it computes; part of the cache key.
    fn code_version(&self) -> u32;
    /// Files outside the pipeline that the stage reads; their contents go into the key.
    fn external_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Whether this stage's outputs are the same whatever build of `pipe`
    /// computed them (a plain copy). By default a key holds the build's
    /// fingerprint, so a rebuilt `pipe` recomputes rather than trusting an
    /// older build's outputs.
    fn build_independent(&self) -> bool {
        false
    }
    /// Choices this stage makes from the machine it runs on (on `device`),
    /// which change its outputs: they join its key, so a cache shared by two
    /// kinds of machine never hands one's result to the other.
    fn machine_choices(&self, _device: &str) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }
    /// Whether device and seed change this stage's results (and so its key).
    fn depends_on_env(&self) -> bool {
        true
    }
    /// Checks the config on its own, when the pipeline is loaded: a bad value
    /// is then an invalid pipeline (exit 2), named before anything runs.
    fn validate(&self) -> Result<(), InvalidSetting> {
        Ok(())
    }
    /// Computes the outputs from the inputs.
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError>;
    /// Copies outputs somewhere people look (a submission CSV), after a run or a
    /// cache hit alike. `outputs` maps each output port to its stored directory.
    fn publish(
        &self,
        _outputs: &std::collections::BTreeMap<String, PathBuf>,
        _ctx: &StageContext,
    ) -> Result<(), StageError> {
        Ok(())
    }
}

/// What a stage gets besides its inputs.
pub struct StageContext<'a> {
    /// The stage's name in the pipeline.
    pub stage: &'a str,
    /// `cpu` or `cuda:N`, already resolved from `auto`.
    pub device: &'a str,
    pub seed: u64,
    /// An empty directory the stage may use; removed after the run.
    pub scratch: &'a Path,
    pub events: &'a dyn EventSink,
}

impl StageContext<'_> {
    pub fn progress(&self, done: u64, total: u64, message: impl Into<String>) {
        self.events.emit(&Event::Progress {
            stage: self.stage.to_string(),
            done,
            total,
            message: message.into(),
        });
    }
    pub fn info(&self, text: impl Into<String>) {
        self.log(Level::Info, text);
    }
    pub fn warn(&self, text: impl Into<String>) {
        self.log(Level::Warn, text);
    }
    fn log(&self, level: Level, text: impl Into<String>) {
        self.events.emit(&Event::Message {
            stage: self.stage.to_string(),
            level,
            text: text.into(),
        });
    }
    /// Reports a metric (per epoch, say) to event consumers.
    pub fn metric(&self, values: serde_json::Value) {
        self.events.emit(&Event::Metrics {
            stage: self.stage.to_string(),
            values,
        });
    }
}

/// Why a stage failed.
/// A config value that is out of range or inconsistent with another, found
/// by [`Stage::validate`] when the pipeline is loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} {problem}")]
pub struct InvalidSetting {
    /// The setting's path in the stage's config: `lr`, `candidates.lstm.train.lr`.
    pub setting: String,
    /// What is wrong, phrased to follow the setting's name: "must be positive, got 0".
    pub problem: String,
}

impl InvalidSetting {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            setting: setting.into(),
            problem: problem.into(),
        }
    }

    /// The same problem, named from the config that holds this one under `parent`.
    pub fn within(self, parent: &str) -> InvalidSetting {
        InvalidSetting {
            setting: format!("{parent}.{}", self.setting),
            problem: self.problem,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("input `{0}` was not provided")]
    MissingInput(String),
    #[error("input `{port}` has type `{found}`, not the one this stage reads")]
    WrongInputType { port: String, found: String },
    /// The stage's own reason (bad data, a setting that cannot work here).
    #[error("{0}")]
    Invalid(String),
    /// The stage panicked (a bug, or a libtorch error tch turns into a
    /// panic); the runner caught it, and nothing was cached.
    #[error("the stage panicked: {0}")]
    Panicked(String),
    /// A file the stage reads (its `external_files`) changed while it ran.
    #[error("{0} changed while the stage ran; its result is not cached (run again)")]
    InputFileChanged(String),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl StageError {
    pub fn invalid(message: impl fmt::Display) -> Self {
        StageError::Invalid(message.to_string())
    }
    pub fn other(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Other(Box::new(error))
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A registered stage kind, for `pipe stages` and for kind validation.
pub struct StageInfo {
    pub kind: &'static str,
    pub summary: &'static str,
    /// A stage with default config, to list its ports and defaults.
    pub default: fn() -> Box<dyn Stage>,
    /// `file:line` of the registration, beside the stage's code.
    pub defined_at: &'static str,
    /// For a kind defined outside this workspace (a plugin crate): that
    /// crate and a hash of its sources, which [`crate::BUILD_ID`] does not
    /// cover. It joins the kind's cache keys, so an edit to the plugin reruns
    /// its stages without a `code_version` bump.
    pub plugin: Option<PluginCode>,
}

/// A plugin crate's identity in cache keys: its name and a hash of its
/// sources when it was compiled (`#[stage]` computes it).
#[derive(Debug, Clone, Copy)]
pub struct PluginCode {
    pub crate_name: &'static str,
    pub source_hash: &'static str,
}

inventory::collect!(StageInfo);

/// Registers a stage kind for listing; [`#[stage]`](macro@crate::stage) calls it with
/// the kind it gives `typetag`, so the two cannot differ.
#[macro_export]
macro_rules! register_stage {
    ($ty:ty, $kind:expr, $summary:expr) => {
        $crate::register_stage!($ty, $kind, $summary, ::core::option::Option::None);
    };
    ($ty:ty, $kind:expr, $summary:expr, $plugin:expr) => {
        $crate::inventory::submit! {
            $crate::StageInfo {
                kind: $kind,
                summary: $summary,
                default: || Box::new(<$ty as Default>::default()),
                defined_at: concat!(file!(), ":", line!()),
                plugin: $plugin,
            }
        }
    };
}

/// The build a stage kind's results come from, for its cache keys:
/// [`crate::BUILD_ID`], and for a plugin's kind also its crate's source hash.
pub fn build_of_kind(kind: &str) -> String {
    let plugin = inventory::iter::<StageInfo>
        .into_iter()
        .find(|s| s.kind == kind)
        .and_then(|s| s.plugin);
    match plugin {
        Some(p) => format!("{} {}+{}", crate::BUILD_ID, p.crate_name, p.source_hash),
        None => crate::BUILD_ID.to_string(),
    }
}

/// All registered stage kinds, sorted by kind.
pub fn registered_stages() -> Vec<&'static StageInfo> {
    let mut all: Vec<_> = inventory::iter::<StageInfo>.into_iter().collect();
    all.sort_by_key(|s| s.kind);
    all
}

/// Default config of a stage kind as JSON (without the `kind` tag).
pub fn default_config(info: &StageInfo) -> serde_json::Value {
    let stage = (info.default)();
    let mut value = serde_json::to_value(&stage).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("kind");
    }
    value
}
