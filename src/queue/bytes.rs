//! [`Ring`]: a single-producer single-consumer ring of variable-length byte messages,
//! zero-copy on both sides.
//!
//! The producer [`reserve`](Producer::try_reserve)s `n` contiguous bytes inside the ring,
//! writes them in place and [`commit`](WriteGuard::commit)s; the consumer
//! [`peek`](Consumer::try_peek)s at the oldest message in place and
//! [`release`](ReadGuard::release)s it. Messages are 8-byte aligned records
//! (`SPEC.md` §7.3): an 8-byte header (length, tag) and the bytes, padded to 8. A message
//! that would cross the ring's end is placed at its start instead, behind a *wrap* record, so
//! every message is contiguous; that is why a message may be at most
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
use std::time::Duration;

use super::error::{AttachError, PopError, Role, TryPopError};
use super::ring::{Expect, Ring as RawRing, Side, Wake};
use super::stat::{QueueStat, Stat};
use crate::loom::Ordering;
use crate::segment::fingerprint;
use crate::Kind;

/// Tag of a message record header (high 32 bits): ASCII `MSG1`.
pub(crate) const TAG_MSG: u32 = u32::from_le_bytes(*b"MSG1");
/// Tag of a wrap record: the rest of the ring up to its end is unused; the next record is at
/// offset 0. ASCII `WRAP`.
pub(crate) const TAG_WRAP: u32 = u32::from_le_bytes(*b"WRAP");
/// Record header size.
const HDR: u64 = 8;
/// Smallest ring capacity in bytes.
pub const MIN_CAPACITY: u64 = 64;

/// Layout fingerprint of the bytes ring.
pub const LAYOUT_FINGERPRINT: u64 =
    fingerprint(b"shmkit bytes-ring v1: records [u32 len, u32 tag], 8-aligned");

#[cfg_attr(loom, allow(dead_code))]
const EXPECT: Expect = Expect {
    kind: Kind::BYTES_RING,
    fingerprint: LAYOUT_FINGERPRINT,
    elem_size: Some(1),
    min_capacity: MIN_CAPACITY,
};

/// Largest message length the 32-bit length field of a record header holds, kept 8-aligned:
/// `2^32 - 8` bytes.
pub const MAX_MESSAGE_LEN: u64 = (u32::MAX as u64) & !7;

/// Largest message a ring of `capacity` bytes accepts: `capacity / 2 - 8`, and at most
/// [`MAX_MESSAGE_LEN`] (a record header stores the length in 32 bits). Any message up to this
/// size fits once the ring drains, wherever the producer's position is.
///
/// ```
/// use shmkit::queue::bytes::{max_message, MAX_MESSAGE_LEN};
/// assert_eq!(max_message(256 * 1024), 128 * 1024 - 8);
/// assert_eq!(max_message(1 << 40), MAX_MESSAGE_LEN);
/// ```
pub const fn max_message(capacity: u64) -> u64 {
    let m = capacity / 2 - HDR;
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

/// Why a reservation (or a send) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveError {
    /// Not enough free space now (`try_` calls only).
    Full,
    /// Not enough free space before the timeout.
    Timeout,
    /// The message is longer than [`max_message`] of this ring.
    TooLarge {
        /// The requested length.
        len: u64,
        /// The ring's maximum.
        max: u64,
    },
    /// The consumer closed its end or died.
    Disconnected,
    /// The ring's indices in shared memory are inconsistent.
    Corrupt,
}

impl fmt::Display for ReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReserveError::Full => f.write_str("the ring is full"),
            ReserveError::Timeout => f.write_str("timed out: the ring stayed full"),
            ReserveError::TooLarge { len, max } => write!(
                f,
                "a {len}-byte message exceeds this ring's maximum of {max}"
            ),
            ReserveError::Disconnected => f.write_str("the ring's consumer closed it or died"),
            ReserveError::Corrupt => {
                f.write_str("the ring's state in shared memory is inconsistent")
            }
        }
    }
}

impl std::error::Error for ReserveError {}

/// A variable-length byte-message ring in a named segment (or on the heap, from
/// [`with_capacity`](Self::with_capacity)); attach one [`Producer`] and one [`Consumer`].
///
/// # Shared memory is shared
///
/// Every header and index the consumer reads is read once and checked (tag, length at most
/// [`max_message`], record inside the ring and inside the published range); a violation is
/// reported as `Corrupt`, never an out-of-bounds access or a hang. The guards hand out slices
/// over the mapping itself (see [`WriteGuard`] and [`ReadGuard`]).
pub struct Ring {
    ring: Arc<RawRing>,
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
    /// Create the named ring with `capacity` bytes (a power of two, at least 64).
    #[cfg(not(loom))]
    pub fn create(name: &str, capacity: u64) -> crate::Result<Self> {
        Ok(Ring {
            ring: Arc::new(RawRing::create(name, EXPECT, capacity, 8, false)?),
        })
    }

    /// Open the named ring.
    #[cfg(not(loom))]
    pub fn open(name: &str) -> crate::Result<Self> {
        Ok(Ring {
            ring: Arc::new(RawRing::open(name, EXPECT)?),
        })
    }

    /// Open the named ring, or create it with `capacity` bytes (an existing ring must have this
    /// capacity).
    #[cfg(not(loom))]
    pub fn open_or_create(name: &str, capacity: u64) -> crate::Result<Self> {
        Ok(Ring {
            ring: Arc::new(RawRing::create(name, EXPECT, capacity, 8, true)?),
        })
    }

    /// A ring on this process's heap.
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two in `64..=2^40`.
    pub fn with_capacity(capacity: u64) -> Self {
        super::ring::check_capacity("(private)", capacity, MIN_CAPACITY).expect("capacity");
        Ring {
            ring: Arc::new(RawRing::heap(capacity, 1, 8)),
        }
    }

    /// Attach as the producer.
    pub fn producer(&self) -> Result<Producer, AttachError> {
        let side = Side::attach(Arc::clone(&self.ring), Role::Producer)?;
        let ctrl = self.ring.ctrl();
        // Acquire: pairs with the Release stores of the previous producer (tail) and of the
        // consumer (head).
        let tail = ctrl.prod.tail.load(Ordering::Acquire);
        let head = ctrl.cons.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.ring.capacity || tail % 8 != 0 {
            return Err(
                crate::Error::corrupt(self.name(), format!("tail {tail}, head {head}")).into(),
            );
        }
        Ok(Producer {
            side,
            tail,
            head_cache: head,
            cap: self.ring.capacity,
            mask: self.ring.mask,
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
            tail_cache: head,
            cap: self.ring.capacity,
            mask: self.ring.mask,
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
        Stat::ring(&self.ring, "bytes")
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
    Other(ReserveError),
}

/// The producing end of a [`Ring`]. `Send`, not `Sync`. Dropping it closes the producer end.
pub struct Producer {
    side: Side,
    tail: u64,
    head_cache: u64,
    cap: u64,
    mask: u64,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bytes::Producer")
            .field("tail", &self.tail)
            .finish()
    }
}

impl Producer {
    #[inline]
    fn place(&mut self, n: u64) -> Result<Placement, Fail> {
        if self.side.is_closed() || self.side.peer_closed() {
            return Err(Fail::Other(ReserveError::Disconnected));
        }
        let max = max_message(self.cap);
        if n > max {
            return Err(Fail::Other(ReserveError::TooLarge { len: n, max }));
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
            let head = self.side.ring.ctrl().cons.head.load(Ordering::Acquire);
            let used = self.tail.wrapping_sub(head);
            if used > self.cap {
                return Err(Fail::Other(ReserveError::Corrupt));
            }
            self.head_cache = head;
            free = self.cap - used;
            if free < advance {
                if self.side.peer_gone() {
                    return Err(Fail::Other(ReserveError::Disconnected));
                }
                return Err(Fail::Full(advance));
            }
        }
        Ok(Placement {
            start,
            advance,
            wrap,
            len: n,
        })
    }

    /// Reserve `n` contiguous bytes for one message, if there is room now.
    #[inline]
    pub fn try_reserve(&mut self, n: usize) -> Result<WriteGuard<'_>, ReserveError> {
        match self.place(n as u64) {
            Ok(pl) => Ok(WriteGuard { p: self, pl }),
            Err(Fail::Full(_)) => Err(ReserveError::Full),
            Err(Fail::Other(e)) => Err(e),
        }
    }

    /// Reserve `n` contiguous bytes, waiting up to `timeout` (`None`: no limit) for room.
    /// `Disconnected` once the consumer closes or is found dead; never hangs on a dead peer.
    pub fn reserve(
        &mut self,
        n: usize,
        timeout: Option<Duration>,
    ) -> Result<WriteGuard<'_>, ReserveError> {
        let deadline = crate::sync::deadline_after(timeout);
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
                    .wrapping_sub(side.ring.ctrl().cons.head.load(Ordering::Acquire))
                    .min(cap)
                    >= need
            };
            match side.wait(&side.ring.ctrl().cons.not_full, ready, deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(ReserveError::Timeout),
                Wake::PeerDead => return Err(ReserveError::Disconnected),
            }
        }
    }

    /// Copy `msg` in as one message, if there is room now.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), ReserveError> {
        let mut w = self.try_reserve(msg.len())?;
        w.copy_from_slice(msg);
        w.commit();
        Ok(())
    }

    /// Copy `msg` in as one message, waiting up to `timeout` for room.
    ///
    /// ```
    /// use shmkit::queue::bytes::Ring;
    /// let ring = Ring::with_capacity(1024);
    /// let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    /// tx.send(b"abc", None).unwrap();
    /// assert_eq!(rx.recv(None).unwrap(), b"abc");
    /// ```
    pub fn send(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<(), ReserveError> {
        let mut w = self.reserve(msg.len(), timeout)?;
        w.copy_from_slice(msg);
        w.commit();
        Ok(())
    }

    /// Close the producer end: the consumer drains what is left, then gets `Disconnected`.
    pub fn close(&mut self) {
        self.side.close()
    }

    /// Largest message this ring accepts.
    pub fn max_message(&self) -> u64 {
        max_message(self.cap)
    }

    #[inline]
    fn data(&self) -> *mut u8 {
        self.side.ring.data()
    }
}

/// `n` bytes reserved in the ring for one message, written in place; [`commit`](Self::commit)
/// publishes them, dropping the guard abandons them (nothing is published).
///
/// # Safety of the slice (shared memory)
///
/// The guard derefs to a `&mut [u8]` over the mapping itself. Through the ring's protocol the
/// range is owned by the producer until it commits: the consumer reads only published
/// records. A *hostile* process that maps the segment can still write these bytes at any
/// time; what it does cannot break this process's memory safety beyond the bytes it changes
/// (they are plain `u8`), but do not rely on the bytes staying as written if untrusted
/// processes can open the name.
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
    #[inline]
    pub fn commit_len(self, len: usize) {
        let len = len as u64;
        assert!(
            len <= self.pl.len,
            "commit_len({len}) exceeds the {}-byte reservation",
            self.pl.len
        );
        let p = self.p;
        let data = p.data();
        let pos = p.tail & p.mask;
        let advance = self.pl.advance - (record_len(self.pl.len) - record_len(len));
        // SAFETY: `pos` and `start` are 8-aligned offsets inside the ring owned by the producer
        // (the placement checked the free space); the data area is 128-aligned.
        unsafe {
            if self.pl.wrap {
                data.add(pos as usize)
                    .cast::<u64>()
                    .write(u64::from(TAG_WRAP) << 32);
            }
            data.add(self.pl.start as usize)
                .cast::<u64>()
                .write((u64::from(TAG_MSG) << 32) | len);
        }
        p.tail = p.tail.wrapping_add(advance);
        let ctrl = p.side.ring.ctrl();
        // Release pairs with the consumer's Acquire load of tail in `Consumer::next`: the
        // record headers and message bytes written before are visible to it.
        ctrl.prod.tail.store(p.tail, Ordering::Release);
        ctrl.prod.not_empty.notify_one();
    }
}

impl Deref for WriteGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: [start + 8, start + 8 + len) lies inside the ring (record fits before the
        // end) and is owned by the producer until commit (see the type's docs).
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
        // SAFETY: as in `deref`; `&mut self` makes this the only slice handed out.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.p.data().add((self.pl.start + HDR) as usize),
                self.pl.len as usize,
            )
        }
    }
}

/// The consuming end of a [`Ring`]. `Send`, not `Sync`. Dropping it closes the consumer end.
pub struct Consumer {
    side: Side,
    head: u64,
    tail_cache: u64,
    cap: u64,
    mask: u64,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bytes::Consumer")
            .field("head", &self.head)
            .finish()
    }
}

/// A validated record: payload at ring offset `offset`, `len` bytes, head advance.
#[derive(Debug, Clone, Copy)]
struct Record {
    offset: u64,
    len: u64,
    advance: u64,
}

impl Consumer {
    #[inline]
    fn refresh(&mut self) -> Result<u64, TryPopError> {
        // Acquire pairs with the producer's Release store of tail in `commit_len`.
        let tail = self.side.ring.ctrl().prod.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(self.head);
        if n > self.cap || n % 8 != 0 {
            return Err(TryPopError::Corrupt);
        }
        self.tail_cache = tail;
        Ok(n)
    }

    #[inline]
    fn read_header(&self, pos: u64) -> (u32, u64) {
        // SAFETY: `pos` is an 8-aligned offset below the capacity (masked, head is 8-aligned);
        // the header is inside the published range (checked by the callers). Volatile: the
        // word is read exactly once and the checked copy used.
        let h = unsafe {
            self.side
                .ring
                .data()
                .add(pos as usize)
                .cast::<u64>()
                .read_volatile()
        };
        ((h >> 32) as u32, h & 0xffff_ffff)
    }

    /// The ring looked empty: `Empty` while the producer may still publish; once it closed
    /// or is found dead, what it published last (drained first), then `Disconnected`. Kept out
    /// of line so the polling fast path of [`next`](Self::next) stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn empty(&mut self) -> Result<u64, TryPopError> {
        if !self.side.peer_gone() {
            return Err(TryPopError::Empty);
        }
        // Closed (Acquire) or dead: a reload sees the final tail; drain first.
        match self.refresh()? {
            0 => Err(TryPopError::Disconnected),
            n => Ok(n),
        }
    }

    /// The oldest record, validated.
    #[inline]
    fn next(&mut self) -> Result<Record, TryPopError> {
        if self.side.is_closed() {
            return Err(TryPopError::Disconnected);
        }
        let mut avail = self.tail_cache.wrapping_sub(self.head);
        if avail == 0 {
            avail = self.refresh()?;
            if avail == 0 {
                avail = self.empty()?;
            }
        }
        let mut pos = self.head & self.mask;
        let mut skip = 0;
        let (mut tag, mut len) = self.read_header(pos);
        if tag == TAG_WRAP {
            skip = self.cap - pos;
            if skip + HDR > avail {
                return Err(TryPopError::Corrupt);
            }
            pos = 0;
            (tag, len) = self.read_header(0);
        }
        if tag != TAG_MSG || len > max_message(self.cap) {
            return Err(TryPopError::Corrupt);
        }
        let rec = record_len(len);
        if rec > self.cap - pos || skip + rec > avail {
            return Err(TryPopError::Corrupt);
        }
        Ok(Record {
            offset: pos + HDR,
            len,
            advance: skip + rec,
        })
    }

    /// The oldest message, in place, if there is one. Dropping the guard without
    /// [`release`](ReadGuard::release) leaves the message in the ring.
    #[inline]
    pub fn try_peek(&mut self) -> Result<ReadGuard<'_>, TryPopError> {
        let rec = self.next()?;
        Ok(ReadGuard { c: self, rec })
    }

    /// The oldest message, waiting up to `timeout` (`None`: no limit). `Disconnected` once
    /// the ring is empty and the producer closed or is found dead.
    pub fn peek(&mut self, timeout: Option<Duration>) -> Result<ReadGuard<'_>, PopError> {
        let deadline = crate::sync::deadline_after(timeout);
        loop {
            match self.next() {
                Ok(rec) => return Ok(ReadGuard { c: self, rec }),
                Err(TryPopError::Empty) => {}
                Err(e) => return Err(e.into()),
            }
            let side = &self.side;
            let head = self.head;
            // Acquire: as in `refresh`.
            let ready = || side.ring.ctrl().prod.tail.load(Ordering::Acquire) != head;
            match side.wait(&side.ring.ctrl().prod.not_empty, ready, deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PopError::Timeout),
                Wake::PeerDead => {
                    return match self.next() {
                        Ok(rec) => Ok(ReadGuard { c: self, rec }),
                        Err(TryPopError::Corrupt) => Err(PopError::Corrupt),
                        Err(_) => Err(PopError::Disconnected),
                    }
                }
            }
        }
    }

    /// Copy out and release the oldest message, if there is one.
    #[inline]
    pub fn try_recv(&mut self) -> Result<Vec<u8>, TryPopError> {
        let r = self.try_peek()?;
        let v = r.to_vec();
        r.release();
        Ok(v)
    }

    /// Copy out and release the oldest message, waiting up to `timeout`.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Vec<u8>, PopError> {
        let r = self.peek(timeout)?;
        let v = r.to_vec();
        r.release();
        Ok(v)
    }

    /// Close the consumer end: the producer's reservations then fail with `Disconnected`.
    pub fn close(&mut self) {
        self.side.close()
    }
}

/// The oldest message of the ring, in place; [`release`](Self::release) frees its space,
/// dropping the guard keeps the message for the next peek.
///
/// # Safety of the slice (shared memory)
///
/// The guard derefs to a `&[u8]` over the mapping itself. Through the ring's protocol the
/// published record is owned by the consumer until it releases it: the producer does not
/// write it. A *hostile* process that maps the segment could still change these bytes while
/// you read them (you may see garbage, never memory outside the ring); the header that gave
/// the length was read once and checked, so the slice's bounds cannot be changed under you.
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
    /// Free the message's space in the ring.
    #[inline]
    pub fn release(self) {
        let c = self.c;
        c.head = c.head.wrapping_add(self.rec.advance);
        let ctrl = c.side.ring.ctrl();
        // Release pairs with the producer's Acquire load of head in `Producer::place`: we
        // are done reading the record.
        ctrl.cons.head.store(c.head, Ordering::Release);
        ctrl.cons.not_full.notify_one();
    }
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `next` checked that [offset, offset + len) lies inside the ring and inside
        // the published range, which the producer does not write until we release it.
        unsafe {
            std::slice::from_raw_parts(
                self.c.side.ring.data().add(self.rec.offset as usize),
                self.rec.len as usize,
            )
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn loom_messages_across_the_wrap() {
        crate::queue::loom_model(|| {
            // 64 bytes: records of 8 + 24 bytes; the third message wraps to offset 0.
            let ring = Ring::with_capacity(64);
            let mut tx = ring.producer().unwrap();
            let mut rx = ring.consumer().unwrap();
            let h = loom::thread::spawn(move || {
                for i in 0..3u8 {
                    tx.send(&[i; 20], None).unwrap();
                }
            });
            for i in 0..3u8 {
                assert_eq!(rx.recv(None).unwrap(), vec![i; 20]);
            }
            h.join().unwrap();
        });
    }
}
