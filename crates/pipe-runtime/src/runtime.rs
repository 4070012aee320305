//! Torch runtime settings: device names, thread count, denormal flushing;
//! the lock tests hold around torch's process-wide state.

use std::sync::{Mutex, MutexGuard, OnceLock};

use tch::Device;

use crate::cpu::{self, ThreadDecision};

/// Why a device name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`: expected auto, cpu, cuda or cuda:N")]
    Unknown(String),
    #[error("device `{0}`: expected cuda:N")]
    BadIndex(String),
    #[error("device `{name}` requested, but {count} CUDA device(s) are available{hint}", hint = no_cuda_hint(.count))]
    NoSuchCuda { name: String, count: usize },
    #[error("unresolved device `{0}`")]
    Unresolved(String),
}

fn no_cuda_hint(count: &usize) -> &'static str {
    if *count == 0 {
        " (is this a CPU-only machine or a CPU-only libtorch?)"
    } else {
        ""
    }
}

/// Resolves a device spec (`auto`, `cpu`, `cuda`, `cuda:N`) to a concrete name.
pub fn resolve_device(spec: &str) -> Result<String, DeviceError> {
    match spec {
        "auto" => Ok(if tch::Cuda::is_available() {
            "cuda:0".into()
        } else {
            "cpu".into()
        }),
        "cpu" => Ok("cpu".into()),
        "cuda" => resolve_device("cuda:0"),
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..]
                .parse()
                .map_err(|_| DeviceError::BadIndex(s.to_string()))?;
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                return Err(DeviceError::NoSuchCuda {
                    name: s.to_string(),
                    count,
                });
            }
            Ok(s.to_string())
        }
        other => Err(DeviceError::Unknown(other.to_string())),
    }
}

/// The tch device for a resolved name.
pub fn device(name: &str) -> Result<Device, DeviceError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s.starts_with("cuda:") => s[5..]
            .parse()
            .map(Device::Cuda)
            .map_err(|_| DeviceError::BadIndex(s.to_string())),
        other => Err(DeviceError::Unresolved(other.to_string())),
    }
}

/// Sets torch's intra-op thread count as [`cpu::decide_threads`] decides
/// (`PIPE_THREADS`, the `--threads` flag, `OMP_NUM_THREADS`, else one per
/// physical core) and keeps the decision for reports. Call it once, at
/// start-up, before torch starts its thread pool.
pub fn set_threads(flag: Option<usize>) -> &'static ThreadDecision {
    let decision = THREADS.get_or_init(|| cpu::decide_threads(flag));
    tch::set_num_threads(decision.threads as i32);
    decision
}

/// The thread decision [`set_threads`] made, if it ran in this process.
pub fn thread_decision() -> Option<&'static ThreadDecision> {
    THREADS.get()
}

static THREADS: OnceLock<ThreadDecision> = OnceLock::new();

/// Serialises the users of torch's state that is one per process: its
/// default random generator (`tch::manual_seed`, and every draw: a model's
/// initialisation, dropout in training, `Tensor::rand*`) and its intra-op
/// thread count (`tch::set_num_threads`). A process that runs one pipeline
/// needs no lock; tests do, because cargo runs a binary's tests on parallel
/// threads, and a draw made between another test's `manual_seed` and its
/// own draws changes what that test sees. A test that seeds, draws or sets
/// the thread count holds this guard for as long as it relies on them.
/// Library code never takes it (a test holding it calls into the library).
pub fn torch_global_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Flushes denormal floats to zero (the FTZ and DAZ bits of x86-64's MXCSR),
/// which keeps late epochs from slowing down as small gradients underflow.
/// Per thread and inherited by threads created later: call it at start-up,
/// before torch starts its thread pool. Returns whether it took effect.
pub fn flush_denormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(deprecated)]
        // SAFETY: only sets the FTZ (bit 15) and DAZ (bit 6) flags of this thread's MXCSR.
        unsafe {
            use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
            _mm_setcsr(_mm_getcsr() | 0x8040);
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether denormals are flushed on this thread.
pub fn denormals_flushed() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(deprecated)]
        // SAFETY: reads this thread's MXCSR.
        unsafe {
            std::arch::x86_64::_mm_getcsr() & 0x8040 == 0x8040
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
