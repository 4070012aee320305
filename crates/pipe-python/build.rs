//! The extension module finds libtorch where the venv's torch keeps it
//! (`site-packages/torch/lib`, beside `site-packages/pipe/`). `pipe`'s
//! `__init__.py` imports torch first, which loads those same libraries.

fn main() {
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
}
