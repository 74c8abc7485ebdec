//! The raw fixed-size queue handles (`spsc::RawQueue`, `mpmc::RawQueue`): any element type
//! opened as bytes, created with a run-time size (recorded as `[u8; N]`), slices of the wrong
//! length refused with an error, and raw and typed handles of separate processes exchanging
//! elements on one queue.

mod common;

use std::time::Duration;

use common::{spawn_child, unique_name, wait_ok, Cleanup, Lines, Rec100};
use shmkit::queue::{mpmc, spsc, PopError, PushError, RawError, TryPopError, TryPushError};
use shmkit::ShmType;
use zerocopy::{FromBytes, IntoBytes};

fn rec100(id: u32) -> Rec100 {
    let mut text = [0u8; 96];
    for (i, b) in text.iter_mut().enumerate() {
        *b = (id as usize * 7 + i) as u8;
    }
    Rec100 { id, text }
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn child_main() {
    common::child_entry(|role, args| {
        let name = &args[0];
        match role {
            // Raw producer: pushes the bytes of rec100(1..=3), then closes.
            "spsc-raw-push" | "mpmc-raw-push" => {
                let elems: Vec<Rec100> = (1..=3).map(rec100).collect();
                if role == "spsc-raw-push" {
                    let q = spsc::RawQueue::open(name).unwrap();
                    let mut tx = q.producer().unwrap();
                    for e in &elems {
                        tx.push_timeout(e.as_bytes(), WAIT).unwrap();
                    }
                    tx.close();
                } else {
                    let q = mpmc::RawQueue::open(name).unwrap();
                    let mut tx = q.producer().unwrap();
                    for e in &elems {
                        tx.push_timeout(e.as_bytes(), WAIT).unwrap();
                    }
                    tx.close();
                }
            }
            // Raw consumer: pops three elements and reports each one's id and whether its
            // bytes are rec100(id)'s.
            "spsc-raw-pop" | "mpmc-raw-pop" => {
                let mut out = [0u8; 100];
                let check = |out: &[u8; 100]| {
                    let r = Rec100::read_from_bytes(out).unwrap();
                    common::report(&format!("{} {}", r.id, r == rec100(r.id)));
                };
                if role == "spsc-raw-pop" {
                    let q = spsc::RawQueue::open(name).unwrap();
                    let mut rx = q.consumer().unwrap();
                    for _ in 0..3 {
                        rx.pop_into_timeout(&mut out, WAIT).unwrap();
                        check(&out);
                    }
                } else {
                    let q = mpmc::RawQueue::open(name).unwrap();
                    let mut rx = q.consumer().unwrap();
                    for _ in 0..3 {
                        rx.pop_into_timeout(&mut out, WAIT).unwrap();
                        check(&out);
                    }
                }
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// A typed `Queue<Rec100>` of this process and a raw handle of another exchange elements
/// both ways, for spsc and mpmc: the raw producer's bytes are popped as `Rec100` values, the
/// typed producer's values are popped by the raw consumer byte for byte.
#[test]
fn raw_and_typed_handles_of_separate_processes_exchange_elements() {
    macro_rules! exchange {
        ($kind:literal, $queue:ty) => {{
            let name = unique_name(concat!("raw", $kind));
            let _c = Cleanup::new(&[&name]);
            let q = <$queue>::create(&name, 2).unwrap();
            // Raw producer in a child, typed consumer here.
            let mut rx = q.consumer().unwrap();
            let mut child = spawn_child(concat!($kind, "-raw-push"), &[&name]);
            for id in 1..=3 {
                assert_eq!(rx.pop_timeout(WAIT), Ok(rec100(id)), $kind);
            }
            wait_ok(&mut child, WAIT);
            // The raw producer closed its side: drained, then Disconnected.
            assert_eq!(rx.pop_timeout(WAIT), Err(PopError::Disconnected), $kind);
            drop(rx);

            // Typed producer here, raw consumer in a child. The producer attaches first: the
            // side is still closed by the raw producer above, and a consumer that polled
            // before the attach cleared the bit would rightly get `Disconnected` (this test
            // failed so on a loaded machine).
            let mut tx = q.producer().unwrap();
            let mut child = spawn_child(concat!($kind, "-raw-pop"), &[&name]);
            let mut lines = Lines::of(&mut child);
            for id in 11..=13 {
                tx.push_timeout(rec100(id), WAIT).unwrap();
            }
            for id in 11..=13 {
                let want = format!("{id} true");
                assert_eq!(lines.next_line().as_deref(), Some(want.as_str()), $kind);
            }
            wait_ok(&mut child, WAIT);
        }};
    }
    exchange!("spsc", spsc::Queue::<Rec100>);
    exchange!("mpmc", mpmc::Queue::<Rec100>);
}

/// The `WrongLength` error of a slice of `len` bytes for 100-byte elements.
fn wrong<E>(len: usize) -> RawError<E> {
    RawError::WrongLength {
        len,
        elem_size: 100,
    }
}

/// A slice that is not one element long is refused with `WrongLength`, by every push and pop
/// form, and nothing is pushed or popped; the right length then goes through.
#[test]
fn raw_handles_refuse_slices_of_the_wrong_length() {
    let name = unique_name("rawlen");
    let _c = Cleanup::new(&[&name]);
    let q = spsc::RawQueue::options().create(&name, 100, 4).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    let e = rec100(5);
    let (short, long) = (&e.as_bytes()[..99], [e.as_bytes(), &[0]].concat());
    assert_eq!(tx.try_push(short), Err(wrong(99)));
    assert_eq!(tx.try_push(&long), Err(wrong(101)));
    assert_eq!(tx.try_push(&[]), Err(wrong(0)));
    assert_eq!(tx.push(short), Err(wrong(99)));
    assert_eq!(tx.push_timeout(&long, WAIT), Err(wrong(101)));
    assert!(q.is_empty());
    tx.try_push(e.as_bytes()).unwrap();
    let mut small = [0u8; 99];
    let mut big = [0u8; 101];
    assert_eq!(rx.try_pop_into(&mut small), Err(wrong(99)));
    assert_eq!(rx.pop_into(&mut big), Err(wrong(101)));
    assert_eq!(rx.pop_into_timeout(&mut [], WAIT), Err(wrong(0)));
    assert_eq!(q.len(), 1);
    let mut out = [0u8; 100];
    rx.try_pop_into(&mut out).unwrap();
    assert_eq!(out, e.as_bytes());
    assert_eq!(
        rx.try_pop_into(&mut out),
        Err(RawError::Queue(TryPopError::Empty))
    );
    assert_eq!(
        wrong::<PopError>(99).to_string(),
        "a slice of 99 bytes for elements of 100 bytes"
    );

    let name = unique_name("rawlenm");
    let _c = Cleanup::new(&[&name]);
    let q = mpmc::RawQueue::options().create(&name, 100, 2).unwrap();
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    assert_eq!(tx.try_push(short), Err(wrong(99)));
    assert_eq!(
        tx.push_deadline(&long, std::time::Instant::now()),
        Err(wrong(101))
    );
    assert!(q.is_empty());
    tx.try_push(e.as_bytes()).unwrap();
    tx.try_push(e.as_bytes()).unwrap();
    assert_eq!(
        tx.try_push(e.as_bytes()),
        Err(RawError::Queue(TryPushError::Full(())))
    );
    assert_eq!(
        tx.push_timeout(e.as_bytes(), Duration::ZERO),
        Err(RawError::Queue(PushError::Timeout(())))
    );
    assert_eq!(rx.try_pop_into(&mut small), Err(wrong(99)));
    assert_eq!(
        rx.pop_into_deadline(&mut big, std::time::Instant::now()),
        Err(wrong(101))
    );
    assert_eq!(q.len(), 2);
    rx.pop_into(&mut out).unwrap();
    assert_eq!(out, e.as_bytes());
}

/// A raw queue created with a run-time element size records what a typed queue of
/// `[u8; N]` records (type name, size, alignment: the same layout fingerprint), so typed
/// programs open it; sizes outside 1 byte to 1 MiB are refused, nothing created. An object
/// of another kind is not opened.
#[test]
fn raw_create_records_a_byte_array_and_opens_only_its_kind() {
    fn typed_open<const N: usize>(name: &str) {
        spsc::Queue::<[u8; N]>::open(name).unwrap();
        assert_eq!(
            spsc::RawQueue::open(name)
                .unwrap()
                .stat()
                .elem_type
                .as_deref(),
            Some(<[u8; N]>::TYPE_NAME)
        );
    }
    fn typed_open_mpmc<const N: usize>(name: &str) {
        mpmc::Queue::<[u8; N]>::open(name).unwrap();
        assert_eq!(
            mpmc::RawQueue::open(name)
                .unwrap()
                .stat()
                .elem_type
                .as_deref(),
            Some(<[u8; N]>::TYPE_NAME)
        );
    }
    let a = unique_name("rawcreate");
    let b = unique_name("rawcreatem");
    let _c = Cleanup::new(&[&a, &b]);
    drop(spsc::RawQueue::options().create(&a, 8192, 2).unwrap());
    typed_open::<8192>(&a);
    drop(mpmc::RawQueue::options().create(&b, 1, 2).unwrap());
    typed_open_mpmc::<1>(&b);
    // open_or_create of an existing queue of that element size opens it.
    assert_eq!(
        spsc::RawQueue::options()
            .open_or_create(&a, 8192, 2)
            .unwrap()
            .elem_size(),
        8192
    );
    // Another size: the element types differ.
    let e = spsc::RawQueue::options()
        .open_or_create(&a, 100, 2)
        .unwrap_err();
    assert!(e.to_string().contains("[u8; 100]"), "{e}");
    // Another kind is refused.
    assert!(mpmc::RawQueue::open(&a).is_err());
    assert!(spsc::RawQueue::open(&b).is_err());
    // Sizes the library refuses.
    let c = unique_name("rawcreatebad");
    let _d = Cleanup::new(&[&c]);
    for size in [0, (1 << 20) + 1] {
        let e = spsc::RawQueue::options().create(&c, size, 2).unwrap_err();
        assert!(e.to_string().contains("need 1..=1 MiB"), "{e}");
        let e = mpmc::RawQueue::options().create(&c, size, 2).unwrap_err();
        assert!(e.to_string().contains("need 1..=1 MiB"), "{e}");
        assert!(!std::path::Path::new(&format!("/dev/shm/{c}")).exists());
    }
    // The largest size.
    let q = mpmc::RawQueue::options()
        .unlink_on_drop(true)
        .create(&c, 1 << 20, 2)
        .unwrap();
    let big = vec![0xa5; 1 << 20];
    q.producer().unwrap().try_push(&big).unwrap();
    let mut out = vec![0; 1 << 20];
    q.consumer().unwrap().try_pop_into(&mut out).unwrap();
    assert!(out == big);
}

/// The raw handles take the same roles as the typed ones: an SPSC raw producer excludes a
/// typed one (and the reverse), and closing a raw producer disconnects a typed consumer.
#[test]
fn raw_handles_take_the_typed_roles() {
    let name = unique_name("rawrole");
    let _c = Cleanup::new(&[&name]);
    let q = spsc::Queue::<u64>::create(&name, 4).unwrap();
    let raw = spsc::RawQueue::open(&name).unwrap();
    assert_eq!(raw.elem_size(), 8);
    let mut rtx = raw.producer().unwrap();
    assert!(q.producer().is_err());
    let mut rx = q.consumer().unwrap();
    assert!(raw.consumer().is_err());
    rtx.try_push(&7u64.to_ne_bytes()).unwrap();
    rtx.close();
    assert_eq!(rx.try_pop(), Ok(7));
    assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
    drop(rtx);
    let _tx = q.producer().unwrap();
    assert!(raw.producer().is_err());
}
