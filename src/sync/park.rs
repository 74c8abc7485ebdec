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
//! **Checked park** ([`park_checked`], with [`WaitQueue::notify_fenced`]): a waker that may
//! skip changing `word` altogether when nobody sleeps (no read-modify-write at all on the
//! common path). Its waiter must then see the condition itself, so the handshake is a second
//! Dekker pair, over `sleepers` and the condition:
//! - the waiter increments `sleepers` (`SeqCst` RMW), then `fence(SeqCst)` (pair A, waiter
//!   side), then re-checks its condition; only if it is still false does it go on to the
//!   `word` re-read and `FUTEX_WAIT` above;
//! - the waker makes the condition true (any stores), then `fence(SeqCst)` (pair A, waker
//!   side), then loads `sleepers`; only if it is non-zero does it change `word` and wake
//!   (`unpark`).
//!
//! Of the two fences, one is first in the `SeqCst` order. If the waiter's is, the waker's
//! load of `sleepers` (after its fence) sees the increment (before the waiter's fence), and
//! the waker changes `word` and wakes: the waiter either sees the new `word` or is woken
//! (the pair above). If the waker's is, the waiter's condition loads (after its fence) see
//! the waker's stores (before its fence): the waiter does not sleep. The fences are real
//! (`mfence` on x86-64), not loom-only: the condition is read with plain Acquire loads, which
//! no `SeqCst` total order covers. Loom model: `loom_conditional_notify_is_never_lost`
//! (`src/sync/waiter.rs`).
//!
//! A waiter killed while parked leaves `sleepers` one too high, which only costs later wakers
//! a needless system call. A 32-bit count does not realistically overflow.

use std::time::Instant;

use crate::loom::futex::{self, Wait};
use crate::loom::{fence, loom_sc_fence, AtomicU32, Ordering};

/// How many times a waiter polls its condition before it parks (every shmkit waiter: the
/// `WaitQueue`, `Event`, `Semaphore`). Kept short: on the 2-vCPU KVM machine of
/// BENCHMARKS.md a `pause` costs about 58 ns, so the former 100 polls were about 6 µs of
/// spinning, about a futex wake-up's latency; a parked round trip (`spsc_park`) was then 2×
/// the futex floor, and its spinning ping-pong (`spsc_block`) 2.3-2.5× `floor_futex`
/// (measured with 0, 4, 10, 16, 64 and 100 polls: fewer was better in every run, 0-16 within
/// the noise of a loaded machine; 16 keeps a short window for a reply that is already on its
/// way on machines with a cheaper `pause`).
#[cfg(not(loom))]
pub(crate) const SPIN: u32 = 16;
/// Under loom every poll is a scheduling point: keep the model small.
#[cfg(loom)]
pub(crate) const SPIN: u32 = 1;

/// How many times in a row a compare-and-swap loop retries at once against a word that keeps
/// changing under it; past that, [`Retry`] yields between rounds of this many.
pub(crate) const RETRIES: u32 = 64;

/// How long [`Retry`] keeps retrying (in rounds of [`RETRIES`], a yield between them) before
/// it gives up on a word that keeps changing under every compare-and-swap.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const RETRY_FOR: std::time::Duration = std::time::Duration::from_millis(10);

/// The retry budget of one compare-and-swap loop on a word in shared memory. Shared memory is
/// untrusted: a peer that rewrites the word at random, as fast as it can, must not keep a call
/// spinning for ever (or past its deadline). Ordinary contention, even from many cores, does
/// not fail [`RETRIES`] CASes in a row *and* go on failing through yields for [`RETRY_FOR`]:
/// each failure is another party's success, and the yields let them finish. So a loop gives up
/// only on a word that is being rewritten, never under legitimate contention.
#[derive(Default)]
pub(crate) struct Retry {
    failed: u32,
    #[cfg(not(loom))]
    until: Option<Instant>,
}

impl Retry {
    /// Count one failed compare-and-swap; whether to try again.
    pub(crate) fn again(&mut self) -> bool {
        self.failed = self.failed.wrapping_add(1);
        if self.failed % RETRIES != 0 {
            return true;
        }
        // Loom never fails so many CASes in a row.
        #[cfg(loom)]
        return false;
        #[cfg(not(loom))]
        {
            let now = Instant::now();
            if now >= *self.until.get_or_insert(now + RETRY_FOR) {
                return false;
            }
            std::thread::yield_now();
            true
        }
    }
}

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

/// Wake up to `n` sleepers on `word`, if there are any. Call right after changing `word`
/// with a `SeqCst` read-modify-write (the waker's write of the handshake).
pub(crate) fn unpark(word: &AtomicU32, sleepers: &AtomicU32, n: u32) {
    loom_sc_fence();
    // SeqCst: the waker's read of the handshake; pairs with the SeqCst increment in `park`.
    if sleepers.load(Ordering::SeqCst) != 0 {
        futex::wake(word, n);
    }
}

/// [`park`] for a waiter whose waker may skip changing `word` when it sees no sleeper
/// ([`WaitQueue::notify_fenced`](super::WaitQueue::notify_fenced)): announce in `sleepers`,
/// `fence(SeqCst)`, re-check `ready()`; `None` if it holds (without sleeping), else what the
/// park returned (module docs, pair A).
pub(crate) fn park_checked(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
    ready: &mut impl FnMut() -> bool,
) -> Option<Wait> {
    // SeqCst: the waiter's write of both handshakes (module docs).
    sleepers.fetch_add(1, Ordering::SeqCst);
    // SYNC POINT, pair A (waiter side): pairs with the waker's fence in
    // `WaitQueue::notify_fenced`'s caller. Either the waker sees our increment, or our
    // `ready()` below sees the condition the waker made true.
    fence(Ordering::SeqCst);
    let r = if ready() {
        None
    // SeqCst: the waiter's read of the first handshake; pairs with the waker's SeqCst RMW of
    // `word`.
    } else if word.load(Ordering::SeqCst) != expected {
        Some(Wait::Retry)
    } else {
        Some(futex::wait(word, expected, deadline))
    };
    // Relaxed: an over-count only costs a waker a needless system call.
    sleepers.fetch_sub(1, Ordering::Relaxed);
    r
}

#[cfg(all(test, not(loom)))]
mod retry_tests {
    use super::*;

    /// The budget retries every CAS of the first rounds and gives up only once a word has kept
    /// failing for [`RETRY_FOR`], never before: ordinary contention never gets that far.
    #[test]
    fn retry_gives_up_only_after_its_time_budget() {
        let mut r = Retry::default();
        let t0 = Instant::now();
        let mut retried = 0u32;
        while r.again() {
            retried += 1;
        }
        assert!(
            retried >= 2 * RETRIES - 1,
            "gave up after {retried} retries"
        );
        assert!(
            t0.elapsed() >= RETRY_FOR,
            "gave up after {:?}",
            t0.elapsed()
        );
        assert_eq!(retried % RETRIES, RETRIES - 1);
    }
}
