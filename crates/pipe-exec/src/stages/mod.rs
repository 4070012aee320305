//! The stage kinds of this crate, one file per kind.

mod exec;
mod python;

pub use exec::{CommandLine, Exec, ExecConfig, ExecConfigError};
pub use python::{use_interpreter_by_default, PythonStage, PYTHON_TYPES};
