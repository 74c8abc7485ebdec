//! [`Segment`]: a named, sized, validated mapping.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::header::{self, HeaderInfo, RawHeader, State, FORMAT_VERSION, HEADER_SIZE, MAGIC};
use super::kind::{fingerprint, Kind};
use super::name::validate_name;
use crate::error::{Error, Result};
use crate::loom::futex::Wait;
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
/// bytes in and out ([`read_at`](Self::read_at), [`write_at`](Self::write_at)), offers
/// atomics ([`atomic_u64`](Self::atomic_u64)), and raw pointers for code that documents its
/// own protocol. The header is validated once at open; what a hostile writer changes later is
/// not re-checked. A process that *truncates* the object under a live mapping makes accesses
/// past the new end fault with `SIGBUS`; shmkit cannot prevent that, so do not share a name
/// with processes you do not trust to leave its size alone.
///
/// ```
/// use shmkit::Segment;
/// # let name = format!("doc-seg-{}", std::process::id());
/// let a = Segment::options().unlink_on_drop(true).create(&name, 64)?;
/// a.atomic_u64(0)?.store(7, std::sync::atomic::Ordering::Release);
/// let b = Segment::options().read_only().open(&name)?;
/// assert_eq!(b.atomic_u64(0)?.load(std::sync::atomic::Ordering::Acquire), 7);
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
    /// Concurrent writers of the same bytes may interleave (no tearing guarantee beyond a
    /// byte); synchronise with a lock or atomics.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let at = self.check_range(offset, data.len())?;
        // SAFETY: check_range proved [at, at + len) lies inside the writable payload mapping;
        // the source is a distinct local slice.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.ptr().add(at), data.len()) };
        Ok(())
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
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.check_range(offset, buf.len())?;
        // SAFETY: check_range proved [at, at + len) lies inside the mapping; the destination
        // is a distinct local slice.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.ptr().add(at), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// The 8-byte-aligned `u64` at payload `offset`, as an atomic shared with every process
    /// that maps the segment. (On a read-only segment, use only loads.)
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64> {
        let at = self.check_range(offset, 8)?;
        if offset % 8 != 0 {
            return Err(Error::invalid(
                &self.name,
                format!("offset {offset} is not 8-byte aligned"),
            ));
        }
        // SAFETY: in bounds and aligned (payload offsets are multiples of 64, the mapping is
        // page-aligned); every bit pattern is a valid AtomicU64; atomics tolerate concurrent
        // access from other processes; the reference lives no longer than the mapping.
        Ok(unsafe { &*self.map.ptr().add(at).cast::<AtomicU64>() })
    }

    /// The 4-byte-aligned `u32` at payload `offset`, as a shared atomic.
    pub fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32> {
        let at = self.check_range(offset, 4)?;
        if offset % 4 != 0 {
            return Err(Error::invalid(
                &self.name,
                format!("offset {offset} is not 4-byte aligned"),
            ));
        }
        // SAFETY: as in atomic_u64, with 4-byte alignment.
        Ok(unsafe { &*self.map.ptr().add(at).cast::<AtomicU32>() })
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
            if shm::stat_path(&self.name).is_some_and(|st| st.identity == self.identity) {
                let _ = shm::unlink(&self.name);
            }
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
        let deadline = Instant::now() + self.cfg.timeout;
        match self.open_existing(name, deadline)? {
            Opened::Segment(s) => Ok(s),
            Opened::Vanished(detail) => Err(Error::NotReady {
                name: name.to_owned(),
                waited: self.cfg.timeout,
                detail,
            }),
        }
    }

    fn open_existing(&self, name: &str, deadline: Instant) -> Result<Opened<A>> {
        let how = if A::WRITABLE {
            OpenMode::ReadWrite
        } else {
            OpenMode::ReadOnly
        };
        let fd = shm::open(name, how).map_err(|e| Error::from_io(name, "open", e))?;
        let identity = identity(&fd, name)?;
        // A fresh object is 0 bytes until its creator's ftruncate: wait for a size.
        let size = loop {
            let st = shm::stat(&fd).map_err(|e| Error::from_io(name, "fstat", e))?;
            if st.size > 0 {
                break st.size;
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    name: name.to_owned(),
                    waited: self.cfg.timeout,
                    detail: "the object is still 0 bytes: its creator never sized it".into(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        };
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
                format!("it is {size} bytes, smaller than the {HEADER_SIZE}-byte shmkit header (a raw segment? open it with .raw(true))"),
            ));
        }
        let map =
            Mapping::new(&fd, size, A::WRITABLE).map_err(|e| Error::from_io(name, "mmap", e))?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked above), page-aligned,
        // and lives as long as `map`, which outlives every use of `words` below.
        let words = unsafe { header::words(map.ptr()) };
        match wait_published(name, words, deadline, self.cfg.timeout)? {
            Published::Ready => {}
            Published::Gone(detail) => return Ok(Opened::Vanished(detail)),
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

/// Wait for the state word to become READY (Acquire), up to `deadline`.
fn wait_published(
    name: &str,
    words: &[AtomicU32; HEADER_SIZE / 4],
    deadline: Instant,
    timeout: Duration,
) -> Result<Published> {
    let state = &words[header::STATE_WORD];
    loop {
        // Acquire pairs with the Release store of READY in `create_inner`: every header word
        // and the payload the creator initialised are visible after it.
        match state.load(Ordering::Acquire) {
            State::READY => return Ok(Published::Ready),
            State::INITIALIZING => {}
            State::FAILED => {
                return Ok(Published::Gone(
                    "its creator failed to initialise it".into(),
                ))
            }
            State::ABANDONED => {
                return Ok(Published::Gone(
                    "its creator died while initialising it".into(),
                ));
            }
            x => {
                return Err(Error::corrupt(
                    name,
                    format!("state word is {x}, expected 0..=3"),
                ))
            }
        }
        let (pid, start) = header::creator(words);
        if pid != 0 && process::liveness(pid, start) == Liveness::Dead {
            // Claim the cleanup so that exactly one opener unlinks the abandoned object.
            // AcqRel: nothing is published by it; it only decides who unlinks.
            if state
                .compare_exchange(
                    State::INITIALIZING,
                    State::ABANDONED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                let _ = shm::unlink(name);
                crate::os::futex::wake(state, u32::MAX);
            }
            continue;
        }
        if Instant::now() >= deadline {
            let detail = match pid {
                0 => "its creator has not recorded its pid yet".to_string(),
                p => format!("creator pid {p} is alive but has not published it"),
            };
            return Err(Error::NotReady {
                name: name.to_owned(),
                waited: timeout,
                detail,
            });
        }
        // Sleep on the state word; wake at least every 10 ms to re-check the creator.
        let slice = (Instant::now() + Duration::from_millis(10)).min(deadline);
        let _: Wait = crate::os::futex::wait(state, State::INITIALIZING, Some(slice));
    }
}

fn identity(fd: &std::os::fd::OwnedFd, name: &str) -> Result<(u64, u64)> {
    Ok(shm::stat(fd)
        .map_err(|e| Error::from_io(name, "fstat", e))?
        .identity)
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
    /// Openers never see the payload before `init` returns. If `init` fails, the segment is
    /// unlinked and the error returned.
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
    pub fn open_or_create(&self, name: &str, size: u64) -> Result<Segment> {
        self.open_or_create_with(name, size, |_| Ok(()))
    }

    /// Open the segment if it exists; otherwise create it and run `init` before publishing.
    ///
    /// Between unrelated processes racing on one name, exactly one creates (`O_EXCL` decides)
    /// and runs `init`; the others wait for the state word to turn READY and then validate
    /// the header as [`open`](Self::open) does. If the creator fails or dies before
    /// publishing, the object is removed and the race starts again, until the open timeout.
    pub fn open_or_create_with(
        &self,
        name: &str,
        size: u64,
        mut init: impl FnMut(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        validate_name(name)?;
        self.check_create_args(name, size)?;
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            match self.create_inner(name, size, &mut init) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match self.open_existing(name, deadline) {
                Ok(Opened::Segment(s)) => return Ok(s),
                // Removed between our create and our open, or abandoned: race again.
                Ok(Opened::Vanished(_)) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    name: name.to_owned(),
                    waited: self.cfg.timeout,
                    detail: "the name kept being created and removed by others".into(),
                });
            }
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
        // From here on the name is ours: undo it on any failure.
        let undo = |e: Error| {
            let _ = shm::unlink(name);
            e
        };
        let total = if self.cfg.raw {
            size
        } else {
            size + HEADER_SIZE as u64
        };
        let identity = identity(&fd, name).map_err(undo)?;
        shm::set_len(&fd, total).map_err(|e| undo(Error::from_io(name, "ftruncate", e)))?;
        let map =
            Mapping::new(&fd, total, true).map_err(|e| undo(Error::from_io(name, "mmap", e)))?;
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
            init(&seg).map_err(undo)?;
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
            created_unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            ..RawHeader::default()
        };
        // SAFETY: the mapping is `total >= HEADER_SIZE` bytes, page-aligned, and lives in
        // `seg` for as long as `words` is used.
        let words = unsafe { header::words(seg.map.ptr()) };
        raw.store_unpublished(words);
        let state = &words[header::STATE_WORD];
        if let Err(e) = init(&seg) {
            // Release pairs with the Acquire in `wait_published`: waiters see FAILED and race again.
            state.store(State::FAILED, Ordering::Release);
            crate::os::futex::wake(state, u32::MAX);
            return Err(undo(e));
        }
        // Publish last. Release pairs with the Acquire load in `wait_published`: an opener that
        // sees READY sees every header word and everything `init` wrote.
        state.store(State::READY, Ordering::Release);
        crate::os::futex::wake(state, u32::MAX);
        seg.header = Some(HeaderInfo::from_raw(&RawHeader {
            state: State::READY,
            ..raw
        }));
        seg.unlink_on_drop = self.cfg.unlink_on_drop;
        Ok(seg)
    }
}
