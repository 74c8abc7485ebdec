//! A program using shmkit runs under valgrind's memcheck, with no error reported.
//!
//! Users check their own programs with memcheck; a library that kills the process there
//! (rustix's vDSO lookup read unmapped memory under valgrind and died with SIGSEGV, on the
//! first clock reading of a polling loop) takes that tool away from them. The child below
//! touches every clock path the library has (the polling throttle's coarse clock, the frame
//! channel's monotonic and realtime stamps, deadlines) and the queues' and a lock's fast and
//! blocking paths, under `valgrind --error-exitcode=99`.
//!
//! Needs valgrind (`.ci/run` installs it); fails, not skips, without it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{child_command_under, unique_name, wait_exit, Cleanup, Lines};
use shmkit::frames::FramesOptions;
use shmkit::queue::{bytes, mpmc, mpmc_bytes, spsc};
use shmkit::sync::Lock;

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "exercise" => exercise(&args[0], &args[1]),
        other => panic!("unknown role {other}"),
    });
}

/// Enough polls of every kind of queue to pass the throttle's clock reading many times,
/// blocking forms that time out, a lock, and a frame published and received.
fn exercise(name: &str, lock_name: &str) {
    let short = Duration::from_millis(30);

    let q = spsc::Queue::<u64>::with_capacity(8);
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    for _ in 0..200 {
        assert!(rx.try_pop().is_err());
    }
    assert!(rx.pop_timeout(short).is_err());
    tx.push(7).unwrap();
    assert_eq!(rx.pop_timeout(short), Ok(7));

    let q = mpmc::Queue::<u64>::with_capacity(8);
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    for _ in 0..200 {
        assert!(rx.try_pop().is_err());
    }
    assert!(rx.pop_timeout(short).is_err());
    tx.push(8).unwrap();
    assert_eq!(rx.pop_timeout(short), Ok(8));

    let q = bytes::Ring::with_capacity(4096);
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    for _ in 0..200 {
        assert!(rx.try_pop().is_err());
    }
    tx.try_push(b"ring").unwrap();
    assert_eq!(rx.try_pop().unwrap(), b"ring");

    let q = mpmc_bytes::Queue::with_capacity(4096);
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    for _ in 0..200 {
        assert!(rx.try_pop().is_err());
    }
    tx.try_push(b"mpmc-bytes").unwrap();
    assert_eq!(rx.try_pop().unwrap(), b"mpmc-bytes");

    let lock = Lock::create(lock_name).unwrap();
    drop(lock.lock().unwrap());
    drop(lock.lock_timeout(short).unwrap());

    let mut p = FramesOptions::<[u64; 2]>::new()
        .slots(2)
        .max_bytes(4096)
        .create(name)
        .unwrap();
    let mut s = FramesOptions::<[u64; 2]>::new().subscriber(name).unwrap();
    assert!(s.recv_timeout(short).is_err());
    let mut loan = p.loan_timeout(short).unwrap();
    loan.as_mut_slice()[..4].copy_from_slice(b"fram");
    loan.publish(4, &[1, 2]).unwrap();
    let f = s.recv_timeout(short).unwrap();
    assert_eq!((f.bytes(), *f.header()), (&b"fram"[..], [1, 2]));
    drop(f);
    common::report("exercised");
}

#[test]
fn runs_under_valgrind() {
    let found = Command::new("valgrind").arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs valgrind (Debian package valgrind; .ci/run installs it): {found:?}"
    );
    let (name, lock_name) = (unique_name("valgrind"), unique_name("valgrind-lock"));
    let _c = Cleanup::new(&[&name, &lock_name]);
    let mut child = child_command_under(
        &[
            "valgrind",
            "-q",
            "--error-exitcode=99",
            "--trace-children=no",
        ],
        "exercise",
        &[&name, &lock_name],
    )
    .spawn()
    .expect("start valgrind");
    let mut lines = Lines::of(&mut child);
    let line = lines.next_line();
    let st = wait_exit(&mut child, Duration::from_secs(300));
    assert_eq!(
        line.as_deref(),
        Some("exercised"),
        "the child under valgrind did not finish ({st}): see its stderr above"
    );
    assert!(
        st.success(),
        "valgrind reported errors or the child failed: {st}"
    );
}
