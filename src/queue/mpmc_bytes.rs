//! [`Queue`]: a bounded multi-producer multi-consumer queue of variable-length byte messages
//! in shared memory (what Python's `multiprocessing.Queue` carries), lock-free, robust
//! against processes that die in the middle of an operation.
//!
//! The data area is a ring of 64-byte *cells*, each with a 64-bit *stamp* in a separate
//! array and a 64-bit length in another. A message is a *record* of `k` consecutive cells
//! holding its bytes (and nothing else); its length is its first cell's length word.
//! Producers claim `k` cells at once by advancing `tail` with a compare-and-swap once every
//! one of them is free for this lap (Vyukov's per-slot sequences, as [`mpmc`](super::mpmc),
//! with a record spanning several slots), write the message bytes into the cells and its
//! length into the first cell's length word, and publish it with one Release store of that
//! cell's stamp.
//! Consumers claim a published record by advancing `head` over all its cells, copy it out,
//! and free each cell for the next lap. Only the handle that claimed a cell touches its
//! bytes; what a consumer reads before its claim (stamp, length) is outside the cells. As in
//! `mpmc`, each handle holds one of 16 claim slots per side where it records the cells it is
//! claiming, so that a record claimed by a process that then died is skipped (producer) or
//! freed (consumer), cell by cell, once the claimer is known dead (`SPEC.md`, "MPMC bytes
//! queue").
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
use std::time::Instant;

use super::cache_padded::CachePadded;
use super::endpoint::{
    side_gone, wait_sliced, Endpoint, Roles, Wake, CONSUMER_CLOSED, PRODUCER_CLOSED,
};
use super::error::{AttachError, BytesPushError, PopError, Role, TryPopError};
use super::forms::queue_constructors;
#[cfg(not(loom))]
use super::options::How;
use super::region::Region;
use super::role::{self, RoleSlot};
use super::stat::{Attached, LenUnit, QueueStat};
use crate::loom::{fence, AtomicU64, Ordering};
use crate::os::deadline::blocking_forms;
use crate::os::{atomic_copy, deadline};
use crate::segment::fingerprint;
use crate::sync::WaitQueue;
use crate::Kind;
use crate::Liveness;

/// Claim slots per side: at most this many producers and this many consumers at once.
pub const MAX_HANDLES: usize = 16;
// The wake count (`mpmc::wake_count`) is clamped to MPMC's number of handles.
const _: () = assert!(MAX_HANDLES == crate::queue::mpmc::MAX_HANDLES);

/// Bytes per cell: records occupy whole cells.
pub const CELL: u64 = 64;

/// Words per cell outside the data area: its stamp (in the stamps array at `stamps_offset`)
/// and the length of the record that starts at it (in the lengths array right after the
/// stamps; meaningful only while the stamp says a record starting there is published). The
/// region holds both arrays as `WORDS * N` words, the N stamps first.
const WORDS: u64 = 2;

/// Smallest capacity in bytes (4 cells).
pub const MIN_CAPACITY: u64 = 256;

/// Claim-slot `start` meaning "no cells".
const NONE: u64 = u64::MAX;

/// Layout fingerprint of an MPMC bytes queue (layout v3: no header in the cells, each
/// record's length in a lengths array after the stamps; v2 kept the length in the record's
/// first 8 bytes, where a consumer's speculative read could race message bytes).
pub const LAYOUT_FINGERPRINT: u64 = fingerprint(
    b"shmkit mpmc-bytes v3 cell=64 header=none handles=16 claim=[owner,start,end] stamps=array lens=array-after-stamps",
);

/// The largest message a queue of `capacity` bytes takes: a record fills at most half the
/// ring (N / 2 cells), so that one message never needs the whole ring.
///
/// ```
/// assert_eq!(shmkit::queue::mpmc_bytes::max_message(4096), 2048);
/// ```
pub const fn max_message(capacity: u64) -> u64 {
    capacity / 2
}

/// Recovery of a dead handle's run of cells (`Consumer::recover`, `Producer::recover`): `f`
/// on the cells from `from` on, while it succeeds, for those below `bound` (the tail or head
/// loaded before the first: every such cell was claimed) and at most `cells` of them (a ring's
/// worth). Returns how many succeeded.
fn recover_run(from: u64, bound: u64, cells: u64, mut f: impl FnMut(u64) -> bool) -> u64 {
    let mut p = from;
    while (bound.wrapping_sub(p) as i64) > 0 && p.wrapping_sub(from) < cells && f(p) {
        p = p.wrapping_add(1);
    }
    p.wrapping_sub(from)
}

/// Cells of the record of a `len`-byte message: at least one (an empty message has a
/// record too, whose first stamp publishes it).
#[inline]
fn cells_for(len: u64) -> u64 {
    len.div_ceil(CELL).max(1)
}

#[repr(C)]
pub(crate) struct Geometry {
    pub(crate) capacity: AtomicU64,      // 0: data bytes = cells * 64
    pub(crate) cell_size: AtomicU64,     // 8: 64
    pub(crate) cells: AtomicU64,         // 16: N
    pub(crate) stamps_offset: AtomicU64, // 24: 4480 (the stamps, then the lengths)
    pub(crate) data_offset: AtomicU64,   // 32: 4480 + round_up(16 N, 128)
    pub(crate) handles: AtomicU64,       // 40: 16
    pub(crate) state: AtomicU64,         // 48
    pub(crate) max_message: AtomicU64,   // 56
}

// The tail and head lines are the MPMC queue's (the same words and wait queues, `SPEC.md`
// §7.5.1).
pub(crate) use super::mpmc::layout::{HeadLine, TailLine};

/// A producer's or consumer's claim slot: the cells `start..end` it is claiming or last
/// claimed (`start == NONE`: none).
#[repr(C)]
pub(crate) struct Claim {
    pub(crate) owner: RoleSlot,  // 0
    pub(crate) start: AtomicU64, // 8
    pub(crate) end: AtomicU64,   // 16
}

#[repr(C)]
pub(crate) struct Control {
    pub(crate) geo: CachePadded<Geometry>,                   // 0
    pub(crate) tail: CachePadded<TailLine>,                  // 128
    pub(crate) head: CachePadded<HeadLine>,                  // 256
    pub(crate) producers: [CachePadded<Claim>; MAX_HANDLES], // 384
    pub(crate) consumers: [CachePadded<Claim>; MAX_HANDLES], // 2432
}

/// Size of the control block; the stamps, then the lengths, follow it.
pub(crate) const CONTROL_SIZE: u64 = 4480;
pub(crate) const STAMPS_OFFSET: u64 = CONTROL_SIZE;

/// Payload offset of the lengths array of a queue of `cells` cells (right after the stamps).
pub(crate) const fn lens_offset(cells: u64) -> u64 {
    STAMPS_OFFSET + 8 * cells
}

/// Payload offset of the data area of a queue of `cells` cells: after the stamps and the
/// lengths (8 bytes each per cell), rounded up to 128 (`STAMPS_OFFSET` is a multiple of 128).
fn data_offset(cells: u64) -> u64 {
    (lens_offset(cells) + 8 * cells).next_multiple_of(128)
}
const _: () = assert!(STAMPS_OFFSET % 128 == 0 && WORDS == 2);

/// Initial value of word `i` of the stamps-and-lengths words of a queue of `cells` cells:
/// `stamp[j] = j`, `len[j] = 0`.
fn initial_word(cells: u64, i: u64) -> u64 {
    if i < cells {
        i
    } else {
        0
    }
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

    /// The index (below N) of cell position `pos`'s cell: its shadow cell in loom models
    /// (`Region::shadow_write`), one per 64-byte cell of the data area.
    #[cfg(all(test, loom))]
    fn cell_index(&self, pos: u64) -> usize {
        (pos & (self.cells - 1)) as usize
    }

    /// Word `w` (0: stamps, 1: lengths) of cell position `pos`.
    #[inline]
    fn cell_word(&self, pos: u64, w: u64) -> &AtomicU64 {
        // In bounds: masked by N - 1, w < WORDS, and the region holds WORDS * N words
        // (validated on open).
        &self.region.stamps()[(w * self.cells + (pos & (self.cells - 1))) as usize]
    }

    /// The stamp of cell position `pos`.
    #[inline]
    fn stamp(&self, pos: u64) -> &AtomicU64 {
        self.cell_word(pos, 0)
    }

    /// The length of the record starting at position `pos`, in the lengths array (not in
    /// the cells: consumers read it before they claim the record). Written only by the
    /// producer that claimed `pos` (before its Release stamp store), read by consumers that
    /// saw the stamp say the record is published, possibly stale (before their head CAS):
    /// only ever accessed as a whole `AtomicU64`, so such a read races nothing of another
    /// size, and never a data byte. A separate array, not a word beside each stamp: stamps
    /// stay 8 to a cache line, so a record of k cells checks and frees k / 8 stamp lines, as
    /// before (a 4 KiB message moved 9% slower with 16-byte stamp-and-length entries).
    #[inline]
    fn rec_len(&self, pos: u64) -> &AtomicU64 {
        self.cell_word(pos, 1)
    }

    /// Byte offset in the data area of cell position `pos`.
    #[inline]
    fn offset(&self, pos: u64) -> u64 {
        (pos & (self.cells - 1)) * CELL
    }

    /// The two pieces (offset, length) of the `len` message bytes of the record at `pos`
    /// (from its first cell's start), split at the end of the ring. `len <= capacity / 2`.
    #[inline]
    fn pieces(&self, pos: u64, len: u64) -> [(usize, usize); 2] {
        let start = self.offset(pos);
        let first = len.min(self.capacity - start);
        [
            (start as usize, first as usize),
            (0, (len - first) as usize),
        ]
    }

    /// Copy `msg` into the cells of the record at `pos`.
    fn copy_in(&self, pos: u64, msg: &[u8]) {
        let mut src = msg.as_ptr();
        for (off, n) in self.pieces(pos, msg.len() as u64) {
            // SAFETY: `pieces` keeps every range inside the data area (`capacity` bytes),
            // each piece starting at a cell (8-aligned) with its padding to a whole word inside
            // the record's cells (a piece ends at the ring's end, a multiple of 64, or at the
            // record's end inside its last cell); the cells are ours (claimed with the tail
            // CAS): nobody else writes them, and every access to them is a whole-word atomic
            // (`store_padded`/`load_padded`), whatever length a consumer believes;
            // `msg` is private memory of `n` bytes from `src`.
            unsafe {
                atomic_copy::store_padded(src, self.region.data().add(off), n);
                src = src.add(n);
            }
        }
    }

    /// Copy the `len` message bytes of the record at `pos` into `dst` (cleared first), which
    /// has room for them (the consumer reserved it before its claim).
    fn copy_out(&self, pos: u64, len: u64, dst: &mut Vec<u8>) {
        dst.clear();
        assert!(
            dst.capacity() >= len as usize,
            "room reserved before the claim"
        );
        let mut out = dst.as_mut_ptr();
        for (off, n) in self.pieces(pos, len) {
            // SAFETY: as `copy_in`; `dst` has room for `len` bytes (checked above) and
            // nobody else accesses it.
            unsafe {
                atomic_copy::load_padded(self.region.data().add(off), out, n);
                out = out.add(n);
            }
        }
        // SAFETY: the loop initialised `len` bytes.
        unsafe { dst.set_len(len as usize) };
    }

    /// Bytes in use (whole cells of claimed records), a snapshot.
    fn len(&self) -> u64 {
        // Acquire both (head first), pairing with the index CASes (`Consumer::attempt`,
        // `Producer::attempt`), as `RingShared::len`. Relaxed loads and acquire fences, not
        // Acquire loads: `stat` reads through a PROT_READ mapping, where std permits only
        // Relaxed loads.
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
            producer_closed: state & PRODUCER_CLOSED != 0,
            consumer_closed: state & CONSUMER_CLOSED != 0,
        }
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
/// Messages are `0..=`[`max_message`](Self::max_message) bytes (half the capacity).
/// Each message takes `max(1, ceil(len / 64))` cells of 64 bytes.
///
/// # Shared memory is shared
///
/// Stamps, indices and record lengths are re-read on every operation and validated (a record
/// length above the maximum, or a stamp that fits no state of the protocol while the index
/// does not move, is [`PopError::Corrupt`] / [`BytesPushError::Corrupt`]); cell positions are
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
    queue_constructors! {
        what: "queue", capacity: "data bytes (a power of two in `256..=2^40`)",
        ///
        /// ```
        /// use shmkit::queue::mpmc_bytes::Queue;
        /// # let name = format!("doc-mpmcb-options-{}", std::process::id());
        /// let q = Queue::options().mode(0o660).unlink_on_drop(true).create(&name, 1 << 16)?;
        /// assert_eq!(q.capacity(), 1 << 16);
        /// # Ok::<(), shmkit::Error>(())
        /// ```
        options;
        open;
    }

    #[cfg(not(loom))]
    fn build_with(seg: &crate::SegmentOptions, name: &str, how: How) -> crate::Result<Self> {
        let opts = seg.clone().kind(Kind::MPMC_BYTES, LAYOUT_FINGERPRINT);
        let make = |capacity: u64, existing: bool| -> crate::Result<crate::Segment> {
            super::geometry::check_capacity(name, capacity, MIN_CAPACITY)?;
            let total = data_offset(capacity / CELL) + capacity;
            let init = |seg: &crate::Segment| {
                // SAFETY: the payload is `total` bytes, 128-aligned; Control is atomics
                // only, valid for any bit pattern.
                let ctrl = unsafe { &*seg.as_mut_ptr().cast::<Control>() };
                ctrl.init(capacity);
                let cells = capacity / CELL;
                for i in 0..WORDS * cells {
                    // SAFETY: word i of the stamps and lengths lies at STAMPS_OFFSET + 8 i <
                    // data_offset <= total, 8-aligned, only ever accessed as an atomic.
                    let s = unsafe {
                        &*seg
                            .as_mut_ptr()
                            .add((STAMPS_OFFSET + 8 * i) as usize)
                            .cast::<AtomicU64>()
                    };
                    // Relaxed: published by READY.
                    s.store(initial_word(cells, i), Ordering::Relaxed);
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
                && (MIN_CAPACITY..=super::geometry::MAX_CAPACITY).contains(&capacity),
            "capacity {capacity} is not a power of two in 256..=2^40"
        );
        let ctrl = Control::new();
        ctrl.init(capacity);
        let cells = capacity / CELL;
        let region = Region::heap(
            ctrl,
            capacity as usize,
            128,
            (WORDS * cells) as usize,
            |i| initial_word(cells, i as u64),
        );
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
        Endpoint::attach(Arc::clone(&self.shared), role)
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
        || !(MIN_CAPACITY..=super::geometry::MAX_CAPACITY).contains(&capacity)
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
    // SAFETY: the geometry was validated: N stamps and N lengths (WORDS * N words) at
    // STAMPS_OFFSET (8-aligned) and `capacity` data bytes at `data` (128-aligned) lie inside
    // the payload.
    let region =
        unsafe { Region::segment(seg, data, STAMPS_OFFSET as usize, (WORDS * cells) as usize) };
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

/// One attached handle: an [`Endpoint`] over the queue, whose slot index is its claim slot.
type Handle = Endpoint<Shared>;

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
        // Relaxed: nothing claimed yet; a reader that sees NONE skips us.
        self.ctrl().claims(role)[i]
            .start
            .store(NONE, Ordering::Relaxed);
    }

    fn wake_closed(&self, _role: Role) {
        self.ctrl().tail.not_empty.notify_all();
        self.ctrl().head.not_full.notify_all();
    }
}

impl Endpoint<Shared> {
    #[inline]
    fn claim(&self) -> &Claim {
        &self.q.ctrl().claims(self.role())[self.slot()]
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

mod consumer;
#[cfg(all(test, loom))]
mod loom_tests;
mod producer;
#[cfg(all(test, not(loom)))]
mod tests;

pub use consumer::Consumer;
pub use producer::Producer;
