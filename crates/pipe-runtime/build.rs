//! Compiles `csrc/parallel.c` with OpenMP, to share libtorch's threads, and
//! `csrc/cuda_graph.cpp` against libtorch's CUDA headers when the libtorch
//! torch-sys found has them (as stubs otherwise).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=csrc/parallel.c");
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
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
    build_cuda_graphs(&target);
}

fn build_cuda_graphs(target: &str) {
    let shim = || {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .file("csrc/cuda_graph.cpp")
            .opt_level(2)
            .warnings(false);
        build
    };
    // torch-sys (`links = "tch"`) tells its dependents where libtorch is.
    let torch_lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from);
    let cuda = torch_lib
        .as_deref()
        .filter(|_| target.contains("linux"))
        .and_then(|lib| {
            let include = lib.parent()?.join("include");
            let cuda = cuda_headers(lib)?;
            (lib.join("libtorch_cuda.so").exists()
                && include.join("ATen/cuda/CUDAGraph.h").exists())
            .then_some((lib, include, cuda))
        });
    if let Some((lib, include, cuda_include)) = cuda {
        let compiled = shim()
            .include(include)
            .include(cuda_include)
            .flag("-std=c++17")
            .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .define("PIPE_CUDA_GRAPHS", None)
            .try_compile("pipe_cuda_graph");
        match compiled {
            Ok(()) => {
                println!("cargo:rustc-link-search=native={}", lib.display());
                println!("cargo:rustc-link-lib=dylib=torch_cuda");
                println!("cargo:rustc-link-lib=dylib=c10_cuda");
                return;
            }
            // A build that cannot record graphs still trains (eagerly) on a GPU.
            Err(e) => println!("cargo:warning=CUDA graphs left out: the shim did not compile against libtorch's headers: {e}"),
        }
    }
    shim().compile("pipe_cuda_graph");
}

/// The CUDA runtime's headers: `CUDA_HOME`, else the pip packages beside
/// torch (`nvidia/<pkg>/include`), else /usr/local/cuda.
fn cuda_headers(torch_lib: &Path) -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = std::env::var_os("CUDA_HOME")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(site_packages) = torch_lib.parent().and_then(Path::parent) {
        if let Ok(entries) = std::fs::read_dir(site_packages.join("nvidia")) {
            let mut packages: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            packages.sort();
            roots.extend(packages);
        }
    }
    roots.push(PathBuf::from("/usr/local/cuda"));
    // crt/ comes with nvcc, or with pip's nvidia-cuda-crt beside the runtime.
    roots
        .into_iter()
        .map(|root| root.join("include"))
        .find(|include| {
            include.join("cuda_runtime_api.h").exists()
                && include.join("crt/host_defines.h").exists()
        })
}
