//! [`Lock`]: a robust, process-shared mutex in shared memory that reports a dead holder.
//!
//! The state ([`LockState`], 72 bytes on x86-64 glibc) is a glibc robust pthread mutex plus
//! shmkit's own owner record; [`Lock`] is the standalone named object holding one.
//! `SPEC.md` §6.2 has the byte layout and what a death at each step leaves behind.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::named::{fingerprint_with, named_handle, Layout, Named, SyncOptions};
pub(crate) use super::robust::status;
use super::robust::{self, Acquired, Block, Me, MutexCore, MutexError};
use crate::os::liveness;
use crate::os::process::Liveness;
use crate::segment::Kind;

/// `magic` of an initialised [`LockState`]: `"LCK2"` little-endian.
pub(crate) const LOCK_MAGIC: u32 = u32::from_le_bytes(*b"LCK2");
/// `magic` of an initialised `RLockState`: `"RLK2"` little-endian.
pub(crate) const RLOCK_MAGIC: u32 = u32::from_le_bytes(*b"RLK2");

/// The calling thread, as a lock records it: this process's liveness token (created on first
/// use), this thread's number, and the pid for display. No system call after the first.
#[inline]
pub(crate) fn me() -> std::result::Result<Me, MutexError> {
    let token = liveness::current().map_err(|e| MutexError::Os(e.raw_os_error().unwrap_or(0)))?;
    Ok(Me {
        token,
        thread: robust::thread_number(),
        pid: liveness::current_pid(),
    })
}

/// Whether the process a liveness token names is gone (for the lock's takeover rule).
///
/// A token found alive is remembered by the asking thread for [`ALIVE_FOR`], so that a loop
/// of `try_lock` calls on a lock another live process holds does not make three system calls
/// each time.
pub(crate) fn is_dead(token: u64) -> bool {
    use std::cell::Cell;
    thread_local!(static LAST_ALIVE: Cell<(u64, Option<Instant>)> = const { Cell::new((0, None)) });
    let (t, at) = LAST_ALIVE.get();
    if t == token && at.is_some_and(|a| a.elapsed() < ALIVE_FOR) {
        return false;
    }
    let dead = liveness::liveness(token) == Liveness::Dead;
    LAST_ALIVE.set(if dead {
        (0, None)
    } else {
        (token, Some(Instant::now()))
    });
    dead
}

/// How long a thread trusts that a lock holder it found alive still is.
const ALIVE_FOR: Duration = Duration::from_millis(10);

/// A process that held (or holds) a lock, as recorded in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Owner {
    /// Its liveness token (`SPEC.md` §2.3): what identifies the process, in any pid
    /// namespace and across pid reuse.
    pub token: u64,
    /// Its process id, in its own pid namespace (recorded for display).
    pub pid: u32,
    /// The holding thread's number within its process (shmkit's, not the kernel's tid).
    pub thread: u32,
}

impl Owner {
    /// Whether that process still runs (a liveness query: three system calls).
    pub fn liveness(&self) -> Liveness {
        liveness::liveness(self.token)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (thread #{})", self.pid, self.thread)
    }
}

/// The recorded holder of `core`, if any (a racy snapshot unless the caller holds it).
pub(crate) fn owner_of(core: &MutexCore) -> Option<Owner> {
    let token = robust::token_of(core.owner_word());
    let (pid, thread) = core.holder_record();
    (token != 0).then_some(Owner { token, pid, thread })
}

/// Acquire `core` for the calling thread; `Ok(Some(owner))` when taken from a dead owner.
#[inline]
pub(crate) fn acquire_core(
    core: &MutexCore,
    block: Block,
    recursive: bool,
) -> std::result::Result<(Me, Option<Owner>), MutexError> {
    let me = me()?;
    // A deadline that has already passed polls once, as `try_lock` does (the holder's
    // liveness included), and reports a timeout.
    let (block, timed) = match block {
        Block::Until(d) if crate::os::deadline::passed(d) => (Block::No, true),
        b => (b, false),
    };
    let got = core
        .acquire(me, block, recursive, &is_dead)
        .map_err(|e| match e {
            MutexError::WouldBlock if timed => MutexError::TimedOut,
            e => e,
        });
    match got? {
        Acquired::Ok => Ok((me, None)),
        Acquired::OwnerDied { token, pid, thread } => Ok((me, Some(Owner { token, pid, thread }))),
    }
}

/// Why a lock call did not hand out a plain guard.
///
/// `G` is the guard type: [`OwnerDied`](LockError::OwnerDied) *holds the lock*, like std's
/// `PoisonError`, and is the only variant with a guard. The guard-free form is
/// `LockError<()>` ([`without_guard`](LockError::without_guard)): `'static`, and it still says
/// `OwnerDied`. Either form converts into [`shmkit::Error`](crate::Error) with `?`
/// (`Timeout`/`WouldBlock` become [`Error::Timeout`](crate::Error::Timeout) /
/// [`Error::WouldBlock`](crate::Error::WouldBlock), the rest
/// [`Error::Lock`](crate::Error::Lock)); `LockError<()>` also converts into
/// `Box<dyn Error>`. Converting drops an `OwnerDied` guard unrepaired, which makes the lock not
/// recoverable: match `OwnerDied` first where the data can be repaired.
///
/// ```
/// use shmkit::sync::{LockError, LockState};
/// use std::time::Duration;
/// fn with_lock(state: &LockState) -> shmkit::Result<()> {
///     let _guard = match state.lock_timeout(Duration::from_secs(10)) {
///         Ok(g) => g,
///         Err(LockError::OwnerDied(mut g)) => {
///             // repair the protected data here, then:
///             g.make_consistent()?;
///             g
///         }
///         Err(e) => return Err(e.into()), // Timeout, NotRecoverable, …
///     };
///     Ok(())
/// }
/// with_lock(&LockState::new())?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub enum LockError<G> {
    /// Acquired, but the previous owner died holding the lock, so the data it protects may
    /// be half-updated. The guard holds the lock: repair the data, then call
    /// `make_consistent()` on the guard. If the guard is dropped without it, the lock becomes
    /// permanently not recoverable and every later call returns
    /// [`NotRecoverable`](LockError::NotRecoverable).
    OwnerDied(G),
    /// `try_lock`: someone else (alive) holds it.
    WouldBlock,
    /// `lock_timeout`/`lock_deadline`: the time ran out before the lock was free.
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
    /// This process could not get its liveness token (`/dev/shm` full or not writable:
    /// the OS error number).
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
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new();
    /// # let _g = state.lock().unwrap();
    /// assert!(state.try_lock().unwrap_err().into_guard().is_none()); // Deadlock: no guard
    /// ```
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// The same error without the guard: `'static`, so it converts into `Box<dyn Error>`.
    /// For `OwnerDied` this drops the guard, which makes the lock not recoverable: only do
    /// this when the protected data cannot be repaired.
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new();
    /// # let _g = state.lock().unwrap();
    /// let e = state.try_lock().unwrap_err().without_guard();
    /// let boxed: Box<dyn std::error::Error> = e.into();
    /// assert!(boxed.to_string().contains("already holds")); // Deadlock: this thread holds it
    /// ```
    pub fn without_guard(self) -> LockError<()> {
        self.map(drop)
    }

    /// Convert the guard (e.g. to a wrapper type).
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new();
    /// # let _g = state.lock().unwrap();
    /// let e = state.try_lock().unwrap_err().map(|g| g.previous_owner());
    /// assert!(matches!(e, shmkit::sync::LockError::Deadlock));
    /// ```
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
            LockError::Os(e) => write!(
                f,
                "lock failed: cannot create this process's liveness token: {}",
                std::io::Error::from_raw_os_error(*e)
            ),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

impl<G> LockError<G> {
    /// Whether this is the timeout outcome ([`Timeout`](LockError::Timeout)).
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new();
    /// # let _g = state.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let e = state.lock_deadline(std::time::Instant::now()).unwrap_err();
    ///         assert!(e.is_timeout());
    ///     });
    /// });
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, LockError::Timeout)
    }
}

/// The state of a robust, process-shared, non-recursive lock: `#[repr(C)]`, 32 bytes,
/// 8-byte aligned, no pointers (`SPEC.md` §6.2). It can be placed inside any shmkit object
/// ([`LockState::init`]), or used through a named [`Lock`], which derefs to it.
///
/// Robust: if the holding *process* dies (killed, crashed, exited) while holding it, the next
/// caller acquires it with [`LockError::OwnerDied`]. A waiter notices a dead holder within
/// about 20 ms; `try_lock` notices at once (it asks the holder's liveness, three system
/// calls, when the lock is held).
///
/// Unlike Python's `multiprocessing.Lock`, only the holder can release it (the guard does,
/// and the guard is not `Send`), and a second `lock` by the holder fails with
/// [`LockError::Deadlock`] instead of blocking forever.
///
/// A thread that exits holding the lock while its process goes on is *not* detected: the
/// lock stays held by that process until it exits (`SPEC.md` §6.2 says why). Leaking a guard
/// (`mem::forget`) is safe and has the same effect.
///
/// ```
/// use shmkit::sync::LockState;
/// let state = LockState::new(); // on the heap; shared memory works the same
/// {
///     let _guard = state.lock().unwrap();
///     assert!(state.is_locked());
/// }
/// assert!(!state.is_locked());
/// ```
#[repr(C)]
pub struct LockState {
    pub(crate) core: MutexCore,
}

const _: () = assert!(std::mem::size_of::<LockState>() == 32);

impl fmt::Debug for LockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockState")
            .field("status", &self.core.status_word())
            .field("owner", &owner_of(&self.core))
            .finish_non_exhaustive()
    }
}

impl LockState {
    /// A new, unlocked lock on the heap (boxed, so that it has a stable address like one in
    /// shared memory). For one inside shared memory use [`init`](Self::init).
    pub fn new() -> Box<LockState> {
        Box::new(LockState {
            core: MutexCore::new(LOCK_MAGIC),
        })
    }

    /// Initialise a lock in place (unlocked), e.g. inside a segment's payload before the
    /// segment is published.
    ///
    /// # Safety
    ///
    /// `at` must be valid for writes of `size_of::<LockState>()` bytes, 8-byte aligned, and
    /// no thread in any process may be using a lock there while it is initialised.
    pub unsafe fn init(at: *mut LockState) {
        // SAFETY: forwarded contract; `core` is at offset 0 of a repr(C) struct.
        unsafe { MutexCore::init(std::ptr::addr_of_mut!((*at).core), LOCK_MAGIC) }
    }

    /// View an initialised lock in memory, after checking its magic.
    ///
    /// Any bytes are a valid `LockState` (every field is an atomic and every owner word has a
    /// meaning), so a lock that another process scribbled over can fail, block until a
    /// timeout, or be handed out wrongly, but cannot make this process misbehave otherwise.
    ///
    /// # Safety
    ///
    /// `at` must be 8-byte aligned and valid for reads and writes of `size_of::<LockState>()`
    /// bytes for `'a`.
    ///
    /// And while the state is in use, this process must not access any 8-byte word that
    /// overlaps it with another access size, by any other means (`Segment::read_at`,
    /// `write_at`, `load_u64`, `atomic_u64`, plain reads and writes through the mapping): a
    /// racing access of another size to the same bytes is undefined behaviour in Rust's memory
    /// model (`SPEC.md` §1, one access size per word). A state at an 8-aligned offset, its
    /// size rounded up to 8, in bytes nothing else of this process reads or writes, meets this.
    pub unsafe fn from_ptr<'a>(at: *const LockState) -> std::result::Result<&'a LockState, String> {
        // SAFETY: per the contract; all fields are atomics, so `&` is sound.
        let s = unsafe { &*at };
        s.core.check(LOCK_MAGIC)?;
        Ok(s)
    }

    /// Lock, run `f`, unlock, if the lock is free at the first look; `Err(f)` (not run,
    /// handed back) otherwise, or when this process has no liveness token: then the caller
    /// takes the lock the ordinary way, which reports why. The hot path of the cells' and
    /// lists' short critical sections (`MutexCore::run_if_free`).
    #[inline(always)]
    pub(crate) fn run_if_free<R, F: FnOnce() -> R>(&self, f: F) -> std::result::Result<R, F> {
        match me() {
            Ok(me) => self.core.run_if_free(me, f),
            Err(_) => Err(f),
        }
    }

    /// Take the lock if it is free (or its holder is dead: `OwnerDied`), else
    /// [`LockError::WouldBlock`] (Python's `acquire(False)`).
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new();
    /// let g = state.try_lock().unwrap();
    /// let busy = std::thread::scope(|s| {
    ///     s.spawn(|| matches!(state.try_lock(), Err(shmkit::sync::LockError::WouldBlock))).join().unwrap()
    /// });
    /// assert!(busy);
    /// # drop(g);
    /// ```
    #[inline]
    pub fn try_lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Block::No)
    }

    /// Block until the lock is ours, with no time limit (Python's `acquire()`). See
    /// [`LockError`] for `OwnerDied`.
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new();
    /// let g = state.lock().unwrap();
    /// assert!(state.is_locked());
    /// # drop(g);
    /// ```
    #[inline]
    pub fn lock(&self) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Block::Until(None))
    }

    /// Block for at most `timeout`, else [`LockError::Timeout`] (Python's
    /// `acquire(timeout=t)`). A zero timeout polls once, as `try_lock` does; one too large to
    /// represent means no limit.
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new();
    /// # use std::time::Duration;
    /// let g = state.lock_timeout(Duration::from_secs(10)).unwrap();
    /// # drop(g);
    /// ```
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Block::Until(crate::os::deadline::after(Some(timeout))))
    }

    /// Block until `deadline` (`CLOCK_MONOTONIC`), else [`LockError::Timeout`]. A deadline in
    /// the past polls once.
    ///
    /// ```
    /// # let state = shmkit::sync::LockState::new();
    /// use std::time::{Duration, Instant};
    /// let deadline = Instant::now() + Duration::from_secs(10);
    /// let g = state.lock_deadline(deadline).unwrap(); // free: taken at once
    /// # drop(g);
    /// ```
    pub fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Block::Until(Some(deadline)))
    }

    #[inline]
    fn acquire(
        &self,
        block: Block,
    ) -> std::result::Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        match acquire_core(&self.core, block, false) {
            Ok((me, None)) => Ok(LockGuard {
                lock: self,
                me,
                previous_owner: None,
                _not_send: PhantomData,
            }),
            Ok((me, Some(dead))) => Err(LockError::OwnerDied(LockGuard {
                lock: self,
                me,
                previous_owner: Some(dead),
                _not_send: PhantomData,
            })),
            Err(e) => Err(LockError::from_mutex(e)),
        }
    }

    /// A guard for the lock the calling thread already holds (one it
    /// [leaked](LockGuard::leak)): the counterpart of `leak`, for Python-style
    /// `acquire()`/`release()` pairs. A thread that does not hold it gets
    /// [`LockError::NotOwner`] and nothing changes. The guard's
    /// [`previous_owner`](LockGuard::previous_owner) is `None`, but after `OwnerDied`
    /// its [`make_consistent`](LockGuard::make_consistent) still repairs the lock.
    ///
    /// ```
    /// use shmkit::sync::{LockError, LockState};
    /// let state = LockState::new();
    /// assert!(matches!(state.adopt(), Err(LockError::NotOwner)));
    /// state.lock().unwrap().leak();
    /// let other = std::thread::scope(|s| s.spawn(|| state.adopt().map(drop)).join().unwrap());
    /// assert!(matches!(other, Err(LockError::NotOwner)));
    /// drop(state.adopt().unwrap());
    /// assert!(!state.is_locked());
    /// ```
    ///
    /// Only a leaked lock can be adopted: while a guard of this hold lives (the thread took
    /// the lock and has not leaked it, or adopted it already), `adopt` fails with
    /// [`LockError::Deadlock`], as a second `lock` does. A second guard would release the
    /// lock when either drops, and the other guard would go on as if it held it. (A guard
    /// dropped with `mem::forget` instead of [`leak`](LockGuard::leak) is not a leak in this
    /// sense: its hold cannot be adopted, and stays until the process exits.)
    ///
    /// ```
    /// use shmkit::sync::{LockError, LockState};
    /// let state = LockState::new();
    /// let g = state.lock().unwrap();
    /// assert!(matches!(state.adopt(), Err(LockError::Deadlock)));
    /// # drop(g);
    /// ```
    #[inline]
    pub fn adopt(&self) -> std::result::Result<LockGuard<'_>, LockError<()>> {
        let me = me().map_err(LockError::from_mutex)?;
        if !self.core.held_by(me) {
            return Err(LockError::NotOwner);
        }
        if !self.core.set_leaked(false) {
            return Err(LockError::Deadlock);
        }
        // A hold taken over from a dead owner and leaked before `make_consistent` still needs
        // the repair; who died was forgotten with the leaked guard (token 0: unknown).
        let previous_owner =
            (self.core.owner_word() & robust::INCONSISTENT != 0).then_some(Owner {
                token: 0,
                pid: 0,
                thread: 0,
            });
        Ok(LockGuard {
            lock: self,
            me,
            previous_owner,
            _not_send: PhantomData,
        })
    }

    /// Whether someone holds it (a snapshot: it may change at once).
    pub fn is_locked(&self) -> bool {
        matches!(
            self.core.status_word(),
            status::LOCKED | status::INCONSISTENT | status::DEAD_UNKNOWN
        )
    }

    /// The recorded holder, if any (a snapshot).
    pub fn owner(&self) -> Option<Owner> {
        owner_of(&self.core).filter(|_| self.is_locked())
    }

    /// Whether a dead owner's successor released it unrepaired (every lock call now fails).
    pub fn is_not_recoverable(&self) -> bool {
        self.core.status_word() == status::NOT_RECOVERABLE
    }
}

/// Holds a [`LockState`] (or [`Lock`]); unlocks when dropped. Not `Send`: the lock records
/// its holding thread.
///
/// A guard inherited by a `fork()`ed child is not the child's: dropping it there changes
/// nothing (the parent still holds the lock), and `make_consistent` there fails with
/// [`LockError::NotOwner`].
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a LockState,
    me: Me,
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
    /// works normally again once released. [`LockError::WouldBlock`] (try again) only if the
    /// lock word changed under 64 compare-and-swaps in a row, which only a peer rewriting it at
    /// random does.
    ///
    /// ```
    /// use shmkit::sync::{LockError, LockState};
    /// # fn repair() {}
    /// let state = LockState::new();
    /// match state.lock() {
    ///     Ok(_guard) => { /* the data is consistent */ }
    ///     Err(LockError::OwnerDied(mut guard)) => {
    ///         // A process died holding it: repair what it left half-done, then say so.
    ///         repair();
    ///         guard.make_consistent()?;
    ///     }
    ///     Err(e) => return Err(e.without_guard().into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// After [`LockError::OwnerDied`], for a caller that cannot repair the data (it only
    /// wanted to read it): release the lock unrepaired *back to its dead previous owner*, so
    /// that the next acquirer gets `OwnerDied` too, with the same chance to repair. (Dropping
    /// the guard instead makes the lock not recoverable for everyone.) For a guard that needs
    /// no repair (a normal acquisition, or after [`make_consistent`](Self::make_consistent)),
    /// the same as dropping it.
    ///
    /// ```
    /// use shmkit::sync::{LockError, LockState};
    /// let state = LockState::new();
    /// match state.lock() {
    ///     Ok(_guard) => { /* read the data */ }
    ///     Err(LockError::OwnerDied(guard)) => {
    ///         // The data may be half-updated, and this caller cannot tell how to fix it.
    ///         guard.release_unrepaired();
    ///     }
    ///     Err(e) => return Err(e.without_guard().into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release_unrepaired(self) {
        let Some(dead) = self.previous_owner else {
            return; // dropping releases it normally
        };
        let g = std::mem::ManuallyDrop::new(self);
        // In a fork()ed child the guard is the parent's: leave the lock alone (as `Drop`).
        if liveness::is_current(g.me.token) {
            g.lock
                .core
                .release_to_dead(g.me.token, (dead.token, dead.pid));
        }
    }

    /// The owner that died holding the lock, while this guard has not called
    /// [`make_consistent`](Self::make_consistent); `None` for a normal acquisition. All zero
    /// (token 0: unknown) for a guard [`adopt`](LockState::adopt)ed from a leaked hold that
    /// still needs the repair.
    pub fn previous_owner(&self) -> Option<Owner> {
        self.previous_owner
    }

    /// Whether this guard came from [`LockError::OwnerDied`] and is not repaired yet.
    pub fn needs_repair(&self) -> bool {
        self.previous_owner.is_some()
    }

    /// Keep the lock held without a guard, for Python-style `acquire()`/`release()` pairs:
    /// take a guard back later with [`LockState::adopt`] from the same thread (dropping it
    /// releases the lock). Leaking and never adopting keeps the lock held until the process
    /// exits (then the next acquirer gets [`LockError::OwnerDied`]).
    ///
    /// ```
    /// let state = shmkit::sync::LockState::new();
    /// state.lock().unwrap().leak();
    /// assert!(state.is_locked());
    /// drop(state.adopt().unwrap()); // releases
    /// assert!(!state.is_locked());
    /// ```
    pub fn leak(self) {
        // Marks the hold as guardless (`depth = 0`), which `adopt` requires; not in a fork()ed
        // child, where the lock (and its `depth`) is the parent's, nor when the hold is no
        // longer this thread's (taken over from a process judged dead, or an owner word a peer
        // rewrote): `depth` is then another holder's, whose guard must stay the only one.
        if self.held_here() && self.lock.core.held_by(self.me) {
            self.lock.core.set_leaked(true);
        }
        std::mem::forget(self);
    }

    /// Whether this process holds the lock through this guard: false in a `fork()`ed child
    /// that inherited the guard (the lock is the parent's). One Relaxed load.
    #[inline]
    pub(crate) fn held_here(&self) -> bool {
        liveness::is_current(self.me.token)
    }

    /// The lock this guard holds.
    pub(crate) fn state(&self) -> &'a LockState {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // In a fork()ed child the guard is the parent's: leave the lock alone.
        if liveness::is_current(self.me.token) {
            self.lock.core.release_held(self.me.token);
        }
    }
}

const LOCK_FINGERPRINT: u64 = fingerprint_with(
    b"shmkit lock v2: magic u32, depth u32, owner u64 (token<<3 | recording<<2 | inconsistent<<1 | waiters), seq u32, sleepers u32, thread u32, pid u32",
    32,
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
    unsafe { LockState::init(p) };
    Ok(())
}

/// A named, robust, process-shared lock: a segment of kind [`Kind::LOCK`] holding a
/// [`LockState`], to which it derefs (`try_lock`, `lock`, `lock_timeout`, `lock_deadline`, …).
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

named_handle!(Lock, LockState, "lock", ", unlocked", layout(), init_lock);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relock_is_deadlock_and_timeout_times_out() {
        let s = LockState::new();
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

    /// A holder whose token is dead (a process that is gone) is taken over with OwnerDied;
    /// releasing without repair makes it not recoverable.
    #[test]
    fn unrepaired_owner_death_makes_it_not_recoverable() {
        let s = LockState::new();
        let ghost = Me {
            token: 0x1234_5678_9abc, // no liveness file: dead
            thread: 1,
            pid: 4_000_000,
        };
        s.core.acquire(ghost, Block::No, false, &|_| false).unwrap();
        assert_eq!(s.owner().unwrap().pid, 4_000_000);
        let g = s.lock().unwrap_err().into_guard().unwrap();
        assert!(g.needs_repair());
        assert_eq!(g.previous_owner().unwrap().token, ghost.token);
        drop(g);
        assert!(s.is_not_recoverable());
        assert!(matches!(s.lock(), Err(LockError::NotRecoverable)));
        assert!(matches!(s.try_lock(), Err(LockError::NotRecoverable)));
    }

    #[test]
    fn repaired_owner_death_unlocks_normally() {
        let s = LockState::new();
        let ghost = Me {
            token: 0x1234_5678_9abd,
            thread: 1,
            pid: 4_000_001,
        };
        s.core.acquire(ghost, Block::No, false, &|_| false).unwrap();
        // A blocking lock notices the dead holder after its spin.
        let mut g = s
            .lock_timeout(Duration::from_secs(10))
            .unwrap_err()
            .into_guard()
            .unwrap();
        g.make_consistent().unwrap();
        drop(g);
        assert!(s.try_lock().is_ok());
    }

    /// A passed deadline polls once as `try_lock` does, the holder's liveness included: a
    /// dead holder's lock is taken over (`OwnerDied`), a live holder's is a `Timeout`.
    #[test]
    fn a_passed_deadline_polls_once() {
        let s = LockState::new();
        let ghost = Me {
            token: 0x1234_5678_9abe, // no liveness file: dead
            thread: 1,
            pid: 4_000_003,
        };
        s.core.acquire(ghost, Block::No, false, &|_| false).unwrap();
        let past = Instant::now() - Duration::from_millis(1);
        let mut g = s.lock_deadline(past).unwrap_err().into_guard().unwrap();
        g.make_consistent().unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let e = s.lock_deadline(past).map(drop).unwrap_err();
                assert!(e.is_timeout(), "{e}");
                let e = s.lock_timeout(Duration::ZERO).map(drop).unwrap_err();
                assert!(e.is_timeout(), "{e}");
            });
        });
        drop(g);
        drop(s.lock_deadline(past).unwrap());
    }

    /// Any owner word a peer can write is handled: a lock call fails, times out or takes it
    /// over, and never panics.
    #[test]
    fn hostile_owner_words_are_handled() {
        for w in [
            1u64,
            2,
            3,
            4,
            7,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (u64::MAX >> 2) << 2,
        ] {
            let s = LockState::new();
            s.core.set_owner_word_for_test(w);
            let r = s
                .lock_timeout(Duration::from_millis(50))
                .map(drop)
                .map_err(|e| e.without_guard());
            match r {
                Ok(()) | Err(LockError::OwnerDied(())) | Err(LockError::NotRecoverable) => {}
                Err(LockError::Timeout) => panic!("word {w:#x}: nobody alive holds it"),
                Err(e) => panic!("word {w:#x}: {e}"),
            }
        }
    }

    /// Review finding: a guard whose process was (wrongly) judged dead and whose lock was
    /// taken over must not release the new holder's lock when it drops.
    #[test]
    fn a_taken_over_guard_releases_nothing() {
        let s = LockState::new();
        let g = s.lock().unwrap();
        let other = 0x0dd_0dd0_0dd0; // another process's token
        s.core.set_owner_word_for_test(other << robust::SHIFT);
        drop(g);
        assert_eq!(s.core.owner_word(), other << robust::SHIFT);
        assert!(s.is_locked());
    }

    /// Review finding: leaking a guard whose hold was taken over must not mark the new
    /// holder's hold guardless (`depth = 0`), which would let that holder adopt a second guard.
    #[test]
    fn leaking_a_taken_over_guard_leaves_the_new_holders_depth() {
        let s = LockState::new();
        let g = s.lock().unwrap();
        let other = 0x0dd_0dd0_0dd0; // another process's token
        s.core.set_owner_word_for_test(other << robust::SHIFT);
        g.leak();
        assert_eq!(s.core.depth(), 1);
        assert_eq!(s.core.owner_word(), other << robust::SHIFT);
    }

    /// Audit finding: `adopt` while a guard of the same lock lives made a second guard, and
    /// dropping the first released the lock under the second: another thread then took the
    /// lock while a guard of this thread still said it held it (the second guard's drop would
    /// even release that thread's lock). Only a leaked lock can be adopted.
    #[test]
    fn adopt_refuses_while_a_guard_lives() {
        let s = LockState::new();
        let g = s.lock().unwrap();
        assert!(matches!(s.adopt(), Err(LockError::Deadlock)));
        // The leak/adopt pairs of Python-style acquire()/release() still work, repeatedly.
        g.leak();
        let g = s.adopt().unwrap();
        assert!(matches!(s.adopt(), Err(LockError::Deadlock)));
        g.leak();
        let g = s.adopt().unwrap();
        drop(g);
        assert!(!s.is_locked());
        assert!(matches!(s.adopt(), Err(LockError::NotOwner)));
        // A fresh acquisition after a leaked one is a guard again, not a leaked lock.
        s.lock().unwrap().leak();
        drop(s.adopt().unwrap());
        let g = s.lock().unwrap();
        assert!(matches!(s.adopt(), Err(LockError::Deadlock)));
        drop(g);
    }

    #[test]
    fn bad_magic_is_an_error() {
        let s = LockState::new();
        let mut bytes = [0u64; 4];
        // SAFETY: plain copy of a 32-byte POD-like state (all atomics) into a buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&*s as *const LockState).cast::<u64>(),
                bytes.as_mut_ptr(),
                4,
            )
        };
        bytes[0] = 7;
        // SAFETY: a valid, aligned buffer of the right size.
        assert!(unsafe { LockState::from_ptr(bytes.as_ptr().cast()) }.is_err());
    }
}
