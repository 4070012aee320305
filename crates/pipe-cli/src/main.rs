//! The `pipe` binary; its code is the library beside it (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    pipe_cli::main()
}
