//! Tiny stages for trying `pipe` without data or torch, and for the
//! end-to-end tests of the runner and the cache: `toy_numbers` makes an array,
//! `toy_scale` multiplies it, `toy_sum` totals it, `toy_line_lengths` reads a
//! text file, and `toy_fail` fails on purpose.
//!
//! Each kind lives in `src/stages/<kind>.rs`.

mod stages;

pub use stages::{ToyFail, ToyLineLengths, ToyNumbers, ToyScale, ToySum, MAX_COUNT};
