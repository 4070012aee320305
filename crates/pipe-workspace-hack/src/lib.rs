//! No code. This crate exists for its `Cargo.toml`: it asks for the union of
//! the features the workspace needs from shared dependencies, so that the
//! `pipe` binary, the test suite and the Python module resolve (and compile)
//! each dependency once. See the comment in its `Cargo.toml`.
