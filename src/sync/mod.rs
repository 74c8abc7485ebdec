//! Synchronisation in shared memory: robust `Lock` and `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, and the futex-word waiter they build on.
//!
//! Every primitive is a `#[repr(C)]` state (`LockState`, `EventState`, …) that can be placed
//! inside any shmkit object, and a standalone named object (`Lock::create("name")`,
//! `Event::open("name")`, …) in a segment of its own kind. `spec/sync.md` gives each layout,
//! each protocol, and what a process killed at each step leaves behind.

#[cfg(not(loom))]
mod lock;
#[cfg(not(loom))]
mod named;
#[cfg(not(loom))]
mod rlock;
mod waiter;

#[cfg(not(loom))]
pub use lock::{Lock, LockError, LockGuard, LockState, Owner};
#[cfg(not(loom))]
pub use named::SyncOptions;
#[cfg(not(loom))]
pub use rlock::{RLock, RLockGuard, RLockState};
pub use waiter::{Timeout, WaitQueue};
