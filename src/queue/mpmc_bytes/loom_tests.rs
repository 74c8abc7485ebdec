use super::*;

/// Two producers push records of different lengths (1 and 2 cells; each length in the
/// lengths array, a loom atomic) while a consumer blocks for them (the wake protocol: a lost wake-up is a loom deadlock); both arrive
/// intact; then the last attached producer closes and the consumer sees `Disconnected`.
#[test]
fn loom_two_producers_one_blocking_consumer() {
    crate::queue::loom_model(|| {
        let q = Queue::with_capacity(256);
        let mut keep = q.producer().unwrap();
        let mut c = q.consumer().unwrap();
        let hs: Vec<_> = [vec![1u8; 3], vec![2u8; 100]]
            .into_iter()
            .map(|m| {
                let mut p = q.producer().unwrap();
                loom::thread::spawn(move || p.push(&m).unwrap())
            })
            .collect();
        let mut got = [c.pop().unwrap(), c.pop().unwrap()];
        got.sort();
        assert_eq!(got, [vec![1u8; 3], vec![2u8; 100]]);
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.try_pop(), Err(PopError::Empty));
        keep.close();
        assert_eq!(c.try_pop(), Err(PopError::Disconnected));
    });
}

/// The one-sleeper-per-message wake protocol: two consumers block at once, two messages
/// come, each `notify_one` wakes one sleeper; a lost wake-up (both messages' notifies
/// spent on one consumer while the other sleeps on) is a loom deadlock.
#[test]
fn loom_two_sleeping_consumers_each_get_a_message() {
    crate::queue::loom_model(|| {
        let q = Queue::with_capacity(256);
        let mut p = q.producer().unwrap();
        let mut a = q.consumer().unwrap();
        let mut b = q.consumer().unwrap();
        let h = loom::thread::spawn(move || a.pop().unwrap());
        let t = loom::thread::spawn(move || {
            p.push(b"1").unwrap();
            p.push(b"2").unwrap();
        });
        let y = b.pop().unwrap();
        let x = h.join().unwrap();
        t.join().unwrap();
        let mut got = [x, y];
        got.sort();
        assert_eq!(got, [b"1".to_vec(), b"2".to_vec()]);
    });
}

/// Records wrap around the ring and reuse cells freed by a consumer on another thread
/// (the producer blocks for them: the not-full wake-up); two consumers share the pops, each
/// reading lengths (loom atomics in the lengths array after the stamps) that the next lap
/// may be rewriting.
#[test]
fn loom_cells_are_freed_for_the_next_lap() {
    crate::queue::loom_model(|| {
        let q = Queue::with_capacity(256); // 4 cells
        let mut p = q.producer().unwrap();
        let mut a = q.consumer().unwrap();
        let mut b = q.consumer().unwrap();
        let h = loom::thread::spawn(move || a.pop().unwrap());
        // Positions 0..2, 2, 3..5: the third record wraps (cells 3 and 0) and needs cells
        // the consumers free; cell 0's length word keeps the first record's 100, now an
        // inner cell's stale length.
        let msgs = [vec![1u8; 100], vec![2u8; 3], vec![3u8; 100]];
        for m in &msgs {
            p.push(m).unwrap();
        }
        let x = h.join().unwrap();
        let mut got = vec![x, b.pop().unwrap(), b.pop().unwrap()];
        got.sort();
        assert_eq!(got, msgs);
    });
}

/// Two producers race for the last free cells: exactly one fits, and the loser keeps no
/// claim record for the winner's cells.
#[test]
fn loom_a_producer_that_loses_its_claim_withdraws_it() {
    crate::queue::loom_model(|| {
        let q = Queue::with_capacity(256);
        let mut first = q.producer().unwrap();
        first.try_push(&[0; 100]).unwrap(); // 2 cells of 4
        first.try_push(b"x").unwrap(); // 1 more
        let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
        let (sa, sb) = (a.h.slot(), b.h.slot());
        let t = loom::thread::spawn(move || {
            let won = a.try_push(b"a").is_ok();
            (won, a)
        });
        let won_b = b.try_push(b"b").is_ok();
        let (won_a, a) = t.join().unwrap();
        assert!(won_a ^ won_b, "exactly one push fits");
        let ctrl = q.shared.ctrl();
        for (slot, won) in [(sa, won_a), (sb, won_b)] {
            let start = ctrl.producers[slot].start.load(Ordering::Relaxed);
            assert_eq!(start, if won { 3 } else { NONE }, "won = {won}");
        }
        drop((a, b, first));
    });
}
