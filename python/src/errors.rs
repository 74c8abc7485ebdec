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
//! | a lock's `NotOwner` (release of a lock this thread does not hold) | `shmkit.LockNotHeld` (`ValueError` and `RuntimeError`) for `Lock`; `shmkit.RLockNotOwned` (`AssertionError` and `RuntimeError`) for `RLock`, `Condition`, `CellLock` |
//! | a frame channel's `PublisherBusy`/`NoFreeSubscriberSlot` | `shmkit.ShmkitError`; `Disconnected` on receive is `EOFError` |
//! | a queue with no room / no message (no wait, or the timeout passed) | `queue.Full` / `queue.Empty` |
//! | a queue's handle could not attach (every slot of the side held, no liveness token) | `shmkit.ShmkitError` |
//! | everything else (kind/layout/version mismatch, corrupt, no space, OS errors) | `shmkit.ShmkitError` |

use std::ffi::CStr;

use pyo3::exceptions::{
    PyAssertionError, PyFileExistsError, PyFileNotFoundError, PyIndexError, PyMemoryError,
    PyPermissionError, PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyTuple, PyType};
use shmkit::frames::AttachError;
use shmkit::queue::QueueError;
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
    m.add("LockNotHeld", NotHeld::Lock.type_object(py)?)?;
    m.add("RLockNotOwned", NotHeld::RLock.type_object(py)?)?;
    Ok(())
}

/// Which lock's release found it not held by the calling thread: the exception raised is
/// the one of both `threading` (`RuntimeError`) and the `multiprocessing` counterpart, so
/// that `except` clauses written for either work.
#[derive(Clone, Copy)]
pub(crate) enum NotHeld {
    /// `Lock`: `multiprocessing.Lock` raises `ValueError` ("semaphore or lock released too
    /// many times").
    Lock,
    /// `RLock`, and the locks `multiprocessing` makes recursive by default (`Condition`'s,
    /// `Value`/`Array`'s `get_lock()`): `AssertionError` ("attempt to release recursive lock
    /// not owned by thread").
    RLock,
}

impl NotHeld {
    /// The exception class, made once (two bases: `create_exception!` takes one).
    fn type_object(self, py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
        static LOCK: GILOnceCell<Py<PyType>> = GILOnceCell::new();
        static RLOCK: GILOnceCell<Py<PyType>> = GILOnceCell::new();
        let (cell, name, doc, base): (_, &CStr, &CStr, _) = match self {
            NotHeld::Lock => (
                &LOCK,
                c"shmkit.LockNotHeld",
                c"Lock.release() by a thread that does not hold the lock. Both a ValueError (as \
                  multiprocessing.Lock raises) and a RuntimeError (as threading.Lock raises).",
                py.get_type::<PyValueError>(),
            ),
            NotHeld::RLock => (
                &RLOCK,
                c"shmkit.RLockNotOwned",
                c"RLock.release() (or Condition's, or a Value's or Array's get_lock()'s) by a \
                  thread that does not hold the lock. Both an AssertionError (as \
                  multiprocessing.RLock raises) and a RuntimeError (as threading.RLock raises).",
                py.get_type::<PyAssertionError>(),
            ),
        };
        cell.get_or_try_init(py, || {
            let bases = PyTuple::new(py, [base, py.get_type::<PyRuntimeError>()])?;
            // SAFETY: the GIL is held; `name` and `doc` are NUL-terminated, `name` dotted as
            // the call requires, `bases` a tuple of exception classes; the result is a new
            // reference or null with an exception set.
            let t = unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    pyo3::ffi::PyErr_NewExceptionWithDoc(
                        name.as_ptr(),
                        doc.as_ptr(),
                        bases.as_ptr(),
                        std::ptr::null_mut(),
                    ),
                )?
            };
            Ok(t.downcast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
    }

    /// The exception for a release by a thread that does not hold the lock.
    fn err(self) -> PyErr {
        self.err_with(match self {
            NotHeld::Lock => "release unlocked lock (or one this thread does not hold)",
            NotHeld::RLock => "cannot release un-acquired lock (this thread does not hold it)",
        })
    }

    /// The exception with `msg` (e.g. `Condition.wait` by a thread that does not hold the
    /// condition's lock: `RLockNotOwned`, since multiprocessing's `Condition` asserts).
    pub(crate) fn err_with(self, msg: &'static str) -> PyErr {
        Python::with_gil(|py| match self.type_object(py) {
            Ok(t) => PyErr::from_type(t.clone(), msg),
            Err(e) => e,
        })
    }
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

/// A queue handle that could not attach: a segment error as [`to_py`] (as
/// [`frames_attach_error`]), the rest (every slot of its side held by live handles, no
/// liveness token) `ShmkitError`.
pub(crate) fn attach_error(e: shmkit::queue::AttachError) -> PyErr {
    match e {
        shmkit::queue::AttachError::Segment(e) => to_py(e),
        e => ShmkitError::new_err(e.to_string()),
    }
}

/// How the library's messages spell opening a raw segment (`SegmentOptions::raw`), and how
/// Python spells it: a raw segment (CPython's `SharedMemory`) opens only as `SharedMemory`.
const RAW_RUST: &str = ".raw(true)";
const RAW_PYTHON: &str = "shmkit.SharedMemory(name, raw=True)";

/// The Python exception for a shmkit error.
pub(crate) fn to_py(e: Error) -> PyErr {
    let mut msg = e.to_string();
    if msg.contains(RAW_RUST) {
        msg = python_hint(msg);
    }
    match e {
        Error::NotFound { .. } => PyFileNotFoundError::new_err((libc_errno::ENOENT, msg)),
        Error::AlreadyExists { .. } => PyFileExistsError::new_err((libc_errno::EEXIST, msg)),
        Error::PermissionDenied { .. } => PyPermissionError::new_err((libc_errno::EACCES, msg)),
        Error::InvalidName { .. } | Error::InvalidArgument { .. } | Error::TooLarge { .. } => {
            PyValueError::new_err(msg)
        }
        // A message longer than a queue's maximum, or a slice of the wrong length: bad arguments.
        Error::Queue(QueueError::TooLarge { .. } | QueueError::WrongLength { .. }) => {
            PyValueError::new_err(msg)
        }
        Error::Timeout => PyTimeoutError::new_err(msg),
        Error::IndexOutOfRange { .. } => PyIndexError::new_err(msg),
        Error::SlotTooSmall { .. } => PyValueError::new_err(msg),
        Error::Semaphore(e) => semaphore_error(e),
        Error::Barrier(e) => barrier_error(e),
        Error::Lock(e) => lock_error(e),
        // Another user's object refused by an open-or-create with a private mode.
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            PyPermissionError::new_err((libc_errno::EACCES, msg))
        }
        // A copy this process cannot allocate (an array or frame sized by its creator).
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::OutOfMemory => {
            PyMemoryError::new_err(msg)
        }
        _ => ShmkitError::new_err(msg),
    }
}

/// The library's hint for a raw segment names its Rust API ([`RAW_RUST`]); a Python user's
/// spelling is [`RAW_PYTHON`]. Out of line: `to_py` is on many error paths, this on none that
/// matter.
#[cold]
#[inline(never)]
fn python_hint(msg: String) -> String {
    msg.replace(RAW_RUST, RAW_PYTHON)
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
/// [`owner_died`]), from a `Lock`'s call (see [`rlock_error`] for the others).
pub(crate) fn lock_error<G>(e: LockError<G>) -> PyErr {
    lock_error_of(NotHeld::Lock, e)
}

/// [`lock_error`] for an `RLock`, a `Condition` or a `CellLock`: `NotOwner` is
/// `RLockNotOwned`.
pub(crate) fn rlock_error<G>(e: LockError<G>) -> PyErr {
    lock_error_of(NotHeld::RLock, e)
}

fn lock_error_of<G>(which: NotHeld, e: LockError<G>) -> PyErr {
    let e = e.without_guard();
    match e {
        LockError::NotRecoverable => LockNotRecoverable::new_err(e.to_string()),
        LockError::NotOwner => which.err(),
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
