//! Segment: create/open/open_or_create across processes, header validation, names, modes,
//! read-only attach, CPython interop.

mod common;

use common::{Cleanup, Lines};
use shmkit::segment::{fingerprint, Kind, Lifetime, Verdict};
use shmkit::{Error, Segment};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TEN_S: Duration = Duration::from_secs(10);

fn shm_path(name: &str) -> String {
    format!("/dev/shm/{name}")
}

/// Overwrite bytes of the object behind the API's back, as a buggy or hostile process would.
fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn truncate(name: &str, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The pattern `init` writes: a function of the creator's pid, 4 KiB long so that the
/// initialisation takes long enough for openers to arrive during it.
fn pattern(pid: u32) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i.wrapping_mul(31) ^ pid) as u8)
        .collect()
}

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        // Race open_or_create on `prefix-<round>` for every round the parent announces in
        // the control segment's word 0; report "created|opened <checksum>".
        // As another user (setpriv): create a segment, a list, a lock and a value under
        // the given names, readable and writable by everyone, and leave them.
        "squat" => {
            Segment::options().mode(0o666).create(&args[0], 64).unwrap();
            shmkit::list::ShareableList::options()
                .mode(0o666)
                .create(&args[1], &[shmkit::list::Item::Int(1)])
                .unwrap();
            shmkit::sync::Lock::options()
                .mode(0o666)
                .create(&args[2])
                .unwrap();
            shmkit::cell::Value::<u64>::options()
                .mode(0o666)
                .create(&args[3], 7)
                .unwrap();
            common::report("made");
        }
        "racer" => {
            let control = Segment::open(&args[0]).unwrap();
            let prefix = &args[1];
            let rounds: u64 = args[2].parse().unwrap();
            let go = control.atomic_u64(0).unwrap();
            for round in 1..=rounds {
                let deadline = Instant::now() + TEN_S;
                while go.load(Ordering::Acquire) < round {
                    assert!(
                        Instant::now() < deadline,
                        "parent never started round {round}"
                    );
                    std::hint::spin_loop();
                }
                let name = format!("{prefix}-{round}");
                let seg = Segment::options()
                    .open_or_create_with(&name, 4096, |s| {
                        s.write_at(0, &pattern(std::process::id()))
                    })
                    .unwrap();
                // Both racers may build; only one build is published, and it is the
                // creator recorded in the header.
                let created = seg.header().unwrap().creator_pid == std::process::id();
                let mut buf = vec![0u8; 4096];
                seg.read_at(0, &mut buf).unwrap();
                let sum: u64 = buf
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (i as u64 + 1) * *b as u64)
                    .sum();
                let creator = seg.header().unwrap().creator_pid;
                assert_eq!(
                    buf,
                    pattern(creator),
                    "contents are not the creator's initialisation"
                );
                common::report(&format!(
                    "{} {sum} {creator}",
                    if created { "created" } else { "opened" }
                ));
            }
        }
        "init-forever" => {
            Segment::options()
                .create_with(&args[0], 64, |_| {
                    common::report("in-init");
                    std::thread::sleep(Duration::from_secs(60));
                    Ok(())
                })
                .unwrap();
        }
        "sleeper" => {
            let seg = Segment::open(&args[0]).unwrap();
            // SAFETY: as in the parent: aligned, valid when zeroed, outlives `q`.
            let q = unsafe { &*(seg.as_mut_ptr() as *const shmkit::sync::WaitQueue) };
            // SAFETY: bytes 8..16 are accessed by this process only through this u32.
            let flag = unsafe { seg.atomic_u32(8).unwrap() };
            q.wait_until_timeout(|| flag.load(Ordering::Acquire) == 1, TEN_S)
                .expect("woken by notify_all");
        }
        "raw-racer" => {
            // A raw segment has no header to name its creator: each racer writes its pid
            // into the bytes it builds, and the published bytes say who won.
            let me = std::process::id().to_le_bytes();
            let seg = Segment::options()
                .raw(true)
                .open_or_create_with(&args[0], 100, |s| s.write_at(0, &me))
                .unwrap();
            let mut who = [0u8; 4];
            seg.read_at(0, &mut who).unwrap();
            common::report(if who == me { "created" } else { "opened" });
        }
        "open-or-create" => {
            let seg = Segment::options()
                .open_or_create_with(&args[0], 64, |s| s.write_at(0, b"fresh"))
                .unwrap();
            let mut buf = [0u8; 5];
            seg.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"fresh");
            let mine = seg.header().unwrap().creator_pid == std::process::id();
            common::report(if mine { "created" } else { "opened" });
        }
        "hold" => {
            // Create a segment and sit in the middle of nothing until killed.
            let _s = Segment::create(&args[0], 64).unwrap();
            common::report("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Runs under `unshare --mount` with a 64 MiB tmpfs on /dev/shm (its own, private).
        "tiny-shm" => {
            const MIB: u64 = 1 << 20;
            let free = shm_free();
            assert!(free <= 64 * MIB, "not the 64 MiB tmpfs: {free} bytes free");
            let name = "tiny-segment";
            match Segment::create(name, 128 * MIB) {
                Err(Error::NoSpace {
                    requested,
                    available,
                    ..
                }) => {
                    assert_eq!(requested, 128 * MIB + 128);
                    assert!(available <= 64 * MIB, "{available}");
                }
                other => panic!("128 MiB segment on a 64 MiB /dev/shm: {other:?}"),
            }
            match shmkit::queue::bytes::Ring::create("tiny-ring", 128 * MIB) {
                Err(Error::NoSpace { .. }) => {}
                other => panic!("128 MiB ring on a 64 MiB /dev/shm: {other:?}"),
            }
            // Room for one 40 MiB segment but not two: the second allocation fails part-way,
            // and gives back what it took.
            let first = Segment::create("tiny-first", 40 * MIB).unwrap();
            first.write_at(40 * MIB - 1, &[1]).unwrap();
            let before = shm_free();
            assert!(matches!(
                Segment::create("tiny-second", 40 * MIB),
                Err(Error::NoSpace { .. })
            ));
            assert_eq!(shm_free(), before, "the failed creation kept memory");
            assert!(!std::path::Path::new("/dev/shm/tiny-second").exists());
            assert!(common::temp_objects_of("tiny-second").is_empty());
            // Sparse creation is only sized: it succeeds (and would SIGBUS if touched).
            let sparse = Segment::options()
                .sparse(true)
                .create(name, 128 * MIB)
                .unwrap();
            assert_eq!(sparse.len() as u64, 128 * MIB);
            common::report("tiny-shm ok");
        }
        other => panic!("unknown role {other}"),
    });
}

/// Bytes free in /dev/shm (`statvfs`).
fn shm_free() -> u64 {
    let st = rustix::fs::statvfs("/dev/shm").unwrap();
    st.f_bavail * st.f_frsize
}

#[test]
fn open_or_create_race_between_processes_has_exactly_one_creator() {
    const ROUNDS: u64 = 100;
    let control_name = common::unique_name("race-ctl");
    let prefix = common::unique_name("race");
    let mut cleanup = Cleanup::new(&[&control_name]);
    for r in 1..=ROUNDS {
        cleanup.add(&format!("{prefix}-{r}"));
    }
    let control = Segment::create(&control_name, 64).unwrap();
    let rounds = ROUNDS.to_string();
    let mut a = common::spawn_child("racer", &[&control_name, &prefix, &rounds]);
    let mut b = common::spawn_child("racer", &[&control_name, &prefix, &rounds]);
    let (mut la, mut lb) = (Lines::of(&mut a), Lines::of(&mut b));
    for round in 1..=ROUNDS {
        control
            .atomic_u64(0)
            .unwrap()
            .store(round, Ordering::Release);
        let ra = la.next_line().expect("racer a reported");
        let rb = lb.next_line().expect("racer b reported");
        let (wa, wb): (Vec<&str>, Vec<&str>) = (ra.split(' ').collect(), rb.split(' ').collect());
        let creators = [wa[0], wb[0]].iter().filter(|w| **w == "created").count();
        assert_eq!(creators, 1, "round {round}: {ra:?} / {rb:?}");
        assert_eq!(
            wa[1..],
            wb[1..],
            "round {round}: both must see the same initialised contents"
        );
        Segment::unlink(&format!("{prefix}-{round}")).unwrap();
    }
    common::wait_ok(&mut a, TEN_S);
    common::wait_ok(&mut b, TEN_S);
}

fn fresh(tag: &str) -> (String, Cleanup) {
    let name = common::unique_name(tag);
    let c = Cleanup::new(&[&name]);
    let s = Segment::create(&name, 256).unwrap();
    s.write_at(0, b"payload").unwrap();
    (name, c)
}

fn open_quick(name: &str) -> Result<Segment, Error> {
    Segment::options()
        .open_timeout(Duration::from_millis(50))
        .open(name)
}

#[test]
fn each_corrupted_header_field_gives_its_error() {
    // (offset, bytes, check)
    type Check = fn(&Error) -> bool;
    let cases: &[(&str, u64, &[u8], Check)] = &[
        // Without the magic the object is not shmkit's at all: what it holds, as `ls` says
        // (it was Corrupt "magic is …" before opens named what a foreign object holds).
        (
            "magic",
            0,
            b"NOTSHMKT",
            |e| matches!(e, Error::KindMismatch { found, .. } if found == "raw"),
        ),
        ("version", 8, &1u32.to_le_bytes(), |e| {
            matches!(
                e,
                Error::VersionMismatch {
                    found: 1,
                    expected: 2,
                    ..
                }
            )
        }),
        (
            "kind",
            12,
            &7u32.to_le_bytes(),
            |e| matches!(e, Error::KindMismatch { found, .. } if found == "event"),
        ),
        ("fingerprint", 16, &1u64.to_le_bytes(), |e| {
            matches!(e, Error::LayoutMismatch { found: 1, .. })
        }),
        (
            "header_size",
            24,
            &64u64.to_le_bytes(),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("header_size")),
        ),
        (
            "payload_size",
            32,
            &1000u64.to_le_bytes(),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("payload_size")),
        ),
        (
            "payload_size overflow",
            32,
            &u64::MAX.to_le_bytes(),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("payload_size")),
        ),
        (
            "state invalid",
            56,
            &9u32.to_le_bytes(),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("state")),
        ),
        // A name shows only published objects, so any state but READY was written later:
        // corrupt at once, not waited for.
        (
            "state initializing",
            56,
            &0u32.to_le_bytes(),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("overwritten")),
        ),
        (
            "state 2 (version 1's failed)",
            56,
            &2u32.to_le_bytes(),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("state word is 2")),
        ),
        (
            "lifetime",
            60,
            &7u32.to_le_bytes(),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("lifetime")),
        ),
        (
            "flags",
            52,
            &1u32.to_le_bytes(),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("flags")),
        ),
    ];
    for (field, offset, bytes, check) in cases {
        let (name, _c) = fresh("corrupt");
        open_quick(&name).expect("intact segment opens");
        poke(&name, *offset, bytes);
        // A long timeout: opening a shmkit segment never waits, so the verdict is immediate.
        let slow = Segment::options().open_timeout(Duration::from_secs(3600));
        for err in [
            slow.open(&name).expect_err(field),
            slow.clone().read_only().open(&name).expect_err(field),
            slow.open_or_create(&name, 256).expect_err(field),
        ] {
            assert!(check(&err), "{field}: got {err:?}");
        }
        // Opening never removes or repairs anything.
        assert!(std::path::Path::new(&shm_path(&name)).exists(), "{field}");
        // Inspection says what is wrong, for every field an open checks whatever the kind.
        let verdict = shmkit::segment::probe(&name).unwrap().verdict;
        match *field {
            "magic" => assert_eq!(verdict, Verdict::Raw),
            "kind" | "fingerprint" => assert_eq!(verdict, Verdict::Valid),
            _ => assert!(
                matches!(verdict, Verdict::Invalid(_)),
                "{field}: {verdict:?}"
            ),
        }
    }
}

#[test]
fn truncated_segments_are_corrupt_not_sigbus() {
    for len in [1, 50, 127, 128, 200] {
        let (name, _c) = fresh("trunc");
        truncate(&name, len);
        let err = open_quick(&name).expect_err("truncated");
        assert!(matches!(err, Error::Corrupt { .. }), "len {len}: {err:?}");
    }
    // Zero bytes: nothing claims to be shmkit's (shmkit publishes sized objects only), so it
    // is a raw object, as `ls` says, refused at once (a raw open would wait for a foreign
    // creator to size it).
    let (name, _c) = fresh("trunc0");
    truncate(&name, 0);
    assert!(matches!(
        open_quick(&name),
        Err(Error::KindMismatch { found, .. }) if found == "raw"
    ));
    assert!(matches!(
        Segment::options()
            .raw(true)
            .open_timeout(Duration::from_millis(20))
            .open(&name),
        Err(Error::NotReady { .. })
    ));
}

#[test]
fn kind_and_fingerprint_are_checked() {
    let name = common::unique_name("kind");
    let _c = Cleanup::new(&[&name]);
    let fp = fingerprint(b"test object v1");
    Segment::options()
        .kind(Kind::EVENT, fp)
        .create(&name, 8)
        .unwrap();
    assert!(matches!(open_quick(&name), Err(Error::KindMismatch { .. })));
    let err = Segment::options()
        .kind(Kind::EVENT, fp ^ 1)
        .open(&name)
        .unwrap_err();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{err:?}");
    let s = Segment::options()
        .kind(Kind::EVENT, fp)
        .open(&name)
        .unwrap();
    assert_eq!(s.header().unwrap().kind, Kind::EVENT);
}

#[test]
fn a_blank_object_under_a_name_is_reported_and_left_alone() {
    // What a version-1 creator killed before writing its header left behind (and what a
    // foreign object full of zeros looks like): refused at once, never removed by an opener,
    // and never mistaken for one still being built.
    let name = common::unique_name("blank");
    let _c = Cleanup::new(&[&name]);
    std::fs::write(shm_path(&name), vec![0u8; 4096]).unwrap();
    let slow = Segment::options().open_timeout(Duration::from_secs(3600));
    for err in [
        slow.open(&name).unwrap_err(),
        slow.open_or_create(&name, 4096 - 128).unwrap_err(),
    ] {
        // Not shmkit's (no magic): a raw object, as `ls` says (it was Corrupt "magic is …").
        assert!(
            matches!(&err, Error::KindMismatch { found, .. } if found == "raw"),
            "{err:?}"
        );
    }
    assert!(std::path::Path::new(&shm_path(&name)).exists());
    assert_eq!(shmkit::segment::probe(&name).unwrap().verdict, Verdict::Raw);
}

#[test]
fn names_are_validated() {
    for bad in [
        "",
        "/",
        "/x",
        "a/b",
        "ü",
        ".",
        "..",
        "a b",
        ".shmkit",
        ".shmkit-tmp-0000000000000001-0-x",
    ] {
        assert!(
            matches!(Segment::create(bad, 8), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(Segment::open(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(Segment::unlink(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
    let long = "x".repeat(201);
    assert!(matches!(
        Segment::create(&long, 8),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn missing_and_existing_names() {
    let name = common::unique_name("exists");
    let _c = Cleanup::new(&[&name]);
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    assert!(matches!(
        Segment::unlink(&name),
        Err(Error::NotFound { .. })
    ));
    let _s = Segment::create(&name, 8).unwrap();
    assert!(matches!(
        Segment::create(&name, 8),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        Segment::options().raw(true).create(&name, 8),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn bad_sizes_and_ranges_are_errors() {
    let name = common::unique_name("sizes");
    let _c = Cleanup::new(&[&name]);
    assert!(matches!(
        Segment::create(&name, u64::MAX),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        Segment::options().raw(true).create(&name, 0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Segment::options().mode(0o10000).create(&name, 8),
        Err(Error::InvalidArgument { .. })
    ));
    let s = Segment::create(&name, 16).unwrap();
    assert!(s.write_at(10, &[0; 7]).is_err());
    assert!(s.write_at(u64::MAX, &[0; 2]).is_err());
    assert!(s.read_at(16, &mut [0; 1]).is_err());
    s.read_at(16, &mut []).unwrap();
    assert!(s.atomic_u64(4).is_err()); // misaligned
    assert!(s.atomic_u64(16).is_err()); // past the end
}

#[test]
fn mode_is_0600_unless_asked() {
    let a = common::unique_name("mode");
    let b = common::unique_name("mode");
    let _c = Cleanup::new(&[&a, &b]);
    let _sa = Segment::create(&a, 8).unwrap();
    // 0666 is what the umask (022 here, 002 elsewhere) would cut: it must survive exactly.
    let _sb = Segment::options().mode(0o666).create(&b, 8).unwrap();
    let mode = |n: &str| std::fs::metadata(shm_path(n)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&a), 0o600);
    assert_eq!(mode(&b), 0o666);
}

#[test]
fn read_only_attach_maps_prot_read() {
    let name = common::unique_name("ro");
    let _c = Cleanup::new(&[&name]);
    let w = Segment::create(&name, 4096).unwrap();
    w.write_at(0, b"hi").unwrap();
    let r = Segment::open_read_only(&name).unwrap();
    let mut buf = [0; 2];
    r.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    // The mapping of this object at r's address is read-only shared ("r--s").
    let addr = r.as_ptr() as usize - shmkit::segment::HEADER_SIZE;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.starts_with(&format!("{addr:x}-")) && l.contains(&name))
        .expect("mapping listed");
    assert!(line.split_whitespace().nth(1) == Some("r--s"), "{line}");
}

#[test]
fn unlink_on_drop_removes_only_its_own_object() {
    let name = common::unique_name("own");
    let _c = Cleanup::new(&[&name]);
    {
        let _s = Segment::options()
            .unlink_on_drop(true)
            .create(&name, 8)
            .unwrap();
        assert!(std::path::Path::new(&shm_path(&name)).exists());
    }
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
    // A handle whose name was replaced does not remove the replacement.
    let old = Segment::options()
        .unlink_on_drop(true)
        .create(&name, 8)
        .unwrap();
    Segment::unlink(&name).unwrap();
    let _new = Segment::create(&name, 8).unwrap();
    drop(old);
    assert!(std::path::Path::new(&shm_path(&name)).exists());
}

#[test]
fn a_creator_inside_init_shows_nothing_under_the_name() {
    use std::sync::atomic::AtomicU32;
    let name = common::unique_name("slow");
    let _c = Cleanup::new(&[&name]);
    // 1: the creator is inside init; 2: the test has looked.
    let step = AtomicU32::new(0);
    std::thread::scope(|s| {
        let creator = s.spawn(|| {
            Segment::options()
                .create_with(&name, 8, |seg| {
                    step.store(1, Ordering::SeqCst);
                    let deadline = Instant::now() + TEN_S;
                    while step.load(Ordering::SeqCst) != 2 {
                        assert!(Instant::now() < deadline, "the test never looked");
                        std::thread::yield_now();
                    }
                    seg.write_at(0, b"12345678")
                })
                .unwrap()
        });
        let deadline = Instant::now() + TEN_S;
        while step.load(Ordering::SeqCst) != 1 {
            assert!(Instant::now() < deadline);
            std::thread::yield_now();
        }
        // Mid-build, the name does not exist for anyone; the object is under a temporary
        // name that listings hide.
        assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
        assert!(matches!(
            shmkit::segment::probe(&name),
            Err(Error::NotFound { .. })
        ));
        assert_eq!(common::temp_objects_of(&name).len(), 1);
        assert!(shmkit::segment::list()
            .unwrap()
            .iter()
            .all(|p| !p.name.contains(&name)));
        step.store(2, Ordering::SeqCst);
        drop(creator.join().unwrap());
        // Published: fully initialised, and nothing temporary is left.
        let seg = Segment::open(&name).unwrap();
        let mut buf = [0; 8];
        seg.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"12345678");
        assert!(common::temp_objects_of(&name).is_empty());
    });
}

#[test]
fn a_creator_killed_while_building_wedges_nothing() {
    let name = common::unique_name("killinit");
    let _c = Cleanup::new(&[&name]);
    let mut child = common::spawn_child("init-forever", &[&name]);
    Lines::of(&mut child).expect("in-init");
    common::kill9(&mut child);
    // Nothing is visible under the name: opens say so at once, and listings hide the
    // abandoned temporary object.
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
    let temps = common::temp_objects_of(&name);
    assert_eq!(temps.len(), 1, "{temps:?}");
    // Another process creates the name as if nothing had happened.
    let mut other = common::spawn_child("open-or-create", &[&name]);
    assert_eq!(
        Lines::of(&mut other).next_line().as_deref(),
        Some("created")
    );
    common::wait_ok(&mut other, TEN_S);
    // gc removes the dead creator's temporary object (and only it: the new object is
    // persistent).
    let report = shmkit::segment::gc(&shmkit::segment::GcOptions::new().prefix(&name)).unwrap();
    let removed: Vec<_> = report
        .iter()
        .filter(|e| e.action == shmkit::segment::GcAction::Removed)
        .map(|e| e.file.clone())
        .collect();
    assert_eq!(removed, temps, "{report:?}");
    assert!(common::temp_objects_of(&name).is_empty());
    assert!(std::path::Path::new(&shm_path(&name)).exists());
}

#[test]
fn init_panic_leaves_nothing() {
    let name = common::unique_name("panic");
    let _c = Cleanup::new(&[&name]);
    let r = std::panic::catch_unwind(|| {
        Segment::options()
            .create_with(&name, 8, |_| panic!("initialiser panicked"))
            .unwrap();
    });
    assert!(r.is_err());
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
    assert!(common::temp_objects_of(&name).is_empty());
}

#[test]
fn open_or_create_checks_the_size_of_an_existing_segment() {
    let name = common::unique_name("size");
    let _c = Cleanup::new(&[&name]);
    Segment::create(&name, 64).unwrap();
    assert_eq!(Segment::open_or_create(&name, 64).unwrap().len(), 64);
    let err = Segment::open_or_create(&name, 4096).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { what, .. } if what.contains("a payload of 64 bytes")),
        "{err:?}"
    );
}

#[test]
fn huge_timeouts_mean_no_deadline() {
    let name = common::unique_name("maxto");
    let _c = Cleanup::new(&[&name]);
    Segment::create(&name, 8).unwrap();
    Segment::options()
        .open_timeout(Duration::MAX)
        .open(&name)
        .unwrap();
    let q = shmkit::sync::WaitQueue::new();
    q.wait_until_timeout(|| true, Duration::MAX).unwrap();
    // Every blocking call that takes a timeout treats Duration::MAX as "no deadline".
    let qn = common::unique_name("maxto-q");
    let ln = common::unique_name("maxto-l");
    let _c2 = Cleanup::new(&[&qn, &ln]);
    let queue = shmkit::queue::spsc::Queue::<u64>::create(&qn, 4).unwrap();
    let (mut tx, mut rx) = (queue.producer().unwrap(), queue.consumer().unwrap());
    tx.push_timeout(7, Duration::MAX).unwrap();
    assert_eq!(rx.pop_timeout(Duration::MAX).unwrap(), 7);
    let lock = shmkit::sync::Lock::create(&ln).unwrap();
    drop(lock.lock_timeout(Duration::MAX).unwrap());
}

#[test]
fn fifos_and_symlinks_in_dev_shm_are_refused() {
    let fifo = common::unique_name("fifo");
    let link = common::unique_name("link");
    let target = std::env::temp_dir().join(common::unique_name("target"));
    let _c = Cleanup::new(&[&fifo, &link]);
    let made = std::process::Command::new("mkfifo")
        .arg(shm_path(&fifo))
        .status()
        .unwrap();
    assert!(made.success());
    for opts in [Segment::options(), Segment::options().raw(true)] {
        let err = opts.open(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
    assert!(shmkit::segment::probe(&fifo).is_err());
    std::fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink(&target, shm_path(&link)).unwrap();
    let err = Segment::options().raw(true).open(&link).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    let _ = std::fs::remove_file(&target);
}

#[test]
fn notify_all_wakes_every_sleeping_process() {
    use shmkit::sync::WaitQueue;
    let name = common::unique_name("wakeall");
    let _c = Cleanup::new(&[&name]);
    let seg = Segment::create(&name, 64).unwrap();
    // SAFETY: the payload is 64-byte aligned, zeroed (a valid WaitQueue), and outlives `q`.
    let q = unsafe { &*(seg.as_mut_ptr() as *const WaitQueue) };
    // SAFETY: bytes 8..16 are accessed by this process only through this u32.
    let flag = unsafe { seg.atomic_u32(8).unwrap() };
    let mut children: Vec<_> = (0..3)
        .map(|_| common::spawn_child("sleeper", &[&name]))
        .collect();
    let deadline = Instant::now() + TEN_S;
    while q.sleepers() < 3 {
        assert!(Instant::now() < deadline, "children never parked");
        std::thread::sleep(Duration::from_millis(1));
    }
    flag.store(1, Ordering::Release);
    q.notify_all();
    for c in &mut children {
        common::wait_ok(c, TEN_S);
    }
}

#[test]
fn raw_open_or_create_race_has_one_creator() {
    for _ in 0..20 {
        let name = common::unique_name("rawrace");
        let _c = Cleanup::new(&[&name]);
        let mut kids: Vec<_> = (0..2)
            .map(|_| common::spawn_child("raw-racer", &[&name]))
            .collect();
        let reports: Vec<String> = kids
            .iter_mut()
            .map(|k| Lines::of(k).next_line().expect("report"))
            .collect();
        for k in &mut kids {
            common::wait_ok(k, TEN_S);
        }
        assert_eq!(
            reports.iter().filter(|r| *r == "created").count(),
            1,
            "{reports:?}"
        );
    }
}

#[test]
fn failed_init_unlinks() {
    let name = common::unique_name("initfail");
    let _c = Cleanup::new(&[&name]);
    let err = Segment::options().create_with(&name, 8, |s| {
        Err(shmkit::Error::Corrupt {
            name: s.name().to_owned(),
            what: "test".into(),
        })
    });
    assert!(err.is_err());
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
    assert!(common::temp_objects_of(&name).is_empty());
}

#[test]
fn creator_liveness_in_header() {
    let name = common::unique_name("alive");
    let _c = Cleanup::new(&[&name]);
    let mut child = common::spawn_child("hold", &[&name]);
    Lines::of(&mut child).expect("ready");
    let p = shmkit::segment::probe(&name).unwrap();
    assert_eq!(p.creator, shmkit::Liveness::Alive);
    assert_eq!(p.header.as_ref().unwrap().creator_pid, child.id());
    common::kill9(&mut child);
    assert_eq!(
        shmkit::segment::probe(&name).unwrap().creator,
        shmkit::Liveness::Dead
    );
    // The segment itself outlives its creator until unlinked.
    Segment::open(&name).unwrap();
}

const PY_CREATE: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1], create=True, size=1000)
resource_tracker.unregister(shm._name, "shared_memory")  # Rust owns it from here
shm.buf[:11] = b"from python"
shm.close()
print("ok")
"#;

const PY_ATTACH: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(name=sys.argv[1])
resource_tracker.unregister(shm._name, "shared_memory")  # gh-82300: do not unlink on exit
print(shm.size, bytes(shm.buf[:9]).decode())
shm.buf[9:20] = b"and back.."[:11].ljust(11, b"!")
shm.close()
"#;

#[test]
fn cpython_interop_both_directions() {
    for py in common::pythons() {
        // Python creates, Rust opens raw.
        let name = common::unique_name("py2rs");
        let _c = Cleanup::new(&[&name]);
        assert_eq!(
            common::python(&py, PY_CREATE, &[&name]).trim(),
            "ok",
            "{py}"
        );
        let seg = Segment::options().raw(true).open(&name).unwrap();
        assert!(seg.is_raw());
        assert_eq!(seg.len(), 1000, "{py}: size is fstat's, unrounded");
        let mut buf = [0u8; 11];
        seg.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"from python", "{py}");
        // Without .raw(true) it is not a shmkit segment: a raw one, as `ls` says.
        let err = open_quick(&name).unwrap_err();
        assert!(
            matches!(&err, Error::KindMismatch { found, .. } if found == "raw"),
            "{py}: {err:?}"
        );

        // Rust creates raw, Python attaches, reads and writes; Rust sees the write.
        let name = common::unique_name("rs2py");
        let _c = Cleanup::new(&[&name]);
        let seg = Segment::options().raw(true).create(&name, 777).unwrap();
        seg.write_at(0, b"from rust").unwrap();
        let out = common::python(&py, PY_ATTACH, &[&name]);
        assert_eq!(out.trim(), "777 from rust", "{py}");
        let mut buf = [0u8; 11];
        seg.read_at(9, &mut buf).unwrap();
        assert_eq!(&buf, b"and back..!", "{py}");
        assert!(
            std::path::Path::new(&shm_path(&name)).exists(),
            "{py}: Python must not unlink it"
        );
    }
    // A zero-filled foreign object (what a fresh CPython SharedMemory holds) is not a shmkit
    // segment: refused at once, whatever the open timeout.
    let name = common::unique_name("zeros");
    let _c = Cleanup::new(&[&name]);
    Segment::options().raw(true).create(&name, 4096).unwrap();
    let err = Segment::options()
        .open_timeout(Duration::from_secs(3600))
        .open(&name)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "segment {name:?} holds no shmkit object (a raw segment), not a segment (open it \
             with .raw(true))"
        )
    );
}

#[test]
fn read_at_sees_only_whole_words_that_write_at_wrote() {
    // A writer thread stores generation g into every 8-byte word of the payload (g in all
    // four 16-bit lanes) with write_at; a reader copies it with read_at through a read-only
    // handle, whole and through an unaligned window. Every aligned word the copy covers must
    // hold one generation (never bytes of two), a word's generation never goes back, and
    // after the writer is done the reader sees its last generation everywhere.
    use std::sync::atomic::AtomicBool;
    const LEN: usize = 4096;
    const GENS: u64 = 5000;
    const LANES: u64 = 0x0001_0001_0001_0001;
    let name = common::unique_name("racecopy");
    let _c = Cleanup::new(&[&name]);
    let w = Segment::create(&name, LEN as u64).unwrap();
    let r = Segment::open_read_only(&name).unwrap();
    let done = AtomicBool::new(false);
    let word_gen = |i: usize, c: &[u8]| {
        let v = u64::from_le_bytes(c.try_into().unwrap());
        assert_eq!(v, (v & 0xffff) * LANES, "word {i} is torn: {v:#018x}");
        v & 0xffff
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            for g in 1..=GENS {
                let buf: Vec<u8> = (0..LEN / 8)
                    .flat_map(|_| (g * LANES).to_le_bytes())
                    .collect();
                w.write_at(0, &buf).unwrap();
            }
            // Release pairs with the reader's Acquire load of `done`.
            done.store(true, Ordering::Release);
        });
        let mut last = vec![0u64; LEN / 8];
        let mut buf = vec![0u8; LEN];
        let mut window = vec![0u8; LEN - 6];
        loop {
            // Acquire pairs with the writer's Release store: once set, the copy below sees
            // the last generation.
            let finished = done.load(Ordering::Acquire);
            r.read_at(0, &mut buf).unwrap();
            for (i, c) in buf.chunks_exact(8).enumerate() {
                let g = word_gen(i, c);
                assert!(g >= last[i], "word {i} went back from {} to {g}", last[i]);
                last[i] = g;
            }
            // Payload bytes 3..LEN-3: the aligned words 8..LEN-8 lie whole inside it, at
            // window offset 5.
            r.read_at(3, &mut window).unwrap();
            for (i, c) in window[5..].chunks_exact(8).take(LEN / 8 - 2).enumerate() {
                word_gen(i + 1, c);
            }
            if finished {
                break;
            }
        }
        assert!(last.iter().all(|&g| g == GENS), "{last:?}");
    });
}

#[test]
fn lifetime_is_recorded_and_persistent_by_default() {
    let a = common::unique_name("life");
    let b = common::unique_name("life");
    let r = common::unique_name("life-raw");
    let _c = Cleanup::new(&[&a, &b, &r]);
    let sa = Segment::create(&a, 8).unwrap();
    assert_eq!(sa.header().unwrap().lifetime, Lifetime::Persistent);
    let sb = Segment::options()
        .lifetime(Lifetime::Owned)
        .create(&b, 8)
        .unwrap();
    assert_eq!(sb.header().unwrap().lifetime, Lifetime::Owned);
    let h = shmkit::segment::probe(&b).unwrap().header.unwrap();
    assert_eq!(h.lifetime, Lifetime::Owned);
    assert_ne!(h.creator_token, 0);
    assert_eq!(h.creator_pid, std::process::id());
    assert_eq!(
        Segment::open(&b).unwrap().header().unwrap().lifetime,
        Lifetime::Owned
    );
    // A raw segment has nowhere to record it.
    let err = Segment::options()
        .raw(true)
        .lifetime(Lifetime::Owned)
        .create(&r, 8)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(!std::path::Path::new(&shm_path(&r)).exists());
}

#[test]
fn creating_more_than_dev_shm_holds_is_no_space() {
    const GIB: u64 = 1 << 30;
    let st = rustix::fs::statvfs("/dev/shm").unwrap();
    assert!(
        st.f_blocks != 0,
        "/dev/shm has no size limit: this test would allocate until memory runs out"
    );
    let free = st.f_bavail * st.f_frsize;
    let total = st.f_blocks * st.f_frsize;
    // Beyond the whole filesystem, so tmpfs refuses before allocating a page.
    let ask = total.max(free) + 4 * GIB;
    let name = common::unique_name("nospace");
    let _c = Cleanup::new(&[&name]);
    for (opts, header) in [(Segment::options(), 128), (Segment::options().raw(true), 0)] {
        let err = opts.create(&name, ask).unwrap_err();
        match &err {
            Error::NoSpace {
                requested,
                available,
                ..
            } => {
                assert_eq!(*requested, ask + header);
                assert!(*available <= total && *available < *requested, "{err}");
                let msg = err.to_string();
                assert!(
                    msg.contains(&requested.to_string()) && msg.contains(&available.to_string()),
                    "{msg}"
                );
            }
            other => panic!("expected NoSpace, got {other:?}"),
        }
        assert!(!std::path::Path::new(&shm_path(&name)).exists());
        assert!(common::temp_objects_of(&name).is_empty());
    }
    // Sparse: only sized, so it succeeds (touching it would SIGBUS; this test does not).
    let seg = Segment::options().sparse(true).create(&name, ask).unwrap();
    assert_eq!(seg.len() as u64, ask);
    assert_eq!(std::fs::metadata(shm_path(&name)).unwrap().len(), ask + 128);
}

#[test]
fn a_full_dev_shm_is_no_space_not_sigbus() {
    // A private 64 MiB tmpfs on /dev/shm, in a mount namespace of the child's own. If this
    // cannot be set up (no unshare, no privilege), the test fails: it must not pass unrun.
    let mut cmd = common::child_command_under(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64m,mode=1777 shmkit-test /dev/shm && exec \"$0\" \"$@\"",
        ],
        "tiny-shm",
        &[],
    );
    let mut child = cmd.spawn().expect("run unshare");
    let line = Lines::of(&mut child).next_line();
    let status = common::wait_exit(&mut child, Duration::from_secs(60));
    assert!(
        status.success() && line.as_deref() == Some("tiny-shm ok"),
        "child under unshare --mount: {status}, reported {line:?} (no SIGBUS must happen, and \
         unshare/mount must work: this test needs root)"
    );
}

/// A raw object opened as a shmkit one: the error suggests `.raw(true)` only to an opener of a
/// plain segment, the one kind with a raw form (a lock or a cell has none), whether the object
/// is large enough for a header (wrong magic) or not (too small).
#[test]
fn the_raw_hint_is_given_only_where_a_raw_open_exists() {
    let big = common::unique_name("rawhint");
    let small = common::unique_name("rawhint-s");
    let _c = Cleanup::new(&[&big, &small]);
    drop(Segment::options().raw(true).create(&big, 4096).unwrap());
    drop(Segment::options().raw(true).create(&small, 8).unwrap());
    for name in [&big, &small] {
        let Err(seg) = Segment::open(name) else {
            panic!("a raw object opened as a shmkit segment")
        };
        assert!(seg.to_string().contains(".raw(true)"), "{seg}");
        let Err(lock) = shmkit::sync::Lock::open(name) else {
            panic!("a raw object opened as a lock")
        };
        assert!(matches!(lock, Error::KindMismatch { .. }), "{lock:?}");
        assert!(!lock.to_string().contains("raw(true)"), "{lock}");
        let Err(cell) = shmkit::cell::Value::<u64>::open(name) else {
            panic!("a raw object opened as a cell")
        };
        assert!(!cell.to_string().contains("raw(true)"), "{cell}");
    }
}

/// `ObjectFile::read` sizes its buffer by what the caller asks, up to the object's size: all
/// of a 1 TiB sparse object is an out-of-memory error, not an allocation abort (a library
/// caller's process would die).
#[test]
fn object_file_read_of_a_huge_sparse_object_is_an_error_not_an_abort() {
    let name = common::unique_name("objfile-huge");
    let _c = common::Cleanup::new(&[&name]);
    common::sparse_raw(&name, 1 << 40);
    let f = shmkit::segment::ObjectFile::open(&name).unwrap();
    assert_eq!(f.read(0, 8).unwrap(), [0u8; 8]);
    let e = f.read(0, usize::MAX).unwrap_err();
    assert!(e.to_string().contains("memory"), "{e}");
}

/// Multi-user review finding: `open_or_create` with a private mode (0600) adopted an object
/// another user had created under the name first (world-readable and writable, theirs): the
/// caller's data went where that user reads, writes and truncates it. Now refused, naming
/// the owner and mode, for every kind (segments, lists, sync objects, cells); a mode that
/// shares the object with others adopts it as before. Needs root (it runs the other user,
/// `nobody`, with `setpriv`), as CI runs the tests: as another user the test fails, saying so.
#[test]
fn open_or_create_with_a_private_mode_refuses_another_users_object() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root: it runs user nobody with setpriv"
    );
    let names: Vec<String> = ["seg", "list", "lock", "value"]
        .iter()
        .map(|k| common::unique_name(&format!("squat-{k}")))
        .collect();
    let _c = Cleanup::new(&names);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let mut child = common::child_command_under(&nobody, "squat", &refs)
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut child);
    assert_eq!(lines.next_line().as_deref(), Some("made"));
    common::wait_ok(&mut child, TEN_S);
    let refused = |what: &str, r: Result<(), Error>, name: &str| {
        let e = r.expect_err(what).to_string();
        assert!(
            e.contains("uid 65534") && e.contains("0666") && e.contains("refused"),
            "{what}: {e}"
        );
        let st = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
        assert_eq!((st.uid(), st.mode() & 0o777), (65534, 0o666), "{what}");
    };
    refused(
        "segment",
        Segment::options()
            .mode(0o600)
            .open_or_create(&names[0], 64)
            .map(drop),
        &names[0],
    );
    refused(
        "list",
        shmkit::list::ShareableList::options()
            .mode(0o600)
            .open_or_create(&names[1], &[shmkit::list::Item::Int(1)])
            .map(drop),
        &names[1],
    );
    refused(
        "lock",
        shmkit::sync::Lock::options()
            .mode(0o600)
            .open_or_create(&names[2])
            .map(drop),
        &names[2],
    );
    refused(
        "value",
        shmkit::cell::Value::<u64>::options()
            .mode(0o600)
            .open_or_create(&names[3], 0)
            .map(drop),
        &names[3],
    );
    // The default mode is private too (0600).
    refused(
        "default mode",
        Segment::open_or_create(&names[0], 64).map(drop),
        &names[0],
    );
    // Asked to share it (group or other bits): whoever made it, it is adopted.
    let s = Segment::options()
        .mode(0o660)
        .open_or_create(&names[0], 64)
        .unwrap();
    assert_eq!(s.len(), 64);
    let v = shmkit::cell::Value::<u64>::options()
        .mode(0o644)
        .open_or_create(&names[3], 0)
        .unwrap();
    assert_eq!(v.get().unwrap(), 7);
    // A plain open is not an open-or-create: the caller asked for that name's object.
    Segment::open(&names[0]).unwrap();
}

/// New-user walkthrough: opening a ShareableList (shmkit- or CPython-made) or a raw object as
/// a lock, a queue, a value or a frames channel said "corrupt: magic is [06, 00, …]". An
/// object without shmkit's magic is not a corrupt shmkit object: the open says what it holds,
/// as `shmkit ls` names it (`Error::KindMismatch`), through every typed open; an object that
/// has the magic and fails a check stays `Corrupt`.
#[test]
fn an_object_without_the_magic_is_named_not_called_corrupt() {
    let list = common::unique_name("foreign-list");
    let cpy = common::unique_name("foreign-cpylist");
    let raw = common::unique_name("foreign-raw");
    let small = common::unique_name("foreign-small");
    let _c = Cleanup::new(&[&list, &cpy, &raw, &small]);
    drop(shmkit::list::ShareableList::create(&list, &[shmkit::list::Item::Int(6)]).unwrap());
    // 16 zero bytes are CPython's empty ShareableList (what `ShareableList([])` makes).
    drop(Segment::options().raw(true).create(&cpy, 16).unwrap());
    let s = Segment::options().raw(true).create(&raw, 4096).unwrap();
    s.write_at(0, &[6; 64]).unwrap();
    drop(Segment::options().raw(true).create(&small, 5).unwrap()); // smaller than a header
    for (name, holds, found) in [
        (&list, "a shareable-list", "shareable-list"),
        (
            &cpy,
            "a ShareableList made by CPython",
            "shareable-list (cpython)",
        ),
        (&raw, "no shmkit object (a raw segment)", "raw"),
        (&small, "no shmkit object (a raw segment)", "raw"),
    ] {
        assert_eq!(shmkit::segment::probe(name).unwrap().holds(), holds);
        let frames = |e: shmkit::frames::AttachError| match e {
            shmkit::frames::AttachError::Segment(e) => e,
            e => panic!("{name}: {e}"),
        };
        let opens: [(&str, Result<(), Error>); 7] = [
            ("a lock", shmkit::sync::Lock::open(name).map(drop)),
            ("an event", shmkit::sync::Event::open(name).map(drop)),
            (
                "an spsc queue",
                shmkit::queue::spsc::Queue::<u64>::open(name).map(drop),
            ),
            (
                "a bytes-ring",
                shmkit::queue::bytes::Ring::open(name).map(drop),
            ),
            ("a queue", shmkit::queue::stat(name).map(drop)),
            (
                "a frames channel",
                shmkit::frames::FramesOptions::<u64>::new()
                    .subscriber(name)
                    .map(drop)
                    .map_err(frames),
            ),
            ("a frames channel", shmkit::frames::stat(name).map(drop)),
        ];
        for (what, r) in opens {
            let e = r.expect_err(what);
            assert!(
                matches!(&e, Error::KindMismatch { found: f, .. } if f == found),
                "{name} as {what}: {e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!("segment {name:?} holds {holds}, not {what}")
            );
        }
        // A cell names it in the cells' words, as it names another kind of shmkit object.
        let e = shmkit::cell::Value::<u64>::open(name)
            .map(drop)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("segment {name:?} holds {holds}, asked for Value<Q>")
        );
        // A plain segment's open points to its raw form for bytes without a header.
        let e = Segment::open(name).unwrap_err();
        let hint = if found == "shareable-list" {
            ""
        } else {
            " (open it with .raw(true))"
        };
        assert_eq!(
            e.to_string(),
            format!("segment {name:?} holds {holds}, not a segment{hint}")
        );
    }
    // With the magic, a failed check is corruption, read-only and for every kind.
    let cut = common::unique_name("foreign-cut");
    let _c = Cleanup::new(&[&cut]);
    drop(shmkit::sync::Lock::create(&cut).unwrap());
    truncate(&cut, 100);
    for e in [
        shmkit::sync::Lock::open(&cut).map(drop).unwrap_err(),
        Segment::options()
            .read_only()
            .open(&cut)
            .map(drop)
            .unwrap_err(),
    ] {
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    }
}
