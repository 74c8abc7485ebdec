//! Per-operation errors of the frame channel.

use std::fmt;

/// Why a [`try_loan`](super::Publisher::try_loan) gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryLoanError {
    /// Every slot is held (by the channel's [`Policy`](super::Policy)): a subscriber must
    /// release a frame first.
    Full,
    /// This handle no longer holds the publisher role (it was inherited across `fork()`, or
    /// taken over after this process was judged dead).
    Disconnected,
}

/// Why a blocking [`loan`](super::Publisher::loan) gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoanError {
    /// Every slot stayed held until the timeout.
    Timeout,
    /// This handle no longer holds the publisher role.
    Disconnected,
}

/// Why a [`try_recv`](super::Subscriber::try_recv) returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// No new frame yet, and a live publisher is attached.
    Empty,
    /// No new frame, and no live publisher is attached (it closed, was killed, or none has
    /// attached yet). Frames already published stay readable ([`latest`](super::Subscriber::latest)).
    Disconnected,
    /// This handle no longer holds its subscriber record: it was inherited across `fork()`,
    /// and the record (with every pin taken through it) is the parent's. It receives nothing
    /// in this process, ever; attach a new subscriber here instead. (The publisher's
    /// [`TryLoanError::Disconnected`] means the same for its role.)
    Inherited,
}

/// Why a blocking [`recv`](super::Subscriber::recv) returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// No new frame arrived before the timeout.
    Timeout,
    /// No new frame, and no live publisher is attached (checked while waiting, every 20 ms).
    Disconnected,
    /// This handle was inherited across `fork()`: see [`TryRecvError::Inherited`]. Returned
    /// at once, without waiting.
    Inherited,
}

/// Why attaching a publisher or a subscriber failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AttachError {
    /// Another live process (or another handle of this one) is the publisher.
    PublisherBusy {
        /// The pid of the current publisher.
        pid: u32,
    },
    /// Every subscriber record is held by a live process.
    NoFreeSubscriberSlot {
        /// How many subscribers the channel admits.
        slots: u64,
    },
    /// This process could not get its liveness token (`SPEC.md` §2.3).
    Liveness(std::io::Error),
    /// The segment could not be created, opened, mapped or validated.
    Segment(crate::Error),
}

impl From<crate::Error> for AttachError {
    fn from(e: crate::Error) -> Self {
        AttachError::Segment(e)
    }
}

impl fmt::Display for TryLoanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryLoanError::Full => "every frame slot is held",
            TryLoanError::Disconnected => "this handle no longer holds the publisher role",
        })
    }
}

impl fmt::Display for LoanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoanError::Timeout => "timed out: every frame slot stayed held",
            LoanError::Disconnected => "this handle no longer holds the publisher role",
        })
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "no new frame yet",
            TryRecvError::Disconnected => "no new frame and no live publisher",
            TryRecvError::Inherited => INHERITED,
        })
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvError::Timeout => "timed out: no new frame",
            RecvError::Disconnected => "no new frame and no live publisher",
            RecvError::Inherited => INHERITED,
        })
    }
}

/// The message of [`TryRecvError::Inherited`] and [`RecvError::Inherited`].
const INHERITED: &str =
    "this subscriber was inherited across fork(): its record is the parent's; attach a new one";

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::PublisherBusy { pid } => write!(
                f,
                "the channel's publisher role is held by live process {pid}; a channel has one \
                 publisher"
            ),
            AttachError::NoFreeSubscriberSlot { slots } => write!(
                f,
                "all {slots} subscriber records of the channel are held by live processes"
            ),
            AttachError::Liveness(e) => {
                write!(f, "cannot attach: this process has no liveness token ({e})")
            }
            AttachError::Segment(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for TryLoanError {}
impl std::error::Error for LoanError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvError {}
impl std::error::Error for AttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AttachError::Segment(e) => Some(e),
            AttachError::Liveness(e) => Some(e),
            _ => None,
        }
    }
}

/// `Full` is [`Error::WouldBlock`](crate::Error::WouldBlock); `Disconnected`,
/// [`Error::Disconnected`](crate::Error::Disconnected).
impl From<TryLoanError> for crate::Error {
    fn from(e: TryLoanError) -> crate::Error {
        match e {
            TryLoanError::Full => crate::Error::WouldBlock,
            TryLoanError::Disconnected => crate::Error::Disconnected,
        }
    }
}

/// `Timeout` is [`Error::Timeout`](crate::Error::Timeout); `Disconnected`,
/// [`Error::Disconnected`](crate::Error::Disconnected).
impl From<LoanError> for crate::Error {
    fn from(e: LoanError) -> crate::Error {
        match e {
            LoanError::Timeout => crate::Error::Timeout,
            LoanError::Disconnected => crate::Error::Disconnected,
        }
    }
}

/// `Empty` is [`Error::WouldBlock`](crate::Error::WouldBlock); `Disconnected` (no live
/// publisher) and `Inherited` (the handle's record is its parent's) are
/// [`Error::Disconnected`](crate::Error::Disconnected), whose meaning covers both.
impl From<TryRecvError> for crate::Error {
    fn from(e: TryRecvError) -> crate::Error {
        match e {
            TryRecvError::Empty => crate::Error::WouldBlock,
            TryRecvError::Disconnected | TryRecvError::Inherited => crate::Error::Disconnected,
        }
    }
}

/// `Timeout` is [`Error::Timeout`](crate::Error::Timeout); `Disconnected` and `Inherited`
/// are [`Error::Disconnected`](crate::Error::Disconnected).
impl From<RecvError> for crate::Error {
    fn from(e: RecvError) -> crate::Error {
        match e {
            RecvError::Timeout => crate::Error::Timeout,
            RecvError::Disconnected | RecvError::Inherited => crate::Error::Disconnected,
        }
    }
}

/// A segment error comes out as itself; the others as
/// [`Error::FramesAttach`](crate::Error::FramesAttach).
impl From<AttachError> for crate::Error {
    fn from(e: AttachError) -> crate::Error {
        match e {
            AttachError::Segment(e) => e,
            e => crate::Error::FramesAttach(Box::new(e)),
        }
    }
}
