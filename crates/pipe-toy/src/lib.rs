//! Tiny stages for trying `pipe` without data or torch, and for the
//! end-to-end tests of the runner and the cache: `toy_numbers` makes an array,
//! `toy_scale` multiplies it, `toy_sum` totals it, `toy_line_lengths` reads a
//! text file, and `toy_fail` fails on purpose.

use std::path::PathBuf;

use ndarray::{ArrayD, IxDyn};
use pipe_core::{register_stage, Artifacts, IntArray, JsonDoc, Port, Stage, StageContext, StageError};
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

#[typetag::serde(name = "toy_numbers")]
impl Stage for ToyNumbers {
    fn inputs(&self) -> Vec<Port> {
        vec![]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("values", "int_array", "the numbers")]
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
register_stage!(ToyNumbers, "toy_numbers", "count integers from start");

/// Multiplies every value by `factor`, or by 0 when `zero` is set (to test
/// that identical outputs do not invalidate downstream stages).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyScale {
    pub factor: i64,
}

impl Default for ToyScale {
    fn default() -> Self {
        ToyScale { factor: 2 }
    }
}

#[typetag::serde(name = "toy_scale")]
impl Stage for ToyScale {
    fn inputs(&self) -> Vec<Port> {
        vec![Port::new("values", "int_array", "numbers to scale")]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("values", "int_array", "the scaled numbers")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let values = inputs.get::<IntArray>("values")?;
        ctx.info(format!("scaling {} values by {}", values.0.len(), self.factor));
        let mut out = Artifacts::new();
        out.insert("values", IntArray(values.0.mapv(|v| v * self.factor)));
        Ok(out)
    }
}
register_stage!(ToyScale, "toy_scale", "multiply an array by a factor");

/// Sums an array into a JSON document `{"total": N}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToySum {}

#[typetag::serde(name = "toy_sum")]
impl Stage for ToySum {
    fn inputs(&self) -> Vec<Port> {
        vec![Port::new("values", "int_array", "numbers to add up")]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("total", "json", "{\"total\": sum}")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        let values = inputs.get::<IntArray>("values")?;
        let mut out = Artifacts::new();
        out.insert("total", JsonDoc(serde_json::json!({ "total": values.0.sum() })));
        Ok(out)
    }
}
register_stage!(ToySum, "toy_sum", "add up an array");

/// Lengths of the lines of a text file (an external file: its contents go into the key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyLineLengths {
    pub path: PathBuf,
}

#[typetag::serde(name = "toy_line_lengths")]
impl Stage for ToyLineLengths {
    fn inputs(&self) -> Vec<Port> {
        vec![]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("values", "int_array", "length of each line")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn external_files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, _inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| StageError::io(&self.path, e))?;
        let lengths: Vec<i64> = text.lines().map(|l| l.chars().count() as i64).collect();
        let mut out = Artifacts::new();
        out.insert("values", IntArray(ArrayD::from_shape_vec(IxDyn(&[lengths.len()]), lengths).expect("1-D")));
        Ok(out)
    }
}
register_stage!(ToyLineLengths, "toy_line_lengths", "length of each line of a text file");

/// Fails with `message`; for testing failure handling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyFail {
    pub message: String,
    /// Panic instead of returning an error (a bug, or a libtorch error that
    /// tch turns into a panic): the runner must report it the same way.
    pub panic: bool,
}

impl Default for ToyFail {
    fn default() -> Self {
        ToyFail { message: "failing on purpose".into(), panic: false }
    }
}

#[typetag::serde(name = "toy_fail")]
impl Stage for ToyFail {
    fn inputs(&self) -> Vec<Port> {
        vec![Port::optional("values", "int_array", "ignored")]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("values", "int_array", "never produced")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn run(&self, _inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        if self.panic {
            panic!("{}", self.message);
        }
        Err(StageError::invalid(&self.message))
    }
}
register_stage!(ToyFail, "toy_fail", "always fails (for tests)");
