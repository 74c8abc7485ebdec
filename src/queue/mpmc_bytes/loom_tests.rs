use super::*;

/// Two producers push records of different lengths (1 and 2 cells; each length in the
/// lengths array, a loom atomic) while a consumer blocks for them (the wake protocol: a lost wake-up is a loom deadlock); both arrive
/// intact; then the last attached producer closes and the consumer sees `Disconnected`.
#[test]
fn loom_two_producers_one_blocking_consumer() {
    crate::loom::futex::exact_wakes(|| {
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
        assert_eq!(c.try_pop(), Err(TryPopError::Empty));
        keep.close();
        assert_eq!(c.try_pop(), Err(TryPopError::Disconnected));
    });
}

/// The one-sleeper-per-message wake protocol: two consumers block at once, two messages
/// come, each `notify_one` wakes one sleeper; a lost wake-up (both messages' notifies
/// spent on one consumer while the other sleeps on) is a loom deadlock.
#[test]
fn loom_two_sleeping_consumers_each_get_a_message() {
    crate::loom::futex::exact_wakes(|| {
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
    crate::loom::futex::exact_wakes(|| {
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

/// A producer killed after claiming a 2-cell record (cells 0..2) and before publishing it; a
/// live producer's record (cell 2) is published behind it. Two consumers' first polls (each
/// thorough) race to skip the dead run, both cells in one call each: exactly one of them
/// delivers the live message, nothing is delivered twice or lost, and the skipped cells are
/// freed for the next lap (the head never passes the tail).
#[test]
fn loom_two_consumers_skip_a_dead_producers_record_at_once() {
    crate::queue::loom_model(|| {
        let q = Queue::with_capacity(256); // 4 cells
        let ctrl = q.shared.ctrl();
        ctrl.producers[5].owner.claim(role::LOOM_DEAD).unwrap();
        ctrl.producers[5].end.store(2, Ordering::Relaxed);
        ctrl.producers[5].start.store(0, Ordering::Relaxed);
        ctrl.tail.tail.store(2, Ordering::Relaxed);
        let mut p = q.producer().unwrap();
        p.try_push(b"x").unwrap(); // cell 2
        let (mut a, mut b) = (q.consumer().unwrap(), q.consumer().unwrap());
        let t = loom::thread::spawn(move || (a.try_pop(), a));
        let got_b = b.try_pop();
        let (got_a, a) = t.join().unwrap();
        let x = Ok(b"x".to_vec());
        assert!(
            (got_a == x) ^ (got_b == x),
            "exactly one delivery: {got_a:?} {got_b:?}"
        );
        assert!(got_a == x || got_a == Err(TryPopError::Empty), "{got_a:?}");
        assert!(got_b == x || got_b == Err(TryPopError::Empty), "{got_b:?}");
        assert_eq!(ctrl.head.head.load(Ordering::Relaxed), 3);
        // The next lap reuses the skipped cells: a 2-cell record wraps into cells 3 and 0.
        p.try_push(&[7; 100]).unwrap();
        let mut c = a;
        assert_eq!(c.try_pop(), Ok(vec![7; 100]));
        drop((b, c, p));
    });
}

/// A consumer killed after claiming a 2-cell record (cells 0..2) and before freeing it. Two
/// producers' first pushes (each thorough, finding the queue full) race to free the dead
/// run, both cells in one call each (the stamps' CAS decides between them): afterwards both
/// cells are free for the next lap, and what was published after the dead record is still
/// delivered.
#[test]
fn loom_two_producers_free_a_dead_consumers_record_at_once() {
    crate::queue::loom_model(|| {
        let q = Queue::with_capacity(256); // 4 cells
        let mut p0 = q.producer().unwrap();
        p0.try_push(&[1; 100]).unwrap(); // cells 0..2
        p0.try_push(b"m").unwrap(); // cell 2
        let ctrl = q.shared.ctrl();
        ctrl.consumers[3].owner.claim(role::LOOM_DEAD).unwrap();
        ctrl.consumers[3].end.store(2, Ordering::Relaxed);
        ctrl.consumers[3].start.store(0, Ordering::Relaxed);
        ctrl.head.head.store(2, Ordering::Relaxed);
        let mut c = q.consumer().unwrap();
        let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
        // 2 cells from position 3 (cells 3 and 0): cell 0 still holds the dead lap.
        let t = loom::thread::spawn(move || (a.try_push(&[2; 100]), a));
        let rb = b.try_push(&[3; 100]);
        let (ra, a) = t.join().unwrap();
        // Each first push found the cells held, freed them, and reported the queue full (a
        // try_ call does not retry): or one pushed after the other's recovery.
        assert!(ra.is_ok() as u8 + rb.is_ok() as u8 <= 1, "{ra:?} {rb:?}");
        for cell in 0..2 {
            assert_eq!(
                q.shared.stamp(cell).load(Ordering::Relaxed),
                cell + 4,
                "cell {cell}"
            );
        }
        assert_eq!(c.try_pop(), Ok(b"m".to_vec()));
        drop((a, b, c, p0));
    });
}

/// Review finding (loomfid): producers of different lengths sleep on a full ring; a pop frees
/// one cell and wakes one producer, the oldest sleeper, whose 2-cell record still does not
/// fit. It must pass the wake-up on: the 1-cell producer behind it can push now (without
/// the pass it slept until its 20 ms slice; loom, which has no slices, reports a deadlock).
#[test]
fn loom_a_pop_wakes_a_producer_that_can_use_the_cell() {
    crate::loom::futex::exact_wakes(|| {
        let q = Queue::with_capacity(256); // 4 cells
        let mut first = q.producer().unwrap();
        for m in [b"0", b"1", b"2", b"3"] {
            first.try_push(m).unwrap();
        }
        let mut big = q.producer().unwrap();
        let mut small = q.producer().unwrap();
        let mut c = q.consumer().unwrap();
        let tb = loom::thread::spawn(move || big.push(&[9; 100]).unwrap());
        let ts = loom::thread::spawn(move || small.push(b"s").unwrap());
        while q.shared.ctrl().head.not_full.sleepers() < 2 {
            loom::thread::yield_now();
        }
        assert_eq!(c.pop().unwrap(), b"0".to_vec()); // frees cell 0 only
        ts.join().unwrap(); // the 1-cell producer must get in
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(c.pop().unwrap());
        }
        tb.join().unwrap();
        assert_eq!(got.len(), 5);
        drop((first, c));
    });
}
