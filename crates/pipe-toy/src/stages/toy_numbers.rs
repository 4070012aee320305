//! The `toy_numbers` toy stage.

use ndarray::{ArrayD, IxDyn};
use pipe_core::{stage, Artifacts, InvalidSetting, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::IntArray;
use serde::{Deserialize, Serialize};

/// The most numbers a `toy_numbers` stage makes: 2^24 (128 MiB of i64), far
/// past what a test needs.
pub const MAX_COUNT: usize = 1 << 24;

/// `count` integers from `start`; `rate` only goes into the key (it tests number canonicalisation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyNumbers {
    pub count: usize,
    pub start: i64,
    pub rate: f64,
}

impl Default for ToyNumbers {
    fn default() -> Self {
        ToyNumbers {
            count: 5,
            start: 0,
            rate: 0.001,
        }
    }
}

impl ToyNumbers {
    pub const VALUES: PortOf<IntArray> = PortOf::new("values", "the numbers");
}

#[stage(kind = "toy_numbers", summary = "count integers from start")]
impl Stage for ToyNumbers {
    fn inputs(&self) -> Vec<Port> {
        vec![]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::VALUES.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.count > MAX_COUNT {
            return Err(InvalidSetting::new(
                "count",
                format!("must be between 0 and {MAX_COUNT}, got {}", self.count),
            ));
        }
        // The last number, start + count - 1, must be an i64.
        if self.start.checked_add(self.count as i64).is_none() {
            return Err(InvalidSetting::new(
                "start",
                format!(
                    "must leave room for {} numbers below {}, got {}",
                    self.count,
                    i64::MAX,
                    self.start
                ),
            ));
        }
        Ok(())
    }
    fn run(&self, _inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        let values: Vec<i64> = (0..self.count as i64).map(|i| self.start + i).collect();
        let mut out = Artifacts::new();
        out.put(
            &Self::VALUES,
            IntArray(ArrayD::from_shape_vec(IxDyn(&[values.len()]), values).expect("1-D")),
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_and_start_are_bounded_at_load() {
        let numbers = |count: usize, start: i64| {
            ToyNumbers {
                count,
                start,
                rate: 0.0,
            }
            .validate()
        };
        assert_eq!(ToyNumbers::default().validate(), Ok(()));
        assert_eq!(numbers(MAX_COUNT, 0), Ok(()));
        assert_eq!(
            numbers(MAX_COUNT + 1, 0),
            Err(InvalidSetting::new(
                "count",
                format!("must be between 0 and {MAX_COUNT}, got {}", MAX_COUNT + 1)
            ))
        );
        assert_eq!(numbers(10, i64::MAX - 5).unwrap_err().setting, "start");
        assert_eq!(numbers(5, i64::MAX - 5), Ok(()));
    }
}
