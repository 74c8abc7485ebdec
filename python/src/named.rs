//! What every named object shares: options from Python keywords, `unlink`, and the methods
//! [`named_methods!`] adds to each class (`name`, `unlink()`, `__repr__`, `__reduce__`).

use pyo3::prelude::*;
use shmkit::sync::SyncOptions;

use crate::errors::to_py;

/// The mode `open` passes (unused when opening); `create` and the constructors default to the
/// same 0o600, spelt as a literal in their signatures so that Python shows it.
pub(crate) const DEFAULT_MODE: u32 = 0o600;

/// The `lifetime=` that `open` passes (unused when opening); `create` and the constructors
/// default to the same `"persistent"`, spelt as a literal in their signatures.
pub(crate) const DEFAULT_LIFETIME: &str = "persistent";

/// Options for a named sync primitive: the mode and lifetime (both used only when the call
/// creates the object: an existing one keeps its own, as the library's `open_or_create`
/// does), and never unlink on drop (a Python handle going away never removes the object: no
/// resource tracker). `ValueError` for a lifetime [`lifetime`] refuses.
pub(crate) fn options<T>(mode: u32, lifetime: &str) -> PyResult<SyncOptions<T>> {
    Ok(SyncOptions::<T>::default()
        .mode(mode)
        .lifetime(self::lifetime(lifetime)?)
        .unlink_on_drop(false))
}

/// Remove the name `name` (what `unlink()` does for every class).
pub(crate) fn unlink(name: &str) -> PyResult<()> {
    shmkit::Segment::unlink(name).map_err(to_py)
}

/// Wraps a class's one `#[pymethods]` block, adding `name`, `unlink()`, `__repr__` and
/// `__reduce__` (pickled as `Class.open(name)`) to it, for a class whose field `inner` is a
/// shmkit named handle:
///
/// ```ignore
/// named_methods!(PyLock, "Lock", #[pymethods] { /* the class's methods */ });
/// ```
///
/// A class whose handles carry process-local settings that `open` takes too (a `Barrier`'s
/// `action` and `timeout`) names them, so that a pickle keeps them:
///
/// ```ignore
/// named_methods!(PyBarrier, "Barrier", reduce(b, py) { (b.action(py), b.timeout) }, #[pymethods] { … });
/// ```
///
/// The caller writes `#[pymethods]` (passed through as two token trees): the code pyo3
/// generates then has the caller's hygiene, so signatures such as `(*_args)` resolve. One
/// block per class, so pyo3's `multiple-pymethods` feature (an inventory lookup, with a heap
/// allocation, on every method call) is not needed.
macro_rules! named_methods {
    ($class:ident, $pyname:literal, $pound:tt $pymethods:tt { $($methods:tt)* }) => {
        crate::named::named_methods!(
            $class, $pyname, reduce(_this, _py) {}, $pound $pymethods { $($methods)* }
        );
    };
    (
        $class:ident,
        $pyname:literal,
        reduce($this:ident, $py:ident) $extra:block,
        $pound:tt $pymethods:tt { $($methods:tt)* }
    ) => {
        $pound $pymethods
        impl $class {
            $($methods)*

            /// The object's name (its file is `/dev/shm/NAME`).
            #[getter]
            fn name(&self) -> &str {
                self.inner.name()
            }

            /// Remove the name from the system. Handles already open (here and in other
            /// processes) keep working; new opens fail with `FileNotFoundError`.
            fn unlink(&self) -> pyo3::PyResult<()> {
                crate::named::unlink(self.inner.name())
            }

            fn __repr__(&self) -> String {
                format!(
                    concat!("<shmkit.", $pyname, " name={:?}>"),
                    self.inner.name()
                )
            }

            /// Pickled by name: unpickling opens the same object (`open(name, …)`, with the
            /// handle's process-local settings where the class has any).
            fn __reduce__<'py>(
                slf: &pyo3::Bound<'py, Self>,
            ) -> pyo3::PyResult<(pyo3::Bound<'py, pyo3::PyAny>, pyo3::Bound<'py, pyo3::PyAny>)> {
                use pyo3::types::{PyAnyMethods, PyTuple, PyTupleMethods};
                use pyo3::IntoPyObject;
                let $py = slf.py();
                let open = slf.get_type().getattr("open")?;
                let $this = slf.borrow();
                let name = $this.inner.name().into_pyobject($py)?.into_any();
                let extra = $extra.into_pyobject($py)?;
                let args: Vec<_> = std::iter::once(name).chain(extra.iter()).collect();
                let args = PyTuple::new($py, args)?;
                Ok((open, args.into_any()))
            }
        }
    };
}
pub(crate) use named_methods;

/// The `lifetime=` keyword of the classes that create objects: `"persistent"` (the default:
/// `shmkit gc` never removes it) or `"owned"` (`gc` removes it once its creator is dead and
/// no process maps it; `SPEC.md` §4.4, §4.6).
pub(crate) fn lifetime(lifetime: &str) -> PyResult<shmkit::segment::Lifetime> {
    shmkit::segment::Lifetime::from_name(lifetime).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "lifetime must be 'persistent' or 'owned', not {lifetime:?}"
        ))
    })
}
