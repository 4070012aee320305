//! The `toy_sum` toy stage.

use pipe_core::{stage, Artifacts, JsonDoc, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::IntArray;
use serde::{Deserialize, Serialize};

/// Sums an array into a JSON document `{"total": N}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToySum {}

impl ToySum {
    pub const VALUES: PortOf<IntArray> = PortOf::new("values", "numbers to add up");
    pub const TOTAL: PortOf<JsonDoc> = PortOf::new("total", "{\"total\": sum}");
}

#[stage(kind = "toy_sum", summary = "add up an array")]
impl Stage for ToySum {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::VALUES.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::TOTAL.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        let values = inputs.read(&Self::VALUES)?;
        let mut out = Artifacts::new();
        out.put(
            &Self::TOTAL,
            JsonDoc(serde_json::json!({ "total": values.0.sum() })),
        );
        Ok(out)
    }
}
