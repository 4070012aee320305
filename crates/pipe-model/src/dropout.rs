//! Inverted dropout with a fast mask on the CPU.
//!
//! torch's CPU dropout draws its mask with `bernoulli_`, one generator call
//! per element: about 1.2 ms for lstm.yaml's 128 × 15 × 128 embedding batch,
//! half as long as the LSTM's own forward pass. Here each element's keep bit
//! is a hash of its index and a per-call seed (a counter-based generator, so
//! the loop vectorises), and the seed is one draw from torch's generator so
//! that `manual_seed` still fixes every mask. Elsewhere (a GPU, other dtypes)
//! torch's own dropout runs.

use tch::{Device, Kind, Tensor};

/// `torch.nn.functional.dropout(xs, p, train)`: in training, each element is
/// zeroed with probability `p` and the rest scaled by `1 / (1 - p)`.
pub fn dropout(xs: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return xs.shallow_clone();
    }
    let n = xs.numel();
    // torch's own op for what the mask below cannot take (an empty tensor's
    // data pointer may be null).
    if xs.device() != Device::Cpu
        || xs.kind() != Kind::Float
        || p >= 1.0
        || n == 0
        || n > u32::MAX as usize
    {
        return xs.dropout(p, train);
    }
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
    let mask = Tensor::empty(xs.size(), (Kind::Float, Device::Cpu));
    // SAFETY: `mask` is a fresh contiguous f32 CPU tensor of `n` elements that
    // nothing else references yet.
    let values = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut f32, n) };
    fill_keep_mask(values, p, seed);
    xs * mask
}

/// Sets each value to `1 / (1 - p)` with probability `1 - p`, else 0.
fn fill_keep_mask(values: &mut [f32], p: f64, seed: u64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the feature the function is compiled for.
            return unsafe { fill_keep_mask_avx2(values, p, seed) };
        }
    }
    fill_keep_mask_portable(values, p, seed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_keep_mask_avx2(values: &mut [f32], p: f64, seed: u64) {
    fill_keep_mask_portable(values, p, seed)
}

#[inline(always)]
fn fill_keep_mask_portable(values: &mut [f32], p: f64, seed: u64) {
    let scale = (1.0 / (1.0 - p)) as f32;
    // Keep when a uniform 32-bit hash is at or above p·2³² (p < 1, so it fits).
    let threshold = (p * 4_294_967_296.0) as u32;
    let (low, high) = (seed as u32, (seed >> 32) as u32);
    for (i, value) in values.iter_mut().enumerate() {
        let bits = mix32(mix32(i as u32 ^ low) ^ high);
        *value = if bits >= threshold { scale } else { 0.0 };
    }
}

/// A 32-bit integer hash with full avalanche ("lowbias32", Chris Wellons).
#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_expected_share_scaled_and_uncorrelated() {
        for p in [0.2, 0.5] {
            let mut mask = vec![f32::NAN; 200_001];
            fill_keep_mask(&mut mask, p, 7);
            let scale = (1.0 / (1.0 - p)) as f32;
            assert!(mask.iter().all(|&m| m == 0.0 || m == scale));
            let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / mask.len() as f64;
            assert!((kept - (1.0 - p)).abs() < 0.005, "p {p}: kept {kept}");
            // E[mask] = 1: dropout leaves the expected activation unchanged.
            let mean = mask.iter().map(|&m| m as f64).sum::<f64>() / mask.len() as f64;
            assert!((mean - 1.0).abs() < 0.01, "p {p}: mean {mean}");
            // Neighbours are independent: P(both kept) = (1 - p)².
            let both = mask
                .windows(2)
                .filter(|w| w[0] != 0.0 && w[1] != 0.0)
                .count() as f64
                / (mask.len() - 1) as f64;
            assert!(
                (both - (1.0 - p) * (1.0 - p)).abs() < 0.005,
                "p {p}: both kept {both}"
            );
        }
        // Another seed, another mask.
        let (mut a, mut b) = (vec![0f32; 1000], vec![0f32; 1000]);
        fill_keep_mask(&mut a, 0.5, 1);
        fill_keep_mask(&mut b, 0.5, 1 << 32);
        assert_ne!(a, b);
    }

    #[test]
    fn seeded_by_torch_and_differentiable() {
        let _rng = crate::torch_rng_lock();
        let xs = Tensor::ones([64, 33], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        tch::manual_seed(5);
        let a = dropout(&xs, 0.3, true);
        let b = dropout(&xs, 0.3, true);
        tch::manual_seed(5);
        let again = dropout(&xs, 0.3, true);
        assert!(a.equal(&again), "manual_seed must fix the mask");
        assert!(!a.equal(&b), "successive calls draw fresh masks");
        // The gradient is the mask itself.
        let grad = Tensor::run_backward(&[a.sum(Kind::Float)], &[&xs], false, false).remove(0);
        assert!(grad.equal(&a.detach()));
        // Evaluation is the identity.
        assert!(dropout(&xs, 0.3, false).equal(&xs));
    }
}
