//! What `select` can fit: each candidate is a model kind with its settings,
//! written in a pipeline as the stages it stands for are
//! (`kind: tfidf_linear` with its fields; a torch model as `model:` plus
//! `train:` settings).

use pipe_core::InvalidSetting;
use pipe_data::split::{stratified_split, Rng};
use pipe_data::{LabelSet, Vocabulary};
use pipe_linear::TfidfLinear;
use pipe_model::{BagOfNgrams, GruClassifier, LstmClassifier};
use pipe_tensor::ngrams::check_settings;
use pipe_tensor::TokenTensors;
use pipe_train::Train;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::ensemble_model::{Member, MemberModel, NgramInput};
use crate::FitError;

/// The largest `max_rows` cap: 2^32 rows, past any data set an id matrix in
/// memory holds (4 billion rows of even one 8-byte id is 32 GiB); a larger
/// cap is a typo for no cap.
pub const MAX_ROWS: usize = 1 << 32;

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
        train: Train,
        /// Train on at most this many rows (a stratified sample): bounds the
        /// time a network takes on large data, where it joins an ensemble.
        #[serde(default)]
        max_rows: Option<usize>,
    },
    GruClassifier {
        #[serde(default)]
        model: GruClassifier,
        #[serde(default)]
        train: Train,
        /// Train on at most this many rows (a stratified sample): bounds the
        /// time a network takes on large data, where it joins an ensemble.
        #[serde(default)]
        max_rows: Option<usize>,
    },
    /// fastText's model; the rows get their hashed bigrams (`model.buckets`) first.
    BagOfNgrams {
        #[serde(default)]
        model: BagOfNgrams,
        /// Each word's character n-grams too, `[min, max]` characters, in the
        /// same buckets (the `ngrams` stage's `char_ngrams`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        char_ngrams: Option<[usize; 2]>,
        #[serde(default)]
        train: Train,
        /// Train on at most this many rows (a stratified sample): bounds the
        /// time a network takes on large data, where it joins an ensemble.
        #[serde(default)]
        max_rows: Option<usize>,
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
            labels: self
                .tensors
                .labels
                .as_ref()
                .map(|l| l.index_select(0, &index)),
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

    /// The most rows a fit trains on (`max_rows`), if capped.
    pub fn max_rows(&self) -> Option<usize> {
        match self {
            Candidate::TfidfLinear(_) => None,
            Candidate::LstmClassifier { max_rows, .. }
            | Candidate::GruClassifier { max_rows, .. }
            | Candidate::BagOfNgrams { max_rows, .. } => *max_rows,
        }
    }

    /// Checks the settings before anything is fitted: each nested config
    /// as its own stage would (errors named from the candidate: `model.…`,
    /// `train.…`), and the candidate's own.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let (train, max_rows) = match self {
            Candidate::TfidfLinear(t) => return pipe_core::Stage::validate(t),
            Candidate::BagOfNgrams {
                model,
                char_ngrams,
                train,
                max_rows,
            } => {
                pipe_core::Stage::validate(model).map_err(|e| e.within("model"))?;
                check_settings(model.buckets, *char_ngrams)?;
                (train, max_rows)
            }
            Candidate::LstmClassifier {
                model,
                train,
                max_rows,
            } => {
                pipe_core::Stage::validate(model).map_err(|e| e.within("model"))?;
                (train, max_rows)
            }
            Candidate::GruClassifier {
                model,
                train,
                max_rows,
            } => {
                pipe_core::Stage::validate(model).map_err(|e| e.within("model"))?;
                (train, max_rows)
            }
        };
        if let Some(n) = max_rows.filter(|n| !(1..=MAX_ROWS).contains(n)) {
            return Err(InvalidSetting::new(
                "max_rows",
                format!("must be between 1 and {MAX_ROWS}, got {n}"),
            ));
        }
        train.validate().map_err(|e| e.within("train"))
    }

    /// Fits the model on the rows `subset` (weight 1, temperature 1).
    pub fn fit(
        &self,
        name: &str,
        data: &FitData,
        subset: &[usize],
        progress: &mut pipe_train::Progress,
    ) -> Result<Member, FitError> {
        let (model, ngrams) = match self {
            Candidate::TfidfLinear(config) => {
                let rows: Vec<&[i64]> = subset.iter().map(|&r| data.rows[r]).collect();
                let labels: Vec<i64> = subset.iter().map(|&r| data.labels[r]).collect();
                let (model, _) = config.fit(
                    &rows,
                    &labels,
                    data.vocab,
                    data.label_set.len(),
                    data.seed,
                    data.threads,
                )?;
                (MemberModel::Linear(Box::new(model)), None)
            }
            Candidate::LstmClassifier {
                model,
                train,
                max_rows,
            } => {
                let tensors = data.tensors_of(&capped(subset, *max_rows, data.labels, data.seed));
                (
                    fit_torch(
                        &model.spec(data.vocab, data.label_set, data.device_name),
                        train,
                        &tensors,
                        data,
                        progress,
                    )?,
                    None,
                )
            }
            Candidate::GruClassifier {
                model,
                train,
                max_rows,
            } => {
                let tensors = data.tensors_of(&capped(subset, *max_rows, data.labels, data.seed));
                (
                    fit_torch(
                        &model.spec(data.vocab, data.label_set, data.device_name),
                        train,
                        &tensors,
                        data,
                        progress,
                    )?,
                    None,
                )
            }
            Candidate::BagOfNgrams {
                model,
                char_ngrams,
                train,
                max_rows,
            } => {
                let rows = data.tensors_of(&capped(subset, *max_rows, data.labels, data.seed));
                let ngrams = NgramInput::new(
                    model.buckets,
                    char_ngrams.map(|range| (range, data.vocab.clone())),
                );
                let tensors = ngrams.append(&rows, data.vocab.len() as i64);
                (
                    fit_torch(
                        &model.spec(data.vocab, data.label_set),
                        train,
                        &tensors,
                        data,
                        progress,
                    )?,
                    Some(ngrams),
                )
            }
        };
        Ok(Member {
            name: name.to_string(),
            weight: 1.0,
            temperature: 1.0,
            ngrams,
            model,
        })
    }
}

/// `subset`, or a stratified sample of `max_rows` of it (seeded, in row order).
pub fn capped(subset: &[usize], max_rows: Option<usize>, labels: &[i64], seed: u64) -> Vec<usize> {
    match max_rows {
        Some(max) if subset.len() > max => {
            let labels: Vec<i64> = subset.iter().map(|&r| labels[r]).collect();
            let left_out = 1.0 - max as f64 / subset.len() as f64;
            let (kept, _) = stratified_split(&labels, left_out, &mut Rng::new(seed ^ 0xca9));
            kept.into_iter().map(|i| subset[i]).collect()
        }
        _ => subset.to_vec(),
    }
}

fn fit_torch(
    spec: &pipe_model::ModelSpec,
    train: &Train,
    tensors: &TokenTensors,
    data: &FitData,
    progress: &mut pipe_train::Progress,
) -> Result<MemberModel, FitError> {
    let initial = pipe_model::initialise(spec, data.seed)?;
    let trained = pipe_train::train(
        &initial,
        tensors,
        train,
        data.device,
        data.seed,
        progress,
        &mut |_| {},
    )?;
    Ok(MemberModel::Checkpoint(trained.checkpoint))
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
- kind: tfidf_linear
  classifier: complement_nb
  alpha: 0.3
";
        let candidates: Vec<Candidate> = serde_saphyr::from_str(yaml).unwrap();
        assert!(
            matches!(&candidates[0], Candidate::TfidfLinear(t) if t.c == 0.5 && t.word_ngrams == [1, 2])
        );
        assert!(
            matches!(&candidates[1], Candidate::LstmClassifier { model, train, max_rows: None } if model.hidden_dim == 32 && train.epochs == 3)
        );
        assert!(
            matches!(&candidates[2], Candidate::BagOfNgrams { model, .. } if model.buckets == 1 << 16)
        );
        assert!(
            matches!(&candidates[3], Candidate::TfidfLinear(t) if t.classifier == pipe_linear::Classifier::ComplementNb && t.alpha == 0.3)
        );
        assert!(
            matches!(&candidates[0], Candidate::TfidfLinear(t) if t.classifier == pipe_linear::Classifier::LinearSvc)
        );
    }

    #[test]
    fn max_rows_keeps_a_stratified_sample_of_the_subset() {
        let labels: Vec<i64> = (0..1000).map(|i| if i % 10 == 0 { 1 } else { 0 }).collect();
        let subset: Vec<usize> = (0..1000).step_by(2).collect(); // 500 rows, 100 of class 1
        let kept = capped(&subset, Some(100), &labels, 3);
        assert!(kept.len().abs_diff(100) <= 2, "{}", kept.len());
        assert!(kept.iter().all(|r| subset.contains(r)) && kept.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            kept.iter().filter(|&&r| labels[r] == 1).count(),
            20,
            "class 1 keeps its fifth"
        );
        assert_eq!(capped(&subset, Some(500), &labels, 3), subset);
        assert_eq!(capped(&subset, None, &labels, 3), subset);
    }

    #[test]
    fn a_misspelt_setting_is_an_error() {
        for yaml in [
            "kind: tfidf_linear\nwrod_ngrams: [1, 2]",
            "kind: tfidf_linear\nclassifier: naive_bayes",
            "kind: lstm_classifier\nmodel: { hiden_dim: 3 }",
            "kind: bag_of_ngrams\ntrian: {}",
        ] {
            assert!(serde_saphyr::from_str::<Candidate>(yaml).is_err(), "{yaml}");
        }
    }
}
