//! Code outside `pipe` as pipeline stages: `exec` runs an external command
//! on files, `python` calls a Python function on Arrow tables, numpy arrays
//! and dicts. Either is cached like any stage, reruns only when something it
//! depends on changed (its script or module included), and fails loudly.
//! Both run a child process in its own process group ([`process`](crate)),
//! so a timeout or an interrupt of `pipe` ends everything it started.
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
//!
//! ```yaml
//! clean:
//!   kind: python
//!   function: cleaning:clean_texts        # pipelines/python/cleaning.py
//!   python_path: [pipelines/python]
//!   input_types: { records: frame }
//!   outputs: { records: frame }
//!   args: { lowercase: true }
//!   inputs: { records: load.records }
//! ```
//!
//! The function is called as `clean_texts(records=<pyarrow.Table>,
//! lowercase=True)` in a worker process (`src/stages/python_worker.py`); it
//! returns the one output, or a dict of outputs. Its module's source and
//! `files:` join the key; an exception fails the stage with its traceback.
//! docs/plugins.md says more; the stage lives in `src/stages/python.rs`.

mod process;
mod stages;

pub use process::MAX_TIMEOUT_S;
pub use stages::{
    use_interpreter_by_default, CommandLine, Exec, ExecConfig, ExecConfigError, PythonStage,
    PYTHON_TYPES,
};
