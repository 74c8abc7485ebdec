//! Opens and attaches of forged or truncated objects of every kind: header words (magic,
//! version, kind, fingerprint, sizes, state, lifetime, creator) forged, the object truncated
//! or extended, then every open, attach and inspection of it. Debug builds (`cargo test
//! --lib`) check overflow and alignment; a read past the object's end would end the test
//! with `SIGBUS`.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::forged::Rng;
use crate::list::{Item, ShareableList};
use crate::queue::{bytes, mpmc, mpmc_bytes, spsc};
use crate::segment::{probe, Segment, HEADER_SIZE};
use crate::{cell, frames, sync};

const KINDS: u64 = 10;

/// Create an object of kind `k` and drop its handle (the object stays).
fn create(k: u64, name: &str, rng: &mut Rng) {
    match k {
        0 => drop(Segment::create(name, 1 + rng.below(5000)).unwrap()),
        1 => drop(cell::Value::<u64>::create(name, 3).unwrap()),
        2 => drop(
            cell::Array::<u8>::options()
                .cell_mode(cell::CellMode::Seqlock)
                .create(name, 1 + rng.below(100) as usize)
                .unwrap(),
        ),
        3 => drop(sync::Lock::create(name).unwrap()),
        4 => drop(sync::Barrier::create(name, 2).unwrap()),
        5 => drop(
            frames::FramesOptions::<u64>::new()
                .slots(2)
                .max_bytes(100)
                .create(name)
                .unwrap(),
        ),
        6 => drop(spsc::Queue::<u64>::create(name, 8).unwrap()),
        7 => drop(bytes::Ring::create(name, 4096).unwrap()),
        8 => drop(mpmc_bytes::Queue::create(name, 256).unwrap()),
        _ => drop(ShareableList::create(name, &[Item::Int(1), Item::from("ab\0")]).unwrap()),
    }
}

/// Run a call (each has at most its 5 ms open timeout, or none, to wait: a call that waited
/// for a forged word past its timeout would hang the round, which `within_two_minutes`
/// fails). Evaluates to whether the call returned `Ok`.
macro_rules! call {
    ($e:expr) => {{
        let ok: bool = $e.is_ok();
        ok
    }};
}

/// Every open, attach and inspection of `name` as kind `k` (and as a bare segment); what
/// they return does not matter, only that they return. Whether the kind's own open
/// succeeded.
fn open_all(k: u64, name: &str) -> bool {
    let short = Duration::from_millis(5);
    let seg = || Segment::options().open_timeout(short);
    call!(seg().open(name));
    call!(seg().read_only().open(name));
    call!(seg().raw(true).open(name).map(|s| s.len()));
    call!(probe(name));
    call!(cell::inspect(name));
    call!(sync::inspect(name));
    call!(frames::stat(name));
    call!(crate::queue::stat(name));
    match k {
        0 => call!(seg().open(name).map(|s| s.read_at(0, &mut [0; 8]))),
        1 => {
            let opts = cell::Value::<u64>::options().open_timeout(short);
            call!(cell::AnyValue::options().open_timeout(short).open(name));
            call!(opts.open(name).map(|v| v.try_get()))
        }
        2 => {
            let opts = cell::Array::<u8>::options().open_timeout(short);
            call!(cell::read_only(name, 0, 4, short));
            call!(opts.open(name).map(|a| a.try_read(0..a.len())))
        }
        3 => call!(sync::Lock::options()
            .open_timeout(short)
            .open(name)
            .map(|l| l.try_lock().is_ok())),
        4 => call!(sync::Barrier::options()
            .open_timeout(short)
            .open(name)
            .map(|b| b.wait_timeout(short))),
        5 => {
            let opts = frames::FramesOptions::<u64>::new().open_timeout(short);
            call!(frames::copy_latest(name));
            call!(opts.publisher(name).map(|mut p| p.try_loan().is_ok()));
            call!(opts.subscriber(name).map(|mut s| s.try_recv().is_ok()))
        }
        6 => {
            call!(spsc::RawQueue::options().open_timeout(short).open(name));
            call!(mpmc::Queue::<u64>::options().open_timeout(short).open(name));
            let q = spsc::Queue::<u64>::options().open_timeout(short).open(name);
            if let Ok(q) = &q {
                call!(q.producer().map(|mut p| p.try_push(1)));
                call!(q.consumer().map(|mut c| c.try_pop()));
            }
            q.is_ok()
        }
        7 => {
            let q = bytes::Ring::options().open_timeout(short).open(name);
            if let Ok(q) = &q {
                call!(q.producer().map(|mut p| p.try_push(b"x")));
                call!(q.consumer().map(|mut c| c.try_pop()));
            }
            q.is_ok()
        }
        8 => {
            let q = mpmc_bytes::Queue::options().open_timeout(short).open(name);
            if let Ok(q) = &q {
                call!(q.producer().map(|mut p| p.try_push(b"xy")));
                call!(q.consumer().map(|mut c| c.try_pop()));
            }
            q.is_ok()
        }
        _ => {
            let ro = ShareableList::options().read_only().open_timeout(short);
            call!(ro.open(name).map(|l| l.try_get(0)));
            let opts = ShareableList::options().open_timeout(short);
            call!(opts.open(name).map(|l| l.iter().count()))
        }
    }
}

/// Forge the object: a header word (32-bit, as the header is accessed), any word, or its
/// size.
fn forge(rng: &mut Rng, f: &std::fs::File) {
    let len = f.metadata().unwrap().len();
    match rng.below(10) {
        0..=5 if len >= HEADER_SIZE as u64 => {
            let at = 4 * rng.below(HEADER_SIZE as u64 / 4);
            let mut w = [0u8; 4];
            f.read_exact_at(&mut w, at).unwrap();
            let old = u32::from_le_bytes(w);
            let new = match rng.below(5) {
                0 => 0,
                1 => u32::MAX,
                2 => old ^ (1 << rng.below(32)),
                3 => rng.below(3) as u32,
                _ => rng.forge(u64::from(old)) as u32,
            };
            f.write_all_at(&new.to_le_bytes(), at).unwrap();
        }
        6 | 7 if len >= 8 => {
            let at = 8 * rng.below(len / 8);
            let mut w = [0u8; 8];
            f.read_exact_at(&mut w, at).unwrap();
            let new = rng.forge(u64::from_le_bytes(w));
            f.write_all_at(&new.to_le_bytes(), at).unwrap();
        }
        _ => {
            let to = match rng.below(6) {
                0 => 0,
                1 => rng.below(HEADER_SIZE as u64 + 2),
                2 => len.saturating_sub(1 + rng.below(64)),
                3 => len / 2,
                4 => len + 1 + rng.below(8192),
                _ => rng.below(len + 1),
            };
            f.set_len(to).unwrap();
        }
    }
}

/// Whatever a hostile process does to an object before it is opened (header words forged,
/// the object truncated, even below its header, or extended), every open, attach and
/// inspection of every kind returns (a handle, a typed error) without a panic, an overflow,
/// a read past the object's end (`SIGBUS`) or a wait past its open timeout.
#[test]
fn forged_or_truncated_objects_open_or_fail_cleanly() {
    crate::forged::seeded(0x510e_527f_ade6_82d1, |mut rng| {
        let started = Instant::now();
        // Steps whose forged object the kind's own open refused, and opened.
        let mut opened = [0u64; 2];
        for round in 0..(6 * KINDS) {
            let k = round % KINDS;
            let name = format!("t-seg-forged-{}-{round}", std::process::id());
            let _remove = crate::forged::RemoveOnDrop(name.clone());
            create(k, &name, &mut rng);
            let path = format!("/dev/shm/{name}");
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            // Each step forges the object as created (one to three changes), so that
            // most steps get past the header to the checks of the kind's own words.
            let fresh = std::fs::read(&path).unwrap();
            for _ in 0..25 {
                f.set_len(fresh.len() as u64).unwrap();
                f.write_all_at(&fresh, 0).unwrap();
                for _ in 0..1 + rng.below(3) {
                    forge(&mut rng, &f);
                }
                opened[open_all(k, &name) as usize] += 1;
            }
        }
        eprintln!("refused, opened: {opened:?} in {:?}", started.elapsed());
        assert!(
            opened.iter().all(|&n| n > 100),
            "a run that tried little: {opened:?}"
        );
    });
}
