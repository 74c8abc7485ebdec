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
//! The data copies themselves are the caller's (`os/atomic_copy.rs` on shared memory, loom
//! atomics in the model); this file holds only the sequence protocol.

use crate::loom::{fence, AtomicU64, Ordering};

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
#[cfg(not(loom))] // the cells' waits use it; under loom only the models are built
pub(crate) fn current(seq: &AtomicU64) -> u64 {
    let s = seq.load(Ordering::Relaxed);
    // Acquire fence: as in `try_read`.
    fence(Ordering::Acquire);
    s
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct Cell {
        seq: AtomicU64,
        data: [AtomicU64; 2],
    }

    fn cell() -> Arc<Cell> {
        Arc::new(Cell {
            seq: AtomicU64::new(0),
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
}
