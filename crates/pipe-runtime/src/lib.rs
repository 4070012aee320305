//! The torch runtime of a run on this machine, and the native code `tch`
//! does not bind.
//!
//! Overview:
//! - [`cpu`]: the SIMD level of hand-written kernels and the thread count,
//!   decided from the machine at run time.
//! - [`runtime`]: device names (`auto`, `cpu`, `cuda:N`), thread count and
//!   flushing denormals, set once at start-up.
//! - [`parallel`]: CPU work split across torch's own threads (OpenMP, `csrc/parallel.c`).
//! - [`cuda_graph`]: record kernels once, replay them with one launch
//!   (`csrc/cuda_graph.cpp`).

pub mod cpu;
pub mod cuda_graph;
pub mod parallel;
pub mod runtime;
