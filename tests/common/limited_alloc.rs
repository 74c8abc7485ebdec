//! A global allocator that refuses every allocation above [`LIMIT`] while [`ON`], as a machine
//! without the memory for a huge (forged or sparse) length would. Included with `#[path]` by
//! the test binaries that install it (`queue_mpmc_bytes_alloc`, `queue_bytes_alloc`, `frames_alloc`,
//! `shareable_list_alloc`, `shareable_list_probe_alloc`), not by
//! `common`: a `#[global_allocator]` is one per binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The largest allocation the allocator below grants while [`ON`].
pub const LIMIT: usize = 1 << 20;

/// Whether the allocator refuses large allocations (only around the calls under test: the
/// test harness and a panic's backtrace allocate more).
pub static ON: AtomicBool = AtomicBool::new(false);

/// The largest allocation asked for while [`ON`] (granted or refused), for a test that a
/// call never even asks for a size a peer chose.
#[allow(dead_code)] // read by `shareable_list_probe_alloc` only
pub static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// Run `f` with large allocations refused.
pub fn refusing<R>(f: impl FnOnce() -> R) -> R {
    ON.store(true, Ordering::Relaxed);
    let r = f();
    ON.store(false, Ordering::Relaxed);
    r
}

/// Whether an allocation of `size` bytes is refused (and note it in [`LARGEST`]).
fn refused(size: usize) -> bool {
    if !ON.load(Ordering::Relaxed) {
        return false;
    }
    LARGEST.fetch_max(size, Ordering::Relaxed);
    size > LIMIT
}

/// `System`, refusing allocations of more than [`LIMIT`] bytes while [`ON`].
pub struct Limited;

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
