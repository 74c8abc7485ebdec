//! [`WaitQueue`]: block on a condition over shared memory, with a short spin, then a futex
//! park, and a waiter count so that the waking side makes no system call when nobody sleeps.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use super::park;
use crate::error::Timeout;
use crate::loom::futex::Wait;
use crate::loom::{fence, spin_loop, AtomicU32, Ordering};
use crate::os::deadline;

/// A place to sleep until some condition over shared memory becomes true: 8 bytes,
/// `#[repr(C)]`, valid when zeroed, so it can sit inside any shmkit object.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 4 | `seq` | bumped (wrapping) by every notify; the futex word sleepers wait on |
/// | 4 | 4 | `sleepers` | processes parked or about to park |
///
/// Protocol (`SPEC.md` §5.1): a waiter reads `seq`, then parks on `seq` with the value it
/// read through the one futex handshake of `park.rs`, which announces it in `sleepers`,
/// re-checks the condition, re-reads `seq`, and only then sleeps. A notifier makes the
/// condition true, bumps `seq`, and calls `FUTEX_WAKE` only if `sleepers` is non-zero. Either
/// the notifier sees the sleeper, or the sleeper sees the new `seq` (and the condition written
/// before it) and does not sleep. Because the waiter re-checks its condition after
/// announcing itself, a notifier inside shmkit may also skip the bump altogether when it sees
/// no sleeper (`notify_fenced`, `notify_if_sleepers`: no read-modify-write when nobody
/// sleeps); see `park.rs`, pair A.
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
    pub(crate) seq: AtomicU32,
    pub(crate) sleepers: AtomicU32,
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
        ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<(), Timeout> {
        self.wait_spinning(ready, deadline, park::SPIN).map(|_| ())
    }

    /// [`wait_until_within`](Self::wait_until_within) for a waiter that waits again and
    /// again (a queue handle), with `spin`'s adaptive spin budget (see [`Spin`]).
    pub(crate) fn wait_adaptive(
        &self,
        ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
        spin: &Spin,
    ) -> Result<(), Timeout> {
        let r = self.wait_spinning(ready, deadline, spin.budget());
        spin.record(r == Ok(true));
        r.map(|_| ())
    }

    /// The wait loop: poll `ready()` up to `spins` times, then park until it holds or
    /// `deadline` passes. `Ok(true)`: it held only after the waiter parked (slept, or found
    /// `seq` moved after announcing itself).
    fn wait_spinning(
        &self,
        mut ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
        spins: u32,
    ) -> Result<bool, Timeout> {
        if deadline::passed(deadline) {
            return if ready() { Ok(false) } else { Err(Timeout) };
        }
        for _ in 0..spins {
            if ready() {
                return Ok(false);
            }
            spin_loop();
        }
        let mut parked = false;
        loop {
            // Snapshot first, then the checked park (announce, re-check `ready()`, re-read
            // `seq`, sleep): a notify that bumps `seq` after the snapshot makes the park
            // return at once, and one that skipped the bump (it saw no sleeper) made the
            // condition true where the re-check sees it (`park.rs`, pair A).
            let seen = self.snapshot();
            let Some(r) = self.park_checked(seen, deadline, &mut ready) else {
                return Ok(parked);
            };
            parked = true;
            if ready() {
                return Ok(true);
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

    /// [`park`](Self::park), re-checking `ready()` after announcing the sleeper (`park.rs`,
    /// pair A): `None` if it held. What makes a waiter safe against
    /// [`notify_fenced`](Self::notify_fenced).
    pub(crate) fn park_checked(
        &self,
        seen: u32,
        deadline: Option<Instant>,
        ready: &mut impl FnMut() -> bool,
    ) -> Option<Wait> {
        park::park_checked(&self.seq, &self.sleepers, seen, deadline, ready)
    }

    /// Wait for a value that `step` produces (the frames channel's `loan` and `recv`, and their
    /// loom models): snapshot `seq`; `step(false)`, an attempt; if it gives nothing,
    /// `step(true)`, the checks between attempts (a deadline passed, a peer gone), which may
    /// end the wait or say how long to sleep at most; then [`park_checked`](Self::park_checked)
    /// with the attempt as its re-check (the waker notifies only when it sees a sleeper,
    /// `park.rs` pair A); and again. An attempt answers [`Step::Done`] or [`Step::Nothing`].
    #[cfg_attr(all(loom, not(test)), allow(dead_code))] // frames only (not built under loom)
    pub(crate) fn wait_for<R>(&self, mut step: impl FnMut(bool) -> Step<R>) -> R {
        loop {
            // The snapshot before the attempt: a notify after it moves `seq`, so the park
            // below returns at once.
            let seen = self.snapshot();
            if let Step::Done(r) = step(false) {
                return r;
            }
            let until = match step(true) {
                Step::Done(r) => return r,
                Step::Sleep(until) => until,
                Step::Nothing => None,
            };
            let mut got = None;
            self.park_checked(seen, until, &mut || match step(false) {
                Step::Done(r) => {
                    got = Some(r);
                    true
                }
                _ => false,
            });
            if let Some(r) = got {
                return r;
            }
        }
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

    /// Wake up to `n` sleepers, and do nothing at all (no read-modify-write, no system call)
    /// if nobody is parked or about to park. Call after making the condition true and then
    /// issuing `fence(SeqCst)` (`park.rs`, pair A, waker side: the fence is the caller's, so
    /// that a caller with several wait queues, or a fence of its own, pays for one).
    ///
    /// Only for wait queues whose every waiter parks through
    /// [`park_checked`](Self::park_checked) (all the `wait_until` forms do): a waiter that
    /// parks on a bare `seq` snapshot ([`park`](Self::park), `Condition`) could sleep through
    /// a notify that skipped the bump. The queues use it; `notify_one`/`notify_all` stay
    /// unconditional for everyone else.
    #[inline]
    pub(crate) fn notify_fenced(&self, n: u32) {
        // Relaxed: ordered by the caller's SeqCst fence (pair A); a stale non-zero only costs
        // a needless bump and wake.
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            self.notify(n);
        }
    }

    /// [`notify_fenced`](Self::notify_fenced) with its fence: `fence(SeqCst)`, then wake up to
    /// `n` sleepers if there are any.
    #[inline]
    pub(crate) fn notify_if_sleepers(&self, n: u32) {
        // SYNC POINT, pair A (waker side; `park.rs`): the caller's condition stores, this
        // fence, then the load of `sleepers` in `notify_fenced`. Pairs with the fence after
        // the waiter's increment in `park::park_checked`.
        fence(Ordering::SeqCst);
        self.notify_fenced(n);
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

/// What a step of [`WaitQueue::wait_for`] decides.
#[cfg_attr(all(loom, not(test)), allow(dead_code))] // as `wait_for`
pub(crate) enum Step<R> {
    /// The wait is over: return this.
    Done(R),
    /// Nothing yet: sleep until a notify or this deadline at most (`None`: no deadline).
    #[cfg_attr(loom, allow(dead_code))] // the frames handles are not built under loom
    Sleep(Option<Instant>),
    /// Nothing yet (an attempt that found nothing; from the checks, the same as
    /// `Sleep(None)`).
    Nothing,
}

/// The adaptive spin budget of one waiter that waits again and again (a queue handle; not
/// shared, not in shared memory). Spinning before parking pays when the condition comes
/// true within the spin (a ping-pong at full speed: no system call at all) and costs when it
/// does not (the peer was asleep, so its reply takes a futex wake-up's latency, and the spin
/// only delays the park: `spsc_park` in BENCHMARKS.md). So a waiter spins the full
/// [`park::SPIN`] polls while its waits end in the spin, and not at all after a wait that had
/// to park, except every [`Spin::PROBE`]th wait, which spins again to find out whether the
/// peer has become fast.
#[derive(Debug, Default)]
pub(crate) struct Spin {
    /// Waits in a row that had to park (wrapping).
    parked: Cell<u32>,
}

impl Spin {
    /// After this many waits that parked, one wait spins again.
    pub(crate) const PROBE: u32 = 16;

    /// Polls before the next wait parks.
    fn budget(&self) -> u32 {
        if self.parked.get() % Self::PROBE == 0 {
            park::SPIN
        } else {
            0
        }
    }

    /// Whether the last wait had to park.
    fn record(&self, parked: bool) {
        self.parked.set(if parked {
            self.parked.get().wrapping_add(1)
        } else {
            0
        });
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

    /// A notifier that publishes `messages` values in turn, each followed by a conditional
    /// notify, and a waiter that waits for each in turn (from the second on, the notify may
    /// meet the sleeper count still raised from the previous wait: a needless bump, never a
    /// lost wake).
    fn conditional(messages: u32) {
        loom::model(move || {
            let q = Arc::new(WaitQueue::new());
            let n = Arc::new(AtomicU32::new(0));
            let (q2, n2) = (q.clone(), n.clone());
            let t = loom::thread::spawn(move || {
                for i in 1..=messages {
                    // Relaxed: the fence in `notify_if_sleepers` orders it (pair A); a bump
                    // (Release) carries it to the waiter's Acquire snapshot when there is one.
                    n2.store(i, Ordering::Relaxed);
                    q2.notify_if_sleepers(1);
                }
            });
            for i in 1..=messages {
                q.wait_until(|| n.load(Ordering::Acquire) >= i);
            }
            t.join().unwrap();
        });
    }

    /// A notifier that skips the bump and the wake when it sees no sleeper
    /// (`notify_if_sleepers`: condition store, fence, load of `sleepers`) never leaves a
    /// waiter asleep: the waiter announces itself, fences and re-checks the condition before
    /// it sleeps (`park.rs`, pair A). Loom reports a deadlock if any interleaving loses it
    /// (as it does with the notifier's fence removed).
    #[test]
    fn loom_conditional_notify_is_never_lost() {
        conditional(1);
    }

    /// The same with two messages and two waits in a row.
    #[test]
    fn loom_conditional_notify_twice() {
        conditional(2);
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
