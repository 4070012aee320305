//! The `toy_sum` toy stage.

use pipe_core::{stage, Artifacts, JsonDoc, Port, Stage, StageContext, StageError};
use pipe_data::IntArray;
use serde::{Deserialize, Serialize};

/// Sums an array into a JSON document `{"total": N}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToySum {}

#[stage(kind = "toy_sum", summary = "add up an array")]
impl Stage for ToySum {
    fn inputs(&self) -> Vec<Port> {
        vec![Port::of::<IntArray>("values", "numbers to add up")]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::of::<JsonDoc>("total", "{\"total\": sum}")]
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
