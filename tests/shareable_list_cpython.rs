#![cfg(not(loom))]
//! `ShareableList` against stock CPython: every CPython 3.9–3.13 pyenv has (and plain
//! `python3`), in both directions, and the byte layout pinned against every pyenv CPython
//! (3.8's older layout refused by name). The Python side is `tests/python/shareable_list.py`.
//!
//! A version that is not installed is reported by name on stderr (always shown, not captured);
//! each test fails if fewer than three of CPython 3.9–3.13 ran.

mod common;

use common::{unique_name, Cleanup};
use shmkit::list::{Item, ShareableList};
use std::process::Command;

const BIG: usize = 9_999_991;
const WANTED: [(u32, u32); 5] = [(3, 9), (3, 10), (3, 11), (3, 12), (3, 13)];

fn script() -> String {
    format!(
        "{}/tests/python/shareable_list.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Run the script in `mode` on `name` with interpreter `py`: its output lines.
fn py(py: &str, mode: &str, name: &str) -> Vec<String> {
    let out = Command::new(py)
        .arg(script())
        .args([mode, name])
        .output()
        .unwrap_or_else(|e| panic!("run {py}: {e}"));
    assert!(
        out.status.success(),
        "{py} {mode} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A line on the real standard error, past libtest's capture (which holds `eprintln!` of a
/// passing test back), so that what ran and what is missing always shows.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn version_of(py: &str) -> Option<(u32, u32)> {
    let out = Command::new(py)
        .args(["-c", "import sys; print(*sys.version_info[:2])"])
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    let mut it = s.split_whitespace().map(|p| p.parse().ok());
    Some((it.next()??, it.next()??))
}

/// One interpreter per CPython minor version from 3.8 on: pyenv's, and plain `python3` for a
/// version pyenv lacks. Versions of `WANTED` that are missing are reported by name.
fn interpreters() -> Vec<((u32, u32), String)> {
    let mut found: Vec<((u32, u32), String)> = Vec::new();
    for p in common::pythons() {
        if let Some(v) = version_of(&p) {
            if v >= (3, 8) && !found.iter().any(|(w, _)| *w == v) {
                found.push((v, p));
            }
        }
    }
    found.sort();
    for (a, b) in WANTED {
        if !found.iter().any(|(v, _)| *v == (a, b)) {
            say(&format!("MISSING: CPython {a}.{b} is not installed (not under `pyenv root`, not python3): not tested"));
        }
    }
    found
}

fn big() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8 + 1).collect()
}

fn items() -> Vec<Item> {
    use Item::*;
    vec![
        Int(i64::MIN),
        Int(i64::MAX),
        Float(-0.1),
        Bool(true),
        Bool(false),
        None,
        Str(String::new()),
        Bytes(Vec::new()),
        Str("hé 💥".into()), // 4 characters, 8 UTF-8 bytes
        Bytes(vec![0, 1, 0xff]),
        Str("abcdefg".into()),
        Bytes(big()),
    ]
}

/// The script's WRITES, in the same order.
fn writes() -> Vec<(isize, Item)> {
    use Item::*;
    vec![
        (0, Str("xy".into())),
        (2, None),
        (5, Float(3.25)),
        (-2, Str("abcdefgh".into())), // exact fit: 8 bytes into an 8-byte slot
        (8, Str("ü".into())),
        (6, Int(i64::MAX)),
        (-1, Bytes(vec![1, 2])),
    ]
}

fn after_writes() -> Vec<Item> {
    let mut v = items();
    let n = v.len() as isize;
    for (i, x) in writes() {
        v[(if i < 0 { i + n } else { i }) as usize] = x;
    }
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An item as the script prints it.
fn enc(v: &Item) -> String {
    match v {
        Item::Int(i) => format!("int:{i}"),
        Item::Float(f) => format!("float:{f:?}"),
        Item::Bool(b) => format!("bool:{}", if *b { "True" } else { "False" }),
        Item::None => "NoneType:None".into(),
        Item::Str(s) => format!("str:{}", hex(s.as_bytes())),
        Item::Bytes(b) if b.len() > 4096 => format!(
            "bytes:len={}:ok={}",
            b.len(),
            if *b == big() { "True" } else { "False" }
        ),
        Item::Bytes(b) => format!("bytes:{}", hex(b)),
    }
}

fn encs(v: &[Item]) -> Vec<String> {
    v.iter().map(enc).collect()
}

fn read_all<A: shmkit::segment::Access>(l: &ShareableList<A>) -> Vec<Item> {
    l.iter().collect::<Result<_, _>>().unwrap()
}

fn require_three(ran: &[String]) {
    say(&format!("ran against CPython {ran:?}"));
    assert!(
        ran.len() >= 3,
        "only {} of CPython 3.9–3.13 ran ({ran:?}); at least three are required",
        ran.len()
    );
}

#[test]
fn round_trips_both_ways_with_every_cpython() {
    let mut ran = Vec::new();
    for (v, interp) in interpreters() {
        if !WANTED.contains(&v) {
            continue;
        }
        let label = format!("{}.{}", v.0, v.1);
        // shmkit creates, Python reads and writes, shmkit reads Python's writes.
        let name = unique_name("slpy");
        let _c = Cleanup::new(&[&name]);
        let list = ShareableList::create(&name, &items()).unwrap();
        assert_eq!(
            shmkit::segment::probe(&name).unwrap().kind_name(),
            "shareable-list"
        );
        assert_eq!(
            py(&interp, "read", &name),
            encs(&items()),
            "{label}: Python reads shmkit's list"
        );
        assert_eq!(
            py(&interp, "write", &name),
            encs(&after_writes()),
            "{label}: Python writes"
        );
        assert_eq!(
            read_all(&list),
            after_writes(),
            "{label}: shmkit reads Python's writes"
        );
        assert_eq!(list.get(-12).unwrap(), Item::Str("xy".into()));
        drop(list);

        // Python creates, shmkit reads and writes, Python reads shmkit's writes.
        let name = unique_name("slpy");
        let _c = Cleanup::new(&[&name]);
        assert_eq!(
            py(&interp, "create", &name),
            encs(&items()),
            "{label}: Python creates"
        );
        assert_eq!(
            shmkit::segment::probe(&name).unwrap().kind_name(),
            "shareable-list (cpython)"
        );
        let list = ShareableList::open(&name).unwrap();
        assert!(!list.has_trailer());
        assert_eq!(
            read_all(&list),
            items(),
            "{label}: shmkit reads Python's list"
        );
        assert_eq!(list.slot_size(-1).unwrap(), 9_999_992);
        assert_eq!(list.format_of(-1).unwrap(), "9999992s");
        for (i, x) in writes() {
            list.set(i, &x).unwrap();
        }
        // CPython sized "hé 💥" (4 characters, 8 UTF-8 bytes) an 8-byte slot: exact fit.
        assert_eq!(list.slot_size(8).unwrap(), 8);
        assert!(matches!(
            list.set(8, &Item::Str("é".repeat(5))),
            Err(shmkit::Error::SlotTooSmall {
                index: 8,
                slot: 8,
                len: 10,
                ..
            })
        ));
        list.set(8, &Item::Str("ü".into())).unwrap();
        assert_eq!(
            py(&interp, "read", &name),
            encs(&after_writes()),
            "{label}: Python reads shmkit's writes"
        );
        ran.push(label);
    }
    require_three(&ran);
}

#[test]
fn byte_layout_is_pinned_against_every_cpython() {
    let demo = [
        Item::Int(1),
        Item::Float(2.5),
        Item::Bool(true),
        Item::None,
        Item::Str("hé".into()),
        Item::Bytes(b"ab\0".to_vec()),
    ];
    let expected = shmkit::list::encode_cpython_object(&demo);
    assert_eq!(expected.len(), 166);
    let mut ran = Vec::new();
    let mut saw_38 = false;
    for (v, interp) in interpreters() {
        let label = format!("{}.{}", v.0, v.1);
        let name = unique_name("slpin");
        let _c = Cleanup::new(&[&name]);
        py(&interp, "demo", &name);
        let bytes = std::fs::read(format!("/dev/shm/{name}")).unwrap();
        let opened = ShareableList::open(&name);
        if v == (3, 8) {
            saw_38 = true;
            assert_eq!(bytes.len(), 158, "3.8's demo list");
            let e = opened.unwrap_err();
            assert!(
                matches!(e, shmkit::Error::KindMismatch { .. }) && e.to_string().contains("3.8"),
                "3.8's layout must be refused by name: {e}"
            );
            continue;
        }
        assert_eq!(
            hex(&bytes),
            hex(&expected),
            "CPython {label} built the demo list with other bytes than shmkit's codec: its layout changed"
        );
        let l = opened.unwrap();
        let mut want = demo.to_vec();
        want[5] = Item::Bytes(b"ab".to_vec()); // Python's NUL-stripping
        assert_eq!(read_all(&l), want);
        if WANTED.contains(&v) {
            ran.push(label);
        }
    }
    if !saw_38 {
        say("MISSING: CPython 3.8 is not installed: its refusal is not tested");
    }
    require_three(&ran);
}
