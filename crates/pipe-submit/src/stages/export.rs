//! The `export` stage: reports and metrics copied out of the cache.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pipe_core::{
    fsutil, stage, Artifacts, Files, InvalidSetting, JsonDoc, Optional, Port, PortOf, Stage,
    StageContext, StageError,
};
use serde::{Deserialize, Serialize};

/// Copies files and JSON documents out of the cache into a directory people
/// look at (`out/...`), atomically, after a run or a cache hit alike. Export
/// paths are not part of any training stage's key, so moving them retrains nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    pub dir: PathBuf,
    /// File name for the `json` input.
    pub json_name: String,
}

impl Default for Export {
    fn default() -> Self {
        Export {
            dir: PathBuf::from("out"),
            json_name: "metrics.json".into(),
        }
    }
}

impl Export {
    pub const FILES: PortOf<Files, Optional> =
        PortOf::optional("files", "files to copy as they are");
    pub const JSON: PortOf<JsonDoc, Optional> =
        PortOf::optional("json", "a JSON document, written as `json_name`");
    pub const EXPORTED: PortOf<Files> = PortOf::new("exported", "what was exported");
}

#[stage(
    kind = "export",
    summary = "copy reports and metrics out of the cache into a directory, atomically"
)]
impl Stage for Export {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::FILES.port(), Self::JSON.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::EXPORTED.port()]
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        fsutil::check_file_name(&self.json_name)
            .map_err(|e| InvalidSetting::new("json_name", format!("must be one file name: {e}")))
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn build_independent(&self) -> bool {
        // Its outputs are its inputs' bytes, and one JSON document.
        true
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, inputs: &Artifacts, _ctx: &StageContext) -> Result<Artifacts, StageError> {
        let mut files = inputs
            .read_optional(&Self::FILES)?
            .map(|f| f.files.clone())
            .unwrap_or_default();
        if let Some(doc) = inputs.read_optional(&Self::JSON)? {
            files.insert(
                self.json_name.clone(),
                serde_json::to_vec_pretty(&doc.0).expect("json"),
            );
        }
        let mut out = Artifacts::new();
        out.put(&Self::EXPORTED, Files { files });
        Ok(out)
    }
    fn publish(
        &self,
        outputs: &BTreeMap<String, PathBuf>,
        ctx: &StageContext,
    ) -> Result<(), StageError> {
        let stored = &outputs["exported"];
        let entries = std::fs::read_dir(stored).map_err(|e| StageError::io(stored, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StageError::io(stored, e))?;
            let bytes = std::fs::read(entry.path()).map_err(|e| StageError::io(entry.path(), e))?;
            let target = self.dir.join(entry.file_name());
            if std::fs::read(&target).ok().as_deref() != Some(&bytes[..]) {
                fsutil::atomic_write(&target, &bytes).map_err(|e| StageError::io(&target, e))?;
            }
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        ctx.info(format!("{}: {}", self.dir.display(), names.join(", ")));
        Ok(())
    }
}
