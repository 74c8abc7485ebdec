use super::*;
use std::time::Duration;

/// An owner word of a process that cannot exist (pid_max is at most 2^22).
const GHOST: u64 = 4_194_305 | (1 << 32);
const T: Duration = Duration::from_secs(10);

#[test]
fn skips_a_slot_claimed_by_a_dead_producer() {
    let q = Queue::<u64>::with_capacity(4);
    let ctrl = q.shared.ctrl();
    // A producer claims position 0 and dies before publishing.
    ctrl.producers[7].owner.claim(GHOST).unwrap();
    ctrl.producers[7].inflight.store(0, Ordering::Relaxed);
    ctrl.tail.tail.store(1, Ordering::Relaxed);
    let mut p = q.producer().unwrap();
    let mut c = q.consumer().unwrap();
    p.try_push(42).unwrap();
    assert_eq!(c.pop_timeout(T), Ok(42));
    // The ring keeps working across laps.
    for i in 0..10 {
        p.push_timeout(i, T).unwrap();
        assert_eq!(c.pop_timeout(T), Ok(i));
    }
}

/// Found by `fuzz/queue_attach`: a position in flight whose producer side is gone (the
/// claimer closed or was reclaimed, its slot is free, `PRODUCER_CLOSED` is set) made
/// `pop` spin forever, past its timeout: the wait ended at once on "side gone" and the
/// round never skipped the position nor checked the deadline.
#[test]
fn pop_skips_an_in_flight_position_whose_side_is_gone() {
    let q = Queue::<u64>::with_capacity(4);
    let ctrl = q.shared.ctrl();
    // Position 0 claimed (tail 1, stamp still 0), never published; nobody attached.
    ctrl.tail.tail.store(1, Ordering::Relaxed);
    ctrl.geo.state.fetch_or(PRODUCER_CLOSED, Ordering::Relaxed);
    let c = q.consumer().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut c = c;
        let r = c.pop_timeout(Duration::from_millis(50));
        let head = q.shared.ctrl().head.head.load(Ordering::Relaxed);
        let _ = tx.send((r, head));
    });
    let (r, head) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("pop hung past its 50 ms timeout");
    assert_eq!(r, Err(PopError::Disconnected));
    assert_eq!(head, 1, "the dead position was skipped");
}

/// Found by `fuzz/queue_attach` (after the fix above): a garbage `tail` far ahead of
/// `head` with the producer side gone made `pop` skip "dead" positions one by one
/// towards it, past its deadline. More than `capacity` claimed positions is `Corrupt`.
#[test]
fn a_tail_more_than_capacity_ahead_is_corrupt() {
    let q = Queue::<u64>::with_capacity(4);
    let ctrl = q.shared.ctrl();
    ctrl.tail.tail.store(1 << 40, Ordering::Relaxed);
    ctrl.geo.state.fetch_or(PRODUCER_CLOSED, Ordering::Relaxed);
    let mut c = q.consumer().unwrap();
    assert_eq!(c.try_pop(), Err(TryPopError::Corrupt));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(c.pop());
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("pop walked towards a garbage tail");
    assert_eq!(r, Err(PopError::Corrupt));
    drop(q);
}

#[test]
fn waits_for_a_live_claimer() {
    let q = Queue::<u64>::with_capacity(4);
    let ctrl = q.shared.ctrl();
    // A live process (this one) claimed position 0 and has not published yet.
    ctrl.producers[7].owner.claim(role::me().unwrap()).unwrap();
    ctrl.producers[7].inflight.store(0, Ordering::Relaxed);
    ctrl.tail.tail.store(1, Ordering::Relaxed);
    let mut c = q.consumer().unwrap();
    assert_eq!(
        c.pop_timeout(Duration::from_millis(100)),
        Err(PopError::Timeout)
    );
    // It publishes: the consumer takes it.
    // SAFETY: slot 0, in bounds; nobody else writes it.
    unsafe {
        q.shared
            .elem_in(0, q.shared.slot)
            .cast::<u64>()
            .write_unaligned(9)
    };
    q.shared.stamp(0).store(1, Ordering::Release);
    assert_eq!(c.pop_timeout(T), Ok(9));
}

#[test]
fn frees_a_slot_held_by_a_dead_consumer() {
    let q = Queue::<u64>::with_capacity(2);
    let mut p = q.producer().unwrap();
    p.push_timeout(1, T).unwrap();
    p.push_timeout(2, T).unwrap();
    let ctrl = q.shared.ctrl();
    // A consumer claims position 0 and dies while reading it.
    ctrl.consumers[3].owner.claim(GHOST).unwrap();
    ctrl.consumers[3].inflight.store(0, Ordering::Relaxed);
    ctrl.head.head.store(1, Ordering::Relaxed);
    let mut c = q.consumer().unwrap();
    // The producer frees the slot (element 1 was in flight and is lost) and pushes.
    p.push_timeout(3, T).unwrap();
    assert_eq!(c.pop_timeout(T), Ok(2));
    assert_eq!(c.pop_timeout(T), Ok(3));
}

#[test]
fn disconnected_after_last_producer_closes_and_busy_slots() {
    let q = Queue::<u32>::with_capacity(8);
    let mut c = q.consumer().unwrap();
    assert_eq!(c.try_pop(), Err(TryPopError::Empty));
    let mut ps: Vec<_> = (0..MAX_HANDLES).map(|_| q.producer().unwrap()).collect();
    assert!(matches!(q.producer(), Err(AttachError::NoFreeSlot { .. })));
    ps[0].try_push(5).unwrap();
    // Closing while others are attached only detaches.
    ps[0].close();
    assert_eq!(c.try_pop(), Ok(5));
    assert_eq!(c.try_pop(), Err(TryPopError::Empty));
    // All detached (dropped): the side stays open, the consumer waits.
    let mut last = ps.pop().unwrap();
    drop(ps);
    assert_eq!(c.try_pop(), Err(TryPopError::Empty));
    last.try_push(6).unwrap();
    // The last attached producer closes: drained, then Disconnected.
    last.close();
    assert_eq!(c.try_pop(), Ok(6));
    assert_eq!(c.try_pop(), Err(TryPopError::Disconnected));
    assert_eq!(
        c.pop_timeout(Duration::from_millis(30)),
        Err(PopError::Disconnected)
    );
    // A new producer reopens the side.
    let mut p = q.producer().unwrap();
    p.try_push(7).unwrap();
    assert_eq!(c.try_pop(), Ok(7));
    drop(p);
    assert_eq!(c.try_pop(), Err(TryPopError::Empty));
}

/// Dropping every producer detaches them: a blocked consumer times out instead of
/// getting `Disconnected`, and receives from the next producer.
#[test]
fn dropped_producers_leave_the_queue_open() {
    let q = Queue::<u32>::with_capacity(8);
    let mut c = q.consumer().unwrap();
    let mut p = q.producer().unwrap();
    p.try_push(1).unwrap();
    drop(p);
    assert_eq!(c.pop_timeout(Duration::from_millis(50)), Ok(1));
    assert_eq!(
        c.pop_timeout(Duration::from_millis(60)),
        Err(PopError::Timeout)
    );
    assert!(!q.stat().producer_closed);
    // The consumer detaches too; the producer keeps pushing into the queue.
    drop(c);
    let mut p = q.producer().unwrap();
    p.try_push(2).unwrap();
    drop(p);
    let mut c = q.consumer().unwrap();
    assert_eq!(c.try_pop(), Ok(2));
}

/// Slots are [stamp, element padded to 8]: odd sizes and 16-aligned elements (stored
/// unaligned after the stamp) round-trip across laps, on the heap and in a segment.
#[test]
fn odd_and_overaligned_elements_across_laps() {
    fn laps<T: Element + Copy + PartialEq + std::fmt::Debug>(q: &Queue<T>, f: impl Fn(u64) -> T) {
        let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
        for i in 0..20 {
            p.try_push(f(i)).unwrap();
            p.try_push(f(i + 100)).unwrap();
            assert_eq!(c.try_pop(), Ok(f(i)));
            assert_eq!(c.try_pop(), Ok(f(i + 100)));
        }
        assert_eq!(c.try_pop(), Err(TryPopError::Empty));
    }
    let b3 = |i: u64| [i as u8, (i >> 1) as u8, 0xa5];
    let wide = |i: u64| (u128::from(i) << 64) | u128::from(!i);
    laps(&Queue::<[u8; 3]>::with_capacity(4), b3);
    laps(&Queue::<u128>::with_capacity(4), wide);
    let name = format!("mpmc-odd-{}", std::process::id());
    let q = Queue::<[u8; 3]>::create(&name, 4).unwrap();
    q.set_unlink_on_drop(true);
    laps(&q, b3);
    let name = format!("mpmc-wide-{}", std::process::id());
    let q = Queue::<u128>::create(&name, 4).unwrap();
    q.set_unlink_on_drop(true);
    laps(&q, wide);
    // Reopening validates the slot geometry.
    let q2 = Queue::<u128>::open(&name).unwrap();
    assert_eq!(q2.capacity(), 4);
}

#[test]
fn threads_2x2_checksum() {
    let q = Queue::<u64>::with_capacity(64);
    let n = 20_000u64;
    let keep = q.producer().unwrap();
    let sums: Vec<(u64, u64)> = std::thread::scope(|s| {
        let cs: Vec<_> = (0..2)
            .map(|_| {
                let mut c = q.consumer().unwrap();
                s.spawn(move || {
                    let (mut k, mut sum) = (0, 0u64);
                    while let Ok(v) = c.pop_timeout(T) {
                        k += 1;
                        sum = sum.wrapping_add(v);
                    }
                    (k, sum)
                })
            })
            .collect();
        let ps: Vec<_> = (0..2u64)
            .map(|id| {
                let mut p = q.producer().unwrap();
                s.spawn(move || {
                    for i in 0..n {
                        p.push_timeout(id * n + i, T).unwrap();
                    }
                })
            })
            .collect();
        ps.into_iter().for_each(|h| h.join().unwrap());
        drop(keep);
        cs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: u64 = sums.iter().map(|s| s.0).sum();
    let sum = sums.iter().fold(0u64, |a, s| a.wrapping_add(s.1));
    assert_eq!(total, 2 * n);
    assert_eq!(sum, (0..2 * n).sum::<u64>());
}

/// The copying calls access element bytes only as whole 8-byte atomic words (SPEC §1, byte
/// copies; as the SPSC queue's test of the same name): a forged stamp or index from another
/// process can send a consumer of this process over a slot a producer of this process is
/// writing, which with `read_unaligned`/`write_unaligned` of `T` was a data race here.
#[test]
fn copying_calls_access_element_bytes_only_as_atomic_words() {
    use crate::os::atomic_copy::trace;
    let q = Queue::<[u8; 12]>::with_capacity(4);
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let traced = |what: &str, f: &mut dyn FnMut()| {
        trace::start();
        f();
        let log = trace::stop();
        assert!(
            !log.is_empty(),
            "{what}: no atomic access to the element traced"
        );
        assert!(
            log.iter().all(|&(at, size)| size == 8 && at % 8 == 0),
            "{what}: {log:?}"
        );
    };
    traced("try_push", &mut || tx.try_push([5; 12]).unwrap());
    traced("try_pop", &mut || assert_eq!(rx.try_pop(), Ok([5; 12])));
}

/// Whatever a hostile writer stores into `head`, `tail` or a slot's stamp between the
/// handles' calls, every non-blocking call answers (an element, `Full`, `Empty`, `Corrupt`,
/// `Disconnected`) without a panic and without hanging: random runs of single and batched
/// pushes and pops, two producers and two consumers, and forgeries (in debug builds too,
/// where an overflow panics). Run on a thread, so that a hang fails the test.
#[test]
fn forged_head_tail_and_stamp_words_never_panic_or_hang() {
    crate::forged::seeded(0x5851_f42d_4c95_7f2d, |mut rng| {
        for _ in 0..200 {
            let q = Queue::<u64>::with_capacity(4);
            let sh = &*q.shared;
            let ctrl = sh.ctrl();
            let mut tx = [q.producer().unwrap(), q.producer().unwrap()];
            let mut rx = [q.consumer().unwrap(), q.consumer().unwrap()];
            let mut buf = [0u64; 3];
            for i in 0..150u64 {
                let k = rng.below(2) as usize;
                match rng.below(12) {
                    0..=2 => {
                        let _ = tx[k].try_push(i);
                    }
                    3 => {
                        let _ = tx[k].try_push_slice(&[i; 3]);
                    }
                    4..=6 => {
                        let _ = rx[k].try_pop();
                    }
                    7 => {
                        let _ = rx[k].try_pop_slice(&mut buf);
                    }
                    8 => {
                        rng.forge_word(&ctrl.head.head);
                    }
                    9 => {
                        rng.forge_word(&ctrl.tail.tail);
                    }
                    _ => {
                        rng.forge_word(sh.stamp_in(i % 8, stride::<u64>()));
                    }
                }
            }
        }
    });
}
