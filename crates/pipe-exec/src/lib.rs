//! The `exec` stage: runs an external command as a pipeline stage, so a
//! script in any language can sit between `pipe`'s own stages and still be
//! cached, rerun only when something it depends on changed, and fail loudly.
//!
//! ```yaml
//! dedupe:
//!   kind: exec
//!   command: ["python3", "scripts/dedupe.py", "{in.raw}/submission.csv", "{out.clean}"]
//!   outputs: { clean: clean.csv }
//!   files: [scripts/dedupe.py]
//!   inputs: { raw: submission.file }
//! ```
//!
//! - `{in.NAME}` is an input port: the directory holding that upstream
//!   output's files. The placeholders in the command declare the inputs.
//! - `{out.NAME}` is the path the command must write output `NAME` to; the
//!   `outputs` map declares each output's file name. Each output is a `files`
//!   artifact holding that one file.
//! - In a shell-string command the substituted paths are single-quoted.
//! - The cache key covers the command line, `env`, the input digests and the
//!   contents of `files` (what the command reads that no stage produces,
//!   the script itself included).
//! - A non-zero exit, a timeout or a missing output fails the stage with the
//!   command's stderr; nothing is cached and no output is left behind.
//!
//! The stage lives in `src/stages/exec.rs`.

mod stages;

pub use stages::{CommandLine, Exec, ExecConfig, ExecConfigError, MAX_TIMEOUT_S};
