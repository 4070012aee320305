//! fastText's input features appended to each row's token ids: hashed word
//! bigrams and, optionally, hashed character n-grams of each word
//! (`-minn/-maxn`), all in one bucket range after the vocabulary. Computed
//! once by the `ngrams` stage, cached like any output, and read by a bag model.

use pipe_core::InvalidSetting;
use pipe_data::Vocabulary;
use tch::{Device, Tensor};

use crate::{PaddingSide, TokenTensors};

/// The id of bigram (a, b): `vocab_size + hash(a, b) % buckets`.
pub fn bigram_id(a: i64, b: i64, vocab_size: i64, buckets: i64) -> i64 {
    // 64-bit mix of the pair (splitmix64 finaliser): cheap and well spread.
    let mut z = (a as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (b as u64).wrapping_add(0x632b_e59b_d9b4_e019);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    vocab_size + (z % buckets as u64) as i64
}

/// The id of a character n-grams: `vocab_size + fnv1a(ngram) % buckets`
/// (fastText hashes its subwords with 32-bit FNV-1a too).
pub fn char_ngram_id(ngram: &str, vocab_size: i64, buckets: i64) -> i64 {
    let hash = ngram.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ b as u32).wrapping_mul(16_777_619)
    });
    vocab_size + (hash as u64 % buckets as u64) as i64
}

/// The character n-grams of `<token>` with `min..=max` characters, as
/// fastText takes them: the brackets mark the word's start and end, and a
/// lone bracket is not an n-gram.
pub fn char_ngrams(token: &str, [min, max]: [usize; 2]) -> Vec<String> {
    let chars: Vec<char> = format!("<{token}>").chars().collect();
    let mut out = Vec::new();
    for start in 0..chars.len() {
        for n in min.max(1)..=max {
            let end = start + n;
            if end > chars.len() || (n == 1 && (start == 0 || end == chars.len())) {
                continue;
            }
            out.push(chars[start..end].iter().collect());
        }
    }
    out
}

/// Each vocabulary token's hashed character n-gram ids; the padding and
/// unknown tokens have none (the unknown token's letters are no word's).
#[derive(Debug, Clone, PartialEq)]
pub struct Subwords {
    /// Token `t`'s ids are `ids[offsets[t]..offsets[t + 1]]`.
    offsets: Vec<usize>,
    ids: Vec<i64>,
}

impl Subwords {
    pub fn new(vocab: &Vocabulary, range: [usize; 2], buckets: i64) -> Subwords {
        let vocab_size = vocab.len() as i64;
        let mut offsets = Vec::with_capacity(vocab.len() + 1);
        let mut ids = Vec::new();
        offsets.push(0);
        for (id, token) in vocab.tokens.iter().enumerate() {
            let special = id as i64 == vocab.pad_id || Some(id as i64) == vocab.unk_id;
            if !special {
                ids.extend(
                    char_ngrams(token, range)
                        .iter()
                        .map(|g| char_ngram_id(g, vocab_size, buckets)),
                );
            }
            offsets.push(ids.len());
        }
        Subwords { offsets, ids }
    }

    /// Token `token`'s n-gram ids (none for an id outside the vocabulary).
    pub fn of(&self, token: i64) -> &[i64] {
        match usize::try_from(token) {
            Ok(t) if t + 1 < self.offsets.len() => &self.ids[self.offsets[t]..self.offsets[t + 1]],
            _ => &[],
        }
    }
}

/// The most hash buckets: 2^24, 16.7 million, eight times fastText's default
/// of 2 million. Each bucket is a row of the bag model's embedding table
/// (which `bag_of_ngrams` bounds again with its width); more buckets than
/// distinct n-grams only leave rows unused.
pub const MAX_BUCKETS: i64 = 1 << 24;

/// The longest character n-gram: 20 characters, past fastText's suggested
/// `-maxn` of 6. A word yields up to `len × (max − min + 1)` of them.
pub const MAX_CHAR_NGRAM: usize = 20;

/// The settings' checks: the `ngrams` stage's, `select`'s bag candidate's,
/// and a stored ensemble member's.
pub fn check_settings(buckets: i64, char_ngrams: Option<[usize; 2]>) -> Result<(), InvalidSetting> {
    if !(1..=MAX_BUCKETS).contains(&buckets) {
        return Err(InvalidSetting::new(
            "buckets",
            format!("must be between 1 and {MAX_BUCKETS}, got {buckets}"),
        ));
    }
    if let Some([min, max]) = char_ngrams {
        if !(1 <= min && min <= max && max <= MAX_CHAR_NGRAM) {
            return Err(InvalidSetting::new(
                "char_ngrams",
                format!("must be [min, max] with 1 <= min <= max <= {MAX_CHAR_NGRAM}, got [{min}, {max}]"),
            ));
        }
    }
    Ok(())
}

/// Each row's tokens followed by the hashed ids of its adjacent pairs,
/// post-padded to `2 × width − 1`. Lengths are updated; labels kept.
pub fn append_bigrams(data: &TokenTensors, vocab_size: i64, buckets: i64) -> TokenTensors {
    append_ngrams(data, vocab_size, buckets, None)
}

/// Each row's tokens, then the hashed ids of its adjacent pairs, then (with
/// `subwords`) each token's character n-gram ids; post-padded to `2 × width
/// − 1` without subwords, to the longest row with them. Labels are kept.
pub fn append_ngrams(
    data: &TokenTensors,
    vocab_size: i64,
    buckets: i64,
    subwords: Option<&Subwords>,
) -> TokenTensors {
    let ids = Vec::<i64>::try_from(&data.ids.to_device(Device::Cpu).view([-1])).expect("int64 ids");
    let lengths =
        Vec::<i64>::try_from(&data.lengths.to_device(Device::Cpu)).expect("int64 lengths");
    let (rows, width) = (data.rows() as usize, data.width() as usize);
    let tokens_of = |r: usize| {
        let n = lengths[r] as usize;
        let row = &ids[r * width..(r + 1) * width];
        match data.padding {
            PaddingSide::Post => &row[..n],
            PaddingSide::Pre => &row[width - n..],
        }
    };
    let features: Vec<Vec<i64>> = (0..rows)
        .map(|r| {
            let tokens = tokens_of(r);
            let mut row = tokens.to_vec();
            row.extend(
                tokens
                    .windows(2)
                    .map(|pair| bigram_id(pair[0], pair[1], vocab_size, buckets)),
            );
            if let Some(subwords) = subwords {
                row.extend(tokens.iter().flat_map(|&t| subwords.of(t)));
            }
            row
        })
        .collect();
    let out_width = match subwords {
        None => (2 * width).saturating_sub(1).max(1),
        Some(_) => features.iter().map(Vec::len).max().unwrap_or(0).max(1),
    };
    let mut out = vec![data.pad_id; rows * out_width];
    for (r, row) in features.iter().enumerate() {
        out[r * out_width..r * out_width + row.len()].copy_from_slice(row);
    }
    let out_lengths: Vec<i64> = features.iter().map(|row| row.len() as i64).collect();
    TokenTensors {
        ids: Tensor::from_slice(&out)
            .view([rows as i64, out_width as i64])
            .to_device(data.ids.device()),
        lengths: Tensor::from_slice(&out_lengths).to_device(data.ids.device()),
        labels: data.labels.as_ref().map(Tensor::shallow_clone),
        padding: PaddingSide::Post,
        pad_id: data.pad_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};
    use pipe_data::IntArray;

    #[test]
    fn buckets_and_char_ngrams_are_bounded() {
        assert_eq!(check_settings(1 << 16, None), Ok(()));
        assert_eq!(
            check_settings(MAX_BUCKETS, Some([1, MAX_CHAR_NGRAM])),
            Ok(())
        );
        for (buckets, got) in [
            (MAX_BUCKETS + 1, "16777217"),
            (0, "0"),
            (-5, "-5"),
            (i64::MAX, "9223372036854775807"),
        ] {
            assert_eq!(
                check_settings(buckets, None),
                Err(InvalidSetting::new(
                    "buckets",
                    format!("must be between 1 and {MAX_BUCKETS}, got {got}")
                ))
            );
        }
        for range in [[3, MAX_CHAR_NGRAM + 1], [0, 3], [4, 3], [1, usize::MAX]] {
            assert_eq!(
                check_settings(64, Some(range)).unwrap_err().setting,
                "char_ngrams",
                "{range:?}"
            );
        }
        let stage = |buckets: i64| {
            pipe_core::Stage::validate(&crate::Ngrams {
                buckets,
                char_ngrams: None,
            })
        };
        assert_eq!(
            pipe_core::Stage::validate(&crate::Ngrams::default()),
            Ok(())
        );
        assert_eq!(stage(MAX_BUCKETS + 1).unwrap_err().setting, "buckets");
    }

    #[test]
    fn appends_bigrams_after_the_tokens() {
        let x = IntArray(ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![5, 6, 7, 9, 0, 0]).unwrap());
        let t = TokenTensors::from_arrays(&x, None, 0, None, Device::Cpu).unwrap();
        let b = append_bigrams(&t, 10, 100);
        assert_eq!(b.width(), 5);
        let ids = Vec::<i64>::try_from(&b.ids.view([-1])).unwrap();
        assert_eq!(&ids[..3], &[5, 6, 7]);
        assert_eq!(ids[3], bigram_id(5, 6, 10, 100));
        assert_eq!(ids[4], bigram_id(6, 7, 10, 100));
        assert_eq!(&ids[5..], &[9, 0, 0, 0, 0]);
        assert_eq!(Vec::<i64>::try_from(&b.lengths).unwrap(), vec![5, 1]);
        assert!(ids.iter().all(|&i| i < 110));
    }

    #[test]
    fn char_ngrams_are_fasttexts() {
        assert_eq!(
            char_ngrams("cat", [3, 4]),
            vec!["<ca", "<cat", "cat", "cat>", "at>"]
        );
        assert_eq!(
            char_ngrams("é", [1, 2]),
            vec!["<é", "é", "é>"],
            "characters, not bytes; no lone brackets"
        );
        assert!(char_ngrams("a", [5, 6]).is_empty());
    }

    #[test]
    fn subwords_follow_each_token_after_the_bigrams() {
        let vocab = Vocabulary {
            tokens: ["<PAD>", "<UNK>", "cat", "cats"].map(String::from).to_vec(),
            pad_id: 0,
            unk_id: Some(1),
        };
        let subwords = Subwords::new(&vocab, [3, 3], 50);
        assert!(
            subwords.of(0).is_empty() && subwords.of(1).is_empty(),
            "no n-grams for the pad and unknown tokens"
        );
        let cat: Vec<i64> = ["<ca", "cat", "at>"]
            .iter()
            .map(|g| char_ngram_id(g, 4, 50))
            .collect();
        assert_eq!(subwords.of(2), cat.as_slice());
        assert_eq!(subwords.of(3).len(), 4);
        assert_eq!(&subwords.of(3)[..2], &cat[..2], "shared n-grams share ids");
        assert!(subwords.of(99).is_empty());

        let x = IntArray(ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0, 2, 3, 0, 0, 1]).unwrap());
        let t = TokenTensors::from_arrays(&x, None, 0, None, Device::Cpu).unwrap();
        assert_eq!(t.padding, PaddingSide::Pre);
        let f = append_ngrams(&t, 4, 50, Some(&subwords));
        assert_eq!(
            Vec::<i64>::try_from(&f.lengths).unwrap(),
            vec![2 + 1 + 3 + 4, 1]
        );
        assert_eq!(f.width(), 10);
        let ids = Vec::<i64>::try_from(&f.ids.view([-1])).unwrap();
        assert_eq!(&ids[..3], &[2, 3, bigram_id(2, 3, 4, 50)]);
        assert_eq!(&ids[3..6], cat.as_slice());
        assert_eq!(&ids[6..10], subwords.of(3));
        assert_eq!(&ids[10..], &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(ids.iter().all(|&i| i < 54));
        assert_eq!(f.padding, PaddingSide::Post);
    }
}
