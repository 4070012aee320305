//! Links libtorch so `pipe` (and `pipe-testing` and the facade's example,
//! which use this file too) runs without LD_LIBRARY_PATH, with CUDA when the
//! libtorch has it. torch-sys passes its link arguments to its own crate only:
//! without `--no-as-needed`, the linker drops `libtorch_cuda.so` (no symbol of
//! it is referenced directly) and CUDA silently disappears.
//!
//! For the facade crate (`links = "pipe"`) the same arguments also go to the
//! crates that depend on it, as `DEP_PIPE_LINK_ARGS` (`;`-separated): a
//! plugin's build.rs passes them on, and its binary starts as `pipe` does.

use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    let Some(lib) = torch_lib_dir() else {
        println!("cargo:warning=could not locate libtorch's lib directory; `pipe` will need LD_LIBRARY_PATH");
        return;
    };
    let mut args = vec![format!("-Wl,-rpath,{}", lib.display())];
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        args.extend([
            format!("-L{}", lib.display()),
            "-Wl,--no-as-needed".into(),
            "-ltorch_cuda".into(),
            "-Wl,--as-needed".into(),
        ]);
    }
    for arg in &args {
        println!("cargo:rustc-link-arg={arg}");
    }
    if std::env::var("CARGO_MANIFEST_LINKS").as_deref() == Ok("pipe") {
        println!("cargo:link_args={}", args.join(";"));
    }
}
