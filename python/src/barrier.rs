//! `Barrier`: Python's `wait(timeout=None)`, `reset`, `abort`, `parties`, `n_waiting`,
//! `broken` on shmkit's barrier. Ctrl-C during `wait` breaks the barrier, as an exception
//! in `threading.Barrier.wait` does.

use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmkit::sync::MAX_PARTIES;

use crate::blocking::deadline;
use crate::errors::{barrier_error, to_py};
use crate::named::{named_methods, options, DEFAULT_MODE};

/// A named barrier for `parties` processes: `multiprocessing.Barrier`, attachable by name.
/// `timeout` is the default for `wait()`. (Python's `action` callable is not supported: the
/// parties are processes, and no single one of them runs before the others are released.)
#[pyclass(module = "shmkit", name = "Barrier", frozen)]
pub(crate) struct PyBarrier {
    inner: shmkit::sync::Barrier,
    timeout: Option<f64>,
}

/// A party count from Python: 1..=MAX_PARTIES, else `ValueError`.
fn parties(n: i64) -> PyResult<u32> {
    u32::try_from(n)
        .ok()
        .filter(|&p| (1..=MAX_PARTIES).contains(&p))
        .ok_or_else(|| PyValueError::new_err(format!("parties must be 1..={MAX_PARTIES}, not {n}")))
}

named_methods!(
    PyBarrier,
    "Barrier",
    #[pymethods]
    {
        #[new]
        #[pyo3(signature = (name, parties, timeout = None, *, mode = 0o600))]
        fn new(name: &str, parties: i64, timeout: Option<f64>, mode: u32) -> PyResult<Self> {
            deadline(timeout)?;
            let inner = options::<shmkit::sync::Barrier>(mode)
                .open_or_create(name, self::parties(parties)?)
                .map_err(to_py)?;
            Ok(PyBarrier { inner, timeout })
        }

        /// Create a new barrier for `parties`; `FileExistsError` if the name is taken.
        #[staticmethod]
        #[pyo3(signature = (name, parties, timeout = None, *, mode = 0o600))]
        fn create(name: &str, parties: i64, timeout: Option<f64>, mode: u32) -> PyResult<Self> {
            deadline(timeout)?;
            let inner = options::<shmkit::sync::Barrier>(mode)
                .create(name, self::parties(parties)?)
                .map_err(to_py)?;
            Ok(PyBarrier { inner, timeout })
        }

        /// Open an existing barrier; `FileNotFoundError` if there is none.
        #[staticmethod]
        #[pyo3(signature = (name, timeout = None))]
        fn open(name: &str, timeout: Option<f64>) -> PyResult<Self> {
            deadline(timeout)?;
            let inner = options::<shmkit::sync::Barrier>(DEFAULT_MODE)
                .open(name)
                .map_err(to_py)?;
            Ok(PyBarrier { inner, timeout })
        }

        /// Wait until all parties have called `wait`; returns this party's arrival index
        /// (0..parties). `timeout` (else the barrier's default): at most that many seconds, then
        /// the barrier breaks. Raises `threading.BrokenBarrierError` if it is or becomes broken.
        #[pyo3(signature = (timeout = None))]
        fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u32> {
            let deadline: Option<Instant> = deadline(timeout.or(self.timeout))?;
            let b = &self.inner;
            let mut interrupt: Option<PyErr> = None;
            let r = py.allow_threads(|| {
                b.wait_interruptible(deadline, || {
                    Python::with_gil(|py| match py.check_signals() {
                        Ok(()) => false,
                        Err(e) => {
                            interrupt = Some(e);
                            true
                        }
                    })
                })
            });
            if let Some(e) = interrupt {
                return Err(e);
            }
            r.map_err(barrier_error)
        }

        /// Return the barrier to its initial state; current waiters get `BrokenBarrierError`.
        fn reset(&self) {
            self.inner.reset()
        }

        /// Break the barrier: current and future waiters get `BrokenBarrierError` until `reset()`.
        fn abort(&self) {
            self.inner.abort()
        }

        /// The number of parties.
        #[getter]
        fn parties(&self) -> u32 {
            self.inner.parties()
        }

        /// The number of parties waiting now (0 while broken).
        #[getter]
        fn n_waiting(&self) -> u32 {
            self.inner.n_waiting()
        }

        /// Whether the barrier is broken.
        #[getter]
        fn broken(&self) -> bool {
            self.inner.is_broken()
        }
    }
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBarrier>()
}
