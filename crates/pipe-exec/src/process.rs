//! Running a child process as (part of) a stage: its own process group, so a
//! timeout, an interrupt of `pipe` or its end kills the whole tree; both
//! pipes drained on threads, keeping only their ends; `pipe`'s death takes
//! it along. Shared by the `exec` and `python` stages.

use std::collections::VecDeque;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipe_core::{interrupt, InvalidSetting, StageError};

/// The longest `timeout_s`: 30 days, in seconds. A timeout is there to
/// bound a run; a longer one is a typo (or a unit mistake) and bounds nothing.
pub const MAX_TIMEOUT_S: f64 = 30.0 * 24.0 * 3600.0;

/// A `timeout_s` setting checked when the pipeline loads: positive and at
/// most [`MAX_TIMEOUT_S`] (NaN and infinity refused).
pub(crate) fn check_timeout(timeout_s: Option<f64>) -> Result<(), InvalidSetting> {
    match timeout_s {
        Some(t) if !(t > 0.0 && t <= MAX_TIMEOUT_S) => Err(InvalidSetting::new(
            "timeout_s",
            format!("must be positive and at most {MAX_TIMEOUT_S} (30 days), got {t}"),
        )),
        _ => Ok(()),
    }
}

/// How many lines of a process's stderr an error shows.
pub(crate) const STDERR_LINES: usize = 40;

/// The most bytes of each of stdout and stderr kept (the end of each): a
/// process that prints gigabytes costs no more memory than this.
const OUTPUT_TAIL_BYTES: usize = 64 << 10;

/// How long the output pipes may stay open once the process has ended and
/// its group is gone: a process that left the group (`setsid`) and kept the
/// pipe open does not hold `pipe` past this.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How a process ended, with the ends of what it printed.
pub(crate) struct Finished {
    /// `None` when it ran past its timeout and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// An error saying `what`, followed by the end of the process's stderr.
    pub fn error(&self, what: String) -> StageError {
        let shown = tail(&self.stderr, STDERR_LINES);
        if shown.trim().is_empty() {
            StageError::invalid(format!("{what} (no stderr)"))
        } else {
            StageError::invalid(format!("{what}; its stderr ends with:\n{shown}"))
        }
    }

    /// The last lines of its stdout and stderr, for the stage's log.
    pub fn log_lines(&self) -> Vec<String> {
        tail(&self.stdout, STDERR_LINES)
            .lines()
            .chain(tail(&self.stderr, STDERR_LINES).lines())
            .map(str::to_string)
            .collect()
    }
}

/// Sets up `command` to run as a stage's child: no stdin, both outputs
/// piped, its own process group, killed when `pipe` dies.
pub(crate) fn prepare(command: &mut Command) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a timeout kills the whole tree (`sh -c` and its children).
    std::os::unix::process::CommandExt::process_group(command, 0);
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only prctl(2), which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, || {
            // If `pipe` dies (even by SIGKILL), so does the command.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Runs a [`prepare`]d command to its end (or its timeout), `shown` naming
/// it in errors. The process group is registered for `pipe`'s interrupt
/// handler while it runs, and killed when it ends: background processes it
/// left behind would hold its pipes (and outlive the stage).
pub(crate) fn run_to_end(
    command: &mut Command,
    shown: &str,
    timeout_s: Option<f64>,
) -> Result<Finished, StageError> {
    let mut child = command
        .spawn()
        .map_err(|e| StageError::invalid(format!("cannot start `{shown}`: {e}")))?;
    let group =
        i32::try_from(child.id()).map_err(|_| StageError::invalid("process id out of range"))?;
    let _group_guard = interrupt::ProcessGroupGuard::new(group);
    // Both pipes drain on their own threads so a chatty process never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| StageError::invalid(format!("waiting for `{shown}`: {e}")))?
        {
            break Some(status);
        }
        if timeout_s.is_some_and(|t| start.elapsed().as_secs_f64() > t) {
            interrupt::kill_process_group(group);
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    interrupt::kill_process_group(group);
    let deadline = Instant::now() + PIPE_GRACE;
    Ok(Finished {
        status,
        stdout: collect(&stdout, deadline),
        stderr: collect(&stderr, deadline),
    })
}

/// The last `OUTPUT_TAIL_BYTES` bytes a pipe carried, filled by a thread.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    closed: bool,
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Arc<Mutex<Tail>> {
    let tail = Arc::new(Mutex::new(Tail::default()));
    let writer = Arc::clone(&tail);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        if let Some(mut pipe) = pipe {
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut tail = writer.lock().unwrap_or_else(|e| e.into_inner());
                tail.bytes.extend(&buf[..n]);
                let excess = tail.bytes.len().saturating_sub(OUTPUT_TAIL_BYTES);
                tail.bytes.drain(..excess);
            }
        }
        writer.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
    });
    tail
}

/// What a pipe carried, once it closed or `deadline` passed.
fn collect(tail: &Mutex<Tail>, deadline: Instant) -> String {
    loop {
        let t = tail.lock().unwrap_or_else(|e| e.into_inner());
        if t.closed || Instant::now() >= deadline {
            let (a, b) = t.bytes.as_slices();
            return String::from_utf8_lossy(&[a, b].concat()).into_owned();
        }
        drop(t);
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// "exited with status 2", "was killed by signal 11 (SIGSEGV)".
pub(crate) fn exit_description(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}{}", signal_name(signal)),
        (None, None) => "ended without a status".to_string(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGKILL => " (SIGKILL: out of memory?)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}
