//! The stage kinds of this crate, one file per kind.

mod exec;

pub use exec::{CommandLine, Exec, ExecConfig, ExecConfigError, MAX_TIMEOUT_S};
