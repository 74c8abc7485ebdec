//! Synchronisation in shared memory: the futex-word waiter that every blocking call uses.

mod waiter;

pub(crate) use waiter::deadline_after;
pub use waiter::{Timeout, WaitQueue};
