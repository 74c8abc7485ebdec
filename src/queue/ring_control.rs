//! The control block and attachment logic shared by the two single-producer single-consumer
//! rings: [`spsc`](super::spsc) (fixed-size elements) and [`bytes`](super::bytes)
//! (variable-length messages). `SPEC.md` §7.1 is the normative layout.

use super::cache_padded::CachePadded;
use super::endpoint::Roles;
use super::error::Role;
use super::geometry::MAX_CAPACITY;
#[cfg(not(loom))]
use super::geometry::{check_capacity, check_recorded, Recorded, Rules};
use super::region::Region;
use super::role::RoleSlot;
use super::TypeTag;
use crate::loom::{fence, AtomicU64, Ordering};
use crate::sync::WaitQueue;

/// Line 0 (offset 0): written by the creator before publishing, then only the role words and
/// `state` change (on attach, detach and close).
#[repr(C)]
pub(crate) struct Geometry {
    /// Slots (spsc) or bytes (bytes ring); a power of two.
    pub capacity: AtomicU64, // 0
    /// Element size in bytes (spsc); 1 for the bytes ring.
    pub elem_size: AtomicU64, // 8
    /// Element alignment (informational; at most 128).
    pub elem_align: AtomicU64, // 16
    /// Offset of the data area from the payload start.
    pub data_offset: AtomicU64, // 24
    /// `PRODUCER_CLOSED | CONSUMER_CLOSED` bits.
    pub state: AtomicU64, // 32
    /// The producer's owner word.
    pub producer: RoleSlot, // 40
    /// The consumer's owner word.
    pub consumer: RoleSlot, // 48
    /// The element type's name (spsc; empty, all zero, for the bytes ring).
    pub tag: TypeTag, // 56..128
}

/// Line 1 (offset 128): written by the producer on every push.
#[repr(C)]
pub(crate) struct ProducerLine {
    /// Total elements (or bytes) ever published; the consumer reads it with Acquire.
    pub tail: AtomicU64, // 128
    /// The consumer sleeps here when the ring is empty; the producer notifies after a push.
    pub not_empty: WaitQueue, // 136
    /// Reserved, 0 (spsc layout v3's `consumer_waiting`: the notifier now skips the notify
    /// by the wait queue's own `sleepers` count, `SPEC.md` §5.1).
    pub reserved: AtomicU64, // 144
}

/// Line 2 (offset 256): written by the consumer on every pop.
#[repr(C)]
pub(crate) struct ConsumerLine {
    /// Total elements (or bytes) ever released; the producer reads it with Acquire.
    pub head: AtomicU64, // 256
    /// The producer sleeps here when the ring is full; the consumer notifies after a pop.
    pub not_full: WaitQueue, // 264
    /// Reserved, 0 (spsc layout v3's `producer_waiting`).
    pub reserved: AtomicU64, // 272
}

/// The 384-byte control block at payload offset 0.
#[repr(C)]
pub(crate) struct RingControl {
    pub geo: CachePadded<Geometry>,
    pub prod: CachePadded<ProducerLine>,
    pub cons: CachePadded<ConsumerLine>,
}

/// Size of [`RingControl`]; the data area starts here (it is a multiple of 128).
pub(crate) const CONTROL_SIZE: usize = 384;

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<RingControl>() == CONTROL_SIZE);
    assert!(offset_of!(RingControl, prod) == 128);
    assert!(offset_of!(RingControl, cons) == 256);
    assert!(offset_of!(Geometry, state) == 32);
    assert!(offset_of!(Geometry, producer) == 40);
    assert!(offset_of!(Geometry, consumer) == 48);
    assert!(offset_of!(Geometry, tag) == 56);
    assert!(size_of::<Geometry>() == 128);
    assert!(offset_of!(ProducerLine, not_empty) == 8);
    assert!(offset_of!(ConsumerLine, not_full) == 8);
    assert!(offset_of!(ProducerLine, reserved) == 16);
    assert!(offset_of!(ConsumerLine, reserved) == 16);
};

impl RingControl {
    fn new(capacity: u64, elem_size: u64, elem_align: u64, type_name: Option<&str>) -> RingControl {
        let c = RingControl {
            geo: CachePadded(Geometry {
                capacity: AtomicU64::new(0),
                elem_size: AtomicU64::new(0),
                elem_align: AtomicU64::new(0),
                data_offset: AtomicU64::new(0),
                state: AtomicU64::new(0),
                producer: RoleSlot::new(),
                consumer: RoleSlot::new(),
                tag: TypeTag::new(),
            }),
            prod: CachePadded(ProducerLine {
                tail: AtomicU64::new(0),
                not_empty: WaitQueue::new(),
                reserved: AtomicU64::new(0),
            }),
            cons: CachePadded(ConsumerLine {
                head: AtomicU64::new(0),
                not_full: WaitQueue::new(),
                reserved: AtomicU64::new(0),
            }),
        };
        c.init(capacity, elem_size, elem_align, type_name);
        c
    }

    /// Store the geometry and the type tag, if any (the rest is zero in a fresh segment).
    fn init(&self, capacity: u64, elem_size: u64, elem_align: u64, type_name: Option<&str>) {
        if let Some(t) = type_name {
            self.geo.tag.store(t);
        }
        // Relaxed: published by the segment's READY store (Release) or by handing out the
        // heap queue to other threads (which synchronises).
        self.geo.capacity.store(capacity, Ordering::Relaxed);
        self.geo.elem_size.store(elem_size, Ordering::Relaxed);
        self.geo.elem_align.store(elem_align, Ordering::Relaxed);
        self.geo
            .data_offset
            .store(CONTROL_SIZE as u64, Ordering::Relaxed);
    }
}

/// What an opener expects of a ring's geometry.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct Expect<'a> {
    pub kind: crate::Kind,
    pub fingerprint: u64,
    /// Element size; `None` accepts any (validated) size.
    pub elem_size: Option<u64>,
    /// Smallest capacity the layout accepts.
    pub min_capacity: u64,
    /// Bytes per slot of the data area for an element size (the data area is `capacity`
    /// slots): the identity for the bytes ring, [`spsc::slot_size`](super::spsc::slot_size).
    pub slot_size: fn(u64) -> u64,
    /// The element type's name, recorded in the type tag at creation (spsc only).
    pub type_name: Option<&'a str>,
}

/// One ring: its region and the geometry read once and validated at attach.
pub(crate) struct RingShared {
    pub region: Region<RingControl>,
    pub capacity: u64,
    pub mask: u64,
    pub elem_size: u64,
    /// Bytes per slot in the data area (`elem_size` for the bytes ring).
    pub slot_size: u64,
}

impl RingShared {
    #[inline]
    pub(crate) fn ctrl(&self) -> &RingControl {
        self.region.ctrl()
    }

    #[inline]
    pub(crate) fn data(&self) -> *mut u8 {
        self.region.data()
    }

    /// A heap ring (not shared with other processes), recording `type_name` (spsc). `n_words`: under loom, the number of
    /// separate atomic words standing in for 8-byte words of the data area (the bytes ring's
    /// record headers), since loom atomics cannot live in raw memory; 0 otherwise.
    pub(crate) fn heap(
        capacity: u64,
        elem_size: u64,
        slot_size: u64,
        elem_align: u64,
        n_words: usize,
        type_name: Option<&str>,
    ) -> RingShared {
        let ctrl = RingControl::new(capacity, elem_size, elem_align, type_name);
        let len = (capacity * slot_size) as usize;
        RingShared {
            region: Region::heap(ctrl, len, 128, n_words, |_| 0),
            capacity,
            mask: capacity - 1,
            elem_size,
            slot_size,
        }
    }

    /// Payload size of a segment holding this ring.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn payload_size(name: &str, capacity: u64, slot_size: u64) -> crate::Result<u64> {
        capacity
            .checked_mul(slot_size)
            .and_then(|d| d.checked_add(CONTROL_SIZE as u64))
            .ok_or_else(|| crate::Error::TooLarge {
                name: name.into(),
                requested: capacity,
                max: MAX_CAPACITY,
            })
    }

    /// Create (`open_existing == false`) or open-or-create a segment holding a ring.
    #[cfg(not(loom))]
    pub(crate) fn create(
        base: &crate::SegmentOptions,
        name: &str,
        expect: Expect,
        capacity: u64,
        elem_align: u64,
        open_existing: bool,
    ) -> crate::Result<RingShared> {
        let elem_size = expect.elem_size.expect("create needs an element size");
        check_capacity(name, capacity, expect.min_capacity)?;
        let size = Self::payload_size(name, capacity, (expect.slot_size)(elem_size))?;
        let opts = base.clone().kind(expect.kind, expect.fingerprint);
        let init = |seg: &crate::Segment| {
            // SAFETY: the payload is `size >= CONTROL_SIZE` bytes, 128-aligned, and made of
            // atomics only, so a reference to it is sound while `seg` lives.
            let ctrl = unsafe { &*seg.as_mut_ptr().cast::<RingControl>() };
            ctrl.init(capacity, elem_size, elem_align, expect.type_name);
            Ok(())
        };
        let seg = if open_existing {
            opts.open_or_create_with(name, size, init)?
        } else {
            opts.create_with(name, size, init)?
        };
        Self::from_segment(seg, expect)
    }

    /// Open a segment holding a ring.
    #[cfg(not(loom))]
    pub(crate) fn open(
        base: &crate::SegmentOptions,
        name: &str,
        expect: Expect,
    ) -> crate::Result<RingShared> {
        let seg = base
            .clone()
            .kind(expect.kind, expect.fingerprint)
            .open(name)?;
        Self::from_segment(seg, expect)
    }

    /// Open a segment holding a ring read-only (`O_RDONLY`, `PROT_READ`), for a snapshot:
    /// only loads may be made through the returned ring (no role, no push or pop).
    #[cfg(not(loom))]
    pub(crate) fn open_snapshot(name: &str, expect: Expect) -> crate::Result<RingShared> {
        let seg = crate::Segment::options()
            .read_only()
            .kind(expect.kind, expect.fingerprint)
            .open(name)?;
        Self::from_segment(seg, expect)
    }

    /// Validate the geometry of an opened segment: every field is read once and checked.
    #[cfg(not(loom))]
    fn from_segment<A: crate::segment::Access>(
        seg: crate::Segment<A>,
        expect: Expect,
    ) -> crate::Result<RingShared>
    where
        super::region::Owner: From<crate::Segment<A>>,
    {
        let name = seg.name().to_owned();
        let len = seg.len() as u64;
        if len < CONTROL_SIZE as u64 {
            return Err(crate::Error::corrupt(
                &name,
                format!("payload is {len} bytes, smaller than the control block"),
            ));
        }
        // SAFETY: the payload holds at least CONTROL_SIZE bytes, 128-aligned (checked above;
        // payloads start at offset 128 of a page-aligned mapping), and RingControl is made of
        // atomics only, valid for any bit pattern.
        let ctrl = unsafe { &*seg.as_ptr().cast::<RingControl>() };
        // Relaxed: the segment open loaded READY with Acquire (pairs with the creator's
        // Release), which made the geometry visible; it never changes afterwards.
        let r = Recorded {
            capacity: ctrl.geo.capacity.load(Ordering::Relaxed),
            elem_size: ctrl.geo.elem_size.load(Ordering::Relaxed),
            data_offset: ctrl.geo.data_offset.load(Ordering::Relaxed),
        };
        let rules = Rules {
            min_capacity: expect.min_capacity,
            elem_size: expect.elem_size,
            data_offset: CONTROL_SIZE as u64,
            slot_size: expect.slot_size,
        };
        let slot_size = check_recorded(&name, len, r, rules)?;
        let (capacity, elem_size) = (r.capacity, r.elem_size);
        // SAFETY: geometry validated above: the data area [CONTROL_SIZE, CONTROL_SIZE +
        // capacity * slot_size) lies inside the
        // payload; RingControl is atomics only.
        let region = unsafe { Region::segment(seg, CONTROL_SIZE, 0, 0) };
        Ok(RingShared {
            region,
            capacity,
            mask: capacity - 1,
            elem_size,
            slot_size,
        })
    }

    /// Elements (or bytes) in the ring now; a snapshot that may be stale when returned.
    pub(crate) fn len(&self) -> u64 {
        // Acquire both (head first), pairing with the Release index stores (SPSC's
        // `ProdEnd::publish` and `ConsEnd::advance`, bytes' `commit_len` and
        // `ReadGuard::release`), so the difference is of values that existed. Each is a
        // Relaxed load and an acquire fence, not an Acquire load: a snapshot (`queue::stat`)
        // reads through a PROT_READ mapping, where std permits only Relaxed loads.
        let head = self.ctrl().cons.head.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let tail = self.ctrl().prod.tail.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        match tail.wrapping_sub(head) {
            // More than the capacity apart: a corrupt pair, or a bytes ring's head past a
            // stale tail (a producer killed after publishing a record, before storing tail).
            // Nothing is known to be left.
            d if d > self.capacity => 0,
            d => d,
        }
    }

    /// The owner word (liveness token, 0: free) of a role's holder.
    pub(crate) fn holder(&self, role: Role) -> u64 {
        self.slot(role, 0).holder()
    }

    /// The `state` bits.
    pub(crate) fn state(&self) -> u64 {
        // Relaxed: informational.
        self.ctrl().geo.state.load(Ordering::Relaxed)
    }

    /// The element type recorded at creation (spsc): the type tag, size and alignment.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn stored_type(&self) -> Result<super::TypeId, String> {
        let geo = &self.ctrl().geo;
        Ok(super::TypeId {
            name: geo.tag.load()?,
            size: self.elem_size,
            // Relaxed: written before the queue was published (see `from_segment`).
            align: geo.elem_align.load(Ordering::Relaxed),
        })
    }
}

impl Roles for RingShared {
    fn state(&self) -> &AtomicU64 {
        &self.ctrl().geo.state
    }

    fn slots(&self, _role: Role) -> usize {
        1
    }

    fn slot(&self, role: Role, _i: usize) -> &RoleSlot {
        match role {
            Role::Producer => &self.ctrl().geo.producer,
            Role::Consumer => &self.ctrl().geo.consumer,
        }
    }

    fn wake_closed(&self, role: Role) {
        match role {
            Role::Producer => self.ctrl().prod.not_empty.notify_all(),
            Role::Consumer => self.ctrl().cons.not_full.notify_all(),
        }
    }
}

/// One end's attachment to a ring.
pub(crate) type Side = super::endpoint::Endpoint<RingShared>;
