//! What `shmkit info NAME` shows for a synchronisation primitive: a read-only look at its
//! state, as a value that implements `Display` and, with feature `serde`, `serde::Serialize`
//! (for `--json`).
//!
//! Everything here is a snapshot taken without any lock: by the time it is printed it may
//! have changed.

use std::fmt;
use std::sync::atomic::{fence, Ordering};

use super::barrier::{self, BarrierState};
use super::condition::{self, ConditionState};
use super::event::{self, EventState};
use super::lock::{self, owner_of, status, LockState};
use super::named::Layout;
use super::rlock::{self, RLockState};
use super::robust::MutexCore;
use super::semaphore::{self, SemaphoreState};
use crate::error::{Error, Result};
use crate::os::atomic_copy;
use crate::os::process::Liveness;
use crate::segment::{probe, Kind};
use crate::Segment;

/// The state of a named synchronisation primitive, as `shmkit info` shows it.
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(tag = "primitive", rename_all = "kebab-case")
)]
pub enum SyncInfo {
    /// A [`Lock`](super::Lock).
    Lock(LockInfo),
    /// An [`RLock`](super::RLock).
    Rlock(LockInfo),
    /// A [`Semaphore`](super::Semaphore).
    Semaphore(SemaphoreInfo),
    /// A [`BoundedSemaphore`](super::BoundedSemaphore).
    BoundedSemaphore(SemaphoreInfo),
    /// A [`Condition`](super::Condition).
    Condition(ConditionInfo),
    /// An [`Event`](super::Event).
    Event(EventInfo),
    /// A [`Barrier`](super::Barrier).
    Barrier(BarrierInfo),
}

/// A process attached to an object (a lock holder, a queue end) and whether it still runs.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OwnerInfo {
    /// Its liveness token (`SPEC.md` §2.3).
    pub token: u64,
    /// The same token in hex, as its liveness file is named (exact for JSON readers).
    pub token_hex: String,
    /// Process id, in the process's own pid namespace.
    pub pid: u32,
    /// The holding thread's number within its process (locks only; 0 otherwise).
    pub thread: u32,
    /// Whether that process still runs.
    pub liveness: Liveness,
    /// Its pid namespace (inode of `/proc/PID/ns/pid`), from its liveness file, if known.
    pub pid_namespace: Option<u64>,
    /// Its command name, from its liveness file, if known.
    pub comm: Option<String>,
}

impl OwnerInfo {
    /// Describe the process holding `token`, recorded with `pid` and `thread`.
    pub(crate) fn new(token: u64, pid: u32, thread: u32) -> OwnerInfo {
        let rec = crate::os::liveness::record(token);
        OwnerInfo {
            token,
            token_hex: format!("{token:016x}"),
            pid: rec
                .as_ref()
                .map_or(pid, |r| if pid == 0 { r.pid } else { pid }),
            thread,
            liveness: crate::os::liveness::liveness(token),
            pid_namespace: rec.as_ref().map(|r| r.pid_ns).filter(|&n| n != 0),
            comm: rec.map(|r| r.comm).filter(|c| !c.is_empty()),
        }
    }
}

impl fmt::Display for OwnerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(c) = &self.comm {
            write!(f, " ({c})")?;
        }
        if self.thread != 0 {
            write!(f, " thread #{}", self.thread)?;
        }
        write!(f, ", {}, token {}", self.liveness, self.token_hex)
    }
}

/// A [`Lock`](super::Lock) or [`RLock`](super::RLock).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LockInfo {
    /// `unlocked`, `locked`, `owner_died_unrepaired` (held by a thread that got `OwnerDied`
    /// and has not repaired it yet), `owner_died_unknown` (handed back unrepaired after a
    /// dead owner nobody knows: the next acquirer gets `OwnerDied`), `not_recoverable`, or
    /// `invalid`.
    pub status: &'static str,
    /// Whether someone holds it.
    pub locked: bool,
    /// The recorded holder.
    pub owner: Option<OwnerInfo>,
    /// Recursion depth (1 for a held `Lock`).
    pub depth: u32,
    /// Recorded waiters (dead ones included).
    pub sleepers: u32,
}

/// A [`Semaphore`](super::Semaphore) or [`BoundedSemaphore`](super::BoundedSemaphore).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SemaphoreInfo {
    /// Free permits.
    pub value: u32,
    /// The value it was created with.
    pub initial: u32,
    /// The largest value `release` may reach.
    pub max: u32,
    /// Recorded sleepers (dead ones included).
    pub sleepers: u32,
}

/// A [`Condition`](super::Condition).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ConditionInfo {
    /// Its lock.
    pub lock: LockInfo,
    /// Notifies that granted a wake-up so far (mod 2^32).
    pub sequence: u32,
    /// Recorded sleepers on the wait word (dead ones included).
    pub sleepers: u32,
    /// Waits begun and not ended (killed waiters included).
    pub waiters: u64,
    /// Wake-ups granted and not yet taken.
    pub granted: u64,
}

/// An [`Event`](super::Event).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct EventInfo {
    /// Whether the flag is set.
    pub set: bool,
    /// Clear→set transitions so far (mod 2^31).
    pub generation: u32,
    /// Recorded sleepers (dead ones included).
    pub sleepers: u32,
}

/// A [`Barrier`](super::Barrier).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BarrierInfo {
    /// Parties needed to pass.
    pub parties: u32,
    /// Parties waiting now (dead ones included; 0 while broken).
    pub n_waiting: u32,
    /// Whether it is broken.
    pub broken: bool,
    /// Generation (mod 2^16).
    pub generation: u32,
}

pub(crate) fn lock_info(core: &MutexCore) -> LockInfo {
    let st = core.status_word();
    let status = match st {
        status::UNLOCKED => "unlocked",
        status::LOCKED => "locked",
        status::INCONSISTENT => "owner_died_unrepaired",
        status::NOT_RECOVERABLE => "not_recoverable",
        status::INVALID => "invalid",
        status::DEAD_UNKNOWN => "owner_died_unknown",
        _ => "invalid",
    };
    let locked = matches!(
        st,
        status::LOCKED | status::INCONSISTENT | status::DEAD_UNKNOWN
    );
    let owner = owner_of(core)
        .filter(|_| locked)
        .map(|o| OwnerInfo::new(o.token, o.pid, o.thread));
    LockInfo {
        status,
        locked,
        owner,
        // A leaked (guardless) hold of a `Lock` records depth 0 (SPEC §6.2): still one level.
        depth: if locked { core.depth().max(1) } else { 0 },
        sleepers: core.sleepers(),
    }
}

fn semaphore_info(s: &SemaphoreState) -> SemaphoreInfo {
    SemaphoreInfo {
        value: s.value(),
        initial: s.initial_value(),
        max: s.max_value(),
        sleepers: s.sleepers(),
    }
}

/// Map the named object read-only, copy its state out, and look at the private copy with `f`.
///
/// The mapping is `PROT_READ`, where std permits nothing but `Relaxed` loads of at most 8
/// bytes, and the state's accessors (and `layout.check`) use `Acquire` loads, so they never
/// run on the mapping: the state is copied with `Relaxed` 8-byte word loads
/// (`os::atomic_copy`) into a private `S`, and everything after that reads the copy. Each
/// aligned 8-byte word is read in one access (a `u64` field is never torn), but words are
/// read one after another, so the copy is a snapshot of each word, not of the whole state at
/// one instant (as `shmkit info` says). Checks run on the copy.
fn view<S, R>(name: &str, layout: Layout<S>, f: impl FnOnce(&S) -> R) -> Result<R> {
    let seg = Segment::options()
        .read_only()
        .kind(layout.kind, layout.fingerprint)
        .open(name)?;
    let size = std::mem::size_of::<S>();
    if seg.len() < size {
        return Err(Error::corrupt(
            name,
            format!(
                "payload is {} bytes, {} needs {size}",
                seg.len(),
                layout.kind.with_article()
            ),
        ));
    }
    let p = seg.as_ptr().cast::<S>();
    if p.align_offset(std::mem::align_of::<S>()) != 0 {
        return Err(Error::corrupt(name, "payload is misaligned"));
    }
    let mut copy = std::mem::MaybeUninit::<S>::uninit();
    // SAFETY: the source is `size` bytes in bounds (checked above) of a mapping that lives
    // while `seg` does, read with Relaxed loads only (permitted on PROT_READ memory); the
    // destination is this function's own `size`-byte `copy`.
    unsafe { atomic_copy::load(p.cast::<u8>(), copy.as_mut_ptr().cast::<u8>(), size) };
    // Acquire fence: pairs with the Release stores (and RMWs) of the processes that changed
    // the state, as the accessors' Acquire loads would on the mapping itself.
    fence(Ordering::Acquire);
    // SAFETY: every byte of `copy` was written above; `S` is a `#[repr(C)]` state of atomics,
    // valid for any bytes. It is never dropped (a `MaybeUninit`), so no destructor runs on a
    // copy of someone else's state.
    let s = unsafe { &*copy.as_ptr() };
    (layout.check)(s).map_err(|what| Error::corrupt(name, what))?;
    Ok(f(s))
}

/// The state of the synchronisation primitive named `name`, or `None` if the segment holds
/// something else (another kind, or a raw segment).
///
/// ```
/// use shmkit::sync::{inspect, Semaphore, SyncInfo};
/// # let name = format!("doc-inspect-{}", std::process::id());
/// let s = Semaphore::options().unlink_on_drop(true).create(&name, 3)?;
/// s.try_acquire().unwrap();
/// match inspect(&name)? {
///     Some(SyncInfo::Semaphore(info)) => assert_eq!((info.value, info.initial), (2, 3)),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn inspect(name: &str) -> Result<Option<SyncInfo>> {
    let Some(header) = probe(name)?.header else {
        return Ok(None);
    };
    let info = match header.kind {
        Kind::LOCK => SyncInfo::Lock(view(name, lock::layout(), |s: &LockState| {
            lock_info(&s.core)
        })?),
        Kind::RLOCK => SyncInfo::Rlock(view(name, rlock::layout(), |s: &RLockState| {
            lock_info(&s.core)
        })?),
        Kind::SEMAPHORE => SyncInfo::Semaphore(view(name, semaphore::layout(), semaphore_info)?),
        Kind::BOUNDED_SEMAPHORE => {
            SyncInfo::BoundedSemaphore(view(name, semaphore::bounded_layout(), semaphore_info)?)
        }
        Kind::CONDITION => {
            SyncInfo::Condition(view(name, condition::layout(), |c: &ConditionState| {
                ConditionInfo {
                    lock: lock_info(&c.as_lock().core),
                    sequence: c.sequence(),
                    sleepers: c.sleepers(),
                    waiters: c.waiters(),
                    granted: c.granted(),
                }
            })?)
        }
        Kind::EVENT => SyncInfo::Event(view(name, event::layout(), |e: &EventState| EventInfo {
            set: e.is_set(),
            generation: e.generation(),
            sleepers: e.sleepers(),
        })?),
        Kind::BARRIER => SyncInfo::Barrier(view(name, barrier::layout(), |b: &BarrierState| {
            BarrierInfo {
                parties: b.parties(),
                n_waiting: b.n_waiting(),
                broken: b.is_broken(),
                generation: b.generation(),
            }
        })?),
        _ => return Ok(None),
    };
    Ok(Some(info))
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.owner, self.status) {
            (Some(o), st) => {
                let st = if st == "locked" { "locked".to_string() } else { format!("locked ({st})") };
                write!(f, "{st} by {o}, depth {}", self.depth)?;
                if o.liveness == Liveness::Dead {
                    f.write_str(" (the holder is dead: the next acquirer gets OwnerDied)")?;
                }
                Ok(())
            }
            (None, "owner_died_unknown") => f.write_str(
                "locked by a dead process (unknown: released unrepaired by a successor that could \
                 not repair it): the next acquirer gets OwnerDied",
            ),
            (None, "not_recoverable") => f.write_str(
                "not recoverable: a dead owner's successor released it without make_consistent(); recreate it",
            ),
            (None, st) => f.write_str(st),
        }
    }
}

impl fmt::Display for SyncInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncInfo::Lock(l) => write!(f, "lock: {l}"),
            SyncInfo::Rlock(l) => write!(f, "rlock: {l}"),
            SyncInfo::Semaphore(s) => {
                write!(
                    f,
                    "semaphore: value {} (initial {}), {} sleeping",
                    s.value, s.initial, s.sleepers
                )
            }
            SyncInfo::BoundedSemaphore(s) => {
                write!(
                    f,
                    "bounded semaphore: value {} of at most {}, {} sleeping",
                    s.value, s.max, s.sleepers
                )
            }
            SyncInfo::Condition(c) => {
                write!(
                    f,
                    "condition: lock {}; {} notifies, {} waiting ({} notified, not yet back)",
                    c.lock, c.sequence, c.waiters, c.granted
                )
            }
            SyncInfo::Event(e) => {
                write!(
                    f,
                    "event: {}, set {} times, {} waiting",
                    if e.set { "set" } else { "clear" },
                    e.generation,
                    e.sleepers
                )
            }
            SyncInfo::Barrier(b) => write!(
                f,
                "barrier: {} parties, {} waiting, {}, generation {}",
                b.parties,
                b.n_waiting,
                if b.broken { "broken" } else { "not broken" },
                b.generation
            ),
        }
    }
}
