//! The 128-byte segment header (`SPEC.md` §3).
//!
//! Another process may write any header byte at any time, so the header is only ever accessed
//! as 32 little-endian `u32` words through atomics: the creator stores every word with
//! `Relaxed` ([`store_except_state`]), then the state word with `Release` ([`mark_ready`]),
//! before it publishes the object under its name; an opener loads the state with `Acquire`,
//! then copies all 32 words out ([`observe`]) and validates the copy. No reference to the
//! header's bytes is formed, and every check runs on the copy. The three steps are written on
//! the loom shim's atomics, for any number of words, so that the loom models below drive them
//! on a header of a few words (a model of all 32 racing words would explore 2^31 copies).
//!
//! The state handshake itself ([`mark_ready`], [`acquire_state`]) is written once for both
//! headers that have one: a segment's, whose state word is a `u32` word of its own, and a
//! ShareableList trailer's (`SPEC.md` §9.3), which is accessed in 8-byte words, the state in
//! the low half of the word at offset 56 ([`StateWord`]).

use crate::loom::{fence, AtomicU32, AtomicU64, Ordering};
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
    /// The lifetime named `persistent` or `owned` (as `Display` prints it): the names the
    /// CLI's `--lifetime` and Python's `lifetime=` take.
    ///
    /// ```
    /// use shmkit::segment::Lifetime;
    /// assert_eq!(Lifetime::from_name("owned"), Some(Lifetime::Owned));
    /// assert_eq!(Lifetime::Persistent.to_string(), "persistent");
    /// assert_eq!(Lifetime::from_name("invalid lifetime 2"), None);
    /// ```
    pub fn from_name(s: &str) -> Option<Lifetime> {
        [Lifetime::Persistent, Lifetime::Owned]
            .into_iter()
            .find(|l| l.to_string() == s)
    }

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

/// The header of a mapping, as the words every access goes through.
pub(crate) type Words = [AtomicU32; HEADER_SIZE / 4];

/// The header words of a mapping.
///
/// # Safety
///
/// `base` must point to at least [`HEADER_SIZE`] mapped bytes, 4-byte aligned, that stay
/// mapped for `'a`.
#[cfg(not(loom))]
pub(crate) unsafe fn words<'a>(base: *const u8) -> &'a Words {
    // SAFETY: the caller guarantees the bytes are mapped, aligned and live for 'a; AtomicU32
    // (std's, outside loom) has the size and alignment of u32, any bit pattern is valid, and
    // atomics may be shared with concurrent writers (another process).
    unsafe { &*base.cast::<Words>() }
}

/// Under loom no segment is mapped (the models keep their header words on the heap), and
/// mapped bytes are no loom atomics: the segment code that calls this is built, never run.
///
/// # Safety
///
/// As outside loom; it panics.
#[cfg(loom)]
pub(crate) unsafe fn words<'a>(_base: *const u8) -> &'a Words {
    unreachable!("no segment is mapped under loom")
}

/// Creator, `SPEC.md` §4.1 step 4: store `copy` into `words`, every word except the state word
/// (index `state`, left `INITIALIZING` as the fresh object has it), `Relaxed`: [`mark_ready`]
/// makes them visible.
pub(crate) fn store_except_state<const N: usize>(
    words: &[AtomicU32; N],
    copy: &[u32; N],
    state: usize,
) {
    for (i, (w, v)) in words.iter().zip(copy).enumerate() {
        if i != state {
            w.store(*v, Ordering::Relaxed);
        }
    }
}

/// The atomic word that holds a header's state word (offset 56), with the size every access
/// to it has: the `u32` itself in a segment header (accessed as 32 `u32` words, `SPEC.md` §3),
/// or the 8-byte word at offset 56 of a ShareableList trailer's header (accessed in 8-byte
/// words, `SPEC.md` §9.4 "One size per word"), whose low half (little-endian) is the state and
/// whose high half is the lifetime (offset 60).
pub(crate) trait StateWord {
    /// The state, loaded `Relaxed` (a load that a read-only mapping permits).
    fn load_state(&self) -> u32;
    /// Store `state` with `order`, keeping the rest of the word. Only the creator writes the
    /// word, before it publishes the object, so reading the rest first loses nothing.
    fn store_state(&self, state: u32, order: Ordering);
}

impl StateWord for AtomicU32 {
    fn load_state(&self) -> u32 {
        self.load(Ordering::Relaxed)
    }

    fn store_state(&self, state: u32, order: Ordering) {
        self.store(state, order);
    }
}

impl StateWord for AtomicU64 {
    fn load_state(&self) -> u32 {
        self.load(Ordering::Relaxed) as u32
    }

    fn store_state(&self, state: u32, order: Ordering) {
        // Relaxed: the creator's own earlier store of the lifetime half (or the zeroed
        // object's), which it reads back; `order` is the store's.
        let rest = self.load(Ordering::Relaxed) & !u64::from(u32::MAX);
        self.store(rest | u64::from(state), order);
    }
}

/// Creator, `SPEC.md` §4.1 step 6 (and §9.3 for a list's trailer): store READY in the state
/// word, after every other header word and the payload's initialisation.
pub(crate) fn mark_ready(word: &impl StateWord) {
    // Release pairs with the Acquire (load + fence) in `acquire_state`: an opener that reads
    // READY sees every header word the creator stored and everything the initialiser wrote
    // before this store.
    word.store_state(State::READY, Ordering::Release);
}

/// Opener, `SPEC.md` §3.4 (and §9.3 for a list's trailer): load the state with `Acquire`.
/// Everything the opener copies after this call, if the state was READY, is at least what the
/// creator wrote before [`mark_ready`].
pub(crate) fn acquire_state(word: &impl StateWord) -> u32 {
    // Relaxed load + fence(Acquire): an Acquire load that a read-only (PROT_READ) mapping
    // permits, where std allows no other atomic access (`atomic_copy::load_read_only`'s
    // form, written here with the loom shim's fence so that the models check it). Pairs with
    // the creator's Release store of READY in `mark_ready`.
    let state = word.load_state();
    fence(Ordering::Acquire);
    state
}

/// Opener, `SPEC.md` §3.3 step 6: load the state word (index `state`) with `Acquire`
/// ([`acquire_state`]), then copy every word out. The copy's state word is the value that load
/// read (a second load of it could read READY after the first missed it, with the other words
/// copied stale).
pub(crate) fn observe<const N: usize>(words: &[AtomicU32; N], state: usize) -> [u32; N] {
    let ready = acquire_state(&words[state]);
    // Relaxed: ordered after the state load by `acquire_state`'s fence; these loads only need
    // to be single-copy atomic.
    let mut copy: [u32; N] = std::array::from_fn(|i| words[i].load(Ordering::Relaxed));
    copy[state] = ready;
    copy
}

impl RawHeader {
    /// Copy the header out of shared memory ([`observe`]).
    pub(crate) fn observe(words: &Words) -> RawHeader {
        zerocopy::transmute!(observe(words, STATE_WORD))
    }

    /// Store every word except the state word ([`store_except_state`]).
    pub(crate) fn store_unpublished(&self, words: &Words) {
        let copy: [u32; HEADER_SIZE / 4] = zerocopy::transmute!(*self);
        store_except_state(words, &copy, STATE_WORD);
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
    /// layout `fingerprint`. `bytes` shorter than the header, or without shmkit's magic, give
    /// [`Error::Corrupt`] (an open, which reads the whole object, reports one without the
    /// magic as the kind it holds instead: [`Error::KindMismatch`]).
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

/// What a header copy whose magic is wrong says: [`Error::Corrupt`]'s `what`. An open
/// checks the magic before [`validate`] and reports an object that does not claim to be
/// shmkit's as the kind it holds ([`Error::KindMismatch`], found as `shmkit ls` finds it), so
/// this is for the header copies that do claim it: changed under the opener, or given as bytes
/// ([`HeaderInfo::parse`]).
pub(crate) fn bad_magic(h: &RawHeader) -> String {
    format!(
        "magic is {:02x?}, expected {:02x?}: not a shmkit segment",
        h.magic, MAGIC
    )
}

/// The checks that do not depend on what the opener asks for, in this order: magic, version,
/// flags, header size, payload size against the object size, state, lifetime.
pub(crate) fn validate_self(name: &str, h: &RawHeader, size: u64) -> Result<()> {
    if h.magic != MAGIC {
        return Err(Error::corrupt(name, bad_magic(h)));
    }
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

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// The header words the models race on (magic, kind, payload size, state), as indices into
    /// the 32; the others hold what the creator wrote from the start. Loom explores every
    /// value each racing load may read, so a copy of all 32 racing words is 2^31 executions;
    /// these four, and the payload word, stand for every word.
    const LIVE: [usize; 4] = [0, 3, 8, STATE_WORD];
    /// [`STATE_WORD`]'s index in [`LIVE`].
    const STATE: usize = 3;
    const PAYLOAD: u64 = 64;

    /// The header a creator of a 64-byte segment writes, as its 32 words.
    fn creator_header() -> [u32; HEADER_SIZE / 4] {
        let h = RawHeader {
            magic: MAGIC,
            version: FORMAT_VERSION,
            kind: Kind::EVENT.0,
            fingerprint: 0x1234_5678_9abc_def0,
            header_size: HEADER_SIZE as u64,
            payload_size: PAYLOAD,
            creator_token: 7,
            creator_pid: 42,
            state: State::READY,
            ..RawHeader::default()
        };
        zerocopy::transmute!(h)
    }

    /// The live words of a header.
    fn live(full: &[u32; HEADER_SIZE / 4]) -> [u32; 4] {
        LIVE.map(|i| full[i])
    }

    /// A fresh object's live header words (zero) and a payload word.
    struct Object {
        words: [AtomicU32; 4],
        payload: AtomicU32,
    }

    /// An opener: `observe` the live words, validate the header they make (with every other
    /// word as the creator wrote it) as `open` does. A copy that reads READY is the creator's,
    /// word for word, and so is the payload (`init`'s write); one that does not is never valid.
    fn open(o: &Object) {
        let full = creator_header();
        let copy = observe(&o.words, STATE);
        let payload = o.payload.load(Ordering::Relaxed);
        let mut seen = full;
        for (i, v) in LIVE.iter().zip(copy) {
            seen[*i] = v;
        }
        let raw: RawHeader = zerocopy::transmute!(seen);
        let valid = validate(
            "m",
            &raw,
            HEADER_SIZE as u64 + PAYLOAD,
            Kind::EVENT,
            raw.fingerprint,
        );
        if copy[STATE] == State::READY {
            assert_eq!(copy, live(&full), "READY seen, a header word not");
            assert_eq!(payload, 99, "READY seen, the initialiser's write not");
            assert!(valid.is_ok(), "{valid:?}");
        } else {
            assert!(
                valid.is_err(),
                "a header without READY was accepted: {copy:?}"
            );
        }
    }

    /// A creator builds the header (`store_except_state`), initialises the payload and, unless
    /// it dies first, marks the header ready (`mark_ready`); two openers copy it meanwhile
    /// (`observe`), and a third after the creator is gone (its words stay).
    fn creator_and_openers(dies_before_ready: bool) {
        crate::queue::loom_model(move || {
            let o = Arc::new(Object {
                words: Default::default(),
                payload: AtomicU32::new(0),
            });
            let creator = {
                let o = o.clone();
                thread::spawn(move || {
                    store_except_state(&o.words, &live(&creator_header()), STATE);
                    o.payload.store(99, Ordering::Relaxed); // the initialiser
                    if !dies_before_ready {
                        mark_ready(&o.words[STATE]);
                    }
                })
            };
            let opener = {
                let o = o.clone();
                thread::spawn(move || open(&o))
            };
            open(&o);
            creator.join().unwrap();
            opener.join().unwrap();
            open(&o);
            if dies_before_ready {
                assert_ne!(o.words[STATE].load(Ordering::Relaxed), State::READY);
            }
        });
    }

    #[test]
    fn loom_header_ready_publishes_every_word() {
        creator_and_openers(false);
    }

    #[test]
    fn loom_header_of_a_creator_dead_before_ready_is_never_valid() {
        creator_and_openers(true);
    }
}
