//! The 128-byte segment header (`SPEC.md` §3).
//!
//! Another process may write any header byte at any time, so the header is only ever accessed
//! as 32 little-endian `u32` words through atomics: the creator stores every word with
//! `Relaxed`, then the state word with `Release`; an opener loads the state with `Acquire`,
//! then copies all 32 words out and validates the copy. No reference to the header's bytes is
//! formed, and every check runs on the copy.

use serde::Serialize;
use std::sync::atomic::{AtomicU32, Ordering};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::kind::Kind;
use crate::error::{Error, Result};
use crate::os::atomic_copy;

/// Magic bytes at offset 0 of every shmkit segment (PNG-style: non-ASCII first byte, then a
/// name, then a line ending to catch text-mode mangling).
pub const MAGIC: [u8; 8] = *b"\x89SHMKIT\n";
/// The header format version this build writes and accepts.
pub const FORMAT_VERSION: u32 = 1;
/// Header size in bytes; the payload starts at this offset (a multiple of 64).
pub const HEADER_SIZE: usize = 128;

pub(crate) const STATE_WORD: usize = 14; // offset 56
pub(crate) const PID_WORD: usize = 12; // offset 48

/// The header's publication state (offset 56).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// 0: the creator is still initialising (a fresh segment reads as zero).
    Initializing,
    /// 1: published; every other field is final.
    Ready,
    /// 2: the creator failed to initialise it and is unlinking it.
    Failed,
    /// 3: its creator died while initialising and an opener is removing it.
    Abandoned,
    /// Any other value: corrupt.
    Invalid(u32),
}

impl State {
    pub(crate) const INITIALIZING: u32 = 0;
    pub(crate) const READY: u32 = 1;
    pub(crate) const FAILED: u32 = 2;
    pub(crate) const ABANDONED: u32 = 3;

    pub(crate) fn from_word(w: u32) -> State {
        match w {
            Self::INITIALIZING => State::Initializing,
            Self::READY => State::Ready,
            Self::FAILED => State::Failed,
            Self::ABANDONED => State::Abandoned,
            x => State::Invalid(x),
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
    pub creator_start: u64,   // 40
    pub creator_pid: u32,     // 48
    pub flags: u32,           // 52
    pub state: u32,           // 56
    pub reserved0: u32,       // 60
    pub created_unix_ns: u64, // 64
    pub creator_pidns: u64,   // 72
    pub reserved: [u64; 6],   // 80..128
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == HEADER_SIZE);
const _: () = assert!(std::mem::offset_of!(RawHeader, state) == STATE_WORD * 4);
const _: () = assert!(std::mem::offset_of!(RawHeader, creator_pid) == PID_WORD * 4);

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
        // creator's Release CAS to READY); these loads only need to be single-copy atomic.
        let copy: [u32; HEADER_SIZE / 4] =
            std::array::from_fn(|i| words[i].load(Ordering::Relaxed));
        zerocopy::transmute!(copy)
    }

    /// Store every word except the state word (Relaxed; made visible by the creator's Release
    /// CAS of the state to READY). The pid
    /// word is stored last with Release, so an opener that sees a pid (Acquire in
    /// `creator`) also sees the start time beside it.
    pub(crate) fn store_unpublished(&self, words: &[AtomicU32; HEADER_SIZE / 4]) {
        let copy: [u32; HEADER_SIZE / 4] = zerocopy::transmute!(*self);
        for (i, w) in copy.iter().enumerate() {
            if i != STATE_WORD && i != PID_WORD {
                words[i].store(*w, Ordering::Relaxed);
            }
        }
        words[PID_WORD].store(copy[PID_WORD], Ordering::Release);
    }

    /// Parse from bytes read by a plain `read` (used by `ls`, which does not map).
    pub(crate) fn from_prefix(bytes: &[u8]) -> Option<RawHeader> {
        RawHeader::read_from_prefix(bytes).ok().map(|(h, _)| h)
    }
}

/// How much of the magic an opener sees while a segment is initialising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MagicProgress {
    /// Both words are shmkit's.
    Complete,
    /// Each word is either zero or shmkit's (the creator may be writing it).
    Partial,
    /// Some word is neither: not a shmkit segment.
    Foreign,
}

/// Classify the magic words (Relaxed loads: a racing creator may be writing them).
pub(crate) fn magic_progress(words: &[AtomicU32; HEADER_SIZE / 4]) -> MagicProgress {
    let want = [
        u32::from_le_bytes([MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3]]),
        u32::from_le_bytes([MAGIC[4], MAGIC[5], MAGIC[6], MAGIC[7]]),
    ];
    let got = [
        words[0].load(Ordering::Relaxed),
        words[1].load(Ordering::Relaxed),
    ];
    if got == want {
        MagicProgress::Complete
    } else if got.iter().zip(want).all(|(g, w)| *g == 0 || *g == w) {
        MagicProgress::Partial
    } else {
        MagicProgress::Foreign
    }
}

/// The recorded creator `(pid, start time)`, as far as it has been written.
pub(crate) fn creator(words: &[AtomicU32; HEADER_SIZE / 4]) -> (u32, u64) {
    // Acquire pairs with the Release store of the pid in `store_unpublished`. A Relaxed load
    // and an acquire fence: the words may be a PROT_READ mapping (a read-only opener), where
    // std permits no other atomic load.
    let pid = atomic_copy::load_read_only(Ordering::Acquire, || {
        words[PID_WORD].load(Ordering::Relaxed)
    });
    let lo = words[10].load(Ordering::Relaxed) as u64;
    let hi = words[11].load(Ordering::Relaxed) as u64;
    (pid, lo | (hi << 32))
}

/// A validated copy of a segment header, as `shmkit info` shows it.
#[derive(Debug, Clone, Serialize)]
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
    /// Creator's pid (offset 48).
    pub creator_pid: u32,
    /// Creator's start time in clock ticks since boot (offset 40).
    pub creator_start_time: u64,
    /// When the segment was created, nanoseconds since the Unix epoch (offset 64).
    pub created_unix_ns: u64,
    /// The creator's pid namespace, the inode number of its `/proc/self/ns/pid` (offset 72);
    /// 0 if not recorded.
    pub creator_pid_namespace: u64,
    /// Publication state (offset 56).
    pub state: State,
}

impl HeaderInfo {
    /// Validate a copy of a header's bytes exactly as [`Segment`](crate::Segment)'s `open`
    /// does, for an object of `object_size` bytes (from `fstat`) that should hold `kind` with
    /// layout `fingerprint`. `bytes` shorter than the header give [`Error::Corrupt`]. A header
    /// whose state is not READY is reported as it is (`open` waits for READY first).
    ///
    /// ```
    /// use shmkit::segment::{HeaderInfo, Kind};
    /// let err = HeaderInfo::parse("x", &[0u8; 16], 16, Kind::BYTES, 0).unwrap_err();
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
            creator_pid: h.creator_pid,
            creator_start_time: h.creator_start,
            created_unix_ns: h.created_unix_ns,
            creator_pid_namespace: h.creator_pidns,
            state: State::from_word(h.state),
        }
    }

    /// Whether the creator process still runs.
    pub fn creator_liveness(&self) -> crate::Liveness {
        crate::os::process::liveness(self.creator_pid, self.creator_start_time)
    }
}

/// Check a header copy against the object size and the expected kind and layout, in this
/// order: magic, version, header size, payload size, kind, fingerprint (`SPEC.md` §3.3).
pub(crate) fn validate(
    name: &str,
    h: &RawHeader,
    size: u64,
    kind: Kind,
    fp: u64,
) -> Result<HeaderInfo> {
    if h.magic != MAGIC {
        return Err(Error::corrupt(
            name,
            format!(
                "magic is {:02x?}, expected {:02x?}: not a shmkit segment (a raw one? open it with .raw(true))",
                h.magic, MAGIC
            ),
        ));
    }
    if h.flags != 0 {
        return Err(Error::corrupt(
            name,
            format!("flags are {:#x}, expected 0", h.flags),
        ));
    }
    if h.version != FORMAT_VERSION {
        return Err(Error::VersionMismatch {
            name: name.to_owned(),
            expected: FORMAT_VERSION,
            found: h.version,
        });
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
    if usize::try_from(h.payload_size).is_err() {
        return Err(Error::corrupt(
            name,
            "payload larger than the address space",
        ));
    }
    Ok(HeaderInfo::from_raw(h))
}
