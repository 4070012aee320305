//! The toy stage kinds, one file per kind.

mod toy_fail;
mod toy_line_lengths;
mod toy_numbers;
mod toy_scale;
mod toy_sum;

pub use toy_fail::ToyFail;
pub use toy_line_lengths::ToyLineLengths;
pub use toy_numbers::{ToyNumbers, MAX_COUNT};
pub use toy_scale::ToyScale;
pub use toy_sum::ToySum;
