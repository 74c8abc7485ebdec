//! Role slots: which process holds a queue's producer or consumer end, and whether it lives.
//!
//! A slot is one `AtomicU64` *owner word*: the holder's liveness token (`os::liveness`,
//! `SPEC.md` §2.3); 0 means free. One word makes claiming, stealing from a dead holder and
//! releasing single compare-and-swaps, so two processes can never both believe they hold a
//! slot.

use std::time::Duration;

use crate::loom::{fence, AtomicU64, Ordering};
use crate::os::process::Liveness;

/// A producer or consumer role: one owner word (see the module docs).
#[repr(C)]
#[derive(Default)]
pub(crate) struct RoleSlot {
    owner: AtomicU64,
}

/// The owner word of this process: its liveness token (created on first use).
#[cfg(not(loom))]
pub(crate) fn me() -> Result<u64, super::error::AttachError> {
    crate::os::liveness::current().map_err(super::error::AttachError::Liveness)
}

/// Under loom every thread is one process with a fixed token.
#[cfg(loom)]
pub(crate) fn me() -> Result<u64, super::error::AttachError> {
    Ok(1)
}

/// Whether `token` is this process's own (false in a `fork()`ed child for its parent's
/// token): one Relaxed load, for the hot paths.
#[inline]
pub(crate) fn is_mine(token: u64) -> bool {
    #[cfg(not(loom))]
    return crate::os::liveness::is_current(token);
    #[cfg(loom)]
    return token == 1;
}

/// The pid recorded in the liveness file of the process holding an owner word (display
/// only; 0 when free or unknown).
pub(crate) fn pid_of(word: u64) -> u32 {
    #[cfg(not(loom))]
    return crate::os::liveness::record(word).map_or(0, |r| r.pid);
    #[cfg(loom)]
    return word as u32;
}

/// Under loom, the owner word of a killed process (recovery models claim a role with it).
#[cfg(loom)]
pub(crate) const LOOM_DEAD: u64 = 0xdead;

/// Whether the process recorded in an owner word lives (`Unknown` for a free slot).
pub(crate) fn liveness_of(word: u64) -> Liveness {
    if word == 0 {
        return Liveness::Unknown;
    }
    // Loom models threads, not processes: every recorded holder is alive, except the token
    // models use for a killed one.
    #[cfg(loom)]
    return if word == LOOM_DEAD {
        Liveness::Dead
    } else {
        Liveness::Alive
    };
    #[cfg(not(loom))]
    return crate::os::liveness::liveness(word);
}

impl RoleSlot {
    /// A free slot.
    pub(crate) fn new() -> RoleSlot {
        RoleSlot {
            owner: AtomicU64::new(0),
        }
    }

    /// Claim the slot for `me`: take it if free, steal it if its holder is dead. On failure
    /// returns the live holder's owner word (or, if the word kept changing under every
    /// compare-and-swap, [`Retry`](crate::sync::park::Retry): a peer rewriting it at random,
    /// the last word seen: the slot counts as busy).
    pub(crate) fn claim(&self, me: u64) -> Result<(), u64> {
        let mut retry = crate::sync::park::Retry::default();
        loop {
            // Acquire pairs with the Release in `release` (and with the AcqRel claim of the
            // previous holder): the new holder sees every index the previous one published.
            let cur = self.owner.load(Ordering::Acquire);
            if cur != 0 && liveness_of(cur) != Liveness::Dead {
                return Err(cur);
            }
            // AcqRel: Acquire as above; Release so a later stealer sees our claim's context.
            if self
                .owner
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(());
            }
            if !retry.again() {
                return Err(cur);
            }
        }
    }

    /// Free the slot if `me` still holds it.
    pub(crate) fn release(&self, me: u64) {
        // Release pairs with the Acquire load in `claim`: the next holder sees our last
        // published index. Relaxed on failure: someone stole the slot, nothing to publish.
        let _ = self
            .owner
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
    }

    /// The current owner word (0: free).
    #[inline]
    pub(crate) fn holder(&self) -> u64 {
        // Acquire pairs with the claim CAS, so the holder's published state is visible. A
        // Relaxed load and an acquire fence, not an Acquire load: `queue::stat` reads role
        // words through a PROT_READ mapping, where std permits only Relaxed loads.
        let w = self.owner.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        w
    }
}

/// How often a side that only polls (`try_pop` on an empty queue, `try_push` on a full one)
/// checks whether its peer died: at the first poll, then at most every [`CHECK_INTERVAL`],
/// the coarse clock being read every [`Throttle`]'s adaptive number of unsuccessful polls (1
/// to [`MAX_POLLS_PER_CLOCK`]). A liveness query costs three system calls (`SPEC.md` §2.3);
/// this keeps it, and the clock, off a busy poller's hot path.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// The most unsuccessful polls between two clock reads of a [`Throttle`] (a busy poller's).
pub(crate) const MAX_POLLS_PER_CLOCK: u32 = 8;

/// How long a blocking call sleeps, at most, between liveness checks of its peer.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(20);

/// Rate limiter for peer-liveness checks in polling paths: a check is due at the first poll,
/// then once [`CHECK_INTERVAL`] has passed since the last one, by `CLOCK_MONOTONIC_COARSE`
/// (≈ 9 ns a read, resolution one timer tick of 1 to 10 ms). The clock is read every `every`
/// polls: doubled (up to [`MAX_POLLS_PER_CLOCK`]) while reads come sooner than the interval,
/// so a busy poller pays ≈ 1 ns a poll; back to 1 when a read comes two intervals or more
/// after the last check (halved when it comes sooner), so a slow poller (a 10 Hz `try_recv`
/// loop) checks at every poll. After a busy phase, a poller that slows down checks within
/// `MAX_POLLS_PER_CLOCK` of its slow polls, then at every poll. (A fixed 1 024 polls per read
/// of the 40 ns clock let a 10 Hz poller see a dead peer after about 100 s, and one slowing
/// down after a busy phase after ~200 s.)
#[derive(Debug)]
pub(crate) struct Throttle {
    polls: u32,
    every: u32,
    /// The coarse clock at the last check (`None`: no check yet).
    last: Option<u64>,
    /// Under loom, the clock: 1 ms per poll (see [`Throttle::due`]).
    #[cfg(loom)]
    loom_ns: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            polls: 0,
            every: 1,
            last: None,
            #[cfg(loom)]
            loom_ns: 0,
        }
    }
}

impl Throttle {
    /// Whether a (costly) check is due now.
    #[inline]
    pub(crate) fn due(&mut self) -> bool {
        self.polls += 1;
        if self.polls < self.every {
            return false;
        }
        // A loom model must be deterministic: with the real clock, whether a check is due
        // (and so which atomics the poll touches) depended on how fast an exploration ran,
        // and loom aborted ("Is the model fully deterministic?") on a loaded machine. Each
        // poll counts as 1 ms instead.
        #[cfg(loom)]
        {
            self.loom_ns += u64::from(self.polls) * 1_000_000;
        }
        self.polls = 0;
        #[cfg(not(loom))]
        let now = crate::os::clock::coarse_ns();
        #[cfg(loom)]
        let now = self.loom_ns;
        self.clock(now)
    }

    /// The clock read `now` (coarse ns): whether the check is due, and the next `every`.
    #[cold]
    fn clock(&mut self, now: u64) -> bool {
        const INTERVAL: u64 = CHECK_INTERVAL.as_nanos() as u64;
        let Some(last) = self.last else {
            self.last = Some(now);
            return true;
        };
        // Wrapping: a peer's bytes play no part here, but the clock is u64 ns anyway.
        let gap = now.wrapping_sub(last);
        if gap < INTERVAL {
            self.every = (self.every * 2).min(MAX_POLLS_PER_CLOCK);
            return false;
        }
        self.every = if gap >= 2 * INTERVAL {
            1
        } else {
            (self.every / 2).max(1)
        };
        self.last = Some(now);
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A busy poller reads the clock every `MAX_POLLS_PER_CLOCK` polls; a slow one (polls
    /// further apart than the interval) gets a check at every poll; one that slows down after
    /// a busy phase gets its next check within `MAX_POLLS_PER_CLOCK` slow polls, then one at
    /// every poll. (A fixed 1 024 polls per clock read let a 10 Hz poller see a dead peer only
    /// after about 100 s: frames review; the adaptive count up to 1 024 left ~200 s after a
    /// busy phase.)
    #[test]
    fn throttle_adapts_to_the_pace_of_polls() {
        let slow = || std::thread::sleep(2 * CHECK_INTERVAL + Duration::from_millis(5));
        let mut t = Throttle::default();
        assert!(t.due(), "the first poll checks");
        // (A preemption of 10 ms or more mid-loop is a slow poll: it only restarts the ramp.)
        let busy = (0..1_000_000).any(|_| {
            t.due();
            t.every == MAX_POLLS_PER_CLOCK
        });
        assert!(
            busy,
            "a busy poller's count never reached the most: {}",
            t.every
        );
        // Slowing down after the busy phase: due within MAX_POLLS_PER_CLOCK slow polls...
        let first = (1..=MAX_POLLS_PER_CLOCK).find(|_| {
            slow();
            t.due()
        });
        assert!(
            first.is_some(),
            "no check in {MAX_POLLS_PER_CLOCK} slow polls"
        );
        // ...then at every one.
        let due: Vec<bool> = (0..4)
            .map(|_| {
                slow();
                t.due()
            })
            .collect();
        assert_eq!(due, [true; 4]);
        assert_eq!(t.every, 1);
    }

    /// The adaptation itself, with the clock readings given.
    #[test]
    fn throttle_clock_readings() {
        const MS: u64 = 1_000_000;
        let mut t = Throttle::default();
        assert!(t.clock(100 * MS), "first reading: due");
        assert!(!t.clock(101 * MS));
        assert_eq!(t.every, 2);
        assert!(!t.clock(102 * MS));
        assert!(!t.clock(103 * MS));
        assert!(!t.clock(104 * MS));
        assert_eq!(t.every, MAX_POLLS_PER_CLOCK, "doubling stops at the most");
        // One interval later: due, halved.
        assert!(t.clock(110 * MS));
        assert_eq!(t.every, MAX_POLLS_PER_CLOCK / 2);
        // Two intervals or more after the last check: due, back to every poll.
        assert!(t.clock(130 * MS));
        assert_eq!(t.every, 1);
    }

    #[test]
    fn claim_release_and_busy() {
        let s = RoleSlot::new();
        let me = me().unwrap();
        s.claim(me).unwrap();
        assert_eq!(s.claim(me), Err(me));
        s.release(me);
        s.claim(me).unwrap();
    }

    #[test]
    fn dead_holder_is_stolen() {
        let s = RoleSlot::new();
        // A token with no liveness file: a dead process.
        let ghost = 0x3234_5678_9abc;
        assert_eq!(liveness_of(ghost), Liveness::Dead);
        s.claim(ghost).unwrap();
        s.claim(me().unwrap()).unwrap();
        assert_eq!(s.holder(), me().unwrap());
    }
}
