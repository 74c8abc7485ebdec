//! The one atomics shim: every atomic used by a shared-memory protocol comes from here, so that
//! under `cfg(loom)` the loom model checker can swap in its own types (as tokio does).
//!
//! Under loom, futex waits and wakes are modelled by [`futex`] with a loom mutex and condition
//! variable, so a lost wake-up shows up as a deadlock the model checker reports.

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::atomic::{fence, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{fence, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// A `SeqCst` fence under loom; nothing otherwise.
///
/// The futex handshake (`sync::park`) is a Dekker pattern: the waiter increments a sleeper
/// count and then reads the futex word, the waker changes the word and then reads the count.
/// shmkit writes both sides with `SeqCst` read-modify-writes followed by `SeqCst` loads. That
/// is correct under Rust's (C++20's) memory model as written: all `SeqCst` operations form one
/// total order, so the two loads cannot both miss the other side's write (the store-buffering
/// outcome is forbidden). On x86-64 these compile to `lock xadd`/`lock cmpxchg` and a plain
/// `mov`: no `mfence`, and no reliance on x86's locked instructions being barriers.
///
/// Loom does not model `SeqCst` accesses (it checks them as `AcqRel`, which would make it
/// report lost wake-ups that cannot happen), but it does model `SeqCst` fences. So under loom
/// the same handshake is checked in its fence formulation, a `fence(SeqCst)` between each
/// side's write and read, which is also correct under the model and strictly stronger than
/// what runs outside loom only in the ways loom cannot see.
#[inline]
pub(crate) fn loom_sc_fence() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}

/// Busy-wait hint for spin loops.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Give the processor to another thread, for waits that may last a system call or more;
/// under loom, a yield to the model's scheduler.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Futex operations on a word of this module's [`AtomicU32`].
///
/// Outside loom this is the kernel futex (shared, not private: keyed by the mapped page, so it
/// works across processes). Under loom it is a model with the same contract: `wait` returns at
/// once if the word is not `expected`, may return spuriously, and a `wake` after a store is
/// never lost.
pub(crate) mod futex {
    use super::AtomicU32;
    use std::time::Instant;

    /// Outcome of [`wait`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Wait {
        /// Woken, spurious wake-up, interrupted, or the word was not `expected`: re-check.
        Retry,
        /// The deadline passed.
        TimedOut,
    }

    /// Sleep while `*word == expected`, until woken or until `deadline`.
    #[cfg(not(loom))]
    pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
        crate::os::futex::wait(word, expected, deadline)
    }

    /// Wake up to `n` sleepers on `word`; returns how many woke.
    #[cfg(not(loom))]
    pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
        crate::os::futex::wake(word, n)
    }

    /// Under loom, with [`EXACT_WAKES`]: the sleepers, in the order they went to sleep
    /// (word address, ticket), and the tickets a wake chose.
    #[cfg(loom)]
    #[derive(Default)]
    pub(crate) struct Parked {
        sleeping: Vec<(usize, u64)>,
        woken: Vec<u64>,
        next: u64,
    }

    #[cfg(loom)]
    loom::lazy_static! {
        static ref PARK: (loom::sync::Mutex<Parked>, loom::sync::Condvar) =
            (loom::sync::Mutex::new(Parked::default()), loom::sync::Condvar::new());
    }

    #[cfg(loom)]
    std::thread_local! {
        // Under loom: whether timed waits sleep until woken (`true`) or time out at once when
        // the word still holds `expected` (`false`, the default). Models set it before
        // `loom::model` to explore one behaviour or the other; both are legal for a futex.
        // (Thread-local: loom runs a model's threads on the test's own OS thread, and other
        // tests run in parallel on theirs.)
        pub(crate) static TIMED_WAITS_SLEEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        // Under loom: whether a wake of `n` wakes exactly `n` sleepers of its word (the
        // oldest; `true`), as the kernel does, or every sleeper of every word (`false`, the
        // default: a spurious wake-up for all but `n`). Models of code that relies on `n`
        // (one sleeper woken per message) set it, so that a wake spent on the wrong sleeper
        // shows as a deadlock.
        pub(crate) static EXACT_WAKES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Model of `FUTEX_WAIT`: compare and sleep under one global lock, as the kernel compares
    /// and enqueues under its hash-bucket lock. The comparison is a Relaxed load: the model
    /// adds no ordering of its own beyond that lock, which the kernel also provides between a
    /// waker that found sleepers and the sleepers it wakes.
    #[cfg(loom)]
    pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wait {
        use super::Ordering::Relaxed;
        let sleeps = deadline.is_none() || TIMED_WAITS_SLEEP.with(|c| c.get());
        let mut guard = PARK.0.lock().unwrap();
        if word.load(Relaxed) != expected {
            return Wait::Retry;
        }
        if !sleeps {
            return Wait::TimedOut;
        }
        if !EXACT_WAKES.with(|c| c.get()) {
            drop(PARK.1.wait(guard).unwrap());
            return Wait::Retry;
        }
        let ticket = guard.next;
        guard.next += 1;
        guard
            .sleeping
            .push((word as *const AtomicU32 as usize, ticket));
        loop {
            guard = PARK.1.wait(guard).unwrap();
            if let Some(i) = guard.woken.iter().position(|&t| t == ticket) {
                guard.woken.swap_remove(i);
                return Wait::Retry;
            }
        }
    }

    /// Model of `FUTEX_WAKE`: take the global lock (so a waiter between its compare and its
    /// sleep cannot miss us) and wake every sleeper on every word (waking more than `n` is a
    /// spurious wake-up, which every caller must tolerate anyway), or with [`EXACT_WAKES`]
    /// the `n` oldest sleepers of `word` only, which checks code that relies on `n`.
    #[cfg(loom)]
    pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
        let mut guard = PARK.0.lock().unwrap();
        let mut woke = 1;
        if EXACT_WAKES.with(|c| c.get()) {
            let addr = word as *const AtomicU32 as usize;
            let p = &mut *guard;
            woke = 0;
            while woke < n as usize {
                let Some(i) = p.sleeping.iter().position(|&(a, _)| a == addr) else {
                    break;
                };
                let (_, t) = p.sleeping.remove(i);
                p.woken.push(t);
                woke += 1;
            }
        }
        PARK.1.notify_all();
        woke
    }

    /// Run `f` as a model in which a futex wake of `n` wakes exactly `n` sleepers (the oldest),
    /// as the kernel does: a wake spent on a sleeper that cannot use it, or too few wakes,
    /// with another sleeper left asleep, shows as a deadlock ([`EXACT_WAKES`]). Two
    /// preemptions, whatever `LOOM_MAX_PREEMPTIONS` says: enough to put two sleepers to sleep
    /// before the wake (the MPMC queue's batch model, with one wake per batch instead of one
    /// per element, deadlocks at 2), while 3 takes minutes per model.
    #[cfg(all(test, loom))]
    pub(crate) fn exact_wakes(f: impl Fn() + Sync + Send + 'static) {
        EXACT_WAKES.with(|c| c.set(true));
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(f);
        EXACT_WAKES.with(|c| c.set(false));
    }
}
