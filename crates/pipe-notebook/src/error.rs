//! The one error type of this crate: which file, where in it, what is wrong, what to do.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub path: PathBuf,
    /// Byte offset in the file (in the decompressed stream for compressed pickles).
    pub offset: Option<u64>,
    pub problem: String,
    pub hint: String,
}

impl LoadError {
    pub fn new(
        path: &Path,
        offset: Option<u64>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        LoadError {
            path: path.to_path_buf(),
            offset,
            problem: problem.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(offset) = self.offset {
            write!(f, ": at byte {offset}")?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.hint.is_empty() {
            write!(f, " ({})", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}
