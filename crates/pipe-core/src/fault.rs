//! Named points where a run can be made to crash, for tests of what an
//! interrupted run leaves behind. The runner and the cache call [`point`]
//! at each; a test harness installs a hook with [`set_hook`] (the
//! `pipe-testing` binary of `pipe-test-support` aborts where `PIPE_FAULT`
//! says, as a power cut or `kill -9` would). The product never installs one.

use std::sync::OnceLock;

static HOOK: OnceLock<fn(&str)> = OnceLock::new();

/// Installs the function every [`point`] calls with its name (once per process).
pub fn set_hook(hook: fn(&str)) {
    let _ = HOOK.set(hook);
}

/// A crash point: calls the hook, if a test harness installed one.
pub fn point(name: &str) {
    if let Some(hook) = HOOK.get() {
        hook(name);
    }
}
