//! # shmkit
//!
//! Shared-memory IPC between processes on one Linux machine. Processes that share no parent
//! attach, by name, to objects living in POSIX shared memory (`/dev/shm/NAME`).
//!
//! The foundation is [`Segment`]: a named, sized mapping with a validated, versioned header
//! (see `SPEC.md` for every byte). Raw segments without a header interoperate with CPython's
//! `multiprocessing.shared_memory.SharedMemory`.
//!
//! ```
//! use shmkit::Segment;
//! # let name = format!("doc-lib-{}", std::process::id());
//! let seg = Segment::options().unlink_on_drop(true).create(&name, 4096)?;
//! seg.write_at(0, b"hello")?;
//!
//! // Another process (here: the same one) attaches by name.
//! let other = Segment::open(&name)?;
//! let mut buf = [0u8; 5];
//! other.read_at(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! ## Layers
//!
//! - `os`: the only code that makes system calls (shm, mmap, futex, process liveness).
//! - [`segment`]: names, the header, create/open/open_or_create, ownership.
//! - [`sync`]: waiting on futex words in shared memory.
//! - [`queue`]: lock-free queues: SPSC and MPMC of `T`, an SPSC byte-message ring, and an
//!   MPMC queue of byte messages (`queue::mpmc_bytes`, Python's `multiprocessing.Queue`).
//! - [`cell`]: named typed cells, `Value<T>` and `Array<T>` (locked, atomic or seqlocked).
//! - [`frames`]: zero-copy frame channel (a publisher loans slots, subscribers read in place).
//! - [`list`]: `ShareableList` in CPython's own byte layout.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(loom))]
pub mod cell;
// Under loom the cells are not built: only the seqlock protocol's models are (a loom build
// outside the tests has no use for the protocol).
#[cfg(all(loom, test))]
#[path = "cell/seqlock.rs"]
mod cell_seqlock;
pub mod error;
pub mod frames;
pub mod list;
// Test support of the forged-word tests of every shared object.
#[cfg(all(test, not(loom)))]
pub(crate) mod forged;
pub(crate) mod loom;
pub(crate) mod os;
pub mod queue;
pub mod segment;
// SPEC.md's layout tables against the code's structs (crate-private, hence here).
#[cfg(all(test, not(loom)))]
mod spec_tables;
pub mod sync;

pub use error::{Error, Result, Timeout, WouldBlock};
pub use list::Item;
#[cfg(not(loom))]
pub use list::ShareableList;
pub use os::process::{Liveness, ProcessMark};
pub use queue::ShmType;
pub use segment::{Kind, ReadOnly, ReadWrite, Segment, SegmentOptions};

// The README's examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
