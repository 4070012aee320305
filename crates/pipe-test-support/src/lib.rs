//! Helpers for the end-to-end tests in `tests/`, which drive the real `pipe`
//! binary (built by `cargo build -p pipe-cli` in the same profile) in a
//! scratch directory, or, for tests of the runner, the cache and
//! interrupts, `pipe-testing` ([`Scratch::lab`]: `pipe` plus the toy stages
//! and crash points).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The product `pipe` binary next to the running test executable (`target/<profile>/pipe`).
pub fn pipe_bin() -> PathBuf {
    built_binary("pipe", "pipe-cli")
}

/// `pipe-testing`: `pipe` plus the toy stages and crash points.
pub fn lab_bin() -> PathBuf {
    built_binary("pipe-testing", "pipe-test-support")
}

fn built_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p {package}` (scripts/test does)",
        bin.display()
    );
    bin
}

/// The repository root (for data and pipelines).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The 150 records of tests/data/raw/test.json (`Id`, `Text`), `copies`
/// times over with fresh ids: input for `pipe score`.
pub fn test_records(copies: usize) -> pipe::polars::prelude::DataFrame {
    let path = repo_root().join("tests/data/raw/test.json");
    let json: Vec<pipe::serde_json::Value> =
        pipe::serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    for copy in 0..copies {
        for r in &json {
            ids.push(r["Id"].as_i64().unwrap() + (copy * json.len()) as i64);
            texts.push(r["Text"].as_str().unwrap().to_string());
        }
    }
    pipe::polars::df!("Id" => ids, "Text" => texts).unwrap()
}

/// A scratch directory in which to run `pipe`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    /// The binary [`Scratch::pipe`] runs.
    pub bin: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
            bin: pipe_bin(),
        }
    }

    /// The same scratch directory, running `pipe-testing` instead of `pipe`.
    pub fn lab(self) -> Scratch {
        Scratch {
            bin: lab_bin(),
            ..self
        }
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

    /// Runs `pipe ARGS` in the scratch directory, one torch thread.
    pub fn pipe(&self, args: &[&str]) -> Run {
        self.pipe_env(args, &[])
    }

    /// [`Scratch::pipe`] with `env` set on top of [`isolated`]'s environment.
    pub fn pipe_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(&self.bin);
        isolated(cmd.args(args).current_dir(self.dir.path()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().expect("run pipe"))
    }
}

impl Scratch {
    /// A scratch directory holding `data/` (a copy of tests/data/tiny, the
    /// notebook's six artifacts in small) and `tiny.yaml`, the notebook's
    /// pipeline on it.
    pub fn tiny() -> Scratch {
        let s = Scratch::new();
        let data = repo_root().join("tests/data/tiny");
        std::fs::create_dir_all(s.path("data")).expect("mkdir");
        for entry in std::fs::read_dir(&data).expect("tests/data/tiny") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), s.path("data").join(entry.file_name())).expect("copy");
        }
        std::fs::copy(
            repo_root().join("tests/pipelines/tiny.yaml"),
            s.path("tiny.yaml"),
        )
        .expect("copy");
        s
    }

    /// A scratch directory holding `data/raw/` (a copy of tests/data/raw,
    /// raw JSON records) and `tiny_raw.yaml`, a tiny pipeline from raw text.
    pub fn tiny_raw() -> Scratch {
        let s = Scratch::new();
        std::fs::create_dir_all(s.path("data/raw")).expect("mkdir");
        for file in ["train.json", "test.json"] {
            let from = repo_root().join("tests/data/raw").join(file);
            std::fs::copy(from, s.path("data/raw").join(file)).expect("copy");
        }
        std::fs::copy(
            repo_root().join("tests/pipelines/tiny_raw.yaml"),
            s.path("tiny_raw.yaml"),
        )
        .expect("copy");
        s
    }

    /// [`Scratch::tiny_raw`]'s records with `tiny_python.yaml`, which cleans
    /// them with a Python stage (`python/cleaning.py`, a copy of the
    /// example pipeline's module) before it trains on them.
    pub fn tiny_python() -> Scratch {
        let s = Scratch::tiny_raw();
        std::fs::create_dir_all(s.path("python")).expect("mkdir");
        std::fs::copy(
            repo_root().join("pipelines/python/cleaning.py"),
            s.path("python/cleaning.py"),
        )
        .expect("copy");
        std::fs::copy(
            repo_root().join("tests/pipelines/tiny_python.yaml"),
            s.path("tiny_python.yaml"),
        )
        .expect("copy");
        s
    }

    /// Runs `pipe ARGS` killed after `limit`, sampling its peak resident
    /// memory (VmHWM) while it runs.
    pub fn pipe_limited(&self, args: &[&str], limit: Duration) -> Limited {
        self.pipe_limited_env(args, &[], limit)
    }

    /// [`Scratch::pipe_limited`] with `env` set on top of [`isolated`]'s environment.
    pub fn pipe_limited_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Limited {
        let mut child = self.spawn_env(args, env, Stdio::piped());
        let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("piped")));
        let stderr = drain(Box::new(child.stderr.take().expect("piped")));
        let start = Instant::now();
        let status_path = format!("/proc/{}/status", child.id());
        let mut peak_kb = 0u64;
        let mut timed_out = false;
        let status = loop {
            if let Some(hwm) = std::fs::read_to_string(&status_path)
                .ok()
                .and_then(|s| vm_hwm_kb(&s))
            {
                peak_kb = peak_kb.max(hwm);
            }
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > limit {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Limited {
            code: status.code(),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
            seconds: start.elapsed().as_secs_f64(),
            peak_mb: peak_kb as f64 / 1024.0,
            timed_out,
        }
    }
}

impl Scratch {
    /// Starts `pipe ARGS` in the scratch directory (one torch thread, no
    /// stdin), its stdout piped.
    fn spawn(&self, args: &[&str], stderr: Stdio) -> std::process::Child {
        self.spawn_env(args, &[], stderr)
    }

    /// Starts `pipe ARGS` in the scratch directory (one torch thread, no
    /// stdin, stdout piped) with `env` set on top of [`isolated`]'s environment.
    pub fn spawn_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> std::process::Child {
        let mut cmd = Command::new(&self.bin);
        isolated(cmd.args(args).current_dir(self.dir.path()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start pipe")
    }

    /// Runs `pipe ARGS` and kills it with SIGKILL (no handler runs, as when
    /// a machine or a scheduler pulls the plug) as soon as a line of its
    /// stdout satisfies `when`; returns the lines read until then. Panics if
    /// it ends before such a line.
    pub fn pipe_killed_when(&self, args: &[&str], when: impl Fn(&str) -> bool) -> Vec<String> {
        let mut child = self.spawn(args, Stdio::null());
        let mut lines = Vec::new();
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line.expect("read stdout");
            let hit = when(&line);
            lines.push(line);
            if hit {
                child.kill().expect("kill");
                child.wait().expect("wait");
                return lines;
            }
        }
        panic!(
            "pipe ended ({:?}) before the line it was to be killed at; it printed {lines:?}",
            child.wait()
        );
    }
}

/// The environment of a `pipe` a test starts: one torch thread, and none of
/// the variables of the shell running the tests that would make it share
/// state with the other tests' `pipe`s (`PIPE_CACHE_DIR`: one cache for
/// all) or change what it does (`PIPE_FAULT`: crash points; `RUST_LOG`).
pub fn isolated(cmd: &mut Command) -> &mut Command {
    cmd.env("PIPE_THREADS", "1")
        .env_remove("PIPE_CACHE_DIR")
        .env_remove("PIPE_FAULT")
        .env_remove("RUST_LOG")
}

fn vm_hwm_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A `pipe` run under a time limit, with its peak memory.
#[derive(Debug)]
pub struct Limited {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
    /// The highest VmHWM seen while it ran.
    pub peak_mb: f64,
    pub timed_out: bool,
}

/// A `.npy` file (version 1) with the given header dict and data bytes.
pub fn npy_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut text = header.to_string();
    // Magic (6) + version (2) + length (2) + header, padded to 64 with a newline.
    // Not `is_multiple_of`: the workspace's rust-version is 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text.as_bytes());
    out.extend(data);
    out
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
        assert_eq!(
            self.code(),
            Some(0),
            "pipe failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
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
