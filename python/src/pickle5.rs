//! `Queue`'s pickling: `pickle.dumps(obj, 5)` / `pickle.loads(data)`, with a fast path for
//! the small objects queues mostly carry. For an `int` that fits 64 bits, `None`, `True`,
//! `False`, a `float`, and a `bytes` or `str` of fewer than 256 bytes (exact types, no
//! subclasses), [`dumps`] writes the very bytes CPython's pickler writes at protocol 5 (the
//! tests compare them), without calling into `pickle`; [`loads`] recognises exactly those
//! forms and builds the object directly. Everything else goes through `pickle.dumps` /
//! `pickle.loads` (looked up once). So the messages are ordinary pickles either way: any
//! reader can `pickle.loads` them, and a pickle from elsewhere is read by `pickle.loads`.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

/// The pickle protocol `put` writes.
pub(crate) const PROTOCOL: u8 = 5;

/// Longest fast-path pickle: PROTO (2) + FRAME (9) + SHORT_BINUNICODE (2 + 255) + MEMOIZE +
/// STOP.
pub(crate) const SHORT: usize = 2 + 9 + 2 + 255 + 2;

const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const STOP: u8 = b'.';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const SHORT_BINBYTES: u8 = b'C';
const SHORT_BINUNICODE: u8 = 0x8c;
const MEMOIZE: u8 = 0x94;

/// CPython's pickler starts a frame only for at least this many bytes of opcodes.
const FRAME_SIZE_MIN: usize = 4;

/// `pickle.dumps` and `pickle.loads`, looked up once.
struct Pickle {
    dumps: Py<PyAny>,
    loads: Py<PyAny>,
}

fn pickle(py: Python<'_>) -> PyResult<&Pickle> {
    static PICKLE: GILOnceCell<Pickle> = GILOnceCell::new();
    PICKLE.get_or_try_init(py, || {
        let m = py.import("pickle")?;
        Ok(Pickle {
            dumps: m.getattr("dumps")?.unbind(),
            loads: m.getattr("loads")?.unbind(),
        })
    })
}

/// A pickle: short ones in the caller's buffer, others as the `bytes` `pickle.dumps` returned.
pub(crate) enum Pickled<'py, 'b> {
    Short(&'b [u8]),
    Bytes(Bound<'py, PyBytes>),
}

impl Pickled<'_, '_> {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Pickled::Short(b) => b,
            Pickled::Bytes(b) => b.as_bytes(),
        }
    }
}

/// Offset of the opcodes after PROTO and a FRAME header.
const OPS: usize = 11;

/// `pickle.dumps(obj, 5)`; a short pickle is written into `buf` (a stack buffer of the
/// caller: a `put` allocates nothing, and nothing is moved or zeroed twice).
pub(crate) fn dumps<'py, 'b>(
    obj: &Bound<'py, PyAny>,
    buf: &'b mut [u8; SHORT],
) -> PyResult<Pickled<'py, 'b>> {
    let (head, op) = buf.split_at_mut(OPS);
    let op: &mut [u8; SHORT - OPS] = op.try_into().expect("SHORT - OPS bytes");
    if let Some(n) = short_opcodes(obj, op)? {
        head[0] = PROTO;
        head[1] = PROTOCOL;
        if n >= FRAME_SIZE_MIN {
            head[2] = FRAME;
            head[3..OPS].copy_from_slice(&(n as u64).to_le_bytes());
            return Ok(Pickled::Short(&buf[..OPS + n]));
        }
        // No frame: the opcodes (at most 3 bytes) follow PROTO directly.
        buf.copy_within(OPS..OPS + n, 2);
        return Ok(Pickled::Short(&buf[..2 + n]));
    }
    let py = obj.py();
    let p = pickle(py)?;
    let b = p.dumps.bind(py).call1((obj, PROTOCOL))?;
    Ok(Pickled::Bytes(b.downcast_into::<PyBytes>()?))
}

/// The opcodes (after PROTO and any FRAME, up to and with STOP) CPython writes for `obj`, if
/// it is one of the fast-path objects; their length.
fn short_opcodes(obj: &Bound<'_, PyAny>, op: &mut [u8; SHORT - OPS]) -> PyResult<Option<usize>> {
    let n = if obj.is_none() {
        op[0] = NONE;
        1
    } else if obj.is_exact_instance_of::<PyBool>() {
        op[0] = if obj.is_truthy()? { NEWTRUE } else { NEWFALSE };
        1
    } else if obj.is_exact_instance_of::<PyInt>() {
        // Not `extract`: its error for a larger int, dropped here in the fast `put`, would
        // wait in pyo3's reference pool (`crate::fastcall`).
        let Some(v) = crate::cell::exact_i64(obj) else {
            return Ok(None);
        };
        int_opcodes(v, op)
    } else if obj.is_exact_instance_of::<PyFloat>() {
        let v = obj.downcast::<PyFloat>()?.value();
        op[0] = BINFLOAT;
        op[1..9].copy_from_slice(&v.to_be_bytes());
        9
    } else if let Ok(b) = obj.downcast_exact::<PyBytes>() {
        let Some(n) = short_len(b.as_bytes(), op, SHORT_BINBYTES) else {
            return Ok(None);
        };
        n
    } else if let Ok(s) = obj.downcast_exact::<PyString>() {
        // A str with lone surrogates has no UTF-8 form: pickle writes it its own way.
        let Some(u) = utf8(s) else { return Ok(None) };
        let Some(n) = short_len(u.as_bytes(), op, SHORT_BINUNICODE) else {
            return Ok(None);
        };
        n
    } else {
        return Ok(None);
    };
    op[n] = STOP;
    Ok(Some(n + 1))
}

/// `s` as UTF-8 (CPython's cached form); `None` for a str with lone surrogates, whose error is
/// cleared at once in C: `to_str` would make a `PyErr` and drop it here, in the fast `put`,
/// where it would wait in pyo3's reference pool (`crate::fastcall`).
fn utf8<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a str> {
    let mut n: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str (a `Bound` holds it) and the GIL is held (its token); `n` is
    // a valid out-pointer.
    let p = unsafe { pyo3::ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut n) };
    if p.is_null() {
        // SAFETY: the GIL is held; this clears the UnicodeEncodeError just raised.
        unsafe { pyo3::ffi::PyErr_Clear() };
        return None;
    }
    // SAFETY: on success CPython returns the str's UTF-8 buffer of `n` bytes, valid UTF-8 and
    // cached in the object, so it lives as long as `s` (which `'a` borrows).
    Some(unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(p.cast::<u8>(), n as usize))
    })
}

/// `SHORT_BINBYTES` / `SHORT_BINUNICODE`, then MEMOIZE (protocol 4+ memoizes both); `None`
/// if 256 bytes or more.
fn short_len(data: &[u8], op: &mut [u8], code: u8) -> Option<usize> {
    let len = u8::try_from(data.len()).ok()?;
    op[0] = code;
    op[1] = len;
    op[2..2 + data.len()].copy_from_slice(data);
    op[2 + data.len()] = MEMOIZE;
    Some(3 + data.len())
}

/// An int's opcode as CPython's `save_long` picks it; its length.
fn int_opcodes(v: i64, op: &mut [u8]) -> usize {
    if (0..=0xff).contains(&v) {
        op[0] = BININT1;
        op[1] = v as u8;
        2
    } else if (0..=0xffff).contains(&v) {
        op[0] = BININT2;
        op[1..3].copy_from_slice(&(v as u16).to_le_bytes());
        3
    } else if i32::try_from(v).is_ok() {
        op[0] = BININT;
        op[1..5].copy_from_slice(&(v as i32).to_le_bytes());
        5
    } else {
        // LONG1: the shortest little-endian two's complement (`encode_long`): bit_length / 8
        // + 1 bytes, less a redundant 0xff sign byte of a negative number.
        let bits = 64
            - if v < 0 {
                (!v).leading_zeros()
            } else {
                v.leading_zeros()
            };
        let mut n = (bits / 8 + 1) as usize;
        let b = v.to_le_bytes();
        if v < 0 && n > 1 && b[n - 1] == 0xff && b[n - 2] & 0x80 != 0 {
            n -= 1;
        }
        op[0] = LONG1;
        op[1] = n as u8;
        op[2..2 + n].copy_from_slice(&b[..n]);
        2 + n
    }
}

/// `pickle.loads(data)`.
pub(crate) fn loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if let Some(obj) = loads_short(py, data)? {
        return Ok(obj);
    }
    let p = pickle(py)?;
    p.loads.bind(py).call1((PyBytes::new(py, data),))
}

/// The object of a pickle in exactly one of the forms [`dumps`] writes (at protocol 4 or 5);
/// `None` for anything else.
fn loads_short<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
    let [PROTO, 4 | 5, rest @ ..] = data else {
        return Ok(None);
    };
    let op = match rest {
        [FRAME, n0, n1, n2, n3, n4, n5, n6, n7, op @ ..] => {
            let n = u64::from_le_bytes([*n0, *n1, *n2, *n3, *n4, *n5, *n6, *n7]);
            if n != op.len() as u64 || op.len() < FRAME_SIZE_MIN {
                return Ok(None);
            }
            op
        }
        _ if rest.len() < FRAME_SIZE_MIN => rest,
        _ => return Ok(None),
    };
    let Some((&STOP, body)) = op.split_last() else {
        return Ok(None);
    };
    let obj = match body {
        [NONE] => py.None().into_bound(py),
        [NEWTRUE] => PyBool::new(py, true).to_owned().into_any(),
        [NEWFALSE] => PyBool::new(py, false).to_owned().into_any(),
        [BININT1, b] => b.into_pyobject(py)?.into_any(),
        [BININT2, b @ ..] if b.len() == 2 => u16::from_le_bytes([b[0], b[1]])
            .into_pyobject(py)?
            .into_any(),
        [BININT, b @ ..] if b.len() == 4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]])
            .into_pyobject(py)?
            .into_any(),
        [LONG1, n, b @ ..] if (1..=8).contains(n) && b.len() == *n as usize => {
            // Sign-extend the little-endian two's complement bytes.
            let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
            let mut w = [fill; 8];
            w[..b.len()].copy_from_slice(b);
            i64::from_le_bytes(w).into_pyobject(py)?.into_any()
        }
        [BINFLOAT, b @ ..] if b.len() == 8 => {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            PyFloat::new(py, f64::from_be_bytes(w)).into_any()
        }
        [SHORT_BINBYTES, n, b @ .., MEMOIZE] if b.len() == *n as usize => {
            PyBytes::new(py, b).into_any()
        }
        [SHORT_BINUNICODE, n, b @ .., MEMOIZE] if b.len() == *n as usize => {
            // Not UTF-8: pickle.loads raises its own error.
            let Ok(s) = std::str::from_utf8(b) else {
                return Ok(None);
            };
            PyString::new(py, s).into_any()
        }
        _ => return Ok(None),
    };
    Ok(Some(obj))
}
