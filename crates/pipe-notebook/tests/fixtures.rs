//! Every fixture written by `scripts/fixtures/make_fixtures.py` (real numpy, joblib,
//! scikit-learn) loads to exactly what Python saw; every bad input gets an
//! error naming the file and the problem.

use std::path::{Path, PathBuf};

use pipe_data::LabelSet;
use pipe_notebook::{
    read_label_encoder, read_npy, read_records, read_vocabulary, NotebookFileNames, NotebookFiles,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

#[test]
fn every_fixture_loads_to_what_python_saw() {
    let expected = expected();
    let files = expected["files"].as_object().unwrap();
    assert!(files.len() >= 40, "fixture list looks incomplete");
    for (name, facts) in files {
        let path = fixtures().join(name);
        match facts["kind"].as_str().unwrap() {
            "npy" => {
                let a = read_npy(&path).unwrap_or_else(|e| panic!("{e}"));
                let shape: Vec<usize> = serde_json::from_value(facts["shape"].clone()).unwrap();
                let values: Vec<i64> = serde_json::from_value(facts["values"].clone()).unwrap();
                assert_eq!(a.shape(), &shape[..], "{name}");
                assert_eq!(a.0.iter().copied().collect::<Vec<_>>(), values, "{name}");
            }
            "vocab" => {
                let v = read_vocabulary(&path).unwrap_or_else(|e| panic!("{e}"));
                let tokens: Vec<String> = serde_json::from_value(facts["tokens"].clone()).unwrap();
                assert_eq!(v.tokens, tokens, "{name}");
                assert_eq!(v.pad_id, 0, "{name}");
                assert_eq!(v.unk_id, Some(1), "{name}");
            }
            "label_encoder" => {
                let l = read_label_encoder(&path).unwrap_or_else(|e| panic!("{e}"));
                let classes = facts["classes"].as_array().unwrap();
                match &l {
                    LabelSet::Strings(s) => {
                        let want: Vec<String> = classes
                            .iter()
                            .map(|c| c.as_str().unwrap().to_string())
                            .collect();
                        assert_eq!(s, &want, "{name}");
                    }
                    LabelSet::Integers(i) => {
                        let want: Vec<i64> = classes.iter().map(|c| c.as_i64().unwrap()).collect();
                        assert_eq!(i, &want, "{name}");
                    }
                }
            }
            "records" => {
                let t = read_records(&path, "Id").unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    t.column("Id").unwrap().values,
                    facts["ids"].as_array().unwrap().clone(),
                    "{name}"
                );
            }
            other => panic!("unknown fixture kind {other}"),
        }
    }
}

fn error_of<T: std::fmt::Debug>(r: Result<T, pipe_notebook::LoadError>) -> String {
    let e = r.expect_err("expected an error");
    e.to_string()
}

fn bad(name: &str) -> PathBuf {
    fixtures().join("bad").join(name)
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for p in parts {
        assert!(message.contains(p), "`{message}` should mention `{p}`");
    }
}

#[test]
fn wrong_kinds_of_file_are_named() {
    let npy_as_pickle = error_of(read_vocabulary(&fixtures().join("y.npy")));
    assert_mentions(
        &npy_as_pickle,
        &["y.npy", "at byte 0", ".npy file, not a pickle"],
    );
    let pickle_as_npy = error_of(read_npy(&fixtures().join("vocab_p4.pkl")));
    assert_mentions(&pickle_as_npy, &["vocab_p4.pkl", "a pickle, not a .npy"]);
    assert_mentions(
        &error_of(read_npy(&bad("arrays.npz"))),
        &["arrays.npz", "zip archive"],
    );
    assert_mentions(
        &error_of(read_vocabulary(&bad("arrays.npz"))),
        &["zip archive"],
    );
    for (file, name) in [
        ("vocab_bz2.pkl", "bz2"),
        ("vocab_xz.pkl", "xz"),
        ("vocab_lzma.pkl", "lzma"),
    ] {
        assert_mentions(
            &error_of(read_vocabulary(&bad(file))),
            &[file, &format!("compressed with {name}")],
        );
    }
}

#[test]
fn empty_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pkl");
    std::fs::write(&empty, b"").unwrap();
    assert_mentions(&error_of(read_vocabulary(&empty)), &["empty.pkl", "empty"]);
    assert_mentions(&error_of(read_npy(&empty)), &["empty"]);
    let old = dir.path().join("old.pkl");
    std::fs::write(&old, b"ZF0x00000000000003e8").unwrap();
    assert_mentions(&error_of(read_vocabulary(&old)), &["joblib < 0.10"]);
}

/// Cutting a file at every length must give an error, never a panic or a wrong value.
#[test]
#[ignore = "slow: every prefix of seven files (CONTRIBUTING.md)"]
fn truncation_anywhere_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "le_unicode_p4_z0.pkl",
        "le_object_p5_z0.pkl",
        "le_object_p2_z0.pkl",
        "vocab_p4.pkl",
        "le_int_p4_z3.pkl",
    ] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        for cut in 0..bytes.len() {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let result = if name.starts_with("le_") {
                read_label_encoder(&path).map(|_| ())
            } else {
                read_vocabulary(&path).map(|_| ())
            };
            let message = result
                .expect_err(&format!("{name} cut at {cut} loaded"))
                .to_string();
            assert!(message.contains(name), "{message}");
        }
    }
    for name in ["x_int32_F.npy", "y.npy"] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        for cut in 0..bytes.len() {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read_npy(&path).is_err(), "{name} cut at {cut} loaded");
        }
    }
}

#[test]
fn truncation_errors_say_where() {
    let dir = tempfile::tempdir().unwrap();
    // In the raw array data of a joblib LabelEncoder.
    let bytes = std::fs::read(fixtures().join("le_unicode_p4_z0.pkl")).unwrap();
    let path = dir.path().join("le.pkl");
    std::fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
    assert_mentions(
        &error_of(read_label_encoder(&path)),
        &["le.pkl", "at byte", "raw data", "truncated"],
    );
    // In the .npy data.
    let bytes = std::fs::read(fixtures().join("x_int64_C.npy")).unwrap();
    let path = dir.path().join("x.npy");
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert_mentions(
        &error_of(read_npy(&path)),
        &["x.npy", "truncated", "needs 280 data bytes"],
    );
    // Trailing garbage.
    let mut bytes = std::fs::read(fixtures().join("vocab_p4.pkl")).unwrap();
    bytes.extend_from_slice(b"junk");
    let path = dir.path().join("v.pkl");
    std::fs::write(&path, &bytes).unwrap();
    assert_mentions(&error_of(read_vocabulary(&path)), &["4 trailing bytes"]);
    let mut bytes = std::fs::read(fixtures().join("y.npy")).unwrap();
    bytes.push(0);
    let path = dir.path().join("y.npy");
    std::fs::write(&path, &bytes).unwrap();
    assert_mentions(&error_of(read_npy(&path)), &["1 trailing bytes"]);
}

#[test]
fn size_bombs_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // A unicode string claiming 2^62 bytes.
    let path = dir.path().join("bomb.pkl");
    std::fs::write(&path, b"\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x40.").unwrap();
    assert_mentions(
        &error_of(read_vocabulary(&path)),
        &["bomb.pkl", "at byte 11", "claims 4611686018427387904 bytes"],
    );
    // A .npy header claiming a huge shape.
    let mut header =
        b"{'descr': '<i8', 'fortran_order': False, 'shape': (100000000000, 100000), }".to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(&header);
    let path = dir.path().join("bomb.npy");
    std::fs::write(&path, &npy).unwrap();
    assert_mentions(&error_of(read_npy(&path)), &["bomb.npy", "truncated"]);
}

#[test]
fn code_in_a_pickle_is_refused_by_name() {
    let message = error_of(read_vocabulary(&bad("evil.pkl")));
    assert_mentions(&message, &["evil.pkl", "refusing to load global", "system"]);
}

#[test]
fn unknown_opcode_is_reported_with_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("op.pkl");
    std::fs::write(&path, b"\x80\x04\xfe.").unwrap();
    assert_mentions(
        &error_of(read_vocabulary(&path)),
        &["at byte 2", "opcode 0xfe"],
    );
}

#[test]
fn bad_vocabularies() {
    assert_mentions(
        &error_of(read_vocabulary(&bad("vocab_no_pad.pkl"))),
        &["vocab_no_pad.pkl", "no \"<PAD>\""],
    );
    assert_mentions(
        &error_of(read_vocabulary(&bad("vocab_duplicate_ids.pkl"))),
        &["id 1 is given to both"],
    );
    assert_mentions(
        &error_of(read_vocabulary(&bad("vocab_int_key.pkl"))),
        &["not a string"],
    );
    assert_mentions(
        &error_of(read_vocabulary(&bad("vocab_float_id.pkl"))),
        &["float 1"],
    );
    assert_mentions(
        &error_of(read_vocabulary(&bad("vocab_id_gap.pkl"))),
        &["id 7, outside 0..2"],
    );
    assert_mentions(
        &error_of(read_vocabulary(&bad("vocab_empty.pkl"))),
        &["empty"],
    );
    assert_mentions(
        &error_of(read_vocabulary(&bad("not_a_dict.pkl"))),
        &["expected a dict", "list"],
    );
}

#[test]
fn bad_label_encoders() {
    assert_mentions(
        &error_of(read_label_encoder(&bad("le_unfitted.pkl"))),
        &["le_unfitted.pkl", "fitted"],
    );
    assert_mentions(
        &error_of(read_label_encoder(&fixtures().join("vocab_p4.pkl"))),
        &["expected a LabelEncoder"],
    );
}

#[test]
fn bad_arrays() {
    assert_mentions(
        &error_of(read_npy(&bad("x_float.npy"))),
        &["x_float.npy", "float32", "integer array"],
    );
}

#[test]
fn bad_records() {
    assert_mentions(
        &error_of(read_records(&bad("records_not_array.json"), "Id")),
        &["not a JSON array"],
    );
    assert_mentions(
        &error_of(read_records(&bad("records_no_id.json"), "Id")),
        &["record 0 has no `Id`"],
    );
    assert_mentions(
        &error_of(read_records(&bad("records_broken.json"), "Id")),
        &["invalid JSON", "line 1"],
    );
}

/// A directory of good fixtures, with one file swapped for a bad one.
fn artifacts_with(replace: &str, by: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures();
    let files = [
        ("X_train_seq.npy", f.join("x_int64_C.npy")),
        ("y_train.npy", f.join("y.npy")),
        ("X_test_seq.npy", f.join("x_int32_F.npy")),
        ("vocab_stoi.pkl", f.join("vocab_p4.pkl")),
        ("label_encoder.pkl", f.join("le_unicode_p4_z0.pkl")),
        ("test_mini.json", f.join("test_mini.json")),
    ];
    for (name, src) in files {
        let src = if name == replace {
            by.to_path_buf()
        } else {
            src
        };
        std::fs::copy(&src, dir.path().join(name)).unwrap();
    }
    match NotebookFiles::load(dir.path(), &NotebookFileNames::default(), "Id") {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_fixtures_load_together() {
    assert_eq!(artifacts_with("", Path::new("")), "ok");
}

#[test]
fn cross_file_checks() {
    let cases = [
        (
            "X_train_seq.npy",
            "x_3d.npy",
            vec!["X_train_seq.npy", "expected a 2-D matrix"],
        ),
        (
            "X_train_seq.npy",
            "x_empty.npy",
            vec!["X_train_seq.npy", "empty"],
        ),
        ("y_train.npy", "y_2d.npy", vec!["y_train.npy", "1-D"]),
        ("y_train.npy", "y_4.npy", vec!["4 labels for 5 rows"]),
        (
            "y_train.npy",
            "y_out_of_range.npy",
            vec!["label 9 at index 4 is outside classes_"],
        ),
        (
            "X_test_seq.npy",
            "x_width6.npy",
            vec!["width 6 differs", "max_len"],
        ),
        (
            "X_train_seq.npy",
            "x_oov.npy",
            vec!["token id 999 at row 0, column 0 is outside the vocabulary"],
        ),
        (
            "test_mini.json",
            "records_3.json",
            vec!["test_mini.json", "3 records for 5 rows"],
        ),
    ];
    for (replace, by, parts) in cases {
        let message = artifacts_with(replace, &bad(by));
        assert_mentions(&message, &parts);
    }
}

/// Inputs the fuzzers found (fuzz/, docs/safety.md), kept as
/// regression tests: each must give an error, not a panic, a hang or a leak.
#[test]
fn fuzzer_findings_stay_fixed() {
    let dir = fixtures().join("fuzz");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        count += 1;
        if path.extension().is_some_and(|e| e == "npy") {
            assert!(read_npy(&path).is_err(), "{}", path.display());
        } else {
            let message = error_of(read_vocabulary(&path));
            assert!(
                message.contains(&path.file_name().unwrap().to_string_lossy().to_string()),
                "{message}"
            );
        }
    }
    assert!(count >= 1);
    // The leak the pickle fuzzer found: a dict that ends up holding itself.
    let message = error_of(read_vocabulary(&dir.join("pickle-leak-recursive.pkl")));
    assert!(message.contains("holds itself"), "{message}");
    // The npy fuzzer's: a 42-byte file whose header claims 3.6 GB.
    let message = error_of(read_npy(&dir.join("npy-oom-header-length.npy")));
    assert!(
        message.contains("the header claims 3648716918 bytes but the file has 42"),
        "{message}"
    );
    // Its run with a 2 s hang limit: 128 bytes of unclosed `{{(` that the
    // header grammar took 3 s to give up on.
    let start = std::time::Instant::now();
    let message = error_of(read_npy(&dir.join("npy-slow-nested-header.npy")));
    assert!(
        message.contains("nests brackets deeper than 4 levels"),
        "{message}"
    );
    assert!(
        start.elapsed().as_secs_f64() < 0.5,
        "took {:?}",
        start.elapsed()
    );
}
