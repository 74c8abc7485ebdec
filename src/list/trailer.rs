//! shmkit's trailer after a ShareableList's CPython area (`SPEC.md`, ShareableList section).
//!
//! A shmkit list cannot start with shmkit's 128-byte header: CPython reads its own layout
//! from byte 0. So shmkit's metadata follows the CPython area, at `T = round_up(E, 64)` where
//! `E` is the end of the CPython area computed from the list's own `N` and offsets table:
//!
//! ```text
//! T +   0  shmkit header (128 bytes, as SPEC §3, kind shareable-list; payload = the body)
//! T + 128  cpython_end  u64   E, as the creator computed it
//! T + 136  items        u64   N
//! T + 144  reserved     2 × u64 (0)
//! T + 160  writer lock  LockState (32 bytes): serialises shmkit writers
//! T + 192  entries      N × 32 bytes: seq u64, len u64, check u64, reserved u64
//! ```
//!
//! Recognition: parse the CPython geometry, compute `T`, and require shmkit's magic there, a
//! header that passes every check a shmkit header gets (against the `size - T` bytes from
//! `T` on), kind `shareable-list`, this layout's fingerprint, and `cpython_end`/`items`
//! equal to what the geometry says.

use super::cpython::{Format, Geometry, NotAList};
use crate::error::{Error, Result};
use crate::loom::AtomicU64;
use crate::segment::{
    acquire_state, fingerprint, validate_self, Kind, RawHeader, State, HEADER_SIZE, MAGIC,
    STATE_WORD,
};

/// Offset from `T` of the 8-byte header word that holds the state (offset 56) and the lifetime
/// (60): the word the READY handshake is made on, accessed whole as every trailer word is
/// (`SPEC.md` §9.4 "One size per word").
pub(crate) const STATE: u64 = 56;
const _: () = assert!(STATE == 4 * STATE_WORD as u64 && STATE % 8 == 0);

/// Opener (`SPEC.md` §9.3), once a first copy of the list found a valid trailer: load the
/// trailer's state (`state`, its word at `T +` [`STATE`]) with Acquire ([`acquire_state`]);
/// if it is READY, the creator's Release store ([`mark_ready`](crate::segment::mark_ready),
/// in `create`), `copy` the list again, and every check runs on that copy. `None` if it is not
/// READY: the first copy read READY, so a peer has overwritten the word since.
pub(crate) fn after_ready<R>(state: &AtomicU64, copy: impl FnOnce() -> R) -> Option<R> {
    (acquire_state(state) == State::READY).then(copy)
}

/// Offset of the trailer's fixed body fields from `T`.
pub(crate) const CPYTHON_END: u64 = 128; // then `items` at 136
pub(crate) const LOCK: u64 = 160;
pub(crate) const ENTRIES: u64 = 192;
/// Bytes per item entry.
pub(crate) const ENTRY: u64 = 32;
/// Entry fields.
pub(crate) const SEQ: u64 = 0;
pub(crate) const LEN: u64 = 8;
pub(crate) const CHECK: u64 = 16;
/// `len` of an entry that records no exact length (not a `str`/`bytes` written by shmkit).
pub(crate) const NO_LEN: u64 = u64::MAX;

/// The trailer layout's fingerprint.
pub(crate) const FINGERPRINT: u64 = fingerprint(
    b"shmkit shareable_list trailer v1: at round_up(E,64): header 128, cpython_end u64, items u64, 2 reserved u64, LockState 32, N x {seq u64, len u64, check u64, reserved u64}",
);

/// Where the trailer of a list with this geometry starts.
pub(crate) fn start(g: &Geometry) -> u64 {
    start_after(g.end)
}

/// Where the trailer of a list whose CPython area ends at `end` starts.
fn start_after(end: u64) -> u64 {
    end.div_ceil(64) * 64
}

/// Total trailer bytes for `n` items.
pub(crate) fn size(n: usize) -> u64 {
    ENTRIES + ENTRY * n as u64
}

/// Offset (from the object's start) of item `i`'s entry field `field`.
pub(crate) fn entry(t: u64, i: usize, field: u64) -> u64 {
    t + ENTRIES + ENTRY * i as u64 + field
}

/// A 64-bit hash of the format field, the code and the slot bytes the format covers, as a
/// shmkit writer left them. Never 0. Out of line: only values ending with a NUL byte need
/// it ([`check_for`], [`exact_len`]).
#[inline(never)]
pub(crate) fn check(fmt: &[u8; 8], code: u8, data: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| {
        let h = (h ^ w).wrapping_mul(K);
        h ^ (h >> 29)
    };
    let mut h = mix(0x5348_4d4b_4c53_5431, u64::from_le_bytes(*fmt));
    h = mix(h, u64::from(code) | (data.len() as u64) << 8);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    let mut w = [0u8; 8];
    w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h, u64::from_le_bytes(w)) | 1
}

/// The `check` word a shmkit writer stores with a `str`/`bytes` value of `len` bytes, whose
/// format field, code and slot bytes (zero-padded) are `fmt`, `code`, `data`: the [`check`]
/// hash when the value ends with a NUL byte, 0 otherwise. A value without a trailing NUL
/// reads the same with Python's semantics (NULs stripped) as with its exact length, so no
/// reader needs to tell whether its bytes are still the writer's (`exact_len`).
#[inline(always)]
pub(crate) fn check_for(fmt: &[u8; 8], code: u8, data: &[u8], len: usize) -> u64 {
    match len.checked_sub(1).and_then(|last| data.get(last)) {
        Some(0) => check(fmt, code, data),
        _ => 0,
    }
}

/// Where Python's semantics end a `str`/`bytes`: after the last byte that is not NUL.
#[inline]
pub(crate) fn trimmed_len(data: &[u8]) -> usize {
    data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

/// The exact length of a value whose copies are `field`, `code` and `data` (the bytes its
/// format covers), when it differs from Python's semantics ([`trimmed_len`]) and the
/// trailer entry's `len` and `check` say a shmkit writer left exactly these bytes; `None`
/// (read with Python's semantics, which then give the exact value or a Python writer's)
/// otherwise. The hash is computed only for a recorded length beyond the NUL-stripped one:
/// a value that ended with NUL bytes, or a Python writer's shorter value.
#[inline(always)]
pub(crate) fn exact_len(
    len: u64,
    check_word: u64,
    field: &[u8; 8],
    code: u8,
    data: &[u8],
) -> Option<usize> {
    (len != NO_LEN
        && len <= data.len() as u64
        && len as usize > trimmed_len(data)
        && check_word == check(field, code, data))
    .then_some(len as usize)
}

/// What the bytes of an object are, as a ShareableList.
#[derive(Debug)]
pub(crate) enum Classified {
    /// A valid CPython-layout list with a valid shmkit trailer at `t`.
    Shmkit {
        /// The geometry.
        geometry: Geometry,
        /// Where the trailer starts.
        t: u64,
        /// The trailer's header.
        header: RawHeader,
    },
    /// A CPython-layout list without a trailer.
    Cpython(Geometry),
    /// shmkit's magic where a trailer would be, but an open would refuse it: why.
    BadTrailer {
        /// The header as its bytes read.
        header: RawHeader,
        /// Why it is refused.
        why: String,
    },
}

/// Classify an object of `size` bytes read through `read` (see [`Geometry::parse`]) whose
/// first bytes are not shmkit's magic. `Err` when it is not a CPython 3.9–3.13 list at all
/// (3.8's layout included), or its formats or codes are not ones CPython writes.
/// `codes_by_byte`: `read` copies from a mapping that writers of this process store codes
/// into one byte at a time, so the codes are read that way too (a `pread` or a private
/// buffer reads them in chunks). `max_items`: see [`Geometry::parse`].
pub(crate) fn classify(
    name: &str,
    size: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    codes_by_byte: bool,
    max_items: u64,
) -> std::result::Result<Classified, NotAList> {
    let g = Geometry::parse(size, max_items, read)?;
    let formats = check_formats(&g, read, codes_by_byte);
    let t = start(&g);
    let found = trailer_at(name, size, g.len() as u64, g.end, read);
    let header = found.as_ref().map(|(h, _)| *h);
    if let Err(e) = formats {
        // A shmkit list appears under its name only complete (SPEC §9.3): a format field
        // of zeros beside its trailer is a peer's doing, corrupt at once, not a creator at
        // work to wait for.
        return Err(match (e, &header) {
            (NotAList::Incomplete(why), Some(_)) => NotAList::Bad(format!(
                "{why}; but it carries shmkit's trailer, and a shmkit list appears only whole"
            )),
            (e, _) => e,
        });
    }
    let Some((header, why)) = found else {
        if g.len() == 0 && size > g.end {
            // An empty list is 16 bytes (CPython 3.9–3.13 on Linux, which does not round
            // sizes) or carries shmkit's trailer: 16 zero bytes with more after them are a
            // creator that has sized its object and not yet written it.
            return Err(NotAList::Incomplete(format!(
                "it reads as an empty list (16 zero bytes) but is {size} bytes, with no shmkit \
                 trailer: its creator (CPython writes a list after sizing it) has not written it \
                 yet"
            )));
        }
        return Ok(Classified::Cpython(g));
    };
    Ok(match why {
        None => Classified::Shmkit {
            geometry: g,
            t,
            header,
        },
        Some(why) => Classified::BadTrailer { header, why },
    })
}

/// The trailer of a list of `n` items whose CPython area ends at `end`, if shmkit's magic
/// is at `T = round_up(end, 64)`: its header, and why an open would refuse it (`None`: it
/// passes every check).
fn trailer_at(
    name: &str,
    size: u64,
    n: u64,
    end: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<(RawHeader, Option<String>)> {
    let t = start_after(end);
    let mut hb = [0u8; HEADER_SIZE];
    let header = (t + HEADER_SIZE as u64 <= size && read(t, &mut hb) && hb[..8] == MAGIC)
        .then(|| RawHeader::from_prefix(&hb))
        .flatten()?;
    let mut body = [0u8; 16];
    let why = match validate(name, n, t, size, &header) {
        Err(e) => Some(e.to_string()),
        Ok(()) if !read(t + CPYTHON_END, &mut body) => Some("the trailer is cut short".to_owned()),
        Ok(()) => body_mismatch(end, n, &body),
    };
    Some((header, why))
}

/// For `probe`, after [`classify`] found `n` items, more than its limit (so no offsets table
/// was copied): the shmkit trailer of such a list, found from `n` (the value `classify` read,
/// not read again) and `off[0]`, `off[n]` alone (`E = 8(n+2) + off[n] + 9n`), with its header
/// and why an open would refuse it, as [`classify`] gives them; `None` if the object is no
/// list with a trailer there (a CPython list that large shows as raw, `SPEC.md` §9.2). The
/// offsets between and the formats are not checked.
pub(crate) fn large_list_trailer(
    name: &str,
    size: u64,
    n: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<(RawHeader, Option<String>)> {
    // `classify` checked `n <= (size - 16) / 17`: no overflow below.
    let (mut first, mut last) = ([0u8; 8], [0u8; 8]);
    if !read(8, &mut first) || !read(8 + 8 * n, &mut last) || u64::from_le_bytes(first) != 0 {
        return None;
    }
    let data = i64::from_le_bytes(last);
    let end = (8 * (n + 2))
        .checked_add(u64::try_from(data).ok().filter(|&d| d <= size)?)?
        .checked_add(9 * n)
        .filter(|&e| e <= size)?;
    trailer_at(name, size, n, end, read)
}

/// Every item's format and code must be ones CPython writes: anything else is another
/// format (a future CPython's), refused rather than misread. Read in chunks (never a copy
/// of a whole area, whose size a peer chooses).
fn check_formats(
    g: &Geometry,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    codes_by_byte: bool,
) -> std::result::Result<(), NotAList> {
    const CHUNK: usize = 512;
    let n = g.len();
    let cut = || NotAList::Bad("the format area is cut short".into());
    // The formats in chunks (the list's reader copies an 8-aligned area in whole words, each
    // field one, and an unaligned one byte by byte: as writers store fields).
    let mut formats = [0u8; 8 * CHUNK];
    let mut i = 0;
    while i < n {
        let m = (n - i).min(CHUNK);
        if !read(g.format_at(i), &mut formats[..8 * m]) {
            return Err(cut());
        }
        for (j, f) in formats[..8 * m].chunks_exact(8).enumerate() {
            let mut field = [0u8; 8];
            field.copy_from_slice(f);
            check_format(g, i + j, &field)?;
        }
        i += m;
    }
    // The codes: from a mapping a byte at a time, as writers store them (a copy of the code
    // area would load its words whole, racing a writer's byte stores with another size: SPEC
    // §9.4, one size per word); from a private copy (`pread`, a buffer) in chunks.
    let mut codes = [0u8; CHUNK];
    let mut i = 0;
    while i < n {
        let m = if codes_by_byte { 1 } else { (n - i).min(CHUNK) };
        if !read(g.code_at(i), &mut codes[..m]) {
            return Err(cut());
        }
        for (j, &code) in codes[..m].iter().enumerate() {
            if code > 3 {
                return Err(NotAList::Bad(format!(
                    "item {}: code {} is not one of CPython's back-transform codes 0–3",
                    i + j,
                    code as i8
                )));
            }
        }
        i += m;
    }
    Ok(())
}

/// Item `i`'s format field: one CPython writes, covering at most its slot.
fn check_format(g: &Geometry, i: usize, f: &[u8; 8]) -> std::result::Result<(), NotAList> {
    if *f == [0; 8] {
        // Every writer stores a format: zeros are a creator that has written N and the
        // offsets but not yet the formats (CPython writes them in that order).
        return Err(NotAList::Incomplete(format!(
            "item {i}'s format field is all zero bytes: its creator has not written it yet"
        )));
    }
    let fmt = Format::parse(f).map_err(|e| NotAList::Bad(format!("item {i}: {e}")))?;
    let (_, slot) = g.slot(i);
    if fmt.size() > slot {
        return Err(NotAList::Bad(format!(
            "item {i}: format {fmt} reads {} bytes from its {slot}-byte slot",
            fmt.size()
        )));
    }
    Ok(())
}

/// The header checks of a trailer at `t` in an object of `size` bytes.
pub(crate) fn validate(name: &str, n: u64, t: u64, object_size: u64, h: &RawHeader) -> Result<()> {
    validate_self(name, h, object_size - t)?;
    if h.kind != Kind::SHAREABLE_LIST.0 {
        return Err(Error::corrupt(
            name,
            format!(
                "the trailer at offset {t} holds kind {}, not {}",
                Kind(h.kind),
                Kind::SHAREABLE_LIST
            ),
        ));
    }
    if h.fingerprint != FINGERPRINT {
        return Err(Error::LayoutMismatch {
            name: name.to_owned(),
            expected: FINGERPRINT,
            found: h.fingerprint,
        });
    }
    let want = ENTRIES + ENTRY * n;
    if h.payload_size + HEADER_SIZE as u64 != want {
        return Err(Error::corrupt(
            name,
            format!(
                "the trailer's payload is {} bytes, expected {} for {n} items",
                h.payload_size,
                want - HEADER_SIZE as u64,
            ),
        ));
    }
    Ok(())
}

/// `cpython_end` and `items` (16 bytes at `T + 128`) against the geometry's `E` and `N`.
pub(crate) fn body_mismatch(g_end: u64, g_len: u64, body: &[u8; 16]) -> Option<String> {
    let mut w = [0u8; 8];
    w.copy_from_slice(&body[..8]);
    let end = u64::from_le_bytes(w);
    w.copy_from_slice(&body[8..]);
    let items = u64::from_le_bytes(w);
    (end != g_end || items != g_len).then(|| {
        format!(
            "the trailer records cpython_end {end} and {items} items, but the CPython area ends at {g_end} with {g_len} items"
        )
    })
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::Ordering;
    use crate::segment::{mark_ready, Lifetime};
    use loom::sync::Arc;
    use loom::thread;

    /// A list's words as the creator leaves them: a CPython-area word (`N`), the trailer's
    /// `cpython_end`, and the header word at `T +` [`STATE`] (state READY, lifetime owned).
    const N: u64 = 3;
    const END: u64 = 120;
    const READY_WORD: u64 = (1 << 32) | State::READY as u64;

    /// A fresh object: every word zero.
    #[derive(Default)]
    struct List {
        n: AtomicU64,
        end: AtomicU64,
        state: AtomicU64,
    }

    impl List {
        /// A copy of the list's words, as `classify` makes one (`Relaxed` loads).
        fn copy(&self) -> [u64; 3] {
            [&self.n, &self.end, &self.state].map(|w| w.load(Ordering::Relaxed))
        }
    }

    /// An opener: a first copy (which finds the trailer only if it read READY; in a real open
    /// any other word in it may be stale, and nothing is trusted), then `after_ready` with a
    /// second copy. The second copy is made only after an Acquire that read READY, and then
    /// holds every word as the creator wrote it.
    fn open(l: &List) {
        let first = l.copy();
        let again = after_ready(&l.state, || l.copy());
        if first[2] as u32 == State::READY {
            // Read-read coherence: the Acquire load reads READY too.
            assert!(again.is_some(), "READY read, then not");
        }
        if let Some(copy) = again {
            assert_eq!(copy, [N, END, READY_WORD], "READY acquired, a word stale");
        }
    }

    /// A creator writes the list (the CPython area, the trailer's body and its header word with
    /// the lifetime and state INITIALIZING, as `create` does with `write_at`) and marks it
    /// ready (`mark_ready` on the 8-byte word, as `create` does); an opener attaches meanwhile
    /// (`after_ready`, as `open_segment` does), another after the creator is done.
    #[test]
    fn loom_list_trailer_ready_publishes_the_list() {
        crate::queue::loom_model(|| {
            let l = Arc::new(List::default());
            let creator = {
                let l = l.clone();
                thread::spawn(move || {
                    l.n.store(N, Ordering::Relaxed);
                    l.end.store(END, Ordering::Relaxed);
                    let header = u64::from(Lifetime::Owned.word()) << 32;
                    l.state
                        .store(header | u64::from(State::INITIALIZING), Ordering::Relaxed);
                    mark_ready(&l.state);
                })
            };
            let opener = {
                let l = l.clone();
                thread::spawn(move || open(&l))
            };
            creator.join().unwrap();
            opener.join().unwrap();
            open(&l);
            // `mark_ready` kept the lifetime half of the word.
            assert_eq!(l.state.load(Ordering::Relaxed), READY_WORD);
        });
    }
}
