//! The errors of the MPMC bytes queue.

/// Why a push did not take the message. `'static`, `Copy`; converts into [`crate::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// `try_push`: no room now.
    Full,
    /// `push_timeout` / `push_deadline`: no room before the time ran out.
    Timeout,
    /// The message is longer than the queue's [`max_message`](super::Queue::max_message): it can
    /// never fit.
    TooLarge {
        /// The message length.
        len: u64,
        /// The largest accepted length.
        max: u64,
    },
    /// The consumer side closed the queue or every consumer died; nothing will pop it.
    Disconnected,
    /// The queue's state in shared memory is inconsistent (a buggy or hostile writer).
    Corrupt,
}

/// Why a pop returned nothing. `'static`, `Copy`; converts into [`crate::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// `try_pop`: the queue is empty now.
    Empty,
    /// `pop_timeout` / `pop_deadline`: nothing arrived before the time ran out.
    Timeout,
    /// The queue is empty and its producer side closed it or died (until a producer
    /// attaches again).
    Disconnected,
    /// The queue's state or a record's length in shared memory is inconsistent.
    Corrupt,
}

const CORRUPT_MSG: &str =
    "the queue's state in shared memory is inconsistent (corrupt, or written by a foreign process)";

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Full => f.write_str("the queue is full"),
            PushError::Timeout => f.write_str("timed out: the queue stayed full"),
            PushError::TooLarge { len, max } => write!(
                f,
                "a message of {len} bytes is larger than the queue's maximum of {max} bytes"
            ),
            PushError::Disconnected => f.write_str("the queue's consumers closed it or died"),
            PushError::Corrupt => f.write_str(CORRUPT_MSG),
        }
    }
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PopError::Empty => "the queue is empty",
            PopError::Timeout => "timed out: the queue stayed empty",
            PopError::Disconnected => "the queue is empty and its producers closed it or died",
            PopError::Corrupt => CORRUPT_MSG,
        })
    }
}

impl std::error::Error for PushError {}
impl std::error::Error for PopError {}

impl From<PushError> for crate::Error {
    fn from(e: PushError) -> crate::Error {
        match e {
            PushError::Full => crate::Error::WouldBlock,
            PushError::Timeout => crate::Error::Timeout,
            PushError::TooLarge { len, max } => crate::Error::TooLarge {
                name: "mpmc-bytes message".into(),
                requested: len,
                max,
            },
            PushError::Disconnected => crate::Error::Disconnected,
            PushError::Corrupt => crate::Error::corrupt("mpmc-bytes queue", CORRUPT_MSG),
        }
    }
}

impl From<PopError> for crate::Error {
    fn from(e: PopError) -> crate::Error {
        match e {
            PopError::Empty => crate::Error::WouldBlock,
            PopError::Timeout => crate::Error::Timeout,
            PopError::Disconnected => crate::Error::Disconnected,
            PopError::Corrupt => crate::Error::corrupt("mpmc-bytes queue", CORRUPT_MSG),
        }
    }
}
