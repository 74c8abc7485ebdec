//! A new subscriber's window (`SPEC.md`, frames section "Attaching"): the scan of the slots
//! it makes once its cursor is stored, built on plain atomics so that the loom model below
//! drives the very code `Subscriber` runs.

#![cfg_attr(loom, allow(dead_code))] // under loom only the models use it

use super::layout::{Policy, View};
use super::pin::{self, CLAIMED};
use crate::loom::{fence, Ordering};

/// What a new subscriber saw of its window when it attached (`SPEC.md`, frames section
/// "Attaching"): which frames after `wanted` (head minus the history asked for) were in a
/// slot once its record's cursor held `wanted`.
///
/// Until the store of `wanted`, the record showed the previous owner's cursor (or, for a
/// free record, did not count), so the publisher may have reused slots of the window
/// meanwhile, and a claim it made then may still be under way. The fence makes the scan a
/// Dekker pair with the publisher's claim (`pin::claim`: claim store, `fence(SeqCst)`, then
/// `recovery::held` loads the owners and cursors): a publisher whose check missed `wanted`
/// stored its claim before its fence, which comes before ours in the `SeqCst` order, so the
/// scan sees that claim (or the frame that replaced it); a publisher whose fence comes later
/// sees `wanted` (or a later cursor of ours). So a frame of the window is, at the scan:
/// - in a slot and not `CLAIMED` (`present`): under [`Policy::Block`](super::Policy::Block)
///   it stays until received; under reuse-oldest its loss, if it is overwritten, counts;
/// - `CLAIMED` (`claimed`): the claim may have missed `wanted` (then the frame is being
///   overwritten) or not (then it will be rolled back): either way it is not waited for;
/// - not there: gone before the cursor took effect.
///
/// Frames of the last two kinds are neither waited for nor counted lost.
#[derive(Default)]
pub(super) struct Window {
    /// The newest sequence the scan saw (at least `wanted`; at most `head + 1`, words beyond
    /// that being forged): frames after it are counted as every later frame is.
    pub(super) top: u64,
    /// The window's frames found in a slot, unclaimed.
    pub(super) present: Vec<u64>,
    /// The window's frames found `CLAIMED`.
    pub(super) claimed: Vec<u64>,
}

impl Window {
    /// Scan the slots for the window after `wanted`, whose cursor store precedes this call.
    ///
    /// The slots are read ([`read_slots`]) until two passes in a row read the same words (at most
    /// [`Window::PASSES`]; the last pass counts if they never agree). A slot's frame only
    /// moves forward: a word changes to a newer frame, to `CLAIMED` and back to the same
    /// frame (a claim rolled back), or to 0 (a loan dropped; the frame is gone for good). So a
    /// frame read in both passes was in its slot throughout the time between them, and a
    /// frame missing from the second pass is gone: the window is a snapshot of the moment
    /// between the two passes. Without it, a slot read early and overwritten meanwhile hides a
    /// frame that was present after the cursor took effect, and its loss under reuse-oldest would not
    /// count.
    pub(super) fn scan(v: &View, wanted: u64) -> Window {
        let (words, _) = read_slots(v);
        // After the passes: every word read above is at most `head + 1` for this `head` (a
        // publish stores `head = n − 1` before `seq = n`, which our Acquire load of `n`
        // synchronises with; a takeover moves `head` to the largest `seq` before it
        // publishes), so a larger word is forged. Relaxed: coherence with those stores is
        // all this needs.
        let limit = v.ctrl().head.load(Ordering::Relaxed).saturating_add(1);
        let mut w = Window {
            top: wanted,
            ..Window::default()
        };
        for word in words {
            let s = word & !CLAIMED;
            if s > limit {
                continue; // forged: it would stand as `top` for ever and hide every loss
            }
            w.top = w.top.max(s);
            if s > wanted {
                if word & CLAIMED == 0 {
                    w.present.push(s);
                } else {
                    w.claimed.push(s);
                }
            }
        }
        w
    }

    /// A new subscriber's start (`SPEC.md` §8.3, "Attaching"), its record `rec` claimed and
    /// its dead previous owner's pins cleared: store the record's cursor `wanted` (head minus
    /// the history asked for), take the window, then wake a publisher parked in `loan` (the
    /// cleared pins and the new cursor may free the slots it waits for; a conditional notify,
    /// paired with `park_checked`'s fence). Loom: `loom_an_attach_wakes_a_parked_loan`.
    pub(super) fn attach(v: &View, rec: u64, wanted: u64) -> Window {
        // Relaxed: the Block policy's progress word (`recovery::held`), ordered before the
        // window's scan by its fence.
        v.record(rec).cursor.store(wanted, Ordering::Relaxed);
        let w = Window::scan(v, wanted);
        v.ctrl().released.notify_if_sleepers(u32::MAX);
        w
    }

    /// Passes over the slots at most in [`Window::scan`].
    pub(super) const PASSES: usize = 4;

    /// Frames after `cursor` and before `s` that count as lost when a receive moves the
    /// cursor from one to the other: those after `top`, and those of the window that were
    /// present at the scan.
    pub(super) fn lost_between(&self, cursor: u64, s: u64) -> u64 {
        let after_top = (s - 1).saturating_sub(cursor.max(self.top));
        let present = self
            .present
            .iter()
            .filter(|&&p| p > cursor && p < s)
            .count() as u64;
        after_top.saturating_add(present)
    }
}

/// Which frame a receive looks for.
#[derive(Clone, Copy)]
pub(super) enum Want {
    /// The oldest frame newer than the cursor.
    Next,
    /// The newest frame newer than the cursor.
    Latest,
}

/// What a receive's [`scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// Slot `.0` holds the frame `.1` to pin.
    Found(u64, u64),
    /// A claim that will be rolled back holds a frame older than any found: wait for it.
    Wait,
    /// No frame newer than the cursor.
    Nothing,
}

/// The slot and sequence of the oldest (`Next`) or newest (`Latest`) published frame newer
/// than `after`, as `Subscriber`'s receives look for it. Starts at slot `start` (the slot after
/// the last one received: the publisher reuses slots oldest first, so frame `after + 1` is
/// usually there) and stops early when `Next` finds `after + 1`: a poll usually loads one
/// sequence word, not `slots`.
///
/// If `wait_claimed` (`Next` under [`Policy::Block`], publisher attached), a `CLAIMED` slot
/// whose frame is newer than `after` and not in `claimed_at_attach` (the window's `claimed`)
/// holds a claim that will be rolled back (`pin::rolls_back`): [`Scan::Wait`] if that frame is
/// older than the best found, rather than skipping it.
#[inline(always)]
pub(super) fn scan(
    v: &View,
    start: u64,
    after: u64,
    want: Want,
    wait_claimed: bool,
    claimed_at_attach: &[u64],
) -> Scan {
    let mut best: Option<(u64, u64)> = None;
    let mut pending: Option<u64> = None;
    let n = v.g.slots;
    let start = if start < n { start } else { 0 };
    for k in 0..n {
        // Below 2·slots ≤ 2048: no overflow; the index is below `slots`.
        let i = if start + k >= n {
            start + k - n
        } else {
            start + k
        };
        // Acquire: pairs with the Release publish (`pin::publish`).
        let s = v.meta(i).seq.load(Ordering::Acquire);
        if s & CLAIMED != 0 {
            if wait_claimed && pin::rolls_back(s, after, claimed_at_attach) {
                let old = s & !CLAIMED;
                pending = Some(pending.map_or(old, |p| p.min(old)));
            }
            continue;
        }
        if s <= after {
            continue;
        }
        let better = match (best, want) {
            (None, _) => true,
            (Some((_, b)), Want::Next) => s < b,
            (Some((_, b)), Want::Latest) => s > b,
        };
        if better {
            best = Some((i, s));
            if matches!(want, Want::Next) && Some(s) == after.checked_add(1) {
                break; // nothing older is newer than `after`
            }
        }
    }
    match (pending, best) {
        (Some(p), Some((_, b))) if p < b => Scan::Wait,
        (Some(_), None) => Scan::Wait,
        (_, Some((i, s))) => Scan::Found(i, s),
        (None, None) => Scan::Nothing,
    }
}

/// Move record `rec`'s cursor from `from` to `to` (`to > from`: a frame just received, or, at
/// `latest`, the newest), as a receive does after its pin.
///
/// Under [`Policy::Block`] frames skipped past (`latest`, or a gap, counted lost or not: a
/// frame of the window found `CLAIMED` at attach is skipped without counting, and its claim
/// may yet be rolled back) were held for us by our cursor alone, and the cursor store frees
/// their slots: a publisher parked in `loan` must hear of it now, not at the end of its 20 ms
/// slice (their unpins, which also notify, never come: they were never pinned). The
/// conditional notify of an unpin (`park_checked` pairs with its fence): no write, no system
/// call while none sleeps. Loom: `loom_a_cursor_that_skips_frames_wakes_a_parked_loan`.
#[inline(always)]
pub(super) fn advance_cursor(v: &View, rec: u64, from: u64, to: u64) {
    // Relaxed: the Block policy's hint (`recovery::held`); the pin bits guard the data. A
    // plain store (only we write the record): no locked instruction. Under reuse-oldest the
    // publisher reads this line only when our pin bit is set or while looking for dead
    // subscribers.
    v.record(rec).cursor.store(to, Ordering::Relaxed);
    if to - from > 1 && v.g.policy == Policy::Block {
        v.ctrl().released.notify_if_sleepers(u32::MAX);
    }
}

/// Read the slots' sequence words after a `fence(SeqCst)`, pass after pass, until two passes
/// in a row read the same words, at most [`Window::PASSES`] passes: the words of the last pass,
/// and whether it agreed with the one before (else the passes never agreed).
pub(super) fn read_slots(v: &View) -> (Vec<u64>, bool) {
    // SeqCst fence: the subscriber's side of the Dekker pair with the publisher's fence in
    // `pin::claim` (`SPEC.md` §8.3, "Attaching"): a claim whose cursor load (`recovery::held`)
    // missed our cursor store is seen by the loads below, or its new frame is.
    fence(Ordering::SeqCst);
    // Acquire: pairs with every Release store of a `seq` word (`pin::claim`'s claim and
    // rollback, `pin::publish`, a dropped loan's and a takeover's 0): the snapshot argument
    // needs them all (`Window::scan`). Ordered after our cursor store by the fence.
    let read = || -> Vec<u64> {
        (0..v.g.slots)
            .map(|i| v.meta(i).seq.load(Ordering::Acquire))
            .collect()
    };
    let mut words = read();
    for _ in 1..Window::PASSES {
        let again = read();
        let same = again == words;
        words = again;
        if same {
            return (words, true);
        }
    }
    (words, false)
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use crate::frames::pin::{claim, publish_frame};
    use loom::thread;

    /// The attach scan's passes (`read_slots`, as `Window::scan` runs them) against a
    /// publisher that reuses both slots of a two-slot channel (frames 1 and 2 → 3 and 4, each
    /// claimed, then published, then `head` moved, as `Loan::publish` does): when two passes
    /// agree, the words are those the slots held together at one moment (one of the states
    /// the publisher went through), never a slot read before a reuse beside one read after
    /// the next. Fails if the passes are not compared (one pass read early for slot 0 and
    /// late for slot 1 is taken), or if the loads are Relaxed (a second pass may then read
    /// slot 0's old frame after the first pass saw slot 1's newer one).
    #[test]
    fn loom_window_scan_is_a_snapshot() {
        crate::queue::loom_model(|| {
            let v = View::model(2, 1, Policy::ReuseOldest);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            v.meta(1).seq.store(2, Ordering::Relaxed);
            v.ctrl().head.store(2, Ordering::Relaxed);
            let publisher = thread::spawn(move || {
                for (i, old, new) in [(0, 1, 3), (1, 2, 4)] {
                    assert!(claim(&v.meta(i).seq, old, || false));
                    publish_frame(&v, i, new);
                }
            });
            let (words, agreed) = read_slots(&v);
            publisher.join().unwrap();
            let states = [[1, 2], [1 | CLAIMED, 2], [3, 2], [3, 2 | CLAIMED], [3, 4]];
            assert!(
                !agreed || states.iter().any(|st| st[..] == words[..]),
                "the scan took {words:x?}, which the slots never held together"
            );
        });
    }

    /// Under block, a receiver whose cursor jumps past a frame it did not receive (here 1 → 3:
    /// frame 2 skipped, as a window frame seen `CLAIMED` at attach is, without counting it
    /// lost) frees that frame's slot with its cursor store alone; a publisher parked in `loan`
    /// for that slot (`park_checked` on `released`, claiming with `recovery::claim_hint`) is
    /// woken by `advance_cursor`'s notify. Fails (deadlocks) if the notify is made only for
    /// frames counted lost, as it was (review: a loan then waited for its 20 ms slice).
    #[test]
    fn loom_a_cursor_that_skips_frames_wakes_a_parked_loan() {
        crate::queue::loom_model(|| {
            let v = View::model(2, 1, Policy::Block);
            v.meta(0).seq.store(2, Ordering::Relaxed);
            v.meta(1).seq.store(3, Ordering::Relaxed);
            v.ctrl().head.store(3, Ordering::Relaxed);
            v.record(0).owner.claim(9).unwrap();
            v.record(0).cursor.store(1, Ordering::Relaxed);
            let receiver = thread::spawn(move || advance_cursor(&v, 0, 1, 3));
            crate::frames::pin::loan_parked(&v, 0, 2);
            receiver.join().unwrap();
        });
    }

    /// A subscriber attaching to a record whose dead previous owner left a pin (record 0's bit
    /// on slot 0, the slot of the oldest frame) clears it (`recovery::clear_pins`, as
    /// `Subscriber::attach`) and takes its window (`Window::attach`); a publisher parked in
    /// `loan` for that slot (`loan_parked`, the production wait loop and claim, knowing no
    /// subscriber dead) is woken by `Window::attach`'s notify: it deadlocks without it.
    #[test]
    fn loom_an_attach_wakes_a_parked_loan() {
        crate::queue::loom_model(|| {
            let v = View::model(1, 1, Policy::ReuseOldest);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            v.ctrl().head.store(1, Ordering::Relaxed);
            // The new owner's token: already claimed (as `Subscriber::attach` claims the
            // record first), with the dead owner's pin still set.
            v.record(0).owner.claim(9).unwrap();
            let (word, bit) = v.pin_of(0, 0);
            word.store(bit, Ordering::Relaxed);
            let subscriber = thread::spawn(move || {
                crate::frames::recovery::clear_pins(&v, 0);
                drop(Window::attach(&v, 0, 1));
            });
            crate::frames::pin::loan_parked(&v, 0, 1);
            subscriber.join().unwrap();
        });
    }
}
