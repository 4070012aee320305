//! Parity with scikit-learn on real data: the first rows of `data/wordnet`,
//! against `TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)` +
//! `LinearSVC(class_weight="balanced")`, and `ComplementNB(alpha=0.3)` on the
//! same features, as `scripts/fixtures/make_linear_fixture.py` ran them in the
//! project's venv.

use std::collections::HashMap;
use std::path::PathBuf;

use pipe_linear::{naive_bayes, svm, SvmConfig, TfidfConfig, TfidfVectorizer};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn macro_f1(predicted: &[i64], truth: &[i64], classes: usize) -> f64 {
    let mut scores = Vec::new();
    for c in 0..classes as i64 {
        let tp = predicted
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == c && **t == c)
            .count() as f64;
        let fp = predicted
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p == c && **t != c)
            .count() as f64;
        let fn_ = predicted
            .iter()
            .zip(truth)
            .filter(|(p, t)| **p != c && **t == c)
            .count() as f64;
        if tp + fp + fn_ > 0.0 {
            scores.push(if tp == 0.0 {
                0.0
            } else {
                2.0 * tp / (2.0 * tp + fp + fn_)
            });
        }
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

/// The fixture, and the first rows of `data/wordnet` it was made from.
struct Wordnet {
    fixture: serde_json::Value,
    vocab: pipe_data::Vocabulary,
    classes: usize,
    x: pipe_data::IntArray,
    y: Vec<i64>,
    x_test: pipe_data::IntArray,
}

impl Wordnet {
    fn load() -> Wordnet {
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                repo().join("crates/pipe-linear/tests/fixtures/sklearn_wordnet.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let data = repo().join("data/wordnet");
        let vocab = pipe_notebook::read_vocabulary(&data.join("vocab_stoi.pkl")).unwrap();
        let classes = pipe_notebook::read_label_encoder(&data.join("label_encoder.pkl"))
            .unwrap()
            .len();
        let x = pipe_notebook::read_npy(&data.join("X_train_seq.npy")).unwrap();
        let n = fixture["train_rows"].as_u64().unwrap() as usize;
        let y = pipe_notebook::read_npy(&data.join("y_train.npy"))
            .unwrap()
            .0
            .iter()
            .copied()
            .take(n)
            .collect();
        let x_test = pipe_notebook::read_npy(&data.join("X_test_seq.npy")).unwrap();
        Wordnet {
            fixture,
            vocab,
            classes,
            x,
            y,
            x_test,
        }
    }
    fn rows(&self) -> Vec<&[i64]> {
        pipe_linear::rows_of(&self.x)
            .unwrap()
            .into_iter()
            .take(self.y.len())
            .collect()
    }
    fn test_rows(&self) -> Vec<&[i64]> {
        pipe_linear::rows_of(&self.x_test)
            .unwrap()
            .into_iter()
            .take(self.fixture["test_rows"].as_u64().unwrap() as usize)
            .collect()
    }
    fn ids(&self, value: &serde_json::Value) -> Vec<i64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    }
    /// Our predictions against scikit-learn's (`theirs`, its fixture entry):
    /// the share of rows that agree, and both macro-F1s on the true labels.
    fn compare(&self, predicted: &[i64], theirs: &serde_json::Value) -> (f64, f64, f64) {
        let sklearn = self.ids(&theirs["predictions"]);
        let truth = self.ids(&self.fixture["truth"]);
        let agree = predicted
            .iter()
            .zip(&sklearn)
            .filter(|(a, b)| a == b)
            .count() as f64
            / sklearn.len() as f64;
        (
            agree,
            macro_f1(predicted, &truth, self.classes),
            theirs["macro_f1"].as_f64().unwrap(),
        )
    }
}

#[test]
fn matches_scikit_learn_on_wordnet() {
    let data = Wordnet::load();
    let (fixture, vocab, y) = (&data.fixture, &data.vocab, &data.y);
    let (rows, test) = (data.rows(), data.test_rows());

    let vectorizer =
        TfidfVectorizer::fit(TfidfConfig::default(), &rows, vocab.pad_id, &vocab.tokens).unwrap();
    assert_eq!(
        vectorizer.features() as u64,
        fixture["features"].as_u64().unwrap(),
        "the same n-grams"
    );

    // Row 0's TF-IDF values and their IDFs, by n-gram text.
    let text = |gram: &[i64]| {
        gram.iter()
            .map(|&id| vocab.tokens[id as usize].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let x_train = vectorizer.transform(&rows);
    let (cols, vals) = x_train.row(0);
    let ours: HashMap<String, (f32, f32)> = cols
        .iter()
        .zip(vals)
        .map(|(&c, &v)| {
            (
                text(&vectorizer.word_ngrams[c as usize]),
                (v, vectorizer.idf[c as usize]),
            )
        })
        .collect();
    let theirs = fixture["row0_tfidf"].as_object().unwrap();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "row 0's n-grams: ours {:?}",
        ours.keys()
    );
    for (gram, value) in theirs {
        let (v, idf) = ours.get(gram).unwrap_or_else(|| panic!("`{gram}` missing"));
        assert!(
            (*v as f64 - value.as_f64().unwrap()).abs() < 1e-5,
            "tf-idf of `{gram}`: {v} vs {value}"
        );
        assert!(
            (*idf as f64 - fixture["idf_of"][gram].as_f64().unwrap()).abs() < 1e-4,
            "idf of `{gram}`"
        );
    }

    let config = SvmConfig {
        threads: 2,
        ..SvmConfig::default()
    };
    let (classifier, convergence) =
        svm::fit(&x_train, vectorizer.features(), y, data.classes, config).unwrap();
    assert!(convergence.iter().all(|c| c.converged), "{convergence:?}");
    let model = pipe_linear::LinearModel {
        vectorizer,
        classifier,
    };
    let (agree, ours_f1, theirs_f1) = data.compare(&model.predict_classes(&test), fixture);
    eprintln!("agreement {agree:.4}; macro-F1 ours {ours_f1:.4}, scikit-learn {theirs_f1:.4}");
    assert!(agree >= 0.98, "predictions agree on {agree:.4} of rows");
    assert!(
        (ours_f1 - theirs_f1).abs() <= 0.005,
        "macro-F1 {ours_f1:.4} vs scikit-learn's {theirs_f1:.4}"
    );
}

#[test]
fn complement_naive_bayes_matches_scikit_learn_on_wordnet() {
    let data = Wordnet::load();
    let theirs = &data.fixture["complement_nb"];
    let (rows, test) = (data.rows(), data.test_rows());
    let vectorizer = TfidfVectorizer::fit(
        TfidfConfig::default(),
        &rows,
        data.vocab.pad_id,
        &data.vocab.tokens,
    )
    .unwrap();
    let x_train = vectorizer.transform(&rows);
    let classifier = naive_bayes::fit(
        &x_train,
        vectorizer.features(),
        &data.y,
        data.classes,
        theirs["alpha"].as_f64().unwrap(),
    )
    .unwrap();
    let model = pipe_linear::LinearModel {
        vectorizer,
        classifier,
    };
    // Closed form: the scores themselves agree, not only the argmax.
    let scores = model.decision(&test[..5]);
    for (row, (ours, expected)) in scores
        .iter()
        .zip(theirs["scores"].as_array().unwrap())
        .enumerate()
    {
        for (class, (a, b)) in ours.iter().zip(expected.as_array().unwrap()).enumerate() {
            let b = b.as_f64().unwrap();
            assert!(
                (*a as f64 - b).abs() <= 1e-4 * b.abs().max(1.0),
                "row {row} class {class}: {a} vs scikit-learn's {b}"
            );
        }
    }
    let (agree, ours_f1, theirs_f1) = data.compare(&model.predict_classes(&test), theirs);
    eprintln!("complement NB: agreement {agree:.4}; macro-F1 ours {ours_f1:.4}, scikit-learn {theirs_f1:.4}");
    assert!(agree >= 0.99, "predictions agree on {agree:.4} of rows");
    assert!(
        (ours_f1 - theirs_f1).abs() <= 0.005,
        "macro-F1 {ours_f1:.4} vs scikit-learn's {theirs_f1:.4}"
    );
}

#[test]
fn a_model_round_trips_through_its_files() {
    use pipe_core::{Artifact, LoadArtifact};
    let tokens: Vec<String> = ["<PAD>", "a", "b", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rows: Vec<&[i64]> = vec![&[1, 2, 0], &[3, 0, 0], &[1, 3, 0], &[2, 2, 0]];
    let config = TfidfConfig {
        char_ngrams: Some([1, 2]),
        ..TfidfConfig::default()
    };
    let vectorizer = TfidfVectorizer::fit(config, &rows, 0, &tokens).unwrap();
    let x = vectorizer.transform(&rows);
    let (classifier, _) = svm::fit(
        &x,
        vectorizer.features(),
        &[0, 1, 0, 1],
        2,
        SvmConfig::default(),
    )
    .unwrap();
    let model = pipe_linear::LinearModel {
        vectorizer,
        classifier,
    };
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = pipe_linear::LinearModel::load(dir.path()).unwrap();
    assert_eq!(loaded.decision(&rows), model.decision(&rows));
    // IDF weights that do not fit the columns are refused, not indexed out of bounds.
    let json_path = dir.path().join("linear_model.json");
    let original = std::fs::read_to_string(&json_path).unwrap();
    let mut stored: serde_json::Value = serde_json::from_str(&original).unwrap();
    stored["vectorizer"]["idf"].as_array_mut().unwrap().pop();
    std::fs::write(&json_path, stored.to_string()).unwrap();
    assert!(pipe_linear::LinearModel::load(dir.path()).is_err());
    std::fs::write(&json_path, original).unwrap();
    // A truncated weights file is refused by name.
    let weights = dir.path().join("weights.f32");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 4]).unwrap();
    let err = pipe_linear::LinearModel::load(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("weights.f32"), "{err}");
}
