//! Synchronisation in shared memory: the futex-word waiter that every blocking call uses.

mod waiter;

pub use waiter::{Timeout, WaitQueue};
