//! The push error of the MPMC bytes queue (its pops fail with the queues' shared
//! [`TryPopError`](crate::queue::TryPopError) and [`PopError`](crate::queue::PopError)).

use crate::queue::error::CORRUPT_MSG;
use crate::queue::{QueueError, Role};

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

impl std::error::Error for PushError {}

/// As every queue's push error: `Full` is [`Error::WouldBlock`](crate::Error::WouldBlock),
/// `Timeout` [`Error::Timeout`](crate::Error::Timeout), the rest their
/// [`QueueError`] inside [`Error::Queue`](crate::Error::Queue).
impl From<PushError> for crate::Error {
    fn from(e: PushError) -> crate::Error {
        match e {
            PushError::Full => crate::Error::WouldBlock,
            PushError::Timeout => crate::Error::Timeout,
            PushError::TooLarge { len, max } => {
                crate::Error::Queue(QueueError::TooLarge { len, max })
            }
            PushError::Disconnected => crate::Error::Queue(QueueError::Disconnected {
                peer: Role::Consumer,
            }),
            PushError::Corrupt => crate::Error::Queue(QueueError::Corrupt),
        }
    }
}
