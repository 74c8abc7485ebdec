#![cfg(not(loom))]
//! Findings of a review of `src/list/` and `probe`: lists of more than 2^20 items made by
//! shmkit, a read-only reader racing a live writer, and a hostile `seq` of `u64::MAX`. Run in
//! a debug build too (overflow checks on): the `seq` test is about an overflow panic.

mod common;

use common::{unique_name, Cleanup};
use shmkit::list::{Item, ShareableList, PROBE_MAX_ITEMS};
use shmkit::segment::Lifetime;
use shmkit::segment::{GcAction, GcOptions, Verdict};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One more item than `probe` copies the offsets table of.
const LARGE: usize = PROBE_MAX_ITEMS as usize + 1;

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "create-large-owned" => {
            // Created and left behind by a process that then exits: an owned list whose
            // creator is dead, for `gc`.
            let items = vec![Item::Int(7); LARGE];
            ShareableList::options()
                .lifetime(Lifetime::Owned)
                .create(&args[0], &items)
                .unwrap();
            common::report("created");
        }
        _ => panic!("unknown role {role}"),
    });
}

/// Review finding: `probe` applied its 2^20-item cut-off before looking for the trailer, so a
/// list of more items made by shmkit showed as `raw`: `gc` never collected an owned one whose
/// creator died, and guards that rely on `probe` were bypassed. The trailer's position follows
/// from N and `off[N]` alone; `info` shows the list's length without its items.
#[test]
fn a_shmkit_list_of_more_than_2_pow_20_items_is_recognised_and_collected() {
    let name = unique_name("sl-large");
    let _c = Cleanup::new(&[&name]);
    let mut child = common::spawn_child("create-large-owned", &[&name]);
    common::wait_ok(&mut child, Duration::from_secs(120));

    let p = shmkit::segment::probe(&name).unwrap();
    assert_eq!(p.verdict, Verdict::Valid, "{p:?}");
    assert_eq!(p.kind_name(), "shareable-list");
    assert_eq!(p.header.as_ref().unwrap().lifetime, Lifetime::Owned);

    let out = common::shmkit_with_stdin(&["info", "--json", &name], b"");
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "shareable-list", "{v}");
    assert_eq!(v["state"]["len"], LARGE as u64, "{v}");
    assert_eq!(v["state"]["items"].as_array().map(Vec::len), Some(0), "{v}");
    // An explicit open takes it whole.
    let l = ShareableList::open_read_only(&name).unwrap();
    assert_eq!((l.len(), l.get(-1).unwrap()), (LARGE, Item::Int(7)));
    drop(l);

    let report = shmkit::segment::gc(&GcOptions::new().prefix(&name)).unwrap();
    let entry = report.iter().find(|e| e.file == name).expect("gc saw it");
    assert_eq!(entry.action, GcAction::Removed, "{report:?}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

/// Review finding: a read-only reader that saw `seq` odd and then the writer lock free read the
/// item without validating the copy and without its exact length; but a free lock is what a
/// live writer leaves the instant it finishes. A value of 1 MiB + 64 NUL bytes, rewritten
/// every 50 µs, was read back as 1 048 576 bytes. Every read must be one whole value a writer
/// stored, its trailing NULs included.
#[test]
fn a_read_only_reader_racing_a_live_writer_gets_whole_values_with_their_nuls() {
    let name = unique_name("sl-ro-race");
    let _c = Cleanup::new(&[&name]);
    let value = |b: u8| {
        let mut v = vec![b; 1 << 20];
        v.resize((1 << 20) + 64, 0);
        v
    };
    let (a, b) = (value(0xaa), value(0xbb));
    let w = ShareableList::create(&name, &[Item::Bytes(a.clone())]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, a, b) = (stop.clone(), Item::Bytes(a.clone()), Item::Bytes(b.clone()));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for v in [&b, &a] {
                    w.set(0, v).unwrap();
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        })
    };
    let r = ShareableList::open_read_only(&name).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut bad = None;
    while Instant::now() < until {
        match r.get(0).unwrap() {
            Item::Bytes(got) if got == a || got == b => {}
            other => {
                bad = Some(other);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    if let Some(other) = bad {
        let len = match &other {
            Item::Bytes(v) => v.len(),
            _ => 0,
        };
        panic!("a read returned a value no writer stored ({len} bytes)");
    }
}

/// Review finding: `seq = u64::MAX` (odd, so "being written", with the lock free: a hostile
/// peer's doing) made the repair of a read-write reader, and a writer, compute `u64::MAX + 1`:
/// an overflow panic with overflow checks on. The sequence wraps instead.
#[test]
fn a_seq_of_u64_max_is_repaired_and_written_without_overflow() {
    let name = unique_name("sl-seq-max");
    let _c = Cleanup::new(&[&name]);
    let l = ShareableList::create(&name, &[Item::Int(1)]).unwrap();
    // One item: N at 0, offsets at 8 and 16, data at 24, format at 32, code at 40: E = 41,
    // T = 64, item 0's seq at T + 192.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let seq_at = 64 + 192;
    let hostile = || f.write_all_at(&u64::MAX.to_le_bytes(), seq_at).unwrap();
    hostile();
    // The reader finds the lock free with the item odd: it repairs (seq wraps to 0).
    assert_eq!(l.get(0).unwrap(), Item::Int(1));
    hostile();
    // A writer keeps the odd value (`s | 1`) and ends with `s + 1`: 0.
    l.set(0, &Item::Int(2)).unwrap();
    assert_eq!(l.get(0).unwrap(), Item::Int(2));
    let mut seq = [0u8; 8];
    f.read_exact_at(&mut seq, seq_at).unwrap();
    assert_eq!(u64::from_le_bytes(seq), 0);
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// SPEC §9.3's `check`, from SPEC's words: `h = mix(0x5348_4d4b_4c53_5431, fmt)`,
/// `h = mix(h, code | len(data) << 8)`, each whole 8-byte word of the data, then one more word
/// with the remaining 0–7 bytes zero-padded (a zero word for a multiple of 8), result `| 1`.
fn spec_check(fmt: u64, code: u8, data: &[u8]) -> u64 {
    let mix = |h: u64, w: u64| {
        let h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    };
    let mut h = mix(0x5348_4d4b_4c53_5431, fmt);
    h = mix(h, u64::from(code) | (data.len() as u64) << 8);
    let words = data.chunks_exact(8);
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    for w in words {
        h = mix(h, u64::from_le_bytes(w.try_into().unwrap()));
    }
    h = mix(h, u64::from_le_bytes(last));
    h | 1
}

/// Spec review: SPEC §9.3 described the trailer's `check` without the final (zero) word the
/// code mixes in, so a third-party writer following SPEC produced checks shmkit rejected (and
/// shmkit stripped the NULs that writer meant to keep). The hash recomputed from SPEC's words
/// and the bytes in `/dev/shm` must equal the stored one.
#[test]
fn the_trailer_check_is_the_hash_spec_describes() {
    let name = unique_name("spec-check");
    let _c = Cleanup::new(&[&name]);
    for value in [
        b"ab\0".to_vec(),
        vec![0u8; 8],
        b"0123456789abcde\0".to_vec(),
    ] {
        let _ = shmkit::Segment::unlink(&name);
        let list = ShareableList::create(&name, &[Item::Bytes(value.clone())]).unwrap();
        assert_eq!(list.get(0).unwrap(), Item::Bytes(value.clone()));
        let b = std::fs::read(format!("/dev/shm/{name}")).unwrap();
        assert_eq!(u64_at(&b, 0), 1);
        let n = 1;
        let off = |k: usize| u64_at(&b, 8 + 8 * k) as usize;
        let d = 8 * (n + 2);
        let f = d + off(n);
        let c = f + 8 * n;
        let t = (c + n).div_ceil(64) * 64;
        let data = &b[d + off(0)..d + off(1)];
        assert_eq!(u64_at(&b, t + 200), value.len() as u64, "len");
        let stored = u64_at(&b, t + 208);
        assert_ne!(stored, 0, "a value ending with NUL has a check");
        assert_eq!(
            stored,
            spec_check(u64_at(&b, f), b[c], data),
            "check of {value:?} in a {}-byte slot",
            data.len()
        );
    }
}
