//! The `python` stage: a Python function as a pipeline stage, run in a
//! worker process (`python_worker.py`) that reads its inputs from the files
//! each artifact is stored as and writes its outputs the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_core::{
    artifact_type, load_artifact, stage, Artifacts, InvalidSetting, Port, Stage, StageContext,
    StageError, ANY_TYPE,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::process;

/// The worker, written into the stage's scratch directory for each run.
const WORKER: &str = include_str!("python_worker.py");

/// The artifact types the worker can hand to Python and read back, and what
/// Python sees: `frame` a `pyarrow.Table`, `int_array` a numpy array,
/// `table` a dict of column lists, `label_set` a list, `json` and
/// `vocabulary` their JSON value, `files` a dict of name to bytes.
pub const PYTHON_TYPES: &[&str] = &[
    "frame",
    "int_array",
    "json",
    "table",
    "label_set",
    "vocabulary",
    "files",
];

/// The interpreter a program embedding `pipe` runs Python stages with when
/// neither the stage's `python:` nor `$PIPE_PYTHON` names one.
static DEFAULT_INTERPRETER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes `python` the interpreter for Python stages that name none (and
/// with no `$PIPE_PYTHON`): the `pipe` Python package sets its own
/// `sys.executable` when it is imported. Only the first call counts.
pub fn use_interpreter_by_default(python: PathBuf) {
    let _ = DEFAULT_INTERPRETER.set(python);
}

/// Calls `function` with the stage's inputs as keyword arguments (plus
/// `args`) and stores what it returns as the declared outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PythonStage {
    /// `package.module:function`, found under `python_path`, or
    /// `path/to/file.py:function`.
    pub function: String,
    /// Where the function's module is found (and what the worker puts first
    /// on `sys.path`), relative to where `pipe` runs.
    pub python_path: Vec<PathBuf>,
    /// Each input port and its type (one of [`PYTHON_TYPES`], or `any`);
    /// wire them with `inputs:` as for any stage.
    pub input_types: BTreeMap<String, String>,
    /// Each output port and its type (one of [`PYTHON_TYPES`]).
    pub outputs: BTreeMap<String, String>,
    /// Keyword arguments for the function, after the inputs.
    pub args: Map<String, Value>,
    /// Files the function reads besides its inputs and its module (helper
    /// modules, lookup tables): their contents join the cache key.
    pub files: Vec<PathBuf>,
    /// The interpreter; by default `$PIPE_PYTHON`, else (from the `pipe`
    /// Python package) the importing interpreter, else `python3` on `PATH`.
    pub python: Option<PathBuf>,
    pub timeout_s: Option<f64>,
}

impl Default for PythonStage {
    fn default() -> Self {
        PythonStage {
            function: String::new(),
            python_path: vec![PathBuf::from(".")],
            input_types: BTreeMap::new(),
            outputs: BTreeMap::new(),
            args: Map::new(),
            files: Vec::new(),
            python: None,
            timeout_s: None,
        }
    }
}

/// Where `function:` points.
#[derive(Debug, Clone, PartialEq)]
struct FunctionRef {
    module: String,
    name: String,
    /// The module's source file.
    file: PathBuf,
    /// The `__init__.py` of each package above the module, which Python
    /// runs before it: they join the key too.
    packages: Vec<PathBuf>,
    /// Whether `function:` named the file itself (`path/x.py:f`).
    by_path: bool,
}

/// An ASCII Python identifier that is not a keyword: a port is passed as a
/// keyword argument, and Python rewrites non-ASCII names (NFKC).
fn is_identifier(s: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
        "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
        "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield",
    ];
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !KEYWORDS.contains(&s)
}

impl PythonStage {
    /// `function:` checked on its own (when the pipeline loads): the
    /// module's file is looked for when the stage runs, relative to where
    /// `pipe` runs then, as a data file's path is.
    fn parse_function(&self) -> Result<(&str, &str), InvalidSetting> {
        let bad = |problem: String| InvalidSetting::new("function", problem);
        let Some((module, name)) = self.function.rsplit_once(':') else {
            return Err(bad(format!(
                "must be `package.module:function` or `path/to/file.py:function`, got `{}`",
                self.function
            )));
        };
        if !is_identifier(name) {
            return Err(bad(format!("`{name}` is not a Python function name")));
        }
        if let Some(path) = module.strip_suffix(".py") {
            let stem = Path::new(path)
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("");
            if !is_identifier(stem) {
                return Err(bad(format!(
                    "`{module}`: `{stem}` is not a Python module name"
                )));
            }
        } else if !module.split('.').all(is_identifier) {
            return Err(bad(format!("`{module}` is not a Python module name")));
        }
        Ok((module, name))
    }

    /// The module's file, found as Python finds it.
    fn function_ref(&self) -> Result<FunctionRef, InvalidSetting> {
        let bad = |problem: String| InvalidSetting::new("function", problem);
        let (module, name) = self.parse_function()?;
        if module.ends_with(".py") {
            let file = PathBuf::from(module);
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if !file.is_file() {
                return Err(bad(format!("`{module}` is not a file")));
            }
            return Ok(FunctionRef {
                module: stem.to_string(),
                name: name.to_string(),
                file,
                packages: Vec::new(),
                by_path: true,
            });
        }
        let relative = PathBuf::from(module.replace('.', "/"));
        // As Python finds it: the first folder of python_path that has it,
        // a package (`name/__init__.py`) before a module (`name.py`).
        let found = self.python_path.iter().find_map(|dir| {
            [
                dir.join(&relative).join("__init__.py"),
                dir.join(&relative).with_extension("py"),
            ]
            .into_iter()
            .find(|f| f.is_file())
            .map(|f| (dir, f))
        });
        // Only a module whose source the key can hold: an installed package
        // would change under the cache unseen.
        let (dir, file) = found.ok_or_else(|| {
            bad(format!(
                "module `{module}` is not under python_path ({}); its source must be there so that it joins the cache key",
                self.python_path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let parts: Vec<&str> = module.split('.').collect();
        let packages = (1..parts.len())
            .map(|n| dir.join(parts[..n].join("/")).join("__init__.py"))
            .filter(|f| f.is_file())
            .collect();
        Ok(FunctionRef {
            module: module.to_string(),
            name: name.to_string(),
            file,
            packages,
            by_path: false,
        })
    }

    fn check_ports(&self) -> Result<(), InvalidSetting> {
        if self.outputs.is_empty() {
            return Err(InvalidSetting::new(
                "outputs",
                "must declare at least one output, as `{ NAME: TYPE }`",
            ));
        }
        let known = PYTHON_TYPES.join(", ");
        for (section, ports, any) in [
            ("input_types", &self.input_types, true),
            ("outputs", &self.outputs, false),
        ] {
            for (port, type_name) in ports {
                let setting = format!("{section}.{port}");
                if !is_identifier(port) {
                    return Err(InvalidSetting::new(
                        setting,
                        "is not a Python identifier (ports are the function's keyword arguments)",
                    ));
                }
                let allowed =
                    PYTHON_TYPES.contains(&type_name.as_str()) || (any && type_name == ANY_TYPE);
                if !allowed {
                    let also = if any { ", or any" } else { "" };
                    return Err(InvalidSetting::new(
                        setting,
                        format!("has type `{type_name}`; a Python stage passes {known}{also}"),
                    ));
                }
            }
        }
        if let Some(arg) = self.args.keys().find(|a| self.input_types.contains_key(*a)) {
            return Err(InvalidSetting::new(
                format!("args.{arg}"),
                "has the name of an input; the function could not tell them apart",
            ));
        }
        Ok(())
    }

    fn interpreter(&self) -> PathBuf {
        self.python
            .clone()
            .or_else(|| std::env::var_os("PIPE_PYTHON").map(PathBuf::from))
            .or_else(|| DEFAULT_INTERPRETER.get().cloned())
            .unwrap_or_else(|| PathBuf::from("python3"))
    }

    /// Saves each input into `dir/in/PORT` for the worker; an `any` input
    /// must be of a type it can read.
    fn write_inputs(&self, inputs: &Artifacts, dir: &Path) -> Result<Value, StageError> {
        let mut spec = Map::new();
        for port in self.input_types.keys() {
            let artifact = inputs
                .get_rc(port)
                .ok_or_else(|| StageError::MissingInput(port.clone()))?;
            let type_name = artifact.type_name();
            if !PYTHON_TYPES.contains(&type_name) {
                return Err(StageError::invalid(format!(
                    "input `{port}` is a `{type_name}`, which a Python stage cannot read (it passes {})",
                    PYTHON_TYPES.join(", ")
                )));
            }
            let port_dir = dir.join("in").join(port);
            std::fs::create_dir_all(&port_dir).map_err(|e| StageError::io(&port_dir, e))?;
            artifact.save(&port_dir)?;
            spec.insert(port.clone(), json!({ "type": type_name, "dir": port_dir }));
        }
        Ok(Value::Object(spec))
    }

    fn output_dirs(&self, dir: &Path) -> Result<BTreeMap<String, PathBuf>, StageError> {
        let mut dirs = BTreeMap::new();
        for port in self.outputs.keys() {
            let port_dir = dir.join("out").join(port);
            std::fs::create_dir_all(&port_dir).map_err(|e| StageError::io(&port_dir, e))?;
            dirs.insert(port.clone(), port_dir);
        }
        Ok(dirs)
    }

    /// Why the worker failed: what it reported in `ERROR.json`, else how it ended.
    fn failure(&self, finished: &process::Finished, error_file: &Path, shown: &str) -> StageError {
        let Some(status) = finished.status else {
            return finished.error(format!(
                "`{shown}` ran past timeout_s = {} and was killed",
                self.timeout_s.unwrap_or(0.0)
            ));
        };
        let reported: Option<Value> = std::fs::read(error_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let text = |key: &str| {
            reported
                .as_ref()
                .and_then(|r| r.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match (text("message"), text("traceback")) {
            (Some(message), Some(traceback)) => StageError::invalid(format!(
                "`{}` failed while {message}\n{}",
                self.function,
                traceback.trim_end()
            )),
            (Some(message), None) => StageError::invalid(format!("`{}`: {message}", self.function)),
            _ => finished.error(format!(
                "the Python worker for `{}` {}",
                self.function,
                process::exit_description(status)
            )),
        }
    }
}

/// The type names a stage's ports carry, as the registry holds them.
fn registered(type_name: &str) -> &'static str {
    if type_name == ANY_TYPE {
        return ANY_TYPE;
    }
    artifact_type(type_name).map_or(ANY_TYPE, |t| t.name)
}

#[stage(
    kind = "python",
    summary = "a Python function (module:function) as a stage: Arrow tables, numpy arrays, dicts in and out"
)]
impl Stage for PythonStage {
    fn inputs(&self) -> Vec<Port> {
        self.input_types
            .iter()
            .map(|(name, type_name)| {
                Port::named(
                    name.clone(),
                    registered(type_name),
                    "an argument of the function",
                )
            })
            .collect()
    }
    fn outputs(&self) -> Vec<Port> {
        self.outputs
            .iter()
            .map(|(name, type_name)| {
                Port::named(
                    name.clone(),
                    registered(type_name),
                    "what the function returned",
                )
            })
            .collect()
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn external_files(&self) -> Vec<PathBuf> {
        let code: Vec<PathBuf> = self
            .function_ref()
            .map(|f| f.packages.into_iter().chain([f.file]).collect())
            .unwrap_or_default();
        code.into_iter().chain(self.files.iter().cloned()).collect()
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.parse_function()?;
        self.check_ports()?;
        process::check_timeout(self.timeout_s)
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let function = self.function_ref().map_err(StageError::invalid)?;
        let dir = std::path::absolute(ctx.scratch).map_err(|e| StageError::io(ctx.scratch, e))?;
        let absolute = |p: &Path| std::path::absolute(p).map_err(|e| StageError::io(p, e));

        let input_spec = self.write_inputs(inputs, &dir)?;
        let output_dirs = self.output_dirs(&dir)?;
        let outputs: Map<String, Value> = output_dirs
            .iter()
            .map(|(port, port_dir)| {
                (
                    port.clone(),
                    json!({ "type": self.outputs[port], "dir": port_dir }),
                )
            })
            .collect();
        let python_path = self
            .python_path
            .iter()
            .map(|p| absolute(p))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = json!({
            "module": function.module,
            "name": function.name,
            "file": if function.by_path { Some(absolute(&function.file)?) } else { None },
            "source": absolute(&function.file)?,
            "python_path": python_path,
            "inputs": input_spec,
            "outputs": outputs,
            "args": self.args,
        });
        let worker = dir.join("python_worker.py");
        let spec_file = dir.join("spec.json");
        std::fs::write(&worker, WORKER).map_err(|e| StageError::io(&worker, e))?;
        std::fs::write(&spec_file, spec.to_string()).map_err(|e| StageError::io(&spec_file, e))?;

        let interpreter = self.interpreter();
        let mut command = Command::new(&interpreter);
        command
            .arg("-u")
            // A crash in native code prints the Python stack it happened in.
            .args(["-X", "faulthandler"])
            .arg(&worker)
            .arg(&spec_file)
            // Nothing written beside the user's sources.
            .env("PYTHONDONTWRITEBYTECODE", "1");
        process::prepare(&mut command);
        let shown = format!("{} {}", interpreter.display(), self.function);
        ctx.info(format!(
            "calling {} with {}",
            self.function,
            interpreter.display()
        ));
        let finished = process::run_to_end(&mut command, &shown, self.timeout_s)?;
        for line in finished.log_lines() {
            ctx.info(line);
        }
        if finished.status.is_none_or(|s| !s.success()) {
            return Err(self.failure(&finished, &dir.join("ERROR.json"), &shown));
        }
        if !dir.join("DONE").is_file() {
            return Err(finished.error(format!(
                "the Python worker for `{}` exited without writing its outputs (an os._exit in the function, or `python:` is not a Python)",
                self.function
            )));
        }

        let mut out = Artifacts::new();
        for (port, port_dir) in &output_dirs {
            let type_name = &self.outputs[port];
            let artifact = load_artifact(type_name, port_dir).map_err(|e| {
                StageError::invalid(format!(
                    "`{}` returned an output `{port}` that is not a valid `{type_name}`: {e}",
                    self.function
                ))
            })?;
            out.insert_rc(port.clone(), std::rc::Rc::from(artifact));
        }
        Ok(out)
    }
}
