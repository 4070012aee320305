//! The notebook's PyTorch model and pipe's agree: a state_dict saved by
//! PyTorch loads into pipe's model, and the logits match within 1e-5.
//! Fixtures from scripts/fixtures/make_parity_fixtures.py.

use std::path::Path;

use pipe_core::{Artifact, LoadArtifact};
use pipe_model::Checkpoint;
use pipe_runtime::runtime::torch_global_lock;
use pipe_tensor::PaddingSide;
use tch::{Device, Kind, Tensor};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notebook_lstm")
}

#[test]
fn logits_match_pytorch_for_the_same_weights() {
    // Building a model draws its initial weights from torch's generator.
    let _torch = torch_global_lock();
    let checkpoint = Checkpoint::read(&fixture()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap();
    let ids: Vec<Vec<i64>> = serde_json::from_value(expected["ids"].clone()).unwrap();
    let lengths: Vec<i64> = serde_json::from_value(expected["lengths"].clone()).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(expected["logits"].clone()).unwrap();
    let flat: Vec<i64> = ids.iter().flatten().copied().collect();
    let ids = Tensor::from_slice(&flat).view([lengths.len() as i64, -1]);
    let (_vs, model) = checkpoint.build(Device::Cpu).unwrap();
    let got = tch::no_grad(|| {
        model.forward_t(
            &ids,
            &Tensor::from_slice(&lengths),
            PaddingSide::Post,
            false,
        )
    });
    let want = Tensor::from_slice(&want.iter().flatten().copied().collect::<Vec<f32>>())
        .view([lengths.len() as i64, -1]);
    let diff = (&got - &want).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max |pipe - pytorch| = {diff}");
    assert_eq!(got.kind(), Kind::Float);
}

#[test]
fn checkpoints_round_trip_with_pytorch_names() {
    let _torch = torch_global_lock();
    let checkpoint = Checkpoint::read(&fixture()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    checkpoint.save(dir.path()).unwrap();
    let back = Checkpoint::load(dir.path()).unwrap();
    assert_eq!(back.spec, checkpoint.spec);
    let names: Vec<&str> = back.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "embedding.weight",
            "fc.bias",
            "fc.weight",
            "lstm.bias_hh_l0",
            "lstm.bias_ih_l0",
            "lstm.weight_hh_l0",
            "lstm.weight_ih_l0"
        ]
    );
    for ((_, a), (_, b)) in back.tensors.iter().zip(&checkpoint.tensors) {
        assert!(a.equal(b));
    }
    // A model built from it holds exactly those weights.
    let (vs, _) = back.build(Device::Cpu).unwrap();
    let again = Checkpoint::from_var_store(&back.spec, &vs);
    for ((_, a), (_, b)) in again.tensors.iter().zip(&checkpoint.tensors) {
        assert!(a.equal(b));
    }
}

#[test]
fn a_mismatched_checkpoint_is_refused_with_names() {
    let _torch = torch_global_lock();
    let mut checkpoint = Checkpoint::read(&fixture()).unwrap();
    checkpoint.spec.hidden_dim = 32;
    let err = checkpoint.build(Device::Cpu).err().unwrap().to_string();
    assert!(
        err.contains("has shape [7, 64] in the checkpoint, [7, 32] in the model"),
        "{err}"
    );
}
