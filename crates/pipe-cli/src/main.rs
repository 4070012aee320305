//! The `pipe` binary; its code is the facade crate's `pipe::cli`, so that a
//! crate with stages of its own builds the same program with its kinds
//! added (docs/plugins.md), as `pipe-testing` does with the toy kinds.

fn main() -> std::process::ExitCode {
    pipe::cli::main()
}
