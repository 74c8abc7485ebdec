//! [`Segment`]: a named, sized, validated mapping.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::header::MagicProgress;
use super::header::{self, HeaderInfo, RawHeader, State, FORMAT_VERSION, HEADER_SIZE, MAGIC};
use super::kind::{fingerprint, Kind};
use super::name::validate_name;
use crate::error::{Error, Result};
use crate::loom::futex::Wait;
use crate::os::atomic_copy;
use crate::os::deadline;
use crate::os::map::Mapping;
use crate::os::process::{self, Liveness};
use crate::os::shm::{self, OpenMode};

/// How long [`Segment::open`] waits, by default, for a creator to publish a segment.
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
    unlink_on_drop: bool,
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
            .field("unlink_on_drop", &self.unlink_on_drop)
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
            kind: Kind::BYTES,
            fingerprint: BYTES_FINGERPRINT,
            raw: false,
        };
        SegmentOptions {
            cfg,
            _access: PhantomData,
        }
    }
}

impl Segment<ReadWrite> {
    /// Options with the defaults: mode 0600, no unlink on drop, a plain-bytes shmkit segment,
    /// a 5 s open timeout, read-write.
    pub fn options() -> SegmentOptions<ReadWrite> {
        SegmentOptions::default()
    }

    /// Create a new segment with a `size`-byte zeroed payload; fails with
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, size: u64) -> Result<Self> {
        Self::options().create(name, size)
    }

    /// Open an existing plain-bytes segment read-write, waiting up to 5 s for its creator to
    /// publish it.
    pub fn open(name: &str) -> Result<Self> {
        Self::options().open(name)
    }

    /// Open the segment if it exists, or create it. Race-free between unrelated processes:
    /// exactly one creates and initialises it; the others wait for it to be published.
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

    /// Whether dropping this handle unlinks the name.
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_on_drop
    }

    /// Make this handle unlink the name when dropped (or stop it from doing so).
    pub fn set_unlink_on_drop(&mut self, yes: bool) {
        self.unlink_on_drop = yes;
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
        if self.unlink_on_drop {
            // Unlink only if the name still refers to the object we mapped: someone may have
            // removed it and created another under the same name.
            let _ = shm::unlink_if_same(&self.name, self.identity);
        }
    }
}

impl<A: Access> SegmentOptions<A> {
    /// Unlink the name when the returned handle is dropped (default: no).
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.cfg.unlink_on_drop = yes;
        self
    }

    /// How long `open` and `open_or_create` wait for a creator to publish (default 5 s).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.timeout = timeout;
        self
    }

    /// The object kind and layout fingerprint to create with, or to require at open. Object
    /// types (locks, queues, …) set these; plain segments use [`Kind::BYTES`].
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

    /// Open an existing segment and validate its header against these options.
    pub fn open(&self, name: &str) -> Result<Segment<A>> {
        validate_name(name)?;
        let deadline = deadline::after(Some(self.cfg.timeout));
        match self.open_existing(name, deadline)? {
            Opened::Segment(s) => Ok(s),
            Opened::Vanished(detail) => Err(Error::NotReady {
                name: name.to_owned(),
                waited: Duration::ZERO,
                detail,
            }),
        }
    }

    fn open_existing(&self, name: &str, deadline: Option<Instant>) -> Result<Opened<A>> {
        let how = if A::WRITABLE {
            OpenMode::ReadWrite
        } else {
            OpenMode::ReadOnly
        };
        let fd = shm::open(name, how).map_err(|e| Error::from_io(name, "open", e))?;
        let started = Instant::now();
        // A fresh object is 0 bytes until its creator's ftruncate: wait for a size.
        let st = loop {
            let st = shm::stat(&fd).map_err(|e| Error::from_io(name, "fstat", e))?;
            if st.size > 0 {
                break st;
            }
            if deadline::passed(deadline) {
                let detail = if self.cfg.raw || shm::creation_lock_free(&fd) {
                    format!(
                        "it is still 0 bytes and nobody is initialising it: remove it with `shmkit rm {name}`"
                    )
                } else {
                    "it is still 0 bytes: its creator has not sized it yet".to_string()
                };
                return Err(Error::NotReady {
                    name: name.to_owned(),
                    waited: started.elapsed(),
                    detail,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let (size, identity) = (st.size, st.identity);
        if self.cfg.raw {
            let map = Mapping::new(&fd, size, A::WRITABLE)
                .map_err(|e| Error::from_io(name, "mmap", e))?;
            return Ok(Opened::Segment(Segment {
                name: name.to_owned(),
                payload_len: map.len(),
                map,
                header: None,
                payload_offset: 0,
                unlink_on_drop: self.cfg.unlink_on_drop,
                identity,
                _access: PhantomData,
            }));
        }
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
        let waiter = Waiter {
            name,
            fd: &fd,
            words,
            identity,
            writable: A::WRITABLE,
            deadline,
            started,
        };
        if let Published::Gone(detail) = waiter.wait()? {
            return Ok(Opened::Vanished(detail));
        }
        let raw = RawHeader::load(words);
        let info = header::validate(name, &raw, size, self.cfg.kind, self.cfg.fingerprint)?;
        Ok(Opened::Segment(Segment {
            name: name.to_owned(),
            payload_len: info.payload_size as usize,
            header: Some(info),
            map,
            payload_offset: HEADER_SIZE,
            unlink_on_drop: self.cfg.unlink_on_drop,
            identity,
            _access: PhantomData,
        }))
    }
}

enum Opened<A: Access> {
    Segment(Segment<A>),
    /// The creator failed or died before publishing; the name is (being) removed.
    Vanished(String),
}

enum Published {
    Ready,
    Gone(String),
}

/// How long an opener tolerates "no creation lock held, header still blank" before it gives
/// up: a creator holds the lock from right after its `O_EXCL` open, so only a creator that is
/// preempted in that two-system-call window, or dead, or a foreign object, looks like this.
const BLANK_GRACE: Duration = Duration::from_millis(100);

/// An opener waiting for a creator to publish (`SPEC.md` §3.4).
struct Waiter<'a> {
    name: &'a str,
    fd: &'a std::os::fd::OwnedFd,
    words: &'a [AtomicU32; HEADER_SIZE / 4],
    identity: (u64, u64),
    writable: bool,
    deadline: Option<Instant>,
    started: Instant,
}

impl Waiter<'_> {
    fn not_ready(&self, detail: String) -> Error {
        Error::NotReady {
            name: self.name.to_owned(),
            waited: self.started.elapsed(),
            detail,
        }
    }

    /// Wait for the state word to become READY (Acquire), or for a verdict.
    fn wait(&self) -> Result<Published> {
        let state = &self.words[header::STATE_WORD];
        let mut blank_since: Option<Instant> = None;
        loop {
            // Acquire pairs with the creator's Release CAS to READY in `create_inner`: every
            // header word and everything the initialiser wrote are visible after it. (A
            // Relaxed load and an acquire fence: a read-only opener's mapping is PROT_READ.)
            match atomic_copy::load_read_only(Ordering::Acquire, || state.load(Ordering::Relaxed)) {
                State::READY => return Ok(Published::Ready),
                State::INITIALIZING => {}
                s @ (State::FAILED | State::ABANDONED) => {
                    // Whoever set it unlinks the name next, but may have died first.
                    if self.writable {
                        let _ = shm::unlink_if_same(self.name, self.identity);
                    }
                    return Ok(Published::Gone(
                        if s == State::FAILED {
                            "its creator failed to initialise it"
                        } else {
                            "its creator died while initialising it"
                        }
                        .into(),
                    ));
                }
                x => {
                    return Err(Error::corrupt(
                        self.name,
                        format!("state word is {x}, expected 0..=3"),
                    ))
                }
            }
            let (pid, start) = header::creator(self.words);
            let magic = header::magic_progress(self.words);
            if magic == MagicProgress::Foreign || (pid != 0 && magic != MagicProgress::Complete) {
                return Err(Error::corrupt(
                    self.name,
                    "its first 8 bytes are not the shmkit magic: not a shmkit segment (a raw one? open it with .raw(true))",
                ));
            }
            if shm::creation_lock_free(self.fd) {
                if pid != 0 {
                    // The creator recorded itself, then released its lock without publishing.
                    // Acquire (as a Relaxed load and a fence): as above.
                    let now = atomic_copy::load_read_only(Ordering::Acquire, || {
                        state.load(Ordering::Relaxed)
                    });
                    if now != State::INITIALIZING {
                        continue; // it published (or failed) just before releasing
                    }
                    if process::liveness(pid, start) != Liveness::Dead {
                        return Err(Error::corrupt(
                            self.name,
                            format!(
                                "state is 0 (initialising) but no process holds its creation lock and its \
                                 creator pid {pid} is alive: the header was overwritten"
                            ),
                        ));
                    }
                    if !self.writable {
                        return Err(self.not_ready(format!(
                            "its creator (pid {pid}) died while initialising it; \
                             a read-write open or `shmkit rm {}` removes it",
                            self.name
                        )));
                    }
                    // Claim the cleanup so that exactly one opener unlinks the abandoned
                    // object. AcqRel: publishes nothing; it only decides who unlinks.
                    if state
                        .compare_exchange(
                            State::INITIALIZING,
                            State::ABANDONED,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        let _ = shm::unlink_if_same(self.name, self.identity);
                        crate::os::futex::wake(state, u32::MAX);
                    }
                    continue;
                }
                let since = *blank_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= BLANK_GRACE {
                    return Err(self.not_ready(format!(
                        "its header is blank and nobody is initialising it: not a shmkit segment \
                         (open it with .raw(true)), or its creator died before writing the header \
                         (remove it with `shmkit rm {}`)",
                        self.name
                    )));
                }
            } else {
                blank_since = None;
            }
            if deadline::passed(self.deadline) {
                let detail = match pid {
                    0 => "its creator is still writing the header".to_string(),
                    p => format!("its creator, pid {p}, is still initialising it"),
                };
                return Err(self.not_ready(detail));
            }
            // Sleep on the state word; wake at least every 10 ms to re-check the creator.
            let slice = Instant::now() + Duration::from_millis(10);
            let slice = self.deadline.map_or(slice, |d| d.min(slice));
            let _: Wait = crate::os::futex::wait(state, State::INITIALIZING, Some(slice));
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

    /// Attach read-only: `O_RDONLY` and a `PROT_READ` mapping; the handle has no write API.
    pub fn read_only(self) -> SegmentOptions<ReadOnly> {
        self.retype()
    }

    /// Create a new segment with a zeroed `size`-byte payload.
    pub fn create(&self, name: &str, size: u64) -> Result<Segment> {
        self.create_with(name, size, |_| Ok(()))
    }

    /// Create a new segment, run `init` on it (the payload is zeroed), then publish it.
    /// Openers of a shmkit segment never see the payload before `init` returns (a raw segment
    /// has no publication step: its openers may see it at any time). If `init` fails or
    /// panics, the segment is marked failed and unlinked.
    pub fn create_with(
        &self,
        name: &str,
        size: u64,
        mut init: impl FnMut(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        validate_name(name)?;
        self.check_create_args(name, size)?;
        self.create_inner(name, size, &mut init)
    }

    /// Open the segment if it exists; otherwise create it with a zeroed `size`-byte payload.
    /// An existing segment must have exactly `size` payload bytes.
    pub fn open_or_create(&self, name: &str, size: u64) -> Result<Segment> {
        self.open_or_create_with(name, size, |_| Ok(()))
    }

    /// Open the segment if it exists; otherwise create it and run `init` before publishing.
    ///
    /// Between unrelated processes racing on one name, exactly one creates (`O_EXCL` decides)
    /// and runs `init`; the others wait for the state word to turn READY and then validate
    /// the header as [`open`](SegmentOptions::open) does, and require a `size`-byte payload.
    /// If the creator fails or dies before publishing, the object is removed and the race
    /// starts again, until the open timeout.
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
            match self.create_inner(name, size, &mut init) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match self.open_existing(name, deadline) {
                Ok(Opened::Segment(s)) if s.len() as u64 == size => return Ok(s),
                Ok(Opened::Segment(s)) => {
                    return Err(Error::invalid(
                        name,
                        format!(
                            "it exists with a {}-byte payload, not the {size} bytes asked for",
                            s.len()
                        ),
                    ))
                }
                // Removed between our create and our open, or failed/abandoned: race again.
                Ok(Opened::Vanished(_)) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            if deadline::passed(deadline) {
                return Err(Error::NotReady {
                    name: name.to_owned(),
                    waited: started.elapsed(),
                    detail: "the name kept being created and removed by others".into(),
                });
            }
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
        Ok(())
    }

    fn create_inner(&self, name: &str, size: u64, init: Init<'_>) -> Result<Segment> {
        let fd = shm::open(name, OpenMode::CreateExclusive(self.cfg.mode))
            .map_err(|e| Error::from_io(name, "create", e))?;
        let identity = shm::stat(&fd)
            .map_err(|e| Error::from_io(name, "fstat", e))?
            .identity;
        // From here on the name is ours: the guard unlinks it on every failure, and on a panic.
        let mut undo = Undo {
            name,
            identity,
            armed: true,
        };
        // Hold the creation lock until published (or failed); the fd, and so the lock, lives
        // to the end of this function, and the kernel drops it if we die.
        shm::lock_creation(&fd).map_err(|e| Error::from_io(name, "flock", e))?;
        let total = if self.cfg.raw {
            size
        } else {
            size + HEADER_SIZE as u64
        };
        shm::set_len(&fd, total).map_err(|e| Error::from_io(name, "ftruncate", e))?;
        let map = Mapping::new(&fd, total, true).map_err(|e| Error::from_io(name, "mmap", e))?;
        let mut seg = Segment {
            name: name.to_owned(),
            map,
            header: None,
            payload_offset: if self.cfg.raw { 0 } else { HEADER_SIZE },
            payload_len: size as usize,
            unlink_on_drop: false,
            identity,
            _access: PhantomData,
        };
        if self.cfg.raw {
            init(&seg)?;
            undo.armed = false;
            seg.unlink_on_drop = self.cfg.unlink_on_drop;
            return Ok(seg);
        }
        let raw = RawHeader {
            magic: MAGIC,
            version: FORMAT_VERSION,
            kind: self.cfg.kind.0,
            fingerprint: self.cfg.fingerprint,
            header_size: HEADER_SIZE as u64,
            payload_size: size,
            creator_start: process::current_start_time(),
            creator_pid: process::current_pid(),
            creator_pidns: process::pid_namespace(),
            created_unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            ..RawHeader::default()
        };
        // SAFETY: the mapping is `total >= HEADER_SIZE` bytes, page-aligned, and owned by
        // `seg`, which outlives every use of `words` (and of `undo`'s pointer) below.
        let words = unsafe { header::words(seg.map.ptr()) };
        raw.store_unpublished(words);
        let state = &words[header::STATE_WORD];
        // Declared after `seg`, so dropped before it: the mapping is still there.
        let mut failed = MarkFailed { state, armed: true };
        init(&seg)?;
        // Publish last. Release pairs with the Acquire load in `Waiter::wait`: an opener that
        // sees READY sees every header word and everything `init` wrote. A CAS, not a store:
        // if anyone changed the state meanwhile, this incarnation is not ours to publish.
        if let Err(now) = state.compare_exchange(
            State::INITIALIZING,
            State::READY,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            return Err(Error::corrupt(
                name,
                format!("its state changed to {now} while it was being initialised"),
            ));
        }
        failed.armed = false;
        undo.armed = false;
        crate::os::futex::wake(state, u32::MAX);
        seg.header = Some(HeaderInfo::from_raw(&RawHeader {
            state: State::READY,
            ..raw
        }));
        seg.unlink_on_drop = self.cfg.unlink_on_drop;
        Ok(seg)
    }
}

/// Unlinks a half-created object when dropped armed (error returns and panics alike), if the
/// name still refers to it.
struct Undo<'a> {
    name: &'a str,
    identity: (u64, u64),
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = shm::unlink_if_same(self.name, self.identity);
        }
    }
}

/// Marks a half-initialised header FAILED and wakes its waiting openers when dropped armed.
struct MarkFailed<'a> {
    state: &'a AtomicU32,
    armed: bool,
}

impl Drop for MarkFailed<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Release pairs with the Acquire in `Waiter::wait`: waiters see FAILED and race
            // again. A CAS so that a state someone else set is left as it is.
            let _ = self.state.compare_exchange(
                State::INITIALIZING,
                State::FAILED,
                Ordering::Release,
                Ordering::Relaxed,
            );
            crate::os::futex::wake(self.state, u32::MAX);
        }
    }
}
