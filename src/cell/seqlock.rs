//! The seqlock over a cell's `seq` word (`SPEC.md` §10.4), with the orderings of Boehm, "Can
//! seqlocks get along with programming language memory models?" (MSPC 2012), the same
//! protocol `examples/share_segment.rs` spells out by hand on a raw segment:
//!
//! - writer (one at a time: it holds the cell's robust lock): `seq = s | 1` (Relaxed);
//!   `fence(Release)`; the data as Relaxed atomic stores; `seq = (s | 1) + 1` (Release);
//! - reader: `s1 = seq` (Relaxed load + `fence(Acquire)`, an Acquire load that read-only
//!   mappings permit); if odd, a write is under way: no value; the data as Relaxed atomic
//!   loads; `fence(Acquire)`; `s2 = seq` (Relaxed); the copy is good iff `s1 == s2`.
//!
//! Why a good copy is never torn: if the copy read any byte a writer stored after its odd
//! store, the reader's `fence(Acquire)` after the copy synchronises with that writer's
//! `fence(Release)` after the odd store, so `s2` reads that odd value or a later one, never
//! `s1`. If `s2 == s1` (even), every byte came from writes finished before `s1` was stored
//! (`s1`'s Release store, read by the Acquire load, makes them visible) and none from a later
//! one. A 64-bit sequence never wraps.
//!
//! Recovery of a writer killed mid-write: it leaves `seq` odd (and its robust lock held by a
//! dead process). Readers see "being written" and retry or wait; the next writer takes the
//! lock with `OwnerDied`, finds `seq` odd, keeps it odd (`s | 1 == s`), writes its data and
//! stores `s + 1`: readers recover at the first complete write.
//!
//! The `changed` wake (`SPEC.md` §10.4): every write ends with `changed.notify_all()` (a
//! `WaitQueue`: the bump of its futex word, then a wake if anyone is parked), and a waiter
//! waits on `changed` for a condition over `seq` (even, and not the value it last saw;
//! [`read`]'s wait past a write under way: even). The waiter's `WaitQueue` wait snapshots the
//! futex word (Acquire), announces itself (`sleepers`), re-checks the condition and re-reads
//! the word before it sleeps (`sync/park.rs`): a write whose bump the snapshot saw is seen by
//! the re-check (the bump's Release half is after the even store; the snapshot's Acquire);
//! one whose bump came later either finds the waiter counted and wakes it, or changed the
//! word before the waiter's re-read (the SeqCst handshake of `park.rs`). Loom models:
//! `loom_wait_changed_*` below.
//!
//! The data copies themselves are the caller's (`os/atomic_copy.rs` on shared memory, loom
//! atomics in the model); this file holds the sequence protocol and its waits.

use crate::error::{Error, Result};
use crate::loom::{fence, spin_loop, AtomicU64, Ordering};
use crate::os::deadline::{self, Wait};
use crate::sync::WaitQueue;

/// Read attempts in a row before a reader that keeps meeting writes waits on `changed`.
#[cfg(not(loom))]
const READ_SPINS: u32 = 64;
/// Under loom every attempt is a scheduling point: keep the model small.
#[cfg(loom)]
const READ_SPINS: u32 = 1;

/// Write under the seqlock: mark the write begun, run `copy` (the data stores, Relaxed
/// atomics), mark it done. The caller holds the writer lock. Returns the new (even) sequence.
pub(crate) fn write(seq: &AtomicU64, copy: impl FnOnce()) -> u64 {
    // Relaxed: only the writer-lock holder stores `seq`, and the lock's acquisition ordered
    // this after the previous writer's last store.
    let odd = seq.load(Ordering::Relaxed) | 1;
    // Relaxed: the fence below orders it before the data stores.
    seq.store(odd, Ordering::Relaxed);
    // Release fence: pairs with the reader's fence(Acquire) after its copy (in `try_read`):
    // a reader whose copy saw any store below then reads `odd` or later as `s2`.
    fence(Ordering::Release);
    copy();
    let even = odd.wrapping_add(1);
    // Release: pairs with the reader's Acquire (load + fence) of `s1` in `try_read`: a reader
    // that reads `even` sees every data store above.
    seq.store(even, Ordering::Release);
    even
}

/// [`write`], then wake everyone waiting on `changed` (`wait_changed`, and readers waiting
/// past a write under way): what every seqlock write does. Returns the new (even) sequence.
#[inline]
pub(crate) fn write_and_wake(seq: &AtomicU64, changed: &WaitQueue, copy: impl FnOnce()) -> u64 {
    let even = write(seq, copy);
    // After the even store: a waiter that sees the bump (its Acquire snapshot pairs with the
    // bump's Release half) sees the even sequence; one that does not is woken.
    changed.notify_all();
    even
}

/// One read attempt: `Some(seq)` with the sequence the copy is consistent with, or `None`
/// if a write was under way or overlapped `copy` (throw the copy away).
pub(crate) fn try_read(seq: &AtomicU64, copy: impl FnOnce()) -> Option<u64> {
    // Relaxed + fence(Acquire): an Acquire load (permitted on read-only mappings); pairs with
    // the writer's Release store of the even sequence in `write`.
    let s1 = seq.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    if s1 & 1 != 0 {
        return None;
    }
    copy();
    // Acquire fence: pairs with the writer's fence(Release) after its odd store (see `write`).
    fence(Ordering::Acquire);
    // Relaxed: ordered after the copy by the fence above.
    let s2 = seq.load(Ordering::Relaxed);
    (s1 == s2).then_some(s1)
}

/// The current sequence, Acquire (as `try_read` loads it): even when no write is under way.
pub(crate) fn current(seq: &AtomicU64) -> u64 {
    let s = seq.load(Ordering::Relaxed);
    // Acquire fence: as in `try_read`.
    fence(Ordering::Acquire);
    s
}

/// A consistent read (`copy`: the data as Relaxed atomic loads; thrown away and run again
/// after a failed attempt): `READ_SPINS` attempts in a row, then a wait on `changed` until
/// `seq` is even, and again; the sequence the copy is consistent with. A `try_` read
/// (`Wait::No`) makes one attempt (`WouldBlock`); past its deadline, a round of failed
/// attempts ends the read (`Timeout`): the wait ends at once whenever `seq` is even, so a
/// sequence that keeps changing (writers in a row, or a peer writing `seq` at random) would
/// otherwise keep the reader past it.
pub(crate) fn read(
    seq: &AtomicU64,
    changed: &WaitQueue,
    mut copy: impl FnMut(),
    wait: Wait,
) -> Result<u64> {
    let deadline = match wait {
        Wait::No => return try_read(seq, copy).ok_or(Error::WouldBlock),
        Wait::Until(d) => d,
    };
    loop {
        for _ in 0..READ_SPINS {
            if let Some(s) = try_read(seq, &mut copy) {
                return Ok(s);
            }
            spin_loop();
        }
        if deadline::passed(deadline) {
            return Err(Error::Timeout);
        }
        // A write is under way (or its writer died mid-write: then the next writer's write,
        // which wakes us, is what we wait for).
        changed.wait_until_within(|| current(seq) & 1 == 0, deadline)?;
    }
}

/// `wait_changed`: wait on `changed` until `seq` is even and not `last`, then [`read`] the
/// data (`copy`); the sequence it is consistent with. A read that finds `seq` back at `last`
/// (a peer moved it back between the two looks) waits again, unless the deadline has passed
/// (`Timeout`); a `try_` call (`Wait::No`) looks once (`WouldBlock`).
pub(crate) fn wait_changed(
    seq: &AtomicU64,
    changed: &WaitQueue,
    last: u64,
    mut copy: impl FnMut(),
    wait: Wait,
) -> Result<u64> {
    let moved = || {
        let s = current(seq);
        s & 1 == 0 && s != last
    };
    // `try_`: one look (a passed deadline checks once), reported as WouldBlock.
    let (deadline, no_wait) = match wait {
        Wait::No => (Some(std::time::Instant::now()), true),
        Wait::Until(d) => (d, false),
    };
    loop {
        match changed.wait_until_within(moved, deadline) {
            Err(_) if no_wait => return Err(Error::WouldBlock),
            r => r?,
        }
        let s = read(seq, changed, &mut copy, wait)?;
        if s != last {
            return Ok(s);
        }
        // The wait above ends at once while `seq` is elsewhere, even past the deadline: look
        // at it here; `try_` gives up.
        if no_wait {
            return Err(Error::WouldBlock);
        }
        if deadline::passed(deadline) {
            return Err(Error::Timeout);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct Cell {
        seq: AtomicU64,
        changed: WaitQueue,
        data: [AtomicU64; 2],
    }

    fn cell() -> Arc<Cell> {
        Arc::new(Cell {
            seq: AtomicU64::new(0),
            changed: WaitQueue::new(),
            data: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    fn put(c: &Cell, v: u64) {
        for w in &c.data {
            w.store(v, Ordering::Relaxed);
        }
    }

    fn get(c: &Cell) -> Option<(u64, [u64; 2])> {
        let mut out = [0u64; 2];
        let s = try_read(&c.seq, || {
            for (o, w) in out.iter_mut().zip(&c.data) {
                *o = w.load(Ordering::Relaxed);
            }
        })?;
        Some((s, out))
    }

    /// A reader racing two writes never accepts a torn copy, and an accepted copy matches the
    /// sequence it was read at (0: initial, 2: first write, 4: second).
    #[test]
    fn loom_seqlock_reader_never_accepts_a_torn_value() {
        loom::model(|| {
            let c = cell();
            let w = {
                let c = c.clone();
                loom::thread::spawn(move || {
                    write(&c.seq, || put(&c, 1));
                    write(&c.seq, || put(&c, 2));
                })
            };
            if let Some((s, [a, b])) = get(&c) {
                assert_eq!(a, b, "torn copy at seq {s}");
                assert_eq!(a, s / 2, "copy does not match its sequence");
            }
            w.join().unwrap();
            assert_eq!(get(&c), Some((4, [2, 2])));
        });
    }

    /// A writer that dies after its odd store and half its data (modelled: it stops there)
    /// leaves the cell unreadable; the next writer's write makes it readable and whole, and a
    /// reader racing that recovery never accepts the dead writer's half.
    #[test]
    fn loom_seqlock_next_writer_recovers_a_dead_one() {
        loom::model(|| {
            let c = cell();
            // The dead writer: odd store, fence, one of two words, then nothing.
            c.seq.store(1, Ordering::Relaxed);
            fence(Ordering::Release);
            c.data[0].store(7, Ordering::Relaxed);
            assert_eq!(get(&c), None);
            let w = {
                let c = c.clone();
                loom::thread::spawn(move || {
                    assert_eq!(write(&c.seq, || put(&c, 9)), 2);
                })
            };
            if let Some((s, [a, b])) = get(&c) {
                assert_eq!((s, a, b), (2, 9, 9));
            }
            w.join().unwrap();
            assert_eq!(get(&c), Some((2, [9, 9])));
        });
    }

    /// `wait_changed` from sequence `last`, without a deadline: the sequence and the copy.
    fn wait_from(c: &Cell, last: u64) -> (u64, [u64; 2]) {
        let mut out = [0u64; 2];
        let copy = || {
            for (o, w) in out.iter_mut().zip(&c.data) {
                *o = w.load(Ordering::Relaxed);
            }
        };
        let s = wait_changed(&c.seq, &c.changed, last, copy, Wait::Until(None)).unwrap();
        (s, out)
    }

    /// A waiter that saw sequence 0 and two writes after it, each followed by its wake
    /// (`write_and_wake`), futex wakes exact: the waiter is always woken (a lost wake-up,
    /// after the first write or, for a read that met the second write under way, after the
    /// second, is a deadlock), and returns a whole value of one of the two writes with its
    /// sequence, never a torn copy.
    #[test]
    fn loom_wait_changed_is_woken_by_a_later_write() {
        crate::loom::futex::exact_wakes(|| {
            let c = cell();
            let w = {
                let c = c.clone();
                loom::thread::spawn(move || {
                    write_and_wake(&c.seq, &c.changed, || put(&c, 1));
                    write_and_wake(&c.seq, &c.changed, || put(&c, 2));
                })
            };
            let got = wait_from(&c, 0);
            assert!(
                matches!(got, (2, [1, 1]) | (4, [2, 2])),
                "wait_changed returned {got:?}"
            );
            w.join().unwrap();
        });
    }

    /// A writer killed mid-write leaves `seq` odd and half its data; a waiter that saw the
    /// sequence before (0) waits through it and is woken by the next writer's write, which
    /// recovers the cell (futex wakes exact: a lost wake-up is a deadlock); it returns that
    /// write's whole value, never the dead writer's half.
    #[test]
    fn loom_wait_changed_past_a_dead_writer() {
        crate::loom::futex::exact_wakes(|| {
            let c = cell();
            // The dead writer: odd store, fence, one of two words, then nothing.
            c.seq.store(1, Ordering::Relaxed);
            fence(Ordering::Release);
            c.data[0].store(7, Ordering::Relaxed);
            let w = {
                let c = c.clone();
                loom::thread::spawn(move || {
                    assert_eq!(write_and_wake(&c.seq, &c.changed, || put(&c, 9)), 2);
                })
            };
            assert_eq!(wait_from(&c, 0), (2, [9, 9]));
            w.join().unwrap();
        });
    }
}
