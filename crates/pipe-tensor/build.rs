//! Compiles `csrc/parallel.c` with OpenMP, to share libtorch's threads.

fn main() {
    println!("cargo:rerun-if-changed=csrc/parallel.c");
    let target = std::env::var("TARGET").unwrap_or_default();
    // Where torch-sys links libgomp (not on macOS or MSVC), so do we: the
    // same thread pool as torch's. Elsewhere the pragma is ignored and the
    // loop runs on the calling thread.
    let openmp = !target.contains("msvc") && !target.contains("apple");
    let mut build = cc::Build::new();
    build.file("csrc/parallel.c").opt_level(2);
    if openmp {
        build.flag("-fopenmp");
    }
    build.compile("pipe_parallel");
    if openmp {
        println!("cargo:rustc-link-lib=gomp");
    }
}
