//! The training loop: class weights, the loss, learning a separable toy set,
//! determinism, early stopping, and that the ways of running a step (deferred
//! embedding rows, CUDA graphs) train like the plain one.

use ndarray::{ArrayD, IxDyn};
use pipe_data::IntArray;
use pipe_model::{initialise, ModelSpec, Pooling};
use pipe_runtime::runtime::torch_global_lock;
use pipe_tensor::{PaddingSide, TokenTensors};
use pipe_train::optim::{Adam, AdamConfig};
use pipe_train::{class_weights, train, ClassWeighting, Train};
use tch::{Device, Kind, Reduction, Tensor};

#[test]
fn class_weights_are_the_notebooks() {
    // total 6, bincount [3, 1, 2, 0] → zeros count as 1 → 6 / [3, 1, 2, 1]
    assert_eq!(
        class_weights(&[0, 0, 0, 1, 2, 2], 4, ClassWeighting::InverseFrequency),
        vec![2.0, 6.0, 3.0, 6.0]
    );
    assert_eq!(
        class_weights(&[0, 1], 2, ClassWeighting::None),
        vec![1.0, 1.0]
    );
}

#[test]
fn weighted_loss_on_a_hand_checked_batch() {
    // logits [[2, 0], [0, 1]], targets [0, 1], weights [1, 3]:
    // l0 = ln(1 + e^-2) = 0.126928, l1 = ln(1 + e^-1) = 0.313262
    // weighted mean = (1 × l0 + 3 × l1) / (1 + 3) = 0.266678
    let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
    let targets = Tensor::from_slice(&[0i64, 1]);
    let weights = Tensor::from_slice(&[1.0f32, 3.0]);
    let loss = logits
        .cross_entropy_loss(&targets, Some(&weights), Reduction::Mean, -100, 0.0)
        .double_value(&[]);
    let l0 = (1.0f64 + (-2.0f64).exp()).ln();
    let l1 = (1.0f64 + (-1.0f64).exp()).ln();
    assert!((loss - (l0 + 3.0 * l1) / 4.0).abs() < 1e-6, "{loss}");
    assert!((loss - 0.266678).abs() < 1e-6);
}

/// Three classes, each drawing its tokens from its own id range, post-padded to 10.
fn toy_set(rows: usize, seed: u64) -> TokenTensors {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let class = r % 3;
        let len = 2 + next() % 7;
        for t in 0..10 {
            x.push(if t < len {
                (1 + class * 6 + next() % 6) as i64
            } else {
                0
            });
        }
        y.push(class as i64);
    }
    let x = IntArray(ArrayD::from_shape_vec(IxDyn(&[rows, 10]), x).unwrap());
    let y = IntArray(ArrayD::from_shape_vec(IxDyn(&[rows]), y).unwrap());
    TokenTensors::from_arrays(&x, Some(&y), 0, None, Device::Cpu).unwrap()
}

fn small_spec() -> ModelSpec {
    ModelSpec {
        embed_dim: 8,
        hidden_dim: 8,
        pooling: Pooling::LastValid,
        dropout: 0.1,
        ..ModelSpec::notebook(19, 0, 3)
    }
}

fn quiet_train(config: &Train, data: &TokenTensors, seed: u64) -> pipe_train::Trained {
    quiet_train_on(Device::Cpu, config, data, seed)
}

/// Trains holding the lock on torch's generator and thread count, global to
/// the process, so another test's draws cannot interleave with these.
fn quiet_train_on(
    device: Device,
    config: &Train,
    data: &TokenTensors,
    seed: u64,
) -> pipe_train::Trained {
    let _guard = torch_global_lock();
    tch::set_num_threads(1);
    let initial = initialise(&small_spec(), seed).unwrap();
    train(
        &initial,
        data,
        config,
        device,
        seed,
        &mut |_, _, _| std::ops::ControlFlow::Continue(()),
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn learns_a_separable_toy_set() {
    let data = toy_set(240, 1);
    let config = Train {
        epochs: 8,
        batch_size: 16,
        lr: 1e-2,
        trim_padding: true,
        bucketing: true,
        ..Train::default()
    };
    let trained = quiet_train(&config, &data, 7);
    let last = trained.history.last().unwrap();
    assert!(last.accuracy > 0.95, "train accuracy {}", last.accuracy);
    assert!(last.loss < trained.history[0].loss);
    // And generalises to fresh rows.
    let test = toy_set(90, 99);
    let (_vs, model) = trained.checkpoint.build(Device::Cpu).unwrap();
    let logits =
        tch::no_grad(|| model.forward_t(&test.ids, &test.lengths, PaddingSide::Post, false));
    let acc = logits
        .argmax(1, false)
        .eq_tensor(test.labels.as_ref().unwrap())
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    assert!(acc > 0.9, "test accuracy {acc}");
}

#[test]
fn word_logits_learn_each_classs_words_and_survive_a_checkpoint() {
    let data = toy_set(240, 3);
    let spec = ModelSpec {
        word_logits: true,
        sparse_embedding: true,
        ..small_spec()
    };
    let config = Train {
        epochs: 6,
        batch_size: 16,
        lr: 1e-2,
        ..Train::default()
    };
    let trained = {
        let _guard = torch_global_lock();
        tch::set_num_threads(1);
        let initial = initialise(&spec, 11).unwrap();
        train(
            &initial,
            &data,
            &config,
            Device::Cpu,
            11,
            &mut |_, _, _| std::ops::ControlFlow::Continue(()),
            &mut |_| {},
        )
        .unwrap()
    };
    let (_vs, model) = trained.checkpoint.build(Device::Cpu).unwrap();
    let table = &trained
        .checkpoint
        .tensors
        .iter()
        .find(|(name, _)| name == "word_logits.weight")
        .expect("the table is saved")
        .1;
    // Class c draws its tokens from ids 1 + 6c ..= 6 + 6c: each of those rows
    // now favours its class, and the padding row is still zero.
    for token in 1..19 {
        assert_eq!(
            table.get(token).argmax(0, false).int64_value(&[]),
            (token - 1) / 6,
            "token {token}: {}",
            table.get(token)
        );
    }
    assert_eq!(table.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0);
    let test = toy_set(90, 98);
    let logits =
        tch::no_grad(|| model.forward_t(&test.ids, &test.lengths, PaddingSide::Post, false));
    let acc = logits
        .argmax(1, false)
        .eq_tensor(test.labels.as_ref().unwrap())
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    assert!(acc > 0.9, "test accuracy {acc}");
}

#[test]
fn small_data_trains_at_a_raised_rate_and_says_so() {
    // 60 rows in batches of 16: 4 steps an epoch, a sixteenth of the reference.
    let data = toy_set(60, 4);
    let config = Train {
        epochs: 2,
        batch_size: 16,
        lr: 1e-3,
        lr_reference_steps: Some(64),
        ..Train::default()
    };
    let trained = quiet_train(&config, &data, 3);
    assert_eq!(trained.steps_per_epoch, 4);
    assert!(
        (trained.lr - 3e-3).abs() < 1e-12,
        "sqrt(64 / 4) = 4, capped at 3x: {}",
        trained.lr
    );
    assert!(
        trained
            .history
            .iter()
            .all(|m| (m.lr - trained.lr).abs() < 1e-12),
        "every epoch at that rate"
    );
    let enough_data = Train {
        lr_reference_steps: Some(4),
        ..config.clone()
    };
    assert_eq!(
        quiet_train(&enough_data, &data, 3).lr,
        1e-3,
        "at the reference the rate is lr"
    );
    let refused = Train {
        lr_reference_steps: Some(0),
        ..config
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "lr_reference_steps must be between 1 and {}, got 0",
            pipe_train::MAX_REFERENCE_STEPS
        )
    );
}

#[test]
fn same_seed_same_weights_on_cpu() {
    let data = toy_set(60, 2);
    let config = Train {
        epochs: 2,
        batch_size: 8,
        ..Train::default()
    };
    let a = quiet_train(&config, &data, 5);
    let b = quiet_train(&config, &data, 5);
    for ((na, ta), (nb, tb)) in a.checkpoint.tensors.iter().zip(&b.checkpoint.tensors) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs between two runs with one seed");
    }
    let c = quiet_train(&config, &data, 6);
    assert!(
        !a.checkpoint.tensors[0].1.equal(&c.checkpoint.tensors[0].1),
        "another seed, other weights"
    );
}

#[test]
fn validation_early_stopping_and_best_checkpoint() {
    let data = toy_set(300, 3);
    let config = Train {
        epochs: 30,
        batch_size: 16,
        lr: 2e-2,
        validation_fraction: 0.2,
        patience: Some(2),
        ..Train::default()
    };
    let trained = quiet_train(&config, &data, 9);
    assert_eq!(trained.validation_rows, 60, "stratified 20% of 300");
    assert!(
        trained.history.len() < 30,
        "stopped early after {} epochs",
        trained.history.len()
    );
    let best = &trained.history[trained.best_epoch - 1];
    let top = trained
        .history
        .iter()
        .map(|m| m.val_macro_f1.unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(
        best.val_macro_f1.unwrap(),
        top,
        "the best epoch's weights are returned"
    );
    assert!(top > 0.9);
}

#[test]
fn a_progress_callback_stops_training_with_its_reason() {
    let _guard = torch_global_lock();
    let data = toy_set(240, 2);
    let initial = initialise(&small_spec(), 1).unwrap();
    let config = Train {
        epochs: 5,
        batch_size: 8,
        ..Train::default()
    };
    let mut calls = Vec::new();
    let mut stop_at_second_report = |done: u64, total: u64, _: &str| {
        calls.push((done, total));
        if calls.len() == 2 {
            std::ops::ControlFlow::Break("over budget".to_string())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    };
    let err = train(
        &initial,
        &data,
        &config,
        Device::Cpu,
        1,
        &mut stop_at_second_report,
        &mut |_| {},
    )
    .err()
    .unwrap();
    assert_eq!(err.to_string(), "over budget");
    assert_eq!(calls.len(), 2, "no batch runs after the stop: {calls:?}");
    assert!(calls[1].0 < calls[1].1, "stopped before the end: {calls:?}");
}

#[test]
fn bad_settings_are_refused() {
    let _guard = torch_global_lock();
    let data = toy_set(30, 4);
    let initial = initialise(&small_spec(), 1).unwrap();
    let bad = Train {
        patience: Some(2),
        ..Train::default()
    };
    let err = train(
        &initial,
        &data,
        &bad,
        Device::Cpu,
        1,
        &mut |_, _, _| std::ops::ControlFlow::Continue(()),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("patience needs a validation split"), "{err}");
    let unlabelled = TokenTensors {
        labels: None,
        ..toy_set(30, 4)
    };
    let err = train(
        &initial,
        &unlabelled,
        &Train::default(),
        Device::Cpu,
        1,
        &mut |_, _, _| std::ops::ControlFlow::Continue(()),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no labels"), "{err}");
}

/// Deferring the idle embedding rows' updates is an implementation detail:
/// training with it and without it (the eager pass over the whole table)
/// ends at the same weights, within float32 rounding (the embedding
/// gradient's repeats are summed in another order), validation included.
#[test]
fn deferred_embedding_rows_train_like_the_eager_update() {
    let data = toy_set(120, 5);
    let deferred = Train {
        epochs: 3,
        batch_size: 8,
        lr: 1e-2,
        validation_fraction: 0.2,
        weight_decay: 1e-3,
        ..Train::default()
    };
    let eager = Train {
        defer_idle_embedding_rows: false,
        ..deferred.clone()
    };
    let (a, b) = (
        quiet_train(&deferred, &data, 3),
        quiet_train(&eager, &data, 3),
    );
    assert_eq!(a.best_epoch, b.best_epoch);
    for ((name, ta), (_, tb)) in a.checkpoint.tensors.iter().zip(&b.checkpoint.tensors) {
        let diff = (ta - tb).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{name} differs by {diff}");
    }
    for (ma, mb) in a.history.iter().zip(&b.history) {
        assert!((ma.loss - mb.loss).abs() < 1e-5 && ma.val_loss.is_some());
        assert!((ma.val_loss.unwrap() - mb.val_loss.unwrap()).abs() < 1e-5);
    }
}

/// On a GPU, replaying the recorded step is an implementation detail too:
/// the same weights and losses as eager steps (within float32 rounding: the
/// recorded update reads its step's scalars from tensors), partial last
/// batches (eager between replays) and validation included. Without a GPU
/// the recording is off and training runs eagerly.
#[test]
fn cuda_graph_steps_train_like_eager_steps() {
    let data = toy_set(124, 6);
    let recorded = Train {
        epochs: 3,
        batch_size: 8,
        lr: 1e-2,
        validation_fraction: 0.2,
        weight_decay: 1e-3,
        ..Train::default()
    };
    if !tch::Cuda::is_available() {
        assert!(
            !quiet_train(&recorded, &data, 4).cuda_graph,
            "no recording on the CPU"
        );
        return;
    }
    let eager = Train {
        cuda_graphs: false,
        ..recorded.clone()
    };
    let device = Device::Cuda(0);
    let (a, b) = (
        quiet_train_on(device, &recorded, &data, 4),
        quiet_train_on(device, &eager, &data, 4),
    );
    assert!(a.cuda_graph && !b.cuda_graph);
    for ((name, ta), (_, tb)) in a.checkpoint.tensors.iter().zip(&b.checkpoint.tensors) {
        let diff = (ta - tb).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{name} differs by {diff}");
    }
    for (ma, mb) in a.history.iter().zip(&b.history) {
        assert!(
            (ma.loss - mb.loss).abs() < 1e-4,
            "epoch {}: loss {} against {}",
            ma.epoch,
            ma.loss,
            mb.loss
        );
        // At most one row's prediction apart (a near-tie flipped by rounding).
        assert!(
            (ma.accuracy - mb.accuracy).abs() * a.train_rows as f64 <= 1.0 + 1e-9,
            "epoch {}: accuracy {} against {}",
            ma.epoch,
            ma.accuracy,
            mb.accuracy
        );
    }
}

/// The optimizer's flat buffer (its GPU layout), filled in the model's
/// parameter order, starts with the recurrent weights back to back in
/// cuDNN's order (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`): the
/// layout cuDNN reads in place rather than copying every step.
#[test]
fn flat_optimizer_layout_keeps_the_recurrent_weights_in_cudnn_order() {
    let _guard = torch_global_lock();
    let spec = small_spec();
    let initial = initialise(&spec, 1).unwrap();
    let (_vs, model) = initial.build(Device::Cpu).unwrap();
    let params = model.parameters();
    let _adam = Adam::with_layout(
        params.iter().map(Tensor::shallow_clone).collect(),
        AdamConfig::default(),
        true,
    );
    let gates = 4 * spec.hidden_dim;
    let shapes: Vec<Vec<i64>> = params[..4].iter().map(Tensor::size).collect();
    assert_eq!(
        shapes,
        vec![
            vec![gates, spec.embed_dim],
            vec![gates, spec.hidden_dim],
            vec![gates],
            vec![gates]
        ]
    );
    let mut next = params[0].data_ptr() as usize;
    for p in &params[..4] {
        assert_eq!(
            p.data_ptr() as usize,
            next,
            "a gap or another order in the flat buffer"
        );
        next += p.numel() * std::mem::size_of::<f32>();
    }
}

/// A loss that stops being finite ends training with the epoch and batch
/// named, instead of a model of NaNs reported as a success.
#[test]
fn a_non_finite_loss_stops_training_naming_the_epoch_and_batch() {
    let _guard = torch_global_lock();
    tch::set_num_threads(1);
    let data = toy_set(48, 4);
    let mut initial = initialise(&small_spec(), 3).unwrap();
    // Poison the output layer: every logit, so every loss, is NaN.
    for (name, tensor) in &mut initial.tensors {
        if name.starts_with("fc.") {
            *tensor = tensor.full_like(f64::NAN);
        }
    }
    let config = Train {
        epochs: 3,
        batch_size: 16,
        ..Train::default()
    };
    let Err(error) = train(
        &initial,
        &data,
        &config,
        Device::Cpu,
        3,
        &mut |_, _, _| std::ops::ControlFlow::Continue(()),
        &mut |_| {},
    ) else {
        panic!("training on NaN weights succeeded");
    };
    let error = error.to_string();
    assert!(
        error.contains("epoch 1, batch 1 of 3") && error.contains("not finite"),
        "{error}"
    );
}

#[test]
fn out_of_range_settings_are_refused_before_training() {
    let bad = [
        (
            "betas",
            Train {
                betas: (1.0, 0.999),
                ..Train::default()
            },
        ),
        (
            "betas",
            Train {
                betas: (0.9, -0.1),
                ..Train::default()
            },
        ),
        (
            "lr",
            Train {
                lr: 1e30,
                ..Train::default()
            },
        ),
        (
            "lr",
            Train {
                lr: f64::NAN,
                ..Train::default()
            },
        ),
        (
            "lr",
            Train {
                lr: f64::INFINITY,
                ..Train::default()
            },
        ),
        (
            "eps",
            Train {
                eps: 0.0,
                ..Train::default()
            },
        ),
        (
            "grad_clip",
            Train {
                grad_clip: Some(f64::NAN),
                ..Train::default()
            },
        ),
        (
            "weight_decay",
            Train {
                weight_decay: -1.0,
                ..Train::default()
            },
        ),
        (
            "eval_batch_size",
            Train {
                eval_batch_size: 0,
                ..Train::default()
            },
        ),
        (
            "patience",
            Train {
                patience: Some(2),
                validation_fraction: 0.0,
                ..Train::default()
            },
        ),
    ];
    for (setting, config) in bad {
        let error = config
            .validate()
            .expect_err(&format!("{config:?} passed validation"));
        assert_eq!(error.setting, setting, "{error}");
    }
    assert!(Train::default().validate().is_ok());
}

/// The fused CPU kernel reads gradients as raw slices of the parameter's
/// length: a gradient of another shape must be refused, not read past.
#[test]
fn adam_refuses_gradients_that_do_not_fit_their_parameters() {
    let param = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mut adam = Adam::new(vec![param.shallow_clone()], AdamConfig::default());
    let short = Tensor::ones([2], (Kind::Float, Device::Cpu));
    let error = adam.step(vec![short], None).unwrap_err();
    assert!(
        error.to_string().contains("gradient 0 has shape [2]"),
        "{error}"
    );
    assert!(adam
        .step(vec![], None)
        .unwrap_err()
        .to_string()
        .contains("0 gradients for 1 parameters"));
    assert!(
        param.equal(&Tensor::zeros([4, 3], (Kind::Float, Device::Cpu))),
        "nothing moved"
    );
    adam.step(vec![Tensor::ones([4, 3], (Kind::Float, Device::Cpu))], None)
        .unwrap();
    assert!(!param.equal(&Tensor::zeros([4, 3], (Kind::Float, Device::Cpu))));
}
