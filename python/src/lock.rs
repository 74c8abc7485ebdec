//! `Lock` and `RLock`: Python's `acquire(block=True, timeout=None)` / `release()` on
//! shmkit's robust locks. The lock is held without a guard between the two calls
//! (`LockGuard::leak` / `LockState::adopt`), so it is released by the thread that acquired
//! it; a process that dies holding it makes the next acquirer get `OwnerDied`.

use std::time::Instant;

use pyo3::prelude::*;
use shmkit::sync::{LockError, LockState, Owner, RLockState};

use crate::blocking::{check_timeout, deadline, sliced, Truthy, BLOCK};
use crate::errors::{lock_error, owner_died, rlock_error, to_py};
use crate::named::{named_methods, options, DEFAULT_LIFETIME, DEFAULT_MODE};

/// What an acquisition attempt came to.
pub(crate) enum Acquired {
    /// Held by the calling thread.
    Yes,
    /// Held by the calling thread, taken from an owner that died holding it.
    OwnerDied(Option<Owner>),
    /// Not taken (held by someone else, or the time ran out).
    No,
}

/// The two lock states, as Python-style acquire/release sees them.
pub(crate) trait HeldLock: Sync {
    /// One attempt: `None` never waits, `Some(t)` waits until `t`. The lock stays held
    /// without a guard on success.
    fn attempt(&self, until: Option<Instant>) -> Result<Acquired, LockError<()>>;
    /// Release one level held by the calling thread.
    fn release_held(&self) -> Result<(), LockError<()>>;
    /// Declare the protected data repaired after `OwnerDied` (the calling thread holds it).
    fn make_consistent_held(&self) -> Result<(), LockError<()>>;
    /// Whether anyone holds it.
    fn is_held(&self) -> bool;
}

/// Turn a lock call's result into an [`Acquired`], leaking the guard (the lock stays held).
macro_rules! leak_outcome {
    ($r:expr) => {
        match $r {
            Ok(g) => {
                g.leak();
                Ok(Acquired::Yes)
            }
            Err(LockError::OwnerDied(g)) => {
                let was = g.previous_owner();
                g.leak();
                Ok(Acquired::OwnerDied(was))
            }
            Err(LockError::WouldBlock) | Err(LockError::Timeout) => Ok(Acquired::No),
            Err(e) => Err(e.without_guard()),
        }
    };
}

impl HeldLock for LockState {
    fn attempt(&self, until: Option<Instant>) -> Result<Acquired, LockError<()>> {
        match until {
            None => leak_outcome!(self.try_lock()),
            Some(t) => leak_outcome!(self.lock_deadline(t)),
        }
    }
    fn release_held(&self) -> Result<(), LockError<()>> {
        self.adopt().map(drop)
    }
    fn make_consistent_held(&self) -> Result<(), LockError<()>> {
        let mut g = self.adopt()?;
        let r = g.make_consistent();
        g.leak();
        r
    }
    fn is_held(&self) -> bool {
        self.is_locked()
    }
}

impl HeldLock for RLockState {
    fn attempt(&self, until: Option<Instant>) -> Result<Acquired, LockError<()>> {
        match until {
            None => leak_outcome!(self.try_lock()),
            Some(t) => leak_outcome!(self.lock_deadline(t)),
        }
    }
    fn release_held(&self) -> Result<(), LockError<()>> {
        self.release()
    }
    fn make_consistent_held(&self) -> Result<(), LockError<()>> {
        let mut g = self.adopt()?;
        let r = g.make_consistent();
        g.leak();
        r
    }
    fn is_held(&self) -> bool {
        self.is_locked()
    }
}

/// Python's `acquire(block, timeout)` on `lock`, owned by the Python object `owner` (which
/// `OwnerDied` carries). `True`: held; `False`: not (non-blocking, or the timeout passed).
pub(crate) fn acquire(
    owner: &Bound<'_, PyAny>,
    lock: &dyn HeldLock,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<bool> {
    let py = owner.py();
    // First one attempt with the GIL held (the uncontended case: no GIL round trip), as
    // multiprocessing's SemLock does; then the sliced wait with the GIL released.
    if block {
        check_timeout(timeout)?;
    }
    let outcome = match lock.attempt(None) {
        Ok(Acquired::No) if block => {
            // The clock is read only now that the first attempt failed.
            sliced(py, deadline(timeout)?, |until| {
                match lock.attempt(Some(until)) {
                    Ok(Acquired::No) => None,
                    r => Some(r),
                }
            })?
            .unwrap_or(Ok(Acquired::No))
        }
        r => r,
    };
    match outcome {
        Ok(Acquired::Yes) => Ok(true),
        Ok(Acquired::No) => Ok(false),
        Ok(Acquired::OwnerDied(was)) => Err(owner_died(owner, was)),
        Err(LockError::Deadlock) if !block => Ok(false),
        Err(e) => Err(lock_error(e)),
    }
}

/// A named, robust lock shared by processes: `multiprocessing.Lock`, attachable by name.
///
/// `Lock(name)` opens the lock or creates it; `Lock.create(name)` / `Lock.open(name)` do one
/// or the other. Only the thread that acquired it can release it. If the holding process
/// dies, the next `acquire` raises `OwnerDied` with the lock held.
#[pyclass(module = "shmkit", name = "Lock", frozen)]
pub(crate) struct PyLock {
    inner: shmkit::sync::Lock,
}

/// A lock class's constructors and Python lock methods (`Lock` and `RLock` differ only in the
/// shmkit type and a few docstrings).
macro_rules! lock_class {
    (
        $class:ident, $pyname:literal, $inner:ty, errors: $lock_error:ident,
        create: $create:literal, open: $open:literal,
        acquire: $acquire:literal, release: $release:literal, repaired: $repaired:literal
    ) => {
        named_methods!(
            $class,
            $pyname,
            #[pymethods]
            {
                #[new]
                #[pyo3(signature = (name, *, mode = 0o600, lifetime = "persistent"))]
                fn new(name: &str, mode: u32, lifetime: &str) -> PyResult<Self> {
                    let inner = options::<$inner>(mode, lifetime)?
                        .open_or_create(name)
                        .map_err(to_py)?;
                    Ok($class { inner })
                }

                #[doc = $create]
                #[staticmethod]
                #[pyo3(signature = (name, *, mode = 0o600, lifetime = "persistent"))]
                fn create(name: &str, mode: u32, lifetime: &str) -> PyResult<Self> {
                    let inner = options::<$inner>(mode, lifetime)?
                        .create(name)
                        .map_err(to_py)?;
                    Ok($class { inner })
                }

                #[doc = $open]
                #[staticmethod]
                fn open(name: &str) -> PyResult<Self> {
                    let inner = options::<$inner>(DEFAULT_MODE, DEFAULT_LIFETIME)?
                        .open(name)
                        .map_err(to_py)?;
                    Ok($class { inner })
                }

                #[doc = $acquire]
                #[pyo3(signature = (block = BLOCK, timeout = None), text_signature = "($self, block=True, timeout=None)")]
                fn acquire(
                    slf: &Bound<'_, Self>,
                    block: Truthy,
                    timeout: Option<f64>,
                ) -> PyResult<bool> {
                    acquire(slf.as_any(), &*slf.get().inner, block.0, timeout)
                }

                #[doc = $release]
                fn release(&self) -> PyResult<()> {
                    self.inner.release_held().map_err($lock_error)
                }

                /// Whether anyone holds the lock (a snapshot).
                fn locked(&self) -> bool {
                    self.inner.is_held()
                }

                #[doc = $repaired]
                fn make_consistent(&self) -> PyResult<()> {
                    self.inner.make_consistent_held().map_err($lock_error)
                }

                fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
                    acquire(slf.as_any(), &*slf.get().inner, true, None)
                }

                // Three positional parameters, not `*args`: no argument tuple built per
                // `with` block.
                #[pyo3(signature = (exc_type, exc, tb))]
                fn __exit__(
                    &self,
                    exc_type: &Bound<'_, PyAny>,
                    exc: &Bound<'_, PyAny>,
                    tb: &Bound<'_, PyAny>,
                ) -> PyResult<()> {
                    let _ = (exc_type, exc, tb);
                    self.release()
                }
            }
        );
    };
}

lock_class!(
    PyLock,
    "Lock",
    shmkit::sync::Lock,
    errors: lock_error,
    create: "Create a new lock; `FileExistsError` if the name is taken.",
    open: "Open an existing lock; `FileNotFoundError` if there is none.",
    acquire: "Acquire the lock. `block=False`: try once. `timeout=None`: wait as long as it takes;
else at most `timeout` seconds. Returns whether it is now held. Raises `OwnerDied`
(lock held) if the previous holder died holding it, and `RuntimeError` if this thread
already holds it and `block` is true.",
    release: "Release the lock; `LockNotHeld` (a `ValueError`, as `multiprocessing.Lock` raises,
and a `RuntimeError`, as `threading.Lock` raises) if this thread does not hold it.",
    repaired: "After `OwnerDied`: declare the protected data repaired, so that the lock works normally
after `release()`. `LockNotHeld` if this thread does not hold it."
);

/// A named, robust, recursive lock: `multiprocessing.RLock`, attachable by name. The thread
/// that holds it may acquire it again; it is free once released as often as acquired.
#[pyclass(module = "shmkit", name = "RLock", frozen)]
pub(crate) struct PyRLock {
    inner: shmkit::sync::RLock,
}

lock_class!(
    PyRLock,
    "RLock",
    shmkit::sync::RLock,
    errors: rlock_error,
    create: "Create a new recursive lock; `FileExistsError` if the name is taken.",
    open: "Open an existing recursive lock; `FileNotFoundError` if there is none.",
    acquire: "Acquire one level (see `Lock.acquire`); a thread that holds it gets `True` at once.",
    release: "Release one level; `RLockNotOwned` (an `AssertionError`, as `multiprocessing.RLock`
raises, and a `RuntimeError`, as `threading.RLock` raises) if this thread does not hold it.",
    repaired: "After `OwnerDied`: declare the protected data repaired (see `Lock.make_consistent`)."
);

// `Lock.acquire`/`release`/`__enter__`/`__exit__` without pyo3's trampoline.
crate::fastcall::lock_entry_points!(fast, crate::lock::PyLock);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLock>()?;
    m.add_class::<PyRLock>()?;
    fast::install(m.py())
}
