//! The publisher's side of slot selection and crash recovery (`SPEC.md`, frames section
//! "Deaths"): which slot is free, how a dead subscriber's pins stop counting, and how a new
//! publisher takes over from a dead one.

use std::sync::atomic::Ordering;

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
    for w in 0..v.g.pin_words() {
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
    v.g.policy == Policy::Block
        && seq != 0
        && (0..v.g.subscribers).any(|r| {
            let rec = v.record(r);
            // Relaxed cursor: a hint of progress; the pin bits guard the data.
            counts(rec.owner.holder(), dead) && rec.cursor.load(Ordering::Relaxed) < seq
        })
}

/// Claim the free slot holding the oldest frame (an empty slot first), or `None` if every slot
/// is held. The claim is the Dekker step of [`pin::claim`]: after marking the slot `CLAIMED`,
/// the pins are read again, so a subscriber pinning meanwhile either is seen or sees the claim.
pub(crate) fn claim_free(v: &View, dead: &[u64]) -> Option<u64> {
    // A few rounds: a claim lost to a concurrent pin moves on to the next candidate.
    for _ in 0..4 {
        let mut best: Option<(u64, u64)> = None;
        for i in 0..v.g.slots {
            // Acquire: pairs with our own earlier Release stores (a restore or a publish);
            // only this publisher writes sequence words.
            let s = v.meta(i).seq.load(Ordering::Acquire);
            if s & CLAIMED != 0 || best.is_some_and(|(_, b)| b <= s) || held(v, i, s, dead) {
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
/// As in [`claim_free`], a held slot is never marked `CLAIMED`, not even for the moment the
/// claim takes to back off: a receiver that sees `CLAIMED` takes the frame for gone and skips
/// it, so a publisher blocked on held slots (Block policy) that claimed and restored the
/// oldest one on every attempt would make its subscribers skip frames they hold back.
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
            // Release: subscribers that read 0 see an empty slot.
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
