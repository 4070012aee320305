//! Small file helpers: atomic writes, fsync, JSON files, file digests.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use crate::artifact::ArtifactError;

/// Checks that `name` is one plain file name: not empty, not `.` or `..`, no
/// path separator, not absolute, no NUL. Names that come from configs or
/// artifacts are joined to a directory; anything else could write outside it.
pub fn check_file_name(name: &str) -> Result<(), NotAFileName> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).file_name().is_some_and(|n| n == name);
    if plain {
        Ok(())
    } else {
        Err(NotAFileName(name.to_string()))
    }
}

/// A name from a config or an artifact that is not one plain file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a plain file name (no `/`, `\\`, `..` or absolute paths)")]
pub struct NotAFileName(pub String);

/// Writes `bytes` to `path` so that readers see either the old file or the new
/// one, never a partial write: temp file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        unique_suffix()
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A suffix unique within this process, for temp names.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// fsyncs a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// fsyncs every file under `dir`, then the directories themselves.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// blake3 of a file's bytes, as hex.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

pub fn save_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), ArtifactError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ArtifactError::invalid(path, e))?;
    fs::write(path, bytes).map_err(|e| ArtifactError::io(path, e))
}

pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T, ArtifactError> {
    let bytes = fs::read(path).map_err(|e| ArtifactError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ArtifactError::invalid(path, e))
}

#[cfg(test)]
mod file_name_tests {
    use super::check_file_name;

    #[test]
    fn only_plain_file_names_pass() {
        for good in ["metrics.json", "a b.csv", ".hidden", "x..y"] {
            assert!(check_file_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x.json",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "nul\0x",
        ] {
            let err = check_file_name(bad).unwrap_err();
            assert_eq!(err, super::NotAFileName(bad.to_string()));
            assert!(
                err.to_string().contains("not a plain file name"),
                "{bad}: {err}"
            );
        }
    }
}
