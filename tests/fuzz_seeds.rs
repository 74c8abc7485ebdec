#![cfg(not(loom))]
//! Generator of the fuzz seed corpus (`fuzz/corpus/<target>/seed-*`) and of the dictionary
//! (`fuzz/dict/shmkit.dict`): valid objects of every kind, made by the library, in the input
//! format of each fuzz target, so that CI's short fuzz runs start from inputs that get past
//! validation instead of from nothing.
//!
//! It writes into the source tree, so it is not part of the normal test run:
//!
//! ```text
//! cargo test --test fuzz_seeds -- --ignored
//! ```
//!
//! Run it again (and commit the result) when a layout changes. The output is deterministic:
//! the creator's pid, thread id and start time, the creation time and the pid namespace are
//! replaced by fixed values, so a run on an unchanged layout changes no file.

mod common;

use common::Cleanup;
use shmkit::cell::{Array, CellMode, Typecode, Value};
use shmkit::queue::{bytes, mpmc, mpmc_bytes, spsc};
use shmkit::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
use shmkit::{Kind, Segment};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HEADER: usize = 128;
/// What this process's identity is replaced with: a liveness token that no process holds (so
/// its owner is judged dead), a pid above any default `pid_max`, a thread id beside it, a
/// start time.
const FAKE_TOKEN: u64 = 0x0123_4567_89ab_cdef;
const FAKE_PID: u32 = 4_194_300;
const FAKE_TID: u32 = 4_194_301;
const FAKE_START: u64 = 1_000_000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// This process's liveness token (`SPEC.md` §2.3), as a queue end records it.
fn token() -> u64 {
    let q = spsc::Queue::<u64>::with_capacity(2);
    let _tx = q.producer().unwrap();
    q.stat().producers[0].token
}

/// This process's pid, thread id and start time (field 22 of `/proc/self/stat`), which
/// display records and headers hold.
fn identity() -> (u32, u32, u64) {
    let tid: u32 = std::fs::read_link("/proc/thread-self")
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let (_, rest) = stat.rsplit_once(") ").unwrap();
    let start: u64 = rest.split(' ').nth(19).unwrap().parse().unwrap();
    (std::process::id(), tid, start)
}

/// The object's bytes as another process would find them, with this process's identity
/// replaced by the fixed one (8-aligned `u64` tokens, lock owner words and start times first,
/// then 4-aligned `u32` pids, thread ids and low halves of start times), and the header's
/// creation time and pid namespace cleared.
fn dump(name: &str) -> Vec<u8> {
    let mut b = std::fs::read(format!("/dev/shm/{name}")).unwrap();
    let (pid, tid, start) = identity();
    let token = token();
    for c in b.chunks_exact_mut(8) {
        let v = u64::from_le_bytes(c.try_into().unwrap());
        // The token itself (role words, the header's creator), or above a few flag bits (a
        // lock's owner word: bits 3..64, SPEC.md §6.2).
        if let Some(shift) = (0..=4).find(|&k| v >> k == token) {
            let flags = v & ((1 << shift) - 1);
            c.copy_from_slice(&((FAKE_TOKEN << shift) | flags).to_le_bytes());
        } else if v == start {
            c.copy_from_slice(&FAKE_START.to_le_bytes());
        }
    }
    for c in b.chunks_exact_mut(4) {
        let v = u32::from_le_bytes(c.try_into().unwrap());
        let to = if v == pid {
            FAKE_PID
        } else if v == tid {
            FAKE_TID
        } else if v == start as u32 {
            FAKE_START as u32
        } else {
            continue;
        };
        c.copy_from_slice(&to.to_le_bytes());
    }
    if b.len() >= HEADER {
        b[64..80].fill(0); // created_unix_ns, creator_pidns
    }
    b
}

/// Seeds by target, and the dictionary's entries.
#[derive(Default)]
struct Out {
    seeds: BTreeMap<&'static str, Vec<(String, Vec<u8>)>>,
    dict: BTreeMap<String, Vec<u8>>,
}

impl Out {
    fn seed(&mut self, target: &'static str, name: &str, bytes: Vec<u8>) {
        self.seeds
            .entry(target)
            .or_default()
            .push((format!("seed-{name}"), bytes));
    }

    /// A whole shmkit object whose header is at its start: see [`object_at`](Self::object_at).
    fn object(&mut self, what: &str, kind: Kind, file: &[u8]) {
        self.object_at(what, kind, file, 0);
    }

    /// A whole shmkit object whose header is at byte `at` (0, or a list's trailer): a seed
    /// for `open_segment` (its bytes), for `header` (the size the header describes, from
    /// `at` to the end; kind; header), and its fingerprint for the dictionary.
    fn object_at(&mut self, what: &str, kind: Kind, file: &[u8], at: usize) {
        self.seed("open_segment", what, file.to_vec());
        let mut h = ((file.len() - at) as u64).to_le_bytes().to_vec();
        h.extend_from_slice(&kind.0.to_le_bytes());
        h.extend_from_slice(&file[at..at + HEADER]);
        self.seed("header", what, h);
        self.dict.insert(
            format!("fingerprint_{what}"),
            file[at + 16..at + 24].to_vec(),
        );
    }

    fn write(&self) {
        for (target, seeds) in &self.seeds {
            let dir = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            // Replace earlier seeds; leave anything else (a local fuzz run's finds) alone.
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                if e.file_name().to_string_lossy().starts_with("seed-") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
            for (name, bytes) in seeds {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        let mut text = String::from(
            "# libFuzzer dictionary for every shmkit fuzz target: magic values of SPEC.md.\n\
             # Generated by `cargo test --test fuzz_seeds -- --ignored`; do not edit.\n",
        );
        for (name, bytes) in &self.dict {
            let esc: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            text.push_str(&format!("{name}=\"{esc}\"\n"));
        }
        let dir = fuzz_dir().join("dict");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("shmkit.dict"), text).unwrap();
    }
}

/// The fixed dictionary entries: header magic and fields, kinds, states, sync magics and
/// limits, queue geometry and record kinds.
fn constants(out: &mut Out) {
    let mut put = |name: &str, bytes: &[u8]| {
        out.dict.insert(name.to_owned(), bytes.to_vec());
    };
    put("magic", &shmkit::segment::MAGIC);
    put("version", &shmkit::segment::FORMAT_VERSION.to_le_bytes());
    put("lifetime_owned", &1u32.to_le_bytes());
    put("header_size_128", &128u64.to_le_bytes());
    for (name, k) in [
        ("bytes", Kind::SEGMENT),
        ("lock", Kind::LOCK),
        ("rlock", Kind::RLOCK),
        ("semaphore", Kind::SEMAPHORE),
        ("bounded_semaphore", Kind::BOUNDED_SEMAPHORE),
        ("condition", Kind::CONDITION),
        ("event", Kind::EVENT),
        ("barrier", Kind::BARRIER),
        ("value", Kind::VALUE),
        ("array", Kind::ARRAY),
        ("spsc_queue", Kind::SPSC_QUEUE),
        ("mpmc_queue", Kind::MPMC_QUEUE),
        ("bytes_ring", Kind::BYTES_RING),
        ("frames", Kind::FRAMES),
    ] {
        put(&format!("kind_{name}"), &k.0.to_le_bytes());
    }
    for (name, s) in [("ready", 1u32), ("failed", 2), ("abandoned", 3)] {
        put(&format!("state_{name}"), &s.to_le_bytes());
    }
    put("lock_magic_LCK1", b"LCK1");
    put("rlock_magic_RLK1", b"RLK1");
    put("sem_value_max", &0x7fff_ffffu32.to_le_bytes());
    put("barrier_max_parties", &0x00ff_ffffu32.to_le_bytes());
    put("queue_data_offset_384", &384u64.to_le_bytes());
    put("mpmc_data_offset_4480", &4480u64.to_le_bytes());
    put("mpmc_handles_16", &16u64.to_le_bytes());
    put("u64_max", &u64::MAX.to_le_bytes());
    put("fake_pid", &FAKE_PID.to_le_bytes());
    put("fake_token", &FAKE_TOKEN.to_le_bytes());
    // A bytes-ring record header's top byte (kind) and a whole message header of lap 0.
    put("record_kind_M", b"M");
    put("record_kind_W", b"W");
    put(
        "record_msg_8_lap0",
        &((u64::from(b'M') << 56) | 8).to_le_bytes(),
    );
}

/// `queue_attach` input: kind and capacity, where the hostile bytes start (0: the whole
/// payload), the operations, then the payload.
fn queue_input(kind: u8, capbits: u8, ops: &[u8], payload: &[u8]) -> Vec<u8> {
    assert!(kind < 3 && capbits < 4 && ops.len() < 32);
    let mut v = vec![kind + 3 * capbits, 0, ops.len() as u8];
    v.extend_from_slice(ops);
    v.extend_from_slice(payload);
    v
}

/// `sync_attach` input: primitive and parameter, the operations, then the state.
fn sync_input(kind: u8, param: u8, ops: &[u8], state: &[u8]) -> Vec<u8> {
    assert!(kind < 7 && param <= 36 && ops.len() < 16);
    let mut v = vec![kind + 7 * param, ops.len() as u8];
    v.extend_from_slice(ops);
    v.extend_from_slice(state);
    v
}

/// Every operation code of the queue targets once, and a few with lengths (bytes ring: the
/// high nibble times 9 bytes; bit 3 of a reserve: commit half).
const QUEUE_OPS: [u8; 15] = [9, 0, 3, 1, 4, 2, 5, 6, 0x13, 0x24, 0x2c, 0x10, 10, 7, 8];
const SYNC_OPS: [u8; 8] = [0, 1, 2, 3, 0x10, 0x11, 0x80, 3];

fn queues(out: &mut Out, names: &mut Cleanup) {
    let name = |names: &mut Cleanup, tag: &str| {
        let n = common::unique_name(tag);
        names.add(&n);
        n
    };
    // SPSC of u64, capacity 2 (capbits 0): one element in, both roles attached.
    let n = name(names, "seed-spsc");
    let q = spsc::Queue::<u64>::create(&n, 2).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    tx.try_push(7).unwrap();
    let file = dump(&n);
    out.object("spsc_queue", Kind::SPSC_QUEUE, &file);
    out.seed(
        "queue_attach",
        "spsc-one-in",
        queue_input(0, 0, &QUEUE_OPS, &file[HEADER..]),
    );
    // Full, then both ends closed.
    tx.try_push(8).unwrap();
    // Closed explicitly: dropping a handle only detaches it (SPEC §7.1.3).
    tx.close();
    rx.close();
    out.seed(
        "queue_attach",
        "spsc-full-closed",
        queue_input(0, 0, &QUEUE_OPS, &dump(&n)[HEADER..]),
    );

    // MPMC of u64, capacity 4 (capbits 1): a lap and a half pushed and popped.
    let n = name(names, "seed-mpmc");
    let q = mpmc::Queue::<u64>::create(&n, 4).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    for i in 0..6 {
        tx.try_push(i).unwrap();
        if i % 2 == 1 {
            rx.try_pop().unwrap();
        }
    }
    let file = dump(&n);
    out.object("mpmc_queue", Kind::MPMC_QUEUE, &file);
    out.seed(
        "queue_attach",
        "mpmc-in-use",
        queue_input(1, 1, &QUEUE_OPS, &file[HEADER..]),
    );
    tx.close();
    rx.close();
    out.seed(
        "queue_attach",
        "mpmc-closed",
        queue_input(1, 1, &QUEUE_OPS, &dump(&n)[HEADER..]),
    );

    // Bytes ring of 64 bytes (capbits 0): records 16 + 32, then one behind a wrap record.
    let n = name(names, "seed-bytes");
    let r = bytes::Ring::create(&n, 64).unwrap();
    let (mut tx, mut rx) = (r.producer().unwrap(), r.consumer().unwrap());
    tx.try_push(b"12345678").unwrap();
    tx.try_push(&[0xa5; 20]).unwrap();
    rx.try_pop().unwrap();
    rx.try_pop().unwrap();
    tx.try_push(&[0x5a; 20]).unwrap();
    let file = dump(&n);
    out.object("bytes_ring", Kind::BYTES_RING, &file);
    out.seed(
        "queue_attach",
        "bytes-wrapped",
        queue_input(2, 0, &QUEUE_OPS, &file[HEADER..]),
    );
    // Bytes ring of 128 bytes (capbits 1): two messages in, consumer closed.
    let n = name(names, "seed-bytes");
    let r = bytes::Ring::create(&n, 128).unwrap();
    let (mut tx, mut rx) = (r.producer().unwrap(), r.consumer().unwrap());
    tx.try_push(b"hello").unwrap();
    tx.try_push(&[1; 40]).unwrap();
    rx.close();
    out.seed(
        "queue_attach",
        "bytes-two-in-consumer-closed",
        queue_input(2, 1, &QUEUE_OPS, &dump(&n)[HEADER..]),
    );
}

/// `mpmc_bytes_attach` input: capacity bits, where the hostile bytes start (0: the whole
/// payload), the operations, then the payload.
fn mpmc_bytes_input(capbits: u8, ops: &[u8], payload: &[u8]) -> Vec<u8> {
    assert!(capbits < 4 && ops.len() < 32);
    let mut v = vec![capbits, 0, ops.len() as u8];
    v.extend_from_slice(ops);
    v.extend_from_slice(payload);
    v
}

/// Every operation code of `mpmc_bytes_attach` once, and a few with lengths (high nibble
/// times 9 bytes; bit 3: the maximum, bit 7 with it: one past).
const MPMC_BYTES_OPS: [u8; 14] = [9, 0, 3, 0x13, 0x1b, 0x9b, 1, 4, 0x24, 2, 5, 8, 6, 7];

fn mpmc_bytes(out: &mut Out, names: &mut Cleanup) {
    // 256 bytes (4 cells, capbits 0): records of 1 and 2 cells across the wrap, in use.
    let n = common::unique_name("seed-mpmcb");
    names.add(&n);
    let q = mpmc_bytes::Queue::create(&n, 256).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    tx.try_push(b"hello").unwrap();
    tx.try_push(&[0xa5; 100]).unwrap();
    rx.try_pop().unwrap();
    tx.try_push(&[0x5a; 100]).unwrap(); // cells 3 and 0
    let file = dump(&n);
    out.object("mpmc_bytes", Kind::MPMC_BYTES, &file);
    out.seed(
        "mpmc_bytes_attach",
        "wrapped-in-use",
        mpmc_bytes_input(0, &MPMC_BYTES_OPS, &file[HEADER..]),
    );
    // Both sides closed, one message left.
    tx.close();
    rx.close();
    out.seed(
        "mpmc_bytes_attach",
        "closed",
        mpmc_bytes_input(0, &MPMC_BYTES_OPS, &dump(&n)[HEADER..]),
    );
}

/// `frames_attach` input: geometry byte (as the target decodes it), the operations, then the
/// payload up to its last non-zero byte (the frame data is mostly zeros).
fn frames_input(geo: u8, ops: &[u8], payload: &[u8]) -> Vec<u8> {
    assert!(ops.len() < 32);
    let end = payload.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut v = vec![geo, 0, ops.len() as u8];
    v.extend_from_slice(ops);
    v.extend_from_slice(&payload[..end]);
    v
}

/// Every operation code of `frames_attach` once, and a few variants.
const FRAMES_OPS: [u8; 12] = [0, 2, 0, 3, 4, 5, 1, 2, 6, 7, 0x10, 0x0d];

/// [`dump`] of a frame channel whose user header is 16 bytes (slot metadata entries of 64
/// bytes from payload offset 448, after the control block: `SPEC.md` §8, layout v2), with
/// the publish timestamps cleared so that the seeds do not change from one generation to the
/// next.
fn frames_dump(name: &str, slots: usize) -> Vec<u8> {
    let mut b = dump(name);
    for i in 0..slots {
        let at = HEADER + 448 + 64 * i + 16; // mono_ns, real_ns
        b[at..at + 16].fill(0);
    }
    b
}

fn frames(out: &mut Out, names: &mut Cleanup) {
    use shmkit::frames::{FramesOptions, Policy};
    // geo 0x05: 2 slots, 2 subscribers, 64-byte frames, reuse-oldest. Three frames published,
    // one held by an attached subscriber.
    let n = common::unique_name("seed-frames");
    names.add(&n);
    let mut p = FramesOptions::<[u64; 2]>::new()
        .slots(2)
        .subscribers(2)
        .max_bytes(64)
        .create(&n)
        .unwrap();
    let mut s = FramesOptions::<[u64; 2]>::new().subscriber(&n).unwrap();
    for i in 0..3u64 {
        let mut l = p.try_loan().unwrap();
        l.as_mut_slice()[..8].copy_from_slice(&i.to_le_bytes());
        l.publish(8, &[i, 8]).unwrap();
    }
    let held = s.try_latest().unwrap();
    let file = frames_dump(&n, 2);
    out.object("frames", Kind::FRAMES, &file);
    out.seed(
        "frames_attach",
        "reuse-held",
        frames_input(0x05, &FRAMES_OPS, &file[HEADER..]),
    );
    drop(held);
    drop(s);
    // geo 0x83: 4 slots, 1 subscriber, 64-byte frames, block; a publisher mid-write (a slot
    // CLAIMED) after two published frames.
    let n = common::unique_name("seed-frames");
    names.add(&n);
    let mut p = FramesOptions::<[u64; 2]>::new()
        .slots(4)
        .subscribers(1)
        .max_bytes(64)
        .policy(Policy::Block)
        .create(&n)
        .unwrap();
    for i in 0..2u64 {
        p.try_loan().unwrap().publish(4, &[i, 4]).unwrap();
    }
    let mut l = p.try_loan().unwrap();
    l.as_mut_slice()[..32].fill(0xee);
    out.seed(
        "frames_attach",
        "block-mid-write",
        frames_input(0x83, &FRAMES_OPS, &frames_dump(&n, 4)[HEADER..]),
    );
    drop(l);
}

fn sync(out: &mut Out, names: &mut Cleanup) {
    let name = |names: &mut Cleanup, tag: &str| {
        let n = common::unique_name(tag);
        names.add(&n);
        n
    };
    let state = |n: &str| dump(n)[HEADER..].to_vec();

    let n = name(names, "seed-lock");
    let l = Lock::create(&n).unwrap();
    let file = dump(&n);
    out.object("lock", Kind::LOCK, &file);
    out.seed(
        "sync_attach",
        "lock-free",
        sync_input(0, 0, &SYNC_OPS, &file[HEADER..]),
    );
    let g = l.try_lock().ok().unwrap();
    out.seed(
        "sync_attach",
        "lock-held",
        sync_input(0, 0, &SYNC_OPS, &state(&n)),
    );
    drop(g);

    let n = name(names, "seed-rlock");
    let l = RLock::create(&n).unwrap();
    out.object("rlock", Kind::RLOCK, &dump(&n));
    let g1 = l.try_lock().ok().unwrap();
    let g2 = l.try_lock().ok().unwrap();
    out.seed(
        "sync_attach",
        "rlock-depth2",
        sync_input(1, 0, &SYNC_OPS, &state(&n)),
    );
    drop((g2, g1));

    let n = name(names, "seed-cond");
    let c = Condition::create(&n).unwrap();
    out.object("condition", Kind::CONDITION, &dump(&n));
    {
        // Three waits begun (their tickets forgotten: waiters as a process killed mid-wait
        // leaves them), two notified and not yet back: `seq` 1, grants (3 << 32) | 2.
        for _ in 0..3 {
            let g = c.as_lock().try_lock().ok().unwrap();
            std::mem::forget(c.release_for_wait(g));
        }
        let g = c.as_lock().try_lock().ok().unwrap();
        c.notify(&g, 2);
        assert_eq!((c.waiters(), c.granted()), (3, 2));
    }
    out.seed(
        "sync_attach",
        "condition-notified",
        sync_input(2, 0, &SYNC_OPS, &state(&n)),
    );

    let n = name(names, "seed-sem");
    let s = Semaphore::create(&n, 3).unwrap();
    out.object("semaphore", Kind::SEMAPHORE, &dump(&n));
    s.try_acquire().unwrap();
    out.seed(
        "sync_attach",
        "semaphore-2-of-3",
        sync_input(3, 3, &SYNC_OPS, &state(&n)),
    );

    let n = name(names, "seed-bsem");
    let s = BoundedSemaphore::create(&n, 2).unwrap();
    out.object("bounded_semaphore", Kind::BOUNDED_SEMAPHORE, &dump(&n));
    s.try_acquire().unwrap();
    out.seed(
        "sync_attach",
        "bounded-1-of-2",
        sync_input(4, 2, &SYNC_OPS, &state(&n)),
    );

    let n = name(names, "seed-event");
    let e = Event::create(&n).unwrap();
    out.object("event", Kind::EVENT, &dump(&n));
    e.set();
    e.clear();
    e.set();
    out.seed(
        "sync_attach",
        "event-set-gen2",
        sync_input(5, 0, &SYNC_OPS, &state(&n)),
    );

    let n = name(names, "seed-barrier");
    let b = Barrier::create(&n, 3).unwrap();
    out.object("barrier", Kind::BARRIER, &dump(&n));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
        while b.n_waiting() != 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        out.seed(
            "sync_attach",
            "barrier-1-of-3-waiting",
            sync_input(6, 3, &SYNC_OPS, &state(&n)),
        );
        b.abort();
        assert!(waiter.join().unwrap().is_err());
    });
    out.seed(
        "sync_attach",
        "barrier-broken",
        sync_input(6, 3, &SYNC_OPS, &state(&n)),
    );
}

/// `cell_attach` input: selector (array bit, mode, typecode index), length, operations, then
/// the payload.
fn cell_input(array: bool, mode: u8, tc: char, len: u8, ops: &[u8], payload: &[u8]) -> Vec<u8> {
    let idx = Typecode::all().position(|t| t.as_char() == tc).unwrap() as u8;
    let mut v = vec![
        u8::from(array) | (mode << 1) | (idx << 3),
        len,
        ops.len() as u8,
    ];
    v.extend_from_slice(ops);
    v.extend_from_slice(payload);
    v
}

const CELL_OPS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

fn cells(out: &mut Out, names: &mut Cleanup) {
    let name = |names: &mut Cleanup, tag: &str| {
        let n = common::unique_name(tag);
        names.add(&n);
        n
    };
    let payload = |n: &str| dump(n)[HEADER..].to_vec();

    let n = name(names, "seed-value");
    let v = Value::<i64>::create(&n, -7).unwrap();
    out.object("value", Kind::VALUE, &dump(&n));
    out.seed(
        "cell_attach",
        "value-locked-q",
        cell_input(false, 0, 'q', 1, &CELL_OPS, &payload(&n)),
    );
    let g = v.lock().ok().unwrap();
    out.seed(
        "cell_attach",
        "value-locked-q-held",
        cell_input(false, 0, 'q', 1, &CELL_OPS, &payload(&n)),
    );
    drop(g);

    let n = name(names, "seed-value-atomic");
    let v = Value::<u64>::options()
        .cell_mode(CellMode::Atomic)
        .create(&n, 1)
        .unwrap();
    v.fetch_add(41).unwrap();
    out.seed(
        "cell_attach",
        "value-atomic-Q",
        cell_input(false, 1, 'Q', 1, &CELL_OPS, &payload(&n)),
    );

    // Typecode `Q`, as the selector says: the target creates and opens a `Q` value, so a
    // payload of any other element size is refused before any operation.
    let n = name(names, "seed-value-seq");
    let v = Value::<u64>::options()
        .cell_mode(CellMode::Seqlock)
        .create(&n, 3)
        .unwrap();
    v.set(4).unwrap();
    out.seed(
        "cell_attach",
        "value-seqlock-Q",
        cell_input(false, 2, 'Q', 1, &CELL_OPS, &payload(&n)),
    );

    let n = name(names, "seed-array");
    let a = Array::<f64>::options()
        .cell_mode(CellMode::Seqlock)
        .create_from(&n, &[1.0, 2.0, 3.0, 4.0])
        .unwrap();
    out.object("array", Kind::ARRAY, &dump(&n));
    a.set(1, 2.5).unwrap();
    out.seed(
        "cell_attach",
        "array-seqlock-d4",
        cell_input(true, 2, 'd', 4, &CELL_OPS, &payload(&n)),
    );

    let n = name(names, "seed-array-atomic");
    let a = Array::<i32>::options()
        .cell_mode(CellMode::Atomic)
        .create(&n, 6)
        .unwrap();
    a.fetch_add(2, 9).unwrap();
    out.seed(
        "cell_attach",
        "array-atomic-i6",
        cell_input(true, 1, 'i', 6, &CELL_OPS, &payload(&n)),
    );

    let n = name(names, "seed-array-locked");
    let _a = Array::<u8>::create_from(&n, b"locked bytes").unwrap();
    out.seed(
        "cell_attach",
        "array-locked-B12",
        cell_input(true, 0, 'B', 12, &CELL_OPS, &payload(&n)),
    );
}

/// `shareable_list` seeds: whole objects. Lists shmkit made (with its trailer, identity
/// replaced), lists exactly as CPython 3.9–3.13 makes them (one made by `python3` itself, the
/// others by the codec the `shareable_list_cpython` test pins to CPython's bytes), and
/// CPython 3.8's older layout, which must be refused.
fn lists(out: &mut Out, names: &mut Cleanup) {
    use shmkit::list::{encode_cpython_object, Item, ShareableList};
    let items = [
        Item::Int(-1),
        Item::Float(2.5),
        Item::Bool(true),
        Item::None,
        Item::Str("hé".into()),
        Item::Bytes(b"ab\0".to_vec()),
    ];
    let n = common::unique_name("seed-list");
    names.add(&n);
    let l = ShareableList::create(&n, &items).unwrap();
    let file = dump_list(&n);
    out.object_at(
        "shareable_list",
        Kind::SHAREABLE_LIST,
        &file,
        trailer_at(&file),
    );
    out.seed("shareable_list", "shmkit-made", file);
    l.set(0, &Item::Str("hi\0".into())).unwrap();
    l.set(4, &Item::None).unwrap();
    out.seed("shareable_list", "shmkit-made-rewritten", dump_list(&n));
    let n = common::unique_name("seed-list");
    names.add(&n);
    let _l = ShareableList::options()
        .reserve(24)
        .create(&n, &[])
        .unwrap();
    out.seed("shareable_list", "shmkit-made-empty", dump_list(&n));

    let n = common::unique_name("seed-list");
    names.add(&n);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/shareable_list.py");
    let st = std::process::Command::new("python3")
        .arg(script)
        .args(["demo", &n])
        .status()
        .expect("python3 (CPython 3.9+) is needed to generate the shareable_list seeds");
    assert!(st.success());
    let py = std::fs::read(format!("/dev/shm/{n}")).unwrap();
    assert_eq!(
        py,
        encode_cpython_object(&items_demo()),
        "python3 made another layout"
    );
    out.seed("shareable_list", "cpython-made-demo", py);
    out.seed(
        "shareable_list",
        "cpython-layout-strings",
        encode_cpython_object(&[
            Item::Str("é".repeat(7)),
            Item::Bytes(vec![0; 9]),
            Item::Str(String::new()),
        ]),
    );
    out.seed(
        "shareable_list",
        "cpython-layout-empty",
        encode_cpython_object(&[]),
    );
    let mut py38 = vec![0u8; 158];
    py38[..8].copy_from_slice(&6i64.to_le_bytes());
    for k in 0..6 {
        py38[8 + 8 * k..16 + 8 * k].copy_from_slice(&8i64.to_le_bytes());
    }
    out.seed("shareable_list", "cpython38-layout", py38);
    out.dict.insert(
        "kind_shareable_list".into(),
        Kind::SHAREABLE_LIST.0.to_le_bytes().to_vec(),
    );
    for f in ["q", "d", "xxxxxxx?", "xxxxxx?x", "8s", "16s", "9999992s"] {
        out.dict
            .insert(format!("list_format_{f}"), f.as_bytes().to_vec());
    }
}

/// `list_attach` input: the list the target creates (`geo`: item count in bits 0..3, each
/// item `bytes` of 8 times bits 3..6 bytes), where the hostile bytes start (0: the whole
/// object), the operations, then the object's bytes.
fn list_input(geo: u8, ops: &[u8], object: &[u8]) -> Vec<u8> {
    assert!(geo < 64 && ops.len() < 32);
    let mut v = vec![geo, 0, ops.len() as u8];
    v.extend_from_slice(ops);
    v.extend_from_slice(object);
    v
}

/// The list `list_attach` creates for `geo` (see [`list_input`]).
fn list_attach_items(geo: u8) -> Vec<shmkit::list::Item> {
    let len = usize::from((geo >> 3) & 7) * 8;
    vec![shmkit::list::Item::Bytes(vec![b'x'; len]); usize::from(geo & 7)]
}

/// Every operation code of `list_attach`: reads of item 4 on the read-only then the
/// read-write handle (a dead writer's item in a seed: read as is, then repaired), sets of
/// every type (a `str` that fits, a `bytes` one past the slot), reads, capped opens (7
/// items, 0 items), probe, a reattach.
const LIST_OPS: [u8; 16] = [
    0x14, 0x13, 0x90, 0xa0, 0x09, 0x3a, 0x42, 0x68, 0x03, 0x0b, 0x1b, 0xf5, 0x05, 0x06, 0x07, 0x1c,
];

fn list_attach(out: &mut Out, names: &mut Cleanup) {
    use shmkit::list::{encode_cpython_object, Item, ShareableList};
    // geo 0x16: 6 items of 16-byte slots, then every item type written over them.
    let geo = 0x16;
    let n = common::unique_name("seed-list-attach");
    names.add(&n);
    let l = ShareableList::create(&n, &list_attach_items(geo)).unwrap();
    let items = [
        Item::Int(-1),
        Item::Float(2.5),
        Item::Bool(true),
        Item::None,
        Item::Str("hé\0".into()),
        Item::Bytes(b"ab\0".to_vec()),
    ];
    for (i, v) in items.iter().enumerate() {
        l.set(i as isize, v).unwrap();
    }
    let file = dump_list(&n);
    out.seed(
        "list_attach",
        "shmkit-mixed",
        list_input(geo, &LIST_OPS, &file),
    );
    // The same list as a writer that died half-way through item 4 leaves it: the writer lock
    // held by a dead process (the fixed token: `SPEC.md` §6.2, owner word `token << 3`), the
    // item's seq odd (§9.4). The next writer repairs it; a read-only reader reads it as is.
    let t = trailer_at(&file);
    let mut died = file.clone();
    let lock = t + 160;
    died[lock + 4..lock + 8].copy_from_slice(&1u32.to_le_bytes()); // depth
    died[lock + 8..lock + 16].copy_from_slice(&(FAKE_TOKEN << 3).to_le_bytes()); // owner
    died[lock + 24..lock + 28].copy_from_slice(&FAKE_TID.to_le_bytes()); // thread
    died[lock + 28..lock + 32].copy_from_slice(&FAKE_PID.to_le_bytes()); // pid
    let seq = t + 192 + 32 * 4;
    let odd = u64::from_le_bytes(died[seq..seq + 8].try_into().unwrap()) | 1;
    died[seq..seq + 8].copy_from_slice(&odd.to_le_bytes());
    out.seed(
        "list_attach",
        "shmkit-writer-died",
        list_input(geo, &LIST_OPS, &died),
    );
    // CPython's layout of the same items over the whole object: no trailer (zeros after the
    // CPython area), so the list opens as one CPython made.
    let mut py = encode_cpython_object(&items);
    assert!(py.len() <= file.len(), "CPython's layout is the smaller");
    py.resize(file.len(), 0);
    out.seed(
        "list_attach",
        "cpython-layout",
        list_input(geo, &LIST_OPS, &py),
    );
    // geo 0x00: an empty shmkit list (its trailer alone).
    let n = common::unique_name("seed-list-attach");
    names.add(&n);
    let _l = ShareableList::create(&n, &list_attach_items(0)).unwrap();
    out.seed(
        "list_attach",
        "shmkit-empty",
        list_input(0, &LIST_OPS, &dump_list(&n)),
    );
}

/// The reference demo list (`SPEC.md`; `tests/python/shareable_list.py demo`).
fn items_demo() -> Vec<shmkit::list::Item> {
    use shmkit::list::Item;
    vec![
        Item::Int(1),
        Item::Float(2.5),
        Item::Bool(true),
        Item::None,
        Item::Str("hé".into()),
        Item::Bytes(b"ab\0".to_vec()),
    ]
}

/// A shmkit list's bytes as [`dump`] gives them, except that its header is a trailer (at the
/// first multiple of 64 after the CPython area, where shmkit's magic is): the creation time
/// and pid namespace cleared there, not at offset 64.
fn dump_list(name: &str) -> Vec<u8> {
    let orig = std::fs::read(format!("/dev/shm/{name}")).unwrap();
    let mut b = dump(name);
    let t = trailer_at(&orig);
    b[64..80].copy_from_slice(&orig[64..80]);
    b[t + 64..t + 80].fill(0);
    b
}

/// Where a shmkit list's trailer starts: the first multiple of 64 where shmkit's magic is.
fn trailer_at(list: &[u8]) -> usize {
    (64..list.len())
        .step_by(64)
        .find(|&t| list[t..].starts_with(&shmkit::segment::MAGIC))
        .unwrap()
}

#[test]
#[ignore = "generator: writes fuzz/corpus/*/seed-* and fuzz/dict/shmkit.dict into the source tree"]
fn generate_fuzz_seeds_and_dictionary() {
    let mut names = Cleanup::new::<&str>(&[]);
    let mut out = Out::default();
    constants(&mut out);

    // A plain-bytes segment with a payload, a published one; the same header still
    // initialising (a dead creator: the open path that removes it); a raw segment.
    let n = common::unique_name("seed-seg");
    names.add(&n);
    let s = Segment::create(&n, 24).unwrap();
    s.write_at(0, b"hello from a fuzz seed\n").unwrap();
    let file = dump(&n);
    out.object("bytes", Kind::SEGMENT, &file);
    let mut init = file.clone();
    init[56..60].fill(0);
    out.seed("open_segment", "bytes-initialising-dead-creator", init);
    // An owned segment (the lifetime `gc` may collect).
    let n = common::unique_name("seed-seg");
    names.add(&n);
    let _s = Segment::options()
        .lifetime(shmkit::segment::Lifetime::Owned)
        .create(&n, 8)
        .unwrap();
    out.seed("open_segment", "bytes-owned", dump(&n));
    out.seed("open_segment", "raw", b"raw bytes, no header".to_vec());

    queues(&mut out, &mut names);
    mpmc_bytes(&mut out, &mut names);
    sync(&mut out, &mut names);
    cells(&mut out, &mut names);
    frames(&mut out, &mut names);
    lists(&mut out, &mut names);
    list_attach(&mut out, &mut names);
    out.write();

    let total: usize = out.seeds.values().flatten().map(|(_, b)| b.len()).sum();
    // About 74 KiB now, 12 KiB of it the frame channel in `open_segment` (its slots are
    // page-aligned): a bound that catches a seed grown by mistake.
    assert!(total < 96 * 1024, "the seed corpus grew to {total} bytes");
}
