//! Cache keys: what a stage's result depends on, hashed into its cache address,
//! and compared field by field to say why a stage is stale.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything a stage's outputs depend on. Its blake3 hash is the cache address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageKey {
    pub kind: String,
    pub code_version: u32,
    /// The build that computed it ([`crate::BUILD_ID`]: the version and a
    /// hash of the workspace's sources), so a new build never reuses an older
    /// one's outputs; empty for stages whose outputs do not depend on it.
    #[serde(default)]
    pub build: String,
    /// Canonical config: object keys sorted, numbers as parsed (`1e-3` == `0.001`).
    pub config: Value,
    /// Input port → digest of the upstream output.
    pub inputs: BTreeMap<String, String>,
    /// External file path → blake3 of its contents.
    pub files: BTreeMap<String, String>,
    /// Environment that changes results: device kind, seed.
    pub env: BTreeMap<String, String>,
}

impl StageKey {
    /// The cache address: blake3 of the key's canonical JSON.
    pub fn hash(&self) -> String {
        let value = canonical_json(&serde_json::to_value(self).expect("keys serialize"));
        blake3::hash(value.to_string().as_bytes())
            .to_hex()
            .to_string()
    }

    /// The differences from an older key, for `pipe status`.
    pub fn diff(&self, old: &StageKey) -> Vec<StaleReason> {
        let mut reasons = Vec::new();
        if self.kind != old.kind {
            reasons.push(StaleReason::Kind {
                old: old.kind.clone(),
                new: self.kind.clone(),
            });
        }
        if self.code_version != old.code_version {
            reasons.push(StaleReason::CodeVersion {
                old: old.code_version,
                new: self.code_version,
            });
        }
        if self.build != old.build {
            reasons.push(StaleReason::Build {
                old: old.build.clone(),
                new: self.build.clone(),
            });
        }
        diff_values("", &old.config, &self.config, &mut reasons);
        for (port, digest) in &self.inputs {
            if old.inputs.get(port) != Some(digest) {
                reasons.push(StaleReason::Input { port: port.clone() });
            }
        }
        for (path, digest) in &self.files {
            if old.files.get(path) != Some(digest) {
                reasons.push(StaleReason::File { path: path.clone() });
            }
        }
        for (name, value) in &self.env {
            if old.env.get(name) != Some(value) {
                reasons.push(StaleReason::Env {
                    name: name.clone(),
                    old: old.env.get(name).cloned().unwrap_or_default(),
                    new: value.clone(),
                });
            }
        }
        reasons
    }
}

/// One reason a stage's key differs from the one it last ran with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StaleReason {
    Kind {
        old: String,
        new: String,
    },
    CodeVersion {
        old: u32,
        new: u32,
    },
    Build {
        old: String,
        new: String,
    },
    Config {
        field: String,
        old: Value,
        new: Value,
    },
    Input {
        port: String,
    },
    File {
        path: String,
    },
    Env {
        name: String,
        old: String,
        new: String,
    },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::Kind { old, new } => write!(f, "kind changed from `{old}` to `{new}`"),
            StaleReason::CodeVersion { old, new } => {
                write!(f, "code version changed from {old} to {new}")
            }
            StaleReason::Build { old, new } => write!(
                f,
                "computed by another build of pipe ({old}; this one is {new})"
            ),
            StaleReason::Config { field, old, new } => {
                write!(f, "config `{field}` changed from {old} to {new}")
            }
            StaleReason::Input { port } => write!(f, "input `{port}` changed"),
            StaleReason::File { path } => write!(f, "file `{path}` changed"),
            StaleReason::Env { name, old, new } => {
                write!(f, "{name} changed from `{old}` to `{new}`")
            }
        }
    }
}

fn diff_values(prefix: &str, old: &Value, new: &Value, out: &mut Vec<StaleReason>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let field = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                diff_values(
                    &field,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if old != new => out.push(StaleReason::Config {
            field: prefix.to_string(),
            old: old.clone(),
            new: new.clone(),
        }),
        _ => {}
    }
}

/// Sorts object keys recursively, so equal values always print the same way
/// whatever order the YAML gave them in.
pub fn canonical_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut sorted: Vec<(&String, &Value)> = map.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical_json(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(config: Value) -> StageKey {
        StageKey {
            kind: "k".into(),
            code_version: 1,
            build: crate::BUILD_ID.to_string(),
            config: canonical_json(&config),
            inputs: BTreeMap::new(),
            files: BTreeMap::new(),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn equal_configs_hash_equal_whatever_the_key_order() {
        assert_eq!(
            key(json!({"a": 1, "b": {"x": 1, "y": 2}})).hash(),
            key(json!({"b": {"y": 2, "x": 1}, "a": 1})).hash()
        );
    }

    #[test]
    fn any_change_changes_the_hash_and_is_explained() {
        let old = key(json!({"lr": 0.001, "epochs": 15}));
        let new = key(json!({"lr": 0.002, "epochs": 15}));
        assert_ne!(old.hash(), new.hash());
        let reasons = new.diff(&old);
        assert_eq!(reasons.len(), 1);
        assert_eq!(
            reasons[0].to_string(),
            "config `lr` changed from 0.001 to 0.002"
        );
        let mut env = new.clone();
        env.env.insert("seed".into(), "7".into());
        assert_ne!(env.hash(), new.hash());
        let mut code = new.clone();
        code.code_version = 2;
        assert_ne!(code.hash(), new.hash());
        assert!(matches!(
            code.diff(&new)[0],
            StaleReason::CodeVersion { old: 1, new: 2 }
        ));
        let mut rebuilt = key(json!({"a": 1}));
        rebuilt.build = "0.0.9+0000000000000000".into();
        assert_ne!(
            rebuilt.hash(),
            key(json!({"a": 1})).hash(),
            "another build's key is another address"
        );
        assert!(matches!(
            &key(json!({"a": 1})).diff(&rebuilt)[0],
            StaleReason::Build { .. }
        ));
    }
}
