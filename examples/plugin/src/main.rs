//! `pipe` with one more stage kind: `normalise_text` (src/normalise.rs).
//! Everything else — subcommands, caching, interrupts — is `pipe`'s own.

mod normalise;

fn main() -> std::process::ExitCode {
    pipe::cli::main()
}
