//! A message length that this process cannot allocate room for, as a peer can forge within
//! an mpmc-bytes queue's `max_message` (SPEC §7.5.3 step 2), makes a pop fail with `Corrupt`
//! and leaves the record in place; it does not abort the process. This file's binary has an
//! allocator that refuses every allocation above 1 MiB, as a machine without the memory for
//! a forged length up to the `max_message` of a huge sparse queue would.

mod common;
#[path = "common/limited_alloc.rs"]
mod limited_alloc;

use std::sync::atomic::Ordering;

use common::{unique_name, Cleanup};
use limited_alloc::{refusing, LIMIT};
use shmkit::queue::mpmc_bytes::Queue;
use shmkit::queue::TryPopError;
use shmkit::Segment;

#[test]
fn a_forged_length_too_large_to_allocate_is_an_error_not_an_abort() {
    let name = unique_name("mpmcb-alloc");
    let _cleanup = Cleanup::new(&[&name]);
    let capacity: u64 = 8 << 20; // max_message 4 MiB, above the allocator's limit
    let q = Queue::options().create(&name, capacity).unwrap();
    assert!(q.max_message() as usize > 2 * LIMIT);
    let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
    p.try_push(b"hello").unwrap();
    // len[0] lies N words after stamp[0] (SPEC §7.5.1: stamps at payload offset 4480,
    // N = capacity / 64), in the payload after the 128-byte object header (SPEC §3).
    let len0 = 128 + 4480 + 8 * (capacity / 64);
    let seg = Segment::options().raw(true).open(&name).unwrap();
    let len = seg.atomic_u64(len0).unwrap();
    assert_eq!(
        len.load(Ordering::Relaxed),
        5,
        "the layout this test forges"
    );
    len.store(2 * LIMIT as u64, Ordering::Relaxed);
    let mut buf = Vec::new();
    let (pop, pop_into) = refusing(|| (c.try_pop(), c.try_pop_into(&mut buf)));
    assert_eq!(pop, Err(TryPopError::Corrupt));
    assert_eq!(pop_into, Err(TryPopError::Corrupt));
    // Nothing was claimed: with its length back, the message is still there.
    len.store(5, Ordering::Relaxed);
    assert_eq!(c.try_pop().unwrap(), b"hello");
    assert_eq!(c.try_pop(), Err(TryPopError::Empty));
}
