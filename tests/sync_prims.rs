#![cfg(not(loom))]
//! Cross-process tests of Semaphore, Condition, Event and Barrier (separate processes: this
//! test binary re-executed as children), and the timeout outcome of every blocking call.

mod common;

use common::Lines;

use shmkit::sync::{
    Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
    SemaphoreError, WaitTimeoutError,
};
use shmkit::{Segment, Timeout};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "sem-worker" => {
            let sem = Semaphore::open(&args[0]).unwrap();
            let data = Segment::open(&args[1]).unwrap();
            let (inside, max) = (data.atomic_u64(0).unwrap(), data.atomic_u64(8).unwrap());
            for i in 0..300 {
                sem.acquire_timeout(T).unwrap();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                assert!(now <= 3, "{now} inside a Semaphore(3)");
                if i % 8 == 0 {
                    std::thread::yield_now();
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                sem.release().unwrap();
            }
        }
        "producer" | "consumer" => {
            let cond = Condition::open(&args[0]).unwrap();
            let data = Segment::open(&args[1]).unwrap();
            let n: u64 = args[2].parse().unwrap();
            let (head, tail) = (data.atomic_u64(0).unwrap(), data.atomic_u64(8).unwrap());
            let slot = |i: u64| data.atomic_u64(16 + 8 * (i % 4)).unwrap();
            let mut sum = 0;
            for i in 1..=n {
                let g = cond.lock_timeout(T).unwrap();
                // Relaxed: head, tail and the slots are protected by the condition's lock.
                let g = if role == "producer" {
                    cond.wait_for_timeout(
                        g,
                        || tail.load(Ordering::Relaxed) - head.load(Ordering::Relaxed) < 4,
                        T,
                    )
                } else {
                    cond.wait_for_timeout(
                        g,
                        || tail.load(Ordering::Relaxed) > head.load(Ordering::Relaxed),
                        T,
                    )
                }
                .unwrap_or_else(|e| panic!("{role} at item {i}: {e}"));
                if role == "producer" {
                    let t = tail.load(Ordering::Relaxed);
                    slot(t).store(i, Ordering::Relaxed);
                    tail.store(t + 1, Ordering::Relaxed);
                } else {
                    let h = head.load(Ordering::Relaxed);
                    let v = slot(h).load(Ordering::Relaxed);
                    assert_eq!(v, i, "items arrive in order");
                    sum += v;
                    head.store(h + 1, Ordering::Relaxed);
                }
                cond.notify_all(&g);
            }
            if role == "consumer" {
                assert_eq!(sum, n * (n + 1) / 2);
            }
        }
        "barrier-gens" => {
            let b = Barrier::open(&args[0]).unwrap();
            let data = Segment::open(&args[1]).unwrap();
            let me: u64 = args[2].parse().unwrap();
            let gens: u64 = args[3].parse().unwrap();
            let progress = |i: u64| data.atomic_u64(8 * i).unwrap();
            let mut sum = 0;
            for g in 1..=gens {
                progress(me).store(g, Ordering::Relaxed);
                sum += u64::from(b.wait_timeout(T).unwrap());
                // Every party's pre-barrier write of generation g is visible after it.
                for j in 0..3 {
                    assert!(
                        progress(j).load(Ordering::Relaxed) >= g,
                        "party {j} behind at generation {g}"
                    );
                }
            }
            data.atomic_u64(32 + 8 * me)
                .unwrap()
                .store(sum, Ordering::SeqCst);
        }
        // Arrive and wait with no timeout: only a kill ends this process.
        "barrier-victim" => {
            let b = Barrier::open(&args[0]).unwrap();
            let r = b.wait();
            common::report(&format!("victim returned {r:?}"));
        }
        // Pass the generation the victim arrived in (no timeout: only the others' arrivals
        // decide it), then wait in the next one with a short timeout, which no arrival ends.
        "barrier-survivor" => {
            let b = Barrier::open(&args[0]).unwrap();
            let describe = |r: Result<u32, BarrierError>| match r {
                Ok(i) => format!("ok {i}"),
                Err(BarrierError::Timeout) => "timeout".to_string(),
                Err(BarrierError::Broken) => "broken".to_string(),
                Err(e) => format!("{e:?}"),
            };
            common::report(&describe(b.wait()));
            common::report(&describe(b.wait_timeout(Duration::from_millis(200))));
        }
        // `gens` generations with an action: the action (run by the last arrival) checks
        // that every party has arrived, and counts and stamps the generation; every party
        // sees the stamp once released.
        "barrier-action-gens" => {
            let b = Barrier::open(&args[0]).unwrap();
            let data = Segment::open(&args[1]).unwrap();
            let me: u64 = args[2].parse().unwrap();
            let gens: u64 = args[3].parse().unwrap();
            let progress = |i: u64| data.atomic_u64(8 * i).unwrap();
            let (runs, stamp) = (data.atomic_u64(24).unwrap(), data.atomic_u64(32).unwrap());
            for g in 1..=gens {
                progress(me).store(g, Ordering::Relaxed);
                b.wait_with_timeout(
                    || {
                        for j in 0..3 {
                            assert!(progress(j).load(Ordering::Relaxed) >= g, "{j} not in {g}");
                        }
                        runs.fetch_add(1, Ordering::Relaxed);
                        stamp.store(g, Ordering::Relaxed);
                        Ok::<(), BarrierError>(())
                    },
                    T,
                )
                .unwrap();
                assert!(
                    stamp.load(Ordering::Relaxed) >= g,
                    "released before the action"
                );
            }
        }
        // Wait (args[1] "none": no timeout, else milliseconds) and report the outcome.
        "barrier-wait-report" => {
            let b = Barrier::open(&args[0]).unwrap();
            let r = match args[1].as_str() {
                "none" => b.wait(),
                ms => b.wait_timeout(Duration::from_millis(ms.parse().unwrap())),
            };
            common::report(&match r {
                Ok(i) => format!("ok {i}"),
                Err(BarrierError::Timeout) => "timeout".to_string(),
                Err(BarrierError::Broken) => "broken".to_string(),
                Err(e) => format!("{e:?}"),
            });
        }
        // Arrive with an action that fails (args[1] "err"), panics ("panic") or never ends
        // ("hang": reports "in action" and sleeps until killed).
        "barrier-action" => {
            let b = Barrier::open(&args[0]).unwrap();
            let r = b.wait_with(|| match args[1].as_str() {
                "err" => Err(BarrierError::Corrupt("the action failed".into())),
                "panic" => panic!("the action panicked"),
                _ => {
                    common::report("in action");
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            });
            common::report(&format!("returned {r:?}"));
        }
        "event-echo" => {
            let ping = Event::open(&args[0]).unwrap();
            let pong = Event::open(&args[1]).unwrap();
            for _ in 0..200 {
                ping.wait_timeout(T).expect("ping never came");
                ping.clear();
                pong.set();
            }
        }
        "sem-raw-sleeper" => {
            // A waiter that is woken and dies before it takes the permit: it sleeps on the
            // value word as `acquire` does (a shared futex wait for value 0), and exits when
            // the release's one wake-up reaches it.
            let sem = Semaphore::open(&args[0]).unwrap();
            let state: &shmkit::sync::SemaphoreState = &sem;
            // SPEC §6.4.1: `value`, the futex word, is at offset 0.
            let word = (state as *const shmkit::sync::SemaphoreState).cast::<u32>();
            common::report("sleeping");
            // SAFETY: `word` is the live semaphore's 4-aligned value word (mapped while `sem`
            // lives); FUTEX_WAIT only reads it.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    word,
                    libc::FUTEX_WAIT,
                    0u32,
                    std::ptr::null::<libc::timespec>(),
                )
            };
            common::report(&format!("woken {r}"));
        }
        "sem-acquire-before-deadline" => {
            let sem = Semaphore::open(&args[0]).unwrap();
            common::report("acquiring");
            let deadline = Instant::now() + Duration::from_secs(30);
            sem.acquire_deadline(deadline).unwrap();
            common::report(if Instant::now() < deadline {
                "acquired before the deadline"
            } else {
                "acquired at the deadline"
            });
        }
        other => panic!("unknown role {other}"),
    });
}

/// Wait until every thread of `child` sleeps in the kernel (a parked waiter).
fn wait_parked(child: &std::process::Child, what: &str) {
    let deadline = Instant::now() + T;
    while !all_threads_sleeping(child.id()) {
        assert!(Instant::now() < deadline, "{what} never parked");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A release wakes one sleeper. When the one it wakes dies before taking the permit (killed
/// right after its wake-up), the wake-up dies with it: another sleeper must still find the
/// free permit, at the end of its current slice, not sleep on until its deadline (an untimed
/// `acquire`: for ever). The dying waiter is a process that waits on the value word and exits
/// once woken, queued before the survivor (the kernel wakes waiters of equal priority in
/// order). SPEC §6.4.3.
#[test]
fn a_semaphore_release_whose_woken_waiter_dies_still_reaches_another_waiter() {
    let name = common::unique_name("sem-lost-wake");
    let _c = common::Cleanup::new(&[&name]);
    let sem = Semaphore::create(&name, 0).unwrap();
    let mut victim = common::spawn_child("sem-raw-sleeper", &[&name]);
    let mut victim_lines = Lines::of(&mut victim);
    victim_lines.expect("sleeping");
    wait_parked(&victim, "the first waiter");
    let mut survivor = common::spawn_child("sem-acquire-before-deadline", &[&name]);
    let mut survivor_lines = Lines::of(&mut survivor);
    survivor_lines.expect("acquiring");
    wait_parked(&survivor, "the second waiter");
    sem.release().unwrap();
    victim_lines.expect("woken 0");
    assert!(common::wait_exit(&mut victim, T).success());
    survivor_lines.expect("acquired before the deadline");
    assert!(common::wait_exit(&mut survivor, T).success());
    assert_eq!(sem.value(), 0);
}

#[test]
fn semaphore_of_3_admits_at_most_3_of_6_processes() {
    let (sn, dn) = (
        common::unique_name("sem6"),
        common::unique_name("sem6-data"),
    );
    let _c = common::Cleanup::new(&[&sn, &dn]);
    let sem = Semaphore::create(&sn, 3).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let kids: Vec<_> = (0..6)
        .map(|_| common::spawn_child("sem-worker", &[&sn, &dn]))
        .collect();
    for mut k in kids {
        assert!(common::wait_exit(&mut k, Duration::from_secs(120)).success());
    }
    let max = data.atomic_u64(8).unwrap().load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "max inside was {max}");
    assert_eq!(sem.value(), 3, "every permit came back");
}

#[test]
fn condition_producer_consumer_across_processes() {
    let (cn, dn) = (
        common::unique_name("cond-pc"),
        common::unique_name("cond-pc-data"),
    );
    let _c = common::Cleanup::new(&[&cn, &dn]);
    let _cond = Condition::create(&cn).unwrap();
    let _data = Segment::create(&dn, 64).unwrap();
    let n = "3000";
    let mut p = common::spawn_child("producer", &[&cn, &dn, n]);
    let mut c = common::spawn_child("consumer", &[&cn, &dn, n]);
    assert!(common::wait_exit(&mut p, Duration::from_secs(120)).success());
    assert!(common::wait_exit(&mut c, Duration::from_secs(120)).success());
}

#[test]
fn barrier_3_processes_1000_generations() {
    let (bn, dn) = (
        common::unique_name("barrier3"),
        common::unique_name("barrier3-data"),
    );
    let _c = common::Cleanup::new(&[&bn, &dn]);
    let b = Barrier::create(&bn, 3).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|i| common::spawn_child("barrier-gens", &[&bn, &dn, &i.to_string(), "1000"]))
        .collect();
    for mut k in kids {
        assert!(common::wait_exit(&mut k, Duration::from_secs(300)).success());
    }
    let total: u64 = (0..3)
        .map(|i| data.atomic_u64(32 + 8 * i).unwrap().load(Ordering::SeqCst))
        .sum();
    assert_eq!(total, 1000 * 3, "each generation hands out indices 0, 1, 2");
    assert_eq!(b.generation(), 1000); // mod 2^16
    assert!(!b.is_broken());
}

/// Whether every thread of process `pid` is asleep in the kernel (state `S`): for the barrier
/// victim, which makes no blocking system call but the futex wait once it has arrived, that
/// means it is parked in the barrier.
fn all_threads_sleeping(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            return false;
        };
        // The state follows the parenthesised command name, which may hold spaces.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if state != Some('S') {
            return false;
        }
        any = true;
    }
    any
}

#[test]
fn barrier_party_killed_mid_wait_leaves_the_others_broken_after_their_timeout() {
    // SPEC §6.7.3, "after arriving, while waiting": the dead party's arrival stays counted, so
    // its generation still completes when the others arrive; the next one never fills, and
    // the first survivor whose timeout passes breaks the barrier. Nothing here depends on
    // timing: the victim is killed only once it is known to be parked, and the survivors'
    // first wait has no timeout.
    let bn = common::unique_name("barrier-kill");
    let _c = common::Cleanup::new(&[&bn]);
    let b = Barrier::create(&bn, 3).unwrap();
    let mut victim = common::spawn_child("barrier-victim", &[&bn]);
    let deadline = Instant::now() + T;
    while !(b.n_waiting() == 1 && all_threads_sleeping(victim.id())) {
        assert!(
            Instant::now() < deadline,
            "the victim never parked in the barrier"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    common::kill9(&mut victim);
    let mut out = String::new();
    std::io::Read::read_to_string(victim.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        !out.contains("victim returned"),
        "the victim left the barrier: {out}"
    );
    // The kill itself breaks nothing: the dead party is still counted as arrived.
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 1);
    assert_eq!(b.generation(), 0);

    let mut survivors: Vec<_> = (0..2)
        .map(|_| common::spawn_child("barrier-survivor", &[&bn]))
        .collect();
    let mut reports = Vec::new();
    for k in &mut survivors {
        let st = common::wait_exit(k, Duration::from_secs(60));
        assert!(st.success(), "a survivor failed: {st}");
        let mut lines = Lines::of(k);
        let first = lines.next_line().expect("first outcome");
        let second = lines.next_line().expect("second outcome");
        reports.push((first, second));
    }
    let mut first: Vec<&str> = reports.iter().map(|r| r.0.as_str()).collect();
    let mut second: Vec<&str> = reports.iter().map(|r| r.1.as_str()).collect();
    first.sort();
    second.sort();
    // The victim arrived first (index 0); the survivors completed its generation.
    assert_eq!(first, ["ok 1", "ok 2"], "{reports:?}");
    // In the next generation exactly one survivor's timeout broke the barrier; the other
    // was woken by the break (or arrived after it).
    assert_eq!(second, ["broken", "timeout"], "{reports:?}");
    assert!(b.is_broken());
    assert_eq!(b.generation(), 1);
    b.reset();
    assert!(!b.is_broken());
}

#[test]
fn barrier_action_3_processes_200_generations() {
    let (bn, dn) = (
        common::unique_name("barrier-act"),
        common::unique_name("barrier-act-data"),
    );
    let _c = common::Cleanup::new(&[&bn, &dn]);
    let b = Barrier::create(&bn, 3).unwrap();
    let data = Segment::create(&dn, 64).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|i| common::spawn_child("barrier-action-gens", &[&bn, &dn, &i.to_string(), "200"]))
        .collect();
    for mut k in kids {
        assert!(common::wait_exit(&mut k, Duration::from_secs(300)).success());
    }
    // One action per generation (the last arrival's), never more.
    assert_eq!(data.atomic_u64(24).unwrap().load(Ordering::SeqCst), 200);
    assert_eq!(b.generation(), 200);
    assert!(!b.is_broken());
}

/// Spawn a party that waits (`timeout`: "none" or milliseconds) in `bn`, and return once it
/// is parked there (alone: `n_waiting` 1).
fn parked_waiter(b: &Barrier, bn: &str, timeout: &str) -> std::process::Child {
    let w = common::spawn_child("barrier-wait-report", &[bn, timeout]);
    let deadline = Instant::now() + T;
    while !(b.n_waiting() == 1 && all_threads_sleeping(w.id())) {
        assert!(Instant::now() < deadline, "the waiter never parked");
        std::thread::sleep(Duration::from_millis(1));
    }
    w
}

#[test]
fn barrier_action_that_fails_or_panics_breaks_the_barrier_for_every_party() {
    for how in ["err", "panic"] {
        let bn = common::unique_name("barrier-act-fail");
        let _c = common::Cleanup::new(&[&bn]);
        let b = Barrier::create(&bn, 2).unwrap();
        let mut w = parked_waiter(&b, &bn, "none");
        let mut last = common::spawn_child("barrier-action", &[&bn, how]);
        let st = common::wait_exit(&mut last, Duration::from_secs(60));
        let out = Lines::of(&mut last).next_line();
        if how == "err" {
            assert!(st.success());
            let out = out.unwrap();
            assert!(out.contains("the action failed"), "{out}");
        } else {
            assert!(!st.success(), "the panic must go on unwinding");
        }
        assert!(common::wait_exit(&mut w, Duration::from_secs(60)).success());
        assert_eq!(
            Lines::of(&mut w).next_line().as_deref(),
            Some("broken"),
            "{how}"
        );
        assert!(b.is_broken());
        assert_eq!(b.generation(), 0, "the generation never opened");
    }
}

#[test]
fn barrier_party_killed_mid_action_leaves_the_barrier_broken_not_wedged() {
    // SPEC §6.7.3, "as the last arrival, while running the action": the generation stays
    // full; a party that gives up breaks it, the waiters get Broken, reset repairs it.
    let bn = common::unique_name("barrier-act-kill");
    let _c = common::Cleanup::new(&[&bn]);
    let b = Barrier::create(&bn, 2).unwrap();
    let mut w = parked_waiter(&b, &bn, "none");
    let mut victim = common::spawn_child("barrier-action", &[&bn, "hang"]);
    let mut lines = Lines::of(&mut victim);
    lines.expect("in action");
    common::kill9(&mut victim);
    assert_eq!(lines.next_line(), None, "the victim left its action");
    assert_eq!(
        (b.n_waiting(), b.is_broken(), b.generation()),
        (2, false, 0)
    );
    // A newcomer waits for the full generation to drain; its timeout breaks it.
    assert_eq!(
        b.wait_timeout(Duration::from_millis(1)),
        Err(BarrierError::Timeout)
    );
    assert!(common::wait_exit(&mut w, Duration::from_secs(60)).success());
    assert_eq!(Lines::of(&mut w).next_line().as_deref(), Some("broken"));
    assert!(b.is_broken());
    b.reset();
    assert_eq!((b.n_waiting(), b.is_broken()), (0, false));
    let mut w = parked_waiter(&b, &bn, "none");
    assert_eq!(b.wait_with(|| Ok::<(), BarrierError>(())), Ok(1));
    assert!(common::wait_exit(&mut w, Duration::from_secs(60)).success());
    assert_eq!(Lines::of(&mut w).next_line().as_deref(), Some("ok 0"));
}

#[test]
fn event_ping_pong_across_processes() {
    let (a, b) = (
        common::unique_name("ev-ping"),
        common::unique_name("ev-pong"),
    );
    let _c = common::Cleanup::new(&[&a, &b]);
    let ping = Event::create(&a).unwrap();
    let pong = Event::create(&b).unwrap();
    let mut child = common::spawn_child("event-echo", &[&a, &b]);
    for i in 0..200 {
        ping.set();
        pong.wait_timeout(T)
            .unwrap_or_else(|e| panic!("no pong {i}: {e}"));
        pong.clear();
    }
    assert!(common::wait_exit(&mut child, Duration::from_secs(60)).success());
}

#[test]
fn every_timed_call_times_out_when_nothing_happens() {
    let names: Vec<String> = (0..7)
        .map(|i| common::unique_name(&format!("timeouts{i}")))
        .collect();
    let _c = common::Cleanup::new(&names);
    let short = Duration::from_millis(20);

    let lock = Lock::create(&names[0]).unwrap();
    let rlock = RLock::create(&names[1]).unwrap();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (lock, rlock) = (&lock, &rlock);
        s.spawn(move || {
            let _g = lock.lock().unwrap();
            let _r = rlock.lock().unwrap();
            tx.send(()).unwrap();
            done_rx.recv_timeout(T).unwrap();
        });
        rx.recv_timeout(T).unwrap();
        assert!(matches!(lock.lock_timeout(short), Err(LockError::Timeout)));
        assert!(matches!(lock.try_lock(), Err(LockError::WouldBlock)));
        assert!(matches!(rlock.lock_timeout(short), Err(LockError::Timeout)));
        done_tx.send(()).unwrap();
    });

    let sem = Semaphore::create(&names[2], 0).unwrap();
    assert_eq!(sem.acquire_timeout(short), Err(SemaphoreError::Timeout));
    assert_eq!(
        sem.acquire_timeout(Duration::ZERO),
        Err(SemaphoreError::Timeout)
    );
    let bsem = BoundedSemaphore::create(&names[3], 0).unwrap();
    assert_eq!(bsem.acquire_timeout(short), Err(SemaphoreError::Timeout));

    let cond = Condition::create(&names[4]).unwrap();
    let g = cond.lock().unwrap();
    let g = match cond.wait_timeout(g, short) {
        Err(WaitTimeoutError::Timeout(g)) => g,
        other => panic!("expected a timeout, got {other:?}"),
    };
    let g = match cond.wait_for_timeout(g, || false, short) {
        Err(WaitTimeoutError::Timeout(g)) => g,
        other => panic!("expected a timeout, got {other:?}"),
    };
    drop(g);

    let ev = Event::create(&names[5]).unwrap();
    assert_eq!(ev.wait_timeout(short), Err(Timeout));
    assert_eq!(ev.wait_timeout(Duration::ZERO), Err(Timeout));

    let bar = Barrier::create(&names[6], 2).unwrap();
    assert_eq!(bar.wait_timeout(short), Err(BarrierError::Timeout));
    assert!(bar.is_broken());
    assert_eq!(bar.wait_timeout(short), Err(BarrierError::Broken));
}

/// Review finding (syncadv): a wait made of several calls (the Python binding's 50 ms
/// slices) read the word afresh in each, so a `set` that a `clear` followed between two
/// slices was lost and `wait()` slept until a later set. One ticket for all the calls.
#[test]
fn event_pulse_between_two_wait_calls_releases_a_ticketed_waiter() {
    let ev = shmkit::sync::EventState::new();
    let t = ev.ticket();
    assert!(!t.was_set());
    assert_eq!(
        ev.wait_since_deadline(t, Instant::now() + Duration::from_millis(5)),
        Err(shmkit::Timeout)
    );
    ev.set();
    ev.clear();
    // The pulse came after the ticket: released, though the flag is clear again.
    assert_eq!(ev.wait_since_deadline(t, Instant::now()), Ok(()));
    assert_eq!(ev.try_wait_since(t), Ok(()));
    // A ticket taken after the pulse waits for the next set.
    let t2 = ev.ticket();
    assert_eq!(ev.try_wait_since(t2), Err(shmkit::WouldBlock));
    assert_eq!(
        ev.wait_since_timeout(t2, Duration::from_millis(1)),
        Err(shmkit::Timeout)
    );
    assert_eq!(
        ev.wait_since_deadline(t2, Instant::now()),
        Err(shmkit::Timeout)
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            ev.set();
            ev.clear();
        });
        ev.wait_since(t2); // returns once the pulse came
    });
    assert_eq!(ev.try_wait_since(t2), Ok(()));
}

/// Review finding (syncadv): a waiter whose 20 ms slice ended returned as notified whenever
/// any notify had come since it began, so `notify(1)` released every parked waiter within a
/// slice. Now each notify grants wake-ups to as many waiters as it names, and only those
/// return notified; the others time out.
#[test]
fn notify_n_releases_n_of_the_parked_waiters() {
    use shmkit::sync::ConditionState;
    use std::sync::atomic::AtomicU32;
    for (n, all) in [(1u32, false), (2, false), (0, false), (0, true)] {
        let c = ConditionState::new();
        let parked = AtomicU32::new(0);
        let notified = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let g = c.lock().unwrap();
                    parked.fetch_add(1, Ordering::SeqCst);
                    match c.wait_timeout(g, Duration::from_millis(1500)) {
                        Ok(_g) => {
                            notified.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => assert!(e.is_timeout(), "{e:?}"),
                    }
                });
            }
            // Each waiter counts itself with the lock held and releases it only in `wait`:
            // once all four have counted and the lock is ours, all four wait.
            let until = Instant::now() + Duration::from_secs(30);
            let g = loop {
                let g = c.lock().unwrap();
                if parked.load(Ordering::SeqCst) == 4 || Instant::now() > until {
                    break g;
                }
                drop(g);
                std::thread::sleep(Duration::from_millis(1));
            };
            assert_eq!(c.waiters(), 4);
            if all {
                c.notify_all(&g);
            } else {
                c.notify(&g, n);
            }
            drop(g);
        });
        let want = if all { 4 } else { n };
        assert_eq!(
            notified.load(Ordering::SeqCst),
            want,
            "notify({n}) (all: {all}) released {} of 4 parked waiters",
            notified.load(Ordering::SeqCst)
        );
        assert_eq!((c.waiters(), c.granted()), (0, 0));
    }
}

/// The grant of a waiter that times out as it is notified goes with it: a later waiter is
/// not left without the wake-up a later notify grants it.
#[test]
fn a_timed_out_waiters_grant_does_not_starve_the_next_waiter() {
    use shmkit::sync::ConditionState;
    let c = ConditionState::new();
    let g = c.lock().unwrap();
    let mut t = c.release_for_wait(g);
    let g = c.lock().unwrap();
    c.notify(&g, 1); // granted to the ticket's waiter, which never takes it
    drop(g);
    assert_eq!((c.waiters(), c.granted()), (1, 1));
    drop(t); // times out: the grant goes with it
    assert_eq!((c.waiters(), c.granted()), (0, 0));
    // The next waiter is notified by the next notify.
    std::thread::scope(|s| {
        let g = c.lock().unwrap();
        s.spawn(|| {
            let g = c.lock().unwrap(); // once the waiter has released it
            c.notify(&g, 1);
        });
        let r = c.wait_timeout(g, Duration::from_secs(30));
        assert!(r.is_ok(), "{r:?}");
    });
    // A ticket that took its notify stays notified.
    let g = c.lock().unwrap();
    t = c.release_for_wait(g);
    let g = c.lock().unwrap();
    c.notify(&g, 1);
    drop(g);
    assert_eq!(c.try_wait_released(&mut t), Ok(()));
    assert!(t.is_notified());
    assert_eq!(c.try_wait_released(&mut t), Ok(()));
    drop(t);
    assert_eq!((c.waiters(), c.granted()), (0, 0));
}

/// Review finding (syncadv): a barrier of 0 (or too many) parties was reported as corrupt
/// shared memory. It is a bad argument, as the named barrier's `create` says.
#[test]
fn barrier_of_bad_parties_is_a_bad_argument() {
    use shmkit::sync::{BarrierError, BarrierState};
    for n in [0, u32::MAX] {
        let e = BarrierState::new(n).unwrap_err();
        assert!(matches!(e, BarrierError::Parties(m) if m == n), "{e:?}");
        assert!(!e.is_broken());
        assert!(e.to_string().contains("parties"), "{e}");
        let e: shmkit::Error = e.into();
        assert!(matches!(e, shmkit::Error::InvalidArgument { .. }), "{e:?}");
    }
    assert!(BarrierState::new(1).is_ok());
}

/// Review finding (condgrant), and the three tests after it: a waiter that times out as it
/// is notified left its grant counted, and a waiter that began after that notify (not
/// allowed to take it) then blocked every later notify: each granted nothing (the counts
/// said every waiter had a grant) and moved nothing. Waiters are now counted by notify
/// generation: only those waiting at a notify may take, and count for, its grants.
#[test]
fn a_waiter_that_began_after_a_notify_is_released_by_the_next_notify() {
    use shmkit::sync::ConditionState;
    let c = ConditionState::new();
    let g = c.lock().unwrap();
    let t1 = c.release_for_wait(g); // W1
    let g = c.lock().unwrap();
    c.notify(&g, 1); // N1, for W1
    let mut t3 = c.release_for_wait(g); // W3 begins after N1
    assert_eq!((c.waiters(), c.granted()), (2, 1));
    drop(t1); // W1 timed out without taking its grant
    let g = c.lock().unwrap();
    c.notify(&g, 1); // N2, while W3 waits
    drop(g);
    assert_eq!(
        c.try_wait_released(&mut t3),
        Ok(()),
        "notify(1) made while W3 waited released nobody: (waiters, granted) = {:?}",
        (c.waiters(), c.granted())
    );
    drop(t3);
    assert_eq!((c.waiters(), c.granted()), (0, 0));
}

#[test]
fn notify_all_wakes_a_waiter_left_behind_a_stale_grant() {
    use shmkit::sync::ConditionState;
    let c = ConditionState::new();
    let g = c.lock().unwrap();
    let t1 = c.release_for_wait(g);
    let g = c.lock().unwrap();
    c.notify(&g, 1);
    drop(g);
    std::thread::scope(|s| {
        let g = c.lock().unwrap();
        s.spawn(|| {
            let g = c.lock().unwrap(); // once W3 has released it (it waits)
            drop(t1); // W1 timed out without taking its grant
            c.notify_all(&g);
        });
        let r = c.wait_timeout(g, Duration::from_secs(30));
        assert!(
            r.is_ok(),
            "W3 waited through a notify_all: {r:?}, (waiters, granted) = {:?}",
            (c.waiters(), c.granted())
        );
    });
}

#[test]
fn notify_one_releases_at_most_one_of_two_live_waiters() {
    use shmkit::sync::ConditionState;
    let c = ConditionState::new();
    let g = c.lock().unwrap();
    let t1 = c.release_for_wait(g); // W1
    let g = c.lock().unwrap();
    c.notify(&g, 1); // N1, for W1
    let mut t3 = c.release_for_wait(g); // W3, after N1
    drop(t1); // W1 timed out as it was notified: N1 goes with it
    let g = c.lock().unwrap();
    let mut t4 = c.release_for_wait(g); // W4
    let g = c.lock().unwrap();
    c.notify(&g, 1); // N2: W3 and W4 wait; release one of them
    drop(g);
    let released = [c.try_wait_released(&mut t3), c.try_wait_released(&mut t4)]
        .iter()
        .filter(|r| r.is_ok())
        .count();
    drop((t3, t4));
    assert_eq!(released, 1, "notify(1) released {released} live waiters");
    assert_eq!((c.waiters(), c.granted()), (0, 0));
}

/// SPEC §6.6.3: a notifier killed after its grant, before its `seq` bump: the waiter takes
/// the grant at its next look (a slice end), without a later notify. The dead notifier's
/// word is written directly (SPEC §6.6.1: `grants` at offset 40; `granted` bits 0..14,
/// `old` 14..28, `new` 28..42, generation 42..64).
#[test]
fn a_grant_of_a_notifier_killed_before_its_seq_bump_is_taken() {
    use shmkit::sync::ConditionState;
    use std::sync::atomic::AtomicU64;
    let c = ConditionState::new();
    let g = c.lock().unwrap();
    let mut t = c.release_for_wait(g); // W: new 1, generation 0
                                       // SAFETY: ConditionState is repr(C), 48 bytes, its grants word an 8-aligned AtomicU64 at
                                       // offset 40 (SPEC §6.6.1); this test only reads and writes it whole.
    let grants = unsafe {
        &*(std::ptr::from_ref::<ConditionState>(&c)
            .cast::<u8>()
            .add(40)
            .cast::<AtomicU64>())
    };
    assert_eq!(grants.load(Ordering::SeqCst), 1 << 28);
    // The dead notifier's CAS: W became old (generation 1) and was granted a wake-up.
    grants.store((1 << 42) | (1 << 14) | 1, Ordering::SeqCst);
    assert_eq!(c.try_wait_released(&mut t), Ok(()));
    drop(t);
    assert_eq!((c.waiters(), c.granted()), (0, 0));
    // A notify_all with nobody waiting grants nothing.
    let g = c.lock().unwrap();
    c.notify_all(&g);
    drop(g);
    assert_eq!((c.waiters(), c.granted()), (0, 0));
}
