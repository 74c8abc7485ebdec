//! `SharedMemory`: a named segment of bytes, as `multiprocessing.shared_memory.SharedMemory`,
//! exposed through the buffer protocol (`buf`, `memoryview(shm)`, `numpy.frombuffer(shm)`:
//! zero-copy). Every export is counted: `close()` with views still alive raises `BufferError`
//! instead of leaving them dangling, and the mapping lives as long as any view does.
//!
//! `buf` is one memoryview, made at its first use and kept, which `close()` releases (as
//! CPython's `SharedMemory`, whose documented pattern `buffer = shm.buf; ...; shm.close()`
//! works so). It exports [`SharedMemoryBuf`], a private object holding the mapping, not the
//! `SharedMemory` itself: the cached view referring to its owner would be a reference cycle.
//!
//! The class is frozen, as every shmkit class: what `close()` changes sits behind a mutex
//! ([`State`]), locked only for steps of Rust code, never across a call into Python code
//! (releasing `buf`, `weakref.finalize`, dropping a Python object). Such code may come back to
//! the same object (a garbage collection's callbacks, another thread the GIL switches to), and
//! finds it usable: closed or not, never borrowed. Every lock is taken with the GIL held and
//! never releases it, so a `fork()` (made with the GIL) never finds the mutex held.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;
use shmkit::segment::Lifetime;
use shmkit::Segment;

use crate::blocking::open_waiting;
use crate::errors::to_py;
use crate::named;

/// A named shared-memory segment of bytes. `raw=True` segments have no shmkit header, so
/// they are the same objects as CPython's `SharedMemory` of that name (either side may
/// create them); `raw=False` (the default) ones carry shmkit's header and show in
/// `shmkit ls`/`info`. No resource tracker: nothing is unlinked when a process exits;
/// call `unlink()` once, when the segment is no longer needed.
#[pyclass(module = "shmkit", name = "SharedMemory", frozen)]
pub(crate) struct PySharedMemory {
    name: String,
    /// The payload size (kept after `close()`, as CPython's `size`).
    size: usize,
    /// Whether the segment is raw (no shmkit header): a pickle opens it so.
    raw: bool,
    /// Live buffer exports (memoryviews, numpy arrays, ...) of this object; counted up with
    /// `state` locked, so that `close()`, which checks it under the same lock, never closes
    /// while one is being made.
    exports: AtomicUsize,
    /// Live exports of the [`SharedMemoryBuf`]s behind `buf` (the cached view, and views
    /// sharing its buffer: slices of it).
    buf_exports: Arc<AtomicUsize>,
    /// What `close()` changes (module docs: never locked across Python code).
    state: Mutex<State>,
}

/// The part of a [`PySharedMemory`] that `close()` and `buf` change.
struct State {
    /// `None` once closed.
    seg: Option<Arc<Segment>>,
    /// After `close()`: the mapping, kept until this object is gone. A NumPy before 1.22.4
    /// keeps a reference to the exporter of an array it makes from a buffer, but no export
    /// (it releases the buffer at once), so an array of `numpy.frombuffer(shm)` can outlive
    /// every counted export while it still points into the mapping; it cannot outlive `shm`.
    closed_seg: Option<Arc<Segment>>,
    /// The memoryview `buf` returns, once made; released (and dropped) by `close()`.
    buf: Option<Py<PyMemoryView>>,
}

/// What `SharedMemory.buf` is a view of: the mapping (kept mapped while this object lives)
/// and the owner's count of exports through it.
#[pyclass(module = "shmkit", name = "_SharedMemoryBuf", frozen)]
struct SharedMemoryBuf {
    seg: Arc<Segment>,
    exports: Arc<AtomicUsize>,
}

/// Keeps a mapping until called (or dropped): the finalizer `close()` attaches to a released
/// `buf` that something still refers to.
#[pyclass(module = "shmkit", name = "_MappingKeeper", frozen)]
struct MappingKeeper {
    _seg: Arc<Segment>,
}

#[pymethods]
impl MappingKeeper {
    /// Nothing: the mapping goes when the finalizer drops this object.
    fn __call__(&self) {}
}

/// Fill `view` with the writable payload of `seg`, exported by `obj`, and count it in
/// `exports`.
///
/// # Safety
///
/// `view` is the valid `Py_buffer` Python passed to `obj`'s `__getbuffer__`, and `obj` keeps
/// `seg` mapped while the export lives.
unsafe fn export(
    obj: &Bound<'_, PyAny>,
    seg: &Segment,
    exports: &AtomicUsize,
    view: *mut pyo3::ffi::Py_buffer,
    flags: c_int,
) -> PyResult<()> {
    // SAFETY: the pointer and length describe the live mapping, which stays mapped while the
    // export exists (the caller's contract; `fill` stores a new reference to `obj` in
    // `view.obj`), writable. A zero-length payload is impossible (create refuses size 0; open
    // maps what exists).
    unsafe { crate::buffer::fill(view, obj, seg.as_mut_ptr(), seg.len(), false, flags)? };
    exports.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

#[pymethods]
impl SharedMemoryBuf {
    /// Export the payload (see [`PySharedMemory::__getbuffer__`]).
    ///
    /// # Safety
    ///
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        // SAFETY: `view` is Python's; `slf` holds `seg` (an `Arc`) as long as it lives, and
        // the export holds `slf`.
        unsafe { export(slf.as_any(), &this.seg, &this.exports, view, flags) }
    }

    /// One export fewer.
    ///
    /// # Safety
    ///
    /// Called by Python for a `view` this object filled.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PySharedMemory {
    fn wrap(seg: Segment) -> Self {
        PySharedMemory {
            name: seg.name().to_owned(),
            size: seg.len(),
            raw: seg.is_raw(),
            exports: AtomicUsize::new(0),
            buf_exports: Arc::new(AtomicUsize::new(0)),
            state: Mutex::new(State {
                seg: Some(Arc::new(seg)),
                closed_seg: None,
                buf: None,
            }),
        }
    }

    /// The state's lock (module docs: no Python code while it is held). Nothing panics while
    /// it is held, and every step leaves the state consistent: a poisoned lock is taken as is.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `BufferError` for a `close()` refused while `n` exports (`what`) are alive.
    fn refused(&self, n: usize, what: &str) -> PyErr {
        PyBufferError::new_err(format!(
            "cannot close shared memory {:?}: {n} exported buffer(s) ({what}) still use it; \
             release them first",
            self.name
        ))
    }

    fn create_impl(
        name: &str,
        size: i64,
        raw: bool,
        mode: u32,
        lifetime: Lifetime,
    ) -> PyResult<Self> {
        let size = u64::try_from(size).ok().filter(|&s| s > 0).ok_or_else(|| {
            PyValueError::new_err(format!("size must be a positive number, not {size}"))
        })?;
        let seg = Segment::options()
            .raw(raw)
            .mode(mode)
            .lifetime(lifetime)
            .create(name, size)
            .map_err(to_py)?;
        Ok(Self::wrap(seg))
    }

    /// Open (a raw segment of 0 bytes is waited for: [`open_waiting`]).
    fn open_impl(py: Python<'_>, name: &str, raw: bool) -> PyResult<Self> {
        let seg = open_waiting(py, |t| {
            Segment::options().raw(raw).open_timeout(t).open(name)
        })?;
        Ok(Self::wrap(seg))
    }
}

#[pymethods]
impl PySharedMemory {
    /// `multiprocessing.shared_memory.SharedMemory`'s signature: `create=True` makes a new
    /// segment of `size` bytes with `mode` and `lifetime`, else an existing one is opened
    /// (`size`, `mode` and `lifetime` ignored; a bad `lifetime` is still a `ValueError`).
    #[new]
    #[pyo3(signature = (name, create = false, size = 0, *, raw = false, mode = 0o600,
        lifetime = "persistent"))]
    fn new(
        py: Python<'_>,
        name: &str,
        create: bool,
        size: i64,
        raw: bool,
        mode: u32,
        lifetime: &str,
    ) -> PyResult<Self> {
        let lifetime = named::lifetime(lifetime)?;
        if create {
            Self::create_impl(name, size, raw, mode, lifetime)
        } else {
            Self::open_impl(py, name, raw)
        }
    }

    /// Create a new zeroed segment of `size` bytes; `FileExistsError` if the name is taken.
    /// `lifetime`: `"persistent"` (`shmkit gc` never removes it) or `"owned"` (`gc` removes
    /// it once this process is dead and no process maps it; a raw segment has no header to
    /// record that in: `ValueError`).
    #[staticmethod]
    #[pyo3(signature = (name, size, *, raw = false, mode = 0o600, lifetime = "persistent"))]
    fn create(name: &str, size: i64, raw: bool, mode: u32, lifetime: &str) -> PyResult<Self> {
        Self::create_impl(name, size, raw, mode, named::lifetime(lifetime)?)
    }

    /// Open an existing segment; `FileNotFoundError` if there is none.
    #[staticmethod]
    #[pyo3(signature = (name, *, raw = false))]
    fn open(py: Python<'_>, name: &str, raw: bool) -> PyResult<Self> {
        Self::open_impl(py, name, raw)
    }

    /// The segment's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The payload size in bytes (also after `close()`, as CPython's).
    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    /// A writable memoryview of the payload (zero-copy): one object, made at the first use,
    /// which `close()` releases (as CPython's `SharedMemory.buf`); `None` after `close()`,
    /// as CPython's.
    #[getter]
    fn buf<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyMemoryView>>> {
        let seg = {
            let st = self.state();
            if let Some(b) = &st.buf {
                return Ok(Some(b.bind(py).clone()));
            }
            let Some(seg) = &st.seg else {
                return Ok(None);
            };
            Arc::clone(seg)
        };
        // Unlocked: making Python objects may run a garbage collection.
        let owner = SharedMemoryBuf {
            seg,
            exports: Arc::clone(&self.buf_exports),
        };
        let view = PyMemoryView::from(Bound::new(py, owner)?.as_any())?;
        let mut st = self.state();
        // Meanwhile another `buf` made one (that one is kept, `view` dropped unlocked), or a
        // `close()` closed (before `view` counted in `buf_exports`, which it checks).
        let current = match (&st.buf, &st.seg) {
            (Some(b), _) => Some(b.bind(py).clone()),
            (None, None) => None,
            (None, Some(_)) => {
                st.buf = Some(view.clone().unbind());
                Some(view.clone())
            }
        };
        drop(st);
        Ok(current)
    }

    /// Pickled by name, as CPython's (`(cls, (name, False, 0))`: unpickling opens the
    /// segment, never creates it); a raw segment is opened with `raw=True`.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (String, bool, usize))> {
        let py = slf.py();
        let cls = slf.get_type().into_any();
        let this = slf.get();
        let make = if this.raw {
            let kw = pyo3::types::PyDict::new(py);
            kw.set_item("raw", true)?;
            py.import("functools")?
                .getattr("partial")?
                .call((cls,), Some(&kw))?
        } else {
            cls
        };
        Ok((make, (this.name.clone(), false, 0)))
    }

    /// Release `buf` and unmap the segment from this process. `BufferError` while other views
    /// of it (memoryviews, numpy arrays, slices of `buf`) are alive: release them first. As
    /// CPython's, a close refused only because of views sharing `buf`'s buffer (its slices)
    /// has released `buf` itself; the next `buf` is a new view. Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let n = self.exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(self.refused(n, "memoryview, numpy array, ..."));
        }
        let (buf, seg) = {
            let mut st = self.state();
            (st.buf.take(), st.seg.clone())
        };
        if let Some(b) = buf {
            let view = b.bind(py);
            // Refused (BufferError) while views of `buf` itself (numpy arrays over it) live.
            if let Err(e) = view.call_method0("release") {
                let mut st = self.state();
                // Kept, unless another `buf` made a new one meanwhile (then `b` is dropped,
                // unlocked: its views keep the mapping).
                let other = match st.buf {
                    None => {
                        st.buf = Some(b);
                        None
                    }
                    Some(_) => Some(b),
                };
                drop(st);
                drop(other);
                return Err(e);
            }
            // Released, as CPython's; but a NumPy before 1.22.4 keeps a reference to the
            // view an array was made from and no export of it, so an array can still point
            // into the mapping: while anything refers to the view, a finalizer of the view
            // keeps the mapping (released, the view no longer holds it).
            if view.get_refcnt() > 1 {
                if let Some(seg) = seg {
                    let keeper = Bound::new(py, MappingKeeper { _seg: seg })?;
                    py.import("weakref")?
                        .getattr("finalize")?
                        .call1((view, keeper))?;
                }
            }
        }
        // Checked again with the state locked: the Python code above may have made exports
        // (`__getbuffer__` counts them under the lock) or a new `buf`.
        let mut st = self.state();
        let n = self.exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(self.refused(n, "memoryview, numpy array, ..."));
        }
        let n = self.buf_exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(self.refused(n, "slices of .buf"));
        }
        // Closed; the mapping itself stays until this object is gone (see `closed_seg`).
        if let Some(seg) = st.seg.take() {
            st.closed_seg = Some(seg);
        }
        Ok(())
    }

    /// Remove the name from the system. Mappings (here and elsewhere) stay valid.
    fn unlink(&self) -> PyResult<()> {
        Segment::unlink(&self.name).map_err(to_py)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes (does not unlink).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    fn __len__(&self) -> usize {
        self.size
    }

    fn __repr__(&self) -> String {
        match &self.state().seg {
            Some(s) => format!(
                "<shmkit.SharedMemory name={:?} size={}>",
                self.name,
                s.len()
            ),
            None => format!("<shmkit.SharedMemory name={:?} closed>", self.name),
        }
    }

    /// Export the payload as a writable, contiguous byte buffer.
    ///
    /// # Safety
    ///
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        // Locked while the export is made and counted (`PyBuffer_FillInfo`: no Python code),
        // so that no `close()` comes between.
        let st = this.state();
        let seg = st.seg.as_ref().ok_or_else(|| {
            PyValueError::new_err(format!("shared memory {:?} is closed", this.name))
        })?;
        // SAFETY: `view` is Python's; the export holds `slf`, whose `seg` stays mapped while
        // it does: `close()` refuses while `exports` is non-zero.
        unsafe { export(slf.as_any(), seg, &this.exports, view, flags) }
    }

    /// One export fewer.
    ///
    /// # Safety
    ///
    /// Called by Python for a `view` this object filled.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySharedMemory>()
}
