//! The `mpmc-bytes` queue across separate processes: several producers and consumers (every
//! message delivered exactly once, intact, in order per producer), producers and consumers
//! killed with SIGKILL in the middle of their operations, bad input, and corrupt shared bytes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{kill9, spawn_child, unique_name, wait_ok, Cleanup, Lines};
use shmkit::queue::mpmc_bytes::Queue;
use shmkit::queue::{BytesPushError, PopError, TryPopError};

const T: Duration = Duration::from_secs(20);

/// Message `seq` of producer `id`: `[id u64][seq u64][filler]`, of a length that varies with
/// `seq` (up to `max`), every filler byte derived from both.
fn message(id: u64, seq: u64, max: usize) -> Vec<u8> {
    let len = 16 + (seq.wrapping_mul(2654435761) % (max as u64 - 15)) as usize;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend((16..len).map(|j| (id as usize * 131 + seq as usize * 7 + j) as u8));
    m
}

/// Check a popped message against what its producer pushed; returns (id, seq).
fn check(m: &[u8], max: usize) -> (u64, u64) {
    assert!(m.len() >= 16, "message of {} bytes", m.len());
    let id = u64::from_le_bytes(m[..8].try_into().unwrap());
    let seq = u64::from_le_bytes(m[8..16].try_into().unwrap());
    assert_eq!(m, message(id, seq, max), "content of message {id}/{seq}");
    (id, seq)
}

#[test]
fn child_main() {
    common::child_entry(|role, args| {
        let q = Queue::open(&args[0]).unwrap();
        let max: usize = args[1].parse().unwrap();
        match role {
            // Push `n` messages as producer `id`, then close (a detach while others are
            // attached).
            "producer" => {
                let id: u64 = args[2].parse().unwrap();
                let n: u64 = args[3].parse().unwrap();
                let mut p = q.producer().unwrap();
                common::report("attached");
                for seq in 0..n {
                    p.push_timeout(&message(id, seq, max), T).unwrap();
                }
                p.close();
            }
            // Pop until the producer side is closed and drained; report "id seq" per
            // message, each line flushed before the next pop.
            "consumer" => {
                let mut c = q.consumer().unwrap();
                common::report("attached");
                let mut buf = Vec::new();
                let mut last = std::collections::HashMap::new();
                loop {
                    match c.pop_into_timeout(&mut buf, T) {
                        Ok(_) => {
                            let (id, seq) = check(&buf, max);
                            if let Some(prev) = last.insert(id, seq) {
                                assert!(seq > prev, "producer {id}: {seq} after {prev}");
                            }
                            common::report(&format!("{id} {seq}"));
                        }
                        Err(PopError::Disconnected) => break,
                        Err(e) => panic!("pop: {e}"),
                    }
                }
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Read a consumer child's "id seq" lines until EOF.
fn received(lines: &mut Lines) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    while let Some(l) = lines.next_line() {
        if l == "attached" {
            continue;
        }
        let (a, b) = l.split_once(' ').expect("an `id seq` line");
        v.push((a.parse().unwrap(), b.parse().unwrap()));
    }
    v
}

#[test]
fn two_producers_two_consumers_every_message_once_in_order() {
    let name = unique_name("mpmcb2x2");
    let _c = Cleanup::new(&[&name]);
    let q = Queue::create(&name, 8192).unwrap();
    let max = q.max_message() as usize;
    let n = 3000u64;
    // The test holds a producer until both children finished, so that the side closes only
    // when the last of them is done (a child that finished before the other attached would
    // otherwise close it).
    let mut keep = q.producer().unwrap();
    let ms = max.to_string();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| spawn_child("consumer", &[&name, &ms]))
        .collect();
    let mut producers: Vec<_> = (0..2u64)
        .map(|id| spawn_child("producer", &[&name, &ms, &id.to_string(), &n.to_string()]))
        .collect();
    let mut outs: Vec<Lines> = consumers.iter_mut().map(Lines::of).collect();
    for p in &mut producers {
        wait_ok(p, Duration::from_secs(120));
    }
    keep.close();
    let mut all = Vec::new();
    for (c, out) in consumers.iter_mut().zip(outs.iter_mut()) {
        all.extend(received(out));
        wait_ok(c, Duration::from_secs(60));
    }
    let set: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "a message was delivered twice");
    let want: BTreeSet<_> = (0..2u64)
        .flat_map(|id| (0..n).map(move |s| (id, s)))
        .collect();
    assert_eq!(set, want, "every message delivered");
}

#[test]
fn a_producer_killed_mid_push_loses_at_most_its_own_message() {
    for round in 0..6u64 {
        let name = unique_name("mpmcbkillp");
        let _c = Cleanup::new(&[&name]);
        let q = Queue::create(&name, 1 << 14).unwrap();
        let max = q.max_message() as usize;
        let ms = max.to_string();
        // The test's own producer keeps the side open; its consumer checks what arrives.
        let mut mine = q.producer().unwrap();
        let mut c = q.consumer().unwrap();
        let mut victim = spawn_child("producer", &[&name, &ms, "1", "1000000000"]);
        Lines::of(&mut victim).expect("attached");
        let mut buf = Vec::new();
        let mut next = 0u64;
        // Let it run, then kill it wherever it is (often inside a push: the ring is full
        // most of the time, and each push copies up to 8 KiB).
        for _ in 0..(200 + round * 300) {
            c.pop_into_timeout(&mut buf, T).unwrap();
            assert_eq!(check(&buf, max), (1, next));
            next += 1;
        }
        kill9(&mut victim);
        // Others proceed: a new producer's messages arrive after what the victim published,
        // in order, with no gap in the victim's sequence.
        let pusher = std::thread::spawn(move || {
            for seq in 0..50 {
                mine.push_timeout(&message(2, seq, max), T).unwrap();
            }
            mine
        });
        let mut seen2 = 0;
        while seen2 < 50 {
            match c.pop_into_timeout(&mut buf, T) {
                Ok(_) => match check(&buf, max) {
                    (1, s) => {
                        assert_eq!(s, next, "the victim's messages in order, no gap");
                        next += 1;
                    }
                    (2, s) => {
                        assert_eq!(s, seen2);
                        seen2 += 1;
                    }
                    x => panic!("unexpected message {x:?}"),
                },
                Err(e) => panic!("round {round}: pop after the kill: {e}"),
            }
        }
        let mine = pusher.join().unwrap();
        assert_eq!(c.try_pop(), Err(TryPopError::Empty));
        drop(mine);
    }
}

#[test]
fn a_consumer_killed_mid_pop_loses_at_most_one_message() {
    for round in 0..6u64 {
        let name = unique_name("mpmcbkillc");
        let _c = Cleanup::new(&[&name]);
        // A small ring: the dead consumer's cells block the producer one lap later, until it
        // frees them.
        let q = Queue::create(&name, 2048).unwrap();
        let max = q.max_message() as usize;
        let ms = max.to_string();
        let mut c = q.consumer().unwrap();
        let mut victim = spawn_child("consumer", &[&name, &ms]);
        let mut out = Lines::of(&mut victim);
        out.expect("attached");
        let n = 3000u64;
        let mut p = q.producer().unwrap();
        let pusher = std::thread::spawn(move || {
            for seq in 0..n {
                p.push_timeout(&message(0, seq, max), T).unwrap();
            }
            p
        });
        std::thread::sleep(Duration::from_millis(5 + round * 7));
        kill9(&mut victim);
        let theirs: Vec<u64> = received(&mut out).into_iter().map(|m| m.1).collect();
        // The test's consumer takes the rest.
        let mut buf = Vec::new();
        let mut mine = Vec::new();
        let p = loop {
            match c.pop_into_timeout(&mut buf, Duration::from_millis(300)) {
                Ok(_) => mine.push(check(&buf, max).1),
                Err(PopError::Timeout) if pusher.is_finished() => break pusher.join().unwrap(),
                Err(PopError::Timeout) => {}
                Err(e) => panic!("pop: {e}"),
            }
        };
        drop(p);
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "in order");
        let mut all: Vec<u64> = theirs.iter().chain(&mine).copied().collect();
        all.sort();
        let k = all.len();
        all.dedup();
        assert_eq!(all.len(), k, "round {round}: a message was delivered twice");
        assert!(
            k as u64 >= n - 1,
            "round {round}: {} messages lost (at most the one in flight may be)",
            n - k as u64
        );
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let name = unique_name("mpmcbbad");
    let _c = Cleanup::new(&[&name]);
    assert!(Queue::create(&name, 1000).is_err(), "not a power of two");
    assert!(Queue::create(&name, 128).is_err(), "below the minimum");
    let q = Queue::create(&name, 4096).unwrap();
    assert_eq!(q.max_message(), 2048);
    let mut p = q.producer().unwrap();
    let big = vec![0u8; 2049];
    let e = BytesPushError::TooLarge {
        len: 2049,
        max: 2048,
    };
    assert_eq!(p.try_push(&big), Err(e));
    assert_eq!(p.push(&big), Err(e), "too large never hangs");
    let err: shmkit::Error = e.into();
    assert!(err.to_string().contains("2049"), "{err}");
    // `?` converts into shmkit::Error.
    fn pop_one(q: &Queue) -> shmkit::Result<Vec<u8>> {
        Ok(q.consumer().unwrap().try_pop()?)
    }
    assert!(matches!(pop_one(&q), Err(shmkit::Error::WouldBlock)));
    // Another kind of segment is refused.
    let other = unique_name("mpmcbother");
    let _c2 = Cleanup::new(&[&other]);
    let _r = shmkit::queue::bytes::Ring::create(&other, 1024).unwrap();
    assert!(matches!(
        Queue::open(&other),
        Err(shmkit::Error::KindMismatch { .. })
    ));
}

/// Overwrite the queue's payload bytes `range` (segment file offsets) with `byte`-derived
/// garbage, then operate on it: errors or wrong data, never a panic or a hang.
#[test]
fn corrupt_shared_bytes_give_errors_not_hangs() {
    use std::os::unix::fs::FileExt;
    for seed in 0..40u64 {
        let name = unique_name("mpmcbcorrupt");
        let _c = Cleanup::new(&[&name]);
        let q = Queue::create(&name, 1024).unwrap();
        {
            let mut p = q.producer().unwrap();
            for i in 0..5u64 {
                p.try_push(&message(0, i, 300)).unwrap();
            }
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        // Header is 128 bytes; the payload: control 0..4480, stamps and lengths (16 cells of
        // 8 bytes each), data (1024 bytes).
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for _ in 0..(1 + seed % 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = 128 + x % (4480 + 256 + 1024);
            let v = if seed % 3 == 0 { x } else { x % 64 };
            f.write_all_at(&v.to_le_bytes(), off & !7).unwrap();
        }
        let Ok(q2) = Queue::open(&name) else { continue };
        let short = Duration::from_millis(30);
        if let Ok(mut c) = q2.consumer() {
            for _ in 0..8 {
                let _ = c.try_pop();
                let _ = c.pop_timeout(short);
            }
        }
        if let Ok(mut p) = q2.producer() {
            for i in 0..8 {
                let _ = p.try_push(&message(1, i, 300));
                let _ = p.push_timeout(&message(1, i, 300), short);
            }
        }
        let _ = shmkit::queue::stat(&name);
    }
}

/// Layout v3 as SPEC §7.5.1 gives it, read from the segment file: the geometry, `stamp[j]` at
/// 4480 + 8 j and `len[j]` at 4480 + 8 N + 8 j, the data at D = 4480 + round_up(16 N, 128),
/// a record's bytes from its first cell's start; and a segment with v2's fingerprint (the
/// length in the record's first 8 bytes) is refused by the fingerprint check.
#[test]
fn the_segment_bytes_are_layout_v3() {
    use std::os::unix::fs::FileExt;
    let name = unique_name("mpmcblayout");
    let _c = Cleanup::new(&[&name]);
    let q = Queue::create(&name, 4096).unwrap();
    let mut p = q.producer().unwrap();
    let m1: Vec<u8> = (0..100u8).collect();
    p.try_push(&m1).unwrap(); // cells 0..2
    p.try_push(b"xyz").unwrap(); // cell 2
    let f = std::fs::File::open(format!("/dev/shm/{name}")).unwrap();
    let word = |payload_off: u64| {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, 128 + payload_off).unwrap();
        u64::from_le_bytes(b)
    };
    let (n, d) = (64u64, 4480 + 1024u64);
    let geometry = [4096, 64, n, 4480, d, 16, 0, 2048];
    for (i, want) in geometry.into_iter().enumerate() {
        assert_eq!(word(8 * i as u64), want, "geometry word {i}");
    }
    let entry = |j: u64| (word(4480 + 8 * j), word(4480 + 8 * n + 8 * j));
    assert_eq!(entry(0), (1, 100), "published record of 100 bytes at 0");
    assert_eq!(entry(1).0, 1, "inner cell: stamp stays at its position");
    assert_eq!(entry(2), (3, 3), "published record of 3 bytes at 2");
    assert_eq!(entry(3), (3, 0), "free cell");
    assert_eq!(entry(n - 1), (n - 1, 0), "free cell");
    let mut data = [0u8; 103];
    f.read_exact_at(&mut data[..100], 128 + d).unwrap();
    f.read_exact_at(&mut data[100..], 128 + d + 128).unwrap();
    assert_eq!(&data[..100], &m1[..]);
    assert_eq!(&data[100..], b"xyz");
    drop(p);
    // v2's fingerprint in the header (offset 16): refused as another layout.
    let v2 = shmkit::segment::fingerprint(
        b"shmkit mpmc-bytes v2 cell=64 header=len64 handles=16 claim=[owner,start,end] stamps=array",
    );
    assert_ne!(v2, shmkit::queue::mpmc_bytes::LAYOUT_FINGERPRINT);
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    w.write_all_at(&v2.to_le_bytes(), 16).unwrap();
    assert!(matches!(
        Queue::open(&name),
        Err(shmkit::Error::LayoutMismatch { .. })
    ));
}
