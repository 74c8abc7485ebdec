//! `Event`: Python's `set`/`clear`/`is_set`/`wait(timeout=None)` on shmkit's futex event.

use pyo3::prelude::*;

use crate::blocking::{check_timeout, deadline, sliced};
use crate::errors::to_py;
use crate::named::{named_methods, options, DEFAULT_LIFETIME, DEFAULT_MODE};

/// A named event shared by processes: `multiprocessing.Event`, attachable by name.
#[pyclass(module = "shmkit", name = "Event", frozen)]
pub(crate) struct PyEvent {
    inner: shmkit::sync::Event,
}

named_methods!(
    PyEvent,
    "Event",
    #[pymethods]
    {
        #[new]
        #[pyo3(signature = (name, *, mode = 0o600, lifetime = "persistent"))]
        fn new(name: &str, mode: u32, lifetime: &str) -> PyResult<Self> {
            let inner = options::<shmkit::sync::Event>(mode, lifetime)?
                .open_or_create(name)
                .map_err(to_py)?;
            Ok(PyEvent { inner })
        }

        /// Create a new (clear) event; `FileExistsError` if the name is taken.
        #[staticmethod]
        #[pyo3(signature = (name, *, mode = 0o600, lifetime = "persistent"))]
        fn create(name: &str, mode: u32, lifetime: &str) -> PyResult<Self> {
            let inner = options::<shmkit::sync::Event>(mode, lifetime)?
                .create(name)
                .map_err(to_py)?;
            Ok(PyEvent { inner })
        }

        /// Open an existing event; `FileNotFoundError` if there is none.
        #[staticmethod]
        fn open(name: &str) -> PyResult<Self> {
            let inner = options::<shmkit::sync::Event>(DEFAULT_MODE, DEFAULT_LIFETIME)?
                .open(name)
                .map_err(to_py)?;
            Ok(PyEvent { inner })
        }

        /// Whether the flag is set.
        fn is_set(&self) -> bool {
            self.inner.is_set()
        }

        /// Set the flag and wake every waiter.
        fn set(&self) {
            self.inner.set()
        }

        /// Clear the flag.
        fn clear(&self) {
            self.inner.clear()
        }

        /// Wait until the flag is set, at most `timeout` seconds (`None`: no limit). Returns
        /// whether it is set.
        #[pyo3(signature = (timeout = None))]
        fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
            check_timeout(timeout)?;
            let ev = &self.inner;
            // One ticket for every slice: a set that a clear follows while this thread is
            // between two slices (back for the GIL and the signal handlers) still releases it.
            let ticket = ev.ticket();
            if ticket.was_set() {
                return Ok(true);
            }
            let deadline = deadline(timeout)?;
            Ok(sliced(py, deadline, |until| {
                ev.wait_since_deadline(ticket, until).ok()
            })?
            .is_some())
        }

        /// `with Event(name) as ev:` gives the event itself.
        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }

        /// Nothing to do (the event is unmapped when the object goes); does not unlink.
        #[pyo3(signature = (*_args))]
        fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {}
    }
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEvent>()
}
