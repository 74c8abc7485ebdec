#![cfg(not(loom))]
//! `probe` (so `ls`, `info`, `gc`) never asks the allocator for an offsets table longer than
//! `PROBE_MAX_ITEMS` items, whatever a peer writes into a raw object's first word while it
//! looks. This file's binary has the allocator of `common/limited_alloc.rs`, which notes the
//! largest allocation asked for (a global allocator is per test binary, so this test has a
//! file of its own).

mod common;
#[path = "common/limited_alloc.rs"]
mod limited_alloc;

use common::{unique_name, Cleanup};
use limited_alloc::{refusing, LARGEST};
use shmkit::list::PROBE_MAX_ITEMS;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Review finding: `probe` read word 0 to decide that a raw object was a plausible list
/// (≤ 2^20 items), then the parse read it again and trusted the second value, bounded only
/// by the object's size: a peer flipping word 0 between 1 and (size − 16) / 17 of a 256 MiB
/// sparse object made `probe` allocate 126 MB. The bound must hold for the value the parse
/// uses. (Large allocations are refused here, so the bug shows as the request, not as memory
/// used.)
#[test]
fn probe_never_allocates_for_a_count_a_peer_flips_while_it_looks() {
    let name = unique_name("sl-probe-alloc");
    let _c = Cleanup::new(&[&name]);
    let size: u64 = 256 << 20;
    common::sparse_raw(&name, size);
    let big = (size - 16) / 17;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for n in [1u64, big] {
                    f.write_all_at(&n.to_le_bytes(), 0).unwrap();
                }
            }
        })
    };
    // The offsets table of the most items probe reads, and a margin for everything else.
    let allowed = 8 * (PROBE_MAX_ITEMS as usize + 1) + 4096;
    for _ in 0..20_000 {
        let p = refusing(|| shmkit::segment::probe(&name)).unwrap();
        assert_eq!(p.kind_name(), "raw");
        if LARGEST.load(Ordering::Relaxed) > allowed {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= allowed,
        "probe asked for {largest} bytes, more than the {allowed} of a {PROBE_MAX_ITEMS}-item table"
    );
}
