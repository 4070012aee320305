//! What must not outlive an interrupted `pipe`: the process groups of running
//! external commands, and scratch directories. Stages register them while
//! they exist (RAII guards); a binary that catches SIGINT/SIGTERM calls
//! [`clean_up`] before it exits, so an interrupt kills the whole command tree
//! and leaves no scratch behind. The cache lock is a file lock: the kernel
//! releases it when the process ends, and half-written entries live in the
//! cache's `tmp/`, which the next run clears when it takes the lock.

use std::path::PathBuf;
use std::sync::Mutex;

static PROCESS_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

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

/// A running process group, killed by [`clean_up`] until this is dropped.
pub struct ProcessGroupGuard(i32);

impl ProcessGroupGuard {
    pub fn new(pgid: i32) -> ProcessGroupGuard {
        PROCESS_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
        ProcessGroupGuard(pgid)
    }
}

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        PROCESS_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).retain(|&g| g != self.0);
    }
}

/// A scratch directory, removed by [`clean_up`] until this is dropped.
pub struct ScratchGuard(PathBuf);

impl ScratchGuard {
    pub fn new(dir: PathBuf) -> ScratchGuard {
        SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).push(dir.clone());
        ScratchGuard(dir)
    }
}

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).retain(|d| d != &self.0);
    }
}

/// Kills every registered process group and removes every registered
/// scratch directory. For a signal handler's thread, before the process exits.
pub fn clean_up() {
    for pgid in PROCESS_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        kill_process_group(pgid);
    }
    for dir in SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_kills_registered_groups_and_removes_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let mut command = std::process::Command::new("sleep");
        command.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().unwrap();
        let _group = ProcessGroupGuard::new(child.id() as i32);
        let _scratch = ScratchGuard::new(scratch.clone());
        clean_up();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the sleep was killed");
        assert!(!scratch.exists());
        // A dropped guard is no longer cleaned up.
        let kept = dir.path().join("kept");
        std::fs::create_dir(&kept).unwrap();
        drop(ScratchGuard::new(kept.clone()));
        clean_up();
        assert!(kept.exists());
    }
}
