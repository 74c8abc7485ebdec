//! [`WaitQueue`]: block on a condition over shared memory, with a short spin, then a futex
//! park, and a waiter count so that the waking side makes no system call when nobody sleeps.

use std::fmt;
use std::time::{Duration, Instant};

use super::park;
use crate::error::Timeout;
use crate::loom::futex::Wait;
use crate::loom::{fence, spin_loop, AtomicU32, Ordering};
use crate::os::deadline;

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
/// Protocol (`SPEC.md` §5.1): a waiter reads `seq`, checks its condition, and if it is false
/// parks on `seq` with the value it read, through the one futex handshake of `park.rs` (which
/// announces it in `sleepers` and re-reads `seq` before sleeping). A notifier makes the
/// condition true, bumps `seq`, and calls `FUTEX_WAKE` only if `sleepers` is non-zero. Either
/// the notifier sees the sleeper, or the sleeper sees the new `seq` (and the condition written
/// before it) and does not sleep.
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
///     q.wait_until_timeout(|| flag.load(Ordering::Acquire), Duration::from_secs(10)).unwrap();
/// });
/// // Nothing will set it again: a timed wait times out.
/// assert_eq!(q.wait_until_timeout(|| false, Duration::from_millis(1)), Err(shmkit::Timeout));
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

    /// Block until `ready()` returns true, with no time limit. `ready` is called again after
    /// every wake-up, so it may be called many times. There is no `try_` form: calling
    /// `ready()` is the non-blocking check.
    ///
    /// ```
    /// use shmkit::sync::WaitQueue;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let (q, n) = (WaitQueue::new(), AtomicU32::new(0));
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         n.store(1, Ordering::Release);
    ///         q.notify_one();
    ///     });
    ///     q.wait_until(|| n.load(Ordering::Acquire) == 1);
    /// });
    /// ```
    pub fn wait_until(&self, ready: impl FnMut() -> bool) {
        // Without a deadline the wait only returns once `ready()` held.
        let _ = self.wait_until_within(ready, None);
    }

    /// Block until `ready()` returns true, or `timeout` passes ([`Timeout`]). A timeout too
    /// large to represent means no limit; a zero timeout checks `ready()` once.
    ///
    /// ```
    /// # use shmkit::sync::WaitQueue;
    /// # use std::time::Duration;
    /// let q = WaitQueue::new();
    /// assert!(q.wait_until_timeout(|| true, Duration::ZERO).is_ok());
    /// assert!(q.wait_until_timeout(|| false, Duration::from_millis(1)).is_err());
    /// ```
    pub fn wait_until_timeout(
        &self,
        ready: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<(), Timeout> {
        self.wait_until_within(ready, deadline::after(Some(timeout)))
    }

    /// Block until `ready()` returns true, or `deadline` (`CLOCK_MONOTONIC`) passes
    /// ([`Timeout`]), for callers that wait in several steps against one deadline. A deadline
    /// in the past checks `ready()` once.
    ///
    /// ```
    /// # use shmkit::sync::WaitQueue;
    /// # use std::time::Instant;
    /// let q = WaitQueue::new();
    /// assert_eq!(q.wait_until_deadline(|| false, Instant::now()), Err(shmkit::Timeout));
    /// ```
    pub fn wait_until_deadline(
        &self,
        ready: impl FnMut() -> bool,
        deadline: Instant,
    ) -> Result<(), Timeout> {
        self.wait_until_within(ready, Some(deadline))
    }

    /// The wait loop behind every form: until `ready()`, or `deadline` (`None`: no limit).
    /// A passed deadline checks `ready()` once. For the queues, which carry `Option<Instant>`
    /// deadlines through several waits.
    pub(crate) fn wait_until_within(
        &self,
        mut ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<(), Timeout> {
        if deadline::passed(deadline) {
            return if ready() { Ok(()) } else { Err(Timeout) };
        }
        for _ in 0..SPIN_LIMIT {
            if ready() {
                return Ok(());
            }
            spin_loop();
        }
        loop {
            // Snapshot first, then check: a notify after the snapshot changes `seq`, so the
            // park below returns at once (`park.rs`'s handshake) instead of sleeping through
            // a condition that became true after `ready()` looked.
            let seen = self.snapshot();
            if ready() {
                return Ok(());
            }
            let r = self.park(seen, deadline);
            if ready() {
                return Ok(());
            }
            if r == Wait::TimedOut || deadline::passed(deadline) {
                return Err(Timeout);
            }
        }
    }

    /// The current sequence number, to [`park`](Self::park) against after checking a
    /// condition. Acquire pairs with the Release half of the SeqCst bump in `notify`: seeing
    /// the new `seq` means seeing the condition made true before it.
    pub(crate) fn snapshot(&self) -> u32 {
        self.seq.load(Ordering::Acquire)
    }

    /// Sleep until `seq` moves past `seen` (a notify), a spurious wake-up, or `deadline`.
    pub(crate) fn park(&self, seen: u32, deadline: Option<Instant>) -> Wait {
        park::park(&self.seq, &self.sleepers, seen, deadline)
    }

    /// Sleep until `seq` moves past `seen` or `deadline` passes, retrying spurious wake-ups
    /// and `EINTR` against the same deadline. Returns whether `seq` moved (`false`: timed
    /// out). For callers that take their snapshot under a lock and park after releasing it
    /// (`Condition`).
    #[cfg_attr(loom, allow(dead_code))] // only Condition (not built under loom) and models
    pub(crate) fn park_past(&self, seen: u32, deadline: Option<Instant>) -> bool {
        loop {
            let r = self.park(seen, deadline);
            if self.snapshot() != seen {
                return true;
            }
            if r == Wait::TimedOut || deadline::passed(deadline) {
                return false;
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

    /// Wake up to `n` sleepers (more may return: those between their snapshot and their
    /// futex wait see the new `seq`).
    pub(crate) fn notify(&self, n: u32) {
        // SeqCst: a Release for the sleeper's Acquire snapshot, and the waker's write of the
        // park handshake. The bump changes the futex word, so a sleeper between its snapshot
        // and its FUTEX_WAIT gets EAGAIN.
        self.seq.fetch_add(1, Ordering::SeqCst);
        park::unpark(&self.seq, &self.sleepers, n);
    }

    /// Wake every sleeper, but only if one is registered: with nobody parked this is a fence
    /// and a load of `sleepers` (no write to the queue's cache line, no system call). Correct
    /// only for waiters that sleep with [`park_unless`](Self::park_unless), which re-checks the
    /// condition after registering; call after making the condition true.
    pub(crate) fn notify_if_sleepers(&self) {
        // SeqCst fence: the waker's side of the Dekker pair whose waiter's side is the fence
        // in `park::park_unless` (after its sleeper increment, before its condition check):
        // either this load sees the sleeper, or the waiter's check sees our condition.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence (a later decrement seen here belongs to a waiter that
        // has already returned and re-checks).
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.notify_all();
        }
    }

    /// Sleep until `seq` moves past `seen` (taken before the caller's last check), a
    /// spurious wake-up, or `deadline`, unless `ready()`, checked after registering as a
    /// sleeper, holds: then return `true` at once. The waiter's half of
    /// [`notify_if_sleepers`](Self::notify_if_sleepers) (and correct with every other
    /// notify). The caller re-checks its condition after a `false`.
    pub(crate) fn park_unless(
        &self,
        seen: u32,
        deadline: Option<Instant>,
        ready: impl FnOnce() -> bool,
    ) -> bool {
        park::park_unless(&self.seq, &self.sleepers, seen, deadline, ready).is_none()
    }

    /// Whether anyone is parked (or about to park); a hint for callers and `shmkit info`.
    pub fn has_sleepers(&self) -> bool {
        self.sleepers() != 0
    }

    /// Notifies so far (mod 2^32); a snapshot for `shmkit info`.
    pub fn sequence(&self) -> u32 {
        self.seq.load(Ordering::Relaxed) // display only
    }

    /// How many processes are parked or about to park (including any that died parked); a
    /// hint for `shmkit info` and tests, stale as soon as it is read.
    pub fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed)
    }
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
            let r = q.wait_until_within(|| flag.load(Ordering::Acquire), deadline::after(timeout));
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
            if q.wait_until_timeout(|| flag.load(Ordering::Acquire), Duration::from_secs(1))
                .is_ok()
            {
                assert!(flag.load(Ordering::Acquire));
            }
            t.join().unwrap();
        });
    }

    /// The conditional notify: a waker that makes the condition true and then calls
    /// `notify_if_sleepers` always reaches a waiter that sleeps with `park_unless` (loom
    /// reports a deadlock if the waiter could sleep forever).
    #[test]
    fn loom_notify_if_sleepers_is_never_lost() {
        loom::model(|| {
            let q = Arc::new(WaitQueue::new());
            let flag = Arc::new(AtomicBool::new(false));
            let (q2, f2) = (q.clone(), flag.clone());
            let t = loom::thread::spawn(move || {
                f2.store(true, Ordering::Release);
                q2.notify_if_sleepers();
            });
            loop {
                let seen = q.snapshot();
                if flag.load(Ordering::Acquire) {
                    break;
                }
                if q.park_unless(seen, None, || flag.load(Ordering::Acquire)) {
                    break;
                }
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
                    loom::thread::spawn(move || q.wait_until(|| f.load(Ordering::Acquire)))
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
