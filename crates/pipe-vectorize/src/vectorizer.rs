//! The tokenizer, the vocabulary fit and the id-matrix encoding.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use ndarray::{ArrayD, IxDyn};
use pipe_core::{register_artifact, Artifact, ArtifactError, InvalidSetting, LoadArtifact};
use pipe_data::{IntArray, Vocabulary};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Python's `\w+|[^\w\s]`: runs of word characters, or single punctuation marks.
static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\w+|[^\w\s]").expect("valid pattern"));

pub const PAD: &str = "<PAD>";
pub const UNK: &str = "<UNK>";

/// The notebook's tokens: lowercase, then `re.findall(r"\w+|[^\w\s]", text)`.
///
/// Rust's `\w` is Unicode's word class, Python's is `str.isalnum()` plus `_`;
/// they agree on letters and digits in every script and differ only on
/// combining marks (Rust keeps a mark inside its word, Python splits there).
pub fn tokenize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    TOKEN
        .find_iter(&lower)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The tokens of `text` that survive truncation to `keep` tokens from the
/// `side` end, tokenizing only as much of the text as they need: a row costs
/// about `keep` tokens of work and memory however long its text is.
///
/// The same tokens as `tokenize` then truncate: the text is tokenized in a
/// growing window from the kept end, and the window's tokens are used only
/// once it holds at least two more tokens than are kept, so the window's cut
/// edge (possibly mid-token) lies past every kept token. One exception:
/// lower-casing is per character except for Greek capital sigma, whose form
/// (`σ` or final `ς`) depends on the nearest cased letter past any run of
/// case-ignorable characters (`.`, `'`, `:` …); a kept `Σ` followed (or, when
/// keeping the end, preceded) by such a run up to the cut can be read as the
/// other form.
pub fn tokenize_truncated(text: &str, keep: usize, side: Side) -> Vec<String> {
    // A token is at least one character of at most 4 bytes: a window of
    // 8 bytes per wanted token usually suffices at once.
    let mut window = keep.saturating_add(2).saturating_mul(8).max(64);
    loop {
        if window >= text.len() {
            let mut tokens = tokenize(text);
            truncate(&mut tokens, keep, side);
            return tokens;
        }
        let part = match side {
            Side::Post => &text[..floor_char_boundary(text, window)],
            Side::Pre => &text[ceil_char_boundary(text, text.len() - window)..],
        };
        let mut tokens = tokenize(part);
        if tokens.len() >= keep.saturating_add(2) {
            truncate(&mut tokens, keep, side);
            return tokens;
        }
        window = window.saturating_mul(2);
    }
}

/// Keeps `keep` items from the `side` end (`post` keeps the first ones).
fn truncate<T>(items: &mut Vec<T>, keep: usize, side: Side) {
    match side {
        Side::Post => items.truncate(keep),
        Side::Pre => {
            let drop = items.len().saturating_sub(keep);
            items.drain(..drop);
        }
    }
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

fn ceil_char_boundary(text: &str, at: usize) -> usize {
    (at..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len())
}

/// Which end of a row padding (or truncation) applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// At the end: tokens first, then pads; truncation drops the tail.
    #[default]
    Post,
    /// At the start: pads first; truncation drops the head.
    Pre,
}

/// How to fit and encode; the defaults are the notebook's upstream script's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorizerOptions {
    /// Keep a token seen at least this many times in the training texts.
    pub min_freq: usize,
    /// Keep at most this many tokens besides `<PAD>` and `<UNK>` (most frequent first).
    pub max_vocab: Option<usize>,
    pub max_len: usize,
    pub padding: Side,
    /// Which end a text longer than `max_len` loses (`post`: the notebook keeps the first tokens).
    pub truncating: Side,
}

/// The largest `max_len` a vectorizer accepts: an id matrix is `rows ×
/// max_len` 8-byte ids, so a larger width turns one batch into gigabytes.
/// Recurrent models see no benefit past a few thousand steps.
pub const MAX_LEN_LIMIT: usize = 65_536;

impl VectorizerOptions {
    /// Bounds every size: checked when a pipeline is loaded and when a
    /// vectorizer is read from disk (a bundle's `vectorizer.json`).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.max_len == 0 || self.max_len > MAX_LEN_LIMIT {
            return Err(InvalidSetting::new(
                "max_len",
                format!(
                    "must be between 1 and {MAX_LEN_LIMIT}, got {}",
                    self.max_len
                ),
            ));
        }
        if self.min_freq == 0 {
            return Err(InvalidSetting::new("min_freq", "must be at least 1, got 0"));
        }
        if self.max_vocab == Some(0) {
            return Err(InvalidSetting::new(
                "max_vocab",
                "must be at least 1 when set, got 0",
            ));
        }
        Ok(())
    }
}

impl Default for VectorizerOptions {
    fn default() -> Self {
        VectorizerOptions {
            min_freq: 2,
            max_vocab: None,
            max_len: 64,
            padding: Side::Post,
            truncating: Side::Post,
        }
    }
}

/// A fitted vocabulary with the encoding settings: encodes any text the way
/// the training texts were encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectorizer {
    pub vocab: Vocabulary,
    pub options: VectorizerOptions,
    index: HashMap<String, i64>,
}

impl Vectorizer {
    /// Fits the vocabulary on `texts`.
    pub fn fit<S: AsRef<str>>(texts: &[S], options: VectorizerOptions) -> Vectorizer {
        // Python's Counter.most_common sorts by count, stably: ties keep first-seen order.
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        for text in texts {
            for token in tokenize(text.as_ref()) {
                let next = counts.len();
                counts.entry(token).or_insert((0, next)).0 += 1;
            }
        }
        let mut ranked: Vec<(String, usize, usize)> = counts
            .into_iter()
            .map(|(t, (c, first))| (t, c, first))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        let mut tokens = vec![PAD.to_string(), UNK.to_string()];
        let kept = ranked
            .into_iter()
            .filter(|(t, c, _)| *c >= options.min_freq && t != PAD && t != UNK)
            .take(options.max_vocab.unwrap_or(usize::MAX));
        tokens.extend(kept.map(|(t, _, _)| t));
        Self::from_vocabulary(
            Vocabulary {
                tokens,
                pad_id: 0,
                unk_id: Some(1),
            },
            options,
        )
    }

    /// Wraps an existing vocabulary (one loaded from `vocab_stoi.pkl`, say).
    pub fn from_vocabulary(vocab: Vocabulary, options: VectorizerOptions) -> Vectorizer {
        let index = vocab
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as i64))
            .collect();
        Vectorizer {
            vocab,
            options,
            index,
        }
    }

    /// The ids of one text's tokens, unknown tokens as `<UNK>` (or skipped
    /// when the vocabulary has none), before truncation and padding.
    pub fn token_ids(&self, text: &str) -> Vec<i64> {
        self.ids_of(tokenize(text))
    }

    fn ids_of(&self, tokens: Vec<String>) -> Vec<i64> {
        tokens
            .iter()
            .filter_map(|t| self.index.get(t).copied().or(self.vocab.unk_id))
            .collect()
    }

    /// The ids that fill one row: at most `max_len`, from the kept end. A
    /// vocabulary without `<UNK>` skips unknown tokens, so the text is read
    /// further until `max_len` known tokens are found.
    fn row_ids(&self, text: &str) -> Vec<i64> {
        let width = self.options.max_len;
        // How far to read for known tokens: without a bound, a huge text of
        // unknown words would be tokenized whole. Past it, the row keeps the
        // known tokens found so far.
        let most = width.saturating_mul(64).max(4096);
        let mut keep = width;
        loop {
            let tokens = tokenize_truncated(text, keep, self.options.truncating);
            let complete = tokens.len() < keep;
            let mut ids = self.ids_of(tokens);
            if ids.len() >= width || complete || keep >= most {
                truncate(&mut ids, width, self.options.truncating);
                return ids;
            }
            keep = keep.saturating_mul(4);
        }
    }

    /// A `[texts, max_len]` id matrix, truncated and padded as configured.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> IntArray {
        let width = self.options.max_len;
        let mut data = vec![self.vocab.pad_id; texts.len() * width];
        for (row, text) in data.chunks_mut(width.max(1)).zip(texts) {
            let ids = &self.row_ids(text.as_ref())[..];
            match self.options.padding {
                Side::Post => row[..ids.len()].copy_from_slice(ids),
                Side::Pre => row[width - ids.len()..].copy_from_slice(ids),
            }
        }
        IntArray(
            ArrayD::from_shape_vec(IxDyn(&[texts.len(), width]), data).expect("rows × max_len"),
        )
    }
}

const VOCAB_FILE: &str = "vocab_stoi.pkl";
const OPTIONS_FILE: &str = "vectorizer.json";

impl Artifact for Vectorizer {
    fn type_name(&self) -> &'static str {
        Self::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let vocab = dir.join(VOCAB_FILE);
        pipe_notebook::write_vocabulary(&vocab, &self.vocab)
            .map_err(|e| ArtifactError::io(&vocab, e))?;
        pipe_core::fsutil::save_json(&dir.join(OPTIONS_FILE), &self.options)
    }
    fn summary(&self) -> String {
        format!(
            "{} tokens, max_len {}",
            self.vocab.len(),
            self.options.max_len
        )
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LoadArtifact for Vectorizer {
    const TYPE_NAME: &'static str = "vectorizer";
    fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let vocab_path = dir.join(VOCAB_FILE);
        let vocab = pipe_notebook::read_vocabulary(&vocab_path)
            .map_err(|e| ArtifactError::invalid(&vocab_path, e))?;
        let options_path = dir.join(OPTIONS_FILE);
        let options: VectorizerOptions = pipe_core::fsutil::load_json(&options_path)?;
        options
            .validate()
            .map_err(|e| ArtifactError::invalid(&options_path, e))?;
        Ok(Vectorizer::from_vocabulary(vocab, options))
    }
}

register_artifact!(
    Vectorizer,
    "a fitted vocabulary with its max_len and padding (vocab_stoi.pkl + vectorizer.json)"
);
