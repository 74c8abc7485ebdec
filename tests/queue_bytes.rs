//! Cross-process tests of the variable-length bytes ring.

mod common;

use std::time::Duration;

use common::{kill9, spawn_child, unique_name, wait_ok, Cleanup, Lines};
use shmkit::queue::bytes::Ring;
use shmkit::queue::{AttachError, BytesPushError, PopError, TryPopError};

const T: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);
const CAP: u64 = 256 * 1024;

fn rng(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Message `i`: a log-uniform length in 1..=64 KiB and bytes derived from `i`.
fn message(i: u64) -> Vec<u8> {
    let r = rng(i);
    let bits = 1 + r % 16; // 1..=16
    let len = 1 + (rng(r) % (1 << bits)).min(65535) as usize;
    let mut v = Vec::with_capacity(len);
    let mut s = rng(i ^ 0xabcdef);
    while v.len() < len {
        s = rng(s);
        v.extend_from_slice(&s.to_le_bytes()[..(len - v.len()).min(8)]);
    }
    v
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A message carrying its sequence number and a checksum, so a torn one shows.
fn framed(seq: u64) -> Vec<u8> {
    let body = message(seq);
    let mut v = seq.to_le_bytes().to_vec();
    v.extend_from_slice(&checksum(&body).to_le_bytes());
    v.extend_from_slice(&body);
    v
}

fn check_framed(m: &[u8]) -> u64 {
    assert!(m.len() >= 16, "short message");
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    let sum = u64::from_le_bytes(m[8..16].try_into().unwrap());
    assert_eq!(checksum(&m[16..]), sum, "torn or corrupt message {seq}");
    assert_eq!(&m[16..], &message(seq)[..], "message {seq} differs");
    seq
}

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "consume" => {
            let n: u64 = args[1].parse().unwrap();
            let ring = Ring::open(&args[0]).unwrap();
            let mut rx = ring.consumer().unwrap();
            common::report("attached");
            for i in 0..n {
                let r = rx.peek_timeout(T).unwrap();
                let want = message(i);
                assert_eq!(r.len(), want.len(), "message {i} length");
                assert_eq!(checksum(&r), checksum(&want), "message {i} checksum");
                r.release();
            }
            assert_eq!(rx.pop_timeout(T), Err(PopError::Disconnected));
            common::report(&format!("done {n}"));
        }
        "produce_forever" => {
            let ring = Ring::open(&args[0]).unwrap();
            let mut tx = ring.producer().unwrap();
            common::report("attached");
            let mut seq = 0;
            loop {
                match tx.push_timeout(&framed(seq), T) {
                    Ok(()) => seq += 1,
                    Err(BytesPushError::Disconnected | BytesPushError::Timeout) => break,
                    Err(e) => panic!("send {seq}: {e}"),
                }
            }
        }
        "send_range" => {
            // Send framed args[1]..args[2], then exit without closing (the handle detaches).
            let (from, to): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            let ring = Ring::open(&args[0]).unwrap();
            let mut tx = ring.producer().unwrap();
            for seq in from..to {
                tx.push_timeout(&framed(seq), T).unwrap();
            }
        }
        "hold_producer" => {
            let ring = Ring::open(&args[0]).unwrap();
            let _tx = ring.producer().unwrap();
            common::report("attached");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn random_sizes_with_checksums_across_processes() {
    let name = unique_name("bytesrand");
    let _c = Cleanup::new(&[&name]);
    let ring = Ring::create(&name, CAP).unwrap();
    let n = 20_000u64;
    let mut child = spawn_child("consume", &[&name, &n.to_string()]);
    let mut lines = Lines::of(&mut child);
    lines.expect("attached");
    let mut tx = ring.producer().unwrap();
    for i in 0..n {
        let m = message(i);
        // Alternate between copying in and writing in place.
        if i % 2 == 0 {
            tx.push_timeout(&m, T).unwrap();
        } else {
            let mut w = tx.reserve_timeout(m.len(), T).unwrap();
            w.copy_from_slice(&m);
            w.commit();
        }
    }
    tx.close();
    lines.expect(&format!("done {n}"));
    wait_ok(&mut child, WAIT);
}

#[test]
fn largest_message_fits_and_larger_is_refused() {
    let ring = Ring::with_capacity(1024);
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let max = ring.max_message() as usize;
    // Move the position to every offset, then send a maximal message.
    for shift in 0..20 {
        tx.push_timeout(&vec![1; shift * 8 + 1], T).unwrap();
        assert_eq!(rx.pop_timeout(T).unwrap().len(), shift * 8 + 1);
        let big = vec![shift as u8; max];
        tx.push_timeout(&big, T).unwrap();
        assert_eq!(rx.pop_timeout(T).unwrap(), big);
    }
    assert_eq!(
        tx.try_push(&vec![0; max + 1]),
        Err(BytesPushError::TooLarge {
            len: max as u64 + 1,
            max: max as u64
        })
    );
}

#[test]
fn second_producer_is_busy() {
    let name = unique_name("bytesbusy");
    let _c = Cleanup::new(&[&name]);
    let ring = Ring::create(&name, 4096).unwrap();
    let mut child = spawn_child("hold_producer", &[&name]);
    Lines::of(&mut child).expect("attached");
    assert!(matches!(ring.producer(), Err(AttachError::Busy { .. })));
    kill9(&mut child);
    ring.producer().unwrap();
}

#[test]
fn producer_killed_mid_stream_100_times() {
    for round in 0..100u64 {
        let name = unique_name("byteskill");
        let _c = Cleanup::new(&[&name]);
        let ring = Ring::create(&name, CAP).unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut child = spawn_child("produce_forever", &[&name]);
        Lines::of(&mut child).expect("attached");
        let before = (round * 7) % 40;
        let mut next = 0;
        while next < before {
            let m = rx.pop_timeout(T).unwrap();
            assert_eq!(check_framed(&m), next);
            next += 1;
        }
        kill9(&mut child);
        loop {
            match rx.pop_timeout(T) {
                Ok(m) => {
                    assert_eq!(check_framed(&m), next);
                    next += 1;
                }
                Err(PopError::Disconnected) => break,
                Err(e) => panic!("round {round}: expected Disconnected, got {e:?}"),
            }
        }
        assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
        // A new producer takes over the dead one's role and resumes after the last message
        // it published: the stream goes on with no gap and no repeat.
        let mut tx = ring.producer().unwrap();
        for seq in next..next + 3 {
            tx.push_timeout(&framed(seq), T).unwrap();
            assert_eq!(
                check_framed(&rx.pop_timeout(T).unwrap()),
                seq,
                "round {round}"
            );
        }
    }
}

/// A producer process that exits without closing detaches: the consumer times out instead of
/// getting `Disconnected` and receives from the next producer; an explicit close still gives
/// `Disconnected` after the drain, and the next producer reopens the ring. A consumer that
/// detaches leaves the messages for the next one; a consumer's close fails the producer.
#[test]
fn a_detached_producer_leaves_the_ring_open_for_the_next() {
    let name = unique_name("bytesdetach");
    let _c = Cleanup::new(&[&name]);
    let ring = Ring::create(&name, CAP).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut child = spawn_child("send_range", &[&name, "0", "5"]);
    wait_ok(&mut child, WAIT);
    for seq in 0..5 {
        assert_eq!(check_framed(&rx.pop_timeout(T).unwrap()), seq);
    }
    assert_eq!(
        rx.pop_timeout(Duration::from_millis(200)),
        Err(PopError::Timeout)
    );
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    let st = ring.stat();
    assert!(!st.producer_closed && st.producers.is_empty(), "{st:?}");
    let mut child = spawn_child("send_range", &[&name, "5", "10"]);
    for seq in 5..10 {
        assert_eq!(check_framed(&rx.pop_timeout(T).unwrap()), seq);
    }
    wait_ok(&mut child, WAIT);
    // An explicit close: drained, then Disconnected; the next producer reopens the ring.
    let mut tx = ring.producer().unwrap();
    tx.push_timeout(b"last", T).unwrap();
    tx.close();
    assert_eq!(rx.pop_timeout(T).unwrap(), b"last");
    assert_eq!(rx.pop_timeout(T), Err(PopError::Disconnected));
    assert!(ring.stat().producer_closed);
    let mut tx = ring.producer().unwrap();
    assert!(!ring.stat().producer_closed);
    tx.push_timeout(b"again", T).unwrap();
    assert_eq!(rx.try_pop().unwrap(), b"again");
    // The consumer detaches: the producer keeps sending; the next consumer gets it.
    drop(rx);
    tx.try_push(b"kept").unwrap();
    let mut rx = ring.consumer().unwrap();
    assert_eq!(rx.try_pop().unwrap(), b"kept");
    rx.close();
    assert_eq!(tx.try_push(b"x"), Err(BytesPushError::Disconnected));
    assert_eq!(tx.push_timeout(b"x", T), Err(BytesPushError::Disconnected));
}
