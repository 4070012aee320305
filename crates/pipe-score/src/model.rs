//! The trained classifier a pipeline's run holds: the model, labels and
//! token tensors its `predict` stage reads, and the vectorizer that encodes
//! new texts the way those tensors were encoded.

use std::path::{Path, PathBuf};

use pipe::core::{LabelSet, LoadArtifact, Pipeline, RunReport, Vocabulary};
use pipe::tensor::{PaddingSide, TokenTensors};
use pipe::vectorize::{Side, Vectorizer, VectorizerOptions};
use pipe::TextClassifier;

use crate::ScoreError;

/// A classifier and the digest that identifies it in shard manifests.
pub struct ScoringModel {
    pub classifier: TextClassifier,
    /// blake3 over the model's and labels' files and the vectorizer.
    pub digest: String,
    /// Where each part came from, for the user.
    pub description: String,
}

/// The classifier behind the pipeline's one `predict` stage, from `report`
/// (a run of `pipeline`, usually all cached).
///
/// The vectorizer is the pipeline's `vectorizer` output when it has one
/// (`vectorize` stages). A pipeline that starts from the notebook's
/// artifacts has none: its texts were tokenized upstream, by the notebook's
/// script, so new texts are tokenized the same way (lowercase, `\w+|[^\w\s]`)
/// with the loaded vocabulary, to the tensors' width and padding side, keeping
/// a long text's first tokens as that script does.
pub fn classifier_from_run(pipeline: &Pipeline, report: &RunReport) -> Result<ScoringModel, ScoreError> {
    let predict = predict_stage(pipeline)?;
    let input_dir = |port: &str| -> Result<(usize, PathBuf), ScoreError> {
        let (upstream, output) =
            predict.inputs.get(port).ok_or_else(|| ScoreError::Model(format!("stage `{}` has no `{port}` input", predict.name)))?;
        Ok((*upstream, stored(report, &pipeline.stages[*upstream].name, output)?))
    };
    let (_, model_dir) = input_dir("model")?;
    let (_, labels_dir) = input_dir("labels")?;
    let (tensors_stage, tensors_dir) = input_dir("tensors")?;

    let (vectorizer, vectorizer_from) = match vectorizer_output(pipeline) {
        Some((stage, port)) => (Vectorizer::load(&stored(report, &stage, &port)?).map_err(model_err)?, format!("{stage}.{port}")),
        None => {
            let tensors_stage = &pipeline.stages[tensors_stage];
            let (vocab_stage, vocab_port) =
                tensors_stage.inputs.get("vocab").ok_or_else(|| ScoreError::Model(format!("stage `{}` has no `vocab` input", tensors_stage.name)))?;
            let vocab = Vocabulary::load(&stored(report, &pipeline.stages[*vocab_stage].name, vocab_port)?).map_err(model_err)?;
            let tensors = TokenTensors::load(&tensors_dir).map_err(model_err)?;
            let options = notebook_encoding(&tensors);
            let from = format!(
                "{}.{vocab_port} ({} tokens to {}, {:?}-padded)",
                pipeline.stages[*vocab_stage].name, options.max_len, options.max_len, options.padding
            );
            (Vectorizer::from_vocabulary(vocab, options), from)
        }
    };
    let model = pipe::load_model(&model_dir)?;
    let digest = digest(&vectorizer, &[&model_dir, &labels_dir])?;
    let labels = LabelSet::load(&labels_dir).map_err(model_err)?;
    let classifier = TextClassifier::new(vectorizer, model, labels, tch::Device::Cpu)?;
    let description = format!("{} from `{}`, vectorizer from `{vectorizer_from}`", classifier.model_type(), predict.name);
    Ok(ScoringModel { classifier, digest, description })
}

fn predict_stage(pipeline: &Pipeline) -> Result<&pipe::core::PipelineStage, ScoreError> {
    let predicts: Vec<_> = pipeline.stages.iter().filter(|s| s.kind == "predict").collect();
    match predicts.as_slice() {
        [one] => Ok(one),
        [] => Err(ScoreError::Model(format!("{} has no `predict` stage: nothing says which model scores texts", pipeline.source))),
        many => Err(ScoreError::Model(format!(
            "{} has {} `predict` stages ({}); keep one in a copy of the pipeline",
            pipeline.source,
            many.len(),
            many.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The first stage output of type `vectorizer`, as (stage, port).
fn vectorizer_output(pipeline: &Pipeline) -> Option<(String, String)> {
    pipeline
        .stages
        .iter()
        .find_map(|s| s.stage.outputs().into_iter().find(|p| p.type_name == Vectorizer::TYPE_NAME).map(|p| (s.name.clone(), p.name.to_string())))
}

/// The notebook script's encoding of tensors like these.
fn notebook_encoding(tensors: &TokenTensors) -> VectorizerOptions {
    let width = tensors.ids.size().get(1).copied().unwrap_or(0).max(0) as usize;
    let padding = match tensors.padding {
        PaddingSide::Pre => Side::Pre,
        _ => Side::Post,
    };
    VectorizerOptions { max_len: width, padding, truncating: Side::Post, ..VectorizerOptions::default() }
}

fn stored(report: &RunReport, stage: &str, port: &str) -> Result<PathBuf, ScoreError> {
    pipe::output_dir(report, &format!("{stage}.{port}")).map_err(ScoreError::from)
}

fn model_err(e: impl std::fmt::Display) -> ScoreError {
    ScoreError::Model(e.to_string())
}

/// blake3 over the vectorizer's vocabulary and settings and every file of `dirs`.
fn digest(vectorizer: &Vectorizer, dirs: &[&Path]) -> Result<String, ScoreError> {
    let mut hasher = blake3::Hasher::new();
    for token in &vectorizer.vocab.tokens {
        hasher.update(token.as_bytes());
        hasher.update(&[0]);
    }
    hasher.update(serde_json::to_string(&vectorizer.options).expect("options serialize").as_bytes());
    for dir in dirs {
        hash_tree(&mut hasher, dir)?;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn hash_tree(hasher: &mut blake3::Hasher, dir: &Path) -> Result<(), ScoreError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map_err(model_err)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for entry in entries {
        hasher.update(entry.file_name().unwrap_or_default().as_encoded_bytes());
        if entry.is_dir() {
            hash_tree(hasher, &entry)?;
        } else {
            hasher.update(&std::fs::read(&entry).map_err(model_err)?);
        }
    }
    Ok(())
}
