//! Python timeouts, and the one wait loop every blocking call uses: it releases the GIL
//! while it sleeps, in slices of at most [`SLICE`], and between slices runs Python's signal
//! handlers, so Ctrl-C raises `KeyboardInterrupt` within about 50 ms. Opens that may wait for
//! a foreign creator use it too ([`open_waiting`]). Every GIL release goes through
//! [`allow_threads`], which keeps a daemon thread coming back during interpreter shutdown
//! from aborting the process.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmkit::segment::DEFAULT_OPEN_TIMEOUT;

use crate::errors::to_py;

/// The longest the GIL stays released before the signal handlers run.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// A Python `timeout` argument as a deadline: `None` is no limit; a negative value is 0
/// (as `multiprocessing` does); NaN is a `ValueError`; a value too large to represent is no
/// limit (as the library's `_timeout` forms: [`shmkit::Timeout::deadline_after`]).
pub(crate) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    check_timeout(timeout)?;
    let Some(t) = timeout else { return Ok(None) };
    let d = Duration::try_from_secs_f64(t.max(0.0)).ok();
    Ok(d.and_then(shmkit::Timeout::deadline_after))
}

/// The check [`deadline`] makes (NaN is a `ValueError`), without reading the clock: for the
/// first, GIL-held attempt of a blocking call, which computes the deadline only if it has to
/// wait.
pub(crate) fn check_timeout(timeout: Option<f64>) -> PyResult<()> {
    match timeout {
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout must be a number, not NaN")),
        _ => Ok(()),
    }
}

/// A `block` argument: any object, by its truth value (`acquire(0)`, `q.get(0)`), as
/// `threading` and `multiprocessing` take it. `True`/`False` are told apart by identity (no
/// call); anything else goes through `bool(x)`.
#[derive(Clone, Copy)]
pub(crate) struct Truthy(pub(crate) bool);

/// The default of every `block` parameter.
pub(crate) const BLOCK: Truthy = Truthy(true);

impl<'py> FromPyObject<'py> for Truthy {
    #[inline]
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let p = obj.as_ptr();
        // SAFETY: comparing addresses with the interpreter's two bool singletons (valid while
        // the interpreter runs, which the `Bound`'s GIL token proves).
        unsafe {
            if p == pyo3::ffi::Py_True() {
                return Ok(Truthy(true));
            }
            if p == pyo3::ffi::Py_False() {
                return Ok(Truthy(false));
            }
        }
        obj.is_truthy().map(Truthy)
    }
}

/// Whether `deadline` has passed ([`shmkit::Timeout::passed`]).
#[inline]
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    shmkit::Timeout::passed(deadline)
}

/// `py.allow_threads(f)`: every GIL release of the package goes through here, so that a
/// thread coming back while the interpreter is finalizing (a daemon thread blocked in a
/// shmkit call when the program exits) never crashes the process.
///
/// Before Python 3.14, `PyEval_RestoreThread` (which `allow_threads` ends with) ends such a
/// thread with `pthread_exit`: a forced unwind through the Rust frames above it, which the
/// `catch_unwind` of pyo3's method trampoline (or of [`crate::fastcall`]) catches, and glibc
/// then aborts the whole process ("FATAL: exception not rethrown"). The unwind runs this
/// frame's guard first, whose destructor parks the thread for good: the thread hangs until the
/// process exits, as Python 3.14 and pyo3's own `PyGILState_Ensure` wrapper do. A Rust panic
/// in `f` (`std::thread::panicking()`) unwinds on as before.
pub(crate) fn allow_threads<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    let hang = HangOnForcedUnwind;
    let r = released(py, f);
    std::mem::forget(hang);
    r
}

/// pyo3's `allow_threads`, in a frame of its own that may unwind: pyo3 declares
/// `PyEval_RestoreThread` `extern "C"` (cannot unwind), so a frame that calls it inline has no
/// landing pad for the guard there; a call to this function has one.
#[inline(never)]
fn released<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    let r = py.allow_threads(f);
    // Never taken, but the compiler cannot know: this function may unwind, whatever `f` is.
    if std::hint::black_box(false) {
        panic!("unreachable");
    }
    r
}

/// See [`allow_threads`]: dropped only by an unwind.
struct HangOnForcedUnwind;

impl Drop for HangOnForcedUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        loop {
            std::thread::park();
        }
    }
}

/// Call `attempt(until)` with the GIL released, `until` never more than [`SLICE`] ahead,
/// until it returns `Some` (done) or `deadline` passes (`Ok(None)`). Between slices the
/// signal handlers run with the GIL held: an exception they raise (`KeyboardInterrupt`) is
/// returned at once. `attempt` must leave the object consistent each time it returns `None`.
pub(crate) fn sliced<R: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(Instant) -> Option<R> + Send,
) -> PyResult<Option<R>> {
    loop {
        let now = Instant::now();
        let slice_end = now + SLICE;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        if let Some(r) = allow_threads(py, || attempt(until)) {
            return Ok(Some(r));
        }
        if passed(deadline) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

/// An open that may wait for a foreign creator (a raw segment CPython's `SharedMemory` shows
/// at 0 bytes until its `ftruncate`), made interruptible: `open(t)` is one library open whose
/// wait is bounded by `t` (its `open_timeout`). The first try does not wait and keeps the GIL
/// (the usual case: the object is ready); then tries of at most [`SLICE`] with the GIL
/// released, up to the library's [`DEFAULT_OPEN_TIMEOUT`] in all, so Ctrl-C and other
/// threads are not held up for the whole wait. `NotReady` after that, with the whole wait.
pub(crate) fn open_waiting<R: Send>(
    py: Python<'_>,
    open: impl Fn(Duration) -> shmkit::Result<R> + Send + Sync,
) -> PyResult<R> {
    let started = Instant::now();
    let mut last = match open(Duration::ZERO) {
        Err(e @ shmkit::Error::NotReady { .. }) => e,
        r => return r.map_err(to_py),
    };
    let got = sliced(
        py,
        Some(started + DEFAULT_OPEN_TIMEOUT),
        |until| match open(until.saturating_duration_since(Instant::now())) {
            Err(e @ shmkit::Error::NotReady { .. }) => {
                last = e;
                None
            }
            r => Some(r),
        },
    )?;
    match (got, last) {
        (Some(r), _) => r.map_err(to_py),
        (None, shmkit::Error::NotReady { name, detail, .. }) => {
            Err(to_py(shmkit::Error::NotReady {
                name,
                waited: started.elapsed(),
                detail,
            }))
        }
        (None, e) => Err(to_py(e)),
    }
}
