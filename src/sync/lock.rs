//! [`Lock`]: a robust, process-shared mutex in shared memory that reports a dead holder.
//!
//! The state ([`LockState`], 72 bytes on x86-64 glibc) is a glibc robust pthread mutex plus
//! shmkit's own owner record; [`Lock`] is the standalone named object holding one.
//! `SPEC.md` §6.2 has the byte layout and what a death at each step leaves behind.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::named::{fingerprint_with, named_handle, Layout, Named, SyncOptions};
use crate::error::Result;
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::os::mutex::{self, Locked, MutexError};
use crate::os::process::{self, Liveness};
use crate::segment::Kind;

/// `magic` of an initialised [`LockState`]: `"LCK1"` little-endian.
pub(crate) const LOCK_MAGIC: u32 = u32::from_le_bytes(*b"LCK1");
/// `magic` of an initialised `RLockState`: `"RLK1"` little-endian.
pub(crate) const RLOCK_MAGIC: u32 = u32::from_le_bytes(*b"RLK1");

/// Values of the `status` word.
pub(crate) mod status {
    /// Nobody holds it (or the holder is between its pthread lock and its first store).
    pub const UNLOCKED: u32 = 0;
    /// Held; `owner_*` say by whom.
    pub const LOCKED: u32 = 1;
    /// Held by a thread that got `OwnerDied` and has not called `make_consistent` yet.
    pub const INCONSISTENT: u32 = 2;
    /// Released while inconsistent: every later lock fails with `NotRecoverable`.
    pub const NOT_RECOVERABLE: u32 = 3;
}

/// The part shared by [`LockState`] and [`RLockState`](super::RLockState): glibc's robust,
/// process-shared mutex and the owner record shmkit keeps beside it.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 4 | `magic` | `"LCK1"` / `"RLK1"`: initialised, and which kind |
/// | 4 | 4 | `status` | [`status`] values 0..=3 |
/// | 8 | 4 | `owner_pid` | pid of the holder, 0 when free |
/// | 12 | 4 | `owner_tid` | its thread id |
/// | 16 | 8 | `owner_start` | its process start time (clock ticks since boot) |
/// | 24 | 4 | `depth` | recursion depth (1 for a held `Lock`) |
/// | 28 | 4 | reserved | 0 |
/// | 32 | 40 | `mutex` | `pthread_mutex_t` (robust, pshared; size is glibc's) |
#[repr(C)]
pub(crate) struct MutexCore {
    magic: AtomicU32,
    status: AtomicU32,
    owner_pid: AtomicU32,
    owner_tid: AtomicU32,
    owner_start: AtomicU64,
    depth: AtomicU32,
    reserved: AtomicU32,
    mutex: UnsafeCell<libc::pthread_mutex_t>,
}

const _: () =
    assert!(std::mem::size_of::<MutexCore>() == 32 + std::mem::size_of::<libc::pthread_mutex_t>());
const _: () = assert!(std::mem::align_of::<MutexCore>() == 8);
const _: () = assert!(std::mem::offset_of!(MutexCore, mutex) == 32);

// SAFETY: the pthread mutex is process-shared and made for concurrent use from any thread;
// every other field is an atomic.
unsafe impl Sync for MutexCore {}
// SAFETY: as above; nothing in it is tied to the creating thread.
unsafe impl Send for MutexCore {}

/// How long a lock call may block.
#[derive(Clone, Copy)]
pub(crate) enum Block {
    No,
    Until(Option<Instant>),
}

/// A process that held (or holds) a lock, as recorded in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Thread id (as `gettid` reports it).
    pub tid: u32,
    /// Process start time (clock ticks since boot, field 22 of `/proc/PID/stat`); with the pid
    /// it identifies the process even after the pid is reused.
    pub start_time: u64,
}

impl Owner {
    /// Whether that process still runs.
    pub fn liveness(&self) -> Liveness {
        process::liveness(self.pid, self.start_time)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (thread {})", self.pid, self.tid)
    }
}

impl MutexCore {
    /// # Safety
    ///
    /// `p` is valid for writes of a `MutexCore`, 8-byte aligned, and nobody uses it yet.
    pub(crate) unsafe fn init(p: *mut MutexCore, magic: u32) -> std::io::Result<()> {
        // SAFETY: per the contract, every field pointer is valid for writes and unaliased.
        unsafe {
            std::ptr::addr_of_mut!((*p).magic).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).status).write(AtomicU32::new(status::UNLOCKED));
            std::ptr::addr_of_mut!((*p).owner_pid).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).owner_tid).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).owner_start).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*p).depth).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).reserved).write(AtomicU32::new(0));
            mutex::init(
                std::ptr::addr_of_mut!((*p).mutex).cast(),
                magic == RLOCK_MAGIC,
            )?;
            // Release pairs with the Acquire in `check`: whoever sees the magic sees an
            // initialised mutex (in a segment the header's READY publishes it anyway).
            (*p).magic.store(magic, Ordering::Release);
        }
        Ok(())
    }

    pub(crate) fn check(&self, magic: u32) -> std::result::Result<(), String> {
        // Acquire pairs with the Release in `init`.
        let m = self.magic.load(Ordering::Acquire);
        if m != magic {
            return Err(format!(
                "lock magic is {m:#010x}, expected {magic:#010x} (not initialised?)"
            ));
        }
        let s = self.status.load(Ordering::Relaxed); // a snapshot for validation only
        if s > status::NOT_RECOVERABLE {
            return Err(format!("lock status word is {s}, expected 0..=3"));
        }
        Ok(())
    }

    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.mutex.get()
    }

    /// Lock; on success returns the previous owner if it died holding the lock.
    pub(crate) fn acquire(
        &self,
        block: Block,
        recursive: bool,
    ) -> Result<Option<Owner>, MutexError> {
        // SAFETY: `self` is an initialised MutexCore (constructors check the magic) in memory
        // mapped for at least the lifetime of `&self`.
        let r = unsafe {
            match block {
                Block::No => mutex::try_lock(self.raw()),
                Block::Until(d) => mutex::lock(self.raw(), d),
            }
        };
        let me = mutex::me();
        // The owner fields are written and read under the mutex, which orders them (its lock
        // is an acquire, its unlock a release), so Relaxed suffices; `shmkit info` reads them
        // without the mutex as a racy snapshot.
        match r {
            Ok(Locked::Ok) => {
                if recursive
                    && self.depth.load(Ordering::Relaxed) > 0
                    && self.owner_pid.load(Ordering::Relaxed) == me.pid
                    && self.owner_tid.load(Ordering::Relaxed) == me.tid
                {
                    self.depth.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.record(me, status::LOCKED);
                }
                Ok(None)
            }
            Ok(Locked::OwnerDied) => {
                let dead = self.owner();
                self.record(me, status::INCONSISTENT);
                Ok(Some(dead.unwrap_or(Owner {
                    pid: 0,
                    tid: 0,
                    start_time: 0,
                })))
            }
            Err(MutexError::NotRecoverable) => {
                self.status
                    .store(status::NOT_RECOVERABLE, Ordering::Relaxed);
                Err(MutexError::NotRecoverable)
            }
            Err(e) => Err(e),
        }
    }

    fn record(&self, me: mutex::Me, st: u32) {
        self.owner_pid.store(me.pid, Ordering::Relaxed);
        self.owner_tid.store(me.tid, Ordering::Relaxed);
        self.owner_start.store(me.start, Ordering::Relaxed);
        self.depth.store(1, Ordering::Relaxed);
        self.status.store(st, Ordering::Relaxed);
    }

    /// Whether the calling thread holds it, per the owner record.
    pub(crate) fn held_by_me(&self) -> bool {
        let me = mutex::me();
        let st = self.status.load(Ordering::Relaxed);
        (st == status::LOCKED || st == status::INCONSISTENT)
            && self.owner_pid.load(Ordering::Relaxed) == me.pid
            && self.owner_tid.load(Ordering::Relaxed) == me.tid
    }

    /// Release one level. Refuses (without touching anything) if the calling thread is not
    /// the recorded owner.
    pub(crate) fn release(&self) -> Result<(), MutexError> {
        if !self.held_by_me() {
            return Err(MutexError::NotOwner);
        }
        self.release_held()
    }

    /// Release one level held by the calling thread (a guard proves it: guards are not
    /// `Send`). Clears the record before unlocking, so that a recorded owner always holds it;
    /// `owner_tid` and `owner_start` are left as they were (they mean something only while
    /// `owner_pid != 0`).
    pub(crate) fn release_held(&self) -> Result<(), MutexError> {
        let depth = self.depth.load(Ordering::Relaxed);
        if depth > 1 {
            self.depth.store(depth - 1, Ordering::Relaxed);
        } else {
            // Clear the record before unlocking, so that a recorded owner always holds it.
            let st = self.status.load(Ordering::Relaxed);
            let next = if st == status::INCONSISTENT {
                status::NOT_RECOVERABLE
            } else {
                status::UNLOCKED
            };
            self.status.store(next, Ordering::Relaxed);
            self.depth.store(0, Ordering::Relaxed);
            self.owner_pid.store(0, Ordering::Relaxed);
        }
        // SAFETY: initialised and mapped (see `acquire`).
        unsafe { mutex::unlock(self.raw()) }
    }

    pub(crate) fn make_consistent(&self) -> Result<(), MutexError> {
        // SAFETY: initialised and mapped (see `acquire`).
        unsafe { mutex::make_consistent(self.raw()) }?;
        self.status.store(status::LOCKED, Ordering::Relaxed);
        Ok(())
    }

    /// The recorded owner, if any (a racy snapshot unless the caller holds the lock).
    pub(crate) fn owner(&self) -> Option<Owner> {
        let pid = self.owner_pid.load(Ordering::Relaxed);
        (pid != 0).then(|| Owner {
            pid,
            tid: self.owner_tid.load(Ordering::Relaxed),
            start_time: self.owner_start.load(Ordering::Relaxed),
        })
    }

    pub(crate) fn status_word(&self) -> u32 {
        self.status.load(Ordering::Relaxed)
    }

    pub(crate) fn depth(&self) -> u32 {
        self.depth.load(Ordering::Relaxed)
    }
}

/// Why a lock call did not hand out a plain guard.
///
/// `G` is the guard type: [`OwnerDied`](LockError::OwnerDied) *holds the lock*, like std's
/// `PoisonError`. Use [`LockError::without_guard`] to turn an error into a `'static` one for
/// `?` into `Box<dyn Error>` (which releases the lock, see `OwnerDied`).
pub enum LockError<G> {
    /// Acquired, but the previous owner died holding the lock, so the data it protects may
    /// be half-updated. The guard holds the lock: repair the data, then call
    /// `make_consistent()` on the guard. If the guard is dropped without it, the lock becomes
    /// permanently not recoverable and every later call returns
    /// [`NotRecoverable`](LockError::NotRecoverable).
    OwnerDied(G),
    /// `try_lock`: someone else holds it.
    WouldBlock,
    /// The timeout passed before the lock was free.
    Timeout,
    /// A previous owner died and its successor released the lock without making it
    /// consistent. Nothing can lock it again; remove and recreate it.
    NotRecoverable,
    /// The calling thread already holds this (non-recursive) lock.
    Deadlock,
    /// The calling thread does not hold it (release or repair by a non-owner).
    NotOwner,
    /// A recursive lock's depth would overflow.
    TooDeep,
    /// Any other error from the C library (e.g. `EINVAL` for a corrupt mutex).
    Os(i32),
}

impl<G> LockError<G> {
    pub(crate) fn from_mutex(e: MutexError) -> LockError<G> {
        match e {
            MutexError::WouldBlock => LockError::WouldBlock,
            MutexError::TimedOut => LockError::Timeout,
            MutexError::NotRecoverable => LockError::NotRecoverable,
            MutexError::Deadlock => LockError::Deadlock,
            MutexError::NotOwner => LockError::NotOwner,
            MutexError::TooDeep => LockError::TooDeep,
            MutexError::Os(e) => LockError::Os(e),
        }
    }

    /// The guard, if this is [`OwnerDied`](LockError::OwnerDied).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// The same error without the guard. For `OwnerDied` this drops the guard, which makes
    /// the lock not recoverable: only do this when the protected data cannot be repaired.
    pub fn without_guard(self) -> LockError<()> {
        self.map(drop)
    }

    /// Convert the guard (e.g. to a wrapper type).
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
            LockError::NotRecoverable => LockError::NotRecoverable,
            LockError::Deadlock => LockError::Deadlock,
            LockError::NotOwner => LockError::NotOwner,
            LockError::TooDeep => LockError::TooDeep,
            LockError::Os(e) => LockError::Os(e),
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::NotRecoverable => f.write_str("NotRecoverable"),
            LockError::Deadlock => f.write_str("Deadlock"),
            LockError::NotOwner => f.write_str("NotOwner"),
            LockError::TooDeep => f.write_str("TooDeep"),
            LockError::Os(e) => write!(f, "Os({e})"),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => {
                f.write_str("acquired the lock, but its previous owner died holding it: repair the data and call make_consistent()")
            }
            LockError::WouldBlock => f.write_str("the lock is held by someone else"),
            LockError::Timeout => f.write_str("timed out waiting for the lock"),
            LockError::NotRecoverable => f.write_str(
                "the lock is not recoverable: a previous owner died and the next one released it without make_consistent(); recreate it",
            ),
            LockError::Deadlock => f.write_str("this thread already holds the lock (it is not recursive)"),
            LockError::NotOwner => f.write_str("this thread does not hold the lock"),
            LockError::TooDeep => f.write_str("the recursive lock's depth would overflow"),
            LockError::Os(e) => write!(f, "lock failed: {}", std::io::Error::from_raw_os_error(*e)),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// The state of a robust, process-shared, non-recursive lock: `#[repr(C)]`, 72 bytes on
/// x86-64 glibc (32 + `size_of::<libc::pthread_mutex_t>()`), 8-byte aligned. It can be placed
/// inside any shmkit object ([`LockState::init`]), or used through a named [`Lock`], which
/// derefs to it.
///
/// Robust: if the holder dies (process killed, thread exited) while holding it, the next
/// caller acquires it with [`LockError::OwnerDied`].
///
/// Unlike Python's `multiprocessing.Lock`, only the holder can release it (the guard does,
/// and the guard is not `Send`), and a second `lock` by the holder fails with
/// [`LockError::Deadlock`] instead of blocking forever.
///
/// All participants must use the same C library (glibc): the mutex's bytes are glibc's.
///
/// ```
/// use shmkit::sync::LockState;
/// let state = LockState::new()?; // on the heap; shared memory works the same
/// {
///     let _guard = state.lock().unwrap();
///     assert!(state.is_locked());
/// }
/// assert!(!state.is_locked());
/// # Ok::<(), std::io::Error>(())
/// ```
#[repr(C)]
pub struct LockState {
    pub(crate) core: MutexCore,
}

const _: () = assert!(std::mem::size_of::<LockState>() == std::mem::size_of::<MutexCore>());

impl fmt::Debug for LockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockState")
            .field("status", &self.core.status_word())
            .field("owner", &self.core.owner())
            .finish_non_exhaustive()
    }
}

impl LockState {
    /// A new, unlocked lock on the heap (boxed, because a pthread mutex must not move once it
    /// is in use). For one inside shared memory use [`init`](Self::init).
    pub fn new() -> std::io::Result<Box<LockState>> {
        let b = Box::new(std::mem::MaybeUninit::<LockState>::uninit());
        let p = Box::into_raw(b).cast::<LockState>();
        // SAFETY: fresh, aligned heap memory nobody else can reach.
        match unsafe { Self::init(p) } {
            // SAFETY: `init` initialised every field.
            Ok(()) => Ok(unsafe { Box::from_raw(p) }),
            Err(e) => {
                // SAFETY: the allocation came from the Box above; nothing in it needs
                // dropping.
                drop(unsafe { Box::from_raw(p.cast::<std::mem::MaybeUninit<LockState>>()) });
                Err(e)
            }
        }
    }

    /// Initialise a lock in place (unlocked), e.g. inside a segment's payload before the
    /// segment is published.
    ///
    /// # Safety
    ///
    /// `at` must be valid for writes of `size_of::<LockState>()` bytes, 8-byte aligned, stay
    /// mapped for as long as anyone uses the lock, and no thread in any process may be using
    /// a lock there while it is initialised.
    pub unsafe fn init(at: *mut LockState) -> std::io::Result<()> {
        // SAFETY: forwarded contract; `core` is at offset 0 of a repr(C) struct.
        unsafe { MutexCore::init(std::ptr::addr_of_mut!((*at).core), LOCK_MAGIC) }
    }

    /// View an initialised lock in memory, after checking its magic and status words.
    ///
    /// # Safety
    ///
    /// `at` must be 8-byte aligned and valid for reads and writes of `size_of::<LockState>()`
    /// bytes for `'a`, and hold a lock initialised by [`init`](Self::init) (a wrong magic is
    /// reported as an error, but a torn or garbage pthread mutex is glibc's to interpret).
    pub unsafe fn from_ptr<'a>(at: *const LockState) -> std::result::Result<&'a LockState, String> {
        // SAFETY: per the contract; all fields are interior-mutable, so `&` is sound.
        let s = unsafe { &*at };
        s.core.check(LOCK_MAGIC)?;
        Ok(s)
    }

    /// Block until the lock is ours. See [`LockError`] for `OwnerDied`.
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Block::Until(None))
    }

    /// Take the lock if it is free, else [`LockError::WouldBlock`].
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new()?;
    /// let g = state.try_lock().unwrap();
    /// let busy = std::thread::scope(|s| {
    ///     s.spawn(|| matches!(state.try_lock(), Err(shmkit::sync::LockError::WouldBlock))).join().unwrap()
    /// });
    /// assert!(busy);
    /// # drop(g); Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Block::No)
    }

    /// Block for at most `timeout` (a `CLOCK_MONOTONIC` deadline), else
    /// [`LockError::Timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Block::Until(crate::sync::deadline_after(Some(timeout))))
    }

    /// Block until `deadline` (`None`: forever).
    pub fn lock_until(
        &self,
        deadline: Option<Instant>,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Block::Until(deadline))
    }

    fn acquire(
        &self,
        block: Block,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        match self.core.acquire(block, false) {
            Ok(None) => Ok(LockGuard {
                lock: self,
                previous_owner: None,
                _not_send: PhantomData,
            }),
            Ok(Some(dead)) => Err(LockError::OwnerDied(LockGuard {
                lock: self,
                previous_owner: Some(dead),
                _not_send: PhantomData,
            })),
            Err(e) => Err(LockError::from_mutex(e)),
        }
    }

    /// Whether someone holds it (a snapshot: it may change at once).
    pub fn is_locked(&self) -> bool {
        matches!(
            self.core.status_word(),
            status::LOCKED | status::INCONSISTENT
        )
    }

    /// The recorded holder, if any (a snapshot).
    pub fn owner(&self) -> Option<Owner> {
        self.core.owner()
    }

    /// Whether a dead owner's successor released it unrepaired (every lock call now fails).
    pub fn is_not_recoverable(&self) -> bool {
        self.core.status_word() == status::NOT_RECOVERABLE
    }
}

/// Holds a [`LockState`] (or [`Lock`]); unlocks when dropped. Not `Send`: a pthread mutex is
/// owned by a thread.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a LockState,
    previous_owner: Option<Owner>,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("previous_owner", &self.previous_owner)
            .finish_non_exhaustive()
    }
}

impl<'a> LockGuard<'a> {
    /// After [`LockError::OwnerDied`]: declare the protected data repaired, so that the lock
    /// works normally again once released.
    ///
    /// ```
    /// use shmkit::sync::{LockError, LockState};
    /// let state = LockState::new()?;
    /// // A thread that exits holding the lock counts as a dead owner too.
    /// std::thread::scope(|s| s.spawn(|| std::mem::forget(state.lock().unwrap())).join().unwrap());
    /// match state.lock() {
    ///     Err(LockError::OwnerDied(mut guard)) => {
    ///         assert!(guard.previous_owner().is_some());
    ///         // ... repair what the dead owner left half-done ...
    ///         guard.make_consistent().unwrap();
    ///     }
    ///     other => panic!("expected OwnerDied, got {other:?}"),
    /// }
    /// assert!(state.lock().is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn make_consistent(&mut self) -> std::result::Result<(), LockError<()>> {
        self.lock
            .core
            .make_consistent()
            .map_err(LockError::from_mutex)?;
        self.previous_owner = None;
        Ok(())
    }

    /// The owner that died holding the lock, while this guard has not called
    /// [`make_consistent`](Self::make_consistent); `None` for a normal acquisition.
    pub fn previous_owner(&self) -> Option<Owner> {
        self.previous_owner
    }

    /// Whether this guard came from [`LockError::OwnerDied`] and is not repaired yet.
    pub fn needs_repair(&self) -> bool {
        self.previous_owner.is_some()
    }

    /// The lock this guard holds.
    pub(crate) fn state(&self) -> &'a LockState {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Cannot fail for a guard: this thread holds the lock and is its recorded owner.
        let _ = self.lock.core.release_held();
    }
}

const LOCK_FINGERPRINT: u64 = fingerprint_with(
    b"shmkit lock v1: magic u32, status u32, owner_pid u32, owner_tid u32, owner_start u64, depth u32, reserved u32, glibc robust pshared errorcheck pthread_mutex_t at 32",
    std::mem::size_of::<libc::pthread_mutex_t>(),
);

pub(crate) fn layout() -> Layout<LockState> {
    Layout {
        kind: Kind::LOCK,
        fingerprint: LOCK_FINGERPRINT,
        check: |s| s.core.check(LOCK_MAGIC),
    }
}

fn init_lock(p: *mut LockState) -> std::io::Result<()> {
    // SAFETY: `p` is the zeroed, unpublished payload of a segment we are creating: sized for
    // a LockState, 64-byte aligned, and unreachable by others until it is published.
    unsafe { LockState::init(p) }
}

/// A named, robust, process-shared lock: a segment of kind [`Kind::LOCK`] holding a
/// [`LockState`], to which it derefs (`lock`, `try_lock`, `lock_timeout`, …).
///
/// ```
/// use shmkit::sync::Lock;
/// # let name = format!("doc-lock-{}", std::process::id());
/// let lock = Lock::options().unlink_on_drop(true).create(&name)?;
/// let other = Lock::open(&name)?; // e.g. in another process
/// {
///     let _g = lock.lock().unwrap();
///     assert_eq!(other.owner().unwrap().pid, std::process::id());
/// }
/// assert!(other.try_lock().is_ok());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Lock {
    inner: Named<LockState>,
}

named_handle!(Lock, LockState);

impl Lock {
    /// Options for creating or opening a named lock.
    pub fn options() -> SyncOptions<Lock> {
        SyncOptions::default()
    }

    /// Create a new named lock, unlocked; fails if the name exists.
    pub fn create(name: &str) -> Result<Lock> {
        Self::options().create(name)
    }

    /// Open an existing named lock.
    pub fn open(name: &str) -> Result<Lock> {
        Self::options().open(name)
    }

    /// Open the named lock, or create it if it does not exist (race-free).
    pub fn open_or_create(name: &str) -> Result<Lock> {
        Self::options().open_or_create(name)
    }
}

impl SyncOptions<Lock> {
    /// Create a new named lock.
    pub fn create(&self, name: &str) -> Result<Lock> {
        Ok(Lock {
            inner: Named::create(self, name, &layout(), init_lock)?,
        })
    }

    /// Open an existing named lock.
    pub fn open(&self, name: &str) -> Result<Lock> {
        Ok(Lock {
            inner: Named::open(self, name, &layout())?,
        })
    }

    /// Open or create a named lock.
    pub fn open_or_create(&self, name: &str) -> Result<Lock> {
        Ok(Lock {
            inner: Named::open_or_create(self, name, &layout(), init_lock)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relock_is_deadlock_and_timeout_times_out() {
        let s = LockState::new().unwrap();
        let g = s.lock().unwrap();
        assert!(matches!(
            s.lock_timeout(Duration::from_millis(1)),
            Err(LockError::Deadlock)
        ));
        std::thread::scope(|sc| {
            sc.spawn(|| {
                assert!(matches!(
                    s.lock_timeout(Duration::from_millis(20)),
                    Err(LockError::Timeout)
                ));
                assert!(matches!(s.try_lock(), Err(LockError::WouldBlock)));
            });
        });
        drop(g);
        assert!(!s.is_locked());
        assert_eq!(s.owner(), None);
    }

    #[test]
    fn unrepaired_owner_death_makes_it_not_recoverable() {
        let s = LockState::new().unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| std::mem::forget(s.lock().unwrap()))
                .join()
                .unwrap()
        });
        assert!(s.owner().is_some());
        let g = s.lock().unwrap_err().into_guard().unwrap();
        assert!(g.needs_repair());
        drop(g);
        assert!(s.is_not_recoverable());
        assert!(matches!(s.lock(), Err(LockError::NotRecoverable)));
        assert!(matches!(s.try_lock(), Err(LockError::NotRecoverable)));
    }

    #[test]
    fn bad_magic_is_an_error() {
        let s = LockState::new().unwrap();
        s.core.magic.store(7, Ordering::Relaxed);
        // SAFETY: a valid, aligned LockState.
        assert!(unsafe { LockState::from_ptr(&*s) }.is_err());
    }
}
