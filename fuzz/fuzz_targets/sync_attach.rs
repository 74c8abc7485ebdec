//! Every reader path of the named synchronisation primitives — `shmkit::sync::inspect` (what
//! `shmkit info` uses), `open`, and the non-blocking or timed operations — on an object whose
//! header is valid (the library wrote it) but whose state another process overwrote with
//! arbitrary bytes: each call returns a value or an error, never a panic, an out-of-bounds
//! access or a hang.
//!
//! Every byte of every state is shmkit's own (the locks are futex words, SPEC.md §6.2), so the
//! hostile bytes may cover the whole state.
//!
//! Input: byte 0 chooses the primitive and its creation parameter; byte 1 the number of
//! operations, which follow (one byte each); the rest overwrites the state. The seed corpus
//! (`fuzz/corpus/sync_attach/seed-*`, from `tests/fuzz_seeds.rs`) holds valid states of every
//! primitive in this format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::sync::{
    Barrier, BarrierState, BoundedSemaphore, Condition, ConditionState, Event, EventState, Lock,
    LockState, RLock, RLockState, Semaphore, SemaphoreState,
};
use shmkit_fuzz::{Scratch, TINY};
use std::mem::size_of;
use std::time::Duration;

fn lock_ops(name: &str, ops: &[u8]) {
    let Ok(l) = Lock::open(name) else { return };
    let _ = (l.is_locked(), l.owner(), l.is_not_recoverable());
    for &op in ops {
        let r = match op % 3 {
            0 => l.try_lock(),
            1 => l.lock_timeout(TINY),
            _ => l.lock_deadline(std::time::Instant::now()),
        };
        match r {
            Ok(g) => {
                let _ = (l.is_locked(), l.owner());
                // A second lock by the holder fails instead of deadlocking.
                assert!(l.try_lock().is_err());
                drop(g);
            }
            Err(shmkit::sync::LockError::OwnerDied(mut g)) => {
                let _ = g.previous_owner();
                if op & 0x10 != 0 {
                    let _ = g.make_consistent();
                }
            }
            Err(_) => {}
        }
        let _ = (shmkit::sync::inspect(name), l.is_locked(), l.owner());
    }
}

fn rlock_ops(name: &str, ops: &[u8]) {
    let Ok(l) = RLock::open(name) else { return };
    let _ = (
        l.is_locked(),
        l.owner(),
        l.depth(),
        l.is_held_by_current_thread(),
    );
    // Without a guard, by a thread that (really) does not hold it.
    let _ = l.release();
    for &op in ops {
        let r = match op % 2 {
            0 => l.try_lock(),
            _ => l.lock_timeout(TINY),
        };
        if let Ok(g) = r {
            // Recursion: a second level, released first.
            let g2 = l.try_lock();
            let _ = (l.depth(), l.is_held_by_current_thread(), l.owner());
            drop(g2);
            drop(g);
        }
        let _ = (shmkit::sync::inspect(name), l.depth(), l.is_locked());
    }
}

fn condition_ops(name: &str, ops: &[u8]) {
    let Ok(c) = Condition::open(name) else { return };
    let _ = (
        c.sequence(),
        c.sleepers(),
        c.waiters(),
        c.granted(),
        c.as_lock().is_locked(),
    );
    for &op in ops {
        let g = match op % 2 {
            0 => c.as_lock().try_lock(),
            _ => c.lock_timeout(TINY),
        };
        if let Ok(g) = g {
            c.notify(&g, u32::from(op >> 4));
            c.notify_all(&g);
            if let Ok(g) = c
                .wait_timeout(g, TINY)
                .map_err(|e| e.into_guard())
                .or_else(|g| g.ok_or(()))
            {
                if op & 0x40 != 0 {
                    // The two-step wait of a caller that re-locks itself: a ticket taken,
                    // looked at, waited on and dropped (its grant counts).
                    let mut t = c.release_for_wait(g);
                    let _ = c.try_wait_released(&mut t);
                    let _ = c.wait_released_timeout(&mut t, TINY);
                    let _ = t.is_notified();
                } else {
                    let _ = c.wait_for_timeout(g, || op & 0x80 != 0, TINY);
                }
            }
        }
        let _ = (shmkit::sync::inspect(name), c.sequence(), c.sleepers());
    }
}

fn semaphore_ops<S>(s: &S, name: &str, ops: &[u8])
where
    S: std::ops::Deref<Target = shmkit::sync::SemaphoreState>,
{
    let _ = (s.value(), s.max_value(), s.initial_value(), s.sleepers());
    for &op in ops {
        let _ = match op % 4 {
            0 => s.try_acquire(),
            1 => s.acquire_timeout(TINY),
            2 => s.acquire_timeout(Duration::ZERO),
            _ => s.release(),
        };
        let _ = (shmkit::sync::inspect(name), s.value(), s.sleepers());
    }
}

fn event_ops(name: &str, ops: &[u8]) {
    let Ok(e) = Event::open(name) else { return };
    let _ = (e.is_set(), e.generation(), e.sleepers());
    for &op in ops {
        match op % 4 {
            0 => e.set(),
            1 => e.clear(),
            2 => {
                let _ = e.wait_timeout(TINY);
            }
            _ => {
                let _ = e.try_wait();
            }
        }
        let _ = (shmkit::sync::inspect(name), e.is_set(), e.generation());
    }
}

fn barrier_ops(name: &str, ops: &[u8]) {
    let Ok(b) = Barrier::open(name) else { return };
    let _ = (b.parties(), b.n_waiting(), b.is_broken(), b.generation());
    for &op in ops {
        match op % 4 {
            0 | 1 => {
                let _ = b.wait_timeout(TINY);
            }
            2 => b.reset(),
            _ => b.abort(),
        }
        let _ = (shmkit::sync::inspect(name), b.n_waiting(), b.is_broken());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let kind = data[0] % 7;
    let param = u32::from(data[0] / 7); // 0..=36
    let nops = (data[1] % 16) as usize;
    let ops = &data[2..(2 + nops).min(data.len())];
    let hostile = &data[(2 + nops).min(data.len())..];
    let scratch = Scratch::new("fuzz-s-");
    let name = scratch.name();
    let (created, state_len) = match kind {
        0 => (Lock::create(name).map(drop), size_of::<LockState>()),
        1 => (RLock::create(name).map(drop), size_of::<RLockState>()),
        2 => (
            Condition::create(name).map(drop),
            size_of::<ConditionState>(),
        ),
        3 => (
            Semaphore::create(name, param).map(drop),
            size_of::<SemaphoreState>(),
        ),
        4 => (
            BoundedSemaphore::create(name, param).map(drop),
            size_of::<SemaphoreState>(),
        ),
        5 => (Event::create(name).map(drop), size_of::<EventState>()),
        _ => (
            Barrier::create(name, param.max(1)).map(drop),
            size_of::<BarrierState>(),
        ),
    };
    if created.is_ok() {
        scratch.corrupt(0, state_len, hostile);
        let _ = shmkit::sync::inspect(name);
        match kind {
            0 => lock_ops(name, ops),
            1 => rlock_ops(name, ops),
            2 => condition_ops(name, ops),
            3 => {
                if let Ok(s) = Semaphore::open(name) {
                    semaphore_ops(&s, name, ops);
                }
            }
            4 => {
                if let Ok(s) = BoundedSemaphore::open(name) {
                    semaphore_ops(&s, name, ops);
                }
            }
            5 => event_ops(name, ops),
            _ => barrier_ops(name, ops),
        }
        let _ = shmkit::sync::inspect(name);
    }
});
