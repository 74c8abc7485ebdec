//! [`Condition`]: a condition variable bound to its own robust lock, on a futex sequence word
//! (`SPEC.md` §6.6). Not built on `pthread_cond_t`: glibc bug 21422 lets a killed waiter
//! hang later broadcasts on a process-shared condvar.

#[cfg(not(loom))]
pub(crate) use real::layout;
#[cfg(not(loom))]
pub use real::{Condition, ConditionState, WaitTicket, WaitTimeoutError};

/// The `grants` word's protocol (`SPEC.md` §6.6.2), on plain atomics so that the loom
/// models below check the code the condition runs. The word holds a notify generation and
/// three counts ([`Counts`]): waiters that began since the last notify (`new`), waiters that
/// were waiting at a notify (`old`: only they may take a wake-up), and wake-ups granted to
/// them and not yet taken (`granted`, at most `old`). Every change is one SeqCst
/// compare-and-swap of the whole word, so a waiter's "a notify came since I began" (its
/// generation against the word's) and the counts it changes agree. A peer that keeps
/// rewriting the word makes a CAS give up after the retry budget.
#[cfg_attr(loom, allow(dead_code))] // under loom only the models use it
pub(crate) mod grants {
    use crate::loom::{AtomicU64, Ordering};
    use crate::sync::park::Retry;

    /// Bits of each count.
    const COUNT_BITS: u32 = 14;
    /// The largest count: more waiters at once than this saturate the count (a notify may
    /// then release fewer waiters than asked, never more).
    pub(crate) const MAX_COUNT: u64 = (1 << COUNT_BITS) - 1;
    /// Bits of the generation (the rest of the word): it wraps after 2^22 notifies.
    const GEN_BITS: u32 = 64 - 3 * COUNT_BITS;
    const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

    /// The fields of a grants word: `granted` in bits 0..14, `old` 14..28, `new` 28..42,
    /// `gen` 42..64.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Counts {
        pub gen: u64,
        pub new: u64,
        pub old: u64,
        pub granted: u64,
    }

    impl Counts {
        pub(crate) fn of(word: u64) -> Counts {
            Counts {
                granted: word & MAX_COUNT,
                old: (word >> COUNT_BITS) & MAX_COUNT,
                new: (word >> (2 * COUNT_BITS)) & MAX_COUNT,
                gen: word >> (3 * COUNT_BITS),
            }
        }

        /// The word (each field cut to its bits).
        pub(crate) fn word(self) -> u64 {
            (self.granted & MAX_COUNT)
                | (self.old & MAX_COUNT) << COUNT_BITS
                | (self.new & MAX_COUNT) << (2 * COUNT_BITS)
                | (self.gen & GEN_MASK) << (3 * COUNT_BITS)
        }
    }

    /// What a waiter's [`begin`] gave it: its generation, and whether it is counted (not
    /// when the `new` count was full).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Begun {
        pub gen: u64,
        pub counted: bool,
    }

    /// Change the word by `f` (its counts → new counts, or `None`: no change) in a
    /// compare-and-swap loop; the counts it changed from, or `None` (no change, or the
    /// budget spent).
    fn update(word: &AtomicU64, mut f: impl FnMut(Counts) -> Option<Counts>) -> Option<Counts> {
        let mut retry = Retry::default();
        // Relaxed: a first guess for the CAS.
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            let c = Counts::of(cur);
            let next = f(c)?.word();
            // SeqCst: one order with the other updates (a notify's grant comes before its
            // `seq` bump, whose Acquire load by a waiter then shows the grant).
            match word.compare_exchange_weak(cur, next, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return Some(c),
                Err(x) => cur = x,
            }
            if !retry.again() {
                return None;
            }
        }
    }

    /// A waiter begins (with the lock held): `new + 1`.
    pub(crate) fn begin(word: &AtomicU64) -> Begun {
        let mut counted = false;
        let before = update(word, |c| {
            counted = c.new < MAX_COUNT;
            Some(Counts {
                new: (c.new + 1).min(MAX_COUNT),
                ..c
            })
        });
        match before {
            Some(c) => Begun {
                gen: c.gen,
                counted,
            },
            // A peer keeps rewriting the word: not counted; a generation no word has now.
            None => Begun {
                gen: Counts::of(word.load(Ordering::Relaxed)).gen.wrapping_add(1) & GEN_MASK,
                counted: false,
            },
        }
    }

    /// A waiter that began at generation `b` takes one granted wake-up, if a notify came
    /// since (the generation moved: it is among the `old`) and one is left: `old − 1`,
    /// `granted − 1`. Whether it did.
    pub(crate) fn take(word: &AtomicU64, b: Begun) -> bool {
        update(word, |c| {
            (c.gen != b.gen && c.granted > 0).then(|| Counts {
                old: if b.counted {
                    c.old.saturating_sub(1)
                } else {
                    c.old
                },
                granted: c.granted - 1,
                ..c
            })
        })
        .is_some()
    }

    /// A waiter that began at generation `b` and took no wake-up ends its wait. Still in its
    /// generation: `new − 1`. Otherwise `old − 1`, and `granted` capped at the `old` left: if
    /// every other old waiter had a grant, one of them was this one's and goes with it (as a
    /// Python waiter that times out as it is notified takes that notify).
    pub(crate) fn leave(word: &AtomicU64, b: Begun) {
        if !b.counted {
            return;
        }
        update(word, |c| {
            Some(if c.gen == b.gen {
                Counts {
                    new: c.new.saturating_sub(1),
                    ..c
                }
            } else {
                let old = c.old.saturating_sub(1);
                Counts {
                    old,
                    granted: c.granted.min(old),
                    ..c
                }
            })
        });
    }

    /// A notify (with the lock held): every waiter becomes old (the generation moves if
    /// there were new ones), and up to `n` old waiters without a grant get one. How many
    /// were granted; `n` if the budget was spent (a peer keeps rewriting the word: wake as
    /// asked).
    pub(crate) fn grant(word: &AtomicU64, n: u32) -> u32 {
        let mut k = 0;
        let done = update(word, |c| {
            let old = (c.old + c.new).min(MAX_COUNT);
            k = old.saturating_sub(c.granted).min(u64::from(n));
            (c.new > 0 || k > 0).then(|| Counts {
                gen: if c.new > 0 { c.gen + 1 } else { c.gen },
                new: 0,
                old,
                granted: c.granted + k,
            })
        });
        match done {
            // k <= n, a u32.
            Some(_) => k as u32,
            None if k == 0 => 0,
            None => n,
        }
    }
}

#[cfg(not(loom))]
mod real {
    use std::fmt;
    use std::time::{Duration, Instant};

    use super::grants;
    use crate::os::deadline;
    use crate::os::process::ProcessMark;
    use crate::segment::Kind;
    use crate::sync::lock::{LockError, LockGuard, LockState};
    use crate::sync::named::{fingerprint_with, named_handle, Layout, Named, SyncOptions};
    use crate::sync::WaitQueue;
    use std::sync::atomic::AtomicU64;

    type Relocked<'a, T> = std::result::Result<T, LockError<LockGuard<'a>>>;

    /// How long a timed wait's re-lock may take at least, past the call's deadline.
    const RELOCK_GRACE: Duration = Duration::from_secs(1);
    type TimedWait<'a> = std::result::Result<LockGuard<'a>, WaitTimeoutError<LockGuard<'a>>>;

    /// Why a timed [`ConditionState`] wait (`wait_timeout`, `wait_deadline`,
    /// `wait_for_timeout`, `wait_for_deadline`) did not return a plain guard. Both variants
    /// can hold the guard: the lock is taken back before the wait returns, timed out or not
    /// (unless taking it back timed out, see [`wait_timeout`](ConditionState::wait_timeout)).
    ///
    /// Converts into [`shmkit::Error`](crate::Error) with `?` (`Timeout` becomes
    /// [`Error::Timeout`](crate::Error::Timeout), releasing the lock; `Lock` as
    /// [`LockError`] does). [`without_guard`](Self::without_guard) gives the `'static` form.
    ///
    /// ```
    /// use shmkit::sync::{ConditionState, WaitTimeoutError};
    /// use std::time::Duration;
    /// let cond = ConditionState::new();
    /// let g = cond.lock().unwrap();
    /// let g = match cond.wait_timeout(g, Duration::from_millis(1)) {
    ///     Ok(g) => g,                          // notified
    ///     Err(WaitTimeoutError::Timeout(g)) => g, // nobody notified: the lock is ours again
    ///     Err(e) => return Err(e.into()),      // re-locking failed
    /// };
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub enum WaitTimeoutError<G> {
        /// The time ran out before a notify (or before the predicate held). The lock has been
        /// taken back: here is its guard.
        Timeout(G),
        /// Taking the lock back failed (`LockError::Timeout`: still held by someone else 1 s
        /// past the deadline), or took it from a dead owner ([`LockError::OwnerDied`], with
        /// the guard). Reported even if the time also ran out.
        Lock(LockError<G>),
    }

    impl<G> WaitTimeoutError<G> {
        /// The guard, if the lock is held (`Timeout`, or `Lock(OwnerDied)`).
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// # let g = cond.lock().unwrap();
        /// let e = cond.wait_timeout(g, std::time::Duration::ZERO).unwrap_err();
        /// assert!(e.into_guard().is_some());
        /// ```
        pub fn into_guard(self) -> Option<G> {
            match self {
                WaitTimeoutError::Timeout(g) => Some(g),
                WaitTimeoutError::Lock(e) => e.into_guard(),
            }
        }

        /// The same error without the guard (`'static`). Dropping the guard releases the lock;
        /// for `OwnerDied` unrepaired, which makes it not recoverable.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// # let g = cond.lock().unwrap();
        /// let e = cond.wait_timeout(g, std::time::Duration::ZERO).unwrap_err().without_guard();
        /// assert!(!cond.as_lock().is_locked());
        /// let _: Box<dyn std::error::Error> = e.into();
        /// ```
        pub fn without_guard(self) -> WaitTimeoutError<()> {
            match self {
                WaitTimeoutError::Timeout(_) => WaitTimeoutError::Timeout(()),
                WaitTimeoutError::Lock(e) => WaitTimeoutError::Lock(e.without_guard()),
            }
        }

        /// Whether this is the timeout outcome.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// # let g = cond.lock().unwrap();
        /// assert!(cond.wait_timeout(g, std::time::Duration::ZERO).unwrap_err().is_timeout());
        /// ```
        pub fn is_timeout(&self) -> bool {
            matches!(self, WaitTimeoutError::Timeout(_))
        }
    }

    impl<G> From<LockError<G>> for WaitTimeoutError<G> {
        fn from(e: LockError<G>) -> Self {
            WaitTimeoutError::Lock(e)
        }
    }

    impl<G> fmt::Debug for WaitTimeoutError<G> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                WaitTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
                WaitTimeoutError::Lock(e) => f.debug_tuple("Lock").field(e).finish(),
            }
        }
    }

    impl<G> fmt::Display for WaitTimeoutError<G> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                WaitTimeoutError::Timeout(_) => {
                    f.write_str("timed out waiting on the condition (the lock is held again)")
                }
                WaitTimeoutError::Lock(e) => fmt::Display::fmt(e, f),
            }
        }
    }

    impl<G> std::error::Error for WaitTimeoutError<G> {}

    /// Drops a guard (see [`crate::Error::Lock`]).
    impl<G> From<WaitTimeoutError<G>> for crate::Error {
        fn from(e: WaitTimeoutError<G>) -> crate::Error {
            match e {
                WaitTimeoutError::Timeout(_) => crate::Error::Timeout,
                WaitTimeoutError::Lock(e) => e.into(),
            }
        }
    }

    /// The state of a condition variable with its lock: `#[repr(C)]`, 48 bytes (a 32-byte
    /// [`LockState`], an 8-byte [`WaitQueue`], then an 8-byte count of waiters and granted
    /// wake-ups), placeable inside any shmkit object.
    ///
    /// The API follows Python's `Condition`: take the lock ([`lock`](Self::lock) and its
    /// `try_`/`_timeout`/`_deadline` forms), then [`wait`](Self::wait) /
    /// [`wait_for`](Self::wait_for) (which release it while asleep and take it back before
    /// returning) or [`notify`](Self::notify) / [`notify_all`](Self::notify_all). Waits and
    /// notifies take the guard, so they cannot be called without holding the lock. Timed waits
    /// hand the guard back on timeout too ([`WaitTimeoutError::Timeout`]). As in Python,
    /// `notify(n)` wakes at most `n` of the waiters waiting when it is called, and a wait
    /// returns as notified only with one of those wake-ups: it counts the waiters and grants
    /// each woken one a wake-up it takes. The exception: a waiter killed while waiting still
    /// counts, so a later notify may grant it a wake-up, which another waiter then takes (at
    /// most one extra wake-up for each such death). A waiter that times out just as it is
    /// granted one takes it with it, as Python's does. Re-check the condition in a loop or
    /// use [`wait_for`](Self::wait_for) all the same. Unlike Python, `notify` does not wait
    /// for the woken to acknowledge.
    ///
    /// If a process dies holding the lock, the next `lock` — or a waiter re-taking the lock
    /// on its way out of `wait` — gets [`LockError::OwnerDied`] with the guard. A waiter
    /// killed while waiting is harmless.
    ///
    /// ```
    /// use shmkit::sync::ConditionState;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::time::Duration;
    /// let cond = ConditionState::new();
    /// let ready = AtomicBool::new(false); // protected by cond's lock
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let g = cond.lock().unwrap();
    ///         ready.store(true, Ordering::Relaxed);
    ///         cond.notify_all(&g);
    ///     });
    ///     let g = cond.lock().unwrap();
    ///     let _g = cond
    ///         .wait_for_timeout(g, || ready.load(Ordering::Relaxed), Duration::from_secs(10))
    ///         .unwrap();
    /// });
    /// ```
    #[repr(C)]
    pub struct ConditionState {
        pub(crate) lock: LockState,
        pub(crate) seq: WaitQueue,
        /// The notify generation, the waiters that began since it (`new`) and before it
        /// (`old`), and the wake-ups granted to old waiters and not yet taken
        /// ([`grants::Counts`], `SPEC.md` §6.6.2).
        pub(crate) grants: AtomicU64,
    }

    const _: () =
        assert!(std::mem::size_of::<ConditionState>() == std::mem::size_of::<LockState>() + 16);

    impl fmt::Debug for ConditionState {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ConditionState")
                .field("lock", &self.lock)
                .field("sequence", &self.seq.sequence())
                .field("sleepers", &self.seq.sleepers())
                .field("waiters", &self.waiters())
                .field("granted", &self.granted())
                .finish()
        }
    }

    impl ConditionState {
        /// A new condition on the heap.
        pub fn new() -> Box<ConditionState> {
            Box::new(ConditionState {
                lock: LockState {
                    core: crate::sync::robust::MutexCore::new(crate::sync::lock::LOCK_MAGIC),
                },
                seq: WaitQueue::new(),
                grants: AtomicU64::new(0),
            })
        }

        /// Initialise a condition (and its lock) in place.
        ///
        /// # Safety
        ///
        /// As for [`LockState::init`], for `size_of::<ConditionState>()` bytes.
        pub unsafe fn init(at: *mut ConditionState) {
            // SAFETY: forwarded contract; the fields lie inside `at`'s allocation.
            unsafe {
                std::ptr::addr_of_mut!((*at).seq).write(WaitQueue::new());
                std::ptr::addr_of_mut!((*at).grants).write(AtomicU64::new(0));
                LockState::init(std::ptr::addr_of_mut!((*at).lock))
            }
        }

        /// View an initialised condition in memory, after checking its lock's magic.
        ///
        /// # Safety
        ///
        /// As for [`LockState::from_ptr`], for `size_of::<ConditionState>()` bytes.
        pub unsafe fn from_ptr<'a>(
            at: *const ConditionState,
        ) -> std::result::Result<&'a ConditionState, String> {
            // SAFETY: per the contract; all fields are interior-mutable.
            let s = unsafe { &*at };
            s.check()?;
            Ok(s)
        }

        pub(crate) fn check(&self) -> std::result::Result<(), String> {
            self.lock.core.check(crate::sync::lock::LOCK_MAGIC)
        }

        /// The lock the condition is bound to.
        pub fn as_lock(&self) -> &LockState {
            &self.lock
        }

        /// Take the condition's lock if it is free (see [`LockState::try_lock`]).
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// let g = cond.try_lock().unwrap();
        /// # drop(g);
        /// ```
        pub fn try_lock(&self) -> Relocked<'_, LockGuard<'_>> {
            self.lock.try_lock()
        }

        /// Take the condition's lock (see [`LockState::lock`]).
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// let g = cond.lock().unwrap();
        /// # drop(g);
        /// ```
        pub fn lock(&self) -> Relocked<'_, LockGuard<'_>> {
            self.lock.lock()
        }

        /// Take the condition's lock for at most `timeout` (see [`LockState::lock_timeout`]).
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// let g = cond.lock_timeout(std::time::Duration::from_secs(10)).unwrap();
        /// # drop(g);
        /// ```
        pub fn lock_timeout(&self, timeout: Duration) -> Relocked<'_, LockGuard<'_>> {
            self.lock.lock_timeout(timeout)
        }

        /// Take the condition's lock by `deadline` (see [`LockState::lock_deadline`]).
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// let g = cond.lock_deadline(std::time::Instant::now()).unwrap(); // free: taken
        /// # drop(g);
        /// ```
        pub fn lock_deadline(&self, deadline: Instant) -> Relocked<'_, LockGuard<'_>> {
            self.lock.lock_deadline(deadline)
        }

        fn check_guard(&self, guard: &LockGuard<'_>, what: &str) {
            assert!(
                std::ptr::eq(guard.state(), &self.lock),
                "Condition::{what}: the guard belongs to another lock than this condition's"
            );
        }

        /// Release the lock, sleep until notified, take the lock back; no time limit.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// std::thread::scope(|s| {
        ///     let g = cond.lock().unwrap();
        ///     s.spawn(|| {
        ///         let g = cond.lock().unwrap(); // only once the waiter released it
        ///         cond.notify_all(&g);
        ///     });
        ///     let _g = cond.wait(g).unwrap();
        /// });
        /// ```
        pub fn wait<'a>(&'a self, guard: LockGuard<'a>) -> Relocked<'a, LockGuard<'a>> {
            self.wait_within(guard, None).map(|(g, _)| g)
        }

        /// [`wait`](Self::wait) for at most `timeout` (one too large to represent: no limit).
        /// On timeout the lock is taken back and the guard returned in
        /// [`WaitTimeoutError::Timeout`] (Python's `False`). Taking the lock back after the
        /// wait is bounded too, unlike Python and std (a peer may keep the lock, or write its
        /// owner word, for ever): it may go on until the deadline, or 1 s after the wait
        /// ended if that is later; a lock still held then is
        /// `WaitTimeoutError::Lock(LockError::Timeout)`, without a guard (the lock is not
        /// held).
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// let g = cond.lock().unwrap();
        /// let e = cond.wait_timeout(g, std::time::Duration::from_millis(1)).unwrap_err();
        /// assert!(e.is_timeout());
        /// ```
        pub fn wait_timeout<'a>(
            &'a self,
            guard: LockGuard<'a>,
            timeout: Duration,
        ) -> TimedWait<'a> {
            timed(self.wait_within(guard, deadline::after(Some(timeout))))
        }

        /// [`wait_timeout`](Self::wait_timeout) against an absolute `CLOCK_MONOTONIC`
        /// deadline. A deadline in the past releases and re-takes the lock once.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// let g = cond.lock().unwrap();
        /// let e = cond.wait_deadline(g, std::time::Instant::now()).unwrap_err();
        /// assert!(e.is_timeout());
        /// ```
        pub fn wait_deadline<'a>(
            &'a self,
            guard: LockGuard<'a>,
            deadline: Instant,
        ) -> TimedWait<'a> {
            timed(self.wait_within(guard, Some(deadline)))
        }

        /// The first half of a wait, for callers that take the lock back themselves (a
        /// binding whose re-lock must stay interruptible, as Python's is): count this
        /// waiter, note the notifies so far and release the lock. Then
        /// [`wait_released_deadline`](Self::wait_released_deadline) waits for a notify
        /// after this point, as often as needed, without the lock; the wait ends when the
        /// ticket is dropped (drop it before re-locking, so that a notify counts the waiters
        /// still waiting); re-lock with [`lock`](Self::lock) or its timed forms.
        /// [`wait`](Self::wait) and its forms are these steps and a re-lock.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// use std::time::{Duration, Instant};
        /// let g = cond.lock().unwrap();
        /// let mut ticket = cond.release_for_wait(g); // the lock is free now
        /// let e = cond.wait_released_timeout(&mut ticket, Duration::from_millis(1));
        /// assert_eq!(e, Err(shmkit::Timeout)); // nobody notified
        /// assert_eq!(cond.try_wait_released(&mut ticket), Err(shmkit::WouldBlock));
        /// drop(ticket); // the wait ends
        /// let _g = cond.lock().unwrap(); // ours to take back
        /// ```
        pub fn release_for_wait(&self, guard: LockGuard<'_>) -> WaitTicket<'_> {
            self.check_guard(&guard, "release_for_wait");
            // Counted with the lock held, and a notifier must hold the lock: so a notify
            // after our release counts us among the waiters it may grant a wake-up to.
            let begun = grants::begin(&self.grants);
            drop(guard);
            WaitTicket {
                cond: self,
                begun,
                notified: false,
                born: ProcessMark::here(),
            }
        }

        fn check_ticket(&self, ticket: &WaitTicket<'_>) {
            assert!(
                std::ptr::eq(ticket.cond, self),
                "Condition: the wait ticket belongs to another condition"
            );
            assert!(
                ticket.born.is_here(),
                "Condition: the wait ticket was inherited across fork(); the wait is the parent's"
            );
        }

        /// Without the lock: take a notify that came after `ticket`'s
        /// [`release_for_wait`](Self::release_for_wait), if one is there for a waiter
        /// ([`WouldBlock`](crate::WouldBlock) if not). Does not wait, and does not take the
        /// lock. Once a ticket has taken a notify, every call with it is `Ok`.
        ///
        /// # Panics
        ///
        /// If `ticket` is not of this condition, or was inherited across `fork()`.
        pub fn try_wait_released(
            &self,
            ticket: &mut WaitTicket<'_>,
        ) -> Result<(), crate::WouldBlock> {
            self.check_ticket(ticket);
            if ticket.notified || grants::take(&self.grants, ticket.begun) {
                ticket.notified = true;
                Ok(())
            } else {
                Err(crate::WouldBlock)
            }
        }

        /// Without the lock: wait until a notify that came after `ticket`'s
        /// [`release_for_wait`](Self::release_for_wait) is taken for this waiter. Does not
        /// take the lock. Call it without the lock: a notifier needs the lock, so waiting
        /// while holding it waits for ever.
        ///
        /// # Panics
        ///
        /// If `ticket` is not of this condition, or was inherited across `fork()`.
        pub fn wait_released(&self, ticket: &mut WaitTicket<'_>) {
            // Without a deadline the wait only returns once notified.
            let _ = self.wait_released_within(ticket, None);
        }

        /// As [`wait_released`](Self::wait_released), for at most `timeout`
        /// ([`Timeout`](crate::Timeout) if no notify came for this waiter).
        ///
        /// # Panics
        ///
        /// If `ticket` is not of this condition, or was inherited across `fork()`.
        pub fn wait_released_timeout(
            &self,
            ticket: &mut WaitTicket<'_>,
            timeout: Duration,
        ) -> Result<(), crate::Timeout> {
            self.wait_released_within(ticket, deadline::after(Some(timeout)))
        }

        /// As [`wait_released`](Self::wait_released), until `deadline` at most
        /// ([`Timeout`](crate::Timeout) if no notify came for this waiter).
        ///
        /// # Panics
        ///
        /// If `ticket` is not of this condition, or was inherited across `fork()`.
        pub fn wait_released_deadline(
            &self,
            ticket: &mut WaitTicket<'_>,
            deadline: Instant,
        ) -> Result<(), crate::Timeout> {
            self.wait_released_within(ticket, Some(deadline))
        }

        /// The wait behind the `wait_released` forms (`None`: no limit).
        fn wait_released_within(
            &self,
            ticket: &mut WaitTicket<'_>,
            deadline: Option<Instant>,
        ) -> Result<(), crate::Timeout> {
            self.check_ticket(ticket);
            loop {
                // The snapshot before the grant check: a notify after it moves `seq`, so the
                // park below returns at once and the next round finds its grant.
                let now = self.seq.snapshot();
                if ticket.notified || grants::take(&self.grants, ticket.begun) {
                    ticket.notified = true;
                    return Ok(());
                }
                if deadline::passed(deadline) {
                    return Err(crate::Timeout);
                }
                // In slices: a waiter woken by a notify and killed before it took the grant
                // leaves it for the others, who find it at their next slice (as they find the
                // grants of a notifier killed before its `seq` bump).
                self.seq
                    .park_past(now, crate::sync::robust::liveness_slice(deadline));
            }
        }

        /// The wait behind every form (`None`: no limit): the guard and whether `seq` moved.
        fn wait_within<'a>(
            &'a self,
            guard: LockGuard<'a>,
            deadline: Option<Instant>,
        ) -> Relocked<'a, (LockGuard<'a>, bool)> {
            self.check_guard(&guard, "wait");
            let mut ticket = self.release_for_wait(guard);
            let notified = self.wait_released_within(&mut ticket, deadline).is_ok();
            drop(ticket); // the wait ends before the re-lock
                          // Take the lock back: without a deadline as long as it takes (as Python and std);
                          // with one, bounded, but at least RELOCK_GRACE after the wait, so that a waiter
                          // whose deadline passed as it woke still gets its guard from a holder in a short
                          // critical section. A lock a live peer keeps (or an owner word a peer wrote) must
                          // not keep a timed call for ever.
            let relocked = match deadline {
                None => self.lock.lock(),
                Some(d) => self
                    .lock
                    .lock_deadline(d.max(Instant::now() + RELOCK_GRACE)),
            };
            relocked.map(|g| (g, notified))
        }

        /// Wait until `predicate()` is true, with no time limit, as Python's `wait_for`: the
        /// predicate is called with the lock held, first before any wait.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// let g = cond.lock().unwrap();
        /// let _g = cond.wait_for(g, || true).unwrap(); // already true: no wait
        /// ```
        pub fn wait_for<'a>(
            &'a self,
            guard: LockGuard<'a>,
            predicate: impl FnMut() -> bool,
        ) -> Relocked<'a, LockGuard<'a>> {
            match self.wait_for_within(guard, predicate, None) {
                Ok(g) | Err(WaitTimeoutError::Timeout(g)) => Ok(g),
                Err(WaitTimeoutError::Lock(e)) => Err(e),
            }
        }

        /// [`wait_for`](Self::wait_for) for at most `timeout`: if the predicate is still false
        /// then, [`WaitTimeoutError::Timeout`] with the guard (Python's `False`). Each re-lock
        /// is bounded as in [`wait_timeout`](Self::wait_timeout).
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// let g = cond.lock().unwrap();
        /// let e = cond.wait_for_timeout(g, || false, std::time::Duration::from_millis(1));
        /// assert!(e.unwrap_err().is_timeout());
        /// ```
        pub fn wait_for_timeout<'a>(
            &'a self,
            guard: LockGuard<'a>,
            predicate: impl FnMut() -> bool,
            timeout: Duration,
        ) -> TimedWait<'a> {
            self.wait_for_within(guard, predicate, deadline::after(Some(timeout)))
        }

        /// [`wait_for`](Self::wait_for) until `deadline`. A deadline in the past checks the
        /// predicate once.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// use std::time::Instant;
        /// let g = cond.lock().unwrap();
        /// let g = cond.wait_for_deadline(g, || true, Instant::now()).unwrap();
        /// assert!(cond.wait_for_deadline(g, || false, Instant::now()).unwrap_err().is_timeout());
        /// ```
        pub fn wait_for_deadline<'a>(
            &'a self,
            guard: LockGuard<'a>,
            predicate: impl FnMut() -> bool,
            deadline: Instant,
        ) -> TimedWait<'a> {
            self.wait_for_within(guard, predicate, Some(deadline))
        }

        fn wait_for_within<'a>(
            &'a self,
            guard: LockGuard<'a>,
            mut predicate: impl FnMut() -> bool,
            deadline: Option<Instant>,
        ) -> TimedWait<'a> {
            self.check_guard(&guard, "wait_for");
            let mut guard = guard;
            loop {
                if predicate() {
                    return Ok(guard);
                }
                if deadline::passed(deadline) {
                    return Err(WaitTimeoutError::Timeout(guard));
                }
                guard = self.wait_within(guard, deadline)?.0;
            }
        }

        /// Wake up to `n` of the threads and processes waiting now (Python's `notify(n)`):
        /// each is granted one wake-up, which its `wait` takes; a waiter that begins
        /// waiting later cannot take it. See the type's docs for the one exception.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        pub fn notify(&self, guard: &LockGuard<'_>, n: u32) {
            self.check_guard(guard, "notify");
            let k = grants::grant(&self.grants, n);
            if k > 0 {
                self.seq.notify(k);
            }
        }

        /// Wake every thread and process waiting now.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        pub fn notify_all(&self, guard: &LockGuard<'_>) {
            self.check_guard(guard, "notify_all");
            if grants::grant(&self.grants, u32::MAX) > 0 {
                self.seq.notify(u32::MAX);
            }
        }

        /// Notifies that granted a wake-up so far (mod 2^32), for `shmkit info`.
        pub fn sequence(&self) -> u32 {
            self.seq.sequence()
        }

        /// Recorded sleepers on the wait word (dead ones included), for `shmkit info`.
        pub fn sleepers(&self) -> u32 {
            self.seq.sleepers()
        }

        /// Waits begun and not ended (killed waiters included), for `shmkit info`.
        pub fn waiters(&self) -> u64 {
            let c = self.counts();
            c.new + c.old
        }

        /// Wake-ups granted and not yet taken, for `shmkit info`.
        pub fn granted(&self) -> u64 {
            self.counts().granted
        }

        fn counts(&self) -> grants::Counts {
            // Relaxed: a snapshot for display only.
            grants::Counts::of(self.grants.load(std::sync::atomic::Ordering::Relaxed))
        }
    }

    /// A wait begun by [`ConditionState::release_for_wait`] (the lock released): the notify
    /// generation it began in, and whether the wait has taken a notify. The wait ends
    /// when the ticket is dropped; one that took no notify then stops counting as a waiter.
    ///
    /// A ticket inherited by a `fork()`ed child is its parent's wait: in the child the
    /// `wait_released` forms and [`try_wait_released`](ConditionState::try_wait_released)
    /// panic (taking a wake-up with it would take the parent's), and dropping it there
    /// changes nothing shared (ending the parent's wait would make a notify skip the parent,
    /// still waiting).
    #[must_use = "dropping the ticket ends the wait"]
    pub struct WaitTicket<'a> {
        cond: &'a ConditionState,
        begun: grants::Begun,
        notified: bool,
        /// The process that began the wait.
        born: ProcessMark,
    }

    impl WaitTicket<'_> {
        /// Whether the wait has taken a notify.
        pub fn is_notified(&self) -> bool {
            self.notified
        }
    }

    impl fmt::Debug for WaitTicket<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("WaitTicket")
                .field("generation", &self.begun.gen)
                .field("notified", &self.notified)
                .finish()
        }
    }

    impl Drop for WaitTicket<'_> {
        fn drop(&mut self) {
            // In a fork()ed child the wait is the parent's: leave it counted.
            if !self.notified && self.born.is_here() {
                grants::leave(&self.cond.grants, self.begun);
            }
        }
    }

    /// A timed wait's outcome: notified → the guard; not → `Timeout` with the guard.
    fn timed<'a>(r: Relocked<'a, (LockGuard<'a>, bool)>) -> TimedWait<'a> {
        match r {
            Ok((g, true)) => Ok(g),
            Ok((g, false)) => Err(WaitTimeoutError::Timeout(g)),
            Err(e) => Err(WaitTimeoutError::Lock(e)),
        }
    }

    const FINGERPRINT: u64 = fingerprint_with(
        b"shmkit condition v3: lock v2 (magic u32, depth u32, owner u64 (token<<3 | recording<<2 | inconsistent<<1 | waiters), seq u32, sleepers u32, thread u32, pid u32), then seq u32, sleepers u32, grants u64 (gen<<42 | new<<28 | old<<14 | granted)",
        48,
    );

    pub(crate) fn layout() -> Layout<ConditionState> {
        Layout {
            kind: Kind::CONDITION,
            fingerprint: FINGERPRINT,
            check: ConditionState::check,
        }
    }

    fn init(p: *mut ConditionState) -> std::io::Result<()> {
        // SAFETY: `p` is the unpublished payload of a segment we are creating, sized and
        // aligned for a ConditionState, unreachable by others until published.
        unsafe { ConditionState::init(p) };
        Ok(())
    }

    /// A named condition variable with its lock: kind [`Kind::CONDITION`], derefs to
    /// [`ConditionState`].
    ///
    /// ```
    /// use shmkit::sync::Condition;
    /// use std::time::Duration;
    /// # let name = format!("doc-cond-{}", std::process::id());
    /// let cond = Condition::options().unlink_on_drop(true).create(&name)?;
    /// let g = cond.lock().unwrap();
    /// let timed_out = cond.wait_timeout(g, Duration::from_millis(1)).unwrap_err();
    /// let _g = timed_out.into_guard().unwrap(); // nobody notified: the lock is ours again
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub struct Condition {
        inner: Named<ConditionState>,
    }

    named_handle!(Condition, ConditionState, "condition", "", layout(), init);

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A timed wait does not wait for ever to take the lock back: the holder here keeps
        /// it until the waiter has returned (up to 10 s, so that the test fails rather than
        /// hangs if the re-lock is unbounded). A wait that got the lock back before the
        /// holder first took it proves nothing and is made again.
        #[test]
        fn timed_wait_gives_up_taking_back_a_lock_someone_keeps() {
            use std::sync::atomic::{AtomicBool, Ordering};
            let c = ConditionState::new();
            let (holding, returned) = (AtomicBool::new(false), AtomicBool::new(false));
            std::thread::scope(|s| {
                let mut g = c.lock().unwrap();
                s.spawn(|| {
                    let g = c.lock().unwrap(); // once the waiter has released it
                    holding.store(true, Ordering::SeqCst);
                    let until = Instant::now() + Duration::from_secs(10);
                    while !returned.load(Ordering::SeqCst) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    drop(g);
                });
                let r = loop {
                    match c.wait_for_timeout(
                        g,
                        || holding.load(Ordering::SeqCst),
                        Duration::from_millis(10),
                    ) {
                        // We took the lock back before the other thread first got it (not
                        // scheduled in time on a busy machine): wait again.
                        Err(WaitTimeoutError::Timeout(back)) if !holding.load(Ordering::SeqCst) => {
                            g = back;
                        }
                        r => break r,
                    }
                };
                returned.store(true, Ordering::SeqCst);
                assert!(
                    matches!(r, Err(WaitTimeoutError::Lock(LockError::Timeout))),
                    "{r:?}"
                );
            });
        }

        #[test]
        #[should_panic(expected = "another lock")]
        fn guard_of_another_lock_panics() {
            let c = ConditionState::new();
            let other = LockState::new();
            let g = other.lock().unwrap();
            c.notify(&g, 1);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::grants;
    use crate::loom::{AtomicU64, Ordering};
    use crate::sync::WaitQueue;
    use loom::sync::{Arc, Mutex};

    /// No waiter, old or new, and no grant left in a word.
    fn drained(word: &AtomicU64) -> bool {
        let c = grants::Counts::of(word.load(Ordering::Relaxed));
        (c.new, c.old, c.granted) == (0, 0, 0)
    }

    /// The wake-up grants (the production `grants` functions, a loom mutex standing in for
    /// the lock): two waiters begin, a `notify(1)` grants one wake-up, each waiter looks for
    /// it twice (a timed park returns at once under loom) and otherwise leaves. Whatever the
    /// interleaving, at most one waiter takes it, and when both are done nothing is left
    /// counted (no waiter, no grant: a leaving waiter takes a grant no one else can).
    #[test]
    fn notify_one_is_taken_once_and_nothing_leaks() {
        loom::model(|| {
            let st = Arc::new((Mutex::new(()), WaitQueue::new(), AtomicU64::new(0)));
            let taken = Arc::new(AtomicU64::new(0));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let (st, taken) = (st.clone(), taken.clone());
                    loom::thread::spawn(move || {
                        let g = st.0.lock().unwrap();
                        let b = grants::begin(&st.2);
                        drop(g);
                        for _ in 0..2 {
                            let now = st.1.snapshot();
                            if grants::take(&st.2, b) {
                                taken.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            st.1.park_past(now, Some(std::time::Instant::now()));
                        }
                        grants::leave(&st.2, b);
                    })
                })
                .collect();
            {
                let _g = st.0.lock().unwrap();
                let k = grants::grant(&st.2, 1);
                assert!(k <= 1);
                if k > 0 {
                    st.1.notify(k);
                }
            }
            for w in waiters {
                w.join().unwrap();
            }
            assert!(taken.load(Ordering::Relaxed) <= 1);
            assert!(drained(&st.2));
        });
    }

    /// The lock (its flag: a waiter has begun), the wait word and the grants word.
    type Blocking = Arc<(Mutex<bool>, WaitQueue, AtomicU64)>;

    /// A waiter that begins (with the lock held, setting the flag), then waits without a
    /// deadline until it takes a grant.
    fn blocking_waiter(st: Blocking) -> loom::thread::JoinHandle<()> {
        loom::thread::spawn(move || {
            let mut g = st.0.lock().unwrap();
            let b = grants::begin(&st.2);
            *g = true; // begun
            drop(g);
            loop {
                let now = st.1.snapshot();
                if grants::take(&st.2, b) {
                    return;
                }
                st.1.park_past(now, None);
            }
        })
    }

    /// Once the waiter has begun (its flag, read under the lock): `notify(1)`; how many it
    /// granted.
    fn notify_once_begun(st: &Blocking) -> u32 {
        loop {
            let g = st.0.lock().unwrap();
            if *g {
                let k = grants::grant(&st.2, 1);
                if k > 0 {
                    st.1.notify(k);
                }
                return k;
            }
            drop(g);
            loom::thread::yield_now();
        }
    }

    /// A waiter blocked without a deadline is released by the grant made for it: the
    /// notify comes once the waiter has begun (the waiter signals that under the lock), and
    /// a lost wake-up (the grant made, the waiter asleep for ever) is a loom deadlock.
    #[test]
    fn a_granted_waiter_is_released() {
        loom::model(|| {
            let st: Blocking = Arc::new((Mutex::new(false), WaitQueue::new(), AtomicU64::new(0)));
            let t = blocking_waiter(st.clone());
            assert_eq!(notify_once_begun(&st), 1);
            t.join().unwrap();
            assert!(drained(&st.2));
        });
    }

    /// Review finding (condgrant): W1 is granted a wake-up by a first notify and leaves
    /// without taking it (timed out) while W3, which began after that notify, waits. W3
    /// cannot take that grant (no notify came since it began), and it must not stand in the
    /// way of the next: a second notify(1) releases W3 (blocked without a deadline: a loom
    /// deadlock otherwise), whatever the order of W1's leave and W3's begin.
    #[test]
    fn a_waiter_that_began_after_a_notify_is_released_by_the_next() {
        loom::model(|| {
            let st: Blocking = Arc::new((Mutex::new(false), WaitQueue::new(), AtomicU64::new(0)));
            let b1 = {
                let _g = st.0.lock().unwrap();
                let b = grants::begin(&st.2);
                assert_eq!(grants::grant(&st.2, 1), 1); // for W1
                st.1.notify(1);
                b
            };
            let s1 = st.clone();
            let w1 = loom::thread::spawn(move || grants::leave(&s1.2, b1));
            let w3 = blocking_waiter(st.clone());
            w1.join().unwrap();
            notify_once_begun(&st);
            w3.join().unwrap();
            assert!(drained(&st.2));
        });
    }

    /// The condition protocol with a loom mutex standing in for the lock: a notify made after
    /// the predicate became true is never lost, whatever the interleaving of the waiter's
    /// snapshot / unlock / park.
    #[test]
    fn notify_is_not_lost() {
        loom::model(|| {
            let state = Arc::new((Mutex::new(false), WaitQueue::new()));
            let s2 = state.clone();
            let t = loom::thread::spawn(move || {
                let mut ready = s2.0.lock().unwrap();
                *ready = true;
                s2.1.notify(1);
                drop(ready);
            });
            let mut ready = state.0.lock().unwrap();
            while !*ready {
                let seen = state.1.snapshot();
                drop(ready);
                state.1.park_past(seen, None);
                ready = state.0.lock().unwrap();
            }
            drop(ready);
            t.join().unwrap();
        });
    }

    /// A timed wait that nobody notifies reports a timeout.
    #[test]
    fn timed_wait_times_out() {
        loom::model(|| {
            let q = WaitQueue::new();
            let seen = q.snapshot();
            assert!(!q.park_past(seen, Some(std::time::Instant::now())));
            assert_eq!(q.sleepers(), 0);
        });
    }
}
