//! The `read_records` stage: a file of raw records → a `frame`, for a stage
//! (a Python function, say) that works on the records before `vectorize`.

use std::path::PathBuf;

use pipe_core::{stage, Artifacts, Port, PortOf, Stage, StageContext, StageError};
use serde::{Deserialize, Serialize};

use crate::{read_frame, Frame, FrameFormat};

/// Reads JSON records, JSON lines, CSV or Parquet into a frame, every column kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadRecords {
    pub path: PathBuf,
    pub format: FrameFormat,
    /// Keep only the first N records.
    pub rows: Option<usize>,
}

impl ReadRecords {
    pub const RECORDS: PortOf<Frame> = PortOf::new("records", "the file's records, every column");
}

#[stage(
    kind = "read_records",
    summary = "a file of records (JSON/JSON lines/CSV/Parquet) → a frame"
)]
impl Stage for ReadRecords {
    fn inputs(&self) -> Vec<Port> {
        vec![]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::RECORDS.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn external_files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn run(&self, _inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let mut frame = read_frame(&self.path, self.format).map_err(StageError::other)?;
        if let Some(rows) = self.rows {
            frame = frame.head(Some(rows));
        }
        ctx.info(format!(
            "{}: {} records, columns {}",
            self.path.display(),
            frame.height(),
            frame
                .get_column_names()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut out = Artifacts::new();
        out.put(&Self::RECORDS, Frame(frame));
        Ok(out)
    }
}
