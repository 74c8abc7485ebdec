//! `Semaphore` and `BoundedSemaphore`: Python's `acquire(block=True, timeout=None)` and
//! `release(n=1)` on shmkit's futex semaphores.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmkit::sync::{SemaphoreError, SemaphoreState};

use crate::blocking::{check_timeout, deadline, sliced, Truthy, BLOCK};
use crate::errors::{semaphore_error, to_py};
use crate::named::{named_methods, options, DEFAULT_LIFETIME, DEFAULT_MODE};

/// Python's `acquire(block, timeout)` on a semaphore: whether a permit was taken.
fn acquire(
    py: Python<'_>,
    s: &SemaphoreState,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<bool> {
    // First one attempt with the GIL held (a free permit: no GIL round trip), then the
    // sliced wait with the GIL released.
    if block {
        check_timeout(timeout)?;
    }
    let r = match s.try_acquire() {
        Err(SemaphoreError::WouldBlock) if block => {
            // The clock is read only now that the first attempt failed.
            sliced(py, deadline(timeout)?, |until| {
                match s.acquire_deadline(until) {
                    Err(SemaphoreError::Timeout) => None,
                    r => Some(r),
                }
            })?
            .unwrap_or(Err(SemaphoreError::Timeout))
        }
        r => r,
    };
    match r {
        Ok(()) => Ok(true),
        Err(SemaphoreError::Timeout | SemaphoreError::WouldBlock) => Ok(false),
        Err(e) => Err(semaphore_error(e)),
    }
}

/// `release(n)`: `n` permits in one step ([`SemaphoreState::release_n`]), as CPython's one
/// addition: `n` past the maximum is a `ValueError` releasing none.
fn release(s: &SemaphoreState, n: i64) -> PyResult<()> {
    if n < 1 {
        return Err(PyValueError::new_err(format!(
            "n must be one or more, not {n}"
        )));
    }
    // Past `u32`, `n` is past every maximum (at most `SEM_VALUE_MAX`).
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    s.release_n(n).map_err(semaphore_error)
}

/// A named semaphore shared by processes: `multiprocessing.Semaphore`, attachable by name.
#[pyclass(module = "shmkit", name = "Semaphore", frozen)]
pub(crate) struct PySemaphore {
    inner: shmkit::sync::Semaphore,
}

/// A named semaphore whose value never exceeds its initial one: `release()` past it raises
/// `ValueError`, as `multiprocessing.BoundedSemaphore` does.
#[pyclass(module = "shmkit", name = "BoundedSemaphore", frozen)]
pub(crate) struct PyBoundedSemaphore {
    inner: shmkit::sync::BoundedSemaphore,
}

/// A semaphore value from Python: negative is a `ValueError` (as in Python).
fn value(v: i64) -> PyResult<u32> {
    u32::try_from(v).map_err(|_| {
        PyValueError::new_err(format!(
            "semaphore initial value must be 0..={}, not {v}",
            shmkit::sync::SEM_VALUE_MAX
        ))
    })
}

/// The methods both semaphore classes share.
macro_rules! semaphore_methods {
    ($class:ident, $pyname:literal, $handle:ty, $what:literal, $bounded:literal) => {
        named_methods!($class, $pyname, #[pymethods] {
            #[new]
            #[pyo3(signature = (name, value = 1, *, mode = 0o600, lifetime = "persistent"))]
            fn new(name: &str, value: i64, mode: u32, lifetime: &str) -> PyResult<Self> {
                let value = self::value(value)?;
                let inner = options::<$handle>(mode, lifetime)?
                    .open_or_create(name, value)
                    .map_err(to_py)?;
                // A bounded semaphore keeps its bound: another one is refused, not used (as
                // `Queue` refuses another capacity). A plain one's value is only its start.
                if $bounded && inner.max_value() != value {
                    return Err(PyValueError::new_err(format!(
                        "bounded semaphore {name:?} exists with bound {}, not the {value} \
                         asked for",
                        inner.max_value()
                    )));
                }
                Ok($class { inner })
            }

            #[doc = concat!("Create a new ", $what, " with `value` permits; `FileExistsError` if the name is taken.")]
            #[staticmethod]
            #[pyo3(signature = (name, value = 1, *, mode = 0o600, lifetime = "persistent"))]
            fn create(name: &str, value: i64, mode: u32, lifetime: &str) -> PyResult<Self> {
                let inner = options::<$handle>(mode, lifetime)?
                    .create(name, self::value(value)?)
                    .map_err(to_py)?;
                Ok($class { inner })
            }

            #[doc = concat!("Open an existing ", $what, "; `FileNotFoundError` if there is none.")]
            #[staticmethod]
            fn open(name: &str) -> PyResult<Self> {
                let inner = options::<$handle>(DEFAULT_MODE, DEFAULT_LIFETIME)?
                    .open(name)
                    .map_err(to_py)?;
                Ok($class { inner })
            }

            /// Take a permit. `block=False`: try once. `timeout=None`: wait as long as it
            /// takes; else at most `timeout` seconds. Returns whether a permit was taken.
            #[pyo3(signature = (block = BLOCK, timeout = None), text_signature = "($self, block=True, timeout=None)")]
            fn acquire(&self, py: Python<'_>, block: Truthy, timeout: Option<f64>) -> PyResult<bool> {
                acquire(py, &self.inner, block.0, timeout)
            }

            /// Give back `n` permits (any process or thread may); `ValueError`, releasing
            /// none, if `n` would take the value past its maximum.
            #[pyo3(signature = (n = 1))]
            fn release(&self, n: i64) -> PyResult<()> {
                release(&self.inner, n)
            }

            /// The number of free permits (a snapshot).
            fn get_value(&self) -> u32 {
                self.inner.value()
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                acquire(py, &self.inner, true, None)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
                release(&self.inner, 1)
            }
        });
    };
}

semaphore_methods!(
    PySemaphore,
    "Semaphore",
    shmkit::sync::Semaphore,
    "semaphore",
    false
);
semaphore_methods!(
    PyBoundedSemaphore,
    "BoundedSemaphore",
    shmkit::sync::BoundedSemaphore,
    "bounded semaphore",
    true
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySemaphore>()?;
    m.add_class::<PyBoundedSemaphore>()?;
    Ok(())
}
