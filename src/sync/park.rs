//! The one futex-word handshake: how every shmkit primitive sleeps on a 32-bit word in shared
//! memory and is woken, with a sleeper count so that the waking side makes no system call when
//! nobody sleeps. `Event`, `Semaphore`, `WaitQueue` (and through it `Condition`, the locks and
//! the queues) all park and unpark here, and nowhere else (`SPEC.md` §5.1).
//!
//! Protocol, a Dekker pattern over two locations (`word`, `sleepers`):
//! - a waiter that saw `word == expected` increments `sleepers` (a `SeqCst` RMW), reads `word`
//!   again (`SeqCst`), and only if it still holds `expected` calls `FUTEX_WAIT(word,
//!   expected)` (the kernel compares once more, atomically with queueing the sleeper); then it
//!   decrements `sleepers`;
//! - a waker changes `word` with a `SeqCst` RMW, then reads `sleepers` (`SeqCst`) and calls
//!   `FUTEX_WAKE` only if it is non-zero.
//!
//! All four accesses are `SeqCst`, so they lie in one total order: if the waker's read of
//! `sleepers` misses the waiter's increment, the increment comes after it in that order, so
//! the waiter's re-read of `word` comes after the waker's change and sees it; the waiter does
//! not sleep. Otherwise the waker sees the sleeper and wakes it (a waiter between its re-read
//! and its `FUTEX_WAIT` gets `EAGAIN` from the kernel's compare). See
//! [`loom_sc_fence`](crate::loom::loom_sc_fence) for why loom checks the fence formulation.
//!
//! A waiter killed while parked leaves `sleepers` one too high, which only costs later wakers
//! a needless system call. A 32-bit count does not realistically overflow.

use std::time::Instant;

use crate::loom::futex::{self, Wait};
use crate::loom::{fence, loom_sc_fence, AtomicU32, Ordering};

/// How many times a waiter polls before it parks.
#[cfg(not(loom))]
pub(crate) const SPIN: u32 = 64;
/// Under loom every poll is a scheduling point: keep the model small.
#[cfg(loom)]
pub(crate) const SPIN: u32 = 1;

/// Sleep while `*word == expected` (until woken, a signal, a spurious wake-up or `deadline`).
/// The caller re-checks its condition after every return.
pub(crate) fn park(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
) -> Wait {
    // SeqCst: the waiter's write of the handshake (module docs); pairs with the SeqCst load of
    // `sleepers` in `unpark`.
    sleepers.fetch_add(1, Ordering::SeqCst);
    loom_sc_fence();
    // SeqCst: the waiter's read of the handshake; pairs with the waker's SeqCst RMW of `word`.
    let r = if word.load(Ordering::SeqCst) != expected {
        Wait::Retry
    } else {
        futex::wait(word, expected, deadline)
    };
    // Relaxed: an over-count only costs a waker a needless system call.
    sleepers.fetch_sub(1, Ordering::Relaxed);
    r
}

/// [`park`] for a waker that skips its notify when nobody sleeps (`WaitQueue::
/// notify_if_sleepers`): register as a sleeper, then check `ready()` (the caller's condition)
/// before sleeping. Returns `None` if `ready()` held (no sleep).
///
/// The conditional waker makes its condition true, then `fence(SeqCst)`, then loads
/// `sleepers`; here the increment of `sleepers`, then `fence(SeqCst)`, then `ready()` loads the
/// condition. A Dekker pair over (condition, `sleepers`) with a fence on each side: the two
/// fences are ordered in the single `SeqCst` order; if the waker's comes first, `ready()` sees
/// the condition; if ours comes first, the waker sees the sleeper and notifies (bumps `word`),
/// and the compare below or the kernel's sees the bump. No wake-up is lost.
pub(crate) fn park_unless(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
    ready: impl FnOnce() -> bool,
) -> Option<Wait> {
    // SeqCst RMW (as in `park`, for unconditional wakers) and the fence of the conditional
    // handshake: pairs with the fence in `WaitQueue::notify_if_sleepers`.
    sleepers.fetch_add(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let r = if ready() {
        None
    } else if word.load(Ordering::SeqCst) != expected {
        // SeqCst load: the waiter's read of `park`'s handshake, for unconditional wakers.
        Some(Wait::Retry)
    } else {
        Some(futex::wait(word, expected, deadline))
    };
    // Relaxed: an over-count only costs a waker a needless system call.
    sleepers.fetch_sub(1, Ordering::Relaxed);
    r
}

/// Wake up to `n` sleepers on `word`, if there are any. Call right after changing `word`
/// with a `SeqCst` read-modify-write (the waker's write of the handshake).
pub(crate) fn unpark(word: &AtomicU32, sleepers: &AtomicU32, n: u32) {
    loom_sc_fence();
    // SeqCst: the waker's read of the handshake; pairs with the SeqCst increment in `park`.
    if sleepers.load(Ordering::SeqCst) != 0 {
        futex::wake(word, n);
    }
}
