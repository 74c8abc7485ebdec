//! The per-item sequence word of a shmkit list's trailer (`SPEC.md` §9.4): a seqlock whose
//! writers are serialised by the trailer's writer lock, so only its readers are lock-free,
//! and the reader's way past a writer that died holding that lock (§9.6).
//!
//! The same functions run on the words of a mapping (std atomics) and, under `cfg(loom)`, in
//! the models below (loom's), through the crate's one atomics shim.

use super::trailer::NO_LEN;
use crate::loom::{fence, AtomicU64, Ordering};
use crate::sync::token_of;

/// Writer, holding the writer lock: mark the item as being written. Returns the odd value
/// stored, for [`write_end`].
#[inline]
pub(crate) fn write_begin(seq: &AtomicU64) -> u64 {
    // Relaxed: only the writer-lock holder changes a seq word (and we hold it).
    let odd = seq.load(Ordering::Relaxed) | 1;
    // Release: pairs with the fence(Acquire) after the reader's load in `load`: a reader that
    // sees `odd` also sees our acquisition of the writer lock, so its look at the lock's
    // owner word (`holder_gone`) finds us or a later holder, never the free or dead word we
    // took it from (`read`, the dead-writer path).
    seq.store(odd, Ordering::Release);
    // Release fence: pairs with the reader's fence(Acquire) in `read_end`: a reader whose
    // copy saw any store made after this fence sees `odd` (or later) at its re-check.
    fence(Ordering::Release);
    odd
}

/// Writer: the item is complete again.
#[inline]
pub(crate) fn write_end(seq: &AtomicU64, odd: u64) {
    // Release: pairs with the Acquire in `load`: a reader that sees `odd + 1` sees every
    // store of the update. Wrapping: the word is a peer's to write, and `u64::MAX` (odd) must
    // give 0, the next even value, not an overflow panic.
    seq.store(odd.wrapping_add(1), Ordering::Release);
}

/// Reader: the sequence now, with Acquire: a `Relaxed` load and a fence, the `Acquire` load
/// read-only mappings permit. Odd: a write is in progress (or its writer died).
#[inline]
pub(crate) fn load(seq: &AtomicU64) -> u64 {
    let s = seq.load(Ordering::Relaxed);
    // Acquire fence after the load: pairs with the Release stores of `write_begin` and
    // `write_end`.
    fence(Ordering::Acquire);
    s
}

/// Reader: the (even) sequence value to validate the copy against, or `None` while a write is
/// in progress.
#[inline]
pub(crate) fn read_begin(seq: &AtomicU64) -> Option<u64> {
    let s = load(seq);
    (s & 1 == 0).then_some(s)
}

/// Reader, after copying: whether no write started since [`read_begin`] returned `s1`.
#[inline]
pub(crate) fn read_end(seq: &AtomicU64, s1: u64) -> bool {
    // Acquire fence before the re-check: pairs with the fence(Release) in `write_begin`.
    fence(Ordering::Acquire);
    seq.load(Ordering::Relaxed) == s1
}

/// What [`read`] copied.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read<T> {
    /// A copy no write overlapped: a whole update (or a repaired item, whose `len` then
    /// says it has no exact length).
    Whole(T),
    /// A writer died mid-write and the caller chose to read the item as it left it (its
    /// wait returned `true` for [`Busy::Writing`]): its bytes may be part old, part new (read
    /// with Python's semantics, without the exact length), but none is a later writer's.
    Dead(T),
}

/// Why [`read`] could not copy at once: what it asks its caller's wait to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// `seq` holds this odd value: a write is under way, or its writer died. The wait
    /// returns `true` to read the item as that writer left it (a read-only handle that
    /// found it dead, [`holder_gone`]), `false` to look again (a read-write handle repairs a
    /// dead writer's items there first, under the writer lock).
    Writing(u64),
    /// A copy that a write overlapped (or a peer keeps moving `seq`): look again (the
    /// wait's answer is not used).
    Moved,
}

/// Reader: copy an item consistently (`copy`: its bytes and trailer words, Relaxed), waiting
/// out writes in progress: `wait` is called for each [`Busy`] step, and its error ends the
/// read (a `try_` read's `WouldBlock`, a deadline's `Timeout`).
///
/// The dead-writer path reads only while `seq` holds the odd value `s` it was loaded with
/// (`load`'s fence(Acquire) precedes the owner-word load in the wait, [`holder_gone`]):
/// before the look at the lock and after the copy (`read_end`). The writer that stored `s`
/// had taken the lock first, and its store is Release (`write_begin`), so the owner word
/// then read is that writer's or a later one: the lock free (or another holder's, after the
/// release) only once `s` has moved on; a dead holder's only while no later writer has
/// repaired the item, and a repair moves `seq` before any later write's bytes.
pub(crate) fn read<T, E>(
    seq: &AtomicU64,
    mut copy: impl FnMut() -> T,
    mut wait: impl FnMut(Busy) -> Result<bool, E>,
) -> Result<Read<T>, E> {
    loop {
        let s = load(seq);
        if s & 1 == 1 {
            // The odd value is the one `load` fenced: only it is ordered before the look at
            // the lock (a value loaded again here could be a later writer's, whose
            // acquisition of the lock that look need not see).
            // Relaxed: after the wait's fence(Acquire) (`holder_gone`), so a `seq` that the
            // lock's release (or a repair) moved is seen moved.
            if wait(Busy::Writing(s))? && seq.load(Ordering::Relaxed) == s {
                let c = copy();
                if read_end(seq, s) {
                    return Ok(Read::Dead(c));
                }
            }
            continue;
        }
        let c = copy();
        if read_end(seq, s) {
            return Ok(Read::Whole(c));
        }
        wait(Busy::Moved)?;
    }
}

/// Whether the writer lock's holder is gone, from its owner word (`SPEC.md` §6.2): nobody
/// holds it (while an item's `seq` is odd, which shmkit's own writers never leave behind a
/// released lock: a broken or hostile peer's doing, handled as a dead holder), or `dead`
/// says the holder's token names a dead process. A `Relaxed` load (permitted on read-only
/// mappings), then `fence(Acquire)`.
#[inline]
pub(crate) fn holder_gone(owner: &AtomicU64, dead: impl FnOnce(u64) -> bool) -> bool {
    let w = owner.load(Ordering::Relaxed);
    // Acquire fence after the load: pairs with the Release compare-exchange that unlocks
    // (`MutexCore::release_held`), so a reader that sees the lock free sees the `seq` store
    // its holder made before unlocking (`read`).
    fence(Ordering::Acquire);
    let token = token_of(w);
    token == 0 || dead(token)
}

/// Under the writer lock, taken from a dead holder (or found free while an item is odd):
/// make an item the dead writer left mid-write (`seq` odd) stable again, without an exact
/// length (`len = NO_LEN`, `check = 0`, then the end of a write). Whether it was odd.
pub(crate) fn repair(seq: &AtomicU64, len: &AtomicU64, check: &AtomicU64) -> bool {
    // Relaxed: only the writer-lock holder changes `seq`, `len` and `check`, and we hold it.
    let s = seq.load(Ordering::Relaxed);
    if s & 1 == 0 {
        return false;
    }
    // Relaxed: published by `write_end`'s Release store below.
    len.store(NO_LEN, Ordering::Relaxed);
    check.store(0, Ordering::Relaxed);
    write_end(seq, s);
    true
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use crate::sync::{Acquired, Block, Me, MutexCore};
    use loom::sync::Arc;

    /// Two updates of a two-word item (both words always equal in a complete value) against a
    /// reader: every copy the reader validates is one whole value.
    #[test]
    fn loom_a_validated_read_is_never_torn() {
        crate::queue::loom_model(|| {
            let w = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
            let writer = {
                let w = w.clone();
                loom::thread::spawn(move || {
                    for v in 1..=2u64 {
                        let odd = write_begin(&w[0]);
                        w[1].store(v, Ordering::Relaxed);
                        w[2].store(v, Ordering::Relaxed);
                        write_end(&w[0], odd);
                    }
                })
            };
            for _ in 0..2 {
                if let Some(s) = read_begin(&w[0]) {
                    let (a, b) = (w[1].load(Ordering::Relaxed), w[2].load(Ordering::Relaxed));
                    if read_end(&w[0], s) {
                        assert_eq!(a, b, "a validated copy mixed two updates");
                        assert_eq!(a, s / 2, "the copy belongs to its sequence value");
                    }
                }
            }
            writer.join().unwrap();
            let s = read_begin(&w[0]).expect("stable after the writer");
            assert_eq!((s, w[1].load(Ordering::Relaxed)), (4, 2));
        });
    }

    /// The writer that dies (its token is reported dead), and the one that recovers.
    const DEAD: Me = Me {
        token: 9,
        thread: 1,
        pid: 90,
    };
    const NEXT: Me = Me {
        token: 5,
        thread: 1,
        pid: 50,
    };

    fn dead(token: u64) -> bool {
        token == DEAD.token
    }

    /// One item of a list with a trailer: its entry words and a slot of two words. A whole
    /// value `v` is both words `v` and `len = v` (standing for its exact length).
    struct Item {
        lock: MutexCore,
        seq: AtomicU64,
        len: AtomicU64,
        check: AtomicU64,
        data: [AtomicU64; 2],
    }

    /// The list's writer: an update of the item to `v` under the lock it holds (`set`'s steps).
    fn put(it: &Item, v: u64) {
        let odd = write_begin(&it.seq);
        for w in &it.data {
            w.store(v, Ordering::Relaxed);
        }
        it.len.store(v, Ordering::Relaxed);
        write_end(&it.seq, odd);
    }

    /// An item holding 1 whose writer took the lock, began an update to 7, stored one of the
    /// two words and died (modelled: it stops there, and its token is dead from then on).
    fn killed_mid_write() -> Arc<Item> {
        let it = Arc::new(Item {
            lock: MutexCore::new(1),
            seq: AtomicU64::new(0),
            len: AtomicU64::new(0),
            check: AtomicU64::new(0),
            data: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        put(&it, 1);
        it.lock.acquire(DEAD, Block::No, false, &|_| false).unwrap();
        write_begin(&it.seq);
        it.data[0].store(7, Ordering::Relaxed);
        it
    }

    /// The next writer: waits for the lock, takes it over from the dead writer (`OwnerDied`)
    /// and repairs the item (`repair`, as `repair_items` does), unless a reader that repairs
    /// took it over first and released it; then writes 2 and unlocks (`set`'s steps).
    fn recover_and_write(it: &Item) {
        match it.lock.acquire(NEXT, Block::Until(None), false, &dead) {
            Ok(Acquired::OwnerDied { .. }) => {
                assert!(repair(&it.seq, &it.len, &it.check));
                it.lock.make_consistent(NEXT).unwrap();
            }
            Ok(Acquired::Ok) => {}
            Err(e) => panic!("{e:?}"),
        }
        put(it, 2);
        it.lock.release_held(NEXT.token);
    }

    /// `read`'s copy: the two words and `len`.
    fn copy(it: &Item) -> [u64; 3] {
        [
            it.data[0].load(Ordering::Relaxed),
            it.data[1].load(Ordering::Relaxed),
            it.len.load(Ordering::Relaxed),
        ]
    }

    /// What a reader may return: the dead writer's bytes as it left them (part new, part
    /// old; read without the exact length), the repaired item (the same bytes, no exact
    /// length), or the recovering writer's whole value; never a mix with that writer's.
    fn check_read(r: &Read<[u64; 3]>) {
        match *r {
            Read::Dead([7, 1, _]) | Read::Whole([7, 1, NO_LEN]) | Read::Whole([2, 2, 2]) => {}
            ref other => panic!("the reader accepted {other:?}"),
        }
    }

    /// A reader that cannot repair (a read-only handle): one wait step of `read` for an odd
    /// `seq`, as `ReadWait::writer_gone` takes it (yielding where it spins).
    fn read_only(it: &Item) -> Read<[u64; 3]> {
        let wait = |busy| {
            let gone = busy != Busy::Moved && holder_gone(&it.lock.owner, dead);
            if !gone {
                crate::loom::spin_loop();
            }
            Ok::<_, ()>(gone)
        };
        read(&it.seq, || copy(it), wait).unwrap()
    }

    /// A writer dies mid-write holding the list's lock; the next writer takes the lock over,
    /// repairs the item and writes it whole, while a read-only reader reads the item. The
    /// reader never accepts a copy holding any of the recovering writer's bytes unless it is
    /// that whole value (in particular, it never takes the recovering writer's odd `seq` for
    /// the dead writer's: the look at the lock then finds the new holder), and it returns
    /// (loom reports a reader that would spin for ever); once the writer is done it reads its
    /// value.
    #[test]
    fn loom_a_list_reader_past_a_dead_writer_never_takes_the_next_ones_half() {
        crate::queue::loom_model(|| {
            let it = killed_mid_write();
            let w = {
                let it = it.clone();
                loom::thread::spawn(move || recover_and_write(&it))
            };
            check_read(&read_only(&it));
            w.join().unwrap();
            assert_eq!(read_only(&it), Read::Whole([2, 2, 2]));
        });
    }

    /// A reader on a read-write handle repairs a dead writer's item itself, as
    /// `ReadWait::writer_gone` does (it takes the lock without waiting: over from the dead
    /// holder, or free while the item is odd; a live holder is left alone), racing the next
    /// writer for the takeover. Whichever repairs, the reader returns the repaired item or
    /// the new value, never a half, and the writer's value is there once it is done.
    #[test]
    fn loom_a_list_reader_that_repairs_races_the_next_writer() {
        crate::queue::loom_model(|| {
            let it = killed_mid_write();
            let w = {
                let it = it.clone();
                loom::thread::spawn(move || recover_and_write(&it))
            };
            let me = Me {
                token: 6,
                thread: 1,
                pid: 60,
            };
            let wait = |busy| {
                if busy != Busy::Moved && holder_gone(&it.lock.owner, dead) {
                    match it.lock.acquire(me, Block::No, false, &dead) {
                        Ok(was) => {
                            let odd = repair(&it.seq, &it.len, &it.check);
                            if matches!(was, Acquired::OwnerDied { .. }) {
                                // Taken from the dead writer: nobody repaired before us.
                                assert!(odd);
                                it.lock.make_consistent(me).unwrap();
                            }
                            it.lock.release_held(me.token);
                        }
                        Err(_) => crate::loom::spin_loop(),
                    }
                } else {
                    crate::loom::spin_loop();
                }
                Ok::<_, ()>(false)
            };
            let r = read(&it.seq, || copy(&it), wait).unwrap();
            assert!(matches!(r, Read::Whole(_)), "{r:?}");
            check_read(&r);
            w.join().unwrap();
            assert_eq!(read_only(&it), Read::Whole([2, 2, 2]));
        });
    }
}
