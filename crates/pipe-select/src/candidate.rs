//! What `select` can fit: each candidate is a model kind with its settings,
//! written in a pipeline as the stages it stands for are
//! (`kind: tfidf_linear` with its fields; a torch model as `model:` plus
//! `train:` settings).

use pipe_core::{LabelSet, Vocabulary};
use pipe_linear::TfidfLinear;
use pipe_model::{BagOfNgrams, GruClassifier, LstmClassifier};
use pipe_tensor::TokenTensors;
use pipe_train::TrainConfig;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::ensemble_model::{Member, MemberModel};

/// A model kind and its settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Candidate {
    /// TF-IDF n-grams + linear SVMs (the `tfidf_linear` stage's fields).
    TfidfLinear(TfidfLinear),
    LstmClassifier {
        #[serde(default)]
        model: LstmClassifier,
        #[serde(default)]
        train: TrainConfig,
    },
    GruClassifier {
        #[serde(default)]
        model: GruClassifier,
        #[serde(default)]
        train: TrainConfig,
    },
    /// fastText's model; the rows get their hashed bigrams (`model.buckets`) first.
    BagOfNgrams {
        #[serde(default)]
        model: BagOfNgrams,
        #[serde(default)]
        train: TrainConfig,
    },
}

/// The training rows, in the forms the candidates read.
pub struct FitData<'a> {
    /// Token ids per row (for linear models).
    pub rows: Vec<&'a [i64]>,
    pub labels: &'a [i64],
    /// The same rows as tensors with labels (for torch models), on the CPU.
    pub tensors: &'a TokenTensors,
    pub vocab: &'a Vocabulary,
    pub label_set: &'a LabelSet,
    pub device: Device,
    /// The pipeline's device name (`cpu`, `cuda:0`): precision decisions read it.
    pub device_name: &'a str,
    pub seed: u64,
    pub threads: usize,
}

impl<'a> FitData<'a> {
    /// Token tensors of the rows `subset`, in that order.
    pub fn tensors_of(&self, subset: &[usize]) -> TokenTensors {
        let index = Tensor::from_slice(&subset.iter().map(|&r| r as i64).collect::<Vec<_>>());
        TokenTensors {
            ids: self.tensors.ids.index_select(0, &index),
            lengths: self.tensors.lengths.index_select(0, &index),
            labels: self.tensors.labels.as_ref().map(|l| l.index_select(0, &index)),
            padding: self.tensors.padding,
            pad_id: self.tensors.pad_id,
        }
    }
}

impl Candidate {
    /// The kind, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Candidate::TfidfLinear(_) => "tfidf_linear",
            Candidate::LstmClassifier { .. } => "lstm_classifier",
            Candidate::GruClassifier { .. } => "gru_classifier",
            Candidate::BagOfNgrams { .. } => "bag_of_ngrams",
        }
    }

    /// Which kinds are cheaper to fit: linear models, then bags of
    /// n-grams, then recurrent networks.
    pub fn cost_rank(&self) -> u8 {
        match self {
            Candidate::TfidfLinear(_) => 0,
            Candidate::BagOfNgrams { .. } => 1,
            Candidate::LstmClassifier { .. } | Candidate::GruClassifier { .. } => 2,
        }
    }

    /// Checks the settings before anything is fitted.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Candidate::TfidfLinear(t) => pipe_core::Stage::validate(t),
            Candidate::LstmClassifier { train, .. } | Candidate::GruClassifier { train, .. } => train.validate(),
            Candidate::BagOfNgrams { model, train } => {
                if model.buckets <= 0 {
                    return Err("model.buckets must be positive".into());
                }
                train.validate()
            }
        }
    }

    /// Fits the model on the rows `subset` (weight 1, temperature 1).
    pub fn fit(&self, name: &str, data: &FitData, subset: &[usize], progress: &mut pipe_train::Progress) -> Result<Member, String> {
        let model = match self {
            Candidate::TfidfLinear(config) => {
                let rows: Vec<&[i64]> = subset.iter().map(|&r| data.rows[r]).collect();
                let labels: Vec<i64> = subset.iter().map(|&r| data.labels[r]).collect();
                let (model, _) = config.fit(&rows, &labels, data.vocab, data.label_set.len(), data.seed, data.threads).map_err(|e| e.to_string())?;
                MemberModel::Linear(model)
            }
            Candidate::LstmClassifier { model, train } => {
                MemberModel::Checkpoint(fit_torch(&model.spec(data.vocab, data.label_set, data.device_name), train, &data.tensors_of(subset), data, progress)?)
            }
            Candidate::GruClassifier { model, train } => {
                MemberModel::Checkpoint(fit_torch(&model.spec(data.vocab, data.label_set, data.device_name), train, &data.tensors_of(subset), data, progress)?)
            }
            Candidate::BagOfNgrams { model, train } => {
                let tensors = pipe_tensor::ngrams::append_bigrams(&data.tensors_of(subset), data.vocab.len() as i64, model.buckets);
                MemberModel::Checkpoint(fit_torch(&model.spec(data.vocab, data.label_set), train, &tensors, data, progress)?)
            }
        };
        let bigram_buckets = match self {
            Candidate::BagOfNgrams { model, .. } => Some(model.buckets),
            _ => None,
        };
        Ok(Member { name: name.to_string(), weight: 1.0, temperature: 1.0, bigram_buckets, model })
    }
}

fn fit_torch(
    spec: &pipe_model::ModelSpec,
    train: &TrainConfig,
    tensors: &TokenTensors,
    data: &FitData,
    progress: &mut pipe_train::Progress,
) -> Result<pipe_model::Checkpoint, String> {
    let initial = pipe_model::initialise(spec, data.seed).map_err(|e| e.to_string())?;
    let trained = pipe_train::train(&initial, tensors, train, data.device, data.seed, progress, &mut |_| {})?;
    Ok(trained.checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_read_as_the_stages_they_stand_for() {
        let yaml = "
- kind: tfidf_linear
  word_ngrams: [1, 2]
  c: 0.5
- kind: lstm_classifier
  model: { hidden_dim: 32, pooling: mean_max }
  train: { epochs: 3, lr: 0.004 }
- kind: bag_of_ngrams
";
        let candidates: Vec<Candidate> = serde_saphyr::from_str(yaml).unwrap();
        assert!(matches!(&candidates[0], Candidate::TfidfLinear(t) if t.c == 0.5 && t.word_ngrams == [1, 2]));
        assert!(matches!(&candidates[1], Candidate::LstmClassifier { model, train } if model.hidden_dim == 32 && train.epochs == 3));
        assert!(matches!(&candidates[2], Candidate::BagOfNgrams { model, .. } if model.buckets == 1 << 16));
    }

    #[test]
    fn a_misspelt_setting_is_an_error() {
        for yaml in ["kind: tfidf_linear\nwrod_ngrams: [1, 2]", "kind: lstm_classifier\nmodel: { hiden_dim: 3 }", "kind: bag_of_ngrams\ntrian: {}"] {
            assert!(serde_saphyr::from_str::<Candidate>(yaml).is_err(), "{yaml}");
        }
    }
}
