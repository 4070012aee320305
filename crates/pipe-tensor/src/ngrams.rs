//! Hashed word bigrams appended to each row's token ids (fastText's trick):
//! computed once by the `ngrams` stage, cached like any output, and read by a
//! bag model.

use tch::{Device, Tensor};

use crate::{PaddingSide, TokenTensors};

/// The id of bigram (a, b): `vocab_size + hash(a, b) % buckets`.
pub fn bigram_id(a: i64, b: i64, vocab_size: i64, buckets: i64) -> i64 {
    // 64-bit mix of the pair (splitmix64 finaliser): cheap and well spread.
    let mut z = (a as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (b as u64).wrapping_add(0x632b_e59b_d9b4_e019);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    vocab_size + (z % buckets as u64) as i64
}

/// Each row's tokens followed by the hashed ids of its adjacent pairs,
/// post-padded to `2 × width − 1`. Lengths are updated; labels kept.
pub fn append_bigrams(data: &TokenTensors, vocab_size: i64, buckets: i64) -> TokenTensors {
    let ids = Vec::<i64>::try_from(&data.ids.to_device(Device::Cpu).view([-1])).expect("int64 ids");
    let lengths = Vec::<i64>::try_from(&data.lengths.to_device(Device::Cpu)).expect("int64 lengths");
    let (rows, width) = (data.rows() as usize, data.width() as usize);
    let out_width = (2 * width).saturating_sub(1).max(1);
    let mut out = vec![data.pad_id; rows * out_width];
    let mut out_lengths = Vec::with_capacity(rows);
    for r in 0..rows {
        let n = lengths[r] as usize;
        let row = &ids[r * width..(r + 1) * width];
        let tokens = match data.padding {
            PaddingSide::Post => &row[..n],
            PaddingSide::Pre => &row[width - n..],
        };
        let dst = &mut out[r * out_width..(r + 1) * out_width];
        dst[..n].copy_from_slice(tokens);
        for (k, pair) in tokens.windows(2).enumerate() {
            dst[n + k] = bigram_id(pair[0], pair[1], vocab_size, buckets);
        }
        out_lengths.push((n + n.saturating_sub(1)) as i64);
    }
    TokenTensors {
        ids: Tensor::from_slice(&out).view([rows as i64, out_width as i64]).to_device(data.ids.device()),
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
}
