//! The `to_tensors` stage: an id matrix (and optional labels) to [`TokenTensors`].

use pipe_core::{stage, Artifacts, Optional, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::{IntArray, Vocabulary};
use pipe_runtime::runtime;
use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::{PaddingConfig, PaddingSide, TokenTensors};

/// An id matrix (and optional labels) to [`TokenTensors`], on the pipeline's device.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToTensors {
    pub padding: PaddingConfig,
}

impl ToTensors {
    pub const X: PortOf<IntArray> = PortOf::new("x", "token ids [rows, max_len]");
    pub const Y: PortOf<IntArray, Optional> = PortOf::optional("y", "label ids [rows]");
    pub const VOCAB: PortOf<Vocabulary> = PortOf::new("vocab", "for the <PAD> id");
    pub const TENSORS: PortOf<TokenTensors> =
        PortOf::new("tensors", "ids, lengths, labels, padding side");
}

#[stage(
    kind = "to_tensors",
    summary = "token-id matrix → int64 tensors with lengths and padding side"
)]
impl Stage for ToTensors {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::X.port(), Self::Y.port(), Self::VOCAB.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::TENSORS.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let x = inputs.read(&Self::X)?;
        let y = inputs.read_optional(&Self::Y)?;
        let vocab = inputs.read(&Self::VOCAB)?;
        let expected = match self.padding {
            PaddingConfig::Auto => None,
            PaddingConfig::Pre => Some(PaddingSide::Pre),
            PaddingConfig::Post => Some(PaddingSide::Post),
        };
        let device = runtime::device(ctx.device).map_err(StageError::other)?;
        let tensors = TokenTensors::from_arrays(x, y, vocab.pad_id, expected, device)
            .map_err(StageError::other)?;
        let mean_len = tensors
            .lengths
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        ctx.info(format!(
            "{} rows × {}, {:?}-padded, mean length {mean_len:.1}",
            tensors.rows(),
            tensors.width(),
            tensors.padding
        ));
        let mut out = Artifacts::new();
        out.put(&Self::TENSORS, tensors);
        Ok(out)
    }
}
