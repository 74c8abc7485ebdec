//! [`Condition`]: a condition variable bound to its own robust lock, on a futex sequence word
//! (`SPEC.md` §6.6). Not built on `pthread_cond_t`: glibc bug 21422 lets a killed waiter
//! hang later broadcasts on a process-shared condvar.

#[cfg(not(loom))]
pub(crate) use real::layout;
#[cfg(not(loom))]
pub use real::{Condition, ConditionState, WaitTicket, WaitTimeoutError};

#[cfg(not(loom))]
mod real {
    use std::fmt;
    use std::time::{Duration, Instant};

    use crate::os::deadline;
    use crate::segment::Kind;
    use crate::sync::lock::{LockError, LockGuard, LockState};
    use crate::sync::named::{fingerprint_with, named_handle, Layout, Named, SyncOptions};
    use crate::sync::WaitQueue;

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
    ///     Ok(g) => g,                          // notified (or a spurious wake-up)
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

    /// The state of a condition variable with its lock: `#[repr(C)]`, 40 bytes (a 32-byte
    /// [`LockState`], then an 8-byte [`WaitQueue`]), placeable inside any shmkit object.
    ///
    /// The API follows Python's `Condition`: take the lock ([`lock`](Self::lock) and its
    /// `try_`/`_timeout`/`_deadline` forms), then [`wait`](Self::wait) /
    /// [`wait_for`](Self::wait_for) (which release it while asleep and take it back before
    /// returning) or [`notify`](Self::notify) / [`notify_all`](Self::notify_all). Waits and
    /// notifies take the guard, so they cannot be called without holding the lock. Timed waits
    /// hand the guard back on timeout too ([`WaitTimeoutError::Timeout`]). Wake-ups may be
    /// spurious (a `notify(1)` can wake more than one waiter); use
    /// [`wait_for`](Self::wait_for) or re-check. Unlike Python, `notify` does not wait for the
    /// woken to acknowledge.
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
    }

    const _: () =
        assert!(std::mem::size_of::<ConditionState>() == std::mem::size_of::<LockState>() + 8);

    impl fmt::Debug for ConditionState {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ConditionState")
                .field("lock", &self.lock)
                .field("sequence", &self.seq.sequence())
                .field("sleepers", &self.seq.sleepers())
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
        /// Spurious wake-ups are possible.
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
        /// binding whose re-lock must stay interruptible, as Python's is): note the
        /// notifies so far and release the lock. Then
        /// [`wait_released_deadline`](Self::wait_released_deadline) waits for a notify
        /// after this point, as often as needed, without the lock; re-lock with
        /// [`lock`](Self::lock) or its timed forms. [`wait`](Self::wait) and its forms are
        /// these steps and a re-lock.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        ///
        /// ```
        /// # let cond = shmkit::sync::ConditionState::new();
        /// use std::time::{Duration, Instant};
        /// let g = cond.lock().unwrap();
        /// let ticket = cond.release_for_wait(g); // the lock is free now
        /// let e = cond.wait_released_timeout(ticket, Duration::from_millis(1));
        /// assert_eq!(e, Err(shmkit::Timeout)); // nobody notified
        /// assert_eq!(cond.try_wait_released(ticket), Err(shmkit::WouldBlock));
        /// let _g = cond.lock().unwrap(); // ours to take back
        /// ```
        pub fn release_for_wait(&self, guard: LockGuard<'_>) -> WaitTicket {
            self.check_guard(&guard, "release_for_wait");
            // The snapshot is taken with the lock held, and a notifier must hold the lock: so
            // any notify after our release bumps `seq` past `seen`.
            let seen = self.seq.snapshot();
            drop(guard);
            WaitTicket(seen)
        }

        /// Without the lock: whether a notify came after `ticket`'s
        /// [`release_for_wait`](Self::release_for_wait) ([`WouldBlock`](crate::WouldBlock)
        /// if not). Does not wait, and does not take the lock.
        pub fn try_wait_released(&self, ticket: WaitTicket) -> Result<(), crate::WouldBlock> {
            if self.seq.snapshot() != ticket.0 {
                Ok(())
            } else {
                Err(crate::WouldBlock)
            }
        }

        /// Without the lock: wait until a notify came after `ticket`'s
        /// [`release_for_wait`](Self::release_for_wait) (a spurious wake-up is possible, as
        /// for every wait). Does not take the lock. Call it without the lock: a notifier
        /// needs the lock, so waiting while holding it waits for ever.
        pub fn wait_released(&self, ticket: WaitTicket) {
            // Without a deadline the wait only returns once notified.
            let _ = self.wait_released_within(ticket, None);
        }

        /// As [`wait_released`](Self::wait_released), for at most `timeout`
        /// ([`Timeout`](crate::Timeout) if no notify came).
        pub fn wait_released_timeout(
            &self,
            ticket: WaitTicket,
            timeout: Duration,
        ) -> Result<(), crate::Timeout> {
            self.wait_released_within(ticket, deadline::after(Some(timeout)))
        }

        /// As [`wait_released`](Self::wait_released), until `deadline` at most
        /// ([`Timeout`](crate::Timeout) if no notify came).
        pub fn wait_released_deadline(
            &self,
            ticket: WaitTicket,
            deadline: Instant,
        ) -> Result<(), crate::Timeout> {
            self.wait_released_within(ticket, Some(deadline))
        }

        /// The wait behind the `wait_released` forms (`None`: no limit).
        fn wait_released_within(
            &self,
            ticket: WaitTicket,
            deadline: Option<Instant>,
        ) -> Result<(), crate::Timeout> {
            // In slices: a waiter woken by `notify(1)` and killed before it re-locks takes
            // that wake-up with it; the others then see `seq` moved at their next slice.
            loop {
                if self
                    .seq
                    .park_past(ticket.0, crate::sync::robust::liveness_slice(deadline))
                {
                    return Ok(());
                }
                if deadline::passed(deadline) {
                    return Err(crate::Timeout);
                }
            }
        }

        /// The wait behind every form (`None`: no limit): the guard and whether `seq` moved.
        fn wait_within<'a>(
            &'a self,
            guard: LockGuard<'a>,
            deadline: Option<Instant>,
        ) -> Relocked<'a, (LockGuard<'a>, bool)> {
            self.check_guard(&guard, "wait");
            let ticket = self.release_for_wait(guard);
            let notified = self.wait_released_within(ticket, deadline).is_ok();
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

        /// Wake up to `n` waiters (possibly more; see the type's docs).
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        pub fn notify(&self, guard: &LockGuard<'_>, n: u32) {
            self.check_guard(guard, "notify");
            self.seq.notify(n);
        }

        /// Wake every waiter.
        ///
        /// # Panics
        ///
        /// If `guard` is not a guard of this condition's lock.
        pub fn notify_all(&self, guard: &LockGuard<'_>) {
            self.check_guard(guard, "notify_all");
            self.seq.notify(u32::MAX);
        }

        /// Notifies so far (mod 2^32), for `shmkit info`.
        pub fn sequence(&self) -> u32 {
            self.seq.sequence()
        }

        /// Recorded waiters (dead ones included), for `shmkit info`.
        pub fn sleepers(&self) -> u32 {
            self.seq.sleepers()
        }
    }

    /// Where a wait began ([`ConditionState::release_for_wait`]): the notifies counted until
    /// then, with the lock held. Only meaningful for the condition that issued it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct WaitTicket(u32);

    /// A timed wait's outcome: notified → the guard; not → `Timeout` with the guard.
    fn timed<'a>(r: Relocked<'a, (LockGuard<'a>, bool)>) -> TimedWait<'a> {
        match r {
            Ok((g, true)) => Ok(g),
            Ok((g, false)) => Err(WaitTimeoutError::Timeout(g)),
            Err(e) => Err(WaitTimeoutError::Lock(e)),
        }
    }

    const FINGERPRINT: u64 = fingerprint_with(
        b"shmkit condition v2: lock v2 (magic u32, depth u32, owner u64 (token<<3 | recording<<2 | inconsistent<<1 | waiters), seq u32, sleepers u32, thread u32, pid u32), then seq u32, sleepers u32",
        40,
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
    use crate::sync::WaitQueue;
    use loom::sync::{Arc, Mutex};

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
