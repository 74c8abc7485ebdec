//! `ShareableList`: a fixed-length list of int/float/bool/None/str/bytes in CPython's own
//! byte layout, so stock Python 3.9–3.13 and shmkit open each other's lists
//! (`SPEC.md`, ShareableList section).
//!
//! - `cpython`: the exact CPython layout (geometry, formats, codes, item codec);
//! - `trailer`: shmkit's metadata after the CPython area, and how a list is recognised;
//! - `list`: the handle, its options, and the per-item seqlock.

mod cpython;
mod item;
#[allow(clippy::module_inception)]
mod list;
mod trailer;

pub use cpython::MAX_ITEM_LEN;
pub use item::Item;
pub use list::{ShareableList, ShareableListOptions, DEFAULT_TIMEOUT};

pub(crate) use trailer::{classify, Classified};

/// Decode `bytes` as a whole ShareableList object, as `open` and `get` would (the fuzz
/// target's entry point): the items, or the first error. Never panics, whatever the bytes.
#[doc(hidden)]
pub fn decode_object(bytes: &[u8]) -> std::result::Result<Vec<Item>, String> {
    let mut read = |at: u64, buf: &mut [u8]| {
        let Ok(at) = usize::try_from(at) else {
            return false;
        };
        match at.checked_add(buf.len()).and_then(|end| bytes.get(at..end)) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    };
    let size = bytes.len() as u64;
    let (geo, exact) =
        match classify("fuzz", size, &mut read).map_err(|e| e.into_error("fuzz").to_string())? {
            Classified::Cpython(g) => (g, None),
            Classified::BadTrailer { why, .. } => return Err(why),
            Classified::Shmkit { geometry, t, .. } => (geometry, Some(t)),
        };
    let mut out = Vec::with_capacity(geo.len());
    for i in 0..geo.len() {
        let mut field = [0u8; 8];
        let mut code = [0u8];
        if !read(geo.format_at(i), &mut field) || !read(geo.code_at(i), &mut code) {
            return Err(format!("item {i}: cut short"));
        }
        let fmt = cpython::Format::parse(&field)?;
        let (start, slot) = geo.slot(i);
        if fmt.size() > slot {
            return Err(format!("item {i}: format too long for its slot"));
        }
        let mut data = vec![0u8; fmt.size()];
        if !read(start, &mut data) {
            return Err(format!("item {i}: slot cut short"));
        }
        let len = exact.and_then(|t| {
            let mut w = [0u8; 16];
            read(trailer::entry(t, i, trailer::LEN), &mut w).then(|| {
                let l = u64::from_le_bytes(w[..8].try_into().unwrap_or_default());
                let c = u64::from_le_bytes(w[8..].try_into().unwrap_or_default());
                (l != trailer::NO_LEN
                    && l <= data.len() as u64
                    && c == trailer::check(&field, code[0], &data))
                .then_some(l as usize)
            })?
        });
        out.push(cpython::decode(fmt, code[0], &data, len)?);
    }
    Ok(out)
}

/// Build the bytes of a CPython-layout list of `items` (no trailer), as CPython 3.9–3.13
/// builds it, except that `str` slots are sized by UTF-8 bytes (used to generate fuzz seeds).
#[doc(hidden)]
pub fn encode_cpython_object(items: &[Item]) -> Vec<u8> {
    cpython::build(items, 0).1
}
