//! The `exec` stage: an external command with declared input and output
//! files, cached like any stage (see the crate's documentation).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_core::{
    stage, Artifacts, Files, InvalidSetting, LoadArtifact, Port, Stage, StageContext, StageError,
    ANY_TYPE,
};
use serde::{Deserialize, Serialize};

use crate::process;

/// The command: an argument list run directly, or one string run by `sh -c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    Args(Vec<String>),
    Shell(String),
}

impl Default for CommandLine {
    fn default() -> Self {
        CommandLine::Args(Vec::new())
    }
}

impl CommandLine {
    fn parts(&self) -> Vec<&str> {
        match self {
            CommandLine::Args(args) => args.iter().map(String::as_str).collect(),
            CommandLine::Shell(script) => vec![script.as_str()],
        }
    }
}

/// An external command with declared inputs and outputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "ExecConfig", into = "ExecConfig")]
pub struct Exec {
    config: ExecConfig,
    inputs: Vec<String>,
}

/// The `exec` stage's fields, as written in a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    pub command: CommandLine,
    /// Output name → the file name the command writes to `{out.NAME}`.
    pub outputs: BTreeMap<String, String>,
    /// Files the command reads that no stage produces; their contents are part of the key.
    pub files: Vec<PathBuf>,
    /// Environment variables set for the command (part of the key).
    pub env: BTreeMap<String, String>,
    /// Kill the command after this many seconds.
    pub timeout_s: Option<f64>,
}

impl From<Exec> for ExecConfig {
    fn from(exec: Exec) -> Self {
        exec.config
    }
}

impl TryFrom<ExecConfig> for Exec {
    type Error = ExecConfigError;
    fn try_from(config: ExecConfig) -> Result<Self, ExecConfigError> {
        Exec::new(config)
    }
}

/// Why an `exec` config is refused when the pipeline is loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecConfigError {
    #[error("`command` is empty: give an argument list or a shell string")]
    EmptyCommand,
    #[error("output name `{0}` must be letters, digits, `_` or `-`")]
    OutputName(String),
    #[error(
        "output `{name}`: file name `{file}` must be a plain name (no `/`, not starting with `.`)"
    )]
    OutputFile { name: String, file: String },
    #[error("`{{{side}.{name}}}`: names must be letters, digits, `_` or `-`")]
    PlaceholderName { side: String, name: String },
    #[error("the command writes `{{out.{name}}}`, but `outputs` does not declare `{name}` (declared: {})", if .declared.is_empty() { "none".to_string() } else { .declared.join(", ") })]
    UndeclaredOutput { name: String, declared: Vec<String> },
    #[error(
        "output `{0}` is never given to the command: put `{{out.{0}}}` where it should write it"
    )]
    UnusedOutput(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The `{in.NAME}` / `{out.NAME}` placeholders in one argument, in order.
fn placeholders(arg: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        if let Some((side @ ("in" | "out"), name)) = after[..close].split_once('.') {
            found.push((side, name));
        }
        rest = &after[close + 1..];
    }
    found
}

impl Exec {
    /// Checks the config: a command, valid names, and every placeholder declared.
    pub fn new(config: ExecConfig) -> Result<Exec, ExecConfigError> {
        let parts = config.command.parts();
        if parts.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(ExecConfigError::EmptyCommand);
        }
        for (name, file) in &config.outputs {
            if !valid_name(name) {
                return Err(ExecConfigError::OutputName(name.clone()));
            }
            if file.starts_with('.') || !valid_name(&file.replace('.', "_")) {
                return Err(ExecConfigError::OutputFile {
                    name: name.clone(),
                    file: file.clone(),
                });
            }
        }
        let mut inputs = Vec::new();
        let mut used_outputs = Vec::new();
        for (side, name) in parts.iter().flat_map(|p| placeholders(p)) {
            if !valid_name(name) {
                return Err(ExecConfigError::PlaceholderName {
                    side: side.to_string(),
                    name: name.to_string(),
                });
            }
            if side == "in" && !inputs.iter().any(|i| i == name) {
                inputs.push(name.to_string());
            }
            if side == "out" {
                if !config.outputs.contains_key(name) {
                    return Err(ExecConfigError::UndeclaredOutput {
                        name: name.to_string(),
                        declared: config.outputs.keys().cloned().collect(),
                    });
                }
                used_outputs.push(name);
            }
        }
        if let Some(unused) = config
            .outputs
            .keys()
            .find(|o| !used_outputs.contains(&o.as_str()))
        {
            return Err(ExecConfigError::UnusedOutput(unused.clone()));
        }
        Ok(Exec { config, inputs })
    }

    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    /// The command line with its placeholders replaced.
    /// The command line with its placeholders replaced; in a shell string each
    /// path is single-quoted, so spaces or `$` in it stay part of the path.
    fn expand(
        &self,
        inputs: &BTreeMap<String, PathBuf>,
        outputs: &BTreeMap<String, PathBuf>,
    ) -> Vec<String> {
        let shell = matches!(self.config.command, CommandLine::Shell(_));
        let path = |p: &Path| {
            let text = p.display().to_string();
            if shell {
                format!("'{}'", text.replace('\'', r"'\''"))
            } else {
                text
            }
        };
        self.config
            .command
            .parts()
            .iter()
            .map(|part| {
                let mut text = part.to_string();
                for (name, dir) in inputs {
                    text = text.replace(&format!("{{in.{name}}}"), &path(dir));
                }
                for (name, file) in outputs {
                    text = text.replace(&format!("{{out.{name}}}"), &path(file));
                }
                text
            })
            .collect()
    }

    fn command(&self, argv: &[String]) -> Command {
        let mut command = match &self.config.command {
            CommandLine::Args(_) => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            CommandLine::Shell(_) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(&argv[0]);
                c
            }
        };
        command.envs(&self.config.env);
        process::prepare(&mut command);
        command
    }
}

fn absolute(path: &Path) -> Result<PathBuf, StageError> {
    std::path::absolute(path).map_err(|e| StageError::io(path, e))
}

#[stage(
    kind = "exec",
    summary = "an external command with declared input and output files, cached like any stage"
)]
impl Stage for Exec {
    fn inputs(&self) -> Vec<Port> {
        self.inputs
            .iter()
            .map(|name| {
                Port::named(
                    name.clone(),
                    ANY_TYPE,
                    "an upstream output, as a directory of its files",
                )
            })
            .collect()
    }
    fn outputs(&self) -> Vec<Port> {
        self.config
            .outputs
            .keys()
            .map(|name| Port::named(name.clone(), Files::TYPE_NAME, "the file the command wrote"))
            .collect()
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn external_files(&self) -> Vec<PathBuf> {
        self.config.files.clone()
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        process::check_timeout(self.config.timeout_s)
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let mut input_dirs = BTreeMap::new();
        for name in &self.inputs {
            let artifact = inputs
                .get_rc(name)
                .ok_or_else(|| StageError::MissingInput(name.clone()))?;
            let dir = absolute(&ctx.scratch.join("in").join(name))?;
            std::fs::create_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
            artifact.save(&dir)?;
            input_dirs.insert(name.clone(), dir);
        }
        let mut output_files = BTreeMap::new();
        for (name, file) in &self.config.outputs {
            let dir = absolute(&ctx.scratch.join("out").join(name))?;
            std::fs::create_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
            output_files.insert(name.clone(), dir.join(file));
        }
        let argv = self.expand(&input_dirs, &output_files);
        let shown = argv.join(" ");
        ctx.info(format!("running: {shown}"));

        let finished =
            process::run_to_end(&mut self.command(&argv), &shown, self.config.timeout_s)?;
        for line in finished.log_lines() {
            ctx.info(line);
        }
        match finished.status {
            None => {
                return Err(finished.error(format!(
                    "`{shown}` ran past timeout_s = {} and was killed",
                    self.config.timeout_s.unwrap_or(0.0)
                )))
            }
            Some(status) if !status.success() => {
                return Err(
                    finished.error(format!("`{shown}` {}", process::exit_description(status)))
                );
            }
            Some(_) => {}
        }

        let mut out = Artifacts::new();
        for (name, path) in &output_files {
            if !path.is_file() {
                return Err(finished.error(format!(
                    "`{shown}` succeeded but did not write output `{name}` ({})",
                    path.display()
                )));
            }
            let bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
            let file_name = self.config.outputs[name].clone();
            out.insert(
                name.clone(),
                Files {
                    files: BTreeMap::from([(file_name, bytes)]),
                },
            );
        }
        Ok(out)
    }
}
