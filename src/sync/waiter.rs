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

/// How many times `wait_until` polls its condition before it parks.
#[cfg(not(loom))]
const SPIN_LIMIT: u32 = 100;
/// Under loom every poll is a scheduling point: keep the model small.
#[cfg(loom)]
const SPIN_LIMIT: u32 = 1;

/// A place to sleep until some condition over shared memory becomes true: 8 bytes,
/// `#[repr(C)]`, valid when zeroed, so it can sit inside any shmkit object.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 4 | `seq` | bumped by every notify; the futex word sleepers wait on |
/// | 4 | 4 | `sleepers` | number of processes parked or about to park |
///
/// Protocol (`SPEC.md` §5.1): a waiter announces itself in `sleepers`, reads `seq`, re-checks
/// its condition, and parks on `seq` only if the condition is still false. A notifier first
/// makes the condition true, then bumps `seq`, then reads `sleepers` and calls `FUTEX_WAKE`
/// only if it is non-zero. All four steps are `SeqCst`, so either the notifier sees the
/// sleeper, or the sleeper sees the condition (or the new `seq`, and does not sleep).
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
///         flag.store(true, Ordering::SeqCst);
///         q.notify_all();
///     });
///     q.wait_until(|| flag.load(Ordering::SeqCst), Some(Duration::from_secs(10))).unwrap();
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
        WaitQueue { seq: AtomicU32::new(0), sleepers: AtomicU32::new(0) }
    }

    /// A queue with nobody waiting (loom's atomics are not `const`).
    #[cfg(loom)]
    pub fn new() -> WaitQueue {
        WaitQueue { seq: AtomicU32::new(0), sleepers: AtomicU32::new(0) }
    }

    /// Block until `ready()` returns true, or `timeout` passes (`None`: no limit). `ready` is
    /// called again after every wake-up, so it may be called many times.
    pub fn wait_until(&self, ready: impl FnMut() -> bool, timeout: Option<Duration>) -> Result<(), Timeout> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait_until_deadline(ready, deadline)
    }

    /// [`wait_until`](Self::wait_until) with an absolute `CLOCK_MONOTONIC` deadline, for
    /// callers that wait in several steps against one deadline.
    pub fn wait_until_deadline(&self, mut ready: impl FnMut() -> bool, deadline: Option<Instant>) -> Result<(), Timeout> {
        for _ in 0..SPIN_LIMIT {
            if ready() {
                return Ok(());
            }
            spin_loop();
        }
        loop {
            // Announce, then snapshot seq, then re-check (all SeqCst: see the type's docs).
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let seen = self.seq.load(Ordering::SeqCst);
            if ready() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return Ok(());
            }
            let outcome = futex::wait(&self.seq, seen, deadline);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
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
        // SeqCst pairs with the sleeper's SeqCst `sleepers.fetch_add` / `seq.load`: either we
        // see its announcement, or it sees our new seq (and the condition made true before).
        self.seq.fetch_add(1, Ordering::SeqCst);
        // An RMW rather than a load: loom models SeqCst loads as AcqRel, under which a load
        // could miss the sleeper's increment; an RMW reads the latest value, so either it sees
        // the increment or the increment synchronises with it (and the sleeper sees the new
        // seq). Same argument as `park.rs`.
        if self.sleepers.fetch_add(0, Ordering::SeqCst) != 0 {
            futex::wake(&self.seq, n);
        }
    }

    /// Whether anyone is parked (or about to park); a hint for callers and `shmkit info`.
    pub fn has_sleepers(&self) -> bool {
        self.sleepers.load(Ordering::Relaxed) != 0
    }
}

// loom's atomics are larger than the real ones.
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<WaitQueue>() == 8);
