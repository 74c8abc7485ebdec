//! [`RLock`]: the recursive form of [`Lock`](super::Lock), with its owner and depth on record.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::lock::{acquire_core, me, owner_of, status, LockError, Owner, RLOCK_MAGIC};
use super::named::{fingerprint_with, named_handle, Layout, Named, SyncOptions};
use super::robust::{Block, Me, MutexCore};
use crate::os::liveness;
use crate::segment::Kind;

/// The state of a robust, process-shared, recursive lock: the same 32-byte layout as
/// [`LockState`](super::LockState) (magic `"RLK2"`). The holding thread may lock it again;
/// each guard releases one level, and the lock is free when the depth returns to 0. Owner
/// (liveness token, pid, thread number) and depth are recorded in the state, so
/// `shmkit info` can show them.
///
/// As in Python, releasing an `RLock` the calling thread does not hold is an error
/// ([`LockError::NotOwner`] from [`release`](Self::release)).
///
/// ```
/// use shmkit::sync::RLockState;
/// let r = RLockState::new();
/// let a = r.lock().unwrap();
/// let b = r.lock().unwrap(); // same thread: fine
/// assert_eq!(r.depth(), 2);
/// drop(b);
/// drop(a);
/// assert_eq!(r.depth(), 0);
/// ```
#[repr(C)]
pub struct RLockState {
    pub(crate) core: MutexCore,
}

const _: () = assert!(std::mem::size_of::<RLockState>() == 32);

impl fmt::Debug for RLockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockState")
            .field("status", &self.core.status_word())
            .field("owner", &owner_of(&self.core))
            .field("depth", &self.core.depth())
            .finish_non_exhaustive()
    }
}

type RLockResult<'a> = std::result::Result<RLockGuard<'a>, LockError<RLockGuard<'a>>>;

impl RLockState {
    /// A new, unlocked recursive lock on the heap.
    pub fn new() -> Box<RLockState> {
        Box::new(RLockState {
            core: MutexCore::new(RLOCK_MAGIC),
        })
    }

    /// Initialise a recursive lock in place (unlocked).
    ///
    /// # Safety
    ///
    /// As for [`LockState::init`](super::LockState::init).
    pub unsafe fn init(at: *mut RLockState) {
        // SAFETY: forwarded contract; `core` is at offset 0 of a repr(C) struct.
        unsafe { MutexCore::init(std::ptr::addr_of_mut!((*at).core), RLOCK_MAGIC) }
    }

    /// View an initialised recursive lock in memory, after checking its magic.
    ///
    /// # Safety
    ///
    /// As for [`LockState::from_ptr`](super::LockState::from_ptr).
    pub unsafe fn from_ptr<'a>(
        at: *const RLockState,
    ) -> std::result::Result<&'a RLockState, String> {
        // SAFETY: per the contract; all fields are atomics.
        let s = unsafe { &*at };
        s.core.check(RLOCK_MAGIC)?;
        Ok(s)
    }

    /// Take it if it is free, already ours, or its holder is dead (`OwnerDied`), else
    /// [`LockError::WouldBlock`].
    ///
    /// ```
    /// # let r = shmkit::sync::RLockState::new();
    /// let a = r.try_lock().unwrap();
    /// let b = r.try_lock().unwrap(); // already ours: one level deeper
    /// assert_eq!(r.depth(), 2);
    /// # drop((b, a));
    /// ```
    pub fn try_lock(&self) -> RLockResult<'_> {
        self.acquire(Block::No)
    }

    /// Block until this thread holds it (immediately if it already does), with no time limit.
    ///
    /// ```
    /// # let r = shmkit::sync::RLockState::new();
    /// let g = r.lock().unwrap();
    /// assert!(r.is_held_by_current_thread());
    /// # drop(g);
    /// ```
    pub fn lock(&self) -> RLockResult<'_> {
        self.acquire(Block::Until(None))
    }

    /// Block for at most `timeout`, else [`LockError::Timeout`]. A zero timeout polls once;
    /// one too large to represent means no limit.
    ///
    /// ```
    /// # let r = shmkit::sync::RLockState::new();
    /// # use std::time::Duration;
    /// let _g = r.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(r.lock_timeout(Duration::from_millis(1)).unwrap_err().is_timeout()));
    /// });
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> RLockResult<'_> {
        self.acquire(Block::Until(crate::os::deadline::after(Some(timeout))))
    }

    /// Block until `deadline` (`CLOCK_MONOTONIC`), else [`LockError::Timeout`]. A deadline in
    /// the past polls once.
    ///
    /// ```
    /// # let r = shmkit::sync::RLockState::new();
    /// let g = r.lock_deadline(std::time::Instant::now()).unwrap(); // free: taken
    /// # drop(g);
    /// ```
    pub fn lock_deadline(&self, deadline: Instant) -> RLockResult<'_> {
        self.acquire(Block::Until(Some(deadline)))
    }

    fn acquire(&self, block: Block) -> RLockResult<'_> {
        let guard = |me, previous_owner| RLockGuard {
            lock: self,
            me,
            previous_owner,
            _not_send: PhantomData,
        };
        match acquire_core(&self.core, block, true) {
            Ok((me, None)) => Ok(guard(me, None)),
            Ok((me, Some(dead))) => Err(LockError::OwnerDied(guard(me, Some(dead)))),
            Err(e) => Err(LockError::from_mutex(e)),
        }
    }

    /// Release one level held by the calling thread without a guard: the counterpart of
    /// [`RLockGuard::leak`], for Python-style `acquire()`/`release()` pairs. A thread that
    /// does not hold the lock gets [`LockError::NotOwner`] and nothing changes.
    ///
    /// ```
    /// use shmkit::sync::{LockError, RLockState};
    /// let r = RLockState::new();
    /// assert!(matches!(r.release(), Err(LockError::NotOwner)));
    /// r.lock().unwrap().leak();
    /// let other = std::thread::scope(|s| s.spawn(|| r.release()).join().unwrap());
    /// assert!(matches!(other, Err(LockError::NotOwner)));
    /// r.release().unwrap();
    /// assert!(!r.is_locked());
    /// ```
    pub fn release(&self) -> std::result::Result<(), LockError<()>> {
        let me = me().map_err(LockError::from_mutex)?;
        self.core.release(me).map_err(LockError::from_mutex)
    }

    /// A guard for one level the calling thread already holds (one it
    /// [leaked](RLockGuard::leak)), e.g. to call
    /// [`make_consistent`](RLockGuard::make_consistent) after `OwnerDied`; dropping it
    /// releases that level. A thread that does not hold it gets [`LockError::NotOwner`].
    ///
    /// ```
    /// let r = shmkit::sync::RLockState::new();
    /// r.lock().unwrap().leak();
    /// let mut g = r.adopt().unwrap();
    /// g.make_consistent().unwrap(); // nothing to repair: a no-op
    /// drop(g);
    /// assert!(!r.is_locked());
    /// ```
    pub fn adopt(&self) -> std::result::Result<RLockGuard<'_>, LockError<()>> {
        let me = me().map_err(LockError::from_mutex)?;
        if !self.core.held_by(me) {
            return Err(LockError::NotOwner);
        }
        Ok(RLockGuard {
            lock: self,
            me,
            previous_owner: None,
            _not_send: PhantomData,
        })
    }

    /// Recursion depth recorded by the holder (0: free). A snapshot.
    pub fn depth(&self) -> u32 {
        if self.is_locked() {
            self.core.depth()
        } else {
            0
        }
    }

    /// Whether someone holds it (a snapshot).
    pub fn is_locked(&self) -> bool {
        matches!(
            self.core.status_word(),
            status::LOCKED | status::INCONSISTENT | status::DEAD_UNKNOWN
        )
    }

    /// Whether the calling thread holds it.
    pub fn is_held_by_current_thread(&self) -> bool {
        me().is_ok_and(|me| self.core.held_by(me))
    }

    /// The recorded holder, if any (a snapshot).
    pub fn owner(&self) -> Option<Owner> {
        owner_of(&self.core).filter(|_| self.is_locked())
    }

    /// Whether a dead owner's successor released it unrepaired.
    pub fn is_not_recoverable(&self) -> bool {
        self.core.status_word() == status::NOT_RECOVERABLE
    }
}

/// Holds one level of an [`RLockState`]; releases that level when dropped. Not `Send`.
///
/// Levels are counted, not tied to guards: [`RLockState::release`] (or a second guard from
/// [`adopt`](RLockState::adopt)) releases a level a guard was made for, and a guard whose
/// thread no longer holds the lock when it drops releases nothing (another thread may hold it
/// by then). So a live guard does not prove that its thread still holds the lock if the
/// thread used `release` or `adopt`.
#[must_use = "the lock level is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLockState,
    me: Me,
    previous_owner: Option<Owner>,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("previous_owner", &self.previous_owner)
            .finish_non_exhaustive()
    }
}

impl RLockGuard<'_> {
    /// After [`LockError::OwnerDied`]: declare the protected data repaired (see
    /// [`LockGuard::make_consistent`](super::LockGuard::make_consistent)).
    pub fn make_consistent(&mut self) -> std::result::Result<(), LockError<()>> {
        if !liveness::is_current(self.me.token) {
            return Err(LockError::NotOwner);
        }
        self.lock
            .core
            .make_consistent(self.me)
            .map_err(LockError::from_mutex)?;
        self.previous_owner = None;
        Ok(())
    }

    /// The owner that died holding the lock, until [`make_consistent`](Self::make_consistent).
    pub fn previous_owner(&self) -> Option<Owner> {
        self.previous_owner
    }

    /// Keep this level held without a guard; release it later with
    /// [`RLockState::release`] from the same thread.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release a level only if this thread holds the lock (`release` checks the thread,
        // not only the process): the guard's level may have been released without it
        // ([`RLockState::release`], or a second guard from `adopt`), and another thread of
        // this process may hold the lock by now. In a fork()ed child that inherited the guard
        // the level is the parent's (whose token and thread number the child's copy still
        // names): leave it alone.
        if liveness::is_current(self.me.token) {
            let _ = self.lock.core.release(self.me);
        }
    }
}

const RLOCK_FINGERPRINT: u64 = fingerprint_with(
    b"shmkit rlock v2: magic u32, depth u32, owner u64 (token<<3 | recording<<2 | inconsistent<<1 | waiters), seq u32, sleepers u32, thread u32, pid u32",
    32,
);

pub(crate) fn layout() -> Layout<RLockState> {
    Layout {
        kind: Kind::RLOCK,
        fingerprint: RLOCK_FINGERPRINT,
        check: |s| s.core.check(RLOCK_MAGIC),
    }
}

fn init_rlock(p: *mut RLockState) -> std::io::Result<()> {
    // SAFETY: `p` is the zeroed, unpublished payload of a segment we are creating: sized and
    // aligned for an RLockState, unreachable by others until published.
    unsafe { RLockState::init(p) };
    Ok(())
}

/// A named, robust, recursive, process-shared lock: a segment of kind [`Kind::RLOCK`]
/// holding an [`RLockState`], to which it derefs.
///
/// ```
/// use shmkit::sync::RLock;
/// # let name = format!("doc-rlock-{}", std::process::id());
/// let r = RLock::options().unlink_on_drop(true).create(&name)?;
/// let _a = r.lock().unwrap();
/// let _b = r.lock().unwrap();
/// let seen = RLock::open(&name)?;
/// assert_eq!((seen.depth(), seen.owner().unwrap().pid), (2, std::process::id()));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct RLock {
    inner: Named<RLockState>,
}

named_handle!(
    RLock,
    RLockState,
    "recursive lock",
    ", unlocked",
    layout(),
    init_rlock
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_owner_and_owner_death() {
        let r = RLockState::new();
        let ghost = Me {
            token: 0x2234_5678_9abc, // no liveness file: a dead process
            thread: 3,
            pid: 4_000_002,
        };
        r.core.acquire(ghost, Block::No, true, &|_| false).unwrap();
        r.core.acquire(ghost, Block::No, true, &|_| false).unwrap();
        assert_eq!(r.depth(), 2);
        // The holder died at depth 2: the next acquirer starts at depth 1.
        let mut g = r.lock().unwrap_err().into_guard().unwrap();
        assert_eq!(g.previous_owner().unwrap().thread, 3);
        assert_eq!(r.depth(), 1);
        g.make_consistent().unwrap();
        let g2 = r.lock().unwrap();
        assert_eq!(r.depth(), 2);
        drop(g2);
        drop(g);
        assert!(!r.is_locked());
        assert!(r.lock_timeout(Duration::from_millis(1)).is_ok());
    }

    /// Audit finding: a guard whose level was released without it (`release`, or a second
    /// guard from `adopt`) released, when it dropped, the lock another thread of the process
    /// held by then: the unlock checked the process's token, not the thread.
    #[test]
    fn a_stale_guard_does_not_release_another_threads_hold() {
        let r = RLockState::new();
        for stale in [true, false] {
            let g = r.lock().unwrap();
            if stale {
                r.release().unwrap(); // the guard's level, released without it
            } else {
                drop(r.adopt().unwrap()); // a second guard of the same level
            }
            assert!(!r.is_locked());
            let (taken_tx, taken_rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            std::thread::scope(|s| {
                let r = &*r;
                s.spawn(move || {
                    let mine = r.lock_timeout(Duration::from_secs(10)).unwrap();
                    taken_tx.send(()).unwrap();
                    done_rx.recv().unwrap();
                    drop(mine);
                });
                taken_rx.recv().unwrap();
                drop(g); // this thread holds nothing: must change nothing
                let still = r.is_locked();
                done_tx.send(()).unwrap();
                assert!(still, "a stale guard released another thread's lock");
            });
            assert!(!r.is_locked());
        }
    }

    #[test]
    fn another_thread_of_the_process_waits() {
        let r = RLockState::new();
        let g = r.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(r.try_lock(), Err(LockError::WouldBlock)));
                assert!(matches!(r.release(), Err(LockError::NotOwner)));
            });
        });
        drop(g);
    }
}
