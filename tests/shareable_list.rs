#![cfg(not(loom))]
//! `ShareableList` between shmkit processes: every type round-trips exactly (trailing NULs
//! included), errors as Python raises them, never-torn reads while another process rewrites,
//! malformed lists refused by field, a writer killed mid-update, and `probe`/`gc` metadata.

mod common;

use common::{spawn_child, unique_name, wait_ok, Cleanup, Lines};
use shmkit::list::{Item, ShareableList, MAX_ITEM_LEN};
use shmkit::segment::{probe, Lifetime, Verdict};
use shmkit::sync::LockState;
use shmkit::{Error, Segment};
use std::time::Duration;
use std::time::Instant;

const T: Duration = Duration::from_secs(60);

/// Two values of different lengths for the torn-read test: `A` ends in NUL bytes (which
/// only an exact length keeps), `B` fills the slot; a torn read would mix them.
fn value_a() -> Item {
    let mut v = vec![b'a'; 60];
    v.extend_from_slice(&[0; 40]);
    Item::Bytes(v)
}

fn value_b() -> Item {
    Item::Bytes(vec![b'b'; 200])
}

/// Two short strs (the inline fast path of `get`), one with trailing NULs.
fn short_value(first: bool) -> Item {
    Item::Str(if first {
        "ab\0\0".into()
    } else {
        "xyz".repeat(8)
    })
}

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "read-all" => {
            let l = ShareableList::open(&args[0]).unwrap();
            for v in l.iter() {
                common::report(&format!("{:?}", v.unwrap()));
            }
        }
        "rewrite" => {
            // Rewrite item 0 between A and B, and item 1 between two ints, until killed.
            let l = ShareableList::open(&args[0]).unwrap();
            common::report("ready");
            let mut n: i64 = 0;
            loop {
                l.set(0, &if n % 2 == 0 { value_a() } else { value_b() })
                    .unwrap();
                l.set(1, &Item::Int(if n % 2 == 0 { -1 } else { i64::MAX }))
                    .unwrap();
                l.set(2, &short_value(n % 2 == 0)).unwrap();
                n += 1;
            }
        }
        "scribble" => {
            // A hostile peer: random bytes over the whole object, forever.
            let s = Segment::options().raw(true).open(&args[0]).unwrap();
            common::report("ready");
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            loop {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % s.len();
                let _ = s.write_at(at as u64, &x.to_le_bytes()[..(s.len() - at).min(8)]);
            }
        }
        "big-writer" => {
            let l = ShareableList::open(&args[0]).unwrap();
            common::report("ready");
            let (a, b) = (
                Item::Bytes(vec![1; MAX_ITEM_LEN]),
                Item::Bytes(vec![2; 100]),
            );
            loop {
                l.set(0, &a).unwrap();
                l.set(0, &b).unwrap();
            }
        }
        "hold" => {
            // A writer stopped half-way (a list of one item: the trailer at 64, its writer
            // lock at 64 + 160, item 0's sequence word at 64 + 192): holds the lock, leaves
            // the item odd, and stays alive until killed.
            let s = Segment::options().raw(true).open(&args[0]).unwrap();
            // SAFETY: 8-aligned and inside the mapping, which outlives the guard (never
            // dropped: this process is killed).
            let lock = unsafe { LockState::from_ptr(s.as_ptr().add(224).cast()) }.unwrap();
            let _g = lock.try_lock().unwrap();
            s.write_at(256, &1u64.to_le_bytes()).unwrap();
            common::report("ready");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        _ => panic!("unknown role {role}"),
    });
}

/// A child killed (SIGKILL) when dropped, also when the test panics, so that no looping
/// child outlives its test.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        common::kill9(&mut self.0);
    }
}

fn every_type() -> Vec<Item> {
    vec![
        Item::Int(i64::MIN),
        Item::Int(i64::MAX),
        Item::Float(-0.0),
        Item::Float(f64::MAX),
        Item::Bool(true),
        Item::Bool(false),
        Item::None,
        Item::Str(String::new()),
        Item::Bytes(Vec::new()),
        Item::Str("é".repeat(7)), // 14 UTF-8 bytes: CPython would give it 8 (gh-88336)
        Item::Str("ab\0".into()), // trailing NULs: kept between shmkit processes
        Item::Bytes(b"\0\x01\0".to_vec()),
        Item::Bytes(vec![0]),
        Item::Str("12345678".into()),
    ]
}

#[test]
fn every_type_round_trips_exactly_between_processes() {
    let name = unique_name("sl");
    let _c = Cleanup::new(&[&name]);
    let items = every_type();
    let l = ShareableList::create(&name, &items).unwrap();
    assert_eq!(l.len(), items.len());
    let mut child = spawn_child("read-all", &[&name]);
    let mut lines = Lines::of(&mut child);
    for want in &items {
        assert_eq!(lines.next_line().unwrap(), format!("{want:?}"));
    }
    wait_ok(&mut child, T);
    for (i, want) in items.iter().enumerate() {
        assert_eq!(&l.get(i as isize).unwrap(), want);
        assert_eq!(&l.get(i as isize - items.len() as isize).unwrap(), want);
    }
    // Exact fit: 16 bytes into the 16-byte slot of "é" * 7; one more is refused by size.
    l.set(9, &Item::Str("x".repeat(16))).unwrap();
    assert_eq!(l.get(9).unwrap(), Item::Str("x".repeat(16)));
    match l.set(-5, &Item::Str("x".repeat(17))) {
        Err(Error::SlotTooSmall {
            index: 9,
            len: 17,
            slot: 16,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let e = l.set(0, &Item::Bytes(vec![0; 9])).unwrap_err();
    assert!(e.to_string().contains("8-byte slot"), "{e}");
    // Any type into any slot, as in Python.
    l.set(0, &Item::Str("hi\0".into())).unwrap();
    l.set(7, &Item::Float(1.5)).unwrap();
    assert_eq!(l.get(0).unwrap(), Item::Str("hi\0".into()));
    assert_eq!(l.get(7).unwrap(), Item::Float(1.5));
    assert!(matches!(
        l.get(14),
        Err(Error::IndexOutOfRange {
            index: 14,
            len: 14,
            ..
        })
    ));
    assert!(matches!(
        l.get(-15),
        Err(Error::IndexOutOfRange { index: -15, .. })
    ));
    assert!(matches!(
        l.set(isize::MIN, &Item::None),
        Err(Error::IndexOutOfRange { .. })
    ));
    // Python's equality in count/index.
    assert_eq!(l.count(&Item::Bool(true)).unwrap(), 1);
    assert_eq!(l.count(&Item::Int(0)).unwrap(), 2); // -0.0 and False
    assert_eq!(l.index(&Item::Int(1)).unwrap(), Some(4)); // True
    assert_eq!(l.index(&Item::Bytes(b"zz".to_vec())).unwrap(), None);
}

#[test]
fn the_cpython_area_is_what_cpython_would_write() {
    let name = unique_name("sl");
    let _c = Cleanup::new(&[&name]);
    let items = [
        Item::Int(1),
        Item::Float(2.5),
        Item::Bool(true),
        Item::None,
        Item::Str("hé".into()),
        Item::Bytes(b"ab\0".to_vec()),
    ];
    let _l = ShareableList::create(&name, &items).unwrap();
    let bytes = std::fs::read(format!("/dev/shm/{name}")).unwrap();
    let area = shmkit::list::encode_cpython_object(&items);
    assert_eq!(&bytes[..area.len()], &area[..]);
    // The trailer starts at the next multiple of 64 with shmkit's magic.
    assert_eq!(&bytes[192..200], &shmkit::segment::MAGIC);
}

#[test]
fn size_limits_are_cpythons() {
    let name = unique_name("sl");
    let _c = Cleanup::new(&[&name]);
    match ShareableList::create(&name, &[Item::Bytes(vec![7; MAX_ITEM_LEN + 1])]) {
        Err(Error::TooLarge {
            requested: 9_999_992,
            max: 9_999_991,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let l = ShareableList::options()
        .unlink_on_drop(true)
        .create(&name, &[Item::Bytes(vec![7; MAX_ITEM_LEN]), Item::Int(3)])
        .unwrap();
    assert_eq!(l.slot_size(0).unwrap(), 9_999_992);
    assert_eq!(l.format_of(0).unwrap(), "9999992s");
    assert_eq!(l.get(0).unwrap(), Item::Bytes(vec![7; MAX_ITEM_LEN]));
    // An exact fit of 9 999 992 bytes, as CPython allows.
    l.set(0, &Item::Bytes(vec![0; 9_999_992])).unwrap();
    assert_eq!(l.get(0).unwrap(), Item::Bytes(vec![0; 9_999_992]));
    assert!(matches!(
        ShareableList::options()
            .reserve(9_999_993)
            .create(&unique_name("sl"), &[]),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn reserve_makes_room_and_empty_lists_work() {
    let name = unique_name("sl");
    let _c = Cleanup::new(&[&name]);
    let l = ShareableList::options()
        .reserve(100)
        .lifetime(Lifetime::Owned)
        .create(&name, &[Item::Int(1), Item::Str("a".into())])
        .unwrap();
    assert_eq!(l.slot_size(0).unwrap(), 104);
    l.set(0, &Item::Str("y".repeat(104))).unwrap();
    let p = probe(&name).unwrap();
    assert_eq!(p.kind_name(), "shareable-list");
    assert_eq!(p.verdict, Verdict::Valid);
    let h = p.header.unwrap();
    assert_eq!(h.lifetime, Lifetime::Owned);
    assert_eq!(h.creator_pid, std::process::id());
    let ro = ShareableList::open_read_only(&name).unwrap();
    assert_eq!(ro.get(0).unwrap(), Item::Str("y".repeat(104)));

    let empty = unique_name("sl");
    let _c2 = Cleanup::new(&[&empty]);
    let e = ShareableList::create(&empty, &[]).unwrap();
    assert!(e.is_empty());
    assert_eq!(ShareableList::open(&empty).unwrap().iter().count(), 0);
}

/// A raw segment holding `bytes`, and what opening it as a list says.
fn open_bytes(bytes: &[u8]) -> Error {
    let name = unique_name("slbad");
    let _c = Cleanup::new(&[&name]);
    let s = Segment::options()
        .raw(true)
        .create(&name, bytes.len() as u64)
        .unwrap();
    s.write_at(0, bytes).unwrap();
    ShareableList::open(&name).map(|_| ()).unwrap_err()
}

#[test]
fn malformed_lists_are_refused_naming_the_field() {
    let good = shmkit::list::encode_cpython_object(&[Item::Int(1), Item::Str("ab".into())]);
    let corrupt = |e: Error, field: &str| match e {
        Error::Corrupt { what, .. } => {
            assert!(what.contains(field), "{what:?} should name {field}")
        }
        e => panic!("expected Corrupt naming {field}, got {e}"),
    };
    let with = |at: usize, v: &[u8]| {
        let mut b = good.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    corrupt(open_bytes(&with(0, &(-1i64).to_le_bytes())), "item count");
    corrupt(open_bytes(&with(0, &1000i64.to_le_bytes())), "item count");
    corrupt(open_bytes(&with(16, &(-8i64).to_le_bytes())), "offsets[1]");
    corrupt(open_bytes(&with(24, &4000i64.to_le_bytes())), "offsets[2]");
    corrupt(open_bytes(&with(48, b"i\0\0\0\0\0\0\0")), "format");
    corrupt(open_bytes(&with(56, b"10000000")), "format");
    corrupt(open_bytes(&with(56, b"24s\0\0\0\0\0")), "slot");
    corrupt(open_bytes(&with(65, &[9])), "code");
    corrupt(open_bytes(&good[..good.len() - 1]), "end past");
    // CPython 3.8's layout (sizes, not offsets) and its empty list.
    let mut py38 = [0u8; 158];
    py38[..8].copy_from_slice(&6i64.to_le_bytes());
    for k in 0..6 {
        py38[8 + 8 * k..16 + 8 * k].copy_from_slice(&8i64.to_le_bytes());
    }
    for b in [&py38[..], &[0u8; 8][..]] {
        let e = open_bytes(b);
        assert!(
            matches!(e, Error::KindMismatch { .. }) && e.to_string().contains("3.8"),
            "{e}"
        );
    }
}

#[test]
fn a_reader_never_sees_a_torn_update_by_another_shmkit_process() {
    let name = unique_name("sltorn");
    let _c = Cleanup::new(&[&name]);
    // Item 0's slot is sized by B (200 bytes); item 2's, 24 bytes, by the longer short str.
    let l = ShareableList::create(&name, &[value_b(), Item::Int(-1), short_value(false)]).unwrap();
    l.set(0, &value_a()).unwrap();
    let mut writer = Killed(spawn_child("rewrite", &[&name]));
    Lines::of(&mut writer.0).expect("ready");
    let (mut saw_a, mut saw_b) = (0u32, 0u32);
    for _ in 0..200_000 {
        match l.get(0).unwrap() {
            v if v == value_a() => saw_a += 1,
            v if v == value_b() => saw_b += 1,
            v => panic!("torn read: {v:?}"),
        }
        let i = l.get(-2).unwrap();
        assert!(
            i == Item::Int(-1) || i == Item::Int(i64::MAX),
            "torn int: {i:?}"
        );
        let s = l.get(-1).unwrap();
        assert!(
            s == short_value(true) || s == short_value(false),
            "torn str: {s:?}"
        );
    }
    drop(writer);
    assert!(
        saw_a > 0 && saw_b > 0,
        "the writer never changed the item ({saw_a}, {saw_b})"
    );
}

#[test]
fn a_writer_killed_mid_update_leaves_a_usable_list() {
    let name = unique_name("slkill");
    let _c = Cleanup::new(&[&name]);
    let l = ShareableList::create(&name, &[Item::Bytes(vec![1; MAX_ITEM_LEN])]).unwrap();
    for _ in 0..3 {
        let mut w = Killed(spawn_child("big-writer", &[&name]));
        Lines::of(&mut w.0).expect("ready");
        std::thread::sleep(Duration::from_millis(30));
        drop(w);
        // Whatever the kill interrupted, reads and writes go on (repairing if needed).
        let _ = l.get(0).unwrap();
        l.set(0, &Item::Bytes(vec![3; 5])).unwrap();
        assert_eq!(l.get(0).unwrap(), Item::Bytes(vec![3; 5]));
    }
}

#[test]
fn a_hostile_rewrite_gives_values_or_errors_never_a_crash() {
    let name = unique_name("slhostile");
    let _c = Cleanup::new(&[&name]);
    let l = ShareableList::create(&name, &every_type()).unwrap();
    let mut w = Killed(spawn_child("scribble", &[&name]));
    Lines::of(&mut w.0).expect("ready");
    for k in 0..2_000 {
        let i = (k % every_type().len()) as isize;
        let _ = l.get_timeout(i, Duration::from_millis(50));
        let _ = l.set_timeout(i, &Item::Str("z".into()), Duration::from_millis(50));
        let _ = ShareableList::open(&name);
        let _ = probe(&name);
    }
    drop(w);
}

#[test]
fn the_fuzz_seeds_decode_as_their_names_say() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/shareable_list");
    let seed = |n: &str| std::fs::read(dir.join(format!("seed-{n}"))).unwrap();
    let decode = shmkit::list::decode_object;
    let demo = decode(&seed("shmkit-made")).unwrap();
    assert_eq!(demo[5], Item::Bytes(b"ab\0".to_vec())); // exact, through the trailer
    let py = decode(&seed("cpython-made-demo")).unwrap();
    assert_eq!(py[5], Item::Bytes(b"ab".to_vec())); // no trailer: Python's semantics
    assert_eq!(
        decode(&seed("shmkit-made-rewritten")).unwrap()[0],
        Item::Str("hi\0".into())
    );
    assert!(decode(&seed("shmkit-made-empty")).unwrap().is_empty());
    assert!(decode(&seed("cpython38-layout"))
        .unwrap_err()
        .contains("3.8"));
}

#[test]
fn an_item_left_odd_with_no_writer_is_repaired_or_read_as_is() {
    let name = unique_name("slodd");
    let _c = Cleanup::new(&[&name]);
    let l = ShareableList::create(&name, &[Item::Bytes(b"x\0".to_vec())]).unwrap();
    // N = 1: the CPython area ends at 8·3 + 8 + 9 = 41, the trailer starts at 64, item 0's
    // sequence word at 64 + 192. A broken peer leaves it odd with the writer lock free.
    let raw = Segment::options().raw(true).open(&name).unwrap();
    raw.write_at(256, &1u64.to_le_bytes()).unwrap();
    let ro = ShareableList::open_read_only(&name).unwrap();
    // A read-only handle cannot repair: it reads the bytes as they are, as Python would.
    assert_eq!(ro.get(0).unwrap(), Item::Bytes(b"x".to_vec()));
    // A read-write one repairs (the item loses its exact length), then reads.
    assert_eq!(l.get(0).unwrap(), Item::Bytes(b"x".to_vec()));
    let mut w = [0u8; 8];
    raw.read_at(256, &mut w).unwrap();
    assert_eq!(u64::from_le_bytes(w), 2);
    l.set(0, &Item::Bytes(b"y\0".to_vec())).unwrap();
    assert_eq!(ro.get(0).unwrap(), Item::Bytes(b"y\0".to_vec()));
}

#[test]
fn the_four_forms_wait_for_a_writer_in_another_process() {
    let name = unique_name("slforms");
    let _c = Cleanup::new(&[&name]);
    let l = ShareableList::create(&name, &[Item::Bytes(b"x\0".to_vec())]).unwrap();
    let ro = ShareableList::open_read_only(&name).unwrap();
    let mut holder = Killed(spawn_child("hold", &[&name]));
    Lines::of(&mut holder.0).expect("ready");
    let short = Duration::from_millis(20);
    let soon = || Instant::now() + short;
    let z = Item::Bytes(b"z".to_vec());
    // The holder is alive: the item is mid-write and the writer lock is taken.
    assert!(matches!(l.try_get(0), Err(Error::WouldBlock)));
    assert!(matches!(ro.try_get(0), Err(Error::WouldBlock)));
    assert!(matches!(l.get_timeout(0, short), Err(Error::Timeout)));
    assert!(matches!(ro.get_deadline(0, soon()), Err(Error::Timeout)));
    assert!(matches!(l.try_set(0, &z), Err(Error::WouldBlock)));
    assert!(matches!(l.set_timeout(0, &z, short), Err(Error::Timeout)));
    assert!(matches!(l.set_deadline(0, &z, soon()), Err(Error::Timeout)));
    assert!(matches!(
        l.set_deadline(0, &z, Instant::now() - short),
        Err(Error::Timeout)
    ));
    // The blocking forms wait until the holder dies, then repair and go on.
    let n = name.clone();
    let setter = std::thread::spawn(move || {
        let l = ShareableList::open(&n).unwrap();
        l.set(0, &Item::Bytes(b"z".to_vec()))
    });
    let n = name.clone();
    let getter = std::thread::spawn(move || ShareableList::open(&n).unwrap().get(0));
    std::thread::sleep(Duration::from_millis(50));
    drop(holder);
    setter.join().unwrap().unwrap();
    let got = getter.join().unwrap().unwrap();
    assert!(got == z || got == Item::Bytes(b"x".to_vec()), "{got:?}");
    assert_eq!(l.try_get(0).unwrap(), z);
    assert_eq!(ro.get(0).unwrap(), z);
    l.try_set(0, &Item::Int(3)).unwrap();
    assert_eq!(ro.get_timeout(0, short).unwrap(), Item::Int(3));
}

#[test]
fn open_or_create_opens_or_creates() {
    let name = unique_name("slooc");
    let _c = Cleanup::new(&[&name]);
    let a = ShareableList::open_or_create(&name, &[Item::Int(1)]).unwrap();
    let b = ShareableList::open_or_create(&name, &[Item::Int(2), Item::Int(3)]).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b.get(0).unwrap(), Item::Int(1));
    drop(a);
}

/// The exact length a shmkit writer records is checked against the `check` hash only where it
/// differs from Python's NUL-stripping (`SPEC.md` §9.3, §9.4): a value without trailing NULs
/// stores no hash and reads back exactly; Python-style rewrites of the slot (shorter, longer,
/// or the same bytes) read as the SPEC says, through the fast path of `get`.
#[test]
fn exact_lengths_use_the_hash_only_for_trailing_nuls() {
    use std::os::unix::fs::FileExt;
    let name = unique_name("slnul");
    let _c = Cleanup::new(&[&name]);
    // One 8-byte slot: data at 24, format at 32, code at 40, E = 41, trailer at 64, item 0's
    // entry at 256 (seq), 264 (len), 272 (check).
    let l = ShareableList::create(&name, &[Item::Str("abcdefg".into())]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let word = |at: u64| {
        let mut b = [0u8; 8];
        file.read_exact_at(&mut b, at).unwrap();
        u64::from_le_bytes(b)
    };
    // What CPython's __setitem__ writes: format, code, the zero-padded slot.
    let py_write = |code: u8, data: &[u8]| {
        file.write_all_at(b"8s\0\0\0\0\0\0", 32).unwrap();
        file.write_all_at(&[code], 40).unwrap();
        let mut slot = [0u8; 8];
        slot[..data.len()].copy_from_slice(data);
        file.write_all_at(&slot, 24).unwrap();
    };
    l.set(0, &Item::Str("abc".into())).unwrap();
    assert_eq!((word(264), word(272)), (3, 0), "len 3, no hash");
    assert_eq!(l.get(0).unwrap(), Item::Str("abc".into()));
    py_write(1, b"xy");
    assert_eq!(l.get(0).unwrap(), Item::Str("xy".into()));
    py_write(1, b"wxyz");
    assert_eq!(l.get(0).unwrap(), Item::Str("wxyz".into()));
    l.set(0, &Item::Bytes(b"ab\0".to_vec())).unwrap();
    assert_eq!(word(264), 3);
    assert_ne!(word(272), 0, "a value ending with NUL carries its hash");
    assert_eq!(l.get(0).unwrap(), Item::Bytes(b"ab\0".to_vec()));
    py_write(2, b"a");
    assert_eq!(l.get(0).unwrap(), Item::Bytes(b"a".to_vec()));
    // The same bytes as shmkit's: indistinguishable, read exactly (the documented limit).
    py_write(2, b"ab");
    assert_eq!(l.get(0).unwrap(), Item::Bytes(b"ab\0".to_vec()));
    // Another type's code over the same bytes: the hash covers the code.
    py_write(1, b"ab");
    assert_eq!(l.get(0).unwrap(), Item::Str("ab".into()));
}

/// Review finding: a timed or `try_` read of a list item ignored its deadline while the
/// item's sequence word kept moving (a peer storing even values: every wait for an even
/// sequence ends at once, and no copy is consistent): the read looped until the peer stopped.
/// It must end (`Timeout` / `WouldBlock`) while the storm still runs. As the cells' seqlock
/// storm test: a read that returns `Ok` got a copy through while both storm threads were off
/// the CPU, which proves nothing, so the test reads again; without the deadline check no read
/// ends while the storm runs, and the storm threads' own cap (20 s) is what ends the test:
/// reaching it is the failure.
#[test]
fn a_timed_read_honours_its_deadline_while_an_items_sequence_keeps_moving() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let name = unique_name("slseqstorm");
    let _c = Cleanup::new(&[&name]);
    // One 1 MiB item: each copy spans many storm stores.
    let l = ShareableList::create(&name, &[Item::Bytes(vec![5; 1 << 20])]).unwrap();
    let slot = l.slot_size(0).unwrap() as u64;
    // N = 1: data at 24, formats at 24 + slot, codes 8 later, the CPython area ends 1 later;
    // the trailer starts at the next multiple of 64, item 0's sequence word 192 after it.
    let seq_at = (33 + slot).div_ceil(64) * 64 + 192;
    let raw = Segment::options().raw(true).open(&name).unwrap();
    let seq = raw.atomic_u64(seq_at).unwrap();
    let ro = ShareableList::open_read_only(&name).unwrap();
    let done = AtomicBool::new(false);
    let capped = AtomicBool::new(false);
    let outcomes = std::thread::scope(|s| {
        // Thread k stores 4n + 2k, n = 1, 2, ...: every value even, none twice.
        for k in 0..2u64 {
            let (done, capped, seq) = (&done, &capped, &seq);
            s.spawn(move || {
                let cap = Instant::now() + Duration::from_secs(20);
                for n in 1u64.. {
                    if done.load(SeqCst) {
                        return;
                    }
                    if n % 1024 == 0 && Instant::now() > cap {
                        capped.store(true, SeqCst);
                        return;
                    }
                    seq.store(4 * n + 2 * k, SeqCst);
                }
            });
        }
        let mut outcomes = Vec::new();
        let forms: [&dyn Fn() -> Result<Item, Error>; 4] = [
            &|| l.get_timeout(0, Duration::from_millis(1)),
            &|| ro.get_deadline(0, Instant::now() + Duration::from_millis(1)),
            &|| l.try_get(0),
            &|| ro.try_get(0),
        ];
        for form in forms {
            let r = loop {
                match form() {
                    Ok(_) if !capped.load(SeqCst) => {}
                    r => break r,
                }
            };
            // Whether the storm was still running when the read ended.
            outcomes.push((r.map(|_| ()), !capped.load(SeqCst)));
        }
        done.store(true, SeqCst);
        outcomes
    });
    for (k, (r, storm_ran)) in outcomes.into_iter().enumerate() {
        let want_try = k >= 2;
        assert!(
            storm_ran
                && match r {
                    Err(Error::Timeout) => !want_try,
                    Err(Error::WouldBlock) => want_try,
                    _ => false,
                },
            "read form {k} did not end while the sequence kept moving (last read {r:?}, storm \
             still running then: {storm_ran})"
        );
    }
    // The storm is over: the item reads whole.
    assert_eq!(l.get(0).unwrap(), Item::Bytes(vec![5; 1 << 20]));
}

/// Review finding: CPython's `ShareableList(...)` sizes its object (`ftruncate`) and maps it,
/// then starts its resource tracker (milliseconds) and only then writes N, the offsets and
/// the items. An opener in that window saw zeros at the final size: N = 0 with slack, which
/// opened at once as an empty list (and stayed empty: the geometry is cached). Here a 4-item
/// list's object is all zeros and its bytes arrive 100 ms later from another thread: the open
/// must wait for them (SPEC §9.2: an empty list with slack and no trailer is not ready yet).
///
/// And CPython writes N and then the offsets one word after another (`struct.pack_into`
/// straight into the mapping), then the data, the formats and the codes: an opener that comes
/// in after N and a few offsets, or after the whole offsets table, waits for the list too.
/// (Review finding: with offsets `[0, 8, 0, …]` the open failed at once with `Corrupt`,
/// "offsets must be non-decreasing".)
#[test]
fn opening_a_cpython_list_still_being_written_waits_for_its_items() {
    let items = [
        Item::Int(7),
        Item::Str("four".into()),
        Item::None,
        Item::Bytes(b"xy".to_vec()),
    ];
    let bytes = shmkit::list::encode_cpython_object(&items);
    // Nothing; N and offsets[0..2]; N and the whole table (N + 1 offsets); those and the data.
    let data = 8 * (items.len() + 2);
    for written in [0, 24, data, data + 32] {
        let name = unique_name("slhalf");
        let _c = Cleanup::new(&[&name]);
        let raw = Segment::options()
            .raw(true)
            .create(&name, bytes.len() as u64)
            .unwrap();
        raw.write_at(0, &bytes[..written]).unwrap();
        let l = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                raw.write_at(0, &bytes).unwrap();
            });
            ShareableList::options().open_timeout(T).open(&name)
        });
        let l = l.unwrap_or_else(|e| panic!("{written} bytes written: {e}"));
        let got: Vec<Item> = l.iter().map(|v| v.unwrap()).collect();
        assert_eq!(got, items, "{written} bytes written");
    }
}

/// A shmkit list appears under its name only whole, so a format field of zeros in one (a
/// peer's doing) is `Corrupt` at once, not a creator at work to wait for until the open
/// timeout (review finding: the open polled for its whole timeout, then said `NotReady`).
#[test]
fn a_zeroed_format_in_a_shmkit_list_is_corrupt_at_once() {
    let name = unique_name("slzerofmt");
    let _c = Cleanup::new(&[&name]);
    ShareableList::create(&name, &[Item::Int(1), Item::Int(2)]).unwrap();
    // N = 2: data at 32, two 8-byte slots, formats at 48.
    let raw = Segment::options().raw(true).open(&name).unwrap();
    raw.write_at(48, &[0; 8]).unwrap();
    match ShareableList::options()
        .open_timeout(Duration::from_secs(30))
        .open(&name)
    {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("format"), "{what}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|l| l.len())),
    }
}

/// The rule of the test above does not touch real empty lists: CPython 3.9–3.13's (16 zero
/// bytes) and shmkit's (with a trailer) open at once, with no wait at all; an all-zero
/// object larger than an empty list needs is `NotReady` once the open timeout has passed.
#[test]
fn empty_lists_open_at_once_and_zeros_with_slack_are_not_ready() {
    let now = ShareableList::options().open_timeout(Duration::ZERO);
    let py = unique_name("slempty");
    let mine = unique_name("slempty");
    let zeros = unique_name("slempty");
    let _c = Cleanup::new(&[&py, &mine, &zeros]);
    Segment::options().raw(true).create(&py, 16).unwrap();
    assert!(now.open(&py).unwrap().is_empty());
    ShareableList::create(&mine, &[]).unwrap();
    assert!(now.open(&mine).unwrap().is_empty());
    Segment::options().raw(true).create(&zeros, 4096).unwrap();
    match now.open(&zeros) {
        Err(Error::NotReady { detail, .. }) => assert!(detail.contains("zero"), "{detail}"),
        other => panic!("expected NotReady, got {other:?}"),
    }
}

/// New-user walkthrough: opening another kind of shmkit object as a list (a plain segment, a
/// lock; Python's `ShareableList(name=…)` too) said it was "corrupt: as a ShareableList: item count N at offset 0 is
/// 744300426190934921…" (the magic read as a count). It is a kind mismatch naming the kind,
/// as the CLI's `list get` and every other open say; read-only too.
#[test]
fn another_shmkit_object_is_a_kind_mismatch_not_a_corrupt_list() {
    let (seg, lock) = (unique_name("sl-kind-seg"), unique_name("sl-kind-lock"));
    let _c = Cleanup::new(&[&seg, &lock]);
    drop(Segment::create(&seg, 4096).unwrap());
    drop(shmkit::sync::Lock::create(&lock).unwrap());
    for (name, kind) in [(&seg, "a segment"), (&lock, "a lock")] {
        let want = format!("segment {name:?} holds {kind}, not a ShareableList");
        let e = ShareableList::open(name).err().unwrap();
        assert!(matches!(e, Error::KindMismatch { .. }), "{e}");
        assert_eq!(e.to_string(), want);
        let e = ShareableList::open_read_only(name).err().unwrap();
        assert_eq!(e.to_string(), want);
    }
}
