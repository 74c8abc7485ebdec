use super::*;
use crate::loom::futex::exact_wakes;

#[test]
fn loom_two_producers_one_consumer() {
    crate::queue::loom_model(|| {
        let q = Queue::<u64>::with_capacity(2);
        let mut keep = q.producer().unwrap();
        let mut c = q.consumer().unwrap();
        let hs: Vec<_> = (1..=2u64)
            .map(|v| {
                let mut p = q.producer().unwrap();
                loom::thread::spawn(move || p.push(v).unwrap())
            })
            .collect();
        let a = c.pop().unwrap();
        let b = c.pop().unwrap();
        assert_eq!(a + b, 3);
        hs.into_iter().for_each(|h| h.join().unwrap());
        // The two pushers detached (dropped); the last attached producer closes the side.
        assert_eq!(c.try_pop(), Err(TryPopError::Empty));
        keep.close();
        assert_eq!(c.try_pop(), Err(TryPopError::Disconnected));
    });
}

/// Two producers close at once: the side ends up closed (at least one of them sees the
/// other's release), and a consumer drains and gets `Disconnected`. A dropped producer
/// only detaches.
#[test]
fn loom_two_producers_close_at_once() {
    crate::queue::loom_model(|| {
        let q = Queue::<u64>::with_capacity(2);
        let mut c = q.consumer().unwrap();
        let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
        drop(q.producer().unwrap());
        let t = loom::thread::spawn(move || {
            a.try_push(1).unwrap();
            a.close();
        });
        b.close();
        t.join().unwrap();
        assert_eq!(c.try_pop(), Ok(1));
        assert_eq!(c.try_pop(), Err(TryPopError::Disconnected));
    });
}

/// Two producers race for the last free slot: the loser must not keep a claim record for
/// the winner's position (else, were the winner to die before publishing, recovery would
/// take the live loser for its claimer and never skip the position).
#[test]
fn loom_a_producer_that_loses_its_claim_withdraws_it() {
    crate::queue::loom_model(|| {
        let q = Queue::<u64>::with_capacity(2);
        let mut first = q.producer().unwrap();
        first.try_push(0).unwrap(); // one slot left
        let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
        let (sa, sb) = (a.e.h.slot(), b.e.h.slot());
        let t = loom::thread::spawn(move || {
            let won = a.try_push(1).is_ok();
            (won, a)
        });
        let won_b = b.try_push(2).is_ok();
        let (won_a, a) = t.join().unwrap();
        assert!(won_a ^ won_b, "exactly one push fits");
        let ctrl = q.shared.ctrl();
        for (slot, won) in [(sa, won_a), (sb, won_b)] {
            let inflight = ctrl.producers[slot].inflight.load(Ordering::Relaxed);
            assert_eq!(inflight, if won { 1 } else { NONE }, "won = {won}");
        }
        drop((a, b, first));
    });
}

#[test]
fn loom_consumer_frees_slots_for_the_next_lap() {
    crate::queue::loom_model(|| {
        let q = Queue::<u64>::with_capacity(2);
        let mut p = q.producer().unwrap();
        let mut b = q.consumer().unwrap();
        let mut a = q.consumer().unwrap();
        let h = loom::thread::spawn(move || a.pop().unwrap() + a.pop().unwrap());
        // The third push needs a slot the consumer thread frees (second lap).
        for v in 1..=3 {
            p.push(v).unwrap();
        }
        let got = h.join().unwrap();
        assert_eq!(got + b.pop().unwrap(), 6);
    });
}

/// Two consumer threads sleep in `pop()` while `publish` pushes 1 and 2: both get an element.
fn two_sleeping_consumers(publish: fn(&mut Producer<u64>)) {
    exact_wakes(move || {
        let q = Queue::<u64>::with_capacity(2);
        let mut p = q.producer().unwrap();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let mut c = q.consumer().unwrap();
                loom::thread::spawn(move || c.pop().unwrap())
            })
            .collect();
        publish(&mut p);
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 3);
    });
}

/// Two consumers sleep in `pop()`; each push wakes one of them (not both), and both get an
/// element: no wake-up is lost.
#[test]
fn loom_each_push_wakes_one_sleeping_consumer() {
    two_sleeping_consumers(|p| {
        p.push(1).unwrap();
        p.push(2).unwrap();
    });
}

/// A producer claims position 0 and is slow to publish it; meanwhile this thread publishes
/// position 1 (its wake goes to a consumer that cannot pop past position 0, which sleeps
/// again) and then sleeps in `pop()` itself. Publishing position 0 must wake both sleepers.
#[test]
fn loom_out_of_order_publication_wakes_enough_consumers() {
    exact_wakes(|| {
        let q = Queue::<u64>::with_capacity(2);
        let (mut p0, mut p1) = (q.producer().unwrap(), q.producer().unwrap());
        let (mut c0, mut c1) = (q.consumer().unwrap(), q.consumer().unwrap());
        let slow = loom::thread::spawn(move || p0.push(1).unwrap());
        let other = loom::thread::spawn(move || c0.pop().unwrap());
        p1.push(2).unwrap();
        let mine = c1.pop().unwrap();
        assert_eq!(mine + other.join().unwrap(), 3);
        slow.join().unwrap();
    });
}

/// Two producers sleep on a full queue; each pop wakes one, and both get their element in.
#[test]
fn loom_each_pop_wakes_one_sleeping_producer() {
    exact_wakes(|| {
        let q = Queue::<u64>::with_capacity(2);
        let mut c = q.consumer().unwrap();
        q.producer().unwrap().push_slice(&[1, 2]).unwrap();
        let hs: Vec<_> = (3..=4u64)
            .map(|v| {
                let mut p = q.producer().unwrap();
                loom::thread::spawn(move || p.push(v).unwrap())
            })
            .collect();
        let mut out = [0; 2];
        assert_eq!(c.pop_slice(&mut out), Ok(2));
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.try_pop_slice(&mut out), Ok(2));
        assert_eq!(out[0] + out[1], 7);
    });
}

/// A batch is published with one wake of as many sleepers as it has elements.
#[test]
fn loom_a_batch_wakes_a_sleeper_per_element() {
    two_sleeping_consumers(|p| p.push_slice(&[1, 2]).unwrap());
}

/// A producer killed after its tail CAS for position 0 and before publishing it; a live
/// producer's element (42) is published at position 1 behind it. Two consumers' first polls
/// (each due a liveness check) race to skip the dead position (`ConsEnd::recover`:
/// `live_claimer`, the stamp re-check, the head CAS): 42 is delivered exactly once, by one
/// poll or by a later one, and the skipped slot is free for the next lap.
#[test]
fn loom_two_consumers_skip_a_dead_producers_position_at_once() {
    crate::queue::loom_model(|| {
        let q = Queue::<u64>::with_capacity(2);
        let ctrl = q.shared.ctrl();
        ctrl.producers[5].owner.claim(role::LOOM_DEAD).unwrap();
        ctrl.producers[5].inflight.store(0, Ordering::Relaxed);
        ctrl.tail.tail.store(1, Ordering::Relaxed);
        let mut p = q.producer().unwrap();
        p.try_push(42).unwrap(); // position 1
        let (mut a, mut b) = (q.consumer().unwrap(), q.consumer().unwrap());
        let t = loom::thread::spawn(move || (a.try_pop(), a));
        let got_b = b.try_pop();
        let (got_a, mut a) = t.join().unwrap();
        let got = [got_a, got_b, a.try_pop()];
        assert_eq!(
            got.iter().filter(|r| **r == Ok(42)).count(),
            1,
            "42 exactly once: {got:?}"
        );
        assert!(
            got.iter()
                .all(|r| *r == Ok(42) || *r == Err(TryPopError::Empty)),
            "{got:?}"
        );
        assert_eq!(ctrl.head.head.load(Ordering::Relaxed), 2);
        // The next lap reuses the skipped slot 0 (position 2).
        p.try_push(7).unwrap();
        assert_eq!(a.try_pop(), Ok(7));
        drop((a, b, p));
    });
}

/// A consumer killed after its head CAS for position 0 and before freeing the slot (element
/// 1 in flight). Two producers' first pushes (each due a liveness check, finding the queue
/// full) race to free the slot (`ProdEnd::recover`: `live_claimer`, the stamp CAS), and one
/// of them pushes again: at most one push goes into the slot, the slot ends free or holding
/// that push (a late recovery never frees it again), and what was published behind the dead
/// consumer's element is still delivered, then the push.
#[test]
fn loom_two_producers_free_a_dead_consumers_slot_at_once() {
    two_producers_free_a_dead_consumers_slot(false);
}

/// As above, but the dead consumer was skipping position 0 (claimed by a producer that died
/// too, `ConsEnd::recover`) when it was killed after its head CAS: the slot's stamp is still
/// 0, and the producers free it from there (`ProdEnd::recover`'s second CAS, `SPEC.md` §7.4).
#[test]
fn loom_two_producers_free_a_slot_a_dead_consumer_was_skipping() {
    two_producers_free_a_dead_consumers_slot(true);
}

/// The two models above: `skipping` chooses what the dead consumer left at position 0.
fn two_producers_free_a_dead_consumers_slot(skipping: bool) {
    crate::queue::loom_model(move || {
        let q = Queue::<u64>::with_capacity(2);
        let ctrl = q.shared.ctrl();
        let mut p0 = q.producer().unwrap();
        if skipping {
            // Position 0 claimed by a producer that died before publishing.
            ctrl.producers[5].owner.claim(role::LOOM_DEAD).unwrap();
            ctrl.producers[5].inflight.store(0, Ordering::Relaxed);
            ctrl.tail.tail.store(1, Ordering::Relaxed);
        } else {
            p0.try_push(1).unwrap();
        }
        p0.try_push(2).unwrap(); // position 1
        ctrl.consumers[3].owner.claim(role::LOOM_DEAD).unwrap();
        ctrl.consumers[3].inflight.store(0, Ordering::Relaxed);
        ctrl.head.head.store(1, Ordering::Relaxed);
        let mut c = q.consumer().unwrap();
        let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
        // A's second push may go into the slot it freed while B's recovery is under way.
        let t = loom::thread::spawn(move || (a.try_push(3).or_else(|_| a.try_push(3)), a));
        let rb = b.try_push(4);
        let (ra, a) = t.join().unwrap();
        assert!(ra.is_ok() as u8 + rb.is_ok() as u8 <= 1, "{ra:?} {rb:?}");
        let pushed = match (ra, rb) {
            (Ok(()), _) => Some(3),
            (_, Ok(())) => Some(4),
            _ => None,
        };
        let stamp = q.shared.stamp(0).load(Ordering::Relaxed);
        assert_eq!(stamp, if pushed.is_some() { 3 } else { 2 });
        assert_eq!(c.try_pop(), Ok(2));
        match pushed {
            Some(v) => assert_eq!(c.try_pop(), Ok(v)),
            None => assert_eq!(c.try_pop(), Err(TryPopError::Empty)),
        }
        drop((a, b, c, p0));
    });
}
