//! Fingerprints the workspace's sources for `BUILD_ID`: every source file
//! compiled into `pipe` under `crates/` (Rust, manifests, the C++/CUDA shims,
//! Python a crate's `src/` embeds) and the lock file, hashed in path order
//! (FNV-1a, 64 bits: a change detector, not a defence). Cargo reruns this
//! when any of them changes. Other files there (the Python package's
//! sources, its built module) are not part of a build's identity.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest.join("../..");
    let crates = workspace.join("crates");
    let lock = workspace.join("Cargo.lock");
    let mut files = Vec::new();
    collect(&crates, &crates, &mut files);
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
            feed(
                file.strip_prefix(&workspace)
                    .unwrap_or(file)
                    .to_string_lossy()
                    .as_bytes(),
            );
            feed(&(bytes.len() as u64).to_le_bytes());
            feed(&bytes);
        }
    }
    println!("cargo:rustc-env=PIPE_SOURCE_HASH={hash:016x}");
    // Each file, not the folder: a folder makes cargo rerun for any file in
    // it. A new source file is reached through a `mod` line or a manifest
    // edit, both watched.
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.toml").display()
    );
}

fn collect(crates: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(crates, &path, out);
        } else if is_source(path.strip_prefix(crates).unwrap_or(&path)) {
            out.push(path);
        }
    }
}

/// `path` is relative to `crates/`: `pipe-exec/src/stages/python_worker.py`.
fn is_source(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let in_src = path
        .components()
        .nth(1)
        .is_some_and(|c| c.as_os_str() == "src");
    matches!(ext, "rs" | "toml" | "c" | "cc" | "cpp" | "cu" | "h" | "hpp")
        || (ext == "py" && in_src)
}
