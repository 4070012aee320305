//! Crash injection for tests: `PIPE_FAULT=<point>` aborts the process at that
//! point, the way a power cut or `kill -9` would, so tests can check that an
//! interrupted run leaves no entry that reads as valid.

/// Aborts the process if `PIPE_FAULT` names this point.
pub fn point(name: &str) {
    if std::env::var_os("PIPE_FAULT").is_some_and(|v| v == name) {
        eprintln!("pipe: PIPE_FAULT={name}: aborting here on purpose");
        std::process::abort();
    }
}
