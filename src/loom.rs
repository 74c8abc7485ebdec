//! The one atomics shim: every atomic used by a shared-memory protocol comes from here, so that
//! under `cfg(loom)` the loom model checker can swap in its own types (as tokio does).
//!
//! Under loom, futex waits and wakes are modelled by [`futex`] with a loom mutex and condition
//! variable, so a lost wake-up shows up as a deadlock the model checker reports.

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::atomic::{fence, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{fence, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Busy-wait hint for spin loops.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Futex operations on a word of this module's [`AtomicU32`].
///
/// Outside loom this is the kernel futex (shared, not private: keyed by the mapped page, so it
/// works across processes). Under loom it is a model with the same contract: `wait` returns at
/// once if the word is not `expected`, may return spuriously, and a `wake` after a store is
/// never lost.
pub(crate) mod futex {
    use super::AtomicU32;
    use std::time::Instant;

    /// Outcome of [`wait`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Wait {
        /// Woken, spurious wake-up, interrupted, or the word was not `expected`: re-check.
        Retry,
        /// The deadline passed.
        TimedOut,
    }

    /// Sleep while `*word == expected`, until woken or until `deadline`.
    #[cfg(not(loom))]
    pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
        crate::os::futex::wait(word, expected, deadline)
    }

    /// Wake up to `n` sleepers on `word`; returns how many woke.
    #[cfg(not(loom))]
    pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
        crate::os::futex::wake(word, n)
    }

    #[cfg(loom)]
    loom::lazy_static! {
        static ref PARK: (loom::sync::Mutex<()>, loom::sync::Condvar) =
            (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
    }

    /// Model: check under a global lock, sleep on a global condvar. A timed wait may also
    /// return `TimedOut` without sleeping, which explores the timeout paths.
    #[cfg(loom)]
    pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
        use super::Ordering::SeqCst;
        if deadline.is_some() {
            return if word.load(SeqCst) == expected {
                Wait::TimedOut
            } else {
                Wait::Retry
            };
        }
        let guard = PARK.0.lock().unwrap();
        if word.load(SeqCst) == expected {
            drop(PARK.1.wait(guard).unwrap());
        }
        Wait::Retry
    }

    /// Model: take the global lock (so a waiter between its check and its sleep cannot miss
    /// us) and wake everyone; waiters re-check.
    #[cfg(loom)]
    pub(crate) fn wake(_word: &AtomicU32, _n: u32) -> usize {
        let _guard = PARK.0.lock().unwrap();
        PARK.1.notify_all();
        1
    }
}
