use super::*;

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
        let (sa, sb) = (a.h.slot(), b.h.slot());
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
