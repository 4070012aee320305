//! The `ngrams` stage: fastText's features appended to each row — hashed
//! word bigrams, and optionally hashed character n-grams of each word.

use pipe_core::{stage, Artifacts, InvalidSetting, Port, PortOf, Stage, StageContext, StageError};
use pipe_data::Vocabulary;
use serde::{Deserialize, Serialize};

use crate::ngrams::{append_ngrams, check_settings, Subwords};
use crate::TokenTensors;

/// Appends hashed bigram ids (vocabulary size and up) and, with
/// `char_ngrams`, each word's hashed character n-gram ids in the same buckets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ngrams {
    /// Hash buckets for bigrams and character n-grams; the bag model needs
    /// the same number.
    pub buckets: i64,
    /// `[min, max]` characters of each word's n-grams (fastText's `-minn`,
    /// `-maxn`; it suggests `[3, 6]`): rare words then share what they have
    /// in common with frequent ones. Off by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub char_ngrams: Option<[usize; 2]>,
}

impl Default for Ngrams {
    fn default() -> Self {
        Ngrams {
            buckets: 1 << 16,
            char_ngrams: None,
        }
    }
}

impl Ngrams {
    pub const TENSORS: PortOf<TokenTensors> = PortOf::new("tensors", "token ids");
    pub const VOCAB: PortOf<Vocabulary> =
        PortOf::new("vocab", "n-gram ids start after it; its tokens' letters");
    pub const TENSORS_OUT: PortOf<TokenTensors> =
        PortOf::new("tensors", "token ids followed by hashed n-gram ids");
}

#[stage(
    kind = "ngrams",
    summary = "append hashed word-bigram (and character n-gram) ids to each row (for bag_of_ngrams)"
)]
impl Stage for Ngrams {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::TENSORS.port(), Self::VOCAB.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::TENSORS_OUT.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        check_settings(self.buckets, self.char_ngrams)
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let data = inputs.read(&Self::TENSORS)?;
        let vocab = inputs.read(&Self::VOCAB)?;
        let subwords = self
            .char_ngrams
            .map(|range| Subwords::new(vocab, range, self.buckets));
        let tensors = append_ngrams(data, vocab.len() as i64, self.buckets, subwords.as_ref());
        ctx.info(format!(
            "{} rows of up to {} ids",
            tensors.rows(),
            tensors.width()
        ));
        let mut out = Artifacts::new();
        out.put(&Self::TENSORS_OUT, tensors);
        Ok(out)
    }
}
