//! The `toy_numbers` toy stage.

use ndarray::{ArrayD, IxDyn};
use pipe_core::{stage, Artifacts, Port, Stage, StageContext, StageError};
use pipe_data::IntArray;
use serde::{Deserialize, Serialize};

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
        ToyNumbers { count: 5, start: 0, rate: 0.001 }
    }
}

#[stage(kind = "toy_numbers", summary = "count integers from start")]
impl Stage for ToyNumbers {
    fn inputs(&self) -> Vec<Port> {
        vec![]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::of::<IntArray>("values", "the numbers")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, _inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        let values: Vec<i64> = (0..self.count as i64).map(|i| self.start + i).collect();
        let mut out = Artifacts::new();
        out.insert("values", IntArray(ArrayD::from_shape_vec(IxDyn(&[values.len()]), values).expect("1-D")));
        Ok(out)
    }
}
