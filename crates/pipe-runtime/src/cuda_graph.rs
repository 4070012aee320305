//! CUDA graphs: a sequence of kernels recorded once and replayed with one
//! launch.
//!
//! A small model's training step on a GPU is bound by the host's cost of
//! launching some hundred kernels one op at a time, not by the kernels: the
//! notebook's step measured 2.5 ms eager and 0.46 ms as a replayed graph on
//! an H200 (`scripts/bench/gpu_step_profile.py`). tch does not bind CUDA graphs, so
//! this drives libtorch's own `at::cuda::CUDAGraph` (what
//! `torch.cuda.CUDAGraph` wraps) through a small C++ shim.
//!
//! The rules are PyTorch's: recorded kernels read and write fixed addresses,
//! so inputs are copied into tensors that outlive the graph before each
//! replay, and nothing recorded may sync with the host or change shape.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use tch::Device;

extern "C" {
    fn pipe_cuda_graph_new(
        device: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn pipe_cuda_graph_enter(g: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn pipe_cuda_graph_leave(g: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn pipe_cuda_graph_capture_begin(g: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn pipe_cuda_graph_capture_end(g: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn pipe_cuda_graph_replay(g: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn pipe_cuda_graph_free(g: *mut c_void);
    fn pipe_cuda_graph_built() -> c_int;
}

#[derive(Debug, thiserror::Error)]
pub enum CudaGraphError {
    #[error("CUDA graphs need a CUDA device, not {0:?}")]
    NotCuda(Device),
    #[error("CUDA graph: {0}")]
    Torch(String),
    #[error("CUDA graph capture failed: {0}")]
    CaptureFailed(String),
}

/// Whether this build has CUDA graph support (libtorch with CUDA headers at
/// build time). A device is needed as well to use it.
pub fn built() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { pipe_cuda_graph_built() != 0 }
}

fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), CudaGraphError> {
    let mut err = [0 as c_char; 1024];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the shim wrote a NUL-terminated string within the buffer.
    let message = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
    // libtorch's messages end with a C++ backtrace; the first line says it.
    Err(CudaGraphError::Torch(
        message
            .lines()
            .next()
            .unwrap_or("unknown error")
            .to_string(),
    ))
}

/// One recorded graph with the side stream it is recorded on.
pub struct CudaGraph {
    raw: *mut c_void,
    captured: bool,
}

impl CudaGraph {
    pub fn new(device: Device) -> Result<CudaGraph, CudaGraphError> {
        let Device::Cuda(index) = device else {
            return Err(CudaGraphError::NotCuda(device));
        };
        let mut raw = std::ptr::null_mut();
        // SAFETY: `raw` is written by the shim on success.
        call(|err, len| unsafe { pipe_cuda_graph_new(index as c_int, &mut raw, err, len) })?;
        Ok(CudaGraph {
            raw,
            captured: false,
        })
    }

    /// Runs `f` eagerly with the graph's stream current: warm-up before a
    /// capture, so that what a stream sets up on first use (cuBLAS
    /// workspaces, cuDNN plans) is not first met while recording.
    pub fn warm_up<R>(&self, f: impl FnOnce() -> R) -> Result<R, CudaGraphError> {
        self.on_stream(f, false)
    }

    /// Records the kernels `f` launches instead of running them; `f`'s
    /// result (tensors in the graph's memory pool) is what replays update.
    /// A failed capture (an op that syncs with the host, say) is an error,
    /// and the graph cannot be used.
    pub fn capture<R>(&mut self, f: impl FnOnce() -> R) -> Result<R, CudaGraphError> {
        let result = self.on_stream(f, true)?;
        self.captured = true;
        Ok(result)
    }

    fn on_stream<R>(&self, f: impl FnOnce() -> R, record: bool) -> Result<R, CudaGraphError> {
        let raw = self.raw;
        // SAFETY (all shim calls): `raw` came from `pipe_cuda_graph_new`.
        call(|err, len| unsafe { pipe_cuda_graph_enter(raw, err, len) })?;
        let begun = if record {
            call(|err, len| unsafe { pipe_cuda_graph_capture_begin(raw, err, len) })
        } else {
            Ok(())
        };
        // tch panics on torch errors: end the capture and leave the stream first.
        let result = begun.map(|()| catch_unwind(AssertUnwindSafe(f)));
        let ended = match (&result, record) {
            (Ok(_), true) => call(|err, len| unsafe { pipe_cuda_graph_capture_end(raw, err, len) }),
            _ => Ok(()),
        };
        let left = call(|err, len| unsafe { pipe_cuda_graph_leave(raw, err, len) });
        let value = match result? {
            Ok(value) => value,
            Err(panic) if record => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied());
                return Err(CudaGraphError::CaptureFailed(
                    message
                        .unwrap_or("a panic while recording")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .into(),
                ));
            }
            Err(panic) => resume_unwind(panic),
        };
        ended.map_err(|e| CudaGraphError::CaptureFailed(e.to_string()))?;
        left?;
        Ok(value)
    }

    /// Launches the recorded kernels on the current (default) stream, after
    /// whatever was queued there before.
    pub fn replay(&self) -> Result<(), CudaGraphError> {
        if !self.captured {
            return Err(CudaGraphError::Torch(
                "replay before a successful capture".into(),
            ));
        }
        let raw = self.raw;
        // SAFETY: `raw` came from `pipe_cuda_graph_new` and holds a capture.
        call(|err, len| unsafe { pipe_cuda_graph_replay(raw, err, len) })
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `pipe_cuda_graph_new`; freed once.
        unsafe { pipe_cuda_graph_free(self.raw) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_device_is_refused_with_its_name() {
        let err = CudaGraph::new(Device::Cpu)
            .err()
            .expect("no graphs on the CPU");
        assert!(err.to_string().contains("Cpu"), "{err}");
    }

    /// On a machine with a GPU: a recorded add, replayed, reads its input's
    /// current value each time. Elsewhere: creating a graph fails cleanly
    /// (no device), rather than crashing.
    #[test]
    fn a_replay_reruns_the_recorded_kernels_on_new_input() {
        if !tch::Cuda::is_available() {
            let err = CudaGraph::new(Device::Cuda(0))
                .err()
                .expect("no CUDA device here");
            assert!(!err.to_string().is_empty());
            return;
        }
        assert!(built(), "a CUDA device but no graph support compiled in");
        let device = Device::Cuda(0);
        let input = tch::Tensor::zeros([4], (tch::Kind::Float, device));
        let total = tch::Tensor::zeros([4], (tch::Kind::Float, device));
        let mut graph = CudaGraph::new(device).unwrap();
        graph.warm_up(|| ()).unwrap();
        graph
            .capture(|| {
                let mut total = total.shallow_clone();
                total += &input * 2.0;
            })
            .unwrap();
        assert_eq!(
            total.sum(tch::Kind::Float).double_value(&[]),
            0.0,
            "capture ran nothing"
        );
        for value in [1.0, 3.0] {
            let _ = input.shallow_clone().fill_(value);
            graph.replay().unwrap();
        }
        assert_eq!(
            Vec::<f32>::try_from(&total.to_device(Device::Cpu)).unwrap(),
            vec![8.0; 4]
        );
    }
}
