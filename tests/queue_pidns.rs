//! Processes in different pid namespaces that share `/dev/shm` (sidecar containers,
//! `docker run --ipc=container:…`) use one queue or lock, and each tells when the other dies:
//! liveness is judged by open-file-description locks, not by pids (`SPEC.md` §2.3).
//!
//! Uses `unshare(1)` to put the peer in a new pid namespace (it is pid 1 there, and its `/proc`
//! is its own). This needs root, as CI runs the tests: as another user, or where `unshare`
//! cannot make a pid namespace, these tests fail loudly, saying so, rather than pass without
//! checking. (A user namespace is no stand-in: inside it, a `/dev/shm/.shmkit` made by root
//! belongs to the overflow uid, and the peer rightly refuses that liveness directory.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::{child_command_under, unique_name, wait_exit, wait_ok, Cleanup, Lines};
use shmkit::queue::bytes::Ring;
use shmkit::queue::{mpmc, spsc, PopError};
use shmkit::sync::{Lock, LockError};

const WAIT: Duration = Duration::from_secs(60);

/// `unshare` arguments that make a new pid namespace with its own `/proc` (the child is its
/// pid 1). Panics, saying that these tests need root, if this process is not root or
/// `unshare` does not work here.
fn unshare() -> Vec<&'static str> {
    unshare_with(true)
}

/// As [`unshare`]; with `mount_proc` false the child keeps the outer namespace's `/proc`, in
/// which its own pid means nothing (shmkit used to refuse such a process).
fn unshare_with(mount_proc: bool) -> Vec<&'static str> {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: it runs a peer in a new pid namespace (`unshare --pid`); run the \
         tests as root, as CI does, or leave these out"
    );
    let mut argv = vec!["unshare", "--pid", "--fork"];
    if mount_proc {
        argv.push("--mount-proc");
    }
    let out = Command::new(argv[0]).args(&argv[1..]).arg("true").output();
    assert!(
        out.as_ref().is_ok_and(|o| o.status.success()),
        "unshare cannot make a pid namespace on this machine ({out:?}); these tests need root \
         and check cross-namespace liveness, which they cannot do without one"
    );
    argv
}

#[test]
fn child_main() {
    common::child_entry(|role, args| {
        let name = &args[0];
        // Proof that the child really is in another pid namespace: it is pid 1 there.
        let pid = std::process::id();
        match role {
            "consume-spsc" => {
                let q = spsc::Queue::<u64>::open(name).unwrap();
                let mut rx = q.consumer().unwrap();
                common::report(&format!("pid {pid} attached"));
                let mut got = Vec::new();
                loop {
                    match rx.pop_timeout(WAIT) {
                        Ok(v) => got.push(v),
                        Err(PopError::Disconnected) => break,
                        Err(e) => panic!("pop: {e}"),
                    }
                }
                common::report(&format!("{got:?}"));
            }
            "produce-and-die" => {
                let kind = &args[1];
                match kind.as_str() {
                    "spsc" => {
                        let q = spsc::Queue::<u64>::open(name).unwrap();
                        let mut tx = q.producer().unwrap();
                        tx.push_timeout(7, WAIT).unwrap();
                        std::mem::forget(tx);
                    }
                    "mpmc" => {
                        let q = mpmc::Queue::<u64>::open(name).unwrap();
                        let mut tx = q.producer().unwrap();
                        tx.push_timeout(7, WAIT).unwrap();
                        std::mem::forget(tx);
                    }
                    "bytes" => {
                        let r = Ring::open(name).unwrap();
                        let mut tx = r.producer().unwrap();
                        tx.push_timeout(b"seven", WAIT).unwrap();
                        std::mem::forget(tx);
                    }
                    other => panic!("kind {other}"),
                }
                common::report(&format!("pid {pid} pushed"));
                // Die without closing anything: no destructor, no exit handler.
                std::process::abort();
            }
            "lock-and-die" => {
                let lock = Lock::open(name).unwrap();
                std::mem::forget(lock.lock().unwrap());
                common::report(&format!("pid {pid} locked"));
                std::process::abort();
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Start `role` under `unshare`, read its first line, check that it ran as pid 1 of its own
/// namespace, and return the child and its line reader.
fn start(ns: &[&str], role: &str, args: &[&str]) -> (std::process::Child, Lines) {
    let mut child = child_command_under(ns, role, args).spawn().unwrap();
    let mut lines = Lines::of(&mut child);
    let first = lines.next_line().expect("a report line");
    assert!(
        first.starts_with("pid 1 "),
        "{role}: the child should be pid 1 of a new pid namespace: {first}"
    );
    (child, lines)
}

#[test]
fn a_consumer_in_another_pid_namespace_receives_and_sees_the_close() {
    let ns = unshare();
    let name = unique_name("pidns-ok");
    let _cleanup = Cleanup::new(&[&name]);
    let q = spsc::Queue::<u64>::create(&name, 8).unwrap();
    let mut tx = q.producer().unwrap();
    let (mut child, mut lines) = start(&ns, "consume-spsc", &[&name]);
    for v in [1, 2, 3] {
        tx.push_timeout(v, WAIT).unwrap();
    }
    // Closing (not dropping, which only detaches) ends the consumer's stream.
    tx.close();
    assert_eq!(lines.next_line().as_deref(), Some("[1, 2, 3]"));
    wait_ok(&mut child, WAIT);
}

/// A producer in another pid namespace that is killed mid-life (its pid means nothing here)
/// is found dead: the consumer drains its message and then gets `Disconnected`, for every
/// queue kind, instead of waiting for its timeout.
#[test]
fn a_producer_killed_in_another_pid_namespace_is_found_dead() {
    let ns = unshare();
    let base = unique_name("pidns-dead");
    for kind in ["spsc", "mpmc", "bytes"] {
        let name = format!("{base}-{kind}");
        let _cleanup = Cleanup::new(&[&name]);
        // The consumer side lives here.
        let (mut child, _lines);
        match kind {
            "spsc" => {
                let q = spsc::Queue::<u64>::create(&name, 8).unwrap();
                let mut rx = q.consumer().unwrap();
                (child, _lines) = start(&ns, "produce-and-die", &[&name, kind]);
                assert!(!wait_exit(&mut child, WAIT).success());
                assert_eq!(rx.pop_timeout(WAIT).unwrap(), 7);
                assert!(matches!(rx.pop_timeout(WAIT), Err(PopError::Disconnected)));
            }
            "mpmc" => {
                let q = mpmc::Queue::<u64>::create(&name, 8).unwrap();
                let mut rx = q.consumer().unwrap();
                (child, _lines) = start(&ns, "produce-and-die", &[&name, kind]);
                assert!(!wait_exit(&mut child, WAIT).success());
                assert_eq!(rx.pop_timeout(WAIT).unwrap(), 7);
                assert!(matches!(rx.pop_timeout(WAIT), Err(PopError::Disconnected)));
            }
            _ => {
                let r = Ring::create(&name, 4096).unwrap();
                let mut rx = r.consumer().unwrap();
                (child, _lines) = start(&ns, "produce-and-die", &[&name, kind]);
                assert!(!wait_exit(&mut child, WAIT).success());
                assert_eq!(rx.pop_timeout(WAIT).unwrap(), b"seven");
                assert!(matches!(rx.pop_timeout(WAIT), Err(PopError::Disconnected)));
            }
        }
    }
}

/// A lock holder killed in another pid namespace: the next acquirer here gets `OwnerDied`.
#[test]
fn a_lock_holder_killed_in_another_pid_namespace_is_reported() {
    lock_holder_killed(&unshare());
}

/// The same, with the holder seeing the outer namespace's `/proc`: no `/proc` is read.
#[test]
fn a_lock_holder_with_a_foreign_proc_is_reported() {
    lock_holder_killed(&unshare_with(false));
}

fn lock_holder_killed(ns: &[&str]) {
    let name = unique_name("pidns-lock");
    let _cleanup = Cleanup::new(&[&name]);
    let lock = Lock::create(&name).unwrap();
    let (mut child, _lines) = start(ns, "lock-and-die", &[&name]);
    assert!(!wait_exit(&mut child, WAIT).success());
    let r = lock.lock_timeout(WAIT);
    match r {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(
                g.previous_owner().unwrap().pid,
                1,
                "recorded in its own namespace"
            );
            g.make_consistent().unwrap();
        }
        Ok(_) => panic!("expected OwnerDied"),
        Err(e) => panic!("expected OwnerDied, got {e}"),
    };
}
