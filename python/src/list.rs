//! `ShareableList`: `multiprocessing.shared_memory.ShareableList` on `shmkit::list`, in
//! CPython's byte layout (stock Python opens a list made here, and the reverse), with shmkit's
//! fixes: `str` slots sized by UTF-8 bytes, values read back exactly (trailing NULs kept),
//! shmkit writers atomic for shmkit readers, no resource tracker.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use shmkit::list::{Item, ShareableList};
use shmkit::segment::Lifetime;

use crate::blocking::{open_waiting, sliced};
use crate::errors::to_py;
use crate::named;

/// A fixed-length list of `int` (64-bit), `float`, `bool`, `None`, `str` and `bytes` in
/// shared memory, in the layout of CPython's `ShareableList`.
#[pyclass(module = "shmkit", name = "ShareableList", frozen)]
pub(crate) struct PyShareableList {
    /// Mapped until this object goes, also once closed. Frozen (no `&mut self`): a call
    /// waiting with the GIL released (for a writer, or for the lock) holds no borrow that a
    /// `close()` from another thread, or from a `fork()`ed child, would find taken; and since
    /// such a call may be reading the mapping, `close()` only marks the object closed.
    inner: ShareableList,
    /// Set by `close()`: later calls raise `ValueError`.
    closed: AtomicBool,
    name: String,
}

/// `struct.error`, what CPython's `ShareableList` raises for an `int` outside int64.
fn struct_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static TYPE: GILOnceCell<Py<PyType>> = GILOnceCell::new();
    TYPE.import(py, "struct", "error")
}

/// A Python value as an item: `TypeError` for a type the list cannot store, `struct.error`
/// ("argument out of range", as CPython) for an `int` outside int64.
fn to_item(v: &Bound<'_, PyAny>) -> PyResult<Item> {
    if v.is_none() {
        Ok(Item::None)
    } else if let Ok(b) = v.downcast::<PyBool>() {
        Ok(Item::Bool(b.is_true()))
    } else if v.is_instance_of::<PyInt>() {
        v.extract::<i64>()
            .map(Item::Int)
            .map_err(|_| match struct_error(v.py()) {
                Ok(t) => PyErr::from_type(t.clone(), "argument out of range"),
                Err(e) => e,
            })
    } else if let Ok(f) = v.downcast::<PyFloat>() {
        Ok(Item::Float(f.value()))
    } else if let Ok(s) = v.downcast::<PyString>() {
        Ok(Item::Str(s.to_str()?.to_owned()))
    } else if let Ok(b) = v.downcast::<PyBytes>() {
        Ok(Item::Bytes(b.as_bytes().to_vec()))
    } else {
        Err(PyTypeError::new_err(format!(
            "ShareableList items are int, float, bool, None, str or bytes, not {}",
            v.get_type().name()?
        )))
    }
}

/// An item as a Python value.
fn to_py_value(py: Python<'_>, item: Item) -> PyResult<PyObject> {
    Ok(match item {
        Item::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Item::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        Item::Bool(b) => PyBool::new(py, b).to_owned().into_any().unbind(),
        Item::None => py.None(),
        Item::Str(s) => PyString::new(py, &s).into_any().unbind(),
        Item::Bytes(b) => PyBytes::new(py, &b).into_any().unbind(),
    })
}

/// CPython's default name shape: `psm_` and 8 random hex digits.
fn random_name() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("psm_{:08x}", h.finish() as u32)
}

impl PyShareableList {
    fn list(&self) -> PyResult<&ShareableList> {
        // Relaxed: a flag of this process's object; the mapping stays either way.
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyValueError::new_err(format!(
                "shareable list {:?} is closed",
                self.name
            )));
        }
        Ok(&self.inner)
    }

    fn wrap(l: ShareableList) -> Self {
        PyShareableList {
            name: l.name().to_owned(),
            inner: l,
            closed: AtomicBool::new(false),
        }
    }

    fn create_impl(
        seq: Option<&Bound<'_, PyAny>>,
        name: Option<&str>,
        reserve: usize,
        mode: u32,
        lifetime: Lifetime,
    ) -> PyResult<Self> {
        let mut items = Vec::new();
        if let Some(seq) = seq {
            for v in seq.try_iter()? {
                items.push(to_item(&v?)?);
            }
        }
        let opts = ShareableList::options()
            .reserve(reserve)
            .mode(mode)
            .lifetime(lifetime)
            .unlink_on_drop(false);
        let l = match name {
            Some(n) => opts.create(n, &items),
            None => loop {
                // A random name, as CPython's; another try if it is taken.
                match opts.create(&random_name(), &items) {
                    Err(shmkit::Error::AlreadyExists { .. }) => continue,
                    other => break other,
                }
            },
        };
        l.map(Self::wrap).map_err(to_py)
    }

    /// Open (a CPython list still at 0 bytes is waited for: [`open_waiting`]).
    fn open_impl(py: Python<'_>, name: &str) -> PyResult<Self> {
        let l = open_waiting(py, |t| {
            ShareableList::options()
                .unlink_on_drop(false)
                .open_timeout(t)
                .open(name)
        })?;
        Ok(Self::wrap(l))
    }

    /// Item `index`: the one read of an item every call makes. One try with the GIL held (no
    /// writer mid-update: the usual case), then the sliced wait, which releases the GIL and
    /// lets Ctrl-C in, for as long as a writer's update of the item takes.
    fn get(py: Python<'_>, l: &ShareableList, index: isize) -> PyResult<Item> {
        match l.try_get(index) {
            Err(shmkit::Error::WouldBlock) => {
                sliced(py, None, |until| match l.get_deadline(index, until) {
                    Err(shmkit::Error::Timeout) => None,
                    r => Some(r),
                })?
                .unwrap_or(Err(shmkit::Error::Timeout))
            }
            r => r,
        }
        .map_err(to_py)
    }

    /// Every item, as Python values (each one a [`get`](Self::get)).
    fn items(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let l = self.list()?;
        (0..l.len())
            .map(|i| to_py_value(py, Self::get(py, l, i as isize)?))
            .collect()
    }

    /// Whether each item equals `value` (`value == item`, as CPython's), in order, each one
    /// read ([`get`](Self::get)) only when the one before has been compared: by the library's
    /// [`Item::py_eq`] when `value` is exactly of a type the list holds ([`probe`]), else by
    /// Python's `==`.
    fn equal<'a>(
        &'a self,
        value: &'a Bound<'a, PyAny>,
    ) -> PyResult<impl Iterator<Item = PyResult<bool>> + 'a> {
        let l = self.list()?;
        let py = value.py();
        let probe = probe(value);
        Ok((0..l.len()).map(move |i| {
            let item = Self::get(py, l, i as isize)?;
            match &probe {
                Some(v) => Ok(item.py_eq(v)),
                None => value.eq(to_py_value(py, item)?),
            }
        }))
    }
}

/// `value` as an item, when it is exactly of a type the list holds (`None`, `bool`, `int`,
/// `float`, `str`, `bytes`), whose `==` the library's comparison is; `None` for anything
/// else (a subclass, a NumPy scalar, a `bytearray`, an int past 64 bits), which `count` and
/// `index` compare with Python's `value == item` against each item, as CPython does.
fn probe(value: &Bound<'_, PyAny>) -> Option<Item> {
    let exact = value.is_none()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyBytes>();
    if exact {
        to_item(value).ok()
    } else {
        None
    }
}

#[pymethods]
impl PyShareableList {
    /// CPython's signature: with a `sequence` (or no `name`), create a list holding it under
    /// `name` (a random `psm_XXXXXXXX` if `None`); with only `name`, open that list (`reserve`,
    /// `mode` and `lifetime` ignored; a bad `lifetime` is still a `ValueError`). `lifetime`
    /// defaults to `"persistent"` with a `name` and to `"owned"` without one, so that `shmkit
    /// gc` removes a list under a random name once its creator died and no process maps it.
    #[new]
    #[pyo3(signature = (sequence = None, *, name = None, reserve = 0, mode = 0o600,
        lifetime = None))]
    fn new(
        py: Python<'_>,
        sequence: Option<&Bound<'_, PyAny>>,
        name: Option<&str>,
        reserve: usize,
        mode: u32,
        lifetime: Option<&str>,
    ) -> PyResult<Self> {
        let default = if name.is_some() {
            Lifetime::Persistent
        } else {
            Lifetime::Owned
        };
        let lifetime = lifetime.map_or(Ok(default), named::lifetime)?;
        match (sequence, name) {
            (None, Some(n)) => Self::open_impl(py, n),
            (seq, n) => Self::create_impl(seq, n, reserve, mode, lifetime),
        }
    }

    /// Create a list holding `sequence`; `FileExistsError` if the name is taken. `lifetime`:
    /// `"persistent"` (`shmkit gc` never removes it) or `"owned"` (`gc` removes it once this
    /// process is dead and no process maps it).
    #[staticmethod]
    #[pyo3(signature = (name, sequence = None, *, reserve = 0, mode = 0o600,
        lifetime = "persistent"))]
    fn create(
        name: &str,
        sequence: Option<&Bound<'_, PyAny>>,
        reserve: usize,
        mode: u32,
        lifetime: &str,
    ) -> PyResult<Self> {
        let lifetime = named::lifetime(lifetime)?;
        Self::create_impl(sequence, Some(name), reserve, mode, lifetime)
    }

    /// Open an existing list (made by shmkit or by CPython 3.9–3.13).
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Self> {
        Self::open_impl(py, name)
    }

    /// The list's name (its file is `/dev/shm/NAME`).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// A new `shmkit.SharedMemory` (`raw=True`) attached to the list's bytes, for code that
    /// uses CPython's `sl.shm` (`.name`, `.buf`, `.close()`, `.unlink()`).
    #[getter]
    fn shm<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kw = PyDict::new(py);
        kw.set_item("raw", true)?;
        py.get_type::<crate::segment::PySharedMemory>().call_method(
            "open",
            (&self.name,),
            Some(&kw),
        )
    }

    /// The `struct` format of every item, joined (as CPython's `format`).
    #[getter]
    fn format(&self) -> PyResult<String> {
        let l = self.list()?;
        let mut f = String::new();
        for i in 0..l.len() {
            f.push_str(&l.format_of(i as isize).map_err(to_py)?);
        }
        Ok(f)
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.list()?.len())
    }

    fn __getitem__(&self, py: Python<'_>, index: isize) -> PyResult<PyObject> {
        to_py_value(py, Self::get(py, self.list()?, index)?)
    }

    fn __setitem__(&self, py: Python<'_>, index: isize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let l = self.list()?;
        let item = to_item(value)?;
        match l.try_set(index, &item) {
            Err(shmkit::Error::WouldBlock) => sliced(py, None, |until| {
                match l.set_deadline(index, &item, until) {
                    Err(shmkit::Error::Timeout) => None,
                    r => Some(r),
                }
            })?
            .unwrap_or(Err(shmkit::Error::Timeout)),
            r => r,
        }
        .map_err(to_py)
    }

    /// Iterates over a snapshot of the items taken when iteration starts.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyList::new(py, self.items(py)?)?
            .as_any()
            .try_iter()?
            .into_any())
    }

    /// How many items equal `value` (`value == item`, as CPython's).
    fn count(&self, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut n = 0;
        for eq in self.equal(value)? {
            n += usize::from(eq?);
        }
        Ok(n)
    }

    /// The first index of `value` (`value == item`, as CPython's); `ValueError` if it is
    /// absent.
    fn index(&self, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        for (i, eq) in self.equal(value)?.enumerate() {
            if eq? {
                return Ok(i);
            }
        }
        Err(PyValueError::new_err(format!(
            "{} not in this container",
            value.repr().map(|r| r.to_string()).unwrap_or_default()
        )))
    }

    /// The size in bytes of item `index`'s slot: the longest `str` (UTF-8) or `bytes` it
    /// takes.
    fn slot_size(&self, index: isize) -> PyResult<usize> {
        self.list()?.slot_size(index).map_err(to_py)
    }

    /// Close the list: later calls raise `ValueError`; the memory is unmapped from this process
    /// when the object goes (it stays in /dev/shm). Closing twice is harmless.
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Remove the name from the system. Handles already open keep working.
    fn unlink(&self) -> PyResult<()> {
        crate::named::unlink(&self.name)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes (does not unlink).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) {
        self.close()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        if self.list().is_err() {
            return Ok(format!(
                "<shmkit.ShareableList name={:?} closed>",
                self.name
            ));
        }
        let items = PyList::new(py, self.items(py)?)?;
        Ok(format!(
            "ShareableList({}, name={})",
            items.repr()?,
            PyString::new(py, &self.name).repr()?
        ))
    }

    /// Pickled by name: unpickling opens the same list (`ShareableList.open(name)`).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let open = slf.get_type().getattr("open")?;
        Ok((open, (slf.get().name.clone(),)))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyShareableList>()
}
