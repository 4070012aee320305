//! TF-IDF features over rows of token ids, as scikit-learn's
//! `TfidfVectorizer` computes them: counts of word n-grams (of token ids,
//! padding left out) and, optionally, of character n-grams within each
//! token's text padded by a space on each side (`analyzer="char_wb"`); TF
//! raw or sublinear (1 + ln tf); IDF smoothed, ln((1 + n) / (1 + df)) + 1;
//! each block (words, characters) L2-normalised on its own, as a
//! `FeatureUnion` of two vectorizers would be.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use pipe_core::InvalidSetting;

use crate::LinearError;

/// How to turn token ids into features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TfidfConfig {
    /// Smallest and largest word n-gram, e.g. `[1, 2]`.
    pub word_ngrams: [usize; 2],
    /// Smallest and largest character n-gram within tokens, e.g. `[2, 5]`; none by default.
    pub char_ngrams: Option<[usize; 2]>,
    /// 1 + ln(tf) instead of raw counts.
    pub sublinear_tf: bool,
    /// Keep n-grams that occur in at least this many training rows.
    pub min_df: usize,
}

impl Default for TfidfConfig {
    fn default() -> Self {
        TfidfConfig {
            word_ngrams: [1, 2],
            char_ngrams: None,
            sublinear_tf: true,
            min_df: 1,
        }
    }
}

impl TfidfConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let range_ok = |[lo, hi]: [usize; 2]| (1..=9).contains(&lo) && lo <= hi && hi <= 9;
        let bad_range = |name: &str, range: [usize; 2]| {
            InvalidSetting::new(
                name,
                format!("must be [min, max] with 1 <= min <= max <= 9, got {range:?}"),
            )
        };
        if !range_ok(self.word_ngrams) {
            return Err(bad_range("word_ngrams", self.word_ngrams));
        }
        if let Some(range) = self.char_ngrams.filter(|r| !range_ok(*r)) {
            return Err(bad_range("char_ngrams", range));
        }
        if self.min_df == 0 {
            return Err(InvalidSetting::new("min_df", "must be at least 1"));
        }
        Ok(())
    }
}

/// Rows of a sparse matrix (CSR): row `r`'s columns are
/// `indices[indptr[r]..indptr[r + 1]]`, ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseRows {
    pub fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let span = self.indptr[r]..self.indptr[r + 1];
        (&self.indices[span.clone()], &self.values[span])
    }
}

#[cfg(test)]
impl SparseRows {
    /// The non-zero entries of dense rows, for tests.
    pub(crate) fn from_dense(dense: &[&[f32]]) -> SparseRows {
        let mut x = SparseRows {
            indptr: vec![0],
            ..SparseRows::default()
        };
        for r in dense {
            for (c, &v) in r.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                x.indices.push(c as u32);
                x.values.push(v);
            }
            x.indptr.push(x.indices.len());
        }
        x
    }
}

/// A fitted vectorizer: the n-grams it knows, their columns and IDF weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TfidfVectorizer {
    pub config: TfidfConfig,
    pub pad_id: i64,
    /// Word n-grams (token ids) in column order, from column 0.
    pub word_ngrams: Vec<Vec<i64>>,
    /// Character n-grams in column order, after the word columns.
    pub char_ngrams: Vec<String>,
    /// Each token id's text, for character n-grams (empty without them).
    pub tokens: Vec<String>,
    pub idf: Vec<f32>,
    #[serde(skip)]
    index: Index,
}

/// Column lookup, rebuilt after loading.
#[derive(Debug, Clone, Default)]
struct Index {
    words: HashMap<Vec<i64>, u32>,
    chars: HashMap<String, u32>,
}

impl PartialEq for Index {
    fn eq(&self, _: &Index) -> bool {
        true
    }
}

impl TfidfVectorizer {
    /// Learns the n-grams of `rows` (token ids; `pad_id` is padding) and
    /// their IDF. `tokens` is the vocabulary's text, by id.
    pub fn fit(
        config: TfidfConfig,
        rows: &[&[i64]],
        pad_id: i64,
        tokens: &[String],
    ) -> Result<TfidfVectorizer, LinearError> {
        if rows.is_empty() {
            return Err(LinearError::NoRows);
        }
        check_ids(rows, tokens.len())?;
        let mut word_df: HashMap<Vec<i64>, usize> = HashMap::new();
        let mut char_df: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let words = real_tokens(row, pad_id);
            for gram in distinct(word_grams(&words, config.word_ngrams)) {
                *word_df.entry(gram).or_default() += 1;
            }
            if let Some(range) = config.char_ngrams {
                for gram in distinct(char_grams(&words, tokens, range)) {
                    *char_df.entry(gram).or_default() += 1;
                }
            }
        }
        // Columns in sorted order, so a fit is the same on every run.
        let keep = |df: &usize| *df >= config.min_df;
        let mut word_ngrams: Vec<(Vec<i64>, usize)> =
            word_df.into_iter().filter(|(_, df)| keep(df)).collect();
        word_ngrams.sort();
        let mut char_ngrams: Vec<(String, usize)> =
            char_df.into_iter().filter(|(_, df)| keep(df)).collect();
        char_ngrams.sort();
        if word_ngrams.is_empty() && char_ngrams.is_empty() {
            return Err(LinearError::NoFeatures);
        }
        let n = rows.len() as f64;
        let idf = word_ngrams
            .iter()
            .map(|(_, df)| *df)
            .chain(char_ngrams.iter().map(|(_, df)| *df))
            .map(|df| (((1.0 + n) / (1.0 + df as f64)).ln() + 1.0) as f32)
            .collect();
        let tokens = if config.char_ngrams.is_some() {
            tokens.to_vec()
        } else {
            Vec::new()
        };
        let mut vectorizer = TfidfVectorizer {
            config,
            pad_id,
            word_ngrams: word_ngrams.into_iter().map(|(g, _)| g).collect(),
            char_ngrams: char_ngrams.into_iter().map(|(g, _)| g).collect(),
            tokens,
            idf,
            index: Index::default(),
        };
        vectorizer.build_index();
        Ok(vectorizer)
    }

    /// Number of columns.
    pub fn features(&self) -> usize {
        self.word_ngrams.len() + self.char_ngrams.len()
    }

    /// The TF-IDF rows of `rows`. Ids unseen in training are ignored, as
    /// scikit-learn ignores unseen n-grams; an id beyond the vocabulary has
    /// no text, so it contributes no character n-grams.
    pub fn transform(&self, rows: &[&[i64]]) -> SparseRows {
        if self.index.words.len() != self.word_ngrams.len()
            || self.index.chars.len() != self.char_ngrams.len()
        {
            // Loaded from disk: the lookup is not stored.
            let mut rebuilt = self.clone();
            rebuilt.build_index();
            return rebuilt.transform(rows);
        }
        let mut out = SparseRows {
            indptr: vec![0],
            ..SparseRows::default()
        };
        for row in rows {
            let words = real_tokens(row, self.pad_id);
            let word_block = self.weigh(
                word_grams(&words, self.config.word_ngrams)
                    .filter_map(|g| self.index.words.get(&g).copied()),
            );
            push_normalised(&mut out, word_block);
            if let Some(range) = self.config.char_ngrams {
                let chars = char_grams(&words, &self.tokens, range)
                    .filter_map(|g| self.index.chars.get(&g).copied());
                push_normalised(&mut out, self.weigh(chars));
            }
            out.indptr.push(out.indices.len());
        }
        out
    }

    /// Term counts of one row's columns → TF-IDF weights, by column.
    fn weigh(&self, columns: impl Iterator<Item = u32>) -> Vec<(u32, f32)> {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for c in columns {
            *counts.entry(c).or_default() += 1;
        }
        let mut weighted: Vec<(u32, f32)> = counts
            .into_iter()
            .map(|(c, tf)| {
                let tf = if self.config.sublinear_tf {
                    1.0 + (tf as f32).ln()
                } else {
                    tf as f32
                };
                (c, tf * self.idf[c as usize])
            })
            .collect();
        weighted.sort_by_key(|&(c, _)| c);
        weighted
    }

    fn build_index(&mut self) {
        let words = self
            .word_ngrams
            .iter()
            .enumerate()
            .map(|(i, g)| (g.clone(), i as u32))
            .collect();
        let offset = self.word_ngrams.len();
        let chars = self
            .char_ngrams
            .iter()
            .enumerate()
            .map(|(i, g)| (g.clone(), (offset + i) as u32))
            .collect();
        self.index = Index { words, chars };
    }
}

fn check_ids(rows: &[&[i64]], vocab: usize) -> Result<(), LinearError> {
    for (r, row) in rows.iter().enumerate() {
        if let Some(&id) = row.iter().find(|&&id| id < 0 || id as usize >= vocab) {
            return Err(LinearError::TokenOutOfRange { row: r, id, vocab });
        }
    }
    Ok(())
}

fn real_tokens(row: &[i64], pad_id: i64) -> Vec<i64> {
    row.iter().copied().filter(|&t| t != pad_id).collect()
}

fn word_grams(words: &[i64], [lo, hi]: [usize; 2]) -> impl Iterator<Item = Vec<i64>> + '_ {
    (lo..=hi).flat_map(move |n| words.windows(n).map(<[i64]>::to_vec))
}

/// scikit-learn's `_char_wb_ngrams` over each token's text.
fn char_grams<'a>(
    words: &'a [i64],
    tokens: &'a [String],
    [lo, hi]: [usize; 2],
) -> impl Iterator<Item = String> + 'a {
    words
        .iter()
        .filter_map(|&id| tokens.get(id as usize))
        .flat_map(move |word| {
            let padded: Vec<char> = std::iter::once(' ')
                .chain(word.chars())
                .chain(std::iter::once(' '))
                .collect();
            let mut grams = Vec::new();
            for n in lo..=hi {
                let mut offset = 0;
                grams.push(
                    padded[offset..(offset + n).min(padded.len())]
                        .iter()
                        .collect::<String>(),
                );
                while offset + n < padded.len() {
                    offset += 1;
                    grams.push(padded[offset..offset + n].iter().collect());
                }
                if offset == 0 {
                    // A word shorter than n counts once.
                    break;
                }
            }
            grams
        })
}

fn distinct<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort();
    v.dedup();
    v
}

fn push_normalised(out: &mut SparseRows, block: Vec<(u32, f32)>) {
    let norm = block.iter().map(|&(_, v)| v * v).sum::<f32>().sqrt();
    for (c, v) in block {
        out.indices.push(c);
        out.values.push(if norm > 0.0 { v / norm } else { v });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn idf_and_norm_follow_scikit_learn() {
        // Two documents, "a b" and "a"; unigrams only, raw tf.
        let config = TfidfConfig {
            word_ngrams: [1, 1],
            sublinear_tf: false,
            ..TfidfConfig::default()
        };
        let tokens = vocab(&["<PAD>", "a", "b"]);
        let rows: Vec<&[i64]> = vec![&[1, 2, 0], &[1, 0, 0]];
        let v = TfidfVectorizer::fit(config, &rows, 0, &tokens).unwrap();
        // idf(a) = ln(3/3) + 1 = 1, idf(b) = ln(3/2) + 1.
        assert_eq!(v.word_ngrams, vec![vec![1], vec![2]]);
        assert!((v.idf[0] - 1.0).abs() < 1e-6);
        assert!((v.idf[1] - ((1.5f32).ln() + 1.0)).abs() < 1e-6);
        let x = v.transform(&rows);
        let (cols, vals) = x.row(0);
        assert_eq!(cols, &[0, 1]);
        let norm = (1.0 + v.idf[1] * v.idf[1]).sqrt();
        assert!((vals[0] - 1.0 / norm).abs() < 1e-6 && (vals[1] - v.idf[1] / norm).abs() < 1e-6);
        assert_eq!(x.row(1), (&[0u32][..], &[1.0f32][..]));
    }

    #[test]
    fn bigrams_skip_padding_and_unseen_ngrams_are_ignored() {
        let tokens = vocab(&["<PAD>", "a", "b", "c"]);
        let rows: Vec<&[i64]> = vec![&[0, 1, 2]];
        let v = TfidfVectorizer::fit(TfidfConfig::default(), &rows, 0, &tokens).unwrap();
        assert_eq!(v.word_ngrams, vec![vec![1], vec![1, 2], vec![2]]);
        let x = v.transform(&[&[3, 3, 1]]);
        assert_eq!(x.row(0).0, &[0], "only the unigram `a` is known");
    }

    #[test]
    fn char_wb_ngrams_match_scikit_learn() {
        // sklearn: CountVectorizer(analyzer="char_wb", ngram_range=(2, 3)).build_analyzer()("ab c")
        let tokens = vocab(&["<PAD>", "ab", "c"]);
        let grams: Vec<String> = char_grams(&[1, 2], &tokens, [2, 3]).collect();
        assert_eq!(grams, [" a", "ab", "b ", " ab", "ab ", " c", "c ", " c "]);
    }

    #[test]
    fn bad_settings_and_ids_are_refused() {
        assert!(TfidfConfig {
            word_ngrams: [2, 1],
            ..TfidfConfig::default()
        }
        .validate()
        .is_err());
        assert!(TfidfConfig {
            char_ngrams: Some([0, 3]),
            ..TfidfConfig::default()
        }
        .validate()
        .is_err());
        assert!(TfidfConfig {
            min_df: 0,
            ..TfidfConfig::default()
        }
        .validate()
        .is_err());
        let tokens = vocab(&["<PAD>", "a"]);
        let err = TfidfVectorizer::fit(TfidfConfig::default(), &[&[1, 7]], 0, &tokens).unwrap_err();
        assert!(
            matches!(
                err,
                LinearError::TokenOutOfRange {
                    row: 0,
                    id: 7,
                    vocab: 2
                }
            ),
            "{err}"
        );
    }
}
