//! Fingerprints the workspace's sources for `BUILD_ID`: every file under
//! `crates/` and the lock file, hashed in path order (FNV-1a, 64 bits: a
//! change detector, not a defence). Cargo reruns this when any of them changes.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest.join("../..");
    let crates = workspace.join("crates");
    let lock = workspace.join("Cargo.lock");
    let mut files = Vec::new();
    collect(&crates, &mut files);
    files.push(lock.clone());
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for file in &files {
        if let Ok(bytes) = std::fs::read(file) {
            feed(file.strip_prefix(&workspace).unwrap_or(file).to_string_lossy().as_bytes());
            feed(&(bytes.len() as u64).to_le_bytes());
            feed(&bytes);
        }
    }
    println!("cargo:rustc-env=PIPE_SOURCE_HASH={hash:016x}");
    println!("cargo:rerun-if-changed={}", crates.display());
    println!("cargo:rerun-if-changed={}", lock.display());
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}
