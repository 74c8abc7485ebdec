//! `Barrier`: Python's `wait(timeout=None)`, `reset`, `abort`, `parties`, `n_waiting`,
//! `broken` on shmkit's barrier. Ctrl-C during `wait` breaks the barrier, as an exception
//! in `threading.Barrier.wait` does.

use std::time::Instant;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use shmkit::sync::{BarrierError, MAX_PARTIES};

use crate::blocking::{allow_threads, deadline};
use crate::errors::{barrier_error, to_py};
use crate::named::{named_methods, options, DEFAULT_LIFETIME, DEFAULT_MODE};

/// A named barrier for `parties` processes: `multiprocessing.Barrier`, attachable by name.
/// `action` (a callable, or `None`): when this process arrives last, it calls `action()`
/// before any party is released; each process passes its own (as multiprocessing pickles it
/// into each), and it runs in whichever process arrives last. If it raises, the barrier is
/// broken (the others get `BrokenBarrierError`) and `wait` re-raises its exception. `timeout`
/// is the default for `wait()`. A pickle keeps both (the action must pickle too).
#[pyclass(module = "shmkit", name = "Barrier", frozen)]
pub(crate) struct PyBarrier {
    inner: shmkit::sync::Barrier,
    action: Option<Py<PyAny>>,
    timeout: Option<f64>,
}

/// Why a `wait` with an action failed: the barrier's error, or the action's exception.
enum Failed {
    Barrier(BarrierError),
    Action(PyErr),
}

impl From<BarrierError> for Failed {
    fn from(e: BarrierError) -> Failed {
        Failed::Barrier(e)
    }
}

/// `None` stays `None`; anything else must be callable (`TypeError`).
fn action(action: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    match action {
        Some(a) if a.is_none() => Ok(None),
        Some(a) if !a.is_callable() => Err(PyTypeError::new_err(format!(
            "action must be callable or None, not {}",
            a.get_type().name()?
        ))),
        a => Ok(a.map(Bound::unbind)),
    }
}

/// A handle over the barrier `open` opens or creates (called only once `action` and `timeout`
/// are valid, so bad arguments never create anything).
fn handle(
    action: Option<Bound<'_, PyAny>>,
    timeout: Option<f64>,
    open: impl FnOnce() -> shmkit::Result<shmkit::sync::Barrier>,
) -> PyResult<PyBarrier> {
    deadline(timeout)?;
    let action = self::action(action)?;
    let inner = open().map_err(to_py)?;
    Ok(PyBarrier {
        inner,
        action,
        timeout,
    })
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
    // A pickle keeps this handle's action and default timeout, as `multiprocessing`'s does
    // (the action must then pickle too).
    reduce(b, py) { (b.action(py), b.timeout) },
    #[pymethods]
    {
        #[new]
        #[pyo3(signature = (name, parties, action = None, timeout = None, *, mode = 0o600,
            lifetime = "persistent"))]
        fn new(
            name: &str,
            parties: i64,
            action: Option<Bound<'_, PyAny>>,
            timeout: Option<f64>,
            mode: u32,
            lifetime: &str,
        ) -> PyResult<Self> {
            let parties = self::parties(parties)?;
            let opts = options::<shmkit::sync::Barrier>(mode, lifetime)?;
            let b = handle(action, timeout, || opts.open_or_create(name, parties))?;
            // An existing barrier keeps its party count: another one is refused, not used
            // (as `Queue` refuses another capacity).
            let existing = b.inner.parties();
            if existing != parties {
                return Err(PyValueError::new_err(format!(
                    "barrier {name:?} exists for {existing} parties, not the {parties} asked for"
                )));
            }
            Ok(b)
        }

        /// Create a new barrier for `parties`; `FileExistsError` if the name is taken.
        #[staticmethod]
        #[pyo3(signature = (name, parties, action = None, timeout = None, *, mode = 0o600,
            lifetime = "persistent"))]
        fn create(
            name: &str,
            parties: i64,
            action: Option<Bound<'_, PyAny>>,
            timeout: Option<f64>,
            mode: u32,
            lifetime: &str,
        ) -> PyResult<Self> {
            let parties = self::parties(parties)?;
            let opts = options::<shmkit::sync::Barrier>(mode, lifetime)?;
            handle(action, timeout, || opts.create(name, parties))
        }

        /// Open an existing barrier; `FileNotFoundError` if there is none.
        #[staticmethod]
        #[pyo3(signature = (name, action = None, timeout = None))]
        fn open(
            name: &str,
            action: Option<Bound<'_, PyAny>>,
            timeout: Option<f64>,
        ) -> PyResult<Self> {
            let opts = options::<shmkit::sync::Barrier>(DEFAULT_MODE, DEFAULT_LIFETIME)?;
            handle(action, timeout, || opts.open(name))
        }

        /// Wait until all parties have called `wait`; returns this party's arrival index
        /// (0..parties). `timeout` (else the barrier's default): at most that many seconds, then
        /// the barrier breaks. Raises `threading.BrokenBarrierError` if it is or becomes broken.
        #[pyo3(signature = (timeout = None))]
        fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u32> {
            let deadline: Option<Instant> = deadline(timeout.or(self.timeout))?;
            let b = &self.inner;
            let mut interrupt: Option<PyErr> = None;
            let interrupted = || {
                Python::with_gil(|py| match py.check_signals() {
                    Ok(()) => false,
                    Err(e) => {
                        interrupt = Some(e);
                        true
                    }
                })
            };
            let r = match &self.action {
                None => allow_threads(py, || b.wait_interruptible(deadline, interrupted))
                    .map_err(Failed::Barrier),
                Some(action) => allow_threads(py, || {
                    let run = || {
                        Python::with_gil(|py| action.call0(py).map(drop).map_err(Failed::Action))
                    };
                    b.wait_with_interruptible(run, deadline, interrupted)
                }),
            };
            if let Some(e) = interrupt {
                return Err(e);
            }
            r.map_err(|e| match e {
                Failed::Barrier(e) => barrier_error(e),
                Failed::Action(e) => e,
            })
        }

        /// The action this handle runs when its process arrives last (`None`: none).
        #[getter]
        fn action(&self, py: Python<'_>) -> Option<Py<PyAny>> {
            self.action.as_ref().map(|a| a.clone_ref(py))
        }

        /// The garbage collector's view of the action: a bound method of an object that
        /// holds this barrier (`self.b = Barrier(name, n, action=self.sync)`) is a cycle, which
        /// the collector can see, and break by clearing that object, only through this.
        fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
            if let Some(a) = &self.action {
                visit.call(a)?;
            }
            Ok(())
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

        /// `with Barrier(name, n) as b:` gives the barrier itself.
        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }

        /// Nothing to do (the barrier is unmapped when the object goes); does not unlink, and
        /// does not break or reset the barrier.
        #[pyo3(signature = (*_args))]
        fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {}
    }
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBarrier>()
}
