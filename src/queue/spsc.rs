//! [`Queue`]: a bounded single-producer single-consumer queue of `T` in shared memory.
//!
//! The ring (`SPEC.md` §7.2, layout v4) is a power-of-two array of slots, each holding an
//! element and, beside it, a 64-bit *stamp*: the producer writes the element, then stores
//! `stamp = position + 1` (Release); the consumer polls the stamp at its head (Acquire). An
//! element of up to 56 bytes and its stamp share one cache line, so in steady state a message
//! crosses from one core to the other in one line transfer. Two monotonic counters on
//! separate cache lines, `tail` (written by the producer after the stamps) and `head`
//! (written by the consumer), serve the length, batches, blocking and the producer's check
//! for room; each end keeps a private copy of the other's counter and refreshes it only when
//! the ring looks full (producer) or a batch wants more (consumer), as rtrb does.
//!
//! Nobody sleeping costs the other side nothing locked: a push or pop loads the `sleepers`
//! count of the peer's wait queue, on its own cache line, after a `SeqCst` fence, and makes
//! the futex notify (a read-modify-write) only when the peer parked (`WaitQueue`'s
//! conditional notify, `sync/park.rs` pair A).
//!
//! Elements can be written and read in place through [`WriteGuard`] and [`ReadGuard`]
//! ([`Producer::try_reserve`], [`Consumer::try_peek`]), so a large element need not be copied
//! through a `Result`.
//!
//! ```
//! use shmkit::queue::spsc::Queue;
//! # let name = format!("doc-spsc-{}", std::process::id());
//! let q = Queue::<u64>::create(&name, 1024)?;
//! q.set_unlink_on_drop(true);
//! let mut tx = q.producer()?; // another process would `Queue::<u64>::open(&name)?.producer()`
//! let mut rx = q.consumer()?;
//! tx.try_push(7).unwrap();
//! assert_eq!(rx.try_pop(), Ok(7));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use super::endpoint::Wake;
#[cfg(not(loom))]
use super::error::{check_len, RawError};
use super::error::{AttachError, PopError, PushError, Role, TryPopError, TryPushError};
#[cfg(not(loom))]
use super::forms::raw_queue_basics;
use super::forms::{fixed_queue_accessors, queue_constructors};
use super::geometry::{check_capacity, check_type};
#[cfg(not(loom))]
use super::options::{self, How};
use super::ring_control::{Expect, RingShared as Ring, Side};
use super::stat::Stat;
#[cfg(not(loom))]
use super::RawLayout;
use super::{ElemLayout, Element, ShmType, TypeId, TypedLayout};
use crate::loom::{AtomicU64, Ordering};
use crate::os::deadline::blocking_forms;
use crate::segment::fingerprint;
use crate::Kind;

/// Layout fingerprint of an SPSC queue of `T` (layout v4: each slot holds its element and
/// then its stamp; the element type's name, size and alignment are part of it).
///
/// ```
/// use shmkit::queue::spsc::layout_fingerprint;
/// assert_ne!(layout_fingerprint::<u64>(), layout_fingerprint::<f64>());
/// ```
pub fn layout_fingerprint<T: ShmType>() -> u64 {
    fingerprint_of(&TypeId::of::<T>())
}

/// [`layout_fingerprint`] of a recorded element type.
pub(crate) fn fingerprint_of(t: &TypeId) -> u64 {
    fingerprint(
        format!(
            "shmkit spsc v4 type={} size={} align={} slot=[elem,stamp]",
            t.name, t.size, t.align
        )
        .as_bytes(),
    )
}

/// Bytes per slot for `elem_size`-byte elements: the element at offset 0, its stamp at
/// [`stamp_offset`]. A power of two up to 128 bytes (so a slot of up to 64 bytes never
/// straddles a cache line), a multiple of 128 above; either way a multiple of the alignment
/// of any type of that size (at most 128), so every element is aligned.
pub(crate) const fn slot_size(elem_size: u64) -> u64 {
    let z = stamp_offset(elem_size) + 8;
    if z <= 128 {
        z.next_power_of_two()
    } else {
        z.next_multiple_of(128)
    }
}

/// Offset of a slot's stamp: right after the element, rounded up to 8.
const fn stamp_offset(elem_size: u64) -> u64 {
    elem_size.next_multiple_of(8)
}

/// What an open expects: an SPSC ring of the layout `fingerprint`, of `elem_size`-byte
/// elements (`None`: any), recording `type_name` if it creates one.
#[cfg_attr(loom, allow(dead_code))]
fn expect(fingerprint: u64, elem_size: Option<u64>, type_name: Option<&str>) -> Expect<'_> {
    Expect {
        kind: Kind::SPSC_QUEUE,
        fingerprint,
        elem_size,
        min_capacity: 2,
        slot_size,
        type_name,
    }
}

#[cfg_attr(loom, allow(dead_code))]
fn expect_type<T: ShmType>() -> Expect<'static> {
    let size = std::mem::size_of::<T>() as u64;
    expect(layout_fingerprint::<T>(), Some(size), Some(T::TYPE_NAME))
}

/// The element of position `pos`'s slot, for elements of `lay`'s size.
#[inline]
fn elem<L: ElemLayout>(ring: &Ring, lay: L, pos: u64) -> *mut u8 {
    let z = slot_size(lay.size() as u64);
    // SAFETY: `pos & mask < capacity`, and the data area holds `capacity` slots of
    // `slot_size(elem_size)` bytes (validated at open, or allocated so; `lay` has that
    // element size: `Queue::wrap`, `RawQueue::wrap`); the area is 128-aligned and a slot size
    // is a multiple of the alignment of any type of that size (see `slot_size`).
    unsafe { ring.data().add(((pos & ring.mask) * z) as usize) }
}

/// [`elem`] of a typed queue, as a `*mut T`.
#[inline(always)]
fn elem_of<T>(ring: &Ring, pos: u64) -> *mut T {
    elem(ring, TypedLayout::<T>::NEW, pos).cast()
}

/// The stamp of position `pos`'s slot, for elements of `lay`'s size.
#[inline]
fn stamp<L: ElemLayout>(ring: &Ring, lay: L, pos: u64) -> &AtomicU64 {
    let i = pos & ring.mask;
    #[cfg(not(loom))]
    // SAFETY: slot `i < capacity` lies inside the data area (see `elem`); its stamp is
    // 8 bytes at an 8-aligned offset before the slot's end, only ever accessed as this atomic
    // (element accesses cover the element's bytes before it); any bits are a valid u64.
    return unsafe {
        let z = slot_size(lay.size() as u64);
        let off = i * z + stamp_offset(lay.size() as u64);
        &*ring.data().add(off as usize).cast::<AtomicU64>()
    };
    // Loom atomics cannot live in raw memory: the region's separate words stand in (the
    // layout, which sizes the slot, does not place them).
    #[cfg(loom)]
    let _ = lay;
    #[cfg(loom)]
    return &ring.region.stamps()[i as usize];
}

/// Whether position `pos` is published: its slot's stamp is `pos + 1`.
#[inline]
fn published<L: ElemLayout>(ring: &Ring, lay: L, pos: u64) -> bool {
    // Acquire pairs with the producer's Release stamp store in `ProdEnd::publish`: the
    // element bytes written before it are visible.
    stamp(ring, lay, pos).load(Ordering::Acquire) == pos.wrapping_add(1)
}

/// A bounded SPSC queue of `T` living in a named shared-memory segment (or, from
/// [`with_capacity`](Self::with_capacity), on this process's heap).
///
/// `Queue` is the attachment to the segment; push through its one [`Producer`] and pop
/// through its one [`Consumer`]. A second producer (or consumer) anywhere on the machine is
/// refused with [`AttachError::Busy`] until the holder drops its handle, closes it, or dies.
///
/// Dropping a handle *detaches* it: the role is freed for the next producer (or consumer) of
/// any process and nothing else changes, so the queue keeps its elements while producers and
/// consumers come and go. Only [`Producer::close`] / [`Consumer::close`] shut an end (the
/// peer drains, then gets `Disconnected`); so does the death of the process holding the
/// role. A consumer whose producer detached (or that has none yet) sees an empty queue:
/// `try_pop` says `Empty`, `pop` waits for a new producer until its timeout (`SPEC.md`
/// §7.1.3).
///
/// `T` is plain data (zerocopy's `FromBytes + IntoBytes + Immutable`): every byte pattern is
/// a valid `T`, so a value read from memory another process wrote is always a valid value.
///
/// # Shared memory is shared
///
/// Any process that can open the name can write the ring. The indices are read once per
/// refresh, checked (`0 <= tail - head <= capacity`) and a violation reported as `Corrupt`;
/// slot positions are masked, so no access leaves the data area. A forged stamp is taken for
/// a message (a process that can write the segment can change any message anyway). A hostile
/// writer can still change element bytes while they are copied (the copy may then hold
/// garbage, never an invalid `T`): the copying calls (`push`, `pop`, the batches) access the
/// slots only with whole-word atomics (`SPEC.md` §1, byte copies), so even a forged stamp that
/// sends this process's consumer over a slot its producer is writing (both with copying
/// calls) is no data race. The in-place guards hand out references to the slot and have a
/// stricter contract ([`WriteGuard`], [`ReadGuard`]): with a peer that may break the
/// protocol, use the copying calls on both sides.
pub struct Queue<T> {
    ring: Arc<Ring>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::Queue")
            .field("name", &self.ring.region.name())
            .field("capacity", &self.ring.capacity)
            .field("len", &self.ring.len())
            .finish()
    }
}

impl<T: Element> Queue<T> {
    queue_constructors! {
        what: "queue", capacity: "slots (a power of two, at least 2)",
        ///
        /// ```
        /// use shmkit::queue::spsc::Queue;
        /// # let name = format!("doc-spsc-options-{}", std::process::id());
        /// let q = Queue::<u64>::options().mode(0o660).unlink_on_drop(true).create(&name, 64)?;
        /// assert_eq!(q.capacity(), 64);
        /// # Ok::<(), shmkit::Error>(())
        /// ```
        options;
        /// It must hold elements of type `T` (its [`TYPE_NAME`](ShmType::TYPE_NAME), size and
        /// alignment), or the open fails with [`Error::TypeMismatch`](crate::Error::TypeMismatch)
        /// naming both types.
        ///
        /// ```
        /// use shmkit::queue::spsc::Queue;
        /// # let name = format!("doc-spsc-open-{}", std::process::id());
        /// let a = Queue::<u32>::create(&name, 8)?;
        /// a.set_unlink_on_drop(true);
        /// let b = Queue::<u32>::open(&name)?;
        /// assert_eq!(b.capacity(), 8);
        /// assert!(Queue::<u64>::open(&name).is_err()); // another element size
        /// assert!(Queue::<f32>::open(&name).is_err()); // another type of the same size
        /// # Ok::<(), shmkit::Error>(())
        /// ```
        open;
    }

    /// A queue on this process's heap, for threads of one process (and tests).
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two in `2..=2^40`, or `T` is zero-sized.
    ///
    /// ```
    /// let q = shmkit::queue::spsc::Queue::<u8>::with_capacity(4);
    /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    /// assert_eq!(tx.try_push_slice(&[1, 2, 3, 4, 5]), Ok(4));
    /// let mut out = [0; 8];
    /// assert_eq!(rx.try_pop_slice(&mut out), Ok(4));
    /// assert_eq!(out[..4], [1, 2, 3, 4]);
    /// ```
    pub fn with_capacity(capacity: u64) -> Self {
        check_type::<T>("(private)").expect("element type");
        check_capacity("(private)", capacity, 2).expect("capacity");
        let size = std::mem::size_of::<T>() as u64;
        // Under loom the stamps live in separate atomics, one per slot.
        let words = if cfg!(loom) { capacity as usize } else { 0 };
        Self::wrap(Ring::heap(
            capacity,
            size,
            slot_size(size),
            std::mem::align_of::<T>() as u64,
            words,
            Some(T::TYPE_NAME),
        ))
    }

    #[cfg(not(loom))]
    fn build_with(seg: &crate::SegmentOptions, name: &str, how: How) -> crate::Result<Self> {
        check_type::<T>(name)?;
        let align = std::mem::align_of::<T>() as u64;
        let size = std::mem::size_of::<T>() as u64;
        let ring = match how {
            How::Create(cap) => Ring::create(seg, name, expect_type::<T>(), cap, align, false),
            How::OpenOrCreate(cap) => Ring::create(seg, name, expect_type::<T>(), cap, align, true),
            How::Open => Ring::open(seg, name, expect_type::<T>()),
            How::OpenBySize => {
                return options::by_size(
                    name,
                    Kind::SPSC_QUEUE,
                    Some((size, align)),
                    |fp| Ring::open(seg, name, expect(fp, None, None)),
                    Ring::stored_type,
                    fingerprint_of,
                )
                .map(Self::wrap)
            }
        };
        let stored = |fp| {
            let r = Ring::open_snapshot(name, expect(fp, None, None))?;
            r.stored_type()
                .map_err(|what| crate::Error::corrupt(name, what))
        };
        options::typed(
            name,
            "elements",
            &TypeId::of::<T>(),
            ring,
            stored,
            fingerprint_of,
        )
        .map(Self::wrap)
    }

    fn wrap(ring: Ring) -> Self {
        // `elem` and `stamp` compute the slot size from `T`; the geometry was made (or
        // validated) with the same function.
        debug_assert_eq!(ring.slot_size, slot_size(std::mem::size_of::<T>() as u64));
        Queue {
            ring: Arc::new(ring),
            _t: PhantomData,
        }
    }

    /// Attach as the queue's producer. It resumes after the last element published: the
    /// stored `tail`, or past the run of elements a producer killed between publishing them
    /// (their stamps: one of a push, up to a batch's length) and storing `tail` left, so they
    /// are kept, not overwritten.
    pub fn producer(&self) -> Result<Producer<T>, AttachError> {
        Ok(Producer {
            e: ProdEnd::attach(&self.ring, TypedLayout::NEW)?,
        })
    }

    /// Attach as the queue's consumer.
    pub fn consumer(&self) -> Result<Consumer<T>, AttachError> {
        Ok(Consumer {
            e: ConsEnd::attach(&self.ring, TypedLayout::NEW)?,
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
    fixed_queue_accessors!(ring, |q| Stat::ring(q, crate::Kind::SPSC_QUEUE));
}

/// `capacity`, `len`, `is_empty` and `is_full` of a handle whose end (`ProdEnd` or
/// `ConsEnd`) is its field `e`: the four accessors of the typed and raw producers and consumers.
macro_rules! end_accessors {
    () => {
        /// Slots in the ring.
        pub fn capacity(&self) -> u64 {
            self.e.cap
        }

        /// Elements in the ring now (a snapshot: the other end may push or pop at any time).
        pub fn len(&self) -> u64 {
            self.e.side.q.len()
        }

        /// Whether the ring is empty now (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the ring is full now (a snapshot).
        pub fn is_full(&self) -> bool {
            self.len() == self.e.cap
        }
    };
}

/// The pushing end of an SPSC [`Queue`]. `Send`, not `Sync`: one thread pushes at a time.
/// Dropping it detaches it: the role is freed for another producer, and the consumer keeps
/// waiting (it gets `Disconnected` only after [`close`](Self::close), or if this process dies
/// holding the role).
pub struct Producer<T> {
    e: ProdEnd<TypedLayout<T>>,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::Producer")
            .field("tail", &self.e.tail)
            .finish()
    }
}

/// The producer's state and protocol, generic over the element layout: the typed
/// [`Producer`] and the [`RawProducer`] are this with [`TypedLayout`] and
/// [`RawLayout`](super::RawLayout) (one protocol, instantiated twice).
struct ProdEnd<L> {
    side: Side,
    /// Our tail: the only writer, so the shared copy is never read back.
    tail: u64,
    /// Last head seen; refreshed after a publish that makes the ring look full (`publish`),
    /// and when it looks full at a push (`space`).
    head_cache: u64,
    cap: u64,
    lay: L,
}

enum Fail {
    Busy,
    Disconnected,
    Corrupt,
}

impl<L: ElemLayout> ProdEnd<L> {
    /// Attach as the producer of `ring`, whose elements have `lay`'s size (see
    /// [`Queue::producer`]).
    fn attach(ring: &Arc<Ring>, lay: L) -> Result<Self, AttachError> {
        let side = Side::attach(Arc::clone(ring), Role::Producer)?;
        let name = ring.region.name();
        let ring = &**ring;
        let ctrl = ring.ctrl();
        let corrupt = |what: String| -> AttachError { crate::Error::corrupt(name, what).into() };
        // Acquire: pairs with the previous producer's Release stores of tail (we resume
        // after its last published element) and the consumer's Release stores of head.
        let stored = ctrl.prod.tail.load(Ordering::Acquire);
        let head = ctrl.cons.head.load(Ordering::Acquire);
        let mut tail = stored;
        let past = head.wrapping_sub(stored);
        if past != 0 && past <= ring.capacity {
            // The consumer popped an element published without a tail store.
            tail = head;
        }
        // Published (stamps stored) by a producer killed before its tail store: one element
        // of a push, or a run of up to a batch's length (`publish` stores each stamp, then
        // `tail` once). Step over the run; at most `capacity` stamps.
        while tail.wrapping_sub(head) < ring.capacity && published(ring, lay, tail) {
            tail = tail.wrapping_add(1);
        }
        if tail.wrapping_sub(head) > ring.capacity {
            return Err(corrupt(format!(
                "tail {tail} - head {head} exceeds the capacity"
            )));
        }
        if tail != stored {
            // Release: as every tail store (`ProdEnd::publish`).
            ctrl.prod.tail.store(tail, Ordering::Release);
        }
        Ok(ProdEnd {
            side,
            tail,
            head_cache: head,
            cap: ring.capacity,
            lay,
        })
    }

    /// Free slots, at least `want` if possible; refreshes the head only when needed.
    #[inline]
    fn space(&mut self, want: u64) -> Result<u64, Fail> {
        if self.side.is_closed() || self.side.peer_closed() {
            return Err(Fail::Disconnected);
        }
        let free = self.cap - self.tail.wrapping_sub(self.head_cache);
        if free >= want {
            return Ok(free);
        }
        let Some(used) = self.reload_head() else {
            return Err(Fail::Corrupt);
        };
        let free = self.cap - used;
        if free > 0 {
            return Ok(free);
        }
        if self.side.peer_gone() {
            return Err(Fail::Disconnected);
        }
        Err(Fail::Busy)
    }

    /// Reload the consumer's `head` into `head_cache`: the slots in use, or `None` (and the
    /// cache left as it was) if `head` is impossible (more than the capacity behind `tail`,
    /// or ahead of it).
    #[inline]
    fn reload_head(&mut self) -> Option<u64> {
        // Acquire pairs with the consumer's Release store of head in `ConsEnd::advance`:
        // it finished reading the slots it released before we overwrite them.
        let head = self.side.q.ctrl().cons.head.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.cap {
            return None;
        }
        self.head_cache = head;
        Some(used)
    }

    /// Publish the `n` elements written at `[tail, tail + n)`: their stamps, then `tail`,
    /// then wake the consumer if it waits.
    #[inline]
    fn publish(&mut self, n: u64) {
        let ring = &*self.side.q;
        let before = self.tail.wrapping_sub(self.head_cache);
        for k in 0..n {
            let pos = self.tail.wrapping_add(k);
            #[cfg(all(test, loom))]
            ring.region.shadow_write((pos & ring.mask) as usize);
            // Release pairs with the consumer's Acquire stamp load in `published`: the
            // element bytes written before are visible to it.
            stamp(ring, self.lay, pos).store(pos.wrapping_add(1), Ordering::Release);
        }
        self.tail = self.tail.wrapping_add(n);
        let ctrl = ring.ctrl();
        // Release pairs with the Acquire tail loads (`ConsEnd::avail`, `not_ready`,
        // `Ring::len`, producer attach): every element and stamp below it is visible.
        ctrl.prod.tail.store(self.tail, Ordering::Release);
        // SYNC POINT (pair A of `sync/park.rs`, waker side; the waiter side is the fence
        // after a parking consumer's sleeper increment, before it re-checks the stamp): our
        // stamp store, the fence in `notify_if_sleepers`, then its load of `sleepers`. Either
        // we see the sleeper and wake it, or it sees our stamp. On x86-64 an `mfence` on our
        // own core and a load of our own line: no locked access when nobody sleeps.
        ctrl.prod.not_empty.notify_if_sleepers(1);
        // When this publish leaves the ring looking full, refresh the cached head now, after
        // the elements are on their way: the next push needs it, and its load of the
        // consumer's line (a transfer: the consumer stores head at every pop) then waits while
        // the consumer works instead of in front of that push's stores, where a ping-pong paid
        // it once every `capacity` messages (`shmkit bench latency`: the p99 of `spsc_spin`).
        // As often as before: once per time the cached view fills.
        if before < self.cap && self.tail.wrapping_sub(self.head_cache) == self.cap {
            // An impossible head is left for `space` to report when it must look.
            let _ = self.reload_head();
        }
    }

    /// Wait up to `deadline` until a slot is free, the consumer is gone, or the time passes.
    fn wait_space(&mut self, deadline: Option<Instant>) -> Result<(), PushError<()>> {
        loop {
            match self.space(1) {
                Ok(_) => return Ok(()),
                Err(Fail::Busy) => {}
                Err(Fail::Disconnected) => return Err(PushError::Disconnected(())),
                Err(Fail::Corrupt) => return Err(PushError::Corrupt(())),
            }
            let side = &self.side;
            let ctrl = side.q.ctrl();
            let limit = self.tail.wrapping_sub(self.cap);
            // Acquire: as in `space`. The wait re-checks it after announcing a sleeper (pair A
            // with `ConsEnd::advance`'s notify, `sync/park.rs`).
            let ready = || ctrl.cons.head.load(Ordering::Acquire) != limit;
            match side.wait(&ctrl.cons.not_full, ready, deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PushError::Timeout(())),
                Wake::Gone(()) => return Err(PushError::Disconnected(())),
            }
        }
    }
}

impl<T: Element> Producer<T> {
    /// Push `value` if there is room.
    ///
    /// ```
    /// use shmkit::queue::{spsc::Queue, TryPushError};
    /// let q = Queue::<u16>::with_capacity(2);
    /// let mut tx = q.producer().unwrap();
    /// tx.try_push(1).unwrap();
    /// tx.try_push(2).unwrap();
    /// assert_eq!(tx.try_push(3), Err(TryPushError::Full(3)));
    /// ```
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), TryPushError<T>> {
        match self.e.space(1) {
            Ok(_) => {}
            Err(Fail::Busy) => return Err(TryPushError::Full(value)),
            Err(Fail::Disconnected) => return Err(TryPushError::Disconnected(value)),
            Err(Fail::Corrupt) => return Err(TryPushError::Corrupt(value)),
        }
        // SAFETY: the slot at `tail` is free (tail - head < capacity): the consumer does not
        // read it until we publish, and it is in bounds and aligned (see `elem`).
        unsafe { super::store_elem(elem_of::<T>(&self.e.side.q, self.e.tail).cast(), &value) };
        std::mem::forget(value); // moved into the queue
        self.e.publish(1);
        Ok(())
    }

    fn push_within(&mut self, value: T, deadline: Option<Instant>) -> Result<(), PushError<T>> {
        if let Err(e) = self.e.wait_space(deadline) {
            return Err(e.map(|()| value));
        }
        // SAFETY: as in `try_push` (`wait_space` found a free slot).
        unsafe { super::store_elem(elem_of::<T>(&self.e.side.q, self.e.tail).cast(), &value) };
        std::mem::forget(value); // moved into the queue
        self.e.publish(1);
        Ok(())
    }

    blocking_forms! {
        /// Push `value`, waiting for room: a short spin, then a futex sleep. Returns
        /// [`PushError::Disconnected`] once the consumer closes its end or is found dead
        /// (checked at least every 20 ms while waiting), never hangs on a dead peer.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{spsc::Queue, PushError};
        /// let q = Queue::<u32>::with_capacity(2);
        /// let mut tx = q.producer().unwrap();
        /// tx.push(1).unwrap();
        /// tx.push(2).unwrap();
        /// assert_eq!(tx.push_timeout(3, Duration::from_millis(5)), Err(PushError::Timeout(3)));
        /// ```
        fn push / push_timeout / push_deadline (value: T) -> Result<(), PushError<T>> = push_within;
    }

    /// The next free slot, in place, if there is one: write the element through the guard
    /// (it derefs to `&mut T`) and [`commit`](WriteGuard::commit) it. Nothing is copied
    /// through a `Result`, which matters for large elements. Dropping the guard without
    /// committing publishes nothing.
    ///
    /// The slot holds whatever it held before (zeroes, or an element of an earlier lap):
    /// set every field you mean to send.
    ///
    /// ```
    /// use shmkit::queue::spsc::Queue;
    /// let q = Queue::<[u8; 1024]>::with_capacity(4);
    /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    /// let mut slot = tx.try_reserve().unwrap();
    /// slot.fill(7); // written in the ring, not on the stack
    /// slot[0] = 1;
    /// slot.commit();
    /// let msg = rx.try_peek().unwrap();
    /// assert_eq!((msg[0], msg[1023]), (1, 7));
    /// msg.release();
    /// assert!(rx.try_peek().is_err());
    /// ```
    #[inline]
    pub fn try_reserve(&mut self) -> Result<WriteGuard<'_, T>, TryPushError<()>> {
        match self.e.space(1) {
            Ok(_) => Ok(WriteGuard { p: self }),
            Err(Fail::Busy) => Err(TryPushError::Full(())),
            Err(Fail::Disconnected) => Err(TryPushError::Disconnected(())),
            Err(Fail::Corrupt) => Err(TryPushError::Corrupt(())),
        }
    }

    fn reserve_within(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<WriteGuard<'_, T>, PushError<()>> {
        self.e.wait_space(deadline)?;
        Ok(WriteGuard { p: self })
    }

    blocking_forms! {
        /// [`try_reserve`](Self::try_reserve), waiting for a free slot, as
        /// [`push`](Self::push) does.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{spsc::Queue, PushError};
        /// let q = Queue::<u64>::with_capacity(2);
        /// let mut tx = q.producer().unwrap();
        /// for v in [1, 2] {
        ///     let mut slot = tx.reserve().unwrap();
        ///     *slot = v;
        ///     slot.commit();
        /// }
        /// let full = tx.reserve_timeout(Duration::from_millis(1));
        /// assert!(matches!(full, Err(PushError::Timeout(()))));
        /// ```
        fn reserve / reserve_timeout / reserve_deadline () -> Result<WriteGuard<'_, T>, PushError<()>>
            = reserve_within;
    }

    /// Close the producer end and free the role: the consumer pops what is left, then gets
    /// `Disconnected`; this handle's pushes fail with `Disconnected`. A new producer may
    /// attach afterwards (which reopens the queue). Dropping the producer does *not* close
    /// it: it only frees the role.
    ///
    /// ```
    /// use shmkit::queue::{spsc::Queue, TryPopError};
    /// let q = Queue::<u8>::with_capacity(4);
    /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    /// tx.try_push(1).unwrap();
    /// tx.close();
    /// assert_eq!(rx.try_pop(), Ok(1));
    /// assert_eq!(rx.try_pop(), Err(TryPopError::Disconnected));
    /// ```
    pub fn close(&mut self) {
        self.e.side.close()
    }

    end_accessors!();
}

impl<T: Element + Copy> Producer<T> {
    /// Push as many of `items` as fit, in order, with one `tail` publication and at most one
    /// notification; returns how many were pushed (at least 1), or `Full(())` if none fit.
    ///
    /// ```
    /// let q = shmkit::queue::spsc::Queue::<u8>::with_capacity(4);
    /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    /// assert_eq!(tx.try_push_slice(&[1, 2, 3, 4, 5]), Ok(4));
    /// let mut out = [0; 8];
    /// assert_eq!(rx.try_pop_slice(&mut out), Ok(4));
    /// assert_eq!(out[..4], [1, 2, 3, 4]);
    /// ```
    pub fn try_push_slice(&mut self, items: &[T]) -> Result<usize, TryPushError<()>> {
        if items.is_empty() {
            return Ok(0);
        }
        let free = match self.e.space((items.len() as u64).min(self.e.cap)) {
            Ok(f) => f,
            Err(Fail::Busy) => return Err(TryPushError::Full(())),
            Err(Fail::Disconnected) => return Err(TryPushError::Disconnected(())),
            Err(Fail::Corrupt) => return Err(TryPushError::Corrupt(())),
        };
        let n = (items.len() as u64).min(free) as usize;
        let ring = &*self.e.side.q;
        for (k, item) in items[..n].iter().enumerate() {
            // SAFETY: slots [tail, tail + n) are free (n <= free): the consumer reads none of
            // them until we publish; each is in bounds and aligned (`elem`).
            unsafe {
                super::store_elem(
                    elem_of::<T>(ring, self.e.tail.wrapping_add(k as u64)).cast(),
                    item,
                )
            };
        }
        self.e.publish(n as u64);
        Ok(n)
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
                    // Full: wait for room.
                    Err(done) => self.e.wait_space(deadline).map_err(|e| e.map(|()| done))?,
                },
            }
        }
        Ok(())
    }

    blocking_forms! {
        /// Push all of `items`, waiting (as [`push`](Self::push) does) for room as needed;
        /// each batch that fits is published with one `tail` store and at most one
        /// notification. On timeout or disconnection the error holds how many were pushed.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{spsc::Queue, PushError};
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

/// A free slot of the ring, reserved by [`Producer::try_reserve`] or
/// [`Producer::reserve`]: derefs to `&mut T` over the slot's element in shared memory.
/// [`commit`](Self::commit) publishes it; dropping the guard publishes nothing.
///
/// # Contract
///
/// Among processes that follow the protocol the slot is exclusively this guard's: the
/// consumer reads a slot only after its stamp is published, and the producer reuses it only
/// after an Acquire load of a `head` the consumer stored (Release) after reading it; the
/// roles are exclusive (owner words). A process that breaks the protocol (any process that
/// can open the segment read-write can forge `head`, or write the slot directly) can race
/// with the `&mut T`: undefined behaviour in Rust's model for the code that uses the
/// reference. When such processes are possible, use the copying [`Producer::try_push`]
/// instead (`SPEC.md` §7.2); the same goes for a consumer of this process, whose copying
/// `try_pop` a forged stamp can send over the slot while the guard writes it. The guard itself
/// never reads the element's bytes.
///
/// # Across `fork()`
///
/// A guard inherited by a `fork()`ed child is its parent's (the role and the slot are): in the
/// child [`commit`](Self::commit) publishes nothing and changes nothing shared, and a deref
/// panics (the parent may be writing the slot; there is no element to hand out instead).
pub struct WriteGuard<'a, T: Element> {
    p: &'a mut Producer<T>,
}

impl<T: Element> WriteGuard<'_, T> {
    /// Publish the element: the consumer may read it from now on. Does nothing in a
    /// `fork()`ed child that inherited the guard (see the type's docs).
    #[inline]
    pub fn commit(self) {
        if self.p.e.side.is_closed() {
            return; // inherited across fork(): the slot and the tail are the parent's
        }
        self.p.e.publish(1);
    }
}

impl<T: Element> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        held_here(&self.p.e.side);
        // SAFETY: the slot at `tail` is free and ours until we publish (the type's contract),
        // and this process holds the role (checked above: not a fork()ed child's copy);
        // in bounds and aligned (`elem`); its bytes are initialised (the data area starts
        // zeroed and holds only written elements) and any bytes are a valid T (FromBytes).
        unsafe { &*elem_of::<T>(&self.p.e.side.q, self.p.e.tail) }
    }
}

impl<T: Element> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        held_here(&self.p.e.side);
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *elem_of::<T>(&self.p.e.side.q, self.p.e.tail) }
    }
}

impl<T: Element> std::fmt::Debug for WriteGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::WriteGuard")
            .field("pos", &self.p.e.tail)
            .finish()
    }
}

/// The popping end of an SPSC [`Queue`]. `Send`, not `Sync`. Dropping it detaches it: the
/// role is freed for another consumer, the elements stay, and the producer keeps pushing
/// until the queue is full (it gets `Disconnected` only after [`close`](Self::close), or if
/// this process dies holding the role).
pub struct Consumer<T> {
    e: ConsEnd<TypedLayout<T>>,
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::Consumer")
            .field("head", &self.e.head)
            .finish()
    }
}

/// The consumer's state and protocol, generic over the element layout (as [`ProdEnd`]).
struct ConsEnd<L> {
    side: Side,
    /// Our head: the only writer.
    head: u64,
    /// Last tail seen (never behind `head`); refreshed when a batch wants more.
    tail_cache: u64,
    cap: u64,
    lay: L,
}

impl<L: ElemLayout> ConsEnd<L> {
    /// Attach as the consumer of `ring`, whose elements have `lay`'s size.
    fn attach(ring: &Arc<Ring>, lay: L) -> Result<Self, AttachError> {
        let side = Side::attach(Arc::clone(ring), Role::Consumer)?;
        // Acquire: pairs with the previous consumer's Release stores of head.
        let head = ring.ctrl().cons.head.load(Ordering::Acquire);
        Ok(ConsEnd {
            side,
            head,
            tail_cache: head,
            cap: ring.capacity,
            lay,
        })
    }

    /// `Ok` when the element at `head` is published; `check_tail`: when it is not, also
    /// check the tail now (see [`not_ready`](Self::not_ready)).
    #[inline]
    fn next(&mut self, check_tail: bool) -> Result<(), TryPopError> {
        if self.side.is_closed() {
            return Err(TryPopError::Disconnected);
        }
        if published(&self.side.q, self.lay, self.head) {
            return Ok(());
        }
        self.not_ready(check_tail)
    }

    /// No element at the head: `Empty` while the producer may still publish; `Corrupt` if
    /// the tail says one was published there; once the producer closed or is found dead,
    /// what it published last (drained first), then `Disconnected`. Out of line, so that
    /// the polling fast path stays small.
    #[cold]
    #[inline(never)]
    fn not_ready(&mut self, check_tail: bool) -> Result<(), TryPopError> {
        let Some(gone) = self.side.look_at_tail(check_tail) else {
            return Err(TryPopError::Empty);
        };
        let ring = &*self.side.q;
        // Acquire pairs with the Release tail store in `ProdEnd::publish`, made after the
        // stamps.
        let tail = ring.ctrl().prod.tail.load(Ordering::Acquire);
        let ahead = tail.wrapping_sub(self.head);
        if ahead != 0 && ahead <= self.cap {
            // Published by the tail, so its stamp is visible now.
            return match published(ring, self.lay, self.head) {
                true => Ok(()),
                false => Err(TryPopError::Corrupt),
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
        // Closed (Acquire in peer_closed: its last stamp is visible) or dead: drain first.
        match published(ring, self.lay, self.head) {
            true => Ok(()),
            false => Err(TryPopError::Disconnected),
        }
    }

    /// Elements available (at least 1, and `want` if that many are published below the
    /// tail), refreshing the tail only when the cached count falls short.
    #[inline]
    fn avail(&mut self, want: u64) -> Result<u64, TryPopError> {
        if self.side.is_closed() {
            return Err(TryPopError::Disconnected);
        }
        let avail = self.tail_cache.wrapping_sub(self.head);
        if avail >= want {
            return Ok(avail);
        }
        // Acquire pairs with the producer's Release store of tail in `ProdEnd::publish`:
        // the elements (and stamps) below it are visible.
        let tail = self.side.q.ctrl().prod.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(self.head);
        if n > self.cap {
            if self.head.wrapping_sub(tail) > self.cap {
                return Err(TryPopError::Corrupt);
            }
            // The head passed a tail a killed producer did not store: nothing below it.
            self.tail_cache = self.head;
        } else {
            self.tail_cache = tail;
            if n > 0 {
                return Ok(n);
            }
        }
        // Nothing below the tail: an element may still be published by its stamp (pushed
        // since, or by a producer killed before its tail store).
        self.next(false)?;
        self.tail_cache = self.head.wrapping_add(1);
        Ok(1)
    }

    /// Release the `n` elements at the head: store `head`, then wake the producer if it
    /// waits for room.
    #[inline]
    fn advance(&mut self, n: u64) {
        #[cfg(all(test, loom))]
        for k in 0..n {
            let ring = &*self.side.q;
            ring.region
                .shadow_read((self.head.wrapping_add(k) & ring.mask) as usize);
        }
        self.head = self.head.wrapping_add(n);
        if self.tail_cache.wrapping_sub(self.head) > self.cap {
            // Single pops go by the stamps and may pass the cached tail.
            self.tail_cache = self.head;
        }
        let ctrl = self.side.q.ctrl();
        // Release pairs with the producer's Acquire loads of head (`ProdEnd::reload_head`, its
        // wait, attach, `Ring::len`): we are done reading the released slots.
        ctrl.cons.head.store(self.head, Ordering::Release);
        // SYNC POINT (pair A of `sync/park.rs`, waker side, as in `ProdEnd::publish`): our
        // head store, the fence, the load of `sleepers`; a parking producer increments,
        // fences, re-checks head.
        ctrl.cons.not_full.notify_if_sleepers(1);
    }

    /// Wait (after a failed poll) until the element at `head` is published, the producer
    /// closes or is found dead, or the deadline passes.
    fn wait_nonempty(&self, deadline: Option<Instant>) -> Wake {
        let side = &self.side;
        let ring = &*side.q;
        let (head, lay) = (self.head, self.lay);
        // The wait re-checks the stamp after announcing a sleeper (pair A with
        // `ProdEnd::publish`'s notify, `sync/park.rs`).
        let ready = || published(ring, lay, head);
        side.wait(&ring.ctrl().prod.not_empty, ready, deadline)
    }

    /// Wait until `deadline` until the element at `head` is published.
    fn wait_ready(&mut self, deadline: Option<Instant>) -> Result<(), PopError> {
        loop {
            match self.next(true).map_err(TryPopError::blocking) {
                Ok(()) => return Ok(()),
                Err(Some(e)) => return Err(e),
                Err(None) => {} // empty: wait
            }
            match self.wait_nonempty(deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PopError::Timeout),
                Wake::Gone(()) => {
                    return match self.next(true) {
                        Ok(()) => Ok(()),
                        Err(TryPopError::Corrupt) => Err(PopError::Corrupt),
                        Err(_) => Err(PopError::Disconnected),
                    }
                }
            }
        }
    }
}

impl<T: Element> Consumer<T> {
    /// Pop the oldest element if there is one. `Err(Empty)` while the queue is empty and a
    /// producer may still push; `Err(Disconnected)` once it is empty and the producer closed
    /// its end or died (a dead producer is noticed within about 10 ms of polling).
    ///
    /// ```
    /// use shmkit::queue::{spsc::Queue, TryPopError};
    /// let q = Queue::<i64>::with_capacity(8);
    /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    /// assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    /// tx.try_push(-1).unwrap();
    /// assert_eq!(rx.try_pop(), Ok(-1));
    /// ```
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, TryPopError> {
        self.e.next(false)?;
        // SAFETY: the slot at `head` is published (its stamp, loaded with Acquire) and the
        // producer does not write it until we advance; in bounds and aligned (`elem`). Any
        // bytes are a valid T (FromBytes).
        let v = unsafe { super::load_elem(elem_of::<T>(&self.e.side.q, self.e.head).cast()) };
        self.e.advance(1);
        Ok(v)
    }

    fn pop_within(&mut self, deadline: Option<Instant>) -> Result<T, PopError> {
        self.e.wait_ready(deadline)?;
        // SAFETY: as in `try_pop` (`wait_ready` found the slot published).
        let v = unsafe { super::load_elem(elem_of::<T>(&self.e.side.q, self.e.head).cast()) };
        self.e.advance(1);
        Ok(v)
    }

    blocking_forms! {
        /// Pop, waiting for an element: a short spin, then a futex sleep.
        /// `Err(Disconnected)` once the queue is empty and the producer closed or is found
        /// dead (checked at least every 20 ms while waiting); never hangs on a dead peer.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{spsc::Queue, PopError};
        /// let q = Queue::<u64>::with_capacity(8);
        /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        /// std::thread::scope(|s| {
        ///     s.spawn(move || {
        ///         tx.push(5).unwrap();
        ///         tx.push(6).unwrap();
        ///         // Dropping `tx` would only detach it; closing ends the stream.
        ///         tx.close();
        ///     });
        ///     assert_eq!(rx.pop_timeout(Duration::from_secs(10)), Ok(5));
        /// });
        /// assert_eq!(rx.pop(), Ok(6));
        /// assert_eq!(rx.pop_timeout(Duration::from_millis(1)), Err(PopError::Disconnected));
        /// ```
        fn pop / pop_timeout / pop_deadline () -> Result<T, PopError> = pop_within;
    }

    /// The oldest element, in place, if there is one: the guard derefs to `&T` over the slot
    /// in shared memory, and [`release`](ReadGuard::release) frees the slot. Dropping the
    /// guard without releasing leaves the element in the ring (the next peek returns it).
    ///
    /// ```
    /// use shmkit::queue::{spsc::Queue, TryPopError};
    /// let q = Queue::<[u64; 128]>::with_capacity(2);
    /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    /// assert_eq!(rx.try_peek().err(), Some(TryPopError::Empty));
    /// let mut w = tx.try_reserve().unwrap();
    /// w[127] = 42;
    /// w.commit();
    /// let r = rx.try_peek().unwrap();
    /// assert_eq!(r[127], 42); // read in the ring, not copied out
    /// r.release();
    /// ```
    #[inline]
    pub fn try_peek(&mut self) -> Result<ReadGuard<'_, T>, TryPopError> {
        self.e.next(false)?;
        Ok(ReadGuard { c: self })
    }

    fn peek_within(&mut self, deadline: Option<Instant>) -> Result<ReadGuard<'_, T>, PopError> {
        self.e.wait_ready(deadline)?;
        Ok(ReadGuard { c: self })
    }

    blocking_forms! {
        /// [`try_peek`](Self::try_peek), waiting for an element, as [`pop`](Self::pop) does.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{spsc::Queue, PopError};
        /// let q = Queue::<u32>::with_capacity(2);
        /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        /// tx.try_push(9).unwrap();
        /// let r = rx.peek().unwrap();
        /// assert_eq!(*r, 9);
        /// r.release();
        /// assert_eq!(rx.peek_timeout(Duration::from_millis(1)).err(), Some(PopError::Timeout));
        /// ```
        fn peek / peek_timeout / peek_deadline () -> Result<ReadGuard<'_, T>, PopError>
            = peek_within;
    }

    /// Close the consumer end and free the role: the producer's pushes then fail with
    /// `Disconnected`. What is left in the ring stays for the next consumer, whose attach
    /// reopens the end. Dropping the consumer does *not* close it: it only frees the role.
    pub fn close(&mut self) {
        self.e.side.close()
    }

    end_accessors!();
}

impl<T: Element + Copy> Consumer<T> {
    /// Pop up to `out.len()` elements in order into `out`, with one `head` publication;
    /// returns how many (at least 1 unless `out` is empty), or `Empty`/`Disconnected`.
    pub fn try_pop_slice(&mut self, out: &mut [T]) -> Result<usize, TryPopError> {
        if out.is_empty() {
            return Ok(0);
        }
        let avail = self.e.avail((out.len() as u64).min(self.e.cap))?;
        let n = (out.len() as u64).min(avail) as usize;
        let ring = &*self.e.side.q;
        for (k, o) in out[..n].iter_mut().enumerate() {
            // SAFETY: positions [head, head + n) are published (below the tail loaded with
            // Acquire, or the one stamp checked in `avail`) and ours until we advance; each
            // slot is in bounds and aligned (`elem`); any bytes are a valid T.
            *o = unsafe {
                super::load_elem(elem_of::<T>(ring, self.e.head.wrapping_add(k as u64)).cast())
            };
        }
        self.e.advance(n as u64);
        Ok(n)
    }

    fn pop_slice_within(
        &mut self,
        out: &mut [T],
        deadline: Option<Instant>,
    ) -> Result<usize, PopError> {
        if out.is_empty() {
            return Ok(0);
        }
        self.e.wait_ready(deadline)?;
        self.try_pop_slice(out).map_err(|e| match e {
            TryPopError::Corrupt => PopError::Corrupt,
            _ => PopError::Disconnected,
        })
    }

    blocking_forms! {
        /// Pop at least one element into `out` (up to `out.len()`, with one `head`
        /// publication), waiting for the first as [`pop`](Self::pop) does; returns how many.
        ///
        /// ```
        /// let q = shmkit::queue::spsc::Queue::<u8>::with_capacity(4);
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

/// The oldest element of the ring, peeked in place by [`Consumer::try_peek`] or
/// [`Consumer::peek`]: derefs to `&T` over the slot in shared memory.
/// [`release`](Self::release) frees the slot; dropping the guard leaves the element in the
/// ring.
///
/// # Contract
///
/// Among processes that follow the protocol nobody writes the slot while the guard lives:
/// the producer writes a slot only before publishing its stamp, and again only after an
/// Acquire load of a `head` we store (Release) in `release`. A process that breaks the
/// protocol (any process that can open the segment read-write can forge `head` or a stamp, or
/// write the slot directly) can write the bytes while the `&T` lives: a data race, undefined
/// behaviour in Rust's model for the code that uses the reference (it may, e.g., act on a
/// field it did not check, because the compiler assumed it could not change between two
/// reads). shmkit never reads element bytes itself. When such processes are possible, use
/// the copying [`Consumer::try_pop`] (`SPEC.md` §7.2).
///
/// # Across `fork()`
///
/// A guard inherited by a `fork()`ed child is its parent's: in the child
/// [`release`](Self::release) frees nothing (the parent may still be reading the slot), and a
/// deref panics (the parent may release the slot, and the producer overwrite it, while the
/// child reads).
pub struct ReadGuard<'a, T: Element> {
    c: &'a mut Consumer<T>,
}

impl<T: Element> ReadGuard<'_, T> {
    /// Free the slot: the producer may overwrite it from now on. Does nothing in a `fork()`ed
    /// child that inherited the guard (see the type's docs).
    #[inline]
    pub fn release(self) {
        if self.c.e.side.is_closed() {
            return; // inherited across fork(): the head is the parent's
        }
        self.c.e.advance(1);
    }
}

impl<T: Element> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        held_here(&self.c.e.side);
        // SAFETY: the slot at `head` is published (stamp loaded with Acquire when the guard
        // was made) and not written until we release it (the type's contract; this process
        // holds the role, checked above); in bounds and aligned (`elem`); any bytes are a
        // valid T (FromBytes).
        unsafe { &*elem_of::<T>(&self.c.e.side.q, self.c.e.head) }
    }
}

/// Panic unless this process holds `side`'s role: a guard's element reference must not be
/// formed in a `fork()`ed child that inherited the guard (the slot is the parent's). One
/// Relaxed load (`Side::is_closed`; a guard exists only while its handle is open).
#[inline]
fn held_here(side: &Side) {
    assert!(
        !side.is_closed(),
        "a queue guard inherited across fork() cannot be used in the child"
    );
}

impl<T: Element> std::fmt::Debug for ReadGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::ReadGuard")
            .field("pos", &self.c.e.head)
            .finish()
    }
}

/// An SPSC queue opened whatever its element type (or created with a size chosen at run
/// time), its elements handled as bytes: the same queue, roles and protocol as [`Queue`]'s,
/// with [`RawProducer`] and [`RawConsumer`] pushing and popping slices of exactly
/// [`elem_size`](Self::elem_size) bytes (what `shmkit queue push`/`pop` use for every element
/// size). A raw handle and a typed one are the same role: a `RawProducer` and a
/// [`Producer`] exclude each other.
///
/// ```
/// use shmkit::queue::spsc::{Queue, RawQueue};
/// # let name = format!("doc-spsc-raw-{}", std::process::id());
/// let q = Queue::<[u32; 25]>::options().unlink_on_drop(true).create(&name, 4)?;
/// let raw = RawQueue::options().open(&name)?; // any element type
/// assert_eq!(raw.elem_size(), 100);
/// let mut tx = raw.producer()?;
/// tx.try_push(&[1; 100])?;
/// assert_eq!(q.consumer()?.try_pop(), Ok([0x0101_0101; 25]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(loom))]
pub struct RawQueue {
    ring: Arc<Ring>,
}

#[cfg(not(loom))]
impl std::fmt::Debug for RawQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::RawQueue")
            .field("name", &self.ring.region.name())
            .field("elem_size", &self.ring.elem_size)
            .field("capacity", &self.ring.capacity)
            .finish()
    }
}

#[cfg(not(loom))]
impl options::sealed::BuildRaw for RawQueue {
    fn build_raw(
        seg: &crate::SegmentOptions,
        name: &str,
        how: How,
        elem_size: usize,
    ) -> crate::Result<Self> {
        let (cap, existing) = match how {
            How::Create(cap) => (cap, false),
            How::OpenOrCreate(cap) => (cap, true),
            How::Open | How::OpenBySize => {
                return options::by_size(
                    name,
                    Kind::SPSC_QUEUE,
                    None,
                    |fp| Ring::open(seg, name, expect(fp, None, None)),
                    Ring::stored_type,
                    fingerprint_of,
                )
                .map(Self::wrap)
            }
        };
        let t = options::byte_array(name, elem_size)?;
        let want = expect(fingerprint_of(&t), Some(t.size), Some(&t.name));
        let ring = Ring::create(seg, name, want, cap, t.align, existing);
        let stored = |fp| {
            let r = Ring::open_snapshot(name, expect(fp, None, None))?;
            r.stored_type()
                .map_err(|what| crate::Error::corrupt(name, what))
        };
        options::typed(name, "elements", &t, ring, stored, fingerprint_of).map(Self::wrap)
    }
}

#[cfg(not(loom))]
impl RawQueue {
    raw_queue_basics!("SPSC queue", ring: Ring);

    /// Attach as the queue's producer, as [`Queue::producer`] does (the same role).
    pub fn producer(&self) -> Result<RawProducer, AttachError> {
        Ok(RawProducer {
            e: ProdEnd::attach(&self.ring, self.layout())?,
        })
    }

    /// Attach as the queue's consumer, as [`Queue::consumer`] does (the same role).
    pub fn consumer(&self) -> Result<RawConsumer, AttachError> {
        Ok(RawConsumer {
            e: ConsEnd::attach(&self.ring, self.layout())?,
        })
    }

    fixed_queue_accessors!(ring, |q| Stat::ring(q, crate::Kind::SPSC_QUEUE));
}

/// The pushing end of a [`RawQueue`]: [`Producer`]'s role and semantics, pushing slices of
/// exactly [`elem_size`](Self::elem_size) bytes (another length is
/// [`RawError::WrongLength`], and nothing is pushed).
#[cfg(not(loom))]
pub struct RawProducer {
    e: ProdEnd<RawLayout>,
}

#[cfg(not(loom))]
impl std::fmt::Debug for RawProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::RawProducer")
            .field("tail", &self.e.tail)
            .finish()
    }
}

#[cfg(not(loom))]
impl RawProducer {
    /// Copy `elem` into the slot at `tail` and publish it.
    ///
    /// # Safety
    ///
    /// The slot at `tail` is free (`space` or `wait_space` found room), and `elem` is
    /// `elem_size` bytes long.
    unsafe fn put(&mut self, elem: &[u8]) {
        let e = &mut self.e;
        // SAFETY: the slot at `tail` is free (the caller): the consumer does not read it until
        // we publish; in bounds and aligned (`elem`); `elem` has the layout's size.
        unsafe {
            e.lay
                .store(elem.as_ptr(), self::elem(&e.side.q, e.lay, e.tail))
        };
        e.publish(1);
    }

    /// Push `elem` (exactly [`elem_size`](Self::elem_size) bytes) if there is room, as
    /// [`Producer::try_push`].
    pub fn try_push(&mut self, elem: &[u8]) -> Result<(), RawError<TryPushError<()>>> {
        check_len(elem.len(), self.e.lay.size())?;
        match self.e.space(1) {
            Ok(_) => {}
            Err(Fail::Busy) => return Err(TryPushError::Full(()).into()),
            Err(Fail::Disconnected) => return Err(TryPushError::Disconnected(()).into()),
            Err(Fail::Corrupt) => return Err(TryPushError::Corrupt(()).into()),
        }
        // SAFETY: `space` found a free slot; the length was checked.
        unsafe { self.put(elem) };
        Ok(())
    }

    fn push_within(
        &mut self,
        elem: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), RawError<PushError<()>>> {
        check_len(elem.len(), self.e.lay.size())?;
        self.e.wait_space(deadline)?;
        // SAFETY: `wait_space` found a free slot; the length was checked.
        unsafe { self.put(elem) };
        Ok(())
    }

    blocking_forms! {
        /// Push `elem`, waiting for room as [`Producer::push`] does.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{spsc::RawQueue, PushError, RawError};
        /// # let name = format!("doc-spsc-rawpush-{}", std::process::id());
        /// let q = RawQueue::options().unlink_on_drop(true).create(&name, 3, 2)?;
        /// let mut tx = q.producer()?;
        /// tx.push(b"abc")?;
        /// tx.push_timeout(b"def", Duration::from_secs(1))?;
        /// let e = tx.push_deadline(b"ghi", std::time::Instant::now());
        /// assert_eq!(e, Err(RawError::Queue(PushError::Timeout(()))));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn push / push_timeout / push_deadline (elem: &[u8])
            -> Result<(), RawError<PushError<()>>> = push_within;
    }

    /// Bytes per element.
    pub fn elem_size(&self) -> usize {
        self.e.lay.size()
    }

    /// Close the producer end and free the role, as [`Producer::close`].
    pub fn close(&mut self) {
        self.e.side.close()
    }

    end_accessors!();
}

/// The popping end of a [`RawQueue`]: [`Consumer`]'s role and semantics, popping into slices
/// of exactly [`elem_size`](Self::elem_size) bytes (another length is
/// [`RawError::WrongLength`], and nothing is popped).
#[cfg(not(loom))]
pub struct RawConsumer {
    e: ConsEnd<RawLayout>,
}

#[cfg(not(loom))]
impl std::fmt::Debug for RawConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::RawConsumer")
            .field("head", &self.e.head)
            .finish()
    }
}

#[cfg(not(loom))]
impl RawConsumer {
    /// Copy the element at `head` into `out` and release its slot.
    ///
    /// # Safety
    ///
    /// The slot at `head` is published (`next` or `wait_ready` said so), and `out` is
    /// `elem_size` bytes long.
    unsafe fn take(&mut self, out: &mut [u8]) {
        let e = &mut self.e;
        // SAFETY: the slot at `head` is published and the producer does not write it until we
        // advance (the caller); in bounds and aligned (`elem`); `out` has the layout's size.
        unsafe { e.lay.load(elem(&e.side.q, e.lay, e.head), out.as_mut_ptr()) };
        e.advance(1);
    }

    /// Pop the oldest element into `out` (exactly [`elem_size`](Self::elem_size) bytes) if
    /// there is one, as [`Consumer::try_pop`].
    pub fn try_pop_into(&mut self, out: &mut [u8]) -> Result<(), RawError<TryPopError>> {
        check_len(out.len(), self.e.lay.size())?;
        self.e.next(false)?;
        // SAFETY: `next` found the slot published; the length was checked.
        unsafe { self.take(out) };
        Ok(())
    }

    fn pop_into_within(
        &mut self,
        out: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<(), RawError<PopError>> {
        check_len(out.len(), self.e.lay.size())?;
        self.e.wait_ready(deadline)?;
        // SAFETY: `wait_ready` found the slot published; the length was checked.
        unsafe { self.take(out) };
        Ok(())
    }

    blocking_forms! {
        /// Pop the oldest element into `out`, waiting for one as [`Consumer::pop`] does.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{spsc::RawQueue, PopError, RawError};
        /// # let name = format!("doc-spsc-rawpop-{}", std::process::id());
        /// let q = RawQueue::options().unlink_on_drop(true).create(&name, 3, 2)?;
        /// q.producer()?.push(b"abc")?;
        /// let (mut rx, mut out) = (q.consumer()?, [0; 3]);
        /// rx.pop_into(&mut out)?;
        /// assert_eq!(&out, b"abc");
        /// let e = rx.pop_into_timeout(&mut out, Duration::from_millis(1));
        /// assert_eq!(e, Err(RawError::Queue(PopError::Timeout)));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn pop_into / pop_into_timeout / pop_into_deadline (out: &mut [u8])
            -> Result<(), RawError<PopError>> = pop_into_within;
    }

    /// Bytes per element.
    pub fn elem_size(&self) -> usize {
        self.e.lay.size()
    }

    /// Close the consumer end and free the role, as [`Consumer::close`].
    pub fn close(&mut self) {
        self.e.side.close()
    }

    end_accessors!();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Whatever a hostile writer stores into `head`, `tail` or a slot's stamp between the
    /// producer's and the consumer's calls, every call answers (an element, `Full`, `Empty`,
    /// `Corrupt`, `Disconnected`) without a panic: random runs of single and batched pushes
    /// and pops and forgeries (in debug builds too, where an overflow panics).
    #[test]
    fn forged_head_tail_and_stamp_words_never_panic() {
        crate::forged::seeded(0x2545_f491_4f6c_dd1d, |mut rng| {
            for _ in 0..300 {
                let q = Queue::<u64>::with_capacity(8);
                let ring = &*q.ring;
                let ctrl = ring.ctrl();
                let mut tx = q.producer().unwrap();
                let mut rx = q.consumer().unwrap();
                let mut buf = [0u64; 5];
                for i in 0..200u64 {
                    match rng.below(12) {
                        0..=2 => {
                            let _ = tx.try_push(i);
                        }
                        3 => {
                            let _ = tx.try_push_slice(&[i; 3]);
                        }
                        4..=6 => {
                            let _ = rx.try_pop();
                        }
                        7 => {
                            let _ = rx.try_pop_slice(&mut buf);
                        }
                        8 => {
                            rng.forge_word(&ctrl.cons.head);
                        }
                        9 => {
                            rng.forge_word(&ctrl.prod.tail);
                        }
                        _ => {
                            rng.forge_word(stamp(ring, TypedLayout::<u64>::NEW, i % 16));
                        }
                    }
                }
            }
        });
    }

    /// A producer killed inside `publish` of a batch, after the stamp stores of two positions
    /// and before its one `tail` store, leaves two published elements past the stored tail.
    /// The next producer takes the role over and resumes after both (the consumer delivers
    /// them by their stamps): SPEC §7.2, attach. (Review finding: the attach allowed for one
    /// such element only and failed with `Corrupt`, "two elements published past the stored
    /// tail", for as long as no consumer popped them.)
    #[test]
    fn a_producer_killed_mid_batch_publish_is_taken_over() {
        let q = Queue::<u64>::with_capacity(8);
        let ring = &*q.ring;
        // What `try_push_slice(&[10, 11, 12])` leaves when killed in `publish` after its
        // first two stamp stores: three elements written, stamps of positions 0 and 1, tail 0.
        for (i, v) in [10u64, 11, 12].into_iter().enumerate() {
            // SAFETY: slot i < capacity of a heap queue nobody else uses yet.
            unsafe { crate::queue::store_elem(elem_of::<u64>(ring, i as u64).cast(), &v) };
        }
        stamp(ring, TypedLayout::<u64>::NEW, 0).store(1, Ordering::Release);
        stamp(ring, TypedLayout::<u64>::NEW, 1).store(2, Ordering::Release);
        let mut tx = q
            .producer()
            .expect("the role of a producer killed mid-batch");
        tx.try_push(20).unwrap();
        let mut rx = q.consumer().unwrap();
        assert_eq!(rx.try_pop(), Ok(10));
        assert_eq!(rx.try_pop(), Ok(11));
        assert_eq!(rx.try_pop(), Ok(20));
        assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    }

    /// The copying calls access element bytes only as whole 8-byte atomic words (SPEC §1,
    /// byte copies): a producer and a consumer of one process share one mapping, and a forged
    /// stamp or index from another process can send the consumer over a slot the producer is
    /// writing; plain `ptr::read`/`ptr::write` of `T` would then be a data race in this
    /// process. (Review finding: nothing was traced, the element was written and read with
    /// plain accesses.)
    #[test]
    fn copying_calls_access_element_bytes_only_as_atomic_words() {
        use crate::os::atomic_copy::trace;
        fn check<T: Element + Copy + PartialEq + std::fmt::Debug>(v: T) {
            let q = Queue::<T>::with_capacity(4);
            let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
            let data = q.ring.data() as usize;
            let len = (q.ring.capacity * slot_size(std::mem::size_of::<T>() as u64)) as usize;
            let ok = |log: &[(usize, usize)], what: &str| {
                assert!(
                    !log.is_empty(),
                    "{what}: no atomic access to the element traced"
                );
                for &(at, size) in log {
                    let off = at.wrapping_sub(data);
                    assert!(
                        off < len && size == 8 && off % 8 == 0,
                        "{what}: {size} at {off}"
                    );
                }
            };
            trace::start();
            tx.try_push(v).unwrap();
            ok(&trace::stop(), "try_push");
            trace::start();
            assert_eq!(rx.try_pop(), Ok(v));
            ok(&trace::stop(), "try_pop");
            trace::start();
            assert_eq!(tx.try_push_slice(&[v, v]), Ok(2));
            ok(&trace::stop(), "try_push_slice");
            let mut out = [v; 2];
            trace::start();
            assert_eq!(rx.try_pop_slice(&mut out), Ok(2));
            ok(&trace::stop(), "try_pop_slice");
            assert_eq!(out, [v, v]);
        }
        check(7u64);
        check([3u8; 12]);
        check([9u16; 3]);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// The endpoint models' set-up: a two-slot queue with its producer and consumer attached
    /// here, and a second handle to the queue for the thread that attaches a new producer.
    fn attached_pair() -> (std::sync::Arc<Queue<u32>>, Producer<u32>, Consumer<u32>) {
        let q = std::sync::Arc::new(Queue::<u32>::with_capacity(2));
        let (tx, rx) = (q.producer().unwrap(), q.consumer().unwrap());
        (q, tx, rx)
    }

    #[test]
    fn loom_blocking_push_pop_in_order_across_the_wrap() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut tx = q.producer().unwrap();
            let mut rx = q.consumer().unwrap();
            let h = loom::thread::spawn(move || {
                for i in 0..3 {
                    tx.push(i).unwrap();
                }
                // Dropping only detaches; closing ends the consumer's stream.
                tx.close();
            });
            for i in 0..3 {
                assert_eq!(rx.pop(), Ok(i));
            }
            h.join().unwrap();
            assert_eq!(rx.pop(), Err(PopError::Disconnected));
        });
    }

    /// The stamp protocol alone (polling on both sides, no waits): three elements through two
    /// slots, so the third reuses slot 0 and its stamp goes from 1 to 3; the consumer never
    /// takes the old stamp for the new element, and sees each element's bytes.
    #[test]
    fn loom_polled_stamps_across_the_wrap() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut tx = q.producer().unwrap();
            let mut rx = q.consumer().unwrap();
            let h = loom::thread::spawn(move || {
                for i in 10..13 {
                    let mut v = i;
                    loop {
                        match tx.try_push(v) {
                            Ok(()) => break,
                            Err(TryPushError::Full(x)) => v = x,
                            Err(e) => panic!("{e:?}"),
                        }
                        loom::thread::yield_now();
                    }
                }
                tx
            });
            for i in 10..13 {
                loop {
                    match rx.try_pop() {
                        Ok(v) => {
                            assert_eq!(v, i);
                            break;
                        }
                        Err(TryPopError::Empty) => loom::thread::yield_now(),
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            drop(h.join().unwrap());
        });
    }

    /// A consumer blocked in `peek` on an empty ring is woken by a commit through a guard:
    /// the producer's plain-load check of `consumer_waiting` never misses it.
    #[test]
    fn loom_a_blocked_consumer_is_woken() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut tx = q.producer().unwrap();
            let mut rx = q.consumer().unwrap();
            let h = loom::thread::spawn(move || {
                let mut w = tx.try_reserve().unwrap();
                *w = 5;
                w.commit();
                tx
            });
            let r = rx.peek().unwrap();
            assert_eq!(*r, 5);
            r.release();
            drop(h.join().unwrap());
        });
    }

    /// A producer blocked on a full ring is woken by a pop: the consumer's plain-load check
    /// of `producer_waiting` never misses it.
    #[test]
    fn loom_a_full_ring_wakes_its_producer() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut tx = q.producer().unwrap();
            let mut rx = q.consumer().unwrap();
            tx.try_push(1).unwrap();
            tx.try_push(2).unwrap();
            let h = loom::thread::spawn(move || {
                tx.push(3).unwrap();
                tx
            });
            assert_eq!(rx.try_pop(), Ok(1));
            let tx = h.join().unwrap();
            assert_eq!(rx.try_pop(), Ok(2));
            assert_eq!(rx.try_pop(), Ok(3));
            drop(tx);
        });
    }

    /// A producer killed after publishing element 0's stamp and before its tail store
    /// (`publish`), its role still held: a new producer takes the role over
    /// (`RoleSlot::claim` steals from the dead token, `ProdEnd::attach` steps over the
    /// published run) while the consumer polls. Whether the consumer popped element 0 before
    /// the attach read `head` or not, the new producer's element goes after it: the consumer
    /// receives 10 then 20, never 20 over 10 (the shadow cells make a reuse of slot 0 a loom
    /// data race). `Disconnected` is allowed while the dead holder still holds the role.
    #[test]
    fn loom_a_dead_producers_role_is_taken_over_after_its_published_run() {
        crate::queue::loom_model(|| {
            let q = std::sync::Arc::new(Queue::<u64>::with_capacity(2));
            let ring = &*q.ring;
            ring.ctrl()
                .geo
                .producer
                .claim(crate::queue::role::LOOM_DEAD)
                .unwrap();
            // SAFETY: slot 0 < capacity of a heap queue no other thread sees yet.
            unsafe { crate::queue::store_elem(elem_of::<u64>(ring, 0).cast(), &10u64) };
            ring.region.shadow_write(0);
            stamp(ring, TypedLayout::<u64>::NEW, 0).store(1, Ordering::Release);
            let mut rx = q.consumer().unwrap();
            let q2 = std::sync::Arc::clone(&q);
            let h = loom::thread::spawn(move || {
                let mut tx = q2.producer().expect("the role of a dead producer");
                tx.try_push(20).unwrap();
                tx
            });
            crate::queue::loom_pop_each(|| rx.try_pop(), [10, 20]);
            drop(h.join().unwrap());
        });
    }

    /// A close racing a new handle's attach (SPSC: the closer sets the bit while it holds
    /// the role, then releases it, `Endpoint::close`): if the new producer attached, the
    /// side is open once it only detaches (detach is not close), and the consumer sees
    /// `Empty`; if the attach found the role busy, the close stands (`Disconnected`).
    #[test]
    fn loom_a_close_racing_an_attach_leaves_the_side_open_for_the_new_handle() {
        crate::queue::loom_model(|| {
            let (q2, mut tx, mut rx) = attached_pair();
            let h = loom::thread::spawn(move || q2.producer().map(drop).is_ok());
            tx.close();
            let attached = h.join().unwrap();
            let want = if attached {
                Err(TryPopError::Empty)
            } else {
                Err(TryPopError::Disconnected)
            };
            assert_eq!(rx.try_pop(), want);
        });
    }

    /// Detach is not close: the last producer drops its handle while the consumer is
    /// blocked; the consumer waits on (never `Disconnected`) and receives from the next
    /// producer, whose attach reopens nothing that was closed.
    #[test]
    fn loom_a_detached_producer_leaves_the_consumer_waiting_for_the_next() {
        crate::queue::loom_model(|| {
            let (q2, mut tx, mut rx) = attached_pair();
            let h = loom::thread::spawn(move || {
                tx.try_push(1).unwrap();
                drop(tx);
                let mut tx = q2.producer().unwrap();
                tx.try_push(2).unwrap();
            });
            assert_eq!(rx.pop(), Ok(1));
            assert_eq!(rx.pop(), Ok(2));
            h.join().unwrap();
        });
    }

    /// A polling consumer's liveness check (`Endpoint::peer_dead`, due at its first poll)
    /// races a producer that closes and a new producer that attaches and pushes: whatever
    /// the check saw, once the new producer is attached and alive the consumer receives its
    /// element and then sees `Empty`, never `Disconnected` (the check remembers a holder as
    /// dead only if it judged that holder's word dead).
    #[test]
    fn loom_a_liveness_check_racing_a_close_and_an_attach_does_not_condemn_the_new_producer() {
        crate::queue::loom_model(|| {
            let (q2, mut tx, mut rx) = attached_pair();
            let h = loom::thread::spawn(move || {
                tx.close();
                let mut tx = q2.producer().unwrap();
                tx.try_push(5).unwrap();
                tx
            });
            let first = rx.try_pop();
            let tx = h.join().unwrap();
            if first != Ok(5) {
                assert_eq!(rx.try_pop(), Ok(5));
            }
            assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
            drop(tx);
        });
    }

    #[test]
    fn loom_close_wakes_a_blocked_consumer() {
        crate::queue::loom_model(|| {
            let q = Queue::<u32>::with_capacity(2);
            let mut tx = q.producer().unwrap();
            let mut rx = q.consumer().unwrap();
            let h = loom::thread::spawn(move || {
                tx.try_push(1).unwrap();
                tx.close();
            });
            assert_eq!(rx.pop(), Ok(1));
            assert_eq!(rx.pop(), Err(PopError::Disconnected));
            h.join().unwrap();
        });
    }
}
