//! [`Segment`]: a named, sized, validated mapping.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::header::{
    self, HeaderInfo, Lifetime, RawHeader, State, FORMAT_VERSION, HEADER_SIZE, MAGIC,
};
use super::kind::{fingerprint, Kind};
use super::name::validate_name;
use crate::error::{Error, Result};
use crate::os::atomic_copy;
use crate::os::map::Mapping;
use crate::os::shm::{self, OpenMode};
use crate::os::{deadline, liveness, process};

/// How long `open_or_create` keeps racing for a name, and a raw `open` waits for a foreign
/// creator to size its object, by default.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest payload accepted: `ftruncate` takes a signed 64-bit length.
const MAX_SIZE: u64 = i64::MAX as u64 - HEADER_SIZE as u64;

/// Fingerprint of a plain-bytes segment: the payload has no structure.
const BYTES_FINGERPRINT: u64 = fingerprint(b"shmkit bytes v1");

mod sealed {
    pub trait Sealed {}
}

/// The atomic integer types [`Segment`] hands out.
trait AtomicWord {}
impl AtomicWord for AtomicU32 {}
impl AtomicWord for AtomicU64 {}

/// Access mode of a [`Segment`]: [`ReadWrite`] or [`ReadOnly`].
pub trait Access: sealed::Sealed + Send + Sync + 'static {
    /// Whether the mapping is writable.
    const WRITABLE: bool;
}

/// Marker: the mapping is `PROT_READ|PROT_WRITE`.
#[derive(Debug)]
pub enum ReadWrite {}
/// Marker: the mapping is `PROT_READ` only, and the API offers no way to write.
#[derive(Debug)]
pub enum ReadOnly {}
impl sealed::Sealed for ReadWrite {}
impl sealed::Sealed for ReadOnly {}
impl Access for ReadWrite {
    const WRITABLE: bool = true;
}
impl Access for ReadOnly {
    const WRITABLE: bool = false;
}

/// A named POSIX shared-memory segment mapped into this process.
///
/// A shmkit segment starts with a 128-byte header (magic, version, kind, layout fingerprint,
/// sizes, creator, state; `SPEC.md` §3) and its payload follows at offset 128. A *raw* segment
/// has no header: its payload is the whole object, as CPython's `SharedMemory` sees it.
///
/// # Shared memory is shared
///
/// Any process that can open the name can write any byte at any time, including the header.
/// `Segment` therefore never hands out `&[u8]` or `&mut [u8]` over the payload: it copies
/// bytes in and out with atomic accesses ([`read_at`](Self::read_at),
/// [`write_at`](Self::write_at): never a data race, whatever another process does at the same
/// time), offers atomics ([`atomic_u64`](Self::atomic_u64) on read-write segments only,
/// [`load_u64`](Self::load_u64)/[`load_u32`](Self::load_u32) on any), and raw pointers for code
/// that documents its own protocol. Every safe accessor accesses the payload in whole 8-byte
/// words (the bytes of a final partial word one by one), so that no two of them race with
/// accesses of different sizes to the same bytes, which Rust's memory model leaves undefined;
/// the `u32` atomics ([`atomic_u32`](Self::atomic_u32)), which cannot keep that rule, are
/// `unsafe`. The header is validated once at open; what a hostile
/// writer changes later is not re-checked. A process that *truncates* the object under a live
/// mapping makes accesses past the new end fault with `SIGBUS`; shmkit cannot prevent that, so
/// do not share a name with processes you do not trust to leave its size alone.
///
/// # Creation, lifetime, memory
///
/// A segment is built under a temporary name and appears under its name only complete
/// (`SPEC.md` §4.1), so a creator that dies part-way leaves the name free. Its memory is
/// reserved at creation ([`Error::NoSpace`] if `/dev/shm` lacks it), unless it was created
/// [`sparse`](SegmentOptions::sparse). It lives until unlinked, or, if created
/// [`Lifetime::Owned`](super::Lifetime::Owned), until `shmkit gc` finds its creator dead.
///
/// ```
/// use shmkit::Segment;
/// # let name = format!("doc-seg-{}", std::process::id());
/// let a = Segment::options().unlink_on_drop(true).create(&name, 64)?;
/// a.atomic_u64(0)?.store(7, std::sync::atomic::Ordering::Release);
/// let b = Segment::options().read_only().open(&name)?;
/// assert_eq!(b.load_u64(0, std::sync::atomic::Ordering::Acquire)?, 7);
/// assert_eq!(b.header().unwrap().creator_pid, std::process::id());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Segment<A: Access = ReadWrite> {
    name: String,
    map: Mapping,
    header: Option<HeaderInfo>,
    payload_offset: usize,
    payload_len: usize,
    /// Who asked for the unlink on drop (`liveness::mark`; 0: nobody): only that process
    /// unlinks, so that a `fork()`ed child dropping its inherited copy leaves the name alone.
    unlink_by: u64,
    /// `(st_dev, st_ino)` at open, so that drop unlinks only the object it mapped.
    identity: (u64, u64),
    _access: PhantomData<A>,
}

impl<A: Access> std::fmt::Debug for Segment<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("len", &self.payload_len)
            .field("writable", &A::WRITABLE)
            .field("raw", &self.header.is_none())
            .field("unlink_on_drop", &self.unlinks_on_drop())
            .finish()
    }
}

/// Builder for creating or opening a [`Segment`]; start with [`Segment::options`].
#[derive(Debug)]
pub struct SegmentOptions<A: Access = ReadWrite> {
    cfg: Config,
    _access: PhantomData<A>,
}

/// The settings of a [`SegmentOptions`], independent of its access mode.
#[derive(Debug, Clone, Copy)]
struct Config {
    mode: u32,
    unlink_on_drop: bool,
    timeout: Duration,
    kind: Kind,
    fingerprint: u64,
    raw: bool,
    sparse: bool,
    lifetime: Lifetime,
}

impl Config {
    /// The unlink-on-drop mark of a handle made now (`Segment::unlink_by`).
    fn unlink_by(&self) -> u64 {
        if self.unlink_on_drop {
            liveness::mark()
        } else {
            0
        }
    }
}

impl<A: Access> Clone for SegmentOptions<A> {
    fn clone(&self) -> Self {
        SegmentOptions {
            cfg: self.cfg,
            _access: PhantomData,
        }
    }
}

impl Default for SegmentOptions<ReadWrite> {
    fn default() -> Self {
        let cfg = Config {
            mode: 0o600,
            unlink_on_drop: false,
            timeout: DEFAULT_OPEN_TIMEOUT,
            kind: Kind::SEGMENT,
            fingerprint: BYTES_FINGERPRINT,
            raw: false,
            sparse: false,
            lifetime: Lifetime::Persistent,
        };
        SegmentOptions {
            cfg,
            _access: PhantomData,
        }
    }
}

impl Segment<ReadWrite> {
    /// Options with the defaults: mode 0600, no unlink on drop, a plain-bytes shmkit segment,
    /// [`Lifetime::Persistent`], memory reserved at creation (not sparse), a 5 s open timeout,
    /// read-write.
    pub fn options() -> SegmentOptions<ReadWrite> {
        SegmentOptions::default()
    }

    /// Create a new segment with a `size`-byte zeroed payload; fails with
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, size: u64) -> Result<Self> {
        Self::options().create(name, size)
    }

    /// Open an existing plain-bytes segment read-write.
    pub fn open(name: &str) -> Result<Self> {
        Self::options().open(name)
    }

    /// Open the segment if it exists, or create it. Race-free between unrelated processes:
    /// exactly one process's object is published under the name, and every caller gets it.
    pub fn open_or_create(name: &str, size: u64) -> Result<Self> {
        Self::options().open_or_create(name, size)
    }

    /// Remove the name. Processes that have it mapped keep their mapping; new opens fail.
    pub fn unlink(name: &str) -> Result<()> {
        validate_name(name)?;
        shm::unlink(name).map_err(|e| Error::from_io(name, "unlink", e))
    }

    /// Copy `data` into the payload at `offset`.
    ///
    /// The copy is made of `Relaxed` atomic accesses with one size per word (see
    /// [`read_at`](Segment::read_at) for the rule), so it is not a data race when other
    /// threads or processes read or write the same bytes meanwhile. Part of a word is
    /// written by a compare-exchange of the whole word that keeps its other bytes, so
    /// threads writing different bytes of one word at the same time all keep theirs (a
    /// writer that keeps changing the word cannot stall it: after 64 failed attempts the part
    /// is cleared and set by two read-modify-writes, and a reader may see it half written in
    /// between, a racing write of the same bytes the bitwise OR of both). It orders nothing: to publish the bytes, follow it with a `Release` store (or a
    /// `fence(Release)` and a store) that the reader pairs with an `Acquire` load.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len())?;
        // SAFETY: check_range proved [offset, offset + len) lies inside the payload, which
        // is 8-aligned (`HEADER_SIZE` = 128 bytes into a page-aligned mapping, or at its start), writable
        // (`ReadWrite`) and lives as long as `self`; the source is a distinct local slice;
        // every access this safe API makes to the payload is atomic with one size per word
        // (`atomic_u32`, the exception, is `unsafe` and its caller keeps the rule).
        unsafe {
            atomic_copy::store_within(
                self.as_mut_ptr(),
                self.payload_len,
                offset as usize,
                data,
                atomic_copy::Merge::Shared,
            )
        };
        Ok(())
    }

    /// The 8-byte-aligned `u64` at payload `offset`, as an atomic shared with every process
    /// that maps the segment.
    ///
    /// Only read-write segments hand out atomics: through a `&AtomicU64` any operation is
    /// possible, and a store, `fetch_add` or even a failing `compare_exchange` on a
    /// `PROT_READ` mapping faults. A read-only segment has [`load_u64`](Segment::load_u64)
    /// instead:
    ///
    /// ```compile_fail
    /// let r = shmkit::Segment::open_read_only("some-name").unwrap();
    /// r.atomic_u64(0).unwrap().fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    /// // error: no method `atomic_u64` on `Segment<ReadOnly>`
    /// ```
    #[inline]
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        self.atomic_at(offset)
    }

    /// The 4-byte-aligned `u32` at payload `offset`, as a shared atomic (read-write segments
    /// only, as [`atomic_u64`](Segment::atomic_u64)): for 32-bit protocols such as futex
    /// words.
    ///
    /// # Safety
    ///
    /// A `u32` is half of an 8-byte word, and every other accessor of this handle
    /// ([`read_at`](Segment::read_at), [`write_at`](Segment::write_at),
    /// [`atomic_u64`](Segment::atomic_u64), [`load_u64`](Segment::load_u64),
    /// [`load_u32`](Segment::load_u32)) accesses that word whole. Racing atomic accesses of
    /// different sizes to the same bytes are undefined behaviour in Rust's memory model
    /// (`std::sync::atomic`, "Memory model for atomic accesses") unless both are loads. So,
    /// while the returned atomic is used, no access this process makes through this mapping
    /// (this handle's other accessors, or pointers from [`as_ptr`](Segment::as_ptr) /
    /// [`as_mut_ptr`](Segment::as_mut_ptr)) to any byte of the 8-byte word that holds it may
    /// race with an access through the atomic, unless both are loads. Another `atomic_u32`
    /// on the word's other half is fine (disjoint bytes). Other processes, and other handles
    /// of the same object (each maps it on its own), are not concerned. To read the value
    /// while it is written, use the atomic's own `load`, not [`load_u32`](Segment::load_u32)
    /// (which loads the whole word).
    ///
    /// ```
    /// # let name = format!("doc-seg-u32-{}", std::process::id());
    /// let seg = shmkit::Segment::options().unlink_on_drop(true).create(&name, 64)?;
    /// // SAFETY: bytes 8..16 of this handle are accessed only as the two u32s at 8 and 12.
    /// let flag = unsafe { seg.atomic_u32(8)? };
    /// flag.store(1, std::sync::atomic::Ordering::Release);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    ///
    /// ```compile_fail
    /// let r = shmkit::Segment::open_read_only("some-name").unwrap();
    /// unsafe { r.atomic_u32(0) }.unwrap().store(1, std::sync::atomic::Ordering::Relaxed);
    /// // error: no method `atomic_u32` on `Segment<ReadOnly>`
    /// ```
    #[inline]
    pub unsafe fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
        self.atomic_at(offset)
    }

    /// Pointer to the first payload byte, for code that implements its own protocol over the
    /// bytes (with atomics, or under a lock). Valid for [`len`](Self::len) bytes while `self`
    /// lives.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        // SAFETY: payload_offset <= mapping length, checked at open.
        unsafe { self.map.ptr().add(self.payload_offset) }
    }
}

impl Segment<ReadOnly> {
    /// Open an existing plain-bytes segment read-only (`O_RDONLY`, `PROT_READ`).
    ///
    /// A read-only handle has no write API at all:
    ///
    /// ```compile_fail
    /// let r = shmkit::Segment::open_read_only("some-name").unwrap();
    /// r.write_at(0, b"no"); // error: no method `write_at` on `Segment<ReadOnly>`
    /// ```
    pub fn open_read_only(name: &str) -> Result<Self> {
        Segment::options().read_only().open(name)
    }
}

impl<A: Access> Segment<A> {
    /// The segment's name (without the leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(st_dev, st_ino)` of the object mapped.
    pub(crate) fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Payload length in bytes (the whole object for a raw segment).
    pub fn len(&self) -> usize {
        self.payload_len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload_len == 0
    }

    /// Whether this is a raw segment (no shmkit header).
    pub fn is_raw(&self) -> bool {
        self.header.is_none()
    }

    /// The header as validated at open, or `None` for a raw segment.
    pub fn header(&self) -> Option<&HeaderInfo> {
        self.header.as_ref()
    }

    /// Whether dropping this handle unlinks the name: it was asked to, by this process
    /// (false in a `fork()`ed child for a handle its parent asked; see
    /// [`set_unlink_on_drop`](Self::set_unlink_on_drop)).
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_by != 0 && liveness::is_marked_here(self.unlink_by)
    }

    /// Make this handle unlink the name when dropped (or stop it from doing so).
    ///
    /// The unlink belongs to the process that asks for it (here, or with
    /// [`SegmentOptions::unlink_on_drop`] when the handle was made): a `fork()`ed child that
    /// inherits the handle and drops it leaves the name alone, so the parent keeps its object.
    /// The child may ask for itself by calling this again.
    pub fn set_unlink_on_drop(&mut self, yes: bool) {
        self.unlink_by = if yes { liveness::mark() } else { 0 };
    }

    /// Unlink on drop on behalf of the process `mark` names (`liveness::mark`, taken when the
    /// unlink was asked for; 0: no unlink): for handles that record the request themselves
    /// and hand it to the segment when they drop (`queue::region`).
    #[cfg_attr(loom, allow(dead_code))] // queue regions are on the heap under loom
    pub(crate) fn set_unlink_by(&mut self, mark: u64) {
        self.unlink_by = mark;
    }

    /// Take the unlink-on-drop request over (it is cleared here): for handles that keep it
    /// themselves and hand it back with [`set_unlink_by`](Self::set_unlink_by) (frames).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn take_unlink_by(&mut self) -> u64 {
        std::mem::take(&mut self.unlink_by)
    }

    /// Pointer to the first payload byte (64-byte aligned for shmkit segments, page-aligned
    /// for raw ones). Valid for [`len`](Self::len) bytes while `self` lives; the bytes may
    /// change under you.
    pub fn as_ptr(&self) -> *const u8 {
        // SAFETY: payload_offset <= mapping length, checked at open.
        unsafe { self.map.ptr().add(self.payload_offset) }
    }

    /// Copy payload bytes at `offset` into `buf`.
    ///
    /// The copy is made of `Relaxed` atomic loads, so it is not a data race when other
    /// threads or processes write the same bytes meanwhile (a plain `memcpy` would be, which
    /// Rust's memory model makes undefined behaviour). Every access has one size per word,
    /// whatever range is copied: each 8-byte word of the payload (the payload is 8-aligned)
    /// is loaded whole, even when only some of its bytes are wanted, and only the bytes of a
    /// final partial word (a payload whose length is not a multiple of 8) one by one. So it
    /// never races with [`write_at`](Segment::write_at) or [`atomic_u64`](Segment::atomic_u64)
    /// accesses of another size, which Rust's model leaves undefined. What a racing copy
    /// sees: each word it covers holds one value that was in that word at some instant (a
    /// value some writer stored, if writers store whole words), never a mix of two; different
    /// words may come from different writes. It orders nothing by itself: pair it with an
    /// `Acquire` load (or a `Relaxed` load and a `fence(Acquire)`) of a word the writer
    /// stores with `Release`; a seqlock reader also puts a `fence(Acquire)` between the copy
    /// and its re-check (`examples/share_segment.rs`).
    ///
    /// Works on read-only segments: it performs nothing but `Relaxed` loads of 1 and 8 bytes,
    /// the only atomic accesses std permits on `PROT_READ` memory (runs of words are loaded
    /// 16 bytes at a time where the processor makes that atomic: still loads only, two
    /// 8-byte loads in Rust's model).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: check_range proved [offset, offset + len) lies inside the payload, which
        // is 8-aligned (`HEADER_SIZE` = 128 bytes into a page-aligned mapping, or at its start) and lives as
        // long as `self` (loads only: it may be PROT_READ); the destination is a distinct
        // local slice; every access this safe API makes to the payload is atomic with one
        // size per word (`atomic_u32`, the exception, is `unsafe` and its caller keeps the
        // rule).
        unsafe { atomic_copy::load_within(self.as_ptr(), self.payload_len, offset as usize, buf) };
        Ok(())
    }

    /// Load the 8-byte-aligned `u64` at payload `offset` with `order`.
    ///
    /// On a read-write segment this is [`AtomicU64::load`]. On a read-only (`PROT_READ`)
    /// segment the load itself is always `Relaxed`, the only kind std permits there, and an
    /// `Acquire` or `SeqCst` `order` puts a `fence(Acquire)` or `fence(SeqCst)` right after it:
    /// it acquires exactly as an `Acquire` load does, and for `SeqCst` the fence takes part in
    /// the total order of `SeqCst` operations instead of the load.
    ///
    /// # Panics
    ///
    /// If `order` is `Release` or `AcqRel`, as `AtomicU64::load` does.
    pub fn load_u64(&self, offset: u64, order: Ordering) -> Result<u64> {
        let a = self.atomic_at::<AtomicU64>(offset)?;
        Ok(if A::WRITABLE {
            a.load(order)
        } else {
            atomic_copy::load_read_only(order, || a.load(Ordering::Relaxed))
        })
    }

    /// Load the 4-byte-aligned `u32` at payload `offset` with `order`.
    ///
    /// With the access size of every other safe accessor: the 8-byte word that holds it is
    /// loaded whole (as [`load_u64`](Self::load_u64), also on a read-only segment) and its
    /// half taken; in a payload's final partial word, its four bytes one by one (as
    /// [`read_at`](Self::read_at), then a fence for `order`), which may mix two writes. So it
    /// does not pair with this process's own [`atomic_u32`](Self::atomic_u32) on the same
    /// word (a mixed-size race); read such a word through that atomic.
    ///
    /// # Panics
    ///
    /// If `order` is `Release` or `AcqRel`.
    pub fn load_u32(&self, offset: u64, order: Ordering) -> Result<u32> {
        self.check_range(offset, 4)?;
        if offset % 4 != 0 {
            return Err(Error::invalid(
                &self.name,
                format!("offset {offset} is not 4-byte aligned"),
            ));
        }
        let word = offset & !7;
        let half = (offset - word) as usize;
        if word + 8 <= self.payload_len as u64 {
            let b = self.load_u64(word, order)?.to_ne_bytes();
            return Ok(u32::from_ne_bytes(b[half..half + 4].try_into().unwrap()));
        }
        let mut b = [0u8; 4];
        Ok(atomic_copy::load_read_only(order, || {
            // Bytes of the final partial word: `read_at`'s byte loads (in range: checked).
            let _ = self.read_at(offset, &mut b);
            u32::from_ne_bytes(b)
        }))
    }

    /// The atomic `T` (`AtomicU32` or `AtomicU64`) at payload `offset`, bounds- and
    /// alignment-checked. Private: on a read-only mapping only `Relaxed` loads are permitted,
    /// so the public API hands out references only for read-write segments, and the load
    /// helpers above use nothing else on read-only ones.
    // Inline, with the errors out of line: a checked lookup on every access is how a
    // protocol over a segment is first written (it cost 7 ns a call out of line, 250 ns of a
    // 450 ns round trip in BENCHMARKS.md's fourteenth session).
    #[inline]
    fn atomic_at<T: AtomicWord>(&self, offset: u64) -> Result<&T> {
        let size = std::mem::size_of::<T>();
        let at = self.check_range(offset, size)?;
        if offset % size as u64 != 0 {
            return Err(self.misaligned(offset, size));
        }
        // SAFETY: in bounds and aligned (payload offsets are multiples of 64, the mapping is
        // page-aligned); every bit pattern is a valid atomic integer; atomics tolerate
        // concurrent access from other processes; the reference lives no longer than `self`,
        // which owns the mapping.
        Ok(unsafe { &*self.map.ptr().add(at).cast::<T>() })
    }

    /// Mapping offset of payload `[offset, offset + len)`, or an error if it does not fit.
    #[inline]
    fn check_range(&self, offset: u64, len: usize) -> Result<usize> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.payload_len as u64 => {
                Ok(self.payload_offset + offset as usize)
            }
            _ => Err(self.outside(offset, len)),
        }
    }

    #[cold]
    fn outside(&self, offset: u64, len: usize) -> Error {
        Error::invalid(
            &self.name,
            format!(
                "range {offset}..{offset}+{len} is outside the {}-byte payload",
                self.payload_len
            ),
        )
    }

    #[cold]
    fn misaligned(&self, offset: u64, size: usize) -> Error {
        Error::invalid(
            &self.name,
            format!("offset {offset} is not {size}-byte aligned"),
        )
    }
}

impl<A: Access> Drop for Segment<A> {
    fn drop(&mut self) {
        if self.unlinks_on_drop() {
            // Unlink only if the name still refers to the object we mapped: someone may have
            // removed it and created another under the same name. Only in the process that
            // asked: a fork()ed child's inherited copy leaves its parent's name alone.
            let _ = shm::unlink_if_same(&self.name, self.identity);
        }
    }
}

impl<A: Access> SegmentOptions<A> {
    /// Unlink the name when the returned handle is dropped (default: no), by this process
    /// only: a `fork()`ed child that inherits the handle and drops it leaves the name alone
    /// (see [`Segment::set_unlink_on_drop`]).
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.cfg.unlink_on_drop = yes;
        self
    }

    /// How long `open_or_create` keeps racing for a name that others keep creating and
    /// removing, and how long opening a raw segment waits for a foreign creator (CPython) to
    /// size it (default 5 s). Opening a shmkit segment never waits: a name shows only fully
    /// built objects. A timeout too large to represent means no deadline.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.timeout = timeout;
        self
    }

    /// The open timeout set with [`open_timeout`](Self::open_timeout).
    #[cfg(not(loom))] // its one reader, the cells, is not built under loom
    pub(crate) fn timeout(&self) -> Duration {
        self.cfg.timeout
    }

    /// The object kind and layout fingerprint to create with, or to require at open. Object
    /// types (locks, queues, …) set these; plain segments use [`Kind::SEGMENT`].
    pub fn kind(mut self, kind: Kind, fingerprint: u64) -> Self {
        self.cfg.kind = kind;
        self.cfg.fingerprint = fingerprint;
        self
    }

    /// Raw mode: no shmkit header. The payload is the whole object, so segments created by
    /// CPython's `SharedMemory` open as plain bytes, and raw segments created here open in
    /// CPython by the same name.
    pub fn raw(mut self, yes: bool) -> Self {
        self.cfg.raw = yes;
        self
    }

    fn retype<B: Access>(self) -> SegmentOptions<B> {
        SegmentOptions {
            cfg: self.cfg,
            _access: PhantomData,
        }
    }

    /// Open an existing segment and validate its header against these options. Never waits
    /// for a shmkit segment and never changes the object (`SPEC.md` §3.3); a raw segment of
    /// 0 bytes (a foreign creator between its create and its `ftruncate`) is waited for up
    /// to the open timeout.
    pub fn open(&self, name: &str) -> Result<Segment<A>> {
        validate_name(name)?;
        self.open_existing(name, deadline::after(Some(self.cfg.timeout)), None)
    }

    /// Open an existing segment; with `adopt: Some(mode)` (an open-or-create that would have
    /// created it with `mode`), refuse one that [`check_adoptable`] refuses, judged on the
    /// opened descriptor before anything is mapped.
    fn open_existing(
        &self,
        name: &str,
        deadline: Option<Instant>,
        adopt: Option<u32>,
    ) -> Result<Segment<A>> {
        let how = if A::WRITABLE {
            OpenMode::ReadWrite
        } else {
            OpenMode::ReadOnly
        };
        let fd = shm::open(name, how).map_err(|e| Error::from_io(name, "open", e))?;
        let started = Instant::now();
        let mut st = shm::stat(&fd).map_err(|e| Error::from_io(name, "fstat", e))?;
        if let Some(mode) = adopt {
            check_adoptable(name, &st, mode)?;
        }
        if self.cfg.raw {
            // shmkit publishes sized objects only, but a foreign creator (CPython's
            // SharedMemory) shows its object at 0 bytes until its ftruncate.
            while st.size == 0 {
                if deadline::passed(deadline) {
                    return Err(Error::NotReady {
                        name: name.to_owned(),
                        waited: started.elapsed(),
                        detail: "it is still 0 bytes: its creator (not shmkit, which publishes \
                                 sized objects only) has not sized it"
                            .into(),
                    });
                }
                std::thread::sleep(Duration::from_micros(200));
                st = shm::stat(&fd).map_err(|e| Error::from_io(name, "fstat", e))?;
            }
            let map = Mapping::new(&fd, st.size, A::WRITABLE)
                .map_err(|e| Error::from_io(name, "mmap", e))?;
            return Ok(Segment {
                name: name.to_owned(),
                payload_len: map.len(),
                map,
                header: None,
                payload_offset: 0,
                unlink_by: self.cfg.unlink_by(),
                identity: st.identity,
                _access: PhantomData,
            });
        }
        let size = st.size;
        if size < HEADER_SIZE as u64 {
            return Err(self.no_header(name, &fd, size, || {
                format!("it is {size} bytes, smaller than the {HEADER_SIZE}-byte shmkit header")
            }));
        }
        let map =
            Mapping::new(&fd, size, A::WRITABLE).map_err(|e| Error::from_io(name, "mmap", e))?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked above), page-aligned,
        // and lives as long as `map`, which outlives every use of `words` below.
        let words = unsafe { header::words(map.ptr()) };
        // The state with Acquire, then the copy (`header::observe`): pairs with the creator's
        // Release store of READY in `build`, made before it published the object under this
        // name, so every header word and everything its initialiser wrote are visible.
        let raw = RawHeader::observe(words);
        if raw.magic != MAGIC {
            return Err(self.no_header(name, &fd, size, || header::bad_magic(&raw)));
        }
        let info = header::validate(name, &raw, size, self.cfg.kind, self.cfg.fingerprint)?;
        Ok(Segment {
            name: name.to_owned(),
            payload_len: info.payload_size as usize,
            header: Some(info),
            map,
            payload_offset: HEADER_SIZE,
            unlink_by: self.cfg.unlink_by(),
            identity: st.identity,
            _access: PhantomData,
        })
    }
}

impl<A: Access> SegmentOptions<A> {
    /// The error of an open that found no shmkit header at byte 0 of object `name` (`fd`,
    /// `size` bytes): if the object does not claim to be shmkit's (no magic), what it holds,
    /// judged as `shmkit ls` judges it (`probe::foreign_kind`): [`Error::KindMismatch`]
    /// ("holds no shmkit object (a raw segment), not a lock"; its message adds the hint to
    /// open it raw for an opener of a plain segment, the one kind with a raw form); else
    /// [`Error::Corrupt`] saying `what` (a cut or overwritten shmkit object).
    fn no_header(
        &self,
        name: &str,
        fd: &OwnedFd,
        size: u64,
        what: impl FnOnce() -> String,
    ) -> Error {
        match super::probe::foreign_kind(name, fd, size) {
            Some(found) => Error::KindMismatch {
                name: name.to_owned(),
                expected: self.cfg.kind.to_string(),
                found,
            },
            None => Error::corrupt(name, what()),
        }
    }
}

type Init<'a> = &'a mut dyn FnMut(&Segment<ReadWrite>) -> Result<()>;

impl SegmentOptions<ReadWrite> {
    /// Permission bits for a created segment (default 0600). Applied exactly, whatever the
    /// umask.
    pub fn mode(mut self, mode: u32) -> Self {
        self.cfg.mode = mode;
        self
    }

    /// Who may remove a created segment (default [`Lifetime::Persistent`]: only an explicit
    /// unlink). [`Lifetime::Owned`] lets `shmkit gc` remove it once its creator is dead and no
    /// process maps it. A raw segment has no header to record it in, so it is always
    /// persistent.
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.cfg.lifetime = lifetime;
        self
    }

    /// Sparse creation (default: no). By default creation reserves every byte of the object
    /// in `/dev/shm` (`fallocate`), so that a full `/dev/shm` is [`Error::NoSpace`] at
    /// creation. A sparse object is only sized (`ftruncate`): creation is instant and takes no
    /// memory until pages are touched, but **touching a page when `/dev/shm` is full kills the
    /// process with `SIGBUS`**, in whichever process touches it.
    pub fn sparse(mut self, yes: bool) -> Self {
        self.cfg.sparse = yes;
        self
    }

    /// Attach read-only: `O_RDONLY` and a `PROT_READ` mapping; the handle has no write API.
    pub fn read_only(self) -> SegmentOptions<ReadOnly> {
        self.retype()
    }

    /// Create a new segment with a zeroed `size`-byte payload.
    pub fn create(&self, name: &str, size: u64) -> Result<Segment> {
        self.create_with(name, size, |_| Ok(()))
    }

    /// Create a new segment, run `init` on it (the payload is zeroed), then publish it.
    ///
    /// The object is built under a temporary name and appears under `name` only once `init`
    /// has returned, so no process ever sees it half-built, and a creator that dies while
    /// building leaves nothing under `name` (`shmkit gc` removes the temporary object). If
    /// `init` fails or panics, the temporary object is removed. Fails with
    /// [`Error::AlreadyExists`] if `name` exists, checked before building and again,
    /// atomically, when publishing.
    pub fn create_with(
        &self,
        name: &str,
        size: u64,
        mut init: impl FnMut(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        validate_name(name)?;
        self.check_create_args(name, size)?;
        if shm::stat_path(name).is_some() {
            // Fail before allocating and initialising (the publish checks again).
            return Err(Error::AlreadyExists {
                name: name.to_owned(),
            });
        }
        self.build(name, size, &mut init)
    }

    /// Open the segment if it exists; otherwise create it with a zeroed `size`-byte payload.
    /// An existing segment must have exactly `size` payload bytes.
    pub fn open_or_create(&self, name: &str, size: u64) -> Result<Segment> {
        self.open_or_create_with(name, size, |_| Ok(()))
    }

    /// Open the segment if it exists; otherwise build it, run `init`, and publish it.
    ///
    /// Between unrelated processes racing on one name, exactly one object is published under
    /// it (`renameat2(RENAME_NOREPLACE)` decides); the others discard what they built and
    /// open the winner's, validating its header as [`open`](SegmentOptions::open) does and
    /// requiring a `size`-byte payload. So `init` may run in several racing processes, but
    /// only one run's result is ever seen: keep its effects inside the segment. If the name
    /// keeps being created and removed by others, this gives up with [`Error::NotReady`]
    /// after the open timeout.
    pub fn open_or_create_with(
        &self,
        name: &str,
        size: u64,
        mut init: impl FnMut(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        validate_name(name)?;
        self.check_create_args(name, size)?;
        let deadline = deadline::after(Some(self.cfg.timeout));
        let started = Instant::now();
        loop {
            match self.open_existing(name, deadline, Some(self.cfg.mode)) {
                Ok(s) if s.len() as u64 == size => return Ok(s),
                Ok(s) => {
                    return Err(Error::invalid(
                        name,
                        format!(
                            "it exists with a payload of {} bytes, not the {size} bytes asked for",
                            s.len()
                        ),
                    ))
                }
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            match self.build(name, size, &mut init) {
                // Another process published first: open its object.
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            if deadline::passed(deadline) {
                return Err(Error::NotReady {
                    name: name.to_owned(),
                    waited: started.elapsed(),
                    detail: "the name kept being created and removed by others".into(),
                });
            }
            // Published and removed again between our publish and our open: give the
            // others a moment.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The open step of an open-or-create (`SPEC.md` §4.3) for callers that build their
    /// object themselves (`ShareableList`): [`open`](SegmentOptions::open), refusing an
    /// object [`check_adoptable`] refuses for this options' mode.
    #[cfg_attr(loom, allow(dead_code))] // the list is not built under loom
    pub(crate) fn open_to_adopt(&self, name: &str) -> Result<Segment> {
        validate_name(name)?;
        self.open_existing(
            name,
            deadline::after(Some(self.cfg.timeout)),
            Some(self.cfg.mode),
        )
    }

    fn check_create_args(&self, name: &str, size: u64) -> Result<()> {
        if self.cfg.mode > 0o777 {
            return Err(Error::invalid(
                name,
                format!("mode {:#o} has bits beyond 0o777", self.cfg.mode),
            ));
        }
        if size > MAX_SIZE {
            return Err(Error::TooLarge {
                name: name.to_owned(),
                requested: size,
                max: MAX_SIZE,
            });
        }
        if self.cfg.raw && size == 0 {
            return Err(Error::invalid(
                name,
                "a raw segment needs at least 1 byte (CPython cannot map an empty one)",
            ));
        }
        match self.cfg.lifetime {
            Lifetime::Invalid(x) => {
                return Err(Error::invalid(name, format!("lifetime {x} is not one shmkit knows")))
            }
            Lifetime::Owned if self.cfg.raw => {
                return Err(Error::invalid(
                    name,
                    "a raw segment has no header to record an owned lifetime in; it lives until unlinked",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// Build the object under a temporary name, then publish it under `name` (`SPEC.md`
    /// §4.1). `AlreadyExists` if `name` exists at the publish.
    fn build(&self, name: &str, size: u64, init: Init<'_>) -> Result<Segment> {
        let token = liveness::current()
            .map_err(|e| Error::from_io(name, "get this process's liveness token to create", e))?;
        let (temp, fd) = create_temp(name, token, self.cfg.mode)?;
        let identity = shm::stat(&fd)
            .map_err(|e| Error::from_io(name, "fstat", e))?
            .identity;
        // From here on the temporary object is ours: the guard removes it on every failure,
        // and on a panic.
        let mut undo = Undo {
            temp: &temp,
            identity,
            armed: true,
        };
        let total = if self.cfg.raw {
            size
        } else {
            size + HEADER_SIZE as u64
        };
        if self.cfg.sparse {
            shm::set_len(&fd, total).map_err(|e| Error::from_io(name, "ftruncate", e))?;
        } else {
            shm::reserve(&fd, total).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOSPC) => Error::NoSpace {
                    name: name.to_owned(),
                    requested: total,
                    available: shm::free_space(&fd).unwrap_or(0),
                },
                _ => Error::from_io(name, "reserve memory (fallocate) for", e),
            })?;
        }
        let map = Mapping::new(&fd, total, true).map_err(|e| Error::from_io(name, "mmap", e))?;
        let mut seg = Segment {
            name: name.to_owned(),
            map,
            header: None,
            payload_offset: if self.cfg.raw { 0 } else { HEADER_SIZE },
            payload_len: size as usize,
            unlink_by: 0,
            identity,
            _access: PhantomData,
        };
        let header = (!self.cfg.raw).then(|| RawHeader {
            magic: MAGIC,
            version: FORMAT_VERSION,
            kind: self.cfg.kind.0,
            fingerprint: self.cfg.fingerprint,
            header_size: HEADER_SIZE as u64,
            payload_size: size,
            creator_token: token,
            creator_pid: process::current_pid(),
            lifetime: self.cfg.lifetime.word(),
            creator_pidns: process::pid_namespace(),
            created_unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            ..RawHeader::default()
        });
        // SAFETY: a shmkit mapping is `total >= HEADER_SIZE` bytes, page-aligned, and owned
        // by `seg`, which outlives every use of `words` below.
        let words = header.map(|_| unsafe { header::words(seg.map.ptr()) });
        if let (Some(h), Some(w)) = (&header, words) {
            h.store_unpublished(w);
        }
        init(&seg)?;
        if let Some(w) = words {
            // READY with Release (`header::mark_ready`): pairs with the Acquire load of the
            // state word in `open_existing` (`header::observe`, `acquire_state`): an opener that finds this
            // object under `name` (only after the publish below) sees every header word and
            // everything `init` wrote.
            header::mark_ready(&w[header::STATE_WORD]);
        }
        shm::publish(&temp, name).map_err(|e| Error::from_io(name, "publish", e))?;
        undo.armed = false;
        seg.header = header.map(|h| {
            HeaderInfo::from_raw(&RawHeader {
                state: State::READY,
                ..h
            })
        });
        seg.unlink_by = if self.cfg.unlink_on_drop { token } else { 0 };
        Ok(seg)
    }
}

/// Whether an open-or-create that would create `name` with `mode` may adopt the existing
/// object `st` (`SPEC.md` §4.3). A private mode (no group or other bits) means nobody but
/// this user (and root) could legitimately have made an object of that name: one owned by
/// another user was planted by them (they can read, write and truncate it), so it is
/// refused. A mode that shares the object with group or others adopts whoever made it.
fn check_adoptable(name: &str, st: &shm::Stat, mode: u32) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if mode & 0o077 != 0 || st.uid == euid || st.uid == 0 {
        return Ok(());
    }
    Err(Error::Io {
        name: name.to_owned(),
        op: "open_or_create",
        source: std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "it exists and belongs to uid {} (mode {:04o}), neither this user (uid {euid}) \
                 nor root, and the mode asked for ({mode:04o}) is private: another user \
                 created the name first and could read, write or truncate this object, so it \
                 is refused, not adopted (remove it, or use another name)",
                st.uid,
                st.mode & 0o7777
            ),
        ),
    })
}

/// Create a fresh temporary object for building `name` (`O_EXCL`, mode `mode`).
fn create_temp(name: &str, token: u64, mode: u32) -> Result<(String, std::os::fd::OwnedFd)> {
    let mut tries = 0;
    loop {
        let temp = shm::temp_name(token, name);
        match shm::open(&temp, OpenMode::CreateExclusive(mode)) {
            Ok(fd) => return Ok((temp, fd)),
            // Left by a dead process that drew the same token: take the next counter value.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
            Err(e) => {
                return Err(Error::Io {
                    name: name.to_owned(),
                    op: "create a temporary object to build",
                    source: e,
                })
            }
        }
    }
}

/// Removes a temporary object that was not published when dropped armed (error returns and
/// panics alike), if its name still refers to it.
struct Undo<'a> {
    temp: &'a str,
    identity: (u64, u64),
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = shm::unlink_if_same(self.temp, self.identity);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Segment;
    use crate::os::atomic_copy::trace;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    /// A segment of `len` payload bytes that unlinks itself.
    fn segment(tag: &str, len: u64) -> Segment {
        let name = format!("t-seg-{tag}-{}", std::process::id());
        Segment::options()
            .raw(true)
            .unlink_on_drop(true)
            .create(&name, len)
            .unwrap()
    }

    /// The access sizes recorded for each address.
    fn sizes(log: Vec<(usize, usize)>) -> HashMap<usize, Vec<usize>> {
        let mut m: HashMap<usize, Vec<usize>> = HashMap::new();
        for (at, size) in log {
            m.entry(at).or_default().push(size);
        }
        m
    }

    /// Audit finding: `read_at` and `write_at` split a range by its own ends (bytes at the
    /// ends, words between), so `read_at(3, 2 bytes)` made byte loads inside the word that
    /// `write_at(0, 8 bytes)` or an `atomic_u64(0)` stores whole: a mixed-size race from
    /// safe calls on one handle, which Rust's model leaves undefined. Both now access each
    /// whole word with one 8-byte access, and only a final partial word by bytes.
    #[test]
    fn read_at_and_write_at_access_each_word_with_one_size() {
        let s = segment("sizes", 21); // two whole words and a 5-byte partial one
        let base = s.as_ptr() as usize;
        trace::start();
        s.write_at(0, &[1; 21]).unwrap();
        s.write_at(3, &[2; 2]).unwrap();
        s.write_at(6, &[3; 4]).unwrap(); // the end of word 0 and the start of word 1
        s.write_at(17, &[4; 3]).unwrap(); // inside the partial word
        let mut buf = [0u8; 5];
        s.read_at(3, &mut buf[..2]).unwrap();
        s.read_at(14, &mut buf[..5]).unwrap(); // word 1's end and the partial word
        let log = trace::stop();
        for (at, sizes) in sizes(log) {
            let off = at - base;
            if off < 16 {
                assert!(
                    off % 8 == 0 && sizes.iter().all(|&k| k == 8),
                    "offset {off} accessed with sizes {sizes:?}: whole words must be accessed whole"
                );
            } else {
                assert!(sizes.iter().all(|&k| k == 1), "offset {off}: {sizes:?}");
            }
        }
        let mut all = [0u8; 21];
        s.read_at(0, &mut all).unwrap();
        let mut want = [1u8; 21];
        want[3..5].fill(2);
        want[6..10].fill(3);
        want[17..20].fill(4);
        assert_eq!(all, want);
        assert_eq!(
            s.load_u32(4, Ordering::Relaxed).unwrap(),
            u32::from_ne_bytes([2, 1, 3, 3])
        );
        assert_eq!(
            s.load_u32(16, Ordering::Acquire).unwrap(),
            u32::from_ne_bytes([1, 4, 4, 4])
        );
    }

    /// Threads writing different bytes of one word with `write_at` at the same time all keep
    /// their bytes (a part of a word is merged by compare-exchange, not loaded and stored).
    #[test]
    fn concurrent_write_at_of_one_words_bytes_keeps_every_byte() {
        let s = segment("merge", 8);
        const ROUNDS: u32 = 100_000;
        let last = (ROUNDS % 255) as u8 + 1;
        std::thread::scope(|sc| {
            for b in 0..8u64 {
                let s = &s;
                sc.spawn(move || {
                    for r in 1..=ROUNDS {
                        let v = (r % 255) as u8 + 1;
                        s.write_at(b, &[v]).unwrap();
                        let mut got = [0u8];
                        s.read_at(b, &mut got).unwrap();
                        assert_eq!(got[0], v, "byte {b} lost its write of round {r}");
                    }
                });
            }
        });
        let mut all = [0u8; 8];
        s.read_at(0, &mut all).unwrap();
        assert_eq!(all, [last; 8]);
    }
}
