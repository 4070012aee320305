//! The fused Adam makes exactly torch.optim.Adam's updates: 50 steps from the
//! same parameters on recorded gradients end within 1e-6 (relative) of PyTorch:
//! the remaining differences are single float32 roundings (one ulp).

use std::path::Path;

use pipe_train::optim::{Adam, AdamConfig};
use tch::Tensor;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adam").join(name)
}

fn run(config_name: &str, config: AdamConfig, flat: bool) {
    let tensors = Tensor::read_safetensors(fixture("adam.safetensors")).unwrap();
    let get = |name: &str| tensors.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name}")).1.shallow_clone();
    let params: Vec<Tensor> = (0..2).map(|i| get(&format!("initial.{i}")).copy().set_requires_grad(true)).collect();
    let mut adam = Adam::with_layout(params.iter().map(Tensor::shallow_clone).collect(), config, flat);
    for step in 0..50 {
        let grads = (0..2).map(|i| get(&format!("grad.{step}.{i}"))).collect();
        adam.step(grads, None);
    }
    for (i, p) in params.iter().enumerate() {
        let want = get(&format!("final.{config_name}.{i}"));
        // allclose(rtol = 1e-6, atol = 1e-7): relative, with a floor for values near zero.
        let diff = (p - &want).abs();
        let excess = (&diff - want.abs() * 1e-6 - 1e-7).max().double_value(&[]);
        let rel = (&diff / want.abs().clamp_min(1e-1)).max().double_value(&[]);
        assert!(excess <= 0.0, "config {config_name}, param {i}: off by more than 1e-6 relative (max relative {rel})");
    }
}

#[test]
fn matches_torch_adam_with_defaults() {
    run("a", AdamConfig { lr: 1e-3, ..AdamConfig::default() }, false);
    // The flat-buffer layout used on GPUs: the same update as torch ops.
    run("a", AdamConfig { lr: 1e-3, ..AdamConfig::default() }, true);
}

#[test]
fn matches_torch_adam_with_weight_decay_and_other_betas() {
    let config = AdamConfig { lr: 3e-3, beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.01 };
    run("b", config, false);
    run("b", config, true);
}

/// Sparse embedding gradients get the lazy update (SparseAdam's): rows a
/// batch did not use keep their values; used rows move against the gradient.
#[test]
fn sparse_gradients_update_only_the_rows_used() {
    tch::manual_seed(0);
    let weight = Tensor::randn([10, 4], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let before = weight.detach().copy();
    let mut adam = Adam::new(vec![weight.shallow_clone()], AdamConfig::default());
    let ids = Tensor::from_slice(&[2i64, 5, 5, 0]);
    let loss = Tensor::embedding(&weight, &ids, 0, false, true).sum(tch::Kind::Float);
    adam.backward_step(&loss, None);
    let moved: Vec<bool> = (0..10).map(|r| !weight.get(r).equal(&before.get(r))).collect();
    assert_eq!(moved, [false, false, true, false, false, true, false, false, false, false], "row 0 is padding");
    // d(sum)/dw = +1 for the used rows: Adam's first step moves them by -lr.
    let step = (weight.get(2) - before.get(2)).mean(tch::Kind::Float).double_value(&[]);
    assert!((step + 1e-3).abs() < 1e-6, "{step}");
}

/// The lazy update matches torch.optim.SparseAdam over 30 steps whose batches
/// repeat rows and hold padding (row 0), within 1e-6 relative.
#[test]
fn sparse_gradients_match_torch_sparse_adam() {
    let tensors = Tensor::read_safetensors(fixture("sparse_adam.safetensors")).unwrap();
    let get = |name: &str| tensors.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name}")).1.shallow_clone();
    let weight = get("initial").copy().set_requires_grad(true);
    let mut adam = Adam::per_tensor(vec![weight.shallow_clone()], AdamConfig { lr: 4e-3, ..AdamConfig::default() });
    for step in 0..30 {
        let rows = Tensor::embedding(&weight, &get(&format!("ids.{step}")), 0, false, true);
        adam.backward_step(&(rows * get(&format!("upstream.{step}"))).sum(tch::Kind::Float), None);
    }
    let want = get("final");
    let diff = (&weight - &want).abs();
    let excess = (&diff - want.abs() * 1e-6 - 1e-7).max().double_value(&[]);
    assert!(excess <= 0.0, "off by more than 1e-6 relative: max abs diff {}", diff.max().double_value(&[]));
    // Row 0 is padding and never moves; rows no batch used never move either.
    assert!(weight.get(0).equal(&get("initial").get(0)));
}
