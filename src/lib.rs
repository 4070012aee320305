//! Helpers for the end-to-end tests in `tests/`, which drive the real `pipe`
//! binary (built by `cargo build -p pipe-cli` in the same profile) in a
//! scratch directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `pipe` binary next to the running test executable (`target/<profile>/pipe`).
pub fn pipe_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("pipe");
    assert!(bin.exists(), "{} is missing: build it first with `cargo build -p pipe-cli` (scripts/test does)", bin.display());
    bin
}

/// The repository root (for data and pipelines).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory in which to run `pipe`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    /// Runs `pipe ARGS` in the scratch directory, two torch threads at most.
    pub fn pipe(&self, args: &[&str]) -> Run {
        self.pipe_env(args, &[])
    }

    pub fn pipe_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(pipe_bin());
        cmd.args(args).current_dir(self.dir.path()).env("PIPE_THREADS", "1").env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().expect("run pipe"))
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// A finished `pipe` process.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Panics with both streams unless the exit code is 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.code(), Some(0), "pipe failed\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
    /// The status column of the run summary for `stage` (`ran`, `cached`, `restored`).
    pub fn outcome(&self, stage: &str) -> Option<String> {
        self.stdout().lines().find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some(stage)).then(|| cols.next().unwrap_or_default().to_string())
        })
    }
    /// Stages that ran, in order.
    pub fn ran(&self) -> Vec<String> {
        self.stdout()
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.len() == 3 && cols[1] == "ran").then(|| cols[0].to_string())
            })
            .collect()
    }
}
