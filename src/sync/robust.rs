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
//! | 4 | 4 | `depth` | recursion depth (1 for a held `Lock`; 0 while leaked); holder-written |
//! | 8 | 8 | `owner` | the owner word, below |
//! | 16 | 8 | `queue` | [`WaitQueue`] (`seq`, `sleepers`) that waiters park on |
//! | 24 | 4 | `thread` | the holder's thread number within its process; holder-written |
//! | 28 | 4 | `pid` | the holder's pid in its own pid namespace (display only) |
//!
//! The owner word: bit 0 `WAITERS` (someone may be parked), bit 1 `INCONSISTENT` (the holder
//! took it from a dead owner and has not called `make_consistent`), bit 2 `RECORDING` (the
//! holder took it from a dead owner and has not yet written its thread number), bits 3..64
//! the holder's token (0: nobody). `0` is free; `INCONSISTENT` with no token is *not
//! recoverable*.
//!
//! Protocol (`SPEC.md` §6.2.2 has every step):
//! - **Lock**: CAS `0 → me` (Acquire). Contended: spin, then set `WAITERS` and park on `queue`
//!   in 20 ms slices, asking whether the holder's token lives at most once per slice; if it
//!   is dead, CAS the word to `me | INCONSISTENT | RECORDING`, write the record, clear
//!   `RECORDING`, and report `OwnerDied`.
//! - **Unlock**: clear `thread`, then CAS the word from `me` to `0` (or to not recoverable if
//!   still inconsistent), only while it names us; if the old word had `WAITERS`, bump `queue`
//!   and wake. Uncontended, that is one RMW to lock and one to unlock, and no system call.
//!
//! What is not detected any more (the glibc robust mutex did detect it): a *thread* that
//! exits holding the lock while its process lives. The holder is the process; its other
//! threads can still release what the dead thread left only by dropping the guard, which the
//! dead thread took with it, so the lock stays held until the process exits. That is the
//! price of keeping no pointers in shared memory: the kernel's per-thread robust list is the
//! only thing that tracks thread exit, and it works by writing through pointers stored in the
//! mutex.

#![cfg_attr(loom, allow(dead_code))] // loom builds use the core only from its models

use std::time::{Duration, Instant};

use super::waiter::WaitQueue;
use crate::loom::{spin_loop, AtomicU32, AtomicU64, Ordering};
use crate::os::deadline;

/// `WAITERS` bit of the owner word.
pub(crate) const WAITERS: u64 = 1;
/// `INCONSISTENT` bit of the owner word.
pub(crate) const INCONSISTENT: u64 = 2;
/// `RECORDING` bit of the owner word: the holder took the lock from a dead owner and has not
/// yet rewritten `thread` (which still names the dead owner's thread).
pub(crate) const RECORDING: u64 = 4;
/// The token's position in the owner word (tokens are at most 61 bits: `os::liveness`).
pub(crate) const SHIFT: u32 = 3;

/// The token in an owner word.
#[inline]
pub(crate) fn token_of(word: u64) -> u64 {
    word >> SHIFT
}
/// The owner word of a lock that can never be taken again.
pub(crate) const NOT_RECOVERABLE: u64 = INCONSISTENT;

/// How long a waiter sleeps at most before it asks whether the holder still lives.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(20);

/// The end of one sleep of a wait that wakes at least every [`LIVENESS_SLICE`] (to ask
/// whether a holder lives, or to make up a wake-up a killed waiter took with it) without
/// overrunning its `deadline`. Under loom, where a timed futex wait returns at once, the
/// deadline itself: the models wait without slices.
#[inline]
pub(crate) fn liveness_slice(deadline: Option<Instant>) -> Option<Instant> {
    #[cfg(not(loom))]
    return deadline::slice(deadline, LIVENESS_SLICE);
    #[cfg(loom)]
    return deadline;
}

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
    /// Flag bits without a token other than the not-recoverable value and the one below:
    /// written by no shmkit code; a lock call treats it as a dead holder.
    pub const INVALID: u32 = 4;
    /// `RECORDING` without a token (and without `INCONSISTENT`): a holder that took the lock
    /// over from an unknown dead owner released it unrepaired (`release_to_dead`); held by
    /// nobody alive, the next taker gets `OwnerDied`.
    pub const DEAD_UNKNOWN: u32 = 5;
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
    pub(crate) magic: AtomicU32,
    pub(crate) depth: AtomicU32,
    pub(crate) owner: AtomicU64,
    pub(crate) queue: WaitQueue,
    pub(crate) thread: AtomicU32,
    pub(crate) pid: AtomicU32,
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
    #[inline]
    pub(crate) fn acquire(
        &self,
        me: Me,
        block: Block,
        recursive: bool,
        dead: &dyn Fn(u64) -> bool,
    ) -> Result<Acquired, MutexError> {
        let mine = me.token << SHIFT;
        // Acquire pairs with the Release CAS in `release_held` (the AcqRel one in
        // `release_slow`): we see everything the previous holder wrote under the lock,
        // including its clearing of `thread`.
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

    /// The uncontended lock, `f`, unlock, without a guard or a `Result` in between: `Err(f)`
    /// (not run, handed back) unless the owner word was 0 at the first look. The same steps as
    /// [`acquire`](Self::acquire)'s first CAS and [`release_held`](Self::release_held) (the
    /// same orderings, the same holder record, `WAITERS` honoured by the release), so for every
    /// other party it is a lock and unlock by `me`; it exists because building a guard and a
    /// `Result` around a few-nanosecond critical section costs as much as the lock itself
    /// (`BENCHMARKS.md`, typed cells). `f` runs while the lock is held; if it panics, the lock
    /// is released on unwinding.
    #[inline(always)]
    pub(crate) fn run_if_free<R, F: FnOnce() -> R>(&self, me: Me, f: F) -> Result<R, F> {
        /// Releases on drop, so that a panic in `f` does not leave the lock held.
        struct Held<'a>(&'a MutexCore, u64);
        impl Drop for Held<'_> {
            #[inline(always)]
            fn drop(&mut self) {
                self.0.release_held(self.1);
            }
        }
        // Acquire: as in `acquire`.
        if self
            .owner
            .compare_exchange(0, me.token << SHIFT, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(f);
        }
        self.record(me);
        let _held = Held(self, me.token);
        Ok(f())
    }

    #[cold]
    fn acquire_slow(
        &self,
        me: Me,
        block: Block,
        recursive: bool,
        dead: &dyn Fn(u64) -> bool,
    ) -> Result<Acquired, MutexError> {
        let mine = me.token << SHIFT;
        // Once we have parked, others may be parked too: keep WAITERS set when we take the
        // lock, so that our unlock wakes the next one.
        let mut keep_waiters = 0;
        let mut spins = 0;
        let mut rounds = 0u32;
        // When we last asked whether the holder lives: at most once per slice, by the clock,
        // so that signals interrupting our sleeps cannot postpone the question forever.
        #[cfg(not(loom))]
        let mut asked_at: Option<std::time::Instant> = None;
        loop {
            rounds = rounds.wrapping_add(1);
            // A peer that keeps rewriting the word could keep us in the CAS-retry paths
            // below: look at the deadline now and then whatever happens.
            if rounds % 64 == 0 {
                match block {
                    Block::No => return Err(MutexError::WouldBlock),
                    Block::Until(d) if deadline::passed(d) => return Err(MutexError::TimedOut),
                    Block::Until(_) => {}
                }
            }
            // Acquire: when the word names this process, the `thread` read below must see
            // the clearing that the previous holder did before its Release (the word we read
            // is in that release's sequence).
            let cur = self.owner.load(Ordering::Acquire);
            let token = token_of(cur);
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
            if token == 0 && cur & INCONSISTENT != 0 {
                return Err(MutexError::NotRecoverable);
            }
            if token == me.token {
                // A thread writes its own number into `thread` only while it holds the lock
                // (after a takeover, only once RECORDING is cleared), and clears it before it
                // unlocks: reading our own number without RECORDING means we hold it.
                if cur & RECORDING == 0 && self.thread.load(Ordering::Relaxed) == me.thread {
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
            } else {
                #[cfg(not(loom))]
                let ask = match block {
                    Block::No => true,
                    Block::Until(_) => {
                        spins >= SPIN && asked_at.map_or(true, |t| t.elapsed() >= LIVENESS_SLICE)
                    }
                };
                #[cfg(loom)]
                let ask = matches!(block, Block::No) || spins >= SPIN;
                if token == 0
                    || (ask && {
                        #[cfg(not(loom))]
                        {
                            asked_at = Some(std::time::Instant::now());
                        }
                        dead(token)
                    })
                {
                    return match self.take_over(cur, me) {
                        Some(was) => Ok(was),
                        None => continue,
                    };
                }
            }
            let deadline = match block {
                Block::No => return Err(MutexError::WouldBlock),
                Block::Until(d) => d,
            };
            if spins < SPIN {
                spins += 1;
                spin_loop();
                continue;
            }
            if deadline::passed(deadline) {
                return Err(MutexError::TimedOut);
            }
            // Snapshot before announcing ourselves in the word: an unlock that sees our
            // WAITERS bit bumps `seq` after it, so the park below cannot miss it. The CAS is
            // made even when WAITERS is already set: it checks that `cur` is still the word,
            // so we never park behind an unlock that happened before our snapshot.
            let seen = self.queue.snapshot();
            // AcqRel: Release so that the unlocker's AcqRel CAS (`release_slow`,
            // `release_to_dead`), which reads this value, orders our snapshot before its bump;
            // Acquire for symmetry with the lock CASes.
            if self
                .owner
                .compare_exchange(cur, cur | WAITERS, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            keep_waiters = WAITERS;
            self.queue.park(seen, liveness_slice(deadline));
        }
    }

    /// Take the lock from the dead holder named in `cur` (or from a word that names nobody).
    /// `None` if the word changed first.
    fn take_over(&self, cur: u64, me: Me) -> Option<Acquired> {
        let mine = me.token << SHIFT;
        // RECORDING until our number is in `thread`: until then `thread` still names the
        // dead holder's thread, which another thread of ours could mistake for its own.
        // Acquire: as in `acquire`; the dead holder's writes may be half done, which is what
        // OwnerDied tells the caller. WAITERS is kept for whoever sleeps.
        let new = mine | INCONSISTENT | RECORDING | (cur & WAITERS);
        self.owner
            .compare_exchange(cur, new, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        let was = Acquired::OwnerDied {
            token: token_of(cur),
            pid: self.pid.load(Ordering::Relaxed),
            thread: self.thread.load(Ordering::Relaxed),
        };
        self.record(me);
        // Release: a thread of ours that sees RECORDING cleared sees our number in `thread`.
        self.owner.fetch_and(!RECORDING, Ordering::Release);
        Some(was)
    }

    #[inline]
    fn record(&self, me: Me) {
        // Relaxed: holder-written fields, ordered for the next holder by the owner word's
        // Release/Acquire; other readers take a display snapshot.
        self.thread.store(me.thread, Ordering::Relaxed);
        self.pid.store(me.pid, Ordering::Relaxed);
        self.depth.store(1, Ordering::Relaxed);
    }

    /// Whether `me` holds it.
    #[inline]
    pub(crate) fn held_by(&self, me: Me) -> bool {
        // Acquire: as in `acquire_slow`, so that a `thread` naming us is not a stale value.
        let w = self.owner.load(Ordering::Acquire);
        me.token != 0
            && token_of(w) == me.token
            && w & RECORDING == 0
            && self.thread.load(Ordering::Relaxed) == me.thread
    }

    /// Release one level if `me` holds it; refuse (changing nothing) otherwise.
    pub(crate) fn release(&self, me: Me) -> Result<(), MutexError> {
        if !self.held_by(me) {
            return Err(MutexError::NotOwner);
        }
        self.release_held(me.token);
        Ok(())
    }

    /// Release one level held by `token` (a guard proves it). If the word no longer names
    /// `token` (this process was judged dead and another took the lock over: `SPEC.md` §2.3's
    /// failure cases), nothing is changed.
    #[inline]
    pub(crate) fn release_held(&self, token: u64) {
        let mine = token << SHIFT;
        // Relaxed: our own word (only we clear our token); a check before touching the record.
        if token_of(self.owner.load(Ordering::Relaxed)) != token {
            return;
        }
        let depth = self.depth.load(Ordering::Relaxed);
        if depth > 1 {
            self.depth.store(depth - 1, Ordering::Relaxed);
            return;
        }
        // Clear our thread number before the owner word: a thread that reads its own number
        // must hold the lock (`acquire_slow`). `depth` and `pid` mean something only while
        // the owner word names a holder, and the next holder rewrites them.
        self.thread.store(0, Ordering::Relaxed);
        // Fast path: no waiters, consistent. Release pairs with the Acquire loads and CASes of
        // the next holder and of other threads of this process.
        if self
            .owner
            .compare_exchange(mine, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.release_slow(token);
    }

    /// Release a lock held by `token`, taken over from the dead holder `dead` (its token and
    /// pid) and not repaired, back to that holder: the word names `dead` again (`WAITERS`
    /// kept, `INCONSISTENT` clear), so the next acquirer finds a dead holder and takes the
    /// lock over with `OwnerDied`, as we did: for a caller that only read the data and leaves
    /// the repair to one that can make it (`SPEC.md` §6.2.2). As
    /// [`release_held`](Self::release_held), nothing changes if the word no longer names
    /// `token`, and a word that keeps changing under every compare-and-swap is left to the
    /// peer rewriting it.
    pub(crate) fn release_to_dead(&self, token: u64, dead: (u64, u32)) {
        let (dead_token, dead_pid) = dead;
        // Relaxed: our own word (only we clear our token); a check before touching the record.
        let mut cur = self.owner.load(Ordering::Relaxed);
        if token_of(cur) != token {
            return;
        }
        // The word to leave: the dead holder's token; for an unknown one (the takeover found a
        // word with no token, or the hold was leaked and adopted, which forgets it), a word
        // with no token and `RECORDING`, which every taker treats as a dead holder (§6.2.1)
        // and never as free or not recoverable. Never our own token: the lock must go.
        let dead_word = if dead_token == 0 || dead_token == token {
            RECORDING
        } else {
            dead_token << SHIFT
        };
        // The record before the word, as `release_held` does: our thread number cleared (a
        // thread of ours that read it would think it holds the lock), the dead holder's pid
        // back for the next takeover's report (display only).
        self.thread.store(0, Ordering::Relaxed);
        self.pid.store(dead_pid, Ordering::Relaxed);
        let mut retry = super::park::Retry::default();
        while retry.again() {
            if token_of(cur) != token {
                return; // taken over: not ours to release
            }
            let next = dead_word | (cur & WAITERS);
            // AcqRel: as in `release_slow` (the next holder's Acquire CAS of the dead word;
            // a waiter's AcqRel CAS that set WAITERS).
            match self
                .owner
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(old) => {
                    if old & WAITERS != 0 {
                        // One waiter: it finds the dead holder and takes the lock over.
                        self.queue.notify(1);
                    }
                    return;
                }
                Err(x) => cur = x,
            }
        }
    }

    /// Once the word has kept changing under every compare-and-swap
    /// ([`Retry`](super::park::Retry): only a peer rewriting it at random does that) it gives
    /// up: the word is the peer's, not a lock state we can still release.
    #[cold]
    fn release_slow(&self, token: u64) {
        let mut cur = self.owner.load(Ordering::Relaxed);
        let mut retry = super::park::Retry::default();
        while retry.again() {
            if token_of(cur) != token {
                return; // taken over: not ours to release
            }
            let next = if cur & INCONSISTENT != 0 {
                NOT_RECOVERABLE
            } else {
                0
            };
            // AcqRel: Release pairs with the Acquire CAS of the next holder (it sees our
            // writes); Acquire pairs with a waiter's AcqRel CAS that set WAITERS (its
            // snapshot of `seq` then precedes our bump).
            match self
                .owner
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(old) => {
                    if old & WAITERS != 0 {
                        // Not recoverable: everyone must wake to see it.
                        self.queue.notify(if next == 0 { 1 } else { u32::MAX });
                    }
                    return;
                }
                Err(x) => cur = x,
            }
        }
    }

    /// Clear `INCONSISTENT` (the holder repaired the data). `WouldBlock` if the word kept
    /// changing under every compare-and-swap ([`Retry`](super::park::Retry): a peer rewriting
    /// it; try again).
    pub(crate) fn make_consistent(&self, me: Me) -> Result<(), MutexError> {
        let mut w = self.owner.load(Ordering::Relaxed);
        let mut retry = super::park::Retry::default();
        while retry.again() {
            if token_of(w) != me.token || me.token == 0 {
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
        Err(MutexError::WouldBlock)
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
        let w = self.owner_word();
        match (token_of(w), w & INCONSISTENT) {
            (0, 0) if w == 0 => status::UNLOCKED,
            (0, 0) if w & !WAITERS == RECORDING => status::DEAD_UNKNOWN,
            (0, 0) => status::INVALID,
            (0, _) => status::NOT_RECOVERABLE,
            (_, 0) => status::LOCKED,
            (_, _) => status::INCONSISTENT,
        }
    }

    /// Recursion depth (a snapshot).
    pub(crate) fn depth(&self) -> u32 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Non-recursive lock, called by its holder: mark it held without a guard (`leaked`:
    /// `depth = 0`, [`LockGuard::leak`](super::LockGuard::leak)) or claim that mark back for a
    /// new guard (`depth = 1`, [`LockState::adopt`](super::LockState::adopt)). Returns whether
    /// the mark was in the other state, i.e. whether the change was allowed: a guard is made
    /// only from a leaked lock, so that one hold never has two guards. Relaxed: `depth` is
    /// holder-written (SPEC §6.2), and only the holding thread calls this.
    pub(crate) fn set_leaked(&self, leaked: bool) -> bool {
        let (from, to) = if leaked { (1, 0) } else { (0, 1) };
        if self.depth.load(Ordering::Relaxed) != from {
            return false;
        }
        self.depth.store(to, Ordering::Relaxed);
        true
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
#[inline]
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
    /// read-then-write (one of them through `run_if_free` when it finds the lock free). Mutual exclusion: no increment is lost. No lost wake-up: loom reports
    /// a deadlock if a parked waiter could sleep forever.
    #[test]
    fn mutual_exclusion_and_no_lost_wakeup() {
        loom::model(|| {
            let m = Arc::new(MutexCore::new(1));
            let n = Arc::new(AtomicUsize::new(0));
            let (m2, n2) = (m.clone(), n.clone());
            let t = loom::thread::spawn(move || {
                let incr = || {
                    let v = n2.load(Ordering::Relaxed);
                    n2.store(v + 1, Ordering::Relaxed);
                };
                // The guard-free fast path when the lock is free, the full path otherwise.
                if m2.run_if_free(B, incr).is_err() {
                    m2.acquire(B, Block::Until(None), false, &|_| false)
                        .unwrap();
                    let v = n2.load(Ordering::Relaxed);
                    n2.store(v + 1, Ordering::Relaxed);
                    m2.release_held(B.token);
                }
            });
            m.acquire(A, Block::Until(None), false, &|_| false).unwrap();
            let v = n.load(Ordering::Relaxed);
            n.store(v + 1, Ordering::Relaxed);
            m.release_held(A.token);
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
            m.release_held(A.token);
            assert_eq!(t.join().unwrap(), Err(MutexError::NotRecoverable));
        });
    }

    /// A holder that took the lock over from a dead owner and releases it unrepaired back to
    /// that owner (`release_to_dead`): a waiter parked meanwhile wakes and takes it over with
    /// `OwnerDied` itself (no hang, not `NotRecoverable`), and sees the dead owner's pid.
    #[test]
    fn release_to_dead_hands_the_repair_on() {
        loom::model(|| {
            let m = Arc::new(MutexCore::new(1));
            let m2 = m.clone();
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
                loom::thread::spawn(move || m2.acquire(B, Block::Until(None), false, &|t| t == 9));
            m.release_to_dead(A.token, (9, 90));
            match t.join().unwrap() {
                Ok(Acquired::OwnerDied {
                    token: 9, pid: 90, ..
                }) => {}
                other => panic!("{other:?}"),
            }
            assert_eq!(token_of(m.owner_word()), B.token);
        });
    }

    /// Review finding: a dead holder's `thread` number may equal a live thread's number in
    /// another process. Two threads of one process race to take the lock over from it (one
    /// of them with the dead holder's thread number): never two holders at once, even for an
    /// RLock (which would count a "recursive" entry).
    #[test]
    fn takeover_does_not_confuse_a_stale_thread_number() {
        loom::model(|| {
            let m = Arc::new(MutexCore::new(1));
            let inside = Arc::new(AtomicUsize::new(0));
            let dead = Me {
                token: 9,
                thread: 1,
                pid: 90,
            };
            m.acquire(dead, Block::No, true, &|_| false).unwrap();
            let a = Me {
                token: 5,
                thread: 2,
                pid: 50,
            };
            let b = Me {
                token: 5,
                thread: 1,
                pid: 50,
            };
            let run = |me: Me, m: Arc<MutexCore>, inside: Arc<AtomicUsize>| {
                if m.acquire(me, Block::No, true, &|t| t == 9).is_ok() {
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    m.release_held(me.token);
                }
            };
            let (m2, i2) = (m.clone(), inside.clone());
            let t = loom::thread::spawn(move || run(a, m2, i2));
            run(b, m.clone(), inside.clone());
            t.join().unwrap();
        });
    }

    /// Review finding: a thread must not take another process's stale `thread` record for
    /// its own after a normal release (the Acquire load of the owner word orders it).
    #[test]
    fn a_released_holders_thread_number_is_not_inherited() {
        loom::model(|| {
            let m = Arc::new(MutexCore::new(1));
            let x = Me {
                token: 9,
                thread: 1,
                pid: 90,
            };
            let a = Me {
                token: 5,
                thread: 2,
                pid: 50,
            };
            let b = Me {
                token: 5,
                thread: 1,
                pid: 50,
            };
            let inside = Arc::new(AtomicUsize::new(0));
            m.acquire(x, Block::No, true, &|_| false).unwrap();
            let (m2, i2) = (m.clone(), inside.clone());
            let tx = loom::thread::spawn(move || m2.release_held(x.token));
            let (m3, i3) = (m.clone(), inside.clone());
            let ta = loom::thread::spawn(move || {
                if m3.acquire(a, Block::No, true, &|_| false).is_ok() {
                    assert_eq!(i3.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    i3.fetch_sub(1, Ordering::SeqCst);
                    m3.release_held(a.token);
                }
            });
            if m.acquire(b, Block::No, true, &|_| false).is_ok() {
                assert_eq!(i2.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                i2.fetch_sub(1, Ordering::SeqCst);
                m.release_held(b.token);
            }
            tx.join().unwrap();
            ta.join().unwrap();
        });
    }

    /// Two waiters parked on a held lock, futex wakes exact (a wake wakes exactly the oldest
    /// sleeper, as the kernel's): each release hands the lock on, and no waiter is left
    /// asleep (a lost or misdirected wake-up is a loom deadlock). Added after a review found
    /// that models run with loom's default futex, where any wake wakes every sleeper, cannot
    /// see a wake sent to the wrong sleeper.
    #[test]
    fn loom_exact_handover_to_two_parked_waiters() {
        crate::loom::futex::exact_wakes(|| {
            let m = Arc::new(MutexCore::new(1));
            m.acquire(A, Block::No, false, &|_| false).unwrap();
            let ts: Vec<_> = [
                B,
                Me {
                    token: 7,
                    thread: 1,
                    pid: 70,
                },
            ]
            .into_iter()
            .map(|me| {
                let m = m.clone();
                loom::thread::spawn(move || {
                    m.acquire(me, Block::Until(None), false, &|_| false)
                        .unwrap();
                    m.release_held(me.token);
                })
            })
            .collect();
            while m.sleepers() < 2 {
                loom::thread::yield_now();
            }
            m.release_held(A.token);
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(m.owner_word() & !WAITERS, 0);
        });
    }
}
