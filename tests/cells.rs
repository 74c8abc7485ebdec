//! Named typed cells across real processes: exact counts under the lock and with atomics, a
//! seqlock that never yields a torn value and recovers from a writer killed mid-write, array
//! invariants under concurrent writers, a dead lock holder reported as `OwnerDied`, and each
//! mismatch or misuse its own clear error.

mod common;

use std::time::Duration;

use common::{child_entry, kill9, report, spawn_child, unique_name, wait_ok, Cleanup, Lines};
use shmkit::cell::{AnyArray, AnyValue, Array, CellMode, Typecode, Value};
use shmkit::sync::LockError;
use shmkit::Error;

const INCREMENTS: i64 = 100_000;
const READS: u64 = 1_000_000;
type Block = [u64; 16];

fn all_equal(b: &Block) -> bool {
    b.iter().all(|&x| x == b[0])
}

#[test]
fn child_main() {
    child_entry(|role, args| {
        let name = &args[0];
        match role {
            "incr-locked" => {
                let v = Value::<i64>::open(name).unwrap();
                for _ in 0..INCREMENTS {
                    v.update(|x| x + 1).unwrap();
                }
            }
            "incr-atomic" => {
                let v = Value::<i64>::open(name).unwrap();
                for _ in 0..INCREMENTS {
                    v.fetch_add(1).unwrap();
                }
            }
            "seq-writer" => {
                // Rewrites the block at full speed until killed.
                let v = Value::<Block>::open(name).unwrap();
                report("writing");
                for k in 1u64.. {
                    v.set([k; 16]).unwrap();
                }
            }
            "seq-reader" => {
                let v = Value::<Block>::open(name).unwrap();
                let mut last = 0;
                for _ in 0..READS {
                    let b = v.get_timeout(Duration::from_secs(30)).unwrap();
                    assert!(all_equal(&b), "torn value {b:?}");
                    assert!(b[0] >= last, "went back from {last} to {}", b[0]);
                    last = b[0];
                }
                report(&format!("ok {last}"));
            }
            "seq-die-mid-write" | "seq-die-mid-write-array" => {
                // Leave exactly what a writer SIGKILLed mid-write leaves: the writer lock
                // held, the sequence odd, half the data new.
                // The guard is forgotten: the lock stays held until this process is killed.
                if role == "seq-die-mid-write" {
                    std::mem::forget(Value::<Block>::open(name).unwrap().lock().unwrap());
                } else {
                    std::mem::forget(Array::<u64>::open(name).unwrap().lock().unwrap());
                }
                // The object's bytes through a mapping of our own (a cell handle hands out
                // none), as a writer's would be: object offsets, the payload at 128.
                let raw = shmkit::Segment::options().raw(true).open(name).unwrap();
                let seq = raw.atomic_u64(128 + 32).unwrap(); // SPEC §10.1: seq at 32
                let s = seq.load(std::sync::atomic::Ordering::Relaxed);
                seq.store(s | 1, std::sync::atomic::Ordering::Relaxed);
                raw.write_at(320, &[0xAA; 64]).unwrap(); // half of the data
                report("mid-write");
                std::thread::sleep(Duration::from_secs(600));
            }
            "seq-wait-reader" => {
                let v = Value::<Block>::open(name).unwrap();
                assert!(matches!(v.try_get(), Err(Error::WouldBlock)));
                report("blocked");
                let b = v.get_timeout(Duration::from_secs(60)).unwrap();
                report(&format!("got {}", b[0]));
                assert!(all_equal(&b));
            }
            "hold-lock" => {
                let v = Value::<i64>::open(name).unwrap();
                let g = v.lock().unwrap();
                g.set(-1); // half-done update
                report("holding");
                std::thread::sleep(Duration::from_secs(600));
                drop(g);
            }
            "array-mover" => {
                // Moves units between elements under the lock: the sum stays 0.
                let a = Array::<i64>::open(name).unwrap();
                let n = a.len();
                for k in 0..20_000usize {
                    if k % 2 == 0 {
                        a.with_lock(|xs| {
                            xs[k % n] += 3;
                            xs[(k * 7 + 1) % n] -= 3;
                        })
                        .unwrap();
                    } else {
                        let g = a.lock().unwrap();
                        let (i, j) = (k % n, (k * 3 + 2) % n);
                        if i == j {
                            continue;
                        }
                        let (x, y) = (g.get(i).unwrap(), g.get(j).unwrap());
                        g.set(i, x - 5).unwrap();
                        g.set(j, y + 5).unwrap();
                    }
                }
            }
            "array-checker" => {
                let a = Array::<i64>::open(name).unwrap();
                let mut reads = 0u64;
                while reads < 50_000 {
                    let xs = a.read(0..a.len()).unwrap();
                    assert_eq!(xs.iter().sum::<i64>(), 0, "invariant broken: {xs:?}");
                    reads += 1;
                }
                report("ok");
            }
            "hold-until-released" => {
                // Holds the lock of cell args[0] (a value or an array, args[2]) until the
                // atomic flag cell args[1] becomes 1.
                let flag = Value::<u8>::open(&args[1]).unwrap();
                let release = || {
                    while flag.load().unwrap() == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                };
                if args[2] == "value" {
                    let v = AnyValue::open(name).unwrap();
                    let _g = v.lock().unwrap();
                    report("holding");
                    release();
                } else {
                    let a = AnyArray::open(name).unwrap();
                    let _g = a.lock().unwrap();
                    report("holding");
                    release();
                }
            }
            "seq-set" => {
                let v = Value::<u64>::open(name).unwrap();
                v.set(args[1].parse().unwrap()).unwrap();
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn two_processes_increment_a_locked_value_exactly() {
    let name = unique_name("cell-locked");
    let _c = Cleanup::new(&[&name]);
    let v = Value::<i64>::create(&name, 0).unwrap();
    let mut kids: Vec<_> = (0..2)
        .map(|_| spawn_child("incr-locked", &[&name]))
        .collect();
    for k in &mut kids {
        wait_ok(k, Duration::from_secs(300));
    }
    assert_eq!(v.get().unwrap(), 2 * INCREMENTS);
}

#[test]
fn two_processes_fetch_add_an_atomic_value_exactly() {
    let name = unique_name("cell-atomic");
    let _c = Cleanup::new(&[&name]);
    let v = Value::<i64>::options()
        .cell_mode(CellMode::Atomic)
        .create(&name, 0)
        .unwrap();
    let mut kids: Vec<_> = (0..2)
        .map(|_| spawn_child("incr-atomic", &[&name]))
        .collect();
    for k in &mut kids {
        wait_ok(k, Duration::from_secs(300));
    }
    assert_eq!(v.load().unwrap(), 2 * INCREMENTS);
    // Calls of another mode are refused with a clear error naming the mode.
    let e = v
        .wait_changed_timeout(0, Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(e.contains("seqlock") && e.contains("atomic"), "{e}");
}

#[test]
fn seqlock_readers_never_see_a_torn_value_and_recover_from_a_killed_writer() {
    let name = unique_name("cell-seq");
    let _c = Cleanup::new(&[&name]);
    let v = Value::<Block>::options()
        .cell_mode(CellMode::Seqlock)
        .create(&name, [0; 16])
        .unwrap();
    let mut writer = spawn_child("seq-writer", &[&name]);
    Lines::of(&mut writer).expect("writing");
    let mut readers: Vec<_> = (0..2)
        .map(|_| spawn_child("seq-reader", &[&name]))
        .collect();
    for r in &mut readers {
        let line = Lines::of(r).next_line().expect("reader report");
        assert!(line.starts_with("ok "), "{line}");
        wait_ok(r, Duration::from_secs(300));
    }
    // SIGKILL the writer wherever it is (maybe mid-write); a new writer recovers the cell.
    kill9(&mut writer);
    v.set([u64::MAX; 16]).unwrap();
    let (b, s) = (v.get().unwrap(), v.sequence());
    assert_eq!(b, [u64::MAX; 16]);
    assert_eq!(s % 2, 0);
}

#[test]
fn seqlock_writer_killed_mid_write_blocks_readers_until_the_next_write() {
    let name = unique_name("cell-seqdie");
    let _c = Cleanup::new(&[&name]);
    let v = Value::<Block>::options()
        .cell_mode(CellMode::Seqlock)
        .create(&name, [5; 16])
        .unwrap();
    let mut dier = spawn_child("seq-die-mid-write", &[&name]);
    Lines::of(&mut dier).expect("mid-write");
    kill9(&mut dier);
    // Odd sequence forever: no reader returns the half-written block.
    assert_eq!(v.sequence() % 2, 1);
    assert!(matches!(v.try_get(), Err(Error::WouldBlock)));
    assert!(matches!(
        v.get_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    let info = shmkit::cell::inspect(&name).unwrap().unwrap();
    assert_eq!(info.sequence % 2, 1);
    assert!(info.lock.locked, "{info}");
    // A read-modify-write would start from the half-written data: refused, the lock repaired.
    let e = v.update(|b| b).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(!shmkit::cell::inspect(&name).unwrap().unwrap().lock.locked);
    assert_eq!(v.sequence() % 2, 1);
    // And so is a retry, with the lock repaired and free now (it ran on the half-written
    // block and published the result as whole before), and a guard's read.
    let e = v.update(|b| b).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "retried update: {e}");
    let e = v.lock().unwrap().get().unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "guard read: {e}");
    assert_eq!(v.sequence() % 2, 1);
    // A reader in another process waits; the next writer (this process) recovers the cell.
    let mut reader = spawn_child("seq-wait-reader", &[&name]);
    let mut lines = Lines::of(&mut reader);
    lines.expect("blocked");
    v.set([9; 16]).unwrap();
    lines.expect("got 9");
    wait_ok(&mut reader, Duration::from_secs(60));
    assert_eq!(v.get().unwrap(), [9; 16]);
    assert_eq!(v.sequence() % 2, 0);
    assert!(!shmkit::cell::inspect(&name).unwrap().unwrap().lock.locked);
}

/// An array's seqlock writer killed mid-write: `with_lock`, which would run on the half-written
/// data and publish the result as a whole array, is refused (`Corrupt`), the first time (which
/// repairs the lock) and every time after; so are a guard's reads. A whole-array write through
/// the guard recovers the array.
#[test]
fn seqlock_array_writer_killed_mid_write_refuses_every_read_modify_write() {
    let name = unique_name("cell-seqdie-arr");
    let _c = Cleanup::new(&[&name]);
    let a = Array::<u64>::options()
        .cell_mode(CellMode::Seqlock)
        .create_from(&name, &[5; 16])
        .unwrap();
    let mut dier = spawn_child("seq-die-mid-write-array", &[&name]);
    Lines::of(&mut dier).expect("mid-write");
    kill9(&mut dier);
    let bump = |d: &mut [u64]| d.iter_mut().for_each(|x| *x += 1);
    for attempt in 0..3 {
        let e = a
            .with_lock_timeout(bump, Duration::from_secs(30))
            .unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "attempt {attempt}: {e}");
        assert_eq!(a.sequence() % 2, 1, "attempt {attempt}");
    }
    let g = a.lock().unwrap();
    assert!(matches!(g.get(0), Err(Error::Corrupt { .. })));
    assert!(matches!(g.read(0..16), Err(Error::Corrupt { .. })));
    g.write(0, &[9; 16]).unwrap();
    assert_eq!(g.read(0..16).unwrap(), [9; 16]);
    drop(g);
    assert_eq!(a.sequence() % 2, 0);
    a.with_lock(bump).unwrap();
    assert_eq!(a.read(0..16).unwrap(), [10; 16]);
}

/// A peer that keeps moving the sequence (even values only, so every wait for an even
/// sequence ends at once, and no copy is consistent while it runs) must not keep a timed
/// seqlock read past its deadline: the read must end with `Timeout` while the storm still runs.
/// The storm runs until then. A read that returns `Ok` got a copy through while both storm
/// threads were off the CPU (a busy machine): that proves nothing, so the test reads again.
/// Without the deadline check in the read loop a read cannot end while the storm runs (it can
/// only get `Ok` in such a pause), so no read ever times out: the storm threads' own cap (20 s,
/// far past the 1 ms deadline) is what ends the test then, and reaching it is the failure.
#[test]
fn a_seqlock_read_honours_its_deadline_while_the_sequence_keeps_moving() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let name = unique_name("cell-seqstorm");
    let _c = Cleanup::new(&[&name]);
    let len = 8192; // 64 KiB of u64: each copy spans many storm writes
    let a = Array::<u64>::options()
        .cell_mode(CellMode::Seqlock)
        .create(&name, len)
        .unwrap();
    let raw = shmkit::Segment::options().raw(true).open(&name).unwrap();
    let seq = raw.atomic_u64(128 + 32).unwrap(); // SPEC 10.1: `seq` at object offset 160
    let done = AtomicBool::new(false);
    let capped = AtomicBool::new(false);
    let (r, storm_ran, got_through) = std::thread::scope(|s| {
        // Two storm threads, so that one of them runs whenever the reader does. Thread k
        // stores 4n + 2k, n = 1, 2, ...: every value is even and none comes twice.
        for k in 0..2u64 {
            let (done, capped, seq) = (&done, &capped, &seq);
            s.spawn(move || {
                let cap = std::time::Instant::now() + Duration::from_secs(20);
                for n in 1u64.. {
                    if done.load(SeqCst) {
                        return;
                    }
                    if n % 1024 == 0 && std::time::Instant::now() > cap {
                        capped.store(true, SeqCst);
                        return;
                    }
                    seq.store(4 * n + 2 * k, SeqCst);
                }
            });
        }
        let mut got_through = 0u64;
        let r = loop {
            match a.read_timeout(0..len, Duration::from_millis(1)) {
                Ok(_) if !capped.load(SeqCst) => got_through += 1,
                r => break r,
            }
        };
        // Read before `done` stops the storm: whether it was still running when the read ended.
        let storm_ran = !capped.load(SeqCst);
        done.store(true, SeqCst);
        (r.map(|_| ()), storm_ran, got_through)
    });
    assert!(
        matches!(r, Err(Error::Timeout)) && storm_ran,
        "no read ended with Timeout while the sequence kept moving (last read {r:?}, storm \
         still running then: {storm_ran}; {got_through} reads got a copy through a pause of it)"
    );
}

/// `cell::read_only` and `cell::inspect` read an atomic cell's element with one load of its
/// own size, so they never return a value no writer stored: here a `Value<u32>` flips between
/// 0 and `u32::MAX` (an atomic store of the whole element) while the reads run. A copy in
/// bytes (what they did before) mixes the two, e.g. `0x0000ffff`, within a few hundred reads
/// whenever the writer runs alongside. The reads are counted, not timed.
#[test]
fn a_read_only_read_of_an_atomic_cell_never_tears_an_element() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let name = unique_name("cell-rotear");
    let _c = Cleanup::new(&[&name]);
    let v = Value::<u32>::options()
        .cell_mode(CellMode::Atomic)
        .create(&name, 0)
        .unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut x = 0u32;
            while !done.load(SeqCst) {
                x = !x;
                v.store(x).unwrap();
            }
        });
        let whole = |b: &[u8]| b.iter().all(|&x| x == b[0]) && (b[0] == 0 || b[0] == 0xff);
        let r = std::panic::catch_unwind(|| {
            for _ in 0..2000 {
                let (_, b) = shmkit::cell::read_only(&name, 0, 1, Duration::from_secs(10)).unwrap();
                assert!(whole(&b), "read_only read {b:02x?}: no writer stored that");
                let info = shmkit::cell::inspect(&name).unwrap().unwrap();
                assert_eq!(info.values_read, "atomic loads");
                let shown = &info.values[0];
                assert!(
                    shown == "0" || shown == &u32::MAX.to_string(),
                    "inspect showed {shown}: no writer stored that"
                );
            }
        });
        done.store(true, SeqCst);
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    });
}

#[test]
fn concurrent_array_writers_under_the_lock_keep_the_invariant() {
    let name = unique_name("cell-arr");
    let _c = Cleanup::new(&[&name]);
    let a = Array::<i64>::create(&name, 8).unwrap();
    let mut kids: Vec<_> = (0..2)
        .map(|_| spawn_child("array-mover", &[&name]))
        .collect();
    let mut checker = spawn_child("array-checker", &[&name]);
    for k in &mut kids {
        wait_ok(k, Duration::from_secs(300));
    }
    Lines::of(&mut checker).expect("ok");
    wait_ok(&mut checker, Duration::from_secs(300));
    let xs = a.read(0..8).unwrap();
    assert_eq!(xs.iter().sum::<i64>(), 0);
    assert_ne!(xs, vec![0; 8]);
}

#[test]
fn a_holder_killed_mid_update_is_owner_died_for_the_next_taker() {
    let name = unique_name("cell-died");
    let _c = Cleanup::new(&[&name]);
    let v = Value::<i64>::create(&name, 10).unwrap();
    let mut holder = spawn_child("hold-lock", &[&name]);
    Lines::of(&mut holder).expect("holding");
    let pid = holder.id();
    kill9(&mut holder);
    match v.lock_timeout(Duration::from_secs(30)) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(g.previous_owner().unwrap().pid, pid);
            assert_eq!(g.get().unwrap(), -1); // what the dead holder left
            g.set(10);
            g.make_consistent().unwrap();
        }
        other => panic!("expected OwnerDied, got {:?}", other.map(drop)),
    }
    assert_eq!(v.update(|x| x + 1).unwrap(), 11);
}

#[test]
fn a_read_after_a_holder_died_leaves_the_cell_repairable() {
    // A `get` (or `update`, a partial write) cannot repair what a dead holder left: it used to
    // drop the OwnerDied guard, which made the lock not recoverable for every process for
    // ever, so even the whole-value `set` that repairs it failed. Now each such call fails
    // with HolderDied and hands the lock back to the dead token, for a repair.
    let name = unique_name("cell-died-read");
    let _c = Cleanup::new(&[&name]);
    let v = Value::<i64>::create(&name, 10).unwrap();
    let mut holder = spawn_child("hold-lock", &[&name]);
    Lines::of(&mut holder).expect("holding");
    let pid = holder.id();
    kill9(&mut holder);
    let t = Duration::from_secs(30);
    for _ in 0..2 {
        match v.get_timeout(t) {
            Err(shmkit::Error::HolderDied { pid: p, .. }) => assert_eq!(p, pid),
            other => panic!("expected HolderDied, got {other:?}"),
        }
        match v.update_timeout(|x| x + 1, t) {
            Err(shmkit::Error::HolderDied { pid: p, .. }) => assert_eq!(p, pid),
            other => panic!("expected HolderDied, got {other:?}"),
        }
    }
    let e = v.get_timeout(t).unwrap_err().to_string();
    assert!(e.contains("died holding it") && e.contains("repair"), "{e}");
    // The next taker still gets OwnerDied, with the dead holder's pid and data.
    match v.lock_timeout(t) {
        Err(LockError::OwnerDied(g)) => {
            assert_eq!(g.previous_owner().unwrap().pid, pid);
            assert_eq!(g.get().unwrap(), -1);
            g.release_unrepaired(); // looked, left it
        }
        other => panic!("expected OwnerDied, got {:?}", other.map(drop)),
    }
    // A whole-value set repairs it.
    v.set_timeout(7, t).unwrap();
    assert_eq!(v.get().unwrap(), 7);
    assert_eq!(v.update(|x| x + 1).unwrap(), 8);
}

#[derive(
    Clone, Copy, Debug, PartialEq, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable,
)]
#[repr(C)]
struct Reading {
    celsius: f64,
    pascal: f64,
}
shmkit::shm_type!(Reading);

#[test]
fn mismatches_out_of_range_and_overflow_are_clear_errors() {
    let (a, v, u) = (
        unique_name("cell-mm-a"),
        unique_name("cell-mm-v"),
        unique_name("cell-mm-u"),
    );
    let _c = Cleanup::new(&[&a, &v, &u]);
    let arr = Array::<f64>::create(&a, 4).unwrap();
    let e = Value::<i64>::open(&a).unwrap_err().to_string();
    assert!(e.contains("holds Array<d>[4], asked for Value<q>"), "{e}");
    let e = Array::<i64>::open(&a).unwrap_err().to_string();
    assert!(
        e.contains("holds Array<d>[4], asked for Array<q>[4]"),
        "{e}"
    );
    let e = arr.get(4).unwrap_err().to_string();
    assert!(
        e.contains("out of range") && e.contains("Array<d>[4]"),
        "{e}"
    );
    let e = arr.write(3, &[1.0, 2.0]).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    assert_eq!(arr.read(0..4).unwrap(), vec![0.0; 4]); // nothing written

    // A user type: the name is its identity; another type of the same size is refused.
    let r = Value::<Reading>::create(
        &u,
        Reading {
            celsius: 21.5,
            pascal: 101_325.0,
        },
    )
    .unwrap();
    assert_eq!(
        Value::<Reading>::open(&u).unwrap().get().unwrap(),
        r.get().unwrap()
    );
    let e = Value::<[u64; 2]>::open(&u).unwrap_err().to_string();
    assert!(
        e.contains("holds Value<Reading>, asked for Value<[u64; 2]>"),
        "{e}"
    );
    let e = Array::<f64>::open(&u).unwrap_err().to_string();
    assert!(e.contains("holds Value<Reading>"), "{e}");

    // Overflowing text for a typecode: an error naming both, nothing written.
    let q = AnyValue::options()
        .create(&v, Typecode::from_char('b').unwrap(), Some(&[7]))
        .unwrap();
    let e = q.set_text("128").unwrap_err().to_string();
    assert!(e.contains("'b'") && e.contains("Value<b>"), "{e}");
    assert_eq!(q.get_text().unwrap(), "7");
    // Wrong mode for a call.
    let e = Value::<i8>::open(&v)
        .unwrap()
        .fetch_add(1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("atomic") && e.contains("locked"), "{e}");
    // A seqlock over the documented size, an atomic float: refused at creation.
    let e = Array::<u64>::options()
        .cell_mode(CellMode::Seqlock)
        .create(&unique_name("cell-big"), (1 << 20) / 8 + 1)
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let e = Value::<f64>::options()
        .cell_mode(CellMode::Atomic)
        .create(&unique_name("cell-af"), 1.0)
        .unwrap_err();
    assert!(e.to_string().contains("atomic mode"), "{e}");
}

#[test]
fn options_lifetime_unlink_and_open_or_create() {
    let name = unique_name("cell-opts");
    let _c = Cleanup::new(&[&name]);
    {
        let v = Value::<u32>::options()
            .unlink_on_drop(true)
            .mode(0o640)
            .lifetime(shmkit::segment::Lifetime::Owned)
            .open_or_create(&name, 3)
            .unwrap();
        let w = Value::<u32>::open_or_create(&name, 99).unwrap();
        assert_eq!(w.get().unwrap(), 3); // the first creator's value
        assert_eq!(v.header().lifetime, shmkit::segment::Lifetime::Owned);
    }
    assert!(matches!(
        Value::<u32>::open(&name),
        Err(Error::NotFound { .. })
    ));
}

/// Each control-block field another process scribbles on is caught at open, with the field
/// named: never a panic, never an access outside the mapping.
#[test]
fn an_untyped_array_is_created_holding_its_initial_elements() {
    // The initial bytes are written before the array is published (as `Array::create_from`
    // and `AnyValue`'s create): an opener never sees them zeroed or half-written. In each
    // mode, a fresh open reads them; a wrong byte count is refused and creates nothing.
    let q = Typecode::from_char('q').unwrap();
    let init: Vec<u8> = (1..=1000i64).flat_map(|x| x.to_le_bytes()).collect();
    for mode in [CellMode::Locked, CellMode::Atomic, CellMode::Seqlock] {
        let name = unique_name("cell-any-init");
        let _c = Cleanup::new(&[&name]);
        let a = AnyArray::options()
            .cell_mode(mode)
            .create(&name, q, 1000, Some(&init))
            .unwrap();
        let b = AnyArray::open(&name).unwrap();
        assert_eq!(b.len(), 1000);
        assert_eq!(b.read_bytes(0, 1000).unwrap(), init, "{mode:?}");
        let typed = Array::<i64>::open(&name).unwrap();
        assert_eq!(typed.get(999).unwrap(), 1000, "{mode:?}");
        drop((a, b, typed));

        let bad = unique_name("cell-any-init-bad");
        let _c = Cleanup::new(&[&bad]);
        let e = AnyArray::options()
            .cell_mode(mode)
            .create(&bad, q, 999, Some(&init))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("8000 initial bytes") && e.contains("999 elements"),
            "{e}"
        );
        assert!(matches!(AnyArray::open(&bad), Err(Error::NotFound { .. })));
    }
}

#[test]
fn corrupt_control_blocks_are_refused_naming_the_field() {
    use std::os::unix::fs::FileExt;
    let cases: &[(u64, &[u8], &str)] = &[
        (0, &[0; 4], "magic"),
        (4, &[9, 0, 0, 0], "mode"),
        (8, b"z\0\0\0", "typecode"),
        (12, &[16, 0, 0, 0], "typecode 'd' recorded with size 16"),
        (20, &[0, 1, 0, 0], "data offset"),
        (24, &[5, 0, 0, 0, 0, 0, 0, 0], "payload is"),
        (24, &[0; 8], "at least one element"),
        (24, &[0xff; 8], "too large"),
        (56, &[0xff; 8], "type name length"),
        (128, &[0; 4], "lock"),
    ];
    for (i, &(at, bytes, want)) in cases.iter().enumerate() {
        let name = unique_name(&format!("cell-corrupt{i}"));
        let _c = Cleanup::new(&[&name]);
        drop(Array::<f64>::create(&name, 4).unwrap());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        f.write_all_at(bytes, 128 + at).unwrap();
        let e = shmkit::cell::AnyArray::open(&name).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "case {i}: {e}");
        assert!(e.to_string().contains(want), "case {i}: {e} lacks {want:?}");
        assert!(shmkit::cell::inspect(&name).is_err(), "case {i}");
    }
}

/// `wait_changed` in its four forms: another process's write wakes a waiter; without a write
/// `try_` is `WouldBlock` and a timed wait a `Timeout`.
#[test]
fn wait_changed_sees_another_process_write() {
    let name = unique_name("cell-wait");
    let _c = Cleanup::new(&[&name]);
    let v = Value::<u64>::options()
        .cell_mode(CellMode::Seqlock)
        .create(&name, 1)
        .unwrap();
    let s0 = v.sequence();
    assert!(matches!(v.try_wait_changed(s0), Err(Error::WouldBlock)));
    assert!(matches!(
        v.wait_changed_timeout(s0, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        v.wait_changed_deadline(s0, std::time::Instant::now()),
        Err(Error::Timeout)
    ));
    let mut child = spawn_child("seq-set", &[&name, "42"]);
    let (x, s1) = v.wait_changed_timeout(s0, Duration::from_secs(60)).unwrap();
    assert_eq!((x, s1), (42, s0 + 2));
    wait_ok(&mut child, Duration::from_secs(60));
    assert_eq!(v.try_wait_changed(s0).unwrap(), (42, s1));
    let mut child = spawn_child("seq-set", &[&name, "43"]);
    assert_eq!(v.wait_changed(s1).unwrap(), (43, s1 + 2));
    wait_ok(&mut child, Duration::from_secs(60));
}

/// Every blocking cell call in its four forms, while another process holds the cell's lock:
/// `try_x` is `WouldBlock`, `x_timeout` (zero included) and `x_deadline` are `Timeout`, and
/// the blocking forms started while it is held succeed once that process releases it.
#[test]
fn blocking_calls_have_the_four_forms_across_processes() {
    use std::time::Instant;
    const T: Duration = Duration::from_secs(60);
    const SHORT: Duration = Duration::from_millis(5);
    let past = || Instant::now() - Duration::from_millis(1);
    fn wb<X>(r: shmkit::Result<X>) {
        assert!(matches!(r, Err(Error::WouldBlock)), "expected WouldBlock");
    }
    fn to<X>(r: shmkit::Result<X>) {
        assert!(matches!(r, Err(Error::Timeout)), "expected Timeout");
    }
    fn lwb<G>(r: Result<G, LockError<G>>) {
        assert!(
            matches!(r, Err(LockError::WouldBlock)),
            "expected WouldBlock"
        );
    }
    fn lto<G>(r: Result<G, LockError<G>>) {
        assert!(matches!(r, Err(LockError::Timeout)), "expected Timeout");
    }
    let (vn, an, fv, fa) = (
        unique_name("cell-forms-v"),
        unique_name("cell-forms-a"),
        unique_name("cell-forms-fv"),
        unique_name("cell-forms-fa"),
    );
    let _c = Cleanup::new(&[&vn, &an, &fv, &fa]);
    let v = Value::<i32>::create(&vn, 7).unwrap();
    let av = AnyValue::open(&vn).unwrap();
    let a = Array::<i32>::create_from(&an, &[1, 2, 3]).unwrap();
    let aa = AnyArray::open(&an).unwrap();
    let flags: Vec<Value<u8>> = [&fv, &fa]
        .iter()
        .map(|n| {
            Value::<u8>::options()
                .cell_mode(CellMode::Atomic)
                .create(n, 0)
                .unwrap()
        })
        .collect();

    // Free: every form succeeds, a passed deadline and a zero timeout poll once.
    assert_eq!(v.try_get().unwrap(), 7);
    assert_eq!(v.get_deadline(past()).unwrap(), 7);
    assert_eq!(v.get_timeout(Duration::ZERO).unwrap(), 7);
    v.try_set(8).unwrap();
    assert_eq!(v.try_update(|x| x + 1).unwrap(), 9);
    assert_eq!(av.try_get_bytes().unwrap(), 9i32.to_le_bytes());
    av.set_bytes_deadline(&7i32.to_le_bytes(), past()).unwrap();
    assert_eq!(a.try_get(1).unwrap(), 2);
    a.try_set(1, 2).unwrap();
    assert_eq!(a.try_read(0..3).unwrap(), [1, 2, 3]);
    a.write_deadline(0, &[1], past()).unwrap();
    assert_eq!(a.try_with_lock(|xs| xs.len()).unwrap(), 3);
    drop(a.try_lock().unwrap());
    assert_eq!(aa.try_read_bytes(2, 1).unwrap(), 3i32.to_le_bytes());
    aa.try_write_bytes(2, &3i32.to_le_bytes()).unwrap();
    assert_eq!(av.try_get_text().unwrap(), "7");
    av.set_text_deadline("7", past()).unwrap();
    assert_eq!(aa.get_text_timeout(2, Duration::ZERO).unwrap(), "3");
    aa.try_set_text(2, "3").unwrap();

    let mut holders = vec![
        spawn_child("hold-until-released", &[&vn, &fv, "value"]),
        spawn_child("hold-until-released", &[&an, &fa, "array"]),
    ];
    for h in &mut holders {
        Lines::of(h).expect("holding");
    }
    // Held elsewhere: WouldBlock for try_, Timeout for the timed forms.
    wb(v.try_get());
    to(v.get_timeout(SHORT));
    to(v.get_timeout(Duration::ZERO));
    to(v.get_deadline(past()));
    wb(v.try_set(1));
    to(v.set_timeout(1, SHORT));
    to(v.set_deadline(1, past()));
    wb(v.try_update(|x| x));
    to(v.update_timeout(|x| x, SHORT));
    to(v.update_deadline(|x| x, past()));
    lwb(v.try_lock());
    lto(v.lock_timeout(SHORT));
    lto(v.lock_deadline(past()));
    wb(av.try_get_bytes());
    to(av.get_bytes_timeout(SHORT));
    to(av.get_bytes_deadline(past()));
    wb(av.try_set_bytes(&[0; 4]));
    to(av.set_bytes_timeout(&[0; 4], SHORT));
    to(av.set_bytes_deadline(&[0; 4], past()));
    lwb(av.try_lock());
    lto(av.lock_timeout(SHORT));
    lto(av.lock_deadline(past()));
    wb(a.try_get(0));
    to(a.get_timeout(0, SHORT));
    to(a.get_deadline(0, past()));
    wb(a.try_set(0, 1));
    to(a.set_timeout(0, 1, SHORT));
    to(a.set_deadline(0, 1, past()));
    wb(a.try_read(0..3));
    to(a.read_timeout(0..3, SHORT));
    to(a.read_deadline(0..3, past()));
    let mut out = [0i32; 2];
    wb(a.try_read_into(1, &mut out));
    to(a.read_into_timeout(1, &mut out, SHORT));
    to(a.read_into_deadline(1, &mut out, past()));
    wb(a.try_write(0, &[1, 2]));
    to(a.write_timeout(0, &[1, 2], SHORT));
    to(a.write_deadline(0, &[1, 2], past()));
    wb(a.try_with_lock(|_| ()));
    to(a.with_lock_timeout(|_| (), SHORT));
    to(a.with_lock_deadline(|_| (), past()));
    lwb(a.try_lock());
    lto(a.lock_timeout(SHORT));
    lto(a.lock_deadline(past()));
    wb(aa.try_read_bytes(0, 3));
    to(aa.read_bytes_timeout(0, 3, SHORT));
    to(aa.read_bytes_deadline(0, 3, past()));
    wb(aa.try_write_bytes(0, &[0; 4]));
    to(aa.write_bytes_timeout(0, &[0; 4], SHORT));
    to(aa.write_bytes_deadline(0, &[0; 4], past()));
    lwb(aa.try_lock());
    lto(aa.lock_timeout(SHORT));
    lto(aa.lock_deadline(past()));
    wb(av.try_get_text());
    to(av.get_text_timeout(SHORT));
    to(av.get_text_deadline(past()));
    wb(av.try_set_text("1"));
    to(av.set_text_timeout("1", SHORT));
    to(av.set_text_deadline("1", past()));
    wb(aa.try_get_text(0));
    to(aa.get_text_timeout(0, SHORT));
    to(aa.get_text_deadline(0, past()));
    wb(aa.try_set_text(0, "1"));
    to(aa.set_text_timeout(0, "1", SHORT));
    to(aa.set_text_deadline(0, "1", past()));

    // The blocking forms, started while the lock is held, succeed after the release.
    std::thread::scope(|s| {
        let waiters = vec![
            s.spawn(|| v.update(|x| x + 1).map(drop)),
            s.spawn(|| v.update_timeout(|x| x + 1, T).map(drop)),
            s.spawn(|| v.update_deadline(|x| x + 1, Instant::now() + T).map(drop)),
            s.spawn(|| av.get_bytes_timeout(T).map(drop)),
            s.spawn(|| a.with_lock(|xs| xs[0] += 1)),
            s.spawn(|| a.with_lock_timeout(|xs| xs[0] += 1, T)),
            s.spawn(|| a.with_lock_deadline(|xs| xs[0] += 1, Instant::now() + T)),
            s.spawn(|| aa.read_bytes_deadline(0, 3, Instant::now() + T).map(drop)),
            s.spawn(|| av.get_text_timeout(T).map(drop)),
            s.spawn(|| aa.get_text_deadline(1, Instant::now() + T).map(drop)),
            s.spawn(|| {
                a.lock_timeout(T)
                    .map(drop)
                    .map_err(|e| e.without_guard().into())
            }),
        ];
        std::thread::sleep(SHORT);
        for f in &flags {
            f.store(1).unwrap();
        }
        for w in waiters {
            w.join().unwrap().unwrap();
        }
    });
    for h in &mut holders {
        wait_ok(h, T);
    }
    assert_eq!(v.get().unwrap(), 10);
    assert_eq!(a.get(0).unwrap(), 4);
}

/// `?` cells are typed as `CBool` (any nonzero byte is true), in every mode, and the untyped
/// handle agrees; `c` and `u` stay untyped.
#[test]
fn bool_cells_are_typed_as_cbool() {
    use shmkit::cell::CBool;
    let (n1, n2) = (unique_name("cell-bool"), unique_name("cell-bool-a"));
    let _c = Cleanup::new(&[&n1, &n2]);
    let v = Value::<CBool>::create(&n1, true.into()).unwrap();
    let any = AnyValue::open(&n1).unwrap();
    assert_eq!(any.typecode(), Typecode::from_char('?'));
    assert_eq!(any.get_text().unwrap(), "true");
    any.set_bytes(&[2]).unwrap(); // a peer's odd byte: still true, never UB
    assert!(v.get().unwrap().get());
    v.set(false.into()).unwrap();
    assert_eq!(any.get_text().unwrap(), "false");
    let a = Array::<CBool>::options()
        .cell_mode(CellMode::Atomic)
        .create(&n2, 3)
        .unwrap();
    a.store(1, true.into()).unwrap();
    assert_eq!(a.swap(1, CBool(0)).unwrap(), CBool(1));
    assert!(a.fetch_add(0, CBool(1)).is_err()); // not an integer typecode
    assert!(Value::<u8>::open(&n1).is_err()); // '?' is not 'B'
}

/// Messages name a kind with the right article: "an array", "an event" (they read "a array",
/// "a event").
#[test]
fn kind_mismatches_read_with_the_right_article() {
    let (a, v, ev) = (
        unique_name("cell-art-a"),
        unique_name("cell-art-v"),
        unique_name("cell-art-e"),
    );
    let _c = Cleanup::new(&[&a, &v, &ev]);
    let _arr = Array::<f64>::create(&a, 4).unwrap();
    let _val = Value::<i64>::create(&v, 0).unwrap();
    let _event = shmkit::sync::Event::create(&ev).unwrap();

    // An array's name opened as a value (typed, untyped), and the other way round.
    let e = Value::<i64>::open(&a).unwrap_err().to_string();
    assert!(e.contains("holds Array<d>[4], asked for Value<q>"), "{e}");
    let e = AnyValue::open(&a).unwrap_err().to_string();
    assert!(e.contains("holds Array<d>[4], asked for a value"), "{e}");
    let e = AnyArray::open(&v).unwrap_err().to_string();
    assert!(e.contains("holds Value<q>, asked for an array"), "{e}");
    // An event's name opened as a value or an array.
    let e = Value::<i64>::open(&ev).unwrap_err().to_string();
    assert!(e.contains("holds an event, asked for Value<q>"), "{e}");
    let e = AnyValue::open(&ev).unwrap_err().to_string();
    assert!(e.contains("holds an event, asked for a value"), "{e}");
    let e = AnyArray::open(&ev).unwrap_err().to_string();
    assert!(e.contains("holds an event, asked for an array"), "{e}");
    // A call that needs another mode names it with its article.
    let e = Value::<i64>::open(&v)
        .unwrap()
        .fetch_add(1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs an atomic cell"), "{e}");
    // And an array's name opened as an event (the generic kind check).
    let e = shmkit::sync::Event::open(&a).unwrap_err().to_string();
    assert!(e.contains("holds an array, not an event"), "{e}");
}

/// Review of the session's diff: `AnyGuard::read_bytes(first, count)` sized its buffer as
/// `count * elem_size` before any range check: 2^63 two-byte elements (the product wraps to
/// 0) read as `Ok(vec![])` in release (a multiply-overflow panic in debug), and a large count
/// asked the allocator for gigabytes before being refused. And a reversed range read as empty.
#[test]
fn reads_past_the_array_or_reversed_are_refused_before_any_allocation() {
    let name = unique_name("readbytes-range");
    let _c = Cleanup::new(&[&name]);
    let h = Typecode::from_char('h').unwrap(); // 2-byte elements
    let a = AnyArray::options()
        .cell_mode(CellMode::Locked)
        .create(&name, h, 4, None)
        .unwrap();
    assert!(a.read_bytes(0, usize::MAX / 2 + 1).is_err());
    let g = a.lock().unwrap();
    for count in [usize::MAX / 2 + 1, 1 << 40, 5] {
        let r = g.read_bytes(0, count);
        assert!(
            matches!(&r, Err(Error::InvalidArgument { what, .. }) if what.contains("out of range")),
            "{count} elements of a 4-element array: {:?}",
            r.map(|v| v.len())
        );
    }
    drop(g);
    let typed = unique_name("reversed-range");
    let _c2 = Cleanup::new(&[&typed]);
    let t = Array::<i32>::options().create(&typed, 4).unwrap();
    #[allow(clippy::reversed_empty_ranges)]
    let r = t.read(2..1);
    assert!(
        matches!(&r, Err(Error::InvalidArgument { what, .. }) if what.contains("reversed")),
        "{r:?}"
    );
    #[allow(clippy::reversed_empty_ranges)]
    let r = t.lock().unwrap().read(2..1);
    assert!(
        matches!(&r, Err(Error::InvalidArgument { what, .. }) if what.contains("reversed")),
        "{r:?}"
    );
    assert_eq!(t.read(1..1).unwrap(), Vec::<i32>::new());
}

/// The untyped open-or-create (what Python's `Value(...)`/`Array(...)` constructors call)
/// opens what it created, for every typecode: the element check compared the typecode's Rust
/// type name, and 'c', '?' and 'u' have none, so the second `Array('c', ..., name=n)` was
/// refused ("holds Array<c>[5], asked for Array<c>[5]").
#[test]
fn untyped_open_or_create_opens_its_own_cell_for_every_typecode() {
    for t in Typecode::all() {
        let (nv, na) = (unique_name("ooc-any-v"), unique_name("ooc-any-a"));
        let _c = Cleanup::new(&[&nv, &na]);
        let v = AnyValue::options().open_or_create(&nv, t, None).unwrap();
        let v2 = AnyValue::options().open_or_create(&nv, t, None);
        assert!(v2.is_ok(), "Value<{t}>: {:?}", v2.err());
        let a = AnyArray::options().open_or_create(&na, t, 5, None).unwrap();
        let a2 = AnyArray::options().open_or_create(&na, t, 5, None);
        assert!(a2.is_ok(), "Array<{t}>: {:?}", a2.err());
        assert!(AnyArray::options().open_or_create(&na, t, 6, None).is_err());
        drop((v, a));
    }
}
