//! Which process a handle was made in, for the handles whose role the library does not check
//! on every call (a frame subscriber's receive, a publisher's outstanding loan): a number
//! that a `pthread_atfork` child handler raises in every forked child, so that a handle
//! inherited across `fork()` (by `os.fork()`, `multiprocessing`'s fork start method, or a C
//! extension) tells itself apart with one atomic load, where `getpid()` would be a system
//! call on every receive.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// Forks since the module was loaded, along this process's line of descent.
static GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked_child() {
    // Runs in the child right after fork(), in its only thread, before anything else of
    // the child: Relaxed (no other thread to order with; threads started later are ordered
    // by their spawn). An atomic add is async-signal-safe.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The current generation: a handle records it when made; a different value later means the
/// handle was inherited across `fork()`.
pub(crate) fn generation() -> u64 {
    // Relaxed: only this process's own store (in the child handler, before any thread of the
    // child that can read it started) is ever observed.
    GENERATION.load(Ordering::Relaxed)
}

/// Install the child handler (once: module init runs once per process).
pub(crate) fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    // SAFETY: the handler is an `extern "C" fn()` that lives for the whole program and only
    // does an atomic add (async-signal-safe, as a child handler must be).
    let rc = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    if rc != 0 {
        return Err(PyOSError::new_err(format!(
            "pthread_atfork failed ({rc}): shmkit cannot tell handles inherited across fork()"
        )));
    }
    Ok(())
}
