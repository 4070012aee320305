//! `pipe` for tests: the same program plus the toy stage kinds (`toy_*`)
//! and crash points (`PIPE_FAULT=<point>` aborts there, as `kill -9` would;
//! `PIPE_FAULT=panic:<point>` panics there, as a bug would).
//! Tests of the runner, the cache and interrupts drive it; the product
//! binary has neither.

// Linked for its stage kinds.
use pipe_toy as _;

fn main() -> std::process::ExitCode {
    pipe::core::fault::set_hook(abort_at_fault_point);
    pipe::cli::main()
}

fn abort_at_fault_point(point: &str) {
    let Some(fault) = std::env::var_os("PIPE_FAULT") else {
        return;
    };
    if fault == point {
        eprintln!("pipe: PIPE_FAULT={point}: aborting here on purpose");
        std::process::abort();
    }
    if fault.to_str().and_then(|f| f.strip_prefix("panic:")) == Some(point) {
        panic!("PIPE_FAULT=panic:{point}: a panic here on purpose");
    }
}
