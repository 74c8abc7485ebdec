//! The crate-wide error, and the two outcomes every non-blocking or time-bounded call shares.
//!
//! # One shape for every blocking call
//!
//! Each blocking operation `x` comes in four forms, as crossbeam-channel's `recv` does:
//!
//! | form | waits | if it cannot happen now |
//! |---|---|---|
//! | `try_x()` | never | [`WouldBlock`] (or the operation's `WouldBlock` variant) |
//! | `x()` | as long as it takes | — |
//! | `x_timeout(Duration)` | at most that long; a timeout too large for `Instant` means no limit | [`Timeout`] (or the operation's `Timeout` variant) |
//! | `x_deadline(Instant)` | until that instant; one in the past polls once | [`Timeout`] (or the operation's `Timeout` variant) |
//!
//! Python's `acquire(block=True, timeout=None)` maps onto them: `block=False` is `try_x()`,
//! `timeout=None` is `x()`, `timeout=t` is `x_timeout(t)`; Python's `False` return is the
//! `WouldBlock`/`Timeout` outcome.
//!
//! # Errors
//!
//! Per-operation errors are small enums that say exactly which case happened and hand back
//! what the caller still owns (a lock guard after `OwnerDied`, a value a queue refused). Every
//! one is `'static` when it holds no guard, implements [`std::error::Error`], and converts into
//! [`Error`] with `?`:
//!
//! - each `Timeout` outcome becomes [`Error::Timeout`] and each `WouldBlock` becomes
//!   [`Error::WouldBlock`], whichever object it came from, so "try again later" is one match
//!   arm;
//! - everything else keeps its own type inside [`Error::Lock`], [`Error::Semaphore`] or
//!   [`Error::Barrier`], [`Error::Queue`] or [`Error::Attach`] (never holding a
//!   `Timeout`/`WouldBlock` variant there); a queue's `Full` or `Empty` is a `WouldBlock`;
//! - a value a queue refused is dropped by the conversion (take it back first with the
//!   error's `into_inner`);
//! - a guard inside an error ([`sync::LockError::OwnerDied`](crate::sync::LockError::OwnerDied)) is
//!   dropped by the conversion, which releases the lock unrepaired: match `OwnerDied` before
//!   `?` where the data can be repaired.
//!
//! The segment variants ([`Error::NotFound`] … [`Error::Io`]) name the segment and say what was
//! expected and what was found, so the message alone tells a user what to do.
//!
//! ```
//! use shmkit::sync::{Event, Lock};
//! use std::time::{Duration, Instant};
//! # let name = format!("doc-error-{}", std::process::id());
//! fn step(name: &str) -> shmkit::Result<()> {
//!     let lock = Lock::options().unlink_on_drop(true).create(name)?; // a segment error
//!     let _g = lock.lock_timeout(Duration::from_secs(10))?; // a lock error
//!     Ok(())
//! }
//! step(&name)?;
//! let ev = Event::options().unlink_on_drop(true).create(&name)?;
//! let e = shmkit::Error::from(ev.wait_timeout(Duration::ZERO).unwrap_err());
//! assert!(matches!(e, shmkit::Error::Timeout));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use zerocopy::FromZeros;

use crate::queue::{AttachError, QueueError};
#[cfg(not(loom))]
use crate::sync::LockError;
use crate::sync::{BarrierError, SemaphoreError};

/// Result alias with the crate-wide [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A `_timeout` or `_deadline` call's time ran out before it could complete: the one timeout
/// outcome of every blocking call in shmkit. Converts into [`Error::Timeout`].
///
/// ```
/// use shmkit::{sync::EventState, Timeout};
/// let ev = EventState::new();
/// assert_eq!(ev.wait_deadline(std::time::Instant::now()), Err(Timeout));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeout;

impl Timeout {
    /// The deadline `timeout` from now, as every `_timeout` form computes it: `None` (no
    /// limit) for a timeout too large for `Instant` (e.g. `Duration::MAX`). For callers that
    /// make several calls against one budget (each with its `_deadline` form).
    ///
    /// ```
    /// use shmkit::Timeout;
    /// use std::time::Duration;
    /// assert_eq!(Timeout::deadline_after(Duration::MAX), None);
    /// assert!(Timeout::deadline_after(Duration::from_secs(1)).is_some());
    /// ```
    #[inline]
    pub fn deadline_after(timeout: Duration) -> Option<Instant> {
        crate::os::deadline::after(Some(timeout))
    }

    /// Whether `deadline` has passed (`None`, no limit: never).
    ///
    /// ```
    /// use shmkit::Timeout;
    /// assert!(Timeout::passed(Some(std::time::Instant::now())));
    /// assert!(!Timeout::passed(None));
    /// ```
    #[inline]
    pub fn passed(deadline: Option<Instant>) -> bool {
        crate::os::deadline::passed(deadline)
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for Timeout {}

/// A `try_` call could not complete without waiting. Converts into [`Error::WouldBlock`].
///
/// ```
/// use shmkit::{sync::EventState, WouldBlock};
/// let ev = EventState::new();
/// assert_eq!(ev.try_wait(), Err(WouldBlock));
/// ev.set();
/// assert_eq!(ev.try_wait(), Ok(()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WouldBlock;

impl fmt::Display for WouldBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operation would block")
    }
}

impl std::error::Error for WouldBlock {}

/// Every way a shmkit call can fail: creating, opening or validating a shared-memory object
/// (the variants naming a segment), and the sync primitives' operations (see the
/// [module docs](self) for how the per-operation errors map here).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No segment has this name (`/dev/shm/NAME` does not exist).
    NotFound {
        /// The segment name.
        name: String,
    },
    /// A segment with this name already exists (create uses `O_EXCL`).
    AlreadyExists {
        /// The segment name.
        name: String,
    },
    /// The name breaks the naming rules (1–200 bytes of `[A-Za-z0-9._-]`, not `.` or `..`).
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The operating system refused access (mode bits or a read-only attach).
    PermissionDenied {
        /// The segment name.
        name: String,
        /// What was being attempted.
        op: &'static str,
    },
    /// The segment holds another kind of object than the one asked for.
    KindMismatch {
        /// The segment name.
        name: String,
        /// The kind the caller asked for: a [`Kind`](crate::Kind)'s name or another noun
        /// phrase, without an article (the message adds it: [`Kind::with_article`](crate::Kind::with_article)).
        expected: String,
        /// The kind recorded in the header, as `expected`; for an object without a shmkit
        /// header, what `shmkit ls` calls it ([`Probe::kind_name`](crate::segment::Probe::kind_name)):
        /// "raw", or "shareable-list (cpython)" for a ShareableList made by CPython.
        found: String,
    },
    /// Same kind, but its layout (element type, capacity rules, …) differs.
    LayoutMismatch {
        /// The segment name.
        name: String,
        /// The layout fingerprint this build expects.
        expected: u64,
        /// The fingerprint recorded in the header.
        found: u64,
    },
    /// A typed queue holds elements (a frame channel's frames carry a user header) of another
    /// [`ShmType`](crate::ShmType) than the one it was opened with (same kind; the type
    /// names, sizes or alignments differ).
    TypeMismatch {
        /// The segment name.
        name: String,
        /// What has the type: `"elements"` (a queue), `"a user header"` (a frame channel).
        of: &'static str,
        /// The element type the caller asked for: `TYPE_NAME (size N, align A)`.
        expected: String,
        /// The element type the queue was created with, as recorded in it.
        found: String,
    },
    /// A cell ([`Value`](crate::cell::Value), [`Array`](crate::cell::Array)) holds another
    /// kind, element type or length than the one asked for: `expected` and `found` are
    /// written as `Value<q>`, `Array<d>[4]`, `Value<Tick>` (or `a lock`, …).
    CellMismatch {
        /// The segment name.
        name: String,
        /// What the caller asked for.
        expected: String,
        /// What the segment holds.
        found: String,
    },
    /// The header's format version is not one this build understands.
    VersionMismatch {
        /// The segment name.
        name: String,
        /// The version this build writes and reads.
        expected: u32,
        /// The version recorded in the header.
        found: u32,
    },
    /// The segment's bytes are inconsistent: truncated, bad magic, impossible sizes.
    Corrupt {
        /// The segment name.
        name: String,
        /// Which field or check failed, with the values seen.
        what: String,
    },
    /// Nothing usable appeared within the open timeout: a raw segment stayed 0 bytes (its
    /// foreign creator never sized it), or `open_or_create` kept finding the name created and
    /// removed by others.
    NotReady {
        /// The segment name.
        name: String,
        /// How long the opener waited.
        waited: Duration,
        /// What was seen.
        detail: String,
    },
    /// A requested size or count is beyond what the layout can hold.
    TooLarge {
        /// The segment or object name.
        name: String,
        /// What was requested.
        requested: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// `/dev/shm` has too little free space for the object (creation reserves every byte, so
    /// that a full `/dev/shm` is this error and never a `SIGBUS` later).
    NoSpace {
        /// The segment name.
        name: String,
        /// Bytes the object needs (its header included).
        requested: u64,
        /// Bytes free in `/dev/shm` (`fstatvfs`), as seen right after the attempt.
        available: u64,
    },
    /// An argument is outside its domain (zero size, offset past the end, …).
    InvalidArgument {
        /// The segment or object name.
        name: String,
        /// What is wrong with it.
        what: String,
    },
    /// Any other operating-system error.
    Io {
        /// The segment name.
        name: String,
        /// The system operation that failed.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A `_timeout`/`_deadline` call's time ran out (any object's [`Timeout`] outcome). For a
    /// barrier it also broke the barrier, as in Python.
    Timeout,
    /// A `try_` call could not complete without waiting (any object's [`WouldBlock`] outcome).
    WouldBlock,
    /// A frame channel has no live publisher (a receive with nothing left to receive); or a
    /// handle does not hold its role in this process (a frames subscriber, publisher or
    /// [`Loan`](crate::frames::Loan) inherited across `fork()`). A queue's gone side is
    /// [`QueueError::Disconnected`] inside [`Error::Queue`], which names the side.
    Disconnected,
    /// A cell's lock was held by a process that died holding it, so its data may be
    /// half-updated: a read, a partial write or a read-modify-write (which cannot repair it)
    /// did nothing and left the lock as the dead holder left it, for a repair (the cell's
    /// `lock()`, whose `OwnerDied` hands the guard, or a write of the whole value, `SPEC.md`
    /// §10.5). Every such call gets this error until the repair.
    HolderDied {
        /// The cell's segment.
        name: String,
        /// The dead holder's pid, in its own pid namespace (as recorded; display only).
        pid: u32,
    },
    /// A lock call failed. Never `Timeout` or `WouldBlock` (those are [`Error::Timeout`] and
    /// [`Error::WouldBlock`]). `OwnerDied` here means the guard was dropped by the conversion
    /// without `make_consistent()`, so the lock is now not recoverable.
    #[cfg(not(loom))]
    Lock(LockError<()>),
    /// A semaphore call failed. Never `Timeout` or `WouldBlock`.
    Semaphore(SemaphoreError),
    /// A barrier call failed. Never `Timeout`.
    Barrier(BarrierError),
    /// A queue call failed (the other side is gone, corrupt state, a message too large).
    /// Never `Timeout` or `WouldBlock` (a full or empty queue).
    Queue(QueueError),
    /// Attaching a queue handle failed: the role is held, no slot is free, or this process
    /// has no liveness token. Never [`AttachError::Segment`] (its error comes out as itself).
    Attach(Box<AttachError>),
    /// Attaching a frames publisher or subscriber failed: the publisher role is held, every
    /// subscriber record is held, or this process has no liveness token. Never
    /// [`frames::AttachError::Segment`](crate::frames::AttachError::Segment) (its error comes
    /// out as itself).
    #[cfg(not(loom))]
    FramesAttach(Box<crate::frames::AttachError>),
    /// An index is outside a list (Python's `IndexError`). Negative indices count from the
    /// end, as in Python, before this check.
    IndexOutOfRange {
        /// The object name.
        name: String,
        /// The index as given.
        index: i64,
        /// The list's length.
        len: usize,
    },
    /// A `str`/`bytes` value is longer than the slot it was assigned to (Python's
    /// `ValueError: bytes/str item exceeds available storage`). Slots never grow: create the
    /// list with a larger per-item reserve.
    SlotTooSmall {
        /// The object name.
        name: String,
        /// The item's index.
        index: usize,
        /// The value's length in bytes (UTF-8 bytes for a `str`).
        len: usize,
        /// The slot's size in bytes.
        slot: usize,
    },
}

impl From<Timeout> for Error {
    fn from(_: Timeout) -> Error {
        Error::Timeout
    }
}

impl From<WouldBlock> for Error {
    fn from(_: WouldBlock) -> Error {
        Error::WouldBlock
    }
}

/// Drops a guard held by `OwnerDied` (see [`Error::Lock`]).
#[cfg(not(loom))]
impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e.without_guard() {
            LockError::Timeout => Error::Timeout,
            LockError::WouldBlock => Error::WouldBlock,
            e => Error::Lock(e),
        }
    }
}

impl From<SemaphoreError> for Error {
    fn from(e: SemaphoreError) -> Error {
        match e {
            SemaphoreError::Timeout => Error::Timeout,
            SemaphoreError::WouldBlock => Error::WouldBlock,
            e => Error::Semaphore(e),
        }
    }
}

impl From<BarrierError> for Error {
    fn from(e: BarrierError) -> Error {
        match e {
            BarrierError::Timeout => Error::Timeout,
            BarrierError::Parties(_) => Error::invalid("barrier", e.to_string()),
            e => Error::Barrier(e),
        }
    }
}

impl Error {
    /// Map an OS error from `op` on segment `name` to the matching variant.
    pub(crate) fn from_io(name: &str, op: &'static str, e: io::Error) -> Error {
        let name = name.to_owned();
        match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound { name },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { name },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { name, op },
            _ => Error::Io {
                name,
                op,
                source: e,
            },
        }
    }

    /// [`Error::Io`] (`OutOfMemory`): this process cannot get `bytes` bytes of private memory
    /// to `op` object `name`.
    #[cfg_attr(loom, allow(dead_code))] // cells and frames are not built under loom
    pub(crate) fn out_of_memory(name: &str, op: &'static str, bytes: usize) -> Error {
        Error::Io {
            name: name.to_owned(),
            op,
            source: io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate {bytes} bytes of private memory for it"),
            ),
        }
    }

    /// Shorthand for [`Error::Corrupt`].
    pub(crate) fn corrupt(name: &str, what: impl Into<String>) -> Error {
        Error::Corrupt {
            name: name.to_owned(),
            what: what.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub(crate) fn invalid(name: &str, what: impl Into<String>) -> Error {
        Error::InvalidArgument {
            name: name.to_owned(),
            what: what.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { name } => {
                write!(f, "segment {name:?} not found (no /dev/shm/{name}); create it first or check the name")
            }
            Error::AlreadyExists { name } => write!(
                f,
                "segment {name:?} already exists; open it, pick another name, or remove it with `shmkit rm {name}`"
            ),
            Error::InvalidName { name, reason } => write!(f, "invalid segment name {name:?}: {reason}"),
            Error::PermissionDenied { name, op } => {
                write!(f, "permission denied to {op} segment {name:?}; check its owner and mode with `ls -l /dev/shm/{name}`")
            }
            Error::KindMismatch { name, expected, found } => {
                write!(
                    f,
                    "segment {name:?} holds {}, not {}",
                    crate::Kind::phrase(found),
                    crate::Kind::phrase(expected)
                )?;
                // Bytes without a shmkit header open as a plain segment's raw form (no other
                // kind has one).
                let foreign = [crate::segment::RAW_KIND, crate::segment::CPYTHON_LIST_KIND];
                if expected == "segment" && foreign.contains(&found.as_str()) {
                    f.write_str(" (open it with .raw(true))")?;
                }
                Ok(())
            }
            Error::LayoutMismatch { name, expected, found } => write!(
                f,
                "segment {name:?} has layout fingerprint {found:#018x}, expected {expected:#018x}: \
                 it was created with another element type or parameters"
            ),
            Error::TypeMismatch {
                name,
                of,
                expected,
                found,
            } => write!(
                f,
                "segment {name:?} was created for {of} of type {found}, not {expected}"
            ),
            Error::CellMismatch { name, expected, found } => {
                write!(f, "segment {name:?} holds {found}, asked for {expected}")
            }
            Error::VersionMismatch { name, expected, found } => write!(
                f,
                "segment {name:?} has format version {found}, this build of shmkit reads version {expected}"
            ),
            Error::Corrupt { name, what } => write!(f, "segment {name:?} is corrupt: {what}"),
            Error::NotReady { name, waited, detail } => write!(
                f,
                "segment {name:?} was not usable within {:?}: {detail}",
                // Whole milliseconds ("10s", not "10.000419164s").
                Duration::from_millis(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX))
            ),
            Error::TooLarge { name, requested, max } => {
                write!(f, "{name:?}: {requested} is too large (at most {max})")
            }
            Error::NoSpace { name, requested, available } => write!(
                f,
                "segment {name:?} needs {requested} bytes but /dev/shm has only {available} bytes free; \
                 remove objects (`shmkit gc`, `shmkit rm`), give /dev/shm more room (e.g. docker \
                 --shm-size), or create it sparse (which can SIGBUS when /dev/shm fills up)"
            ),
            Error::InvalidArgument { name, what } => write!(f, "{name:?}: {what}"),
            Error::Io { name, op, source } => write!(f, "{op} segment {name:?}: {source}"),
            Error::Timeout => fmt::Display::fmt(&Timeout, f),
            Error::WouldBlock => fmt::Display::fmt(&WouldBlock, f),
            Error::Disconnected => f.write_str(
                "the frame channel has no live publisher (receive again once one attaches), \
                 or this handle's role is not this process's (inherited across fork(): attach \
                 a new handle in this process)",
            ),
            Error::HolderDied { name, pid } => write!(
                f,
                "segment {name:?}: the process that held its lock (pid {pid}) died holding it, so \
                 the data may be half-updated; nothing was done, and the lock is left for a \
                 repair: write the whole value, or take the lock (OwnerDied hands it over), \
                 repair and make it consistent"
            ),
            #[cfg(not(loom))]
            Error::Lock(LockError::OwnerDied(())) => f.write_str(
                "acquired a lock whose previous owner died holding it, and released it unrepaired \
                 (the error dropped the guard): the lock is now not recoverable",
            ),
            #[cfg(not(loom))]
            Error::Lock(e) => fmt::Display::fmt(e, f),
            Error::Semaphore(e) => fmt::Display::fmt(e, f),
            Error::Barrier(e) => fmt::Display::fmt(e, f),
            Error::Queue(e) => fmt::Display::fmt(e, f),
            Error::Attach(e) => fmt::Display::fmt(e, f),
            #[cfg(not(loom))]
            Error::FramesAttach(e) => fmt::Display::fmt(e, f),
            Error::IndexOutOfRange { name, index, len } => write!(
                f,
                "{name:?}: index {index} is out of range for a list of {len} items"
            ),
            Error::SlotTooSmall { name, index, len, slot } => write!(
                f,
                "{name:?}: item {index}'s value is {len} bytes, more than its {slot}-byte slot \
                 (slots never grow; create the list with a larger per-item reserve)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Attach(e) => match &**e {
                AttachError::Liveness(e) => Some(e),
                _ => None,
            },
            #[cfg(not(loom))]
            Error::FramesAttach(e) => match &**e {
                crate::frames::AttachError::Liveness(e) => Some(e),
                _ => None,
            },
            _ => None,
        }
    }
}

/// `n` zeroed `T`s in private memory, or [`Error::out_of_memory`] (never an abort): for sizes
/// that follow an object's recorded geometry, which a peer chose (an array or a frame of up to
/// 1 TiB in a sparse object is a valid object this process may not be able to copy).
#[cfg_attr(loom, allow(dead_code))] // cells and frames are not built under loom
pub(crate) fn try_zeroed<T: FromZeros>(name: &str, op: &'static str, n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| Error::out_of_memory(name, op, n.saturating_mul(std::mem::size_of::<T>())))?;
    v.resize_with(n, T::new_zeroed);
    Ok(v)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Error;
    use std::time::Duration;

    /// New-user walkthrough: a list read on a zeroed object said "within 10.000419164s".
    #[test]
    fn not_ready_says_the_wait_in_whole_milliseconds() {
        let e = Error::NotReady {
            name: "x".into(),
            waited: Duration::new(10, 419_164),
            detail: "never ready".into(),
        };
        assert_eq!(
            e.to_string(),
            "segment \"x\" was not usable within 10s: never ready"
        );
    }
}
