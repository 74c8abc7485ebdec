//! The `shmkit._shmkit` extension module behind the `shmkit` Python package.
//!
//! One file per object family; each has a `register(module)` function that adds its classes,
//! called from [`_shmkit`] below. Shared pieces:
//!
//! - [`errors`]: the Python exceptions and the one mapping from `shmkit::Error` (and the
//!   per-operation errors) to them;
//! - [`blocking`]: Python timeouts to deadlines, and the one wait loop that releases the GIL
//!   and answers Ctrl-C (every blocking call goes through it);
//! - [`fastcall`]: hand-written C entry points that replace pyo3's wrappers for the hottest
//!   methods (`Value.fetch_add`, `Value.value`, the locks' acquire/release/with), calling the
//!   same Rust methods.
//!
//! Adding an object family: a new `src/FAMILY.rs` with its `#[pyclass]`es and a `register`,
//! one line in [`_shmkit`], its names in `python/shmkit/__init__.py`'s imports and
//! `__all__`, and its stubs in `python/shmkit/_shmkit.pyi`.

use pyo3::prelude::*;

mod barrier;
mod blocking;
mod buffer;
mod cell;
mod condition;
mod errors;
mod event;
mod fastcall;
mod frames;
mod list;
mod lock;
mod named;
mod pickle5;
mod queue;
mod segment;
mod semaphore;

/// The native half of the `shmkit` package (import `shmkit`, not this module).
#[pymodule]
fn _shmkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    segment::register(m)?;
    lock::register(m)?;
    semaphore::register(m)?;
    event::register(m)?;
    condition::register(m)?;
    barrier::register(m)?;
    cell::register(m)?;
    frames::register(m)?;
    queue::register(m)?;
    list::register(m)?;
    m.add_function(wrap_pyfunction!(_hold_state_lock, m)?)?;
    Ok(())
}

/// For the test suite only: hold the process-local mutex of `obj` (a `Queue`'s handle pools,
/// or a `FrameSubscriber`'s or `FramePublisher`'s state) for `seconds` with the GIL released,
/// as a thread taking or returning a handle does for an instant, so that a test can `fork()`
/// while it is held (the child must neither wait for it nor use what it guards).
#[pyfunction]
fn _hold_state_lock(py: Python<'_>, obj: &Bound<'_, PyAny>, seconds: f64) -> PyResult<()> {
    let d = std::time::Duration::try_from_secs_f64(seconds.clamp(0.0, 60.0))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    if let Ok(q) = obj.downcast::<queue::PyQueue>() {
        q.get().hold_for_test(py, d)
    } else if let Ok(s) = obj.downcast::<frames::PyFrameSubscriber>() {
        s.get().hold_for_test(py, d)
    } else if let Ok(p) = obj.downcast::<frames::PyFramePublisher>() {
        p.get().hold_for_test(py, d)
    } else {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "expected a Queue, FrameSubscriber or FramePublisher",
        ))
    }
}
