//! `Condition`: Python's condition variable on shmkit's `Condition`, which is bound to its
//! own robust lock, in the same segment. Python's `lock=` argument accepts only that lock:
//! the condition itself (a `Condition` of the same name), which `acquire`/`release`/`with`
//! work on as `Lock`'s do; any other lock is a `TypeError` or `ValueError` that says so.

use std::time::Instant;

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use shmkit::sync::ConditionState;

use crate::blocking::{deadline, passed, sliced, Truthy, BLOCK};
use crate::errors::{rlock_error, to_py, NotHeld};
use crate::lock::{acquire, HeldLock};
use crate::named::{named_methods, options, DEFAULT_LIFETIME, DEFAULT_MODE};

/// A named condition variable with its own lock, shared by processes:
/// `multiprocessing.Condition`, attachable by name. The lock lives in the condition's
/// segment, and the condition is its own lock object (`acquire`, `release`, `with`). `lock`
/// (Python's argument) may be `None` or that same lock, i.e. a `Condition` of this name;
/// any other lock (a `shmkit.Lock`/`RLock`, a `threading` or `multiprocessing` one) is a
/// `TypeError`, and another `Condition` a `ValueError`: a shmkit condition cannot wait on a
/// lock outside its segment. To share the lock, share the condition (`Condition.open(name)`).
#[pyclass(module = "shmkit", name = "Condition", frozen)]
pub(crate) struct PyCondition {
    inner: shmkit::sync::Condition,
}

/// Python's `lock=` for the condition `name`: `None`, or the condition's own lock (a
/// `Condition` of that name); anything else is an error that explains why.
fn check_own_lock(name: &str, lock: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let Some(lock) = lock.filter(|l| !l.is_none()) else {
        return Ok(());
    };
    match lock.downcast::<PyCondition>() {
        Ok(c) if c.get().inner.name() == name => Ok(()),
        Ok(c) => Err(PyValueError::new_err(format!(
            "a shmkit Condition owns its lock, in its own segment: condition {name:?} cannot \
             use the lock of condition {other:?}; to share that lock, use that condition \
             (Condition.open('{other}'))",
            other = c.get().inner.name()
        ))),
        Err(_) => Err(PyTypeError::new_err(format!(
            "a shmkit Condition owns its lock, in its own segment, and cannot wait on another \
             lock (here of type {}): \
             use the condition itself as the lock (acquire/release/with), and share it by \
             name with Condition.open('{name}')",
            lock.get_type().name()?
        ))),
    }
}

impl PyCondition {
    /// Python's `wait(timeout)` against a deadline: whether notified.
    fn wait_until(slf: &Bound<'_, Self>, deadline: Option<Instant>) -> PyResult<bool> {
        let c: &ConditionState = &slf.get().inner;
        let Ok(guard) = c.as_lock().adopt() else {
            return Err(NotHeld::RLock.err_with("cannot wait on un-acquired lock"));
        };
        let mut ticket = c.release_for_wait(guard);
        // The wait for a notify, then taking the lock back, each in slices with the GIL
        // released and Ctrl-C checked between them, as Python's `Condition.wait` (whose
        // `finally` re-acquires the lock, interruptibly): a KeyboardInterrupt raised while
        // waiting comes with the lock held again, one raised while taking it back without.
        let waited = sliced(slf.py(), deadline, |until| {
            c.wait_released_deadline(&mut ticket, until).ok()
        });
        // The wait ends before the re-lock (a notify made meanwhile counts only the waiters
        // still waiting).
        drop(ticket);
        match (waited, acquire(slf.as_any(), c.as_lock(), true, None)) {
            (waited, Ok(_)) => Ok(waited?.is_some()),
            (Ok(_), Err(e)) => Err(e),
            (Err(first), Err(e)) => {
                // A Ctrl-C during the wait, then `OwnerDied` (or a second Ctrl-C) taking the
                // lock back: keep the first as the second's context, as Python chains
                // exceptions raised while handling one.
                let py = slf.py();
                e.value(py).setattr("__context__", first.value(py))?;
                Err(e)
            }
        }
    }
}

named_methods!(
    PyCondition,
    "Condition",
    #[pymethods]
    {
        #[new]
        #[pyo3(signature = (name, lock = None, *, mode = 0o600, lifetime = "persistent"))]
        fn new(
            name: &str,
            lock: Option<&Bound<'_, PyAny>>,
            mode: u32,
            lifetime: &str,
        ) -> PyResult<Self> {
            check_own_lock(name, lock)?;
            let inner = options::<shmkit::sync::Condition>(mode, lifetime)?
                .open_or_create(name)
                .map_err(to_py)?;
            Ok(PyCondition { inner })
        }

        /// Create a new condition; `FileExistsError` if the name is taken.
        #[staticmethod]
        #[pyo3(signature = (name, *, mode = 0o600, lifetime = "persistent"))]
        fn create(name: &str, mode: u32, lifetime: &str) -> PyResult<Self> {
            let inner = options::<shmkit::sync::Condition>(mode, lifetime)?
                .create(name)
                .map_err(to_py)?;
            Ok(PyCondition { inner })
        }

        /// Open an existing condition; `FileNotFoundError` if there is none.
        #[staticmethod]
        fn open(name: &str) -> PyResult<Self> {
            let inner = options::<shmkit::sync::Condition>(DEFAULT_MODE, DEFAULT_LIFETIME)?
                .open(name)
                .map_err(to_py)?;
            Ok(PyCondition { inner })
        }

        /// Acquire the condition's lock (see `Lock.acquire`).
        #[pyo3(signature = (block = BLOCK, timeout = None), text_signature = "($self, block=True, timeout=None)")]
        fn acquire(slf: &Bound<'_, Self>, block: Truthy, timeout: Option<f64>) -> PyResult<bool> {
            acquire(slf.as_any(), slf.get().inner.as_lock(), block.0, timeout)
        }

        /// Release the condition's lock; `RLockNotOwned` (`AssertionError` and `RuntimeError`,
        /// as `multiprocessing.Condition`'s default RLock and `threading`'s) if this thread
        /// does not hold it.
        fn release(&self) -> PyResult<()> {
            self.inner.as_lock().release_held().map_err(rlock_error)
        }

        /// After `OwnerDied`: declare the protected data repaired (see `Lock.make_consistent`).
        fn make_consistent(&self) -> PyResult<()> {
            self.inner
                .as_lock()
                .make_consistent_held()
                .map_err(rlock_error)
        }

        /// Release the lock, wait until notified or `timeout` seconds pass (`None`: no limit),
        /// take the lock back. Returns `False` if the timeout passed. The lock must be held
        /// (`RLockNotOwned` otherwise: an `AssertionError` and a `RuntimeError`). Ctrl-C
        /// interrupts both steps, as in Python: a
        /// `KeyboardInterrupt` during the wait for a notify is raised once the lock is held
        /// again; one while taking the lock back (someone else holds it) is raised without
        /// the lock. If the lock's holder died, `OwnerDied` (the lock held).
        #[pyo3(signature = (timeout = None))]
        fn wait(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<bool> {
            Self::wait_until(slf, deadline(timeout)?)
        }

        /// Wait until `predicate()` is true (called with the lock held, first before any wait),
        /// at most `timeout` seconds. Returns the predicate's last value.
        #[pyo3(signature = (predicate, timeout = None))]
        fn wait_for<'py>(
            slf: &Bound<'py, Self>,
            predicate: &Bound<'py, PyAny>,
            timeout: Option<f64>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let deadline = deadline(timeout)?;
            let mut result = predicate.call0()?;
            while !result.is_truthy()? {
                if passed(deadline) {
                    break;
                }
                Self::wait_until(slf, deadline)?;
                result = predicate.call0()?;
            }
            Ok(result)
        }

        /// Wake up to `n` of the waiters waiting now: any int, as `multiprocessing`'s (whose
        /// `notify_all()` is `notify(sys.maxsize)`); `n <= 0` wakes nobody. The lock must be
        /// held.
        #[pyo3(signature = (n = Count(1)), text_signature = "($self, n=1)")]
        fn notify(&self, n: Count) -> PyResult<()> {
            let g = self
                .inner
                .as_lock()
                .adopt()
                .map_err(|_| NotHeld::RLock.err_with("cannot notify on un-acquired lock"))?;
            if n.0 > 0 {
                self.inner.notify(&g, n.0);
            }
            g.leak();
            Ok(())
        }

        /// Wake every waiter. The lock must be held.
        fn notify_all(&self) -> PyResult<()> {
            let g = self
                .inner
                .as_lock()
                .adopt()
                .map_err(|_| NotHeld::RLock.err_with("cannot notify on un-acquired lock"))?;
            self.inner.notify_all(&g);
            g.leak();
            Ok(())
        }

        fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
            acquire(slf.as_any(), slf.get().inner.as_lock(), true, None)
        }

        #[pyo3(signature = (*_args))]
        fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
            self.release()
        }
    }
);

/// `notify`'s `n`: any Python int (`TypeError` otherwise), clamped to `0..=u32::MAX` (the
/// most waiters one notify can wake; more is every waiter).
#[derive(Clone, Copy)]
struct Count(u32);

impl<'py> FromPyObject<'py> for Count {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<i64>() {
            Ok(n) => Ok(Count(n.clamp(0, i64::from(u32::MAX)) as u32)),
            // Past 64 bits: its sign decides.
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                Ok(Count(if obj.gt(0)? { u32::MAX } else { 0 }))
            }
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCondition>()
}
