//! [`Semaphore`] and [`BoundedSemaphore`]: a permit count on one futex word
//! (`SPEC.md` §6.4).

use std::fmt;
use std::time::{Duration, Instant};

use super::park::{self, Retry, SPIN};
use super::robust::liveness_slice;
use crate::loom::{spin_loop, AtomicU32, Ordering};

/// The largest value a semaphore can hold: `SEM_VALUE_MAX` (2147483647) on Linux, as in
/// Python's `multiprocessing.Semaphore`.
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// Why a semaphore operation failed. `'static`; converts into [`crate::Error`] with `?`
/// (`WouldBlock` and `Timeout` become [`Error::WouldBlock`](crate::Error::WouldBlock) and
/// [`Error::Timeout`](crate::Error::Timeout), the rest [`Error::Semaphore`](crate::Error::Semaphore)).
///
/// ```
/// use shmkit::sync::SemaphoreState;
/// let s = SemaphoreState::new(0)?;
/// let e: shmkit::Error = s.try_acquire().unwrap_err().into();
/// assert!(matches!(e, shmkit::Error::WouldBlock));
/// # Ok::<(), shmkit::sync::SemaphoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SemaphoreError {
    /// `try_acquire`: no permit is free.
    WouldBlock,
    /// The timeout passed before a permit was free.
    Timeout,
    /// `release` (`release_n`) would raise the value above its maximum: the initial value for a
    /// `BoundedSemaphore` (Python's "semaphore or lock released too many times"),
    /// [`SEM_VALUE_MAX`] otherwise.
    TooManyReleases {
        /// The maximum value.
        max: u32,
    },
    /// An initial value above the maximum was asked for (Python refuses negative values and
    /// values above `SEM_VALUE_MAX`; negative ones cannot be expressed here).
    InvalidValue {
        /// The value asked for.
        value: u32,
        /// The largest allowed.
        max: u32,
    },
    /// The shared state holds impossible values (e.g. a value above the maximum).
    Corrupt(String),
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemaphoreError::WouldBlock => f.write_str("no permit is free"),
            SemaphoreError::Timeout => f.write_str("timed out waiting for a permit"),
            SemaphoreError::TooManyReleases { max } => {
                write!(
                    f,
                    "semaphore released too many times (its value may not pass its maximum {max})"
                )
            }
            SemaphoreError::InvalidValue { value, max } => {
                write!(f, "semaphore value {value} is out of range (at most {max})")
            }
            SemaphoreError::Corrupt(what) => write!(f, "semaphore state is corrupt: {what}"),
        }
    }
}

impl std::error::Error for SemaphoreError {}

/// The state of a counting semaphore: `#[repr(C)]`, 16 bytes, placeable inside any shmkit
/// object. A plain semaphore has maximum [`SEM_VALUE_MAX`]; a bounded one has its initial
/// value as maximum.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 4 | `value` | free permits; the futex word |
/// | 4 | 4 | `sleepers` | processes parked (or about to park) on `value` |
/// | 8 | 4 | `max` | the largest value `release` may reach |
/// | 12 | 4 | `initial` | the value it was created with (for `shmkit info`) |
///
/// A permit is taken by a CAS `v → v-1` (only when `v > 0`); `n` are given back by one CAS
/// `v → v+n` (only when `v + n <= max`). There is no owner: **a process that dies holding a permit
/// loses it for good**; the value stays one lower until someone releases an extra one.
///
/// ```
/// use shmkit::sync::{SemaphoreError, SemaphoreState};
/// let s = SemaphoreState::bounded(2)?;
/// s.try_acquire()?;
/// s.try_acquire()?;
/// assert_eq!(s.try_acquire(), Err(SemaphoreError::WouldBlock));
/// s.release()?;
/// s.release()?;
/// assert_eq!(s.release(), Err(SemaphoreError::TooManyReleases { max: 2 }));
/// # Ok::<(), SemaphoreError>(())
/// ```
#[repr(C)]
pub struct SemaphoreState {
    pub(crate) value: AtomicU32,
    pub(crate) sleepers: AtomicU32,
    pub(crate) max: AtomicU32,
    pub(crate) initial: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<SemaphoreState>() == 16);

impl fmt::Debug for SemaphoreState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreState")
            .field("value", &self.value())
            .field("max", &self.max.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SemaphoreState {
    fn with(value: u32, max: u32) -> Result<SemaphoreState, SemaphoreError> {
        if value > max || max > SEM_VALUE_MAX {
            return Err(SemaphoreError::InvalidValue {
                value,
                max: max.min(SEM_VALUE_MAX),
            });
        }
        Ok(SemaphoreState {
            value: AtomicU32::new(value),
            sleepers: AtomicU32::new(0),
            max: AtomicU32::new(max),
            initial: AtomicU32::new(value),
        })
    }

    /// A semaphore with `value` permits and maximum [`SEM_VALUE_MAX`] (Python's `Semaphore`).
    pub fn new(value: u32) -> Result<SemaphoreState, SemaphoreError> {
        Self::with(value, SEM_VALUE_MAX)
    }

    /// A semaphore with `value` permits whose value may never exceed `value` (Python's
    /// `BoundedSemaphore`).
    pub fn bounded(value: u32) -> Result<SemaphoreState, SemaphoreError> {
        Self::with(value, value)
    }

    /// Initialise a semaphore in place with `value` permits and maximum `max`.
    ///
    /// # Safety
    ///
    /// `at` must be valid for writes of 16 bytes, 4-byte aligned, and not in use by anyone.
    pub unsafe fn init(
        at: *mut SemaphoreState,
        value: u32,
        max: u32,
    ) -> Result<(), SemaphoreError> {
        let s = Self::with(value, max)?;
        // SAFETY: per the contract.
        unsafe { at.write(s) };
        Ok(())
    }

    /// View a semaphore in memory after checking that its words are consistent.
    ///
    /// # Safety
    ///
    /// `at` must be 4-byte aligned and valid for reads and writes of 16 bytes for `'a`.
    ///
    /// And while the state is in use, this process must not access any 8-byte word that
    /// overlaps it with another access size, by any other means (`Segment::read_at`,
    /// `write_at`, `load_u64`, `atomic_u64`, plain reads and writes through the mapping): a
    /// racing access of another size to the same bytes is undefined behaviour in Rust's memory
    /// model (`SPEC.md` §1, one access size per word). A state at an 8-aligned offset, its
    /// size rounded up to 8, in bytes nothing else of this process reads or writes, meets this.
    pub unsafe fn from_ptr<'a>(
        at: *const SemaphoreState,
    ) -> Result<&'a SemaphoreState, SemaphoreError> {
        // SAFETY: per the contract; all fields are atomics.
        let s = unsafe { &*at };
        s.check().map_err(SemaphoreError::Corrupt)?;
        Ok(s)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        // Relaxed: a one-off validation snapshot; each operation re-checks what it uses.
        let (v, m, i) = (
            self.value.load(Ordering::Relaxed),
            self.max.load(Ordering::Relaxed),
            self.initial.load(Ordering::Relaxed),
        );
        if m > SEM_VALUE_MAX || i > m || v > m {
            return Err(format!(
                "value {v}, initial {i}, max {m}: need value <= max, initial <= max <= {SEM_VALUE_MAX}"
            ));
        }
        Ok(())
    }

    fn max(&self) -> Result<u32, SemaphoreError> {
        // Relaxed: `max` never changes after initialisation (published by the segment's READY).
        let m = self.max.load(Ordering::Relaxed);
        if m > SEM_VALUE_MAX {
            return Err(SemaphoreError::Corrupt(format!(
                "max is {m}, above SEM_VALUE_MAX"
            )));
        }
        Ok(m)
    }

    /// One attempt: take a permit if one is free. `false` also when the value kept changing
    /// under every CAS ([`Retry`]: a peer writing it at random).
    fn take(&self) -> Result<bool, SemaphoreError> {
        let max = self.max()?;
        let mut v = self.value.load(Ordering::Relaxed); // a first guess for the CAS
        let mut retry = Retry::default();
        loop {
            if v > max {
                return Err(SemaphoreError::Corrupt(format!(
                    "value {v} is above max {max}"
                )));
            }
            if v == 0 {
                return Ok(false);
            }
            // Acquire pairs with the SeqCst (Release) CAS in `release`: what the releaser
            // wrote before giving the permit back is visible to its taker.
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Ok(true),
                Err(x) => v = x,
            }
            if !retry.again() {
                // The value kept changing under us: no permit this time. The callers' loops
                // look at their deadline (`try_acquire`: `WouldBlock`).
                return Ok(false);
            }
        }
    }

    /// Take a permit if one is free, else [`SemaphoreError::WouldBlock`] (Python's
    /// `acquire(False)`). Also `WouldBlock` when the value keeps changing under every
    /// compare-and-swap for 10 ms (only a peer writing it at random does that): the call never
    /// spins unboundedly.
    ///
    /// ```
    /// use shmkit::sync::{SemaphoreError, SemaphoreState};
    /// let s = SemaphoreState::new(1)?;
    /// s.try_acquire()?;
    /// assert_eq!(s.try_acquire(), Err(SemaphoreError::WouldBlock));
    /// # Ok::<(), SemaphoreError>(())
    /// ```
    pub fn try_acquire(&self) -> Result<(), SemaphoreError> {
        if self.take()? {
            Ok(())
        } else {
            Err(SemaphoreError::WouldBlock)
        }
    }

    /// Block until a permit is free and take it, with no time limit (Python's `acquire()`).
    /// Fails only if the state is [`Corrupt`](SemaphoreError::Corrupt).
    ///
    /// ```
    /// # let s = shmkit::sync::SemaphoreState::new(0)?;
    /// std::thread::scope(|sc| {
    ///     sc.spawn(|| s.release().unwrap());
    ///     s.acquire().unwrap();
    /// });
    /// # Ok::<(), shmkit::sync::SemaphoreError>(())
    /// ```
    pub fn acquire(&self) -> Result<(), SemaphoreError> {
        self.acquire_within(None)
    }

    /// Block for at most `timeout`, else [`SemaphoreError::Timeout`] (Python's
    /// `acquire(timeout=t)`). A zero timeout polls once; one too large to represent means no
    /// limit.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let s = shmkit::sync::SemaphoreState::new(1)?;
    /// s.acquire_timeout(Duration::from_secs(10))?;
    /// assert!(s.acquire_timeout(Duration::from_millis(1)).is_err());
    /// # Ok::<(), shmkit::sync::SemaphoreError>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), SemaphoreError> {
        self.acquire_within(crate::os::deadline::after(Some(timeout)))
    }

    /// Block until `deadline` (`CLOCK_MONOTONIC`), else [`SemaphoreError::Timeout`]. A
    /// deadline in the past polls once.
    ///
    /// ```
    /// use shmkit::sync::{SemaphoreError, SemaphoreState};
    /// use std::time::Instant;
    /// let s = SemaphoreState::new(1)?;
    /// s.acquire_deadline(Instant::now())?; // a free permit: taken, even with no time left
    /// assert_eq!(s.acquire_deadline(Instant::now()), Err(SemaphoreError::Timeout));
    /// # Ok::<(), SemaphoreError>(())
    /// ```
    pub fn acquire_deadline(&self, deadline: Instant) -> Result<(), SemaphoreError> {
        self.acquire_within(Some(deadline))
    }

    /// The wait behind every blocking form (`None`: no limit).
    fn acquire_within(&self, deadline: Option<Instant>) -> Result<(), SemaphoreError> {
        if crate::os::deadline::passed(deadline) {
            return if self.take()? {
                Ok(())
            } else {
                Err(SemaphoreError::Timeout)
            };
        }
        for _ in 0..SPIN {
            if self.take()? {
                return Ok(());
            }
            spin_loop();
        }
        loop {
            if self.take()? {
                return Ok(());
            }
            // In slices (SPEC §6.4.3): a release wakes one sleeper, and if that one is killed
            // before its `take`, or the releaser between its CAS and its wake, the free
            // permit is found at the end of the others' current slice, not at their deadline.
            park::park(&self.value, &self.sleepers, 0, liveness_slice(deadline));
            if self.take()? {
                return Ok(());
            }
            if crate::os::deadline::passed(deadline) {
                return Err(SemaphoreError::Timeout);
            }
        }
    }

    /// Give a permit back (any process may), waking one waiter if any sleeps:
    /// [`release_n(1)`](Self::release_n).
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.release_n(1)
    }

    /// Give `n` permits back in one step (Python's `release(n)`; any process may), waking up
    /// to `n` waiters. [`SemaphoreError::TooManyReleases`], releasing none, if the value would
    /// pass its maximum. `n = 0` releases nothing.
    ///
    /// ```
    /// use shmkit::sync::{SemaphoreError, SemaphoreState};
    /// let s = SemaphoreState::bounded(3)?;
    /// for _ in 0..3 {
    ///     s.try_acquire()?;
    /// }
    /// s.release_n(2)?;
    /// assert_eq!(s.value(), 2);
    /// assert_eq!(s.release_n(2), Err(SemaphoreError::TooManyReleases { max: 3 }));
    /// assert_eq!(s.value(), 2); // none released
    /// # Ok::<(), SemaphoreError>(())
    /// ```
    pub fn release_n(&self, n: u32) -> Result<(), SemaphoreError> {
        let max = self.max()?;
        if n == 0 {
            return Ok(());
        }
        let mut v = self.value.load(Ordering::Relaxed); // a first guess for the CAS
        let mut retry = Retry::default();
        loop {
            if v > max {
                return Err(SemaphoreError::Corrupt(format!(
                    "value {v} is above max {max}"
                )));
            }
            if n > max - v {
                return Err(SemaphoreError::TooManyReleases { max });
            }
            // SeqCst: a Release for `take`'s Acquire, and part of `park`'s SeqCst protocol
            // (the value changes before we read `sleepers`).
            match self
                .value
                .compare_exchange_weak(v, v + n, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => v = x,
            }
            if !retry.again() {
                // Not ordinary contention (`Retry`): a peer is rewriting the value.
                return Err(SemaphoreError::Corrupt(
                    "the value kept changing under every compare-and-swap for 10 ms (a peer \
                     is rewriting it); no permit was released"
                        .into(),
                ));
            }
        }
        // Up to `n` sleepers (the futex wakes at most as many as sleep): each takes one of
        // the `n` permits, or finds them taken and parks again.
        park::unpark(&self.value, &self.sleepers, n);
        Ok(())
    }

    /// Free permits now (Python's `get_value`; a snapshot).
    pub fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed) // a snapshot for display only
    }

    /// The largest value `release` may reach.
    pub fn max_value(&self) -> u32 {
        self.max.load(Ordering::Relaxed) // immutable after init
    }

    /// The value it was created with.
    pub fn initial_value(&self) -> u32 {
        self.initial.load(Ordering::Relaxed) // immutable after init
    }

    /// Recorded sleepers (dead ones included); a hint for `shmkit info`.
    pub fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed) // a snapshot for display only
    }
}

#[cfg(not(loom))]
pub(crate) use named::{bounded_layout, layout};
#[cfg(not(loom))]
pub use named::{BoundedSemaphore, Semaphore};

#[cfg(not(loom))]
mod named {
    use super::{SemaphoreState, SEM_VALUE_MAX};
    use crate::error::{Error, Result};
    use crate::segment::{fingerprint, Kind};
    use crate::sync::named::{named_handle, Layout, Named, SyncOptions};

    const FINGERPRINT: u64 =
        fingerprint(b"shmkit semaphore v1: value u32, sleepers u32, max u32, initial u32");

    pub(crate) fn layout() -> Layout<SemaphoreState> {
        Layout {
            kind: Kind::SEMAPHORE,
            fingerprint: FINGERPRINT,
            check: SemaphoreState::check,
        }
    }

    pub(crate) fn bounded_layout() -> Layout<SemaphoreState> {
        Layout {
            kind: Kind::BOUNDED_SEMAPHORE,
            fingerprint: FINGERPRINT,
            check: SemaphoreState::check,
        }
    }

    fn init(value: u32, max: u32) -> impl Fn(*mut SemaphoreState) -> std::io::Result<()> {
        move |p| {
            // SAFETY: `p` is the unpublished payload of a segment we are creating, sized and
            // aligned for a SemaphoreState; arguments were checked before creating.
            unsafe { SemaphoreState::init(p, value, max) }
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
        }
    }

    fn check_value(name: &str, value: u32, max: u32) -> Result<()> {
        if value > max {
            return Err(Error::TooLarge {
                name: name.to_owned(),
                requested: value.into(),
                max: max.into(),
            });
        }
        Ok(())
    }

    /// A named counting semaphore (Python's `Semaphore`): kind [`Kind::SEMAPHORE`], derefs to
    /// [`SemaphoreState`]. Its value may rise above the initial value, up to
    /// [`SEM_VALUE_MAX`].
    ///
    /// ```
    /// use shmkit::sync::Semaphore;
    /// use std::time::Duration;
    /// # let name = format!("doc-sem-{}", std::process::id());
    /// let s = Semaphore::options().unlink_on_drop(true).create(&name, 1)?;
    /// s.acquire_timeout(Duration::from_secs(10)).unwrap();
    /// assert!(Semaphore::open(&name)?.acquire_timeout(Duration::ZERO).is_err());
    /// s.release().unwrap();
    /// s.release().unwrap(); // above the initial value: allowed
    /// assert_eq!(s.value(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub struct Semaphore {
        inner: Named<SemaphoreState>,
    }

    named_handle!(
        Semaphore, SemaphoreState, "semaphore", layout(),
        (name, value),
        check: check_value(name, value, SEM_VALUE_MAX),
        init: init(value, SEM_VALUE_MAX),
        create: "Create a new named semaphore with `value` permits (at most [`SEM_VALUE_MAX`]).",
        open_or_create: "Open it, or create it with `value` permits if it does not exist."
    );

    /// A named bounded semaphore (Python's `BoundedSemaphore`): kind
    /// [`Kind::BOUNDED_SEMAPHORE`], derefs to [`SemaphoreState`]; releasing above the initial
    /// value is an error.
    ///
    /// ```
    /// use shmkit::sync::{BoundedSemaphore, SemaphoreError};
    /// # let name = format!("doc-bsem-{}", std::process::id());
    /// let s = BoundedSemaphore::options().unlink_on_drop(true).create(&name, 1)?;
    /// assert_eq!(s.release(), Err(SemaphoreError::TooManyReleases { max: 1 }));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub struct BoundedSemaphore {
        inner: Named<SemaphoreState>,
    }

    named_handle!(
        BoundedSemaphore, SemaphoreState, "bounded semaphore", bounded_layout(),
        (name, value),
        check: check_value(name, value, SEM_VALUE_MAX),
        init: init(value, value),
        create: "Create a new named bounded semaphore with `value` permits, which is also its maximum.",
        open_or_create: "Open it, or create it with `value` permits if it does not exist."
    );
}

#[cfg(all(test, not(loom)))] // plain tests: loom atomics work only inside a model
mod tests {
    use super::*;

    #[test]
    fn python_value_rules() {
        assert!(SemaphoreState::new(SEM_VALUE_MAX).is_ok());
        assert!(matches!(
            SemaphoreState::new(SEM_VALUE_MAX + 1),
            Err(SemaphoreError::InvalidValue { .. })
        ));
        let s = SemaphoreState::new(SEM_VALUE_MAX - 1).unwrap();
        s.release().unwrap();
        assert_eq!(
            s.release(),
            Err(SemaphoreError::TooManyReleases { max: SEM_VALUE_MAX })
        );
        let b = SemaphoreState::bounded(0).unwrap();
        assert_eq!(
            b.acquire_timeout(Duration::from_millis(1)),
            Err(SemaphoreError::Timeout)
        );
    }

    #[test]
    fn release_n_adds_all_or_nothing() {
        let s = SemaphoreState::new(0).unwrap();
        s.release_n(SEM_VALUE_MAX).unwrap();
        assert_eq!(s.value(), SEM_VALUE_MAX);
        assert_eq!(
            s.release_n(1),
            Err(SemaphoreError::TooManyReleases { max: SEM_VALUE_MAX })
        );
        let b = SemaphoreState::bounded(3).unwrap();
        b.try_acquire().unwrap();
        b.try_acquire().unwrap();
        assert_eq!(
            b.release_n(3),
            Err(SemaphoreError::TooManyReleases { max: 3 })
        );
        assert_eq!(b.value(), 1); // none released
        b.release_n(0).unwrap();
        assert_eq!(b.value(), 1);
        b.release_n(2).unwrap();
        assert_eq!(b.value(), 3);
    }

    /// One `release_n(n)` lets `n` parked waiters through (each one is woken or finds its
    /// permit at its next slice; the test waits without a time bound).
    #[test]
    fn release_n_wakes_n_waiters() {
        let s = SemaphoreState::new(0).unwrap();
        std::thread::scope(|sc| {
            let waiters: Vec<_> = (0..3).map(|_| sc.spawn(|| s.acquire())).collect();
            while s.sleepers() < 3 {
                std::thread::yield_now();
            }
            s.release_n(3).unwrap();
            for w in waiters {
                w.join().unwrap().unwrap();
            }
        });
        assert_eq!(s.value(), 0);
    }

    #[test]
    fn corrupt_value_is_an_error() {
        let s = SemaphoreState::bounded(1).unwrap();
        s.value.store(5, Ordering::Relaxed);
        assert!(matches!(s.try_acquire(), Err(SemaphoreError::Corrupt(_))));
        assert!(matches!(s.release(), Err(SemaphoreError::Corrupt(_))));
        // SAFETY: a valid, aligned state.
        assert!(unsafe { SemaphoreState::from_ptr(&s) }.is_err());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::SemaphoreState;
    use loom::sync::atomic::{AtomicU32, Ordering};
    use loom::sync::Arc;

    /// Two takers, one permit: never more than one inside, and the release is not lost (the
    /// second taker always gets in).
    #[test]
    fn one_permit_two_takers() {
        loom::model(|| {
            let s = Arc::new(SemaphoreState::new(1).unwrap());
            let inside = Arc::new(AtomicU32::new(0));
            let worker = |s: Arc<SemaphoreState>, inside: Arc<AtomicU32>| {
                move || {
                    s.acquire().unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                    inside.fetch_sub(1, Ordering::Relaxed);
                    s.release().unwrap();
                }
            };
            let t = loom::thread::spawn(worker(s.clone(), inside.clone()));
            worker(s.clone(), inside)();
            t.join().unwrap();
            assert_eq!(s.value(), 1);
        });
    }

    /// A waiter on an empty semaphore is woken by a release from another thread.
    #[test]
    fn release_wakes_waiter() {
        loom::model(|| {
            let s = Arc::new(SemaphoreState::new(0).unwrap());
            let s2 = s.clone();
            let t = loom::thread::spawn(move || s2.acquire().unwrap());
            s.release().unwrap();
            t.join().unwrap();
            assert_eq!(s.value(), 0);
        });
    }

    /// Two waiters on an empty semaphore both get through one `release_n(2)`: its wake-up
    /// reaches both (or they see the value before parking). With exact wakes (a wake of one
    /// would leave a sleeper asleep: a deadlock).
    #[test]
    fn release_n_wakes_every_waiter() {
        crate::loom::futex::exact_wakes(|| {
            let s = Arc::new(SemaphoreState::new(0).unwrap());
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    loom::thread::spawn(move || s.acquire().unwrap())
                })
                .collect();
            s.release_n(2).unwrap();
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(s.value(), 0);
        });
    }
}
