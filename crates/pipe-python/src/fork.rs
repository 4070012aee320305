//! Classifiers that survive `os.fork()` (multiprocessing's default start
//! method on Linux).
//!
//! A forked child has one thread: the one that forked. A classifier's mutex
//! that another thread held at that moment stays locked in the child
//! forever, and the child's first call on it would wait for a thread that
//! does not exist. So every call that locks a classifier first takes a
//! process-wide gate for reading, and `os.fork()` (through the hooks
//! `pipe/__init__.py` registers with `os.register_at_fork`) takes it for
//! writing before the fork and lets it go after, in the parent and in the
//! child. A fork therefore waits for the calls in flight to end, and no
//! classifier is locked in the child.
//!
//! The calls hold the gate only while they work without the GIL, and never
//! ask for the GIL while holding it, so the fork hook (which has the GIL)
//! cannot deadlock with them. Forks that bypass `os.fork()` (C code calling
//! fork(2) and going on running Python) do not run the hooks.
//!
//! Torch's intra-op thread pool (GNU OpenMP's) does not survive a fork
//! either; `__init__.py`'s child hook sets torch to one thread.

use std::cell::RefCell;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use pyo3::prelude::*;

/// Read by each classifier call, written across a fork.
static CALLS: RwLock<()> = RwLock::new(());

thread_local! {
    /// The write guard, from the `before` hook to the `after` hooks; they
    /// run on the forking thread, which is the child's only thread.
    static HELD_FOR_FORK: RefCell<Option<RwLockWriteGuard<'static, ()>>> = const { RefCell::new(None) };
}

/// Held by a call while it locks and uses a classifier. Never take two at
/// once on one thread: a waiting fork would make the second wait forever.
pub fn enter_call() -> RwLockReadGuard<'static, ()> {
    CALLS.read().unwrap_or_else(PoisonError::into_inner)
}

/// `os.register_at_fork(before=...)`: waits, without the GIL, for the calls
/// in flight to end and keeps new ones out until the fork is done.
#[pyfunction]
pub fn _before_fork(py: Python<'_>) {
    py.detach(|| {
        let guard = CALLS.write().unwrap_or_else(PoisonError::into_inner);
        HELD_FOR_FORK.with(|held| *held.borrow_mut() = Some(guard));
    });
}

/// `os.register_at_fork(after_in_parent=..., after_in_child=...)`: lets calls in again.
#[pyfunction]
pub fn _after_fork() {
    HELD_FOR_FORK.with(|held| drop(held.borrow_mut().take()));
}
