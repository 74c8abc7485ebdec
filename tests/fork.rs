//! A process created by `fork()` is a different process (`SPEC.md` §2.3): it never inherits a
//! queue role or a lock's ownership from its parent. An inherited queue handle is closed in
//! the child (its calls fail with `Disconnected`) and dropping it there changes nothing
//! shared; an inherited lock guard is the parent's (dropping it in the child leaves the lock
//! held); and the child, locking for itself, is a new owner, not the parent again.
//!
//! The same holds for frames: an inherited subscriber receives nothing in the child, an
//! inherited frame gives no access to its slot and keeps the parent's pin, and an inherited
//! loan can be neither published nor emptied. A handle set to unlink its name on drop unlinks
//! only in the process that asked: the child dropping its copy leaves the name. An inherited
//! in-place queue guard (spsc, bytes ring) gives the child no access to its slot, and its
//! commit or release changes nothing shared; an inherited cell guard cannot write the data
//! the parent's lock protects. An inherited condition wait ticket is the parent's wait: the
//! child can neither take a wake-up with it nor end it.
//!
//! Python's `multiprocessing` forks by default on Linux, so this is the common case there.

mod common;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::{fork_and, inherited, spawn_child, unique_name, wait_ok, Cleanup, Lines};
use shmkit::cell::{Array, Value};
use shmkit::frames::{self, FramesOptions, RecvError, TryRecvError};
use shmkit::queue::bytes::Ring;
use shmkit::queue::{mpmc, spsc, PushError, TryPopError};
use shmkit::sync::{Condition, Lock, LockError};
use shmkit::Segment;

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
                    let a = tx.try_push(b"x").is_err();
                    drop(tx);
                    i32::from(a) | 2 | 4
                });
                common::report(&format!("child {code}"));
                assert!(!r.stat().producer_closed);
                tx.push_timeout(b"after", WAIT).unwrap();
                let mut rx = r.consumer().unwrap();
                assert_eq!(rx.pop_timeout(WAIT).unwrap(), b"after");
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
            "frames-sub" => {
                let mut p = FramesOptions::<u64>::new()
                    .slots(2)
                    .max_bytes(64)
                    .create(name)
                    .unwrap();
                let mut s = FramesOptions::<u64>::new().subscriber(name).unwrap();
                publish(&mut p, 1);
                let f1 = s.recv_timeout(WAIT).unwrap();
                publish(&mut p, 2);
                let code = fork_and(|| {
                    // The subscriber and the frame are the parent's: the child must not pin
                    // through the parent's record (the parent's unpin would let the publisher
                    // overwrite what the child reads), nor move its cursor.
                    let (mut s, f1) = (inherited(&s), inherited(&f1));
                    let a = s.is_inherited()
                        && matches!(s.try_recv(), Err(TryRecvError::Inherited))
                        && matches!(s.try_latest(), Err(TryRecvError::Inherited));
                    let b = matches!(
                        s.recv_timeout(Duration::from_millis(100)),
                        Err(RecvError::Inherited)
                    ) && matches!(s.latest(), Err(RecvError::Inherited))
                        && s.newest().is_none();
                    let mut buf = [0u8; 64];
                    let c = f1.is_inherited()
                        && f1.bytes().is_empty()
                        && f1.copy_to(&mut buf) == 0
                        && f1.header_bytes().is_empty()
                        && (f1.seq(), f1.len(), *f1.header()) == (1, 16, 1);
                    drop(f1);
                    drop(s);
                    i32::from(a) | i32::from(b) << 1 | i32::from(c) << 2
                });
                common::report(&format!("child {code}"));
                // The parent's pin and record are as it left them.
                let st = frames::stat(name).unwrap();
                assert_eq!(st.subscribers.len(), 1, "{st:?}");
                assert_eq!(st.subscribers[0].received, 1, "{st:?}");
                assert_eq!(st.subscribers[0].last_seq, 1, "{st:?}");
                assert_eq!(st.subscribers[0].holding, vec![f1.slot()], "{st:?}");
                assert!(!f1.is_inherited() && !s.is_inherited());
                assert_eq!(f1.bytes(), &[1u8; 16]);
                drop(f1);
                let f2 = s.try_recv().unwrap();
                assert_eq!((f2.seq(), f2.bytes()), (2, &[2u8; 16][..]));
                common::report("parent ok");
            }
            "frames-loan" => {
                let mut p = FramesOptions::<u64>::new()
                    .slots(2)
                    .max_bytes(64)
                    .create(name)
                    .unwrap();
                let mut s = FramesOptions::<u64>::new().subscriber(name).unwrap();
                let mut loan = p.loan().unwrap();
                loan.as_mut_slice()[..5].copy_from_slice(b"hello");
                let slot = loan.slot() as usize;
                let code = fork_and(|| {
                    // The loan is the parent's: the child can neither write nor publish its
                    // slot, and dropping it must not empty the slot the parent still writes.
                    let mut l = inherited(&loan);
                    let a = l.is_inherited() && l.as_mut_slice().is_empty();
                    let b = matches!(l.publish(3, &9), Err(shmkit::Error::Disconnected));
                    drop(inherited(&loan));
                    let st = frames::stat(name).unwrap();
                    let c = st.slot_states[slot].state == "writing" && st.last_seq == 0;
                    i32::from(a) | i32::from(b) << 1 | i32::from(c) << 2
                });
                common::report(&format!("child {code}"));
                assert_eq!(
                    frames::stat(name).unwrap().slot_states[slot].state,
                    "writing"
                );
                assert!(!loan.is_inherited());
                assert_eq!(loan.publish(5, &7).unwrap(), 1);
                let f = s.recv_timeout(WAIT).unwrap();
                assert_eq!((f.seq(), *f.header(), f.bytes()), (1, 7, &b"hello"[..]));
                drop(f);
                assert!(matches!(s.try_recv(), Err(TryRecvError::Empty)));
                common::report("parent ok");
            }
            "unlink" => {
                // Every way to ask for an unlink on drop; the child drops its inherited copies.
                let names = [0, 1, 2].map(|i| format!("{name}-{i}"));
                let seg = Segment::options()
                    .unlink_on_drop(true)
                    .create(&names[0], 64)
                    .unwrap();
                let q = spsc::Queue::<u64>::create(&names[1], 8).unwrap();
                q.set_unlink_on_drop(true);
                let p = FramesOptions::<u64>::new()
                    .slots(1)
                    .max_bytes(64)
                    .unlink_on_drop(true)
                    .create(&names[2])
                    .unwrap();
                assert!(seg.unlinks_on_drop());
                let code = fork_and(|| {
                    let seg = inherited(&seg);
                    let a = !seg.unlinks_on_drop();
                    drop(seg);
                    drop(inherited(&q));
                    drop(inherited(&p));
                    let b = names.iter().all(|n| exists(n));
                    i32::from(a) | i32::from(b) << 1 | 4
                });
                common::report(&format!("child {code}"));
                for n in &names {
                    assert!(exists(n), "{n} was unlinked");
                }
                // The parent still unlinks them.
                drop((seg, q, p));
                for n in &names {
                    assert!(!exists(n), "{n} was not unlinked");
                }
                common::report("parent ok");
            }
            "queue-guards" => {
                let names = [0, 1].map(|i| format!("{name}-{i}"));
                let q = spsc::Queue::<u64>::create(&names[0], 8).unwrap();
                let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
                tx.try_push(5).unwrap();
                let mut w = tx.try_reserve().unwrap();
                *w = 6;
                let g = rx.try_peek().unwrap();
                let r = Ring::create(&names[1], 4096).unwrap();
                let (mut btx, mut brx) = (r.producer().unwrap(), r.consumer().unwrap());
                btx.try_push(b"abc").unwrap();
                let mut bw = btx.try_reserve(3).unwrap();
                bw.copy_from(b"def");
                let bg = brx.try_peek().unwrap();
                let used = r.len();
                let code = fork_and(|| {
                    // The guards are the parent's: the child may neither touch their slots
                    // (the parent may release them, and the producer overwrite them, while
                    // the child reads) nor move the parent's head or tail.
                    let (mut w, g) = (inherited(&w), inherited(&g));
                    let (mut bw, bg) = (inherited(&bw), inherited(&bg));
                    let quiet = std::panic::take_hook();
                    std::panic::set_hook(Box::new(|_| {}));
                    let a = std::panic::catch_unwind(AssertUnwindSafe(|| *g)).is_err()
                        && std::panic::catch_unwind(AssertUnwindSafe(|| *w = 7)).is_err();
                    std::panic::set_hook(quiet);
                    let mut buf = [0u8; 8];
                    let b = bg.iter().next().is_none()
                        && bg.copy_to(&mut buf) == 0
                        && bw.iter().next().is_none()
                        && bw.copy_from(b"xyz") == 0;
                    g.release();
                    bg.release();
                    let released = q.len() == 1 && r.len() == used;
                    w.commit();
                    bw.commit();
                    let c = released && q.len() == 1 && r.len() == used;
                    i32::from(a) | i32::from(b) << 1 | i32::from(c) << 2
                });
                common::report(&format!("child {code}"));
                assert_eq!((q.len(), r.len()), (1, used));
                assert_eq!(*g, 5);
                g.release();
                w.commit();
                assert_eq!(rx.try_pop(), Ok(6));
                assert_eq!(&bg[..], b"abc");
                bg.release();
                bw.commit();
                assert_eq!(brx.try_pop().unwrap(), b"def");
                assert!(q.is_empty() && r.is_empty());
                common::report("parent ok");
            }
            "cell-guards" => {
                let names = [0, 1].map(|i| format!("{name}-{i}"));
                let v = Value::<i64>::create(&names[0], 1).unwrap();
                let a = Array::<i64>::create_from(&names[1], &[1, 2]).unwrap();
                let (vg, ag) = (v.lock().unwrap(), a.lock().unwrap());
                let code = fork_and(|| {
                    // The locks are the parent's: the child must not write the data they
                    // protect through the inherited guards.
                    let (vg, ag) = (inherited(&vg), inherited(&ag));
                    let quiet = std::panic::take_hook();
                    std::panic::set_hook(Box::new(|_| {}));
                    let x = std::panic::catch_unwind(AssertUnwindSafe(|| vg.set(7))).is_err();
                    std::panic::set_hook(quiet);
                    let not_owner = |r| matches!(r, Err(shmkit::Error::Lock(LockError::NotOwner)));
                    let y = not_owner(ag.set(0, 7)) && not_owner(ag.write(0, &[7, 7]));
                    let z =
                        (vg.get().unwrap(), ag.get(0).unwrap(), ag.get(1).unwrap()) == (1, 1, 2);
                    drop((vg, ag));
                    i32::from(x) | i32::from(y) << 1 | i32::from(z) << 2
                });
                common::report(&format!("child {code}"));
                assert_eq!((vg.get().unwrap(), ag.read(0..2).unwrap()), (1, vec![1, 2]));
                vg.set(3);
                ag.set(1, 4).unwrap();
                drop((vg, ag));
                assert_eq!((v.get().unwrap(), a.get(1).unwrap()), (3, 4));
                common::report("parent ok");
            }
            "condition-ticket" => {
                let c = Condition::create(name).unwrap();
                // The parent begins a wait (`release_for_wait`: counted, the lock released)
                // and forks before it ends.
                let mut ticket = c.release_for_wait(c.lock().unwrap());
                assert_eq!(c.waiters(), 1);
                let code = fork_and(|| {
                    // The ticket is the parent's wait: the child may neither take a wake-up
                    // with it nor end it (the parent, still waiting, would then miss a notify:
                    // a notify grants only to the waiters counted).
                    let mut t = inherited(&ticket);
                    let quiet = std::panic::take_hook();
                    std::panic::set_hook(Box::new(|_| {}));
                    let a =
                        std::panic::catch_unwind(AssertUnwindSafe(|| c.try_wait_released(&mut t)))
                            .is_err();
                    std::panic::set_hook(quiet);
                    drop(t);
                    let b = c.waiters() == 1;
                    // The child's own notify reaches the parent's wait.
                    let g = c.lock().unwrap();
                    c.notify(&g, 1);
                    drop(g);
                    let d = c.granted() == 1 && c.waiters() == 1;
                    i32::from(a) | i32::from(b) << 1 | i32::from(d) << 2
                });
                common::report(&format!("child {code}"));
                assert_eq!(c.try_wait_released(&mut ticket), Ok(()));
                drop(ticket);
                assert_eq!((c.waiters(), c.granted()), (0, 0));
                common::report("parent ok");
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Whether a shared-memory object named `name` exists.
fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

/// Publish a 16-byte frame of `v`s with header `v`.
fn publish(p: &mut frames::Publisher<u64>, v: u8) {
    let mut l = p.loan_timeout(WAIT).unwrap();
    l.as_mut_slice()[..16].fill(v);
    l.publish(16, &u64::from(v)).unwrap();
}

fn run(role: &str, want: &[&str]) {
    let name = unique_name(&format!("fork-{role}"));
    let names = [0, 1, 2].map(|i| format!("{name}-{i}"));
    let _cleanup = Cleanup::new(&[&name, &names[0], &names[1], &names[2]]);
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

#[test]
fn a_forked_child_cannot_use_inherited_queue_guards() {
    run("queue-guards", &["child 7", "parent ok"]);
}

#[test]
fn a_forked_child_cannot_write_through_inherited_cell_guards() {
    run("cell-guards", &["child 7", "parent ok"]);
}

#[test]
fn a_forked_child_cannot_receive_through_an_inherited_subscriber() {
    run("frames-sub", &["child 7", "parent ok"]);
}

#[test]
fn a_forked_child_cannot_publish_or_clear_an_inherited_loan() {
    run("frames-loan", &["child 7", "parent ok"]);
}

#[test]
fn a_forked_child_dropping_inherited_handles_does_not_unlink() {
    run("unlink", &["child 7", "parent ok"]);
}

#[test]
fn a_forked_child_cannot_take_or_end_an_inherited_condition_wait() {
    run("condition-ticket", &["child 7", "parent ok"]);
}
