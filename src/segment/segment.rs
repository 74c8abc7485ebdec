//! [`Segment`]: a named, sized, validated mapping.

use std::marker::PhantomData;
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
/// time), offers atomics (`atomic_u64`/`atomic_u32` on read-write segments only,
/// [`load_u64`](Self::load_u64)/[`load_u32`](Self::load_u32) on any), and raw pointers for code
/// that documents its own protocol. The header is validated once at open; what a hostile
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
    /// The copy is made of `Relaxed` atomic stores (see [`read_at`](Segment::read_at) for
    /// the word rule), so it is not a data race when other threads or processes read or write
    /// the same bytes meanwhile; what they see is only as consistent as that rule says.
    /// It orders nothing: to publish the bytes, follow it with a `Release` store (or a
    /// `fence(Release)` and a store) that the reader pairs with an `Acquire` load.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let at = self.check_range(offset, data.len())?;
        // SAFETY: check_range proved [at, at + len) lies inside the mapping, which is writable
        // (`ReadWrite`) and lives as long as `self`; the source is a distinct local slice;
        // this process accesses the payload only atomically or through raw pointers whose
        // users document their own synchronisation.
        unsafe { atomic_copy::store(data.as_ptr(), self.map.ptr().add(at), data.len()) };
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
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        self.atomic_at(offset)
    }

    /// The 4-byte-aligned `u32` at payload `offset`, as a shared atomic (read-write segments
    /// only, as [`atomic_u64`](Segment::atomic_u64)).
    ///
    /// ```compile_fail
    /// let r = shmkit::Segment::open_read_only("some-name").unwrap();
    /// r.atomic_u32(0).unwrap().store(1, std::sync::atomic::Ordering::Relaxed);
    /// // error: no method `atomic_u32` on `Segment<ReadOnly>`
    /// ```
    pub fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
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
    /// Rust's memory model makes undefined behaviour). The rule for what a racing copy sees:
    /// every 8-byte-aligned word (aligned within the payload, which is 64-byte aligned) that
    /// the range covers entirely is loaded in one access, so if writers also store whole words
    /// (with [`write_at`](Segment::write_at) over that word, or through
    /// [`atomic_u64`](Segment::atomic_u64)) it holds one of the values written, never a mix;
    /// bytes of partially covered words, and separate words, may come from different writes.
    /// It orders nothing by itself: pair it with an `Acquire` load (or a `Relaxed` load and a
    /// `fence(Acquire)`) of a word the writer stores with `Release`; a seqlock reader also
    /// puts a `fence(Acquire)` between the copy and its re-check (`examples/share_segment.rs`).
    ///
    /// Accessing the *same* bytes concurrently with atomics of another size (e.g. an
    /// [`atomic_u32`](Segment::atomic_u32) in the middle of a word this copy loads whole) is a
    /// mixed-size race, which Rust's model (C++'s) does not define even though every
    /// supported CPU handles it; keep every racing access to a word the same size.
    ///
    /// Works on read-only segments: it performs nothing but `Relaxed` loads of 1 and 8 bytes,
    /// the only atomic accesses std permits on `PROT_READ` memory.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.check_range(offset, buf.len())?;
        // SAFETY: check_range proved [at, at + len) lies inside the mapping, which lives as
        // long as `self` (loads only: it may be PROT_READ); the destination is a distinct
        // local slice; this process accesses the payload only atomically or through raw
        // pointers whose users document their own synchronisation.
        unsafe { atomic_copy::load(self.map.ptr().add(at), buf.as_mut_ptr(), buf.len()) };
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

    /// Load the 4-byte-aligned `u32` at payload `offset` with `order` (on a read-only
    /// segment: a `Relaxed` load and a fence, as [`load_u64`](Self::load_u64)).
    ///
    /// # Panics
    ///
    /// If `order` is `Release` or `AcqRel`.
    pub fn load_u32(&self, offset: u64, order: Ordering) -> Result<u32> {
        let a = self.atomic_at::<AtomicU32>(offset)?;
        Ok(if A::WRITABLE {
            a.load(order)
        } else {
            atomic_copy::load_read_only(order, || a.load(Ordering::Relaxed))
        })
    }

    /// The atomic `T` (`AtomicU32` or `AtomicU64`) at payload `offset`, bounds- and
    /// alignment-checked. Private: on a read-only mapping only `Relaxed` loads are permitted,
    /// so the public API hands out references only for read-write segments, and the load
    /// helpers above use nothing else on read-only ones.
    fn atomic_at<T: AtomicWord>(&self, offset: u64) -> Result<&T> {
        let size = std::mem::size_of::<T>();
        let at = self.check_range(offset, size)?;
        if offset % size as u64 != 0 {
            return Err(Error::invalid(
                &self.name,
                format!("offset {offset} is not {size}-byte aligned"),
            ));
        }
        // SAFETY: in bounds and aligned (payload offsets are multiples of 64, the mapping is
        // page-aligned); every bit pattern is a valid atomic integer; atomics tolerate
        // concurrent access from other processes; the reference lives no longer than `self`,
        // which owns the mapping.
        Ok(unsafe { &*self.map.ptr().add(at).cast::<T>() })
    }

    /// Mapping offset of payload `[offset, offset + len)`, or an error if it does not fit.
    fn check_range(&self, offset: u64, len: usize) -> Result<usize> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.payload_len as u64 => {
                Ok(self.payload_offset + offset as usize)
            }
            _ => Err(Error::invalid(
                &self.name,
                format!(
                    "range {offset}..{offset}+{len} is outside the {}-byte payload",
                    self.payload_len
                ),
            )),
        }
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
        self.open_existing(name, deadline::after(Some(self.cfg.timeout)))
    }

    fn open_existing(&self, name: &str, deadline: Option<Instant>) -> Result<Segment<A>> {
        let how = if A::WRITABLE {
            OpenMode::ReadWrite
        } else {
            OpenMode::ReadOnly
        };
        let fd = shm::open(name, how).map_err(|e| Error::from_io(name, "open", e))?;
        let started = Instant::now();
        let mut st = shm::stat(&fd).map_err(|e| Error::from_io(name, "fstat", e))?;
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
            return Err(Error::corrupt(
                name,
                format!(
                    "it is {size} bytes, smaller than the {HEADER_SIZE}-byte shmkit header \
                     (a raw segment? open it with .raw(true))"
                ),
            ));
        }
        let map =
            Mapping::new(&fd, size, A::WRITABLE).map_err(|e| Error::from_io(name, "mmap", e))?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked above), page-aligned,
        // and lives as long as `map`, which outlives every use of `words` below.
        let words = unsafe { header::words(map.ptr()) };
        // Acquire pairs with the creator's Release store of READY in `build`, made before it
        // published the object under this name: every header word and everything its
        // initialiser wrote are visible after it. A Relaxed load and an acquire fence: a
        // read-only opener's mapping is PROT_READ, where std permits no other atomic load.
        let state = atomic_copy::load_read_only(Ordering::Acquire, || {
            words[header::STATE_WORD].load(Ordering::Relaxed)
        });
        let raw = RawHeader {
            state,
            ..RawHeader::load(words)
        };
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
            match self.open_existing(name, deadline) {
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
            // Release pairs with the Acquire load of the state word in `open_existing`: an
            // opener that finds this object under `name` (only after the publish below) sees
            // every header word and everything `init` wrote.
            w[header::STATE_WORD].store(State::READY, Ordering::Release);
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
