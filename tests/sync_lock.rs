#![cfg(not(loom))]
//! Cross-process tests of the robust `Lock` and `RLock`: separate processes (this test binary
//! re-executed as a child), named objects, every wait bounded by a 10 s timeout.

mod common;

use shmkit::sync::{Lock, LockError, RLock};
use shmkit::{Liveness, Segment};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "count" => {
            let lock = Lock::open(&args[0]).unwrap();
            let data = Segment::open(&args[1]).unwrap();
            let n: u64 = args[2].parse().unwrap();
            let c = data.atomic_u64(0).unwrap();
            for _ in 0..n {
                let _g = lock.lock_timeout(T).unwrap();
                // A plain load + store, not an atomic add: only mutual exclusion keeps it exact.
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        }
        "hold" => {
            // Take the lock, announce it, then mutate the protected pair forever (until killed).
            let lock = Lock::open(&args[0]).unwrap();
            let data = Segment::open(&args[1]).unwrap();
            let (a, b, held) = (
                data.atomic_u64(0).unwrap(),
                data.atomic_u64(8).unwrap(),
                data.atomic_u64(16).unwrap(),
            );
            let g = lock.lock_timeout(T).unwrap();
            held.store(std::process::id() as u64, Ordering::Release);
            loop {
                a.store(a.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                for _ in 0..50 {
                    std::hint::spin_loop();
                }
                b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                if a.load(Ordering::Relaxed) == u64::MAX {
                    drop(g);
                    panic!("the holder was never killed");
                }
            }
        }
        "hold-rlock" => {
            let r = RLock::open(&args[0]).unwrap();
            let data = Segment::open(&args[1]).unwrap();
            r.lock_timeout(T).unwrap().leak();
            r.lock_timeout(T).unwrap().leak();
            data.atomic_u64(16).unwrap().store(1, Ordering::Release);
            std::thread::sleep(Duration::from_secs(60));
            panic!("the rlock holder was never killed");
        }
        "expect-not-recoverable" => {
            let lock = Lock::open(&args[0]).unwrap();
            let r = lock.lock_timeout(T).map(drop);
            assert!(matches!(r, Err(LockError::NotRecoverable)), "got {r:?}");
        }
        other => panic!("unknown role {other}"),
    });
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[test]
fn two_processes_count_exactly_under_a_named_lock() {
    let (ln, dn) = (
        common::unique_name("lock-count"),
        common::unique_name("lock-count-data"),
    );
    let _c = common::Cleanup::new(&[&ln, &dn]);
    let _lock = Lock::create(&ln).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let n = 100_000u64;
    let kids: Vec<_> = (0..2)
        .map(|_| common::spawn_child("count", &[&ln, &dn, &n.to_string()]))
        .collect();
    for mut k in kids {
        assert!(common::wait_exit(&mut k, Duration::from_secs(120)).success());
    }
    assert_eq!(data.atomic_u64(0).unwrap().load(Ordering::SeqCst), 2 * n);
}

/// A tiny xorshift, so the test needs no `rand`.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn holder_killed_at_random_points_200_rounds_next_gets_owner_died() {
    let (ln, dn) = (
        common::unique_name("lock-kill"),
        common::unique_name("lock-kill-data"),
    );
    let _c = common::Cleanup::new(&[&ln, &dn]);
    let lock = Lock::create(&ln).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let (a, b, held) = (
        data.atomic_u64(0).unwrap(),
        data.atomic_u64(8).unwrap(),
        data.atomic_u64(16).unwrap(),
    );
    let mut seed = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut torn = 0;
    for round in 0..200 {
        held.store(0, Ordering::SeqCst);
        let mut child = common::spawn_child("hold", &[&ln, &dn]);
        let pid = child.id();
        wait_for("the holder to take the lock", || {
            held.load(Ordering::Acquire) == u64::from(pid)
        });
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 3000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        match lock.lock_timeout(T) {
            Err(LockError::OwnerDied(mut g)) => {
                let dead = g.previous_owner().unwrap();
                assert_eq!(dead.pid, pid, "round {round}");
                assert_eq!(dead.liveness(), Liveness::Dead);
                // Repair the protected state: the victim may have died between a and b.
                let (va, vb) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
                assert!(va == vb || va == vb + 1, "round {round}: a={va} b={vb}");
                torn += u32::from(va != vb);
                b.store(va, Ordering::Relaxed);
                g.make_consistent().unwrap();
            }
            other => panic!(
                "round {round}: expected OwnerDied, got {:?}",
                other.map(drop)
            ),
        }
        assert!(!lock.is_locked());
    }
    // Works normally afterwards.
    drop(lock.lock_timeout(T).unwrap());
    eprintln!("{torn} of 200 victims died mid-update");
    // The victim spends most of each iteration between its two stores, so a test whose kills
    // never landed mid-update did not test recovery of a half-done update at all.
    assert!(
        torn > 0,
        "no kill landed between the two stores in 200 rounds"
    );
}

#[test]
fn unrepaired_owner_death_is_not_recoverable_for_every_process() {
    let (ln, dn) = (
        common::unique_name("lock-nr"),
        common::unique_name("lock-nr-data"),
    );
    let _c = common::Cleanup::new(&[&ln, &dn]);
    let lock = Lock::create(&ln).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let held = data.atomic_u64(16).unwrap();
    let mut child = common::spawn_child("hold", &[&ln, &dn]);
    let pid = u64::from(child.id());
    wait_for("the holder", || held.load(Ordering::Acquire) == pid);
    child.kill().unwrap();
    child.wait().unwrap();
    let g = lock
        .lock_timeout(T)
        .unwrap_err()
        .into_guard()
        .expect("OwnerDied");
    drop(g); // without make_consistent
    assert!(lock.is_not_recoverable());
    assert!(matches!(
        lock.lock_timeout(T),
        Err(LockError::NotRecoverable)
    ));
    let mut other = common::spawn_child("expect-not-recoverable", &[&ln]);
    assert!(common::wait_exit(&mut other, Duration::from_secs(30)).success());
}

#[test]
fn rlock_owner_and_depth_are_visible_and_survive_a_kill() {
    let (ln, dn) = (
        common::unique_name("rlock-kill"),
        common::unique_name("rlock-kill-data"),
    );
    let _c = common::Cleanup::new(&[&ln, &dn]);
    let r = RLock::create(&ln).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let flag = data.atomic_u64(16).unwrap();
    let mut child = common::spawn_child("hold-rlock", &[&ln, &dn]);
    wait_for("the rlock holder", || flag.load(Ordering::Acquire) == 1);
    let owner = r.owner().unwrap();
    assert_eq!((owner.pid, r.depth()), (child.id(), 2));
    assert_eq!(owner.liveness(), Liveness::Alive);
    assert!(matches!(
        r.lock_timeout(Duration::from_millis(10)),
        Err(LockError::Timeout)
    ));
    assert!(matches!(r.release(), Err(LockError::NotOwner)));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.owner().unwrap().liveness(), Liveness::Dead);
    let mut g = r
        .lock_timeout(T)
        .unwrap_err()
        .into_guard()
        .expect("OwnerDied");
    assert_eq!(r.depth(), 1);
    g.make_consistent().unwrap();
    drop(g);
    assert_eq!((r.depth(), r.owner()), (0, None));
}

// Runs the `shmkit` binary, which feature `cli` builds.
#[cfg(feature = "cli")]
#[test]
fn shmkit_info_shows_the_lock_holder_and_whether_it_lives() {
    let (ln, dn) = (
        common::unique_name("lock-info"),
        common::unique_name("lock-info-data"),
    );
    let _c = common::Cleanup::new(&[&ln, &dn]);
    let _lock = Lock::create(&ln).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let held = data.atomic_u64(16).unwrap();
    let mut child = common::spawn_child("hold", &[&ln, &dn]);
    let pid = child.id();
    wait_for("the holder", || {
        held.load(Ordering::Acquire) == u64::from(pid)
    });
    let info = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shmkit"))
            .args(["info", "--json", name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["state"].clone()
    };
    let s = info(&ln);
    assert_eq!(
        (s["primitive"].as_str(), s["locked"].as_bool()),
        (Some("lock"), Some(true))
    );
    assert_eq!(
        (s["owner"]["pid"].as_u64(), s["owner"]["liveness"].as_str()),
        (Some(u64::from(pid)), Some("alive"))
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(info(&ln)["owner"]["liveness"].as_str(), Some("dead"));
}

/// Review finding: anyone who can read a process's liveness file can take a *read* lock on it
/// (here: one that waits for the holder to die and is then granted). That must not keep the
/// dead holder alive: only its own write lock counts.
#[test]
fn a_read_lock_on_a_dead_holders_liveness_file_does_not_keep_it_alive() {
    use std::os::fd::AsRawFd;
    let (ln, dn) = (
        common::unique_name("lock-rdpin"),
        common::unique_name("lock-rdpin-data"),
    );
    let _c = common::Cleanup::new(&[&ln, &dn]);
    let lock = Lock::create(&ln).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let held = data.atomic_u64(16).unwrap();
    let mut child = common::spawn_child("hold", &[&ln, &dn]);
    let pid = child.id();
    wait_for("the holder", || {
        held.load(Ordering::Acquire) == u64::from(pid)
    });
    let token = lock.owner().unwrap().token;
    let file = std::fs::File::open(format!("/dev/shm/.shmkit/live-{token:016x}")).unwrap();
    let pinner = std::thread::spawn(move || {
        // SAFETY: `flock` is plain data; all-zero is valid.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_RDLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: valid descriptor and flock; blocks until the holder's write lock is gone.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &fl) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        file // keep the read lock held
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let _pinned = pinner.join().unwrap();
    assert_eq!(lock.owner().unwrap().liveness(), Liveness::Dead);
    let r = lock.lock_timeout(T);
    match r {
        Err(LockError::OwnerDied(mut g)) => g.make_consistent().unwrap(),
        other => panic!("expected OwnerDied, got {:?}", other.map(drop)),
    };
}

/// Issue 8: with glibc's robust mutex, a guard leaked (`mem::forget`) before its lock's
/// segment was unmapped stayed on the thread's robust list, and the thread's next robust lock
/// made glibc write a pointer into whatever was mapped at that address by then (8 bytes of an
/// unrelated segment's payload were overwritten). The lock keeps no pointers, so safe code
/// cannot make it write anywhere: the other segment's bytes stay exactly as written.
#[test]
fn a_leaked_guard_of_an_unmapped_lock_writes_nowhere_else() {
    // Rounds in which the unrelated segment was mapped where the leaked lock had been: the
    // case that corrupted memory before. The test must see it happen to test anything.
    let mut reused = 0;
    for round in 0..20 {
        let (a, b, c) = (
            common::unique_name("lock-leak-a"),
            common::unique_name("lock-leak-b"),
            common::unique_name("lock-leak-c"),
        );
        let _cleanup = common::Cleanup::new(&[&a, &b, &c]);
        let leaked = Lock::create(&a).unwrap();
        std::mem::forget(leaked.lock().unwrap());
        let page = |p: usize| p & !4095;
        let lock_page = page(&*leaked as *const shmkit::sync::LockState as usize);
        drop(leaked); // unmapped while "held"
        Segment::unlink(&a).unwrap();
        // Whatever is mapped next (a one-page object, like the lock's): known bytes.
        let s = Segment::create(&b, 4096 - 128).unwrap();
        reused += usize::from(page(s.as_ptr() as usize) == lock_page);
        s.write_at(0, &[0xab; 4096 - 128]).unwrap();
        // More lock traffic in the same thread.
        let other = Lock::create(&c).unwrap();
        for _ in 0..3 {
            drop(other.lock_timeout(T).unwrap());
        }
        let mut back = vec![0u8; 4096 - 128];
        s.read_at(0, &mut back).unwrap();
        assert!(
            back.iter().all(|&x| x == 0xab),
            "round {round}: bytes of an unrelated segment changed"
        );
    }
    assert!(
        reused > 0,
        "no round mapped the unrelated segment at the leaked lock's page: nothing was tested"
    );
}

/// The owner word of a heap lock, as a peer sharing it could write it (offset 8, SPEC §6.2.1).
fn owner_word(state: &shmkit::sync::LockState) -> &std::sync::atomic::AtomicU64 {
    // SAFETY: LockState is repr(C), 32 bytes, 8-aligned, all atomics; `owner` is at offset 8.
    unsafe {
        &*((state as *const shmkit::sync::LockState as *const u8).add(8)
            as *const std::sync::atomic::AtomicU64)
    }
}

/// SPEC §6.2.1: a word with no token but other bits is a dead holder. A reader that takes
/// such a lock over and hands it back unrepaired (`release_unrepaired`) left it held by this
/// process for ever (an early return for the unknown dead token, the guard already in a
/// `ManuallyDrop`): nobody could take it again, not even to repair it. Now the next taker
/// gets `OwnerDied`. (From the sync review.)
#[test]
fn release_unrepaired_after_a_tokenless_word_frees_the_lock() {
    let state = shmkit::sync::LockState::new();
    owner_word(&state).store(1, Ordering::SeqCst); // WAITERS alone: no token
    match state.try_lock() {
        Err(LockError::OwnerDied(g)) => g.release_unrepaired(),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    let next = std::thread::scope(|s| {
        s.spawn(|| match state.try_lock() {
            Ok(_) => "Ok".to_string(),
            Err(LockError::OwnerDied(g)) => {
                g.release_unrepaired();
                "OwnerDied".to_string()
            }
            Err(e) => format!("{e:?}"),
        })
        .join()
        .unwrap()
    });
    assert_eq!(
        next,
        "OwnerDied",
        "word {:#x}",
        owner_word(&state).load(Ordering::SeqCst)
    );
}

/// A token no process holds (no liveness file: `Dead` for the liveness query, SPEC §2.3).
const DEAD: u64 = 0x1d1e_5eed_0bad_f00d & ((1 << 61) - 1);

/// A hold taken over from a dead owner and kept Python-style (`leak`, then `adopt`): the
/// adopted guard said it needed no repair and its `release_unrepaired` was a plain drop, which
/// made the lock not recoverable for every process. Now it still needs the repair, and
/// releasing it unrepaired leaves the next taker `OwnerDied`. (From the sync review.)
#[test]
fn an_adopted_owner_died_guard_released_unrepaired_stays_recoverable() {
    let state = shmkit::sync::LockState::new();
    owner_word(&state).store(DEAD << 3, Ordering::SeqCst);
    match state.try_lock() {
        Err(LockError::OwnerDied(g)) => g.leak(),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    let g = state.adopt().unwrap();
    assert!(g.needs_repair());
    g.release_unrepaired();
    assert!(!state.is_not_recoverable());
    match state.try_lock() {
        Err(LockError::OwnerDied(mut g)) => g.make_consistent().unwrap(),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(state.try_lock().is_ok());
}
