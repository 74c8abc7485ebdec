//! Robust, process-shared pthread mutexes (glibc), and the calling thread's identity as a
//! lock owner.
//!
//! A robust mutex is the only way a library can learn that a lock holder died: glibc keeps a
//! per-thread robust list that the kernel walks when a thread exits, marking every mutex the
//! thread held as `OWNER_DIED`, and the next `pthread_mutex_lock` returns `EOWNERDEAD`.
//! (A library cannot register its own robust list: a thread has only one, and glibc owns it.)
//!
//! Timed locks use `pthread_mutex_clocklock` with `CLOCK_MONOTONIC` (glibc >= 2.30), which the
//! `libc` crate does not declare, so it is declared here.

use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Instant;

extern "C" {
    /// glibc >= 2.30 (`GLIBC_2.30`): `pthread_mutex_timedlock` against a chosen clock.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clockid: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// How a lock call failed (the mutex is not held by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MutexError {
    /// `EBUSY` from a try-lock.
    WouldBlock,
    /// `ETIMEDOUT` from a timed lock.
    TimedOut,
    /// `ENOTRECOVERABLE`: a previous owner died and its successor released without
    /// `pthread_mutex_consistent`.
    NotRecoverable,
    /// `EDEADLK`: the calling thread already holds this (error-checking) mutex.
    Deadlock,
    /// `EPERM` from unlock or consistent: the calling thread does not hold it.
    NotOwner,
    /// `EAGAIN` from a recursive lock: the recursion count would overflow.
    TooDeep,
    /// Any other error number (`EINVAL` for a corrupt mutex, …).
    Os(i32),
}

impl MutexError {
    fn from_errno(e: libc::c_int) -> MutexError {
        match e {
            libc::EBUSY => MutexError::WouldBlock,
            libc::ETIMEDOUT => MutexError::TimedOut,
            libc::ENOTRECOVERABLE => MutexError::NotRecoverable,
            libc::EDEADLK => MutexError::Deadlock,
            libc::EPERM => MutexError::NotOwner,
            libc::EAGAIN => MutexError::TooDeep,
            e => MutexError::Os(e),
        }
    }
}

/// A successful lock call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Acquired normally.
    Ok,
    /// `EOWNERDEAD`: acquired, but the previous owner died holding it; the mutex stays
    /// inconsistent until `make_consistent`.
    OwnerDied,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn locked(rc: libc::c_int) -> Result<Locked, MutexError> {
    match rc {
        0 => Ok(Locked::Ok),
        libc::EOWNERDEAD => Ok(Locked::OwnerDied),
        e => Err(MutexError::from_errno(e)),
    }
}

/// Initialise a process-shared, robust mutex in place: `PTHREAD_MUTEX_RECURSIVE` if
/// `recursive`, else `PTHREAD_MUTEX_ERRORCHECK` (a relock by the holder fails with `EDEADLK`
/// instead of deadlocking).
///
/// # Safety
///
/// `m` must be valid for writes of a `pthread_mutex_t`, suitably aligned, and no thread in any
/// process may be using the mutex there (it is either fresh memory or a mutex nobody can
/// reach yet).
pub(crate) unsafe fn init(m: *mut libc::pthread_mutex_t, recursive: bool) -> io::Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: attr is valid for writes; pthread_mutexattr_init initialises it.
    check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
    let kind = if recursive {
        libc::PTHREAD_MUTEX_RECURSIVE
    } else {
        libc::PTHREAD_MUTEX_ERRORCHECK
    };
    let a = attr.as_mut_ptr();
    // SAFETY: `a` was initialised above; `m` is valid per this function's contract.
    let result = unsafe {
        check(libc::pthread_mutexattr_setpshared(
            a,
            libc::PTHREAD_PROCESS_SHARED,
        ))
        .and_then(|()| {
            check(libc::pthread_mutexattr_setrobust(
                a,
                libc::PTHREAD_MUTEX_ROBUST,
            ))
        })
        .and_then(|()| check(libc::pthread_mutexattr_settype(a, kind)))
        .and_then(|()| check(libc::pthread_mutex_init(m, a)))
    };
    // SAFETY: `a` is initialised and no longer used after this.
    unsafe { libc::pthread_mutexattr_destroy(a) };
    result
}

/// Lock, blocking until `deadline` (`None`: forever). A deadline in the past still tries
/// once. `EINTR` cannot occur: glibc restarts the futex wait itself.
///
/// # Safety
///
/// `m` must point to a mutex initialised by [`init`] in memory that stays mapped for the call.
pub(crate) unsafe fn lock(
    m: *mut libc::pthread_mutex_t,
    deadline: Option<Instant>,
) -> Result<Locked, MutexError> {
    match deadline {
        // SAFETY: per this function's contract.
        None => locked(unsafe { libc::pthread_mutex_lock(m) }),
        Some(d) => {
            let abs = monotonic_abs(d);
            // SAFETY: per this function's contract; `abs` is a valid timespec on our stack.
            locked(unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &abs) })
        }
    }
}

/// Try to lock without blocking.
///
/// # Safety
///
/// As for [`lock`].
pub(crate) unsafe fn try_lock(m: *mut libc::pthread_mutex_t) -> Result<Locked, MutexError> {
    // SAFETY: per this function's contract.
    locked(unsafe { libc::pthread_mutex_trylock(m) })
}

/// Unlock (one level, for a recursive mutex). Unlocking an inconsistent robust mutex makes it
/// permanently not recoverable.
///
/// # Safety
///
/// As for [`lock`].
pub(crate) unsafe fn unlock(m: *mut libc::pthread_mutex_t) -> Result<(), MutexError> {
    // SAFETY: per this function's contract.
    match unsafe { libc::pthread_mutex_unlock(m) } {
        0 => Ok(()),
        e => Err(MutexError::from_errno(e)),
    }
}

/// Mark a mutex acquired with `EOWNERDEAD` consistent again.
///
/// # Safety
///
/// As for [`lock`].
pub(crate) unsafe fn make_consistent(m: *mut libc::pthread_mutex_t) -> Result<(), MutexError> {
    // SAFETY: per this function's contract.
    match unsafe { libc::pthread_mutex_consistent(m) } {
        0 => Ok(()),
        e => Err(MutexError::from_errno(e)),
    }
}

/// `deadline` as an absolute `CLOCK_MONOTONIC` time (what `Instant` measures on Linux).
fn monotonic_abs(deadline: Instant) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let left = deadline.saturating_duration_since(Instant::now());
    let mut sec = now.tv_sec.saturating_add(left.as_secs() as i64);
    let mut nsec = now.tv_nsec + i64::from(left.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    }
}

/// The calling thread as a lock owner: `(pid, tid, process start time)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Me {
    pub pid: u32,
    pub tid: u32,
    pub start: u64,
}

// Cached so that a lock call makes no system call (getpid and gettid are not cached by
// glibc): one thread-local per thread, filled on first use. A fork child starts with a copy
// of the forking thread's cache, so an atfork handler clears it there. START caches the
// process start time (one /proc read per process); Relaxed: a plain cache of a value that
// never changes within a process, and a racing first fill writes the same value.
static START: AtomicU64 = AtomicU64::new(0);
static START_PID: AtomicU32 = AtomicU32::new(0);
static ATFORK: Once = Once::new();

thread_local! {
    static ME: Cell<Me> = const { Cell::new(Me { pid: 0, tid: 0, start: 0 }) };
}

extern "C" fn forget_identity_in_child() {
    ME.with(|m| {
        m.set(Me {
            pid: 0,
            tid: 0,
            start: 0,
        })
    });
}

/// Who is calling, cheaply (one thread-local read after the thread's first call).
#[inline]
pub(crate) fn me() -> Me {
    let m = ME.with(Cell::get);
    if m.pid != 0 {
        return m;
    }
    fill_me()
}

#[cold]
fn fill_me() -> Me {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only writes a thread-local Cell (no allocation, no
        // locks), which is safe in a fork child.
        unsafe { libc::pthread_atfork(None, None, Some(forget_identity_in_child)) };
    });
    let pid = super::process::current_pid();
    let start = if START_PID.load(Ordering::Relaxed) == pid {
        START.load(Ordering::Relaxed)
    } else {
        let t = super::process::current_start_time();
        START.store(t, Ordering::Relaxed);
        START_PID.store(pid, Ordering::Relaxed);
        t
    };
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    let m = Me { pid, tid, start };
    ME.with(|c| c.set(m));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_died_is_reported_after_a_thread_exits_holding_it() {
        let m = Box::into_raw(Box::new(MaybeUninit::<libc::pthread_mutex_t>::uninit())).cast();
        // SAFETY: fresh heap memory nobody else uses.
        unsafe { init(m, false) }.unwrap();
        let addr = m as usize;
        std::thread::spawn(move || {
            // SAFETY: the mutex lives until the end of the test.
            assert_eq!(unsafe { lock(addr as *mut _, None) }, Ok(Locked::Ok));
        })
        .join()
        .unwrap();
        // SAFETY: as above.
        unsafe {
            assert_eq!(try_lock(m), Ok(Locked::OwnerDied));
            unlock(m).unwrap(); // without consistent: not recoverable from now on
            assert_eq!(
                lock(m, Some(Instant::now())),
                Err(MutexError::NotRecoverable)
            );
            drop(Box::from_raw(
                m.cast::<MaybeUninit<libc::pthread_mutex_t>>(),
            ));
        }
    }

    #[test]
    fn identity_is_cached_and_right() {
        let a = me();
        assert_eq!(a.pid, std::process::id());
        assert_eq!(
            a.tid,
            rustix::thread::gettid().as_raw_nonzero().get() as u32
        );
        assert_eq!(a, me());
    }
}
