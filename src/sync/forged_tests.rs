//! Random runs of every non-blocking and timed call of the named primitives (lock, rlock,
//! semaphores, barrier, condition, event) interleaved with forged words of their state
//! (owner words: none, our own live token, dead, huge; counts, generations, grants, wait
//! queues, magic and depth words) and of the segment header (seen by re-opens and
//! `inspect`). Debug builds (`cargo test --lib`) check overflow and alignment.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{
    inspect, Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
};
use crate::forged::{owner_word, Peer, Rng};
use crate::segment::HEADER_SIZE;

const STATE: u64 = HEADER_SIZE as u64;

enum Obj {
    Lock(Lock),
    RLock(RLock),
    Sem(Semaphore),
    Bounded(BoundedSemaphore),
    Barrier(Barrier),
    Cond(Condition),
    Event(Event),
}

impl Obj {
    fn create(kind: u64, name: &str, rng: &mut Rng) -> Obj {
        let n = rng.below(4) as u32;
        match kind {
            0 => Obj::Lock(Lock::create(name).unwrap()),
            1 => Obj::RLock(RLock::create(name).unwrap()),
            2 => Obj::Sem(Semaphore::create(name, n).unwrap()),
            3 => Obj::Bounded(BoundedSemaphore::create(name, n + 1).unwrap()),
            4 => Obj::Barrier(Barrier::create(name, 1 + n % 2).unwrap()),
            5 => Obj::Cond(Condition::create(name).unwrap()),
            _ => Obj::Event(Event::create(name).unwrap()),
        }
    }

    fn open(&self, name: &str) -> crate::Result<Obj> {
        Ok(match self {
            Obj::Lock(_) => Obj::Lock(Lock::open(name)?),
            Obj::RLock(_) => Obj::RLock(RLock::open(name)?),
            Obj::Sem(_) => Obj::Sem(Semaphore::open(name)?),
            Obj::Bounded(_) => Obj::Bounded(BoundedSemaphore::open(name)?),
            Obj::Barrier(_) => Obj::Barrier(Barrier::open(name)?),
            Obj::Cond(_) => Obj::Cond(Condition::open(name)?),
            Obj::Event(_) => Obj::Event(Event::open(name)?),
        })
    }

    /// Bytes of the state, and whether a lock's 8-byte owner word is at +8.
    fn state(&self) -> (u64, bool) {
        match self {
            Obj::Lock(_) | Obj::RLock(_) => (32, true),
            Obj::Cond(_) => (48, true),
            Obj::Sem(_) | Obj::Bounded(_) => (16, false),
            Obj::Barrier(_) => (24, false),
            Obj::Event(_) => (8, false),
        }
    }
}

fn forge(rng: &mut Rng, p: &Peer, obj: &Obj) {
    let (size, owner) = obj.state();
    if rng.below(8) == 0 {
        // The segment header (seen by re-opens and inspect).
        let at = 8 * rng.below(HEADER_SIZE as u64 / 8);
        rng.forge_word(p.word(at));
        return;
    }
    if owner && rng.below(4) == 0 {
        crate::forged::held_here(rng, p, STATE);
        return;
    }
    if owner && rng.below(3) == 0 {
        p.word(STATE + 8).store(owner_word(rng), Ordering::Release);
        return;
    }
    let w = p.word32(STATE + 4 * rng.below(size / 4));
    let old = w.load(Ordering::Relaxed);
    let new = match rng.below(7) {
        // This thread's number (a lock's `thread` word: with our token in the owner word,
        // the lock reads as ours).
        6 => super::robust::thread_number(),
        0 => 0,
        1 => u32::MAX - rng.below(3) as u32,
        2 => old ^ (1 << 31),
        3 => std::process::id(),
        4 => rng.below(8) as u32,
        _ => rng.forge(u64::from(old)) as u32,
    };
    w.store(new, Ordering::Release);
}

/// Calls on `obj`; `Ok`/typed errors are all fine, the return within the timeouts is what
/// counts. `true`: it succeeded.
fn step(rng: &mut Rng, obj: &Obj) -> bool {
    let short = Duration::from_millis(1);
    let t = rng.below(2) == 0;
    match obj {
        Obj::Lock(l) => {
            let _ = (l.is_locked(), l.owner(), l.is_not_recoverable());
            if rng.below(5) == 0 {
                return l.adopt().is_ok();
            }
            let got = if t {
                l.try_lock().map(drop_guard(rng)).err()
            } else {
                l.lock_timeout(short).map(drop_guard(rng)).err()
            };
            settle(rng, got)
        }
        Obj::RLock(l) => {
            let _ = (
                l.depth(),
                l.is_locked(),
                l.owner(),
                l.is_held_by_current_thread(),
            );
            let _ = l.is_not_recoverable();
            match rng.below(5) {
                0 => l.release().is_ok(),
                1 => l.adopt().map(drop).is_ok(),
                _ => {
                    let g = if t {
                        l.try_lock()
                    } else {
                        l.lock_timeout(short)
                    };
                    match g {
                        Ok(g) => {
                            // Nested, then released in turn (or leaked now and then).
                            let inner = l.try_lock();
                            if rng.below(6) == 0 {
                                std::mem::forget(inner);
                                g.leak();
                            }
                            true
                        }
                        Err(LockError::OwnerDied(mut g)) => {
                            let _ = (g.previous_owner(), g.make_consistent());
                            true
                        }
                        Err(_) => false,
                    }
                }
            }
        }
        Obj::Sem(s) => sem_step(rng, s, t, short),
        Obj::Bounded(s) => sem_step(rng, s, t, short),
        Obj::Barrier(b) => {
            let _ = (b.is_broken(), b.parties(), b.n_waiting(), b.generation());
            match rng.below(6) {
                0 => {
                    b.reset();
                    true
                }
                1 => {
                    b.abort();
                    true
                }
                2 => b
                    .wait_interruptible(Some(Instant::now() + short), || rng.below(2) == 0)
                    .is_ok(),
                _ => b.wait_timeout(short).is_ok(),
            }
        }
        Obj::Cond(c) => {
            let _ = (c.sequence(), c.sleepers(), c.waiters(), c.granted());
            let g = if t {
                c.try_lock()
            } else {
                c.lock_timeout(short)
            };
            let g = match g {
                Ok(g) => g,
                Err(LockError::OwnerDied(mut g)) => {
                    let _ = g.make_consistent();
                    g
                }
                Err(_) => return false,
            };
            match rng.below(5) {
                0 => {
                    c.notify(&g, rng.below(3) as u32);
                    c.notify_all(&g);
                    true
                }
                1 => c.wait_timeout(g, short).is_ok(),
                2 => c.wait_for_timeout(g, || rng.below(4) == 0, short).is_ok(),
                3 => {
                    let mut ticket = c.release_for_wait(g);
                    let r = if t {
                        c.try_wait_released(&mut ticket).is_ok()
                    } else {
                        c.wait_released_timeout(&mut ticket, short).is_ok()
                    };
                    drop(ticket);
                    r
                }
                _ => {
                    drop(g);
                    true
                }
            }
        }
        Obj::Event(e) => {
            let _ = (e.is_set(), e.generation(), e.sleepers());
            match rng.below(6) {
                0 => {
                    e.set();
                    true
                }
                1 => {
                    e.clear();
                    true
                }
                2 => e.try_wait().is_ok(),
                3 => e.wait_timeout(short).is_ok(),
                _ => {
                    let ticket = e.ticket();
                    if t {
                        e.try_wait_since(ticket).is_ok()
                    } else {
                        e.wait_since_timeout(ticket, short).is_ok()
                    }
                }
            }
        }
    }
}

/// What to do with a guard just taken: drop it, or leak it now and then (a later `adopt`
/// takes it back).
fn drop_guard(rng: &mut Rng) -> impl FnOnce(super::LockGuard<'_>) + '_ {
    move |g| {
        if rng.below(8) == 0 {
            g.leak();
        }
    }
}

/// The error of a lock call: a dead owner's guard is repaired or released unrepaired.
fn settle(rng: &mut Rng, e: Option<LockError<super::LockGuard<'_>>>) -> bool {
    match e {
        None => true,
        Some(LockError::OwnerDied(mut g)) => {
            let _ = g.previous_owner();
            if rng.below(2) == 0 {
                let _ = g.make_consistent();
            } else {
                g.release_unrepaired();
            }
            true
        }
        Some(_) => false,
    }
}

fn sem_step(rng: &mut Rng, s: &super::SemaphoreState, t: bool, short: Duration) -> bool {
    let _ = (s.value(), s.max_value(), s.initial_value(), s.sleepers());
    match rng.below(5) {
        0 => s.release().is_ok(),
        1 => s
            .release_n([0, 1, 2, u32::MAX, 1 << 31][rng.below(5) as usize])
            .is_ok(),
        _ if t => s.try_acquire().is_ok(),
        _ => s.acquire_timeout(short).is_ok(),
    }
}

/// Whatever a hostile writer stores in a named primitive's state or header between calls
/// (owner words of none, our own live token, dead or huge values; counts, generations,
/// grants, wait-queue words, magic and depth words), every `try_` call returns at once and
/// every timed call within its timeout (a condition's re-lock within its grace): no panic,
/// no overflow, no access outside the object. Re-opens and `inspect` read forged headers.
#[test]
fn forged_sync_words_never_panic_or_hang() {
    crate::forged::seeded(0xa54f_f53a_5f1d_36f1, |mut rng| {
        let mut tally = [0u64; 2];
        let started = Instant::now();
        for round in 0..140u64 {
            let name = format!("t-sync-forged-{}-{round}", std::process::id());
            let _remove = crate::forged::RemoveOnDrop(name.clone());
            let mut obj = Obj::create(round % 7, &name, &mut rng);
            let p = Peer::new(&name);
            for _ in 0..120 {
                match rng.below(10) {
                    0..=5 => {
                        let ok = step(&mut rng, &obj);
                        tally[ok as usize] += 1;
                    }
                    6 => {
                        let _ = inspect(&name);
                    }
                    7 => {
                        if let Ok(o) = obj.open(&name) {
                            obj = o;
                        }
                    }
                    _ => forge(&mut rng, &p, &obj),
                }
            }
        }
        eprintln!("failed, succeeded: {tally:?} in {:?}", started.elapsed());
        assert!(
            tally.iter().all(|&n| n > 100),
            "a run that tried little: {tally:?}"
        );
    });
}
