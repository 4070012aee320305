//! `pipe` for tests: the same program plus the toy stage kinds (`toy_*`)
//! and crash points (`PIPE_FAULT=<point>` aborts there, as `kill -9` would).
//! Tests of the runner, the cache and interrupts drive it; the product
//! binary has neither.

// Linked for its stage kinds.
use pipe_toy as _;

fn main() -> std::process::ExitCode {
    pipe::core::fault::set_hook(abort_at_fault_point);
    pipe_cli::main()
}

fn abort_at_fault_point(point: &str) {
    if std::env::var_os("PIPE_FAULT").is_some_and(|v| v == point) {
        eprintln!("pipe: PIPE_FAULT={point}: aborting here on purpose");
        std::process::abort();
    }
}
