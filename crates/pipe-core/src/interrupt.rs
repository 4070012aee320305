//! What must not outlive an interrupted `pipe`: the process groups of running
//! external commands, and scratch directories. Stages register them while
//! they exist (RAII guards); a binary that catches SIGINT/SIGTERM calls
//! [`clean_up`] before it exits, so an interrupt kills the whole command tree
//! and leaves no scratch behind. The cache lock is a file lock: the kernel
//! releases it when the process ends, and half-written entries live in the
//! cache's `tmp/`, which the next run clears when it takes the lock.
//!
//! The process has one [`Registry`] ([`registry`]), which the guards' `new`
//! and [`clean_up`] use. A test makes a [`Registry`] of its own: cleaning it
//! up kills and removes only what that test registered, never what a test
//! running beside it (a run's pending entry, say) registered in the
//! process's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Process groups to kill and scratch directories to remove on an interrupt.
#[derive(Debug, Default)]
pub struct Registry {
    process_groups: Mutex<Vec<i32>>,
    scratch: Mutex<Vec<PathBuf>>,
}

/// The process's registry: what [`clean_up`] cleans.
static REGISTRY: Registry = Registry::new();

/// The process's registry, which [`ProcessGroupGuard::new`],
/// [`ScratchGuard::new`] and [`clean_up`] use.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

impl Registry {
    /// An empty registry.
    pub const fn new() -> Registry {
        Registry {
            process_groups: Mutex::new(Vec::new()),
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// Registers a running process group, killed by [`Registry::clean_up`]
    /// until the guard is dropped.
    pub fn process_group(&self, pgid: i32) -> ProcessGroupGuard<'_> {
        self.process_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pgid);
        ProcessGroupGuard {
            registry: self,
            pgid,
        }
    }

    /// Registers a scratch directory, removed by [`Registry::clean_up`]
    /// until the guard is dropped.
    pub fn scratch(&self, dir: PathBuf) -> ScratchGuard<'_> {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir.clone());
        ScratchGuard {
            registry: self,
            dir,
        }
    }

    /// Kills every process group and removes every scratch directory
    /// registered here (and not yet dropped).
    pub fn clean_up(&self) {
        for pgid in self
            .process_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            kill_process_group(pgid);
        }
        for dir in self
            .scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Kills a process group (SIGKILL to every member).
pub fn kill_process_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals that process group only;
        // it reads no memory of ours.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// A running process group, killed by [`clean_up`] (or its registry's
/// [`Registry::clean_up`]) until this is dropped.
pub struct ProcessGroupGuard<'r> {
    registry: &'r Registry,
    pgid: i32,
}

impl ProcessGroupGuard<'static> {
    /// Registers `pgid` in the process's registry.
    pub fn new(pgid: i32) -> ProcessGroupGuard<'static> {
        REGISTRY.process_group(pgid)
    }
}

impl Drop for ProcessGroupGuard<'_> {
    fn drop(&mut self) {
        self.registry
            .process_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&g| g != self.pgid);
    }
}

/// A scratch directory, removed by [`clean_up`] (or its registry's
/// [`Registry::clean_up`]) until this is dropped.
pub struct ScratchGuard<'r> {
    registry: &'r Registry,
    dir: PathBuf,
}

impl ScratchGuard<'static> {
    /// Registers `dir` in the process's registry.
    pub fn new(dir: PathBuf) -> ScratchGuard<'static> {
        REGISTRY.scratch(dir)
    }
}

impl Drop for ScratchGuard<'_> {
    fn drop(&mut self) {
        self.registry
            .scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| d != &self.dir);
    }
}

/// Set once the process is being interrupted.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether [`clean_up`] has begun: a stage failing now failed because its
/// children were killed, not on its own.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Kills every registered process group and removes every registered
/// scratch directory of the process's registry. For a signal handler's
/// thread, before the process exits.
pub fn clean_up() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    REGISTRY.clean_up();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry of this test's own: the process's, which runs of the
    /// tests beside this one register their pending entries in, is never
    /// cleaned here.
    #[test]
    fn clean_up_kills_registered_groups_and_removes_scratch() {
        let registry = Registry::new();
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let mut command = std::process::Command::new("sleep");
        command.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().unwrap();
        let _group = registry.process_group(child.id() as i32);
        let _scratch = registry.scratch(scratch.clone());
        registry.clean_up();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the sleep was killed");
        assert!(!scratch.exists());
        // A dropped guard is no longer cleaned up.
        let kept = dir.path().join("kept");
        std::fs::create_dir(&kept).unwrap();
        drop(registry.scratch(kept.clone()));
        registry.clean_up();
        assert!(kept.exists());
    }

    #[test]
    fn a_registry_cleans_up_only_what_was_registered_in_it() {
        let (mine, other) = (Registry::new(), Registry::new());
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let _a = mine.scratch(a.clone());
        let _b = other.scratch(b.clone());
        mine.clean_up();
        assert!(
            !a.exists() && b.exists(),
            "another registry's scratch was removed"
        );
    }
}
