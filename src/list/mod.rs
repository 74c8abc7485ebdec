//! `ShareableList`: a fixed-length list of int/float/bool/None/str/bytes in CPython's own
//! byte layout, so stock Python 3.9–3.13 and shmkit open each other's lists
//! (`SPEC.md`, ShareableList section).
//!
//! - `cpython`: the exact CPython layout (geometry, formats, codes, item codec);
//! - `trailer`: shmkit's metadata after the CPython area, and how a list is recognised;
//! - `seqlock`: the per-item sequence word (loom-checked);
//! - `list`: the handle and its options.

mod cpython;
#[cfg(all(test, not(loom)))]
mod forged_tests;
mod item;
#[cfg(not(loom))]
#[allow(clippy::module_inception)]
mod list;
// Under loom only its model uses it.
#[cfg_attr(loom, allow(dead_code))]
mod seqlock;
// Under loom, `probe` uses it but not the handle's offsets.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod trailer;

pub use cpython::MAX_ITEM_LEN;
pub use item::Item;
#[cfg(not(loom))]
pub use list::{ShareableList, ShareableListOptions};

pub(crate) use cpython::NotAList;
pub(crate) use trailer::{classify, Classified};

/// The most items `probe` (`ls`, `info`, `gc`) reads the offsets table of, in an object it
/// classifies as a list without being asked to open one, and that `shmkit info` opens
/// ([`ShareableListOptions::max_items`]); an open takes any count the object's size allows
/// by default. A shmkit list of more items is still recognised by `probe`, from its trailer
/// alone (`SPEC.md` §9.2).
pub const PROBE_MAX_ITEMS: u64 = 1 << 20;

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
    let (geo, exact) = match classify("fuzz", size, &mut read, false, u64::MAX)
        .map_err(|e| e.into_error("fuzz").to_string())?
    {
        Classified::Cpython(g) => (g, None),
        Classified::BadTrailer { why, .. } => return Err(why),
        Classified::Shmkit { geometry, t, .. } => (geometry, Some(t)),
    };
    (0..geo.len())
        .map(|i| {
            let snap =
                cpython::snapshot(&geo, i, &mut read).map_err(|e| format!("item {i}: {e}"))?;
            let exact = exact.and_then(|t| {
                let (mut len, mut check) = ([0u8; 8], [0u8; 8]);
                (read(trailer::entry(t, i, trailer::LEN), &mut len)
                    && read(trailer::entry(t, i, trailer::CHECK), &mut check))
                .then(|| {
                    trailer::exact_len(
                        u64::from_le_bytes(len),
                        u64::from_le_bytes(check),
                        &snap.field,
                        snap.code,
                        snap.data.as_slice(),
                    )
                })?
            });
            cpython::decode(snap.fmt, snap.code, snap.data.as_slice(), exact)
                .map_err(|e| format!("item {i}: {e}"))
        })
        .collect()
}

/// Build the bytes of a CPython-layout list of `items` (no trailer), as CPython 3.9–3.13
/// builds it, except that `str` slots are sized by UTF-8 bytes (used to generate fuzz seeds).
#[doc(hidden)]
pub fn encode_cpython_object(items: &[Item]) -> Vec<u8> {
    cpython::build(items, 0).1
}
