//! A bytes-ring message longer than this process can allocate (its length is a peer's
//! header, up to `max_message` = min(capacity / 2 - 8, 2^32 - 8) of a sparse ring) makes the
//! copying receive fail with `Corrupt` and leaves the record in place (SPEC §7.3, as
//! mpmc-bytes); it aborted the process before (an infallible `vec![0; len]`). This file's
//! binary has an allocator that refuses every allocation above 1 MiB while `refusing`.
//! (From the queues review.)

mod common;
#[path = "common/limited_alloc.rs"]
mod limited_alloc;

use common::{fork_and, unique_name, Cleanup};
use limited_alloc::{refusing, LIMIT};
use shmkit::queue::bytes::Ring;
use shmkit::queue::TryPopError;

#[test]
fn a_bytes_ring_message_too_large_to_allocate_is_an_error_not_an_abort() {
    let name = unique_name("ring-alloc");
    let _cleanup = Cleanup::new(&[&name]);
    let ring = Ring::options().create(&name, 8 << 20).unwrap(); // max_message 4 MiB - 8
    let mut tx = ring.producer().unwrap();
    // A 2 MiB record (header only: the bytes are the ring's zeroes), then a small one.
    tx.try_reserve(2 * LIMIT).unwrap().commit();
    tx.try_push(b"after").unwrap();
    let code = fork_and(|| {
        // The child is a process of its own (SPEC §2.3): it attaches its own consumer.
        let mut rx = ring.consumer().unwrap();
        let r = refusing(|| rx.try_pop().map(|m| m.len()));
        if r != Err(TryPopError::Corrupt) {
            eprintln!("try_pop: {r:?}");
            return 1;
        }
        // The record stays: it can be read in place, and released.
        let m = rx.try_peek().unwrap();
        if m.len() != 2 * LIMIT {
            return 2;
        }
        m.release();
        match rx.try_pop() {
            Ok(v) if v == b"after" => 0,
            _ => 3,
        }
    });
    assert_eq!(
        code, 0,
        "128 + signal: the receive aborted; else the step that failed"
    );
}
