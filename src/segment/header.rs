//! The 128-byte segment header (`SPEC.md` §3).
//!
//! Another process may write any header byte at any time, so the header is only ever accessed
//! as 32 little-endian `u32` words through atomics: the creator stores every word with
//! `Relaxed`, then the state word with `Release`, before it publishes the object under its
//! name; an opener loads the state with `Acquire`, then copies all 32 words out and validates
//! the copy. No reference to the header's bytes is formed, and every check runs on the copy.

use std::sync::atomic::{AtomicU32, Ordering};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::kind::Kind;
use crate::error::{Error, Result};

/// Magic bytes at offset 0 of every shmkit segment (PNG-style: non-ASCII first byte, then a
/// name, then a line ending to catch text-mode mangling).
pub const MAGIC: [u8; 8] = *b"\x89SHMKIT\n";
/// The header format version this build writes and accepts. Version 2 records the creator's
/// liveness token and the lifetime policy (version 1 recorded a pid and start time).
pub const FORMAT_VERSION: u32 = 2;
/// Header size in bytes; the payload starts at this offset (a multiple of 64).
pub const HEADER_SIZE: usize = 128;

pub(crate) const STATE_WORD: usize = 14; // offset 56

/// The header's publication state (offset 56).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// 0: the creator is still building it. Only ever seen under a temporary name: an object
    /// is published under its name only once it is ready.
    Initializing,
    /// 1: ready; every other field is final.
    Ready,
    /// Any other value: corrupt.
    Invalid(u32),
}

impl State {
    pub(crate) const INITIALIZING: u32 = 0;
    pub(crate) const READY: u32 = 1;

    pub(crate) fn from_word(w: u32) -> State {
        match w {
            Self::INITIALIZING => State::Initializing,
            Self::READY => State::Ready,
            x => State::Invalid(x),
        }
    }
}

/// Who may remove an object (header offset 60): what `gc` may collect.
///
/// ```
/// use shmkit::segment::Lifetime;
/// # let name = format!("doc-lifetime-{}", std::process::id());
/// let s = shmkit::Segment::options()
///     .lifetime(Lifetime::Owned) // gc may remove it once this process is dead
///     .unlink_on_drop(true)
///     .create(&name, 64)?;
/// assert_eq!(s.header().unwrap().lifetime, Lifetime::Owned);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifetime {
    /// 0: lives until someone unlinks it (`shmkit rm`, [`Segment::unlink`](crate::Segment::unlink)
    /// or an `unlink_on_drop` handle); `gc` never removes it. The default.
    #[default]
    Persistent,
    /// 1: belongs to its creator: `gc` removes it once the creator is dead and no process maps
    /// it. For objects that must not outlive a crashed creator.
    Owned,
    /// Any other value: a corrupt header, or a newer shmkit's policy. Never created; opens
    /// refuse it and `gc` keeps it.
    Invalid(u32),
}

impl Lifetime {
    pub(crate) fn from_word(w: u32) -> Lifetime {
        match w {
            0 => Lifetime::Persistent,
            1 => Lifetime::Owned,
            x => Lifetime::Invalid(x),
        }
    }

    pub(crate) fn word(self) -> u32 {
        match self {
            Lifetime::Persistent => 0,
            Lifetime::Owned => 1,
            Lifetime::Invalid(x) => x,
        }
    }
}

impl std::fmt::Display for Lifetime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lifetime::Persistent => f.write_str("persistent"),
            Lifetime::Owned => f.write_str("owned"),
            Lifetime::Invalid(x) => write!(f, "invalid lifetime {x}"),
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Initializing => f.write_str("initializing"),
            State::Ready => f.write_str("ready"),
            State::Invalid(x) => write!(f, "invalid state {x}"),
        }
    }
}

/// The header as plain integers (little-endian on every supported target).
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct RawHeader {
    pub magic: [u8; 8],       // 0
    pub version: u32,         // 8
    pub kind: u32,            // 12
    pub fingerprint: u64,     // 16
    pub header_size: u64,     // 24
    pub payload_size: u64,    // 32
    pub creator_token: u64,   // 40
    pub creator_pid: u32,     // 48
    pub flags: u32,           // 52
    pub state: u32,           // 56
    pub lifetime: u32,        // 60
    pub created_unix_ns: u64, // 64
    pub creator_pidns: u64,   // 72
    pub reserved: [u64; 6],   // 80..128
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == HEADER_SIZE);
const _: () = assert!(std::mem::offset_of!(RawHeader, state) == STATE_WORD * 4);
const _: () = assert!(std::mem::offset_of!(RawHeader, creator_token) == 40);
const _: () = assert!(std::mem::offset_of!(RawHeader, lifetime) == 60);

/// The header words of a mapping.
///
/// # Safety
///
/// `base` must point to at least [`HEADER_SIZE`] mapped bytes, 4-byte aligned, that stay
/// mapped for `'a`.
pub(crate) unsafe fn words<'a>(base: *const u8) -> &'a [AtomicU32; HEADER_SIZE / 4] {
    // SAFETY: the caller guarantees the bytes are mapped, aligned and live for 'a; AtomicU32
    // has the size and alignment of u32, any bit pattern is valid, and atomics may be shared
    // with concurrent writers (another process).
    unsafe { &*base.cast::<[AtomicU32; HEADER_SIZE / 4]>() }
}

impl RawHeader {
    /// Copy the header out of shared memory, word by word.
    pub(crate) fn load(words: &[AtomicU32; HEADER_SIZE / 4]) -> RawHeader {
        // Relaxed: the caller has already loaded the state word with Acquire (pairs with the
        // creator's Release store of READY); these loads only need to be single-copy atomic.
        let copy: [u32; HEADER_SIZE / 4] =
            std::array::from_fn(|i| words[i].load(Ordering::Relaxed));
        zerocopy::transmute!(copy)
    }

    /// Store every word except the state word (Relaxed; made visible by the creator's Release
    /// store of READY).
    pub(crate) fn store_unpublished(&self, words: &[AtomicU32; HEADER_SIZE / 4]) {
        let copy: [u32; HEADER_SIZE / 4] = zerocopy::transmute!(*self);
        for (i, w) in copy.iter().enumerate() {
            if i != STATE_WORD {
                words[i].store(*w, Ordering::Relaxed);
            }
        }
    }

    /// Parse from bytes read by a plain `read` (used by `ls`, which does not map).
    pub(crate) fn from_prefix(bytes: &[u8]) -> Option<RawHeader> {
        RawHeader::read_from_prefix(bytes).ok().map(|(h, _)| h)
    }
}

/// A copy of a segment header, as `shmkit info` shows it. From an opened segment it is the
/// validated header; from [`probe`](super::probe) it is what the bytes say, checked or not
/// (see [`Probe::verdict`](super::Probe::verdict)).
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    /// Format version (offset 8).
    pub version: u32,
    /// Object kind (offset 12).
    pub kind: Kind,
    /// Layout fingerprint (offset 16).
    pub fingerprint: u64,
    /// Header size = payload offset (offset 24).
    pub header_size: u64,
    /// Payload size in bytes (offset 32).
    pub payload_size: u64,
    /// The creator's liveness token (offset 40): what decides whether the creator still runs,
    /// in any pid namespace that shares `/dev/shm`.
    pub creator_token: u64,
    /// The creator's pid in its own pid namespace (offset 48), for display only.
    pub creator_pid: u32,
    /// Publication state (offset 56).
    pub state: State,
    /// Who may remove it (offset 60).
    pub lifetime: Lifetime,
    /// When the segment was created, nanoseconds since the Unix epoch (offset 64).
    pub created_unix_ns: u64,
    /// The creator's pid namespace, the inode number of its `/proc/self/ns/pid` (offset 72);
    /// 0 if not recorded.
    pub creator_pid_namespace: u64,
}

impl HeaderInfo {
    /// Validate a copy of a header's bytes exactly as [`Segment`](crate::Segment)'s `open`
    /// does, for an object of `object_size` bytes (from `fstat`) that should hold `kind` with
    /// layout `fingerprint`. `bytes` shorter than the header give [`Error::Corrupt`].
    ///
    /// ```
    /// use shmkit::segment::{HeaderInfo, Kind};
    /// let err = HeaderInfo::parse("x", &[0u8; 16], 16, Kind::SEGMENT, 0).unwrap_err();
    /// assert!(matches!(err, shmkit::Error::Corrupt { .. }));
    /// ```
    pub fn parse(
        name: &str,
        bytes: &[u8],
        object_size: u64,
        kind: Kind,
        fingerprint: u64,
    ) -> Result<HeaderInfo> {
        let Some(h) = RawHeader::from_prefix(bytes) else {
            return Err(Error::corrupt(
                name,
                format!(
                    "{} bytes, smaller than the {HEADER_SIZE}-byte header",
                    bytes.len()
                ),
            ));
        };
        validate(name, &h, object_size, kind, fingerprint)
    }

    pub(crate) fn from_raw(h: &RawHeader) -> HeaderInfo {
        HeaderInfo {
            version: h.version,
            kind: Kind(h.kind),
            fingerprint: h.fingerprint,
            header_size: h.header_size,
            payload_size: h.payload_size,
            creator_token: h.creator_token,
            creator_pid: h.creator_pid,
            state: State::from_word(h.state),
            lifetime: Lifetime::from_word(h.lifetime),
            created_unix_ns: h.created_unix_ns,
            creator_pid_namespace: h.creator_pidns,
        }
    }

    /// Whether the creator process still runs, judged by its liveness token (`Unknown` for a
    /// token of 0, or a liveness file this user cannot read). Makes a few system calls; never
    /// changes anything.
    pub fn creator_liveness(&self) -> crate::Liveness {
        crate::os::liveness::liveness(self.creator_token)
    }
}

/// Check a header copy against the object size and the expected kind and layout: every
/// check of [`validate_self`], then kind, then fingerprint (`SPEC.md` §3.3).
pub(crate) fn validate(
    name: &str,
    h: &RawHeader,
    size: u64,
    kind: Kind,
    fp: u64,
) -> Result<HeaderInfo> {
    // The magic first, so that the hint to open it raw is given only to an opener of a plain
    // segment: no other kind has a raw form.
    check_magic(name, h, kind == Kind::SEGMENT)?;
    validate_self(name, h, size)?;
    if h.kind != kind.0 {
        return Err(Error::KindMismatch {
            name: name.to_owned(),
            expected: kind.to_string(),
            found: Kind(h.kind).to_string(),
        });
    }
    if h.fingerprint != fp {
        return Err(Error::LayoutMismatch {
            name: name.to_owned(),
            expected: fp,
            found: h.fingerprint,
        });
    }
    Ok(HeaderInfo::from_raw(h))
}

/// The magic check: [`Error::Corrupt`] if `h` does not start with shmkit's magic, with a hint
/// to open the object raw if `raw_hint` (an opener of a plain segment, the one kind with a
/// raw form).
fn check_magic(name: &str, h: &RawHeader, raw_hint: bool) -> Result<()> {
    if h.magic == MAGIC {
        return Ok(());
    }
    Err(Error::corrupt(
        name,
        format!(
            "magic is {:02x?}, expected {:02x?}: not a shmkit segment{}",
            h.magic,
            MAGIC,
            if raw_hint {
                " (a raw one? open it with .raw(true))"
            } else {
                ""
            }
        ),
    ))
}

/// The checks that do not depend on what the opener asks for, in this order: magic, version,
/// flags, header size, payload size against the object size, state, lifetime.
pub(crate) fn validate_self(name: &str, h: &RawHeader, size: u64) -> Result<()> {
    check_magic(name, h, true)?;
    if h.version != FORMAT_VERSION {
        return Err(Error::VersionMismatch {
            name: name.to_owned(),
            expected: FORMAT_VERSION,
            found: h.version,
        });
    }
    if h.flags != 0 {
        return Err(Error::corrupt(
            name,
            format!("flags are {:#x}, expected 0", h.flags),
        ));
    }
    if h.header_size != HEADER_SIZE as u64 {
        return Err(Error::corrupt(
            name,
            format!("header_size is {}, expected {HEADER_SIZE}", h.header_size),
        ));
    }
    match h.payload_size.checked_add(HEADER_SIZE as u64) {
        Some(total) if total == size => {}
        _ => {
            return Err(Error::corrupt(
                name,
                format!(
                    "payload_size {} + header {HEADER_SIZE} does not match the object size {size} (truncated or resized?)",
                    h.payload_size
                ),
            ))
        }
    }
    if h.state != State::READY {
        // An object is published under its name only after its creator stored READY, so
        // anything else was written by someone else later.
        return Err(Error::corrupt(
            name,
            format!(
                "state word is {}, expected {} (ready): published objects are always ready, so \
                 the header was overwritten",
                h.state,
                State::READY
            ),
        ));
    }
    if let Lifetime::Invalid(x) = Lifetime::from_word(h.lifetime) {
        return Err(Error::corrupt(
            name,
            format!("lifetime word is {x}, expected 0 (persistent) or 1 (owned)"),
        ));
    }
    if usize::try_from(h.payload_size).is_err() {
        return Err(Error::corrupt(
            name,
            "payload larger than the address space",
        ));
    }
    Ok(())
}
