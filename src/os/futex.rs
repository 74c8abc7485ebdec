//! Futex wait and wake on a 32-bit word, for words that live in shared memory.
//!
//! The futexes are *shared* (no `FUTEX_PRIVATE_FLAG`): the kernel keys them by the page and
//! offset, so two processes that map the same object at different addresses meet on them.

use rustix::thread::futex::{self, Flags, Timespec};
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use crate::loom::futex::Wait;

/// Sleep while `*word == expected`, until woken, a spurious wake-up, a signal, or `deadline`
/// (measured on `CLOCK_MONOTONIC`, as `Instant` is). Never blocks past the deadline; `EINTR`
/// and `EAGAIN` come back as [`Wait::Retry`] for the caller to re-check its condition and call
/// again with the same deadline.
#[cfg_attr(loom, allow(dead_code))] // under loom, the sync code parks through loom's shim
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
    let timeout = match deadline {
        None => None,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wait::TimedOut;
            }
            Some(Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            })
        }
    };
    match futex::wait(word, Flags::empty(), expected, timeout.as_ref()) {
        Err(rustix::io::Errno::TIMEDOUT) => Wait::TimedOut,
        // Woken, EAGAIN (value changed), EINTR: the caller re-checks.
        _ => Wait::Retry,
    }
}

/// Wake up to `n` sleepers on `word` (`u32::MAX`: all). Returns how many were woken.
#[cfg_attr(loom, allow(dead_code))] // as for `wait`
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    // The kernel reads the count as a signed int: u32::MAX would be -1, which wakes one.
    futex::wake(word, Flags::empty(), n.min(i32::MAX as u32)).unwrap_or(0)
}
