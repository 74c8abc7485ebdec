//! Object kinds recorded in the header, and layout fingerprints.

use std::fmt;

/// What a segment holds: the header's `kind` field. Unknown values are kept as they are so
/// that `shmkit ls` can show segments written by a newer build.
///
/// Each kind has one name ([`Kind::name`], `Display`, `serde`), the same everywhere: `shmkit ls`,
/// `info`, `queue stat` and [`QueueStat::kind`](crate::queue::QueueStat::kind) print it, and
/// `shmkit queue create --kind` takes it ([`Kind::from_name`]).
///
/// ```
/// use shmkit::Kind;
/// assert_eq!(Kind::BYTES_RING.to_string(), "bytes-ring");
/// assert_eq!(Kind::from_name("segment"), Some(Kind::SEGMENT));
/// assert_eq!(Kind::from_name("bytes"), None);
/// // Hyphens, as printed: the underscore spelling is not a kind name.
/// assert_eq!(Kind::SHAREABLE_LIST.to_string(), "shareable-list");
/// assert_eq!(Kind::from_name("shareable-list"), Some(Kind::SHAREABLE_LIST));
/// assert_eq!(Kind::from_name("shareable_list"), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kind(pub u32);

impl Kind {
    /// A plain segment of bytes: a [`Segment`](crate::Segment) created directly.
    pub const SEGMENT: Kind = Kind(1);
    /// A robust `Lock`.
    pub const LOCK: Kind = Kind(2);
    /// A robust recursive `RLock`.
    pub const RLOCK: Kind = Kind(3);
    /// A `Semaphore`.
    pub const SEMAPHORE: Kind = Kind(4);
    /// A `BoundedSemaphore`.
    pub const BOUNDED_SEMAPHORE: Kind = Kind(5);
    /// A `Condition` with its lock.
    pub const CONDITION: Kind = Kind(6);
    /// An `Event`.
    pub const EVENT: Kind = Kind(7);
    /// A `Barrier`.
    pub const BARRIER: Kind = Kind(8);
    /// A typed `Value<T>` cell.
    pub const VALUE: Kind = Kind(16);
    /// A typed `Array<T>`.
    pub const ARRAY: Kind = Kind(17);
    /// A `ShareableList` in CPython's byte layout (its shmkit header is a trailer after the
    /// CPython area, not at byte 0: `SPEC.md`, ShareableList section).
    pub const SHAREABLE_LIST: Kind = Kind(24);
    /// A single-producer single-consumer queue of `T`.
    pub const SPSC_QUEUE: Kind = Kind(32);
    /// A multi-producer multi-consumer queue of `T`.
    pub const MPMC_QUEUE: Kind = Kind(33);
    /// A variable-length byte-message ring.
    pub const BYTES_RING: Kind = Kind(34);
    /// A multi-producer multi-consumer queue of byte messages.
    pub const MPMC_BYTES: Kind = Kind(35);
    /// A zero-copy frame pool and channel.
    pub const FRAMES: Kind = Kind(48);

    const NAMES: &'static [(Kind, &'static str)] = &[
        (Kind::SEGMENT, "segment"),
        (Kind::LOCK, "lock"),
        (Kind::RLOCK, "rlock"),
        (Kind::SEMAPHORE, "semaphore"),
        (Kind::BOUNDED_SEMAPHORE, "bounded-semaphore"),
        (Kind::CONDITION, "condition"),
        (Kind::EVENT, "event"),
        (Kind::BARRIER, "barrier"),
        (Kind::VALUE, "value"),
        (Kind::ARRAY, "array"),
        (Kind::SHAREABLE_LIST, "shareable-list"),
        (Kind::SPSC_QUEUE, "spsc"),
        (Kind::MPMC_QUEUE, "mpmc"),
        (Kind::BYTES_RING, "bytes-ring"),
        (Kind::MPMC_BYTES, "mpmc-bytes"),
        (Kind::FRAMES, "frames"),
    ];

    /// The queue kinds, in the order `shmkit queue create --kind` lists them.
    pub const QUEUES: &'static [Kind] = &[
        Kind::SPSC_QUEUE,
        Kind::MPMC_QUEUE,
        Kind::BYTES_RING,
        Kind::MPMC_BYTES,
    ];

    /// The kind's name as `shmkit ls` prints it, or `None` for a value this build does not know.
    pub const fn name(self) -> Option<&'static str> {
        let mut i = 0;
        while i < Self::NAMES.len() {
            if Self::NAMES[i].0 .0 == self.0 {
                return Some(Self::NAMES[i].1);
            }
            i += 1;
        }
        None
    }

    /// The kind as a noun phrase with its indefinite article, for messages: "an array",
    /// "an event", "a value", "an rlock", "an mpmc-bytes queue", "a frames channel". The name
    /// is [`Kind::name`]'s, so a user can type it back (`shmkit queue create --kind`); a name
    /// that is not a noun (an abbreviation, a plural) is followed by one, and an unknown
    /// kind reads "an unknown kind 99".
    ///
    /// ```
    /// use shmkit::Kind;
    /// assert_eq!(Kind::ARRAY.with_article(), "an array");
    /// assert_eq!(Kind::EVENT.with_article(), "an event");
    /// assert_eq!(Kind::VALUE.with_article(), "a value");
    /// assert_eq!(Kind::MPMC_BYTES.with_article(), "an mpmc-bytes queue");
    /// assert_eq!(Kind::SPSC_QUEUE.with_article(), "an spsc queue");
    /// assert_eq!(Kind::FRAMES.with_article(), "a frames channel");
    /// assert_eq!(Kind(99).with_article(), "an unknown kind 99");
    /// ```
    pub fn with_article(self) -> String {
        Self::phrase(&self.to_string())
    }

    /// [`with_article`](Self::with_article) for a kind's displayed name, or for another noun
    /// phrase without an article (the strings of [`Error::KindMismatch`](crate::Error::KindMismatch):
    /// "raw" for a segment without a shmkit header, "queue", "ShareableList in …"). What
    /// `shmkit ls` calls an object without a shmkit header reads "no shmkit object (a raw
    /// segment)" or "a ShareableList made by CPython".
    pub(crate) fn phrase(what: &str) -> String {
        match what {
            crate::segment::RAW_KIND => return "no shmkit object (a raw segment)".into(),
            crate::segment::CPYTHON_LIST_KIND => return "a ShareableList made by CPython".into(),
            _ => {}
        }
        let noun = match what {
            "spsc" | "mpmc" | "mpmc-bytes" => format!("{what} queue"),
            "frames" => "frames channel".to_owned(),
            _ => what.to_owned(),
        };
        // Initialisms are read letter by letter: "rlock" (R-lock), "spsc" (S-P-S-C) and
        // "mpmc" (M-P-M-C) start with a vowel sound.
        let first = noun
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("");
        let vowel = matches!(first, "rlock" | "spsc" | "mpmc")
            || first
                .chars()
                .next()
                .is_some_and(|c| "aeiouAEIOU".contains(c));
        format!("{} {noun}", if vowel { "an" } else { "a" })
    }

    /// The kind called `name` (exactly as [`Kind::name`] spells it), or `None`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| *k)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown kind {}", self.0),
        }
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({self})")
    }
}

/// Serialized as its name (as `Display` prints it).
#[cfg(feature = "serde")]
impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A layout fingerprint: 64-bit FNV-1a of a description of the layout (type names, sizes,
/// alignments, format revision). Two builds that would read the payload differently must
/// describe it differently.
///
/// ```
/// use shmkit::segment::fingerprint;
/// const FP: u64 = fingerprint(b"my-object v1: u64 counter at 0");
/// assert_ne!(FP, fingerprint(b"my-object v2"));
/// ```
pub const fn fingerprint(desc: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < desc.len() {
        h ^= desc[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::Kind;

    /// One name for each kind (issue 9): words joined by hyphens, never underscores (the
    /// walkthrough found `shareable_list` alone among `bytes-ring`, `bounded-semaphore`), and
    /// `from_name` takes back exactly what `Display` prints.
    #[test]
    fn kind_names_use_hyphens_and_round_trip() {
        for &(k, n) in Kind::NAMES {
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{n}"
            );
            assert_eq!(k.to_string(), n);
            assert_eq!(Kind::from_name(n), Some(k));
            assert_eq!(
                Kind::from_name(&n.replace('-', "_")),
                (!n.contains('-')).then_some(k)
            );
        }
    }
}
