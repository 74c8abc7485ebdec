//! [`ShareableList`]: the handle, its options, and the per-item seqlock protocol.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use zerocopy::IntoBytes;

use super::cpython::{
    self, decode, encode, Format, Geometry, NotAList, Snapshot, CODE_BYTES, CODE_NONE, CODE_STR,
    CODE_VALUE, MAX_ITEM_LEN, MAX_SLOT,
};
use super::item::Item;
use super::seqlock::{self, Busy, Read};
use super::trailer::{self, Classified, CHECK, LEN, NO_LEN, SEQ};
use crate::error::{Error, Result};
use crate::os::deadline::{self, wait_forms, Wait};
use crate::os::{atomic_copy, liveness, process};
use crate::segment::{
    mark_ready, validate_self, Access, Kind, Lifetime, RawHeader, ReadOnly, ReadWrite, Segment,
    SegmentOptions, State, FORMAT_VERSION, HEADER_SIZE, MAGIC,
};
use crate::sync::{LockError, LockGuard, LockState, LIVENESS_SLICE};
use crate::Liveness;

/// How many times a read that decodes to nonsense (a Python writer caught half-way through an
/// update, which no shmkit protocol can see) is retried before it is reported as corrupt.
const DECODE_RETRIES: u32 = 64;

/// A fixed-length list of [`Item`]s in shared memory, in the byte layout of CPython
/// 3.9–3.13's `multiprocessing.shared_memory.ShareableList`: stock Python opens, reads and
/// writes a list shmkit created (`ShareableList(name=...)`), and shmkit opens, reads and
/// writes one Python created.
///
/// The CPython area starts at byte 0, where Python reads it; a list shmkit creates carries
/// shmkit's own metadata in a trailer after it (`SPEC.md`, ShareableList section), which
/// Python ignores and which gives shmkit processes more than CPython does:
///
/// - `str` slots are sized by UTF-8 bytes, not characters (CPython gh-88336);
/// - a shmkit reader gets back exactly what a shmkit writer stored, trailing NUL bytes
///   included (gh-96779, gh-106939); a value a Python process wrote reads with Python's
///   semantics (trailing NULs stripped);
/// - shmkit writers are serialised by a robust lock and each item has a sequence word, so a
///   shmkit reader never sees a shmkit writer's update half-done. A *Python* writer takes no
///   lock: a shmkit reader racing one can see a mix of old and new bytes, as a Python reader
///   can (a read that decodes to nonsense is retried).
///
/// A list Python created has no trailer: shmkit reads and writes it exactly as Python does,
/// with none of the guarantees above.
///
/// Like Python's, the list's length and slot sizes never change; assigning a `str`/`bytes`
/// longer than its slot fails with [`Error::SlotTooSmall`] (Python's `ValueError`), so create
/// the list with a [`reserve`](ShareableListOptions::reserve) when values will grow.
///
/// ```
/// use shmkit::list::{Item, ShareableList};
/// # let name = format!("doc-list-{}", std::process::id());
/// let list = ShareableList::options()
///     .reserve(16)
///     .unlink_on_drop(true)
///     .create(&name, &[Item::Int(1), Item::Str("hé".into()), Item::Bytes(b"a\0".to_vec())])?;
/// let other = ShareableList::open(&name)?; // e.g. in another process
/// assert_eq!(other.get(-1)?, Item::Bytes(b"a\0".to_vec())); // the trailing NUL survives
/// other.set(1, &Item::from("longer value"))?;
/// assert_eq!(list.get(1)?, Item::Str("longer value".into()));
/// assert_eq!(list.len(), 3);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShareableList<A: Access = ReadWrite> {
    seg: Segment<A>,
    geo: Geometry,
    /// Where the trailer starts, for a list with one (made by shmkit).
    trailer: Option<u64>,
    /// Item `i`'s `"<slot>s"` format field as a little-endian word (0 for a slot no such
    /// format describes): what a `str`/`bytes` write stores there, computed once from the
    /// private geometry so that `get` and `set` compare words instead of parsing digits.
    str_fields: Vec<u64>,
}

/// The format fields of the fixed-size items, as little-endian words.
const FIELD_Q: u64 = u64::from_le_bytes(*b"q\0\0\0\0\0\0\0");
const FIELD_D: u64 = u64::from_le_bytes(*b"d\0\0\0\0\0\0\0");
const FIELD_BOOL: u64 = u64::from_le_bytes(*b"xxxxxxx?");
const FIELD_NONE: u64 = u64::from_le_bytes(*b"xxxxxx?x");

/// The largest slot the fast paths of `get` and `set` copy through a stack buffer.
const FAST_SLOT: usize = 32;

/// Every item's `"<slot>s"` field word (see `ShareableList::str_fields`); an error if this
/// process cannot allocate them (N is as large as the object's size allows).
fn str_fields(name: &str, geo: &Geometry) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    if out.try_reserve_exact(geo.len()).is_err() {
        return Err(NotAList::NoMemory(format!(
            "its {} items need {} bytes for their format words, which this process cannot allocate",
            geo.len(),
            8 * geo.len() as u64
        ))
        .into_error(name));
    }
    out.extend((0..geo.len()).map(|i| {
        let slot = geo.slot(i).1;
        match Format::Bytes(slot).field() {
            Some(f) if slot <= MAX_SLOT => u64::from_le_bytes(f),
            _ => 0,
        }
    }));
    Ok(out)
}

impl<A: Access> std::fmt::Debug for ShareableList<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.seg.name())
            .field("len", &self.geo.len())
            .field("shmkit_trailer", &self.trailer.is_some())
            .finish_non_exhaustive()
    }
}

/// Builder for creating or opening a [`ShareableList`]; start with
/// [`ShareableList::options`].
#[derive(Debug)]
pub struct ShareableListOptions<A: Access = ReadWrite> {
    seg: SegmentOptions<A>,
    lifetime: Lifetime,
    reserve: usize,
    /// The most items an open accepts (`u64::MAX`: any count the object's size allows).
    max_items: u64,
    _access: PhantomData<A>,
}

impl<A: Access> Clone for ShareableListOptions<A> {
    fn clone(&self) -> Self {
        ShareableListOptions {
            seg: self.seg.clone(),
            lifetime: self.lifetime,
            reserve: self.reserve,
            max_items: self.max_items,
            _access: PhantomData,
        }
    }
}

impl ShareableList<ReadWrite> {
    /// Options with the defaults: mode 0600, [`Lifetime::Persistent`], no reserve (slots
    /// sized as CPython sizes them), no unlink on drop, read-write.
    pub fn options() -> ShareableListOptions<ReadWrite> {
        ShareableListOptions {
            seg: Segment::options().raw(true),
            lifetime: Lifetime::Persistent,
            reserve: 0,
            max_items: u64::MAX,
            _access: PhantomData,
        }
    }

    /// Create a list holding `items`, with the default options.
    pub fn create(name: &str, items: &[Item]) -> Result<Self> {
        Self::options().create(name, items)
    }

    /// Open an existing list (made by shmkit or by CPython 3.9–3.13) read-write.
    pub fn open(name: &str) -> Result<Self> {
        Self::options().open(name)
    }

    /// Open the list, or create it holding `items` (exactly one racing creator's `items`
    /// win), with the default options.
    pub fn open_or_create(name: &str, items: &[Item]) -> Result<Self> {
        Self::options().open_or_create(name, items)
    }

    wait_forms! {
        /// Assign `value` to item `index` (negative counts from the end), as Python's
        /// `sl[index] = value` does: any type may replace any other; a `str`/`bytes` must fit the
        /// item's slot ([`Error::SlotTooSmall`] names its size; an exact fit is allowed).
        ///
        /// On a list made by shmkit the update is atomic for shmkit readers; it waits for the
        /// list's writer lock while another shmkit writer holds it (without limit: `try_set`,
        /// `set_timeout`, `set_deadline` bound the wait, with [`Error::WouldBlock`] /
        /// [`Error::Timeout`]), and repairs the item a writer that died half-way left (it then
        /// reads as Python would read those bytes). On a list made by CPython it writes format,
        /// code and data in CPython's order, with no lock, as Python does (never waits).
        ///
        /// ```
        /// use shmkit::list::{Item, ShareableList};
        /// # let name = format!("doc-list-set-{}", std::process::id());
        /// let l = ShareableList::options().unlink_on_drop(true).create(&name, &[Item::from("abc")])?;
        /// assert!(matches!(l.set(0, &Item::from("123456789")), Err(shmkit::Error::SlotTooSmall { slot: 8, .. })));
        /// l.set(0, &Item::from(7))?; // a str slot takes an int
        /// assert_eq!(l.get(0)?, Item::Int(7));
        /// # Ok::<(), shmkit::Error>(())
        /// ```
        fn set, try_set, set_timeout, set_deadline (index: isize, value: &Item) -> Result<()> = set_within
    }

    /// [`set`](Self::set) and its other forms: `wait` bounds the wait for the writer lock.
    fn set_within(&self, index: isize, value: &Item, wait: Wait) -> Result<()> {
        let i = self.normalise(index)?;
        if self.set_fast(i, value) {
            return Ok(());
        }
        self.set_slow(i, value, wait)
    }

    /// The common case of [`set`](Self::set), the same protocol (`SPEC.md` §9.4) in fewer
    /// steps: a list with a trailer, the writer lock free at once (`run_if_free`: no guard),
    /// 8-aligned format field and slot, and an int, float, bool or None, or a `str`/`bytes`
    /// that fits a slot of at most [`FAST_SLOT`] bytes, built on the stack. `false`, having
    /// written nothing: take [`set_slow`](Self::set_slow), which decides everything again
    /// (errors included).
    #[inline]
    fn set_fast(&self, i: usize, value: &Item) -> bool {
        let Some(t) = self.trailer else {
            return false;
        };
        let (start, slot) = self.geo.slot(i);
        let (fmt_at, code_at) = (self.geo.format_at(i), self.geo.code_at(i));
        if fmt_at % 8 != 0 || start % 8 != 0 || !(8..=FAST_SLOT).contains(&slot) {
            return false;
        }
        let mut data = [0u8; FAST_SLOT];
        let (field, code, n, len) = match value {
            Item::Int(v) => {
                data[..8].copy_from_slice(&v.to_le_bytes());
                (FIELD_Q, CODE_VALUE, 8, NO_LEN)
            }
            Item::Float(v) => {
                data[..8].copy_from_slice(&v.to_le_bytes());
                (FIELD_D, CODE_VALUE, 8, NO_LEN)
            }
            Item::Bool(b) => {
                data[7] = u8::from(*b);
                (FIELD_BOOL, CODE_VALUE, 8, NO_LEN)
            }
            Item::None => (FIELD_NONE, CODE_NONE, 8, NO_LEN),
            Item::Str(_) | Item::Bytes(_) => {
                let (code, b) = match value {
                    Item::Str(x) => (CODE_STR, x.as_bytes()),
                    Item::Bytes(x) => (CODE_BYTES, x.as_slice()),
                    _ => return false,
                };
                let field = self.str_fields[i];
                if b.len() > slot || field == 0 {
                    return false;
                }
                data[..b.len()].copy_from_slice(b);
                (field, code, slot, b.len() as u64)
            }
        };
        let check = if len == NO_LEN {
            0
        } else {
            trailer::check_for(&field.to_le_bytes(), code, &data[..n], len as usize)
        };
        let Some(lock) = self.writer_lock(t) else {
            return false;
        };
        let (seq, len_w, check_w) = (
            self.trailer_word(t, i, SEQ),
            self.trailer_word(t, i, LEN),
            self.trailer_word(t, i, CHECK),
        );
        let base = self.seg.as_mut_ptr();
        lock.run_if_free(|| {
            let odd = seqlock::write_begin(seq);
            // SAFETY: open (or create) validated the private geometry against the mapping's
            // size, which never changes: the format field (8-aligned, checked above), the
            // code byte and the slot's `n <= slot` bytes lie inside the read-write mapping,
            // which lives as long as `self`; this process accesses them only atomically;
            // `data` is a private buffer.
            unsafe {
                #[cfg(test)]
                atomic_copy::trace::record(base.add(fmt_at as usize), 8);
                AtomicU64::from_ptr(base.add(fmt_at as usize).cast::<u64>())
                    .store(field, Ordering::Relaxed);
                #[cfg(test)]
                atomic_copy::trace::record(base.add(code_at as usize), 1);
                AtomicU8::from_ptr(base.add(code_at as usize)).store(code, Ordering::Relaxed);
                // `n` is 8 (at most the slot) or the whole slot, from an 8-aligned start: the
                // copy's own split is the slot's (`store_within`'s), without its walk.
                atomic_copy::store(data.as_ptr(), base.add(start as usize), n);
            }
            len_w.store(len, Ordering::Relaxed);
            check_w.store(check, Ordering::Relaxed);
            seqlock::write_end(seq, odd);
        })
        .is_ok()
    }

    /// The trailer's writer lock, if its magic is intact (the fast path's lookup; `lock`
    /// names what is wrong).
    #[inline]
    fn writer_lock(&self, t: u64) -> Option<&LockState> {
        // In bounds: open checked the trailer (`T + 192 + 32 N` bytes) against the mapping.
        let at = trailer::LOCK as usize + t as usize;
        debug_assert!(at + std::mem::size_of::<LockState>() <= self.seg.len());
        // SAFETY: inside the read-write mapping (above; T is a multiple of 64, so the lock is
        // 8-aligned), which lives as long as `self`.
        unsafe { LockState::from_ptr(self.seg.as_ptr().add(at).cast()) }.ok()
    }

    /// Item `i`'s trailer entry word `field` of a read-write mapping.
    #[inline]
    fn trailer_word(&self, t: u64, i: usize, field: u64) -> &AtomicU64 {
        let at = trailer::entry(t, i, field);
        debug_assert!(at % 8 == 0 && at + 8 <= self.seg.len() as u64);
        // SAFETY: 8-aligned and inside the mapping (open and create checked that the trailer's
        // entries, `T + 192 + 32 N` bytes, are the object's size; `i < N`), which is
        // read-write (this is `ShareableList<ReadWrite>`) and lives as long as `self`; every
        // process accesses trailer words only atomically.
        unsafe { &*self.seg.as_ptr().add(at as usize).cast::<AtomicU64>() }
    }

    /// [`set`](Self::set) when [`set_fast`](Self::set_fast) does not apply: a contended or
    /// repaired writer lock, a large slot, an error to report, a list without a trailer (out
    /// of line, as `get_slow`).
    #[inline(never)]
    fn set_slow(&self, i: usize, value: &Item, wait: Wait) -> Result<()> {
        let (start, slot) = self.geo.slot(i);
        let (fmt, code, bytes) = encode(value, slot).map_err(|len| Error::SlotTooSmall {
            name: self.seg.name().to_owned(),
            index: i,
            len,
            slot,
        })?;
        // encode only produces formats whose field fits (slots above MAX_SLOT are refused).
        let field = fmt.field().unwrap_or_default();
        let Some(t) = self.trailer else {
            return self.store_item(i, start, &field, code, bytes.as_slice());
        };
        let lock = self.lock(t)?;
        // try_lock first: an uncontended set reads no clock.
        let taken = match (lock.try_lock(), wait) {
            (Err(LockError::WouldBlock), Wait::Until(Some(d))) => lock.lock_deadline(d),
            (Err(LockError::WouldBlock), Wait::Until(None)) => lock.lock(),
            (other, _) => other,
        };
        let guard = match taken {
            Ok(g) => g,
            Err(LockError::OwnerDied(g)) => self.repair(t, g)?,
            Err(e) => return Err(e.without_guard().into()),
        };
        let seq = self.word(trailer::entry(t, i, SEQ))?;
        let odd = seqlock::write_begin(seq);
        self.store_item(i, start, &field, code, bytes.as_slice())?;
        let (len, check) = match value {
            Item::Str(s) => (
                s.len() as u64,
                trailer::check_for(&field, code, bytes.as_slice(), s.len()),
            ),
            Item::Bytes(b) => (
                b.len() as u64,
                trailer::check_for(&field, code, bytes.as_slice(), b.len()),
            ),
            _ => (NO_LEN, 0),
        };
        self.word(trailer::entry(t, i, LEN))?
            .store(len, Ordering::Relaxed);
        self.word(trailer::entry(t, i, CHECK))?
            .store(check, Ordering::Relaxed);
        seqlock::write_end(seq, odd);
        drop(guard);
        Ok(())
    }

    /// Write format, code, then data, CPython's order, with the list's access sizes
    /// (`SPEC.md` §9.4, one size per word): the format field through [`write_fields`], the code
    /// as one byte, the data through [`atomic_copy::store_within`] over the item's slot.
    fn store_item(
        &self,
        i: usize,
        start: u64,
        field: &[u8; 8],
        code: u8,
        data: &[u8],
    ) -> Result<()> {
        let (_, slot) = self.geo.slot(i);
        if data.len() > slot || inside(&self.seg, start, slot).is_none() {
            return Err(Error::invalid(
                self.seg.name(),
                format!("item {i}'s slot lies past the end"),
            ));
        }
        write_fields(&self.seg, self.geo.format_at(i), field)?;
        write_fields(&self.seg, self.geo.code_at(i), &[code])?;
        // SAFETY: the slot lies inside the mapping (checked above), which is read-write (this
        // is `ShareableList<ReadWrite>`) and lives as long as `self`; this process accesses
        // slot bytes only atomically, each through `load_within`/`store_within` over the
        // slot or (the fast paths) with the same accesses; `data` is private.
        unsafe {
            atomic_copy::store_within(
                self.seg.as_mut_ptr().add(start as usize),
                slot,
                0,
                data,
                atomic_copy::Merge::Exclusive,
            )
        };
        Ok(())
    }
}

/// Copy `data` into the list object at offset `at` with the accesses the list makes to
/// everything but slot bytes (see [`read_fields`]); an error if it is not all inside.
fn write_fields(seg: &Segment<ReadWrite>, at: u64, data: &[u8]) -> Result<()> {
    let Some(at) = inside(seg, at, data.len()) else {
        return Err(Error::invalid(
            seg.name(),
            format!("{} bytes at offset {at} lie past the end", data.len()),
        ));
    };
    let dst = seg.as_mut_ptr();
    if at % 8 == 0 {
        // SAFETY: inside the mapping (checked), which is read-write and lives as long as
        // `seg`; this process accesses these bytes only atomically; `data` is private.
        unsafe { atomic_copy::store(data.as_ptr(), dst.add(at), data.len()) };
    } else {
        for (k, b) in data.iter().enumerate() {
            // SAFETY: as above; one byte at a time.
            unsafe { atomic_copy::store(b, dst.add(at + k), 1) };
        }
    }
    Ok(())
}

/// Copy `buf.len()` bytes of the list object at offset `at`; `false` if they are not all
/// inside the mapping. The accesses the list makes to everything but slot bytes (`SPEC.md`
/// §9.4, one size per word): from an 8-aligned offset each whole word whole (and the bytes
/// of a final partial word one by one), from any other offset every byte by itself. So an
/// aligned format field is one 8-byte access and an unaligned one 8 byte accesses, codes are
/// bytes, and the header, offsets table and trailer words are whole, whether a copy covers
/// one field or a whole area (open reads the format area in one copy).
/// The kind of the shmkit object in `seg` (named `name`) if it starts with a valid shmkit
/// header (`SPEC.md` §3), for an open that found no list there: a queue or a lock is another
/// kind of object, not a corrupt list. A CPython list never starts with the magic: read as
/// its item count N, the magic is over 2^59, more items than any object holds.
fn shmkit_kind<A: Access>(name: &str, seg: &Segment<A>) -> Option<String> {
    let mut buf = [0u8; HEADER_SIZE];
    if !read_fields(seg, 0, &mut buf) {
        return None;
    }
    let h = RawHeader::from_prefix(&buf)?;
    (h.magic == MAGIC && validate_self(name, &h, seg.len() as u64).is_ok())
        .then(|| Kind(h.kind).to_string())
}

fn read_fields<A: Access>(seg: &Segment<A>, at: u64, buf: &mut [u8]) -> bool {
    let Some(at) = inside(seg, at, buf.len()) else {
        return false;
    };
    let src = seg.as_ptr();
    if at % 8 == 0 {
        // SAFETY: inside the mapping (checked), which lives as long as `seg` (loads only:
        // Relaxed, of at most 8 bytes, permitted on read-only mappings); this process
        // accesses these bytes only atomically; `buf` is private.
        unsafe { atomic_copy::load(src.add(at), buf.as_mut_ptr(), buf.len()) };
    } else {
        for (k, b) in buf.iter_mut().enumerate() {
            // SAFETY: as above; one byte at a time.
            unsafe { atomic_copy::load(src.add(at + k), b, 1) };
        }
    }
    true
}

/// The 8-byte word holding the state of the trailer at `t` (`trailer::STATE`), if it lies
/// inside the mapping, for [`trailer::after_ready`]'s `Relaxed` load (permitted on read-only
/// mappings): the size every access to the trailer's header words has.
fn state_word<A: Access>(seg: &Segment<A>, t: u64) -> Option<&AtomicU64> {
    let at = inside(seg, t.checked_add(trailer::STATE)?, 8)?;
    // SAFETY: inside the mapping (checked) and 8-aligned (T is a multiple of 64; the mapping
    // is page-aligned), which lives as long as `seg`; this process accesses the trailer's
    // words only atomically, and only loads are made through this reference.
    (at % 8 == 0).then(|| unsafe { &*seg.as_ptr().add(at).cast::<AtomicU64>() })
}

/// `at` as a mapping offset, if `len` bytes from it lie inside the mapping.
fn inside<A: Access>(seg: &Segment<A>, at: u64, len: usize) -> Option<usize> {
    let end = at.checked_add(len as u64)?;
    (end <= seg.len() as u64).then_some(at as usize)
}

impl ShareableList<ReadOnly> {
    /// Open an existing list read-only (`O_RDONLY`, `PROT_READ`): what `shmkit info` uses.
    pub fn open_read_only(name: &str) -> Result<Self> {
        ShareableList::options().read_only().open(name)
    }
}

impl<A: Access> ShareableList<A> {
    /// The private geometry and the trailer's offset (for the forged-byte tests).
    #[cfg(test)]
    pub(super) fn layout(&self) -> (&Geometry, Option<u64>) {
        (&self.geo, self.trailer)
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// The number of items (fixed when the list was created).
    pub fn len(&self) -> usize {
        self.geo.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.geo.len() == 0
    }

    /// Whether the list carries shmkit's trailer (made by shmkit), or is a bare CPython one.
    pub fn has_trailer(&self) -> bool {
        self.trailer.is_some()
    }

    /// The size of item `index`'s slot in bytes: the longest `str`/`bytes` it takes.
    pub fn slot_size(&self, index: isize) -> Result<usize> {
        Ok(self.geo.slot(self.normalise(index)?).1)
    }

    /// Item `index`'s `struct` format as stored now (`q`, `d`, `xxxxxxx?`, `xxxxxx?x`,
    /// `<n>s`), as Python's `ShareableList.format` shows it item by item.
    pub fn format_of(&self, index: isize) -> Result<String> {
        let i = self.normalise(index)?;
        let mut f = [0u8; 8];
        if !read_fields(&self.seg, self.geo.format_at(i), &mut f) {
            return Err(self.corrupt(i, "its format lies past the end"));
        }
        Format::parse(&f)
            .map(|f| f.to_string())
            .map_err(|e| self.corrupt(i, &e))
    }

    wait_forms! {
        /// Item `index` (negative counts from the end, as in Python).
        ///
        /// A `str`/`bytes` a shmkit process wrote comes back exactly (trailing NULs included);
        /// one a Python process wrote comes back as Python reads it (trailing NULs stripped). On
        /// a list made by shmkit this waits for another shmkit process's update of the same
        /// item to finish (without limit; a writer that died half-way is noticed and its item
        /// repaired, or read as Python would read it by a read-only handle). `try_get`,
        /// `get_timeout` and `get_deadline` bound that wait ([`Error::WouldBlock`] /
        /// [`Error::Timeout`]). A list made by CPython has no writer protocol: never waits.
        ///
        /// ```
        /// use shmkit::list::{Item, ShareableList};
        /// # let name = format!("doc-list-get-{}", std::process::id());
        /// let l = ShareableList::options().unlink_on_drop(true).create(&name, &[Item::Int(1), Item::None])?;
        /// assert_eq!(l.get(-1)?, Item::None);
        /// assert!(matches!(l.get(2), Err(shmkit::Error::IndexOutOfRange { index: 2, len: 2, .. })));
        /// # Ok::<(), shmkit::Error>(())
        /// ```
        fn get, try_get, get_timeout, get_deadline (index: isize) -> Result<Item> = get_within
    }

    /// [`get`](Self::get) and its other forms: `wait` bounds the wait for a shmkit writer's
    /// update of the item.
    fn get_within(&self, index: isize, wait: Wait) -> Result<Item> {
        let i = self.normalise(index)?;
        if let Some(v) = self.get_fast(i) {
            return Ok(v);
        }
        self.get_slow(i, wait)
    }

    /// [`get`](Self::get) when [`get_fast`](Self::get_fast) does not answer (out of line, so
    /// that the fast path's frame stays small; every get of a list CPython made comes here).
    #[inline(never)]
    fn get_slow(&self, i: usize, wait: Wait) -> Result<Item> {
        let mut tries = 0;
        loop {
            let got = match self.trailer {
                Some(t) => self.read_tracked(t, i, wait)?,
                None => self.snapshot(i).map(|s| (s, None)),
            };
            let decoded =
                got.and_then(|(s, exact)| decode(s.fmt, s.code, s.data.as_slice(), exact));
            match decoded {
                Ok(v) => return Ok(v),
                // A Python writer half-way through this item, perhaps: look again.
                Err(_) if tries < DECODE_RETRIES => {
                    tries += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(self.corrupt(i, &e)),
            }
        }
    }

    /// Every item in order (each one a [`get`](Self::get)).
    pub fn iter(&self) -> impl Iterator<Item = Result<Item>> + '_ {
        (0..self.len()).map(|i| self.get(i as isize))
    }

    /// How many items equal `value` by Python's `==` ([`Item::py_eq`]: `1 == 1.0 == True`).
    pub fn count(&self, value: &Item) -> Result<usize> {
        let mut n = 0;
        for v in self.iter() {
            n += v?.py_eq(value) as usize;
        }
        Ok(n)
    }

    /// The first index whose item equals `value` by Python's `==`, or `None` (where Python
    /// raises `ValueError`).
    pub fn index(&self, value: &Item) -> Result<Option<usize>> {
        for (i, v) in self.iter().enumerate() {
            if v?.py_eq(value) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// After a writer died holding the writer lock: every item it left mid-write (odd seq)
    /// loses its exact length and becomes stable again (it reads as Python reads its bytes).
    fn repair<'a>(&self, t: u64, mut guard: LockGuard<'a>) -> Result<LockGuard<'a>> {
        self.repair_items(t)?;
        guard.make_consistent().map_err(Error::from)?;
        Ok(guard)
    }

    /// With the writer lock held: make every item left mid-write (odd seq) stable again,
    /// without an exact length (`seqlock::repair`).
    fn repair_items(&self, t: u64) -> Result<()> {
        for i in 0..self.geo.len() {
            seqlock::repair(
                self.word(trailer::entry(t, i, SEQ))?,
                self.word(trailer::entry(t, i, LEN))?,
                self.word(trailer::entry(t, i, CHECK))?,
            );
        }
        Ok(())
    }

    /// The trailer's writer lock.
    fn lock(&self, t: u64) -> Result<&LockState> {
        let at = trailer::LOCK as usize + t as usize;
        if at + std::mem::size_of::<LockState>() > self.seg.len() {
            return Err(Error::corrupt(
                self.seg.name(),
                "the writer lock lies past the end",
            ));
        }
        if !A::WRITABLE {
            return Err(Error::invalid(
                self.seg.name(),
                "a read-only handle cannot take the writer lock",
            ));
        }
        // SAFETY: inside the mapping (checked above; T is a multiple of 64, so the lock is
        // 8-aligned), which is read-write (checked above) and lives as long as `self`.
        unsafe { LockState::from_ptr(self.seg.as_ptr().add(at).cast()) }
            .map_err(|e| Error::corrupt(self.seg.name(), format!("the trailer's writer lock: {e}")))
    }

    /// The 8-aligned word at `off` of a read-write mapping, for stores.
    fn word(&self, off: u64) -> Result<&AtomicU64> {
        if !A::WRITABLE || off % 8 != 0 || off + 8 > self.seg.len() as u64 {
            return Err(Error::invalid(
                self.seg.name(),
                format!("no writable word at offset {off}"),
            ));
        }
        // SAFETY: in bounds and 8-aligned (checked; the mapping is page-aligned); the mapping
        // is read-write (checked), lives as long as `self`, and every process accesses these
        // trailer words only atomically.
        Ok(unsafe { &*self.seg.as_ptr().add(off as usize).cast::<AtomicU64>() })
    }

    fn normalise(&self, index: isize) -> Result<usize> {
        let len = self.geo.len();
        let i = if index < 0 {
            index.checked_add(len as isize)
        } else {
            Some(index)
        };
        match i {
            Some(i) if i >= 0 && (i as usize) < len => Ok(i as usize),
            _ => Err(Error::IndexOutOfRange {
                name: self.seg.name().to_owned(),
                index: index as i64,
                len,
            }),
        }
    }

    fn corrupt(&self, i: usize, what: &str) -> Error {
        Error::corrupt(self.seg.name(), format!("item {i}: {what}"))
    }

    /// The common case of [`get`](Self::get) in a handful of loads: a list with a trailer,
    /// nobody writing the item, 8-aligned format and slot, and an int, float, bool or None, or
    /// a `str`/`bytes` in its own slot's `"<slot>s"` format (what every writer stores) of at
    /// most [`FAST_SLOT`] bytes: the format is recognised by comparing words, not parsed.
    /// `None`: take the general path (which decides everything again from scratch, so this
    /// path only has to be right when it answers).
    #[inline]
    fn get_fast(&self, i: usize) -> Option<Item> {
        let t = self.trailer?;
        let (start, slot) = self.geo.slot(i);
        let fmt_at = self.geo.format_at(i);
        if fmt_at % 8 != 0 || start % 8 != 0 || slot < 8 {
            return None;
        }
        let seq = self.seq_word(t, i);
        let s1 = seqlock::read_begin(seq)?;
        // In bounds: open validated the geometry against the mapping (format fields end
        // before the codes; a slot of at least 8 bytes ends before the formats).
        let field = self.load_word(fmt_at);
        let code = self.load_byte(self.geo.code_at(i));
        let (fmt, n) = match field {
            FIELD_Q => (Format::Int, 8),
            FIELD_D => (Format::Float, 8),
            FIELD_BOOL => (Format::Bool, 8),
            FIELD_NONE => (Format::NoneFmt, 8),
            f if f == self.str_fields[i] && slot <= FAST_SLOT && slot % 8 == 0 => {
                (Format::Bytes(slot), slot)
            }
            _ => return None,
        };
        let mut bytes = [0u8; FAST_SLOT];
        for k in 0..n / 8 {
            let w = self.load_word(start + 8 * k as u64);
            bytes[8 * k..8 * k + 8].copy_from_slice(&w.to_le_bytes());
        }
        let (len, check) = match fmt {
            Format::Bytes(_) => (
                self.load_word(trailer::entry(t, i, LEN)),
                self.load_word(trailer::entry(t, i, CHECK)),
            ),
            _ => (NO_LEN, 0),
        };
        if !seqlock::read_end(seq, s1) {
            return None;
        }
        // Decoded here rather than by `decode` (the same rules, `SPEC.md` §9.1, for the
        // formats this path accepts): returning `decode`'s `Result` through memory cost more
        // than the rest of this function. Anything unusual is left to the general path.
        let word = || {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[..8]);
            w
        };
        match (code, fmt) {
            (CODE_NONE, _) => Some(Item::None),
            (CODE_VALUE, Format::Int) => Some(Item::Int(i64::from_le_bytes(word()))),
            (CODE_VALUE, Format::Float) => Some(Item::Float(f64::from_le_bytes(word()))),
            (CODE_VALUE, Format::Bool) => Some(Item::Bool(bytes[7] != 0)),
            (CODE_VALUE, Format::NoneFmt) => Some(Item::Bool(bytes[6] != 0)),
            (CODE_STR | CODE_BYTES, Format::Bytes(_)) => {
                let data = &bytes[..n];
                let end = trailer::exact_len(len, check, &field.to_le_bytes(), code, data)
                    .unwrap_or_else(|| trailer::trimmed_len(data));
                // A fixed-size copy into a buffer of the stack buffer's size (no length-
                // dependent `memcpy` call), then cut to the value.
                let mut v = Vec::with_capacity(FAST_SLOT);
                v.extend_from_slice(&bytes);
                v.truncate(end);
                if code == CODE_BYTES {
                    return Some(Item::Bytes(v));
                }
                // ASCII, tested a word at a time over the whole buffer: every byte after the
                // value (`end..`) is 0 (NUL padding the slot, or the buffer's own zeros).
                let high = bytes.chunks_exact(8).fold(0u64, |acc, w| {
                    acc | u64::from_le_bytes(w.try_into().unwrap_or([0x80; 8]))
                });
                if high & 0x8080_8080_8080_8080 == 0 {
                    // SAFETY: every byte of `v` is below 0x80 (above): ASCII, which is UTF-8.
                    return Some(Item::Str(unsafe { String::from_utf8_unchecked(v) }));
                }
                String::from_utf8(v).ok().map(Item::Str)
            }
            _ => None,
        }
    }

    /// The byte at object offset `at`, which the caller checked lies inside the mapping: one
    /// `Relaxed` load (permitted on read-only mappings).
    #[inline]
    fn load_byte(&self, at: u64) -> u8 {
        debug_assert!(at < self.seg.len() as u64);
        #[cfg(test)]
        atomic_copy::trace::record(self.seg.as_ptr().wrapping_add(at as usize), 1);
        // SAFETY: inside the mapping (the caller's check), which lives as long as `self`;
        // every access this process makes to shared bytes is atomic.
        unsafe { AtomicU8::from_ptr(self.seg.as_ptr().add(at as usize).cast_mut()) }
            .load(Ordering::Relaxed)
    }

    /// Copies of item `i`'s format, code and slot bytes (see [`cpython::snapshot`]): the
    /// format and code through [`read_fields`], the slot bytes through
    /// [`atomic_copy::load_within`] over the whole slot, whatever part of it the format covers
    /// (the accesses every copy of the slot makes, `SPEC.md` §9.4). The read at the slot's
    /// start is the slot's: the format and code lie after every slot, so a read starting
    /// there is a format's only when the slot is empty, and then its 8 bytes do not fit it.
    fn snapshot(&self, i: usize) -> std::result::Result<Snapshot, String> {
        let (start, slot) = self.geo.slot(i);
        cpython::snapshot(&self.geo, i, &mut |at, buf| {
            if at == start && buf.len() <= slot {
                self.read_slot(start, slot, buf)
            } else {
                read_fields(&self.seg, at, buf)
            }
        })
    }

    /// Copy the first `buf.len()` bytes of the `slot`-byte slot at object offset `start`;
    /// `false` if the slot is not inside the mapping.
    fn read_slot(&self, start: u64, slot: usize, buf: &mut [u8]) -> bool {
        if buf.len() > slot || inside(&self.seg, start, slot).is_none() {
            return false;
        }
        // SAFETY: the slot lies inside the mapping (checked), which lives as long as `self`
        // (loads only: Relaxed, at most 8 bytes, permitted on read-only mappings); this
        // process accesses slot bytes only atomically; `buf` is private.
        unsafe { atomic_copy::load_within(self.seg.as_ptr().add(start as usize), slot, 0, buf) };
        true
    }

    /// The 8-aligned word at object offset `at`, which the caller checked lies inside the
    /// mapping: one `Relaxed` load (permitted on read-only mappings).
    #[inline]
    fn load_word(&self, at: u64) -> u64 {
        debug_assert!(at % 8 == 0 && at + 8 <= self.seg.len() as u64);
        #[cfg(test)]
        atomic_copy::trace::record(self.seg.as_ptr().wrapping_add(at as usize), 8);
        // SAFETY: 8-aligned and inside the mapping (the caller's check; the mapping is
        // page-aligned), which lives as long as `self`; every process accesses these words
        // atomically (or is another process, outside this process's memory model).
        unsafe { AtomicU64::from_ptr(self.seg.as_ptr().add(at as usize).cast::<u64>().cast_mut()) }
            .load(Ordering::Relaxed)
    }

    /// Item `i`'s sequence word, for [`seqlock`]'s readers (which only load it, `Relaxed`:
    /// permitted on read-only mappings) and, through [`word`](Self::word), its writers.
    #[inline]
    fn seq_word(&self, t: u64, i: usize) -> &AtomicU64 {
        let at = trailer::entry(t, i, SEQ);
        debug_assert!(at % 8 == 0 && at + 8 <= self.seg.len() as u64);
        // SAFETY: 8-aligned and inside the mapping (the trailer's entries lie inside it: open
        // and create checked `T + 192 + 32 N` is the object's size), which lives as long as
        // `self`; on a read-only mapping only `Relaxed` loads are made through it.
        unsafe { &*self.seg.as_ptr().add(at as usize).cast::<AtomicU64>() }
    }

    /// Item `i` of a list with a trailer: a snapshot no shmkit writer was changing, and the
    /// exact length if the bytes are still those a shmkit writer left (`seqlock::read`; a
    /// dead writer's half-done item, on a handle that cannot repair it, is read as Python
    /// would read it).
    #[allow(clippy::type_complexity)]
    fn read_tracked(
        &self,
        t: u64,
        i: usize,
        wait: Wait,
    ) -> Result<std::result::Result<(Snapshot, Option<usize>), String>> {
        let copy = || {
            (
                self.snapshot(i),
                self.load_word(trailer::entry(t, i, LEN)),
                self.load_word(trailer::entry(t, i, CHECK)),
            )
        };
        let mut wait = ReadWait::new(wait);
        let step = |busy| match busy {
            Busy::Writing(_) => wait.writer_gone(self, t),
            // A write came between the two loads (or a peer keeps moving the sequence): the
            // deadline holds here too, and a `try_` read gives up at once.
            Busy::Moved => wait.changed().map(|()| false),
        };
        Ok(match seqlock::read(self.seq_word(t, i), copy, step)? {
            Read::Whole((snap, len, check)) => snap.map(|s| {
                let exact = trailer::exact_len(len, check, &s.field, s.code, s.data.as_slice());
                (s, exact)
            }),
            Read::Dead((snap, _, _)) => snap.map(|s| (s, None)),
        })
    }

    /// The writer lock's owner word (`SPEC.md` §6.2: offset 8 of the `LockState`), for
    /// [`seqlock::holder_gone`], which only loads it (`Relaxed`: permitted on read-only
    /// mappings).
    #[inline]
    fn owner_word(&self, t: u64) -> &AtomicU64 {
        let at = t + trailer::LOCK + 8;
        debug_assert!(at % 8 == 0 && at + 8 <= self.seg.len() as u64);
        // SAFETY: 8-aligned (T is a multiple of 64) and inside the mapping (open and create
        // checked that the trailer, `T + 192 + 32 N` bytes, is the object's size), which lives
        // as long as `self`; every process accesses the owner word only atomically, with 8
        // bytes; on a read-only mapping only `Relaxed` loads are made through it.
        unsafe { &*self.seg.as_ptr().add(at as usize).cast::<AtomicU64>() }
    }
}

/// A reader's wait for a shmkit writer's update of an item: spin, then yield, and every
/// `LIVENESS_SLICE` ask whether the writer-lock holder is dead (a `try_` read asks once).
struct ReadWait {
    spins: u32,
    wait: Wait,
    asked_at: Option<Instant>,
}

impl ReadWait {
    fn new(wait: Wait) -> ReadWait {
        ReadWait {
            spins: 0,
            wait,
            asked_at: None,
        }
    }

    /// After a copy the sequence word says was disturbed: `WouldBlock` for a `try_` read,
    /// `Timeout` past the deadline, else look again (after a yield once the spins are used up,
    /// shared with [`writer_gone`](Self::writer_gone)'s).
    fn changed(&mut self) -> Result<()> {
        match self.wait {
            Wait::No => return Err(Error::WouldBlock),
            Wait::Until(d) if deadline::passed(d) => return Err(Error::Timeout),
            Wait::Until(_) => {}
        }
        self.spins = self.spins.saturating_add(1);
        if self.spins < 128 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        Ok(())
    }

    /// One step of the wait. `Ok(true)`: the writer is dead and this handle cannot repair
    /// (read-only), so the caller reads the item as it is; `Ok(false)`: look again;
    /// `WouldBlock` (a `try_` read) or `Timeout` when the wait is over.
    fn writer_gone<A: Access>(&mut self, l: &ShareableList<A>, t: u64) -> Result<bool> {
        let poll = matches!(self.wait, Wait::No);
        if !poll {
            self.spins = self.spins.saturating_add(1);
            if self.spins < 128 {
                std::hint::spin_loop();
                return Ok(false);
            }
            std::thread::yield_now();
        }
        let due = self
            .asked_at
            .map_or(true, |a| a.elapsed() >= LIVENESS_SLICE);
        if due {
            self.asked_at = Some(Instant::now());
            if seqlock::holder_gone(l.owner_word(t), |token| {
                liveness::liveness(token) == Liveness::Dead
            }) {
                if !A::WRITABLE {
                    return Ok(true);
                }
                // Take the writer lock from the dead holder (or, free while an item is odd, as
                // only a broken peer leaves it), and repair.
                match l.lock(t)?.try_lock() {
                    Ok(_g) => l.repair_items(t)?,
                    Err(LockError::OwnerDied(g)) => drop(l.repair(t, g)?),
                    Err(_) => {}
                }
                return Ok(false);
            }
        }
        match self.wait {
            Wait::No => Err(Error::WouldBlock),
            Wait::Until(d) if deadline::passed(d) => Err(Error::Timeout),
            Wait::Until(_) => Ok(false),
        }
    }
}

impl<A: Access> ShareableListOptions<A> {
    crate::segment::segment_settings!("list"; unlink_on_drop);

    /// How long an open waits for a foreign creator (CPython) that has created the name but
    /// not yet sized it, or sized it but not yet written the list (default 5 s; then
    /// [`Error::NotReady`]).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.seg = self.seg.open_timeout(timeout);
        self
    }

    /// Refuse to open a list of more than `n` items with [`Error::TooLarge`] (`requested`:
    /// its item count), before copying its offsets table (default: any count the object's
    /// size allows, which for a sparse object may be far more than its pages hold). For
    /// inspecting lists whose creator is not trusted: `shmkit info` opens with
    /// [`PROBE_MAX_ITEMS`](super::PROBE_MAX_ITEMS). The count is read once, so the limit
    /// holds whatever a peer writes meanwhile.
    ///
    /// ```
    /// use shmkit::list::{Item, ShareableList};
    /// # let name = format!("doc-list-max-items-{}", std::process::id());
    /// let _l = ShareableList::options().unlink_on_drop(true).create(&name, &[Item::Int(1), Item::Int(2)])?;
    /// let capped = ShareableList::options().read_only().max_items(1).open(&name);
    /// assert!(matches!(capped, Err(shmkit::Error::TooLarge { requested: 2, max: 1, .. })));
    /// assert_eq!(ShareableList::options().read_only().max_items(2).open(&name)?.len(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn max_items(mut self, n: u64) -> Self {
        self.max_items = n;
        self
    }

    /// Open an existing list: made by shmkit (validated trailer) or by CPython 3.9–3.13 (no
    /// trailer; any bytes after the CPython area are ignored). CPython 3.8's layout is
    /// refused with [`Error::KindMismatch`] naming it; anything else that is not a valid list
    /// (formats or codes CPython does not write, offsets out of order or past the end) with
    /// [`Error::Corrupt`] naming the field. Never changes the object.
    ///
    /// An object that reads as a list its creator has not written yet (CPython sizes the
    /// object, then writes it milliseconds later): 16 zero bytes (an empty list) followed by
    /// more bytes and no shmkit trailer, or a format field of zeros, is looked at again until
    /// the [`open_timeout`](Self::open_timeout), then is [`Error::NotReady`]. A real empty
    /// list (16 bytes from CPython 3.9–3.13, or shmkit's with its trailer) opens at once.
    pub fn open(&self, name: &str) -> Result<ShareableList<A>> {
        let started = Instant::now();
        let until = deadline::after(Some(self.seg.timeout()));
        let seg = self.seg.open(name)?;
        self.open_segment(name, seg, started, until)
    }

    /// [`open`](Self::open) of `name` once its segment `seg` is open (the open began at
    /// `started` and waits until `until`).
    fn open_segment(
        &self,
        name: &str,
        seg: Segment<A>,
        started: Instant,
        until: Option<Instant>,
    ) -> Result<ShareableList<A>> {
        let size = seg.len() as u64;
        let mut read = |at: u64, buf: &mut [u8]| read_fields(&seg, at, buf);
        // A creator that has sized the object but not written the list yet (`SPEC.md` §9.2):
        // look again until the open timeout, then say what was seen.
        let first = loop {
            match trailer::classify(name, size, &mut read, true, self.max_items) {
                Err(NotAList::Incomplete(detail)) => {
                    if deadline::passed(until) {
                        return Err(Error::NotReady {
                            name: name.to_owned(),
                            waited: started.elapsed(),
                            detail,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => {
                    break other.map_err(|e| match shmkit_kind(name, &seg) {
                        // Another shmkit object: say which, as every other open does.
                        Some(found) => Error::KindMismatch {
                            name: name.to_owned(),
                            expected: "ShareableList".into(),
                            found,
                        },
                        None => e.into_error(name),
                    })?;
                }
            }
        };
        let (geo, t) = match first {
            Classified::Cpython(g) => (g, None),
            Classified::BadTrailer { why, .. } => return Err(Error::corrupt(name, why)),
            Classified::Shmkit { t, .. } => {
                // Acquire: pairs with the creator's Release store of READY (`create`), made
                // before it published the list under this name; then read it all again.
                let changed = || Error::corrupt(name, "the trailer changed while it was opened");
                let word = state_word(&seg, t).ok_or_else(changed)?;
                match trailer::after_ready(word, || {
                    trailer::classify(name, size, &mut read, true, self.max_items)
                })
                .ok_or_else(changed)?
                .map_err(|e| e.into_error(name))?
                {
                    Classified::Shmkit { geometry, t, .. } => (geometry, Some(t)),
                    _ => {
                        return Err(Error::corrupt(
                            name,
                            "the trailer changed while it was opened",
                        ))
                    }
                }
            }
        };
        let list = ShareableList {
            seg,
            str_fields: str_fields(name, &geo)?,
            geo,
            trailer: t,
        };
        if let (Some(t), true) = (t, A::WRITABLE) {
            list.lock(t)?;
        }
        Ok(list)
    }
}

impl ShareableListOptions<ReadWrite> {
    /// Permission bits for a created list (default 0600). Python attaches read-write, so a
    /// Python process needs write permission to open it at all.
    pub fn mode(mut self, mode: u32) -> Self {
        self.seg = self.seg.mode(mode);
        self
    }

    /// Who may remove a created list (default [`Lifetime::Persistent`]); recorded in the
    /// trailer, where `shmkit gc` reads it.
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Make every slot at least `bytes` long (rounded up to a multiple of 8), so that longer
    /// `str`/`bytes` values fit later (default 0: slots as CPython sizes them, the value's
    /// length rounded up to the next multiple of 8, and 8 for the other types). At most
    /// 9 999 992.
    pub fn reserve(mut self, bytes: usize) -> Self {
        self.reserve = bytes;
        self
    }

    /// Attach read-only: `get`, `iter`, `count`, `index`, no `set`.
    pub fn read_only(self) -> ShareableListOptions<ReadOnly> {
        ShareableListOptions {
            seg: self.seg.read_only(),
            lifetime: self.lifetime,
            reserve: self.reserve,
            max_items: self.max_items,
            _access: PhantomData,
        }
    }

    /// Open the list `name` as [`open`](Self::open) does, or, if there is none, create it
    /// holding `items` as [`create`](Self::create) does (of racing callers, exactly one
    /// creates; the others open its list).
    pub fn open_or_create(&self, name: &str, items: &[Item]) -> Result<ShareableList> {
        // A list that is unlinked between our failed create and our open: try again, a few
        // times (a name that keeps appearing and vanishing is reported as the last error).
        let mut last = None;
        for _ in 0..16 {
            // `open`, refusing another user's object where this list would be private
            // (`SPEC.md` §4.3), as every open-or-create does.
            let started = Instant::now();
            let until = deadline::after(Some(self.seg.timeout()));
            let opened = self
                .seg
                .open_to_adopt(name)
                .and_then(|seg| self.open_segment(name, seg, started, until));
            match opened {
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
            match self.create(name, items) {
                Err(e @ Error::AlreadyExists { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(Error::NotFound {
            name: name.to_owned(),
        }))
    }

    /// Create a list holding `items`, in CPython's layout with shmkit's trailer. A
    /// `str`/`bytes` longer than [`MAX_ITEM_LEN`] (9 999 991 bytes, CPython's own cap) is
    /// [`Error::TooLarge`]. The list appears under `name` only complete.
    pub fn create(&self, name: &str, items: &[Item]) -> Result<ShareableList> {
        for v in items {
            let len = match v {
                Item::Str(s) => s.len(),
                Item::Bytes(b) => b.len(),
                _ => 0,
            };
            if len > MAX_ITEM_LEN {
                return Err(Error::TooLarge {
                    name: name.to_owned(),
                    requested: len as u64,
                    max: MAX_ITEM_LEN as u64,
                });
            }
        }
        if self.reserve > MAX_SLOT {
            return Err(Error::TooLarge {
                name: name.to_owned(),
                requested: self.reserve as u64,
                max: MAX_SLOT as u64,
            });
        }
        if let Lifetime::Invalid(x) = self.lifetime {
            return Err(Error::invalid(
                name,
                format!("lifetime {x} is not one shmkit knows"),
            ));
        }
        // Only the geometry is built in private memory; the items are written straight into
        // the new object, once `create_with` has reserved it (a list larger than memory is
        // `NoSpace` there, never a private copy of its whole area).
        let slots: Vec<usize> = items
            .iter()
            .map(|v| cpython::slot_for(v, self.reserve))
            .collect();
        let geo = Geometry::for_slots(&slots);
        let t = trailer::start(&geo);
        let total = t + trailer::size(items.len());
        let token = liveness::current()
            .map_err(|e| Error::from_io(name, "get this process's liveness token to create", e))?;
        let header = RawHeader {
            magic: MAGIC,
            version: FORMAT_VERSION,
            kind: Kind::SHAREABLE_LIST.0,
            fingerprint: trailer::FINGERPRINT,
            header_size: HEADER_SIZE as u64,
            payload_size: trailer::size(items.len()) - HEADER_SIZE as u64,
            creator_token: token,
            creator_pid: process::current_pid(),
            lifetime: self.lifetime.word(),
            creator_pidns: process::pid_namespace(),
            created_unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            state: State::INITIALIZING,
            ..RawHeader::default()
        };
        let seg = self.seg.create_with(name, total, |s| {
            s.write_at(0, &geo.head_bytes())?;
            s.write_at(t, header.as_bytes())?;
            let mut body = Vec::with_capacity(16);
            body.extend_from_slice(&geo.end.to_le_bytes());
            body.extend_from_slice(&(items.len() as u64).to_le_bytes());
            s.write_at(t + trailer::CPYTHON_END, &body)?;
            for (i, v) in items.iter().enumerate() {
                let (start, slot) = geo.slot(i);
                // The slot was sized for the item (`slot_for`, lengths checked above).
                let (fmt, code, data) = encode(v, slot).map_err(|len| Error::SlotTooSmall {
                    name: name.to_owned(),
                    index: i,
                    len,
                    slot,
                })?;
                let field = fmt.field().unwrap_or_default();
                s.write_at(start, data.as_slice())?;
                s.write_at(geo.format_at(i), &field)?;
                s.write_at(geo.code_at(i), &[code])?;
                let len = match v {
                    Item::Str(x) => x.len() as u64,
                    Item::Bytes(x) => x.len() as u64,
                    _ => NO_LEN,
                };
                s.write_at(trailer::entry(t, i, LEN), &len.to_le_bytes())?;
                if len != NO_LEN {
                    let check = trailer::check_for(&field, code, data.as_slice(), len as usize);
                    s.write_at(trailer::entry(t, i, CHECK), &check.to_le_bytes())?;
                }
            }
            let at = (t + trailer::LOCK) as usize;
            // SAFETY: inside the zeroed, unpublished mapping we are building (total covers
            // the trailer), 8-aligned (T is a multiple of 64), reachable by nobody else yet.
            unsafe { LockState::init(s.as_mut_ptr().add(at).cast()) };
            // READY with Release (`mark_ready`): pairs with the Acquire load of the state in
            // `open_segment` (`trailer::after_ready`): an opener sees every byte written
            // above. On the 8-byte word that holds the state, not a `u32` atomic: every access
            // to the trailer keeps one size per word.
            mark_ready(s.atomic_u64(t + trailer::STATE)?);
            Ok(())
        })?;
        Ok(ShareableList {
            seg,
            str_fields: str_fields(name, &geo)?,
            geo,
            trailer: Some(t),
        })
    }
}

#[cfg(all(test, not(loom)))]
mod review_tests {
    use super::*;
    use crate::os::atomic_copy::trace;

    /// Review finding (pre-existing): opening a list checks every item's code
    /// (`trailer::check_formats`) by reading the format and code areas in one copy, which
    /// loads the code area in 8-byte words, while a writer through another handle of the
    /// process stores an item's code with a 1-byte atomic (`set`): a racing load and store of
    /// different sizes on the same bytes, the mixed-size race SPEC §10.4 and `atomic_copy`'s
    /// docs rule out. The code area must be read byte by byte, as the writers store it.
    #[test]
    fn list_open_reads_the_code_area_by_bytes() {
        let name = format!("review6-list-codes-{}", std::process::id());
        let items: Vec<Item> = (0..16).map(Item::Int).collect();
        let a = ShareableList::options()
            .unlink_on_drop(true)
            .create(&name, &items)
            .unwrap();
        trace::start();
        let b = ShareableList::open(&name);
        let log = trace::stop();
        let b = b.unwrap();
        let codes = b.seg.as_ptr() as usize + b.geo.codes as usize;
        let n = b.geo.len();
        let whole: Vec<usize> = log
            .iter()
            .filter(|&&(at, size)| size > 1 && at < codes + n && at + size > codes)
            .map(|&(at, _)| at)
            .collect();
        b.set(3, &Item::None).unwrap();
        assert_eq!(a.get(3).unwrap(), Item::None);
        drop((a, b));
        assert!(
            whole.is_empty(),
            "open loaded the code area in words ({} accesses)",
            whole.len()
        );
    }
}

#[cfg(all(test, not(loom)))]
mod size_tests {
    use super::*;
    use crate::os::atomic_copy::trace;
    use std::collections::{BTreeMap, BTreeSet};

    /// For every 8-byte word of `base..base + len` (addresses) that `log` touches, the access
    /// sizes used: each must be one size (SPEC §9.4, one size per word).
    fn sizes_per_word(
        log: &[(usize, usize)],
        base: usize,
        len: usize,
    ) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut sizes = BTreeMap::<usize, BTreeSet<usize>>::new();
        for &(at, size) in log {
            if (base..base + len).contains(&at) {
                sizes.entry((at - base) & !7).or_default().insert(size);
            }
        }
        sizes
    }

    fn assert_one_size(sizes: &BTreeMap<usize, BTreeSet<usize>>) {
        for (word, s) in sizes {
            assert_eq!(
                s.len(),
                1,
                "word at object offset {word} accessed with sizes {s:?}"
            );
        }
    }

    /// Audit finding: a reader copies the slot bytes its format covers, a writer the whole
    /// slot, each split by its own ends (`atomic_copy`): with a format `"13s"` in a 16-byte
    /// slot (one CPython's rules accept, §9.2 step 5, which a foreign writer may leave), a
    /// `get` loaded bytes 8..13 one by one while a `set` of another thread stores that word
    /// whole: racing atomic accesses of different sizes to the same bytes, undefined in
    /// Rust's model. Every copy of a slot now accesses each word lying wholly inside the slot
    /// whole.
    #[test]
    fn list_item_copies_access_each_word_with_one_size() {
        let name = format!("list-sizes-fmt-{}", std::process::id());
        let l = ShareableList::options()
            .reserve(16)
            .unlink_on_drop(true)
            .create(&name, &[Item::from("abc"), Item::Int(5)])
            .unwrap();
        // A foreign writer's format: 13 of the slot's 16 bytes.
        l.seg
            .write_at(l.geo.format_at(0), b"13s\0\0\0\0\0")
            .unwrap();
        trace::start();
        assert_eq!(l.get(0).unwrap(), Item::from("abc"));
        l.set(0, &Item::from("hello, world")).unwrap();
        assert_eq!(l.get(0).unwrap(), Item::from("hello, world"));
        l.set(0, &Item::Int(-1)).unwrap();
        assert_eq!(l.get(0).unwrap(), Item::Int(-1));
        l.set(1, &Item::from("sixteen bytes!!!")).unwrap();
        assert_eq!(l.get(1).unwrap(), Item::from("sixteen bytes!!!"));
        assert_eq!(l.format_of(1).unwrap(), "16s");
        let log = trace::stop();
        let sizes = sizes_per_word(&log, l.seg.as_ptr() as usize, l.geo.end as usize);
        assert_one_size(&sizes);
        assert!(sizes.len() >= 6, "{sizes:?}"); // two slots of two words, formats, codes
    }

    /// Audit finding: a list whose slots and format area are not 8-aligned (no CPython or
    /// shmkit creator makes one, but §9.2 accepts it) was copied with whatever accesses each
    /// copy's own ends gave: an int written into a slot starting at offset 43 was all byte
    /// stores, while a `str` of that slot loaded the word at 48 whole. Every word is now
    /// accessed whole if it lies wholly inside one slot or is one aligned format field, and
    /// by bytes otherwise, by every path: open, get, set, format_of.
    #[test]
    fn unaligned_list_items_access_each_word_with_one_size() {
        let name = format!("list-sizes-unaligned-{}", std::process::id());
        // N = 3, slots of 3, 13 and 5 bytes: data at 40, item 1 at 43, formats at 61
        // (unaligned), codes at 85, end 88.
        let mut b = vec![0u8; 88];
        b[..8].copy_from_slice(&3i64.to_le_bytes());
        for (k, o) in [0i64, 3, 16, 21].iter().enumerate() {
            b[8 + 8 * k..16 + 8 * k].copy_from_slice(&o.to_le_bytes());
        }
        b[40..42].copy_from_slice(b"ab");
        b[43..48].copy_from_slice(b"hello");
        b[56..59].copy_from_slice(b"xyz");
        b[61..63].copy_from_slice(b"3s");
        b[69..72].copy_from_slice(b"13s");
        b[77..79].copy_from_slice(b"5s");
        b[85..88].copy_from_slice(&[CODE_BYTES, CODE_STR, CODE_BYTES]);
        let raw = Segment::options()
            .raw(true)
            .unlink_on_drop(true)
            .create(&name, 88)
            .unwrap();
        raw.write_at(0, &b).unwrap();
        trace::start();
        let l = ShareableList::open(&name).unwrap();
        assert_eq!(l.get(1).unwrap(), Item::from("hello"));
        l.set(1, &Item::Int(7)).unwrap();
        assert_eq!(l.get(1).unwrap(), Item::Int(7));
        assert_eq!(l.format_of(1).unwrap(), "q");
        l.set(1, &Item::from("hello, world!")).unwrap();
        assert_eq!(l.get(1).unwrap(), Item::from("hello, world!"));
        l.set(0, &Item::from(&b"a"[..])).unwrap();
        l.set(2, &Item::from("xy")).unwrap();
        let all: Vec<Item> = l.iter().map(|v| v.unwrap()).collect();
        assert_eq!(format!("{}", l.format_of(2).unwrap()), "5s");
        let log = trace::stop();
        assert_eq!(
            all,
            [
                Item::from(&b"a"[..]),
                Item::from("hello, world!"),
                Item::from("xy")
            ]
        );
        let sizes = sizes_per_word(&log, l.seg.as_ptr() as usize, 88);
        assert_eq!(sizes.len(), 11, "{sizes:?}");
        assert_one_size(&sizes);
        drop(raw);
    }
}
