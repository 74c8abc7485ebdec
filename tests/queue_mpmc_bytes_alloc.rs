//! A message length that this process cannot allocate room for, as a peer can forge within
//! an mpmc-bytes queue's `max_message` (SPEC §7.5.3 step 2), makes a pop fail with `Corrupt`
//! and leaves the record in place; it does not abort the process. This file's binary has an
//! allocator that refuses every allocation above 1 MiB, as a machine without the memory for
//! a forged length up to the `max_message` of a huge sparse queue would.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

use common::{unique_name, Cleanup};
use shmkit::queue::mpmc_bytes::{PopError, Queue};
use shmkit::Segment;

/// The largest allocation the allocator below grants.
const LIMIT: usize = 1 << 20;

/// Whether the allocator refuses large allocations (only around the calls under test: the
/// test harness and a panic's backtrace allocate more).
static ON: AtomicBool = AtomicBool::new(false);

/// Whether an allocation of `size` bytes is refused.
fn refused(size: usize) -> bool {
    size > LIMIT && ON.load(Ordering::Relaxed)
}

/// `System`, refusing allocations of more than [`LIMIT`] bytes while [`ON`].
struct Limited;

// SAFETY: every call is `System`'s with the caller's arguments, or a null pointer (allowed:
// allocation failure).
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refused(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refused(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Limited = Limited;

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
    ON.store(true, Ordering::Relaxed);
    let (pop, pop_into) = (c.try_pop(), c.try_pop_into(&mut buf));
    ON.store(false, Ordering::Relaxed);
    assert_eq!(pop, Err(PopError::Corrupt));
    assert_eq!(pop_into, Err(PopError::Corrupt));
    // Nothing was claimed: with its length back, the message is still there.
    len.store(5, Ordering::Relaxed);
    assert_eq!(c.try_pop().unwrap(), b"hello");
    assert_eq!(c.try_pop(), Err(PopError::Empty));
}
