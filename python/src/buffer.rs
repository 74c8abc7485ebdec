//! The buffer protocol's one fill: every export of shared memory (`SharedMemory`, frames)
//! goes through [`fill`].

use std::os::raw::c_int;

use pyo3::prelude::*;

/// Export `len` bytes at `ptr` as a buffer owned by `obj`.
///
/// # Safety
///
/// `view` is Python's; `ptr..ptr+len` stays valid (and, if writable, writable) while `obj`
/// counts the export.
pub(crate) unsafe fn fill(
    view: *mut pyo3::ffi::Py_buffer,
    obj: &Bound<'_, PyAny>,
    ptr: *mut u8,
    len: usize,
    readonly: bool,
    flags: c_int,
) -> PyResult<()> {
    // SAFETY: as the caller promises; `PyBuffer_FillInfo` stores a new reference to `obj` in
    // `view.obj` (keeping it alive) and refuses a writable request on a read-only buffer.
    let rc = unsafe {
        pyo3::ffi::PyBuffer_FillInfo(
            view,
            obj.as_ptr(),
            ptr.cast(),
            len as pyo3::ffi::Py_ssize_t,
            c_int::from(readonly),
            flags,
        )
    };
    if rc != 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}
