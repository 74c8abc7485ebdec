//! Cross-process tests of the MPMC queue.

mod common;

use std::time::Duration;

use common::{kill9, spawn_child, unique_name, wait_ok, Cleanup, Lines};
use shmkit::queue::mpmc::Queue;
use shmkit::queue::{PopError, PushError, TryPopError, TryPushError};

const T: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(120);

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "produce" => {
            let (id, n): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            let q = Queue::<u64>::open(&args[0]).unwrap();
            let mut p = q.producer().unwrap();
            for i in 0..n {
                // High 8 bits: producer id; low bits: sequence.
                p.push_timeout((id << 56) | i, T).unwrap();
            }
            common::report("produced");
        }
        "consume" => {
            let q = Queue::<u64>::open(&args[0]).unwrap();
            let mut c = q.consumer().unwrap();
            common::report("attached");
            let (mut count, mut sum) = (0u64, 0u64);
            let mut last = [None::<u64>; 4];
            let mut buf = [0u64; 64];
            loop {
                let got = match c.pop_timeout(T) {
                    Ok(v) => {
                        buf[0] = v;
                        1 + c.try_pop_slice(&mut buf[1..]).unwrap_or(0)
                    }
                    Err(PopError::Disconnected) => break,
                    Err(e) => panic!("pop: {e}"),
                };
                for &v in &buf[..got] {
                    let (id, seq) = ((v >> 56) as usize, v & ((1 << 56) - 1));
                    // Per producer, one consumer sees increasing sequence numbers.
                    assert!(
                        last[id].is_none_or(|l| seq > l),
                        "producer {id}: {seq} after {:?}",
                        last[id]
                    );
                    last[id] = Some(seq);
                    count += 1;
                    sum = sum.wrapping_add(v.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                }
            }
            common::report(&format!("{count} {sum}"));
        }
        "produce_range" => {
            // Push args[1]..args[2], then exit without closing (the handle detaches).
            let (from, to): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            let q = Queue::<u64>::open(&args[0]).unwrap();
            let mut p = q.producer().unwrap();
            for i in from..to {
                p.push_timeout(i, T).unwrap();
            }
        }
        "produce_forever" => {
            let q = Queue::<u64>::open(&args[0]).unwrap();
            let mut p = q.producer().unwrap();
            common::report("attached");
            let mut i = 0;
            while p.push_timeout(i, T).is_ok() {
                i += 1;
            }
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn two_producers_two_consumers_checksum_over_10m() {
    let name = unique_name("mpmc2x2");
    let _c = Cleanup::new(&[&name]);
    let q = Queue::<u64>::create(&name, 4096).unwrap();
    // Hold a producer handle so that consumers cannot see "all producers gone" before both
    // children have attached.
    let mut keep = q.producer().unwrap();
    let per = 5_000_000u64;
    let mut cons: Vec<_> = (0..2).map(|_| spawn_child("consume", &[&name])).collect();
    let mut cl: Vec<_> = cons.iter_mut().map(Lines::of).collect();
    for l in &mut cl {
        l.expect("attached");
    }
    let mut prods: Vec<_> = (0..2u64)
        .map(|id| spawn_child("produce", &[&name, &id.to_string(), &per.to_string()]))
        .collect();
    for p in &mut prods {
        Lines::of(p).expect("produced");
        wait_ok(p, WAIT);
    }
    // The children's producers detached when they exited; the last attached one closes
    // the side, so the consumers drain and then see `Disconnected`.
    keep.close();
    let (mut count, mut sum) = (0u64, 0u64);
    for (c, l) in cons.iter_mut().zip(&mut cl) {
        let line = l.next_line().expect("consumer report");
        let mut it = line.split(' ').map(|x| x.parse::<u64>().unwrap());
        count += it.next().unwrap();
        sum = sum.wrapping_add(it.next().unwrap());
        wait_ok(c, WAIT);
    }
    let want = (0..2u64)
        .flat_map(|id| (0..per).map(move |i| (id << 56) | i))
        .fold(0u64, |a, v| {
            a.wrapping_add(v.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        });
    assert_eq!(count, 2 * per);
    assert_eq!(sum, want);
}

#[test]
fn producer_killed_mid_stream_20_times() {
    for round in 0..20u64 {
        let name = unique_name("mpmckill");
        let _c = Cleanup::new(&[&name]);
        let q = Queue::<u64>::create(&name, 64).unwrap();
        let mut c = q.consumer().unwrap();
        let mut child = spawn_child("produce_forever", &[&name]);
        Lines::of(&mut child).expect("attached");
        let before = (round * 13) % 200;
        let mut next = 0;
        while next < before {
            assert_eq!(c.pop_timeout(T), Ok(next));
            next += 1;
        }
        kill9(&mut child);
        loop {
            match c.pop_timeout(T) {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Err(PopError::Disconnected) => break,
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
    }
}

/// Producers and consumers of other processes come and go: a producer that exits without
/// closing detaches (the consumer times out instead of getting `Disconnected`, and receives
/// from the next producer); an explicit close of the last producer gives `Disconnected` after
/// the drain; a consumer that detaches leaves the elements for the next one.
#[test]
fn detached_producers_and_consumers_leave_the_queue_open() {
    let name = unique_name("mpmcdetach");
    let _c = Cleanup::new(&[&name]);
    let q = Queue::<u64>::create(&name, 16).unwrap();
    let mut c = q.consumer().unwrap();
    let mut child = spawn_child("produce_range", &[&name, "0", "5"]);
    wait_ok(&mut child, WAIT);
    for i in 0..5 {
        assert_eq!(c.pop_timeout(T), Ok(i));
    }
    assert_eq!(
        c.pop_timeout(Duration::from_millis(200)),
        Err(PopError::Timeout)
    );
    assert_eq!(c.try_pop(), Err(TryPopError::Empty));
    let st = q.stat();
    assert!(!st.producer_closed && st.producers.is_empty(), "{st:?}");
    let mut child = spawn_child("produce_range", &[&name, "5", "10"]);
    for i in 5..10 {
        assert_eq!(c.pop_timeout(T), Ok(i));
    }
    wait_ok(&mut child, WAIT);
    // The consumer detaches; a producer keeps pushing; the next consumer gets the elements.
    drop(c);
    let mut p = q.producer().unwrap();
    p.try_push(10).unwrap();
    let mut c = q.consumer().unwrap();
    assert_eq!(c.try_pop(), Ok(10));
    // An explicit close: drained, then Disconnected.
    p.try_push(11).unwrap();
    p.close();
    assert_eq!(c.pop_timeout(T), Ok(11));
    assert_eq!(c.pop_timeout(T), Err(PopError::Disconnected));
    // A consumer's close: producers get Disconnected; a new consumer reopens the side.
    let mut p = q.producer().unwrap();
    c.close();
    assert_eq!(p.try_push(1), Err(TryPushError::Disconnected(1)));
    assert_eq!(p.push_timeout(1, T), Err(PushError::Disconnected(1)));
    let mut c = q.consumer().unwrap();
    p.try_push(12).unwrap();
    assert_eq!(c.try_pop(), Ok(12));
}
