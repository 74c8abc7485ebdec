//! `SharedMemory`: a named segment of bytes, as `multiprocessing.shared_memory.SharedMemory`,
//! exposed through the buffer protocol (`buf`, `memoryview(shm)`, `numpy.frombuffer(shm)`:
//! zero-copy). Every export is counted: `close()` with views still alive raises `BufferError`
//! instead of leaving them dangling, and the mapping lives as long as any view does.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;
use shmkit::Segment;

use crate::blocking::open_waiting;
use crate::errors::to_py;

/// A named shared-memory segment of bytes. `raw=True` segments have no shmkit header, so
/// they are the same objects as CPython's `SharedMemory` of that name (either side may
/// create them); `raw=False` (the default) ones carry shmkit's header and show in
/// `shmkit ls`/`info`. No resource tracker: nothing is unlinked when a process exits;
/// call `unlink()` once, when the segment is no longer needed.
#[pyclass(module = "shmkit", name = "SharedMemory")]
pub(crate) struct PySharedMemory {
    /// `None` once closed.
    seg: Option<Segment>,
    name: String,
    /// Live buffer exports (memoryviews, numpy arrays, ...) of this object.
    exports: AtomicUsize,
}

impl PySharedMemory {
    fn wrap(seg: Segment) -> Self {
        PySharedMemory {
            name: seg.name().to_owned(),
            seg: Some(seg),
            exports: AtomicUsize::new(0),
        }
    }

    fn seg(&self) -> PyResult<&Segment> {
        self.seg.as_ref().ok_or_else(|| {
            PyValueError::new_err(format!("shared memory {:?} is closed", self.name))
        })
    }

    fn create_impl(name: &str, size: i64, raw: bool, mode: u32) -> PyResult<Self> {
        let size = u64::try_from(size).ok().filter(|&s| s > 0).ok_or_else(|| {
            PyValueError::new_err(format!("size must be a positive number, not {size}"))
        })?;
        let seg = Segment::options()
            .raw(raw)
            .mode(mode)
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
    /// segment of `size` bytes, else an existing one is opened (`size` ignored).
    #[new]
    #[pyo3(signature = (name, create = false, size = 0, *, raw = false, mode = 0o600))]
    fn new(
        py: Python<'_>,
        name: &str,
        create: bool,
        size: i64,
        raw: bool,
        mode: u32,
    ) -> PyResult<Self> {
        if create {
            Self::create_impl(name, size, raw, mode)
        } else {
            Self::open_impl(py, name, raw)
        }
    }

    /// Create a new zeroed segment of `size` bytes; `FileExistsError` if the name is taken.
    #[staticmethod]
    #[pyo3(signature = (name, size, *, raw = false, mode = 0o600))]
    fn create(name: &str, size: i64, raw: bool, mode: u32) -> PyResult<Self> {
        Self::create_impl(name, size, raw, mode)
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

    /// The payload size in bytes.
    #[getter]
    fn size(&self) -> PyResult<usize> {
        Ok(self.seg()?.len())
    }

    /// A writable memoryview of the payload (zero-copy).
    #[getter]
    fn buf<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        PyMemoryView::from(slf.as_any())
    }

    /// Unmap the segment from this process. `BufferError` while views of it (memoryviews,
    /// numpy arrays) are alive: release them first. Closing twice is harmless.
    fn close(&mut self) -> PyResult<()> {
        let n = self.exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot close shared memory {:?}: {n} exported buffer(s) (memoryview, numpy \
                 array, ...) still use it; release them first",
                self.name
            )));
        }
        self.seg = None;
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
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.close()
    }

    fn __len__(&self) -> PyResult<usize> {
        self.size()
    }

    fn __repr__(&self) -> String {
        match &self.seg {
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
        let this = slf.borrow();
        let seg = this.seg()?;
        // SAFETY: the pointer and length describe the live mapping, which stays mapped while
        // the export exists: `PyBuffer_FillInfo` stores a new reference to `slf` in
        // `view.obj`, and `close()` refuses while `exports` is non-zero. A zero-length payload
        // is impossible (create refuses size 0; open maps what exists).
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                seg.as_mut_ptr().cast(),
                seg.len() as pyo3::ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        this.exports.fetch_add(1, Ordering::AcqRel);
        Ok(())
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
