//! [`Barrier`]: Python's `threading.Barrier` on one 64-bit state word and a futex wait queue
//! (`SPEC.md` §6.7).

use std::fmt;
use std::time::{Duration, Instant};

use super::park::{Retry, RETRIES};
use super::waiter::WaitQueue;
use crate::loom::{AtomicU32, AtomicU64, Ordering};

/// The most parties a barrier can have (the count field is 24 bits).
pub const MAX_PARTIES: u32 = (1 << 24) - 1;

const COUNT_MASK: u64 = (1 << 24) - 1;
const BROKEN: u64 = 1 << 24;
const GEN_SHIFT: u32 = 32;
const HIST_SHIFT: u32 = 48;
/// Generations whose outcome the history bits remember.
const HISTORY: u16 = 16;

fn count(w: u64) -> u32 {
    (w & COUNT_MASK) as u32
}
fn broken(w: u64) -> bool {
    w & BROKEN != 0
}
fn generation(w: u64) -> u16 {
    (w >> GEN_SHIFT) as u16
}
fn history(w: u64) -> u16 {
    (w >> HIST_SHIFT) as u16
}

/// The word after generation `generation(w)` ends: `completed` (all parties arrived) or not
/// (reset); count 0, not broken, generation + 1, and the outcome recorded in history bit
/// `generation % 16`.
fn advance(w: u64, completed: bool) -> u64 {
    let g = generation(w);
    let bit = 1u16 << (g % HISTORY);
    let hist = if completed {
        history(w) | bit
    } else {
        history(w) & !bit
    };
    (u64::from(hist) << HIST_SHIFT) | (u64::from(g.wrapping_add(1)) << GEN_SHIFT)
}

/// How generation `g` ended, seen from the later word `w`: `Some(true)` completed,
/// `Some(false)` reset, `None` if more than 16 generations passed (the history no longer
/// knows; treated as broken).
fn outcome(w: u64, g: u16) -> Option<bool> {
    let passed = generation(w).wrapping_sub(g);
    (passed <= HISTORY).then(|| history(w) & (1 << (g % HISTORY)) != 0)
}

/// How a sleep at the barrier ended.
#[derive(Clone, Copy)]
enum Slept {
    /// The generation ended (or broke).
    Ended,
    TimedOut,
    Interrupted,
}

/// Why [`BarrierState::wait`] (or its `_timeout`/`_deadline` form) did not pass the
/// barrier. `'static`; converts into [`crate::Error`] with `?` (`Timeout` becomes
/// [`Error::Timeout`](crate::Error::Timeout), the rest [`Error::Barrier`](crate::Error::Barrier)).
///
/// ```
/// use shmkit::sync::{BarrierError, BarrierState};
/// let b = BarrierState::new(2)?;
/// b.abort();
/// let e: shmkit::Error = b.wait().unwrap_err().into();
/// assert!(matches!(e, shmkit::Error::Barrier(BarrierError::Broken)));
/// # Ok::<(), BarrierError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarrierError {
    /// The barrier is broken (a party timed out, [`abort`](BarrierState::abort) was called,
    /// or [`reset`](BarrierState::reset) woke us): Python's `BrokenBarrierError`.
    Broken,
    /// This call's timeout passed; as in Python it broke the barrier, so every other waiter
    /// gets [`Broken`](BarrierError::Broken). (Python raises `BrokenBarrierError` here too.)
    Timeout,
    /// The shared state holds impossible values.
    Corrupt(String),
    /// A barrier was asked for with this many parties (not 1..=[`MAX_PARTIES`]): a bad
    /// argument, not a shared-memory problem.
    Parties(u32),
}

impl BarrierError {
    /// Whether this is Python's `BrokenBarrierError` (`Broken` or `Timeout`).
    pub fn is_broken(&self) -> bool {
        matches!(self, BarrierError::Broken | BarrierError::Timeout)
    }
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("the barrier is broken (reset it to use it again)"),
            BarrierError::Timeout => f.write_str("timed out at the barrier, which is now broken"),
            BarrierError::Corrupt(what) => write!(f, "barrier state is corrupt: {what}"),
            BarrierError::Parties(n) => {
                write!(f, "a barrier needs 1..={MAX_PARTIES} parties, not {n}")
            }
        }
    }
}

impl std::error::Error for BarrierError {}

/// The state of a barrier for `parties` processes: `#[repr(C)]`, 24 bytes, placeable inside
/// any shmkit object.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 8 | `word` | bits 0..24 arrived count (`parties`: an action runs), bit 24 broken, 32..48 generation, 48..64 outcome history |
/// | 8 | 4 | `parties` | 1..=[`MAX_PARTIES`], fixed at init |
/// | 12 | 4 | reserved | 0 |
/// | 16 | 8 | `queue` | [`WaitQueue`] (`seq`, `sleepers`) the waiters park on |
///
/// Each arrival is one CAS on `word`; the last arrival ends the generation (count 0,
/// generation + 1, "completed" in the history bit of the old generation) and wakes everyone.
/// A waiter whose timeout passes breaks the barrier, as in Python. [`reset`](Self::reset)
/// ends the generation as "not completed", so its waiters get
/// [`BarrierError::Broken`]. A party killed while waiting stays counted in its generation:
/// the others pass that one, then time out in the next (which it never reaches) and the
/// barrier is broken. With [`wait_with`](Self::wait_with) the last arrival fills the count
/// (`parties`), runs its action, and only then ends the generation; killed in the action, it
/// leaves the generation full, and the others' timeouts break it (`reset` repairs it).
///
/// ```
/// use shmkit::sync::BarrierState;
/// use std::time::Duration;
/// let b = BarrierState::new(2)?;
/// let t = Duration::from_secs(10);
/// let (x, y) = std::thread::scope(|s| {
///     let other = s.spawn(|| b.wait_timeout(t).unwrap());
///     (b.wait_timeout(t).unwrap(), other.join().unwrap())
/// });
/// assert_eq!(x + y, 1); // arrival indices 0 and 1
/// # Ok::<(), shmkit::sync::BarrierError>(())
/// ```
#[repr(C)]
pub struct BarrierState {
    pub(crate) word: AtomicU64,
    pub(crate) parties: AtomicU32,
    pub(crate) reserved: AtomicU32,
    pub(crate) queue: WaitQueue,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BarrierState>() == 24);

impl fmt::Debug for BarrierState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierState")
            .field("parties", &self.parties.load(Ordering::Relaxed))
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .field("generation", &self.generation())
            .finish()
    }
}

impl BarrierState {
    /// A barrier for `parties` (1..=[`MAX_PARTIES`]).
    pub fn new(parties: u32) -> Result<BarrierState, BarrierError> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(BarrierError::Parties(parties));
        }
        Ok(BarrierState {
            word: AtomicU64::new(0),
            parties: AtomicU32::new(parties),
            reserved: AtomicU32::new(0),
            queue: WaitQueue::new(),
        })
    }

    /// Initialise a barrier in place.
    ///
    /// # Safety
    ///
    /// `at` must be valid for writes of 24 bytes, 8-byte aligned, and not in use by anyone.
    pub unsafe fn init(at: *mut BarrierState, parties: u32) -> Result<(), BarrierError> {
        let s = Self::new(parties)?;
        // SAFETY: per the contract.
        unsafe { at.write(s) };
        Ok(())
    }

    /// View a barrier in memory after checking its words.
    ///
    /// # Safety
    ///
    /// `at` must be 8-byte aligned and valid for reads and writes of 24 bytes for `'a`.
    ///
    /// And while the state is in use, this process must not access any 8-byte word that
    /// overlaps it with another access size, by any other means (`Segment::read_at`,
    /// `write_at`, `load_u64`, `atomic_u64`, plain reads and writes through the mapping): a
    /// racing access of another size to the same bytes is undefined behaviour in Rust's memory
    /// model (`SPEC.md` §1, one access size per word). A state at an 8-aligned offset, its
    /// size rounded up to 8, in bytes nothing else of this process reads or writes, meets this.
    pub unsafe fn from_ptr<'a>(at: *const BarrierState) -> Result<&'a BarrierState, BarrierError> {
        // SAFETY: per the contract; all fields are atomics.
        let s = unsafe { &*at };
        s.check().map_err(BarrierError::Corrupt)?;
        Ok(s)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        self.parties_checked().map(drop)
    }

    fn parties_checked(&self) -> Result<u32, String> {
        // Relaxed: `parties` never changes after init (published by the segment's READY).
        let p = self.parties.load(Ordering::Relaxed);
        if p == 0 || p > MAX_PARTIES {
            return Err(format!("parties is {p}, expected 1..={MAX_PARTIES}"));
        }
        let w = self.word.load(Ordering::Relaxed); // validation snapshot
                                                   // count == p: the last arrival is running its action (`wait_with`).
        if count(w) > p {
            return Err(format!("{} parties arrived at a barrier for {p}", count(w)));
        }
        Ok(p)
    }

    /// Wait until all parties have arrived, with no time limit. Returns the arrival index,
    /// `0..parties` (the first to arrive gets 0, the last `parties - 1`, as in Python). Writes
    /// made by every party before its `wait` are visible to every party after it returns `Ok`.
    /// A broken barrier fails at once with [`BarrierError::Broken`] until
    /// [`reset`](Self::reset). There is no `try_` form: arriving is the operation.
    ///
    /// Across processes prefer [`wait_timeout`](Self::wait_timeout): a party that died before
    /// arriving leaves the others waiting forever.
    ///
    /// ```
    /// # let b = shmkit::sync::BarrierState::new(1)?;
    /// assert_eq!(b.wait()?, 0); // one party: passes at once
    /// # Ok::<(), shmkit::sync::BarrierError>(())
    /// ```
    pub fn wait(&self) -> Result<u32, BarrierError> {
        self.wait_within(None)
    }

    /// [`wait`](Self::wait) for at most `timeout` (one too large to represent: no limit). A
    /// timeout breaks the barrier, as in Python: this call gets [`BarrierError::Timeout`],
    /// the others `Broken`.
    ///
    /// ```
    /// use shmkit::sync::{BarrierError, BarrierState};
    /// use std::time::Duration;
    /// let b = BarrierState::new(2)?;
    /// assert_eq!(b.wait_timeout(Duration::from_millis(1)), Err(BarrierError::Timeout));
    /// assert!(b.is_broken());
    /// # Ok::<(), BarrierError>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierError> {
        self.wait_within(crate::os::deadline::after(Some(timeout)))
    }

    /// [`wait`](Self::wait) until `deadline` (`CLOCK_MONOTONIC`); as
    /// [`wait_timeout`](Self::wait_timeout) when it passes. A deadline in the past still
    /// arrives (and passes if this is the last party), then times out without sleeping.
    ///
    /// ```
    /// use shmkit::sync::BarrierState;
    /// use std::time::Instant;
    /// let b = BarrierState::new(1)?;
    /// assert_eq!(b.wait_deadline(Instant::now()), Ok(0)); // the last party never waits
    /// # Ok::<(), shmkit::sync::BarrierError>(())
    /// ```
    pub fn wait_deadline(&self, deadline: Instant) -> Result<u32, BarrierError> {
        self.wait_within(Some(deadline))
    }

    /// [`wait_deadline`](Self::wait_deadline) (`None`: no limit) for callers whose waits
    /// must answer something else too (a binding's Ctrl-C: Python's signal check): while it
    /// sleeps it calls `interrupted()` at least every 50 ms, and when that returns true it
    /// leaves, breaking the barrier as Python does when a waiting thread raises (the others
    /// get [`Broken`](BarrierError::Broken)), and returns `Broken` itself.
    ///
    /// ```
    /// use shmkit::sync::{BarrierError, BarrierState};
    /// let b = BarrierState::new(2)?;
    /// assert_eq!(b.wait_interruptible(None, || true), Err(BarrierError::Broken));
    /// assert!(b.is_broken());
    /// # Ok::<(), BarrierError>(())
    /// ```
    pub fn wait_interruptible(
        &self,
        deadline: Option<Instant>,
        mut interrupted: impl FnMut() -> bool,
    ) -> Result<u32, BarrierError> {
        self.wait_within_checking(deadline, Some(&mut interrupted))
    }

    /// [`wait`](Self::wait) where the last party to arrive runs `action` before any party
    /// is released (Python's `Barrier(parties, action)`; each process passes its own, and it
    /// runs in whichever process arrives last). Every party's writes before its `wait_with`
    /// are visible to the action, and the action's writes to every party after it returns
    /// `Ok`. If the action returns `Err(e)` or panics, the barrier is broken first: the
    /// other parties get [`BarrierError::Broken`], and this call returns `Err(e)` (or the
    /// panic goes on unwinding), as `threading.Barrier` re-raises the action's exception. A
    /// party that times out, an [`abort`](Self::abort) or a [`reset`](Self::reset) while the
    /// action runs breaks (or ends) the generation: the action has run, but this call gets
    /// `Broken`. A process killed while running the action leaves the generation full and
    /// never opened: the other parties time out and the barrier is broken until `reset`.
    /// A party that does not arrive last does not call its `action`.
    ///
    /// ```
    /// use shmkit::sync::{BarrierError, BarrierState};
    /// let b = BarrierState::new(1)?;
    /// let mut ran = false;
    /// assert_eq!(b.wait_with(|| { ran = true; Ok::<(), BarrierError>(()) }), Ok(0));
    /// assert!(ran);
    /// // A failing action breaks the barrier; its error is this call's.
    /// let no = || Err(BarrierError::Corrupt("the action failed".into()));
    /// assert_eq!(b.wait_with(no), Err(BarrierError::Corrupt("the action failed".into())));
    /// assert!(b.is_broken());
    /// # Ok::<(), BarrierError>(())
    /// ```
    ///
    /// `E` must hold a [`BarrierError`] too (`From`): `BarrierError` itself,
    /// [`crate::Error`], or the caller's own error type.
    pub fn wait_with<E: From<BarrierError>>(
        &self,
        action: impl FnOnce() -> Result<(), E>,
    ) -> Result<u32, E> {
        self.arrive(None, None, Some(action))
    }

    /// [`wait_with`](Self::wait_with) for at most `timeout` (see
    /// [`wait_timeout`](Self::wait_timeout); the action itself is not cut short).
    pub fn wait_with_timeout<E: From<BarrierError>>(
        &self,
        action: impl FnOnce() -> Result<(), E>,
        timeout: Duration,
    ) -> Result<u32, E> {
        self.arrive(
            crate::os::deadline::after(Some(timeout)),
            None,
            Some(action),
        )
    }

    /// [`wait_with`](Self::wait_with) until `deadline` (see
    /// [`wait_deadline`](Self::wait_deadline)).
    pub fn wait_with_deadline<E: From<BarrierError>>(
        &self,
        action: impl FnOnce() -> Result<(), E>,
        deadline: Instant,
    ) -> Result<u32, E> {
        self.arrive(Some(deadline), None, Some(action))
    }

    /// [`wait_with`](Self::wait_with) as [`wait_interruptible`](Self::wait_interruptible)
    /// waits (`interrupted` is asked only while sleeping, never while the action runs).
    pub fn wait_with_interruptible<E: From<BarrierError>>(
        &self,
        action: impl FnOnce() -> Result<(), E>,
        deadline: Option<Instant>,
        mut interrupted: impl FnMut() -> bool,
    ) -> Result<u32, E> {
        self.arrive(deadline, Some(&mut interrupted), Some(action))
    }

    /// The wait behind every form (`None`: no limit).
    fn wait_within(&self, deadline: Option<Instant>) -> Result<u32, BarrierError> {
        self.wait_within_checking(deadline, None)
    }

    /// The wait without an action.
    fn wait_within_checking(
        &self,
        deadline: Option<Instant>,
        interrupted: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<u32, BarrierError> {
        self.arrive(
            deadline,
            interrupted,
            None::<fn() -> Result<(), BarrierError>>,
        )
    }

    /// How long [`wait_interruptible`](Self::wait_interruptible) sleeps between checks.
    const INTERRUPT_SLICE: Duration = Duration::from_millis(50);

    /// Sleep until generation `g` ends (a new generation, or broken), the deadline passes,
    /// or `interrupted` (asked between sleeps of at most `INTERRUPT_SLICE`) says so.
    fn sleep_through(
        &self,
        g: u16,
        deadline: Option<Instant>,
        interrupted: &mut Option<&mut dyn FnMut() -> bool>,
    ) -> Slept {
        let ended = |x: u64| generation(x) != g || broken(x);
        loop {
            let until = match interrupted {
                Some(_) => crate::os::deadline::slice(deadline, Self::INTERRUPT_SLICE),
                None => deadline,
            };
            // Acquire: pairs with the AcqRel CAS that ended the generation or broke it.
            let done = self
                .queue
                .wait_until_within(|| ended(self.word.load(Ordering::Acquire)), until)
                .is_ok();
            if done {
                return Slept::Ended;
            }
            if crate::os::deadline::passed(deadline) {
                return Slept::TimedOut;
            }
            if let Some(f) = interrupted.as_mut() {
                if f() {
                    return Slept::Interrupted;
                }
            }
        }
    }

    /// `word.fetch_update(AcqRel, Acquire, f)`, but within a [`Retry`] budget: a word that
    /// keeps changing under every CAS (only a peer writing it at random does that) is left as
    /// it is, and `Err` with the last word seen, as if `f` had refused it.
    fn update_word(&self, mut f: impl FnMut(u64) -> Option<u64>) -> Result<u64, u64> {
        // Acquire: as the CAS's failure ordering below (the callers' partners).
        let mut w = self.word.load(Ordering::Acquire);
        let mut retry = Retry::default();
        loop {
            let Some(new) = f(w) else { return Err(w) };
            // AcqRel/Acquire: as the callers say.
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(old) => return Ok(old),
                Err(x) => w = x,
            }
            if !retry.again() {
                return Err(w);
            }
        }
    }

    /// Break generation `g` if it is still the current one and not broken: for a party that
    /// gives up (timeout, interrupt) or whose action failed. `Ok` if this call broke it, else
    /// the word that made it refuse (a later generation, or broken already), or the last word
    /// seen if [`update_word`](Self::update_word) gave up.
    fn break_generation(&self, g: u16) -> Result<u64, u64> {
        // AcqRel: as for arrivals; the waiters' Acquire load sees the broken bit.
        let r = self.update_word(|x| (generation(x) == g && !broken(x)).then_some(x | BROKEN));
        if r.is_ok() {
            self.queue.notify_all();
        }
        r
    }

    /// Arrive, run `action` if this is the last arrival, and wait for the generation to end
    /// (`None` deadline: no limit).
    fn arrive<E: From<BarrierError>>(
        &self,
        deadline: Option<Instant>,
        mut interrupted: Option<&mut dyn FnMut() -> bool>,
        action: Option<impl FnOnce() -> Result<(), E>>,
    ) -> Result<u32, E> {
        let parties = self.parties_checked().map_err(BarrierError::Corrupt)?;
        // AcqRel on every arrival CAS: each arrival releases its writes into the RMW chain
        // on `word`, and the last arrival's CAS acquires them all (release sequence); the
        // waiters' Acquire loads of the last arrival's word then see everything.
        let mut w = self.word.load(Ordering::Acquire);
        let mut rounds = 0u32;
        let (g, index) = loop {
            if broken(w) {
                return Err(BarrierError::Broken.into());
            }
            let c = count(w);
            if c > parties {
                return Err(BarrierError::Corrupt(format!(
                    "{c} parties arrived at a barrier for {parties}"
                ))
                .into());
            }
            // A word that keeps changing under us (a lost arrival CAS, or a full generation
            // that ended into another full one) would keep us here: past the deadline, after
            // RETRIES rounds, leave as a party whose deadline passed in generation `gen(w)`
            // does (a passed deadline still gets its rounds: arriving late is allowed).
            rounds += 1;
            if rounds > RETRIES && crate::os::deadline::passed(deadline) {
                return Err(match self.break_generation(generation(w)) {
                    Ok(_) => BarrierError::Timeout,
                    Err(_) => BarrierError::Broken,
                }
                .into());
            }
            if c == parties {
                // Full: the last arrival runs its action. We belong to the next generation
                // (Python's `_enter` waits for the barrier to drain); wait for this one to
                // end, and give up as any waiter does.
                let g = generation(w);
                let slept = self.sleep_through(g, deadline, &mut interrupted);
                if let Slept::Ended = slept {
                    // Acquire: as the waiters' load in `sleep_through` (the AcqRel CAS that
                    // ended the generation).
                    w = self.word.load(Ordering::Acquire);
                    continue;
                }
                match self.break_generation(g) {
                    Ok(_) if matches!(slept, Slept::TimedOut) => {
                        return Err(BarrierError::Timeout.into())
                    }
                    // The generation opened as our deadline passed: arrive, late (as a
                    // deadline in the past does).
                    Err(x) if generation(x) != g && matches!(slept, Slept::TimedOut) => {
                        w = x;
                        continue;
                    }
                    _ => return Err(BarrierError::Broken.into()),
                }
            }
            let last = c + 1 == parties;
            let new = match (&action, last) {
                (None, true) => advance(w, true),
                // With an action the last arrival fills the count (`parties`: the action
                // runs) and opens the generation after it.
                _ => w + 1,
            };
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if last => match action {
                    None => {
                        self.queue.notify_all();
                        return Ok(c);
                    }
                    Some(action) => return self.run_action(generation(w), c, action),
                },
                Ok(_) => break (generation(w), c),
                Err(x) => w = x,
            }
        };
        let slept = self.sleep_through(g, deadline, &mut interrupted);
        let x = match slept {
            // Acquire: as in `sleep_through` (the AcqRel CAS that ended the generation).
            Slept::Ended => self.word.load(Ordering::Acquire),
            // Our deadline passed (or we were interrupted) in generation g: break the
            // barrier, as Python does, unless the generation ended first.
            _ => match self.break_generation(g) {
                Ok(_) if matches!(slept, Slept::TimedOut) => {
                    return Err(BarrierError::Timeout.into())
                }
                Ok(_) => return Err(BarrierError::Broken.into()),
                Err(x) => x,
            },
        };
        if generation(x) != g {
            return match outcome(x, g) {
                Some(true) => Ok(index),
                _ => Err(BarrierError::Broken.into()),
            };
        }
        Err(BarrierError::Broken.into()) // broken in generation g
    }

    /// The last arrival of generation `g` (index `index`), count now `parties`: run the
    /// action, then open the generation, or break it if the action fails or unwinds.
    fn run_action<E: From<BarrierError>>(
        &self,
        g: u16,
        index: u32,
        action: impl FnOnce() -> Result<(), E>,
    ) -> Result<u32, E> {
        /// Breaks generation `g` when dropped armed: the action panicked.
        struct BreakOnUnwind<'a>(&'a BarrierState, u16, bool);
        impl Drop for BreakOnUnwind<'_> {
            fn drop(&mut self) {
                if self.2 {
                    let _ = self.0.break_generation(self.1);
                }
            }
        }
        let mut guard = BreakOnUnwind(self, g, true);
        let r = action();
        guard.2 = false;
        if let Err(e) = r {
            let _ = self.break_generation(g);
            return Err(e);
        }
        // AcqRel: releases the action's writes (and, through the release sequence, every
        // party's) to the waiters' Acquire loads of the new word. Opens only the generation
        // we filled: a timeout, abort or reset during the action wins.
        let opened =
            self.update_word(|x| (generation(x) == g && !broken(x)).then(|| advance(x, true)));
        self.queue.notify_all();
        match opened {
            Ok(_) => Ok(index),
            Err(_) => Err(BarrierError::Broken.into()),
        }
    }

    /// Return to the initial state: the current waiters get [`BarrierError::Broken`], and a
    /// broken barrier works again.
    pub fn reset(&self) {
        // AcqRel: as for arrivals; the waiters' Acquire load sees the new generation.
        if let Err(w) = self.update_word(|w| Some(advance(w, false))) {
            // The word kept changing under every CAS (a peer writing it at random): start the
            // next generation with one store. Release: as the CAS's.
            self.word.store(advance(w, false), Ordering::Release);
        }
        self.queue.notify_all();
    }

    /// Break the barrier: current and future waiters get [`BarrierError::Broken`] until
    /// [`reset`](Self::reset).
    pub fn abort(&self) {
        // AcqRel: as for arrivals.
        self.word.fetch_or(BROKEN, Ordering::AcqRel);
        self.queue.notify_all();
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        // Acquire pairs with the AcqRel RMW that broke it (`abort`, a waiter's timeout).
        broken(self.word.load(Ordering::Acquire))
    }

    /// The number of parties (0 if the state is corrupt).
    pub fn parties(&self) -> u32 {
        self.parties_checked().unwrap_or(0)
    }

    /// Parties waiting in the current generation (0 while broken, as in Python). Parties that
    /// died while waiting are still counted.
    pub fn n_waiting(&self) -> u32 {
        let w = self.word.load(Ordering::Relaxed); // a snapshot for display only
        if broken(w) {
            0
        } else {
            count(w)
        }
    }

    /// The generation number (mod 2^16): +1 each time all parties pass, or on reset.
    pub fn generation(&self) -> u32 {
        u32::from(generation(self.word.load(Ordering::Relaxed))) // a snapshot for display only
    }
}

#[cfg(not(loom))]
pub(crate) use named::layout;
#[cfg(not(loom))]
pub use named::Barrier;

#[cfg(not(loom))]
mod named {
    use super::{BarrierState, MAX_PARTIES};
    use crate::error::{Error, Result};
    use crate::segment::{fingerprint, Kind};
    use crate::sync::named::{named_handle, Layout, Named, SyncOptions};

    const FINGERPRINT: u64 = fingerprint(
        b"shmkit barrier v2: word u64 (count 0..24, = parties while the action runs, broken 24, generation 32..48, history 48..64), parties u32, reserved u32, waitqueue (seq u32, sleepers u32)",
    );

    pub(crate) fn layout() -> Layout<BarrierState> {
        Layout {
            kind: Kind::BARRIER,
            fingerprint: FINGERPRINT,
            check: BarrierState::check,
        }
    }

    fn init(parties: u32) -> impl Fn(*mut BarrierState) -> std::io::Result<()> {
        move |p| {
            // SAFETY: `p` is the unpublished payload of a segment we are creating, sized and
            // aligned for a BarrierState.
            unsafe { BarrierState::init(p, parties) }
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
        }
    }

    fn check_parties(name: &str, parties: u32) -> Result<()> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::InvalidArgument {
                name: name.to_owned(),
                what: format!("a barrier needs 1..={MAX_PARTIES} parties, not {parties}"),
            });
        }
        Ok(())
    }

    /// A named barrier: kind [`Kind::BARRIER`], derefs to [`BarrierState`] (`wait`,
    /// `wait_timeout`, `wait_deadline`, `wait_with(action)` and its forms, `reset`, `abort`,
    /// `is_broken`, `parties`, `n_waiting`).
    ///
    /// ```
    /// use shmkit::sync::{Barrier, BarrierError};
    /// use std::time::Duration;
    /// # let name = format!("doc-barrier-{}", std::process::id());
    /// let b = Barrier::options().unlink_on_drop(true).create(&name, 2)?;
    /// // Nobody else comes: the timeout breaks the barrier.
    /// assert_eq!(b.wait_timeout(Duration::from_millis(1)), Err(BarrierError::Timeout));
    /// assert!(Barrier::open(&name)?.is_broken());
    /// b.reset();
    /// assert!(!b.is_broken());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub struct Barrier {
        inner: Named<BarrierState>,
    }

    named_handle!(
        Barrier, BarrierState, "barrier", layout(),
        (name, parties),
        check: check_parties(name, parties),
        init: init(parties),
        create: "Create a new named barrier for `parties` processes; fails if the name exists.",
        open_or_create: "Open it, or create it for `parties` if it does not exist. (An existing barrier keeps its own party count; compare [`parties`](BarrierState::parties).)"
    );
}

#[cfg(all(test, not(loom)))] // plain tests: loom atomics work only inside a model
mod tests {
    use super::*;

    #[test]
    fn word_encoding() {
        let w = advance(0, true);
        assert_eq!(
            (count(w), generation(w), broken(w), outcome(w, 0)),
            (0, 1, false, Some(true))
        );
        let w2 = advance(w, false);
        assert_eq!(
            (generation(w2), outcome(w2, 0), outcome(w2, 1)),
            (2, Some(true), Some(false))
        );
        let mut x = w2;
        for _ in 0..20 {
            x = advance(x, true);
        }
        assert_eq!(outcome(x, 0), None);
        // Generation wraps.
        let top = u64::from(u16::MAX) << GEN_SHIFT;
        assert_eq!(generation(advance(top, true)), 0);
        assert_eq!(outcome(advance(top, true), u16::MAX), Some(true));
    }

    #[test]
    fn reset_breaks_current_waiters_and_repairs() {
        let b = BarrierState::new(2).unwrap();
        std::thread::scope(|s| {
            let w = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
            while b.n_waiting() == 0 {
                std::thread::yield_now();
            }
            b.reset();
            assert_eq!(w.join().unwrap(), Err(BarrierError::Broken));
        });
        assert!(!b.is_broken());
        b.abort();
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        b.reset();
        assert_eq!(b.n_waiting(), 0);
    }

    #[test]
    #[cfg(not(loom))]
    fn interruptible_wait_passes_across_slices_or_breaks_when_told() {
        let b = BarrierState::new(2).unwrap();
        let asked = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                b.wait_interruptible(None, || {
                    asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    false
                })
            });
            // Arrive only once the waiter has slept through at least two slices.
            while asked.load(std::sync::atomic::Ordering::Relaxed) < 2 {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(b.wait().is_ok());
            assert!(waiter.join().unwrap().is_ok());
        });
        assert!(!b.is_broken());
        std::thread::scope(|s| {
            let other = s.spawn(|| b.wait());
            let mut calls = 0;
            let r = b.wait_interruptible(None, || {
                calls += 1;
                calls == 3
            });
            // Either we broke it (the other party is still waiting) or both passed (the
            // other arrived before our third slice): never anything else.
            match r {
                Err(BarrierError::Broken) => {
                    assert_eq!(other.join().unwrap(), Err(BarrierError::Broken));
                    assert!(b.is_broken());
                }
                r => {
                    assert!(r.is_ok());
                    assert!(other.join().unwrap().is_ok());
                }
            }
        });
    }

    #[test]
    #[cfg(not(loom))]
    fn action_runs_in_the_last_arrival_before_anyone_is_released() {
        let b = BarrierState::new(3).unwrap();
        let runs = std::sync::atomic::AtomicU32::new(0);
        let act = || {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<(), BarrierError>(())
        };
        let idx: Vec<u32> = std::thread::scope(|s| {
            let ts: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let i = b.wait_with(act).unwrap();
                        // Released only after the action ran.
                        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 1);
                        i
                    })
                })
                .collect();
            ts.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(idx.iter().sum::<u32>(), 3);
        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!((b.generation(), b.n_waiting()), (1, 0));
    }

    #[test]
    #[cfg(not(loom))]
    fn a_timeout_during_the_action_wins_and_a_panic_breaks() {
        let b = BarrierState::new(2).unwrap();
        // The other party gives up while the action runs: the action ran, the call is Broken.
        std::thread::scope(|s| {
            let w = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
            while b.n_waiting() == 0 {
                std::thread::yield_now();
            }
            let r = b.wait_with(|| {
                b.abort(); // as a timed-out party does
                Ok::<(), BarrierError>(())
            });
            assert_eq!(r, Err(BarrierError::Broken));
            assert_eq!(w.join().unwrap(), Err(BarrierError::Broken));
        });
        b.reset();
        let one = BarrierState::new(1).unwrap();
        let p = std::panic::catch_unwind(|| {
            one.wait_with(|| -> Result<(), BarrierError> { panic!("the action panicked") })
        });
        assert!(p.is_err());
        assert!(one.is_broken());
        b.reset();
        // A full generation (an action running elsewhere) makes a newcomer wait, then its
        // timeout breaks the barrier.
        b.word.store(2, Ordering::Relaxed);
        assert_eq!(
            b.wait_timeout(Duration::from_millis(1)),
            Err(BarrierError::Timeout)
        );
        assert!(b.is_broken());
    }

    #[test]
    fn corrupt_count_is_an_error() {
        let b = BarrierState::new(2).unwrap();
        b.word.store(5, Ordering::Relaxed);
        assert!(matches!(
            b.wait_timeout(Duration::ZERO),
            Err(BarrierError::Corrupt(_))
        ));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::BarrierState;
    use loom::sync::atomic::{AtomicU32, Ordering};
    use loom::sync::Arc;

    /// Two parties, two generations: each passes each generation exactly once, sees the
    /// other's pre-barrier write, and the arrival indices of a generation are {0, 1}.
    /// (Preemption-bounded to 2: the unbounded model runs for many minutes.)
    #[test]
    fn two_parties_two_generations() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let b = Arc::new(BarrierState::new(2).unwrap());
            let progress = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
            let run = |me: usize, b: Arc<BarrierState>, p: Arc<[AtomicU32; 2]>| {
                move || {
                    let mut sum = 0;
                    for gen in 1..=2 {
                        p[me].store(gen, Ordering::Relaxed);
                        sum += b.wait().unwrap();
                        assert!(p[1 - me].load(Ordering::Relaxed) >= gen);
                    }
                    sum
                }
            };
            let t = loom::thread::spawn(run(1, b.clone(), progress.clone()));
            let mine = run(0, b.clone(), progress)();
            let theirs = t.join().unwrap();
            assert_eq!(mine + theirs, 2); // each generation hands out 0 and 1
            assert_eq!(b.generation(), 2);
        });
    }

    /// One generation, unbounded: both pass, indices {0, 1}, the generation advances once.
    #[test]
    fn two_parties_one_generation() {
        loom::model(|| {
            let b = Arc::new(BarrierState::new(2).unwrap());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || b2.wait().unwrap());
            let mine = b.wait().unwrap();
            assert_eq!(mine + t.join().unwrap(), 1);
            assert_eq!(b.generation(), 1);
        });
    }

    /// A reset while a party waits gives it `Broken` (or it had not arrived yet and then
    /// waits in the new generation, here with a zero timeout).
    #[test]
    fn reset_wakes_waiter_with_broken() {
        loom::model(|| {
            let b = Arc::new(BarrierState::new(2).unwrap());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || b2.wait());
            while b.n_waiting() == 0 {
                loom::thread::yield_now();
            }
            b.reset();
            assert_eq!(t.join().unwrap(), Err(super::BarrierError::Broken));
            assert!(!b.is_broken());
        });
    }

    /// A timed-out party breaks the barrier; the other party then fails too (or had passed).
    #[test]
    fn timeout_breaks() {
        loom::model(|| {
            let b = Arc::new(BarrierState::new(3).unwrap());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || b2.wait_timeout(std::time::Duration::ZERO));
            let mine = b.wait_timeout(std::time::Duration::ZERO);
            let theirs = t.join().unwrap();
            assert!(mine.unwrap_err().is_broken());
            assert!(theirs.unwrap_err().is_broken());
            assert!(b.is_broken());
        });
    }

    /// Two parties with an action: it runs exactly once, after both arrived (it sees both
    /// pre-barrier writes), and both see its write once released. A failing action breaks
    /// the barrier for the other party instead.
    #[test]
    fn action_runs_once_between_arrival_and_release() {
        loom::model(|| {
            let b = Arc::new(BarrierState::new(2).unwrap());
            let cell = Arc::new([AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)]);
            let run = |me: usize, b: Arc<BarrierState>, c: Arc<[AtomicU32; 3]>| {
                move || {
                    c[me].store(1, Ordering::Relaxed);
                    b.wait_with(|| {
                        assert_eq!(c[1 - me].load(Ordering::Relaxed), 1);
                        c[2].fetch_add(1, Ordering::Relaxed);
                        Ok::<(), super::BarrierError>(())
                    })
                    .unwrap();
                    assert_eq!(c[2].load(Ordering::Relaxed), 1);
                }
            };
            let t = loom::thread::spawn(run(1, b.clone(), cell.clone()));
            run(0, b.clone(), cell)();
            t.join().unwrap();
            assert_eq!(b.generation(), 1);
        });
    }

    #[test]
    fn failing_action_breaks_for_the_other_party() {
        loom::model(|| {
            let b = Arc::new(BarrierState::new(2).unwrap());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || b2.wait_with(|| Err(super::BarrierError::Timeout)));
            let mine = b.wait_with(|| Err(super::BarrierError::Timeout));
            let theirs = t.join().unwrap();
            // The last arrival's action failed (Timeout here, to tell it apart); the other got
            // Broken.
            let mut got = [mine, theirs];
            got.sort_by_key(|r| format!("{r:?}"));
            assert_eq!(
                got,
                [
                    Err(super::BarrierError::Broken),
                    Err(super::BarrierError::Timeout)
                ]
            );
            assert!(b.is_broken());
        });
    }
}
