//! [`RLock`]: the recursive form of [`Lock`](super::Lock), with its owner and depth on record.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::lock::{status, Block, LockError, MutexCore, Owner, RLOCK_MAGIC};
use super::named::{fingerprint_with, named_handle, Layout, Named, SyncOptions};
use crate::error::Result;
use crate::segment::Kind;

/// The state of a robust, process-shared, recursive lock: the same 72-byte layout as
/// [`LockState`](super::LockState) (magic `"RLK1"`), with a `PTHREAD_MUTEX_RECURSIVE` mutex.
/// The holding thread may lock it again; each guard releases one level, and the lock is free
/// when the depth returns to 0. Owner (pid, thread, start time) and depth are recorded in the
/// state, so `shmkit info` can show them.
///
/// As in Python, releasing an `RLock` the calling thread does not hold is an error
/// ([`LockError::NotOwner`] from [`release`](Self::release)).
///
/// ```
/// use shmkit::sync::RLockState;
/// let r = RLockState::new()?;
/// let a = r.lock().unwrap();
/// let b = r.lock().unwrap(); // same thread: fine
/// assert_eq!(r.depth(), 2);
/// drop(b);
/// drop(a);
/// assert_eq!(r.depth(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[repr(C)]
pub struct RLockState {
    pub(crate) core: MutexCore,
}

const _: () = assert!(std::mem::size_of::<RLockState>() == std::mem::size_of::<MutexCore>());

impl fmt::Debug for RLockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockState")
            .field("status", &self.core.status_word())
            .field("owner", &self.core.owner())
            .field("depth", &self.core.depth())
            .finish_non_exhaustive()
    }
}

type RLockResult<'a> = std::result::Result<RLockGuard<'a>, LockError<RLockGuard<'a>>>;

impl RLockState {
    /// A new, unlocked recursive lock on the heap (boxed: a pthread mutex must not move).
    pub fn new() -> std::io::Result<Box<RLockState>> {
        let p = Box::into_raw(Box::new(std::mem::MaybeUninit::<RLockState>::uninit()))
            .cast::<RLockState>();
        // SAFETY: fresh, aligned heap memory nobody else can reach.
        match unsafe { Self::init(p) } {
            // SAFETY: `init` initialised every field.
            Ok(()) => Ok(unsafe { Box::from_raw(p) }),
            Err(e) => {
                // SAFETY: the allocation came from the Box above; nothing needs dropping.
                drop(unsafe { Box::from_raw(p.cast::<std::mem::MaybeUninit<RLockState>>()) });
                Err(e)
            }
        }
    }

    /// Initialise a recursive lock in place (unlocked).
    ///
    /// # Safety
    ///
    /// As for [`LockState::init`](super::LockState::init).
    pub unsafe fn init(at: *mut RLockState) -> std::io::Result<()> {
        // SAFETY: forwarded contract; `core` is at offset 0 of a repr(C) struct.
        unsafe { MutexCore::init(std::ptr::addr_of_mut!((*at).core), RLOCK_MAGIC) }
    }

    /// View an initialised recursive lock in memory, after checking its magic and status.
    ///
    /// # Safety
    ///
    /// As for [`LockState::from_ptr`](super::LockState::from_ptr).
    pub unsafe fn from_ptr<'a>(
        at: *const RLockState,
    ) -> std::result::Result<&'a RLockState, String> {
        // SAFETY: per the contract; all fields are interior-mutable.
        let s = unsafe { &*at };
        s.core.check(RLOCK_MAGIC)?;
        Ok(s)
    }

    /// Block until this thread holds it (immediately if it already does).
    pub fn lock(&self) -> RLockResult<'_> {
        self.acquire(Block::Until(None))
    }

    /// Take it if it is free or already ours, else [`LockError::WouldBlock`].
    pub fn try_lock(&self) -> RLockResult<'_> {
        self.acquire(Block::No)
    }

    /// Block for at most `timeout`, else [`LockError::Timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> RLockResult<'_> {
        self.acquire(Block::Until(crate::sync::deadline_after(Some(timeout))))
    }

    fn acquire(&self, block: Block) -> RLockResult<'_> {
        let guard = |previous_owner| RLockGuard {
            lock: self,
            previous_owner,
            _not_send: PhantomData,
        };
        match self.core.acquire(block, true) {
            Ok(None) => Ok(guard(None)),
            Ok(Some(dead)) => Err(LockError::OwnerDied(guard(Some(dead)))),
            Err(e) => Err(LockError::from_mutex(e)),
        }
    }

    /// Release one level held by the calling thread without a guard: the counterpart of
    /// [`RLockGuard::leak`], for Python-style `acquire()`/`release()` pairs. A thread that
    /// does not hold the lock gets [`LockError::NotOwner`] and nothing changes.
    ///
    /// ```
    /// use shmkit::sync::{LockError, RLockState};
    /// let r = RLockState::new()?;
    /// assert!(matches!(r.release(), Err(LockError::NotOwner)));
    /// r.lock().unwrap().leak();
    /// let other = std::thread::scope(|s| s.spawn(|| r.release()).join().unwrap());
    /// assert!(matches!(other, Err(LockError::NotOwner)));
    /// r.release().unwrap();
    /// assert!(!r.is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn release(&self) -> std::result::Result<(), LockError<()>> {
        self.core.release().map_err(LockError::from_mutex)
    }

    /// Recursion depth recorded by the holder (0: free). A snapshot.
    pub fn depth(&self) -> u32 {
        self.core.depth()
    }

    /// Whether someone holds it (a snapshot).
    pub fn is_locked(&self) -> bool {
        matches!(
            self.core.status_word(),
            status::LOCKED | status::INCONSISTENT
        )
    }

    /// Whether the calling thread holds it.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.core.held_by_me()
    }

    /// The recorded holder, if any (a snapshot).
    pub fn owner(&self) -> Option<Owner> {
        self.core.owner()
    }

    /// Whether a dead owner's successor released it unrepaired.
    pub fn is_not_recoverable(&self) -> bool {
        self.core.status_word() == status::NOT_RECOVERABLE
    }
}

/// Holds one level of an [`RLockState`]; releases that level when dropped. Not `Send`.
#[must_use = "the lock level is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLockState,
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
        self.lock
            .core
            .make_consistent()
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
    fn drop(&mut self) {
        // Cannot fail for a guard: this thread holds the lock (guards are not Send).
        let _ = self.lock.core.release_held();
    }
}

const RLOCK_FINGERPRINT: u64 = fingerprint_with(
    b"shmkit rlock v1: magic u32, status u32, owner_pid u32, owner_tid u32, owner_start u64, depth u32, reserved u32, glibc robust pshared recursive pthread_mutex_t at 32",
    std::mem::size_of::<libc::pthread_mutex_t>(),
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
    unsafe { RLockState::init(p) }
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

named_handle!(RLock, RLockState);

impl RLock {
    /// Options for creating or opening a named recursive lock.
    pub fn options() -> SyncOptions<RLock> {
        SyncOptions::default()
    }

    /// Create a new named recursive lock; fails if the name exists.
    pub fn create(name: &str) -> Result<RLock> {
        Self::options().create(name)
    }

    /// Open an existing named recursive lock.
    pub fn open(name: &str) -> Result<RLock> {
        Self::options().open(name)
    }

    /// Open it, or create it if it does not exist.
    pub fn open_or_create(name: &str) -> Result<RLock> {
        Self::options().open_or_create(name)
    }
}

impl SyncOptions<RLock> {
    /// Create a new named recursive lock.
    pub fn create(&self, name: &str) -> Result<RLock> {
        Ok(RLock {
            inner: Named::create(self, name, &layout(), init_rlock)?,
        })
    }

    /// Open an existing named recursive lock.
    pub fn open(&self, name: &str) -> Result<RLock> {
        Ok(RLock {
            inner: Named::open(self, name, &layout())?,
        })
    }

    /// Open or create a named recursive lock.
    pub fn open_or_create(&self, name: &str) -> Result<RLock> {
        Ok(RLock {
            inner: Named::open_or_create(self, name, &layout(), init_rlock)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_owner_and_owner_death() {
        let r = RLockState::new().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                r.lock().unwrap().leak();
                r.lock().unwrap().leak();
                assert_eq!(r.depth(), 2);
            })
            .join()
            .unwrap()
        });
        // The thread exited at depth 2: the next acquirer starts at depth 1.
        let mut g = r.lock().unwrap_err().into_guard().unwrap();
        assert_eq!(r.depth(), 1);
        g.make_consistent().unwrap();
        let g2 = r.lock().unwrap();
        assert_eq!(r.depth(), 2);
        drop(g2);
        drop(g);
        assert!(!r.is_locked());
        assert!(r.lock_timeout(Duration::from_millis(1)).is_ok());
    }
}
