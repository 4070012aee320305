//! The `ensemble_model` artifact: fitted models with a temperature and a
//! weight each. Its probabilities are the weighted mean of the members'
//! `softmax(scores / temperature)`; one member of weight 1 is a single
//! calibrated model. `predict` scores it like any model.
//!
//! Stored as `ensemble.json` (names, kinds, weights, temperatures) and one
//! folder per member holding that model's own files.

use std::any::Any;
use std::path::Path;

use pipe_core::{register_artifact, Artifact, ArtifactError, LoadArtifact};
use pipe_data::Vocabulary;
use pipe_linear::LinearModel;
use pipe_model::Checkpoint;
use pipe_predict::{register_scorer, ScoreError, ScoreOptions, ScoreRows};
use pipe_tensor::ngrams::{append_ngrams, check_settings, Subwords};
use pipe_tensor::TokenTensors;
use serde::{Deserialize, Serialize};

use crate::calibrate;

/// A fitted member's model.
#[derive(Debug)]
pub enum MemberModel {
    Checkpoint(Checkpoint),
    /// Boxed: a fitted vectorizer is three times a checkpoint's size.
    Linear(Box<LinearModel>),
}

impl MemberModel {
    fn scorer(&self) -> &dyn ScoreRows {
        match self {
            MemberModel::Checkpoint(c) => c,
            MemberModel::Linear(l) => l.as_ref(),
        }
    }
    fn artifact(&self) -> &dyn Artifact {
        match self {
            MemberModel::Checkpoint(c) => c,
            MemberModel::Linear(l) => l.as_ref(),
        }
    }
}

/// One model of an ensemble.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub weight: f32,
    pub temperature: f32,
    /// For a bag-of-n-grams model: the n-gram ids its rows need appended.
    pub ngrams: Option<NgramInput>,
    pub model: MemberModel,
}

/// What a bag-of-n-grams member appends to its rows before scoring them.
#[derive(Debug, Clone)]
pub struct NgramInput {
    /// Hash buckets of bigrams and character n-grams (after the vocabulary).
    pub buckets: i64,
    /// With character n-grams: their `[min, max]` and the vocabulary whose
    /// words they split (kept to be saved), and each word's n-gram ids,
    /// computed once rather than on every scoring call.
    subwords: Option<([usize; 2], Vocabulary, Subwords)>,
}

impl NgramInput {
    pub fn new(buckets: i64, char_ngrams: Option<([usize; 2], Vocabulary)>) -> NgramInput {
        let subwords = char_ngrams.map(|(range, vocab)| {
            let table = Subwords::new(&vocab, range, buckets);
            (range, vocab, table)
        });
        NgramInput { buckets, subwords }
    }

    /// The character n-grams' range and vocabulary, when there are some.
    pub fn char_ngrams(&self) -> Option<([usize; 2], &Vocabulary)> {
        self.subwords
            .as_ref()
            .map(|(range, vocab, _)| (*range, vocab))
    }

    pub fn append(&self, data: &TokenTensors, vocab_size: i64) -> TokenTensors {
        append_ngrams(
            data,
            vocab_size,
            self.buckets,
            self.subwords.as_ref().map(|(_, _, table)| table),
        )
    }
}

impl Member {
    pub fn classes(&self) -> usize {
        self.model.scorer().classes()
    }

    /// The model's raw scores for `data` (n-grams appended first when it needs them).
    pub fn scores(
        &self,
        data: &TokenTensors,
        options: &ScoreOptions,
    ) -> Result<Vec<f32>, ScoreError> {
        match (&self.ngrams, &self.model) {
            (Some(ngrams), MemberModel::Checkpoint(c)) => {
                let vocab_size = c.spec.vocab_size - ngrams.buckets;
                self.model
                    .scorer()
                    .scores(&ngrams.append(data, vocab_size), options)
            }
            _ => self.model.scorer().scores(data, options),
        }
    }

    /// Calibrated class probabilities.
    pub fn probabilities(
        &self,
        data: &TokenTensors,
        options: &ScoreOptions,
    ) -> Result<Vec<f32>, ScoreError> {
        Ok(calibrate::probabilities(
            &self.scores(data, options)?,
            self.classes(),
            self.temperature,
        ))
    }
}

/// Weighted, calibrated models.
#[derive(Debug)]
pub struct EnsembleModel {
    pub members: Vec<Member>,
}

impl ScoreRows for EnsembleModel {
    fn classes(&self) -> usize {
        self.members.first().map_or(0, Member::classes)
    }
    /// Log of the weighted mean probability: its softmax is that mean.
    fn scores(&self, data: &TokenTensors, options: &ScoreOptions) -> Result<Vec<f32>, ScoreError> {
        let mut mean = vec![0f32; data.rows() as usize * self.classes()];
        for member in self.members.iter().filter(|m| m.weight > 0.0) {
            let p = member.probabilities(data, options)?;
            mean.iter_mut()
                .zip(p)
                .for_each(|(m, p)| *m += member.weight * p);
        }
        Ok(mean.into_iter().map(|p| p.max(1e-30).ln()).collect())
    }
}
register_scorer!(EnsembleModel);

const ENSEMBLE_FILE: &str = "ensemble.json";

#[derive(Serialize, Deserialize)]
struct StoredMember {
    name: String,
    /// The member model's artifact type: `checkpoint` or `linear_model`.
    model: String,
    weight: f32,
    temperature: f32,
    bigram_buckets: Option<i64>,
    /// Character n-grams too: their range; the vocabulary is in `member-{i}-vocabulary/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    char_ngrams: Option<[usize; 2]>,
}

fn member_dir(dir: &Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("member-{i}"))
}

fn member_vocabulary_dir(dir: &Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("member-{i}-vocabulary"))
}

impl Artifact for EnsembleModel {
    fn type_name(&self) -> &'static str {
        Self::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let mut stored = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let sub = member_dir(dir, i);
            std::fs::create_dir(&sub).map_err(|e| ArtifactError::io(&sub, e))?;
            m.model.artifact().save(&sub)?;
            let subwords = m.ngrams.as_ref().and_then(NgramInput::char_ngrams);
            if let Some((_, vocab)) = subwords {
                let vocab_dir = member_vocabulary_dir(dir, i);
                std::fs::create_dir(&vocab_dir).map_err(|e| ArtifactError::io(&vocab_dir, e))?;
                vocab.save(&vocab_dir)?;
            }
            stored.push(StoredMember {
                name: m.name.clone(),
                model: m.model.artifact().type_name().to_string(),
                weight: m.weight,
                temperature: m.temperature,
                bigram_buckets: m.ngrams.as_ref().map(|n| n.buckets),
                char_ngrams: subwords.map(|(range, _)| range),
            });
        }
        pipe_core::fsutil::save_json(&dir.join(ENSEMBLE_FILE), &stored)
    }
    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{} ×{:.2}", m.name, m.weight))
            .collect();
        format!("ensemble of {}", parts.join(", "))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LoadArtifact for EnsembleModel {
    const TYPE_NAME: &'static str = "ensemble_model";
    fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(ENSEMBLE_FILE);
        let stored: Vec<StoredMember> = pipe_core::fsutil::load_json(&path)?;
        let mut members = Vec::with_capacity(stored.len());
        for (i, s) in stored.into_iter().enumerate() {
            let sub = member_dir(dir, i);
            let model = match s.model.as_str() {
                "checkpoint" => MemberModel::Checkpoint(Checkpoint::load(&sub)?),
                "linear_model" => MemberModel::Linear(Box::new(LinearModel::load(&sub)?)),
                other => {
                    return Err(ArtifactError::invalid(
                        &path,
                        format!("member {i} is a `{other}`, not a checkpoint or linear_model"),
                    ))
                }
            };
            if !(s.weight.is_finite()
                && s.weight >= 0.0
                && s.temperature.is_finite()
                && s.temperature > 0.0)
            {
                return Err(ArtifactError::invalid(
                    &path,
                    format!(
                        "member {i} has weight {} and temperature {}",
                        s.weight, s.temperature
                    ),
                ));
            }
            if let Some(buckets) = s.bigram_buckets {
                // The n-gram settings size the ids appended to every row: checked as in a pipeline.
                check_settings(buckets, s.char_ngrams)
                    .map_err(|e| ArtifactError::invalid(&path, format!("member {i}'s {e}")))?;
            }
            if let (Some(buckets), MemberModel::Checkpoint(c)) = (s.bigram_buckets, &model) {
                if buckets <= 0 || buckets >= c.spec.vocab_size {
                    return Err(ArtifactError::invalid(
                        &path,
                        format!(
                            "member {i}'s {buckets} bigram buckets do not fit its {} embeddings",
                            c.spec.vocab_size
                        ),
                    ));
                }
            }
            let ngrams = match (s.bigram_buckets, s.char_ngrams, &model) {
                (Some(buckets), Some(range), MemberModel::Checkpoint(c)) => {
                    let vocab = Vocabulary::load(&member_vocabulary_dir(dir, i))?;
                    if vocab.len() as i64 + buckets != c.spec.vocab_size {
                        return Err(ArtifactError::invalid(
                            &path,
                            format!(
                                "member {i}'s vocabulary has {} tokens; its embeddings hold {} with {buckets} buckets",
                                vocab.len(),
                                c.spec.vocab_size
                            ),
                        ));
                    }
                    Some(NgramInput::new(buckets, Some((range, vocab))))
                }
                (Some(_), Some(_), _) | (None, Some(_), _) => {
                    return Err(ArtifactError::invalid(
                        &path,
                        format!("member {i} has character n-grams but is not a bag of n-grams"),
                    ))
                }
                (Some(buckets), None, _) => Some(NgramInput::new(buckets, None)),
                (None, None, _) => None,
            };
            let member = Member {
                name: s.name,
                weight: s.weight,
                temperature: s.temperature,
                ngrams,
                model,
            };
            members.push(member);
        }
        if members.iter().all(|m| m.weight == 0.0) {
            return Err(ArtifactError::invalid(&path, "every member's weight is 0"));
        }
        let classes: Vec<usize> = members.iter().map(Member::classes).collect();
        if classes.is_empty() || classes.iter().any(|&c| c != classes[0]) {
            return Err(ArtifactError::invalid(
                &path,
                format!("members must agree on the classes; they have {classes:?}"),
            ));
        }
        Ok(EnsembleModel { members })
    }
}
register_artifact!(
    EnsembleModel,
    "calibrated, weighted models (ensemble.json + one folder per member)"
);

#[cfg(test)]
mod tests {
    use super::*;
    use pipe_data::IntArray;
    use pipe_linear::TfidfLinear;

    fn toy() -> (Vec<Vec<i64>>, Vec<i64>, Vocabulary) {
        // Class 0 rows use tokens 2-3, class 1 rows tokens 4-5; 0 pads.
        let rows: Vec<Vec<i64>> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    vec![2, 3, 2, 0]
                } else {
                    vec![4, 5, 0, 0]
                }
            })
            .collect();
        let labels = (0..40).map(|i| i % 2).collect();
        let tokens = ["<pad>", "<unk>", "red", "green", "blue", "grey"]
            .map(String::from)
            .to_vec();
        (
            rows,
            labels,
            Vocabulary {
                tokens,
                pad_id: 0,
                unk_id: Some(1),
            },
        )
    }

    fn linear_member(temperature: f32, weight: f32) -> Member {
        let (rows, labels, vocab) = toy();
        let rows: Vec<&[i64]> = rows.iter().map(Vec::as_slice).collect();
        let (model, _) = TfidfLinear::default()
            .fit(&rows, &labels, &vocab, 2, 0, 1)
            .unwrap();
        Member {
            name: format!("t{temperature}"),
            weight,
            temperature,
            ngrams: None,
            model: MemberModel::Linear(Box::new(model)),
        }
    }

    fn tensors() -> TokenTensors {
        let x = IntArray(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 4]), vec![2, 3, 0, 0, 5, 4, 4, 0])
                .unwrap(),
        );
        TokenTensors::from_arrays(&x, None, 0, None, tch::Device::Cpu).unwrap()
    }

    #[test]
    fn probabilities_are_the_weighted_mean_of_calibrated_members() {
        let ensemble = EnsembleModel {
            members: vec![linear_member(0.5, 0.25), linear_member(2.0, 0.75)],
        };
        let options = ScoreOptions::default();
        let data = tensors();
        let p = pipe_predict::softmax_rows(&ensemble.scores(&data, &options).unwrap(), 2);
        let a = ensemble.members[0].probabilities(&data, &options).unwrap();
        let b = ensemble.members[1].probabilities(&data, &options).unwrap();
        for i in 0..4 {
            assert!(
                (p[i] - (0.25 * a[i] + 0.75 * b[i])).abs() < 1e-5,
                "{p:?} {a:?} {b:?}"
            );
        }
        assert!(
            a[0] > b[0] && b[0] > 0.5,
            "a lower temperature is sharper: {a:?} {b:?}"
        );
        assert!(
            p[0] > 0.5 && p[3] > 0.5,
            "row 0 is class 0, row 1 class 1: {p:?}"
        );
    }

    #[test]
    fn an_ensemble_round_trips_through_its_files() {
        let ensemble = EnsembleModel {
            members: vec![linear_member(0.5, 0.25), linear_member(2.0, 0.75)],
        };
        let dir = tempfile::tempdir().unwrap();
        ensemble.save(dir.path()).unwrap();
        let loaded = EnsembleModel::load(dir.path()).unwrap();
        let options = ScoreOptions::default();
        assert_eq!(
            loaded.scores(&tensors(), &options).unwrap(),
            ensemble.scores(&tensors(), &options).unwrap()
        );
        assert_eq!(loaded.summary(), ensemble.summary());
    }

    fn bag_member(char_ngrams: Option<[usize; 2]>) -> Member {
        let (_, _, vocab) = toy();
        let labels = pipe_data::LabelSet::Strings(vec!["a".into(), "b".into()]);
        let bag = pipe_model::BagOfNgrams {
            buckets: 64,
            ..Default::default()
        };
        let checkpoint = pipe_model::initialise(&bag.spec(&vocab, &labels), 3).unwrap();
        let ngrams = NgramInput::new(64, char_ngrams.map(|range| (range, vocab.clone())));
        Member {
            name: "bag".into(),
            weight: 1.0,
            temperature: 1.0,
            ngrams: Some(ngrams),
            model: MemberModel::Checkpoint(checkpoint),
        }
    }

    #[test]
    fn a_bag_member_with_subwords_reads_them_and_round_trips() {
        // Both members initialised from one seed: no other test may draw between.
        let _torch = pipe_runtime::runtime::torch_global_lock();
        let options = ScoreOptions::default();
        let with = EnsembleModel {
            members: vec![bag_member(Some([2, 4]))],
        };
        let without = EnsembleModel {
            members: vec![bag_member(None)],
        };
        // The same weights (same seed): only the character n-grams differ.
        assert_ne!(
            with.scores(&tensors(), &options).unwrap(),
            without.scores(&tensors(), &options).unwrap()
        );
        let dir = tempfile::tempdir().unwrap();
        with.save(dir.path()).unwrap();
        assert!(dir.path().join("member-0-vocabulary").is_dir());
        let loaded = EnsembleModel::load(dir.path()).unwrap();
        assert_eq!(
            loaded.scores(&tensors(), &options).unwrap(),
            with.scores(&tensors(), &options).unwrap()
        );

        // A vocabulary that does not fit the embeddings is refused.
        let vocab_file = dir.path().join("member-0-vocabulary/vocabulary.json");
        let mut shorter: Vocabulary =
            serde_json::from_slice(&std::fs::read(&vocab_file).unwrap()).unwrap();
        shorter.tokens.pop();
        std::fs::write(&vocab_file, serde_json::to_vec(&shorter).unwrap()).unwrap();
        let err = EnsembleModel::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("member 0's vocabulary has 5 tokens"), "{err}");
    }

    #[test]
    fn a_tampered_ensemble_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        EnsembleModel {
            members: vec![linear_member(1.0, 1.0)],
        }
        .save(dir.path())
        .unwrap();
        let path = dir.path().join(ENSEMBLE_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in [
            ("\"temperature\":1.0", "\"temperature\":-1.0"),
            ("linear_model", "pickle"),
            ("\"weight\":1.0", "\"weight\":0.0"),
        ] {
            std::fs::write(&path, text.replace(from, to)).unwrap();
            let err = EnsembleModel::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains("ensemble.json"), "{err}");
        }
    }

    #[test]
    fn stored_ngram_settings_out_of_bounds_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        EnsembleModel {
            members: vec![linear_member(1.0, 1.0)],
        }
        .save(dir.path())
        .unwrap();
        let path = dir.path().join(ENSEMBLE_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let max = pipe_tensor::ngrams::MAX_BUCKETS;
        for (to, expected) in [
            (
                "\"bigram_buckets\":100000000000".to_string(),
                format!("member 0's buckets must be between 1 and {max}, got 100000000000"),
            ),
            (
                "\"bigram_buckets\":64,\"char_ngrams\":[1,1000000000]".to_string(),
                "member 0's char_ngrams must be [min, max]".to_string(),
            ),
        ] {
            std::fs::write(&path, text.replace("\"bigram_buckets\":null", &to)).unwrap();
            let err = EnsembleModel::load(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("ensemble.json") && err.contains(&expected),
                "{err}"
            );
        }
    }
}
