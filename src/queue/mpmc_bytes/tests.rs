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
    assert_eq!(max, 512);
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
    assert_eq!(c.try_pop(), Err(TryPopError::Empty));
    assert_eq!(q.len(), 0);
}

#[test]
fn long_messages_round_trip_across_laps_and_the_ring_end() {
    // Long lengths (the 16-byte copies' rounds), records that wrap at the end of the ring
    // (copied in two pieces).
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
    assert_eq!(c.try_pop(), Err(TryPopError::Empty));
}

#[test]
fn full_too_large_and_empty() {
    let q = Queue::with_capacity(256);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    assert_eq!(
        p.try_push(&[0; 129]),
        Err(BytesPushError::TooLarge { len: 129, max: 128 })
    );
    assert_eq!(
        p.push_timeout(&[0; 129], T),
        Err(BytesPushError::TooLarge { len: 129, max: 128 })
    );
    p.try_push(&[1; 120]).unwrap(); // 2 cells
    p.try_push(&[2; 64]).unwrap(); // 1 cell
    p.try_push(&[]).unwrap(); // 1 cell
    assert_eq!(p.try_push(&[]), Err(BytesPushError::Full));
    assert_eq!(
        p.push_timeout(b"x", Duration::from_millis(30)),
        Err(BytesPushError::Timeout)
    );
    assert_eq!(q.len(), 256);
    assert_eq!(c.pop_timeout(T).unwrap(), [1; 120]);
    assert_eq!(c.pop().unwrap(), [2; 64]);
    assert_eq!(c.pop().unwrap(), b"");
    assert_eq!(
        c.pop_timeout(Duration::from_millis(30)),
        Err(PopError::Timeout)
    );
    let e: crate::Error = BytesPushError::TooLarge { len: 9, max: 8 }.into();
    assert!(matches!(
        e,
        crate::Error::Queue(crate::queue::QueueError::TooLarge { len: 9, max: 8 })
    ));
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
    q.shared.copy_in(0, b"abc");
    q.shared.rec_len(0).store(3, Ordering::Relaxed);
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
fn corrupt_lengths_and_stamps_are_errors() {
    let q = Queue::with_capacity(256);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    p.try_push(b"hi").unwrap();
    // Just above the maximum (128), and far above.
    for bad in [129, u64::MAX] {
        q.shared.rec_len(0).store(bad, Ordering::Relaxed);
        assert_eq!(c.try_pop(), Err(TryPopError::Corrupt), "length {bad}");
        assert_eq!(c.pop_timeout(T), Err(PopError::Corrupt), "length {bad}");
    }
    // The maximum itself is a length (the bytes are whatever the cells hold; the record now
    // claims 2 cells where 1 was published, and what follows is garbage or `Corrupt`).
    q.shared.rec_len(0).store(128, Ordering::Relaxed);
    assert_eq!(c.try_pop().map(|m| m.len()), Ok(128));
    let q = Queue::with_capacity(256);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    p.try_push(b"hi").unwrap();
    assert_eq!(c.try_pop().unwrap(), b"hi");
    q.shared.stamp(1).store(12345, Ordering::Relaxed);
    assert_eq!(p.try_push(&[0; 100]), Err(BytesPushError::Corrupt));
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
    assert_eq!(c.try_pop(), Err(TryPopError::Disconnected));
    assert_eq!(c.pop(), Err(PopError::Disconnected));
    let mut p = q.producer().unwrap();
    c.close();
    assert_eq!(p.try_push(b"c"), Err(BytesPushError::Disconnected));
    assert_eq!(p.push(b"c"), Err(BytesPushError::Disconnected));
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

/// A record of L bytes takes `max(1, ceil(L / 64))` cells, its bytes from its first cell's
/// start (layout v3: the length is in the lengths array, not in the cell), so a queue of C bytes
/// holds C / 64 messages of 64 bytes, and a message of C / 2 bytes fits.
#[test]
fn a_queue_of_c_bytes_holds_c_over_64_messages_of_64_bytes() {
    for cap in [256u64, 4096] {
        let q = Queue::with_capacity(cap);
        let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
        assert_eq!(q.max_message(), cap / 2);
        for lap in 0..3u64 {
            for i in 0..cap / 64 {
                p.try_push(&msg(lap * 100 + i, 64))
                    .unwrap_or_else(|e| panic!("capacity {cap}: message {i} of 64 bytes: {e:?}"));
            }
            assert_eq!(p.try_push(&[]), Err(BytesPushError::Full), "capacity {cap}");
            assert_eq!(q.len(), cap);
            for i in 0..cap / 64 {
                assert_eq!(c.try_pop().unwrap(), msg(lap * 100 + i, 64));
            }
            assert_eq!(c.try_pop(), Err(TryPopError::Empty));
        }
        // Half the ring in one message, twice.
        let half = (cap / 2) as usize;
        p.try_push(&msg(1, half)).unwrap();
        p.try_push(&msg(2, half)).unwrap();
        assert_eq!(p.try_push(&[]), Err(BytesPushError::Full));
        assert_eq!(c.try_pop().unwrap(), msg(1, half));
        assert_eq!(c.try_pop().unwrap(), msg(2, half));
    }
}

/// A consumer loads `stamp[pos]` and then the record's length *before* its head CAS
/// (`Consumer::attempt`); the stamp may be stale (another consumer popped and freed the
/// record since), so the length word may be read while the next lap's producers write the
/// cells, from another thread of this process through the same mapping. That read must never
/// touch a data byte: a data word is written by its producer while the stale stamp is read, and
/// a read of it is a race (one of two sizes, before the padded copies: a mixed-size race).
/// So the length word of every cell lies outside the data area, in the lengths array after
/// the stamps, and a push of any length (including records that wrap at the ring's
/// end) changes data bytes only
/// inside its own cells, its message starting at its first cell.
#[test]
fn the_consumers_pre_claim_length_read_touches_no_data_byte() {
    use crate::os::atomic_copy::trace;
    const SENTINEL: u8 = 0xA5;
    let q = Queue::with_capacity(16384);
    let sh = &*q.shared;
    let data = sh.region.data() as usize;
    let cap = sh.capacity as usize;
    for j in 0..sh.cells {
        let len = sh.rec_len(j) as *const _ as usize;
        let stamp = sh.stamp(j) as *const _ as usize;
        assert!(
            len + 8 <= data || len >= data + cap,
            "the length word of cell {j} lies in the data area"
        );
        // The lengths follow the N stamps (§7.5.1).
        assert_eq!(
            len.wrapping_sub(stamp),
            8 * sh.cells as usize,
            "cell {j}: the length N words after the stamp"
        );
    }
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    // Whether data offset `off` lies in the `k` cells from position `pos` (wrapping).
    let mine = |pos: u64, k: u64, off: usize| {
        (off as u64).wrapping_sub(sh.offset(pos)) % sh.capacity < k * CELL
    };
    let mut buf = Vec::new();
    for len in 1..=4096usize {
        let m: Vec<u8> = (0..len).map(|j| ((len * 31 + j) % 128) as u8).collect();
        // SAFETY: a heap queue no other thread uses; the data area is `cap` bytes.
        unsafe { std::ptr::write_bytes(sh.region.data(), SENTINEL, cap) };
        let pos = sh.ctrl().tail.tail.load(Ordering::Relaxed);
        let k = (len as u64).div_ceil(CELL).max(1);
        trace::start();
        p.try_push(&m).unwrap();
        let log = trace::stop();
        for &(at, size) in &log {
            let off = at.wrapping_sub(data);
            assert!(
                off < cap && mine(pos, k, off) && mine(pos, k, off + size - 1),
                "a push of {len} bytes at position {pos} accessed {size} bytes at data offset {off}"
            );
        }
        for off in 0..cap {
            // SAFETY: as above; `off < cap`.
            let b = unsafe { *sh.region.data().add(off) };
            if mine(pos, k, off) {
                let i = (off as u64).wrapping_sub(sh.offset(pos)) % sh.capacity;
                if (i as usize) < len {
                    assert_eq!(b, m[i as usize], "a push of {len}: byte {i} of the message");
                }
            } else {
                assert_eq!(
                    b, SENTINEL,
                    "a push of {len} at {pos} wrote data offset {off}"
                );
            }
        }
        trace::start();
        assert_eq!(c.try_pop_into(&mut buf), Ok(len));
        let log = trace::stop();
        assert_eq!(buf, m);
        for &(at, size) in &log {
            let off = at.wrapping_sub(data);
            assert!(
                off < cap && mine(pos, k, off) && mine(pos, k, off + size - 1),
                "a pop of {len} bytes at {pos} accessed {size} bytes at data offset {off}"
            );
        }
    }
    // Lengths up to 4096 in a ring of 16384 bytes went round it many times, wrapping.
    assert!(sh.ctrl().tail.tail.load(Ordering::Relaxed) > 20 * sh.cells);
}

/// Every access a push or a pop makes to the data area is an aligned 8-byte one, whatever
/// the message's length and whatever length the consumer finds beside its stamp, a forged
/// one included. A consumer that believes a longer length than was published copies cells
/// that a producer of its own process may be writing through the same mapping; with two
/// access sizes on one word that is a mixed-size race, undefined in Rust's model, so a peer's
/// forged length could cause it. (Failed before the padded copies: a push of 37 bytes stored
/// bytes 32..37 one by one, and a consumer told 40 loaded that word whole.)
#[test]
fn every_data_access_is_a_whole_word_even_under_a_forged_length() {
    use crate::os::atomic_copy::trace;
    let mut buf = Vec::new();
    for len in 0..=300u64 {
        let q = Queue::with_capacity(2048);
        let sh = &*q.shared;
        let (data, cap, max) = (
            sh.region.data() as usize,
            sh.capacity as usize,
            sh.max_message,
        );
        let check = |log: &[(usize, usize)], what: &str| {
            for &(at, size) in log {
                let off = at.wrapping_sub(data);
                if off < cap {
                    assert!(
                        size == 8 && off % 8 == 0,
                        "{what}: {size} bytes at data offset {off}"
                    );
                }
            }
        };
        let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
        // Start at a position that makes some records wrap at the ring's end.
        for i in 0..(len * 7) % 32 {
            p.try_push(&msg(i, 8)).unwrap();
            c.try_pop().unwrap();
        }
        for forged in [None, Some(len + 1), Some((len + 13).min(max)), Some(max)] {
            let forged = forged.filter(|&f| f > len);
            let m = msg(len, len as usize);
            let pos = sh.ctrl().tail.tail.load(Ordering::Relaxed);
            trace::start();
            p.try_push(&m).unwrap();
            check(&trace::stop(), &format!("a push of {len} bytes at {pos}"));
            if let Some(f) = forged {
                sh.rec_len(pos).store(f, Ordering::Relaxed);
            }
            trace::start();
            let got = c.try_pop_into(&mut buf);
            check(
                &trace::stop(),
                &format!("a pop of {len} bytes told {forged:?}"),
            );
            assert_eq!(got, Ok(forged.unwrap_or(len) as usize));
            assert_eq!(&buf[..len as usize], &m[..]);
            if forged.is_some() {
                break; // the head is now past the tail: the queue is garbage from here
            }
        }
    }
}

/// A producer killed after claiming a long record (k cells, up to N/2) and before publishing
/// it, with a live producer pushing behind it: consumers skipped its cells one per 20 ms
/// liveness slice, so every pop of every consumer timed out for k slices (here 1024 cells,
/// about 20 s; a 64 MiB queue, hours). The whole dead run is skipped at once now.
/// (From the queues review.)
#[test]
fn a_dead_producers_long_record_is_skipped_within_a_timeout() {
    let q = Queue::with_capacity(1 << 17); // max message 64 KiB = 1024 cells
    let k = q.max_message() / CELL;
    assert_eq!(k, 1024);
    let ctrl = q.shared.ctrl();
    ctrl.producers[5].owner.claim(GHOST).unwrap();
    ctrl.producers[5].end.store(k, Ordering::Relaxed);
    ctrl.producers[5].start.store(0, Ordering::Relaxed);
    ctrl.tail.tail.store(k, Ordering::Relaxed);
    let mut p = q.producer().unwrap();
    let mut c = q.consumer().unwrap();
    p.try_push(b"after").unwrap();
    let got = c.pop_timeout(Duration::from_secs(5));
    assert_eq!(
        got.as_deref(),
        Ok(&b"after"[..]),
        "head {}",
        ctrl.head.head.load(Ordering::Relaxed)
    );
}

/// The same for a consumer killed while reading a long record: producers freed its cells one
/// per slice, so a push that needs them timed out. (From the queues review.)
#[test]
fn a_dead_consumers_long_record_is_freed_within_a_timeout() {
    let q = Queue::with_capacity(1 << 17);
    let max = q.max_message() as usize;
    let k = q.max_message() / CELL;
    let mut p = q.producer().unwrap();
    p.try_push(&vec![1; max]).unwrap(); // cells 0..k
    p.try_push(&vec![2; max]).unwrap(); // cells k..2k: the ring is full
    let ctrl = q.shared.ctrl();
    ctrl.consumers[3].owner.claim(GHOST).unwrap();
    ctrl.consumers[3].end.store(k, Ordering::Relaxed);
    ctrl.consumers[3].start.store(0, Ordering::Relaxed);
    ctrl.head.head.store(k, Ordering::Relaxed);
    let mut c = q.consumer().unwrap();
    let r = p.push_timeout(&vec![3; max], Duration::from_secs(5));
    assert_eq!(
        r,
        Ok(()),
        "stamp of the last cell {}",
        q.shared.stamp(k - 1).load(Ordering::Relaxed)
    );
    // The dead consumer's message is lost; the others come in order.
    assert_eq!(c.try_pop().unwrap(), vec![2; max]);
    assert_eq!(c.try_pop().unwrap(), vec![3; max]);
}

/// SPEC §7.1.3 (and §7.5.4): a producer side whose only holder died mid-record gives a
/// blocked consumer "drain, then Disconnected" within its liveness slices, not after one
/// slice per cell of the dead record. (From the queues review.)
#[test]
fn a_dead_sole_producer_mid_record_disconnects_at_once() {
    let q = Queue::with_capacity(1 << 17);
    let k = q.max_message() / CELL; // 1024
    let ctrl = q.shared.ctrl();
    ctrl.producers[0].owner.claim(GHOST).unwrap();
    ctrl.producers[0].end.store(k, Ordering::Relaxed);
    ctrl.producers[0].start.store(0, Ordering::Relaxed);
    ctrl.tail.tail.store(k, Ordering::Relaxed);
    let mut c = q.consumer().unwrap();
    let r = c.pop_timeout(Duration::from_secs(5));
    assert_eq!(
        r,
        Err(PopError::Disconnected),
        "head {}",
        ctrl.head.head.load(Ordering::Relaxed)
    );
    assert_eq!(ctrl.head.head.load(Ordering::Relaxed), k);
}

/// Skipping a dead run stops at the tail: cells nobody claimed are not skipped (which would
/// move the head past the tail).
#[test]
fn skipping_a_dead_run_stops_at_the_tail() {
    let q = Queue::with_capacity(1 << 12);
    let ctrl = q.shared.ctrl();
    ctrl.producers[2].owner.claim(GHOST).unwrap();
    ctrl.producers[2].end.store(3, Ordering::Relaxed);
    ctrl.producers[2].start.store(0, Ordering::Relaxed);
    ctrl.tail.tail.store(3, Ordering::Relaxed);
    let mut p = q.producer().unwrap(); // a live producer: the side stays open
    let mut c = q.consumer().unwrap();
    // Waits of 50 ms until the dead run is skipped (one 200 ms wait was not enough for its
    // first 20 ms liveness slice on a loaded CI machine); 60 s is a hang detector.
    let t = std::time::Instant::now();
    while ctrl.head.head.load(Ordering::Relaxed) != 3 {
        assert_eq!(
            c.pop_timeout(Duration::from_millis(50)),
            Err(PopError::Timeout)
        );
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the dead run was never skipped"
        );
    }
    assert_eq!(
        c.pop_timeout(Duration::from_millis(50)),
        Err(PopError::Timeout)
    );
    assert_eq!(ctrl.head.head.load(Ordering::Relaxed), 3);
    assert_eq!(ctrl.tail.tail.load(Ordering::Relaxed), 3);
    p.try_push(b"next").unwrap();
    assert_eq!(c.try_pop().unwrap(), b"next");
}

/// Whatever a hostile writer stores into `head`, `tail`, a cell's stamp or a record's length
/// between the handles' calls, every non-blocking call answers (a message, `Full`, `Empty`,
/// `Corrupt`, `Disconnected`) without a panic and without hanging: random runs of pushes of
/// several lengths (multi-cell records), pops, two producers and two consumers, and
/// forgeries (in debug builds too, where an overflow panics). Run on a thread, so that a hang
/// fails the test.
#[test]
fn forged_words_never_panic_or_hang() {
    crate::forged::seeded(0x1405_7b7e_f767_814f, |mut rng| {
        for _ in 0..200 {
            let q = Queue::with_capacity(256);
            let sh = &*q.shared;
            let mut tx = [q.producer().unwrap(), q.producer().unwrap()];
            let mut rx = [q.consumer().unwrap(), q.consumer().unwrap()];
            for i in 0..150u64 {
                let k = rng.below(2) as usize;
                let cell = i % 4;
                match rng.below(12) {
                    0..=3 => {
                        let _ = tx[k].try_push(&msg(i, rng.below(130) as usize));
                    }
                    4..=7 => {
                        let _ = rx[k].try_pop();
                    }
                    8 => {
                        rng.forge_word(&sh.ctrl().head.head);
                    }
                    9 => {
                        rng.forge_word(&sh.ctrl().tail.tail);
                    }
                    10 => {
                        rng.forge_word(sh.stamp(cell));
                    }
                    _ => {
                        rng.forge_word(sh.rec_len(cell));
                    }
                }
            }
        }
    });
}

/// The errors convert into `shmkit::Error` exactly as every other queue's: `Full`/`Empty` as
/// `WouldBlock`, `Timeout` as `Timeout`, the rest as `Error::Queue` naming the gone side.
#[test]
fn errors_convert_as_every_queues_do() {
    use crate::queue::{QueueError, Role};
    use crate::Error;
    let q = Queue::with_capacity(256);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    assert!(matches!(
        c.try_pop().map_err(Error::from),
        Err(Error::WouldBlock)
    ));
    assert!(matches!(
        c.pop_timeout(Duration::ZERO).map_err(Error::from),
        Err(Error::Timeout)
    ));
    let too_long = vec![0; q.max_message() as usize + 1];
    assert!(matches!(
        p.try_push(&too_long).map_err(Error::from),
        Err(Error::Queue(QueueError::TooLarge { len: 129, max: 128 }))
    ));
    p.close();
    assert!(matches!(
        c.try_pop().map_err(Error::from),
        Err(Error::Queue(QueueError::Disconnected {
            peer: Role::Producer
        }))
    ));
    let mut p = q.producer().unwrap();
    c.close();
    assert!(matches!(
        p.try_push(b"x").map_err(Error::from),
        Err(Error::Queue(QueueError::Disconnected {
            peer: Role::Consumer
        }))
    ));
}
