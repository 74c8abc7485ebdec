//! [`Queue`]: a bounded multi-producer multi-consumer queue of `T` in shared memory, with
//! sequence-stamped slots (Vyukov's bounded queue, as crossbeam's `ArrayQueue`), made robust
//! against processes that die in the middle of an operation.
//!
//! Every slot has a 64-bit *stamp*. Slot `pos % capacity` is free for the producer of
//! position `pos` when its stamp is `pos`, holds that producer's element when it is
//! `pos + 1`, and is free again for the next lap (`pos + capacity`) once a consumer has read
//! it. Producers claim positions by advancing `tail` with a compare-and-swap, consumers by
//! advancing `head`. Each producer and consumer holds one of 16 *claim slots* per side and
//! records there the position it is about to claim, so that when a claimed position stays
//! unpublished (or unreleased) the others can tell whether the claimer still lives, and skip
//! (or free) the slot once it is known dead (`SPEC.md` §7.4).
//!
//! ```
//! use shmkit::queue::mpmc::Queue;
//! # let name = format!("doc-mpmc-{}", std::process::id());
//! let q = Queue::<u32>::create(&name, 64)?;
//! q.set_unlink_on_drop(true);
//! let (mut p1, mut p2) = (q.producer()?, q.producer()?);
//! let mut c = q.consumer()?;
//! p1.try_push(1).unwrap();
//! p2.try_push(2).unwrap();
//! assert_eq!(c.try_pop(), Ok(1));
//! assert_eq!(c.try_pop(), Ok(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use super::cache_padded::CachePadded;
use super::endpoint::{self, Endpoint, Roles, Wake};
use super::error::{AttachError, PopError, PushError, Role, TryPopError, TryPushError};
use super::forms::blocking_forms;
use super::geometry::{check_capacity, check_type};
#[cfg(not(loom))]
use super::geometry::{check_recorded, Recorded, Rules};
#[cfg(not(loom))]
use super::options::{self, How, QueueOptions};
use super::region::Region;
use super::role::{self, RoleSlot};
use super::stat::{Attached, LenUnit, QueueStat};
use super::{Element, ShmType, TypeId, TypeTag};
use crate::loom::{fence, AtomicU64, Ordering};
use crate::segment::fingerprint;
use crate::sync::WaitQueue;
use crate::Kind;
use crate::Liveness;

/// Claim slots per side: at most this many producers and this many consumers at once.
pub const MAX_HANDLES: usize = 16;

/// `state` bit: the consumer side is closed (`endpoint::CONSUMER_CLOSED`).
use super::endpoint::CONSUMER_CLOSED as CONSUMERS_CLOSED;
/// `state` bit: the producer side is closed (`endpoint::PRODUCER_CLOSED`).
use super::endpoint::PRODUCER_CLOSED as PRODUCERS_CLOSED;
/// `inflight` value meaning "no position".
const NONE: u64 = u64::MAX;

/// Layout fingerprint of an MPMC queue of `T` (layout v3: the element type's name, size and
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
            "shmkit mpmc v3 type={} size={} align={} handles=16 slot=[stamp,elem]",
            t.name, t.size, t.align
        )
        .as_bytes(),
    )
}

#[repr(C)]
struct Geometry {
    capacity: AtomicU64,    // 0
    elem_size: AtomicU64,   // 8
    elem_align: AtomicU64,  // 16
    slot_size: AtomicU64,   // 24
    data_offset: AtomicU64, // 32
    handles: AtomicU64,     // 40
    state: AtomicU64,       // 48
    /// The element type's name (`SPEC.md` §7.1.4).
    tag: TypeTag, // 56..128
}

#[repr(C)]
struct TailLine {
    tail: AtomicU64,
    not_empty: WaitQueue,
}

#[repr(C)]
struct HeadLine {
    head: AtomicU64,
    not_full: WaitQueue,
}

/// A producer's or consumer's claim slot.
#[repr(C)]
struct Claim {
    /// Owner word (pid, start time), as the SPSC roles.
    owner: RoleSlot, // 0
    /// The position this handle is claiming or last claimed (`NONE` after attach).
    inflight: AtomicU64, // 8
}

#[repr(C)]
struct Control {
    geo: CachePadded<Geometry>,                   // 0
    tail: CachePadded<TailLine>,                  // 128
    head: CachePadded<HeadLine>,                  // 256
    producers: [CachePadded<Claim>; MAX_HANDLES], // 384
    consumers: [CachePadded<Claim>; MAX_HANDLES], // 2432
}

/// Size of the control block; the slots follow it.
const CONTROL_SIZE: u64 = 4480;

/// Payload offset of slot 0. Each slot is its 8-byte stamp followed by the element, so that an
/// operation touches one cache line (for elements up to 56 bytes) instead of a stamp line and
/// an element line.
const DATA_OFFSET: u64 = CONTROL_SIZE;

/// Offset of the element inside its slot (after the stamp).
const ELEM_IN_SLOT: usize = 8;

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

/// Bytes per slot: the stamp, then the element padded to 8 (so every stamp is 8-aligned).
fn slot_size(elem_size: u64) -> u64 {
    8 + elem_size.next_multiple_of(8)
}

/// `close` and the snapshot accessors, the same for both handle types.
macro_rules! handle_accessors {
    ($what:literal) => {
        #[doc = concat!("Close this ", $what, ": free its claim slot and, if no other ", $what,
            " is attached, close the ", $what, " side: the other side then gets `Disconnected` \
            (consumers once they have drained the queue). While another ", $what,
            " is attached, this only detaches, as dropping the handle does; the side closes \
            when the last attached one closes (crossbeam's rule for the last sender or \
            receiver). A ", $what, " that attaches later reopens the side (`SPEC.md` §7.1.3).")]
        pub fn close(&mut self) {
            self.h.close()
        }

        /// Elements in the queue now (a snapshot).
        pub fn len(&self) -> u64 {
            self.h.q.len()
        }

        /// Whether the queue is empty now (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the queue is full now (a snapshot).
        pub fn is_full(&self) -> bool {
            self.len() == self.h.q.capacity
        }
    };
}

impl Control {
    fn new() -> Control {
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

    fn init(&self, capacity: u64, elem_size: u64, elem_align: u64, type_name: &str) {
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

    fn claims(&self, role: Role) -> &[CachePadded<Claim>; MAX_HANDLES] {
        match role {
            Role::Producer => &self.producers,
            Role::Consumer => &self.consumers,
        }
    }
}

struct Shared {
    region: Region<Control>,
    capacity: u64,
    mask: u64,
    /// Bytes per slot (`slot_size(elem_size)`).
    slot: usize,
}

impl Shared {
    #[inline]
    fn ctrl(&self) -> &Control {
        self.region.ctrl()
    }

    /// The element type recorded at creation: the type tag, size and alignment.
    #[cfg_attr(loom, allow(dead_code))]
    fn stored_type(&self) -> Result<TypeId, String> {
        let g = &self.ctrl().geo;
        Ok(TypeId {
            name: g.tag.load()?,
            // Relaxed: written before the queue was published, never changed.
            size: g.elem_size.load(Ordering::Relaxed),
            align: g.elem_align.load(Ordering::Relaxed),
        })
    }

    /// The stamp of position `pos`'s slot: the slot's first 8 bytes. (Under loom, whose
    /// atomics cannot live in raw memory, the heap region's separate stamp array.)
    #[inline]
    fn stamp(&self, pos: u64) -> &AtomicU64 {
        let i = (pos & self.mask) as usize;
        #[cfg(not(loom))]
        // SAFETY: `i < capacity` (masked) and the data area holds `capacity` slots of
        // `self.slot` bytes (validated on open, or allocated so); a slot starts 8-aligned
        // (the area is 128-aligned, `slot` a multiple of 8) with its stamp, which is only
        // ever accessed as this atomic; an AtomicU64 is valid for any bit pattern.
        let s = unsafe { &*self.region.data().add(i * self.slot).cast::<AtomicU64>() };
        #[cfg(loom)]
        let s = &self.region.stamps()[i];
        s
    }

    /// The element bytes of position `pos`'s slot (after its stamp; may be unaligned for `T`).
    #[inline]
    fn elem(&self, pos: u64) -> *mut u8 {
        let i = (pos & self.mask) as usize;
        // SAFETY: slot `i < capacity` lies inside the data area (see `stamp`), and its element
        // bytes start ELEM_IN_SLOT bytes in.
        unsafe { self.region.data().add(i * self.slot + ELEM_IN_SLOT) }
    }

    /// Elements in the queue now (a snapshot).
    fn len(&self) -> u64 {
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

    fn attached(&self, role: Role) -> Vec<Attached> {
        self.ctrl()
            .claims(role)
            .iter()
            .map(|c| c.owner.holder())
            .filter(|&w| w != 0)
            .map(Attached::of)
            .collect()
    }

    fn stat(&self) -> QueueStat {
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
            producer_closed: state & PRODUCERS_CLOSED != 0,
            consumer_closed: state & CONSUMERS_CLOSED != 0,
        }
    }

    /// Whether the side of `role` is gone ([`endpoint::side_gone`]).
    #[inline]
    fn side_gone(&self, role: Role, thorough: bool) -> bool {
        endpoint::side_gone(self, role, thorough)
    }

    /// Whether a live handle of `role` records `pos` as its in-flight position.
    fn live_claimer(&self, role: Role, pos: u64) -> bool {
        self.ctrl().claims(role).iter().any(|c| {
            let w = c.owner.holder();
            // Acquire pairs with the Release store of `inflight` in push/pop: if we see the
            // claimer's newer position, we also see its publication of `pos`.
            w != 0
                && c.inflight.load(Ordering::Acquire) == pos
                && role::liveness_of(w) != Liveness::Dead
        })
    }
}

/// A bounded MPMC queue of `T` in a named segment (or on the heap).
///
/// Up to [`MAX_HANDLES`] producers and as many consumers attach at once, from any processes.
///
/// # Shared memory is shared
///
/// Stamps and indices are re-read on every operation and only compared, never used as
/// offsets (slot positions are masked); a stamp that fits no state of the protocol while the
/// index does not move is reported as `Corrupt`. A hostile writer can still change element
/// bytes while they are copied (never producing an invalid `T`).
pub struct Queue<T> {
    shared: Arc<Shared>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Queue")
            .field("name", &self.shared.region.name())
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl<T: Element> Queue<T> {
    /// Options for creating or opening the queue: mode, open timeout, unlink on drop,
    /// lifetime, sparse (see [`QueueOptions`]).
    ///
    /// ```
    /// use shmkit::queue::mpmc::Queue;
    /// # let name = format!("doc-mpmc-options-{}", std::process::id());
    /// let q = Queue::<u64>::options().mode(0o660).unlink_on_drop(true).create(&name, 64)?;
    /// assert_eq!(q.capacity(), 64);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn options() -> QueueOptions<Self> {
        QueueOptions::default()
    }

    /// Create the named queue with `capacity` slots (a power of two, at least 2), with the
    /// default [`options`](Self::options).
    #[cfg(not(loom))]
    pub fn create(name: &str, capacity: u64) -> crate::Result<Self> {
        Self::options().create(name, capacity)
    }

    /// Open the named queue, or create it with `capacity` slots (an existing queue must have
    /// this capacity and element type).
    #[cfg(not(loom))]
    pub fn open_or_create(name: &str, capacity: u64) -> crate::Result<Self> {
        Self::options().open_or_create(name, capacity)
    }

    /// Open the named queue; it must hold elements of type `T` (its
    /// [`TYPE_NAME`](ShmType::TYPE_NAME), size and alignment), or the open fails with
    /// [`Error::TypeMismatch`](crate::Error::TypeMismatch) naming both types.
    ///
    /// ```
    /// use shmkit::queue::mpmc::Queue;
    /// # let name = format!("doc-mpmc-open-{}", std::process::id());
    /// let a = Queue::<i64>::options().unlink_on_drop(true).create(&name, 8)?;
    /// assert_eq!(Queue::<i64>::open(&name)?.capacity(), 8);
    /// let e = Queue::<u64>::open(&name).unwrap_err();
    /// assert!(e.to_string().contains("i64") && e.to_string().contains("u64"));
    /// # drop(a);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn open(name: &str) -> crate::Result<Self> {
        Self::options().open(name)
    }

    #[cfg(not(loom))]
    fn build_with(seg: &crate::SegmentOptions, name: &str, how: How) -> crate::Result<Self> {
        check_type::<T>(name)?;
        let size = std::mem::size_of::<T>() as u64;
        let align = std::mem::align_of::<T>() as u64;
        let shared = match how {
            How::Create(cap) => Self::make(seg, name, cap, false),
            How::OpenOrCreate(cap) => Self::make(seg, name, cap, true),
            How::Open => seg
                .clone()
                .kind(Kind::MPMC_QUEUE, layout_fingerprint::<T>())
                .open(name)
                .and_then(|s| shared_from_segment(s, Some(size))),
            How::OpenBySize => {
                let shared = options::by_size(
                    name,
                    Kind::MPMC_QUEUE,
                    (size, align),
                    |fp| {
                        let s = seg.clone().kind(Kind::MPMC_QUEUE, fp).open(name)?;
                        shared_from_segment(s, None)
                    },
                    Shared::stored_type,
                    fingerprint_of,
                )?;
                return Ok(Self::wrap(shared));
            }
        };
        let stored = |fp| {
            let s = crate::Segment::options()
                .read_only()
                .kind(Kind::MPMC_QUEUE, fp)
                .open(name)?;
            let shared = shared_from_segment(s, None)?;
            shared
                .stored_type()
                .map_err(|what| crate::Error::corrupt(name, what))
        };
        options::typed(name, &TypeId::of::<T>(), shared, stored, fingerprint_of).map(Self::wrap)
    }

    #[cfg(not(loom))]
    fn wrap(shared: Shared) -> Self {
        Queue {
            shared: Arc::new(shared),
            _t: PhantomData,
        }
    }

    #[cfg(not(loom))]
    fn make(
        seg: &crate::SegmentOptions,
        name: &str,
        capacity: u64,
        open_existing: bool,
    ) -> crate::Result<Shared> {
        check_capacity(name, capacity, 2)?;
        let size = std::mem::size_of::<T>() as u64;
        let slot = slot_size(size);
        let total = DATA_OFFSET + capacity * slot;
        let opts = seg
            .clone()
            .kind(Kind::MPMC_QUEUE, layout_fingerprint::<T>());
        let init = |seg: &crate::Segment| {
            // SAFETY: the payload is `total` bytes, 128-aligned; Control is atomics only,
            // valid for any bit pattern.
            let ctrl = unsafe { &*seg.as_mut_ptr().cast::<Control>() };
            ctrl.init(
                capacity,
                size,
                std::mem::align_of::<T>() as u64,
                T::TYPE_NAME,
            );
            for c in ctrl.producers.iter().chain(ctrl.consumers.iter()) {
                // Relaxed: published by READY.
                c.inflight.store(NONE, Ordering::Relaxed);
            }
            for i in 0..capacity {
                // SAFETY: slot i's stamp, at DATA_OFFSET + i * slot, lies in the payload
                // (`total` bytes) and is 8-aligned; only ever accessed as an atomic.
                let s = unsafe {
                    &*seg
                        .as_mut_ptr()
                        .add((DATA_OFFSET + i * slot) as usize)
                        .cast::<AtomicU64>()
                };
                // Relaxed: published by READY.
                s.store(i, Ordering::Relaxed);
            }
            Ok(())
        };
        let seg = if open_existing {
            opts.open_or_create_with(name, total, init)?
        } else {
            opts.create_with(name, total, init)?
        };
        shared_from_segment(seg, Some(size))
    }

    /// A queue on this process's heap, for threads of one process (and tests).
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two in `2..=2^40`.
    pub fn with_capacity(capacity: u64) -> Self {
        check_type::<T>("(private)").expect("element type");
        check_capacity("(private)", capacity, 2).expect("capacity");
        let ctrl = Control::new();
        let size = std::mem::size_of::<T>() as u64;
        ctrl.init(
            capacity,
            size,
            std::mem::align_of::<T>() as u64,
            T::TYPE_NAME,
        );
        for c in ctrl.producers.iter().chain(ctrl.consumers.iter()) {
            // Relaxed: the queue is not shared yet.
            c.inflight.store(NONE, Ordering::Relaxed);
        }
        let slot = slot_size(size);
        // Under loom the stamps are a separate array of loom atomics (see `Shared::stamp`).
        let n_stamps = if cfg!(loom) { capacity as usize } else { 0 };
        let region = Region::heap(ctrl, (capacity * slot) as usize, 128, n_stamps, |i| {
            i as u64
        });
        let shared = Shared {
            region,
            capacity,
            mask: capacity - 1,
            slot: slot as usize,
        };
        #[cfg(not(loom))]
        for i in 0..capacity {
            // Relaxed: the queue is not shared yet.
            shared.stamp(i).store(i, Ordering::Relaxed);
        }
        Queue {
            shared: Arc::new(shared),
            _t: PhantomData,
        }
    }

    fn attach(&self, role: Role) -> Result<Handle, AttachError> {
        Endpoint::attach(Arc::clone(&self.shared), role)
    }

    /// Attach a producer (one of [`MAX_HANDLES`]; a slot held by a dead process is reused).
    pub fn producer(&self) -> Result<Producer<T>, AttachError> {
        Ok(Producer {
            h: self.attach(Role::Producer)?,
            _t: PhantomData,
        })
    }

    /// Attach a consumer.
    pub fn consumer(&self) -> Result<Consumer<T>, AttachError> {
        Ok(Consumer {
            h: self.attach(Role::Consumer)?,
            _t: PhantomData,
        })
    }
}

#[cfg(not(loom))]
impl<T: Element> options::sealed::Build for Queue<T> {
    fn build(seg: &crate::SegmentOptions, name: &str, how: How) -> crate::Result<Self> {
        Self::build_with(seg, name, how)
    }
}

#[cfg(not(loom))]
impl<T: Element> options::sealed::Typed for Queue<T> {}

impl<T> Queue<T> {
    /// Slots in the queue.
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Elements in the queue now (a snapshot).
    pub fn len(&self) -> u64 {
        self.shared.len()
    }

    /// Whether the queue is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() == self.shared.capacity
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        self.shared.region.name()
    }

    /// Unlink the segment when the last handle in this process drops.
    pub fn set_unlink_on_drop(&self, yes: bool) {
        self.shared.region.set_unlink_on_drop(yes)
    }

    /// Capacity, length, attached producers and consumers.
    pub fn stat(&self) -> QueueStat {
        self.shared.stat()
    }
}

#[cfg(not(loom))]
fn shared_from_segment<A: crate::segment::Access>(
    seg: crate::Segment<A>,
    elem: Option<u64>,
) -> crate::Result<Shared>
where
    super::region::Owner: From<crate::Segment<A>>,
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

/// One attached handle: its claim slot.
type Handle = Endpoint<Shared>;

impl Handle {
    /// This handle's claim slot.
    #[inline]
    fn claim(&self) -> &Claim {
        &self.q.ctrl().claims(self.role())[self.slot()]
    }
}

/// What one attempt found.
enum Attempt {
    /// Full (producer) or empty (consumer).
    Blocked,
    /// The position `pos` is claimed by another handle that has not finished with it.
    InFlight(u64),
    /// Consumer only, from `attempt(false)`: position `pos`'s slot held `stamp` (`pos`, or
    /// the previous lap's `pos - capacity + 1`), nothing to pop; whether that is `Blocked` or
    /// `InFlight` was not decided (it costs a fence and a load of the producers' `tail` line,
    /// which `Consumer::classify` does when the caller needs to know).
    Unpublished {
        pos: u64,
        stamp: u64,
    },
    Corrupt,
}

/// A producing handle of an MPMC [`Queue`]. `Send`, not `Sync`. Dropping it detaches it: its
/// claim slot is freed for another producer and the queue stays open, even when it was the
/// last producer (consumers keep waiting for the next one). Consumers drain the queue and
/// then get `Disconnected` only once the last attached producer [`close`](Self::close)s, or
/// every attached producer is dead.
pub struct Producer<T> {
    h: Handle,
    _t: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Producer")
            .field("slot", &self.h.slot())
            .finish()
    }
}

impl<T: Element> Producer<T> {
    fn attempt(&mut self, value: &T) -> Result<(), Attempt> {
        let sh = &*self.h.q;
        let ctrl = sh.ctrl();
        let claim = &ctrl.producers[self.h.slot()];
        // Relaxed: only a starting guess; the stamp check and the CAS validate it.
        let mut pos = ctrl.tail.tail.load(Ordering::Relaxed);
        loop {
            // Acquire pairs with the consumer's Release store of `pos` into the stamp after
            // it read the previous lap's element: we may overwrite the slot.
            let stamp = sh.stamp(pos).load(Ordering::Acquire);
            if stamp == pos {
                // Record the claim before making it. Release: a survivor that sees a newer
                // inflight of ours also sees our publication of this position.
                claim.inflight.store(pos, Ordering::Release);
                // AcqRel: Release makes the inflight store visible to whoever sees the new
                // tail (the Acquire tail loads in the consumers' in-flight checks).
                match ctrl.tail.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: we own the slot for position `pos` (stamp == pos, and the CAS
                        // made the position ours); in bounds (`elem`), written unaligned.
                        unsafe {
                            sh.elem(pos)
                                .cast::<T>()
                                .write_unaligned(std::ptr::read(value))
                        };
                        // Release pairs with the consumer's Acquire stamp load: the element
                        // is visible before the stamp says it is there.
                        sh.stamp(pos).store(pos.wrapping_add(1), Ordering::Release);
                        ctrl.tail.not_empty.notify_all();
                        return Ok(());
                    }
                    Err(t) => {
                        // Lost the race for `pos`: withdraw the claim record, or recovery
                        // would take us for its live claimer when the winner dies.
                        // Release: as for the inflight store above.
                        claim.inflight.store(NONE, Ordering::Release);
                        pos = t;
                    }
                }
            } else if stamp == pos.wrapping_sub(sh.capacity) {
                // The previous lap's producer of this slot claimed it and has not published:
                // the queue is full up to an in-flight element (consumers resolve it) — unless
                // a consumer already skipped that position (head is past it: only `recover`
                // moves head over an unpublished stamp) and died before freeing the slot.
                // SeqCst fence and Acquire head load: as in the branch below.
                fence(Ordering::SeqCst);
                let head = ctrl.head.head.load(Ordering::Acquire);
                let prev = pos.wrapping_sub(sh.capacity);
                return Err(if head.wrapping_sub(prev) as i64 > 0 {
                    Attempt::InFlight(prev)
                } else {
                    Attempt::Blocked
                });
            } else if stamp == pos.wrapping_sub(sh.capacity).wrapping_add(1) {
                // The previous lap's element is still there: full, or a consumer is reading it.
                // SeqCst fence, as crossbeam: order the stamp load before the head load.
                fence(Ordering::SeqCst);
                // Acquire pairs with consumers' head CAS (their inflight stores).
                let head = ctrl.head.head.load(Ordering::Acquire);
                let prev = pos.wrapping_sub(sh.capacity);
                return Err(if head.wrapping_sub(prev) as i64 > 0 {
                    Attempt::InFlight(prev)
                } else {
                    Attempt::Blocked
                });
            } else {
                // Acquire (pairs with the producers' tail CAS): a tail that has not moved
                // then really says the stamp we read is current, so "did not move" means
                // Corrupt, not a stale read.
                let t = ctrl.tail.tail.load(Ordering::Acquire);
                if t == pos {
                    return Err(Attempt::Corrupt);
                }
                pos = t;
            }
        }
    }

    /// Free the slot of position `prev` if the consumer that claimed it is dead.
    fn recover(&self, prev: u64) {
        let sh = &*self.h.q;
        if sh.live_claimer(Role::Consumer, prev) {
            return;
        }
        // The claimer died after taking `prev` and before releasing the slot: its element is
        // lost (it was in flight). Release the slot as it would have: from `prev + 1` (it was
        // popping the element), or from `prev` (it was skipping a dead producer's position,
        // `Consumer::recover`). AcqRel/Relaxed: the CAS decides among racing recoverers;
        // Release pairs with producers' Acquire stamp loads.
        for from in [prev.wrapping_add(1), prev] {
            if sh
                .stamp(prev)
                .compare_exchange(
                    from,
                    prev.wrapping_add(sh.capacity),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                break;
            }
        }
    }

    /// Push `value` if there is room now.
    pub fn try_push(&mut self, value: T) -> Result<(), TryPushError<T>> {
        if self.h.is_closed() || self.h.q.side_gone(Role::Consumer, false) {
            return Err(TryPushError::Disconnected(value));
        }
        match self.attempt(&value) {
            Ok(()) => {
                // The queue holds the bitwise copy now.
                std::mem::forget(value);
                Ok(())
            }
            Err(Attempt::Corrupt) => Err(TryPushError::Corrupt(value)),
            Err(a) => {
                if self.h.throttle.due() {
                    if let Attempt::InFlight(prev) = a {
                        self.recover(prev);
                    }
                    if self.h.q.side_gone(Role::Consumer, true) {
                        return Err(TryPushError::Disconnected(value));
                    }
                }
                Err(TryPushError::Full(value))
            }
        }
    }

    blocking_forms! {
        /// Push `value`, waiting for room; checks every 20 ms whether a consumer died holding
        /// a slot (and frees it) or all consumers are gone (`Disconnected`).
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{mpmc::Queue, PushError};
        /// let q = Queue::<u32>::with_capacity(2);
        /// let mut tx = q.producer().unwrap();
        /// tx.push(1).unwrap();
        /// tx.push_timeout(2, Duration::from_secs(1)).unwrap();
        /// let e = tx.push_deadline(3, std::time::Instant::now());
        /// assert_eq!(e, Err(PushError::Timeout(3)));
        /// ```
        fn push / push_timeout / push_deadline (value: T) -> Result<(), PushError<T>>
            = push_within;
    }

    fn push_within(&mut self, value: T, deadline: Option<Instant>) -> Result<(), PushError<T>> {
        loop {
            if self.h.is_closed() || self.h.q.side_gone(Role::Consumer, false) {
                return Err(PushError::Disconnected(value));
            }
            // Snapshot the head before the attempt: any pop after it changes the head and ends
            // the wait below. Acquire pairs with consumers' head CAS (AcqRel).
            let head0 = self.h.q.ctrl().head.head.load(Ordering::Acquire);
            let prev = match self.attempt(&value) {
                Ok(()) => {
                    // The queue holds the bitwise copy now.
                    std::mem::forget(value);
                    return Ok(());
                }
                Err(Attempt::Corrupt) => return Err(PushError::Corrupt(value)),
                // (`Unpublished` comes only from an unclassified consumer attempt; never here.)
                Err(Attempt::Blocked | Attempt::Unpublished { .. }) => None,
                Err(Attempt::InFlight(p)) => Some(p),
            };
            let sh = &*self.h.q;
            // Acquire: as for `head0`; a pop that happened before our wake-up is seen.
            // A consumer in flight on `prev` ends the wait by releasing the slot (its stamp
            // leaves `prev + 1`, or `prev` for a consumer that was skipping it).
            let ready = || {
                sh.ctrl().head.head.load(Ordering::Acquire) != head0
                    || prev.is_some_and(|p| {
                        let s = sh.stamp(p).load(Ordering::Acquire);
                        s != p.wrapping_add(1) && s != p
                    })
                    || sh.side_gone(Role::Consumer, false)
            };
            // Every slice: free the slot of a consumer that died holding it (the stamp change
            // ends the wait), and give up once every consumer is gone.
            let check = || {
                if let Some(p) = prev {
                    self.recover(p);
                }
                sh.side_gone(Role::Consumer, true).then_some(())
            };
            match endpoint::wait_sliced(&sh.ctrl().head.not_full, ready, deadline, check) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PushError::Timeout(value)),
                Wake::Gone(()) => return Err(PushError::Disconnected(value)),
            }
        }
    }

    handle_accessors!("producer");
}

impl<T: Element + Copy> Producer<T> {
    /// Push items in order while there is room; returns how many were pushed (at least 1),
    /// or the error of the first push.
    pub fn try_push_slice(&mut self, items: &[T]) -> Result<usize, TryPushError<()>> {
        for (i, &v) in items.iter().enumerate() {
            if let Err(e) = self.try_push(v) {
                return match (i, e) {
                    (0, TryPushError::Full(_)) => Err(TryPushError::Full(())),
                    (0, TryPushError::Disconnected(_)) => Err(TryPushError::Disconnected(())),
                    (0, TryPushError::Corrupt(_)) => Err(TryPushError::Corrupt(())),
                    (i, _) => Ok(i),
                };
            }
        }
        Ok(items.len())
    }

    fn push_slice_within(
        &mut self,
        mut items: &[T],
        deadline: Option<Instant>,
    ) -> Result<(), PushError<usize>> {
        let total = items.len();
        while !items.is_empty() {
            match self.try_push_slice(items) {
                Ok(n) => items = &items[n..],
                Err(e) => match e.map(|()| total - items.len()).blocking() {
                    Ok(e) => return Err(e),
                    // Full: wait for room with the first item.
                    Err(done) => {
                        self.push_within(items[0], deadline)
                            .map_err(|e| e.map(|_| done))?;
                        items = &items[1..];
                    }
                },
            }
        }
        Ok(())
    }

    blocking_forms! {
        /// Push all of `items` in order, waiting (as [`push`](Self::push) does) for room as
        /// needed. On timeout or disconnection the error holds how many were pushed.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{mpmc::Queue, PushError};
        /// let q = Queue::<u8>::with_capacity(4);
        /// let mut tx = q.producer().unwrap();
        /// tx.push_slice(&[1, 2, 3]).unwrap();
        /// let e = tx.push_slice_timeout(&[4, 5], Duration::from_millis(1));
        /// assert_eq!(e, Err(PushError::Timeout(1)));
        /// ```
        fn push_slice / push_slice_timeout / push_slice_deadline (items: &[T])
            -> Result<(), PushError<usize>> = push_slice_within;
    }
}

/// A consuming handle of an MPMC [`Queue`]. `Send`, not `Sync`. Dropping it detaches it (its
/// claim slot is freed; the queue keeps its elements for the next consumer); producers get
/// `Disconnected` only once the last attached consumer [`close`](Self::close)s, or every
/// attached consumer is dead.
pub struct Consumer<T> {
    h: Handle,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Consumer")
            .field("slot", &self.h.slot())
            .finish()
    }
}

impl<T: Element> Consumer<T> {
    /// One pop attempt. With `classify` false, an empty slot is reported as
    /// `Attempt::Unpublished` without telling `Blocked` from `InFlight` (see `classify`).
    fn attempt(&mut self, classify: bool) -> Result<T, Attempt> {
        let sh = &*self.h.q;
        let ctrl = sh.ctrl();
        let claim = &ctrl.consumers[self.h.slot()];
        // Relaxed: a starting guess, validated by the stamp and the CAS.
        let mut pos = ctrl.head.head.load(Ordering::Relaxed);
        loop {
            // Acquire pairs with the producer's Release stamp store: the element is visible.
            let stamp = sh.stamp(pos).load(Ordering::Acquire);
            if stamp == pos.wrapping_add(1) {
                // Release: see the producer side.
                claim.inflight.store(pos, Ordering::Release);
                // AcqRel: Release publishes the inflight store with the new head.
                match ctrl.head.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: position `pos` is ours (stamp pos + 1, CAS won): no producer
                        // writes the slot until we release it; in bounds (`elem`), read
                        // unaligned. Any bytes are a valid T (FromBytes).
                        let v = unsafe { sh.elem(pos).cast::<T>().read_unaligned() };
                        // Release pairs with the producers' Acquire stamp load: we are done
                        // reading before the next lap may overwrite.
                        sh.stamp(pos)
                            .store(pos.wrapping_add(sh.capacity), Ordering::Release);
                        ctrl.head.not_full.notify_all();
                        return Ok(v);
                    }
                    Err(h) => {
                        // Lost the race for `pos`: withdraw the claim record (as in push).
                        claim.inflight.store(NONE, Ordering::Release);
                        pos = h;
                    }
                }
            } else if stamp == pos
                || stamp == pos.wrapping_sub(sh.capacity).wrapping_add(1)
                || stamp == pos.wrapping_sub(sh.capacity)
            {
                // Not yet written. (`pos - capacity`: the previous lap's position was skipped
                // by a consumer that died before freeing the slot; the next producer here
                // frees it, see `Producer::attempt`.)
                let a = Attempt::Unpublished { pos, stamp };
                return Err(if classify { self.classify(a) } else { a });
            } else {
                // Acquire (pairs with the consumers' head CAS), as for the tail in push.
                let h = ctrl.head.head.load(Ordering::Acquire);
                if h == pos {
                    return Err(Attempt::Corrupt);
                }
                pos = h;
            }
        }
    }

    /// Decide an `Unpublished` attempt: `Blocked` (empty) or `InFlight` (a producer claimed
    /// the position and has not published). Other attempts are returned unchanged.
    fn classify(&self, a: Attempt) -> Attempt {
        let Attempt::Unpublished { pos, stamp } = a else {
            return a;
        };
        // SeqCst fence as crossbeam: order the (earlier) stamp load before the tail load.
        fence(Ordering::SeqCst);
        // Acquire pairs with the producers' tail CAS (their inflight stores).
        let tail = self.h.q.ctrl().tail.tail.load(Ordering::Acquire);
        if tail == pos || stamp != pos {
            return Attempt::Blocked;
        }
        // No producer claims `pos + capacity` before a consumer claimed `pos`: with `head`
        // still at `pos` (reloaded after `tail`), more than `capacity` claimed positions mean
        // the indices are corrupt (else skipping dead claims could walk up to a garbage tail).
        // Acquire: as for the head CAS.
        if tail.wrapping_sub(pos) > self.h.q.capacity
            && self.h.q.ctrl().head.head.load(Ordering::Acquire) == pos
        {
            return Attempt::Corrupt;
        }
        Attempt::InFlight(pos)
    }

    /// Skip position `pos` if the producer that claimed it is dead. Returns whether skipped.
    fn recover(&self, pos: u64) -> bool {
        let sh = &*self.h.q;
        if sh.live_claimer(Role::Producer, pos) {
            return false;
        }
        // Acquire: re-check after the scan; a published element is taken normally.
        if sh.stamp(pos).load(Ordering::Acquire) != pos {
            return false;
        }
        // Its claimer died between claiming and publishing: claim the position as a consumer
        // and release the slot empty. Release: inflight as in `attempt`.
        self.h.claim().inflight.store(pos, Ordering::Release);
        let ctrl = sh.ctrl();
        if ctrl
            .head
            .head
            .compare_exchange(
                pos,
                pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            // Release pairs with producers' Acquire stamp loads.
            sh.stamp(pos)
                .store(pos.wrapping_add(sh.capacity), Ordering::Release);
            ctrl.head.not_full.notify_all();
            return true;
        }
        // Someone else moved `head` first: withdraw our claim record (as in push).
        self.h.claim().inflight.store(NONE, Ordering::Release);
        false
    }

    /// Pop the oldest element if there is one. A position claimed by a producer that died
    /// before publishing is skipped once that producer is found dead.
    pub fn try_pop(&mut self) -> Result<T, TryPopError> {
        if self.h.is_closed() {
            return Err(TryPopError::Disconnected);
        }
        match self.attempt(false) {
            Ok(v) => Ok(v),
            Err(Attempt::Corrupt) => Err(TryPopError::Corrupt),
            Err(a) => {
                let thorough = self.h.throttle.due();
                // Fast path of a busy poll on an empty queue: unless a thorough check is due or
                // the producer side was closed, both `Blocked` and `InFlight` end in `Empty`
                // below (no recovery without `thorough`; `side_gone(_, false)` is false while
                // the side's closed bit is clear), so skip classifying (a fence and a load of
                // the line producers write). Acquire: as in `side_gone`.
                if !thorough
                    && self.h.q.ctrl().geo.state.load(Ordering::Acquire) & PRODUCERS_CLOSED == 0
                {
                    return Err(TryPopError::Empty);
                }
                let a = self.classify(a);
                if matches!(a, Attempt::Corrupt) {
                    return Err(TryPopError::Corrupt);
                }
                if thorough {
                    if let Attempt::InFlight(p) = a {
                        if self.recover(p) {
                            return self.try_pop();
                        }
                    }
                }
                if matches!(a, Attempt::Blocked) && self.h.q.side_gone(Role::Producer, thorough) {
                    // The side is gone: a re-check drains what it left.
                    return match self.attempt(true) {
                        Ok(v) => Ok(v),
                        Err(Attempt::Corrupt) => Err(TryPopError::Corrupt),
                        Err(_) => Err(TryPopError::Disconnected),
                    };
                }
                Err(TryPopError::Empty)
            }
        }
    }

    blocking_forms! {
        /// Pop, waiting for an element; checks every 20 ms for dead producers (skipping a
        /// slot one of them claimed and never published) and for all producers gone
        /// (`Disconnected`). Never hangs on a dead peer.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{mpmc::Queue, PopError};
        /// let q = Queue::<u32>::with_capacity(2);
        /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        /// tx.push(7).unwrap();
        /// assert_eq!(rx.pop(), Ok(7));
        /// assert_eq!(rx.pop_timeout(Duration::from_millis(1)), Err(PopError::Timeout));
        /// ```
        fn pop / pop_timeout / pop_deadline () -> Result<T, PopError> = pop_within;
    }

    fn pop_within(&mut self, deadline: Option<Instant>) -> Result<T, PopError> {
        loop {
            if self.h.is_closed() {
                return Err(PopError::Disconnected);
            }
            // Snapshot the tail before the attempt: any push after it changes the tail and ends
            // the wait below. Acquire pairs with producers' tail CAS (AcqRel).
            let tail0 = self.h.q.ctrl().tail.tail.load(Ordering::Acquire);
            let inflight = match self.attempt(true) {
                Ok(v) => return Ok(v),
                Err(Attempt::Corrupt) => return Err(PopError::Corrupt),
                // (`Unpublished` comes only from an unclassified consumer attempt; never here.)
                Err(Attempt::Blocked | Attempt::Unpublished { .. }) => None,
                Err(Attempt::InFlight(p)) => Some(p),
            };
            if self.h.q.side_gone(Role::Producer, false) {
                match inflight {
                    // Nothing will be published any more: drain, then Disconnected.
                    None => {
                        return match self.attempt(true) {
                            Ok(v) => Ok(v),
                            Err(Attempt::Corrupt) => Err(PopError::Corrupt),
                            Err(_) => Err(PopError::Disconnected),
                        }
                    }
                    // The position's claimer is gone with its side: skip it and retry.
                    Some(p) => {
                        if self.recover(p) {
                            if crate::os::deadline::passed(deadline) {
                                return Err(PopError::Timeout);
                            }
                            continue;
                        }
                    }
                }
            }
            // Checked on every round, not only after a timed-out wait: a wait that ends at
            // once (the side is gone, a hostile stamp) must not loop past the deadline.
            if crate::os::deadline::passed(deadline) {
                return Err(PopError::Timeout);
            }
            let sh = &*self.h.q;
            // Acquire: as for `tail0`.
            // A producer in flight on `inflight` ends the wait by publishing. A gone side
            // ends it only when nothing is in flight (else the round above already tried to
            // skip the position, and waking at once would spin).
            let ready = || {
                sh.ctrl().tail.tail.load(Ordering::Acquire) != tail0
                    || inflight.is_some_and(|p| sh.stamp(p).load(Ordering::Acquire) != p)
                    || (inflight.is_none() && sh.side_gone(Role::Producer, false))
            };
            // Every slice: skip the position of a producer that died before publishing it (the
            // stamp change ends the wait); with nothing in flight, give up once every producer
            // is gone.
            let check = || match inflight {
                Some(p) => {
                    self.recover(p);
                    None
                }
                None => sh.side_gone(Role::Producer, true).then_some(()),
            };
            match endpoint::wait_sliced(&sh.ctrl().tail.not_empty, ready, deadline, check) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PopError::Timeout),
                Wake::Gone(()) => {
                    // Drain what the gone side left, then Disconnected.
                    return match self.attempt(true) {
                        Ok(v) => Ok(v),
                        Err(Attempt::Corrupt) => Err(PopError::Corrupt),
                        Err(_) => Err(PopError::Disconnected),
                    };
                }
            }
        }
    }

    handle_accessors!("consumer");
}

impl<T: Element + Copy> Consumer<T> {
    /// Pop up to `out.len()` elements in order; returns how many (at least 1), or the error
    /// of the first pop.
    pub fn try_pop_slice(&mut self, out: &mut [T]) -> Result<usize, TryPopError> {
        for (i, slot) in out.iter_mut().enumerate() {
            match self.try_pop() {
                Ok(v) => *slot = v,
                Err(e) if i == 0 => return Err(e),
                Err(_) => return Ok(i),
            }
        }
        Ok(out.len())
    }

    fn pop_slice_within(
        &mut self,
        out: &mut [T],
        deadline: Option<Instant>,
    ) -> Result<usize, PopError> {
        let Some((first, rest)) = out.split_first_mut() else {
            return Ok(0);
        };
        *first = self.pop_within(deadline)?;
        Ok(1 + self.try_pop_slice(rest).unwrap_or(0))
    }

    blocking_forms! {
        /// Pop at least one element into `out` (up to `out.len()`, in order), waiting for
        /// the first as [`pop`](Self::pop) does; returns how many.
        ///
        /// ```
        /// let q = shmkit::queue::mpmc::Queue::<u8>::with_capacity(4);
        /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        /// tx.push_slice(&[1, 2, 3]).unwrap();
        /// let mut out = [0; 8];
        /// assert_eq!(rx.pop_slice(&mut out), Ok(3));
        /// assert_eq!(out[..3], [1, 2, 3]);
        /// ```
        fn pop_slice / pop_slice_timeout / pop_slice_deadline (out: &mut [T])
            -> Result<usize, PopError> = pop_slice_within;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An owner word of a process that cannot exist (pid_max is at most 2^22).
    const GHOST: u64 = 4_194_305 | (1 << 32);
    const T: Duration = Duration::from_secs(10);

    #[test]
    fn skips_a_slot_claimed_by_a_dead_producer() {
        let q = Queue::<u64>::with_capacity(4);
        let ctrl = q.shared.ctrl();
        // A producer claims position 0 and dies before publishing.
        ctrl.producers[7].owner.claim(GHOST).unwrap();
        ctrl.producers[7].inflight.store(0, Ordering::Relaxed);
        ctrl.tail.tail.store(1, Ordering::Relaxed);
        let mut p = q.producer().unwrap();
        let mut c = q.consumer().unwrap();
        p.try_push(42).unwrap();
        assert_eq!(c.pop_timeout(T), Ok(42));
        // The ring keeps working across laps.
        for i in 0..10 {
            p.push_timeout(i, T).unwrap();
            assert_eq!(c.pop_timeout(T), Ok(i));
        }
    }

    /// Found by `fuzz/queue_attach`: a position in flight whose producer side is gone (the
    /// claimer closed or was reclaimed, its slot is free, `PRODUCERS_CLOSED` is set) made
    /// `pop` spin forever, past its timeout: the wait ended at once on "side gone" and the
    /// round never skipped the position nor checked the deadline.
    #[test]
    fn pop_skips_an_in_flight_position_whose_side_is_gone() {
        let q = Queue::<u64>::with_capacity(4);
        let ctrl = q.shared.ctrl();
        // Position 0 claimed (tail 1, stamp still 0), never published; nobody attached.
        ctrl.tail.tail.store(1, Ordering::Relaxed);
        ctrl.geo.state.fetch_or(PRODUCERS_CLOSED, Ordering::Relaxed);
        let c = q.consumer().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut c = c;
            let r = c.pop_timeout(Duration::from_millis(50));
            let head = q.shared.ctrl().head.head.load(Ordering::Relaxed);
            let _ = tx.send((r, head));
        });
        let (r, head) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("pop hung past its 50 ms timeout");
        assert_eq!(r, Err(PopError::Disconnected));
        assert_eq!(head, 1, "the dead position was skipped");
    }

    /// Found by `fuzz/queue_attach` (after the fix above): a garbage `tail` far ahead of
    /// `head` with the producer side gone made `pop` skip "dead" positions one by one
    /// towards it, past its deadline. More than `capacity` claimed positions is `Corrupt`.
    #[test]
    fn a_tail_more_than_capacity_ahead_is_corrupt() {
        let q = Queue::<u64>::with_capacity(4);
        let ctrl = q.shared.ctrl();
        ctrl.tail.tail.store(1 << 40, Ordering::Relaxed);
        ctrl.geo.state.fetch_or(PRODUCERS_CLOSED, Ordering::Relaxed);
        let mut c = q.consumer().unwrap();
        assert_eq!(c.try_pop(), Err(TryPopError::Corrupt));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(c.pop());
        });
        let r = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("pop walked towards a garbage tail");
        assert_eq!(r, Err(PopError::Corrupt));
        drop(q);
    }

    #[test]
    fn waits_for_a_live_claimer() {
        let q = Queue::<u64>::with_capacity(4);
        let ctrl = q.shared.ctrl();
        // A live process (this one) claimed position 0 and has not published yet.
        ctrl.producers[7].owner.claim(role::me().unwrap()).unwrap();
        ctrl.producers[7].inflight.store(0, Ordering::Relaxed);
        ctrl.tail.tail.store(1, Ordering::Relaxed);
        let mut c = q.consumer().unwrap();
        assert_eq!(
            c.pop_timeout(Duration::from_millis(100)),
            Err(PopError::Timeout)
        );
        // It publishes: the consumer takes it.
        // SAFETY: slot 0, in bounds; nobody else writes it.
        unsafe { q.shared.elem(0).cast::<u64>().write_unaligned(9) };
        q.shared.stamp(0).store(1, Ordering::Release);
        assert_eq!(c.pop_timeout(T), Ok(9));
    }

    #[test]
    fn frees_a_slot_held_by_a_dead_consumer() {
        let q = Queue::<u64>::with_capacity(2);
        let mut p = q.producer().unwrap();
        p.push_timeout(1, T).unwrap();
        p.push_timeout(2, T).unwrap();
        let ctrl = q.shared.ctrl();
        // A consumer claims position 0 and dies while reading it.
        ctrl.consumers[3].owner.claim(GHOST).unwrap();
        ctrl.consumers[3].inflight.store(0, Ordering::Relaxed);
        ctrl.head.head.store(1, Ordering::Relaxed);
        let mut c = q.consumer().unwrap();
        // The producer frees the slot (element 1 was in flight and is lost) and pushes.
        p.push_timeout(3, T).unwrap();
        assert_eq!(c.pop_timeout(T), Ok(2));
        assert_eq!(c.pop_timeout(T), Ok(3));
    }

    #[test]
    fn disconnected_after_last_producer_closes_and_busy_slots() {
        let q = Queue::<u32>::with_capacity(8);
        let mut c = q.consumer().unwrap();
        assert_eq!(c.try_pop(), Err(TryPopError::Empty));
        let mut ps: Vec<_> = (0..MAX_HANDLES).map(|_| q.producer().unwrap()).collect();
        assert!(matches!(q.producer(), Err(AttachError::NoFreeSlot { .. })));
        ps[0].try_push(5).unwrap();
        // Closing while others are attached only detaches.
        ps[0].close();
        assert_eq!(c.try_pop(), Ok(5));
        assert_eq!(c.try_pop(), Err(TryPopError::Empty));
        // All detached (dropped): the side stays open, the consumer waits.
        let mut last = ps.pop().unwrap();
        drop(ps);
        assert_eq!(c.try_pop(), Err(TryPopError::Empty));
        last.try_push(6).unwrap();
        // The last attached producer closes: drained, then Disconnected.
        last.close();
        assert_eq!(c.try_pop(), Ok(6));
        assert_eq!(c.try_pop(), Err(TryPopError::Disconnected));
        assert_eq!(
            c.pop_timeout(Duration::from_millis(30)),
            Err(PopError::Disconnected)
        );
        // A new producer reopens the side.
        let mut p = q.producer().unwrap();
        p.try_push(7).unwrap();
        assert_eq!(c.try_pop(), Ok(7));
        drop(p);
        assert_eq!(c.try_pop(), Err(TryPopError::Empty));
    }

    /// Dropping every producer detaches them: a blocked consumer times out instead of
    /// getting `Disconnected`, and receives from the next producer.
    #[test]
    fn dropped_producers_leave_the_queue_open() {
        let q = Queue::<u32>::with_capacity(8);
        let mut c = q.consumer().unwrap();
        let mut p = q.producer().unwrap();
        p.try_push(1).unwrap();
        drop(p);
        assert_eq!(c.pop_timeout(Duration::from_millis(50)), Ok(1));
        assert_eq!(
            c.pop_timeout(Duration::from_millis(60)),
            Err(PopError::Timeout)
        );
        assert!(!q.stat().producer_closed);
        // The consumer detaches too; the producer keeps pushing into the queue.
        drop(c);
        let mut p = q.producer().unwrap();
        p.try_push(2).unwrap();
        drop(p);
        let mut c = q.consumer().unwrap();
        assert_eq!(c.try_pop(), Ok(2));
    }

    /// Slots are [stamp, element padded to 8]: odd sizes and 16-aligned elements (stored
    /// unaligned after the stamp) round-trip across laps, on the heap and in a segment.
    #[test]
    fn odd_and_overaligned_elements_across_laps() {
        fn laps<T: Element + Copy + PartialEq + std::fmt::Debug>(
            q: &Queue<T>,
            f: impl Fn(u64) -> T,
        ) {
            let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
            for i in 0..20 {
                p.try_push(f(i)).unwrap();
                p.try_push(f(i + 100)).unwrap();
                assert_eq!(c.try_pop(), Ok(f(i)));
                assert_eq!(c.try_pop(), Ok(f(i + 100)));
            }
            assert_eq!(c.try_pop(), Err(TryPopError::Empty));
        }
        let b3 = |i: u64| [i as u8, (i >> 1) as u8, 0xa5];
        let wide = |i: u64| (u128::from(i) << 64) | u128::from(!i);
        laps(&Queue::<[u8; 3]>::with_capacity(4), b3);
        laps(&Queue::<u128>::with_capacity(4), wide);
        let name = format!("mpmc-odd-{}", std::process::id());
        let q = Queue::<[u8; 3]>::create(&name, 4).unwrap();
        q.set_unlink_on_drop(true);
        laps(&q, b3);
        let name = format!("mpmc-wide-{}", std::process::id());
        let q = Queue::<u128>::create(&name, 4).unwrap();
        q.set_unlink_on_drop(true);
        laps(&q, wide);
        // Reopening validates the slot geometry.
        let q2 = Queue::<u128>::open(&name).unwrap();
        assert_eq!(q2.capacity(), 4);
    }

    #[test]
    fn threads_2x2_checksum() {
        let q = Queue::<u64>::with_capacity(64);
        let n = 20_000u64;
        let keep = q.producer().unwrap();
        let sums: Vec<(u64, u64)> = std::thread::scope(|s| {
            let cs: Vec<_> = (0..2)
                .map(|_| {
                    let mut c = q.consumer().unwrap();
                    s.spawn(move || {
                        let (mut k, mut sum) = (0, 0u64);
                        while let Ok(v) = c.pop_timeout(T) {
                            k += 1;
                            sum = sum.wrapping_add(v);
                        }
                        (k, sum)
                    })
                })
                .collect();
            let ps: Vec<_> = (0..2u64)
                .map(|id| {
                    let mut p = q.producer().unwrap();
                    s.spawn(move || {
                        for i in 0..n {
                            p.push_timeout(id * n + i, T).unwrap();
                        }
                    })
                })
                .collect();
            ps.into_iter().for_each(|h| h.join().unwrap());
            drop(keep);
            cs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: u64 = sums.iter().map(|s| s.0).sum();
        let sum = sums.iter().fold(0u64, |a, s| a.wrapping_add(s.1));
        assert_eq!(total, 2 * n);
        assert_eq!(sum, (0..2 * n).sum::<u64>());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn loom_two_producers_one_consumer() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut keep = q.producer().unwrap();
            let mut c = q.consumer().unwrap();
            let hs: Vec<_> = (1..=2u64)
                .map(|v| {
                    let mut p = q.producer().unwrap();
                    loom::thread::spawn(move || p.push(v).unwrap())
                })
                .collect();
            let a = c.pop().unwrap();
            let b = c.pop().unwrap();
            assert_eq!(a + b, 3);
            hs.into_iter().for_each(|h| h.join().unwrap());
            // The two pushers detached (dropped); the last attached producer closes the side.
            assert_eq!(c.try_pop(), Err(TryPopError::Empty));
            keep.close();
            assert_eq!(c.try_pop(), Err(TryPopError::Disconnected));
        });
    }

    /// Two producers close at once: the side ends up closed (at least one of them sees the
    /// other's release), and a consumer drains and gets `Disconnected`. A dropped producer
    /// only detaches.
    #[test]
    fn loom_two_producers_close_at_once() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut c = q.consumer().unwrap();
            let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
            drop(q.producer().unwrap());
            let t = loom::thread::spawn(move || {
                a.try_push(1).unwrap();
                a.close();
            });
            b.close();
            t.join().unwrap();
            assert_eq!(c.try_pop(), Ok(1));
            assert_eq!(c.try_pop(), Err(TryPopError::Disconnected));
        });
    }

    /// Two producers race for the last free slot: the loser must not keep a claim record for
    /// the winner's position (else, were the winner to die before publishing, recovery would
    /// take the live loser for its claimer and never skip the position).
    #[test]
    fn loom_a_producer_that_loses_its_claim_withdraws_it() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut first = q.producer().unwrap();
            first.try_push(0).unwrap(); // one slot left
            let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
            let (sa, sb) = (a.h.slot(), b.h.slot());
            let t = loom::thread::spawn(move || {
                let won = a.try_push(1).is_ok();
                (won, a)
            });
            let won_b = b.try_push(2).is_ok();
            let (won_a, a) = t.join().unwrap();
            assert!(won_a ^ won_b, "exactly one push fits");
            let ctrl = q.shared.ctrl();
            for (slot, won) in [(sa, won_a), (sb, won_b)] {
                let inflight = ctrl.producers[slot].inflight.load(Ordering::Relaxed);
                assert_eq!(inflight, if won { 1 } else { NONE }, "won = {won}");
            }
            drop((a, b, first));
        });
    }

    #[test]
    fn loom_consumer_frees_slots_for_the_next_lap() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut p = q.producer().unwrap();
            let mut b = q.consumer().unwrap();
            let mut a = q.consumer().unwrap();
            let h = loom::thread::spawn(move || a.pop().unwrap() + a.pop().unwrap());
            // The third push needs a slot the consumer thread frees (second lap).
            for v in 1..=3 {
                p.push(v).unwrap();
            }
            let got = h.join().unwrap();
            assert_eq!(got + b.pop().unwrap(), 6);
        });
    }
}
