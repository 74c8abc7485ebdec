//! [`WaitQueue`]: block on a condition over shared memory, with a short spin, then a futex
//! park, and a waiter count so that the waking side makes no system call when nobody sleeps.

use std::fmt;
use std::time::{Duration, Instant};

use crate::loom::futex::{self, Wait};
use crate::loom::{spin_loop, AtomicU32, Ordering};

/// A blocking call's deadline passed before its condition held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout;

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for Timeout {}

/// How many times `wait_until` polls its condition before it parks (once under loom, where
/// every poll is a scheduling point).
const SPIN_LIMIT: u32 = if cfg!(loom) { 1 } else { 100 };

/// A place to sleep until some condition over shared memory becomes true: one `u32` word,
/// `#[repr(C)]`, valid when zeroed, so it can sit inside any shmkit object.
///
/// | bits | field | meaning |
/// |---|---|---|
/// | 0..16 | `sleepers` | processes parked or about to park |
/// | 16..32 | `seq` | bumped by every notify (wrapping) |
///
/// The word is also the futex sleepers wait on. Protocol (`SPEC.md` §5.1): a waiter announces
/// itself with an atomic add to `sleepers`, re-checks its condition, and parks on the word's
/// value *after its own add* only if the condition is still false. A notifier first makes the
/// condition true, then bumps `seq` with an atomic add, and calls `FUTEX_WAKE` only if the
/// value it replaced had sleepers. Both are read-modify-writes of the same word, so they are
/// ordered: either the notifier sees the sleeper (and wakes it, or changes the word under its
/// `FUTEX_WAIT`), or the sleeper's add reads the notifier's (Acquire after Release) and its
/// re-check sees the condition. No `SeqCst` store-load pattern is needed.
///
/// A process killed while parked leaves `sleepers` too high: later notifies then make a
/// needless (harmless) system call. It never causes a missed wake-up.
///
/// ```
/// use shmkit::sync::WaitQueue;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
///
/// let q = WaitQueue::new();
/// let flag = AtomicBool::new(false);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         flag.store(true, Ordering::Release);
///         q.notify_all();
///     });
///     q.wait_until(|| flag.load(Ordering::Acquire), Some(Duration::from_secs(10))).unwrap();
/// });
/// // Nothing will set it again: a timed wait times out.
/// assert!(q.wait_until(|| false, Some(Duration::from_millis(1))).is_err());
/// ```
#[repr(C)]
#[derive(Default)]
pub struct WaitQueue {
    word: AtomicU32,
}

const SLEEPER: u32 = 1;
const SLEEPER_MASK: u32 = 0xffff;
const SEQ_ONE: u32 = 1 << 16;

impl fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.word.load(Ordering::Relaxed);
        f.debug_struct("WaitQueue")
            .field("seq", &(w >> 16))
            .field("sleepers", &(w & SLEEPER_MASK))
            .finish()
    }
}

impl WaitQueue {
    /// A queue with nobody waiting (all zero, as in a fresh segment).
    #[cfg(not(loom))]
    pub const fn new() -> WaitQueue {
        WaitQueue {
            word: AtomicU32::new(0),
        }
    }

    /// A queue with nobody waiting (loom's atomics are not `const`).
    #[cfg(loom)]
    pub fn new() -> WaitQueue {
        WaitQueue {
            word: AtomicU32::new(0),
        }
    }

    /// Block until `ready()` returns true, or `timeout` passes (`None`: no limit). `ready` is
    /// called again after every wake-up, so it may be called many times.
    pub fn wait_until(
        &self,
        ready: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(), Timeout> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait_until_deadline(ready, deadline)
    }

    /// [`wait_until`](Self::wait_until) with an absolute `CLOCK_MONOTONIC` deadline, for
    /// callers that wait in several steps against one deadline.
    pub fn wait_until_deadline(
        &self,
        mut ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<(), Timeout> {
        for _ in 0..SPIN_LIMIT {
            if ready() {
                return Ok(());
            }
            spin_loop();
        }
        loop {
            // Announce. Acquire pairs with the notifier's Release add: if our add reads its
            // bump, the re-check below sees the condition it made true.
            let seen = self
                .word
                .fetch_add(SLEEPER, Ordering::AcqRel)
                .wrapping_add(SLEEPER);
            if ready() {
                self.word.fetch_sub(SLEEPER, Ordering::Relaxed); // only a count: no data
                return Ok(());
            }
            let outcome = futex::wait(&self.word, seen, deadline);
            // Acquire: after a wake, this add reads a value at or after the notifier's bump
            // (one modification order), so the re-check sees the condition.
            self.word.fetch_sub(SLEEPER, Ordering::AcqRel);
            if ready() {
                return Ok(());
            }
            if outcome == Wait::TimedOut || deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Timeout);
            }
        }
    }

    /// Wake every sleeper. Call after making the condition true.
    pub fn notify_all(&self) {
        self.notify(u32::MAX)
    }

    /// Wake one sleeper. Only correct when any one sleeper can consume the change; sleepers
    /// waiting on different conditions need [`notify_all`](Self::notify_all).
    pub fn notify_one(&self) {
        self.notify(1)
    }

    fn notify(&self, n: u32) {
        // Release pairs with the sleeper's Acquire adds: a sleeper whose add comes after ours
        // sees the condition. The bump also changes the futex word, so a sleeper between its
        // re-check and its FUTEX_WAIT gets EAGAIN instead of sleeping.
        let before = self.word.fetch_add(SEQ_ONE, Ordering::Release);
        if before & SLEEPER_MASK != 0 {
            futex::wake(&self.word, n);
        }
    }

    /// Whether anyone is parked (or about to park); a hint for callers and `shmkit info`.
    pub fn has_sleepers(&self) -> bool {
        self.word.load(Ordering::Relaxed) & SLEEPER_MASK != 0
    }
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<WaitQueue>() == 4);

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// A notify after the condition became true always reaches a waiter, whichever way the
    /// waiter's announce/snapshot/re-check interleaves with it (no lost wake-up: loom reports
    /// a deadlock if the waiter could sleep forever).
    #[test]
    fn loom_notify_is_never_lost() {
        loom::model(|| {
            let q = Arc::new(WaitQueue::new());
            let flag = Arc::new(AtomicBool::new(false));
            let (q2, f2) = (q.clone(), flag.clone());
            let t = loom::thread::spawn(move || {
                f2.store(true, Ordering::Release);
                q2.notify_all();
            });
            q.wait_until(|| flag.load(Ordering::Acquire), None).unwrap();
            t.join().unwrap();
        });
    }

    /// Two waiters on one queue, one notifier: both wake.
    #[test]
    fn loom_notify_all_wakes_every_waiter() {
        loom::model(|| {
            let q = Arc::new(WaitQueue::new());
            let flag = Arc::new(AtomicBool::new(false));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let (q, f) = (q.clone(), flag.clone());
                    loom::thread::spawn(move || {
                        q.wait_until(|| f.load(Ordering::Acquire), None).unwrap()
                    })
                })
                .collect();
            flag.store(true, Ordering::Release);
            q.notify_all();
            for w in waiters {
                w.join().unwrap();
            }
        });
    }
}
