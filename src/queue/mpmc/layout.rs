//! The MPMC queue's bytes: the control block, the slots, the geometry checks on open, and
//! the snapshot (`SPEC.md` §7.4).

use super::*;

/// Claim slots per side: at most this many producers and this many consumers at once.
pub const MAX_HANDLES: usize = 16;

pub(super) use crate::queue::endpoint::{CONSUMER_CLOSED, PRODUCER_CLOSED};
/// `inflight` value meaning "no position".
pub(super) const NONE: u64 = u64::MAX;

/// Layout fingerprint of an MPMC queue of `T` (layout v4: the element type's name, size and
/// alignment are part of it).
///
/// ```
/// use shmkit::queue::mpmc::layout_fingerprint;
/// assert_ne!(layout_fingerprint::<u32>(), layout_fingerprint::<[u8; 4]>());
/// ```
pub fn layout_fingerprint<T: ShmType>() -> u64 {
    fingerprint_of(&TypeId::of::<T>())
}

/// [`layout_fingerprint`] of a recorded element type.
pub(crate) fn fingerprint_of(t: &TypeId) -> u64 {
    fingerprint(
        format!(
            "shmkit mpmc v4 type={} size={} align={} handles=16 slot=[stamp,elem]",
            t.name, t.size, t.align
        )
        .as_bytes(),
    )
}

#[repr(C)]
pub(crate) struct Geometry {
    pub(crate) capacity: AtomicU64,    // 0
    pub(crate) elem_size: AtomicU64,   // 8
    pub(crate) elem_align: AtomicU64,  // 16
    pub(crate) slot_size: AtomicU64,   // 24
    pub(crate) data_offset: AtomicU64, // 32
    pub(crate) handles: AtomicU64,     // 40
    pub(crate) state: AtomicU64,       // 48
    /// The element type's name (`SPEC.md` §7.1.4).
    pub(crate) tag: TypeTag, // 56..128
}

/// The line of `tail` and the consumers' wait queue (`not_empty`); mpmc-bytes' too.
#[repr(C)]
pub(crate) struct TailLine {
    pub(crate) tail: AtomicU64,
    pub(crate) not_empty: WaitQueue,
}

/// The line of `head` and the producers' wait queue (`not_full`); mpmc-bytes' too.
#[repr(C)]
pub(crate) struct HeadLine {
    pub(crate) head: AtomicU64,
    pub(crate) not_full: WaitQueue,
}

/// A producer's or consumer's claim slot.
#[repr(C)]
pub(crate) struct Claim {
    /// Owner word (pid, start time), as the SPSC roles.
    pub(crate) owner: RoleSlot, // 0
    /// The position this handle is claiming or last claimed (`NONE` after attach).
    pub(crate) inflight: AtomicU64, // 8
}

#[repr(C)]
pub(crate) struct Control {
    pub(crate) geo: CachePadded<Geometry>,                   // 0
    pub(crate) tail: CachePadded<TailLine>,                  // 128
    pub(crate) head: CachePadded<HeadLine>,                  // 256
    pub(crate) producers: [CachePadded<Claim>; MAX_HANDLES], // 384
    pub(crate) consumers: [CachePadded<Claim>; MAX_HANDLES], // 2432
}

/// Size of the control block; the slots follow it.
pub(crate) const CONTROL_SIZE: u64 = 4480;

/// Payload offset of slot 0. Each slot is its 8-byte stamp followed by the element, so that an
/// operation touches one cache line (for elements up to 56 bytes) instead of a stamp line and
/// an element line.
pub(crate) const DATA_OFFSET: u64 = CONTROL_SIZE;

/// Offset of the element inside its slot (after the stamp).
pub(crate) const ELEM_IN_SLOT: usize = 8;

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Control>() == CONTROL_SIZE as usize);
    assert!(offset_of!(Control, tail) == 128);
    assert!(offset_of!(Control, head) == 256);
    assert!(offset_of!(Control, producers) == 384);
    assert!(offset_of!(Control, consumers) == 2432);
    assert!(offset_of!(Geometry, state) == 48);
    assert!(offset_of!(Claim, inflight) == 8);
};

/// How many sleepers to wake for `n` positions: at least 1, at most [`MAX_HANDLES`] (a
/// corrupt index only costs a wake of every sleeper).
#[inline]
pub(crate) fn wake_count(n: u64) -> u32 {
    n.clamp(1, MAX_HANDLES as u64) as u32
}

/// Bytes per slot: the stamp, then the element padded to 8 (so every stamp is 8-aligned).
pub(super) fn slot_size(elem_size: u64) -> u64 {
    8 + elem_size.next_multiple_of(8)
}

/// The slot size of a queue of `T`: a constant the compiler folds into the hot paths. A
/// `Shared` that typed handles use has `slot == stride::<T>()` (`Queue::wrap` checks it).
#[inline]
#[cfg_attr(loom, allow(dead_code))]
pub(super) fn stride<T>() -> usize {
    stride_of(TypedLayout::<T>::NEW)
}

/// The slot size for elements of `lay`'s size: [`stride`] for a typed layout (a constant),
/// `Shared::slot` for a raw one (computed from the validated element size, as `slot` was).
#[inline(always)]
pub(super) fn stride_of<L: ElemLayout>(lay: L) -> usize {
    slot_size(lay.size() as u64) as usize
}

impl Control {
    pub(super) fn new() -> Control {
        let claim = || {
            CachePadded(Claim {
                owner: RoleSlot::new(),
                inflight: AtomicU64::new(0),
            })
        };
        Control {
            geo: CachePadded(Geometry {
                capacity: AtomicU64::new(0),
                elem_size: AtomicU64::new(0),
                elem_align: AtomicU64::new(0),
                slot_size: AtomicU64::new(0),
                data_offset: AtomicU64::new(0),
                handles: AtomicU64::new(0),
                state: AtomicU64::new(0),
                tag: TypeTag::new(),
            }),
            tail: CachePadded(TailLine {
                tail: AtomicU64::new(0),
                not_empty: WaitQueue::new(),
            }),
            head: CachePadded(HeadLine {
                head: AtomicU64::new(0),
                not_full: WaitQueue::new(),
            }),
            producers: std::array::from_fn(|_| claim()),
            consumers: std::array::from_fn(|_| claim()),
        }
    }

    pub(super) fn init(&self, capacity: u64, elem_size: u64, elem_align: u64, type_name: &str) {
        self.geo.tag.store(type_name);
        // Relaxed: published by the segment's READY store (Release), or by sharing the heap
        // queue with other threads.
        let g = &self.geo;
        g.capacity.store(capacity, Ordering::Relaxed);
        g.elem_size.store(elem_size, Ordering::Relaxed);
        g.elem_align.store(elem_align, Ordering::Relaxed);
        g.slot_size.store(slot_size(elem_size), Ordering::Relaxed);
        g.data_offset.store(DATA_OFFSET, Ordering::Relaxed);
        g.handles.store(MAX_HANDLES as u64, Ordering::Relaxed);
    }

    pub(super) fn claims(&self, role: Role) -> &[CachePadded<Claim>; MAX_HANDLES] {
        match role {
            Role::Producer => &self.producers,
            Role::Consumer => &self.consumers,
        }
    }
}

pub(super) struct Shared {
    pub(super) region: Region<Control>,
    pub(super) capacity: u64,
    pub(super) mask: u64,
    /// The element size the geometry was validated with (or created with): the one
    /// [`Shared::stored_type`] reports, never a second load of the shared word, which a peer
    /// may have changed since (an open by size would then compare `T` with one size and lay
    /// out slots for another).
    #[cfg_attr(loom, allow(dead_code))]
    pub(super) elem_size: u64,
    /// Bytes per slot (`slot_size(elem_size)`).
    pub(super) slot: usize,
}

impl Shared {
    #[inline]
    pub(super) fn ctrl(&self) -> &Control {
        self.region.ctrl()
    }

    /// The element type recorded at creation: the type tag, size and alignment.
    #[cfg_attr(loom, allow(dead_code))]
    pub(super) fn stored_type(&self) -> Result<TypeId, String> {
        let g = &self.ctrl().geo;
        Ok(TypeId {
            name: g.tag.load()?,
            size: self.elem_size,
            // Relaxed: written before the queue was published. A peer's later change only
            // changes what the check compares (elements are copied unaligned: `Shared::elem`).
            align: g.elem_align.load(Ordering::Relaxed),
        })
    }

    /// The stamp of position `pos`'s slot: the slot's first 8 bytes. (Under loom, whose
    /// atomics cannot live in raw memory, the heap region's separate stamp array.)
    #[inline]
    pub(super) fn stamp(&self, pos: u64) -> &AtomicU64 {
        self.stamp_in(pos, self.slot)
    }

    /// [`stamp`](Self::stamp) with the slot size `stride`, which must be `self.slot`: the
    /// typed handles pass [`stride::<T>()`](stride), a constant equal to it (checked when
    /// the queue was built), so the hot paths multiply by a constant.
    #[inline]
    pub(super) fn stamp_in(&self, pos: u64, stride: usize) -> &AtomicU64 {
        debug_assert_eq!(stride, self.slot);
        let i = (pos & self.mask) as usize;
        #[cfg(not(loom))]
        // SAFETY: `i < capacity` (masked) and the data area holds `capacity` slots of
        // `self.slot` (= `stride`) bytes (validated on open, or allocated so); a slot starts
        // 8-aligned (the area is 128-aligned, `slot` a multiple of 8) with its stamp, which
        // is only ever accessed as this atomic; an AtomicU64 is valid for any bit pattern.
        let s = unsafe { &*self.region.data().add(i * stride).cast::<AtomicU64>() };
        #[cfg(loom)]
        let s = &self.region.stamps()[i];
        s
    }

    /// The element bytes of position `pos`'s slot (after its stamp; may be unaligned for
    /// `T`), with the slot size `stride` (`self.slot`, as for [`stamp_in`](Self::stamp_in)).
    #[inline]
    pub(super) fn elem_in(&self, pos: u64, stride: usize) -> *mut u8 {
        debug_assert_eq!(stride, self.slot);
        let i = (pos & self.mask) as usize;
        // SAFETY: slot `i < capacity` lies inside the data area (see `stamp_in`), and its
        // element bytes start ELEM_IN_SLOT bytes in.
        unsafe { self.region.data().add(i * stride + ELEM_IN_SLOT) }
    }

    /// Elements in the queue now (a snapshot).
    pub(super) fn len(&self) -> u64 {
        // Acquire (head first): values that existed; clamped for racy or corrupt pairs. Each
        // is a Relaxed load and an acquire fence, not an Acquire load: `stat_named` reads
        // through a PROT_READ mapping, where std permits only Relaxed loads.
        let head = self.ctrl().head.head.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let tail = self.ctrl().tail.tail.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let n = tail.wrapping_sub(head);
        if n > self.capacity.saturating_mul(2) {
            0
        } else {
            n.min(self.capacity)
        }
    }

    pub(super) fn attached(&self, role: Role) -> Vec<Attached> {
        self.ctrl()
            .claims(role)
            .iter()
            .map(|c| c.owner.holder())
            .filter(|&w| w != 0)
            .map(Attached::of)
            .collect()
    }

    pub(super) fn stat(&self) -> QueueStat {
        // Relaxed: informational.
        let state = self.ctrl().geo.state.load(Ordering::Relaxed);
        QueueStat {
            kind: Kind::MPMC_QUEUE,
            capacity: self.capacity,
            len: self.len(),
            len_unit: LenUnit::Messages,
            elem_size: self.ctrl().geo.elem_size.load(Ordering::Relaxed),
            elem_type: self.ctrl().geo.tag.load().ok(),
            max_message: None,
            producers: self.attached(Role::Producer),
            consumers: self.attached(Role::Consumer),
            producer_closed: state & PRODUCER_CLOSED != 0,
            consumer_closed: state & CONSUMER_CLOSED != 0,
        }
    }

    /// Wake sleeping consumers after publishing the positions from `first` on: one for each
    /// position claimed from `first` up to the tail (at most [`MAX_HANDLES`], as many as can
    /// sleep), never all of them for one element. Counting the positions claimed after
    /// `first`, not only ours, matters when elements are published out of order: a producer
    /// that published `first + 1` before `first` was published woke a consumer that could
    /// not pop past `first` and went back to sleep; publishing `first` then wakes one
    /// consumer for each (`SPEC.md` §7.4).
    #[inline]
    pub(super) fn wake_consumers(&self, first: u64) {
        let c = self.ctrl();
        // SeqCst fence, then the tail: our publication is ordered before the tail load, so a
        // producer whose claim we do not count sees our stamp when it publishes, and its own
        // wake finds `first` published. The same fence is the waker side of pair A
        // (`sync/park.rs`) for `notify_fenced`'s load of `sleepers`: a parking consumer
        // increments, fences, re-checks its slot. Nobody asleep: no locked access at all.
        fence(Ordering::SeqCst);
        let tail = c.tail.tail.load(Ordering::Relaxed);
        c.tail
            .not_empty
            .notify_fenced(wake_count(tail.wrapping_sub(first)));
    }

    /// Wake sleeping producers after releasing the slots of the positions from `first` on,
    /// as [`wake_consumers`](Self::wake_consumers) does for consumers (counted up to the head).
    #[inline]
    pub(super) fn wake_producers(&self, first: u64) {
        let c = self.ctrl();
        // SeqCst fence: as in `wake_consumers` (also pair A's waker side).
        fence(Ordering::SeqCst);
        let head = c.head.head.load(Ordering::Relaxed);
        c.head
            .not_full
            .notify_fenced(wake_count(head.wrapping_sub(first)));
    }

    /// Whether the side of `role` is gone ([`endpoint::side_gone`]).
    #[inline]
    pub(super) fn side_gone(&self, role: Role, thorough: bool) -> bool {
        endpoint::side_gone(self, role, thorough)
    }
}

#[cfg(not(loom))]
pub(super) fn shared_from_segment<A: crate::segment::Access>(
    seg: crate::Segment<A>,
    elem: Option<u64>,
) -> crate::Result<Shared>
where
    crate::queue::region::Owner: From<crate::Segment<A>>,
{
    let name = seg.name().to_owned();
    let len = seg.len() as u64;
    let bad = |what: String| crate::Error::corrupt(&name, what);
    if len < CONTROL_SIZE {
        return Err(bad(format!(
            "payload of {len} bytes is smaller than the control block"
        )));
    }
    // SAFETY: at least CONTROL_SIZE bytes, 128-aligned, atomics only.
    let ctrl = unsafe { &*seg.as_ptr().cast::<Control>() };
    // Relaxed: made visible by the open's Acquire of READY; never changes afterwards.
    let g = &ctrl.geo;
    let r = Recorded {
        capacity: g.capacity.load(Ordering::Relaxed),
        elem_size: g.elem_size.load(Ordering::Relaxed),
        data_offset: g.data_offset.load(Ordering::Relaxed),
    };
    let rules = Rules {
        min_capacity: 2,
        elem_size: elem,
        data_offset: DATA_OFFSET,
        slot_size,
    };
    let slot = check_recorded(&name, len, r, rules)?;
    let (capacity, data_off) = (r.capacity, r.data_offset);
    // The recorded slot size and handle count must be this layout's too.
    let (recorded_slot, handles) = (
        g.slot_size.load(Ordering::Relaxed),
        g.handles.load(Ordering::Relaxed),
    );
    if recorded_slot != slot || handles != MAX_HANDLES as u64 {
        return Err(bad(format!(
            "slots of {recorded_slot} bytes, {handles} handles: not the layout's geometry"
        )));
    }
    // SAFETY: the geometry was validated: the slots (stamps inside) lie inside the payload.
    // No separate stamp array (`Shared::stamp` finds each stamp in its slot).
    let region = unsafe { Region::segment(seg, data_off as usize, data_off as usize, 0) };
    Ok(Shared {
        region,
        capacity,
        mask: capacity - 1,
        elem_size: r.elem_size,
        slot: slot as usize,
    })
}

/// [`QueueStat`] of the named MPMC queue whose header fingerprint is `fp`, whatever its
/// element size. Maps it read-only and only loads (a snapshot).
#[cfg(not(loom))]
pub(crate) fn stat_named(name: &str, fp: u64) -> crate::Result<QueueStat> {
    let seg = crate::Segment::options()
        .read_only()
        .kind(Kind::MPMC_QUEUE, fp)
        .open(name)?;
    let shared = shared_from_segment(seg, None)?;
    let t = shared
        .stored_type()
        .map_err(|what| crate::Error::corrupt(name, what))?;
    if fingerprint_of(&t) != fp {
        return Err(crate::Error::corrupt(
            name,
            format!("element type {t} does not match the fingerprint"),
        ));
    }
    Ok(shared.stat())
}

impl Roles for Shared {
    fn state(&self) -> &AtomicU64 {
        &self.ctrl().geo.state
    }

    fn slots(&self, _role: Role) -> usize {
        MAX_HANDLES
    }

    fn slot(&self, role: Role, i: usize) -> &RoleSlot {
        &self.ctrl().claims(role)[i].owner
    }

    fn claimed(&self, role: Role, i: usize) {
        // Relaxed: no position is claimed yet; a reader that sees NONE skips us.
        self.ctrl().claims(role)[i]
            .inflight
            .store(NONE, Ordering::Relaxed);
    }

    fn wake_closed(&self, _role: Role) {
        self.ctrl().tail.not_empty.notify_all();
        self.ctrl().head.not_full.notify_all();
    }
}
