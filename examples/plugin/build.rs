//! Links libtorch as `pipe` does (its rpath, CUDA kept): `pipe`'s build
//! script hands over its link arguments, and the binary starts without
//! LD_LIBRARY_PATH.

fn main() {
    let args = std::env::var("DEP_PIPE_LINK_ARGS").unwrap_or_default();
    for arg in args.split(';').filter(|a| !a.is_empty()) {
        println!("cargo:rustc-link-arg={arg}");
    }
}
