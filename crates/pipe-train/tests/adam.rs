//! The fused Adam makes exactly torch.optim.Adam's updates: 50 steps from the
//! same parameters on recorded gradients end within 1e-6 (relative) of PyTorch:
//! the remaining differences are single float32 roundings (one ulp).

use std::path::Path;

use pipe_runtime::runtime::torch_global_lock;
use pipe_train::optim::{Adam, AdamConfig};
use tch::Tensor;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/adam")
        .join(name)
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    PerTensor,
    /// One buffer for all parameters (GPUs).
    Flat,
    /// Flat, the step's scalars read from tensors (a recorded CUDA graph).
    FlatReadingScalars,
}

fn run(config_name: &str, config: AdamConfig, layout: Layout) {
    let tensors = Tensor::read_safetensors(fixture("adam.safetensors")).unwrap();
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}"))
            .1
            .shallow_clone()
    };
    let params: Vec<Tensor> = (0..2)
        .map(|i| get(&format!("initial.{i}")).copy().set_requires_grad(true))
        .collect();
    let mut adam = Adam::with_layout(
        params.iter().map(Tensor::shallow_clone).collect(),
        config,
        layout != Layout::PerTensor,
    );
    if layout == Layout::FlatReadingScalars {
        adam.read_step_scalars_on_device().unwrap();
    }
    for step in 0..50 {
        let grads = (0..2).map(|i| get(&format!("grad.{step}.{i}"))).collect();
        adam.step(grads, None).unwrap();
    }
    for (i, p) in params.iter().enumerate() {
        let want = get(&format!("final.{config_name}.{i}"));
        // allclose(rtol = 1e-6, atol = 1e-7): relative, with a floor for values near zero.
        let diff = (p - &want).abs();
        let excess = (&diff - want.abs() * 1e-6 - 1e-7).max().double_value(&[]);
        let rel = (&diff / want.abs().clamp_min(1e-1)).max().double_value(&[]);
        assert!(
            excess <= 0.0,
            "config {config_name}, param {i}: off by more than 1e-6 relative (max relative {rel})"
        );
    }
}

#[test]
fn matches_torch_adam_with_defaults() {
    for layout in [Layout::PerTensor, Layout::Flat, Layout::FlatReadingScalars] {
        run(
            "a",
            AdamConfig {
                lr: 1e-3,
                ..AdamConfig::default()
            },
            layout,
        );
    }
}

#[test]
fn matches_torch_adam_with_weight_decay_and_other_betas() {
    let config = AdamConfig {
        lr: 3e-3,
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-6,
        weight_decay: 0.01,
    };
    for layout in [Layout::PerTensor, Layout::Flat, Layout::FlatReadingScalars] {
        run("b", config, layout);
    }
}

/// Sparse embedding gradients get the lazy update (SparseAdam's): rows a
/// batch did not use keep their values; used rows move against the gradient.
#[test]
fn sparse_gradients_update_only_the_rows_used() {
    let _torch = torch_global_lock();
    tch::manual_seed(0);
    let weight =
        Tensor::randn([10, 4], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let before = weight.detach().copy();
    let mut adam = Adam::new(vec![weight.shallow_clone()], AdamConfig::default());
    let ids = Tensor::from_slice(&[2i64, 5, 5, 0]);
    let loss = Tensor::embedding(&weight, &ids, 0, false, true).sum(tch::Kind::Float);
    adam.backward_step(&loss, None).unwrap();
    let moved: Vec<bool> = (0..10)
        .map(|r| !weight.get(r).equal(&before.get(r)))
        .collect();
    assert_eq!(
        moved,
        [false, false, true, false, false, true, false, false, false, false],
        "row 0 is padding"
    );
    // d(sum)/dw = +1 for the used rows: Adam's first step moves them by -lr.
    let step = (weight.get(2) - before.get(2))
        .mean(tch::Kind::Float)
        .double_value(&[]);
    assert!((step + 1e-3).abs() < 1e-6, "{step}");
}

/// The lazy update matches torch.optim.SparseAdam over 30 steps whose batches
/// repeat rows and hold padding (row 0), within 1e-6 relative.
#[test]
fn sparse_gradients_match_torch_sparse_adam() {
    let tensors = Tensor::read_safetensors(fixture("sparse_adam.safetensors")).unwrap();
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}"))
            .1
            .shallow_clone()
    };
    let weight = get("initial").copy().set_requires_grad(true);
    let mut adam = Adam::per_tensor(
        vec![weight.shallow_clone()],
        AdamConfig {
            lr: 4e-3,
            ..AdamConfig::default()
        },
    );
    for step in 0..30 {
        let rows = Tensor::embedding(&weight, &get(&format!("ids.{step}")), 0, false, true);
        adam.backward_step(
            &(rows * get(&format!("upstream.{step}"))).sum(tch::Kind::Float),
            None,
        )
        .unwrap();
    }
    let want = get("final");
    let diff = (&weight - &want).abs();
    let excess = (&diff - want.abs() * 1e-6 - 1e-7).max().double_value(&[]);
    assert!(
        excess <= 0.0,
        "off by more than 1e-6 relative: max abs diff {}",
        diff.max().double_value(&[])
    );
    // Row 0 is padding and never moves; rows no batch used never move either.
    assert!(weight.get(0).equal(&get("initial").get(0)));
}

/// Trains an embedding table through `steps` batches of `ids` rows (row 0 is
/// padding, rows repeat) with the eager dense update and with deferred idle
/// rows, and with SparseAdam's lazy update; returns the initial table and
/// those three. The loss is linear in the rows (its gradient does not read
/// them), so `catch_up_first: false` still gives the eager result if each
/// step brings the rows it updates up to date itself.
fn eager_deferred_and_lazy(
    rows: i64,
    width: i64,
    steps: usize,
    config: AdamConfig,
    catch_up_first: bool,
) -> [Tensor; 4] {
    tch::manual_seed(11);
    let initial = Tensor::randn([rows, width], (tch::Kind::Float, tch::Device::Cpu));
    let eager = initial.copy().set_requires_grad(true);
    let deferred = initial.copy().set_requires_grad(true);
    let lazy = initial.copy().set_requires_grad(true);
    let mut eager_adam = Adam::per_tensor(vec![eager.shallow_clone()], config);
    let mut lazy_adam = Adam::per_tensor(
        vec![lazy.shallow_clone()],
        AdamConfig {
            weight_decay: 0.0,
            ..config
        },
    );
    let mut deferred_adam = Adam::per_tensor(vec![deferred.shallow_clone()], config);
    deferred_adam.defer_idle_rows(0).unwrap();
    for step in 0..steps {
        // A batch uses a few of 120 rows spread over the table, a quarter of
        // its slots padding: rows idle for a while, then come back.
        let spread = rows / 40;
        let ids = Tensor::randint(40, [3, 5], (tch::Kind::Int64, tch::Device::Cpu)) * spread
            + (step as i64 % 3);
        let ids = ids.where_scalarother(
            &Tensor::rand([3, 5], (tch::Kind::Float, tch::Device::Cpu)).ge(0.25),
            0,
        );
        let upstream = Tensor::randn([3, 5, width], (tch::Kind::Float, tch::Device::Cpu));
        if step == steps / 2 {
            eager_adam.set_lr(config.lr / 3.0);
            deferred_adam.set_lr(config.lr / 3.0);
            lazy_adam.set_lr(config.lr / 3.0);
        }
        let loss =
            (Tensor::embedding(&lazy, &ids, 0, false, true) * &upstream).sum(tch::Kind::Float);
        lazy_adam.backward_step(&loss, None).unwrap();
        let loss =
            (Tensor::embedding(&eager, &ids, 0, false, false) * &upstream).sum(tch::Kind::Float);
        eager_adam.backward_step(&loss, None).unwrap();
        if catch_up_first {
            deferred_adam.catch_up_rows(0, &ids);
        }
        let loss =
            (Tensor::embedding(&deferred, &ids, 0, false, true) * &upstream).sum(tch::Kind::Float);
        deferred_adam.backward_step(&loss, None).unwrap();
    }
    deferred_adam.catch_up();
    [initial, eager.detach(), deferred.detach(), lazy.detach()]
}

/// Deferring idle rows changes when their updates run, not what they are:
/// with a learning-rate change half-way and with weight decay, the table ends
/// equal to the eager dense update's, bit for bit, and unlike the lazy
/// SparseAdam update's (which leaves idle rows where they are).
#[test]
fn deferred_idle_rows_equal_the_eager_dense_update() {
    let _torch = torch_global_lock();
    for (config, catch_up_first) in [
        (
            AdamConfig {
                lr: 1e-2,
                ..AdamConfig::default()
            },
            true,
        ),
        (
            AdamConfig {
                lr: 3e-3,
                beta1: 0.8,
                beta2: 0.99,
                eps: 1e-6,
                weight_decay: 0.01,
            },
            true,
        ),
        (
            AdamConfig {
                lr: 1e-2,
                ..AdamConfig::default()
            },
            false,
        ),
    ] {
        // 2000 × 16 rows: the final catch-up is large enough to be split across threads.
        let [initial, eager, deferred, lazy] =
            eager_deferred_and_lazy(2000, 16, 40, config, catch_up_first);
        assert!(
            eager.equal(&deferred),
            "max abs diff {}",
            (&eager - &deferred).abs().max().double_value(&[])
        );
        let moved = eager
            .ne_tensor(&initial)
            .any_dim(1, false)
            .sum(tch::Kind::Int64)
            .int64_value(&[]);
        assert!(moved > 100, "only {moved} rows moved");
        let differ = eager
            .ne_tensor(&lazy)
            .any_dim(1, false)
            .sum(tch::Kind::Int64)
            .int64_value(&[]);
        assert!(
            differ * 10 > moved * 9,
            "only {differ} of {moved} rows differ from the lazy update"
        );
    }
}

/// A forward pass that reads rows not caught up sees stale values: the
/// contract the trainer keeps (catch up a batch's ids before its forward).
#[test]
fn deferred_rows_are_stale_until_caught_up() {
    let _torch = torch_global_lock();
    tch::manual_seed(3);
    let table = Tensor::randn([6, 4], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let mut adam = Adam::per_tensor(
        vec![table.shallow_clone()],
        AdamConfig {
            lr: 0.1,
            ..AdamConfig::default()
        },
    );
    adam.defer_idle_rows(0).unwrap();
    for ids in [[1i64, 2], [1, 3]] {
        let ids = Tensor::from_slice(&ids);
        adam.catch_up_rows(0, &ids);
        adam.backward_step(
            &Tensor::embedding(&table, &ids, 0, false, true).sum(tch::Kind::Float),
            None,
        )
        .unwrap();
    }
    let row2 = table.get(2).detach().copy();
    adam.catch_up_rows(0, &Tensor::from_slice(&[2i64]));
    assert!(
        !table.get(2).equal(&row2),
        "row 2 owed step 2's update (momentum) until caught up"
    );
    let row4 = table.get(4).detach().copy();
    adam.catch_up();
    assert!(
        table.get(4).equal(&row4),
        "a row never used has zero moments: Adam leaves it"
    );
}

/// A deferred table may also get a dense gradient (an embedding built
/// without sparse gradients): every row catches up and takes the update, and
/// the table still ends equal to the eager one's.
#[test]
fn deferred_rows_take_dense_gradients_too() {
    let _torch = torch_global_lock();
    tch::manual_seed(8);
    let initial = Tensor::randn([50, 4], (tch::Kind::Float, tch::Device::Cpu));
    let (eager, deferred) = (
        initial.copy().set_requires_grad(true),
        initial.copy().set_requires_grad(true),
    );
    let config = AdamConfig {
        lr: 1e-2,
        weight_decay: 0.01,
        ..AdamConfig::default()
    };
    let mut eager_adam = Adam::per_tensor(vec![eager.shallow_clone()], config);
    let mut deferred_adam = Adam::per_tensor(vec![deferred.shallow_clone()], config);
    deferred_adam.defer_idle_rows(0).unwrap();
    for step in 0..12 {
        let ids = Tensor::randint(50, [6], (tch::Kind::Int64, tch::Device::Cpu));
        let upstream = Tensor::randn([6, 4], (tch::Kind::Float, tch::Device::Cpu));
        eager_adam
            .backward_step(
                &(Tensor::embedding(&eager, &ids, 0, false, false) * &upstream)
                    .sum(tch::Kind::Float),
                None,
            )
            .unwrap();
        deferred_adam.catch_up_rows(0, &ids);
        let sparse = step % 3 != 2;
        deferred_adam
            .backward_step(
                &(Tensor::embedding(&deferred, &ids, 0, false, sparse) * &upstream)
                    .sum(tch::Kind::Float),
                None,
            )
            .unwrap();
    }
    deferred_adam.catch_up();
    assert!(
        eager.equal(&deferred),
        "max abs diff {}",
        (&eager - &deferred).abs().max().double_value(&[])
    );
}
