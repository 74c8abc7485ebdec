//! The publisher's side of slot selection and crash recovery (`SPEC.md`, frames section
//! "Deaths"): which slot is free, how a dead subscriber's pins stop counting, and how a new
//! publisher takes over from a dead one; and the subscriber's clearing of a dead previous
//! owner's pins. Built under loom (over `View::heap`): the models below drive this code.

#![cfg_attr(loom, allow(dead_code))] // under loom only the models use it

use crate::loom::Ordering;

use super::layout::{Policy, View};
use super::pin::{self, CLAIMED};
use crate::os::process::Liveness;
use crate::queue::role;

/// Whether record owner word `w` counts: a subscriber that is attached and not known dead.
fn counts(w: u64, dead: &[u64]) -> bool {
    w != 0 && !dead.contains(&w)
}

/// Whether a counting record pins slot `i`, or (with [`Policy::Block`]) has not yet received
/// frame `seq` in it. The pins are slot `i`'s own pin words (in the cache line of its `seq`):
/// a record is read only when its bit is set (to see whether it counts), or under
/// [`Policy::Block`] (its cursor). Pin loads are Acquire: they pair with the subscribers'
/// Release unpins, so their reads of the old frame happen before our writes.
#[inline]
fn held(v: &View, i: u64, seq: u64, dead: &[u64]) -> bool {
    pinned(v, i, dead)
        || v.g.policy == Policy::Block
            && seq != 0
            && (0..v.g.subscribers).any(|r| {
                let rec = v.record(r);
                // Relaxed cursor: a hint of progress; the pin bits guard the data.
                counts(rec.owner.holder(), dead) && rec.cursor.load(Ordering::Relaxed) < seq
            })
}

/// Whether a counting record's pin bit is set in slot `i`'s pin words ([`held`]'s pins).
#[inline]
fn pinned(v: &View, i: u64, dead: &[u64]) -> bool {
    for w in 0..v.g.pin_words() {
        // Acquire pairs with the Release unpins (`pin::unpin`, `clear_pins`): a subscriber's
        // reads of the frame happen before our next write of the slot.
        let mut bits = v.pin_word(i, w).load(Ordering::Acquire);
        while bits != 0 {
            let r = w * 64 + u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            // A bit past the last record (a hostile write) pins nothing.
            if r < v.g.subscribers && counts(v.record(r).owner.holder(), dead) {
                return true;
            }
        }
    }
    false
}

/// Under [`Policy::Block`], the smallest cursor of the counting records, each read once
/// (`None`: none counts, or the policy is reuse-oldest): a slot whose frame is newer is held.
///
/// [`claim_free`] judges every slot of one scan against these values, not against a cursor
/// read afresh for each slot: a new subscriber's cursor moves *back* when it attaches (from
/// its record's previous owner's cursor to `head − history`), and read per slot it could make
/// a slot holding an older frame held and one holding a newer frame free, in the same scan.
/// The claim of that newer frame is then rolled back (the claim's own check sees the new
/// cursor), but the subscriber's attach scan may have seen it `CLAIMED`, and a frame
/// `CLAIMED` at attach is not waited for: a receive that comes to it while it shows the claim
/// skips it for a newer frame, a hole after frames received before it (test
/// `block_policy_late_joiners_count_nothing_lost`). With one cursor per scan, the slot claimed
/// is the oldest not pinned, older than any frame the new cursor holds back.
fn cursor_floor(v: &View, dead: &[u64]) -> Option<u64> {
    if v.g.policy != Policy::Block {
        return None;
    }
    (0..v.g.subscribers)
        .filter_map(|r| {
            let rec = v.record(r);
            // Relaxed cursor: as in `held`.
            counts(rec.owner.holder(), dead).then(|| rec.cursor.load(Ordering::Relaxed))
        })
        .min()
}

/// Claim the free slot holding the oldest frame (an empty slot first), or `None` if every slot
/// is held. The claim is the Dekker step of [`pin::claim`]: after marking the slot `CLAIMED`,
/// the pins are read again, so a subscriber pinning meanwhile either is seen or sees the claim.
pub(crate) fn claim_free(v: &View, dead: &[u64]) -> Option<u64> {
    // A few rounds: a claim lost to a concurrent pin moves on to the next candidate.
    for _ in 0..4 {
        let floor = cursor_floor(v, dead);
        let mut best: Option<(u64, u64)> = None;
        for i in 0..v.g.slots {
            // Acquire: pairs with our own earlier Release stores (a restore or a publish);
            // only this publisher writes sequence words.
            let s = v.meta(i).seq.load(Ordering::Acquire);
            if s & CLAIMED != 0
                || best.is_some_and(|(_, b)| b <= s)
                || s != 0 && floor.is_some_and(|c| c < s)
                || pinned(v, i, dead)
            {
                continue;
            }
            best = Some((i, s));
        }
        let (i, s) = best?;
        if claim(v, i, s, dead) {
            return Some(i);
        }
    }
    None
}

/// Claim slot `i`, chosen ahead by the publisher as the slot with the smallest `seq` (`old`)
/// of all: true if it still holds `old` (only the publisher changes sequence words, so it is
/// still the oldest), it is not held, and the claim (§8.2's Dekker step, as in
/// [`claim_free`]) still finds it not held. False otherwise (the loan then scans with
/// [`claim_free`]).
///
/// As in [`claim_free`], a slot held when this checks it is never marked `CLAIMED`, not even
/// for the moment the claim takes to back off: a receiver that sees `CLAIMED` takes the frame
/// for gone and skips it, so a publisher blocked on held slots (Block policy) that claimed and
/// restored the oldest one on every attempt would make its subscribers skip frames they hold
/// back. (A pin that lands after the check and before the claim's store still sees the claim
/// for that moment: SPEC §8.3, "`loan`".)
#[inline]
pub(crate) fn claim_hint(v: &View, (i, old): (u64, u64), dead: &[u64]) -> bool {
    if i >= v.g.slots {
        return false;
    }
    let seq = &v.meta(i).seq;
    // Relaxed: only we write sequence words; the claim's fence orders what follows.
    seq.load(Ordering::Relaxed) == old && !held(v, i, old, dead) && claim(v, i, old, dead)
}

/// [`pin::claim`] of slot `i` holding `old`. Under the block policy a claim rolled back (a
/// holder appeared between the caller's check and the claim's) may have been seen by a
/// subscriber, which then waits for the frame instead of skipping it (`pin::rolls_back`):
/// wake it if it sleeps (a `fence(SeqCst)` and a load; nothing more when nobody sleeps).
/// Under reuse-oldest nobody waits for a claimed frame.
#[inline]
fn claim(v: &View, i: u64, old: u64, dead: &[u64]) -> bool {
    if pin::claim(&v.meta(i).seq, old, || held(v, i, old, dead)) {
        return true;
    }
    if v.g.policy == Policy::Block {
        v.ctrl().published.notify_if_sleepers(u32::MAX);
    }
    false
}

/// Query the liveness of every counting subscriber; add the dead ones to `dead` and free
/// their records (owner word dead → 0, so a new subscriber can take them; their stale pin
/// bits stay until then and count for nothing: records with owner 0 are skipped). True if
/// any was found dead.
///
/// A process has one token, so a dead process that attached several subscribers left that
/// token in several records: each of them is freed, not only the first (the later ones no
/// longer count once the token is in `dead`, but their owner words must still go to 0).
pub(crate) fn find_dead(v: &View, dead: &mut Vec<u64>) -> bool {
    if dead.len() > 4 * v.g.subscribers as usize {
        dead.clear(); // freed records hold other tokens by now; bounded memory
    }
    let mut found = false;
    for r in 0..v.g.subscribers {
        let owner = &v.record(r).owner;
        let w = owner.holder();
        if w == 0 {
            continue;
        }
        let known = dead.contains(&w);
        if known || role::liveness_of(w) == Liveness::Dead {
            if !known {
                dead.push(w);
                found = true;
            }
            owner.release(w);
        }
    }
    found
}

/// Clear record `rec`'s bit in every slot's pin words (its owner's job: on attach, what a dead
/// previous owner left; on detach, its own).
pub(crate) fn clear_pins(v: &View, rec: u64) {
    for i in 0..v.g.slots {
        let (word, bit) = v.pin_of(rec, i);
        // Release: as in `pin::unpin`. An RMW: other records' bits share the word.
        word.fetch_and(!bit, Ordering::Release);
    }
}

/// Take over the channel as its new publisher (the role is already ours): a slot left
/// `CLAIMED` by a dead publisher holds a half-written frame that was never published, so it
/// is emptied; the next sequence number follows the highest one published. `Err` if the
/// words are impossible.
pub(crate) fn take_over(v: &View) -> Result<u64, String> {
    let mut top = 0;
    let mut emptied = false;
    for i in 0..v.g.slots {
        let seq = &v.meta(i).seq;
        // Acquire: pairs with the previous publisher's Release publishes (our role claim
        // already synchronised with its release, or it died: then a Relaxed view suffices,
        // the slot is only emptied).
        let s = seq.load(Ordering::Acquire);
        if s & CLAIMED != 0 {
            // Release pairs with the subscribers' Acquire loads of `seq` (`pin::pin`,
            // `window::read_slots`): those that read 0 see an empty slot.
            seq.store(0, Ordering::Release);
            emptied = true;
        } else {
            top = top.max(s);
        }
    }
    // Acquire: pairs with the Release stores of head in `Loan::publish`.
    let head = v.ctrl().head.load(Ordering::Acquire);
    let last = top.max(head);
    let moved = last > head && last < CLAIMED;
    if moved {
        // The dead publisher published `last` but died before moving `head` (the doorbell
        // subscribers poll): move it now. Release: as in `Loan::put`.
        v.ctrl().head.store(last, Ordering::Release);
    }
    if moved || emptied {
        // Subscribers parked on `published` see the frame now, or stop waiting for the
        // emptied slot's frame (a claim the dead publisher did not roll back, which a
        // receiver under block waits for: `pin::rolls_back`), not at their next slice.
        v.ctrl().published.notify_all();
    }
    last.checked_add(1)
        .filter(|&n| n < CLAIMED)
        .ok_or_else(|| format!("sequence {last} is out of range"))
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use crate::frames::pin::Data;
    use crate::queue::role::LOOM_DEAD;
    use loom::sync::Arc;
    use loom::thread;

    /// A subscriber of record `rec` (its owner word already claimed) that looks at every slot
    /// `rounds` times and, for each published frame it finds (a word without `CLAIMED`), pins
    /// it (`pin::pin`, as `Subscriber` does), checks that the slot's data is that frame's
    /// (the publisher writes frame `n`'s data as `n`), and unpins.
    fn reader(v: View, rec: u64, data: &[Data], rounds: usize) {
        for _ in 0..rounds {
            for i in 0..v.g.slots {
                let seq = &v.meta(i).seq;
                let w = seq.load(Ordering::Acquire);
                if w == 0 || w & CLAIMED != 0 {
                    continue;
                }
                let (word, bit) = v.pin_of(rec, i);
                if pin::pin(word, bit, seq, w) {
                    assert_eq!(
                        data[i as usize].read(),
                        w,
                        "frame {w} in slot {i} is not whole"
                    );
                    pin::unpin(word, bit);
                }
            }
        }
    }

    /// A publisher killed mid-write, then a new one (`SPEC.md` §8, "Deaths"): the dead
    /// publisher published frame 2 in slot 0 and died before moving `head` (still 1), after
    /// claiming slot 1 (which held frame 1) and writing half of frame 3 into it. The new
    /// publisher claims the role from the dead holder, runs the production `take_over` and
    /// `claim_free`, writes and publishes its first frame, while a subscriber pins whatever is
    /// published. The subscriber never sees the half-written frame (loom also checks its reads
    /// against the new publisher's write for races); the takeover moves `head` to 2 and
    /// numbers the next frame 3. Fails if `take_over` restores a `CLAIMED` slot's old frame
    /// instead of emptying it (frame 1 would come back over the half-written bytes).
    #[test]
    fn loom_takeover_never_shows_the_half_written_frame() {
        crate::queue::loom_model(|| {
            let v = View::model(2, 1, Policy::ReuseOldest);
            let data = Arc::new(vec![Data::new(2), Data::new(99)]);
            v.meta(0).seq.store(2, Ordering::Relaxed);
            v.meta(1).seq.store(1 | CLAIMED, Ordering::Relaxed);
            v.ctrl().head.store(1, Ordering::Relaxed);
            v.ctrl().publisher.claim(LOOM_DEAD).unwrap();
            v.record(0).owner.claim(5).unwrap();
            let d = data.clone();
            let sub = thread::spawn(move || reader(v, 0, &d, 2));
            v.ctrl()
                .publisher
                .claim(7)
                .expect("the dead publisher's role is taken");
            let n = take_over(&v).unwrap();
            assert_eq!(n, 3, "the next frame follows the largest published");
            assert_eq!(
                v.ctrl().head.load(Ordering::Relaxed),
                2,
                "head was not moved"
            );
            let i = claim_free(&v, &[]).expect("a slot is free");
            data[i as usize].write(n);
            pin::publish_frame(&v, i, n);
            sub.join().unwrap();
        });
    }

    /// `claim_hint`'s check before the claim: a slot a live subscriber pins while the loan
    /// starts is not marked `CLAIMED` even for the moment a claim takes to back off (a
    /// receiver that sees `CLAIMED` takes the frame for gone). The subscriber releases its
    /// pin as the publisher tries its hint; another subscriber looks at the slot meanwhile:
    /// if it ever sees `CLAIMED`, the claim went through. Fails without the check before the
    /// claim (`!held(..)` in `claim_hint`).
    #[test]
    fn loom_claim_hint_never_marks_a_held_slot() {
        crate::queue::loom_model(|| {
            let v = View::model(1, 2, Policy::ReuseOldest);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            v.record(0).owner.claim(5).unwrap();
            let (word, bit) = v.pin_of(0, 0);
            assert!(pin::pin(word, bit, &v.meta(0).seq, 1));
            let holder = thread::spawn(move || {
                let (word, bit) = v.pin_of(0, 0);
                pin::unpin(word, bit);
            });
            let observer =
                thread::spawn(move || v.meta(0).seq.load(Ordering::Acquire) & CLAIMED != 0);
            let got = claim_hint(&v, (0, 1), &[]);
            holder.join().unwrap();
            let saw_claim = observer.join().unwrap();
            assert!(
                !saw_claim || got,
                "a claim of a held slot was visible, then rolled back"
            );
        });
    }

    /// A dead process left two subscriber records (one token in both) with their pins set on
    /// slot 0's frame 1. A new subscriber takes over record 0 (`RoleSlot::claim` steals from
    /// the dead, `clear_pins`, then pins frame 1 and reads it), while the publisher runs the
    /// production `find_dead` and `claim_free` and overwrites the slot it gets. `find_dead`
    /// frees the dead record (1) but never the one the new subscriber took (its release is a
    /// compare-exchange from the dead token), so the new pin keeps counting and the frame it
    /// reads is never overwritten under it (loom checks the data for races). Fails if a
    /// record is freed with a plain store of 0.
    #[test]
    fn loom_find_dead_frees_only_the_dead_records() {
        crate::queue::loom_model(|| {
            let v = View::model(1, 2, Policy::ReuseOldest);
            let data = Arc::new(vec![Data::new(1)]);
            v.meta(0).seq.store(1, Ordering::Relaxed);
            for r in 0..2 {
                v.record(r).owner.claim(LOOM_DEAD).unwrap();
                let (word, bit) = v.pin_of(r, 0);
                word.fetch_or(bit, Ordering::Relaxed);
            }
            let d = data.clone();
            let sub = thread::spawn(move || {
                v.record(0)
                    .owner
                    .claim(9)
                    .expect("the dead owner's record is taken");
                clear_pins(&v, 0);
                reader(v, 0, &d, 1);
            });
            let mut dead = Vec::new();
            find_dead(&v, &mut dead);
            if let Some(i) = claim_free(&v, &dead) {
                data[i as usize].write(2);
                pin::publish_frame(&v, i, 2);
            }
            sub.join().unwrap();
            assert_eq!(
                v.record(0).owner.holder(),
                9,
                "the new subscriber's record was freed"
            );
            assert_eq!(
                v.record(1).owner.holder(),
                0,
                "the dead record was not freed"
            );
        });
    }

    /// What a receive under block (`Subscriber::scan`, `Next`, waiting for claims that
    /// `rolls_back` says will be rolled back: the production `window::scan`) takes after
    /// `after`: `Some(frame)`, or `None` (nothing yet, or a claim to wait for comes first).
    fn next_under_block(v: &View, after: u64, claimed_at_attach: &[u64]) -> Option<u64> {
        use crate::frames::window::{scan, Scan, Want};
        match scan(v, 0, after, Want::Next, true, claimed_at_attach) {
            Scan::Found(_, s) => Some(s),
            Scan::Wait | Scan::Nothing => None,
        }
    }

    /// A late joiner under block whose record shows its previous owner's cursor (6: every
    /// frame received), attaching with history (wanted 2) while the publisher looks for a
    /// slot with the production `claim_free`. The slots hold frames 5, 3, 4, 6 (the older
    /// frames 3 and 4 after the newer 5 in slot order). The joiner's frames, from its first
    /// on, are consecutive: a claim made while its cursor moved back never takes a newer frame
    /// while an older one is held back, so no frame the window saw `CLAIMED` lies between
    /// frames it receives. Fails if `claim_free` reads the cursor afresh for each slot (the
    /// claim of frame 5, judged free against the old cursor while 3 and 4 were held against
    /// the new one, made the joiner receive 3, 4, 6: test
    /// `block_policy_late_joiners_count_nothing_lost`, which saw it once in CI).
    #[test]
    fn loom_a_late_joiner_s_frames_have_no_hole() {
        crate::queue::loom_model(|| {
            let v = View::model(4, 1, Policy::Block);
            for (i, s) in [5, 3, 4, 6].into_iter().enumerate() {
                v.meta(i as u64).seq.store(s, Ordering::Relaxed);
            }
            v.ctrl().head.store(6, Ordering::Relaxed);
            v.record(0).cursor.store(6, Ordering::Relaxed); // the previous owner's
            let joiner = thread::spawn(move || {
                v.record(0).owner.claim(9).unwrap();
                clear_pins(&v, 0);
                let w = crate::frames::window::Window::attach(&v, 0, 2);
                let mut got = Vec::new();
                let mut after = 2;
                while after < 6 {
                    match next_under_block(&v, after, &w.claimed) {
                        Some(s) => {
                            got.push(s);
                            after = s;
                        }
                        None => thread::yield_now(),
                    }
                }
                got
            });
            if let Some(i) = claim_free(&v, &[]) {
                pin::publish_frame(&v, i, 7);
            }
            let got = joiner.join().unwrap();
            assert!(
                got.windows(2).all(|p| p[1] == p[0] + 1),
                "the joiner received {got:?}"
            );
        });
    }
}
