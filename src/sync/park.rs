//! Parking on a futex word with a sleeper count: the two halves every futex-word primitive
//! (Event, Semaphore) uses, so that the waking side makes no system call when nobody sleeps.
//!
//! Protocol (the same Dekker pattern as `WaitQueue`, with a `SeqCst` fence on each side): a
//! waiter increments `sleepers`, fences, then `FUTEX_WAIT`s on `word` with the value it last
//! saw (the kernel re-checks the value atomically), then decrements `sleepers`. A waker
//! changes `word` with an RMW, fences, reads `sleepers`, and calls `FUTEX_WAKE` only if it is
//! non-zero. Whichever fence is first in the `SeqCst` order, the other side's later read sees
//! the first side's write: either the waker sees the sleeper, or the kernel's check sees the
//! new word and the waiter does not sleep. (`fence_after_rmw` is a compiler fence on x86-64,
//! where the preceding locked RMW is already a full barrier, and a real fence elsewhere and
//! under loom.) A waiter killed while parked leaves `sleepers` one too high, which only costs
//! later wakers a needless system call.

use std::time::Instant;

use crate::loom::futex::{self, Wait};
use crate::loom::{fence_after_rmw, AtomicU32, Ordering};

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
    // Relaxed: ordered by the fence right after it (pairs with the fence in `unpark`).
    sleepers.fetch_add(1, Ordering::Relaxed);
    fence_after_rmw();
    let r = futex::wait(word, expected, deadline);
    // Relaxed: an over-count only costs a waker a needless system call.
    sleepers.fetch_sub(1, Ordering::Relaxed);
    r
}

/// Wake up to `n` sleepers on `word`, if there are any. Call after changing `word` with an
/// RMW (SeqCst).
pub(crate) fn unpark(word: &AtomicU32, sleepers: &AtomicU32, n: u32) {
    // Pairs with the fence in `park` (module docs); the caller's change of `word` was an RMW.
    fence_after_rmw();
    // Relaxed: ordered by the fence.
    if sleepers.load(Ordering::Relaxed) != 0 {
        futex::wake(word, n);
    }
}

/// Whether `deadline` has passed.
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// `timeout` from now as a deadline (`None`, or a timeout too large to represent: none).
pub(crate) fn deadline(timeout: Option<std::time::Duration>) -> Option<Instant> {
    super::deadline_after(timeout)
}
