//! The robust mutex under [`Lock`](super::Lock), [`RLock`](super::RLock) and
//! [`Condition`](super::Condition): one 64-bit owner word that names its holder by liveness
//! token (`os::liveness`), a [`WaitQueue`] to sleep on, and a display record. No pointers,
//! no C library state: a peer that writes any bytes into it can make a lock call fail, block
//! until its timeout, or hand out a lock it should not, but never make this process write
//! outside the lock's own words (`SPEC.md` §6.2).
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 4 | `magic` | `"LCK2"` / `"RLK2"`: initialised, and which kind |
//! | 4 | 4 | `depth` | recursion depth (1 for a held `Lock`); holder-written |
//! | 8 | 8 | `owner` | the owner word, below |
//! | 16 | 8 | `queue` | [`WaitQueue`] (`seq`, `sleepers`) that waiters park on |
//! | 24 | 4 | `thread` | the holder's thread number within its process; holder-written |
//! | 28 | 4 | `pid` | the holder's pid in its own pid namespace (display only) |
//!
//! The owner word: bit 0 `WAITERS` (someone may be parked), bit 1 `INCONSISTENT` (the holder
//! took it from a dead owner and has not called `make_consistent`), bits 2..64 the holder's
//! token (0: nobody). `0` is free; `INCONSISTENT` with no token is *not recoverable*.
//!
//! Protocol:
//! - **Lock**: CAS `0 → me` (Acquire). Contended: spin, then set `WAITERS` and park on `queue`
//!   in slices; after a slice that ends without a wake-up, ask whether the holder's token
//!   lives, and if it is dead, CAS the word to `me | INCONSISTENT` and report `OwnerDied`.
//! - **Unlock**: clear the display record, then swap the word to `0` (or to not recoverable if
//!   still inconsistent) with AcqRel; if the old word had `WAITERS`, bump `queue` and wake.
//!   Uncontended, that is one RMW to lock and one to unlock, and no system call.
//!
//! What is not detected any more (the glibc robust mutex did detect it): a *thread* that
//! exits holding the lock while its process lives. The holder is the process; its other
//! threads can still release what the dead thread left only by dropping the guard, which the
//! dead thread took with it, so the lock stays held until the process exits. That is the
//! price of keeping no pointers in shared memory: the kernel's per-thread robust list is the
//! only thing that tracks thread exit, and it works by writing through pointers stored in the
//! mutex.

use std::time::{Duration, Instant};

use super::waiter::WaitQueue;
use crate::loom::futex::Wait;
use crate::loom::{spin_loop, AtomicU32, AtomicU64, Ordering};
use crate::os::deadline;

/// `WAITERS` bit of the owner word.
pub(crate) const WAITERS: u64 = 1;
/// `INCONSISTENT` bit of the owner word.
pub(crate) const INCONSISTENT: u64 = 2;
/// The owner word of a lock that can never be taken again.
pub(crate) const NOT_RECOVERABLE: u64 = INCONSISTENT;

/// How long a waiter sleeps at most before it asks whether the holder still lives.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(20);

/// How many times a contended lock polls before it parks.
const SPIN: u32 = if cfg!(loom) { 1 } else { 100 };

/// Values of [`MutexCore::status_word`] (derived from the owner word, for display).
pub(crate) mod status {
    /// Nobody holds it.
    pub const UNLOCKED: u32 = 0;
    /// Held.
    pub const LOCKED: u32 = 1;
    /// Held by a caller that got `OwnerDied` and has not called `make_consistent` yet.
    pub const INCONSISTENT: u32 = 2;
    /// Released while inconsistent: every later lock fails with `NotRecoverable`.
    pub const NOT_RECOVERABLE: u32 = 3;
    /// Flag bits without a token other than the not-recoverable value: written by no shmkit
    /// code; a lock call treats it as a dead holder.
    pub const INVALID: u32 = 4;
}

/// Who is locking: this process's token, this thread's number, and the pid for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Me {
    pub token: u64,
    pub thread: u32,
    pub pid: u32,
}

/// How long a lock call may block.
#[derive(Clone, Copy)]
pub(crate) enum Block {
    No,
    Until(Option<Instant>),
}

/// How a successful acquisition came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock was free (or recursively ours).
    Ok,
    /// Taken from a dead holder: (its token, its recorded pid, its thread number).
    OwnerDied { token: u64, pid: u32, thread: u32 },
}

/// Why a lock operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MutexError {
    WouldBlock,
    TimedOut,
    NotRecoverable,
    Deadlock,
    NotOwner,
    TooDeep,
    /// No liveness token for this process (an OS error number).
    #[cfg_attr(loom, allow(dead_code))]
    Os(i32),
}

/// The mutex state (module docs). All fields are atomics: valid for any bytes.
#[repr(C)]
pub(crate) struct MutexCore {
    magic: AtomicU32,
    depth: AtomicU32,
    owner: AtomicU64,
    queue: WaitQueue,
    thread: AtomicU32,
    pid: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<MutexCore>() == 32);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<MutexCore>() == 8);

impl MutexCore {
    /// A free mutex with `magic` (for the heap and for models).
    pub(crate) fn new(magic: u32) -> MutexCore {
        MutexCore {
            magic: AtomicU32::new(magic),
            depth: AtomicU32::new(0),
            owner: AtomicU64::new(0),
            queue: WaitQueue::new(),
            thread: AtomicU32::new(0),
            pid: AtomicU32::new(0),
        }
    }

    /// Write a free mutex at `p`.
    ///
    /// # Safety
    ///
    /// `p` is valid for writes of a `MutexCore`, 8-byte aligned, and nobody uses it yet.
    pub(crate) unsafe fn init(p: *mut MutexCore, magic: u32) {
        // SAFETY: per the contract.
        unsafe { p.write(MutexCore::new(magic)) }
    }

    /// Check the magic (the only thing a lock's bytes can be wrong about: every owner word
    /// is handled, see `status_word`).
    pub(crate) fn check(&self, magic: u32) -> Result<(), String> {
        // Relaxed: the segment's READY state (Acquire) already published the initialised
        // bytes; this is a validation snapshot.
        let m = self.magic.load(Ordering::Relaxed);
        if m != magic {
            return Err(format!(
                "lock magic is {m:#010x}, expected {magic:#010x} (not initialised?)"
            ));
        }
        Ok(())
    }

    /// Lock for `me`. `dead(token)` says whether a holder's process is gone.
    pub(crate) fn acquire(
        &self,
        me: Me,
        block: Block,
        recursive: bool,
        dead: &dyn Fn(u64) -> bool,
    ) -> Result<Acquired, MutexError> {
        let mine = me.token << 2;
        // Acquire pairs with the AcqRel swap in `release_held`: we see everything the
        // previous holder wrote under the lock.
        if self
            .owner
            .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.record(me);
            return Ok(Acquired::Ok);
        }
        self.acquire_slow(me, block, recursive, dead)
    }

    #[cold]
    fn acquire_slow(
        &self,
        me: Me,
        block: Block,
        recursive: bool,
        dead: &dyn Fn(u64) -> bool,
    ) -> Result<Acquired, MutexError> {
        let mine = me.token << 2;
        // Once we have parked, others may be parked too: keep WAITERS set when we take the
        // lock, so that our unlock wakes the next one.
        let mut keep_waiters = 0;
        let mut spins = 0;
        // try_lock asks at once; a blocking call first spins, then asks before it parks and
        // after every slice that ended without a wake-up.
        let mut ask = matches!(block, Block::No);
        loop {
            // Relaxed: only a guess for the CASes below, which carry the ordering.
            let cur = self.owner.load(Ordering::Relaxed);
            let token = cur >> 2;
            if cur == 0 {
                // Acquire: as in `acquire`.
                if self
                    .owner
                    .compare_exchange(0, mine | keep_waiters, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.record(me);
                    return Ok(Acquired::Ok);
                }
                continue;
            }
            if cur & !WAITERS == NOT_RECOVERABLE {
                return Err(MutexError::NotRecoverable);
            }
            if token == me.token {
                // Only this thread ever writes its own number into `thread`, and it clears it
                // before it unlocks: reading our own number means we hold it.
                if self.thread.load(Ordering::Relaxed) == me.thread {
                    if !recursive {
                        return Err(MutexError::Deadlock);
                    }
                    let d = self.depth.load(Ordering::Relaxed);
                    if d == u32::MAX {
                        return Err(MutexError::TooDeep);
                    }
                    self.depth.store(d + 1, Ordering::Relaxed);
                    return Ok(Acquired::Ok);
                }
                // Another thread of this process holds it: it is alive; wait.
            } else if token == 0 || (ask && dead(token)) {
                // The holder is gone (or the word names nobody): take it over, keeping
                // WAITERS for whoever sleeps. Acquire: as in `acquire`; the dead holder's
                // writes may be half done, which is what OwnerDied tells the caller.
                let new = mine | INCONSISTENT | (cur & WAITERS);
                if self
                    .owner
                    .compare_exchange(cur, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    let was = Acquired::OwnerDied {
                        token,
                        pid: self.pid.load(Ordering::Relaxed),
                        thread: self.thread.load(Ordering::Relaxed),
                    };
                    self.record(me);
                    return Ok(was);
                }
                continue;
            }
            ask = false;
            let deadline = match block {
                Block::No => return Err(MutexError::WouldBlock),
                Block::Until(d) => d,
            };
            if spins < SPIN {
                spins += 1;
                if spins == SPIN {
                    ask = true; // about to park: ask once first
                }
                spin_loop();
                continue;
            }
            if deadline::passed(deadline) {
                return Err(MutexError::TimedOut);
            }
            // Snapshot before announcing ourselves in the word: an unlock that sees our
            // WAITERS bit bumps `seq` after it, so the park below cannot miss it.
            let seen = self.queue.snapshot();
            if cur & WAITERS == 0 {
                // AcqRel: Release so that the unlocker's AcqRel swap, which reads this
                // value, orders our snapshot before its bump; Acquire for symmetry with the
                // lock CASes.
                if self
                    .owner
                    .compare_exchange(cur, cur | WAITERS, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
            } else if self.owner.load(Ordering::Relaxed) != cur {
                // WAITERS was already set, so no CAS checked that `cur` is still the word:
                // the holder may have released (and bumped `seq`) between our read of `cur`
                // and the snapshot, and nobody would wake us. Read the word again, after the
                // snapshot: if the snapshot saw that bump (Acquire), this load sees the
                // release, or a later word. Relaxed: coherence is all it needs.
                continue;
            }
            keep_waiters = WAITERS;
            #[cfg(not(loom))]
            let until = deadline::slice(deadline, LIVENESS_SLICE);
            // Under loom a timed futex wait returns at once: wait without slices.
            #[cfg(loom)]
            let until = deadline;
            if self.queue.park(seen, until) == Wait::TimedOut {
                ask = true; // a whole slice without a wake-up: is the holder alive?
            }
        }
    }

    fn record(&self, me: Me) {
        // Relaxed: holder-written fields, ordered for the next holder by the owner word's
        // Release/Acquire; other readers take a display snapshot.
        self.thread.store(me.thread, Ordering::Relaxed);
        self.pid.store(me.pid, Ordering::Relaxed);
        self.depth.store(1, Ordering::Relaxed);
    }

    /// Whether `me` holds it.
    pub(crate) fn held_by(&self, me: Me) -> bool {
        let w = self.owner.load(Ordering::Relaxed);
        w >> 2 == me.token && me.token != 0 && self.thread.load(Ordering::Relaxed) == me.thread
    }

    /// Release one level if `me` holds it; refuse (changing nothing) otherwise.
    pub(crate) fn release(&self, me: Me) -> Result<(), MutexError> {
        if !self.held_by(me) {
            return Err(MutexError::NotOwner);
        }
        self.release_held();
        Ok(())
    }

    /// Release one level held by the caller (a guard proves it).
    pub(crate) fn release_held(&self) {
        let depth = self.depth.load(Ordering::Relaxed);
        if depth > 1 {
            self.depth.store(depth - 1, Ordering::Relaxed);
            return;
        }
        self.depth.store(0, Ordering::Relaxed);
        self.thread.store(0, Ordering::Relaxed);
        self.pid.store(0, Ordering::Relaxed);
        // Relaxed: the swap below is the real read; this only picks the next value, and only
        // the holder clears INCONSISTENT.
        let next = if self.owner.load(Ordering::Relaxed) & INCONSISTENT != 0 {
            NOT_RECOVERABLE
        } else {
            0
        };
        // AcqRel: Release pairs with the Acquire CAS of the next holder (it sees our writes);
        // Acquire pairs with a waiter's AcqRel CAS that set WAITERS (its snapshot of `seq`
        // then precedes our bump).
        let old = self.owner.swap(next, Ordering::AcqRel);
        if old & WAITERS != 0 {
            // Not recoverable: everyone must wake to see it.
            self.queue.notify(if next == 0 { 1 } else { u32::MAX });
        }
    }

    /// Clear `INCONSISTENT` (the holder repaired the data).
    pub(crate) fn make_consistent(&self, me: Me) -> Result<(), MutexError> {
        let mut w = self.owner.load(Ordering::Relaxed);
        loop {
            if w >> 2 != me.token || me.token == 0 {
                return Err(MutexError::NotOwner);
            }
            // Relaxed: only our own bit changes; waiters may set WAITERS meanwhile.
            match self.owner.compare_exchange_weak(
                w,
                w & !INCONSISTENT,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(x) => w = x,
            }
        }
    }

    /// The owner word (a snapshot).
    pub(crate) fn owner_word(&self) -> u64 {
        self.owner.load(Ordering::Relaxed)
    }

    /// The holder's recorded pid and thread number (a snapshot; 0 when free).
    pub(crate) fn holder_record(&self) -> (u32, u32) {
        (
            self.pid.load(Ordering::Relaxed),
            self.thread.load(Ordering::Relaxed),
        )
    }

    /// The state, derived from the owner word ([`status`]).
    pub(crate) fn status_word(&self) -> u32 {
        let w = self.owner_word() & !WAITERS;
        match (w >> 2, w & INCONSISTENT) {
            (0, 0) => status::UNLOCKED,
            (0, _) => status::NOT_RECOVERABLE,
            (_, 0) => status::LOCKED,
            (_, _) => status::INCONSISTENT,
        }
    }

    /// Recursion depth (a snapshot).
    pub(crate) fn depth(&self) -> u32 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Overwrite the owner word, as a hostile or buggy peer could.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn set_owner_word_for_test(&self, w: u64) {
        self.owner.store(w, Ordering::Relaxed);
    }

    /// Parked or about-to-park waiters (dead ones included; a snapshot).
    pub(crate) fn sleepers(&self) -> u32 {
        self.queue.sleepers()
    }
}

/// This thread's number within its process: assigned on first use, never reused, never a
/// system call (a thread id from `gettid` would be one, and a cached one goes stale across
/// `fork`).
#[cfg(not(loom))]
pub(crate) fn thread_number() -> u32 {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    thread_local!(static NUMBER: Cell<u32> = const { Cell::new(0) });
    NUMBER.with(|n| {
        if n.get() == 0 {
            // Relaxed: only uniqueness matters. 2^32 threads in one process wrap it to 0,
            // which is skipped.
            let mut v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if v == 0 {
                v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            n.set(v);
        }
        n.get()
    })
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;

    const A: Me = Me {
        token: 5,
        thread: 1,
        pid: 50,
    };
    const B: Me = Me {
        token: 6,
        thread: 1,
        pid: 60,
    };

    /// Two processes contend; each increments a counter under the lock with a non-atomic
    /// read-then-write. Mutual exclusion: no increment is lost. No lost wake-up: loom reports
    /// a deadlock if a parked waiter could sleep forever.
    #[test]
    fn mutual_exclusion_and_no_lost_wakeup() {
        loom::model(|| {
            let m = Arc::new(MutexCore::new(1));
            let n = Arc::new(AtomicUsize::new(0));
            let (m2, n2) = (m.clone(), n.clone());
            let t = loom::thread::spawn(move || {
                m2.acquire(B, Block::Until(None), false, &|_| false)
                    .unwrap();
                let v = n2.load(Ordering::Relaxed);
                n2.store(v + 1, Ordering::Relaxed);
                m2.release_held();
            });
            m.acquire(A, Block::Until(None), false, &|_| false).unwrap();
            let v = n.load(Ordering::Relaxed);
            n.store(v + 1, Ordering::Relaxed);
            m.release_held();
            t.join().unwrap();
            assert_eq!(n.load(Ordering::Relaxed), 2);
            assert_eq!(m.owner_word() & !WAITERS, 0);
        });
    }

    /// A holder that "dies" (its token is reported dead) is taken over exactly once, with
    /// OwnerDied; an unrepaired release makes the lock not recoverable for the other waiter.
    #[test]
    fn dead_holder_is_taken_over_once() {
        loom::model(|| {
            let m = Arc::new(MutexCore::new(1));
            let dead_token = 9;
            m.acquire(
                Me {
                    token: dead_token,
                    thread: 1,
                    pid: 90,
                },
                Block::No,
                false,
                &|_| false,
            )
            .unwrap();
            let m2 = m.clone();
            let t =
                loom::thread::spawn(move || m2.acquire(B, Block::No, false, &|t| t == dead_token));
            let a = m.acquire(A, Block::No, false, &|t| t == dead_token);
            let b = t.join().unwrap();
            let died = [a, b]
                .iter()
                .filter(|r| matches!(r, Ok(Acquired::OwnerDied { token: 9, .. })))
                .count();
            assert_eq!(died, 1, "{a:?} {b:?}");
            assert!(
                matches!(a, Err(MutexError::WouldBlock))
                    || matches!(b, Err(MutexError::WouldBlock))
            );
        });
    }

    /// A waiter parked behind a holder that releases unrepaired wakes and sees
    /// NotRecoverable (no hang).
    #[test]
    fn not_recoverable_wakes_waiters() {
        loom::model(|| {
            let m = Arc::new(MutexCore::new(1));
            let m2 = m.clone();
            // A holds it after taking it from a dead owner.
            m.acquire(
                Me {
                    token: 9,
                    thread: 1,
                    pid: 90,
                },
                Block::No,
                false,
                &|_| false,
            )
            .unwrap();
            assert!(matches!(
                m.acquire(A, Block::No, false, &|t| t == 9),
                Ok(Acquired::OwnerDied { .. })
            ));
            let t =
                loom::thread::spawn(move || m2.acquire(B, Block::Until(None), false, &|_| false));
            m.release_held();
            assert_eq!(t.join().unwrap(), Err(MutexError::NotRecoverable));
        });
    }
}
