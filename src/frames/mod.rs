//! Zero-copy frames: a publisher (a camera process) loans a slot, writes a frame in place and
//! publishes it; many subscribers, each at its own pace, read it in place.
//!
//! - [`FramesOptions`]: create a channel (K page-aligned slots of a fixed maximum frame size,
//!   memory reserved at creation) and attach as [`Publisher`] or [`Subscriber`].
//! - [`Publisher::loan`] → [`Loan::as_mut_slice`] → [`Loan::publish`]: a slot no subscriber
//!   holds; when every slot is held, the channel's [`Policy`] applies.
//! - [`Subscriber::recv`] (next in order), [`Subscriber::latest`] (skip to the newest),
//!   [`FramesOptions::history`] for late joiners, [`Subscriber::lost`]: each returns a
//!   [`Frame`] guard that pins its slot until dropped. Subscribers map the frame data
//!   `PROT_READ`.
//! - Crashes: a killed subscriber's pins are reclaimed when the publisher next needs a slot; a
//!   killed publisher leaves its published frames readable, subscribers get
//!   [`RecvError::Disconnected`], and a new publisher takes over.
//! - [`stat`] and [`copy_latest`]: read-only inspection (`shmkit frames stat|save`).
//!
//! `SPEC.md` (frames section) describes every byte, the protocol with its orderings, and every
//! death case.
//!
//! ```
//! use shmkit::frames::FramesOptions;
//! # let name = format!("doc-frames-{}", std::process::id());
//! let mut camera = FramesOptions::<[u32; 2]>::new()
//!     .slots(4)
//!     .max_bytes(640 * 480 * 3)
//!     .unlink_on_drop(true)
//!     .create(&name)?;
//! let mut viewer = FramesOptions::<[u32; 2]>::new().subscriber(&name)?;
//!
//! let mut loan = camera.loan()?;
//! loan.as_mut_slice().fill(0x80);
//! loan.publish(640 * 480 * 3, &[640, 480])?;
//!
//! let frame = viewer.recv()?;
//! assert_eq!(frame.header(), &[640, 480]);
//! assert!(frame.bytes().iter().all(|&b| b == 0x80));
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! Every error converts into [`shmkit::Error`](crate::Error) with `?` (as the queues' do): a
//! `try_` call's `Full`/`Empty` is [`Error::WouldBlock`](crate::Error::WouldBlock), a
//! timeout [`Error::Timeout`](crate::Error::Timeout), no live publisher (or a handle
//! inherited across `fork()`) [`Error::Disconnected`](crate::Error::Disconnected), a failed
//! attach [`Error::FramesAttach`](crate::Error::FramesAttach) or the segment's own error.
//!
//! ```
//! use shmkit::{frames::FramesOptions, Error};
//! # let name = format!("doc-frames-err-{}", std::process::id());
//! let opts = FramesOptions::<u64>::new().slots(2).max_bytes(64).unlink_on_drop(true);
//! let _camera = opts.create(&name)?;
//! let mut viewer = opts.subscriber(&name)?;
//! let e: Error = viewer.try_recv().unwrap_err().into();
//! assert!(matches!(e, Error::WouldBlock));
//! let e: Error = opts.publisher(&name).unwrap_err().into(); // the role is held
//! assert!(matches!(e, Error::FramesAttach(_)));
//! let e: Error = shmkit::frames::RecvError::Disconnected.into();
//! assert!(e.to_string().contains("no live publisher"), "{e}");
//! # Ok::<(), Error>(())
//! ```

#[cfg(not(loom))]
mod channel;
#[cfg(not(loom))]
mod error;
#[cfg(all(test, not(loom)))]
mod forged_tests;
pub(crate) mod layout;
pub(crate) mod pin;
#[cfg(not(loom))]
mod publisher;
mod recovery;
#[cfg(not(loom))]
mod stat;
#[cfg(not(loom))]
mod subscriber;
mod window;

#[cfg(not(loom))]
pub use channel::{FramesOptions, HeaderType, Mapping};
#[cfg(not(loom))]
pub use error::{AttachError, LoanError, RecvError, TryLoanError, TryRecvError};
#[cfg(not(loom))]
pub use layout::{Policy, MAX_FRAME_BYTES, MAX_SLOTS, MAX_SUBSCRIBERS, MAX_USER_HEADER};
#[cfg(not(loom))]
pub use publisher::{Loan, Publisher};
#[cfg(not(loom))]
pub use stat::{
    copy_latest, stat, FrameCopy, FramesLayout, FramesStat, SlotStat, SubscriberStat,
    COPY_LATEST_LIMIT,
};
#[cfg(not(loom))]
pub use subscriber::{Frame, Subscriber};

/// `CLOCK_MONOTONIC` now, in ns: the clock of [`Frame::mono_ns`], the same in every process of
/// the machine, so `monotonic_ns() - frame.mono_ns()` is the publish-to-now latency.
///
/// ```
/// let a = shmkit::frames::monotonic_ns();
/// assert!(shmkit::frames::monotonic_ns() >= a);
/// ```
#[cfg(not(loom))]
pub fn monotonic_ns() -> u64 {
    crate::os::clock::monotonic_ns()
}
