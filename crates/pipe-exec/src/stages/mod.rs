//! The stage kinds of this crate, one file per kind.

mod exec;
mod python;

pub use exec::{CommandLine, Exec, ExecConfig, ExecConfigError};
pub use python::{PythonStage, PYTHON_TYPES};
