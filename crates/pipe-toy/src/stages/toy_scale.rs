//! The `toy_scale` toy stage.

use pipe_core::{stage, Artifacts, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::IntArray;
use serde::{Deserialize, Serialize};

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

impl ToyScale {
    pub const VALUES: PortOf<IntArray> = PortOf::new("values", "numbers to scale");
    pub const VALUES_OUT: PortOf<IntArray> = PortOf::new("values", "the scaled numbers");
}

#[stage(kind = "toy_scale", summary = "multiply an array by a factor")]
impl Stage for ToyScale {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::VALUES.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::VALUES_OUT.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let values = inputs.read(&Self::VALUES)?;
        ctx.info(format!(
            "scaling {} values by {}",
            values.0.len(),
            self.factor
        ));
        let mut out = Artifacts::new();
        out.put(
            &Self::VALUES_OUT,
            IntArray(values.0.mapv(|v| v * self.factor)),
        );
        Ok(out)
    }
}
