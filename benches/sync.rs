//! Sync primitive benchmarks (a plain `harness = false` binary): `cargo bench --bench sync`.
//!
//! 1. Uncontended `Lock` lock+unlock in one thread (batches of 10 000; per-op ns).
//! 2. Cross-process, two processes (this binary re-executed as the peer):
//!    - round trip: raw futex ping-pong (the floor: store + `FUTEX_WAKE`, `FUTEX_WAIT` on one
//!      shared word) against an `Event` ping-pong (set / wait / clear on two named events);
//!    - one-way handoff to a *sleeping* peer: raw futex wake (the floor) against a `Lock`
//!      handoff (the holder unlocks, the peer blocked in `lock()` gets it). Timestamps are
//!      `CLOCK_MONOTONIC`, which both processes share.
//!
//! Every figure is reported with p50 / p99 / p99.9 and, for the cross-process ones, as a ratio
//! to the floor measured in the same run.

use shmkit::sync::{Event, Lock, LockState};
use shmkit::Segment;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROLE: &str = "SHMKIT_BENCH_ROLE";
const RT_SAMPLES: usize = 20_000;
const HANDOFF_SAMPLES: usize = 3_000;
const T: Duration = Duration::from_secs(10);

fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn futex_wait(w: &AtomicU32, expected: u32) {
    let _ = rustix::thread::futex::wait(w, rustix::thread::futex::Flags::empty(), expected, None);
}

fn futex_wake(w: &AtomicU32) {
    let _ = rustix::thread::futex::wake(w, rustix::thread::futex::Flags::empty(), 1);
}

struct Stats {
    p50: f64,
    p99: f64,
    p999: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
    }
}

fn report(what: &str, unit: &str, s: &Stats, floor: Option<&Stats>) {
    print!(
        "{what:<44} p50 {:>9.1} {unit}  p99 {:>9.1} {unit}  p99.9 {:>9.1} {unit}",
        s.p50, s.p99, s.p999
    );
    if let Some(f) = floor {
        print!(
            "   ratio to floor: p50 {:.2}x  p99 {:.2}x",
            s.p50 / f.p50,
            s.p99 / f.p99
        );
    }
    println!();
}

fn spawn(role: &str, names: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env("SHMKIT_BENCH_NAMES", names.join(","))
        .spawn()
        .expect("spawn peer")
}

/// Shared words: 0 ping-pong word (u32), 8 "peer ready" (u64), 16 t0 (u64), 24 sample count
/// (u64), 64.. samples (u64 each).
fn data_seg(name: &str, create: bool) -> Segment {
    let size = 64 + 8 * (RT_SAMPLES.max(HANDOFF_SAMPLES) as u64 + 1);
    if create {
        Segment::options()
            .unlink_on_drop(true)
            .create(name, size)
            .unwrap()
    } else {
        Segment::open(name).unwrap()
    }
}

fn word(seg: &Segment) -> &AtomicU32 {
    // SAFETY: bytes 0..8 of this segment are accessed by this process only as this u32.
    unsafe { seg.atomic_u32(0).unwrap() }
}
fn u64_at(seg: &Segment, i: u64) -> &AtomicU64 {
    seg.atomic_u64(i).unwrap()
}

fn peer(role: &str) {
    let names: Vec<String> = std::env::var("SHMKIT_BENCH_NAMES")
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let seg = data_seg(&names[0], false);
    match role {
        "futex-rt" => {
            let w = word(&seg);
            for _ in 0..RT_SAMPLES {
                while w.load(Ordering::Acquire) != 1 {
                    futex_wait(w, 2);
                }
                w.store(2, Ordering::Release);
                futex_wake(w);
            }
        }
        "event-rt" => {
            let ping = Event::open(&names[1]).unwrap();
            let pong = Event::open(&names[2]).unwrap();
            for _ in 0..RT_SAMPLES {
                ping.wait_timeout(T).unwrap();
                ping.clear();
                pong.set();
            }
        }
        "futex-handoff" | "lock-handoff" => {
            let lock = (role == "lock-handoff").then(|| Lock::open(&names[1]).unwrap());
            let (w, ready, t0) = (word(&seg), u64_at(&seg, 8), u64_at(&seg, 16));
            for i in 0..HANDOFF_SAMPLES as u64 {
                ready.store(i + 1, Ordering::Release);
                let t1 = match &lock {
                    Some(l) => {
                        let g = l.lock_timeout(T).unwrap();
                        let t1 = now_ns();
                        drop(g);
                        t1
                    }
                    None => {
                        while w.load(Ordering::Acquire) != (i as u32 + 1) {
                            futex_wait(w, i as u32);
                        }
                        now_ns()
                    }
                };
                let dt = t1 - t0.load(Ordering::Acquire);
                u64_at(&seg, 64 + 8 * i).store(dt.max(1), Ordering::Release);
                // Wait until the parent holds the lock again (it bumps `ready`'s partner).
                while u64_at(&seg, 24).load(Ordering::Acquire) != i + 1 {
                    std::hint::spin_loop();
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn uncontended() -> Stats {
    let l = LockState::new();
    let batch = 10_000;
    let mut v = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        for _ in 0..batch {
            drop(std::hint::black_box(l.lock().unwrap()));
        }
        v.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    stats(v)
}

/// The floor for `uncontended`: a bare glibc robust, process-shared, error-checking pthread
/// mutex, locked and unlocked directly.
fn raw_pthread() -> Stats {
    let m = Box::into_raw(Box::new(
        std::mem::MaybeUninit::<libc::pthread_mutex_t>::uninit(),
    ))
    .cast();
    // SAFETY: fresh heap memory; standard pthread attribute calls; the mutex is used only here
    // and freed at the end.
    unsafe {
        let mut a = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        libc::pthread_mutexattr_init(a.as_mut_ptr());
        libc::pthread_mutexattr_setpshared(a.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(a.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
        libc::pthread_mutexattr_settype(a.as_mut_ptr(), libc::PTHREAD_MUTEX_ERRORCHECK);
        assert_eq!(libc::pthread_mutex_init(m, a.as_ptr()), 0);
    }
    let batch = 10_000;
    let mut v = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        for _ in 0..batch {
            // SAFETY: initialised above.
            unsafe {
                libc::pthread_mutex_lock(std::hint::black_box(m));
                libc::pthread_mutex_unlock(m);
            }
        }
        v.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    // SAFETY: allocated above, unlocked, no longer used.
    drop(unsafe { Box::from_raw(m.cast::<std::mem::MaybeUninit<libc::pthread_mutex_t>>()) });
    stats(v)
}

fn futex_rt(base: &str) -> Stats {
    let seg = data_seg(&format!("{base}-d"), true);
    let w = word(&seg);
    let mut child = spawn("futex-rt", &[seg.name()]);
    let mut v = Vec::with_capacity(RT_SAMPLES);
    for _ in 0..RT_SAMPLES {
        let t = Instant::now();
        w.store(1, Ordering::Release);
        futex_wake(w);
        while w.load(Ordering::Acquire) != 2 {
            futex_wait(w, 1);
        }
        v.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    assert!(child.wait().unwrap().success());
    stats(v)
}

fn event_rt(base: &str) -> Stats {
    let seg = data_seg(&format!("{base}-d"), true);
    let ping = Event::options()
        .unlink_on_drop(true)
        .create(&format!("{base}-ping"))
        .unwrap();
    let pong = Event::options()
        .unlink_on_drop(true)
        .create(&format!("{base}-pong"))
        .unwrap();
    let mut child = spawn("event-rt", &[seg.name(), ping.name(), pong.name()]);
    let mut v = Vec::with_capacity(RT_SAMPLES);
    for _ in 0..RT_SAMPLES {
        let t = Instant::now();
        ping.set();
        pong.wait_timeout(T).unwrap();
        pong.clear();
        v.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    assert!(child.wait().unwrap().success());
    stats(v)
}

/// One-way handoff to a peer that is asleep (we wait 200 µs after it announces itself).
fn handoff(base: &str, with_lock: bool) -> Stats {
    let seg = data_seg(&format!("{base}-d"), true);
    let lock = with_lock.then(|| {
        Lock::options()
            .unlink_on_drop(true)
            .create(&format!("{base}-lock"))
            .unwrap()
    });
    let (w, ready, t0, again) = (
        word(&seg),
        u64_at(&seg, 8),
        u64_at(&seg, 16),
        u64_at(&seg, 24),
    );
    let mut guard = lock.as_ref().map(|l| l.lock().unwrap());
    let role = if with_lock {
        "lock-handoff"
    } else {
        "futex-handoff"
    };
    let names: Vec<&str> = match &lock {
        Some(l) => vec![seg.name(), l.name()],
        None => vec![seg.name()],
    };
    let mut child = spawn(role, &names);
    for i in 0..HANDOFF_SAMPLES as u64 {
        let deadline = Instant::now() + T;
        while ready.load(Ordering::Acquire) != i + 1 {
            assert!(Instant::now() < deadline, "peer stalled");
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_micros(200)); // let it fall asleep
        t0.store(now_ns(), Ordering::Release);
        match guard.take() {
            Some(g) => drop(g),
            None => {
                w.store(i as u32 + 1, Ordering::Release);
                futex_wake(w);
            }
        }
        // Wait for the peer's sample (it has had and released the lock), take the lock back,
        // then let the peer go on.
        let deadline = Instant::now() + T;
        while u64_at(&seg, 64 + 8 * i).load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "peer stalled");
            std::hint::spin_loop();
        }
        if let Some(l) = &lock {
            guard = Some(l.lock_timeout(T).unwrap());
        }
        again.store(i + 1, Ordering::Release);
    }
    drop(guard);
    assert!(child.wait().unwrap().success());
    let v = (0..HANDOFF_SAMPLES as u64)
        .map(|i| u64_at(&seg, 64 + 8 * i).load(Ordering::Relaxed) as f64 / 1000.0);
    stats(v.collect())
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        peer(&role);
        return;
    }
    let base = format!("bench-sync-{}", std::process::id());
    println!("shmkit sync benchmarks (2 processes for the cross-process figures)\n");
    let raw = raw_pthread();
    report("floor: robust pthread lock+unlock", "ns", &raw, None);
    let u = uncontended();
    report("Lock lock+unlock, uncontended", "ns", &u, Some(&raw));
    let floor_rt = futex_rt(&format!("{base}-frt"));
    report(
        "floor: raw futex ping-pong round trip",
        "us",
        &floor_rt,
        None,
    );
    let ev = event_rt(&format!("{base}-ert"));
    report(
        "Event set/wait/clear round trip",
        "us",
        &ev,
        Some(&floor_rt),
    );
    let floor_h = handoff(&format!("{base}-fh"), false);
    report(
        "floor: raw futex wake of a sleeper, one way",
        "us",
        &floor_h,
        None,
    );
    let lh = handoff(&format!("{base}-lh"), true);
    report(
        "Lock handoff to a sleeping waiter, one way",
        "us",
        &lh,
        Some(&floor_h),
    );
}
