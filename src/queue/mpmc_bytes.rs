//! [`Queue`]: a bounded multi-producer multi-consumer queue of variable-length byte messages
//! in shared memory (what Python's `multiprocessing.Queue` carries), lock-free, robust
//! against processes that die in the middle of an operation.
//!
//! The data area is a ring of 64-byte *cells*, each with a 64-bit *stamp* in a separate
//! array. A message is a *record* of `k` consecutive cells: an 8-byte length, then the bytes.
//! Producers claim `k` cells at once by advancing `tail` with a compare-and-swap once every
//! one of them is free for this lap (Vyukov's per-slot sequences, as [`mpmc`](super::mpmc),
//! with a record spanning several slots), write the record, and publish it with one Release
//! store of its first cell's stamp. Consumers claim a published record by advancing `head`
//! over all its cells, copy it out, and free each cell for the next lap. As in `mpmc`, each
//! handle holds one of 16 claim slots per side where it records the cells it is claiming, so
//! that a record claimed by a process that then died is skipped (producer) or freed
//! (consumer), cell by cell, once the claimer is known dead (`SPEC.md`, "MPMC bytes queue").
//!
//! ```
//! use shmkit::queue::mpmc_bytes::Queue;
//! # let name = format!("doc-mpmcb-{}", std::process::id());
//! let q = Queue::options().unlink_on_drop(true).create(&name, 4096)?;
//! let (mut p1, mut p2) = (q.producer()?, q.producer()?);
//! let mut c = q.consumer()?;
//! p1.try_push(b"hello")?;
//! p2.try_push(&[7u8; 300])?;
//! assert_eq!(c.try_pop()?, b"hello");
//! let mut buf = Vec::new();
//! assert_eq!(c.try_pop_into(&mut buf)?, 300); // reuses `buf`'s allocation
//! assert_eq!(buf, [7u8; 300]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache_padded::CachePadded;
use super::error::{AttachError, Role};
#[cfg(not(loom))]
use super::options::{How, QueueOptions};
use super::region::Region;
use super::role::{self, RoleSlot, Throttle};
use super::stat::{Attached, LenUnit, QueueStat};
use crate::loom::{fence, AtomicU64, Ordering};
use crate::os::{atomic_copy, deadline};
use crate::segment::fingerprint;
use crate::sync::WaitQueue;
use crate::Kind;
use crate::Liveness;

/// Claim slots per side: at most this many producers and this many consumers at once.
pub const MAX_HANDLES: usize = 16;

/// Bytes per cell: records occupy whole cells.
pub const CELL: u64 = 64;

/// Bytes of a record's header (the message length, a `u64`).
const HEADER: u64 = 8;

/// Smallest capacity in bytes (4 cells).
pub const MIN_CAPACITY: u64 = 256;

/// `state` bit: the producer side is closed (as in `mpmc`).
const PRODUCERS_CLOSED: u64 = 1;
/// `state` bit: the consumer side is closed.
const CONSUMERS_CLOSED: u64 = 2;
/// Claim-slot `start` meaning "no cells".
const NONE: u64 = u64::MAX;

/// Layout fingerprint of an MPMC bytes queue (layout v1).
pub const LAYOUT_FINGERPRINT: u64 = fingerprint(
    b"shmkit mpmc-bytes v1 cell=64 header=len64 handles=16 claim=[owner,start,end] stamps=array",
);

/// The largest message a queue of `capacity` bytes takes: a record (8-byte header and the
/// message) fills at most half the ring, so that one message never needs the whole ring.
///
/// ```
/// assert_eq!(shmkit::queue::mpmc_bytes::max_message(4096), 2040);
/// ```
pub const fn max_message(capacity: u64) -> u64 {
    capacity / 2 - HEADER
}

/// Cells of the record of a `len`-byte message.
#[inline]
fn cells_for(len: u64) -> u64 {
    (HEADER + len).div_ceil(CELL)
}

#[repr(C)]
struct Geometry {
    capacity: AtomicU64,      // 0: data bytes = cells * 64
    cell_size: AtomicU64,     // 8: 64
    cells: AtomicU64,         // 16: N
    stamps_offset: AtomicU64, // 24: 4480
    data_offset: AtomicU64,   // 32: 4480 + round_up(8 N, 128)
    handles: AtomicU64,       // 40: 16
    state: AtomicU64,         // 48
    max_message: AtomicU64,   // 56
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

/// A producer's or consumer's claim slot: the cells `start..end` it is claiming or last
/// claimed (`start == NONE`: none).
#[repr(C)]
struct Claim {
    owner: RoleSlot,  // 0
    start: AtomicU64, // 8
    end: AtomicU64,   // 16
}

#[repr(C)]
struct Control {
    geo: CachePadded<Geometry>,                   // 0
    tail: CachePadded<TailLine>,                  // 128
    head: CachePadded<HeadLine>,                  // 256
    producers: [CachePadded<Claim>; MAX_HANDLES], // 384
    consumers: [CachePadded<Claim>; MAX_HANDLES], // 2432
}

/// Size of the control block; the stamps follow it.
const CONTROL_SIZE: u64 = 4480;
const STAMPS_OFFSET: u64 = CONTROL_SIZE;

/// Payload offset of the data area of a queue of `cells` cells.
fn data_offset(cells: u64) -> u64 {
    STAMPS_OFFSET + (cells * 8).next_multiple_of(128)
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Control>() == CONTROL_SIZE as usize);
    assert!(offset_of!(Control, tail) == 128);
    assert!(offset_of!(Control, head) == 256);
    assert!(offset_of!(Control, producers) == 384);
    assert!(offset_of!(Control, consumers) == 2432);
    assert!(offset_of!(Geometry, max_message) == 56);
    assert!(offset_of!(Claim, end) == 16);
};

impl Control {
    fn new() -> Control {
        let claim = || {
            CachePadded(Claim {
                owner: RoleSlot::new(),
                start: AtomicU64::new(NONE),
                end: AtomicU64::new(0),
            })
        };
        let z = || AtomicU64::new(0);
        Control {
            geo: CachePadded(Geometry {
                capacity: z(),
                cell_size: z(),
                cells: z(),
                stamps_offset: z(),
                data_offset: z(),
                handles: z(),
                state: z(),
                max_message: z(),
            }),
            tail: CachePadded(TailLine {
                tail: z(),
                not_empty: WaitQueue::new(),
            }),
            head: CachePadded(HeadLine {
                head: z(),
                not_full: WaitQueue::new(),
            }),
            producers: std::array::from_fn(|_| claim()),
            consumers: std::array::from_fn(|_| claim()),
        }
    }

    /// Write the geometry and empty claim slots. Relaxed: published by the segment's READY
    /// store (Release), or by sharing the heap queue with other threads.
    fn init(&self, capacity: u64) {
        let g = &self.geo;
        let cells = capacity / CELL;
        g.capacity.store(capacity, Ordering::Relaxed);
        g.cell_size.store(CELL, Ordering::Relaxed);
        g.cells.store(cells, Ordering::Relaxed);
        g.stamps_offset.store(STAMPS_OFFSET, Ordering::Relaxed);
        g.data_offset.store(data_offset(cells), Ordering::Relaxed);
        g.handles.store(MAX_HANDLES as u64, Ordering::Relaxed);
        g.max_message
            .store(max_message(capacity), Ordering::Relaxed);
        for c in self.producers.iter().chain(self.consumers.iter()) {
            c.start.store(NONE, Ordering::Relaxed);
        }
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
    /// Data bytes (`cells * CELL`).
    capacity: u64,
    /// Cells N (a power of two).
    cells: u64,
    max_message: u64,
}

impl Shared {
    #[inline]
    fn ctrl(&self) -> &Control {
        self.region.ctrl()
    }

    /// The stamp of cell position `pos`.
    #[inline]
    fn stamp(&self, pos: u64) -> &AtomicU64 {
        // In bounds: masked by N - 1, and the region holds N stamps (validated on open).
        &self.region.stamps()[(pos & (self.cells - 1)) as usize]
    }

    /// Byte offset in the data area of cell position `pos`.
    #[inline]
    fn offset(&self, pos: u64) -> u64 {
        (pos & (self.cells - 1)) * CELL
    }

    /// The header word (message length) of the record starting at `pos`.
    #[inline]
    fn header(&self, pos: u64) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the cell lies inside the data area (`offset` < capacity, the area holds
        // `capacity` bytes), 8-aligned (the area is 128-aligned, cells 64 bytes); it is only
        // ever accessed atomically (this word, or `atomic_copy`'s aligned 8-byte words), and
        // an AtomicU64 is valid for any bits.
        unsafe {
            &*self
                .region
                .data()
                .add(self.offset(pos) as usize)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }

    /// The two pieces (offset, length) of `len` data bytes starting `skip` bytes into the
    /// record at `pos`, split at the end of the ring. `skip + len <= capacity / 2`.
    #[inline]
    fn pieces(&self, pos: u64, len: u64) -> [(usize, usize); 2] {
        let start = self.offset(pos) + HEADER;
        let first = len.min(self.capacity - start);
        [
            (start as usize, first as usize),
            (0, (len - first) as usize),
        ]
    }

    /// Copy `msg` into the record at `pos` (after its header).
    fn copy_in(&self, pos: u64, msg: &[u8]) {
        let mut src = msg.as_ptr();
        for (off, n) in self.pieces(pos, msg.len() as u64) {
            // SAFETY: `pieces` keeps every range inside the data area (`capacity` bytes); the
            // cells are ours (claimed with the tail CAS); `msg` is private memory of `n`
            // bytes from `src`.
            unsafe {
                atomic_copy::store(src, self.region.data().add(off), n);
                src = src.add(n);
            }
        }
    }

    /// Copy the `len` message bytes of the record at `pos` into `dst` (cleared first).
    fn copy_out(&self, pos: u64, len: u64, dst: &mut Vec<u8>) {
        dst.clear();
        dst.reserve(len as usize);
        let mut out = dst.as_mut_ptr();
        for (off, n) in self.pieces(pos, len) {
            // SAFETY: as `copy_in`; `dst` has room for `len` bytes (reserved) and nobody
            // else accesses it.
            unsafe {
                atomic_copy::load(self.region.data().add(off), out, n);
                out = out.add(n);
            }
        }
        // SAFETY: the loop initialised `len` bytes.
        unsafe { dst.set_len(len as usize) };
    }

    /// Bytes in use (whole cells of claimed records), a snapshot.
    fn len(&self) -> u64 {
        // Relaxed loads and acquire fences, not Acquire loads: `stat` reads through a
        // PROT_READ mapping, where std permits only Relaxed loads.
        let head = self.ctrl().head.head.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let tail = self.ctrl().tail.tail.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let n = tail.wrapping_sub(head);
        if n > self.cells.saturating_mul(2) {
            0
        } else {
            n.min(self.cells) * CELL
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
            kind: Kind::MPMC_BYTES,
            capacity: self.capacity,
            len: self.len(),
            len_unit: LenUnit::Bytes,
            elem_size: 1,
            elem_type: None,
            max_message: Some(self.max_message),
            producers: self.attached(Role::Producer),
            consumers: self.attached(Role::Consumer),
            producer_closed: state & PRODUCERS_CLOSED != 0,
            consumer_closed: state & CONSUMERS_CLOSED != 0,
        }
    }

    /// Whether the side of `role` is gone (`mpmc`'s rule, `SPEC.md` §7.1.3): its last
    /// attached handle closed it, or every attached handle is dead. `thorough` allows
    /// liveness queries.
    fn side_gone(&self, role: Role, thorough: bool) -> bool {
        let bit = match role {
            Role::Producer => PRODUCERS_CLOSED,
            Role::Consumer => CONSUMERS_CLOSED,
        };
        // Acquire pairs with the Release `fetch_or` in `Handle::close`.
        let closed = self.ctrl().geo.state.load(Ordering::Acquire) & bit != 0;
        if !closed && !thorough {
            return false;
        }
        let claims = self.ctrl().claims(role);
        if !claims.iter().any(|c| c.owner.holder() != 0) {
            return closed;
        }
        thorough
            && claims.iter().all(|c| {
                let w = c.owner.holder();
                w == 0 || role::liveness_of(w) == Liveness::Dead
            })
    }

    /// Whether a live handle of `role` records a claim that covers cell position `pos`.
    fn live_claimer(&self, role: Role, pos: u64) -> bool {
        self.ctrl().claims(role).iter().any(|c| {
            let w = c.owner.holder();
            if w == 0 {
                return false;
            }
            // Acquire (both) pairs with the claimer's Release stores of `end` then `start`
            // before its CAS: seeing a newer claim of its means seeing its publication (or
            // release) of `pos`, which the caller's re-check of the stamp catches.
            let start = c.start.load(Ordering::Acquire);
            let end = c.end.load(Ordering::Acquire);
            start != NONE
                && pos.wrapping_sub(start) < end.wrapping_sub(start)
                && role::liveness_of(w) != Liveness::Dead
        })
    }
}

/// A bounded MPMC queue of byte messages in a named segment (or on the heap).
///
/// Up to [`MAX_HANDLES`] producers and as many consumers attach at once, from any processes.
/// Messages are `0..=`[`max_message`](Self::max_message) bytes (half the capacity, minus 8).
/// Each message takes `ceil((8 + len) / 64)` cells of 64 bytes.
///
/// # Shared memory is shared
///
/// Stamps, indices and record lengths are re-read on every operation and validated (a record
/// length above the maximum, or a stamp that fits no state of the protocol while the index
/// does not move, is [`PopError::Corrupt`] / [`PushError::Corrupt`]); cell positions are
/// masked. A hostile writer can change message bytes while they are copied.
pub struct Queue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc_bytes::Queue")
            .field("name", &self.shared.region.name())
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl Queue {
    /// Options for creating or opening the queue: mode, open timeout, unlink on drop,
    /// lifetime, sparse (see [`QueueOptions`]).
    ///
    /// ```
    /// use shmkit::queue::mpmc_bytes::Queue;
    /// # let name = format!("doc-mpmcb-options-{}", std::process::id());
    /// let q = Queue::options().mode(0o660).unlink_on_drop(true).create(&name, 1 << 16)?;
    /// assert_eq!(q.capacity(), 1 << 16);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn options() -> QueueOptions<Self> {
        QueueOptions::default()
    }

    /// Create the named queue with `capacity` data bytes (a power of two in `256..=2^40`),
    /// with the default [`options`](Self::options).
    #[cfg(not(loom))]
    pub fn create(name: &str, capacity: u64) -> crate::Result<Self> {
        Self::options().create(name, capacity)
    }

    /// Open the named queue.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> crate::Result<Self> {
        Self::options().open(name)
    }

    /// Open the named queue, or create it with `capacity` bytes.
    #[cfg(not(loom))]
    pub fn open_or_create(name: &str, capacity: u64) -> crate::Result<Self> {
        Self::options().open_or_create(name, capacity)
    }

    #[cfg(not(loom))]
    fn build_with(seg: &crate::SegmentOptions, name: &str, how: How) -> crate::Result<Self> {
        let opts = seg.clone().kind(Kind::MPMC_BYTES, LAYOUT_FINGERPRINT);
        let make = |capacity: u64, existing: bool| -> crate::Result<crate::Segment> {
            super::ring::check_capacity(name, capacity, MIN_CAPACITY)?;
            let total = data_offset(capacity / CELL) + capacity;
            let init = |seg: &crate::Segment| {
                // SAFETY: the payload is `total` bytes, 128-aligned; Control is atomics
                // only, valid for any bit pattern.
                let ctrl = unsafe { &*seg.as_mut_ptr().cast::<Control>() };
                ctrl.init(capacity);
                for i in 0..capacity / CELL {
                    // SAFETY: stamp i lies at STAMPS_OFFSET + 8 i < data_offset <= total,
                    // 8-aligned, only ever accessed as an atomic.
                    let s = unsafe {
                        &*seg
                            .as_mut_ptr()
                            .add((STAMPS_OFFSET + 8 * i) as usize)
                            .cast::<AtomicU64>()
                    };
                    // Relaxed: published by READY.
                    s.store(i, Ordering::Relaxed);
                }
                Ok(())
            };
            if existing {
                opts.open_or_create_with(name, total, init)
            } else {
                opts.create_with(name, total, init)
            }
        };
        let seg = match how {
            How::Create(cap) => make(cap, false)?,
            How::OpenOrCreate(cap) => make(cap, true)?,
            How::Open => opts.open(name)?,
            How::OpenBySize => {
                return Err(crate::Error::invalid(
                    name,
                    "an mpmc-bytes queue has no element type to open by size",
                ))
            }
        };
        Ok(Queue {
            shared: Arc::new(shared_from_segment(seg)?),
        })
    }

    /// A queue on this process's heap, for threads of one process (and tests).
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two in `256..=2^40`.
    pub fn with_capacity(capacity: u64) -> Self {
        assert!(
            capacity.is_power_of_two()
                && (MIN_CAPACITY..=super::ring::MAX_CAPACITY).contains(&capacity),
            "capacity {capacity} is not a power of two in 256..=2^40"
        );
        let ctrl = Control::new();
        ctrl.init(capacity);
        let cells = capacity / CELL;
        let region = Region::heap(ctrl, capacity as usize, 128, cells as usize, |i| i as u64);
        Queue {
            shared: Arc::new(Shared {
                region,
                capacity,
                cells,
                max_message: max_message(capacity),
            }),
        }
    }

    fn attach(&self, role: Role) -> Result<Handle, AttachError> {
        let me = role::me()?;
        for (i, c) in self.shared.ctrl().claims(role).iter().enumerate() {
            if c.owner.claim(me).is_ok() {
                // Relaxed: nothing claimed yet; a reader that sees NONE skips us.
                c.start.store(NONE, Ordering::Relaxed);
                // AcqRel: reopen the side (pairs with the Acquire in `side_gone`).
                self.shared
                    .ctrl()
                    .geo
                    .state
                    .fetch_and(!side_bit(role), Ordering::AcqRel);
                return Ok(Handle {
                    shared: Arc::clone(&self.shared),
                    role,
                    slot: i,
                    me,
                    closed: false,
                    throttle: Throttle::default(),
                });
            }
        }
        Err(AttachError::NoFreeSlot {
            role,
            slots: MAX_HANDLES as u32,
        })
    }

    /// Attach a producer (one of [`MAX_HANDLES`]; a slot held by a dead process is reused).
    pub fn producer(&self) -> Result<Producer, AttachError> {
        Ok(Producer {
            h: self.attach(Role::Producer)?,
        })
    }

    /// Attach a consumer (one of [`MAX_HANDLES`]).
    pub fn consumer(&self) -> Result<Consumer, AttachError> {
        Ok(Consumer {
            h: self.attach(Role::Consumer)?,
            buf: Vec::new(),
        })
    }

    /// Data bytes in the ring.
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// The largest message accepted ([`max_message`]`(capacity)`).
    pub fn max_message(&self) -> u64 {
        self.shared.max_message
    }

    /// Bytes in use now, in whole 64-byte cells (a snapshot).
    pub fn len(&self) -> u64 {
        self.shared.len()
    }

    /// Whether the queue is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        self.shared.region.name()
    }

    /// Unlink the segment when the last handle in this process drops.
    pub fn set_unlink_on_drop(&self, yes: bool) {
        self.shared.region.set_unlink_on_drop(yes)
    }

    /// Capacity, bytes in use, attached producers and consumers.
    pub fn stat(&self) -> QueueStat {
        self.shared.stat()
    }
}

#[cfg(not(loom))]
impl super::options::sealed::Build for Queue {
    fn build(seg: &crate::SegmentOptions, name: &str, how: How) -> crate::Result<Self> {
        Self::build_with(seg, name, how)
    }
}

fn side_bit(role: Role) -> u64 {
    match role {
        Role::Producer => PRODUCERS_CLOSED,
        Role::Consumer => CONSUMERS_CLOSED,
    }
}

/// Validate the geometry of a mapped queue (any bytes may be there) and wrap it.
#[cfg(not(loom))]
fn shared_from_segment<A: crate::segment::Access>(seg: crate::Segment<A>) -> crate::Result<Shared>
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
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let capacity = ld(&g.capacity);
    let cells = capacity / CELL;
    if !capacity.is_power_of_two()
        || !(MIN_CAPACITY..=super::ring::MAX_CAPACITY).contains(&capacity)
    {
        return Err(bad(format!(
            "capacity {capacity} is not a power of two in 256..=2^40"
        )));
    }
    let expect = [
        (ld(&g.cell_size), CELL, "cell_size"),
        (ld(&g.cells), cells, "cells"),
        (ld(&g.stamps_offset), STAMPS_OFFSET, "stamps_offset"),
        (ld(&g.data_offset), data_offset(cells), "data_offset"),
        (ld(&g.handles), MAX_HANDLES as u64, "handles"),
        (ld(&g.max_message), max_message(capacity), "max_message"),
    ];
    for (found, want, field) in expect {
        if found != want {
            return Err(bad(format!(
                "{field} is {found}, the layout says {want} for capacity {capacity}"
            )));
        }
    }
    // No overflow: capacity <= 2^40.
    let need = data_offset(cells) + capacity;
    if need > len {
        return Err(bad(format!(
            "the queue needs {need} bytes, the payload has {len}"
        )));
    }
    let data = data_offset(cells) as usize;
    // SAFETY: the geometry was validated: N stamps at STAMPS_OFFSET (8-aligned) and
    // `capacity` data bytes at `data` (128-aligned) lie inside the payload.
    let region = unsafe { Region::segment(seg, data, STAMPS_OFFSET as usize, cells as usize) };
    Ok(Shared {
        region,
        capacity,
        cells,
        max_message: max_message(capacity),
    })
}

/// [`QueueStat`] of the named MPMC bytes queue. Maps it read-only and only loads.
#[cfg(not(loom))]
pub(crate) fn stat_named(name: &str) -> crate::Result<QueueStat> {
    let seg = crate::Segment::options()
        .read_only()
        .kind(Kind::MPMC_BYTES, LAYOUT_FINGERPRINT)
        .open(name)?;
    Ok(shared_from_segment(seg)?.stat())
}

/// One attached handle: its claim slot.
struct Handle {
    shared: Arc<Shared>,
    role: Role,
    slot: usize,
    me: u64,
    closed: bool,
    throttle: Throttle,
}

impl Handle {
    #[inline]
    fn claim(&self) -> &Claim {
        &self.shared.ctrl().claims(self.role)[self.slot]
    }

    /// Record the claim of cells `start..end` before the CAS that makes it. Release (both):
    /// a survivor that sees a newer claim of ours also sees our publication of the older one
    /// (`Shared::live_claimer`); the CAS's Release makes them visible with the new index.
    #[inline]
    fn record(&self, start: u64, end: u64) {
        let c = self.claim();
        c.end.store(end, Ordering::Release);
        c.start.store(start, Ordering::Release);
    }

    /// Withdraw the claim record after losing the CAS (else recovery would take us for the
    /// live claimer of the winner's cells should the winner die). Release: as `record`.
    #[inline]
    fn withdraw(&self) {
        self.claim().start.store(NONE, Ordering::Release);
    }

    /// Closed, or inherited by a `fork()`ed child (whose parent still holds the claim).
    #[inline]
    fn is_closed(&self) -> bool {
        self.closed || !role::is_mine(self.me)
    }

    /// Free the claim slot (what dropping does); the side stays open.
    fn detach(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if role::is_mine(self.me) {
            self.claim().owner.release(self.me);
        }
    }

    /// Free the claim slot and, if no other handle of this side is attached, close the side.
    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !role::is_mine(self.me) {
            return; // a fork()ed child's copy: the claim is the parent's
        }
        let ctrl = self.shared.ctrl();
        self.claim().owner.release(self.me);
        // SeqCst: of two handles that close at once, at least one sees the other's release.
        fence(Ordering::SeqCst);
        if ctrl.claims(self.role).iter().all(|c| c.owner.holder() == 0) {
            // Release pairs with the Acquire in `side_gone`.
            ctrl.geo
                .state
                .fetch_or(side_bit(self.role), Ordering::Release);
        }
        ctrl.tail.not_empty.notify_all();
        ctrl.head.not_full.notify_all();
    }
}

impl Drop for Handle {
    /// Dropping detaches: the claim slot is freed, the side stays open.
    fn drop(&mut self) {
        self.detach();
    }
}

/// What one attempt found.
#[derive(Clone, Copy)]
enum Attempt {
    /// Full (producer: cell `pos` still holds the previous lap, `stamp`) or empty (consumer:
    /// cell `pos` unpublished, `stamp`).
    Blocked {
        pos: u64,
        stamp: u64,
    },
    /// Cell `pos` (producer: of the previous lap) is claimed by a handle that has not
    /// finished with it; `stamp` as seen.
    InFlight {
        pos: u64,
        stamp: u64,
    },
    /// Consumer, from an unclassified attempt: `Blocked` or `InFlight`, not decided yet (it
    /// costs a fence and a load of the producers' `tail` line).
    Unpublished {
        pos: u64,
        stamp: u64,
    },
    Corrupt,
}

/// Why a push did not take the message. `'static`, `Copy`; converts into [`crate::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// `try_push`: no room now.
    Full,
    /// `push_timeout` / `push_deadline`: no room before the time ran out.
    Timeout,
    /// The message is longer than the queue's [`max_message`](Queue::max_message): it can
    /// never fit.
    TooLarge {
        /// The message length.
        len: u64,
        /// The largest accepted length.
        max: u64,
    },
    /// The consumer side closed the queue or every consumer died; nothing will pop it.
    Disconnected,
    /// The queue's state in shared memory is inconsistent (a buggy or hostile writer).
    Corrupt,
}

/// Why a pop returned nothing. `'static`, `Copy`; converts into [`crate::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopError {
    /// `try_pop`: the queue is empty now.
    Empty,
    /// `pop_timeout` / `pop_deadline`: nothing arrived before the time ran out.
    Timeout,
    /// The queue is empty and its producer side closed it or died (until a producer
    /// attaches again).
    Disconnected,
    /// The queue's state or a record's length in shared memory is inconsistent.
    Corrupt,
}

const CORRUPT_MSG: &str =
    "the queue's state in shared memory is inconsistent (corrupt, or written by a foreign process)";

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Full => f.write_str("the queue is full"),
            PushError::Timeout => f.write_str("timed out: the queue stayed full"),
            PushError::TooLarge { len, max } => write!(
                f,
                "a message of {len} bytes is larger than the queue's maximum of {max} bytes"
            ),
            PushError::Disconnected => f.write_str("the queue's consumers closed it or died"),
            PushError::Corrupt => f.write_str(CORRUPT_MSG),
        }
    }
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PopError::Empty => "the queue is empty",
            PopError::Timeout => "timed out: the queue stayed empty",
            PopError::Disconnected => "the queue is empty and its producers closed it or died",
            PopError::Corrupt => CORRUPT_MSG,
        })
    }
}

impl std::error::Error for PushError {}
impl std::error::Error for PopError {}

impl From<PushError> for crate::Error {
    fn from(e: PushError) -> crate::Error {
        match e {
            PushError::Full => crate::Error::WouldBlock,
            PushError::Timeout => crate::Error::Timeout,
            PushError::TooLarge { len, max } => crate::Error::TooLarge {
                name: "mpmc-bytes message".into(),
                requested: len,
                max,
            },
            PushError::Disconnected => crate::Error::Disconnected,
            PushError::Corrupt => crate::Error::corrupt("mpmc-bytes queue", CORRUPT_MSG),
        }
    }
}

impl From<PopError> for crate::Error {
    fn from(e: PopError) -> crate::Error {
        match e {
            PopError::Empty => crate::Error::WouldBlock,
            PopError::Timeout => crate::Error::Timeout,
            PopError::Disconnected => crate::Error::Disconnected,
            PopError::Corrupt => crate::Error::corrupt("mpmc-bytes queue", CORRUPT_MSG),
        }
    }
}

/// The wait slice of a blocking call: sliced to re-check liveness, except under loom, where
/// a timed futex wait returns at once.
fn until(deadline: Option<Instant>) -> Option<Instant> {
    #[cfg(not(loom))]
    return deadline::slice(deadline, role::WAIT_SLICE);
    #[cfg(loom)]
    return deadline;
}

/// Rounds of a blocking call that yield the CPU (`sched_yield`) and retry before the call
/// parks on its wait word. With more busy processes than CPUs (2 producers and 2 consumers
/// on 2 CPUs), the peer that would make room or publish often needs this CPU: yielding hands
/// it over without the futex sleep and wake-up system calls, and the peer's notify then
/// finds nobody parked (no system call on its side either).
const YIELD_ROUNDS: u32 = 1024;

/// Whether this round of a blocking call yields and retries (the first [`YIELD_ROUNDS`])
/// instead of parking.
fn yield_first(round: &mut u32) -> bool {
    if cfg!(loom) || *round >= YIELD_ROUNDS {
        return false;
    }
    *round += 1;
    std::thread::yield_now();
    true
}

/// A producing handle of an MPMC bytes [`Queue`]. `Send` (every operation takes `&mut self`). Dropping it detaches
/// it (the queue stays open); [`close`](Self::close) closes the producer side once no other
/// producer is attached.
pub struct Producer {
    h: Handle,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc_bytes::Producer")
            .field("slot", &self.h.slot)
            .finish()
    }
}

impl Producer {
    fn attempt(&mut self, msg: &[u8]) -> Result<(), Attempt> {
        let sh = &*self.h.shared;
        let ctrl = sh.ctrl();
        let k = cells_for(msg.len() as u64);
        // Relaxed: a starting guess, validated by the stamps and the CAS.
        let mut pos = ctrl.tail.tail.load(Ordering::Relaxed);
        'retry: loop {
            for i in 0..k {
                let p = pos.wrapping_add(i);
                // Acquire pairs with the consumers' Release stores freeing the cell (after
                // they read the previous lap): we may overwrite it.
                let stamp = sh.stamp(p).load(Ordering::Acquire);
                if stamp == p {
                    continue;
                }
                let prev = p.wrapping_sub(sh.cells);
                if stamp == prev || stamp == prev.wrapping_add(1) {
                    // The previous lap's record is still there: full, or a consumer claimed
                    // it (head is past it) and has not freed the cell. SeqCst fence, as
                    // crossbeam: order the stamp load before the head load. Acquire pairs
                    // with the consumers' head CAS (their claim records).
                    fence(Ordering::SeqCst);
                    let head = ctrl.head.head.load(Ordering::Acquire);
                    return Err(if head.wrapping_sub(prev) as i64 > 0 {
                        Attempt::InFlight { pos: prev, stamp }
                    } else {
                        Attempt::Blocked { pos: p, stamp }
                    });
                }
                // Another producer claimed past `pos`, or the stamp is garbage. Acquire
                // (pairs with the tail CAS): a tail that has not moved says the stamp we
                // read is current.
                let t = ctrl.tail.tail.load(Ordering::Acquire);
                if t == pos {
                    return Err(Attempt::Corrupt);
                }
                pos = t;
                continue 'retry;
            }
            let end = pos.wrapping_add(k);
            self.h.record(pos, end);
            // AcqRel: Release makes the claim record visible to whoever sees the new tail.
            match ctrl.tail.tail.compare_exchange_weak(
                pos,
                end,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // The cells are ours. Relaxed: published by the stamp store below.
                    sh.header(pos).store(msg.len() as u64, Ordering::Relaxed);
                    sh.copy_in(pos, msg);
                    // Release pairs with the consumers' Acquire stamp load: header and bytes
                    // are visible before the stamp says the record is there.
                    sh.stamp(pos).store(pos.wrapping_add(1), Ordering::Release);
                    ctrl.tail.not_empty.notify_one();
                    return Ok(());
                }
                Err(t) => {
                    self.h.withdraw();
                    pos = t;
                }
            }
        }
    }

    /// Free cell `prev` if the consumer that claimed it is dead (its message is lost).
    fn recover(&self, prev: u64) {
        let sh = &*self.h.shared;
        if sh.live_claimer(Role::Consumer, prev) {
            return;
        }
        // Release the cell as its claimer would have: from `prev + 1` (first cell of a
        // record), or `prev` (an inner cell, or a dead producer's cell it was skipping).
        // AcqRel: the CAS decides among racing recoverers; Release pairs with producers'
        // Acquire stamp loads.
        for from in [prev.wrapping_add(1), prev] {
            if sh
                .stamp(prev)
                .compare_exchange(
                    from,
                    prev.wrapping_add(sh.cells),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                sh.ctrl().head.not_full.notify_one();
                break;
            }
        }
    }

    fn check(&self, msg: &[u8]) -> Result<(), PushError> {
        let max = self.h.shared.max_message;
        if msg.len() as u64 > max {
            return Err(PushError::TooLarge {
                len: msg.len() as u64,
                max,
            });
        }
        if self.h.is_closed() || self.h.shared.side_gone(Role::Consumer, false) {
            return Err(PushError::Disconnected);
        }
        Ok(())
    }

    /// Push `msg` if there is room now (never waits): [`PushError::Full`] otherwise.
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        self.check(msg)?;
        match self.attempt(msg) {
            Ok(()) => Ok(()),
            Err(Attempt::Corrupt) => Err(PushError::Corrupt),
            Err(a) => {
                if self.h.throttle.due() {
                    if let Attempt::InFlight { pos, .. } = a {
                        self.recover(pos);
                    }
                    if self.h.shared.side_gone(Role::Consumer, true) {
                        return Err(PushError::Disconnected);
                    }
                }
                Err(PushError::Full)
            }
        }
    }

    /// Push `msg`, waiting as long as it takes for room.
    pub fn push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        self.push_within(msg, None)
    }

    /// Push `msg`, waiting up to `timeout` for room ([`PushError::Timeout`]).
    pub fn push_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), PushError> {
        self.push_within(msg, deadline::after(Some(timeout)))
    }

    /// Push `msg`, waiting until `deadline` for room ([`PushError::Timeout`]).
    pub fn push_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<(), PushError> {
        self.push_within(msg, Some(deadline))
    }

    /// The blocking loop: every 20 ms it frees a cell held by a dead consumer and checks
    /// whether the consumer side is gone.
    fn push_within(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), PushError> {
        self.check(msg)?;
        let mut round = 0u32;
        loop {
            if self.h.is_closed() || self.h.shared.side_gone(Role::Consumer, false) {
                return Err(PushError::Disconnected);
            }
            // Acquire pairs with consumers' head CAS: a pop after this snapshot ends the wait.
            let head0 = self.h.shared.ctrl().head.head.load(Ordering::Acquire);
            let (pos, stamp, inflight) = match self.attempt(msg) {
                Ok(()) => return Ok(()),
                Err(Attempt::Corrupt) => return Err(PushError::Corrupt),
                Err(Attempt::InFlight { pos, stamp }) => (pos, stamp, true),
                Err(Attempt::Blocked { pos, stamp } | Attempt::Unpublished { pos, stamp }) => {
                    (pos, stamp, false)
                }
            };
            if deadline::passed(deadline) {
                return Err(PushError::Timeout);
            }
            if yield_first(&mut round) {
                continue;
            }
            let sh = &*self.h.shared;
            // The wait ends when a consumer moves `head` or frees the cell we wait for.
            // Acquire: as `head0`, and the stamp as in `attempt`.
            let ready = || {
                sh.ctrl().head.head.load(Ordering::Acquire) != head0
                    || sh.stamp(pos).load(Ordering::Acquire) != stamp
                    || sh.side_gone(Role::Consumer, false)
            };
            if sh
                .ctrl()
                .head
                .not_full
                .wait_until_within(ready, until(deadline))
                .is_err()
            {
                if deadline::passed(deadline) {
                    return Err(PushError::Timeout);
                }
                if inflight {
                    self.recover(pos);
                }
                if sh.side_gone(Role::Consumer, true) {
                    return Err(PushError::Disconnected);
                }
            }
        }
    }

    /// The largest message accepted.
    pub fn max_message(&self) -> u64 {
        self.h.shared.max_message
    }

    /// Close this producer: free its claim slot and, if no other producer is attached, close
    /// the producer side (consumers drain, then get [`PopError::Disconnected`]). While another
    /// producer is attached this only detaches, as dropping does. A producer that attaches
    /// later reopens the side.
    pub fn close(&mut self) {
        self.h.close()
    }
}

/// A consuming handle of an MPMC bytes [`Queue`]. `Send` (every operation takes `&mut self`). Dropping it detaches
/// it (the queue keeps its messages for the next consumer); [`close`](Self::close) closes the
/// consumer side once no other consumer is attached.
pub struct Consumer {
    h: Handle,
    /// Scratch buffer of `try_pop`/`pop`, whose results are fresh `Vec`s.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc_bytes::Consumer")
            .field("slot", &self.h.slot)
            .finish()
    }
}

impl Consumer {
    /// One pop attempt into `out`. With `classify` false, an unpublished cell is reported as
    /// `Unpublished` without telling empty from in flight.
    fn attempt(&mut self, out: &mut Vec<u8>, classify: bool) -> Result<usize, Attempt> {
        let sh = &*self.h.shared;
        let ctrl = sh.ctrl();
        // Relaxed: a starting guess, validated by the stamp and the CAS.
        let mut pos = ctrl.head.head.load(Ordering::Relaxed);
        loop {
            // Acquire pairs with the producer's Release stamp store: the record is visible.
            let stamp = sh.stamp(pos).load(Ordering::Acquire);
            if stamp == pos.wrapping_add(1) {
                // Relaxed: ordered by the stamp's Acquire above.
                let len = sh.header(pos).load(Ordering::Relaxed);
                if len > sh.max_message {
                    // A racing consumer took the record and a producer is rewriting the cell,
                    // or the header is garbage. Acquire: as for the head CAS.
                    let h = ctrl.head.head.load(Ordering::Acquire);
                    if h == pos {
                        return Err(Attempt::Corrupt);
                    }
                    pos = h;
                    continue;
                }
                let end = pos.wrapping_add(cells_for(len));
                self.h.record(pos, end);
                // AcqRel: Release publishes the claim record with the new head.
                match ctrl.head.head.compare_exchange_weak(
                    pos,
                    end,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // The record is ours: no producer writes its cells until we free them.
                        sh.copy_out(pos, len, out);
                        let mut p = pos;
                        while p != end {
                            // Release pairs with the producers' Acquire stamp loads: we are
                            // done reading before the next lap may overwrite.
                            sh.stamp(p)
                                .store(p.wrapping_add(sh.cells), Ordering::Release);
                            p = p.wrapping_add(1);
                        }
                        ctrl.head.not_full.notify_one();
                        return Ok(len as usize);
                    }
                    Err(h) => {
                        self.h.withdraw();
                        pos = h;
                    }
                }
            } else if stamp == pos
                || stamp == pos.wrapping_sub(sh.cells).wrapping_add(1)
                || stamp == pos.wrapping_sub(sh.cells)
            {
                // Not written yet (`pos`), or the previous lap's consumer has not freed the
                // cell yet (then no producer can have claimed `pos`: empty).
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
    /// the cell and has not published).
    fn classify(&self, a: Attempt) -> Attempt {
        let Attempt::Unpublished { pos, stamp } = a else {
            return a;
        };
        let ctrl = self.h.shared.ctrl();
        // SeqCst fence as crossbeam: order the (earlier) stamp load before the tail load.
        fence(Ordering::SeqCst);
        // Acquire pairs with the producers' tail CAS (their claim records).
        let tail = ctrl.tail.tail.load(Ordering::Acquire);
        if tail == pos || stamp != pos {
            return Attempt::Blocked { pos, stamp };
        }
        // At most N cells are claimed ahead of `head`: more, with `head` still at `pos`
        // (reloaded after `tail`), means corrupt indices (else skipping dead claims could
        // walk towards a garbage tail). Acquire: as for the head CAS.
        if tail.wrapping_sub(pos) > self.h.shared.cells
            && ctrl.head.head.load(Ordering::Acquire) == pos
        {
            return Attempt::Corrupt;
        }
        Attempt::InFlight { pos, stamp }
    }

    /// Skip cell `pos` if no live producer's claim covers it. Returns whether skipped.
    fn recover(&self, pos: u64) -> bool {
        let sh = &*self.h.shared;
        if sh.live_claimer(Role::Producer, pos) {
            return false;
        }
        // Acquire: re-check after the scan; a published record is taken normally.
        if sh.stamp(pos).load(Ordering::Acquire) != pos {
            return false;
        }
        // Its claimer died between claiming and publishing: claim the cell as a consumer and
        // free it empty. The claim record first, as in `attempt`.
        self.h.record(pos, pos.wrapping_add(1));
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
                .store(pos.wrapping_add(sh.cells), Ordering::Release);
            ctrl.head.not_full.notify_one();
            return true;
        }
        self.h.withdraw();
        false
    }

    /// Pop the oldest message into `out` (cleared first; its allocation is reused) if there
    /// is one now; returns its length. Never waits.
    pub fn try_pop_into(&mut self, out: &mut Vec<u8>) -> Result<usize, PopError> {
        if self.h.is_closed() {
            return Err(PopError::Disconnected);
        }
        match self.attempt(out, false) {
            Ok(n) => Ok(n),
            Err(Attempt::Corrupt) => Err(PopError::Corrupt),
            Err(a) => {
                let thorough = self.h.throttle.due();
                // Fast path of a busy poll on an empty queue (as `mpmc`): unless a thorough
                // check is due or the producer side was closed, the answer is `Empty`.
                // Acquire: as in `side_gone`.
                if !thorough
                    && self.h.shared.ctrl().geo.state.load(Ordering::Acquire) & PRODUCERS_CLOSED
                        == 0
                {
                    return Err(PopError::Empty);
                }
                let a = self.classify(a);
                if matches!(a, Attempt::Corrupt) {
                    return Err(PopError::Corrupt);
                }
                if thorough {
                    if let Attempt::InFlight { pos, .. } = a {
                        if self.recover(pos) {
                            return self.try_pop_into(out);
                        }
                    }
                }
                if matches!(a, Attempt::Blocked { .. })
                    && self.h.shared.side_gone(Role::Producer, thorough)
                {
                    return self.drain(out);
                }
                Err(PopError::Empty)
            }
        }
    }

    /// The producer side is gone: one more attempt delivers what it published last.
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<usize, PopError> {
        match self.attempt(out, true) {
            Ok(n) => Ok(n),
            Err(Attempt::Corrupt) => Err(PopError::Corrupt),
            Err(_) => Err(PopError::Disconnected),
        }
    }

    /// Pop the oldest message into `out`, waiting as long as it takes; returns its length.
    pub fn pop_into(&mut self, out: &mut Vec<u8>) -> Result<usize, PopError> {
        self.pop_within(out, None)
    }

    /// Pop into `out`, waiting up to `timeout` ([`PopError::Timeout`]).
    pub fn pop_into_timeout(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, PopError> {
        self.pop_within(out, deadline::after(Some(timeout)))
    }

    /// Pop into `out`, waiting until `deadline` ([`PopError::Timeout`]).
    pub fn pop_into_deadline(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, PopError> {
        self.pop_within(out, Some(deadline))
    }

    /// Pop the oldest message if there is one now (never waits).
    pub fn try_pop(&mut self) -> Result<Vec<u8>, PopError> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.try_pop_into(&mut buf);
        self.owned(r, buf)
    }

    /// Pop the oldest message, waiting as long as it takes.
    pub fn pop(&mut self) -> Result<Vec<u8>, PopError> {
        self.pop_deadline_opt(None)
    }

    /// Pop, waiting up to `timeout` ([`PopError::Timeout`]).
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, PopError> {
        self.pop_deadline_opt(deadline::after(Some(timeout)))
    }

    /// Pop, waiting until `deadline` ([`PopError::Timeout`]).
    pub fn pop_deadline(&mut self, deadline: Instant) -> Result<Vec<u8>, PopError> {
        self.pop_deadline_opt(Some(deadline))
    }

    fn pop_deadline_opt(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, PopError> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.pop_within(&mut buf, deadline);
        self.owned(r, buf)
    }

    /// The message as a `Vec` of its own length; an unused buffer is kept for next time.
    fn owned(&mut self, r: Result<usize, PopError>, buf: Vec<u8>) -> Result<Vec<u8>, PopError> {
        match r {
            Ok(_) => Ok(buf),
            Err(e) => {
                self.buf = buf;
                Err(e)
            }
        }
    }

    /// The blocking loop: every 20 ms it skips a cell claimed by a dead producer and checks
    /// whether the producer side is gone (drain, then `Disconnected`).
    fn pop_within(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, PopError> {
        let mut round = 0u32;
        loop {
            if self.h.is_closed() {
                return Err(PopError::Disconnected);
            }
            // Acquire pairs with producers' tail CAS: a push after this snapshot ends the wait.
            let tail0 = self.h.shared.ctrl().tail.tail.load(Ordering::Acquire);
            let inflight = match self.attempt(out, true) {
                Ok(n) => return Ok(n),
                Err(Attempt::Corrupt) => return Err(PopError::Corrupt),
                Err(Attempt::InFlight { pos, .. }) => Some(pos),
                Err(_) => None,
            };
            if self.h.shared.side_gone(Role::Producer, false) {
                match inflight {
                    None => return self.drain(out),
                    // The cell's claimer is gone with its side: skip it and retry.
                    Some(p) => {
                        if self.recover(p) {
                            if deadline::passed(deadline) {
                                return Err(PopError::Timeout);
                            }
                            continue;
                        }
                    }
                }
            }
            // Every round checks the deadline: a wait that ends at once (a gone side, a
            // hostile stamp) must not loop past it.
            if deadline::passed(deadline) {
                return Err(PopError::Timeout);
            }
            if yield_first(&mut round) {
                continue;
            }
            let sh = &*self.h.shared;
            // Ends when a producer moves `tail`, or publishes the in-flight cell.
            let ready = || {
                sh.ctrl().tail.tail.load(Ordering::Acquire) != tail0
                    || inflight.is_some_and(|p| sh.stamp(p).load(Ordering::Acquire) != p)
                    || (inflight.is_none() && sh.side_gone(Role::Producer, false))
            };
            if sh
                .ctrl()
                .tail
                .not_empty
                .wait_until_within(ready, until(deadline))
                .is_err()
            {
                if deadline::passed(deadline) {
                    return Err(PopError::Timeout);
                }
                if let Some(p) = inflight {
                    self.recover(p);
                } else if sh.side_gone(Role::Producer, true) {
                    return self.drain(out);
                }
            }
        }
    }

    /// Close this consumer: free its claim slot and, if no other consumer is attached, close
    /// the consumer side (every push then fails with [`PushError::Disconnected`]). While
    /// another consumer is attached this only detaches.
    pub fn close(&mut self) {
        self.h.close()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// An owner word of a process that cannot exist (no liveness file).
    const GHOST: u64 = 0x3234_5678_9abc;
    const T: Duration = Duration::from_secs(10);

    fn msg(i: u64, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
    }

    #[test]
    fn messages_of_every_size_round_trip_across_laps() {
        let q = Queue::with_capacity(1024);
        let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
        let max = q.max_message() as usize;
        assert_eq!(max, 504);
        let mut buf = Vec::new();
        for i in 0..300u64 {
            let len = (i as usize * 37) % (max + 1);
            p.try_push(&msg(i, len)).unwrap();
            if i % 2 == 0 {
                assert_eq!(c.try_pop().unwrap(), msg(i, len));
            } else {
                assert_eq!(c.try_pop_into(&mut buf), Ok(len));
                assert_eq!(buf, msg(i, len));
            }
        }
        assert_eq!(c.try_pop(), Err(PopError::Empty));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn full_too_large_and_empty() {
        let q = Queue::with_capacity(256);
        let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
        assert_eq!(
            p.try_push(&[0; 121]),
            Err(PushError::TooLarge { len: 121, max: 120 })
        );
        assert_eq!(
            p.push_timeout(&[0; 121], T),
            Err(PushError::TooLarge { len: 121, max: 120 })
        );
        p.try_push(&[1; 120]).unwrap(); // 2 cells
        p.try_push(&[2; 56]).unwrap(); // 1 cell
        p.try_push(&[]).unwrap(); // 1 cell
        assert_eq!(p.try_push(&[]), Err(PushError::Full));
        assert_eq!(
            p.push_timeout(b"x", Duration::from_millis(30)),
            Err(PushError::Timeout)
        );
        assert_eq!(q.len(), 256);
        assert_eq!(c.pop_timeout(T).unwrap(), [1; 120]);
        assert_eq!(c.pop().unwrap(), [2; 56]);
        assert_eq!(c.pop().unwrap(), b"");
        assert_eq!(
            c.pop_timeout(Duration::from_millis(30)),
            Err(PopError::Timeout)
        );
        let e: crate::Error = PushError::TooLarge { len: 9, max: 8 }.into();
        assert!(matches!(e, crate::Error::TooLarge { .. }));
    }

    #[test]
    fn skips_the_cells_of_a_dead_producer() {
        let q = Queue::with_capacity(512);
        let ctrl = q.shared.ctrl();
        // A producer claims cells 0..3 and dies before publishing.
        ctrl.producers[5].owner.claim(GHOST).unwrap();
        ctrl.producers[5].end.store(3, Ordering::Relaxed);
        ctrl.producers[5].start.store(0, Ordering::Relaxed);
        ctrl.tail.tail.store(3, Ordering::Relaxed);
        let mut p = q.producer().unwrap();
        let mut c = q.consumer().unwrap();
        p.try_push(b"after").unwrap();
        assert_eq!(c.pop_timeout(T).unwrap(), b"after");
        for i in 0..40 {
            p.push(&msg(i, 100)).unwrap();
            assert_eq!(c.pop_timeout(T).unwrap(), msg(i, 100));
        }
    }

    #[test]
    fn waits_for_a_live_claimer() {
        let q = Queue::with_capacity(512);
        let ctrl = q.shared.ctrl();
        ctrl.producers[5].owner.claim(role::me().unwrap()).unwrap();
        ctrl.producers[5].end.store(2, Ordering::Relaxed);
        ctrl.producers[5].start.store(0, Ordering::Relaxed);
        ctrl.tail.tail.store(2, Ordering::Relaxed);
        let mut c = q.consumer().unwrap();
        assert_eq!(
            c.pop_timeout(Duration::from_millis(60)),
            Err(PopError::Timeout)
        );
        // It publishes a 3-byte record.
        q.shared.header(0).store(3, Ordering::Relaxed);
        q.shared.copy_in(0, b"abc");
        q.shared.stamp(0).store(1, Ordering::Release);
        assert_eq!(c.pop_timeout(T).unwrap(), b"abc");
    }

    #[test]
    fn frees_cells_held_by_a_dead_consumer() {
        let q = Queue::with_capacity(256);
        let mut p = q.producer().unwrap();
        p.try_push(&[1; 100]).unwrap(); // cells 0..2
        p.try_push(&[2; 100]).unwrap(); // cells 2..4
        let ctrl = q.shared.ctrl();
        // A consumer claims the first record and dies while reading it.
        ctrl.consumers[3].owner.claim(GHOST).unwrap();
        ctrl.consumers[3].end.store(2, Ordering::Relaxed);
        ctrl.consumers[3].start.store(0, Ordering::Relaxed);
        ctrl.head.head.store(2, Ordering::Relaxed);
        let mut c = q.consumer().unwrap();
        p.push_timeout(&[3; 100], T).unwrap();
        assert_eq!(c.pop_timeout(T).unwrap(), [2; 100]);
        assert_eq!(c.pop_timeout(T).unwrap(), [3; 100]);
    }

    #[test]
    fn corrupt_headers_and_stamps_are_errors() {
        let q = Queue::with_capacity(256);
        let (mut p, mut c) = (q.producer().unwrap(), q.consumer().unwrap());
        p.try_push(b"hi").unwrap();
        q.shared.header(0).store(u64::MAX, Ordering::Relaxed);
        assert_eq!(c.try_pop(), Err(PopError::Corrupt));
        assert_eq!(c.pop_timeout(T), Err(PopError::Corrupt));
        q.shared.stamp(1).store(12345, Ordering::Relaxed);
        assert_eq!(p.try_push(&[0; 100]), Err(PushError::Corrupt));
        // A garbage tail far ahead, producers gone: Corrupt, not a walk towards it.
        let q = Queue::with_capacity(256);
        q.shared.ctrl().tail.tail.store(1 << 40, Ordering::Relaxed);
        let mut c = q.consumer().unwrap();
        q.producer().unwrap().close();
        assert_eq!(c.pop_timeout(T), Err(PopError::Corrupt));
    }

    #[test]
    fn close_and_detach() {
        let q = Queue::with_capacity(256);
        let mut c = q.consumer().unwrap();
        let mut p = q.producer().unwrap();
        p.try_push(b"a").unwrap();
        drop(p);
        assert_eq!(c.try_pop().unwrap(), b"a");
        assert_eq!(
            c.pop_timeout(Duration::from_millis(30)),
            Err(PopError::Timeout)
        );
        let mut p = q.producer().unwrap();
        p.try_push(b"b").unwrap();
        p.close();
        assert_eq!(c.try_pop().unwrap(), b"b");
        assert_eq!(c.try_pop(), Err(PopError::Disconnected));
        assert_eq!(c.pop(), Err(PopError::Disconnected));
        let mut p = q.producer().unwrap();
        c.close();
        assert_eq!(p.try_push(b"c"), Err(PushError::Disconnected));
        assert_eq!(p.push(b"c"), Err(PushError::Disconnected));
    }

    #[test]
    fn threads_2x2_every_message_once_in_order_per_producer() {
        let q = Queue::with_capacity(4096);
        let n = 20_000u64;
        let keep = q.producer().unwrap();
        let got: Vec<Vec<(u64, u64)>> = std::thread::scope(|s| {
            let cs: Vec<_> = (0..2)
                .map(|_| {
                    let mut c = q.consumer().unwrap();
                    s.spawn(move || {
                        let mut v = Vec::new();
                        let mut buf = Vec::new();
                        while let Ok(len) = c.pop_into_timeout(&mut buf, T) {
                            let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
                            let i = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                            assert_eq!(len, 16 + (i % 200) as usize);
                            assert!(buf[16..].iter().all(|&b| b == i as u8));
                            v.push((id, i));
                        }
                        v
                    })
                })
                .collect();
            let ps: Vec<_> = (0..2u64)
                .map(|id| {
                    let mut p = q.producer().unwrap();
                    s.spawn(move || {
                        let mut m = Vec::new();
                        for i in 0..n {
                            m.clear();
                            m.extend_from_slice(&id.to_le_bytes());
                            m.extend_from_slice(&i.to_le_bytes());
                            m.resize(16 + (i % 200) as usize, i as u8);
                            p.push(&m).unwrap();
                        }
                        p.close();
                    })
                })
                .collect();
            ps.into_iter().for_each(|h| h.join().unwrap());
            let mut keep = keep;
            keep.close();
            cs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for v in &got {
            for id in 0..2 {
                let mine: Vec<u64> = v.iter().filter(|m| m.0 == id).map(|m| m.1).collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "in order per producer"
                );
            }
        }
        let mut all: Vec<_> = got.concat();
        all.sort();
        assert_eq!(all.len() as u64, 2 * n);
        all.dedup();
        assert_eq!(all.len() as u64, 2 * n, "each message once");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// Two producers push records of different lengths (1 and 2 cells) while a consumer
    /// blocks for them (the wake protocol: a lost wake-up is a loom deadlock); both arrive
    /// intact; then the last attached producer closes and the consumer sees `Disconnected`.
    #[test]
    fn loom_two_producers_one_blocking_consumer() {
        crate::queue::loom_model(|| {
            let q = Queue::with_capacity(256);
            let mut keep = q.producer().unwrap();
            let mut c = q.consumer().unwrap();
            let hs: Vec<_> = [vec![1u8; 3], vec![2u8; 60]]
                .into_iter()
                .map(|m| {
                    let mut p = q.producer().unwrap();
                    loom::thread::spawn(move || p.push(&m).unwrap())
                })
                .collect();
            let mut got = [c.pop().unwrap(), c.pop().unwrap()];
            got.sort();
            assert_eq!(got, [vec![1u8; 3], vec![2u8; 60]]);
            hs.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(c.try_pop(), Err(PopError::Empty));
            keep.close();
            assert_eq!(c.try_pop(), Err(PopError::Disconnected));
        });
    }

    /// The one-sleeper-per-message wake protocol: two consumers block at once, two messages
    /// come, each `notify_one` wakes one sleeper; a lost wake-up (both messages' notifies
    /// spent on one consumer while the other sleeps on) is a loom deadlock.
    #[test]
    fn loom_two_sleeping_consumers_each_get_a_message() {
        crate::queue::loom_model(|| {
            let q = Queue::with_capacity(256);
            let mut p = q.producer().unwrap();
            let mut a = q.consumer().unwrap();
            let mut b = q.consumer().unwrap();
            let h = loom::thread::spawn(move || a.pop().unwrap());
            let t = loom::thread::spawn(move || {
                p.push(b"1").unwrap();
                p.push(b"2").unwrap();
            });
            let y = b.pop().unwrap();
            let x = h.join().unwrap();
            t.join().unwrap();
            let mut got = [x, y];
            got.sort();
            assert_eq!(got, [b"1".to_vec(), b"2".to_vec()]);
        });
    }

    /// Records wrap around the ring and reuse cells freed by a consumer on another thread
    /// (the producer blocks for them: the not-full wake-up); two consumers share the pops.
    #[test]
    fn loom_cells_are_freed_for_the_next_lap() {
        crate::queue::loom_model(|| {
            let q = Queue::with_capacity(256); // 4 cells
            let mut p = q.producer().unwrap();
            let mut a = q.consumer().unwrap();
            let mut b = q.consumer().unwrap();
            let h = loom::thread::spawn(move || a.pop().unwrap());
            // 3 records of 2 cells: the third needs cells the consumers free.
            for v in 1..=3u8 {
                p.push(&[v; 100]).unwrap();
            }
            let x = h.join().unwrap();
            let mut got = vec![x[0], b.pop().unwrap()[0], b.pop().unwrap()[0]];
            got.sort();
            assert_eq!(got, [1, 2, 3]);
        });
    }

    /// Two producers race for the last free cells: exactly one fits, and the loser keeps no
    /// claim record for the winner's cells.
    #[test]
    fn loom_a_producer_that_loses_its_claim_withdraws_it() {
        crate::queue::loom_model(|| {
            let q = Queue::with_capacity(256);
            let mut first = q.producer().unwrap();
            first.try_push(&[0; 100]).unwrap(); // 2 cells of 4
            first.try_push(b"x").unwrap(); // 1 more
            let (mut a, mut b) = (q.producer().unwrap(), q.producer().unwrap());
            let (sa, sb) = (a.h.slot, b.h.slot);
            let t = loom::thread::spawn(move || {
                let won = a.try_push(b"a").is_ok();
                (won, a)
            });
            let won_b = b.try_push(b"b").is_ok();
            let (won_a, a) = t.join().unwrap();
            assert!(won_a ^ won_b, "exactly one push fits");
            let ctrl = q.shared.ctrl();
            for (slot, won) in [(sa, won_a), (sb, won_b)] {
                let start = ctrl.producers[slot].start.load(Ordering::Relaxed);
                assert_eq!(start, if won { 3 } else { NONE }, "won = {won}");
            }
            drop((a, b, first));
        });
    }
}
