//! The per-item sequence word of a shmkit list's trailer (`SPEC.md` §9.4): a seqlock whose
//! writers are serialised by the trailer's writer lock, so only its readers are lock-free.
//!
//! The same functions run on the words of a mapping (std atomics) and, under `cfg(loom)`, in
//! the model below (loom's), through the crate's one atomics shim.

use crate::loom::{fence, AtomicU64, Ordering};

/// Writer, holding the writer lock: mark the item as being written. Returns the odd value
/// stored, for [`write_end`].
#[inline]
pub(crate) fn write_begin(seq: &AtomicU64) -> u64 {
    // Relaxed: only the writer-lock holder changes a seq word (and we hold it).
    let odd = seq.load(Ordering::Relaxed) | 1;
    seq.store(odd, Ordering::Relaxed);
    // Release fence: pairs with the reader's fence(Acquire) in `read_end`: a reader whose
    // copy saw any store made after this fence sees `odd` (or later) at its re-check.
    fence(Ordering::Release);
    odd
}

/// Writer: the item is complete again.
#[inline]
pub(crate) fn write_end(seq: &AtomicU64, odd: u64) {
    // Release: pairs with the Acquire in `read_begin`: a reader that sees `odd + 1` sees
    // every store of the update. Wrapping: the word is a peer's to write, and `u64::MAX`
    // (odd) must give 0, the next even value, not an overflow panic.
    seq.store(odd.wrapping_add(1), Ordering::Release);
}

/// Reader: the (even) sequence value to validate the copy against, or `None` while a write is
/// in progress. A `Relaxed` load and a fence, the `Acquire` load read-only mappings permit.
#[inline]
pub(crate) fn read_begin(seq: &AtomicU64) -> Option<u64> {
    let s = seq.load(Ordering::Relaxed);
    // Acquire fence after the load: pairs with the Release store in `write_end`.
    fence(Ordering::Acquire);
    (s & 1 == 0).then_some(s)
}

/// Reader, after copying: whether no write started since [`read_begin`] returned `s1`.
#[inline]
pub(crate) fn read_end(seq: &AtomicU64, s1: u64) -> bool {
    // Acquire fence before the re-check: pairs with the fence(Release) in `write_begin`.
    fence(Ordering::Acquire);
    seq.load(Ordering::Relaxed) == s1
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
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
}
