//! The `toy_line_lengths` toy stage.

use std::path::PathBuf;

use ndarray::{ArrayD, IxDyn};
use pipe_core::{stage, Artifacts, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::IntArray;
use serde::{Deserialize, Serialize};

/// Lengths of the lines of a text file (an external file: its contents go into the key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyLineLengths {
    pub path: PathBuf,
}

impl ToyLineLengths {
    pub const VALUES: PortOf<IntArray> = PortOf::new("values", "length of each line");
}

#[stage(
    kind = "toy_line_lengths",
    summary = "length of each line of a text file"
)]
impl Stage for ToyLineLengths {
    fn inputs(&self) -> Vec<Port> {
        vec![]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::VALUES.port()]
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
        let text =
            std::fs::read_to_string(&self.path).map_err(|e| StageError::io(&self.path, e))?;
        let lengths: Vec<i64> = text.lines().map(|l| l.chars().count() as i64).collect();
        let mut out = Artifacts::new();
        out.put(
            &Self::VALUES,
            IntArray(ArrayD::from_shape_vec(IxDyn(&[lengths.len()]), lengths).expect("1-D")),
        );
        Ok(out)
    }
}
