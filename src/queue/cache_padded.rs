//! [`CachePadded`]: keep a value on its own pair of cache lines.

use std::ops::Deref;

/// Aligns and pads `T` to 128 bytes, so that two `CachePadded` fields never share a cache
/// line, nor an adjacent-line prefetch pair (as crossbeam's `CachePadded` does on x86-64).
/// `#[repr(C)]`: the layout is fixed, so it can sit in shared memory.
#[repr(C, align(128))]
#[derive(Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

const _: () = assert!(std::mem::size_of::<CachePadded<u64>>() == 128);
const _: () = assert!(std::mem::align_of::<CachePadded<u8>>() == 128);
