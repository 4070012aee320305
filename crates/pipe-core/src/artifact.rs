//! Artifact values: what flows between stages and what the cache stores.
//!
//! An artifact is any type implementing [`Artifact`]; it knows how to save itself
//! into a directory of files. The cache digests those files, so an artifact's
//! digest is the digest of exactly what is stored. Loading back goes through the
//! [`ArtifactType`] registry, filled at link time by [`register_artifact!`](crate::register_artifact).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

/// Why an artifact could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("no artifact type named `{0}` is registered")]
    UnknownType(String),
}

impl ArtifactError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArtifactError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn invalid(path: impl Into<PathBuf>, message: impl fmt::Display) -> Self {
        ArtifactError::Invalid {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// A value produced by a stage.
///
/// Tensors are `Send` but not `Sync`, so artifacts are shared with `Rc` inside
/// one run; a run is single-threaded at the stage level.
pub trait Artifact: Any + Send + fmt::Debug {
    /// The registered type name, the one stages use in their port declarations.
    fn type_name(&self) -> &'static str;
    /// Writes the artifact's files into `dir`, which exists and is empty.
    fn save(&self, dir: &Path) -> Result<(), ArtifactError>;
    /// A one-line description for logs (`i64[30000, 64]`).
    fn summary(&self) -> String;
    fn as_any(&self) -> &dyn Any;
}

/// An artifact type that can be read back from the files [`Artifact::save`] wrote.
pub trait LoadArtifact: Artifact + Sized {
    const TYPE_NAME: &'static str;
    fn load(dir: &Path) -> Result<Self, ArtifactError>;
}

/// A registered artifact type: its name and how to load it from the cache.
pub struct ArtifactType {
    pub name: &'static str,
    pub doc: &'static str,
    pub load: fn(&Path) -> Result<Box<dyn Artifact>, ArtifactError>,
}

inventory::collect!(ArtifactType);

#[doc(hidden)]
pub fn load_boxed<T: LoadArtifact>(dir: &Path) -> Result<Box<dyn Artifact>, ArtifactError> {
    Ok(Box::new(T::load(dir)?))
}

/// Registers an artifact type so the cache can load it by name.
#[macro_export]
macro_rules! register_artifact {
    ($ty:ty, $doc:expr) => {
        $crate::inventory::submit! {
            $crate::ArtifactType {
                name: <$ty as $crate::LoadArtifact>::TYPE_NAME,
                doc: $doc,
                load: $crate::artifact::load_boxed::<$ty>,
            }
        }
    };
}

/// Looks up a registered artifact type.
pub fn artifact_type(name: &str) -> Option<&'static ArtifactType> {
    inventory::iter::<ArtifactType>
        .into_iter()
        .find(|t| t.name == name)
}

/// Loads an artifact of the named type from a directory written by `save`
/// (boxed, so it can move to another thread; `Rc::from` shares it in a run).
pub fn load_artifact(type_name: &str, dir: &Path) -> Result<Box<dyn Artifact>, ArtifactError> {
    let ty = artifact_type(type_name)
        .ok_or_else(|| ArtifactError::UnknownType(type_name.to_string()))?;
    (ty.load)(dir)
}

/// Named artifacts: a stage's inputs, or the outputs it returns.
#[derive(Default, Debug, Clone)]
pub struct Artifacts {
    map: BTreeMap<String, Rc<dyn Artifact>>,
}

impl Artifacts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Artifact) -> &mut Self {
        self.map.insert(name.into(), Rc::new(value));
        self
    }

    /// Stores `value` as the output `port` declares (see [`crate::PortOf`]).
    pub fn put<T: Artifact + LoadArtifact, P: crate::Presence>(
        &mut self,
        port: &crate::PortOf<T, P>,
        value: T,
    ) -> &mut Self {
        self.insert(port.name, value)
    }

    /// The input `port` declares, of the type it declares.
    pub fn read<T: Artifact + LoadArtifact>(
        &self,
        port: &crate::PortOf<T>,
    ) -> Result<&T, crate::StageError> {
        self.get(port.name)
    }

    /// An optional input (`PortOf::optional`): `None` when left unwired.
    pub fn read_optional<T: Artifact + LoadArtifact>(
        &self,
        port: &crate::PortOf<T, crate::Optional>,
    ) -> Result<Option<&T>, crate::StageError> {
        self.get_opt(port.name)
    }

    /// The input an [`AnyPort`](crate::AnyPort) declares, whatever its type.
    pub fn read_any(&self, port: &crate::AnyPort) -> Result<&Rc<dyn Artifact>, crate::StageError> {
        self.get_rc(port.name)
            .ok_or_else(|| crate::StageError::MissingInput(port.name.to_string()))
    }

    pub fn insert_rc(&mut self, name: impl Into<String>, value: Rc<dyn Artifact>) -> &mut Self {
        self.map.insert(name.into(), value);
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn get_rc(&self, name: &str) -> Option<&Rc<dyn Artifact>> {
        self.map.get(name)
    }

    /// The artifact `name`, downcast to `T`; a typed error names what is wrong.
    pub fn get<T: Artifact>(&self, name: &str) -> Result<&T, crate::StageError> {
        let value = self
            .map
            .get(name)
            .ok_or_else(|| crate::StageError::MissingInput(name.to_string()))?;
        value
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| crate::StageError::WrongInputType {
                port: name.to_string(),
                found: value.type_name().to_string(),
            })
    }

    /// Like [`get`](Self::get) for an optional input.
    pub fn get_opt<T: Artifact>(&self, name: &str) -> Result<Option<&T>, crate::StageError> {
        if self.map.contains_key(name) {
            self.get(name).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Rc<dyn Artifact>)> {
        self.map.iter()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Generic artifact types: documents and files. The domain's data types
// (arrays, vocabularies, label sets, tables) live in `pipe-data`.
// ---------------------------------------------------------------------------

/// A free-form JSON document (metrics, reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonDoc(pub serde_json::Value);

/// Implements [`Artifact`] and [`LoadArtifact`] for a serde type stored as
/// one JSON file, and registers it: `json_artifact!(Type, "type_name",
/// "file.json", "doc", |value| summary)`.
#[macro_export]
macro_rules! json_artifact {
    ($ty:ty, $name:expr, $file:expr, $doc:expr, |$s:ident| $summary:expr) => {
        impl $crate::Artifact for $ty {
            fn type_name(&self) -> &'static str {
                <Self as $crate::LoadArtifact>::TYPE_NAME
            }
            fn save(&self, dir: &::std::path::Path) -> Result<(), $crate::ArtifactError> {
                $crate::fsutil::save_json(&dir.join($file), self)
            }
            fn summary(&self) -> String {
                let $s = self;
                $summary
            }
            fn as_any(&self) -> &dyn ::std::any::Any {
                self
            }
        }
        impl $crate::LoadArtifact for $ty {
            const TYPE_NAME: &'static str = $name;
            fn load(dir: &::std::path::Path) -> Result<Self, $crate::ArtifactError> {
                $crate::fsutil::load_json(&dir.join($file))
            }
        }
        $crate::register_artifact!($ty, $doc);
    };
}

json_artifact!(
    JsonDoc,
    "json",
    "doc.json",
    "a JSON document (metrics, reports)",
    |_s| "json".to_string()
);

/// Files a stage produced for people (a CSV, a plot), kept by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Files {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Artifact for Files {
    fn type_name(&self) -> &'static str {
        Self::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        for (name, bytes) in &self.files {
            crate::fsutil::check_file_name(name).map_err(|m| {
                ArtifactError::io(
                    dir,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, m),
                )
            })?;
            let path = dir.join(name);
            fs::write(&path, bytes).map_err(|e| ArtifactError::io(&path, e))?;
        }
        Ok(())
    }
    fn summary(&self) -> String {
        self.files.keys().cloned().collect::<Vec<_>>().join(", ")
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LoadArtifact for Files {
    const TYPE_NAME: &'static str = "files";
    fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let mut files = BTreeMap::new();
        let entries = fs::read_dir(dir).map_err(|e| ArtifactError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ArtifactError::io(dir, e))?;
            let path = entry.path();
            let bytes = fs::read(&path).map_err(|e| ArtifactError::io(&path, e))?;
            files.insert(entry.file_name().to_string_lossy().into_owned(), bytes);
        }
        Ok(Files { files })
    }
}

register_artifact!(Files, "named files for people (CSV, plots)");
