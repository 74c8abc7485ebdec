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

use super::layout::View;
use crate::loom::{fence, loom_sc_fence, AtomicU32, AtomicU64, Ordering};
use crate::sync::WaitQueue;

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
    // Ordered before the pin loads by the fence. The fence also orders it before our writes
    // of the slot's bytes, so an inspector that copies the slot and re-reads `seq` (a seqlock
    // read, `stat::copy_latest`) sees the claim if it saw any new byte: for the frame bytes,
    // written by the caller through plain stores into its mapping, this rests on the
    // hardware's ordering of the fence (x86-64, AArch64), not on the language's model, which
    // says nothing of plain writes another process copies with atomics. Release pairs with the
    // Acquire loads of a new subscriber's attach scan (`window::read_slots`): a scan that
    // reads the claim also sees every frame published before it in the other slots, so two
    // passes that agree are the slots' words at one moment (with a Relaxed claim a second
    // pass could read another slot's older claim beside it: model
    // `loom_window_scan_is_a_snapshot`). A plain store on x86-64, as Relaxed.
    seq_word.store(old | CLAIMED, Ordering::Release);
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

/// Publisher: make frame `seq`, written into claimed slot `i` with its metadata, visible, and
/// ring the doorbell: `seq` ([`publish`]), then `head`, then wake parked subscribers, as
/// `Loan::publish` does (the loom models call it too).
#[inline(always)]
pub(crate) fn publish_frame(v: &View, i: u64, seq: u64) {
    publish(&v.meta(i).seq, seq);
    // Release pairs with the Acquire load of `head` in `Subscriber::attach`. `head` is the
    // doorbell receivers poll (a hint to them: the slot's `seq` carries the frame), alone in
    // its cache line.
    v.ctrl().head.store(seq, Ordering::Release);
    // Subscribers poll `head`; only a parked one needs a wake-up (it parks with
    // `park_checked`, re-checking after registering).
    v.ctrl().published.notify_if_sleepers(u32::MAX);
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

/// A [`GuardCount`]'s value while a thread of its process sets or clears the slot's pin bit.
pub(crate) const LOCKED: u32 = u32::MAX;

/// A subscriber's process-local count of the guards (`Frame`s) it holds on one slot: the
/// slot's pin bit is set while the count is non-zero, so two guards of one frame need one bit.
/// Guards are `Send`, so one may drop on a thread while the subscriber pins the same slot on
/// another: the count and the bit must change together. The count is briefly [`LOCKED`] while
/// its bit changes (the 0 → 1 and 1 → 0 transitions); other counts change by compare-exchange.
/// That is one uncontended compare-exchange per pin and per release, no mutex.
///
/// The pin word and bit are looked up (`bit_of`) only on the transitions.
pub(crate) struct GuardCount(pub(crate) AtomicU32);

impl GuardCount {
    pub(crate) fn new() -> Self {
        GuardCount(AtomicU32::new(0))
    }

    /// The count, once it is not [`LOCKED`] (a thread of this process holds it for a few
    /// instructions; yield to it if it was preempted).
    #[inline]
    fn get(&self) -> u32 {
        let mut spins = 0u32;
        loop {
            // Relaxed: a guess for the compare-exchange that follows.
            let c = self.0.load(Ordering::Relaxed);
            if c != LOCKED {
                return c;
            }
            spins += 1;
            if spins % 64 == 0 {
                crate::loom::yield_now();
            } else {
                // Under loom a yield, so that the holder runs.
                crate::loom::spin_loop();
            }
        }
    }

    /// Take a guard of the slot whose sequence word is `seq_word`, expected to hold frame
    /// `seq`: the first guard sets the pin bit ([`pin`]), a further one only counts. False if
    /// the slot no longer holds `seq`, or if the count already holds `LOCKED - 1` (2³² − 2)
    /// guards (leaked ones: `mem::forget`), the most it can hold: one more would read as
    /// [`LOCKED`] for ever, and every pin and unpin of the slot would then spin in `get`.
    /// A pin that set the bit and cleared it again wakes a publisher parked on `released`.
    ///
    /// `first` runs once the first guard has pinned the slot, while the count is still
    /// [`LOCKED`] (before any other guard of the slot can be taken): what it writes is seen by
    /// every later guard of the same pin (their Acquire on the count), and no guard of the slot
    /// exists while it runs. `Subscriber` copies the frame's metadata there. It must not panic
    /// or block (run no user code: `Subscriber` drops the copy it replaces afterwards): a
    /// panic would leave the count `LOCKED`, and every later pin or unpin of the slot spin.
    #[inline(always)]
    pub(crate) fn pin<'a>(
        &self,
        seq_word: &AtomicU64,
        seq: u64,
        bit_of: impl Fn() -> (&'a AtomicU64, u64),
        released: &WaitQueue,
        first: impl FnOnce(),
    ) -> bool {
        loop {
            let c = self.get();
            if c == LOCKED - 1 {
                return false;
            }
            if c > 0 {
                // We pin the slot already (count > 0 keeps the bit set), so its frame cannot
                // change: the same check as the first pin's re-check. Acquire on the
                // compare-exchange: after the holder's setting of the bit.
                if self
                    .0
                    .compare_exchange(c, c + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                // Acquire: as in `pin`.
                if seq_word.load(Ordering::Acquire) != seq {
                    self.unpin(bit_of, released);
                    return false;
                }
                return true;
            }
            // Acquire pairs with the Release that ended the last holder's transition.
            if self
                .0
                .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let (word, bit) = bit_of();
            let pinned = pin(word, bit, seq_word, seq);
            if pinned {
                first();
            }
            // Release: the next transition of this count sees the bit as we left it, and the
            // next guard of this pin (the Acquire compare-exchange above) what `first` wrote.
            self.0.store(u32::from(pinned), Ordering::Release);
            if !pinned {
                // The bit was set and cleared again: a publisher that saw it and parked in
                // `loan` (re-checking after registering, `park_checked`) must learn that the
                // slot is free. The fence in `notify_if_sleepers` orders the clear before the
                // sleepers load.
                released.notify_if_sleepers(u32::MAX);
            }
            return pinned;
        }
    }

    /// Release a guard taken by [`GuardCount::pin`]: the last one clears the pin bit
    /// ([`unpin`]) and wakes a publisher parked on `released`.
    #[inline(always)]
    pub(crate) fn unpin<'a>(
        &self,
        bit_of: impl Fn() -> (&'a AtomicU64, u64),
        released: &WaitQueue,
    ) {
        loop {
            match self.get() {
                0 => return, // not pinned (cannot happen: every unpin follows a pin)
                1 => {
                    // Acquire: after every other guard's reads of the frame (their Release
                    // decrements below), so our unpin's Release covers them too.
                    if self
                        .0
                        .compare_exchange(1, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    let (word, bit) = bit_of();
                    unpin(word, bit);
                    // Release: as in `pin`.
                    self.0.store(0, Ordering::Release);
                    // Only a publisher parked in `loan` waits for this (it parks with
                    // `park_checked`, re-checking the pins after registering): no write to the
                    // control block, and no system call, while it does not sleep.
                    released.notify_if_sleepers(u32::MAX);
                    return;
                }
                c => {
                    // Release: this guard's reads of the frame happen before the last
                    // guard's unpin (its Acquire compare-exchange above).
                    if self
                        .0
                        .compare_exchange(c, c - 1, Ordering::Release, Ordering::Relaxed)
                        .is_ok()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// A frame's data under loom: a cell whose accesses loom checks for data races (a read by a
/// pin holder and the publisher's overwrite must be ordered by the pin protocol).
#[cfg(all(test, loom))]
pub(crate) struct Data(loom::cell::UnsafeCell<u64>);

// SAFETY: shared only between a model's threads, whose accesses loom checks for races (an
// unordered read and write fail the model).
#[cfg(all(test, loom))]
unsafe impl Sync for Data {}

#[cfg(all(test, loom))]
impl Data {
    pub(crate) fn new(v: u64) -> Data {
        Data(loom::cell::UnsafeCell::new(v))
    }

    /// Read the frame (a reader holding a pin).
    pub(crate) fn read(&self) -> u64 {
        // SAFETY: a plain read; loom reports it if it races with a write.
        self.0.with(|v| unsafe { *v })
    }

    /// Write the frame (the publisher, in a claimed slot).
    pub(crate) fn write(&self, x: u64) {
        // SAFETY: a plain write; loom reports it if it races with a read.
        self.0.with_mut(|v| unsafe { *v = x })
    }
}

/// The publisher's side of the parked-loan models, as `Publisher::loan` does it: claim slot
/// `i` holding `old` with the production `recovery::claim_hint` (no subscriber known dead),
/// waiting on `released` with the production wait loop (`WaitQueue::wait_for`, no deadline)
/// until the claim works.
#[cfg(all(test, loom))]
pub(crate) fn loan_parked(v: &View, i: u64, old: u64) {
    use crate::sync::waiter::Step;
    v.ctrl().released.wait_for(|check| {
        if !check && super::recovery::claim_hint(v, (i, old), &[]) {
            Step::Done(())
        } else {
            Step::Nothing
        }
    })
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use crate::frames::layout::{Policy, View};
    use crate::frames::recovery;
    use crate::frames::window::{self, Scan, Want, Window};
    use crate::sync::waiter::Step;
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

    /// A live subscriber of record `rec` (its owner word claimed with token `10 + rec`).
    fn attached(v: &View, rec: u64) {
        v.record(rec).owner.claim(10 + rec).unwrap();
    }

    /// A publisher that finds the slot pinned parks on `released` with `park_checked`
    /// (claiming again after registering as a sleeper), as `Publisher::loan` does; the
    /// subscriber's last guard dropped (`GuardCount::unpin`: the unpin and its
    /// `notify_if_sleepers`) always wakes it (a lost wake-up would be a loom deadlock).
    #[test]
    fn loom_unpin_wakes_a_parked_loan() {
        crate::queue::loom_model(|| {
            let v = View::model(1, 2, Policy::ReuseOldest);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            attached(&v, 1);
            let count = Arc::new(GuardCount::new());
            let released = &v.ctrl().released;
            assert!(count.pin(&v.meta(0).seq, 1, || v.pin_of(1, 0), released, || ()));
            let c = count.clone();
            let sub = thread::spawn(move || c.unpin(|| v.pin_of(1, 0), &v.ctrl().released));
            loan_parked(&v, 0, 1);
            sub.join().unwrap();
        });
    }

    /// The block-policy attach models' channel: one slot holding frame 2 (`head` 2), and
    /// record 0 free but showing its previous owner's cursor, 5 (ahead of the window).
    fn block_channel() -> View {
        let v = View::model(1, 1, Policy::Block);
        v.meta(0).seq.store(2, Ordering::Relaxed);
        v.ctrl().head.store(2, Ordering::Relaxed);
        v.record(0).cursor.store(5, Ordering::Relaxed);
        v
    }

    /// A new subscriber attaches to `block_channel` as `Subscriber::attach` does (claims the
    /// record, clears its pins, `Window::attach` with `wanted` 1: cursor store, fence, scan):
    /// its window.
    fn attach_late(v: &View) -> Window {
        v.record(0).owner.claim(9).unwrap();
        recovery::clear_pins(v, 0);
        Window::attach(v, 0, 1)
    }

    /// Frame 2 as a late joiner's receive sees it (the production `window::scan`, `Next`
    /// under block): `Some(true)` received, `Some(false)` skipped (a newer frame, or none: the
    /// frame is gone), `None` wait (a claim `rolls_back` says will be rolled back).
    fn take_frame_2(v: &View, w: &Window) -> Option<bool> {
        match window::scan(v, 0, 1, Want::Next, true, &w.claimed) {
            Scan::Found(_, s) => Some(s == 2),
            Scan::Wait => None,
            Scan::Nothing => Some(false),
        }
    }

    /// Attaching under the block policy: the record still shows the previous owner's cursor
    /// (5, ahead of the window) when the new owner stores its own (1: it wants frame 2 on) and
    /// takes its window (production `Window::attach`); then it receives as `Subscriber::scan`
    /// does: a `CLAIMED` slot is waited for if `rolls_back` says so, else skipped. The
    /// publisher loans with the production `recovery::claim_hint`, whose checks may first
    /// have missed the new owner. A frame the window found present is never taken (the claim
    /// is rolled back) and never skipped: it is received. Without the wait (`rolls_back`
    /// false) the subscriber skips frame 2 while the publisher is rolling its claim back.
    #[test]
    fn loom_attach_cursor_vs_block_claim() {
        crate::queue::loom_model(|| {
            let v = block_channel();
            let sub = thread::spawn(move || {
                let w = attach_late(&v);
                let present = w.present.contains(&2);
                loop {
                    if let Some(got) = take_frame_2(&v, &w) {
                        return (present, got);
                    }
                    thread::yield_now();
                }
            });
            let wrote = recovery::claim_hint(&v, (0, 2), &[]);
            if wrote {
                publish_frame(&v, 0, 3);
            }
            let (present, received) = sub.join().unwrap();
            assert!(
                !present || received,
                "a frame present at attach was skipped"
            );
            assert!(!(received && wrote), "a received frame was overwritten");
        });
    }

    /// A late joiner of `block_channel` that receives as `Subscriber::get_until` does: take,
    /// else wait on `published` with the production wait loop (`WaitQueue::wait_for`, taking
    /// again after registering as a sleeper) until a take returns. Returns (frame 2 present at
    /// attach, frame 2 received).
    fn late_joiner_parked(v: &View) -> (bool, bool) {
        let w = attach_late(v);
        let present = w.present.contains(&2);
        v.ctrl().published.wait_for(|check| {
            if check {
                return Step::Nothing; // no deadline, no liveness to check
            }
            match take_frame_2(v, &w) {
                Some(got) => Step::Done((present, got)),
                None => Step::Nothing,
            }
        })
    }

    /// A claim rolled back notifies `published` (the production `recovery::claim_hint`, under
    /// block), and a late joiner parked for that frame always wakes and receives it. Without
    /// that notify this model deadlocks (the joiner sleeps on a frame that is back in its
    /// slot).
    #[test]
    fn loom_rolled_back_claim_wakes_a_parked_joiner() {
        crate::queue::loom_model(|| {
            let v = block_channel();
            let sub = thread::spawn(move || late_joiner_parked(&v));
            let wrote = recovery::claim_hint(&v, (0, 2), &[]);
            if wrote {
                publish_frame(&v, 0, 3);
            }
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
            let v = block_channel();
            let sub = thread::spawn(move || late_joiner_parked(&v));
            if recovery::claim_hint(&v, (0, 2), &[]) {
                v.meta(0).seq.store(0, Ordering::Release); // the loan dropped
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
    /// `head = n` (Release) after `seq = n` and before it claims the slot for `n + 1`; so the
    /// scan, which drops a word beyond `head + 1` as forged, never drops a real frame. One
    /// slot, two publishes (`recovery::claim_hint`, `publish`, `head`, as `Loan::publish`),
    /// two production scans: each keeps the frame it saw. Fails if the bound is `head`.
    #[test]
    fn loom_sequence_word_is_at_most_one_ahead_of_head() {
        crate::queue::loom_model(|| {
            let v = View::model(1, 1, Policy::ReuseOldest);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            v.ctrl().head.store(1, Ordering::Relaxed);
            let publisher = thread::spawn(move || {
                for n in 2..=3 {
                    assert!(recovery::claim_hint(&v, (0, n - 1), &[]));
                    publish_frame(&v, 0, n);
                }
            });
            for _ in 0..2 {
                let w = Window::scan(&v, 0);
                assert!(
                    (1..=3).contains(&w.top),
                    "the scan dropped a real frame as forged (top {})",
                    w.top
                );
            }
            publisher.join().unwrap();
        });
    }

    /// A receiver with nothing to take waits on `published` (`WaitQueue::wait_for`, taking
    /// again after registering, as `Subscriber::get_until` does; its take looks at the `head`
    /// doorbell, Relaxed, then pins the frame, as `Subscriber::take`); the publisher's
    /// `publish_frame` (as `Loan::publish`) always wakes it. Deadlocks without the notify in
    /// `publish_frame`.
    #[test]
    fn loom_publish_wakes_a_parked_receiver() {
        crate::queue::loom_model(|| {
            let v = View::model(2, 1, Policy::ReuseOldest);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            v.ctrl().head.store(1, Ordering::Relaxed);
            attached(&v, 0);
            let receiver = thread::spawn(move || {
                let take = || {
                    v.ctrl().head.load(Ordering::Relaxed) > 1 && {
                        let (word, bit) = v.pin_of(0, 1);
                        pin(word, bit, &v.meta(1).seq, 2)
                    }
                };
                v.ctrl().published.wait_for(|check| {
                    if !check && take() {
                        Step::Done(())
                    } else {
                        Step::Nothing
                    }
                })
            });
            assert!(recovery::claim_hint(&v, (1, 0), &[]));
            publish_frame(&v, 1, 2);
            receiver.join().unwrap();
        });
    }

    /// A subscriber whose pin attempt fails (its frame is not in the slot, or the publisher's
    /// claim raced it and both backed off) clears its bit again: a publisher that saw the
    /// transient bit and parked with `park_checked` must be woken, as by an unpin
    /// (`GuardCount::pin` notifies `released`; without that notify this model deadlocks).
    #[test]
    fn loom_failed_pin_wakes_a_parked_loan() {
        crate::queue::loom_model(|| {
            let v = View::model(1, 2, Policy::ReuseOldest);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            attached(&v, 1);
            // Expects frame 2 in this slot, which holds frame 1: the pin fails.
            let sub = thread::spawn(move || {
                let count = GuardCount::new();
                let pinned = count.pin(
                    &v.meta(0).seq,
                    2,
                    || v.pin_of(1, 0),
                    &v.ctrl().released,
                    || (),
                );
                assert!(!pinned);
            });
            loan_parked(&v, 0, 1);
            sub.join().unwrap();
        });
    }

    /// Two guards of one slot taken and dropped on two threads of one subscriber process
    /// (`GuardCount`, as `Subscriber` pins for each `Frame`), while the publisher claims the
    /// slot (`recovery::claim_hint`) and, if it gets it, overwrites the frame: the pin bit
    /// stays set while any guard lives, so no guard's read races with the overwrite (loom
    /// checks the data cell), and the count and the bit end at zero. Each guard also reads the
    /// copy of the frame's metadata that the pin's first guard wrote (`first`): loom checks
    /// that cell too. Fails if an unpin clears the bit while another guard is held (e.g.
    /// `unpin` taking any count as the last), if the count's transitions lose the ordering of
    /// the other guard's reads (the last unpin's Acquire), or if `first` runs after the count
    /// is released (a later guard then reads the copy while it is written).
    #[test]
    fn loom_guard_counts_keep_the_bit_while_any_guard_lives() {
        crate::queue::loom_model(|| {
            let v = View::model(1, 1, Policy::ReuseOldest);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            attached(&v, 0);
            let count = Arc::new(GuardCount::new());
            let data = Arc::new(Data::new(111));
            // The subscriber's copy of the frame's metadata (`Inner::held`): written by the
            // first guard of a pin (`first`), read by every guard of it.
            let held = Arc::new(Data::new(0));
            let guard = || {
                let (c, d, h) = (count.clone(), data.clone(), held.clone());
                thread::spawn(move || {
                    let released = &v.ctrl().released;
                    let first = || h.write(1);
                    if c.pin(&v.meta(0).seq, 1, || v.pin_of(0, 0), released, first) {
                        assert_eq!(d.read(), 111);
                        assert_eq!(h.read(), 1, "a guard saw no copy");
                        c.unpin(|| v.pin_of(0, 0), released);
                    }
                })
            };
            let (a, b) = (guard(), guard());
            if recovery::claim_hint(&v, (0, 1), &[]) {
                data.write(222);
                publish_frame(&v, 0, 2);
            }
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(count.0.load(Ordering::Relaxed), 0, "a guard count was left");
            let (word, _) = v.pin_of(0, 0);
            assert_eq!(word.load(Ordering::Relaxed), 0, "a pin bit was left");
        });
    }
}
