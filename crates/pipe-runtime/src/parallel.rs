//! Work split across libtorch's own CPU threads.
//!
//! Right after a torch op, torch's OpenMP workers spin waiting for the next
//! parallel region; threads of our own started then fight them for the cores
//! (on 2 cores a two-thread optimizer pass measured slower than one thread).
//! [`for_each`] runs its items on those same OpenMP threads instead, as many
//! as torch is set to use.

use std::ffi::c_void;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Mutex;

extern "C" {
    fn pipe_parallel_for(n: i64, f: extern "C" fn(*mut c_void, i64), ctx: *mut c_void);
}

/// How many threads torch computes with: the most [`for_each`] uses.
pub fn threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

struct Job<'a, T, F> {
    items: &'a [Mutex<Option<T>>],
    f: &'a F,
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

extern "C" fn run_one<T, F: Fn(T)>(ctx: *mut c_void, i: i64) {
    // SAFETY: `ctx` is the `Job` that `for_each` passed, alive for the call.
    let job = unsafe { &*(ctx as *const Job<T, F>) };
    let item = job.items[i as usize]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(item) = item {
        // A panic must not unwind through C: keep it and rethrow after.
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (job.f)(item))) {
            *job.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(panic);
        }
    }
}

/// Calls `f` once on each item, the items spread over up to [`threads`]
/// threads (one item each: split the work into about that many items). A
/// panic in `f` is raised again here once all items are done.
pub fn for_each<T: Send, F: Fn(T) + Sync>(items: Vec<T>, f: F) {
    if items.len() <= 1 {
        items.into_iter().for_each(f);
        return;
    }
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let job = Job {
        items: &items,
        f: &f,
        panic: Mutex::new(None),
    };
    // SAFETY: `run_one::<T, F>` reads `job` as the `Job<T, F>` it is; each
    // index is taken once, and `pipe_parallel_for` returns after all ran.
    unsafe {
        pipe_parallel_for(
            items.len() as i64,
            run_one::<T, F>,
            &job as *const Job<T, F> as *mut c_void,
        )
    };
    if let Some(panic) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        resume_unwind(panic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_item_runs_once_on_torchs_threads() {
        let _torch = crate::runtime::torch_global_lock();
        tch::set_num_threads(2);
        let seen = Mutex::new(Vec::new());
        for_each((0..2).collect(), |i: usize| {
            seen.lock().unwrap().push((i, std::thread::current().id()))
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort_by_key(|s| s.0);
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1]);
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_ne!(seen[0].1, seen[1].1, "two items, two of torch's threads");
        }
        let mut out = vec![0u32; 10];
        for_each(
            out.chunks_mut(3).enumerate().collect(),
            |(i, chunk): (usize, &mut [u32])| chunk.fill(i as u32 + 1),
        );
        assert_eq!(out, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]);
    }

    #[test]
    fn a_panic_comes_back_to_the_caller() {
        let result = std::panic::catch_unwind(|| {
            for_each(vec![1, 2, 3], |i: i32| assert_ne!(i, 2, "item two"))
        });
        assert!(result.is_err());
    }
}
