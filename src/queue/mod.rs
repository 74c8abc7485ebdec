//! Lock-free ring-buffer queues in shared memory.
//!
//! - [`spsc::Queue`]: bounded single-producer single-consumer queue of `T`.
//! - [`mpmc::Queue`]: bounded multi-producer multi-consumer queue of `T` (per-slot stamps).
//! - [`bytes::Ring`]: single-producer single-consumer ring of variable-length byte messages,
//!   zero-copy on both sides.
//!
//! All three live in named segments, attach from unrelated processes, block with a short
//! spin then a futex sleep (the waking side makes no system call when nobody sleeps), and
//! never hang on a dead peer. `spec/queue.md` describes every byte and each crash case.

mod cache_padded;
mod error;
mod region;
mod ring;
mod role;
mod stat;

pub mod bytes;
pub mod mpmc;
pub mod spsc;

pub use error::{AttachError, PopError, PushError, Role, TryPopError, TryPushError};
pub use stat::{Attached, QueueStat};

/// Element types the queues carry: plain data for which every byte pattern is a valid value
/// and that has no padding (zerocopy's `FromBytes + IntoBytes + Immutable`), so values can
/// cross process boundaries as bytes. Implemented for every such type; derive zerocopy's
/// traits on your own `#[repr(C)]` structs.
///
/// ```
/// use zerocopy::{FromBytes, Immutable, IntoBytes};
/// #[derive(Clone, Copy, FromBytes, IntoBytes, Immutable)]
/// #[repr(C)]
/// struct Tick { price: u64, qty: u32, side: u32 }
/// let q = shmkit::queue::spsc::Queue::<Tick>::with_capacity(16);
/// # let _ = q;
/// ```
pub trait Element:
    zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable + Send + 'static
{
}

impl<T: zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable + Send + 'static> Element
    for T
{
}
