#![cfg(not(loom))]
//! The one blocking-call shape on the queues, as `sync_forms.rs` checks it on the sync
//! primitives: every blocking queue call's `try_x` / `x` / `x_timeout` / `x_deadline` forms
//! succeed when they can, report the one timeout (or `Full`/`Empty`) outcome when they cannot,
//! poll once when the deadline has already passed, take a huge timeout as no limit, and their
//! errors are `'static`, keep the refused value (`into_inner`) and convert into `shmkit::Error`
//! and `Box<dyn Error>` with `?` without losing what happened.
//!
//! The cross-process tests start a separate process that blocks in the untimed form (or a
//! far deadline) until this process pushes, pops or closes. Timing-dependent assertions only
//! check what cannot change: a wait that is woken succeeds, a wait nobody wakes times out.

mod common;

use std::time::{Duration, Instant};

use common::{spawn_child, unique_name, wait_ok, Cleanup, Lines};
use shmkit::queue::{bytes, BytesPushError};
use shmkit::queue::{
    mpmc, spsc, AttachError, PopError, PushError, QueueError, Role, TryPopError, TryPushError,
};

const T: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(5);

fn past() -> Instant {
    Instant::now() - Duration::from_millis(1)
}

fn is_static_error<E: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn errors_are_static_and_convert() {
    is_static_error::<TryPushError<u64>>();
    is_static_error::<PushError<u64>>();
    is_static_error::<TryPopError>();
    is_static_error::<PopError>();
    is_static_error::<BytesPushError>();
    is_static_error::<QueueError>();
    is_static_error::<AttachError>();

    use shmkit::Error;
    let gone_c = QueueError::Disconnected {
        peer: Role::Consumer,
    };
    let gone_p = QueueError::Disconnected {
        peer: Role::Producer,
    };
    assert!(matches!(
        Error::from(TryPushError::Full(1)),
        Error::WouldBlock
    ));
    assert!(matches!(Error::from(TryPushError::Disconnected(1)), Error::Queue(e) if e == gone_c));
    assert!(matches!(
        Error::from(TryPushError::Corrupt(1)),
        Error::Queue(QueueError::Corrupt)
    ));
    assert!(matches!(Error::from(PushError::Timeout(1)), Error::Timeout));
    assert!(matches!(Error::from(PushError::Disconnected(1)), Error::Queue(e) if e == gone_c));
    assert!(matches!(
        Error::from(PushError::Corrupt(1)),
        Error::Queue(QueueError::Corrupt)
    ));
    assert!(matches!(Error::from(TryPopError::Empty), Error::WouldBlock));
    assert!(matches!(Error::from(TryPopError::Disconnected), Error::Queue(e) if e == gone_p));
    assert!(matches!(
        Error::from(TryPopError::Corrupt),
        Error::Queue(QueueError::Corrupt)
    ));
    assert!(matches!(Error::from(PopError::Timeout), Error::Timeout));
    assert!(matches!(Error::from(PopError::Disconnected), Error::Queue(e) if e == gone_p));
    assert!(matches!(
        Error::from(PopError::Corrupt),
        Error::Queue(QueueError::Corrupt)
    ));
    assert!(matches!(
        Error::from(BytesPushError::Full),
        Error::WouldBlock
    ));
    assert!(matches!(
        Error::from(BytesPushError::Timeout),
        Error::Timeout
    ));
    assert!(matches!(Error::from(BytesPushError::Disconnected), Error::Queue(e) if e == gone_c));
    assert!(matches!(
        Error::from(BytesPushError::TooLarge { len: 9, max: 8 }),
        Error::Queue(QueueError::TooLarge { len: 9, max: 8 })
    ));
    let busy = AttachError::Busy {
        role: Role::Consumer,
        pid: 1,
    };
    let msg = busy.to_string();
    match Error::from(busy) {
        Error::Attach(e) => assert_eq!(e.to_string(), msg),
        e => panic!("{e:?}"),
    }
    // A segment error comes out as itself.
    let e = Error::from(AttachError::Segment(Error::NotFound { name: "x".into() }));
    assert!(matches!(e, Error::NotFound { .. }));
    // The messages say which side is gone.
    assert!(Error::from(PopError::Disconnected)
        .to_string()
        .contains("producer"));
    assert!(Error::from(PushError::Disconnected(()))
        .to_string()
        .contains("consumer"));
    // Values come back before the conversion.
    assert_eq!(TryPushError::Full(7).into_inner(), 7);
    assert_eq!(PushError::Timeout(8).into_inner(), 8);
}

#[test]
fn question_mark_works_into_both_error_types() {
    fn crate_err(q: &spsc::Queue<u32>) -> shmkit::Result<u32> {
        let (mut tx, mut rx) = (q.producer()?, q.consumer()?);
        tx.try_push(1)?;
        tx.push_timeout(2, T)?;
        tx.push_deadline(3, Instant::now() + T)?;
        let a = rx.try_pop()?;
        let b = rx.pop_timeout(T)?;
        let c = rx.pop_deadline(Instant::now() + T)?;
        rx.pop_timeout(SHORT)?; // times out
        Ok(a + b + c)
    }
    fn boxed(r: &bytes::Ring) -> Result<(), Box<dyn std::error::Error>> {
        let (mut tx, mut rx) = (r.producer()?, r.consumer()?);
        tx.push(b"a")?;
        rx.pop()?;
        rx.try_pop()?; // empty
        Ok(())
    }
    let q = spsc::Queue::<u32>::with_capacity(4);
    assert!(matches!(crate_err(&q), Err(shmkit::Error::Timeout)));
    let r = bytes::Ring::with_capacity(1024);
    let e = boxed(&r).unwrap_err();
    assert!(matches!(
        e.downcast_ref::<TryPopError>(),
        Some(TryPopError::Empty)
    ));
}

/// The forms of the fixed-size queues, which share one API.
macro_rules! typed_forms {
    ($name:ident, $q:ty) => {
        #[test]
        fn $name() {
            let q = <$q>::with_capacity(2);
            let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
            // Empty: try_ says Empty, the timed forms time out (a past deadline polls once).
            assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
            assert_eq!(rx.pop_timeout(SHORT), Err(PopError::Timeout));
            assert_eq!(rx.pop_timeout(Duration::ZERO), Err(PopError::Timeout));
            assert_eq!(rx.pop_deadline(past()), Err(PopError::Timeout));
            // Room: every push form succeeds, a huge timeout means no limit.
            tx.try_push(1).unwrap();
            tx.push(2).unwrap();
            assert_eq!(tx.try_push(3), Err(TryPushError::Full(3)));
            assert_eq!(tx.push_timeout(3, SHORT), Err(PushError::Timeout(3)));
            assert_eq!(tx.push_deadline(3, past()), Err(PushError::Timeout(3)));
            assert_eq!(tx.push_timeout(3, SHORT).unwrap_err().into_inner(), 3);
            // Elements: every pop form succeeds, even with a passed deadline (polls once).
            assert_eq!(rx.pop_deadline(past()), Ok(1));
            tx.push_timeout(3, Duration::MAX).unwrap();
            assert_eq!(rx.pop_timeout(Duration::MAX), Ok(2));
            tx.push_deadline(4, past()).unwrap();
            assert_eq!(rx.pop(), Ok(3));
            assert_eq!(rx.pop_timeout(Duration::ZERO), Ok(4));
            // Batches.
            assert_eq!(tx.try_push_slice(&[5, 6, 7]), Ok(2));
            assert_eq!(
                tx.push_slice_timeout(&[7, 8], SHORT),
                Err(PushError::Timeout(0))
            );
            assert_eq!(
                tx.push_slice_deadline(&[7], past()),
                Err(PushError::Timeout(0))
            );
            let mut out = [0; 4];
            assert_eq!(rx.pop_slice_deadline(&mut out, past()), Ok(2));
            assert_eq!(out[..2], [5, 6]);
            assert_eq!(
                rx.pop_slice_timeout(&mut out, SHORT),
                Err(PopError::Timeout)
            );
            tx.push_slice(&[7, 8]).unwrap();
            tx.push_slice_timeout(&[], SHORT).unwrap();
            assert_eq!(rx.pop_slice(&mut out), Ok(2));
            assert_eq!(out[..2], [7, 8]);
            assert_eq!(rx.pop_slice_timeout(&mut [], SHORT), Ok(0));
            // Closed: Disconnected from every form, at once, whatever the time limit.
            tx.push(9).unwrap();
            tx.close();
            assert_eq!(rx.pop(), Ok(9));
            assert_eq!(rx.pop(), Err(PopError::Disconnected));
            assert_eq!(rx.pop_timeout(T), Err(PopError::Disconnected));
            assert_eq!(rx.pop_deadline(past()), Err(PopError::Disconnected));
            assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
            rx.close();
            let mut tx = q.producer().unwrap();
            assert_eq!(tx.push(1), Err(PushError::Disconnected(1)));
            assert_eq!(tx.push_timeout(1, T), Err(PushError::Disconnected(1)));
            assert_eq!(tx.push_slice(&[1]), Err(PushError::Disconnected(0)));
        }
    };
}

typed_forms!(spsc_forms, spsc::Queue<u64>);
typed_forms!(mpmc_forms, mpmc::Queue<u64>);

#[test]
fn spsc_in_place_forms() {
    let q = spsc::Queue::<u64>::with_capacity(2);
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    assert!(matches!(rx.try_peek(), Err(TryPopError::Empty)));
    assert!(matches!(rx.peek_timeout(SHORT), Err(PopError::Timeout)));
    assert!(matches!(rx.peek_deadline(past()), Err(PopError::Timeout)));
    for (i, w) in [0u64, 1].into_iter().enumerate() {
        let mut g = if i == 0 {
            tx.reserve().unwrap()
        } else {
            tx.reserve_deadline(past()).unwrap()
        };
        *g = w;
        g.commit();
    }
    assert!(matches!(tx.try_reserve(), Err(TryPushError::Full(()))));
    assert!(matches!(
        tx.reserve_timeout(SHORT),
        Err(PushError::Timeout(()))
    ));
    assert!(matches!(
        tx.reserve_deadline(past()),
        Err(PushError::Timeout(()))
    ));
    assert_eq!(*rx.peek_deadline(past()).unwrap(), 0);
    rx.peek().unwrap().release();
    assert_eq!(*rx.peek_timeout(Duration::MAX).unwrap(), 1);
    let _unpublished = tx.reserve_timeout(T).unwrap(); // room again
}

#[test]
fn bytes_forms() {
    let r = bytes::Ring::with_capacity(1024);
    let max = r.max_message();
    let (mut tx, mut rx) = (r.producer().unwrap(), r.consumer().unwrap());
    assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    assert_eq!(rx.pop_timeout(SHORT), Err(PopError::Timeout));
    assert_eq!(rx.pop_deadline(past()), Err(PopError::Timeout));
    assert!(matches!(rx.peek_timeout(SHORT), Err(PopError::Timeout)));
    assert!(matches!(rx.peek_deadline(past()), Err(PopError::Timeout)));
    tx.try_push(b"a").unwrap();
    tx.push(b"b").unwrap();
    tx.push_timeout(b"c", Duration::MAX).unwrap();
    tx.push_deadline(b"d", past()).unwrap();
    let mut w = tx.reserve(1).unwrap();
    w.copy_from(b"e");
    w.commit();
    tx.reserve_timeout(1, T).unwrap().commit_len(0);
    tx.reserve_deadline(1, past()).unwrap().commit_len(0);
    // Fill it up: every form reports that.
    let big = vec![0u8; max as usize];
    while tx.try_push(&big).is_ok() {}
    assert_eq!(tx.try_push(&big), Err(BytesPushError::Full));
    assert_eq!(tx.push_timeout(&big, SHORT), Err(BytesPushError::Timeout));
    assert_eq!(tx.push_deadline(&big, past()), Err(BytesPushError::Timeout));
    assert!(matches!(
        tx.reserve_timeout(max as usize, SHORT),
        Err(BytesPushError::Timeout)
    ));
    // Too large: at once, from every form.
    let huge = (max + 1) as usize;
    let too = BytesPushError::TooLarge { len: max + 1, max };
    assert!(matches!(tx.reserve(huge), Err(e) if e == too));
    assert!(matches!(tx.reserve_timeout(huge, T), Err(e) if e == too));
    // Drain with every receive form.
    assert_eq!(rx.pop().unwrap(), b"a");
    assert_eq!(rx.pop_timeout(T).unwrap(), b"b");
    assert_eq!(rx.pop_deadline(past()).unwrap(), b"c");
    assert_eq!(&rx.peek().unwrap()[..], b"d");
    rx.peek_timeout(T).unwrap().release();
    assert_eq!(&rx.peek_deadline(past()).unwrap()[..], b"e");
    tx.close();
    while rx.try_pop().is_ok() {}
    assert_eq!(rx.pop(), Err(PopError::Disconnected));
    assert_eq!(rx.pop_timeout(T), Err(PopError::Disconnected));
}

// ---- separate processes: a blocked untimed (or far-deadline) call is woken by another one ----

#[test]
fn child_main() {
    common::child_entry(|role, args| {
        let name = &args[0];
        let form = args[1].as_str();
        match role {
            // Block until an element comes, then report it.
            "pop" => {
                macro_rules! pop_with {
                    ($q:ty) => {{
                        let q = <$q>::open(name).unwrap();
                        let mut rx = q.consumer().unwrap();
                        common::report("waiting");
                        let got = match form {
                            "untimed" => rx.pop(),
                            "deadline" => rx.pop_deadline(Instant::now() + WAIT),
                            _ => rx.pop_timeout(WAIT),
                        };
                        common::report(&format!("{got:?}"));
                        // Then wait, untimed, for the producer's close.
                        common::report(&format!("{:?}", rx.pop()));
                    }};
                }
                match args[2].as_str() {
                    "spsc" => pop_with!(spsc::Queue<u64>),
                    "mpmc" => pop_with!(mpmc::Queue<u64>),
                    _ => {
                        let r = bytes::Ring::open(name).unwrap();
                        let mut rx = r.consumer().unwrap();
                        common::report("waiting");
                        let got = match form {
                            "untimed" => rx.pop(),
                            "deadline" => rx.pop_deadline(Instant::now() + WAIT),
                            _ => rx.pop_timeout(WAIT),
                        }
                        .map(|m| u64::from_le_bytes(m.try_into().unwrap()));
                        common::report(&format!("{got:?}"));
                        common::report(&format!("{:?}", rx.pop().map(drop)));
                    }
                }
            }
            // The queue is full: block until the parent pops, then close.
            "push" => {
                macro_rules! push_with {
                    ($q:ty) => {{
                        let q = <$q>::open(name).unwrap();
                        let mut tx = q.producer().unwrap();
                        common::report("waiting");
                        let r = match form {
                            "untimed" => tx.push(42),
                            "deadline" => tx.push_deadline(42, Instant::now() + WAIT),
                            _ => tx.push_timeout(42, WAIT),
                        };
                        common::report(&format!("{r:?}"));
                        tx.close();
                    }};
                }
                match args[2].as_str() {
                    "spsc" => push_with!(spsc::Queue<u64>),
                    "mpmc" => push_with!(mpmc::Queue<u64>),
                    _ => {
                        let r = bytes::Ring::open(name).unwrap();
                        let mut tx = r.producer().unwrap();
                        common::report("waiting");
                        let m = 42u64.to_le_bytes();
                        let r = match form {
                            "untimed" => tx.push(&m),
                            "deadline" => tx.push_deadline(&m, Instant::now() + WAIT),
                            _ => tx.push_timeout(&m, WAIT),
                        };
                        common::report(&format!("{r:?}"));
                        tx.close();
                    }
                }
            }
            // MPMC: pop (or pop_slice) until Disconnected, reporting every value.
            "drain" => {
                let q = mpmc::Queue::<u64>::open(name).unwrap();
                let mut rx = q.consumer().unwrap();
                common::report("waiting");
                let mut buf = [0u64; 4];
                loop {
                    let got = match form {
                        "slice" => rx.pop_slice(&mut buf).map(|n| buf[..n].to_vec()),
                        _ => rx.pop().map(|v| vec![v]),
                    };
                    match got {
                        Ok(vs) => vs.iter().for_each(|v| common::report(&format!("got {v}"))),
                        Err(e) => {
                            common::report(&format!("end {e:?}"));
                            break;
                        }
                    }
                }
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// The parent's end of one kind: create, push one, fill, pop one, close.
enum Parent {
    Spsc(spsc::Queue<u64>),
    Mpmc(mpmc::Queue<u64>),
    Bytes(bytes::Ring),
}

impl Parent {
    fn create(kind: &str, name: &str) -> Parent {
        match kind {
            "spsc" => Parent::Spsc(spsc::Queue::create(name, 2).unwrap()),
            "mpmc" => Parent::Mpmc(mpmc::Queue::create(name, 2).unwrap()),
            _ => Parent::Bytes(bytes::Ring::create(name, bytes::MIN_CAPACITY).unwrap()),
        }
    }

    /// Push `v` (blocking), then close the producer end.
    fn push_and_close(&self, v: u64) {
        match self {
            Parent::Spsc(q) => {
                let mut tx = q.producer().unwrap();
                tx.push(v).unwrap();
                tx.close();
            }
            Parent::Mpmc(q) => {
                let mut tx = q.producer().unwrap();
                tx.push(v).unwrap();
                tx.close();
            }
            Parent::Bytes(r) => {
                let mut tx = r.producer().unwrap();
                tx.push(&v.to_le_bytes()).unwrap();
                tx.close();
            }
        }
    }

    /// Fill the queue with 1, 2, … (no producer stays attached); returns how many.
    fn fill(&self) -> u64 {
        let mut n = 0;
        match self {
            Parent::Spsc(q) => {
                let mut tx = q.producer().unwrap();
                while tx.try_push(n + 1).is_ok() {
                    n += 1;
                }
            }
            Parent::Mpmc(q) => {
                let mut tx = q.producer().unwrap();
                while tx.try_push(n + 1).is_ok() {
                    n += 1;
                }
            }
            Parent::Bytes(r) => {
                let mut tx = r.producer().unwrap();
                while tx.try_push(&(n + 1).to_le_bytes()).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }

    /// Pop everything until Disconnected (blocking), in order.
    fn drain(&self) -> Vec<u64> {
        let mut v = Vec::new();
        match self {
            Parent::Spsc(q) => {
                let mut rx = q.consumer().unwrap();
                while let Ok(x) = rx.pop_timeout(T) {
                    v.push(x);
                }
            }
            Parent::Mpmc(q) => {
                let mut rx = q.consumer().unwrap();
                while let Ok(x) = rx.pop_timeout(T) {
                    v.push(x);
                }
            }
            Parent::Bytes(r) => {
                let mut rx = r.consumer().unwrap();
                while let Ok(m) = rx.pop_timeout(T) {
                    v.push(u64::from_le_bytes(m.try_into().unwrap()));
                }
            }
        }
        v
    }
}

const KINDS: [&str; 3] = ["spsc", "mpmc", "bytes"];
const FORMS: [&str; 3] = ["untimed", "timeout", "deadline"];

#[test]
fn a_blocked_pop_is_woken_by_another_process() {
    for kind in KINDS {
        for form in FORMS {
            let name = unique_name("qforms-pop");
            let _c = Cleanup::new(&[&name]);
            let p = Parent::create(kind, &name);
            let mut child = spawn_child("pop", &[&name, form, kind]);
            let mut lines = Lines::of(&mut child);
            lines.expect("waiting");
            p.push_and_close(7);
            lines.expect("Ok(7)");
            // The untimed wait ends with the close: Disconnected, not a hang.
            lines.expect("Err(Disconnected)");
            wait_ok(&mut child, WAIT);
        }
    }
}

#[test]
fn a_blocked_push_is_woken_by_another_process() {
    for kind in KINDS {
        for form in FORMS {
            let name = unique_name("qforms-push");
            let _c = Cleanup::new(&[&name]);
            let p = Parent::create(kind, &name);
            let n = p.fill();
            assert!(n >= 1, "{kind}: nothing fits");
            let mut child = spawn_child("push", &[&name, form, kind]);
            let mut lines = Lines::of(&mut child);
            lines.expect("waiting");
            // Drain (blocking pops): frees room for the child, whose push then succeeds, and
            // ends once the child closes after its push.
            let got = p.drain();
            lines.expect("Ok(())");
            wait_ok(&mut child, WAIT);
            let want: Vec<u64> = (1..=n).chain([42]).collect();
            assert_eq!(got, want, "{kind} {form}");
        }
    }
}

/// Several MPMC consumer processes sleep in `pop()` / `pop_slice()`; single pushes and
/// batches (each batch published with one wake of a sleeper per element) reach them all:
/// every value is delivered exactly once, and every consumer ends with `Disconnected` once
/// the producer closes.
#[test]
fn mpmc_sleeping_consumer_processes_get_every_message_once() {
    let name = unique_name("qforms-mpmc");
    let _c = Cleanup::new(&[&name]);
    let q = mpmc::Queue::<u64>::create(&name, 8).unwrap();
    let forms = ["one", "one", "slice"];
    let mut children: Vec<_> = forms
        .iter()
        .map(|f| spawn_child("drain", &[&name, f]))
        .collect();
    let mut lines: Vec<Lines> = children.iter_mut().map(Lines::of).collect();
    for l in &mut lines {
        l.expect("waiting");
    }
    let mut tx = q.producer().unwrap();
    let n = 60u64;
    let mut v = 1;
    while v <= n {
        if v % 3 == 0 {
            let batch: Vec<u64> = (v..(v + 5).min(n + 1)).collect();
            tx.push_slice(&batch).unwrap();
            v += batch.len() as u64;
        } else {
            tx.push(v).unwrap();
            v += 1;
        }
    }
    tx.close();
    let mut got = Vec::new();
    for (mut l, mut child) in lines.into_iter().zip(children) {
        loop {
            let line = l.next_line().expect("the consumer ended without a result");
            if let Some(x) = line.strip_prefix("got ") {
                got.push(x.parse::<u64>().unwrap());
            } else {
                assert_eq!(line, "end Disconnected");
                break;
            }
        }
        wait_ok(&mut child, WAIT);
    }
    got.sort_unstable();
    assert_eq!(got, (1..=n).collect::<Vec<_>>());
}
