//! [`Ring`]: a single-producer single-consumer ring of variable-length byte messages,
//! zero-copy on both sides.
//!
//! The producer [`reserve`](Producer::try_reserve)s `n` contiguous bytes inside the ring,
//! writes them in place and [`commit`](WriteGuard::commit)s; the consumer
//! [`peek`](Consumer::try_peek)s at the oldest message in place and
//! [`release`](ReadGuard::release)s it. Messages are 8-byte aligned records
//! (`SPEC.md` §7.3): an 8-byte header (length, kind, lap) and the bytes, padded to 8. The
//! consumer polls the header word where the next record starts, so a message reaches it in
//! one cache-line transfer (the header and a small message share a line). A message that would
//! cross the ring's end is placed at its start instead, behind a *wrap* record, so every
//! message is contiguous; that is why a message may be at most
//! [`max_message`]`(capacity)` = `capacity / 2 - 8` bytes (and at most `2^32 - 8`).
//!
//! ```
//! use shmkit::queue::bytes::Ring;
//! # let name = format!("doc-bytes-{}", std::process::id());
//! let ring = Ring::create(&name, 4096)?;
//! ring.set_unlink_on_drop(true);
//! let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
//! let mut w = tx.try_reserve(5)?;
//! w.copy_from_slice(b"hello");
//! w.commit();
//! let r = rx.try_peek()?;
//! assert_eq!(&*r, b"hello");
//! r.release();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use super::endpoint::Wake;
use super::error::{AttachError, BytesPushError, PopError, Role, TryPopError};
use super::forms::queue_constructors;
#[cfg(not(loom))]
use super::options::{self, How};
use super::ring_control::{Expect, RingShared as RawRing, Side};
use super::stat::{QueueStat, Stat};
use crate::loom::{AtomicU64, Ordering};
use crate::os::atomic_copy;
use crate::os::deadline::blocking_forms;
use crate::segment::fingerprint;
use crate::Kind;

/// Record header kind (bits 56..64): a message of `len` bytes follows. ASCII `M`.
const KIND_MSG: u64 = b'M' as u64;
/// Record header kind: the rest of the ring up to its end is unused; the next record is at
/// offset 0 (of the next lap). ASCII `W`.
const KIND_WRAP: u64 = b'W' as u64;
/// Bits 32..56 of a header: the low 24 bits of the lap (`position / capacity`) it was written
/// in, so that a header left from the previous lap is never taken for a new one.
const LAP_MASK: u64 = 0xff_ffff;
/// Record header size.
const HDR: u64 = 8;
/// Smallest ring capacity in bytes.
pub const MIN_CAPACITY: u64 = 64;

/// Layout fingerprint of the bytes ring.
pub const LAYOUT_FINGERPRINT: u64 = fingerprint(
    b"shmkit bytes-ring v3: records [u32 len, u24 lap, u8 kind], 8-aligned, header-polled, next header cleared, conditional notify",
);

/// A record header: `kind`, written at absolute position `pos` of a ring whose capacity is
/// `1 << shift`, for a message of `len` bytes (0 for a wrap).
#[inline]
pub(crate) fn header(kind: u64, pos: u64, shift: u32, len: u64) -> u64 {
    (kind << 56) | (((pos >> shift) & LAP_MASK) << 32) | len
}

/// What the header word at a position says.
enum Header {
    /// No record there yet: zero, or a header of the previous lap.
    NotReady,
    /// A record, checked.
    Record(Record),
    /// A header of this lap that no producer writes (bad kind, length or wrap).
    Corrupt,
}

#[cfg_attr(loom, allow(dead_code))]
const EXPECT: Expect<'static> = Expect {
    kind: Kind::BYTES_RING,
    fingerprint: LAYOUT_FINGERPRINT,
    elem_size: Some(1),
    min_capacity: MIN_CAPACITY,
    slot_size: identity,
    type_name: None,
};

#[cfg_attr(loom, allow(dead_code))]
fn identity(n: u64) -> u64 {
    n
}

/// Largest message length the 32-bit length field of a record header holds, kept 8-aligned:
/// `2^32 - 8` bytes.
pub const MAX_MESSAGE_LEN: u64 = (u32::MAX as u64) & !7;

/// Largest message a ring of `capacity` bytes accepts: `capacity / 2 - 8`, and at most
/// [`MAX_MESSAGE_LEN`] (a record header stores the length in 32 bits). Any message up to this
/// size fits once the ring drains, wherever the producer's position is. It is 0 (only empty
/// messages) for capacities up to 16, smaller ones included: it saturates there instead of
/// underflowing (rings have at least [`MIN_CAPACITY`] bytes, so only a caller's own
/// arithmetic meets this).
///
/// ```
/// use shmkit::queue::bytes::{max_message, MAX_MESSAGE_LEN};
/// assert_eq!(max_message(256 * 1024), 128 * 1024 - 8);
/// assert_eq!(max_message(1 << 40), MAX_MESSAGE_LEN);
/// assert_eq!(max_message(16), 0);
/// assert_eq!(max_message(8), 0);
/// assert_eq!(max_message(0), 0);
/// ```
pub const fn max_message(capacity: u64) -> u64 {
    let m = (capacity / 2).saturating_sub(HDR);
    if m > MAX_MESSAGE_LEN {
        MAX_MESSAGE_LEN
    } else {
        m
    }
}

#[inline]
fn record_len(n: u64) -> u64 {
    HDR + ((n + 7) & !7)
}

/// A variable-length byte-message ring in a named segment (or on the heap, from
/// [`with_capacity`](Self::with_capacity)); attach one [`Producer`] and one [`Consumer`].
///
/// # Shared memory is shared
///
/// Every header and index read from shared memory is read once and checked (kind, lap,
/// length at most [`max_message`], record inside the ring); a violation is reported as
/// `Corrupt`, never an out-of-bounds access, a panic or an unbounded loop. The guards hand
/// out slices over the mapping itself, sound only while every process that can write the
/// segment follows the protocol; the copying calls (`try_push`, `push`, `try_pop`, `pop`,
/// `copy_from`, `copy_to`) are sound whatever other processes do (see [`WriteGuard`] and
/// [`ReadGuard`]).
///
/// The consumer finds messages by their headers alone (it does not read the producer's
/// tail on its fast path), so a process that can write the segment (by default only the
/// owner's processes: mode `0600`) can forge a header that the consumer then hands out as a
/// message, bytes the producer may be writing included. Such a writer can change any message
/// bytes anyway; do not let untrusted processes open a ring.
pub struct Ring {
    ring: Arc<RawRing>,
}

#[cfg(not(loom))]
impl options::sealed::Build for Ring {
    fn build(seg: &crate::SegmentOptions, name: &str, how: How) -> crate::Result<Self> {
        let ring = match how {
            How::Create(cap) => RawRing::create(seg, name, EXPECT, cap, 8, false),
            How::OpenOrCreate(cap) => RawRing::create(seg, name, EXPECT, cap, 8, true),
            How::Open | How::OpenBySize => RawRing::open(seg, name, EXPECT),
        }?;
        Ok(Ring {
            ring: Arc::new(ring),
        })
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bytes::Ring")
            .field("name", &self.ring.region.name())
            .field("capacity", &self.ring.capacity)
            .finish()
    }
}

impl Ring {
    queue_constructors! {
        what: "ring", capacity: "bytes (a power of two, at least 64)",
        ///
        /// ```
        /// use shmkit::queue::bytes::Ring;
        /// # let name = format!("doc-bytes-options-{}", std::process::id());
        /// let r = Ring::options().mode(0o660).unlink_on_drop(true).create(&name, 4096)?;
        /// assert_eq!(r.capacity(), 4096);
        /// # Ok::<(), shmkit::Error>(())
        /// ```
        options;
        open;
    }

    /// A ring on this process's heap.
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two in `64..=2^40`.
    pub fn with_capacity(capacity: u64) -> Self {
        super::geometry::check_capacity("(private)", capacity, MIN_CAPACITY).expect("capacity");
        // Under loom the record headers are separate loom atomics (one per 8-byte word).
        let words = if cfg!(loom) {
            (capacity / 8) as usize
        } else {
            0
        };
        Ring {
            ring: Arc::new(RawRing::heap(capacity, 1, 1, 8, words, None)),
        }
    }

    /// Attach as the producer.
    pub fn producer(&self) -> Result<Producer, AttachError> {
        let side = Side::attach(Arc::clone(&self.ring), Role::Producer)?;
        let ctrl = self.ring.ctrl();
        // Acquire: pairs with the Release stores of the previous producer (tail) and of the
        // consumer (head).
        let stored = ctrl.prod.tail.load(Ordering::Acquire);
        let head = ctrl.cons.head.load(Ordering::Acquire);
        let corrupt = |what: String| crate::Error::corrupt(self.name(), what).into();
        if stored % 8 != 0 || head % 8 != 0 {
            return Err(corrupt(format!("tail {stored}, head {head}")));
        }
        let cap = self.ring.capacity;
        // A producer killed after publishing a record header but before storing tail left
        // `tail` behind its records, and the consumer may have read past it. Resume after the
        // last published record.
        let mut tail = if stored.wrapping_sub(head) <= cap {
            stored
        } else if head.wrapping_sub(stored) <= cap {
            head
        } else {
            return Err(corrupt(format!("tail {stored}, head {head}")));
        };
        // Each commit stores tail, so at most one record lies past it; a second one is not
        // the protocol's.
        for step in 0..2 {
            let room = cap - tail.wrapping_sub(head);
            match decode(&self.ring, tail, room) {
                Header::Record(r) if step == 0 => tail = tail.wrapping_add(r.advance),
                Header::NotReady => break,
                _ => return Err(corrupt(format!("record header at position {tail}"))),
            }
        }
        if tail != stored {
            // Release: as a commit's tail store.
            ctrl.prod.tail.store(tail, Ordering::Release);
        }
        Ok(Producer {
            side,
            tail,
            head_cache: head,
            clean_from: tail,
            zeroed: tail,
            cap,
            mask: self.ring.mask,
            shift: cap.trailing_zeros(),
        })
    }

    /// Attach as the consumer.
    pub fn consumer(&self) -> Result<Consumer, AttachError> {
        let side = Side::attach(Arc::clone(&self.ring), Role::Consumer)?;
        // Acquire: pairs with the previous consumer's Release stores of head.
        let head = self.ring.ctrl().cons.head.load(Ordering::Acquire);
        if head % 8 != 0 {
            return Err(crate::Error::corrupt(
                self.name(),
                format!("head {head} is not 8-aligned"),
            )
            .into());
        }
        Ok(Consumer {
            side,
            head,
            cap: self.ring.capacity,
        })
    }

    /// Ring size in bytes.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity
    }

    /// Largest message this ring accepts.
    pub fn max_message(&self) -> u64 {
        max_message(self.ring.capacity)
    }

    /// Bytes in use now, record headers and padding included (a snapshot).
    pub fn len(&self) -> u64 {
        self.ring.len()
    }

    /// Whether the ring holds no message now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        self.ring.region.name()
    }

    /// Unlink the segment when the last handle in this process drops.
    pub fn set_unlink_on_drop(&self, yes: bool) {
        self.ring.region.set_unlink_on_drop(yes)
    }

    /// Capacity, bytes in use, attached ends.
    pub fn stat(&self) -> QueueStat {
        Stat::ring(&self.ring, crate::Kind::BYTES_RING)
    }
}

/// Where a reservation goes.
#[derive(Debug, Clone, Copy)]
struct Placement {
    /// Ring offset of the record header.
    start: u64,
    /// Bytes the tail advances by (a wrap record's bytes included).
    advance: u64,
    /// Whether a wrap record goes at the current position first.
    wrap: bool,
    len: u64,
}

enum Fail {
    Full(u64),
    Other(BytesPushError),
}

/// The producing end of a [`Ring`]. `Send`, not `Sync`. Dropping it detaches it: the role is
/// freed for another producer and the consumer keeps waiting; only [`close`](Self::close)
/// (or the death of this process while it holds the role) ends the consumer's stream with
/// `Disconnected`.
pub struct Producer {
    side: Side,
    tail: u64,
    head_cache: u64,
    /// The header words from `clean_from` up to `zeroed` (positions, `clean_from <= zeroed`
    /// when the range is not empty) hold 0: zeroed by [`zero_ahead`](Self::zero_ahead) and
    /// not written since (a reservation moves `clean_from` past the bytes it hands out).
    clean_from: u64,
    zeroed: u64,
    cap: u64,
    mask: u64,
    shift: u32,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bytes::Producer")
            .field("tail", &self.tail)
            .finish()
    }
}

impl Producer {
    // `always`: with `#[inline]` alone the compiler kept `place`, `next` and `commit_len`
    // out of line in a caller's crate (three calls per message on the ping-pong path;
    // BENCHMARKS.md, thirteenth session).
    #[inline(always)]
    fn place(&mut self, n: u64) -> Result<Placement, Fail> {
        if self.side.is_closed() || self.side.peer_closed() {
            return Err(Fail::Other(BytesPushError::Disconnected));
        }
        let max = max_message(self.cap);
        if n > max {
            return Err(Fail::Other(BytesPushError::TooLarge { len: n, max }));
        }
        let rec = record_len(n);
        let pos = self.tail & self.mask;
        let to_end = self.cap - pos;
        let (start, advance, wrap) = if rec <= to_end {
            (pos, rec, false)
        } else {
            (0, to_end + rec, true)
        };
        let mut free = self.cap - self.tail.wrapping_sub(self.head_cache);
        if free < advance {
            // Acquire pairs with the consumer's Release store of head in `ReadGuard::release`:
            // it is done reading the bytes we may now overwrite.
            let head = self.side.q.ctrl().cons.head.load(Ordering::Acquire);
            let used = self.tail.wrapping_sub(head);
            // A head off the 8-byte grid is as corrupt as one out of range, and must not be
            // cached: `zero_ahead` bounds its word stores by `head_cache + capacity`, and a
            // word address off the grid would be a misaligned atomic (a hostile writer's
            // torture test aborted there).
            if used > self.cap || head % HDR != 0 {
                return Err(Fail::Other(BytesPushError::Corrupt));
            }
            self.head_cache = head;
            free = self.cap - used;
            if free < advance {
                if self.side.peer_gone() {
                    return Err(Fail::Other(BytesPushError::Disconnected));
                }
                return Err(Fail::Full(advance));
            }
        }
        // The caller may write any byte of the record (through the guard) before it commits,
        // or drop the guard and reserve again from the same tail: the words up to the
        // record's end are no longer known to be zero.
        let end = self.tail.wrapping_add(advance);
        if before(self.clean_from, end) {
            self.clean_from = end;
        }
        // Keep `zeroed` within reach of `tail` (an empty range at `clean_from`): long records
        // and a full ring never zero ahead, and `before` compares positions less than 2^63
        // apart.
        if before(self.zeroed, self.clean_from) {
            self.zeroed = self.clean_from;
        }
        Ok(Placement {
            start,
            advance,
            wrap,
            len: n,
        })
    }

    /// Zero the header words of free space from `next + 8` to the end of the cache line after
    /// `next`'s (SPEC §7.3, "zeroed ahead"), so that a later commit whose next record
    /// starts there finds its word already zero and stores nothing into a second line before
    /// its header: its header then reaches the consumer in one line transfer. Called after a
    /// commit's header, `tail` and notify: off the hop's path. Only free space is written
    /// (up to `head_cache + capacity`, which the consumer has released), never the word at
    /// `next`, which the consumer polls.
    #[inline]
    fn zero_ahead(&mut self, next: u64) {
        // The data area starts 64-aligned in the mapping, so positions and lines agree.
        let mut want = (next | 63).wrapping_add(1 + 64);
        let limit = self.head_cache.wrapping_add(self.cap);
        if before(limit, want) {
            want = limit;
        }
        // Words before `next + 8` were written by records (or are the polled word at `next`),
        // and those before `clean_from` may have been written through a guard.
        let mut start = next.wrapping_add(HDR);
        if before(start, self.clean_from) {
            start = self.clean_from;
        }
        let mut at = if before(start, self.zeroed) {
            self.zeroed // [start, zeroed) is zero already
        } else {
            start
        };
        if !before(at, want) {
            return;
        }
        let ring = &*self.side.q;
        while before(at, want) {
            // Loom models: a write of a word the consumer may have read in the previous lap.
            #[cfg(all(test, loom))]
            shadow(ring, at, HDR, true);
            // Relaxed: published by the Release header store of the commit whose record ends
            // here, which comes after this store in program order (SPEC §7.3).
            word(ring, at).store(0, Ordering::Relaxed);
            at = at.wrapping_add(HDR);
        }
        self.clean_from = start;
        self.zeroed = want;
    }

    /// Reserve `n` contiguous bytes for one message, if there is room now.
    #[inline]
    pub fn try_reserve(&mut self, n: usize) -> Result<WriteGuard<'_>, BytesPushError> {
        match self.place(n as u64) {
            Ok(pl) => Ok(WriteGuard { p: self, pl }),
            Err(Fail::Full(_)) => Err(BytesPushError::Full),
            Err(Fail::Other(e)) => Err(e),
        }
    }

    fn reserve_within(
        &mut self,
        n: usize,
        deadline: Option<Instant>,
    ) -> Result<WriteGuard<'_>, BytesPushError> {
        loop {
            let need = match self.place(n as u64) {
                Ok(pl) => return Ok(WriteGuard { p: self, pl }),
                Err(Fail::Full(need)) => need,
                Err(Fail::Other(e)) => return Err(e),
            };
            let side = &self.side;
            let (tail, cap) = (self.tail, self.cap);
            // Acquire: as in `place`.
            let ready = || {
                cap - tail
                    .wrapping_sub(side.q.ctrl().cons.head.load(Ordering::Acquire))
                    .min(cap)
                    >= need
            };
            match side.wait(&side.q.ctrl().cons.not_full, ready, deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(BytesPushError::Timeout),
                Wake::Gone(()) => return Err(BytesPushError::Disconnected),
            }
        }
    }

    blocking_forms! {
        /// Reserve `n` contiguous bytes, waiting for room ([`BytesPushError::Timeout`] from the
        /// timed forms). `Disconnected` once the consumer closes or is found dead; never
        /// hangs on a dead peer.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{bytes::Ring, BytesPushError};
        /// let ring = Ring::with_capacity(1024);
        /// let mut tx = ring.producer().unwrap();
        /// let mut w = tx.reserve(3).unwrap();
        /// w.copy_from(b"abc");
        /// w.commit();
        /// let e = tx.reserve_timeout(1000, Duration::from_millis(1)).unwrap_err();
        /// assert_eq!(e, BytesPushError::TooLarge { len: 1000, max: 504 });
        /// ```
        fn reserve / reserve_timeout / reserve_deadline (n: usize)
            -> Result<WriteGuard<'_>, BytesPushError> = reserve_within;
    }

    /// Copy `msg` in as one message, if there is room now.
    ///
    /// The bytes are stored with atomics ([`WriteGuard::copy_from`]), so this never races
    /// with another process, whatever it does to the segment.
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), BytesPushError> {
        let mut w = self.try_reserve(msg.len())?;
        w.copy_from(msg);
        w.commit();
        Ok(())
    }

    fn push_within(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), BytesPushError> {
        let mut w = self.reserve_within(msg.len(), deadline)?;
        w.copy_from(msg);
        w.commit();
        Ok(())
    }

    blocking_forms! {
        /// Copy `msg` in as one message, waiting for room (as [`reserve`](Self::reserve)).
        ///
        /// ```
        /// use shmkit::queue::bytes::Ring;
        /// let ring = Ring::with_capacity(1024);
        /// let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        /// tx.push(b"abc").unwrap();
        /// assert_eq!(rx.pop().unwrap(), b"abc");
        /// ```
        fn push / push_timeout / push_deadline (msg: &[u8]) -> Result<(), BytesPushError>
            = push_within;
    }

    /// Close the producer end and free the role: the consumer drains what is left, then gets
    /// `Disconnected`. A producer that attaches afterwards reopens the end. Dropping the
    /// producer does *not* close it: it only frees the role.
    pub fn close(&mut self) {
        self.side.close()
    }

    /// Largest message this ring accepts.
    pub fn max_message(&self) -> u64 {
        max_message(self.cap)
    }

    #[inline]
    fn data(&self) -> *mut u8 {
        self.side.q.data()
    }
}

/// `n` bytes reserved in the ring for one message, written in place; [`commit`](Self::commit)
/// publishes them, dropping the guard abandons them (nothing is published).
///
/// # The slice and who may write it (shared memory)
///
/// The guard derefs to a `&mut [u8]` over the mapping itself: zero-copy. Its position and
/// length come from this producer's private state (not from shared memory), so they lie
/// inside the ring whatever the segment holds. The contract that makes the `&mut [u8]` sound:
///
/// - **Nobody else accesses these bytes until [`commit`](Self::commit).** The ring's protocol
///   (`SPEC.md` §7.3) guarantees it among processes that follow it: the consumer reads only
///   records whose header was published, and it had released (Release store of `head`,
///   Acquire-loaded by this producer before reserving) every earlier record these bytes
///   belonged to. The producer role is exclusive (one owner word).
/// - **What shmkit cannot guarantee:** any process that can open the segment read-write (the
///   mode bits decide who; 0600 by default) can break the protocol, by writing these bytes
///   directly, or by forging the consumer's `head` so that the producer reuses bytes still in
///   use. Such a write while the guard lives is a data race on memory this process holds a
///   `&mut [u8]` to, which is undefined behaviour in Rust's model: not merely "the bytes
///   change" but code that writes a byte and reads it back may act on a value it did not
///   write. shmkit's own code never reads the message bytes (only the record headers, which
///   are atomics), so its indices and bounds stay checked; the consumer may receive bytes
///   the intruder wrote.
/// - **What a misbehaving peer cannot cause:** it cannot move or resize this slice, make the
///   commit publish a length other than yours, or make shmkit access memory outside the
///   mapping.
///
/// Only share a ring read-write with processes you trust to follow the protocol. To be sound
/// whatever other processes do, write through [`copy_from`](Self::copy_from) (atomic stores,
/// what [`Producer::try_push`] and [`Producer::push`] use) and never deref the guard.
///
/// # Across `fork()`
///
/// A guard inherited by a `fork()`ed child is its parent's (the role and the bytes are): in
/// the child it derefs to an empty slice, [`copy_from`](Self::copy_from) copies nothing, and
/// [`commit`](Self::commit) publishes nothing and changes nothing shared.
pub struct WriteGuard<'a> {
    p: &'a mut Producer,
    pl: Placement,
}

impl fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGuard")
            .field("len", &self.pl.len)
            .finish()
    }
}

impl WriteGuard<'_> {
    /// The reserved length in bytes (without forming a slice over shared memory).
    #[inline]
    pub fn len(&self) -> usize {
        self.pl.len as usize
    }

    /// Whether the reservation is empty (a zero-length message).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pl.len == 0
    }

    /// Copy `src` into the start of the reservation with `Relaxed` atomic stores (whole
    /// 8-byte words, bytes at the end), never through a `&mut [u8]`: sound whatever other
    /// processes do to the segment. Copies `min(src.len(), self.len())` bytes and returns
    /// that count; the rest of the reservation keeps what it held. The header store of
    /// [`commit`](Self::commit) (Release) publishes the bytes.
    ///
    /// ```
    /// let ring = shmkit::queue::bytes::Ring::with_capacity(256);
    /// let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    /// let mut w = tx.try_reserve(5).unwrap();
    /// assert_eq!(w.copy_from(b"hello"), 5);
    /// w.commit();
    /// assert_eq!(rx.try_pop().unwrap(), b"hello");
    /// ```
    #[inline]
    pub fn copy_from(&mut self, src: &[u8]) -> usize {
        if self.p.side.is_closed() {
            return 0; // inherited across fork(): the bytes are the parent's
        }
        let n = src.len().min(self.len());
        let at = self.p.data().wrapping_add((self.pl.start + HDR) as usize);
        let padded = (self.pl.len as usize).next_multiple_of(8);
        // SAFETY: [start + 8, start + 8 + round_up(len, 8)) lies inside the ring's data area
        // (the record, 8-aligned, fits before the end) and `n <= len`; the record is ours
        // until committed, and every copy of record bytes is whole-word atomics (only a
        // guard's deref, the caller's choice, is plain), so another process (or thread)
        // copying the same bytes is no data race and no mixed-size race; `src` is a distinct
        // private slice. The whole message: `store_padded` (stores only, zeroes in the
        // padding after it); a part: `store_within`, whose last word keeps the bytes after
        // the part (the caller may have written them through the guard), loaded and stored
        // whole.
        unsafe {
            if n == self.pl.len as usize {
                atomic_copy::store_padded(src.as_ptr(), at, n);
            } else {
                atomic_copy::store_within(at, padded, 0, &src[..n], atomic_copy::Merge::Exclusive);
            }
        }
        n
    }

    /// Publish the message.
    #[inline]
    pub fn commit(self) {
        let len = self.pl.len;
        self.commit_len(len as usize)
    }

    /// Publish only the first `len` bytes (at most the reserved length): reserve the maximum,
    /// write what you have, commit that.
    ///
    /// # Panics
    ///
    /// If `len` is larger than the reservation.
    #[inline(always)] // as `Producer::place`
    pub fn commit_len(self, len: usize) {
        let len = len as u64;
        assert!(
            len <= self.pl.len,
            "commit_len({len}) exceeds the {}-byte reservation",
            self.pl.len
        );
        if self.p.side.is_closed() {
            return; // inherited across fork(): the record and the tail are the parent's
        }
        let p = self.p;
        let ring = &*p.side.q;
        let advance = self.pl.advance - (record_len(self.pl.len) - record_len(len));
        let next = p.tail.wrapping_add(advance);
        // Clear the header word where the next record will start, so that a consumer
        // arriving there finds no header until that record is published: what the word held
        // is at worst a header of the previous lap, never message bytes. When the ring is full
        // after this record, the word is the oldest record's header (a lap behind) and stays.
        // Relaxed: published by the Release header store below.
        // Not needed when `zero_ahead` zeroed the word after an earlier commit and no
        // reservation wrote it since (`clean_from <= next`, `next + 8 <= zeroed`): then the
        // word is already 0 and this record's stores stay in its own lines.
        let zero = !before(next, p.clean_from) && !before(p.zeroed, next.wrapping_add(HDR));
        if !zero && p.cap - next.wrapping_sub(p.head_cache) >= HDR {
            #[cfg(all(test, loom))]
            shadow(ring, next, HDR, true); // as in `zero_ahead`
            word(ring, next).store(0, Ordering::Relaxed);
        }
        // Loom models: the words of the reservation (the guard may have written any of them;
        // the header is stored below), and a wrap record's header.
        #[cfg(all(test, loom))]
        {
            shadow(ring, self.pl.start, record_len(self.pl.len), true);
            if self.pl.wrap {
                shadow(ring, p.tail, HDR, true);
            }
        }
        // Release pairs with the consumer's Acquire load of the header in `Consumer::next`:
        // the message bytes (and the cleared word) written before are visible to it.
        if self.pl.wrap {
            let msg = p.tail.wrapping_add(p.cap - (p.tail & p.mask));
            word(ring, msg).store(header(KIND_MSG, msg, p.shift, len), Ordering::Release);
            // Last: a consumer that sees the wrap then reads the message header above.
            word(ring, p.tail).store(header(KIND_WRAP, p.tail, p.shift, 0), Ordering::Release);
        } else {
            word(ring, p.tail).store(header(KIND_MSG, p.tail, p.shift, len), Ordering::Release);
        }
        p.tail = next;
        let ctrl = ring.ctrl();
        // Release: the tail (read by `len`, blocked consumers and a later producer's attach)
        // is stored after the headers, so seeing it means seeing them.
        ctrl.prod.tail.store(next, Ordering::Release);
        // SYNC POINT (pair A of `sync/park.rs`, waker side): our header stores, the fence in
        // `notify_if_sleepers`, its load of `sleepers`; a parking consumer increments,
        // fences, re-checks the header. No locked access when nobody sleeps.
        ctrl.prod.not_empty.notify_if_sleepers(1);
        // Only after short records: the next record then likely ends in the line after
        // `next`'s. After a long one the words would be overwritten by the next record's bytes
        // before any commit could use them (and zeroing them cost 1 KiB messages 10-15% of
        // their throughput).
        if advance <= ZERO_AHEAD_AFTER {
            p.zero_ahead(next);
        }
    }
}

/// Commits of records up to this many bytes zero ahead ([`Producer::zero_ahead`]).
const ZERO_AHEAD_AFTER: u64 = 128;

/// Whether position `a` comes before position `b` (positions are `u64` counters that wrap;
/// any two this producer compares lie within a few capacities of each other: `place` keeps
/// `zeroed` and `clean_from` at most one record ahead of `tail` or behind it).
#[inline]
fn before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

impl Deref for WriteGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        if self.p.side.is_closed() {
            return &[]; // inherited across fork() (see the type's docs)
        }
        // SAFETY: [start + 8, start + 8 + len) lies inside the ring (record fits before the
        // end) and is owned by the producer until commit (see the type's docs), which is
        // this process (checked above).
        unsafe {
            std::slice::from_raw_parts(
                self.p.data().add((self.pl.start + HDR) as usize),
                self.pl.len as usize,
            )
        }
    }
}

impl DerefMut for WriteGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        if self.p.side.is_closed() {
            return &mut []; // inherited across fork() (see the type's docs)
        }
        // SAFETY: as in `deref`; `&mut self` makes this the only slice handed out.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.p.data().add((self.pl.start + HDR) as usize),
                self.pl.len as usize,
            )
        }
    }
}

/// The header word at absolute position `pos` (8-aligned) of `ring`.
#[inline]
fn word(ring: &RawRing, pos: u64) -> &AtomicU64 {
    let off = pos & ring.mask;
    #[cfg(not(loom))]
    // SAFETY: `off` is an 8-aligned offset below the capacity (positions are multiples of
    // 8), so the word lies inside the data area, which is 128-aligned and lives as long as
    // `ring`; an AtomicU64 is valid for any bytes. Header words are only accessed atomically
    // while they can be read as headers (the protocol orders the plain message accesses of
    // the same bytes in other laps before or after them).
    return unsafe { &*ring.data().add(off as usize).cast::<AtomicU64>() };
    #[cfg(loom)]
    return &ring.region.stamps()[(off / HDR) as usize];
}

/// Loom models: the producer writes (`write`) or the consumer reads the 8-byte words of
/// `[pos, pos + bytes)` (`pos` 8-aligned; `bytes` a multiple of 8, inside the ring): through
/// the region's shadow cells, one per word of the data area (`Region::shadow_write`), so
/// that loom reports an access to a record's bytes that the protocol does not order after
/// the accesses of the previous lap.
#[cfg(all(test, loom))]
fn shadow(ring: &RawRing, pos: u64, bytes: u64, write: bool) {
    for at in (0..bytes).step_by(HDR as usize) {
        let i = (pos.wrapping_add(at) & ring.mask) / HDR;
        if write {
            ring.region.shadow_write(i as usize);
        } else {
            ring.region.shadow_read(i as usize);
        }
    }
}

/// Read (Acquire) and check the header at absolute position `pos`, where at most `room`
/// bytes from `pos` on can hold published records (`capacity - used` for a producer that
/// resumes, `capacity` for the consumer at the head).
#[inline]
fn decode(ring: &RawRing, pos: u64, room: u64) -> Header {
    let shift = ring.capacity.trailing_zeros();
    // Acquire pairs with the Release header stores in `commit_len`: the message bytes (and
    // the header at 0 behind a wrap) written before are visible.
    let h = word(ring, pos).load(Ordering::Acquire);
    if (h >> 32) & LAP_MASK != (pos >> shift) & LAP_MASK {
        return Header::NotReady; // the previous lap's header, or a cleared word
    }
    let mut off = pos & ring.mask;
    let mut skip = 0;
    let mut h = h;
    match h >> 56 {
        KIND_MSG => {}
        KIND_WRAP => {
            if off == 0 || h & 0xffff_ffff != 0 {
                return Header::Corrupt;
            }
            // The message header at offset 0 of the next lap was stored before the wrap.
            // Acquire: as above (its own Release store in `commit_len`).
            skip = ring.capacity - off;
            let at = pos.wrapping_add(skip);
            h = word(ring, at).load(Ordering::Acquire);
            if h != header(KIND_MSG, at, shift, h & 0xffff_ffff) {
                return Header::Corrupt;
            }
            off = 0;
        }
        // A cleared word, in a lap whose low 24 bits are 0.
        0 if h == 0 => return Header::NotReady,
        _ => return Header::Corrupt,
    }
    let len = h & 0xffff_ffff;
    if len > max_message(ring.capacity) {
        return Header::Corrupt;
    }
    let rec = record_len(len);
    if rec > ring.capacity - off || skip + rec > room {
        return Header::Corrupt;
    }
    Header::Record(Record {
        offset: off + HDR,
        len,
        advance: skip + rec,
    })
}

/// The consuming end of a [`Ring`]. `Send`, not `Sync`. Dropping it detaches it: the role is
/// freed for another consumer, the messages stay, and the producer keeps pushing until the
/// ring is full; only [`close`](Self::close) (or the death of this process while it holds
/// the role) makes the producer's calls fail with `Disconnected`.
pub struct Consumer {
    side: Side,
    head: u64,
    cap: u64,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bytes::Consumer")
            .field("head", &self.head)
            .finish()
    }
}

/// A validated record: payload at ring offset `offset`, `len` bytes; the head moves by
/// `advance` (a wrap record's bytes included).
#[derive(Debug, Clone, Copy)]
struct Record {
    offset: u64,
    len: u64,
    advance: u64,
}

impl Consumer {
    /// No record at the head: `Empty` while the producer may still publish; `Corrupt` if the
    /// tail says one was published there; once the producer closed or is found dead, what it
    /// published last (drained first), then `Disconnected`. Out of line, so that the polling
    /// fast path of [`next`](Self::next) stays small.
    #[cold]
    #[inline(never)]
    fn not_ready(&mut self, check_tail: bool) -> Result<Record, TryPopError> {
        let Some(gone) = self.side.look_at_tail(check_tail) else {
            return Err(TryPopError::Empty);
        };
        let ring = &*self.side.q;
        // Acquire pairs with the Release tail store in `commit_len`, made after the headers.
        let tail = ring.ctrl().prod.tail.load(Ordering::Acquire);
        let ahead = tail.wrapping_sub(self.head);
        if ahead % 8 != 0 {
            return Err(TryPopError::Corrupt);
        }
        if ahead != 0 && ahead <= self.cap {
            // Published by the tail, so its header is visible now.
            return match decode(ring, self.head, self.cap) {
                Header::Record(r) => Ok(r),
                _ => Err(TryPopError::Corrupt),
            };
        }
        // `ahead == 0`, or the head passed a tail that a killed producer did not store;
        // anything else is inconsistent.
        if ahead != 0 && self.head.wrapping_sub(tail) > self.cap {
            return Err(TryPopError::Corrupt);
        }
        if !gone {
            return Err(TryPopError::Empty);
        }
        // Closed (Acquire in peer_closed: its last header is visible) or dead: drain first.
        match decode(&self.side.q, self.head, self.cap) {
            Header::Record(r) => Ok(r),
            Header::NotReady => Err(TryPopError::Disconnected),
            Header::Corrupt => Err(TryPopError::Corrupt),
        }
    }

    /// The oldest record, validated; `check_tail`: when there is none, also check the tail
    /// now (see [`not_ready`](Self::not_ready)).
    #[inline(always)] // as `Producer::place`
    fn next(&mut self, check_tail: bool) -> Result<Record, TryPopError> {
        if self.side.is_closed() {
            return Err(TryPopError::Disconnected);
        }
        match decode(&self.side.q, self.head, self.cap) {
            Header::Record(r) => Ok(r),
            Header::NotReady => self.not_ready(check_tail),
            Header::Corrupt => Err(TryPopError::Corrupt),
        }
    }

    /// The oldest message, in place, if there is one. Dropping the guard without
    /// [`release`](ReadGuard::release) leaves the message in the ring.
    #[inline]
    pub fn try_peek(&mut self) -> Result<ReadGuard<'_>, TryPopError> {
        let rec = self.next(false)?;
        Ok(ReadGuard { c: self, rec })
    }

    fn peek_within(&mut self, deadline: Option<Instant>) -> Result<ReadGuard<'_>, PopError> {
        loop {
            match self.next(true).map_err(TryPopError::blocking) {
                Ok(rec) => return Ok(ReadGuard { c: self, rec }),
                Err(Some(e)) => return Err(e),
                Err(None) => {} // empty: wait
            }
            let side = &self.side;
            let (head, cap) = (self.head, self.cap);
            // A header at the head (Acquire, in `decode`); not `tail != head`, which stays
            // true while the head is past a killed producer's stale tail.
            let ready = || !matches!(decode(&side.q, head, cap), Header::NotReady);
            match side.wait(&side.q.ctrl().prod.not_empty, ready, deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PopError::Timeout),
                Wake::Gone(()) => {
                    return match self.next(true) {
                        Ok(rec) => Ok(ReadGuard { c: self, rec }),
                        Err(TryPopError::Corrupt) => Err(PopError::Corrupt),
                        Err(_) => Err(PopError::Disconnected),
                    }
                }
            }
        }
    }

    blocking_forms! {
        /// The oldest message, in place, waiting for one. `Disconnected` once the ring is
        /// empty and the producer closed or is found dead.
        fn peek / peek_timeout / peek_deadline () -> Result<ReadGuard<'_>, PopError>
            = peek_within;
    }

    /// Copy out and release the oldest message, if there is one.
    ///
    /// The copy is made with atomic loads ([`ReadGuard::copy_to`]), never through a `&[u8]`:
    /// sound whatever another process does to the segment (a peer that breaks the protocol
    /// can only make the copy hold bytes it wrote). A message longer than this process can
    /// allocate (a forged header, or a huge one of a sparse ring) is
    /// [`TryPopError::Corrupt`] and stays in the ring (read it in place with
    /// [`try_peek`](Self::try_peek), or in pieces with [`ReadGuard::copy_to`]), as in
    /// mpmc-bytes (`SPEC.md` §7.3).
    #[inline]
    pub fn try_pop(&mut self) -> Result<Vec<u8>, TryPopError> {
        let r = self.try_peek()?;
        let v = r.copy_out().ok_or(TryPopError::Corrupt)?;
        r.release();
        Ok(v)
    }

    fn pop_within(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, PopError> {
        let r = self.peek_within(deadline)?;
        let v = r.copy_out().ok_or(PopError::Corrupt)?;
        r.release();
        Ok(v)
    }

    blocking_forms! {
        /// Copy out and release the oldest message, waiting for one (with atomic loads, as
        /// [`try_pop`](Self::try_pop)).
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{bytes::Ring, PopError};
        /// let ring = Ring::with_capacity(1024);
        /// let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        /// tx.push_timeout(b"x", Duration::from_secs(1)).unwrap();
        /// assert_eq!(rx.pop_deadline(std::time::Instant::now()).unwrap(), b"x");
        /// assert_eq!(rx.pop_timeout(Duration::from_millis(1)), Err(PopError::Timeout));
        /// ```
        fn pop / pop_timeout / pop_deadline () -> Result<Vec<u8>, PopError> = pop_within;
    }

    /// Close the consumer end and free the role: the producer's reservations then fail with
    /// `Disconnected`. What is left stays for the next consumer, whose attach reopens the
    /// end. Dropping the consumer does *not* close it: it only frees the role.
    pub fn close(&mut self) {
        self.side.close()
    }
}

/// The oldest message of the ring, in place; [`release`](Self::release) frees its space,
/// dropping the guard keeps the message for the next peek.
///
/// # The slice and who may write it (shared memory)
///
/// The guard derefs to a `&[u8]` over the mapping itself: zero-copy. The record's position
/// and length were read once from its header (an atomic, Acquire load) and checked to lie
/// inside the ring; nothing read from shared memory later changes them. The contract that
/// makes the `&[u8]` sound:
///
/// - **Nobody writes these bytes until [`release`](Self::release).** The ring's protocol
///   (`SPEC.md` §7.3) guarantees it among processes that follow it: the producer wrote every
///   byte before its Release store of the header that this consumer's Acquire load read, so
///   the slice shows the whole message; and it reserves these bytes again only after this
///   consumer's Release store of `head`, which `release` makes after the guard is gone. The
///   consumer role is exclusive (one owner word).
/// - **What shmkit cannot guarantee:** any process that can open the segment read-write (the
///   mode bits decide who; 0600 by default) can break the protocol: write these bytes
///   directly, forge a record header (a header inside the ring is taken as a message, see
///   [`Ring`]), or forge `head` so that the producer overwrites the message early. Such a
///   write while the guard lives is a data race on memory this process holds a `&[u8]` to,
///   which is undefined behaviour in Rust's model: not merely "you may read garbage" but
///   code that checks a byte and uses it again may act on a value it did not check (the
///   compiler may load it twice, assuming it cannot change). shmkit's own code never reads
///   the message bytes through the slice, so its indices stay checked.
/// - **What a misbehaving peer cannot cause:** it cannot move or resize this slice, point it
///   outside the ring's data area, or make shmkit access memory outside the mapping; a
///   header that fails the checks is `Corrupt`.
///
/// Only share a ring read-write with processes you trust to follow the protocol. To be sound
/// whatever other processes do, read through [`copy_to`](Self::copy_to) (atomic loads, what
/// [`Consumer::try_pop`] and [`Consumer::pop`] use) and never deref the guard: a
/// misbehaving peer can then only make the copy hold bytes it wrote. (A guard type that
/// offered only such copies would be sound against any peer, at the price of every zero-copy
/// use: no `&[u8]` to hand to a parser, a hash or a socket. shmkit offers both: the slice for
/// trusted peers, the copy for the rest.)
///
/// # Across `fork()`
///
/// A guard inherited by a `fork()`ed child is its parent's: in the child it derefs to an
/// empty slice and [`copy_to`](Self::copy_to) copies nothing (the parent may release the
/// record, and the producer overwrite it, while the child reads), and
/// [`release`](Self::release) frees nothing.
pub struct ReadGuard<'a> {
    c: &'a mut Consumer,
    rec: Record,
}

impl fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard")
            .field("len", &self.rec.len)
            .finish()
    }
}

impl ReadGuard<'_> {
    /// The message length in bytes (without forming a slice over shared memory).
    #[inline]
    pub fn len(&self) -> usize {
        self.rec.len as usize
    }

    /// Whether the message is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rec.len == 0
    }

    /// Copy the start of the message into `dst` with `Relaxed` atomic loads (whole 8-byte
    /// words, bytes at the end), never through a `&[u8]`: sound whatever other processes do
    /// to the segment. Copies `min(dst.len(), self.len())` bytes and returns that count.
    ///
    /// ```
    /// let ring = shmkit::queue::bytes::Ring::with_capacity(256);
    /// let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    /// tx.try_push(b"hello").unwrap();
    /// let r = rx.try_peek().unwrap();
    /// let mut buf = [0u8; 16];
    /// let n = r.copy_to(&mut buf);
    /// assert_eq!(&buf[..n], b"hello");
    /// r.release();
    /// ```
    #[inline]
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        if self.c.side.is_closed() {
            return 0; // inherited across fork(): the record is the parent's
        }
        let n = dst.len().min(self.len());
        // SAFETY: `decode` checked that the record, 8-aligned with its bytes padded to whole
        // words, lies inside the ring's data area, which lives as long as the consumer, and
        // `n <= len`; loads are whole-word atomics (`load_padded`, as every copy of record
        // bytes), so another process (or thread) writing the same bytes is no data race and
        // no mixed-size race; `dst` is a distinct private slice. The header's Acquire load in
        // `decode` made the bytes visible.
        unsafe {
            atomic_copy::load_padded(
                self.c.side.q.data().add(self.rec.offset as usize),
                dst.as_mut_ptr(),
                n,
            )
        };
        n
    }

    /// The whole message, copied with [`copy_to`](Self::copy_to); `None` if this process
    /// cannot allocate room for its length (a peer's header: up to `max_message` of a huge
    /// sparse ring, or forged), which is an error for the caller, never an abort.
    fn copy_out(&self) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        v.try_reserve_exact(self.len()).ok()?;
        v.resize(self.len(), 0);
        self.copy_to(&mut v);
        Some(v)
    }

    /// Free the message's space in the ring.
    #[inline]
    pub fn release(self) {
        let c = self.c;
        if c.side.is_closed() {
            return; // inherited across fork(): the head is the parent's
        }
        // Loom models: the words read, the header(s) and the message's bytes.
        #[cfg(all(test, loom))]
        {
            let ring = &*c.side.q;
            shadow(ring, c.head, HDR, false);
            shadow(ring, self.rec.offset - HDR, record_len(self.rec.len), false);
        }
        c.head = c.head.wrapping_add(self.rec.advance);
        let ctrl = c.side.q.ctrl();
        // Release pairs with the producer's Acquire load of head in `Producer::place`: we
        // are done reading the record.
        ctrl.cons.head.store(c.head, Ordering::Release);
        // SYNC POINT (pair A of `sync/park.rs`, waker side): our head store, the fence, the
        // load of `sleepers`; a parking producer increments, fences, re-checks head.
        ctrl.cons.not_full.notify_if_sleepers(1);
    }
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        if self.c.side.is_closed() {
            return &[]; // inherited across fork() (see the type's docs)
        }
        // SAFETY: `decode` checked that [offset, offset + len) lies inside the ring. Through
        // the protocol the record was published (its header was stored with Release after
        // its bytes) and the producer does not write it until we (this process, checked
        // above) release it; a forged header can only point inside the ring (see the type's
        // docs).
        unsafe {
            std::slice::from_raw_parts(
                self.c.side.q.data().add(self.rec.offset as usize),
                self.rec.len as usize,
            )
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Every access the copying calls make to the data area is an aligned 8-byte one, at
    /// every message length and for copies shorter than the record (`copy_from`/`copy_to`
    /// of a part): copies that disagree about where a message ends (a forged header, a
    /// shorter copy) then never meet on one word with two access sizes, a mixed-size race
    /// in Rust's model when a producer and a consumer of one process share the mapping.
    /// (Failed before the padded copies: a message of 37 bytes was stored and loaded with
    /// byte accesses for its last 5 bytes.)
    #[test]
    fn every_copy_of_record_bytes_accesses_whole_words() {
        use crate::os::atomic_copy::trace;
        let ring = Ring::with_capacity(4096);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let (data, cap) = (tx.data() as usize, 4096usize);
        let check = |log: &[(usize, usize)], what: &str| {
            assert!(
                !log.is_empty() || what.contains(" 0 "),
                "{what}: no access traced"
            );
            for &(at, size) in log {
                let off = at.wrapping_sub(data);
                assert!(off < cap, "{what}: outside the data area");
                assert!(
                    size == 8 && off % 8 == 0,
                    "{what}: {size} bytes at data offset {off}"
                );
            }
        };
        for len in 0..=300usize {
            let m: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            trace::start();
            tx.try_push(&m).unwrap();
            check(&trace::stop(), &format!("push of {len} bytes"));
            trace::start();
            let got = rx.try_pop().unwrap();
            check(&trace::stop(), &format!("pop of {len} bytes"));
            assert_eq!(got, m);
            // A part of a reservation, and a part of a message.
            let mut w = tx.try_reserve(len + 5).unwrap();
            trace::start();
            assert_eq!(w.copy_from(&m), len);
            check(&trace::stop(), &format!("copy_from of {len} bytes"));
            w.commit_len(len);
            let r = rx.try_peek().unwrap();
            let mut out = vec![0u8; len / 2 + 1];
            trace::start();
            let n = r.copy_to(&mut out);
            check(&trace::stop(), &format!("copy_to of {n} bytes"));
            assert_eq!(&out[..n], &m[..n]);
            r.release();
        }
    }

    /// The words a producer zeroes ahead (SPEC §7.3) never let a consumer take message bytes
    /// for a header: every reservation is filled with words that are each a valid header of
    /// the current lap for its own position (what a payload could hold by chance), then
    /// committed whole, committed shorter, or dropped, at random lengths across many laps;
    /// the consumer, polling after every step, must receive exactly the committed messages.
    #[test]
    fn zeroed_ahead_words_never_expose_message_bytes_as_headers() {
        let cap = 512;
        let ring = Ring::with_capacity(cap);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let shift = cap.trailing_zeros();
        let mut expect = std::collections::VecDeque::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut id = 0u64;
        for _ in 0..200_000 {
            let r = next();
            if r % 3 == 0 {
                match rx.try_pop() {
                    Ok(m) => assert_eq!(Some(m), expect.pop_front(), "a message out of nowhere"),
                    Err(TryPopError::Empty) => assert!(expect.is_empty(), "a message was lost"),
                    Err(e) => panic!("{e:?}"),
                }
                continue;
            }
            let n = (r >> 8) as usize % 100;
            let tail = tx.tail;
            let Ok(mut w) = tx.try_reserve(n) else {
                continue;
            };
            // Forge: every 8-aligned word of the reservation holds a current-lap header of
            // length 0 for the position it is at.
            let base = w.pl.start + HDR; // ring offset of the payload
            let lap_base = if w.pl.wrap {
                tail.wrapping_add(cap - (tail & (cap - 1)))
            } else {
                tail & !(cap - 1)
            };
            for k in 0..n / 8 {
                let pos = lap_base + base + 8 * k as u64;
                w[8 * k..8 * k + 8].copy_from_slice(&header(KIND_MSG, pos, shift, 0).to_le_bytes());
            }
            match (r >> 16) % 4 {
                0 => {} // abandoned: `w` goes out of scope unpublished
                1 => {
                    let m = (r >> 24) as usize % (n + 1);
                    id += 1;
                    let msg = w[..m].to_vec();
                    w.commit_len(m);
                    expect.push_back(msg);
                }
                _ => {
                    id += 1;
                    let msg = w.to_vec();
                    w.commit();
                    expect.push_back(msg);
                }
            }
        }
        while let Some(m) = expect.pop_front() {
            assert_eq!(rx.try_pop(), Ok(m));
        }
        assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
        assert!(id > 10_000, "only {id} messages were committed");
    }

    /// A review finding (fixed): if `zeroed` were never brought forward when no zero-ahead
    /// runs (records over 128 bytes, or a saturated ring where `zero_ahead` returns early),
    /// after 2^63 bytes `before(zeroed, next + 8)` would flip sign, and a commit would take a
    /// word of old message bytes for "zeroed ahead" and skip its clear. Emulated by setting
    /// `zeroed` where 2^63 - 264 bytes of long records would have left it; one more long
    /// record and an 8-byte one then cross the flip. (It passes because `place` keeps
    /// `zeroed` no lower than `clean_from`.)
    #[test]
    fn a_stale_zeroed_range_is_not_taken_for_a_zero_word() {
        let cap = 512u64;
        let ring = Ring::with_capacity(cap);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let shift = cap.trailing_zeros();
        // Lap 0: two long records ([0, 256) and [256, 512), no zero-ahead after them) whose
        // payload words are valid lap-1 headers of length 0 for their positions.
        for first in [0u64, 256] {
            let mut msg = Vec::new();
            for k in 0..31u64 {
                let pos = cap + first + 8 + 8 * k;
                msg.extend_from_slice(&header(KIND_MSG, pos, shift, 0).to_le_bytes());
            }
            tx.try_push(&msg).unwrap();
            assert_eq!(rx.try_pop().unwrap(), msg);
            if first == 0 {
                tx.zeroed = tx.tail.wrapping_sub((1 << 63) - 264);
            }
        }
        assert_eq!(tx.tail, 512);
        // Lap 1: an 8-byte record [512, 528); the word at 528 holds lap-0 payload bytes.
        tx.try_push(b"12345678").unwrap();
        assert_eq!(rx.try_pop().unwrap(), b"12345678");
        assert_eq!(
            rx.try_pop(),
            Err(TryPopError::Empty),
            "payload bytes taken for a header"
        );
    }

    #[test]
    fn a_producer_resumes_after_a_record_published_without_a_tail_store() {
        let ring = Ring::with_capacity(256);
        let mut rx = ring.consumer().unwrap();
        let ctrl = ring.ring.ctrl();
        {
            let mut tx = ring.producer().unwrap();
            tx.try_push(b"first").unwrap();
            tx.try_push(&[7; 100]).unwrap();
            // As if killed after publishing the second header, before storing tail.
            ctrl.prod.tail.store(16, Ordering::Release);
        }
        assert_eq!(rx.try_pop().unwrap(), b"first");
        {
            // The walk finds the record the tail does not count.
            let mut tx = ring.producer().unwrap();
            assert_eq!(ctrl.prod.tail.load(Ordering::Acquire), 16 + 112);
            tx.try_push(b"third").unwrap();
            // Killed the same way again; this time the consumer reads past the stored tail
            // before the next producer attaches.
            ctrl.prod.tail.store(16 + 112, Ordering::Release);
        }
        assert_eq!(rx.try_pop().unwrap(), [7; 100]);
        assert_eq!(rx.try_pop().unwrap(), b"third");
        // (The dropped producer only detached: empty, not disconnected.)
        assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
        let mut tx = ring.producer().unwrap();
        assert_eq!(ctrl.prod.tail.load(Ordering::Acquire), 16 + 112 + 16);
        tx.try_push(b"fourth").unwrap();
        assert_eq!(rx.try_pop().unwrap(), b"fourth");
    }

    #[test]
    fn two_records_past_the_tail_are_corrupt() {
        // The protocol stores tail at every commit, so at most one record can lie past it.
        let ring = Ring::with_capacity(256);
        {
            let mut tx = ring.producer().unwrap();
            tx.try_push(b"one").unwrap();
            tx.try_push(b"two").unwrap();
            ring.ring.ctrl().prod.tail.store(0, Ordering::Release);
        }
        match ring.producer() {
            Err(AttachError::Segment(crate::Error::Corrupt { .. })) => {}
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// A consumer's `head` forged off the 8-byte grid (but within the capacity) is
    /// `Corrupt` when the producer reloads it, never cached: `zero_ahead` once took it as the
    /// end of the words it zeroes and stored to a misaligned word (an abort in the hostile
    /// writer torture test, seed 11952828139186063158).
    #[test]
    fn a_head_off_the_word_grid_is_corrupt_not_a_misaligned_store() {
        let ring = Ring::with_capacity(256);
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        for _ in 0..4 {
            tx.try_push(&[7; 40]).unwrap(); // 48-byte records: four of them, 192 bytes
        }
        for _ in 0..4 {
            rx.try_pop().unwrap();
        }
        // The consumer released everything (head 192); forge it 6 bytes short, as a
        // hostile writer may at any time.
        ring.ring.ctrl().cons.head.store(186, Ordering::Release);
        let mut results = Vec::new();
        for _ in 0..8 {
            results.push(tx.try_push(&[7; 40]));
        }
        assert!(
            results.contains(&Err(BytesPushError::Corrupt)),
            "the forged head was never reported: {results:?}"
        );
    }

    /// Whatever a hostile writer stores into the consumer's `head` or the producer's `tail`
    /// between a producer's and a consumer's calls (off the word grid, out of range, a little
    /// behind or ahead), every call answers (a message, `Full`, `Empty`, `Corrupt`,
    /// `Disconnected`) without a panic or an access off the word grid. Random runs of pushes
    /// of several lengths (wraps and zero-ahead included), receives and forgeries; this test
    /// runs in debug builds too, where a misaligned atomic access panics. (Aborted so before
    /// the producer's reload of `head` checked its alignment.)
    #[test]
    fn forged_head_and_tail_words_never_panic() {
        crate::forged::seeded(0x9e37_79b9_7f4a_7c15, |mut rng| {
            for _ in 0..300 {
                let ring = Ring::with_capacity(256);
                let mut tx = ring.producer().unwrap();
                let mut rx = ring.consumer().unwrap();
                let ctrl = ring.ring.ctrl();
                for _ in 0..200 {
                    match rng.below(10) {
                        0..=4 => {
                            let _ = tx.try_push(&vec![7; rng.below(60) as usize]);
                        }
                        5..=7 => {
                            let _ = rx.try_pop();
                        }
                        8 => {
                            rng.forge_word(&ctrl.cons.head);
                        }
                        _ => {
                            rng.forge_word(&ctrl.prod.tail);
                        }
                    }
                }
            }
        });
    }

    #[test]
    fn a_blocking_peek_reports_a_tail_with_no_record_behind_it() {
        let ring = Ring::with_capacity(256);
        let _tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        ring.ring.ctrl().prod.tail.store(16, Ordering::Release);
        assert_eq!(rx.peek().map(drop), Err(PopError::Corrupt));
    }

    #[test]
    fn stale_headers_of_the_previous_lap_are_not_messages() {
        // 64 bytes: four 8-byte messages (16-byte records) fill the ring exactly, so the
        // commit of the fourth cannot clear the next header word (the first record's).
        let ring = Ring::with_capacity(64);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        for round in 0..5u8 {
            for i in 0..4u8 {
                tx.try_push(&[round * 4 + i; 8]).unwrap();
            }
            assert_eq!(tx.try_push(&[0; 8]), Err(BytesPushError::Full));
            for i in 0..4u8 {
                assert_eq!(rx.try_pop().unwrap(), [round * 4 + i; 8]);
            }
            assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
        }
    }

    #[test]
    fn a_message_whose_bytes_look_like_a_header_is_only_a_message() {
        // Fill the ring with bytes that are valid headers for every position of the next
        // lap, then push records that start where those bytes were.
        let ring = Ring::with_capacity(128);
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        let shift = 128u64.trailing_zeros();
        let mut forged = Vec::new();
        for pos in (128u64 + 8..256).step_by(8) {
            forged.extend_from_slice(&header(KIND_MSG, pos, shift, 8).to_le_bytes());
        }
        forged.truncate(56);
        tx.try_push(&forged).unwrap(); // record [0, 64)
        assert_eq!(rx.try_pop().unwrap(), forged);
        tx.try_push(&forged).unwrap(); // record [64, 128)
        assert_eq!(rx.try_pop().unwrap(), forged);
        // Lap 1: the consumer polls at 128 + 16 after one short record; nothing is there yet.
        tx.try_push(b"short").unwrap();
        assert_eq!(rx.try_pop().unwrap(), b"short");
        assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    }
}

/// Loom checks the orderings of the header, clear and tail stores. Its header words are
/// atomics apart from the message bytes, so that the polled word never holds message bytes
/// (the clearing invariant, `SPEC.md` §7.3) is checked by the unit tests above instead.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn loom_messages_across_the_wrap() {
        crate::queue::loom_model(|| {
            // 64 bytes: records of 8 + 24 bytes; the third goes to offset 0 of the next lap.
            let ring = Ring::with_capacity(64);
            let mut tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            let h = loom::thread::spawn(move || {
                for i in 0..3u8 {
                    tx.push(&[i; 20]).unwrap();
                }
            });
            for i in 0..3u8 {
                assert_eq!(rx.pop().unwrap(), vec![i; 20]);
            }
            h.join().unwrap();
        });
    }

    /// REVIEW: the zeroed-ahead path (SPEC 7.3) with words that would be taken for headers
    /// if a zero were not visible: the ring starts in lap 1 with every word but the first
    /// holding a lap-1 header of length 0 for its position (old payload bytes, by chance).
    /// The first commit clears 80 and zeroes 88..128 ahead; the second skips its clear of
    /// 96 (zeroed ahead). The consumer must see exactly the two messages, then nothing.
    #[test]
    fn loom_zeroed_ahead_words_are_seen_zero() {
        crate::queue::loom_model(|| {
            let ring = Ring::with_capacity(64);
            let ctrl = ring.ring.ctrl();
            ctrl.prod.tail.store(64, Ordering::Relaxed);
            ctrl.cons.head.store(64, Ordering::Relaxed);
            for off in (8..64).step_by(8) {
                word(&ring.ring, 64 + off)
                    .store(header(KIND_MSG, 64 + off, 6, 0), Ordering::Relaxed);
            }
            let mut tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            let h = loom::thread::spawn(move || {
                tx.push(&[1; 8]).unwrap();
                tx.push(&[2; 8]).unwrap();
            });
            assert_eq!(rx.pop().unwrap(), vec![1; 8]);
            assert_eq!(rx.pop().unwrap(), vec![2; 8]);
            // (Disconnected: under loom the ended thread's detached producer counts as gone.)
            let r = rx.try_pop();
            assert!(
                matches!(r, Err(TryPopError::Empty | TryPopError::Disconnected)),
                "{r:?}"
            );
            h.join().unwrap();
        });
    }

    #[test]
    fn loom_a_wrap_record_and_a_full_ring() {
        crate::queue::loom_model(|| {
            // 64 bytes: 16 + 32 bytes, then a 32-byte record that does not fit before the
            // end goes behind a WRAP record at 48, to offset 0 of the next lap; the 8-byte
            // messages after it fill the ring exactly while the consumer reads.
            let ring = Ring::with_capacity(64);
            let mut tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            let sizes = [8usize, 20, 20, 8];
            let h = loom::thread::spawn(move || {
                for (i, n) in sizes.iter().enumerate() {
                    tx.push(&vec![i as u8; *n]).unwrap();
                }
            });
            for (i, n) in sizes.iter().enumerate() {
                assert_eq!(rx.pop().unwrap(), vec![i as u8; *n]);
            }
            h.join().unwrap();
        });
    }

    /// A producer killed after publishing a record's header and before its tail store, its
    /// role still held: a new producer takes the role over (`RoleSlot::claim` steals from
    /// the dead token; `Ring::producer` resumes after the record past the stored tail, or
    /// at `head` if the consumer already read past it) while the consumer polls. The
    /// consumer receives the dead producer's message, then the new one's (the shadow cells
    /// make an overwrite of the first record a loom data race). `Disconnected` is allowed
    /// while the dead holder still holds the role.
    #[test]
    fn loom_a_dead_producers_role_is_taken_over_after_a_record_past_the_tail() {
        crate::queue::loom_model(|| {
            let ring = std::sync::Arc::new(Ring::with_capacity(64));
            let mut rx = ring.consumer().unwrap();
            let ctrl = ring.ring.ctrl();
            {
                let mut tx = ring.producer().unwrap();
                tx.try_push(b"dead").unwrap();
            }
            // As if killed after publishing the header, before storing tail.
            ctrl.prod.tail.store(0, Ordering::Release);
            ctrl.geo
                .producer
                .claim(crate::queue::role::LOOM_DEAD)
                .unwrap();
            let r2 = std::sync::Arc::clone(&ring);
            let h = loom::thread::spawn(move || {
                let mut tx = r2.producer().expect("the role of a dead producer");
                tx.try_push(b"new").unwrap();
                tx
            });
            crate::queue::loom_pop_each(|| rx.try_pop(), [b"dead".to_vec(), b"new".to_vec()]);
            drop(h.join().unwrap());
        });
    }
}
