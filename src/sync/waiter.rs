//! [`WaitQueue`]: block on a condition over shared memory, with a short spin, then a futex
//! park, and a waiter count so that the waking side makes no system call when nobody sleeps.

use std::fmt;
use std::time::{Duration, Instant};

use crate::loom::futex::{self, Wait};
use crate::loom::{fence_after_rmw, spin_loop, AtomicU32, Ordering};

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

/// A place to sleep until some condition over shared memory becomes true: 8 bytes,
/// `#[repr(C)]`, valid when zeroed, so it can sit inside any shmkit object.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 4 | `seq` | bumped (wrapping) by every notify; the futex word sleepers wait on |
/// | 4 | 4 | `sleepers` | processes parked or about to park |
///
/// Protocol (`SPEC.md` §5.1), a Dekker pattern with a `SeqCst` fence on each side: a waiter
/// adds itself to `sleepers`, fences, reads `seq`, re-checks its condition, and parks on `seq`
/// only if the condition is still false. A notifier makes the condition true, bumps `seq`,
/// fences, and calls `FUTEX_WAKE` only if `sleepers` is non-zero. Whichever fence comes
/// first in the single total order of `SeqCst` operations, either the notifier sees the
/// sleeper, or the sleeper sees the new `seq` (and the condition written before it).
///
/// A process killed while parked leaves `sleepers` too high: later notifies then make a
/// needless (harmless) system call. A 32-bit count cannot realistically overflow, and a 32-bit
/// `seq` cannot wrap back to a sleeper's snapshot between its read and its `FUTEX_WAIT`.
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
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitQueue")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("sleepers", &self.sleepers.load(Ordering::Relaxed))
            .finish()
    }
}

impl WaitQueue {
    /// A queue with nobody waiting (all zero, as in a fresh segment).
    #[cfg(not(loom))]
    pub const fn new() -> WaitQueue {
        WaitQueue {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// A queue with nobody waiting (loom's atomics are not `const`).
    #[cfg(loom)]
    pub fn new() -> WaitQueue {
        WaitQueue {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Block until `ready()` returns true, or `timeout` passes (`None`, or a timeout too large
    /// to represent: no limit). `ready` is called again after every wake-up, so it may be
    /// called many times.
    pub fn wait_until(
        &self,
        ready: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(), Timeout> {
        self.wait_until_deadline(ready, deadline_after(timeout))
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
            // Relaxed: ordered by the SeqCst fence right after it (pairs with the fence in
            // `notify`).
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            fence_after_rmw();
            // Acquire pairs with the Release bump in `notify`: seeing the new seq means
            // seeing the condition written before it.
            let seen = self.seq.load(Ordering::Acquire);
            let outcome = if ready() {
                None
            } else {
                Some(futex::wait(&self.seq, seen, deadline))
            };
            // Relaxed: only a count; nothing is published through it.
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            match outcome {
                None => return Ok(()),
                Some(_) if ready() => return Ok(()),
                Some(Wait::TimedOut) => return Err(Timeout),
                Some(Wait::Retry) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(Timeout)
                }
                Some(Wait::Retry) => {}
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
        // Release pairs with the sleeper's Acquire load of seq. The bump also changes the
        // futex word, so a sleeper between its load and its FUTEX_WAIT gets EAGAIN.
        self.seq.fetch_add(1, Ordering::Release);
        // Pairs with the sleeper's fence: one of the two fences is first in the SeqCst order,
        // so either we see its `sleepers` increment or it sees our `seq` bump.
        fence_after_rmw();
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            futex::wake(&self.seq, n);
        }
    }

    /// Whether anyone is parked (or about to park); a hint for callers and `shmkit info`.
    pub fn has_sleepers(&self) -> bool {
        self.sleepers() != 0
    }

    /// How many processes are parked or about to park (including any that died parked); a
    /// hint for `shmkit info` and tests, stale as soon as it is read.
    pub fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed)
    }
}

/// `now + timeout`, or `None` (no deadline) for `None` or a timeout past what `Instant` holds.
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<WaitQueue>() == 8);

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    fn one_waiter(timeout: Option<Duration>) {
        loom::model(move || {
            let q = Arc::new(WaitQueue::new());
            let flag = Arc::new(AtomicBool::new(false));
            let (q2, f2) = (q.clone(), flag.clone());
            let t = loom::thread::spawn(move || {
                f2.store(true, Ordering::Release);
                q2.notify_one();
            });
            let r = q.wait_until(|| flag.load(Ordering::Acquire), timeout);
            // An untimed wait (or a timed one whose waits sleep until woken) must succeed.
            r.unwrap();
            t.join().unwrap();
        });
    }

    /// A notify after the condition became true always reaches a waiter, whichever way the
    /// waiter's announce/snapshot/re-check interleaves with it (no lost wake-up: loom reports
    /// a deadlock if the waiter could sleep forever).
    #[test]
    fn loom_notify_is_never_lost() {
        one_waiter(None);
    }

    /// The same for a timed waiter that is woken before its deadline.
    #[test]
    fn loom_timed_waiter_is_woken() {
        crate::loom::futex::TIMED_WAITS_SLEEP.with(|c| c.set(true));
        one_waiter(Some(Duration::from_secs(3600)));
        crate::loom::futex::TIMED_WAITS_SLEEP.with(|c| c.set(false));
    }

    /// A timed waiter whose deadline passes returns Timeout or sees the condition; it never
    /// returns Ok without the condition.
    #[test]
    fn loom_timeout_never_reports_a_false_success() {
        loom::model(|| {
            let q = Arc::new(WaitQueue::new());
            let flag = Arc::new(AtomicBool::new(false));
            let (q2, f2) = (q.clone(), flag.clone());
            let t = loom::thread::spawn(move || {
                f2.store(true, Ordering::Release);
                q2.notify_all();
            });
            if q.wait_until(
                || flag.load(Ordering::Acquire),
                Some(Duration::from_secs(1)),
            )
            .is_ok()
            {
                assert!(flag.load(Ordering::Acquire));
            }
            t.join().unwrap();
        });
    }

    /// Two waiters on one queue, one notifier: both wake. (Three threads: bounded to two
    /// preemptions, which keeps the model to seconds; unbounded it runs for many minutes.)
    #[test]
    fn loom_notify_all_wakes_every_waiter() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
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
