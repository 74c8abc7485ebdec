//! [`Region`]: where a queue's control block and data live: a shared-memory segment, or (for
//! in-process queues, proptests and loom models) the heap.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::loom::AtomicU64;
#[cfg(not(loom))]
use crate::segment::{Access, ReadOnly};
#[cfg(not(loom))]
use crate::Segment;

/// A control block `C`, a data area, and optionally an array of `AtomicU64` stamps, kept
/// alive together.
pub(crate) struct Region<C> {
    ctrl: NonNull<C>,
    data: NonNull<u8>,
    stamps: NonNull<AtomicU64>,
    n_stamps: usize,
    owner: Owner,
    /// Unlink the segment when the last handle in this process drops: who asked
    /// (`liveness::mark`), 0 if nobody did through the handles (the segment's own setting,
    /// from the options, then applies). A process-local word.
    unlink: std::sync::atomic::AtomicU64,
    name: String,
    /// Loom models only: one cell per stamp word that the protocols "write" when they
    /// publish an element and "read" when they release one, so that loom checks the slot's
    /// bytes for data races (`shadow_write`, `shadow_read`): the element copies themselves
    /// are `std` atomics, invisible to loom. A cell stands for a slot (SPSC, MPMC), an 8-byte
    /// word of the data area (the bytes ring, whose loom header words are one per data word),
    /// or a 64-byte cell (mpmc-bytes: the first N of its 2N words, stamps then lengths).
    #[cfg(all(test, loom))]
    shadow: Box<[loom::cell::UnsafeCell<u64>]>,
}

pub(crate) enum Owner {
    #[cfg(not(loom))]
    Segment(Segment),
    /// A `PROT_READ` mapping, for snapshots (`queue::stat`): only loads are made through it.
    /// Held only to keep the mapping alive.
    #[cfg(not(loom))]
    ReadOnly {
        _mapping: Segment<ReadOnly>,
    },
    Heap {
        data_layout: Layout,
    },
}

// SAFETY: the pointers point into memory this value owns (the mapping or the heap blocks);
// everything shared through them is accessed with atomics or under the queue protocols, which
// are written for concurrent use from several threads and processes.
unsafe impl<C: Sync> Send for Region<C> {}
// SAFETY: as above; `&Region` only hands out `&C` (C: Sync) and raw pointers.
unsafe impl<C: Sync> Sync for Region<C> {}

impl<C> Region<C> {
    /// A heap region: `ctrl` boxed, a zeroed `data_len`-byte block aligned to `align`, and
    /// `n_stamps` stamps built by `stamp(i)`.
    pub(crate) fn heap(
        ctrl: C,
        data_len: usize,
        align: usize,
        n_stamps: usize,
        stamp: impl Fn(usize) -> u64,
    ) -> Self {
        let data_layout =
            Layout::from_size_align(data_len.max(1), align.max(128)).expect("queue data layout");
        // SAFETY: the layout has a non-zero size.
        let data = unsafe { std::alloc::alloc_zeroed(data_layout) };
        let data =
            NonNull::new(data).unwrap_or_else(|| std::alloc::handle_alloc_error(data_layout));
        let stamps: Box<[AtomicU64]> = (0..n_stamps).map(|i| AtomicU64::new(stamp(i))).collect();
        let stamps =
            NonNull::new(Box::into_raw(stamps) as *mut AtomicU64).expect("Box pointer is non-null");
        let ctrl = NonNull::new(Box::into_raw(Box::new(ctrl))).expect("Box pointer is non-null");
        Region {
            ctrl,
            data,
            stamps,
            n_stamps,
            owner: Owner::Heap { data_layout },
            unlink: std::sync::atomic::AtomicU64::new(0),
            name: String::from("(private)"),
            #[cfg(all(test, loom))]
            shadow: (0..n_stamps)
                .map(|_| loom::cell::UnsafeCell::new(0))
                .collect(),
        }
    }

    /// A segment region: the control block at payload offset 0, data at `data_offset`, the
    /// stamps (if any) at `stamps_offset`.
    ///
    /// # Safety
    ///
    /// The payload must hold `C` at 0 and the stamps and data at their offsets (the caller
    /// validated the geometry), `C` must be valid for any bit pattern and made only of
    /// atomics (so sharing it with other processes is sound), and offsets must be aligned.
    /// Over a read-only segment, the caller makes only loads through the region.
    #[cfg(not(loom))]
    pub(crate) unsafe fn segment<A: Access>(
        seg: Segment<A>,
        data_offset: usize,
        stamps_offset: usize,
        n_stamps: usize,
    ) -> Self
    where
        Owner: From<Segment<A>>,
    {
        // A `*mut` for both access modes; a read-only region is only loaded from (above).
        let base = seg.as_ptr().cast_mut();
        // SAFETY: the caller guarantees the offsets lie inside the payload; the payload
        // pointer is non-null.
        let (ctrl, data, stamps) = unsafe {
            (
                NonNull::new_unchecked(base.cast::<C>()),
                NonNull::new_unchecked(base.add(data_offset)),
                NonNull::new_unchecked(base.add(stamps_offset).cast::<AtomicU64>()),
            )
        };
        let name = seg.name().to_owned();
        Region {
            ctrl,
            data,
            stamps,
            n_stamps,
            owner: Owner::from(seg),
            unlink: std::sync::atomic::AtomicU64::new(0),
            name,
        }
    }

    /// The control block.
    #[inline]
    pub(crate) fn ctrl(&self) -> &C {
        // SAFETY: `ctrl` points to a live `C` owned by `self` (boxed, or inside the mapping
        // and valid for any bytes: see `segment`).
        unsafe { self.ctrl.as_ref() }
    }

    /// The first data byte.
    #[inline]
    pub(crate) fn data(&self) -> *mut u8 {
        self.data.as_ptr()
    }

    /// The stamps array (used by loom builds of the MPMC queue, whose slots hold their stamps
    /// otherwise; the mpmc-bytes queue keeps its stamps and then its lengths in it, two words
    /// per cell).
    #[inline]
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn stamps(&self) -> &[AtomicU64] {
        // SAFETY: `stamps` points to `n_stamps` live atomics owned by `self` (a boxed slice or
        // inside the mapping; atomics are valid for any bit pattern).
        unsafe { std::slice::from_raw_parts(self.stamps.as_ptr(), self.n_stamps) }
    }

    /// Loom models: the producer writes slot `i`'s element (call it where the element is
    /// published, after its bytes are written and before the store that publishes them).
    /// Loom fails the model if this is not ordered after every earlier [`shadow_read`] of the
    /// slot.
    #[cfg(all(test, loom))]
    pub(crate) fn shadow_write(&self, i: usize) {
        // SAFETY: a plain write of a loom-tracked cell; loom reports it if it races.
        self.shadow[i].with_mut(|p| unsafe { *p += 1 });
    }

    /// Loom models: the consumer reads slot `i`'s element (call it where the element is
    /// released, after its bytes are read and before the store that frees the slot).
    #[cfg(all(test, loom))]
    pub(crate) fn shadow_read(&self, i: usize) {
        // SAFETY: a plain read of a loom-tracked cell; loom reports it if it races.
        self.shadow[i].with(|p| unsafe { std::hint::black_box(*p) });
    }

    /// The segment name, or `(private)` for a heap queue.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Make the last handle in this process unlink the segment when it drops. Recorded with
    /// the asking process's mark, so that a `fork()`ed child dropping its inherited handles
    /// leaves the name alone (`Segment::set_unlink_on_drop`).
    pub(crate) fn set_unlink_on_drop(&self, yes: bool) {
        #[cfg(not(loom))]
        let mark = if yes { crate::os::liveness::mark() } else { 0 };
        #[cfg(loom)]
        let mark = u64::from(yes);
        // Relaxed: a process-local word read in `drop`, after every handle (and so every
        // store) is gone.
        self.unlink
            .store(mark, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(not(loom))]
impl From<Segment> for Owner {
    fn from(seg: Segment) -> Owner {
        Owner::Segment(seg)
    }
}

#[cfg(not(loom))]
impl From<Segment<ReadOnly>> for Owner {
    fn from(seg: Segment<ReadOnly>) -> Owner {
        Owner::ReadOnly { _mapping: seg }
    }
}

impl<C> Drop for Region<C> {
    fn drop(&mut self) {
        match &mut self.owner {
            #[cfg(not(loom))]
            Owner::Segment(seg) => {
                // Relaxed: see `set_unlink_on_drop`.
                let mark = self.unlink.load(std::sync::atomic::Ordering::Relaxed);
                if mark != 0 {
                    // The segment unlinks only if `mark` names this process.
                    seg.set_unlink_by(mark);
                }
            }
            #[cfg(not(loom))]
            Owner::ReadOnly { .. } => {}
            Owner::Heap { data_layout } => {
                // SAFETY: these pointers came from Box::into_raw / alloc_zeroed in `heap`
                // with these layouts, and nothing uses them after drop.
                unsafe {
                    drop(Box::from_raw(self.ctrl.as_ptr()));
                    drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                        self.stamps.as_ptr(),
                        self.n_stamps,
                    )));
                    std::alloc::dealloc(self.data.as_ptr(), *data_layout);
                }
            }
        }
    }
}
