//! The trained classifier a pipeline's run holds: the model, labels and
//! token tensors its `predict` stage reads, and the vectorizer that encodes
//! new texts the way those tensors were encoded; and a bundle of the three,
//! a self-contained directory to copy to the machines that score.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::TextClassifier;
use pipe_core::{Artifact, LoadArtifact, Pipeline, RunReport};
use pipe_data::{LabelSet, Vocabulary};
use pipe_predict::Predict;
use pipe_tensor::{PaddingSide, ToTensors, TokenTensors};
use pipe_vectorize::{Side, Vectorizer, VectorizerOptions};
use serde::{Deserialize, Serialize};

use crate::ScoreJobError;

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
    /// The bundle it was loaded from, if any.
    bundle_dir: Option<PathBuf>,
}

/// What `bundle.json` records beside a bundle's three artifacts.
#[derive(Debug, Serialize, Deserialize)]
struct BundleRecord {
    model_type: String,
    description: String,
    pipe_version: String,
    /// Every file the bundle holds besides `bundle.json`, with its size:
    /// a directory is replaced only when it holds exactly these. Empty in
    /// bundles written before the listing was recorded.
    #[serde(default)]
    files: BTreeMap<String, u64>,
}

const BUNDLE_FILE: &str = "bundle.json";

/// Whether `dir` looks like a bundle written by [`ScoringModel::save_bundle`]
/// (it has a `bundle.json`); [`check_bundle_tree`] checks it whole.
pub fn is_bundle(dir: &Path) -> bool {
    dir.join(BUNDLE_FILE).is_file()
}

impl ScoringModel {
    fn new(
        classifier: TextClassifier,
        description: String,
        model_dir: PathBuf,
        labels_dir: PathBuf,
    ) -> Result<ScoringModel, ScoreJobError> {
        let digest = digest(classifier.vectorizer(), &[&model_dir, &labels_dir])?;
        Ok(ScoringModel {
            classifier,
            digest,
            description,
            model_dir,
            labels_dir,
            bundle_dir: None,
        })
    }

    /// Writes a self-contained copy to `dir`: `vectorizer/`, `model/` and
    /// `labels/` as the cache stores them, and `bundle.json`. It needs no
    /// pipeline, cache or working directory to load, so it can be copied to
    /// the machines that score.
    ///
    /// Written under a temp name beside `dir` and renamed into place. `dir`
    /// may be new, empty, or exactly a bundle (nothing else in it, see
    /// [`check_bundle_tree`]), which is replaced; anything else is refused
    /// with nothing removed. The copy is checked against this model's digest,
    /// so files changed on disk since it was loaded are refused, not saved
    /// under its name.
    pub fn save_bundle(&self, dir: &Path) -> Result<(), ScoreJobError> {
        self.check_save_target(dir)?;
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| out_err(parent, &e))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into());
        let tmp = parent.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            pipe_core::fsutil::unique_suffix()
        ));
        let _scratch = pipe_core::interrupt::ScratchGuard::new(tmp.clone());
        if let Err(e) = self.write_bundle(&tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let replaced = replace_dir(dir, &tmp, parent, &name);
        let _ = std::fs::remove_dir_all(&tmp);
        replaced?;
        pipe_core::fsutil::sync_dir(parent).map_err(|e| out_err(parent, &e))
    }

    /// `dir` may be written: not inside the files this model was loaded
    /// from, and new, empty or exactly a bundle.
    fn check_save_target(&self, dir: &Path) -> Result<(), ScoreJobError> {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .map_err(|e| out_err(dir, &e))?
                .next()
                .is_none();
        if dir.exists() && !empty {
            check_bundle_tree(dir).map_err(|why| {
                out_err(
                    dir,
                    &format_args!("exists and is not a bundle ({why}); nothing was removed: pick a new or empty directory, or remove it yourself"),
                )
            })?;
        }
        // Saving a bundle over the bundle it was loaded from is a re-save
        // (the copy is made and checked before anything is replaced); any
        // other overlap would copy the model into itself or replace its source.
        let target = resolve_path(dir).map_err(|e| out_err(dir, &e))?;
        let own_bundle = self
            .bundle_dir
            .as_deref()
            .map(std::fs::canonicalize)
            .transpose()
            .map_err(|e| out_err(dir, &e))?;
        if own_bundle.as_ref() == Some(&target) {
            return Ok(());
        }
        for source in [&self.model_dir, &self.labels_dir]
            .into_iter()
            .chain(&self.bundle_dir)
        {
            let source = std::fs::canonicalize(source).map_err(|e| out_err(source, &e))?;
            if target.starts_with(&source) || source.starts_with(&target) {
                return Err(out_err(
                    dir,
                    &format_args!(
                        "overlaps {}, which this model was loaded from; save it elsewhere",
                        source.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The bundle's files, under `tmp`, checked against the digest.
    fn write_bundle(&self, tmp: &Path) -> Result<(), ScoreJobError> {
        std::fs::create_dir_all(tmp.join("vectorizer")).map_err(|e| out_err(tmp, &e))?;
        self.classifier
            .vectorizer()
            .save(&tmp.join("vectorizer"))
            .map_err(|e| out_err(tmp, &e))?;
        copy_tree(&self.model_dir, &tmp.join("model"))?;
        copy_tree(&self.labels_dir, &tmp.join("labels"))?;
        let copied = digest(
            self.classifier.vectorizer(),
            &[&tmp.join("model"), &tmp.join("labels")],
        )?;
        if copied != self.digest {
            return Err(ScoreJobError::Model(format!(
                "the files at {} changed since this model was loaded; load it again before saving",
                self.model_dir.parent().unwrap_or(&self.model_dir).display()
            )));
        }
        let mut files = BTreeMap::new();
        for part in BUNDLE_PARTS {
            list_plain_tree(tmp, &tmp.join(part), 0, &mut files).map_err(|e| out_err(tmp, &e))?;
        }
        let record = BundleRecord {
            model_type: self.classifier.model_type().to_string(),
            description: self.description.clone(),
            pipe_version: env!("CARGO_PKG_VERSION").to_string(),
            files,
        };
        pipe_core::fsutil::save_json(&tmp.join(BUNDLE_FILE), &record)
            .map_err(|e| out_err(tmp, &e))?;
        pipe_core::fsutil::sync_tree(tmp).map_err(|e| out_err(tmp, &e))
    }

    /// Loads a bundle written by [`Self::save_bundle`].
    pub fn load_bundle(dir: &Path) -> Result<ScoringModel, ScoreJobError> {
        check_bundle_tree(dir).map_err(|why| {
            ScoreJobError::Model(format!("{}: not a bundle: {why}", dir.display()))
        })?;
        let record: BundleRecord =
            pipe_core::fsutil::load_json(&dir.join(BUNDLE_FILE)).map_err(model_err)?;
        let vectorizer = Vectorizer::load(&dir.join("vectorizer")).map_err(model_err)?;
        let model = crate::load_model(&dir.join("model"))?;
        let labels = LabelSet::load(&dir.join("labels")).map_err(model_err)?;
        let classifier = TextClassifier::new(vectorizer, model, labels, tch::Device::Cpu)?;
        let description = format!("{} (bundle {})", record.description, dir.display());
        let mut model = ScoringModel::new(
            classifier,
            description,
            dir.join("model"),
            dir.join("labels"),
        )?;
        model.bundle_dir = Some(dir.to_path_buf());
        Ok(model)
    }
}

/// Limits on what a bundle may hold: loading reads every file.
const MAX_BUNDLE_FILES: usize = 10_000;
const MAX_BUNDLE_BYTES: u64 = 16 << 30;
const MAX_BUNDLE_DEPTH: usize = 8;

const BUNDLE_PARTS: [&str; 3] = ["vectorizer", "model", "labels"];

/// Whether `dir` is exactly a bundle: `bundle.json` (a bundle record) and
/// the directories `vectorizer/`, `model/` and `labels/`, nothing else;
/// inside them only regular files and directories (no links, devices or
/// pipes), within the size limits, and, where the record lists them, exactly
/// the files it lists at their sizes. `Err` says what is not.
pub fn check_bundle_tree(dir: &Path) -> Result<(), String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    names.sort();
    let expected = ["bundle.json", "labels", "model", "vectorizer"];
    if names != expected {
        return Err(format!(
            "a bundle holds exactly {}; this holds {}",
            expected.join(", "),
            names.join(", ")
        ));
    }
    let record = dir.join(BUNDLE_FILE);
    let meta = std::fs::symlink_metadata(&record).map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err("bundle.json is not a regular file of at most 1 MiB".into());
    }
    let record_bytes = std::fs::read(&record).map_err(|e| e.to_string())?;
    let record: BundleRecord =
        serde_json::from_slice(&record_bytes).map_err(|e| format!("bundle.json: {e}"))?;
    let mut files = BTreeMap::new();
    for part in BUNDLE_PARTS {
        list_plain_tree(dir, &dir.join(part), 0, &mut files)?;
    }
    if !record.files.is_empty() && files != record.files {
        let extra: Vec<&String> = files
            .keys()
            .filter(|f| !record.files.contains_key(*f))
            .collect();
        let changed: Vec<&String> = record
            .files
            .keys()
            .filter(|f| files.get(*f) != record.files.get(*f))
            .collect();
        return Err(format!("its files differ from those bundle.json lists (not listed: {extra:?}; missing or resized: {changed:?})"));
    }
    Ok(())
}

/// Adds the regular files under `dir` to `files` (path relative to `root`
/// → size), refusing anything else and staying within the size limits.
fn list_plain_tree(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut BTreeMap<String, u64>,
) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if depth > MAX_BUNDLE_DEPTH {
        return Err(format!(
            "{} lies more than {MAX_BUNDLE_DEPTH} directories deep",
            dir.display()
        ));
    }
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            list_plain_tree(root, &path, depth + 1, files)?;
        } else if meta.is_file() {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            files.insert(name, meta.len());
            let total: u64 = files.values().sum();
            if files.len() > MAX_BUNDLE_FILES || total > MAX_BUNDLE_BYTES {
                return Err(format!(
                    "more than {MAX_BUNDLE_FILES} files or {} GiB",
                    MAX_BUNDLE_BYTES >> 30
                ));
            }
        } else {
            return Err(format!(
                "{} is not a regular file or directory",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Puts the finished bundle `tmp` at `dir`, replacing an empty directory or
/// an old bundle there; on failure the old bundle is put back.
fn replace_dir(dir: &Path, tmp: &Path, parent: &Path, name: &str) -> Result<(), ScoreJobError> {
    if !dir.exists() {
        return std::fs::rename(tmp, dir).map_err(|e| out_err(dir, &e));
    }
    // Not scratch: an interrupt between the two renames must leave the old
    // bundle beside `dir`, not remove it.
    let old = parent.join(format!(
        ".{name}.old-{}",
        pipe_core::fsutil::unique_suffix()
    ));
    std::fs::rename(dir, &old).map_err(|e| out_err(dir, &e))?;
    // What was moved aside is what gets removed: it must still be empty or
    // a bundle (another process may have written to `dir` since it was checked).
    let still_ours = std::fs::read_dir(&old)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
        || check_bundle_tree(&old).is_ok();
    if !still_ours {
        let _ = std::fs::rename(&old, dir);
        return Err(out_err(
            dir,
            &"changed while the bundle was being written; nothing was removed",
        ));
    }
    if let Err(e) = std::fs::rename(tmp, dir) {
        // Another save got there first, or the disk refused: keep what was there.
        let _ = std::fs::rename(&old, dir);
        let _ = std::fs::remove_dir_all(&old);
        return Err(out_err(dir, &e));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// `path` made absolute with its existing part resolved (links followed),
/// for comparing a directory not yet created with existing ones.
fn resolve_path(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut resolved = std::fs::canonicalize(existing)?;
    resolved.extend(rest.iter().rev());
    Ok(resolved)
}

fn out_err(path: &Path, e: &dyn std::fmt::Display) -> ScoreJobError {
    ScoreJobError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Copies the regular files and directories of `from` (no links followed).
fn copy_tree(from: &Path, to: &Path) -> Result<(), ScoreJobError> {
    let err = |path: &Path, e: std::io::Error| ScoreJobError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(to).map_err(|e| err(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| err(from, e))? {
        let path = entry.map_err(|e| err(from, e))?.path();
        let target = to.join(path.file_name().expect("a directory entry has a name"));
        let meta = std::fs::symlink_metadata(&path).map_err(|e| err(&path, e))?;
        if meta.is_dir() {
            copy_tree(&path, &target)?;
        } else if meta.is_file() {
            std::fs::copy(&path, &target).map_err(|e| err(&path, e))?;
        } else {
            return Err(ScoreJobError::Output {
                path,
                message:
                    "is not a regular file or directory; a model's files are copied, not links"
                        .into(),
            });
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
pub fn classifier_from_run(
    pipeline: &Pipeline,
    report: &RunReport,
) -> Result<ScoringModel, ScoreJobError> {
    let predict = predict_stage(pipeline)?;
    let input_dir = |port: &str| -> Result<(usize, PathBuf), ScoreJobError> {
        let (upstream, output) = predict.inputs.get(port).ok_or_else(|| {
            ScoreJobError::Model(format!("stage `{}` has no `{port}` input", predict.name))
        })?;
        Ok((
            *upstream,
            stored(report, &pipeline.stages[*upstream].name, output)?,
        ))
    };
    let (_, model_dir) = input_dir(Predict::MODEL.name)?;
    let (_, labels_dir) = input_dir(Predict::LABELS.name)?;
    let (tensors_stage, tensors_dir) = input_dir(Predict::TENSORS.name)?;

    let (vectorizer, vectorizer_from) = match vectorizer_output(pipeline) {
        Some((stage, port)) => (
            Vectorizer::load(&stored(report, &stage, &port)?).map_err(model_err)?,
            format!("{stage}.{port}"),
        ),
        None => {
            let tensors_stage = &pipeline.stages[tensors_stage];
            let (vocab_stage, vocab_port) = tensors_stage
                .inputs
                .get(ToTensors::VOCAB.name)
                .ok_or_else(|| {
                    ScoreJobError::Model(format!(
                        "stage `{}` has no `vocab` input",
                        tensors_stage.name
                    ))
                })?;
            let vocab = Vocabulary::load(&stored(
                report,
                &pipeline.stages[*vocab_stage].name,
                vocab_port,
            )?)
            .map_err(model_err)?;
            let tensors = TokenTensors::load(&tensors_dir).map_err(model_err)?;
            let options = notebook_encoding(&tensors);
            let from = format!(
                "{}.{vocab_port} ({} tokens to {}, {:?}-padded)",
                pipeline.stages[*vocab_stage].name,
                options.max_len,
                options.max_len,
                options.padding
            );
            (Vectorizer::from_vocabulary(vocab, options), from)
        }
    };
    let model = crate::load_model(&model_dir)?;
    let labels = LabelSet::load(&labels_dir).map_err(model_err)?;
    let classifier = TextClassifier::new(vectorizer, model, labels, tch::Device::Cpu)?;
    let description = format!(
        "{} from `{}`, vectorizer from `{vectorizer_from}`",
        classifier.model_type(),
        predict.name
    );
    ScoringModel::new(classifier, description, model_dir, labels_dir)
}

fn predict_stage(pipeline: &Pipeline) -> Result<&pipe_core::PipelineStage, ScoreJobError> {
    let predicts: Vec<_> = pipeline
        .stages
        .iter()
        .filter(|s| s.kind == "predict")
        .collect();
    match predicts.as_slice() {
        [one] => Ok(one),
        [] => Err(ScoreJobError::Model(format!(
            "{} has no `predict` stage: nothing says which model scores texts",
            pipeline.source
        ))),
        many => Err(ScoreJobError::Model(format!(
            "{} has {} `predict` stages ({}); keep one in a copy of the pipeline",
            pipeline.source,
            many.len(),
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The first stage output of type `vectorizer`, as (stage, port).
fn vectorizer_output(pipeline: &Pipeline) -> Option<(String, String)> {
    pipeline.stages.iter().find_map(|s| {
        s.stage
            .outputs()
            .into_iter()
            .find(|p| p.type_name == Vectorizer::TYPE_NAME)
            .map(|p| (s.name.clone(), p.name.to_string()))
    })
}

/// The notebook script's encoding of tensors like these.
fn notebook_encoding(tensors: &TokenTensors) -> VectorizerOptions {
    let width = tensors.ids.size().get(1).copied().unwrap_or(0).max(0) as usize;
    let padding = match tensors.padding {
        PaddingSide::Pre => Side::Pre,
        _ => Side::Post,
    };
    VectorizerOptions {
        max_len: width,
        padding,
        truncating: Side::Post,
        ..VectorizerOptions::default()
    }
}

fn stored(report: &RunReport, stage: &str, port: &str) -> Result<PathBuf, ScoreJobError> {
    crate::output_dir(report, &format!("{stage}.{port}")).map_err(ScoreJobError::from)
}

fn model_err(e: impl std::fmt::Display) -> ScoreJobError {
    ScoreJobError::Model(e.to_string())
}

/// blake3 over the vectorizer's vocabulary and settings and every file of `dirs`.
fn digest(vectorizer: &Vectorizer, dirs: &[&Path]) -> Result<String, ScoreJobError> {
    let mut hasher = blake3::Hasher::new();
    for token in &vectorizer.vocab.tokens {
        hasher.update(token.as_bytes());
        hasher.update(&[0]);
    }
    hasher.update(
        serde_json::to_string(&vectorizer.options)
            .expect("options serialize")
            .as_bytes(),
    );
    for dir in dirs {
        hash_tree(&mut hasher, dir)?;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn hash_tree(hasher: &mut blake3::Hasher, dir: &Path) -> Result<(), ScoreJobError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(model_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        hasher.update(entry.file_name().unwrap_or_default().as_encoded_bytes());
        // The entry itself, not what a link points to: a link to a device
        // would be read forever.
        let meta = std::fs::symlink_metadata(&entry).map_err(model_err)?;
        if meta.is_dir() {
            hash_tree(hasher, &entry)?;
        } else if meta.is_file() {
            hasher
                .update_reader(std::fs::File::open(&entry).map_err(model_err)?)
                .map_err(model_err)?;
        } else {
            return Err(ScoreJobError::Model(format!(
                "{}: not a regular file or directory",
                entry.display()
            )));
        }
    }
    Ok(())
}
