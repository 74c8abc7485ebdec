//! A process created by `fork()` is a different process (`SPEC.md` §2.3): it never inherits a
//! queue role or a lock's ownership from its parent. An inherited queue handle is closed in
//! the child (its calls fail with `Disconnected`) and dropping it there changes nothing
//! shared; an inherited lock guard is the parent's (dropping it in the child leaves the lock
//! held); and the child, locking for itself, is a new owner, not the parent again.
//!
//! Python's `multiprocessing` forks by default on Linux, so this is the common case there.

mod common;

use std::time::Duration;

use common::{fork_and, inherited, spawn_child, unique_name, wait_ok, Cleanup, Lines};
use shmkit::queue::bytes::Ring;
use shmkit::queue::{mpmc, spsc, PushError, TryPopError};
use shmkit::sync::{Lock, LockError};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn child_main() {
    common::child_entry(|role, args| {
        let name = &args[0];
        match role {
            "spsc" => {
                let q = spsc::Queue::<u64>::create(name, 8).unwrap();
                let mut tx = q.producer().unwrap();
                let mut rx = q.consumer().unwrap();
                let code = fork_and(|| {
                    let (mut tx, mut rx) = (inherited(&tx), inherited(&rx));
                    // The inherited ends are closed here; using them fails, dropping them
                    // changes nothing.
                    let a = matches!(
                        tx.try_push(1),
                        Err(shmkit::queue::TryPushError::Disconnected(1))
                    );
                    let b = matches!(rx.try_pop(), Err(TryPopError::Disconnected));
                    drop(tx);
                    drop(rx);
                    // Nor can the child take the roles: the parent, alive, holds them.
                    let c = q.producer().is_err() && q.consumer().is_err();
                    i32::from(a) | i32::from(b) << 1 | i32::from(c) << 2
                });
                common::report(&format!("child {code}"));
                // The parent still holds both ends, open.
                let st = q.stat();
                assert!(!st.producer_closed && !st.consumer_closed, "{st:?}");
                assert_eq!(st.producers[0].pid, std::process::id());
                tx.push_timeout(5, WAIT).unwrap();
                assert_eq!(rx.pop_timeout(WAIT).unwrap(), 5);
                common::report("parent ok");
            }
            "mpmc" => {
                let q = mpmc::Queue::<u64>::create(name, 8).unwrap();
                let mut tx = q.producer().unwrap();
                let code = fork_and(|| {
                    let mut tx = inherited(&tx);
                    let a = matches!(tx.push_timeout(1, WAIT), Err(PushError::Disconnected(1)));
                    drop(tx);
                    // The child may attach as itself: a new claim, not the parent's.
                    let mut own = q.producer().unwrap();
                    let b = own.push_timeout(2, WAIT).is_ok();
                    i32::from(a) | i32::from(b) << 1 | 4
                });
                common::report(&format!("child {code}"));
                let st = q.stat();
                assert!(!st.producer_closed, "{st:?}");
                assert!(st.producers.iter().any(|p| p.pid == std::process::id()));
                tx.push_timeout(3, WAIT).unwrap();
                let mut rx = q.consumer().unwrap();
                assert_eq!(rx.pop_timeout(WAIT).unwrap(), 2);
                assert_eq!(rx.pop_timeout(WAIT).unwrap(), 3);
                common::report("parent ok");
            }
            "bytes" => {
                let r = Ring::create(name, 4096).unwrap();
                let mut tx = r.producer().unwrap();
                let code = fork_and(|| {
                    let mut tx = inherited(&tx);
                    let a = tx.try_send(b"x").is_err();
                    drop(tx);
                    i32::from(a) | 2 | 4
                });
                common::report(&format!("child {code}"));
                assert!(!r.stat().producer_closed);
                tx.send_timeout(b"after", WAIT).unwrap();
                let mut rx = r.consumer().unwrap();
                assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"after");
                common::report("parent ok");
            }
            "lock" => {
                let lock = Lock::create(name).unwrap();
                let guard = lock.lock().unwrap();
                let code = fork_and(|| {
                    // The parent holds it; the child is another process: it must wait (not
                    // Deadlock, not re-enter), and dropping the inherited guard releases
                    // nothing.
                    let a = matches!(lock.try_lock(), Err(LockError::WouldBlock));
                    drop(inherited(&guard));
                    let b = matches!(lock.try_lock(), Err(LockError::WouldBlock));
                    let c = lock.is_locked();
                    i32::from(a) | i32::from(b) << 1 | i32::from(c) << 2
                });
                common::report(&format!("child {code}"));
                assert!(lock.is_locked());
                assert_eq!(lock.owner().unwrap().pid, std::process::id());
                drop(guard);
                assert!(!lock.is_locked());
                // Now the child's own lock works.
                let code = fork_and(|| i32::from(lock.try_lock().is_ok()) * 7);
                common::report(&format!("child {code}"));
                common::report("parent ok");
            }
            other => panic!("unknown role {other}"),
        }
    });
}

fn run(role: &str, want: &[&str]) {
    let name = unique_name(&format!("fork-{role}"));
    let _cleanup = Cleanup::new(&[&name]);
    let mut child = spawn_child(role, &[&name]);
    let mut lines = Lines::of(&mut child);
    for w in want {
        lines.expect(w);
    }
    wait_ok(&mut child, WAIT);
}

#[test]
fn a_forked_child_does_not_inherit_spsc_roles() {
    run("spsc", &["child 7", "parent ok"]);
}

#[test]
fn a_forked_child_does_not_inherit_an_mpmc_claim() {
    run("mpmc", &["child 7", "parent ok"]);
}

#[test]
fn a_forked_child_does_not_inherit_a_bytes_ring_role() {
    run("bytes", &["child 7", "parent ok"]);
}

#[test]
fn a_forked_child_does_not_inherit_lock_ownership() {
    run("lock", &["child 7", "child 7", "parent ok"]);
}
