//! The slot-pinning protocol (`SPEC.md`, frames section "Pinning"): how a subscriber pins a
//! slot so that the publisher never overwrites it, and how the publisher claims a slot no
//! live subscriber pins. Written on plain atomics so the loom model below checks the very
//! code the channel runs.
//!
//! Words: each slot has a sequence word `seq` (0: empty; `s`: holds published frame `s`;
//! `s | CLAIMED`: the publisher is writing it) and, in the same cache line, pin bitmap words
//! with one bit per subscriber record: bit `r` is written only by record `r`'s owner (with
//! read-modify-writes, as other records' bits share the word). A hop's pin, check and claim
//! therefore all touch the one line the frame's metadata is in.
//!
//! A Dekker pattern over (`pin bit`, `seq`), all of it in the single `SeqCst` order:
//! - subscriber: set the pin bit (a `SeqCst` RMW); load `seq` (`SeqCst`): the pin holds only
//!   if `seq` is still the frame it chose (otherwise it clears the bit and looks again);
//! - publisher: store `seq | CLAIMED`; `fence(SeqCst)`; load the slot's pin words: it writes
//!   the slot only if no live record's bit is set (otherwise it restores `seq` and tries
//!   another).
//!
//! The subscriber's RMW and load and the publisher's fence are in one total order (C++20
//! [atomics.order]: a `SeqCst` load after a `SeqCst` fence sees every store before that
//! fence if the fence precedes it in the order; loads after a `SeqCst` fence see every
//! `SeqCst` RMW that precedes the fence). If the publisher's fence comes before the
//! subscriber's load, that load sees the claim and backs off; if the subscriber's RMW comes
//! before the fence, the publisher's loads see the pin and back off. So a pinned frame is
//! never written.

#![cfg_attr(loom, allow(dead_code))] // under loom only the models use it

use crate::loom::{fence, loom_sc_fence, AtomicU64, Ordering};

/// Bit 63 of a sequence word: the publisher has claimed the slot and may be writing it.
pub(crate) const CLAIMED: u64 = 1 << 63;

/// Subscriber: pin the slot whose sequence word is `seq_word`, expected to hold published
/// frame `seq`, by setting `bit` (this subscriber's record's bit, clear) in `pins` (a pin word
/// of that slot). True if pinned; false (bit cleared again) if the slot no longer holds `seq`.
#[inline]
pub(crate) fn pin(pins: &AtomicU64, bit: u64, seq_word: &AtomicU64, seq: u64) -> bool {
    // SeqCst RMW then SeqCst load: the subscriber's write and read of the Dekker pair (module
    // docs); both lie in the single SeqCst order with the publisher's fence in `claim`, so
    // no fence is needed here (on x86-64 a `lock or` and a plain load, no `mfence`). Loom
    // checks SeqCst accesses as AcqRel only, so under loom a fence stands between them (the
    // fence formulation, as in `sync::park`).
    pins.fetch_or(bit, Ordering::SeqCst);
    loom_sc_fence();
    // SeqCst, which includes Acquire: pairs with the publisher's Release store of `seq` in
    // `publish`: the frame's bytes and metadata are visible once the pin is confirmed.
    if seq_word.load(Ordering::SeqCst) == seq {
        return true;
    }
    // Relaxed: we read nothing of the slot, so nothing needs ordering before the clear.
    pins.fetch_and(!bit, Ordering::Relaxed);
    false
}

/// Subscriber: release a pin taken by [`pin`].
#[inline]
pub(crate) fn unpin(pins: &AtomicU64, bit: u64) {
    // Release pairs with the Acquire loads of pin words in `claim`: our reads of the frame
    // happen before the publisher's next write of the slot.
    pins.fetch_and(!bit, Ordering::Release);
}

/// Publisher (the only writer of sequence words): claim the slot holding `old` (0 or a
/// published sequence) if `pinned` (which loads the slot's pin words with `Acquire` and the
/// owner words of the records whose bits are set) finds no live record's bit set after the
/// claim is visible. True: the slot is ours to write.
#[inline]
pub(crate) fn claim(seq_word: &AtomicU64, old: u64, pinned: impl FnOnce() -> bool) -> bool {
    // Relaxed: ordered before the pin loads by the fence. The fence also orders it before our
    // writes of the slot's bytes, so an inspector that copies the slot and re-reads `seq`
    // (a seqlock read, `stat::copy_latest`) sees the claim if it saw any new byte.
    seq_word.store(old | CLAIMED, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    if pinned() {
        // Release: a subscriber that reads `old` again must see the frame `old` as it was
        // published (this store is not in the release sequence of that publication).
        seq_word.store(old, Ordering::Release);
        return false;
    }
    true
}

/// Publisher: make frame `seq`, written into a claimed slot, visible.
#[inline]
pub(crate) fn publish(seq_word: &AtomicU64, seq: u64) {
    // Release pairs with the Acquire load in `pin` (and the subscribers' scans): the bytes and
    // metadata written before are visible to whoever reads `seq`.
    seq_word.store(seq, Ordering::Release);
}

/// Subscriber, under the block policy: whether a slot whose sequence word shows `w` holds a
/// claim that will be rolled back, so that its frame is to be waited for, not skipped: the
/// word is `CLAIMED`, its frame is newer than the subscriber's cursor `after`, and that frame
/// was not in `claimed_at_attach` (the frames the subscriber's attach scan found `CLAIMED`,
/// `SPEC.md` §8.3 "Attaching").
///
/// Why: the publisher checks a slot's holders once before claiming it and again after
/// (`recovery::claim_hint`, `claim_free`). A subscriber that attaches between the two checks
/// (a record that starts counting, or whose cursor moves back to `head − history`) makes
/// the first check pass and the second fail: the publisher marks the slot `CLAIMED` and
/// restores it a moment later. Every other claim of a frame newer than a counting cursor
/// is likewise rolled back, since under block such a frame is held; the only claims that
/// proceed are those whose fence came before the attach scan's, which that scan saw.
pub(crate) fn rolls_back(w: u64, after: u64, claimed_at_attach: &[u64]) -> bool {
    let old = w & !CLAIMED;
    w & CLAIMED != 0 && old > after && !claimed_at_attach.contains(&old)
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// One subscriber pins frame 1 and checks its byte; the publisher tries to claim the slot
    /// and, if it gets it, overwrites the byte. The subscriber never sees the overwrite while
    /// pinned; after the subscriber unpins, the publisher (trying again) gets the slot.
    #[test]
    fn loom_pin_vs_claim() {
        crate::queue::loom_model(|| {
            let seq = Arc::new(AtomicU64::new(1));
            let pins = Arc::new(AtomicU64::new(0));
            let data = Arc::new(AtomicU64::new(111));
            let (s, p, d) = (seq.clone(), pins.clone(), data.clone());
            let sub = thread::spawn(move || {
                if pin(&p, 1, &s, 1) {
                    // Pinned: the publisher must not write.
                    assert_eq!(d.load(Ordering::Relaxed), 111);
                    unpin(&p, 1);
                }
            });
            let pinned = || pins.load(Ordering::Acquire) & 1 != 0;
            let mut got = claim(&seq, 1, pinned);
            if got {
                data.store(222, Ordering::Relaxed);
                publish(&seq, 2);
            }
            sub.join().unwrap();
            if !got {
                // The subscriber has unpinned (joined): a retry succeeds.
                got = claim(&seq, 1, || pins.load(Ordering::Acquire) & 1 != 0);
                assert!(got);
            }
        });
    }

    /// Two subscribers' bits share a slot's pin word: one releasing its pin (an RMW) never
    /// clears the other's, so the publisher still sees the slot held by the other.
    #[test]
    fn loom_shared_pin_word() {
        crate::queue::loom_model(|| {
            let seq = Arc::new(AtomicU64::new(1));
            let pins = Arc::new(AtomicU64::new(0));
            let data = Arc::new(AtomicU64::new(111));
            let (s, p) = (seq.clone(), pins.clone());
            // Subscriber B pins and releases at once.
            let b = thread::spawn(move || {
                if pin(&p, 2, &s, 1) {
                    unpin(&p, 2);
                }
            });
            // Subscriber A (this thread) pins and keeps the pin while the publisher tries.
            let a_pinned = pin(&pins, 1, &seq, 1);
            assert!(a_pinned); // nobody claims before the publisher below
            let (s, p, d) = (seq.clone(), pins.clone(), data.clone());
            let publisher = thread::spawn(move || {
                if claim(&s, 1, || p.load(Ordering::Acquire) != 0) {
                    d.store(222, Ordering::Relaxed);
                    publish(&s, 2);
                }
            });
            assert_eq!(data.load(Ordering::Relaxed), 111);
            unpin(&pins, 1);
            b.join().unwrap();
            publisher.join().unwrap();
        });
    }

    /// The publisher's side of the parked-loan models, as `Publisher::loan` does it: claim
    /// frame 1's slot unless record bit 2 pins it, else park on `released` with
    /// `park_checked` (claiming again after registering as a sleeper) until the claim works.
    fn loan_parked(seq: &AtomicU64, pins: &AtomicU64, released: &crate::sync::WaitQueue) {
        let pinned = || pins.load(Ordering::Acquire) & 2 != 0;
        loop {
            let seen = released.snapshot();
            if claim(seq, 1, pinned) {
                return;
            }
            let mut got = false;
            released.park_checked(seen, None, &mut || {
                got = claim(seq, 1, pinned);
                got
            });
            if got {
                return;
            }
        }
    }

    /// A publisher that finds the slot pinned parks on `released` with `park_checked`
    /// (claiming again after registering as a sleeper), as `Publisher::loan` does; the
    /// subscriber's unpin and `notify_if_sleepers` always wake it (a lost wake-up would be a
    /// loom deadlock).
    #[test]
    fn loom_unpin_wakes_a_parked_loan() {
        crate::queue::loom_model(|| {
            let seq = Arc::new(AtomicU64::new(1));
            let pins = Arc::new(AtomicU64::new(0));
            let released = Arc::new(crate::sync::WaitQueue::new());
            assert!(pin(&pins, 2, &seq, 1));
            let (p, q) = (pins.clone(), released.clone());
            let sub = thread::spawn(move || {
                unpin(&p, 2);
                q.notify_if_sleepers(u32::MAX);
            });
            loan_parked(&seq, &pins, &released);
            sub.join().unwrap();
        });
    }

    /// Reclaim: a dead subscriber's pin is ignored by the publisher, while a new subscriber
    /// that took over the record (cleared the stale bit, pinned anew) is respected.
    #[test]
    fn loom_reclaim_dead_pin() {
        crate::queue::loom_model(|| {
            const DEAD: u64 = 7;
            const NEW: u64 = 9;
            let seq = Arc::new(AtomicU64::new(1));
            let owner = Arc::new(AtomicU64::new(DEAD));
            let pins = Arc::new(AtomicU64::new(1)); // left pinned by the dead owner
            let data = Arc::new(AtomicU64::new(111));
            let (s, o, p, d) = (seq.clone(), owner.clone(), pins.clone(), data.clone());
            let sub = thread::spawn(move || {
                // Take over the dead owner's record, clear its stale pins, pin frame 1.
                if o.compare_exchange(DEAD, NEW, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // Its own bit only: other records' bits share the slot's word.
                    p.fetch_and(!1, Ordering::Relaxed);
                    if pin(&p, 1, &s, 1) {
                        assert_eq!(d.load(Ordering::Relaxed), 111);
                        unpin(&p, 1);
                    }
                }
            });
            // The publisher counts the pins of a live owner only (DEAD is known dead): it
            // reads the slot's pin word, then the owner of a record whose bit is set
            // (`recovery::held`).
            let pinned = || {
                pins.load(Ordering::Acquire) & 1 != 0 && {
                    let w = owner.load(Ordering::Acquire);
                    w != DEAD && w != 0
                }
            };
            if claim(&seq, 1, pinned) {
                data.store(222, Ordering::Relaxed);
                publish(&seq, 2);
            }
            sub.join().unwrap();
        });
    }

    /// Attaching under the block policy (`Subscriber::attach`, `Window::scan`): the record
    /// still shows the previous owner's cursor (5, ahead of the window) when the new owner
    /// stores its own (1: it wants frame 2 on), issues `fence(SeqCst)` and scans the slot
    /// (its window); then it receives as `Subscriber::scan` does: a `CLAIMED` slot is waited
    /// for if `rolls_back` says so, else skipped. The publisher claims frame 2's slot unless
    /// a counting cursor is below 2 (`recovery::held`), which it may first have read as 5.
    /// A frame the window found present is never taken (the claim is rolled back) and never
    /// skipped: it is received. Without the wait (`rolls_back` false) the subscriber skips
    /// frame 2 while the publisher is rolling its claim back.
    #[test]
    fn loom_attach_cursor_vs_block_claim() {
        crate::queue::loom_model(|| {
            let seq = Arc::new(AtomicU64::new(2));
            let cursor = Arc::new(AtomicU64::new(5)); // the previous owner's
            let (s, c) = (seq.clone(), cursor.clone());
            let sub = thread::spawn(move || {
                c.store(1, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                let w = s.load(Ordering::Acquire);
                let present = w == 2;
                let claimed: Vec<u64> = if w & CLAIMED != 0 {
                    vec![w & !CLAIMED]
                } else {
                    Vec::new()
                };
                loop {
                    let w = s.load(Ordering::Acquire);
                    if w == 2 {
                        return (present, true); // received frame 2
                    }
                    if rolls_back(w, 1, &claimed) {
                        thread::yield_now();
                        continue;
                    }
                    return (present, false); // skipped it
                }
            });
            let held = || cursor.load(Ordering::Relaxed) < 2;
            let wrote = claim(&seq, 2, held);
            if wrote {
                publish(&seq, 6);
            }
            let (present, received) = sub.join().unwrap();
            assert!(
                !present || received,
                "a frame present at attach was skipped"
            );
            assert!(!(received && wrote), "a received frame was overwritten");
        });
    }

    /// A late joiner under the block policy (as in `loom_attach_cursor_vs_block_claim`) that
    /// receives as `Subscriber::get_until` does: take, else park on `published` with
    /// `park_checked` (taking again after registering) until a take returns. Its take
    /// waits (returns `None`) while `rolls_back` says the claim it sees will be rolled
    /// back. Returns (frame 2 present at attach, frame 2 received).
    fn late_joiner_parked(
        seq: &AtomicU64,
        cursor: &AtomicU64,
        published: &crate::sync::WaitQueue,
    ) -> (bool, bool) {
        cursor.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let w = seq.load(Ordering::Acquire);
        let claimed: Vec<u64> = if w & CLAIMED != 0 {
            vec![w & !CLAIMED]
        } else {
            Vec::new()
        };
        let take = || {
            let w = seq.load(Ordering::Acquire);
            (w == 2 || !rolls_back(w, 1, &claimed)).then_some(w == 2)
        };
        loop {
            let seen = published.snapshot();
            if let Some(got) = take() {
                return (w == 2, got);
            }
            let mut got = None;
            published.park_checked(seen, None, &mut || {
                got = take();
                got.is_some()
            });
            if let Some(got) = got {
                return (w == 2, got);
            }
        }
    }

    /// A claim rolled back notifies `published` (`recovery::claim`), and a late joiner
    /// parked for that frame always wakes and receives it. Without the notify this model
    /// deadlocks (the joiner sleeps on a frame that is back in its slot).
    #[test]
    fn loom_rolled_back_claim_wakes_a_parked_joiner() {
        crate::queue::loom_model(|| {
            let seq = Arc::new(AtomicU64::new(2));
            let cursor = Arc::new(AtomicU64::new(5)); // the previous owner's
            let published = Arc::new(crate::sync::WaitQueue::new());
            let (s, c, q) = (seq.clone(), cursor.clone(), published.clone());
            let sub = thread::spawn(move || late_joiner_parked(&s, &c, &q));
            let wrote = claim(&seq, 2, || cursor.load(Ordering::Relaxed) < 2);
            if wrote {
                publish(&seq, 6);
            }
            // `Loan::put` notifies after a publish; `recovery::claim` after a rollback.
            published.notify_if_sleepers(u32::MAX);
            let (present, received) = sub.join().unwrap();
            assert!(
                !present || received,
                "a frame present at attach was skipped"
            );
            assert!(!(received && wrote), "a received frame was overwritten");
        });
    }

    /// A claim that succeeds and whose loan is then dropped unpublished (`seq = 0`, and no
    /// notify: a dropped loan wakes nobody) is never waited for: such a claim's fence came
    /// before the joiner's, so the joiner's window saw it `CLAIMED`. A wait for it would
    /// deadlock this model.
    #[test]
    fn loom_dropped_loan_is_never_waited_for() {
        crate::queue::loom_model(|| {
            let seq = Arc::new(AtomicU64::new(2));
            let cursor = Arc::new(AtomicU64::new(5));
            let published = Arc::new(crate::sync::WaitQueue::new());
            let (s, c, q) = (seq.clone(), cursor.clone(), published.clone());
            let sub = thread::spawn(move || late_joiner_parked(&s, &c, &q));
            if claim(&seq, 2, || cursor.load(Ordering::Relaxed) < 2) {
                seq.store(0, Ordering::Release); // the loan dropped
            } else {
                published.notify_if_sleepers(u32::MAX); // the rollback's notify
            }
            let (present, received) = sub.join().unwrap();
            assert!(
                !present || received,
                "a frame present at attach was skipped"
            );
        });
    }

    /// `Window::scan`'s bound on forged words: a sequence word loaded (Acquire) is never more
    /// than one ahead of a later Relaxed load of `head`, because the publisher stores
    /// `head = n` (Release) after `seq = n` and before it claims the slot for `n + 1`; so a
    /// word beyond `head + 1` is forged, never a frame seen early. One slot, two publishes.
    #[test]
    fn loom_sequence_word_is_at_most_one_ahead_of_head() {
        crate::queue::loom_model(|| {
            let seq = Arc::new(AtomicU64::new(1));
            let head = Arc::new(AtomicU64::new(1));
            let (s, h) = (seq.clone(), head.clone());
            let publisher = thread::spawn(move || {
                for n in 2..=3 {
                    assert!(claim(&s, n - 1, || false));
                    publish(&s, n);
                    h.store(n, Ordering::Release);
                }
            });
            for _ in 0..2 {
                let w = seq.load(Ordering::Acquire) & !CLAIMED;
                let top = head.load(Ordering::Relaxed);
                assert!(w <= top + 1, "slot word {w} with head {top}");
            }
            publisher.join().unwrap();
        });
    }

    /// A subscriber whose pin attempt fails (its frame is not in the slot, or the publisher's
    /// claim raced it and both backed off) clears its bit again: a publisher that saw the
    /// transient bit and parked with `park_checked` must be woken, as by an unpin
    /// (`Inner::pin` notifies `released`; without that notify this model deadlocks).
    #[test]
    fn loom_failed_pin_wakes_a_parked_loan() {
        crate::queue::loom_model(|| {
            let seq = Arc::new(AtomicU64::new(1));
            let pins = Arc::new(AtomicU64::new(0));
            let released = Arc::new(crate::sync::WaitQueue::new());
            let (s, p, q) = (seq.clone(), pins.clone(), released.clone());
            // Expects frame 2 in this slot, which holds frame 1: the pin fails.
            let sub = thread::spawn(move || {
                if !pin(&p, 2, &s, 2) {
                    q.notify_if_sleepers(u32::MAX);
                }
            });
            loan_parked(&seq, &pins, &released);
            sub.join().unwrap();
        });
    }
}
