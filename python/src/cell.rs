//! `Value` and `Array`: `multiprocessing.Value` / `Array` as named cells (`shmkit::cell`,
//! SPEC §10), opened by the typecode recorded in the object.
//!
//! Locking: in locked mode every access takes the cell's robust lock; `get_lock()` returns a
//! [`PyCellLock`] whose `acquire`/`release` hold that same lock across Python calls (the
//! guard is leaked and adopted back, as `Lock` does). While the calling thread holds it,
//! `.value` / indexing see `Deadlock` from the lock and go through the held lock instead
//! (`adopt_lock`), so `with v.get_lock(): v.value += 1` neither deadlocks nor needs an RLock.
//! Seqlock reads and atomic accesses never take the lock.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::{
    PyBufferError, PyIndexError, PyOverflowError, PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyList, PySlice, PyString, PyTuple, PyType};
use shmkit::cell::{AnyArray, AnyGuard, AnyValue, CellMode, Typecode};
use shmkit::sync::{LockError, Owner};
use shmkit::Error;

use crate::blocking::{check_timeout, deadline, sliced, Truthy, BLOCK};
use crate::errors::{lock_error, owner_died, rlock_error, to_py, ShmkitError};

/// A value or an array cell, opened by its recorded typecode.
pub(crate) enum Any {
    V(AnyValue),
    A(AnyArray),
}

/// An open cell shared by a Python object and its `get_lock()` objects.
pub(crate) struct Cell {
    any: Any,
    t: Typecode,
    /// `t.size()` (read on every element access).
    size: usize,
    mode: CellMode,
    len: usize,
    /// A hint: the [`thread_token`] of the thread that took the lock through `get_lock()` (or
    /// was handed it by `OwnerDied`), 0 if none. Only a holder of the lock writes it (its own
    /// token after taking it, 0 before releasing it), so a thread reading its own token here
    /// most likely holds the lock, and goes straight to
    /// `adopt` (which checks it in the lock word; a stale hint falls back to locking). Relaxed:
    /// the lock word is what synchronises; this only picks the first thing to try.
    held: AtomicUsize,
}

/// A number that tells the live Python threads of this process apart: the address of the
/// calling thread's `PyThreadState` (a global load, where a Rust thread local in a shared
/// library is a `__tls_get_addr` call). A thread that has exited may pass its address on,
/// hence [`Cell::held`] is a hint.
fn thread_token(_py: Python<'_>) -> usize {
    // SAFETY: the GIL is held (the token proves it), so the calling thread has a current
    // thread state and this returns it without aborting.
    unsafe { pyo3::ffi::PyThreadState_Get() as usize }
}

/// A cell and its one `get_lock()` object (made on first use, then the same object every
/// time, as `multiprocessing`'s synchronized wrappers return one lock).
pub(crate) struct Handle {
    cell: Arc<Cell>,
    lock: GILOnceCell<Py<PyCellLock>>,
}

impl Handle {
    fn new(cell: Cell) -> Handle {
        Handle {
            cell: Arc::new(cell),
            lock: GILOnceCell::new(),
        }
    }

    fn lock_object<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyCellLock>> {
        let l = self.lock.get_or_try_init(py, || {
            Py::new(
                py,
                PyCellLock {
                    cell: self.cell.clone(),
                },
            )
        })?;
        Ok(l.bind(py))
    }
}

impl std::ops::Deref for Handle {
    type Target = Cell;
    fn deref(&self) -> &Cell {
        &self.cell
    }
}

type LockRes<'a> = Result<AnyGuard<'a>, LockError<AnyGuard<'a>>>;

impl Cell {
    fn new(any: Any) -> PyResult<Cell> {
        let (t, mode, len) = match &any {
            Any::V(v) => (v.typecode(), v.cell_mode(), 1),
            Any::A(a) => (a.typecode(), a.cell_mode(), a.len()),
        };
        let t = t.ok_or_else(|| {
            ShmkitError::new_err(format!(
                "{} holds a user type, which Python cannot read (only typecodes)",
                describe(&any)
            ))
        })?;
        Ok(Cell {
            any,
            t,
            size: t.size(),
            mode,
            len,
            held: AtomicUsize::new(0),
        })
    }

    fn name(&self) -> &str {
        match &self.any {
            Any::V(v) => v.name(),
            Any::A(a) => a.name(),
        }
    }

    /// `None`: one attempt; `Some(t)`: wait until `t`.
    #[inline(always)]
    fn lock(&self, until: Option<Instant>) -> LockRes<'_> {
        match (&self.any, until) {
            (Any::V(v), None) => v.try_lock(),
            (Any::V(v), Some(t)) => v.lock_deadline(t),
            (Any::A(a), None) => a.try_lock(),
            (Any::A(a), Some(t)) => a.lock_deadline(t),
        }
    }

    /// Mark the lock as held by the calling thread (see [`Cell::held`]).
    #[inline(always)]
    fn mark_held(&self, py: Python<'_>) {
        self.held.store(thread_token(py), Ordering::Relaxed);
    }

    /// The guard of the lock the calling thread holds, if the hint says it does and the lock
    /// word agrees.
    #[inline(always)]
    fn held_guard(&self, py: Python<'_>) -> Option<AnyGuard<'_>> {
        if self.held.load(Ordering::Relaxed) != thread_token(py) {
            return None;
        }
        self.adopt().ok()
    }

    #[inline(always)]
    fn adopt(&self) -> Result<AnyGuard<'_>, LockError<()>> {
        match &self.any {
            Any::V(v) => v.adopt_lock(),
            Any::A(a) => a.adopt_lock(),
        }
    }

    /// Lock-free (seqlock/atomic) read of `count` elements from `first`.
    fn load(&self, first: usize, count: usize, until: Option<Instant>) -> shmkit::Result<Vec<u8>> {
        match (&self.any, until) {
            (Any::V(v), None) => v.try_get_bytes(),
            (Any::V(v), Some(t)) => v.get_bytes_deadline(t),
            (Any::A(a), None) => a.try_read_bytes(first, count),
            (Any::A(a), Some(t)) => a.read_bytes_deadline(first, count, t),
        }
    }

    /// Atomic-mode store (never waits).
    fn store_atomic(&self, first: usize, data: &[u8]) -> shmkit::Result<()> {
        match &self.any {
            Any::V(v) => v.try_set_bytes(data),
            Any::A(a) => a.try_write_bytes(first, data),
        }
    }

    /// Atomic mode: one atomic add (the library refuses the other modes).
    #[inline(always)]
    fn fetch_add(&self, i: usize, v: i64) -> shmkit::Result<u64> {
        match &self.any {
            Any::V(c) => c.fetch_add(v),
            Any::A(a) => a.fetch_add(i, v),
        }
    }

    fn compare_exchange(&self, i: usize, cur: u64, new: u64) -> shmkit::Result<Result<u64, u64>> {
        match &self.any {
            Any::V(c) => c.compare_exchange(cur, new),
            Any::A(a) => a.compare_exchange(i, cur, new),
        }
    }

    fn sequence(&self) -> u64 {
        match &self.any {
            Any::V(v) => v.sequence(),
            Any::A(a) => a.sequence(),
        }
    }

    fn wait_changed(&self, last: u64, until: Option<Instant>) -> shmkit::Result<(Vec<u8>, u64)> {
        match (&self.any, until) {
            (Any::V(v), None) => v.try_wait_changed(last),
            (Any::V(v), Some(t)) => v.wait_changed_deadline(last, t),
            (Any::A(a), None) => a.try_wait_changed(last),
            (Any::A(a), Some(t)) => a.wait_changed_deadline(last, t),
        }
    }
}

fn describe(any: &Any) -> String {
    match any {
        Any::V(v) => v.describe(),
        Any::A(a) => a.describe(),
    }
}

/// What one attempt to take the lock came to (`Send`, unlike the guard).
enum Took<R> {
    Done(R),
    Died(Option<Owner>),
    Busy,
    Failed(PyErr),
}

/// Run `op` under the cell's lock: taken and released here, or, when the calling thread
/// already holds it (through `get_lock()`), under the held lock (left held). A dead previous
/// holder raises `OwnerDied` carrying a `get_lock()` object, with the lock held.
#[inline(always)]
fn under_lock<R: Send>(
    py: Python<'_>,
    cell: &Handle,
    op: impl Fn(&AnyGuard<'_>) -> shmkit::Result<R> + Send + Sync,
) -> PyResult<R> {
    // `with v.get_lock(): v.value += 1`: the thread holds the lock; use it as it is.
    if let Some(g) = cell.held_guard(py) {
        let r = op(&g);
        g.leak();
        return r.map_err(to_py);
    }
    take_lock_for(py, cell, op)
}

/// [`under_lock`] when the calling thread does not hold the lock (out of line: the `with
/// v.get_lock()` loop inlines only the held case).
#[inline(never)]
fn take_lock_for<R: Send>(
    py: Python<'_>,
    cell: &Handle,
    op: impl Fn(&AnyGuard<'_>) -> shmkit::Result<R> + Send + Sync,
) -> PyResult<R> {
    let attempt = |until: Option<Instant>| -> Took<R> {
        match cell.lock(until) {
            Ok(g) => match op(&g) {
                Ok(r) => Took::Done(r),
                Err(e) => Took::Failed(to_py(e)),
            },
            Err(LockError::Deadlock) => match cell.adopt() {
                Ok(g) => {
                    let r = op(&g);
                    g.leak();
                    match r {
                        Ok(r) => Took::Done(r),
                        Err(e) => Took::Failed(to_py(e)),
                    }
                }
                Err(e) => Took::Failed(lock_error(e)),
            },
            Err(LockError::OwnerDied(g)) => {
                let was = g.previous_owner();
                g.leak();
                Took::Died(was)
            }
            Err(LockError::WouldBlock) | Err(LockError::Timeout) => Took::Busy,
            Err(e) => Took::Failed(lock_error(e)),
        }
    };
    let took = match attempt(None) {
        Took::Busy => sliced(py, None, |until| match attempt(Some(until)) {
            Took::Busy => None,
            t => Some(t),
        })?
        .unwrap_or(Took::Busy),
        t => t,
    };
    match took {
        Took::Done(r) => Ok(r),
        Took::Died(was) => {
            cell.mark_held(py);
            Err(owner_died(cell.lock_object(py)?.as_any(), was))
        }
        Took::Busy => Err(PyTimeoutError::new_err("the cell's lock was not taken")),
        Took::Failed(e) => Err(e),
    }
}

/// One element's bytes, on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Elem {
    b: [u8; 8],
    n: usize,
}

impl Elem {
    fn new(b: &[u8]) -> Elem {
        let mut e = Elem::zeroed(b.len());
        e.b[..b.len()].copy_from_slice(b);
        e
    }

    fn zeroed(n: usize) -> Elem {
        Elem { b: [0; 8], n }
    }

    /// The low `n` bytes of `v` (little-endian; the rest zero), without a copy of `n` bytes.
    fn low(v: u64, n: usize) -> Elem {
        let mask = if n >= 8 { !0 } else { (1u64 << (8 * n)) - 1 };
        Elem {
            b: (v & mask).to_le_bytes(),
            n,
        }
    }
}

impl std::ops::Deref for Elem {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.b[..self.n]
    }
}

/// Read element `i` consistently (no allocation in locked mode).
#[inline(always)]
fn read_one(py: Python<'_>, cell: &Handle, i: usize) -> PyResult<Elem> {
    let size = cell.size;
    match cell.mode {
        CellMode::Locked => under_lock(
            py,
            cell,
            #[inline(always)]
            |g| {
                let mut e = Elem::zeroed(size);
                g.read_bytes_into(i, &mut e.b[..size])?;
                Ok(e)
            },
        ),
        _ => read(py, cell, i, 1).map(|b| Elem::new(&b)),
    }
}

/// Read `count` elements from `first` consistently, as bytes.
fn read(py: Python<'_>, cell: &Handle, first: usize, count: usize) -> PyResult<Vec<u8>> {
    match cell.mode {
        CellMode::Locked => under_lock(py, cell, |g| g.read_bytes(first, count)),
        _ => match cell.load(first, count, None) {
            Err(Error::WouldBlock) => sliced(py, None, |until| {
                match cell.load(first, count, Some(until)) {
                    Err(Error::Timeout) => None,
                    r => Some(r),
                }
            })?
            .unwrap_or(Err(Error::Timeout))
            .map_err(to_py),
            r => r.map_err(to_py),
        },
    }
}

/// Write whole elements at `first` (one consistent write).
#[inline(always)]
fn write(py: Python<'_>, cell: &Handle, first: usize, data: &[u8]) -> PyResult<()> {
    match cell.mode {
        CellMode::Atomic => cell.store_atomic(first, data).map_err(to_py),
        _ => under_lock(
            py,
            cell,
            #[inline(always)]
            |g| g.write_bytes(first, data),
        ),
    }
}

/// Add `d` (two's complement, wrapping, as C atomics) to element `i`, an integer typecode's:
/// in atomic mode one atomic add; in the other modes a read and a write under the cell's lock
/// (the held one when this thread holds `get_lock()`), so the add is atomic for every user of
/// the lock. The element's previous bits (zero-extended).
#[inline(always)]
fn add(py: Python<'_>, cell: &Handle, i: usize, d: i64) -> PyResult<u64> {
    if !cell.t.is_integer() {
        return Err(not_integer(cell));
    }
    if cell.mode == CellMode::Atomic {
        return cell.fetch_add(i, d).map_err(to_py);
    }
    let size = cell.size;
    under_lock(
        py,
        cell,
        #[inline(always)]
        |g| {
            let mut w = [0u8; 8];
            g.read_bytes_into(i, &mut w[..size])?;
            let old = u64::from_le_bytes(w);
            let new = old.wrapping_add(d as u64).to_le_bytes();
            g.write_bytes(i, &new[..size])?;
            Ok(old)
        },
    )
}

/// The refusal of an add on a non-integer typecode (out of line).
#[cold]
#[inline(never)]
fn not_integer(cell: &Handle) -> PyErr {
    PyTypeError::new_err(format!(
        "fetch_add, fetch_sub, += and -= need an integer typecode; {} is not",
        describe(&cell.any)
    ))
}

/// `obj` as an `i64` if it is exactly an `int` that fits one (one C call, no pyo3 conversion:
/// the hot path of `v.value = n` and `fetch_add(n)`); `None` otherwise (a subclass, another
/// type, a larger int), and the caller's general conversion decides, with its own errors. No
/// error object is made for a larger int (one dropped in a fast entry point would wait in
/// pyo3's reference pool: see [`crate::fastcall`]).
#[inline]
pub(crate) fn exact_i64(obj: &Bound<'_, PyAny>) -> Option<i64> {
    let p = obj.as_ptr();
    // SAFETY: `p` is a live object (a `Bound` holds it) and the GIL is held (the `Bound`'s
    // token); `overflow` is a valid out-pointer.
    unsafe {
        if pyo3::ffi::PyLong_CheckExact(p) == 0 {
            return None;
        }
        let mut overflow = 0;
        let v = pyo3::ffi::PyLong_AsLongLongAndOverflow(p, &mut overflow);
        if v == -1 && !pyo3::ffi::PyErr_Occurred().is_null() {
            // Not expected of an exact int; the general conversion raises what applies.
            pyo3::ffi::PyErr_Clear();
            return None;
        }
        (overflow == 0).then_some(v)
    }
}

/// An integer element from Python: `TypeError` for a non-int, `OverflowError` out of range.
fn int_bytes(t: Typecode, obj: &Bound<'_, PyAny>) -> PyResult<Elem> {
    let v: i128 = match exact_i64(obj) {
        // Every i64 fits the 64-bit signed typecodes: no range check.
        Some(v) if is_i64(t) => {
            return Ok(Elem::low(v as u64, 8));
        }
        Some(v) => i128::from(v),
        None => int_slow(t, obj)?,
    };
    let size = t.size();
    let signed = matches!(
        t,
        Typecode::I8 | Typecode::I16 | Typecode::I32 | Typecode::Long | Typecode::I64
    );
    let bits = 8 * size as u32;
    let (lo, hi) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    if v < lo || v > hi {
        return Err(overflow(t, obj));
    }
    Ok(Elem::low(v as u64, size))
}

/// [`int_bytes`]'s conversion for what [`exact_i64`] leaves: as ctypes (hence
/// `multiprocessing`), any object with `__index__` (an int subclass, a NumPy integer), never
/// a float; `TypeError` otherwise, `OverflowError` past 64 bits.
#[cold]
fn int_slow(t: Typecode, obj: &Bound<'_, PyAny>) -> PyResult<i128> {
    let py = obj.py();
    // SAFETY: `obj` is a live object and the GIL is held (the `Bound`'s token).
    if unsafe { pyo3::ffi::PyIndex_Check(obj.as_ptr()) } == 0 {
        return Err(PyTypeError::new_err(format!(
            "typecode '{}' needs an int (or an object with __index__), not {}",
            t.as_char(),
            obj.get_type().name()?
        )));
    }
    // SAFETY: as above; `PyNumber_Index` returns a new reference or null with an error set,
    // which `from_owned_ptr_or_err` takes over.
    let n = unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyNumber_Index(obj.as_ptr()))? };
    // 64-bit extractions (one C call, no 128-bit conversion): u64 only for the unsigned
    // 64-bit typecodes, whose range i64 does not cover.
    if matches!(t, Typecode::U64 | Typecode::ULong) {
        n.extract::<u64>().map(i128::from)
    } else {
        n.extract::<i64>().map(i128::from)
    }
    .map_err(|_| overflow(t, obj))
}

/// A float element's value: an exact float read in place; anything else as ctypes converts
/// it (`__float__`, then `__index__`: an int, a NumPy scalar), `TypeError` naming the
/// typecode if it has neither.
#[inline(always)]
fn float_value(t: Typecode, obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    if let Ok(f) = obj.downcast_exact::<PyFloat>() {
        return Ok(f.value());
    }
    float_slow(t, obj)
}

#[cold]
fn float_slow(t: Typecode, obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    obj.extract::<f64>().map_err(|e| {
        if !e.is_instance_of::<PyTypeError>(obj.py()) {
            return e;
        }
        let what = obj
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "typecode '{}' needs a float (or an object with __float__ or __index__), not {what}",
            t.as_char()
        ))
    })
}

fn overflow(t: Typecode, obj: &Bound<'_, PyAny>) -> PyErr {
    PyOverflowError::new_err(format!(
        "{} does not fit typecode '{}' ({})",
        obj.repr().map(|r| r.to_string()).unwrap_or_default(),
        t.as_char(),
        t.type_name()
    ))
}

/// One element's little-endian bytes for the Python object `obj` (nothing is written on an
/// error: callers convert everything first).
#[inline(always)]
pub(crate) fn to_bytes(t: Typecode, obj: &Bound<'_, PyAny>) -> PyResult<Elem> {
    // The usual case inline: an exact int for a 64-bit signed typecode (every i64 fits).
    if is_i64(t) {
        if let Some(v) = exact_i64(obj) {
            return Ok(Elem::low(v as u64, 8));
        }
    }
    to_bytes_any(t, obj)
}

/// Whether `t` is a 64-bit signed integer (`q`, and `l` where C's long has 64 bits).
fn is_i64(t: Typecode) -> bool {
    t == Typecode::I64 || (t == Typecode::Long && t.size() == 8)
}

/// [`to_bytes`] for every typecode.
fn to_bytes_any(t: Typecode, obj: &Bound<'_, PyAny>) -> PyResult<Elem> {
    match t {
        Typecode::F32 | Typecode::F64 => {
            let v = float_value(t, obj)?;
            if t == Typecode::F64 {
                return Ok(Elem::new(&v.to_le_bytes()));
            }
            let f = v as f32;
            if v.is_finite() && !f.is_finite() {
                return Err(overflow(t, obj));
            }
            Ok(Elem::new(&f.to_le_bytes()))
        }
        Typecode::Char => {
            if let Ok(b) = obj.downcast::<PyBytes>() {
                if let [c] = b.as_bytes() {
                    return Ok(Elem::new(&[*c]));
                }
                return Err(PyValueError::new_err(format!(
                    "typecode 'c' needs one byte, not {} bytes",
                    b.as_bytes().len()
                )));
            }
            if obj.is_instance_of::<PyInt>() {
                return int_bytes(Typecode::U8, obj).map_err(|_| overflow(t, obj));
            }
            Err(PyTypeError::new_err(format!(
                "typecode 'c' needs bytes of length 1, not {}",
                obj.get_type().name()?
            )))
        }
        Typecode::WChar => {
            let s = obj
                .downcast::<PyString>()
                .map_err(|_| PyTypeError::new_err("typecode 'u' needs a str of length 1"))?;
            let s = s.to_cow()?;
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => Ok(Elem::new(&(c as u32).to_le_bytes())),
                _ => Err(PyValueError::new_err(format!(
                    "typecode 'u' needs one character, not {} characters",
                    s.chars().count()
                ))),
            }
        }
        Typecode::Bool => Ok(Elem::new(&[u8::from(obj.is_truthy()?)])),
        _ => int_bytes(t, obj),
    }
}

/// The Python object for one element's bytes.
pub(crate) fn from_bytes(py: Python<'_>, t: Typecode, b: &[u8]) -> PyResult<PyObject> {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    from_word(py, t, w, b)
}

/// The Python object for one element whose bytes `b` start `w` (zero past them): the word
/// for the numbers, `b` for the characters.
#[inline(always)]
fn from_word(py: Python<'_>, t: Typecode, w: [u8; 8], b: &[u8]) -> PyResult<PyObject> {
    // The usual case inline (one C call); the other typecodes out of line.
    if is_i64(t) {
        return Ok(i64::from_le_bytes(w).into_pyobject(py)?.into_any().unbind());
    }
    from_word_any(py, t, w, b)
}

/// [`from_word`] for every typecode.
fn from_word_any(py: Python<'_>, t: Typecode, w: [u8; 8], b: &[u8]) -> PyResult<PyObject> {
    Ok(match t {
        Typecode::I8 => (b[0] as i8).into_pyobject(py)?.into_any().unbind(),
        Typecode::U8 => b[0].into_pyobject(py)?.into_any().unbind(),
        Typecode::I16 => i16::from_le_bytes([w[0], w[1]])
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        Typecode::U16 => u16::from_le_bytes([w[0], w[1]])
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        Typecode::I32 => i32::from_le_bytes([w[0], w[1], w[2], w[3]])
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        Typecode::U32 => u32::from_le_bytes([w[0], w[1], w[2], w[3]])
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        Typecode::Long | Typecode::I64 => {
            i64::from_le_bytes(w).into_pyobject(py)?.into_any().unbind()
        }
        Typecode::ULong | Typecode::U64 => {
            u64::from_le_bytes(w).into_pyobject(py)?.into_any().unbind()
        }
        Typecode::F32 => (f32::from_le_bytes([w[0], w[1], w[2], w[3]]) as f64)
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        Typecode::F64 => f64::from_le_bytes(w).into_pyobject(py)?.into_any().unbind(),
        Typecode::Char => PyBytes::new(py, &b[..1]).into_any().unbind(),
        Typecode::WChar => {
            let u = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let c = char::from_u32(u).ok_or_else(|| {
                PyValueError::new_err(format!("the cell holds {u:#x}, which is not a character"))
            })?;
            PyString::new(py, c.encode_utf8(&mut [0; 4]))
                .into_any()
                .unbind()
        }
        Typecode::Bool => (b[0] != 0)
            .into_pyobject(py)?
            .to_owned()
            .into_any()
            .unbind(),
    })
}

fn typecode(s: &str) -> PyResult<Typecode> {
    Typecode::from_str_code(s).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "bad typecode {s:?} (must be one of b, B, h, H, i, I, l, L, q, Q, f, d, c, u, ?)"
        ))
    })
}

/// What the error messages list as the ctypes types a cell can hold.
const CTYPES: &str = "c_byte, c_ubyte, c_short, c_ushort, c_int, c_uint, c_long, c_ulong, \
                      c_longlong, c_ulonglong, c_float, c_double, c_char, c_wchar, c_bool \
                      (or their aliases, such as c_int32)";

/// The typecode `typecode_or_type` names, as `multiprocessing.Value`/`Array` take it: a
/// typecode string (`'i'`), or a ctypes simple type (`ctypes.c_int`, or a subclass), whose
/// `_type_` character is that same typecode. Any other type, or a ctypes type that has no
/// typecode here (`c_char_p`, `c_longdouble`, a structure, a byte-swapped type): `TypeError`
/// naming it.
fn typecode_of(typecode_or_type: &Bound<'_, PyAny>) -> PyResult<Typecode> {
    if let Ok(s) = typecode_or_type.downcast::<PyString>() {
        return typecode(&s.to_cow()?);
    }
    let Ok(t) = typecode_or_type.downcast::<PyType>() else {
        return Err(PyTypeError::new_err(format!(
            "typecode_or_type must be a typecode (a str such as 'i') or a ctypes simple type \
             (such as ctypes.c_int), not {}",
            typecode_or_type.get_type().qualname()?
        )));
    };
    static SIMPLE: GILOnceCell<Py<PyType>> = GILOnceCell::new();
    let simple = SIMPLE.import(t.py(), "ctypes", "_SimpleCData")?;
    let name = t.qualname()?;
    if !t.is_subclass(simple)? {
        return Err(PyTypeError::new_err(format!(
            "{name} is not a ctypes simple type: a shmkit cell holds elements of one of {CTYPES}"
        )));
    }
    let code = t.getattr("_type_")?;
    match code
        .extract::<String>()
        .ok()
        .and_then(|c| Typecode::from_str_code(&c))
    {
        Some(_) if byte_swapped(t)? => Err(PyTypeError::new_err(format!(
            "ctypes type {name} has a non-native byte order: a shmkit cell holds its \
             elements in the machine's own byte order"
        ))),
        Some(tc) => Ok(tc),
        None => Err(PyTypeError::new_err(format!(
            "ctypes type {name} (_type_ {}) has no shmkit typecode: a shmkit cell holds \
             elements of one of {CTYPES}",
            code.repr()?
        ))),
    }
}

/// Whether the ctypes simple type `t` is a byte-swapped one (`c_int.__ctype_be__` here):
/// ctypes records each simple type's native-order type in `__ctype_le__`/`__ctype_be__` of
/// both it and its swapped twin, so the first class of `t`'s MRO that records them is
/// native-order exactly when the native entry is itself.
fn byte_swapped(t: &Bound<'_, PyType>) -> PyResult<bool> {
    let native = if cfg!(target_endian = "little") {
        "__ctype_le__"
    } else {
        "__ctype_be__"
    };
    for c in t.mro().iter() {
        let n = c.getattr("__dict__")?.call_method1("get", (native,))?;
        if !n.is_none() {
            return Ok(!n.is(&c));
        }
    }
    Ok(false)
}

/// `lock=` for a `Value`/`Array`: `None`, `True` or `False`. `multiprocessing` also takes a
/// lock object to use instead of a new one; a shmkit cell cannot: its lock is in its segment.
fn lock_flag(lock: Option<&Bound<'_, PyAny>>) -> PyResult<Option<bool>> {
    let Some(lock) = lock.filter(|l| !l.is_none()) else {
        return Ok(None);
    };
    lock.extract::<bool>().map(Some).map_err(|_| {
        let what = lock
            .get_type()
            .qualname()
            .map_or_else(|_| "?".into(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "lock= takes True or False, not a {what} object: a shmkit cell's lock lives in \
             the cell's own segment (a robust lock that every process opening the cell by name \
             uses, and that get_lock() returns), so a lock from outside cannot guard it. Use \
             lock=True (the default: the cell's own lock) or, lock-free, lock=False, \
             mode='atomic' or mode='seqlock'"
        ))
    })
}

/// The cell mode from `lock` / `mode`: `mode` names it; else `lock=True` (the default) is
/// locked and `lock=False` is atomic where the typecode allows it, else seqlock.
fn cell_mode(t: Typecode, lock: Option<bool>, mode: Option<&str>) -> PyResult<CellMode> {
    match (mode, lock) {
        (Some(m), l) => {
            let m = CellMode::from_name(m).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "mode must be 'locked', 'atomic' or 'seqlock', not {m:?}"
                ))
            })?;
            if l.is_some_and(|l| l != (m == CellMode::Locked)) {
                return Err(PyValueError::new_err(format!(
                    "lock={} contradicts mode={m:?}",
                    if l == Some(true) { "True" } else { "False" }
                )));
            }
            Ok(m)
        }
        (None, Some(false)) if t.is_atomic() => Ok(CellMode::Atomic),
        (None, Some(false)) => Ok(CellMode::Seqlock),
        (None, _) => Ok(CellMode::Locked),
    }
}

/// After opening an existing cell for `Value(...)`/`Array(...)`: its typecode and mode must be
/// the ones asked for.
fn check_same(cell: &Cell, t: Typecode, mode: CellMode, len: Option<usize>) -> PyResult<()> {
    let len_ok = len.map_or(true, |n| n == cell.len);
    if cell.t != t || cell.mode != mode || !len_ok {
        let want = match len {
            Some(n) => format!("Array<{}>[{n}] ({mode})", t.as_char()),
            None => format!("Value<{}> ({mode})", t.as_char()),
        };
        return Err(ShmkitError::new_err(format!(
            "segment {:?} holds {} ({}), asked for {want}",
            cell.name(),
            describe(&cell.any),
            cell.mode
        )));
    }
    Ok(())
}

/// Options to create a cell with: `lifetime` is the `lifetime=` keyword (`ValueError` for a
/// value [`named::lifetime`](crate::named::lifetime) refuses).
fn options<C>(mode: CellMode, perm: u32, lifetime: &str) -> PyResult<shmkit::cell::CellOptions<C>>
where
    shmkit::cell::CellOptions<C>: Default,
{
    Ok(shmkit::cell::CellOptions::<C>::default()
        .cell_mode(mode)
        .mode(perm)
        .lifetime(crate::named::lifetime(lifetime)?)
        .unlink_on_drop(false))
}

/// Element bits as an `u64` (for compare-exchange), from a Python object.
fn bits(t: Typecode, obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    let b = to_bytes(t, obj)?;
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(&b);
    Ok(u64::from_le_bytes(w))
}

#[inline(always)]
fn from_bits(py: Python<'_>, t: Typecode, v: u64) -> PyResult<PyObject> {
    // The bits are the element's word (zero-extended): `from_word`, whose 64-bit signed case
    // (the atomic counters' usual typecode) is inline.
    let w = v.to_le_bytes();
    from_word(py, t, w, &w[..t.size()])
}

/// `fetch_add`'s operand (negated for `fetch_sub`): an int in `-2**63 .. 2**64`, as
/// two's-complement bits. Inline: the `+=` and `fetch_add` hot path (an exact int) is one C
/// call and a compare.
#[inline(always)]
fn delta(obj: &Bound<'_, PyAny>, negate: bool) -> PyResult<i64> {
    // The usual operand is an exact int that fits an i64: one C call; a 128-bit conversion
    // only past that, whose error (not an int, too large) is the one raised. No error is
    // made and dropped on the way (`fetch_add` is a fast entry point: [`exact_i64`]).
    let v: i128 = match exact_i64(obj) {
        Some(v) => i128::from(v),
        None => obj.extract()?,
    };
    // The range is the operand's, whichever way it goes: `fetch_sub(2**64 - 1)` adds 1, as
    // C's `atomic_fetch_sub` of `UINT64_MAX` does.
    if !(-(1i128 << 63)..(1i128 << 64)).contains(&v) {
        return Err(PyOverflowError::new_err(format!(
            "{v} is too large an operand"
        )));
    }
    let bits = v as u64;
    Ok(if negate { bits.wrapping_neg() } else { bits } as i64)
}

impl PyCellLock {
    /// [`acquire`](Self::acquire) after a first attempt that did not find the lock free:
    /// `first` is that attempt's outcome (which may already hold the lock: `OwnerDied`).
    #[inline(never)]
    fn acquire_rest(
        slf: &Bound<'_, Self>,
        block: bool,
        timeout: Option<f64>,
        first: LockRes<'_>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let cell = &slf.get().cell;
        let took_of = |r: LockRes<'_>| -> Took<()> {
            match r {
                Ok(g) => {
                    g.leak();
                    Took::Done(())
                }
                Err(LockError::OwnerDied(g)) => {
                    let was = g.previous_owner();
                    g.leak();
                    Took::Died(was)
                }
                Err(LockError::WouldBlock) | Err(LockError::Timeout) => Took::Busy,
                Err(LockError::Deadlock) if !block => Took::Busy,
                Err(e) => Took::Failed(lock_error(e)),
            }
        };
        let attempt = |until: Option<Instant>| took_of(cell.lock(until));
        let took = match took_of(first) {
            Took::Busy if block => {
                sliced(py, deadline(timeout)?, |until| match attempt(Some(until)) {
                    Took::Busy => None,
                    t => Some(t),
                })?
                .unwrap_or(Took::Busy)
            }
            t => t,
        };
        match took {
            Took::Done(()) => {
                cell.mark_held(py);
                Ok(true)
            }
            Took::Busy => Ok(false),
            Took::Died(was) => {
                cell.mark_held(py);
                Err(owner_died(slf.as_any(), was))
            }
            Took::Failed(e) => Err(e),
        }
    }
}

/// The cell's lock, as `get_lock()` returns it: `multiprocessing`'s lock object for a
/// `Value`/`Array`, over the cell's own robust lock.
#[pyclass(module = "shmkit", name = "CellLock", frozen)]
pub(crate) struct PyCellLock {
    cell: Arc<Cell>,
}

#[pymethods]
impl PyCellLock {
    /// Acquire the cell's lock (`Lock.acquire`'s signature and outcomes). While it is held,
    /// this thread's `.value` / indexing use it instead of taking it again.
    #[pyo3(signature = (block = BLOCK, timeout = None), text_signature = "($self, block=True, timeout=None)")]
    #[inline(always)]
    fn acquire(slf: &Bound<'_, Self>, block: Truthy, timeout: Option<f64>) -> PyResult<bool> {
        let block = block.0;
        let cell = &slf.get().cell;
        // Checked before the first attempt (a NaN timeout is an error even when it is free);
        // the clock is read only if that attempt fails.
        if block {
            check_timeout(timeout)?;
        }
        // Free (the usual case): taken, kept (leaked), marked; the rest is out of line.
        match cell.lock(None) {
            Ok(g) => {
                g.leak();
                cell.mark_held(slf.py());
                Ok(true)
            }
            first => Self::acquire_rest(slf, block, timeout, first),
        }
    }

    /// Release the lock; `RLockNotOwned` (`AssertionError` and `RuntimeError`, as
    /// `multiprocessing`'s `get_lock()`, an RLock, and `threading` raise) if this thread does
    /// not hold it.
    #[inline(always)]
    fn release(&self) -> PyResult<()> {
        let g = self.cell.adopt().map_err(rlock_error)?;
        // Cleared before the unlock (the guard's drop). Only a holder of the lock writes the
        // hint (`mark_held` after taking it, this after `adopt` proved it), so while this
        // thread holds it the hint is this thread's token or 0: a plain store, no compare.
        self.cell.held.store(0, Ordering::Relaxed);
        drop(g);
        Ok(())
    }

    /// After `OwnerDied`: declare the cell's data repaired (this thread holds the lock).
    fn make_consistent(&self) -> PyResult<()> {
        let mut g = self.cell.adopt().map_err(rlock_error)?;
        let r = g.make_consistent();
        g.leak();
        r.map_err(rlock_error)
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Self::acquire(slf, BLOCK, None)
    }

    // Three positional parameters, not `*args`: no argument tuple built per `with` block.
    #[pyo3(signature = (exc_type, exc, tb))]
    fn __exit__(
        &self,
        exc_type: &Bound<'_, PyAny>,
        exc: &Bound<'_, PyAny>,
        tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let _ = (exc_type, exc, tb);
        self.release()
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.CellLock of {:?}>", self.cell.name())
    }

    /// Pickled by name (as `multiprocessing` passes `get_lock()` to a spawned child):
    /// unpickling opens the cell again and is its lock.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String, bool))> {
        let open = slf.get_type().getattr("_open")?;
        let cell = &slf.get().cell;
        Ok((
            open,
            (cell.name().to_owned(), matches!(cell.any, Any::A(_))),
        ))
    }

    /// The lock of the cell `name` (an array if `array`, else a value), opened anew: what a
    /// pickled lock becomes.
    #[staticmethod]
    fn _open(py: Python<'_>, name: &str, array: bool) -> PyResult<Py<PyCellLock>> {
        let any = if array {
            Any::A(AnyArray::open(name).map_err(to_py)?)
        } else {
            Any::V(AnyValue::open(name).map_err(to_py)?)
        };
        Ok(Handle::new(Cell::new(any)?)
            .lock_object(py)?
            .clone()
            .unbind())
    }
}

/// A named typed value shared by processes: `multiprocessing.Value`, attachable by name.
/// `typecode_or_type` is a typecode (`'i'`) or a ctypes simple type with one (`ctypes.c_int`);
/// `lock` is `True`, `False` or `None` (not a lock object: the cell's lock is in its segment).
#[pyclass(module = "shmkit", name = "Value", frozen)]
pub(crate) struct PyValue {
    inner: Handle,
}

impl PyValue {
    fn create_impl(
        name: &str,
        t: Typecode,
        init: Option<&Bound<'_, PyAny>>,
        mode: CellMode,
        perm: u32,
        lifetime: &str,
        or_open: bool,
    ) -> PyResult<Self> {
        if mode == CellMode::Atomic && !t.is_atomic() {
            return Err(PyValueError::new_err(format!(
                "typecode '{}' has no atomic mode (floats: use 'seqlock' or 'locked')",
                t.as_char()
            )));
        }
        let init = init.map(|o| to_bytes(t, o)).transpose()?;
        let opts = options::<AnyValue>(mode, perm, lifetime)?;
        let v = if or_open {
            opts.open_or_create(name, t, init.as_deref())
        } else {
            opts.create(name, t, init.as_deref())
        }
        .map_err(to_py)?;
        Ok(PyValue {
            inner: Handle::new(Cell::new(Any::V(v))?),
        })
    }

    fn open_impl(name: &str) -> PyResult<Self> {
        let v = AnyValue::open(name).map_err(to_py)?;
        Ok(PyValue {
            inner: Handle::new(Cell::new(Any::V(v))?),
        })
    }

    fn atomic_only(&self) -> PyResult<()> {
        if self.inner.mode != CellMode::Atomic {
            return Err(PyValueError::new_err(format!(
                "{} is a {} cell: this needs an atomic one (mode='atomic')",
                describe(&self.inner.any),
                self.inner.mode
            )));
        }
        Ok(())
    }
}

crate::named::named_methods!(
    PyValue,
    "Value",
    #[pymethods]
    {
        /// `Value(typecode, init=None, *, name, lock=None, mode=None, perm=0o600)`: create the
        /// value `name` holding `init` (zero if None), or open it if it exists (then `init` is
        /// ignored, and its typecode and mode must be these: else `ShmkitError`).
        #[new]
        #[pyo3(signature = (typecode_or_type, init = None, *, name,
            lock = None, mode = None, perm = 0o600, lifetime = "persistent"))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            typecode_or_type: &Bound<'_, PyAny>,
            init: Option<&Bound<'_, PyAny>>,
            name: &str,
            lock: Option<&Bound<'_, PyAny>>,
            mode: Option<&str>,
            perm: u32,
            lifetime: &str,
        ) -> PyResult<Self> {
            let t = typecode_of(typecode_or_type)?;
            let m = cell_mode(t, lock_flag(lock)?, mode)?;
            // The library's open-or-create: an existing value of another user is refused
            // where this one would be private (`SPEC.md` §4.3).
            let v = Self::create_impl(name, t, init, m, perm, lifetime, true)?;
            check_same(&v.inner, t, m, None)?;
            Ok(v)
        }

        /// Create a new value; `FileExistsError` if the name is taken.
        #[staticmethod]
        #[pyo3(signature = (name, typecode_or_type, init = None, *,
            lock = None, mode = None, perm = 0o600, lifetime = "persistent"))]
        fn create(
            name: &str,
            typecode_or_type: &Bound<'_, PyAny>,
            init: Option<&Bound<'_, PyAny>>,
            lock: Option<&Bound<'_, PyAny>>,
            mode: Option<&str>,
            perm: u32,
            lifetime: &str,
        ) -> PyResult<Self> {
            let t = typecode_of(typecode_or_type)?;
            let m = cell_mode(t, lock_flag(lock)?, mode)?;
            Self::create_impl(name, t, init, m, perm, lifetime, false)
        }

        /// Open an existing value (any typecode and mode, as recorded); `FileNotFoundError` if
        /// there is none, `ShmkitError` if it is not a value.
        #[staticmethod]
        fn open(name: &str) -> PyResult<Self> {
            Self::open_impl(name)
        }

        /// The value (locked: under the lock; seqlock: a consistent snapshot; atomic: one load).
        #[getter]
        #[inline(always)]
        fn get_value(&self, py: Python<'_>) -> PyResult<PyObject> {
            let e = read_one(py, &self.inner, 0)?;
            // `Elem` keeps the bytes past its length zero: its buffer is the word.
            from_word(py, self.inner.t, e.b, &e)
        }

        #[setter]
        #[inline(always)]
        fn set_value(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
            let b = to_bytes(self.inner.t, v)?;
            write(py, &self.inner, 0, &b)
        }

        /// The lock (`multiprocessing`'s `get_lock()`): `with v.get_lock(): v.value += 1`.
        fn get_lock(&self, py: Python<'_>) -> PyResult<Py<PyCellLock>> {
            Ok(self.inner.lock_object(py)?.clone().unbind())
        }

        /// The shared object (`multiprocessing`'s synchronized wrappers return the ctypes
        /// object they wrap; a shmkit value is its own object, so this is the value itself).
        fn get_obj<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
            slf.clone()
        }

        /// The typecode (`'q'`).
        #[getter]
        fn typecode(&self) -> String {
            self.inner.t.as_char().to_string()
        }

        /// The mode: `'locked'`, `'atomic'` or `'seqlock'`.
        #[getter]
        fn mode(&self) -> String {
            self.inner.mode.to_string()
        }

        /// Seqlock mode: the write sequence (even when no write is under way).
        #[getter]
        fn sequence(&self) -> u64 {
            self.inner.sequence()
        }

        /// Atomic mode: the value (one atomic load).
        fn load(&self, py: Python<'_>) -> PyResult<PyObject> {
            self.atomic_only()?;
            self.get_value(py)
        }

        /// Atomic mode: store `v` (one atomic store).
        fn store(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
            self.atomic_only()?;
            self.set_value(py, v)
        }

        /// Integer typecodes: add `v` (wrapping, as C atomics); the previous value. Atomic
        /// mode: one atomic add; the other modes: under the cell's lock (the held one if this
        /// thread holds `get_lock()`), atomic for every user of the lock.
        #[inline(always)]
        fn fetch_add(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
            let old = add(py, &self.inner, 0, delta(v, false)?)?;
            from_bits(py, self.inner.t, old)
        }

        /// Integer typecodes: subtract `v` (wrapping); the previous value (as `fetch_add`).
        fn fetch_sub(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
            let old = add(py, &self.inner, 0, delta(v, true)?)?;
            from_bits(py, self.inner.t, old)
        }

        /// `v += n`: `fetch_add(n)` without making the previous value (an increment in one
        /// call, in every mode). The name still refers to this value afterwards.
        #[inline(always)]
        fn __iadd__(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
            add(py, &self.inner, 0, delta(n, false)?).map(drop)
        }

        /// `v -= n`: `fetch_sub(n)` without making the previous value.
        fn __isub__(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
            add(py, &self.inner, 0, delta(n, true)?).map(drop)
        }

        /// Atomic mode: replace the value with `v` if it is `expected`. Returns `(True,
        /// expected)` if it was replaced, else `(False, actual)`.
        fn compare_exchange(
            &self,
            py: Python<'_>,
            expected: &Bound<'_, PyAny>,
            new: &Bound<'_, PyAny>,
        ) -> PyResult<(bool, PyObject)> {
            let t = self.inner.t;
            let (e, n) = (bits(t, expected)?, bits(t, new)?);
            match self.inner.compare_exchange(0, e, n).map_err(to_py)? {
                Ok(old) => Ok((true, from_bits(py, t, old)?)),
                Err(actual) => Ok((false, from_bits(py, t, actual)?)),
            }
        }

        /// Atomic mode: store `v`; the previous value.
        fn swap(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
            let t = self.inner.t;
            let n = bits(t, v)?;
            let mut cur = bits(t, &self.load(py)?.into_bound(py))?;
            loop {
                match self.inner.compare_exchange(0, cur, n).map_err(to_py)? {
                    Ok(old) => return from_bits(py, t, old),
                    Err(actual) => cur = actual,
                }
            }
        }

        /// Seqlock mode: wait for a write after sequence `last_seq` (0 at first); returns
        /// `(value, seq)`. `TimeoutError` if `timeout` seconds pass first. Releases the GIL;
        /// Ctrl-C interrupts it.
        #[pyo3(signature = (last_seq, timeout = None))]
        fn wait_changed(
            &self,
            py: Python<'_>,
            last_seq: u64,
            timeout: Option<f64>,
        ) -> PyResult<(PyObject, u64)> {
            let (b, s) = wait_changed(py, &self.inner, last_seq, timeout)?;
            Ok((from_bytes(py, self.inner.t, &b)?, s))
        }

        /// `with v:` takes the cell's lock, as `multiprocessing`'s synchronized values do
        /// (`get_lock().__enter__()`, so `with v: v.value += 1` is atomic); `__exit__`
        /// releases it.
        fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
            cell_enter(py, &self.inner)
        }

        #[pyo3(signature = (*_args))]
        fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
            cell_release(py, &self.inner)
        }

        /// `get_lock().acquire(block, timeout)` (as `multiprocessing`'s synchronized values).
        #[pyo3(signature = (block = BLOCK, timeout = None), text_signature = "($self, block=True, timeout=None)")]
        fn acquire(&self, py: Python<'_>, block: Truthy, timeout: Option<f64>) -> PyResult<bool> {
            cell_acquire(py, &self.inner, block, timeout)
        }

        /// `get_lock().release()`.
        fn release(&self, py: Python<'_>) -> PyResult<()> {
            cell_release(py, &self.inner)
        }
    }
);

/// The cell's lock for `with v:` / `v.acquire()`: `get_lock()`'s object. An atomic cell has
/// none (`multiprocessing`'s lock-free `RawValue`/`RawArray` have no `with` either): a
/// `TypeError` saying so.
fn cell_lock<'a, 'py>(py: Python<'py>, cell: &'a Handle) -> PyResult<&'a Bound<'py, PyCellLock>> {
    if cell.mode == CellMode::Atomic {
        return Err(PyTypeError::new_err(format!(
            "{} is an atomic cell, which has no lock: `with`, acquire() and release() need a \
             locked or seqlock cell (multiprocessing's lock-free RawValue/RawArray have no \
             `with` either); use load/store/fetch_add/compare_exchange",
            describe(&cell.any)
        )));
    }
    cell.lock_object(py)
}

fn cell_enter(py: Python<'_>, cell: &Handle) -> PyResult<bool> {
    PyCellLock::acquire(cell_lock(py, cell)?, BLOCK, None)
}

fn cell_acquire(
    py: Python<'_>,
    cell: &Handle,
    block: Truthy,
    timeout: Option<f64>,
) -> PyResult<bool> {
    PyCellLock::acquire(cell_lock(py, cell)?, block, timeout)
}

fn cell_release(py: Python<'_>, cell: &Handle) -> PyResult<()> {
    cell_lock(py, cell)?.get().release()
}

fn wait_changed(
    py: Python<'_>,
    cell: &Cell,
    last: u64,
    timeout: Option<f64>,
) -> PyResult<(Vec<u8>, u64)> {
    let dl = deadline(timeout)?;
    let r = match cell.wait_changed(last, None) {
        Err(Error::WouldBlock) => {
            sliced(py, dl, |until| match cell.wait_changed(last, Some(until)) {
                Err(Error::Timeout) => None,
                r => Some(r),
            })?
            .unwrap_or(Err(Error::Timeout))
        }
        r => r,
    };
    r.map_err(to_py)
}

/// The buffer-protocol format of a typecode (`'u'` is PEP 3118's `'w'`, UCS-4).
fn format(t: Typecode) -> &'static std::ffi::CStr {
    match t {
        Typecode::I8 => c"b",
        Typecode::U8 => c"B",
        Typecode::I16 => c"h",
        Typecode::U16 => c"H",
        Typecode::I32 => c"i",
        Typecode::U32 => c"I",
        Typecode::Long => c"l",
        Typecode::ULong => c"L",
        Typecode::I64 => c"q",
        Typecode::U64 => c"Q",
        Typecode::F32 => c"f",
        Typecode::F64 => c"d",
        Typecode::Char => c"c",
        Typecode::WChar => c"w",
        Typecode::Bool => c"?",
    }
}

/// A named fixed-length typed array shared by processes: `multiprocessing.Array`, attachable
/// by name, and a buffer (`memoryview(a)`, `numpy.asarray(a)`: zero-copy).
/// `typecode_or_type` and `lock` as for `Value`.
#[pyclass(module = "shmkit", name = "Array", frozen)]
pub(crate) struct PyArray {
    /// Mapped until this object goes, also once closed: NumPy before 1.22.4 keeps a reference
    /// to the object an array was made from (`numpy.frombuffer(a)`) but no buffer export, so
    /// such an array can point into the mapping while `exports` says 0 (as `SharedMemory`).
    /// Frozen (no `&mut self`): a call waiting with the GIL released holds no borrow that a
    /// `close()` from another thread, or from a `fork()`ed child, would find taken.
    inner: Handle,
    /// Set by `close()`: later calls raise `ValueError`.
    closed: AtomicBool,
    name: String,
    /// Live buffer exports.
    exports: AtomicUsize,
    /// The exported shape and stride (pointed to by `Py_buffer`s while they live).
    shape: [pyo3::ffi::Py_ssize_t; 1],
    strides: [pyo3::ffi::Py_ssize_t; 1],
}

impl PyArray {
    fn wrap(a: AnyArray) -> PyResult<Self> {
        let cell = Cell::new(Any::A(a))?;
        Ok(PyArray {
            name: cell.name().to_owned(),
            shape: [cell.len as pyo3::ffi::Py_ssize_t],
            strides: [cell.t.size() as pyo3::ffi::Py_ssize_t],
            inner: Handle::new(cell),
            closed: AtomicBool::new(false),
            exports: AtomicUsize::new(0),
        })
    }

    fn cell(&self) -> PyResult<&Handle> {
        // Relaxed: a flag of this process's object; the mapping stays either way.
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyValueError::new_err(format!(
                "array {:?} is closed",
                self.name
            )));
        }
        Ok(&self.inner)
    }

    /// The elements for `size_or_initializer`, converted before anything is created.
    fn init(t: Typecode, size_or_init: &Bound<'_, PyAny>) -> PyResult<(usize, Option<Vec<u8>>)> {
        if size_or_init.is_instance_of::<PyInt>() {
            let n: i64 = size_or_init.extract()?;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| empty_array(&n.to_string()))?;
            return Ok((n, None));
        }
        let mut data = Vec::new();
        let mut n = 0;
        for item in size_or_init.try_iter()? {
            data.extend_from_slice(&to_bytes(t, &item?)?);
            n += 1;
        }
        if n == 0 {
            return Err(empty_array("an empty initializer"));
        }
        Ok((n, Some(data)))
    }

    /// Create the array of `n` elements holding `data` (from [`Self::init`]; zeroed if
    /// `None`): the data is in place before the array is published, so no other process can
    /// open it zeroed or half-written, and a creator killed during the call leaves no array.
    fn create_impl(
        name: &str,
        t: Typecode,
        (n, data): (usize, Option<&[u8]>),
        mode: CellMode,
        perm: u32,
        lifetime: &str,
        or_open: bool,
    ) -> PyResult<Self> {
        if mode == CellMode::Atomic && !t.is_atomic() {
            return Err(PyValueError::new_err(format!(
                "typecode '{}' has no atomic mode (floats: use 'seqlock' or 'locked')",
                t.as_char()
            )));
        }
        let opts = options::<AnyArray>(mode, perm, lifetime)?;
        let a = if or_open {
            opts.open_or_create(name, t, n, data)
        } else {
            opts.create(name, t, n, data)
        }
        .map_err(to_py)?;
        Self::wrap(a)
    }

    /// The cell of a `'c'` array, for `.raw` / `.value` (`AttributeError` for another
    /// typecode, as `multiprocessing`'s non-char arrays have no such attribute).
    fn char_cell(&self, what: &str) -> PyResult<&Handle> {
        let cell = self.cell()?;
        if cell.t != Typecode::Char {
            return Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                "'{what}' is for typecode 'c' arrays; this one is '{}'",
                cell.t.as_char()
            )));
        }
        Ok(cell)
    }

    /// A Python index (negative from the end) as an element number; `IndexError` outside.
    fn index(&self, i: isize) -> PyResult<usize> {
        let n = self.cell()?.len as isize;
        let j = if i < 0 { i + n } else { i };
        if j < 0 || j >= n {
            return Err(PyIndexError::new_err("array index out of range"));
        }
        Ok(j as usize)
    }
}

/// The refusal of an array of no elements (`what`: the size or initializer asked for).
fn empty_array(what: &str) -> PyErr {
    PyValueError::new_err(format!(
        "a shmkit array has at least one element, not {what} (unlike multiprocessing.Array, \
         whose Array(typecode, 0) is an empty array: a shmkit array has no empty form)"
    ))
}

/// An element index from Python as `Py_ssize_t`: any object with `__index__`; one too large
/// for that is an `IndexError` (as ctypes' arrays raise), not an `OverflowError`.
fn key_index(key: &Bound<'_, PyAny>) -> PyResult<isize> {
    // SAFETY: `key` is a live object and the GIL is held; -1 with an error set is the failure.
    let i = unsafe { pyo3::ffi::PyNumber_AsSsize_t(key.as_ptr(), pyo3::ffi::PyExc_IndexError) };
    if i == -1 {
        if let Some(e) = PyErr::take(key.py()) {
            return Err(e);
        }
    }
    Ok(i)
}

/// The bytes for `.raw` (any bytes-like object: `bytes`, `bytearray`, `memoryview`, ...) /
/// `.value` (`bytes` only) of a char array of `len` (`TypeError` otherwise), at most `len` of
/// them (`ValueError`): as ctypes, and nothing is written on an error.
fn char_bytes(v: &Bound<'_, PyAny>, len: usize, bytes_only: bool) -> PyResult<Vec<u8>> {
    // SAFETY (`PyObject_CheckBuffer`): `v` is a live object and the GIL is held.
    let b = if let Ok(b) = v.downcast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if !bytes_only && unsafe { pyo3::ffi::PyObject_CheckBuffer(v.as_ptr()) } != 0 {
        // `bytes(v)` of a buffer: one copy of its bytes (in C order), whatever its format.
        let b = v.py().get_type::<PyBytes>().call1((v,))?;
        b.downcast::<PyBytes>()?.as_bytes().to_vec()
    } else {
        return Err(PyTypeError::new_err(format!(
            "bytes expected, not {}",
            v.get_type().name()?
        )));
    };
    if b.len() > len {
        return Err(PyValueError::new_err(format!(
            "byte string too long ({} bytes for an array of {len})",
            b.len()
        )));
    }
    Ok(b)
}

/// A slice's elements: `(start, step, count)` and the contiguous span `(lo, span)` holding
/// them.
fn slice_span(s: &Bound<'_, PySlice>, len: usize) -> PyResult<(isize, isize, usize, usize, usize)> {
    let ix = s.indices(len as isize)?;
    let count = ix.slicelength;
    if count == 0 {
        return Ok((ix.start, ix.step, 0, 0, 0));
    }
    let last = ix.start + (count as isize - 1) * ix.step;
    let (lo, hi) = (ix.start.min(last) as usize, ix.start.max(last) as usize);
    Ok((ix.start, ix.step, count, lo, hi - lo + 1))
}

#[pymethods]
impl PyArray {
    /// `Array(typecode, size_or_initializer, *, name, lock=None, mode=None, perm=0o600)`:
    /// create the array `name` (zeroed, or holding the initializer's elements), or open it if
    /// it exists (then the initializer is not written, and its typecode, mode and length must
    /// be these: else `ShmkitError`).
    #[new]
    #[pyo3(signature = (typecode_or_type, size_or_initializer, *, name,
        lock = None, mode = None, perm = 0o600, lifetime = "persistent"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        typecode_or_type: &Bound<'_, PyAny>,
        size_or_initializer: &Bound<'_, PyAny>,
        name: &str,
        lock: Option<&Bound<'_, PyAny>>,
        mode: Option<&str>,
        perm: u32,
        lifetime: &str,
    ) -> PyResult<Self> {
        let t = typecode_of(typecode_or_type)?;
        let m = cell_mode(t, lock_flag(lock)?, mode)?;
        // Converted once: the initializer may be an iterator, exhausted after this.
        let (n, data) = Self::init(t, size_or_initializer)?;
        // The library's open-or-create: an existing array of another user is refused where
        // this one would be private (`SPEC.md` §4.3).
        let a = Self::create_impl(name, t, (n, data.as_deref()), m, perm, lifetime, true)?;
        check_same(a.cell()?, t, m, Some(n))?;
        Ok(a)
    }

    /// Create a new array; `FileExistsError` if the name is taken.
    #[staticmethod]
    #[pyo3(signature = (name, typecode_or_type, size_or_initializer, *,
        lock = None, mode = None, perm = 0o600, lifetime = "persistent"))]
    fn create(
        name: &str,
        typecode_or_type: &Bound<'_, PyAny>,
        size_or_initializer: &Bound<'_, PyAny>,
        lock: Option<&Bound<'_, PyAny>>,
        mode: Option<&str>,
        perm: u32,
        lifetime: &str,
    ) -> PyResult<Self> {
        let t = typecode_of(typecode_or_type)?;
        let m = cell_mode(t, lock_flag(lock)?, mode)?;
        let (n, data) = Self::init(t, size_or_initializer)?;
        Self::create_impl(name, t, (n, data.as_deref()), m, perm, lifetime, false)
    }

    /// Open an existing array (typecode, mode and length as recorded).
    #[staticmethod]
    fn open(name: &str) -> PyResult<Self> {
        Self::wrap(AnyArray::open(name).map_err(to_py)?)
    }

    /// The array's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Remove the name; open handles keep working.
    fn unlink(&self) -> PyResult<()> {
        crate::named::unlink(&self.name)
    }

    /// The typecode (`'d'`).
    #[getter]
    fn typecode(&self) -> PyResult<String> {
        Ok(self.cell()?.t.as_char().to_string())
    }

    /// The mode: `'locked'`, `'atomic'` or `'seqlock'`.
    #[getter]
    fn mode(&self) -> PyResult<String> {
        Ok(self.cell()?.mode.to_string())
    }

    /// Seqlock mode: the write sequence.
    #[getter]
    fn sequence(&self) -> PyResult<u64> {
        Ok(self.cell()?.sequence())
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.cell()?.len)
    }

    /// `a[i]` (one element) or `a[i:j:k]` (a list, or bytes for typecode `'c'`; one
    /// consistent copy).
    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let cell = self.cell()?;
        let t = cell.t;
        let size = t.size();
        if let Ok(s) = key.downcast::<PySlice>() {
            let (start, step, count, lo, span) = slice_span(s, cell.len)?;
            let b = if count == 0 {
                Vec::new()
            } else {
                read(py, cell, lo, span)?
            };
            let at = |k: usize| (start + k as isize * step) as usize - lo;
            if t == Typecode::Char {
                let v: Vec<u8> = (0..count).map(|k| b[at(k)]).collect();
                return Ok(PyBytes::new(py, &v).into_any().unbind());
            }
            let items = (0..count)
                .map(|k| from_bytes(py, t, &b[at(k) * size..(at(k) + 1) * size]))
                .collect::<PyResult<Vec<_>>>()?;
            return Ok(PyList::new(py, items)?.into_any().unbind());
        }
        let i = self.index(key_index(key)?)?;
        let b = read_one(py, cell, i)?;
        from_bytes(py, t, &b)
    }

    /// `a[i] = v` or `a[i:j:k] = seq` (same length: else `ValueError`). Everything is
    /// converted first: a bad element writes nothing. A slice is one write under the lock
    /// (locked, seqlock); in atomic mode, element-wise stores.
    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let cell = self.cell()?;
        let t = cell.t;
        let size = t.size();
        if let Ok(s) = key.downcast::<PySlice>() {
            let (start, step, count, lo, span) = slice_span(s, cell.len)?;
            let mut items = Vec::with_capacity(count * size);
            let mut n = 0usize;
            if t == Typecode::Char && value.is_instance_of::<PyBytes>() {
                items.extend_from_slice(value.downcast::<PyBytes>()?.as_bytes());
                n = items.len();
            } else {
                for item in value.try_iter()? {
                    items.extend_from_slice(&to_bytes(t, &item?)?);
                    n += 1;
                }
            }
            if n != count {
                return Err(PyValueError::new_err(format!(
                    "can only assign a sequence of the same size ({count}), not {n}"
                )));
            }
            if count == 0 {
                return Ok(());
            }
            if step == 1 {
                return write(py, cell, lo, &items);
            }
            let at = |k: usize| (start + k as isize * step) as usize;
            if cell.mode == CellMode::Atomic {
                for k in 0..count {
                    write(py, cell, at(k), &items[k * size..(k + 1) * size])?;
                }
                return Ok(());
            }
            return under_lock(py, cell, |g| {
                let mut b = g.read_bytes(lo, span)?;
                for k in 0..count {
                    let o = (at(k) - lo) * size;
                    b[o..o + size].copy_from_slice(&items[k * size..(k + 1) * size]);
                }
                g.write_bytes(lo, &b)
            });
        }
        let i = self.index(key_index(key)?)?;
        let b = to_bytes(t, value)?;
        write(py, cell, i, &b)
    }

    /// Iterate over a consistent snapshot of the elements (as indexing gives them: for
    /// typecode `'c'`, bytes of length 1).
    fn __iter__(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        let py = slf.py();
        let this = slf.get();
        let all = this.__getitem__(py, PySlice::full(py).as_any())?;
        if this.cell()?.t == Typecode::Char {
            let b = all.bind(py).downcast::<PyBytes>()?.as_bytes();
            let items = b.iter().map(|c| PyBytes::new(py, &[*c]));
            return Ok(PyList::new(py, items)?.try_iter()?.into_any().unbind());
        }
        Ok(all.bind(py).try_iter()?.into_any().unbind())
    }

    /// The lock (`multiprocessing`'s `get_lock()`): `with a.get_lock(): a[0] += a[1]`.
    fn get_lock(&self, py: Python<'_>) -> PyResult<Py<PyCellLock>> {
        Ok(self.cell()?.lock_object(py)?.clone().unbind())
    }

    /// The shared object (as `Value.get_obj`: the array itself).
    fn get_obj(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Typecode `'c'`: the whole array as `bytes` (`multiprocessing`'s char array `.raw`).
    #[getter]
    fn get_raw<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let cell = self.char_cell("raw")?;
        Ok(PyBytes::new(py, &read(py, cell, 0, cell.len)?))
    }

    /// Write `bytes` from the start (`ValueError` if longer than the array; the rest is left
    /// as it is).
    #[setter]
    fn set_raw(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let cell = self.char_cell("raw")?;
        let b = char_bytes(v, cell.len, false)?;
        if b.is_empty() {
            return Ok(());
        }
        write(py, cell, 0, &b)
    }

    /// Typecode `'c'`: the bytes up to the first NUL (`multiprocessing`'s char array
    /// `.value`).
    #[getter]
    fn get_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let cell = self.char_cell("value")?;
        let b = read(py, cell, 0, cell.len)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(PyBytes::new(py, &b[..end]))
    }

    /// Write `bytes` from the start, then a NUL if there is room (`ValueError` if longer than
    /// the array), in one write.
    #[setter]
    fn set_value(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let cell = self.char_cell("value")?;
        let mut b = char_bytes(v, cell.len, true)?;
        if b.len() < cell.len {
            b.push(0);
        }
        write(py, cell, 0, &b)
    }

    /// Integer typecodes: add `v` to element `i` (wrapping); its previous value. Atomic mode:
    /// one atomic add; the other modes: under the cell's lock (as `Value.fetch_add`).
    fn fetch_add(&self, py: Python<'_>, i: isize, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let i = self.index(i)?;
        let cell = self.cell()?;
        let old = add(py, cell, i, delta(v, false)?)?;
        from_bits(py, cell.t, old)
    }

    /// Integer typecodes: subtract `v` from element `i`; its previous value.
    fn fetch_sub(&self, py: Python<'_>, i: isize, v: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let i = self.index(i)?;
        let cell = self.cell()?;
        let old = add(py, cell, i, delta(v, true)?)?;
        from_bits(py, cell.t, old)
    }

    /// Atomic mode: replace element `i` with `new` if it is `expected`: `(True, expected)`
    /// or `(False, actual)`.
    fn compare_exchange(
        &self,
        py: Python<'_>,
        i: isize,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, PyObject)> {
        let i = self.index(i)?;
        let cell = self.cell()?;
        let t = cell.t;
        let (e, n) = (bits(t, expected)?, bits(t, new)?);
        match cell.compare_exchange(i, e, n).map_err(to_py)? {
            Ok(old) => Ok((true, from_bits(py, t, old)?)),
            Err(actual) => Ok((false, from_bits(py, t, actual)?)),
        }
    }

    /// Seqlock mode: wait for a write after sequence `last_seq`; `(list, seq)`.
    #[pyo3(signature = (last_seq, timeout = None))]
    fn wait_changed(
        &self,
        py: Python<'_>,
        last_seq: u64,
        timeout: Option<f64>,
    ) -> PyResult<(PyObject, u64)> {
        let cell = self.cell()?;
        let (b, s) = wait_changed(py, cell, last_seq, timeout)?;
        let items = b
            .chunks_exact(cell.t.size())
            .map(|c| from_bytes(py, cell.t, c))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((PyList::new(py, items)?.into_any().unbind(), s))
    }

    /// Close the array: later calls raise `ValueError`; the memory is unmapped from this
    /// process when the object goes (an array NumPy made from it may still point there).
    /// `BufferError` while views of it (memoryviews, numpy arrays) are alive. Closing twice is
    /// harmless. Does not unlink.
    fn close(&self) -> PyResult<()> {
        let n = self.exports.load(Ordering::Acquire);
        if n > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot close array {:?}: {n} exported buffer(s) (memoryview, numpy array, \
                 ...) still use it; release them first",
                self.name
            )));
        }
        self.closed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// `with a:` takes the cell's lock, as `multiprocessing`'s synchronized arrays do
    /// (`get_lock().__enter__()`); `__exit__` releases it.
    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        cell_enter(py, self.cell()?)
    }

    /// Releases the lock, also when the block closed the array (the cell stays mapped).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        cell_release(py, &self.inner)
    }

    /// `get_lock().acquire(block, timeout)` (as `multiprocessing`'s synchronized arrays).
    #[pyo3(signature = (block = BLOCK, timeout = None), text_signature = "($self, block=True, timeout=None)")]
    fn acquire(&self, py: Python<'_>, block: Truthy, timeout: Option<f64>) -> PyResult<bool> {
        cell_acquire(py, self.cell()?, block, timeout)
    }

    /// `get_lock().release()` (also of a closed array: what it holds is let go).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        cell_release(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        match self.cell() {
            Ok(c) => format!(
                "<shmkit.Array name={:?} typecode='{}' len={} mode={}>",
                self.name,
                c.t.as_char(),
                c.len,
                c.mode
            ),
            Err(_) => format!("<shmkit.Array name={:?} closed>", self.name),
        }
    }

    /// Pickled by name: unpickling opens the same array.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let open = slf.get_type().getattr("open")?;
        Ok((open, (slf.get().name.clone(),)))
    }

    /// Export the data as a writable, 1-D, C-contiguous buffer of the typecode's format.
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
        let cell = this.cell()?;
        let Any::A(a) = &cell.any else {
            return Err(PyBufferError::new_err("not an array"));
        };
        let size = cell.t.size();
        // SAFETY: `view` is valid (the caller's contract). The pointer and length describe
        // the array's data inside the live mapping, which stays mapped while the export
        // exists: `view.obj` holds a reference to `slf`, `close()` refuses while `exports` is
        // non-zero, and the `Arc` keeps the cell. `shape`/`strides` point into `slf`, which
        // outlives the view and never changes them.
        unsafe {
            (*view).buf = a.data_ptr().cast();
            (*view).obj = slf.clone().into_any().into_ptr();
            (*view).len = (cell.len * size) as pyo3::ffi::Py_ssize_t;
            (*view).readonly = 0;
            (*view).itemsize = size as pyo3::ffi::Py_ssize_t;
            (*view).format = if flags & pyo3::ffi::PyBUF_FORMAT != 0 {
                format(cell.t).as_ptr().cast_mut()
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if flags & pyo3::ffi::PyBUF_ND != 0 {
                this.shape.as_ptr().cast_mut()
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if flags & pyo3::ffi::PyBUF_STRIDES == pyo3::ffi::PyBUF_STRIDES {
                this.strides.as_ptr().cast_mut()
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
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
    m.add_class::<PyValue>()?;
    m.add_class::<PyArray>()?;
    m.add_class::<PyCellLock>()?;
    fast::install(m.py())
}

/// C-API entry points for `Value.fetch_add`, `Value.value` and the cell lock's
/// `acquire`/`release`/`__enter__`/`__exit__` (see [`crate::fastcall`]): the same Rust
/// methods as pyo3's wrappers call, without pyo3's trampoline and downcast.
mod fast {
    use pyo3::ffi;
    use pyo3::prelude::*;
    use pyo3::Borrowed;

    use super::PyValue;
    use crate::fastcall::{
        guard, install_getset, install_method, install_slot, Saved, Slot, FASTCALL_KW,
    };

    type Obj = *mut ffi::PyObject;

    crate::fastcall::lock_entry_points!(lock, crate::cell::PyCellLock);

    static FETCH_ADD: Saved<ffi::PyMethodDef> = Saved::new();
    static VALUE: Saved<ffi::PyGetSetDef> = Saved::new();
    static IADD: Saved<ffi::binaryfunc> = Saved::new();

    pub(super) fn install(py: Python<'_>) -> PyResult<()> {
        install_method::<PyValue>(
            py,
            c"fetch_add",
            FASTCALL_KW,
            ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: fetch_add,
            },
            &FETCH_ADD,
        )?;
        install_getset::<PyValue>(py, c"value", get_value, set_value, &VALUE)?;
        install_slot::<PyValue>(py, Slot::InplaceAdd, iadd, &IADD)?;
        lock::install(py)
    }

    /// `v += n` (`nb_inplace_add`, which CPython calls with the left operand, a `Value`:
    /// the class is final): the increment without pyo3's slot trampoline. Returns `v`
    /// itself, as pyo3's slot for `__iadd__` does.
    unsafe extern "C" fn iadd(slf: Obj, n: Obj) -> Obj {
        // SAFETY: called by CPython with the GIL held and valid `slf` and `n`.
        unsafe {
            guard(std::ptr::null_mut(), |py| {
                let n = Borrowed::from_ptr(py, n);
                match IADD.with(py, slf, |v: &Bound<'_, PyValue>| v.get().__iadd__(py, &n)) {
                    Some(r) => r.map(|()| {
                        ffi::Py_INCREF(slf);
                        slf
                    }),
                    None => Ok(IADD.call_binary(slf, n.as_ptr())),
                }
            })
        }
    }

    crate::fastcall::fastcall_kw! {
        /// `Value.fetch_add(v)`: one positional argument, no keywords; else pyo3's.
        fn fetch_add = FETCH_ADD: PyValue, nargs 1, |py, v, args| {
            let arg = Borrowed::from_ptr(py, *args);
            v.get().fetch_add(py, &arg).map(PyObject::into_ptr)
        }
    }

    /// `Value.value` (get).
    unsafe extern "C" fn get_value(slf: Obj, _closure: *mut std::os::raw::c_void) -> Obj {
        // SAFETY: called by CPython with the GIL held and a valid `slf`.
        unsafe {
            guard(std::ptr::null_mut(), |py| {
                match VALUE.with(py, slf, |v: &Bound<'_, PyValue>| v.get().get_value(py)) {
                    Some(r) => r.map(PyObject::into_ptr),
                    None => Ok(VALUE.call_get(slf)),
                }
            })
        }
    }

    /// `Value.value = x` (a delete goes to pyo3's setter, which refuses it).
    unsafe extern "C" fn set_value(
        slf: Obj,
        value: Obj,
        _closure: *mut std::os::raw::c_void,
    ) -> std::os::raw::c_int {
        // SAFETY: called by CPython with the GIL held, a valid `slf` and `value` valid or
        // null.
        unsafe {
            guard(-1, |py| {
                if !value.is_null() {
                    let value = Borrowed::from_ptr(py, value);
                    if let Some(r) = VALUE.with(py, slf, |v: &Bound<'_, PyValue>| {
                        v.get().set_value(py, &value)
                    }) {
                        return r.map(|()| 0);
                    }
                }
                Ok(VALUE.call_set(slf, value))
            })
        }
    }
}
