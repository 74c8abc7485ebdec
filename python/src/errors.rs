//! The Python exceptions, and the one mapping from shmkit's errors to them.
//!
//! | shmkit | Python |
//! |---|---|
//! | `NotFound` | `FileNotFoundError` |
//! | `AlreadyExists` | `FileExistsError` |
//! | `PermissionDenied` | `PermissionError` |
//! | `InvalidName`, `InvalidArgument`, `TooLarge`, a semaphore's `InvalidValue`/`TooManyReleases` | `ValueError` |
//! | `Timeout` | `TimeoutError` |
//! | a list's `IndexOutOfRange` | `IndexError` |
//! | a list's `SlotTooSmall` | `ValueError` (as CPython's `ShareableList`) |
//! | a barrier's `Broken`/`Timeout` | `threading.BrokenBarrierError` |
//! | a lock's `OwnerDied` | `shmkit.OwnerDied` (the lock is held; `.lock` is it) |
//! | a lock's `NotRecoverable` | `shmkit.LockNotRecoverable` |
//! | a frame channel's `PublisherBusy`/`NoFreeSubscriberSlot` | `shmkit.ShmkitError`; `Disconnected` on receive is `EOFError` |
//! | a queue with no room / no message (no wait, or the timeout passed) | `queue.Full` / `queue.Empty` |
//! | a queue's handle could not attach (every slot of the side held, no liveness token) | `shmkit.ShmkitError` |
//! | everything else (kind/layout/version mismatch, corrupt, no space, OS errors) | `shmkit.ShmkitError` |

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIndexError, PyPermissionError, PyRuntimeError,
    PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyType;
use shmkit::frames::AttachError;
use shmkit::sync::{BarrierError, LockError, Owner, SemaphoreError};
use shmkit::Error;

pyo3::create_exception!(
    shmkit,
    ShmkitError,
    pyo3::exceptions::PyException,
    "Base class of shmkit's own errors: a segment of another kind or layout, a corrupt or \
     inconsistent object, no space in /dev/shm, an operating-system error."
);
pyo3::create_exception!(
    shmkit,
    OwnerDied,
    ShmkitError,
    "A lock was acquired, but its previous owner died holding it: the data it protects may be \
     half-updated. The lock IS held by the caller (`.lock`): repair the data, call \
     `.lock.make_consistent()`, then `.lock.release()`. Releasing without make_consistent() \
     makes the lock permanently unusable (LockNotRecoverable). `.previous_pid` is the dead \
     owner's pid."
);
pyo3::create_exception!(
    shmkit,
    LockNotRecoverable,
    ShmkitError,
    "A previous owner of this lock died and the next one released it without \
     make_consistent(): nothing can acquire it again. Unlink and recreate it."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ShmkitError", py.get_type::<ShmkitError>())?;
    m.add("OwnerDied", py.get_type::<OwnerDied>())?;
    m.add("LockNotRecoverable", py.get_type::<LockNotRecoverable>())?;
    m.add("BrokenBarrierError", broken_barrier_type(py)?)?;
    Ok(())
}

/// `threading.BrokenBarrierError`, so that `except` clauses written for the stdlib work.
fn broken_barrier_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static TYPE: GILOnceCell<Py<PyType>> = GILOnceCell::new();
    TYPE.import(py, "threading", "BrokenBarrierError")
}

/// `queue.Full` (put found no room) or `queue.Empty` (get found nothing), as
/// `multiprocessing.Queue` raises them, so that `except queue.Empty:` works unchanged.
pub(crate) fn queue_full_or_empty(py: Python<'_>, full: bool, msg: String) -> PyErr {
    static FULL: GILOnceCell<Py<PyType>> = GILOnceCell::new();
    static EMPTY: GILOnceCell<Py<PyType>> = GILOnceCell::new();
    let (cell, attr) = if full {
        (&FULL, "Full")
    } else {
        (&EMPTY, "Empty")
    };
    match cell.import(py, "queue", attr) {
        Ok(t) => PyErr::from_type(t.clone(), msg),
        Err(e) => e,
    }
}

/// A queue handle that could not attach: every slot of its side is held by live handles, or
/// this process has no liveness token.
pub(crate) fn attach_error(e: shmkit::queue::AttachError) -> PyErr {
    ShmkitError::new_err(e.to_string())
}

/// The Python exception for a shmkit error.
pub(crate) fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NotFound { .. } => PyFileNotFoundError::new_err((libc_errno::ENOENT, msg)),
        Error::AlreadyExists { .. } => PyFileExistsError::new_err((libc_errno::EEXIST, msg)),
        Error::PermissionDenied { .. } => PyPermissionError::new_err((libc_errno::EACCES, msg)),
        Error::InvalidName { .. } | Error::InvalidArgument { .. } | Error::TooLarge { .. } => {
            PyValueError::new_err(msg)
        }
        Error::Timeout => PyTimeoutError::new_err(msg),
        Error::IndexOutOfRange { .. } => PyIndexError::new_err(msg),
        Error::SlotTooSmall { .. } => PyValueError::new_err(msg),
        Error::Semaphore(e) => semaphore_error(e),
        Error::Barrier(e) => barrier_error(e),
        Error::Lock(e) => lock_error(e),
        _ => ShmkitError::new_err(msg),
    }
}

/// A frame channel's attach error: a segment error as [`to_py`], the rest (publisher busy,
/// no free subscriber record, liveness) `ShmkitError`.
pub(crate) fn frames_attach_error(e: AttachError) -> PyErr {
    match e {
        AttachError::Segment(e) => to_py(e),
        e => ShmkitError::new_err(e.to_string()),
    }
}

/// The errno values the `OSError` subclasses carry (Linux's; shmkit is Linux-only).
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const EEXIST: i32 = 17;
}

/// A semaphore error other than the two outcomes (`WouldBlock`/`Timeout` are `False`).
pub(crate) fn semaphore_error(e: SemaphoreError) -> PyErr {
    match e {
        SemaphoreError::TooManyReleases { .. } | SemaphoreError::InvalidValue { .. } => {
            PyValueError::new_err(e.to_string())
        }
        _ => ShmkitError::new_err(e.to_string()),
    }
}

/// A barrier error: broken (or timed out, which broke it) is Python's `BrokenBarrierError`.
pub(crate) fn barrier_error(e: BarrierError) -> PyErr {
    if e.is_broken() {
        Python::with_gil(|py| match broken_barrier_type(py) {
            Ok(t) => PyErr::from_type(t.clone(), e.to_string()),
            Err(err) => err,
        })
    } else {
        ShmkitError::new_err(e.to_string())
    }
}

/// A lock error other than the outcomes (`WouldBlock`/`Timeout` are `False`, `OwnerDied` is
/// [`owner_died`]).
pub(crate) fn lock_error<G>(e: LockError<G>) -> PyErr {
    let e = e.without_guard();
    match e {
        LockError::NotRecoverable => LockNotRecoverable::new_err(e.to_string()),
        LockError::NotOwner => {
            PyRuntimeError::new_err("release unlocked lock (or one this thread does not hold)")
        }
        LockError::Deadlock => PyRuntimeError::new_err(
            "this thread already holds this lock, which is not recursive: acquiring it again \
             would deadlock (use RLock)",
        ),
        _ => ShmkitError::new_err(e.to_string()),
    }
}

/// `OwnerDied` carrying the (held) lock object and the dead owner's pid.
pub(crate) fn owner_died(lock: &Bound<'_, PyAny>, previous: Option<Owner>) -> PyErr {
    let py = lock.py();
    let pid = previous.map(|o| o.pid);
    let msg = match pid {
        Some(pid) => format!(
            "acquired the lock, but its previous owner (pid {pid}) died holding it: repair the \
             data, then call make_consistent() and release()"
        ),
        None => "acquired the lock, but its previous owner died holding it: repair the data, \
                 then call make_consistent() and release()"
            .to_owned(),
    };
    let err = OwnerDied::new_err(msg);
    let value = err.value(py);
    if let Err(e) = value.setattr("lock", lock) {
        return e;
    }
    if let Err(e) = value.setattr("previous_pid", pid) {
        return e;
    }
    err
}
