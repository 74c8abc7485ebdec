//! Typed queues record their element type (`ShmType`): opening with another type fails with
//! an error naming both; opening by element size (the CLI's way) still works. And the queue
//! options builder: mode, lifetime, sparse, open timeout.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{unique_name, Cleanup};
use shmkit::queue::{bytes, mpmc, spsc};
use shmkit::segment::Lifetime;
use shmkit::{Error, ShmType};
use zerocopy::{FromBytes, Immutable, IntoBytes};

#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Point {
    x: f32,
    y: f32,
}
shmkit::shm_type!(Point);

#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Pair {
    a: u32,
    b: u32,
}

// A hand-written impl with a name of the user's choice.
impl ShmType for Pair {
    const TYPE_NAME: &'static str = "tests::Pair";
}

fn type_mismatch(e: Error, want: &str, found: &str) {
    let msg = e.to_string();
    assert!(
        matches!(e, Error::TypeMismatch { of: "elements", .. }),
        "expected TypeMismatch of elements, got {e:?}"
    );
    assert!(msg.contains(want) && msg.contains(found), "{msg}");
}

#[test]
fn spsc_same_size_other_type_is_refused_naming_both() {
    let name = unique_name("ty-spsc");
    let _c = Cleanup::new(&[&name]);
    let q = spsc::Queue::<Point>::create(&name, 8).unwrap();
    q.producer()
        .unwrap()
        .try_push(Point { x: 1.0, y: 2.0 })
        .unwrap();

    type_mismatch(
        spsc::Queue::<Pair>::open(&name).unwrap_err(),
        "tests::Pair",
        "Point",
    );
    type_mismatch(spsc::Queue::<u64>::open(&name).unwrap_err(), "u64", "Point");
    type_mismatch(
        spsc::Queue::<[u8; 8]>::open(&name).unwrap_err(),
        "[u8; 8]",
        "Point",
    );
    type_mismatch(
        spsc::Queue::<f64>::open_or_create(&name, 8).unwrap_err(),
        "f64",
        "Point",
    );
    // Another size: also named.
    type_mismatch(spsc::Queue::<u32>::open(&name).unwrap_err(), "u32", "Point");

    // The same type opens, and sees the element.
    let same = spsc::Queue::<Point>::open(&name).unwrap();
    assert_eq!(
        same.consumer().unwrap().try_pop(),
        Ok(Point { x: 1.0, y: 2.0 })
    );
    assert!(spsc::Queue::<Point>::open_or_create(&name, 8).is_ok());
}

#[test]
fn mpmc_same_size_other_type_is_refused_naming_both() {
    let name = unique_name("ty-mpmc");
    let _c = Cleanup::new(&[&name]);
    let q = mpmc::Queue::<Pair>::create(&name, 8).unwrap();
    q.producer().unwrap().try_push(Pair { a: 1, b: 2 }).unwrap();

    type_mismatch(
        mpmc::Queue::<Point>::open(&name).unwrap_err(),
        "Point",
        "tests::Pair",
    );
    type_mismatch(
        mpmc::Queue::<[u32; 2]>::open(&name).unwrap_err(),
        "[u32; 2]",
        "tests::Pair",
    );
    type_mismatch(
        mpmc::Queue::<i64>::open_or_create(&name, 8).unwrap_err(),
        "i64",
        "tests::Pair",
    );
    let same = mpmc::Queue::<Pair>::open(&name).unwrap();
    assert_eq!(same.consumer().unwrap().try_pop(), Ok(Pair { a: 1, b: 2 }));
}

#[test]
fn open_by_size_ignores_the_type_but_not_the_size() {
    for kind in ["spsc", "mpmc"] {
        let name = unique_name(&format!("ty-size-{kind}"));
        let _c = Cleanup::new(&[&name]);
        let v = 0x0102_0304_0506_0708u64;
        if kind == "spsc" {
            let q = spsc::Queue::<u64>::create(&name, 4).unwrap();
            q.producer().unwrap().try_push(v).unwrap();
            let raw = spsc::Queue::<[u8; 8]>::options()
                .open_by_size(&name)
                .unwrap();
            assert_eq!(raw.consumer().unwrap().try_pop(), Ok(v.to_ne_bytes()));
            let e = spsc::Queue::<[u8; 4]>::options()
                .open_by_size(&name)
                .unwrap_err();
            type_mismatch(e, "size 4", "u64");
            // The typed open still checks the type.
            assert!(spsc::Queue::<[u8; 8]>::open(&name).is_err());
        } else {
            let q = mpmc::Queue::<u64>::create(&name, 4).unwrap();
            q.producer().unwrap().try_push(v).unwrap();
            let raw = mpmc::Queue::<[u8; 8]>::options()
                .open_by_size(&name)
                .unwrap();
            assert_eq!(raw.consumer().unwrap().try_pop(), Ok(v.to_ne_bytes()));
            let e = mpmc::Queue::<[u8; 16]>::options()
                .open_by_size(&name)
                .unwrap_err();
            type_mismatch(e, "size 16", "u64");
        }
        // A snapshot of any type still works.
        let st = shmkit::queue::stat(&name).unwrap();
        assert_eq!((st.elem_size, st.elem_type.as_deref()), (8, Some("u64")));
    }
}

#[test]
fn array_and_primitive_names_are_stable() {
    assert_eq!(<u8 as ShmType>::TYPE_NAME, "u8");
    assert_eq!(<[f64; 3] as ShmType>::TYPE_NAME, "[f64; 3]");
    assert_eq!(<[Point; 2] as ShmType>::TYPE_NAME, "[Point; 2]");
    assert_ne!(
        spsc::layout_fingerprint::<u64>(),
        spsc::layout_fingerprint::<i64>()
    );
}

fn mode_of(name: &str) -> u32 {
    std::fs::metadata(format!("/dev/shm/{name}"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn options_mode_lifetime_sparse_for_each_kind() {
    for kind in ["spsc", "mpmc", "bytes"] {
        let name = unique_name(&format!("opts-{kind}"));
        let _c = Cleanup::new(&[&name]);
        let cap = 1 << 12;
        let (mode, life, sparse) = (0o640, Lifetime::Owned, true);
        let held: Box<dyn std::any::Any> = match kind {
            "spsc" => Box::new(
                spsc::Queue::<u64>::options()
                    .mode(mode)
                    .lifetime(life)
                    .sparse(sparse)
                    .create(&name, cap)
                    .unwrap(),
            ),
            "mpmc" => Box::new(
                mpmc::Queue::<u64>::options()
                    .mode(mode)
                    .lifetime(life)
                    .sparse(sparse)
                    .create(&name, cap)
                    .unwrap(),
            ),
            _ => Box::new(
                bytes::Ring::options()
                    .mode(mode)
                    .lifetime(life)
                    .sparse(sparse)
                    .create(&name, cap)
                    .unwrap(),
            ),
        };
        assert_eq!(mode_of(&name), mode, "{kind}");
        let h = shmkit::segment::probe(&name).unwrap().header.unwrap();
        assert_eq!(h.lifetime, Lifetime::Owned, "{kind}");
        drop(held);
        // Not unlinked on drop by default.
        assert!(shmkit::segment::probe(&name).is_ok());
    }
}

#[test]
fn options_unlink_on_drop_and_default_mode() {
    let name = unique_name("opts-unlink");
    let _c = Cleanup::new(&[&name]);
    let q = spsc::Queue::<u16>::options()
        .unlink_on_drop(true)
        .open_or_create(&name, 2)
        .unwrap();
    assert_eq!(mode_of(&name), 0o600);
    let h = shmkit::segment::probe(&name).unwrap().header.unwrap();
    assert_eq!(h.lifetime, Lifetime::Persistent);
    drop(q);
    assert!(matches!(
        spsc::Queue::<u16>::open(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn open_timeout_does_not_make_a_queue_open_wait_for_a_zero_byte_object() {
    // The segment layer waits (up to the open timeout) only for a *raw* object that is still
    // 0 bytes; queues are shmkit objects, published complete, so a 0-byte object at the name
    // is not a queue being built and is refused at once, whatever the timeout: as what `ls`
    // calls it, a raw object (it was Corrupt before opens named what a foreign object holds).
    let name = unique_name("opts-zero");
    let _c = Cleanup::new(&[&name]);
    std::fs::File::create(format!("/dev/shm/{name}")).unwrap();
    let long = Duration::from_secs(3600);
    let e = spsc::Queue::<u64>::options()
        .open_timeout(long)
        .open(&name)
        .unwrap_err();
    assert!(
        matches!(&e, Error::KindMismatch { found, .. } if found == "raw"),
        "{e:?}"
    );
    let e = mpmc::Queue::<u64>::options()
        .open_timeout(long)
        .open_or_create(&name, 4)
        .unwrap_err();
    assert!(
        matches!(&e, Error::KindMismatch { found, .. } if found == "raw"),
        "{e:?}"
    );
    let e = bytes::Ring::options()
        .open_timeout(Duration::ZERO)
        .open(&name)
        .unwrap_err();
    assert!(
        matches!(&e, Error::KindMismatch { found, .. } if found == "raw"),
        "{e:?}"
    );
}

/// 4096 bytes, alignment 8 (as `u64`).
type Big = [u64; 512];

/// Unsafe-code review: `mpmc::Queue::open_by_size` validated the geometry with one load of the
/// element size and compared the size of `T` with a second load (`Shared::stored_type`). A
/// peer changing the word between the two loads got a `Queue<Big>` whose slots were laid out
/// for 8-byte elements over a payload sized for them: every push and pop then copied 4096
/// bytes from slot offsets 16 bytes apart, past the end of the mapping. The peer here is a
/// thread writing through its own mapping (SPEC §1: the same as another process).
#[test]
fn mpmc_open_by_size_uses_the_element_size_it_validated() {
    use shmkit::{Kind, Segment};
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;
    let (small, name) = (unique_name("bysize-small"), unique_name("bysize-forged"));
    let _c = Cleanup::new(&[&small, &name]);
    // A genuine queue of u64 gives the control block.
    let q = mpmc::Queue::<u64>::create(&small, 4).unwrap();
    let tmpl = Segment::options()
        .kind(Kind::MPMC_QUEUE, mpmc::layout_fingerprint::<u64>())
        .open(&small)
        .unwrap();
    let payload = tmpl.len();
    let mut ctrl = vec![0u8; payload];
    tmpl.read_at(0, &mut ctrl).unwrap();
    drop((tmpl, q));
    // The type tag (payload 56: length, 64..128: name) names `Big` (same alignment).
    let tn = <Big as ShmType>::TYPE_NAME.as_bytes();
    ctrl[56..64].copy_from_slice(&(tn.len() as u64).to_le_bytes());
    ctrl[64..128].fill(0);
    ctrl[64..64 + tn.len()].copy_from_slice(tn);
    // The peer's object: Big's layout fingerprint, u64's geometry and payload size.
    let forged = Segment::options()
        .kind(Kind::MPMC_QUEUE, mpmc::layout_fingerprint::<Big>())
        .create_with(&name, payload as u64, |s| s.write_at(0, &ctrl))
        .unwrap();
    // The peer keeps changing the element size (payload offset 8) between 8 and 4096.
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let w = forged.atomic_u64(8).unwrap();
            while !stop.load(Relaxed) {
                for _ in 0..64 {
                    w.store(8, Relaxed);
                    w.store(4096, Relaxed);
                }
            }
        })
    };
    let mut opened = None;
    for _ in 0..100_000 {
        if let Ok(q) = mpmc::Queue::<Big>::options().open_by_size(&name) {
            opened = Some(q);
            break;
        }
    }
    stop.store(true, Relaxed);
    flipper.join().unwrap();
    // 4096-byte elements need 4480 + 4 * 4104 payload bytes; this one has 4480 + 4 * 16.
    assert!(
        opened.is_none(),
        "open_by_size gave a Queue<[u64; 512]> over a {payload}-byte payload laid out for \
         8-byte elements: its pushes and pops copy past the mapping"
    );
}
