//! Parking on a futex word with a sleeper count: the two halves every futex-word primitive
//! (Event, Semaphore) uses, so that the waking side makes no system call when nobody sleeps.
//!
//! Protocol: a waiter increments `sleepers` (an RMW), then `FUTEX_WAIT`s on `word` with the
//! value it last saw (the kernel re-checks the value atomically), then decrements `sleepers`.
//! A waker first changes `word` (an RMW), then reads `sleepers` *with an RMW* (`fetch_add(0)`),
//! and calls `FUTEX_WAKE` only if it is non-zero. The two RMWs on `sleepers` are ordered in its
//! modification order: if the waker's comes first, the waiter's increment reads from it and
//! synchronises with it (both are AcqRel or stronger), so the waiter's futex check happens
//! after the waker's change of `word` and sees it; otherwise the waker reads the increment and
//! wakes. This argument needs only acquire/release, which is also what the loom model checks
//! (loom treats `SeqCst` loads as `AcqRel`, so a plain `load` here would be reported as a lost
//! wake-up). A waiter killed while parked leaves `sleepers` one too high, which only costs
//! later wakers a needless system call.

use std::time::Instant;

use crate::loom::futex::{self, Wait};
use crate::loom::{AtomicU32, Ordering};

/// How many times a waiter polls before it parks.
#[cfg(not(loom))]
pub(crate) const SPIN: u32 = 64;
/// Under loom every poll is a scheduling point: keep the model small.
#[cfg(loom)]
pub(crate) const SPIN: u32 = 1;

/// Sleep while `*word == expected` (until woken, a signal, a spurious wake-up or `deadline`).
/// The caller re-checks its condition after every return.
pub(crate) fn park(word: &AtomicU32, sleepers: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
    // SeqCst RMW: pairs with the `fetch_add(0)` in `unpark` (module docs).
    sleepers.fetch_add(1, Ordering::SeqCst);
    let r = futex::wait(word, expected, deadline);
    sleepers.fetch_sub(1, Ordering::SeqCst);
    r
}

/// Wake up to `n` sleepers on `word`, if there are any. Call after changing `word` with an
/// RMW (SeqCst).
pub(crate) fn unpark(word: &AtomicU32, sleepers: &AtomicU32, n: u32) {
    // An RMW, not a load: pairs with the increment in `park` (module docs).
    if sleepers.fetch_add(0, Ordering::SeqCst) != 0 {
        futex::wake(word, n);
    }
}

/// Whether `deadline` has passed.
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// `timeout` from now as a deadline.
pub(crate) fn deadline(timeout: Option<std::time::Duration>) -> Option<Instant> {
    timeout.map(|t| {
        Instant::now()
            .checked_add(t)
            .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(86_400 * 365 * 100))
    })
}
