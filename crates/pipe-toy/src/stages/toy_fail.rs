//! The `toy_fail` toy stage.

use pipe_core::{stage, Artifacts, Optional, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::IntArray;
use serde::{Deserialize, Serialize};

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
        ToyFail {
            message: "failing on purpose".into(),
            panic: false,
        }
    }
}

impl ToyFail {
    pub const VALUES: PortOf<IntArray, Optional> = PortOf::optional("values", "ignored");
    pub const VALUES_OUT: PortOf<IntArray> = PortOf::new("values", "never produced");
}

#[stage(kind = "toy_fail", summary = "always fails (for tests)")]
impl Stage for ToyFail {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::VALUES.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::VALUES_OUT.port()]
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
