//! Synchronisation in shared memory: robust `Lock` and `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, and the futex-word waiter they build on.
//!
//! Every primitive is a `#[repr(C)]` state (`LockState`, `EventState`, …) that can be placed
//! inside any shmkit object, and a standalone named object (`Lock::create("name")`,
//! `Event::open("name")`, …) in a segment of its own kind. `SPEC.md` §6 gives each layout,
//! each protocol, and what a process killed at each step leaves behind.
//!
//! Every blocking call comes as `try_x()`, `x()`, `x_timeout(Duration)` and
//! `x_deadline(Instant)`, with one [`Timeout`](crate::Timeout) outcome and errors that convert
//! into [`shmkit::Error`](crate::Error) with `?` (see [`crate::error`] for the scheme).
//!
//! A handle reaches its state only through its own methods (4-byte futex words with 4-byte
//! atomics): it hands out no `&Segment` over its mapping, on which safe code could load those
//! words in whole 8-byte words while another thread changes them, a mixed-size race that
//! Rust's model leaves undefined (`SPEC.md` §1). `header()` gives the validated header:
//!
//! ```compile_fail
//! let e = shmkit::sync::Event::open("some-event").unwrap();
//! e.segment(); // error: no method named `segment`
//! ```
//!
//! Under `cfg(loom)` only the futex-word protocols are compiled, the lock's included
//! (`robust.rs`); the handles, which need liveness tokens and segments, are not modelled.

mod barrier;
mod condition;
mod event;
#[cfg(all(test, not(loom)))]
mod forged_tests;
#[cfg(not(loom))]
mod inspect;
#[cfg(not(loom))]
mod lock;
#[cfg(not(loom))]
mod named;
pub(crate) mod park;
#[cfg(not(loom))]
mod rlock;
mod robust;
mod semaphore;
pub(crate) mod waiter;

#[cfg(not(loom))]
pub use barrier::Barrier;
pub use barrier::{BarrierError, BarrierState, MAX_PARTIES};
#[cfg(not(loom))]
pub use condition::{Condition, ConditionState, WaitTicket, WaitTimeoutError};
#[cfg(not(loom))]
pub use event::Event;
pub use event::{EventState, EventTicket};
#[cfg(not(loom))]
pub(crate) use inspect::lock_info;
#[cfg(not(loom))]
pub use inspect::{
    inspect, BarrierInfo, ConditionInfo, EventInfo, LockInfo, OwnerInfo, SemaphoreInfo, SyncInfo,
};
#[cfg(not(loom))]
pub use lock::{Lock, LockError, LockGuard, LockState, Owner};
#[cfg(not(loom))]
pub use named::SyncOptions;
#[cfg(not(loom))]
pub use rlock::{RLock, RLockGuard, RLockState};
pub(crate) use robust::token_of;
// The forged-word tests make a lock look held by the calling thread (`crate::forged`).
#[cfg(all(test, not(loom)))]
pub(crate) use robust::thread_number;
// The list's models take the lock over from a dead writer (`list/seqlock.rs`).
#[cfg(not(loom))]
pub(crate) use robust::LIVENESS_SLICE;
#[cfg(all(test, loom))]
pub(crate) use robust::{Acquired, Block, Me, MutexCore};
#[cfg(not(loom))]
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use semaphore::{SemaphoreError, SemaphoreState, SEM_VALUE_MAX};
pub use waiter::WaitQueue;
