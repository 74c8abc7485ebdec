#![cfg(not(loom))]
//! The one blocking-call shape: every sync primitive's `try_x` / `x` / `x_timeout` /
//! `x_deadline` forms succeed when they can, report the one timeout (or would-block) outcome
//! when they cannot, poll once when the deadline has already passed, and their errors convert
//! into `shmkit::Error` and `Box<dyn Error>` with `?`.
//!
//! Timing-dependent assertions only check what cannot change: a wait that is woken succeeds
//! (with a 10 s budget), a wait nobody wakes times out.

use std::cell::Cell;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmkit::sync::{
    BarrierError, BarrierState, ConditionState, EventState, LockError, LockState, RLockState,
    SemaphoreError, SemaphoreState, WaitQueue, WaitTimeoutError,
};
use shmkit::{Timeout, WouldBlock};

const T: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(5);

fn past() -> Instant {
    Instant::now() - Duration::from_millis(1)
}

/// Run `f` while another thread holds what `take` returns (a lock guard).
fn while_held_elsewhere<G>(take: impl Fn() -> G + Sync, f: impl FnOnce()) {
    std::thread::scope(|s| {
        let (held_tx, held_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let take = &take;
        s.spawn(move || {
            let _g = take();
            held_tx.send(()).unwrap();
            done_rx.recv_timeout(T).unwrap();
        });
        held_rx.recv_timeout(T).unwrap();
        f();
        done_tx.send(()).unwrap();
    });
}

#[test]
fn lock_forms() {
    let l = LockState::new();
    drop(l.try_lock().unwrap());
    drop(l.lock().unwrap());
    drop(l.lock_timeout(T).unwrap());
    drop(l.lock_timeout(Duration::ZERO).unwrap());
    drop(l.lock_deadline(Instant::now() + T).unwrap());
    // A passed deadline still polls once: a free lock is taken.
    drop(l.lock_deadline(past()).unwrap());
    while_held_elsewhere(
        || l.lock().unwrap(),
        || {
            assert!(matches!(l.try_lock(), Err(LockError::WouldBlock)));
            assert!(matches!(l.lock_timeout(SHORT), Err(LockError::Timeout)));
            assert!(matches!(
                l.lock_timeout(Duration::ZERO),
                Err(LockError::Timeout)
            ));
            assert!(matches!(l.lock_deadline(past()), Err(LockError::Timeout)));
            assert!(l
                .lock_deadline(Instant::now() + SHORT)
                .unwrap_err()
                .is_timeout());
        },
    );
    // Woken by the release: the blocking forms succeed.
    for form in 0..3 {
        let g = l.lock().unwrap();
        std::thread::scope(|s| {
            let w = s.spawn(|| match form {
                0 => l.lock().map(drop).map_err(LockError::without_guard),
                1 => l
                    .lock_timeout(T)
                    .map(drop)
                    .map_err(LockError::without_guard),
                _ => l
                    .lock_deadline(Instant::now() + T)
                    .map(drop)
                    .map_err(LockError::without_guard),
            });
            std::thread::sleep(SHORT);
            drop(g);
            w.join().unwrap().unwrap();
        });
    }
}

#[test]
fn rlock_forms() {
    let r = RLockState::new();
    let a = r.try_lock().unwrap();
    let b = r.lock_deadline(past()).unwrap(); // already ours: polls, succeeds
    let c = r.lock_timeout(Duration::ZERO).unwrap();
    assert_eq!(r.depth(), 3);
    drop((c, b, a));
    drop(r.lock_deadline(Instant::now() + T).unwrap());
    while_held_elsewhere(
        || r.lock().unwrap(),
        || {
            assert!(matches!(r.try_lock(), Err(LockError::WouldBlock)));
            assert!(matches!(r.lock_timeout(SHORT), Err(LockError::Timeout)));
            assert!(matches!(r.lock_deadline(past()), Err(LockError::Timeout)));
        },
    );
    assert_eq!(r.depth(), 0);
}

#[test]
fn semaphore_forms() {
    for s in [
        SemaphoreState::new(0).unwrap(),
        SemaphoreState::bounded(0).unwrap(),
    ] {
        assert_eq!(s.try_acquire(), Err(SemaphoreError::WouldBlock));
        assert_eq!(s.acquire_timeout(SHORT), Err(SemaphoreError::Timeout));
        assert_eq!(
            s.acquire_timeout(Duration::ZERO),
            Err(SemaphoreError::Timeout)
        );
        assert_eq!(s.acquire_deadline(past()), Err(SemaphoreError::Timeout));
    }
    // A bounded semaphore at its maximum: the polling forms take its one permit.
    let b = SemaphoreState::bounded(1).unwrap();
    b.acquire_deadline(past()).unwrap(); // a free permit: taken by the one poll
    b.release().unwrap();
    b.acquire_timeout(Duration::ZERO).unwrap();
    b.release().unwrap();
    b.try_acquire().unwrap();
    // Woken by a release: the blocking forms succeed.
    let s = SemaphoreState::new(0).unwrap();
    for form in 0..3 {
        std::thread::scope(|sc| {
            let w = sc.spawn(|| match form {
                0 => s.acquire(),
                1 => s.acquire_timeout(T),
                _ => s.acquire_deadline(Instant::now() + T),
            });
            std::thread::sleep(SHORT);
            s.release().unwrap();
            w.join().unwrap().unwrap();
        });
    }
    assert_eq!(s.value(), 0);
}

#[test]
fn event_forms() {
    let ev = EventState::new();
    assert_eq!(ev.try_wait(), Err(WouldBlock));
    assert_eq!(ev.wait_timeout(SHORT), Err(Timeout));
    assert_eq!(ev.wait_timeout(Duration::ZERO), Err(Timeout));
    assert_eq!(ev.wait_deadline(past()), Err(Timeout));
    ev.set();
    ev.wait();
    assert_eq!(ev.try_wait(), Ok(()));
    assert_eq!(ev.wait_timeout(Duration::ZERO), Ok(()));
    assert_eq!(ev.wait_deadline(past()), Ok(()));
    for form in 0..3 {
        ev.clear();
        std::thread::scope(|s| {
            let w = s.spawn(|| match form {
                0 => {
                    ev.wait();
                    Ok(())
                }
                1 => ev.wait_timeout(T),
                _ => ev.wait_deadline(Instant::now() + T),
            });
            std::thread::sleep(SHORT);
            ev.set();
            w.join().unwrap().unwrap();
        });
    }
}

#[test]
fn condition_forms() {
    let c = ConditionState::new();
    drop(c.try_lock().unwrap());
    drop(c.lock_deadline(past()).unwrap());
    let g = c.lock_timeout(T).unwrap();
    // Timed waits nobody notifies hand the guard back in `Timeout`.
    let g = match c.wait_timeout(g, SHORT) {
        Err(WaitTimeoutError::Timeout(g)) => g,
        other => panic!("{other:?}"),
    };
    let g = c
        .wait_deadline(g, past())
        .unwrap_err()
        .into_guard()
        .unwrap();
    assert!(c.as_lock().is_locked());
    // wait_for with a passed deadline calls the predicate exactly once.
    let calls = Cell::new(0);
    let count = |v: bool| {
        calls.set(calls.get() + 1);
        v
    };
    let g = match c.wait_for_deadline(g, || count(false), past()) {
        Err(WaitTimeoutError::Timeout(g)) => g,
        other => panic!("{other:?}"),
    };
    assert_eq!(calls.get(), 1);
    let g = c.wait_for_deadline(g, || count(true), past()).unwrap();
    let g = c.wait_for_timeout(g, || true, Duration::ZERO).unwrap();
    let g = c.wait_for(g, || true).unwrap();
    assert_eq!(calls.get(), 2);
    let g = c.wait_for_timeout(g, || false, SHORT).unwrap_err();
    assert!(g.is_timeout());
    drop(g);
    // Notified waits return the guard in `Ok`.
    for form in 0..6 {
        let flag = std::sync::atomic::AtomicBool::new(false);
        let ready = || flag.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::scope(|s| {
            let g = c.lock().unwrap();
            s.spawn(|| {
                let g = c.lock().unwrap(); // only once the waiter has released it
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
                c.notify_all(&g);
            });
            let r = match form {
                0 => c.wait(g).map_err(LockError::without_guard).map(drop),
                1 => c.wait_timeout(g, T).map_err(|e| panic!("{e}")).map(drop),
                2 => c
                    .wait_deadline(g, Instant::now() + T)
                    .map_err(|e| panic!("{e}"))
                    .map(drop),
                3 => c
                    .wait_for(g, ready)
                    .map_err(LockError::without_guard)
                    .map(drop),
                4 => c
                    .wait_for_timeout(g, ready, T)
                    .map_err(|e| panic!("{e}"))
                    .map(drop),
                _ => c
                    .wait_for_deadline(g, ready, Instant::now() + T)
                    .map_err(|e| panic!("{e}"))
                    .map(drop),
            };
            r.unwrap();
        });
    }
}

#[test]
fn barrier_forms() {
    let one = BarrierState::new(1).unwrap();
    assert_eq!(one.wait(), Ok(0));
    assert_eq!(one.wait_timeout(Duration::ZERO), Ok(0));
    assert_eq!(one.wait_deadline(past()), Ok(0)); // the last arrival never waits
    let two = BarrierState::new(2).unwrap();
    assert_eq!(two.wait_deadline(past()), Err(BarrierError::Timeout));
    assert!(two.is_broken());
    assert_eq!(two.wait_timeout(SHORT), Err(BarrierError::Broken));
    two.reset();
    assert_eq!(two.wait_timeout(SHORT), Err(BarrierError::Timeout));
    two.reset();
    for form in 0..3 {
        let arrive = || match form {
            0 => two.wait(),
            1 => two.wait_timeout(T),
            _ => two.wait_deadline(Instant::now() + T),
        };
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(arrive);
            (arrive(), other.join().unwrap())
        });
        assert_eq!(a.unwrap() + b.unwrap(), 1);
    }
}

#[test]
fn wait_queue_forms() {
    let q = WaitQueue::new();
    let calls = Cell::new(0);
    let count = |v: bool| {
        calls.set(calls.get() + 1);
        v
    };
    assert_eq!(q.wait_until_deadline(|| count(false), past()), Err(Timeout));
    assert_eq!(calls.get(), 1, "a passed deadline polls once");
    assert_eq!(
        q.wait_until_timeout(|| count(false), Duration::ZERO),
        Err(Timeout)
    );
    assert_eq!(calls.get(), 2, "a zero timeout polls once");
    assert_eq!(q.wait_until_deadline(|| count(true), past()), Ok(()));
    assert_eq!(q.wait_until_timeout(|| false, SHORT), Err(Timeout));
    q.wait_until(|| true);
    let flag = std::sync::atomic::AtomicBool::new(false);
    let ready = || flag.load(std::sync::atomic::Ordering::Acquire);
    for form in 0..3 {
        flag.store(false, std::sync::atomic::Ordering::Relaxed);
        std::thread::scope(|s| {
            let w = s.spawn(|| match form {
                0 => {
                    q.wait_until(ready);
                    Ok(())
                }
                1 => q.wait_until_timeout(ready, T),
                _ => q.wait_until_deadline(ready, Instant::now() + T),
            });
            std::thread::sleep(SHORT);
            flag.store(true, std::sync::atomic::Ordering::Release);
            q.notify_all();
            w.join().unwrap().unwrap();
        });
    }
}

/// Every error converts into `shmkit::Error` with `?`, keeping its meaning: timeouts and
/// would-blocks become one variant each, whatever object they came from.
#[test]
fn errors_convert_with_question_mark() {
    fn is_static_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_static_error::<shmkit::Error>();
    is_static_error::<Timeout>();
    is_static_error::<WouldBlock>();
    is_static_error::<LockError<()>>();
    is_static_error::<WaitTimeoutError<()>>();
    is_static_error::<SemaphoreError>();
    is_static_error::<BarrierError>();

    let l = LockState::new();
    let sem = SemaphoreState::bounded(0).unwrap();
    let ev = EventState::new();
    let bar = BarrierState::new(2).unwrap();
    let c = ConditionState::new();
    let q = WaitQueue::new();
    let timeouts: Vec<Box<dyn Fn() -> shmkit::Result<()> + '_>> = vec![
        Box::new(|| {
            std::thread::scope(|s| {
                let _g = l.lock()?;
                s.spawn(|| -> shmkit::Result<()> {
                    drop(l.lock_timeout(SHORT)?);
                    Ok(())
                })
                .join()
                .unwrap()
            })
        }),
        Box::new(|| Ok(sem.acquire_deadline(past())?)),
        Box::new(|| Ok(ev.wait_timeout(Duration::ZERO)?)),
        Box::new(|| Ok(bar.wait_timeout(Duration::ZERO).map(drop)?)),
        Box::new(|| {
            let g = c.lock()?;
            drop(c.wait_timeout(g, Duration::ZERO)?);
            Ok(())
        }),
        Box::new(|| Ok(q.wait_until_timeout(|| false, Duration::ZERO)?)),
    ];
    for (i, f) in timeouts.iter().enumerate() {
        assert!(matches!(f(), Err(shmkit::Error::Timeout)), "timeout #{i}");
    }
    bar.reset();

    let would_block = |r: &shmkit::Result<()>| matches!(r, Err(shmkit::Error::WouldBlock));
    assert!(would_block(&sem.try_acquire().map_err(Into::into)));
    assert!(would_block(&ev.try_wait().map_err(Into::into)));
    std::thread::scope(|s| {
        let _g = l.lock().unwrap();
        let r = s
            .spawn(|| l.try_lock().map(drop).map_err(shmkit::Error::from))
            .join()
            .unwrap();
        assert!(would_block(&r), "{r:?}");
    });

    // The other cases keep their own type inside the crate-wide error.
    let g = l.lock().unwrap();
    let e = shmkit::Error::from(l.lock().unwrap_err());
    assert!(matches!(e, shmkit::Error::Lock(LockError::Deadlock)), "{e}");
    drop(g);
    let e = shmkit::Error::from(sem.release().unwrap_err());
    assert!(matches!(
        e,
        shmkit::Error::Semaphore(SemaphoreError::TooManyReleases { max: 0 })
    ));
    bar.abort();
    let e = shmkit::Error::from(bar.wait().unwrap_err());
    assert!(matches!(e, shmkit::Error::Barrier(BarrierError::Broken)));
    assert_eq!(e.to_string(), BarrierError::Broken.to_string());

    // The guard-free forms go into Box<dyn Error> as they are.
    let boxed = || -> Result<(), Box<dyn std::error::Error>> {
        let _g = l.lock().map_err(LockError::without_guard)?;
        drop(l.try_lock().map_err(LockError::without_guard)?);
        Ok(())
    };
    let e = boxed().unwrap_err();
    assert!(matches!(
        e.downcast_ref::<LockError<()>>(),
        Some(LockError::Deadlock)
    ));
}
