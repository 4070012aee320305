//! Pipeline runs that Ctrl-C stops, as it stops the `pipe` command.
//!
//! Python runs signal handlers only on the main thread, between bytecodes
//! or when native code asks (`check_signals`). So a run goes on a thread of
//! its own while the calling thread waits for it without the GIL, 100 ms at
//! a time, checking for signals in between. When a handler raises (Ctrl-C's
//! KeyboardInterrupt, or what a SIGTERM handler raises), the run is told to
//! stop, the external commands of `exec` stages are killed and the scratch
//! directories removed (`pipe::core::interrupt::clean_up`, what the command
//! does before it exits), and the exception goes to the caller.
//!
//! pipe-core has no cancellation flag: a run stops at its next event. The
//! run's event sink unwinds from `emit` once told to stop; the runner
//! catches a stage's panic as that stage's failure (so nothing of it is
//! cached), and between stages the unwind leaves the runner before the next
//! stage starts. Training reports progress each step, an `exec` stage ends
//! when its killed command does. Code that emits no event for a long time
//! (loading big artifacts) runs on in the background until its next event;
//! the caller gets its exception without waiting more than [`STOP_GRACE`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pipe::core::{Event, EventSink};
use pyo3::prelude::*;

use crate::{panic_message, pipe_err};

/// How often the waiting thread checks for signals.
const POLL: Duration = Duration::from_millis(100);

/// How long an interrupted call waits for the run to stop, so that it has
/// released the cache's lock when the exception reaches the caller.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A run's thread: stages may recurse deeper than a default thread's 2 MiB
/// (the `pipe` command runs them on the main thread, 8 MiB).
const STACK_BYTES: usize = 16 << 20;

/// The payload the sink unwinds with; `resume_unwind` does not run the
/// panic hook, so nothing is printed.
struct Stopped;

/// Discards events, and unwinds out of the run once `stop` is set.
struct StoppingSink {
    stop: Arc<AtomicBool>,
}

impl EventSink for StoppingSink {
    fn emit(&self, event: &Event) {
        // A failure is reported on the way out of an unwind the runner
        // caught; it is the stop itself, not a place to stop.
        if self.stop.load(Ordering::SeqCst) && !matches!(event, Event::StageFailed { .. }) {
            std::panic::resume_unwind(Box::new(Stopped));
        }
    }
}

/// Runs `job` on a thread of its own while this one waits for it and
/// handles signals (see the module's documentation).
pub fn interruptible<T, F>(py: Python<'_>, job: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn EventSink) -> Result<T, String> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let (done, result) = mpsc::channel();
    // `detach` runs closures that are `Send`; a receiver is not `Sync`, so
    // the closures borrow it through a mutex (never contended).
    let result = Mutex::new(result);
    let wait = |timeout: Duration| {
        result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv_timeout(timeout)
    };
    let sink = StoppingSink {
        stop: Arc::clone(&stop),
    };
    let worker = std::thread::Builder::new()
        .name("pipe-run".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&sink)))
                .unwrap_or_else(|payload| {
                    if (*payload).is::<Stopped>() {
                        Err("the run was interrupted".to_string())
                    } else {
                        Err(format!(
                            "internal error: {}",
                            panic_message(payload.as_ref())
                        ))
                    }
                });
            // The receiver is gone when the caller was interrupted and stopped waiting.
            let _ = done.send(outcome);
        })
        .map_err(|e| pipe_err(format!("cannot start the run's thread: {e}")))?;
    loop {
        match py.detach(|| wait(POLL)) {
            Ok(outcome) => {
                let _ = worker.join();
                return outcome.map_err(pipe_err);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(pipe_err("the run's thread ended without a result"))
            }
        }
        if let Err(raised) = py.check_signals() {
            stop.store(true, Ordering::SeqCst);
            pipe::core::interrupt::clean_up();
            let _ = py.detach(|| wait(STOP_GRACE));
            return Err(raised);
        }
    }
}

/// Kills the running `exec` commands' process groups and removes the
/// scratch directories of the runs in this process: for a SIGTERM handler.
#[pyfunction]
pub fn _clean_up() -> PyResult<()> {
    crate::guarded("clean_up", || {
        pipe::core::interrupt::clean_up();
        Ok(())
    })
}
