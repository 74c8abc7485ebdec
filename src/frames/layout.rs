//! The frame channel's bytes (`SPEC.md`, frames section "Layout"): the control block, the
//! slot metadata array, the subscriber records and the page-aligned data area, and the
//! validated geometry every access is computed from.

#![cfg_attr(loom, allow(dead_code))] // under loom only the models use it

use crate::loom::{AtomicU64, Ordering};

use crate::sync::WaitQueue;

use crate::error::{Error, Result};
use crate::queue::role::RoleSlot;
use crate::queue::TypeTag;
use crate::segment::HEADER_SIZE;

/// Most slots a channel may have.
pub const MAX_SLOTS: u64 = 1024;
/// Most subscribers a channel may have attached at once.
pub const MAX_SUBSCRIBERS: u64 = 256;
/// Largest user header, in bytes.
pub const MAX_USER_HEADER: u64 = 1024;
/// Largest frame: 1 TiB (the segment's total must also fit `/dev/shm`).
pub const MAX_FRAME_BYTES: u64 = 1 << 40;

/// Control block size; the slot metadata array starts here.
pub(crate) const CONTROL_SIZE: u64 = 448;
/// Bytes of a slot's metadata before its pin words: seq, len, mono_ns, real_ns.
pub(crate) const META_FIXED: u64 = 32;
/// Bytes of a subscriber record: owner, cursor, received, lost.
pub(crate) const RECORD_FIXED: u64 = 32;

/// What the publisher does when it needs a slot and every slot is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum Policy {
    /// 0: take the oldest slot no subscriber holds, even if some subscriber has not received
    /// its frame yet (that subscriber counts it as lost). `loan` waits only while every slot
    /// is held. The default: a slow consumer never slows the camera.
    ReuseOldest,
    /// 1: a slot is free only once every attached subscriber has received its frame and none
    /// holds it: lossless; `loan` waits (with the timeout scheme) for the slowest subscriber.
    Block,
}

impl Policy {
    /// The policy named `reuse-oldest` or `block` (as `Display` prints it): the names the
    /// CLI's `--policy` and Python's `policy=` take.
    ///
    /// ```
    /// use shmkit::frames::Policy;
    /// assert_eq!(Policy::from_name("block"), Some(Policy::Block));
    /// assert_eq!(Policy::ReuseOldest.to_string(), "reuse-oldest");
    /// ```
    pub fn from_name(s: &str) -> Option<Policy> {
        [Policy::ReuseOldest, Policy::Block]
            .into_iter()
            .find(|p| p.to_string() == s)
    }

    pub(crate) fn word(self) -> u64 {
        match self {
            Policy::ReuseOldest => 0,
            Policy::Block => 1,
        }
    }

    pub(crate) fn from_word(w: u64) -> Option<Policy> {
        match w {
            0 => Some(Policy::ReuseOldest),
            1 => Some(Policy::Block),
            _ => None,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::ReuseOldest => "reuse-oldest",
            Policy::Block => "block",
        })
    }
}

/// The control block at payload offset 0 (448 bytes). Words 0..8 are the geometry, written
/// before the segment is published and never changed. Each word that changes lies alone in
/// its cache line, so that the one control word a hop writes shares its line with no other
/// changing word: `publisher` (read by every subscriber's empty poll, written only on attach
/// and detach), `head` (written by every publish, read by every receive as the doorbell, by
/// attaching subscribers and by a new publisher), and the two wait queues (written only while
/// someone sleeps on them).
#[repr(C)]
pub(crate) struct Control {
    pub slots: AtomicU64,        // 0
    pub max_bytes: AtomicU64,    // 8
    pub stride: AtomicU64,       // 16
    pub data_offset: AtomicU64,  // 24
    pub subscribers: AtomicU64,  // 32
    pub policy: AtomicU64,       // 40
    pub header_size: AtomicU64,  // 48
    pub header_align: AtomicU64, // 56
    pub tag: TypeTag,            // 64..136
    _reserved: [AtomicU64; 7],   // 136..192
    /// The publisher's owner word (liveness token; 0: none).
    pub publisher: RoleSlot, // 192
    _pad1: [AtomicU64; 7],       // 200..256
    /// The sequence number of the last frame published (0: none yet).
    pub head: AtomicU64, // 256
    _pad2: [AtomicU64; 7],       // 264..320
    /// Notified by a publish while a subscriber sleeps, and by the publisher's close.
    pub published: WaitQueue, // 320
    _pad3: [AtomicU64; 7],       // 328..384
    /// Notified by a release of a pin while the publisher sleeps (and by a record's release).
    pub released: WaitQueue, // 384
    _pad4: [AtomicU64; 7],       // 392..448
}

#[cfg(not(loom))] // loom's atomics are larger
const _: () = assert!(std::mem::size_of::<Control>() == CONTROL_SIZE as usize);
#[cfg(not(loom))] // loom's atomics are larger
const _: () = assert!(std::mem::offset_of!(Control, publisher) == 192);
#[cfg(not(loom))] // loom's atomics are larger
const _: () = assert!(std::mem::offset_of!(Control, head) == 256);
#[cfg(not(loom))] // loom's atomics are larger
const _: () = assert!(std::mem::offset_of!(Control, published) == 320);
#[cfg(not(loom))] // loom's atomics are larger
const _: () = assert!(std::mem::offset_of!(Control, released) == 384);

/// The fixed part of a slot's metadata (then its pin words, then the user header's words).
#[repr(C)]
pub(crate) struct SlotMeta {
    /// 0: empty; `s`: holds frame `s`; `s | CLAIMED`: being written (`pin::CLAIMED`).
    pub seq: AtomicU64,
    /// Payload bytes of the frame.
    pub len: AtomicU64,
    /// `CLOCK_MONOTONIC` at publish, ns.
    pub mono_ns: AtomicU64,
    /// `CLOCK_REALTIME` at publish, ns since the Unix epoch.
    pub real_ns: AtomicU64,
}

/// A subscriber record (64 bytes with its padding).
#[repr(C)]
pub(crate) struct Record {
    /// Owner word: the subscriber's liveness token (0: free).
    pub owner: RoleSlot,
    /// The sequence of the last frame it received (recv or latest).
    pub cursor: AtomicU64,
    /// Frames received (for `stat`).
    pub received: AtomicU64,
    /// Frames it learned it lost (for `stat`).
    pub lost: AtomicU64,
}

#[cfg(not(loom))] // loom's atomics are larger
const _: () = assert!(std::mem::size_of::<SlotMeta>() == META_FIXED as usize);
#[cfg(not(loom))] // loom's atomics are larger
const _: () = assert!(std::mem::size_of::<Record>() == RECORD_FIXED as usize);

/// A channel's geometry: the eight control words, checked, and every offset derived from
/// them. Built by [`Geometry::new`] (create) or [`Geometry::load`] (open, from untrusted
/// words); every access to the segment goes through these checked numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slots: u64,
    pub max_bytes: u64,
    pub stride: u64,
    pub data_offset: u64,
    pub subscribers: u64,
    pub policy: Policy,
    pub header_size: u64,
    pub header_align: u64,
    /// Derived from the words above by [`Geometry::derive`] (every constructor calls it), so
    /// that the hot paths' offsets are a multiply and an add: see the accessors.
    derived: Derived,
}

/// The offsets every access needs, computed once from the checked words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Derived {
    pin_words: u64,
    header_at: u64,
    meta_stride: u64,
    records_at: u64,
}

fn round_up(x: u64, to: u64) -> Option<u64> {
    x.checked_add(to - 1).map(|v| v / to * to)
}

impl Geometry {
    /// A new geometry; `align` is the data alignment (the page size, or 2 MiB for huge
    /// pages), a power of two.
    pub(crate) fn new(
        name: &str,
        slots: u64,
        max_bytes: u64,
        subscribers: u64,
        policy: Policy,
        (header_size, header_align): (u64, u64),
        align: u64,
    ) -> Result<Geometry> {
        let too = |what: &str, v: u64, max: u64| {
            if v == 0 {
                Err(Error::invalid(name, format!("{what} must be at least 1")))
            } else if v > max {
                Err(Error::TooLarge {
                    name: name.to_owned(),
                    requested: v,
                    max,
                })
            } else {
                Ok(())
            }
        };
        too("slots", slots, MAX_SLOTS)?;
        too("max frame bytes", max_bytes, MAX_FRAME_BYTES)?;
        too("subscribers", subscribers, MAX_SUBSCRIBERS)?;
        if header_size > MAX_USER_HEADER || header_align > 8 {
            return Err(Error::invalid(
                name,
                format!(
                    "the user header type is {header_size} bytes, align {header_align}; at most \
                     {MAX_USER_HEADER} bytes, align 8"
                ),
            ));
        }
        let stride = round_up(max_bytes, align).expect("max_bytes is bounded");
        let mut g = Geometry {
            slots,
            max_bytes,
            stride,
            data_offset: 0,
            subscribers,
            policy,
            header_size,
            header_align: header_align.max(1),
            derived: Derived::default(),
        }
        .derive();
        let hdr = HEADER_SIZE as u64;
        g.data_offset = round_up(hdr + g.records_end(), align).expect("bounded") - hdr;
        Ok(g)
    }

    /// Read and check the geometry from `ctrl` (untrusted: any word may be anything), against
    /// a payload of `payload_len` bytes and the system page size.
    pub(crate) fn load(
        name: &str,
        ctrl: &Control,
        payload_len: u64,
        page: u64,
    ) -> Result<Geometry> {
        // Relaxed: the open loaded the header's READY with Acquire, which made the geometry
        // visible; it never changes afterwards (a hostile change is caught below or harmless:
        // every later access uses this checked copy).
        let l = |w: &AtomicU64| w.load(Ordering::Relaxed);
        let bad = |what: String| Error::corrupt(name, what);
        let policy = l(&ctrl.policy);
        let g = Geometry {
            slots: l(&ctrl.slots),
            max_bytes: l(&ctrl.max_bytes),
            stride: l(&ctrl.stride),
            data_offset: l(&ctrl.data_offset),
            subscribers: l(&ctrl.subscribers),
            policy: Policy::from_word(policy)
                .ok_or_else(|| bad(format!("policy word {policy} is neither 0 nor 1")))?,
            header_size: l(&ctrl.header_size),
            header_align: l(&ctrl.header_align),
            derived: Derived::default(),
        };
        if !(1..=MAX_SLOTS).contains(&g.slots)
            || !(1..=MAX_SUBSCRIBERS).contains(&g.subscribers)
            || !(1..=MAX_FRAME_BYTES).contains(&g.max_bytes)
            || g.header_size > MAX_USER_HEADER
            || !matches!(g.header_align, 1 | 2 | 4 | 8)
        {
            return Err(bad(format!(
                "slots {}, subscribers {}, max frame {} bytes, user header {} bytes (align {}) \
                 are out of range",
                g.slots, g.subscribers, g.max_bytes, g.header_size, g.header_align
            )));
        }
        // The words are in range: the derived offsets cannot overflow.
        let g = g.derive();
        let hdr = HEADER_SIZE as u64;
        if g.stride < g.max_bytes
            || g.stride % page != 0
            || g.data_offset < g.records_end()
            || hdr
                .checked_add(g.data_offset)
                .map_or(true, |o| o % page != 0)
        {
            return Err(bad(format!(
                "slot stride {} / data offset {} do not fit {} slots of {} bytes on {page}-byte \
                 pages",
                g.stride, g.data_offset, g.slots, g.max_bytes
            )));
        }
        let end = g
            .stride
            .checked_mul(g.slots)
            .and_then(|d| d.checked_add(g.data_offset));
        if end != Some(payload_len) {
            return Err(bad(format!(
                "{} slots of {} bytes at offset {} do not end at the payload's {payload_len} \
                 bytes",
                g.slots, g.stride, g.data_offset
            )));
        }
        Ok(g)
    }

    /// Store the geometry into a fresh (zeroed, unpublished) control block.
    pub(crate) fn store(&self, ctrl: &Control, type_name: &str) {
        // Relaxed: published by the segment's READY store (Release).
        let s = |w: &AtomicU64, v: u64| w.store(v, Ordering::Relaxed);
        s(&ctrl.slots, self.slots);
        s(&ctrl.max_bytes, self.max_bytes);
        s(&ctrl.stride, self.stride);
        s(&ctrl.data_offset, self.data_offset);
        s(&ctrl.subscribers, self.subscribers);
        s(&ctrl.policy, self.policy.word());
        s(&ctrl.header_size, self.header_size);
        s(&ctrl.header_align, self.header_align);
        ctrl.tag.store(type_name);
    }

    /// Fill in the derived offsets from the words (which the constructors have checked: slots,
    /// subscribers and the header size are bounded, so nothing here overflows).
    fn derive(mut self) -> Geometry {
        let pin_words = self.subscribers.div_ceil(64);
        // The user header follows the pin words (at most 64 bytes in, so `seq`, the pins,
        // `len` and the timestamps share the entry's first cache line).
        let header_at = META_FIXED + 8 * pin_words;
        let meta_stride =
            round_up(header_at + 8 * self.header_words(), 64).expect("bounded header size");
        self.derived = Derived {
            pin_words,
            header_at,
            meta_stride,
            records_at: CONTROL_SIZE + self.slots * meta_stride,
        };
        self
    }

    /// Words of a slot's user header.
    #[inline]
    pub(crate) fn header_words(&self) -> u64 {
        self.header_size.div_ceil(8)
    }

    /// Bytes per slot metadata entry (a multiple of 64).
    #[inline]
    pub(crate) fn meta_stride(&self) -> u64 {
        self.derived.meta_stride
    }

    /// Words of a slot's pin bitmap: one bit per subscriber record.
    #[inline]
    pub(crate) fn pin_words(&self) -> u64 {
        self.derived.pin_words
    }

    /// Offset of the user header within a slot's metadata (after the pin words; at most 64,
    /// so `seq`, the pins, `len` and the timestamps share the entry's first cache line).
    #[inline]
    pub(crate) fn header_at(&self) -> u64 {
        self.derived.header_at
    }

    /// Bytes per subscriber record (a multiple of 64).
    #[inline]
    pub(crate) fn record_stride(&self) -> u64 {
        const STRIDE: u64 = RECORD_FIXED.next_multiple_of(64);
        STRIDE
    }

    /// Payload offset of slot `i`'s metadata.
    #[inline]
    pub(crate) fn meta_offset(&self, i: u64) -> u64 {
        CONTROL_SIZE + i * self.meta_stride()
    }

    /// Payload offset of subscriber record `r`.
    #[inline]
    pub(crate) fn record_offset(&self, r: u64) -> u64 {
        self.derived.records_at + r * self.record_stride()
    }

    fn records_end(&self) -> u64 {
        self.record_offset(self.subscribers)
    }

    /// Payload offset of slot `i`'s frame bytes.
    #[inline]
    pub(crate) fn data_at(&self, i: u64) -> u64 {
        self.data_offset + i * self.stride
    }

    /// Payload bytes of the whole channel.
    pub(crate) fn payload_len(&self) -> u64 {
        self.data_offset + self.slots * self.stride
    }
}

/// The control block at `base`.
///
/// # Safety
///
/// `base` is 8-aligned and points to at least [`CONTROL_SIZE`] bytes of a mapping that lives
/// for `'a` (its bytes may be anything: the control block is atomics only).
pub(crate) unsafe fn control<'a>(base: *const u8) -> &'a Control {
    // SAFETY: the caller's contract; every bit pattern is a valid atomic.
    unsafe { &*base.cast::<Control>() }
}

/// Typed views of a mapped channel. All offsets come from a checked [`Geometry`].
#[cfg(not(loom))]
#[derive(Clone, Copy)]
pub(crate) struct View {
    /// First payload byte.
    pub base: *mut u8,
    pub g: Geometry,
}

/// Under loom, the channel's words (loom atomics cannot be laid over mapped bytes): the same
/// accessors over a heap copy of the control block, slot metadata and records, so that the
/// models drive the production slot-selection and recovery code (`recovery.rs`). No frame
/// data.
#[cfg(loom)]
#[derive(Clone, Copy)]
pub(crate) struct View {
    words: &'static LoomWords,
    pub g: Geometry,
}

#[cfg(loom)]
struct LoomWords {
    ctrl: Control,
    metas: Box<[LoomMeta]>,
    records: Box<[Record]>,
}

/// A slot's metadata under loom: the fixed words, the pin words, the user header's words.
#[cfg(loom)]
struct LoomMeta {
    fixed: SlotMeta,
    pins: Box<[AtomicU64]>,
    header: Box<[AtomicU64]>,
}

#[cfg(loom)]
impl View {
    /// A fresh channel of geometry `g` (every word 0, the geometry words stored). Leaked: a
    /// model's channel lives until the process ends, as a mapping would until unmapped.
    fn heap(g: Geometry) -> View {
        let zeros = |n: u64| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        let ctrl = Control {
            slots: AtomicU64::new(0),
            max_bytes: AtomicU64::new(0),
            stride: AtomicU64::new(0),
            data_offset: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            policy: AtomicU64::new(0),
            header_size: AtomicU64::new(0),
            header_align: AtomicU64::new(0),
            tag: TypeTag::new(),
            _reserved: Default::default(),
            publisher: RoleSlot::new(),
            _pad1: Default::default(),
            head: AtomicU64::new(0),
            _pad2: Default::default(),
            published: WaitQueue::new(),
            _pad3: Default::default(),
            released: WaitQueue::new(),
            _pad4: Default::default(),
        };
        g.store(&ctrl, "model");
        let meta = || SlotMeta {
            seq: AtomicU64::new(0),
            len: AtomicU64::new(0),
            mono_ns: AtomicU64::new(0),
            real_ns: AtomicU64::new(0),
        };
        let words = LoomWords {
            ctrl,
            metas: (0..g.slots)
                .map(|_| LoomMeta {
                    fixed: meta(),
                    pins: zeros(g.pin_words()),
                    header: zeros(g.header_words()),
                })
                .collect(),
            records: (0..g.subscribers)
                .map(|_| Record {
                    owner: RoleSlot::new(),
                    cursor: AtomicU64::new(0),
                    received: AtomicU64::new(0),
                    lost: AtomicU64::new(0),
                })
                .collect(),
        };
        View {
            words: Box::leak(Box::new(words)),
            g,
        }
    }

    /// A fresh channel of `slots` slots of 8 bytes and `subscribers` records under `policy`,
    /// no user header: the models' channel.
    pub(crate) fn model(slots: u64, subscribers: u64, policy: Policy) -> View {
        let g = Geometry::new("model", slots, 8, subscribers, policy, (0, 1), 4096)
            .expect("a model's geometry");
        View::heap(g)
    }

    pub(crate) fn ctrl(&self) -> &Control {
        &self.words.ctrl
    }

    pub(crate) fn meta(&self, i: u64) -> &SlotMeta {
        &self.words.metas[i as usize].fixed
    }

    pub(crate) fn header_word(&self, i: u64, w: u64) -> &AtomicU64 {
        &self.words.metas[i as usize].header[w as usize]
    }

    pub(crate) fn record(&self, r: u64) -> &Record {
        &self.words.records[r as usize]
    }

    pub(crate) fn pin_word(&self, i: u64, w: u64) -> &AtomicU64 {
        &self.words.metas[i as usize].pins[w as usize]
    }

    pub(crate) fn pin_of(&self, r: u64, i: u64) -> (&AtomicU64, u64) {
        (self.pin_word(i, r / 64), 1 << (r % 64))
    }
}

// SAFETY: a View is a pointer into a mapping owned by the handle that holds it (with an Arc),
// accessed only through atomics (control, metadata, records) or under the documented frame
// contract; it is as shareable between threads as those accesses are.
#[cfg(not(loom))]
unsafe impl Send for View {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for View {}

#[cfg(not(loom))]
impl View {
    /// The control block.
    #[inline]
    pub(crate) fn ctrl(&self) -> &Control {
        // SAFETY: payload offset 0 holds CONTROL_SIZE bytes (geometry checked), 64-aligned,
        // in a mapping that outlives `self`'s owner.
        unsafe { control(self.base) }
    }

    /// Slot `i`'s metadata (`i < slots`).
    #[inline]
    pub(crate) fn meta(&self, i: u64) -> &SlotMeta {
        debug_assert!(i < self.g.slots);
        // SAFETY: i < slots, so the entry lies inside the metadata array, 64-aligned.
        unsafe {
            &*self
                .base
                .add(self.g.meta_offset(i) as usize)
                .cast::<SlotMeta>()
        }
    }

    /// Word `w` of slot `i`'s user header.
    #[inline]
    pub(crate) fn header_word(&self, i: u64, w: u64) -> &AtomicU64 {
        debug_assert!(w < self.g.header_words());
        let at = self.g.meta_offset(i) + self.g.header_at() + 8 * w;
        // SAFETY: inside slot i's metadata entry (w < header_words), 8-aligned.
        unsafe { &*self.base.add(at as usize).cast::<AtomicU64>() }
    }

    /// Subscriber record `r` (`r < subscribers`).
    #[inline]
    pub(crate) fn record(&self, r: u64) -> &Record {
        debug_assert!(r < self.g.subscribers);
        // SAFETY: r < subscribers: inside the record array, 64-aligned.
        unsafe {
            &*self
                .base
                .add(self.g.record_offset(r) as usize)
                .cast::<Record>()
        }
    }

    /// Pin word `w` of slot `i` (`i < slots`, `w < pin_words`).
    #[inline]
    pub(crate) fn pin_word(&self, i: u64, w: u64) -> &AtomicU64 {
        debug_assert!(i < self.g.slots && w < self.g.pin_words());
        let at = self.g.meta_offset(i) + META_FIXED + 8 * w;
        // SAFETY: inside slot i's metadata entry (w < pin_words), 8-aligned.
        unsafe { &*self.base.add(at as usize).cast::<AtomicU64>() }
    }

    /// The pin word and bit of record `r` in slot `i`.
    #[inline]
    pub(crate) fn pin_of(&self, r: u64, i: u64) -> (&AtomicU64, u64) {
        (self.pin_word(i, r / 64), 1 << (r % 64))
    }

    /// First byte of slot `i`'s frame data (`i < slots`): `stride` bytes, page-aligned.
    #[inline]
    pub(crate) fn data(&self, i: u64) -> *mut u8 {
        debug_assert!(i < self.g.slots);
        // SAFETY: i < slots: the slot lies inside the data area, which ends the payload.
        unsafe { self.base.add(self.g.data_at(i) as usize) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        let g = Geometry::new("t", 4, 1000, 16, Policy::Block, (24, 8), 4096).unwrap();
        assert_eq!(g.stride, 4096);
        assert_eq!(g.meta_stride(), 64);
        assert_eq!(g.header_at(), 40);
        assert_eq!(g.record_stride(), 64);
        assert_eq!(g.record_offset(0), CONTROL_SIZE + 4 * 64);
        let wide = Geometry::new("t", 4, 1000, 256, Policy::Block, (8, 8), 4096).unwrap();
        assert_eq!((wide.header_at(), wide.meta_stride()), (64, 128));
        assert_eq!((HEADER_SIZE as u64 + g.data_offset) % 4096, 0);
        assert!(g.data_offset >= g.record_offset(16));
        assert_eq!(g.payload_len(), g.data_offset + 4 * 4096);
        assert!(Geometry::new("t", 0, 1, 1, Policy::Block, (0, 1), 4096).is_err());
        assert!(Geometry::new("t", 1, 1, 1, Policy::Block, (2048, 1), 4096).is_err());
        let big = Geometry::new("t", 2, 256 << 20, 32, Policy::ReuseOldest, (0, 1), 4096);
        assert_eq!(big.unwrap().stride, 256 << 20);
    }
}
