//! Per-operation errors of the queues. Errors that reject a value hand it back.

use std::fmt;

/// Which end of a queue a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum Role {
    /// The pushing end.
    Producer,
    /// The popping end.
    Consumer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

/// Why [`try_push`](crate::queue::spsc::Producer::try_push) did not take the value; the
/// value comes back in every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The queue is full.
    Full(T),
    /// The consumer side closed the queue or died; nothing will pop this value.
    Disconnected(T),
    /// The queue's indices in shared memory are inconsistent (a buggy or hostile writer).
    Corrupt(T),
}

impl<T> TryPushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(v) | TryPushError::Disconnected(v) | TryPushError::Corrupt(v) => v,
        }
    }
}

/// Why a blocking [`push`](crate::queue::spsc::Producer::push) did not take the value; the
/// value comes back in every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// The queue stayed full until the timeout.
    Timeout(T),
    /// The consumer side closed the queue or died.
    Disconnected(T),
    /// The queue's indices in shared memory are inconsistent.
    Corrupt(T),
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Timeout(v) | PushError::Disconnected(v) | PushError::Corrupt(v) => v,
        }
    }
}

/// Why a `try_pop` returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryPopError {
    /// The queue is empty, and a producer may still push.
    Empty,
    /// The queue is empty and its producer side closed it or died: nothing more will come
    /// (until a new producer attaches).
    Disconnected,
    /// The queue's indices or a message header in shared memory are inconsistent.
    Corrupt,
}

/// Why a blocking `pop` returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// Nothing arrived before the timeout.
    Timeout,
    /// The queue is empty and its producer side closed it or died.
    Disconnected,
    /// The queue's indices or a message header in shared memory are inconsistent.
    Corrupt,
}

/// Why a raw handle's call ([`spsc::RawProducer`](crate::queue::spsc::RawProducer),
/// [`mpmc::RawConsumer`](crate::queue::mpmc::RawConsumer), …) failed: the slice is not one
/// element long, or the call's own error `E` (the typed handles' error of the same call).
///
/// ```
/// use shmkit::queue::{spsc::RawQueue, RawError, TryPopError};
/// # let name = format!("doc-rawerr-{}", std::process::id());
/// let q = RawQueue::options().unlink_on_drop(true).create(&name, 4, 8)?;
/// let mut tx = q.producer()?;
/// let e = tx.try_push(b"five!").unwrap_err();
/// assert_eq!(e, RawError::WrongLength { len: 5, elem_size: 4 });
/// assert_eq!(e.to_string(), "a slice of 5 bytes for elements of 4 bytes");
/// let mut out = [0; 4];
/// assert_eq!(q.consumer()?.try_pop_into(&mut out), Err(RawError::Queue(TryPopError::Empty)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawError<E> {
    /// The slice is `len` bytes long, not the queue's `elem_size`: nothing was pushed or
    /// popped.
    WrongLength {
        /// The slice's length.
        len: usize,
        /// The queue's element size.
        elem_size: usize,
    },
    /// The call's outcome, as the typed handles report it.
    Queue(E),
}

impl<E> From<E> for RawError<E> {
    fn from(e: E) -> Self {
        RawError::Queue(e)
    }
}

impl<E: fmt::Display> fmt::Display for RawError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            &RawError::WrongLength { len, elem_size } => {
                QueueError::WrongLength { len, elem_size }.fmt(f)
            }
            RawError::Queue(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RawError<E> {}

/// A raw handle's error converts with `?` as the typed handles' error `E` does; a wrong
/// length becomes [`QueueError::WrongLength`] inside [`Error::Queue`](crate::Error::Queue).
///
/// ```
/// use shmkit::queue::{spsc::RawQueue, QueueError};
/// # let name = format!("doc-rawerr-into-{}", std::process::id());
/// fn push(q: &RawQueue, msg: &[u8]) -> shmkit::Result<()> {
///     q.producer()?.try_push(msg)?;
///     Ok(())
/// }
/// let q = RawQueue::options().unlink_on_drop(true).create(&name, 4, 2)?;
/// push(&q, b"four")?;
/// let e = push(&q, b"five!").unwrap_err();
/// assert!(matches!(e, shmkit::Error::Queue(QueueError::WrongLength { len: 5, elem_size: 4 })));
/// assert_eq!(e.to_string(), "a slice of 5 bytes for elements of 4 bytes");
/// push(&q, b"four")?;
/// assert!(matches!(push(&q, b"four"), Err(shmkit::Error::WouldBlock))); // full
/// # Ok::<(), shmkit::Error>(())
/// ```
impl<E: Into<crate::Error>> From<RawError<E>> for crate::Error {
    fn from(e: RawError<E>) -> crate::Error {
        match e {
            RawError::WrongLength { len, elem_size } => {
                crate::Error::Queue(QueueError::WrongLength { len, elem_size })
            }
            RawError::Queue(e) => e.into(),
        }
    }
}

/// Check that a raw handle's slice of `len` bytes is one element of `elem_size` bytes.
#[inline]
#[cfg(not(loom))]
pub(crate) fn check_len<E>(len: usize, elem_size: usize) -> Result<(), RawError<E>> {
    if len == elem_size {
        Ok(())
    } else {
        Err(RawError::WrongLength { len, elem_size })
    }
}

/// Why attaching a handle to a queue failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AttachError {
    /// The role is held by another live process (or another handle in this one).
    Busy {
        /// The role asked for.
        role: Role,
        /// The pid of its current holder.
        pid: u32,
    },
    /// Every producer (or consumer) slot of an MPMC queue is held by a live process.
    NoFreeSlot {
        /// The role asked for.
        role: Role,
        /// How many slots the queue has for it.
        slots: u32,
    },
    /// This process could not get its liveness token (`SPEC.md` §2.3): `/dev/shm` is full,
    /// read-only, or `/dev/shm/.shmkit` is not a usable directory.
    Liveness(std::io::Error),
    /// The segment could not be created, opened or validated (including an element type
    /// that does not match the queue's).
    Segment(crate::Error),
}

impl From<crate::Error> for AttachError {
    fn from(e: crate::Error) -> Self {
        AttachError::Segment(e)
    }
}

pub(crate) const CORRUPT_MSG: &str =
    "the queue's state in shared memory is inconsistent (corrupt, or written by a foreign process)";

impl<T> fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryPushError::Full(_) => "the queue is full",
            TryPushError::Disconnected(_) => "the queue's consumer closed it or died",
            TryPushError::Corrupt(_) => CORRUPT_MSG,
        })
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Timeout(_) => "timed out: the queue stayed full",
            PushError::Disconnected(_) => "the queue's consumer closed it or died",
            PushError::Corrupt(_) => CORRUPT_MSG,
        })
    }
}

impl fmt::Display for TryPopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryPopError::Empty => "the queue is empty",
            TryPopError::Disconnected => "the queue is empty and its producer closed it or died",
            TryPopError::Corrupt => CORRUPT_MSG,
        })
    }
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PopError::Timeout => "timed out: the queue stayed empty",
            PopError::Disconnected => "the queue is empty and its producer closed it or died",
            PopError::Corrupt => CORRUPT_MSG,
        })
    }
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Busy { role, pid } => {
                write!(
                    f,
                    "the queue's {role} role is held by live process {pid}; a queue has one {role}"
                )
            }
            AttachError::NoFreeSlot { role, slots } => {
                write!(
                    f,
                    "all {slots} {role} slots of the queue are held by live processes"
                )
            }
            AttachError::Liveness(e) => {
                write!(f, "cannot attach: this process has no liveness token ({e})")
            }
            AttachError::Segment(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for TryPushError<T> {}
impl<T: fmt::Debug> std::error::Error for PushError<T> {}
impl std::error::Error for TryPopError {}
impl std::error::Error for PopError {}
impl std::error::Error for AttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AttachError::Segment(e) => Some(e),
            _ => None,
        }
    }
}

impl TryPopError {
    /// The blocking form's error for a failed poll; `None` for [`Empty`](Self::Empty), which
    /// a blocking call waits out (and which is no [`PopError`]: an empty queue is not a
    /// timeout).
    pub(crate) fn blocking(self) -> Option<PopError> {
        match self {
            TryPopError::Empty => None,
            TryPopError::Disconnected => Some(PopError::Disconnected),
            TryPopError::Corrupt => Some(PopError::Corrupt),
        }
    }
}

impl<T> TryPushError<T> {
    /// The blocking form's error for a failed attempt; `Err(value)` for
    /// [`Full`](Self::Full), which a blocking call waits out.
    pub(crate) fn blocking(self) -> Result<PushError<T>, T> {
        match self {
            TryPushError::Full(v) => Err(v),
            TryPushError::Disconnected(v) => Ok(PushError::Disconnected(v)),
            TryPushError::Corrupt(v) => Ok(PushError::Corrupt(v)),
        }
    }

    /// The same outcome holding `f(value)`.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> TryPushError<U> {
        match self {
            TryPushError::Full(v) => TryPushError::Full(f(v)),
            TryPushError::Disconnected(v) => TryPushError::Disconnected(f(v)),
            TryPushError::Corrupt(v) => TryPushError::Corrupt(f(v)),
        }
    }
}

impl<T> PushError<T> {
    /// The same outcome holding `f(value)`.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> PushError<U> {
        match self {
            PushError::Timeout(v) => PushError::Timeout(f(v)),
            PushError::Disconnected(v) => PushError::Disconnected(f(v)),
            PushError::Corrupt(v) => PushError::Corrupt(f(v)),
        }
    }
}

/// Why a byte-message queue did not take a message: the push error of both byte kinds (the
/// [bytes ring](super::bytes)'s `push` and `reserve`, [mpmc-bytes](super::mpmc_bytes)'
/// `push`), in all four forms (`Full` from `try_`, `Timeout` from `_timeout`/`_deadline`).
/// The message stays the caller's (it was borrowed), so no variant holds it. `'static`,
/// `Copy`; converts into [`crate::Error`] as every queue's error does.
///
/// ```
/// use shmkit::queue::{bytes::Ring, mpmc_bytes, BytesPushError, QueueError};
/// let ring = Ring::with_capacity(128);
/// let q = mpmc_bytes::Queue::with_capacity(256);
/// let (mut ring_tx, mut q_tx) = (ring.producer()?, q.producer()?);
/// // The same outcome, the same type, from either kind.
/// assert_eq!(ring_tx.try_push(&[0; 100]), Err(BytesPushError::TooLarge { len: 100, max: 56 }));
/// assert_eq!(q_tx.try_push(&[0; 200]), Err(BytesPushError::TooLarge { len: 200, max: 128 }));
/// let e = shmkit::Error::from(BytesPushError::TooLarge { len: 200, max: 128 });
/// assert!(matches!(e, shmkit::Error::Queue(QueueError::TooLarge { len: 200, max: 128 })));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytesPushError {
    /// `try_`: no room now.
    Full,
    /// `_timeout` / `_deadline`: no room before the time ran out.
    Timeout,
    /// The message is longer than the queue's `max_message`: it can never fit.
    TooLarge {
        /// The message length.
        len: u64,
        /// The largest accepted length.
        max: u64,
    },
    /// The consumer side closed the queue or died; nothing will pop the message.
    Disconnected,
    /// The queue's state in shared memory is inconsistent (a buggy or hostile writer).
    Corrupt,
}

impl fmt::Display for BytesPushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BytesPushError::Full => f.write_str("the queue is full"),
            BytesPushError::Timeout => f.write_str("timed out: the queue stayed full"),
            &e => match crate::Error::from(e) {
                crate::Error::Queue(q) => q.fmt(f),
                other => other.fmt(f),
            },
        }
    }
}

impl std::error::Error for BytesPushError {}

/// `Full` is [`Error::WouldBlock`](crate::Error::WouldBlock), `Timeout`
/// [`Error::Timeout`](crate::Error::Timeout), the rest their [`QueueError`] inside
/// [`Error::Queue`](crate::Error::Queue).
impl From<BytesPushError> for crate::Error {
    fn from(e: BytesPushError) -> crate::Error {
        match e {
            BytesPushError::Full => crate::Error::WouldBlock,
            BytesPushError::Timeout => crate::Error::Timeout,
            BytesPushError::TooLarge { len, max } => {
                crate::Error::Queue(QueueError::TooLarge { len, max })
            }
            BytesPushError::Disconnected => crate::Error::Queue(QueueError::Disconnected {
                peer: Role::Consumer,
            }),
            BytesPushError::Corrupt => crate::Error::Queue(QueueError::Corrupt),
        }
    }
}

/// What a queue call that neither timed out nor would block failed with, inside
/// [`Error::Queue`](crate::Error::Queue): the per-operation errors ([`TryPushError`],
/// [`PushError`], [`TryPopError`], [`PopError`], [`BytesPushError`],
/// and a raw handle's [`RawError`] of one) convert into it with `?`, their `Full`/`Empty` outcomes into
/// [`Error::WouldBlock`](crate::Error::WouldBlock) and their `Timeout` into
/// [`Error::Timeout`](crate::Error::Timeout). A value the error held is dropped by the
/// conversion: take it back with `into_inner` first where it matters.
///
/// ```
/// use shmkit::queue::{spsc::Queue, QueueError, Role};
/// fn send(q: &Queue<u32>) -> shmkit::Result<()> {
///     let mut tx = q.producer()?;
///     tx.try_push(1)?;
///     tx.try_push(2)?; // the queue is full
///     Ok(())
/// }
/// let q = Queue::<u32>::with_capacity(2);
/// let mut rx = q.consumer()?;
/// assert!(matches!(send(&q), Ok(())));
/// assert!(matches!(send(&q), Err(shmkit::Error::WouldBlock)));
/// rx.close();
/// let e = send(&q).unwrap_err();
/// assert!(matches!(e, shmkit::Error::Queue(QueueError::Disconnected { peer: Role::Consumer })));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueError {
    /// The other side (`peer`) closed the queue or died: a push has nobody to pop it, or a
    /// pop found the queue empty with no producer left.
    Disconnected {
        /// The side that is gone.
        peer: Role,
    },
    /// The queue's indices or a message header in shared memory are inconsistent.
    Corrupt,
    /// A message is longer than the queue's largest.
    TooLarge {
        /// The message length.
        len: u64,
        /// The queue's maximum.
        max: u64,
    },
    /// A raw handle was given a slice that is not one element long
    /// ([`RawError::WrongLength`]): nothing was pushed or popped.
    WrongLength {
        /// The slice's length.
        len: usize,
        /// The queue's element size.
        elem_size: usize,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Disconnected {
                peer: Role::Consumer,
            } => f.write_str(
                "the queue's consumer closed it or died (or this handle was closed, or \
                 inherited across fork())",
            ),
            QueueError::Disconnected {
                peer: Role::Producer,
            } => f.write_str(
                "the queue is empty and its producer closed it or died (or this handle was \
                 closed, or inherited across fork())",
            ),
            QueueError::Corrupt => f.write_str(CORRUPT_MSG),
            QueueError::TooLarge { len, max } => write!(
                f,
                "a message of {len} bytes exceeds this queue's maximum of {max}"
            ),
            QueueError::WrongLength { len, elem_size } => write!(
                f,
                "a slice of {len} bytes for elements of {elem_size} bytes"
            ),
        }
    }
}

impl std::error::Error for QueueError {}

/// Drops the value (see [`QueueError`]).
impl<T> From<TryPushError<T>> for crate::Error {
    fn from(e: TryPushError<T>) -> crate::Error {
        match e {
            TryPushError::Full(_) => crate::Error::WouldBlock,
            TryPushError::Disconnected(_) => crate::Error::Queue(QueueError::Disconnected {
                peer: Role::Consumer,
            }),
            TryPushError::Corrupt(_) => crate::Error::Queue(QueueError::Corrupt),
        }
    }
}

/// Drops the value (see [`QueueError`]).
impl<T> From<PushError<T>> for crate::Error {
    fn from(e: PushError<T>) -> crate::Error {
        match e {
            PushError::Timeout(_) => crate::Error::Timeout,
            PushError::Disconnected(_) => crate::Error::Queue(QueueError::Disconnected {
                peer: Role::Consumer,
            }),
            PushError::Corrupt(_) => crate::Error::Queue(QueueError::Corrupt),
        }
    }
}

impl From<TryPopError> for crate::Error {
    fn from(e: TryPopError) -> crate::Error {
        match e {
            TryPopError::Empty => crate::Error::WouldBlock,
            TryPopError::Disconnected => crate::Error::Queue(QueueError::Disconnected {
                peer: Role::Producer,
            }),
            TryPopError::Corrupt => crate::Error::Queue(QueueError::Corrupt),
        }
    }
}

impl From<PopError> for crate::Error {
    fn from(e: PopError) -> crate::Error {
        match e {
            PopError::Timeout => crate::Error::Timeout,
            PopError::Disconnected => crate::Error::Queue(QueueError::Disconnected {
                peer: Role::Producer,
            }),
            PopError::Corrupt => crate::Error::Queue(QueueError::Corrupt),
        }
    }
}

/// A segment error comes out as itself; the others as [`Error::Attach`](crate::Error::Attach).
impl From<AttachError> for crate::Error {
    fn from(e: AttachError) -> crate::Error {
        match e {
            AttachError::Segment(e) => e,
            e => crate::Error::Attach(Box::new(e)),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{QueueError, Role};

    /// Review: a handle closed or inherited across `fork()` gets `Disconnected` too, and the
    /// message told such a child only that its peer was gone.
    #[test]
    fn disconnected_names_every_cause() {
        for peer in [Role::Producer, Role::Consumer] {
            let m = QueueError::Disconnected { peer }.to_string();
            assert!(
                m.contains("closed it or died") && m.contains("inherited across fork()"),
                "{m}"
            );
        }
    }
}
