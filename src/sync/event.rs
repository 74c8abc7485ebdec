//! [`Event`]: a flag that processes wait on, on one futex word (`SPEC.md` §6.5).

use std::fmt;
use std::time::{Duration, Instant};

use super::park::{self, Retry, SPIN};
use crate::error::{Timeout, WouldBlock};
use crate::loom::futex::Wait;
use crate::loom::{spin_loop, AtomicU32, Ordering};

/// Bit 0 of the word: the flag. Bits 1..=31 count `set` calls that found it clear.
const SET: u32 = 1;

/// An event's word as [`EventState::ticket`] read it: the point a wait in several calls
/// ([`EventState::wait_since_deadline`]) counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTicket(u32);

impl EventTicket {
    /// Whether the flag was set when the ticket was taken.
    pub fn was_set(self) -> bool {
        self.0 & SET != 0
    }
}

/// The state of an event (Python's `Event`): `#[repr(C)]`, 8 bytes, valid when zeroed
/// (clear), so it can be placed inside any shmkit object.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 4 | `word` | bit 0: set; bits 1..=31: generation, +1 on every clear→set |
/// | 4 | 4 | `sleepers` | processes parked (or about to park) on `word` |
///
/// A waiter remembers the word it saw while the flag was clear and returns as soon as
/// the word differs: any change from a clear word is a `set`. So a `set` immediately followed
/// by `clear` still releases everyone who was waiting (Python's `threading.Event` behaves so;
/// `multiprocessing.Event` may miss such a pulse). Every value is valid: there is nothing to
/// corrupt. A waiter killed while parked is harmless.
///
/// ```
/// use shmkit::sync::EventState;
/// use std::time::Duration;
/// let ev = EventState::new();
/// assert_eq!(ev.wait_timeout(Duration::from_millis(1)), Err(shmkit::Timeout));
/// std::thread::scope(|s| {
///     s.spawn(|| ev.set());
///     ev.wait(); // blocks until the set
/// });
/// assert!(ev.is_set());
/// ev.clear();
/// assert!(!ev.is_set());
/// ```
#[repr(C)]
#[derive(Default)]
pub struct EventState {
    pub(crate) word: AtomicU32,
    pub(crate) sleepers: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<EventState>() == 8);

impl fmt::Debug for EventState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventState")
            .field("set", &self.is_set())
            .field("generation", &self.generation())
            .finish()
    }
}

impl EventState {
    /// A clear event (all zero).
    #[cfg(not(loom))]
    pub const fn new() -> EventState {
        EventState {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// A clear event (loom's atomics are not `const`).
    #[cfg(loom)]
    pub fn new() -> EventState {
        EventState {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Initialise a clear event in place.
    ///
    /// # Safety
    ///
    /// `at` must be valid for writes of 8 bytes, 4-byte aligned, and not in use by anyone.
    pub unsafe fn init(at: *mut EventState) {
        // SAFETY: per the contract.
        unsafe { at.write(EventState::new()) };
    }

    /// View an event in memory (every bit pattern is a valid event).
    ///
    /// # Safety
    ///
    /// `at` must be 4-byte aligned and valid for reads and writes of 8 bytes for `'a`.
    ///
    /// And while the state is in use, this process must not access any 8-byte word that
    /// overlaps it with another access size, by any other means (`Segment::read_at`,
    /// `write_at`, `load_u64`, `atomic_u64`, plain reads and writes through the mapping): a
    /// racing access of another size to the same bytes is undefined behaviour in Rust's memory
    /// model (`SPEC.md` §1, one access size per word). A state at an 8-aligned offset, its
    /// size rounded up to 8, in bytes nothing else of this process reads or writes, meets this.
    pub unsafe fn from_ptr<'a>(at: *const EventState) -> &'a EventState {
        // SAFETY: per the contract; both fields are atomics.
        unsafe { &*at }
    }

    /// Set the flag and wake every waiter. Writes made before `set` are visible to a waiter
    /// once its `wait` returns (`Ok`).
    ///
    /// ```
    /// # let ev = shmkit::sync::EventState::new();
    /// ev.set();
    /// assert!(ev.is_set());
    /// ```
    pub fn set(&self) {
        let mut w = self.word.load(Ordering::Relaxed); // only a first guess for the CAS
        let mut retry = Retry::default();
        loop {
            // Even when already set, write the word (unchanged), so that this call's writes
            // are published too. SeqCst (a Release) pairs with the Acquire loads in `wait`
            // and `is_set`, and with `park`'s SeqCst protocol.
            let new = if w & SET != 0 {
                w
            } else {
                w.wrapping_add(2) | SET
            };
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => w = x,
            }
            if !retry.again() {
                // The word kept changing under every CAS (`Retry`: only a peer writing it at
                // random does that): two RMWs that cannot fail. The generation step first, so
                // that a waiter that saw the word clear sees it change even if a `clear`
                // follows at once; then the flag. SeqCst: as above.
                self.word.fetch_add(2, Ordering::SeqCst);
                w = self.word.fetch_or(SET, Ordering::SeqCst);
                break;
            }
        }
        if w & SET == 0 {
            park::unpark(&self.word, &self.sleepers, u32::MAX);
        }
    }

    /// Clear the flag (waiters then block until the next `set`).
    ///
    /// ```
    /// # let ev = shmkit::sync::EventState::new();
    /// ev.set();
    /// ev.clear();
    /// assert_eq!(ev.try_wait(), Err(shmkit::WouldBlock));
    /// ```
    pub fn clear(&self) {
        // SeqCst for simplicity; nothing is published by clearing.
        self.word.fetch_and(!SET, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // Acquire pairs with the SeqCst CAS in `set`.
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Return at once: `Ok` if the flag is set, else [`WouldBlock`] (Python's `wait(0)`
    /// returning `False`).
    ///
    /// ```
    /// # let ev = shmkit::sync::EventState::new();
    /// assert!(ev.try_wait().is_err());
    /// ev.set();
    /// assert!(ev.try_wait().is_ok());
    /// ```
    pub fn try_wait(&self) -> Result<(), WouldBlock> {
        if self.is_set() {
            Ok(())
        } else {
            Err(WouldBlock)
        }
    }

    /// Block until the flag is set (or was set while we waited), with no time limit.
    ///
    /// ```
    /// # let ev = shmkit::sync::EventState::new();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| ev.set());
    ///     ev.wait();
    /// });
    /// ```
    pub fn wait(&self) {
        // Without a deadline the wait only returns once a set was seen.
        let _ = self.wait_within(None);
    }

    /// Block until the flag is set, or `timeout` passes ([`Timeout`], Python's `False`). A
    /// timeout too large to represent means no limit; a zero timeout checks once.
    ///
    /// ```
    /// # let ev = shmkit::sync::EventState::new();
    /// # use std::time::Duration;
    /// assert!(ev.wait_timeout(Duration::from_millis(1)).is_err());
    /// ev.set();
    /// assert!(ev.wait_timeout(Duration::from_secs(10)).is_ok());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Timeout> {
        self.wait_within(crate::os::deadline::after(Some(timeout)))
    }

    /// Block until the flag is set, or `deadline` (`CLOCK_MONOTONIC`) passes ([`Timeout`]). A
    /// deadline in the past checks once.
    ///
    /// ```
    /// # let ev = shmkit::sync::EventState::new();
    /// use std::time::{Duration, Instant};
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// assert_eq!(ev.wait_deadline(deadline), Err(shmkit::Timeout));
    /// ```
    pub fn wait_deadline(&self, deadline: Instant) -> Result<(), Timeout> {
        self.wait_within(Some(deadline))
    }

    /// The point a wait in several calls counts from: a waiter that cannot stay in one call
    /// for its whole wait (a binding that comes back between slices to run signal handlers,
    /// as the Python one does) takes a ticket once and passes it to every
    /// [`wait_since_deadline`](Self::wait_since_deadline). Each call returns once the flag
    /// is set or was set after the ticket, so a `set` that a `clear` follows while the
    /// waiter is between two calls still releases it (a fresh `wait_deadline` per slice
    /// would see only the cleared flag and wait for the next `set`).
    ///
    /// ```
    /// # let ev = shmkit::sync::EventState::new();
    /// use std::time::Instant;
    /// let t = ev.ticket();
    /// assert!(!t.was_set());
    /// ev.set();
    /// ev.clear(); // a pulse between two slices of one wait
    /// assert_eq!(ev.wait_since_deadline(t, Instant::now()), Ok(()));
    /// assert_eq!(ev.wait_deadline(Instant::now()), Err(shmkit::Timeout)); // a new wait
    /// ```
    pub fn ticket(&self) -> EventTicket {
        // Acquire pairs with the SeqCst CAS in `set`.
        EventTicket(self.word.load(Ordering::Acquire))
    }

    /// Return at once: `Ok` if the flag is set, or was set after `ticket` was taken
    /// ([`ticket`](Self::ticket)), else [`WouldBlock`].
    pub fn try_wait_since(&self, ticket: EventTicket) -> Result<(), WouldBlock> {
        // Acquire: as in `ticket`. Any change from a clear word is a `set`.
        if ticket.was_set() || self.word.load(Ordering::Acquire) != ticket.0 {
            Ok(())
        } else {
            Err(WouldBlock)
        }
    }

    /// Block until the flag is set, or was set after `ticket` was taken
    /// ([`ticket`](Self::ticket)), with no time limit.
    pub fn wait_since(&self, ticket: EventTicket) {
        // Without a deadline the wait only returns once a set was seen.
        let _ = self.wait_since_within(ticket, None);
    }

    /// [`wait_since`](Self::wait_since) for at most `timeout` ([`Timeout`]); a timeout too
    /// large to represent means no limit.
    pub fn wait_since_timeout(
        &self,
        ticket: EventTicket,
        timeout: Duration,
    ) -> Result<(), Timeout> {
        self.wait_since_within(ticket, crate::os::deadline::after(Some(timeout)))
    }

    /// [`wait_since`](Self::wait_since) until `deadline` at most ([`Timeout`]). A deadline
    /// in the past checks once.
    pub fn wait_since_deadline(
        &self,
        ticket: EventTicket,
        deadline: Instant,
    ) -> Result<(), Timeout> {
        self.wait_since_within(ticket, Some(deadline))
    }

    /// The wait behind every form (`None`: no limit).
    fn wait_within(&self, deadline: Option<Instant>) -> Result<(), Timeout> {
        self.wait_since_within(self.ticket(), deadline)
    }

    /// Wait for the flag set, or a change of the word from `ticket` (`None`: no limit).
    fn wait_since_within(
        &self,
        ticket: EventTicket,
        deadline: Option<Instant>,
    ) -> Result<(), Timeout> {
        let seen = ticket.0;
        if self.try_wait_since(ticket).is_ok() {
            return Ok(());
        }
        if crate::os::deadline::passed(deadline) {
            return Err(Timeout);
        }
        for _ in 0..SPIN {
            // Acquire: as in `ticket` (pairs with the SeqCst CAS in `set`).
            if self.word.load(Ordering::Acquire) != seen {
                return Ok(());
            }
            spin_loop();
        }
        loop {
            let r = park::park(&self.word, &self.sleepers, seen, deadline);
            // Any change from a clear word is a `set` (Acquire: as above).
            if self.word.load(Ordering::Acquire) != seen {
                return Ok(());
            }
            if r == Wait::TimedOut || crate::os::deadline::passed(deadline) {
                return Err(Timeout);
            }
        }
    }

    /// How many times the flag went from clear to set (mod 2^31); for `shmkit info`.
    ///
    /// ```
    /// # let ev = shmkit::sync::EventState::new();
    /// ev.set();
    /// ev.set(); // already set: no new generation
    /// assert_eq!(ev.generation(), 1);
    /// ```
    pub fn generation(&self) -> u32 {
        self.word.load(Ordering::Relaxed) >> 1 // a snapshot for display only
    }

    /// Number of recorded sleepers (dead ones included); a hint for `shmkit info`.
    pub fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed) // a snapshot for display only
    }
}

#[cfg(not(loom))]
pub use named::Event;

#[cfg(not(loom))]
mod named {
    use super::EventState;
    use crate::segment::{fingerprint, Kind};
    use crate::sync::named::{named_handle, Layout, Named, SyncOptions};

    const FINGERPRINT: u64 =
        fingerprint(b"shmkit event v1: word u32 (bit0 set, bits1.. generation), sleepers u32");

    pub(crate) fn layout() -> Layout<EventState> {
        Layout {
            kind: Kind::EVENT,
            fingerprint: FINGERPRINT,
            check: |_| Ok(()),
        }
    }

    fn init(p: *mut EventState) -> std::io::Result<()> {
        // SAFETY: `p` is the unpublished payload of a segment we are creating, sized and
        // aligned for an EventState.
        unsafe { EventState::init(p) };
        Ok(())
    }

    /// A named event: a segment of kind [`Kind::EVENT`] holding an [`EventState`], to which it
    /// derefs (`set`, `clear`, `is_set`, `try_wait`, `wait`, `wait_timeout`, `wait_deadline`).
    ///
    /// ```
    /// use shmkit::sync::Event;
    /// use std::time::Duration;
    /// # let name = format!("doc-event-{}", std::process::id());
    /// let ev = Event::options().unlink_on_drop(true).create(&name)?;
    /// let other = Event::open(&name)?; // e.g. in another process
    /// other.set();
    /// ev.wait_timeout(Duration::from_secs(10))?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub struct Event {
        inner: Named<EventState>,
    }

    named_handle!(Event, EventState, "event", ", clear", layout(), init);
}

#[cfg(not(loom))]
pub(crate) use named::layout;

#[cfg(all(test, loom))]
mod loom_tests {
    use super::EventState;
    use loom::sync::atomic::{AtomicU32, Ordering};
    use loom::sync::Arc;

    /// A `set` is never lost: the waiter returns, and sees the data written before `set`.
    #[test]
    fn set_wakes_waiter_and_publishes() {
        loom::model(|| {
            let ev = Arc::new(EventState::new());
            let data = Arc::new(AtomicU32::new(0));
            let (e2, d2) = (ev.clone(), data.clone());
            let t = loom::thread::spawn(move || {
                d2.store(42, Ordering::Relaxed);
                e2.set();
            });
            ev.wait();
            assert_eq!(data.load(Ordering::Relaxed), 42);
            t.join().unwrap();
        });
    }

    /// A set-then-clear pulse still releases a waiter that was already waiting.
    #[test]
    fn pulse_releases_waiter() {
        loom::model(|| {
            let ev = Arc::new(EventState::new());
            let e2 = ev.clone();
            let t = loom::thread::spawn(move || {
                // The waiter counts itself a sleeper only after remembering the word.
                while e2.sleepers() == 0 {
                    loom::thread::yield_now();
                }
                e2.set();
                e2.clear();
            });
            ev.wait();
            t.join().unwrap();
        });
    }

    /// A timed wait with nobody setting times out.
    #[test]
    fn timed_wait_times_out() {
        loom::model(|| {
            let ev = EventState::new();
            assert_eq!(
                ev.wait_timeout(std::time::Duration::from_millis(1)),
                Err(crate::Timeout)
            );
        });
    }
}
