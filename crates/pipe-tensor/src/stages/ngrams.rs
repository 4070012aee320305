//! The `ngrams` stage: hashed word-bigram ids appended to each row.

use pipe_core::{stage, Artifacts, Port, Stage, StageContext, StageError};
use pipe_data::Vocabulary;
use serde::{Deserialize, Serialize};

use crate::ngrams::append_bigrams;
use crate::TokenTensors;

/// Appends hashed bigram ids (vocabulary size and up).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ngrams {
    /// Hash buckets for bigrams; the bag model needs the same number.
    pub buckets: i64,
}

impl Default for Ngrams {
    fn default() -> Self {
        Ngrams { buckets: 1 << 16 }
    }
}

#[stage(kind = "ngrams", summary = "append hashed word-bigram ids to each row (for bag_of_ngrams)")]
impl Stage for Ngrams {
    fn inputs(&self) -> Vec<Port> {
        vec![Port::of::<TokenTensors>("tensors", "token ids"), Port::of::<Vocabulary>("vocab", "bigram ids start after it")]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Port::of::<TokenTensors>("tensors", "token ids followed by hashed bigram ids")]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        if self.buckets <= 0 {
            return Err(StageError::invalid("buckets must be positive"));
        }
        let data = inputs.get::<TokenTensors>("tensors")?;
        let vocab = inputs.get::<Vocabulary>("vocab")?;
        let mut out = Artifacts::new();
        out.insert("tensors", append_bigrams(data, vocab.len() as i64, self.buckets));
        Ok(out)
    }
}
