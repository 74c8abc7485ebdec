use super::*;
use std::time::Duration;

/// An owner word of a process that cannot exist (no liveness file).
const GHOST: u64 = 0x3234_5678_9abc;
const T: Duration = Duration::from_secs(10);

fn msg(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

#[test]
fn messages_of_every_size_round_trip_across_laps() {
    let q = Queue::with_capacity(1024);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    let max = q.max_message() as usize;
    assert_eq!(max, 504);
    let mut buf = Vec::new();
    for i in 0..300u64 {
        let len = (i as usize * 37) % (max + 1);
        p.try_push(&msg(i, len)).unwrap();
        if i % 2 == 0 {
            assert_eq!(c.try_pop().unwrap(), msg(i, len));
        } else {
            assert_eq!(c.try_pop_into(&mut buf), Ok(len));
            assert_eq!(buf, msg(i, len));
        }
    }
    assert_eq!(c.try_pop(), Err(PopError::Empty));
    assert_eq!(q.len(), 0);
}

#[test]
fn long_messages_round_trip_across_laps_and_the_ring_end() {
    // Lengths on both sides of the string-copy threshold (`atomic_copy::BULK`), records that
    // wrap at the end of the ring (copied in two pieces).
    let q = Queue::with_capacity(8192);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    let max = q.max_message() as usize;
    let mut buf = Vec::new();
    for i in 0..400u64 {
        let len = (i as usize * 397 + 1000) % (max + 1);
        p.try_push(&msg(i, len)).unwrap();
        assert_eq!(c.try_pop_into(&mut buf), Ok(len));
        assert_eq!(buf, msg(i, len), "message {i} of {len} bytes");
    }
    assert_eq!(c.try_pop(), Err(PopError::Empty));
}

#[test]
fn full_too_large_and_empty() {
    let q = Queue::with_capacity(256);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    assert_eq!(
        p.try_push(&[0; 121]),
        Err(PushError::TooLarge { len: 121, max: 120 })
    );
    assert_eq!(
        p.push_timeout(&[0; 121], T),
        Err(PushError::TooLarge { len: 121, max: 120 })
    );
    p.try_push(&[1; 120]).unwrap(); // 2 cells
    p.try_push(&[2; 56]).unwrap(); // 1 cell
    p.try_push(&[]).unwrap(); // 1 cell
    assert_eq!(p.try_push(&[]), Err(PushError::Full));
    assert_eq!(
        p.push_timeout(b"x", Duration::from_millis(30)),
        Err(PushError::Timeout)
    );
    assert_eq!(q.len(), 256);
    assert_eq!(c.pop_timeout(T).unwrap(), [1; 120]);
    assert_eq!(c.pop().unwrap(), [2; 56]);
    assert_eq!(c.pop().unwrap(), b"");
    assert_eq!(
        c.pop_timeout(Duration::from_millis(30)),
        Err(PopError::Timeout)
    );
    let e: crate::Error = PushError::TooLarge { len: 9, max: 8 }.into();
    assert!(matches!(e, crate::Error::TooLarge { .. }));
}

#[test]
fn skips_the_cells_of_a_dead_producer() {
    let q = Queue::with_capacity(512);
    let ctrl = q.shared.ctrl();
    // A producer claims cells 0..3 and dies before publishing.
    ctrl.producers[5].owner.claim(GHOST).unwrap();
    ctrl.producers[5].end.store(3, Ordering::Relaxed);
    ctrl.producers[5].start.store(0, Ordering::Relaxed);
    ctrl.tail.tail.store(3, Ordering::Relaxed);
    let mut p = q.producer().unwrap();
    let mut c = q.consumer().unwrap();
    p.try_push(b"after").unwrap();
    assert_eq!(c.pop_timeout(T).unwrap(), b"after");
    for i in 0..40 {
        p.push(&msg(i, 100)).unwrap();
        assert_eq!(c.pop_timeout(T).unwrap(), msg(i, 100));
    }
}

#[test]
fn waits_for_a_live_claimer() {
    let q = Queue::with_capacity(512);
    let ctrl = q.shared.ctrl();
    ctrl.producers[5].owner.claim(role::me().unwrap()).unwrap();
    ctrl.producers[5].end.store(2, Ordering::Relaxed);
    ctrl.producers[5].start.store(0, Ordering::Relaxed);
    ctrl.tail.tail.store(2, Ordering::Relaxed);
    let mut c = q.consumer().unwrap();
    assert_eq!(
        c.pop_timeout(Duration::from_millis(60)),
        Err(PopError::Timeout)
    );
    // It publishes a 3-byte record.
    q.shared.header(0).store(3, Ordering::Relaxed);
    q.shared.copy_in(0, b"abc");
    q.shared.stamp(0).store(1, Ordering::Release);
    assert_eq!(c.pop_timeout(T).unwrap(), b"abc");
}

#[test]
fn frees_cells_held_by_a_dead_consumer() {
    let q = Queue::with_capacity(256);
    let mut p = q.producer().unwrap();
    p.try_push(&[1; 100]).unwrap(); // cells 0..2
    p.try_push(&[2; 100]).unwrap(); // cells 2..4
    let ctrl = q.shared.ctrl();
    // A consumer claims the first record and dies while reading it.
    ctrl.consumers[3].owner.claim(GHOST).unwrap();
    ctrl.consumers[3].end.store(2, Ordering::Relaxed);
    ctrl.consumers[3].start.store(0, Ordering::Relaxed);
    ctrl.head.head.store(2, Ordering::Relaxed);
    let mut c = q.consumer().unwrap();
    p.push_timeout(&[3; 100], T).unwrap();
    assert_eq!(c.pop_timeout(T).unwrap(), [2; 100]);
    assert_eq!(c.pop_timeout(T).unwrap(), [3; 100]);
}

#[test]
fn corrupt_headers_and_stamps_are_errors() {
    let q = Queue::with_capacity(256);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    p.try_push(b"hi").unwrap();
    q.shared.header(0).store(u64::MAX, Ordering::Relaxed);
    assert_eq!(c.try_pop(), Err(PopError::Corrupt));
    assert_eq!(c.pop_timeout(T), Err(PopError::Corrupt));
    q.shared.stamp(1).store(12345, Ordering::Relaxed);
    assert_eq!(p.try_push(&[0; 100]), Err(PushError::Corrupt));
    // A garbage tail far ahead, producers gone: Corrupt, not a walk towards it.
    let q = Queue::with_capacity(256);
    q.shared.ctrl().tail.tail.store(1 << 40, Ordering::Relaxed);
    let mut c = q.consumer().unwrap();
    q.producer().unwrap().close();
    assert_eq!(c.pop_timeout(T), Err(PopError::Corrupt));
}

#[test]
fn close_and_detach() {
    let q = Queue::with_capacity(256);
    let mut c = q.consumer().unwrap();
    let mut p = q.producer().unwrap();
    p.try_push(b"a").unwrap();
    drop(p);
    assert_eq!(c.try_pop().unwrap(), b"a");
    assert_eq!(
        c.pop_timeout(Duration::from_millis(30)),
        Err(PopError::Timeout)
    );
    let mut p = q.producer().unwrap();
    p.try_push(b"b").unwrap();
    p.close();
    assert_eq!(c.try_pop().unwrap(), b"b");
    assert_eq!(c.try_pop(), Err(PopError::Disconnected));
    assert_eq!(c.pop(), Err(PopError::Disconnected));
    let mut p = q.producer().unwrap();
    c.close();
    assert_eq!(p.try_push(b"c"), Err(PushError::Disconnected));
    assert_eq!(p.push(b"c"), Err(PushError::Disconnected));
}

#[test]
fn threads_2x2_every_message_once_in_order_per_producer() {
    let q = Queue::with_capacity(4096);
    let n = 20_000u64;
    let keep = q.producer().unwrap();
    let got: Vec<Vec<(u64, u64)>> = std::thread::scope(|s| {
        let cs: Vec<_> = (0..2)
            .map(|_| {
                let mut c = q.consumer().unwrap();
                s.spawn(move || {
                    let mut v = Vec::new();
                    let mut buf = Vec::new();
                    while let Ok(len) = c.pop_into_timeout(&mut buf, T) {
                        let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
                        let i = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                        assert_eq!(len, 16 + (i % 200) as usize);
                        assert!(buf[16..].iter().all(|&b| b == i as u8));
                        v.push((id, i));
                    }
                    v
                })
            })
            .collect();
        let ps: Vec<_> = (0..2u64)
            .map(|id| {
                let mut p = q.producer().unwrap();
                s.spawn(move || {
                    let mut m = Vec::new();
                    for i in 0..n {
                        m.clear();
                        m.extend_from_slice(&id.to_le_bytes());
                        m.extend_from_slice(&i.to_le_bytes());
                        m.resize(16 + (i % 200) as usize, i as u8);
                        p.push(&m).unwrap();
                    }
                    p.close();
                })
            })
            .collect();
        ps.into_iter().for_each(|h| h.join().unwrap());
        let mut keep = keep;
        keep.close();
        cs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for v in &got {
        for id in 0..2 {
            let mine: Vec<u64> = v.iter().filter(|m| m.0 == id).map(|m| m.1).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "in order per producer"
            );
        }
    }
    let mut all: Vec<_> = got.concat();
    all.sort();
    assert_eq!(all.len() as u64, 2 * n);
    all.dedup();
    assert_eq!(all.len() as u64, 2 * n, "each message once");
}
