//! The trained classifier a pipeline's run holds: the model, labels and
//! token tensors its `predict` stage reads, and the vectorizer that encodes
//! new texts the way those tensors were encoded; and a bundle of the three,
//! a self-contained directory to copy to the machines that score.

use std::path::{Path, PathBuf};

use pipe::core::{Artifact, LoadArtifact, Pipeline, RunReport};
use pipe::data::{LabelSet, Vocabulary};
use pipe::tensor::{PaddingSide, TokenTensors};
use pipe::vectorize::{Side, Vectorizer, VectorizerOptions};
use pipe::TextClassifier;
use serde::{Deserialize, Serialize};

use crate::ScoreError;

/// A classifier and the digest that identifies it in shard manifests.
pub struct ScoringModel {
    pub classifier: TextClassifier,
    /// blake3 over the model's and labels' files and the vectorizer: the
    /// same for a pipeline's model and a bundle of it.
    pub digest: String,
    /// Where each part came from, for the user.
    pub description: String,
    model_dir: PathBuf,
    labels_dir: PathBuf,
}

/// What `bundle.json` records beside a bundle's three artifacts.
#[derive(Debug, Serialize, Deserialize)]
struct BundleRecord {
    model_type: String,
    description: String,
    pipe_version: String,
}

const BUNDLE_FILE: &str = "bundle.json";

/// Whether `dir` holds a bundle written by [`ScoringModel::save_bundle`].
pub fn is_bundle(dir: &Path) -> bool {
    dir.join(BUNDLE_FILE).is_file()
}

impl ScoringModel {
    fn new(classifier: TextClassifier, description: String, model_dir: PathBuf, labels_dir: PathBuf) -> Result<ScoringModel, ScoreError> {
        let digest = digest(classifier.vectorizer(), &[&model_dir, &labels_dir])?;
        Ok(ScoringModel { classifier, digest, description, model_dir, labels_dir })
    }

    /// Writes a self-contained copy to `dir`: `vectorizer/`, `model/` and
    /// `labels/` as the cache stores them, and `bundle.json`. It needs no
    /// pipeline, cache or working directory to load, so it can be copied to
    /// the machines that score. Written under a temp name and renamed into
    /// place; an existing bundle at `dir` is replaced, anything else refused.
    pub fn save_bundle(&self, dir: &Path) -> Result<(), ScoreError> {
        let out_err = |path: &Path, e: &dyn std::fmt::Display| ScoreError::Output { path: path.to_path_buf(), message: e.to_string() };
        if dir.exists() && !is_bundle(dir) && std::fs::read_dir(dir).map_err(|e| out_err(dir, &e))?.next().is_some() {
            return Err(out_err(dir, &"exists and is not a bundle; pick an empty or new directory"));
        }
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| out_err(parent, &e))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
        let tmp = parent.join(format!(".{name}.tmp-{}-{}", std::process::id(), pipe::core::fsutil::unique_suffix()));
        let written = (|| {
            std::fs::create_dir_all(tmp.join("vectorizer")).map_err(|e| out_err(&tmp, &e))?;
            self.classifier.vectorizer().save(&tmp.join("vectorizer")).map_err(|e| out_err(&tmp, &e))?;
            copy_tree(&self.model_dir, &tmp.join("model"))?;
            copy_tree(&self.labels_dir, &tmp.join("labels"))?;
            let record = BundleRecord {
                model_type: self.classifier.model_type().to_string(),
                description: self.description.clone(),
                pipe_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            pipe::core::fsutil::save_json(&tmp.join(BUNDLE_FILE), &record).map_err(|e| out_err(&tmp, &e))?;
            pipe::core::fsutil::sync_tree(&tmp).map_err(|e| out_err(&tmp, &e))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let old = parent.join(format!(".{name}.old-{}", pipe::core::fsutil::unique_suffix()));
        let replacing = dir.exists();
        if replacing {
            std::fs::rename(dir, &old).map_err(|e| out_err(dir, &e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| out_err(dir, &e))?;
        if replacing {
            let _ = std::fs::remove_dir_all(&old);
        }
        pipe::core::fsutil::sync_dir(parent).map_err(|e| out_err(parent, &e))
    }

    /// Loads a bundle written by [`Self::save_bundle`].
    pub fn load_bundle(dir: &Path) -> Result<ScoringModel, ScoreError> {
        let record: BundleRecord = pipe::core::fsutil::load_json(&dir.join(BUNDLE_FILE)).map_err(model_err)?;
        let vectorizer = Vectorizer::load(&dir.join("vectorizer")).map_err(model_err)?;
        let model = pipe::load_model(&dir.join("model"))?;
        let labels = LabelSet::load(&dir.join("labels")).map_err(model_err)?;
        let classifier = TextClassifier::new(vectorizer, model, labels, tch::Device::Cpu)?;
        let description = format!("{} (bundle {})", record.description, dir.display());
        ScoringModel::new(classifier, description, dir.join("model"), dir.join("labels"))
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ScoreError> {
    let err = |path: &Path, e: std::io::Error| ScoreError::Output { path: path.to_path_buf(), message: e.to_string() };
    std::fs::create_dir_all(to).map_err(|e| err(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| err(from, e))? {
        let path = entry.map_err(|e| err(from, e))?.path();
        let target = to.join(path.file_name().expect("a directory entry has a name"));
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(|e| err(&path, e))?;
        }
    }
    Ok(())
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
    let labels = LabelSet::load(&labels_dir).map_err(model_err)?;
    let classifier = TextClassifier::new(vectorizer, model, labels, tch::Device::Cpu)?;
    let description = format!("{} from `{}`, vectorizer from `{vectorizer_from}`", classifier.model_type(), predict.name);
    ScoringModel::new(classifier, description, model_dir, labels_dir)
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
