//! Hand-written CPython entry points for the hottest methods (issue 13 item 6).
//!
//! A pyo3 method call costs a trampoline (the GIL-count thread local, a panic guard, the
//! reference pool) and a `self` downcast through the lazy type object: about twice a C
//! method's cost, which is most of `fetch_add` and of `with v.get_lock(): v.value += 1`. For a
//! few methods, the class's own pyo3 descriptor is replaced at module init by one whose C
//! function does only this:
//!
//! 1. checks `self`'s type against the type object cached at install (`PyObject_TypeCheck`);
//! 2. for the one argument shape it handles (e.g. `fetch_add(x)`: one positional argument, no
//!    keywords), calls the same Rust method pyo3's wrapper calls, through pyo3's public API
//!    (`Borrowed::from_ptr` + `downcast_unchecked` after the check, `.get()` on the frozen
//!    class: `self` and the arguments are borrowed, no reference count changes), so results
//!    and exceptions are the same, and blocking goes through the same GIL-releasing wait
//!    (`crate::blocking`). Those methods keep their common case (a free or held lock, an
//!    exact `int`) inline and the rest out of line, and the extension is built with fat LTO
//!    (`python/Cargo.toml`) so that the library's lock and cell calls inline too;
//! 3. for any other shape (keywords, another argument count, a wrong `self`), calls pyo3's
//!    original C function, saved at install, with the same arguments.
//!
//! The body runs inside `catch_unwind`: a panic becomes pyo3's `PanicException`, as pyo3's
//! trampoline does, and never unwinds into C. The replacement keeps the original's name and
//! docstring (with its `__text_signature__`), so `inspect.signature` and stubtest see no
//! difference.
//!
//! Not done here, unlike pyo3's trampoline: pyo3's thread-local GIL count is not raised. Code
//! run from these bodies may therefore defer a `Py<T>` drop to pyo3's reference pool (it is
//! applied at the next pyo3 call), which is correct, only later; but a program that calls
//! only fast entry points never gets to that call, and the pool grows by one entry per drop
//! (about 250 bytes: 2M `fetch_add(2**63)` grew 500 MB). So the bodies' non-error paths drop
//! no `Py<T>` and no `PyErr` (which holds one): a conversion that may fail on a valid
//! argument uses a C call that makes no error object (`cell::exact_i64`), and a failure is
//! raised (its `PyErr` restored, not dropped).

use std::ffi::CStr;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::{Borrowed, PyClass, PyTypeInfo};

/// `METH_FASTCALL | METH_KEYWORDS` (pyo3's convention for methods with arguments).
pub(crate) const FASTCALL_KW: c_int = ffi::METH_FASTCALL | ffi::METH_KEYWORDS;

/// The type a replaced method or attribute belongs to and pyo3's original definition,
/// saved at install (never cleared: the type and its definitions live as long as the
/// process, as the install leaks a reference to the type).
pub(crate) struct Saved<D> {
    ty: AtomicPtr<ffi::PyTypeObject>,
    def: AtomicPtr<D>,
}

impl<D> Saved<D> {
    pub(crate) const fn new() -> Self {
        Saved {
            ty: AtomicPtr::new(ptr::null_mut()),
            def: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// `f(self as the class T)`, if `slf` is an instance of the saved type (`None` otherwise:
    /// the caller then calls the original, which raises pyo3's `TypeError`). `self` is
    /// borrowed, not a new reference: no reference count changes on the hot path.
    ///
    /// # Safety
    ///
    /// The GIL is held, `slf` is a valid object that stays alive during the call (CPython's
    /// borrowed `self`), and `T` is the class this was installed for.
    #[inline(always)]
    pub(crate) unsafe fn with<'py, T: PyClass, R>(
        &self,
        py: Python<'py>,
        slf: *mut ffi::PyObject,
        f: impl FnOnce(&Bound<'py, T>) -> R,
    ) -> Option<R> {
        // Acquire: pairs with the Release store in `install_*` (the same thread in practice:
        // module init runs before any call).
        let ty = self.ty.load(Ordering::Acquire);
        // SAFETY: `slf` is a valid object (caller); `ty` is a live type object (a leaked
        // reference keeps it alive) when non-null.
        if ty.is_null() || unsafe { ffi::PyObject_TypeCheck(slf, ty) } == 0 {
            return None;
        }
        // SAFETY: `slf` is valid for the call (caller), and an instance of `ty`, the type
        // object of `T` (the type check just above), so the unchecked downcast is one pyo3
        // would make.
        let b = unsafe { Borrowed::from_ptr(py, slf) };
        Some(f(unsafe { b.downcast_unchecked::<T>() }))
    }

    /// pyo3's original definition (non-null once installed).
    fn def(&self) -> *mut D {
        // Acquire: pairs with the Release store in `install_*`.
        self.def.load(Ordering::Acquire)
    }
}

/// The type object of `T` and `T.name`'s descriptor, checked to be a `descr_type`.
fn lookup<'py, T: PyTypeInfo>(
    py: Python<'py>,
    name: &CStr,
    descr_type: *mut ffi::PyTypeObject,
) -> PyResult<(Bound<'py, pyo3::types::PyType>, Bound<'py, PyAny>)> {
    let ty = T::type_object(py);
    let name = name
        .to_str()
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    // On the type, a method or getset descriptor's `__get__` returns the descriptor itself.
    let d = ty.getattr(name)?;
    if d.get_type().as_type_ptr() != descr_type {
        return Err(PyTypeError::new_err(format!(
            "{}.{name} is not the kind of descriptor the fast path replaces",
            ty.name()?
        )));
    }
    Ok((ty, d))
}

/// Replace method `name` of `T` (a `PyMethodDescr` pyo3 made with flags `flags`) by one
/// calling `meth` with the same flags, name and docstring; save the original in `saved`.
pub(crate) fn install_method<T: PyTypeInfo>(
    py: Python<'_>,
    name: &CStr,
    flags: c_int,
    meth: ffi::PyMethodDefPointer,
    saved: &'static Saved<ffi::PyMethodDef>,
) -> PyResult<()> {
    // The address of a static CPython type object (nothing read through it).
    let descr_type = ptr::addr_of_mut!(ffi::PyMethodDescr_Type);
    let (ty, d) = lookup::<T>(py, name, descr_type)?;
    // SAFETY: `d` is a `PyMethodDescr` (checked in `lookup`), whose layout is CPython's
    // `PyMethodDescrObject`; its `d_method` points to pyo3's definition, which lives as long
    // as the type (CPython requires it of every method definition).
    let orig = unsafe { (*d.as_ptr().cast::<ffi::PyMethodDescrObject>()).d_method };
    // SAFETY: `orig` is a valid definition (above).
    let (oname, oflags, odoc) = unsafe { ((*orig).ml_name, (*orig).ml_flags, (*orig).ml_doc) };
    if oflags != flags {
        return Err(PyRuntimeError::new_err(format!(
            "{name:?}: pyo3 made it with flags {oflags:#x}, the fast path has {flags:#x}"
        )));
    }
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: oname,
        ml_meth: meth,
        ml_flags: flags,
        ml_doc: odoc,
    }));
    // SAFETY: the type object is live; `def` is leaked, so it outlives the descriptor.
    let new =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    // Release: pairs with the Acquire loads in `Saved::this` / `Saved::def`.
    saved.def.store(orig, Ordering::Release);
    // The leaked reference keeps the type (and so `orig`) alive for the process.
    saved
        .ty
        .store(ty.clone().into_ptr().cast(), Ordering::Release);
    ty.setattr(name.to_str().unwrap_or_default(), new)
}

/// Replace getset attribute `name` of `T` by one with `get`/`set`, same name and docstring;
/// save the original in `saved`.
pub(crate) fn install_getset<T: PyTypeInfo>(
    py: Python<'_>,
    name: &CStr,
    get: ffi::getter,
    set: ffi::setter,
    saved: &'static Saved<ffi::PyGetSetDef>,
) -> PyResult<()> {
    // The address of a static CPython type object (nothing read through it).
    let descr_type = ptr::addr_of_mut!(ffi::PyGetSetDescr_Type);
    let (ty, d) = lookup::<T>(py, name, descr_type)?;
    // SAFETY: `d` is a `PyGetSetDescr` (checked in `lookup`): CPython's
    // `PyGetSetDescrObject`; `d_getset` points to pyo3's definition, alive as long as the type.
    let orig = unsafe { (*d.as_ptr().cast::<ffi::PyGetSetDescrObject>()).d_getset };
    // SAFETY: `orig` is a valid definition (above).
    let (oname, odoc, oget, oset) =
        unsafe { ((*orig).name, (*orig).doc, (*orig).get, (*orig).set) };
    if oget.is_none() || oset.is_none() {
        return Err(PyRuntimeError::new_err(format!(
            "{name:?}: the fast path replaces a getter and a setter"
        )));
    }
    let def = Box::leak(Box::new(ffi::PyGetSetDef {
        name: oname,
        get: Some(get),
        set: Some(set),
        doc: odoc,
        closure: ptr::null_mut(),
    }));
    // SAFETY: the type object is live; `def` is leaked, so it outlives the descriptor.
    let new =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewGetSet(ty.as_type_ptr(), def))? };
    // Release: pairs with the Acquire loads in `Saved::this` / `Saved::def`.
    saved.def.store(orig, Ordering::Release);
    saved
        .ty
        .store(ty.clone().into_ptr().cast(), Ordering::Release);
    ty.setattr(name.to_str().unwrap_or_default(), new)
}

/// A type slot [`install_slot`] replaces.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    /// `nb_inplace_add` (`+=`).
    InplaceAdd,
}

/// Replace slot `slot` of `T` (a heap type pyo3 made, whose slot pyo3 filled from a
/// `#[pymethods]` special method) by `f`; save pyo3's function in `saved`. CPython reads
/// number slots from the type at every operation (no cache to invalidate), and the
/// `__iadd__` descriptor in the type's dictionary still calls pyo3's function.
pub(crate) fn install_slot<T: PyTypeInfo>(
    py: Python<'_>,
    slot: Slot,
    f: ffi::binaryfunc,
    saved: &'static Saved<ffi::binaryfunc>,
) -> PyResult<()> {
    let ty = T::type_object(py);
    let tp = ty.as_type_ptr();
    // SAFETY: `tp` is a live type object; a heap type's `tp_as_number` points into its own
    // `PyHeapTypeObject` (CPython sets it for every heap type), which lives as long as the
    // type; the GIL is held, so nothing reads the slot while we replace it.
    unsafe {
        if (*tp).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE == 0 || (*tp).tp_as_number.is_null() {
            return Err(PyRuntimeError::new_err(format!(
                "{}: not a heap type with number slots",
                ty.name()?
            )));
        }
        let cell = match slot {
            Slot::InplaceAdd => &mut (*(*tp).tp_as_number).nb_inplace_add,
        };
        let Some(orig) = *cell else {
            return Err(PyRuntimeError::new_err(format!(
                "{}: pyo3 left {slot:?} empty",
                ty.name()?
            )));
        };
        // Release: pairs with the Acquire loads in `Saved::with` / `Saved::def`. The
        // original function pointer is leaked into a box: `Saved` keeps pointers to
        // definitions.
        saved
            .def
            .store(Box::leak(Box::new(orig)), Ordering::Release);
        // The leaked reference keeps the type alive for the process.
        saved
            .ty
            .store(ty.clone().into_ptr().cast(), Ordering::Release);
        *cell = Some(f);
    }
    Ok(())
}

/// Run an entry point's body with the GIL token, turning an error into the raised Python
/// exception and a panic into `PanicException` (nothing unwinds into C). `failed` is the C
/// return value that signals an exception (null, or -1 for a setter).
///
/// # Safety
///
/// Called by CPython with the GIL held (an attached thread state).
pub(crate) unsafe fn guard<R: Copy>(failed: R, body: impl FnOnce(Python<'_>) -> PyResult<R>) -> R {
    // SAFETY: CPython calls method and getset functions with the GIL held (caller).
    let py = unsafe { Python::assume_gil_acquired() };
    let err = match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(r)) => return r,
        Ok(Err(e)) => e,
        Err(payload) => {
            let msg = if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else {
                "panic from Rust code".to_string()
            };
            PanicException::new_err((msg,))
        }
    };
    // Raising may run Python code (a lazily made exception); a panic there is caught too.
    if catch_unwind(AssertUnwindSafe(|| err.restore(py))).is_err() {
        // SAFETY: the GIL is held; both pointers are valid (a static exception type and a
        // NUL-terminated literal).
        unsafe {
            ffi::PyErr_SetString(
                ffi::PyExc_SystemError,
                c"shmkit: a panic while raising an exception".as_ptr(),
            )
        };
    }
    failed
}

/// A new reference to `None`.
pub(crate) fn none(py: Python<'_>) -> *mut ffi::PyObject {
    py.None().into_ptr()
}

/// A new reference to `True` or `False`.
pub(crate) fn boolean(py: Python<'_>, b: bool) -> *mut ffi::PyObject {
    pyo3::types::PyBool::new(py, b).to_owned().into_ptr()
}

impl Saved<ffi::PyMethodDef> {
    /// Call pyo3's original `METH_FASTCALL | METH_KEYWORDS` function with these arguments
    /// (the shapes the fast path leaves to it). Null with an exception set on error.
    ///
    /// # Safety
    ///
    /// The GIL is held and the arguments are the ones CPython passed to the replacement.
    pub(crate) unsafe fn call_fast(
        &self,
        slf: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        let def = self.def();
        // SAFETY: `def` is pyo3's definition saved at install, checked then to have these
        // flags, so `PyCFunctionFastWithKeywords` is the union's live field; the call passes
        // on CPython's own arguments. (A replacement is only reachable after its install, so
        // `def` is non-null.)
        unsafe { ((*def).ml_meth.PyCFunctionFastWithKeywords)(slf, args, nargs, kwnames) }
    }

    /// Call pyo3's original `METH_NOARGS` function.
    ///
    /// # Safety
    ///
    /// As [`Saved::call_fast`].
    pub(crate) unsafe fn call_noargs(&self, slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
        let def = self.def();
        // SAFETY: as in `call_fast`; `PyCFunction` is the live field of a `METH_NOARGS`
        // definition, called with a null second argument as CPython does.
        unsafe { ((*def).ml_meth.PyCFunction)(slf, ptr::null_mut()) }
    }
}

impl Saved<ffi::binaryfunc> {
    /// Call pyo3's original binary slot function.
    ///
    /// # Safety
    ///
    /// The GIL is held and the arguments are the ones CPython passed to the replacement.
    pub(crate) unsafe fn call_binary(
        &self,
        a: *mut ffi::PyObject,
        b: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: the saved function is pyo3's slot, saved at install (non-null once the
        // replacement is reachable), called with CPython's own arguments.
        unsafe { (*self.def())(a, b) }
    }
}

impl Saved<ffi::PyGetSetDef> {
    /// pyo3's original getter.
    ///
    /// # Safety
    ///
    /// The GIL is held and `slf` is the object CPython passed.
    pub(crate) unsafe fn call_get(&self, slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
        let def = self.def();
        // SAFETY: `def` is pyo3's definition (saved at install, checked to have a getter),
        // called with its own closure.
        unsafe { ((*def).get.expect("checked at install"))(slf, (*def).closure) }
    }

    /// pyo3's original setter (`value` null: delete).
    ///
    /// # Safety
    ///
    /// As [`Saved::call_get`].
    pub(crate) unsafe fn call_set(
        &self,
        slf: *mut ffi::PyObject,
        value: *mut ffi::PyObject,
    ) -> c_int {
        let def = self.def();
        // SAFETY: as in `call_get`, for the setter.
        unsafe { ((*def).set.expect("checked at install"))(slf, value, (*def).closure) }
    }
}

/// A `METH_FASTCALL | METH_KEYWORDS` entry point `$name` for a method of `$ty` whose
/// original pyo3 definition `$saved` saved: called with exactly `$n` positional arguments,
/// no keywords, on an instance of `$ty`, it evaluates `$body` (a `PyResult` of the new
/// reference to return) with `$py`, `$this` (`&Bound<$ty>`, borrowed) and `$args` (the
/// argument array); any other call goes to pyo3's original with the same arguments. The body
/// runs inside `unsafe` (it may borrow `*$args`) and inside [`guard`].
macro_rules! fastcall_kw {
    (
        $(#[$doc:meta])*
        fn $name:ident = $saved:ident: $ty:ty, nargs $n:literal,
        |$py:ident, $this:ident, $args:ident| $body:expr
    ) => {
        $(#[$doc])*
        unsafe extern "C" fn $name(
            slf: *mut pyo3::ffi::PyObject,
            $args: *const *mut pyo3::ffi::PyObject,
            nargs: pyo3::ffi::Py_ssize_t,
            kw: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            // SAFETY: CPython calls this with the GIL held and valid arguments: `args` holds
            // `nargs` objects (then the keyword values), passed on untouched; `slf` stays
            // alive for the call.
            unsafe {
                crate::fastcall::guard(std::ptr::null_mut(), |$py| {
                    if nargs == $n && kw.is_null() {
                        if let Some(r) = $saved.with($py, slf, |$this: &Bound<'_, $ty>| $body) {
                            return r;
                        }
                    }
                    Ok($saved.call_fast(slf, $args, nargs, kw))
                })
            }
        }
    };
}
pub(crate) use fastcall_kw;

/// The fast `acquire` / `release` / `__enter__` / `__exit__` of a frozen lock class `$ty`
/// whose pyo3 methods are `fn acquire(slf: &Bound<Self>, block: Truthy, timeout: Option<f64>)
/// -> PyResult<bool>` and `fn release(&self) -> PyResult<()>`, `__enter__` being
/// `acquire(True, None)` and `__exit__(exc_type, exc, tb)` being `release()`. Makes a module
/// `$m` with `install(py)`. Only `acquire()` with no argument and `__exit__` with three
/// positional ones are fast; other shapes go to pyo3's. A busy lock waits in the pyo3
/// method's own GIL-releasing loop (the fast path calls that method).
macro_rules! lock_entry_points {
    ($m:ident, $ty:ty) => {
        mod $m {
            use pyo3::ffi;
            use pyo3::prelude::*;

            use crate::fastcall::{boolean, guard, install_method, none, Saved, FASTCALL_KW};

            type Obj = *mut ffi::PyObject;
            type T = $ty;

            static ACQUIRE: Saved<ffi::PyMethodDef> = Saved::new();
            static RELEASE: Saved<ffi::PyMethodDef> = Saved::new();
            static ENTER: Saved<ffi::PyMethodDef> = Saved::new();
            static EXIT: Saved<ffi::PyMethodDef> = Saved::new();

            pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
                let fast = |f| ffi::PyMethodDefPointer {
                    PyCFunctionFastWithKeywords: f,
                };
                let noargs = |f| ffi::PyMethodDefPointer { PyCFunction: f };
                install_method::<T>(py, c"acquire", FASTCALL_KW, fast(acquire), &ACQUIRE)?;
                install_method::<T>(py, c"release", ffi::METH_NOARGS, noargs(release), &RELEASE)?;
                install_method::<T>(py, c"__enter__", ffi::METH_NOARGS, noargs(enter), &ENTER)?;
                install_method::<T>(py, c"__exit__", FASTCALL_KW, fast(exit), &EXIT)
            }

            crate::fastcall::fastcall_kw! {
                /// `acquire()` (blocking, no timeout); any argument: pyo3's.
                fn acquire = ACQUIRE: T, nargs 0, |py, l, args| {
                    T::acquire(l, crate::blocking::BLOCK, None).map(|b| boolean(py, b))
                }
            }

            unsafe extern "C" fn release(slf: Obj, _unused: Obj) -> Obj {
                // SAFETY: called by CPython with the GIL held and a valid `slf`.
                unsafe {
                    guard(std::ptr::null_mut(), |py| {
                        match RELEASE.with(py, slf, |l: &Bound<'_, T>| l.get().release()) {
                            Some(r) => r.map(|()| none(py)),
                            None => Ok(RELEASE.call_noargs(slf)),
                        }
                    })
                }
            }

            unsafe extern "C" fn enter(slf: Obj, _unused: Obj) -> Obj {
                // SAFETY: called by CPython with the GIL held and a valid `slf`.
                unsafe {
                    guard(std::ptr::null_mut(), |py| {
                        match ENTER.with(py, slf, |l| T::acquire(l, crate::blocking::BLOCK, None)) {
                            Some(r) => r.map(|b| boolean(py, b)),
                            None => Ok(ENTER.call_noargs(slf)),
                        }
                    })
                }
            }

            crate::fastcall::fastcall_kw! {
                /// `__exit__(exc_type, exc, tb)` as `with` calls it; other shapes: pyo3's.
                fn exit = EXIT: T, nargs 3, |py, l, args| l.get().release().map(|()| none(py))
            }
        }
    };
}
pub(crate) use lock_entry_points;
