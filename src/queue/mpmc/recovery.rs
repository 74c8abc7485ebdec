//! Recovery from handles killed mid-operation: a position claimed by a producer that died
//! before publishing is skipped, a slot held by a consumer that died before releasing it is
//! freed, once the claimer is known dead (`SPEC.md` §7.4).

use super::*;

impl Shared {
    /// Whether a live handle of `role` records `pos` as its in-flight position.
    pub(super) fn live_claimer(&self, role: Role, pos: u64) -> bool {
        self.ctrl().claims(role).iter().any(|c| {
            let w = c.owner.holder();
            // Acquire pairs with the Release store of `inflight` in push/pop: if we see the
            // claimer's newer position, we also see its publication of `pos`.
            w != 0
                && c.inflight.load(Ordering::Acquire) == pos
                && role::liveness_of(w) != Liveness::Dead
        })
    }
}

impl<L: ElemLayout> ProdEnd<L> {
    /// Free the slot of position `prev` if the consumer that claimed it is dead.
    pub(super) fn recover(&self, prev: u64) {
        let sh = &*self.h.q;
        if sh.live_claimer(Role::Consumer, prev) {
            return;
        }
        // The claimer died after taking `prev` and before releasing the slot: its element is
        // lost (it was in flight). Release the slot as it would have: from `prev + 1` (it was
        // popping the element), or from `prev` (it was skipping a dead producer's position,
        // `ConsEnd::recover`). AcqRel/Relaxed: the CAS decides among racing recoverers;
        // Release pairs with producers' Acquire stamp loads.
        for from in [prev.wrapping_add(1), prev] {
            if sh
                .stamp(prev)
                .compare_exchange(
                    from,
                    prev.wrapping_add(sh.capacity),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                break;
            }
        }
    }
}

impl<L: ElemLayout> ConsEnd<L> {
    /// Skip position `pos` if the producer that claimed it is dead. Returns whether skipped.
    pub(super) fn recover(&self, pos: u64) -> bool {
        let sh = &*self.h.q;
        if sh.live_claimer(Role::Producer, pos) {
            return false;
        }
        // Acquire (pairs with the producer's Release stamp store in `ProdEnd::attempt`, as in
        // `ConsEnd::attempt`): re-check after the scan; a published element is taken normally.
        if sh.stamp(pos).load(Ordering::Acquire) != pos {
            return false;
        }
        // Its claimer died between claiming and publishing: claim the position as a consumer
        // and release the slot empty. Release: inflight as in `attempt`.
        self.h.claim().inflight.store(pos, Ordering::Release);
        let ctrl = sh.ctrl();
        // AcqRel: as the head CAS in `ConsEnd::attempt` (Release publishes the inflight store
        // with the new head).
        if ctrl
            .head
            .head
            .compare_exchange(
                pos,
                pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            // Release pairs with producers' Acquire stamp loads.
            sh.stamp(pos)
                .store(pos.wrapping_add(sh.capacity), Ordering::Release);
            sh.wake_producers(pos);
            return true;
        }
        // Someone else moved `head` first: withdraw our claim record (as in push).
        self.h.claim().inflight.store(NONE, Ordering::Release);
        false
    }
}
