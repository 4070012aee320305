//! Helpers for the end-to-end tests in `tests/`, which drive the real `pipe` binary.
