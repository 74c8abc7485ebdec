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
#[cfg(not(loom))]
use super::error::{check_len, RawError};
use super::error::{AttachError, PopError, PushError, Role, TryPopError, TryPushError};
#[cfg(not(loom))]
use super::forms::raw_queue_basics;
use super::forms::{fixed_queue_accessors, queue_constructors};
use super::geometry::{check_capacity, check_type};
#[cfg(not(loom))]
use super::geometry::{check_recorded, Recorded, Rules};
#[cfg(not(loom))]
use super::options::{self, How};
use super::region::Region;
use super::role::{self, RoleSlot};
use super::stat::{Attached, LenUnit, QueueStat};
#[cfg(not(loom))]
use super::RawLayout;
use super::{ElemLayout, Element, ShmType, TypeId, TypeTag, TypedLayout};
use crate::loom::{fence, AtomicU64, Ordering};
use crate::os::deadline::blocking_forms;
use crate::segment::fingerprint;
use crate::sync::WaitQueue;
use crate::Kind;
use crate::Liveness;

pub(crate) mod layout;

#[cfg(not(loom))]
pub(crate) use layout::stat_named;
pub(crate) use layout::wake_count;
use layout::*;
pub use layout::{layout_fingerprint, MAX_HANDLES};
#[cfg(not(loom))]
use protocol::TakeRaw;
use protocol::{elem_bytes, Attempt, TakeTyped};
#[cfg(all(test, loom))]
mod loom_tests;
mod protocol;
mod recovery;
#[cfg(all(test, not(loom)))]
mod tests;

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
            self.e.h.close()
        }

        /// Elements in the queue now (a snapshot).
        pub fn len(&self) -> u64 {
            self.e.h.q.len()
        }

        /// Whether the queue is empty now (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the queue is full now (a snapshot).
        pub fn is_full(&self) -> bool {
            self.len() == self.e.h.q.capacity
        }
    };
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
/// bytes while they are copied (never producing an invalid `T`); elements are copied with
/// whole-word atomics only (`SPEC.md` §1, byte copies), so a forged stamp that sends a
/// consumer of this process over a slot a producer of this process is writing is no data
/// race.
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
    queue_constructors! {
        what: "queue", capacity: "slots (a power of two, at least 2)",
        ///
        /// ```
        /// use shmkit::queue::mpmc::Queue;
        /// # let name = format!("doc-mpmc-options-{}", std::process::id());
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
        /// use shmkit::queue::mpmc::Queue;
        /// # let name = format!("doc-mpmc-open-{}", std::process::id());
        /// let a = Queue::<i64>::options().unlink_on_drop(true).create(&name, 8)?;
        /// assert_eq!(Queue::<i64>::open(&name)?.capacity(), 8);
        /// let e = Queue::<u64>::open(&name).unwrap_err();
        /// assert!(e.to_string().contains("i64") && e.to_string().contains("u64"));
        /// # drop(a);
        /// # Ok::<(), shmkit::Error>(())
        /// ```
        open;
    }

    #[cfg(not(loom))]
    fn build_with(seg: &crate::SegmentOptions, name: &str, how: How) -> crate::Result<Self> {
        check_type::<T>(name)?;
        let size = std::mem::size_of::<T>() as u64;
        let align = std::mem::align_of::<T>() as u64;
        let shared = match how {
            How::Create(cap) => make(seg, name, cap, false, &TypeId::of::<T>()),
            How::OpenOrCreate(cap) => make(seg, name, cap, true, &TypeId::of::<T>()),
            How::Open => seg
                .clone()
                .kind(Kind::MPMC_QUEUE, layout_fingerprint::<T>())
                .open(name)
                .and_then(|s| shared_from_segment(s, Some(size))),
            How::OpenBySize => {
                let shared = options::by_size(
                    name,
                    Kind::MPMC_QUEUE,
                    Some((size, align)),
                    |fp| {
                        let s = seg.clone().kind(Kind::MPMC_QUEUE, fp).open(name)?;
                        shared_from_segment(s, None)
                    },
                    Shared::stored_type,
                    fingerprint_of,
                )?;
                return Self::wrap(name, shared);
            }
        };
        options::typed(
            name,
            "elements",
            &TypeId::of::<T>(),
            shared,
            |fp| stored_type_of(name, fp),
            fingerprint_of,
        )
        .and_then(|shared| Self::wrap(name, shared))
    }

    /// The handle over a validated `shared`, whose slots must be laid out for `T`: the typed
    /// hot paths address slots with [`stride::<T>()`](stride), not `shared.slot`. Every open
    /// path already compared the element size with `T`'s; this keeps the address arithmetic
    /// safe whatever a later change to those paths does.
    #[cfg(not(loom))]
    fn wrap(name: &str, shared: Shared) -> crate::Result<Self> {
        if shared.slot != stride::<T>() {
            return Err(crate::Error::corrupt(
                name,
                format!(
                    "slots of {} bytes, not the {} bytes of {}",
                    shared.slot,
                    stride::<T>(),
                    T::TYPE_NAME
                ),
            ));
        }
        Ok(Queue {
            shared: Arc::new(shared),
            _t: PhantomData,
        })
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
            elem_size: size,
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
            e: ProdEnd {
                h: self.attach(Role::Producer)?,
                lay: TypedLayout::NEW,
            },
        })
    }

    /// Attach a consumer.
    pub fn consumer(&self) -> Result<Consumer<T>, AttachError> {
        Ok(Consumer {
            e: ConsEnd {
                h: self.attach(Role::Consumer)?,
                lay: TypedLayout::NEW,
            },
        })
    }
}

/// Create (`open_existing == false`) or open-or-create the named MPMC queue of `capacity`
/// slots of elements of type `t` (recorded in its type tag).
#[cfg(not(loom))]
fn make(
    seg: &crate::SegmentOptions,
    name: &str,
    capacity: u64,
    open_existing: bool,
    t: &TypeId,
) -> crate::Result<Shared> {
    check_capacity(name, capacity, 2)?;
    let size = t.size;
    let slot = slot_size(size);
    let total = DATA_OFFSET + capacity * slot;
    let opts = seg.clone().kind(Kind::MPMC_QUEUE, fingerprint_of(t));
    let init = |seg: &crate::Segment| {
        // SAFETY: the payload is `total` bytes, 128-aligned; Control is atomics only,
        // valid for any bit pattern.
        let ctrl = unsafe { &*seg.as_mut_ptr().cast::<Control>() };
        ctrl.init(capacity, size, t.align, &t.name);
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

/// The element type recorded by the named MPMC queue whose header fingerprint is `fp`, read
/// through a read-only mapping (to tell a `TypeMismatch` from another layout mismatch).
#[cfg(not(loom))]
fn stored_type_of(name: &str, fp: u64) -> crate::Result<TypeId> {
    let s = crate::Segment::options()
        .read_only()
        .kind(Kind::MPMC_QUEUE, fp)
        .open(name)?;
    let shared = shared_from_segment(s, None)?;
    shared
        .stored_type()
        .map_err(|what| crate::Error::corrupt(name, what))
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
    fixed_queue_accessors!(shared, |q| q.stat());
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

/// A producing handle of an MPMC [`Queue`]. `Send`, not `Sync`. Dropping it detaches it: its
/// claim slot is freed for another producer and the queue stays open, even when it was the
/// last producer (consumers keep waiting for the next one). Consumers drain the queue and
/// then get `Disconnected` only once the last attached producer [`close`](Self::close)s, or
/// every attached producer is dead.
pub struct Producer<T> {
    e: ProdEnd<TypedLayout<T>>,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Producer")
            .field("slot", &self.e.h.slot())
            .finish()
    }
}

/// A producer's claim slot and protocol, generic over the element layout: the typed
/// [`Producer`] and the [`RawProducer`] are this with [`TypedLayout`] and
/// [`RawLayout`](super::RawLayout) (one protocol, instantiated twice).
struct ProdEnd<L> {
    h: Handle,
    lay: L,
}

impl<L: ElemLayout> ProdEnd<L> {
    /// Run `op` (push attempts) once, as a `try_` call: on `Full`, a due liveness check
    /// frees the slot of a consumer that died holding it and notices a gone consumer side.
    fn try_put<R>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<R, Attempt>,
    ) -> Result<R, TryPushError<()>> {
        if self.h.is_closed() || self.h.q.side_gone(Role::Consumer, false) {
            return Err(TryPushError::Disconnected(()));
        }
        match op(self) {
            Ok(r) => Ok(r),
            Err(Attempt::Corrupt) => Err(TryPushError::Corrupt(())),
            Err(a) => {
                if self.h.throttle.due() {
                    if let Attempt::InFlight(prev) = a {
                        self.recover(prev);
                    }
                    if self.h.q.side_gone(Role::Consumer, true) {
                        return Err(TryPushError::Disconnected(()));
                    }
                }
                Err(TryPushError::Full(()))
            }
        }
    }

    /// Run `op` (push attempts) until it succeeds, waiting for room in between until
    /// `deadline`; every 20 ms frees the slot of a consumer that died holding it and
    /// checks whether every consumer is gone (`Disconnected`).
    fn put_within<R>(
        &mut self,
        deadline: Option<Instant>,
        mut op: impl FnMut(&mut Self) -> Result<R, Attempt>,
    ) -> Result<R, PushError<()>> {
        loop {
            if self.h.is_closed() || self.h.q.side_gone(Role::Consumer, false) {
                return Err(PushError::Disconnected(()));
            }
            // Snapshot the head before the attempt: any pop after it changes the head and ends
            // the wait below. Acquire pairs with consumers' head CAS (AcqRel).
            let head0 = self.h.q.ctrl().head.head.load(Ordering::Acquire);
            let prev = match op(self) {
                Ok(r) => return Ok(r),
                Err(Attempt::Corrupt) => return Err(PushError::Corrupt(())),
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
            match endpoint::wait_sliced(
                &sh.ctrl().head.not_full,
                &self.h.spin,
                ready,
                deadline,
                check,
            ) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PushError::Timeout(())),
                Wake::Gone(()) => return Err(PushError::Disconnected(())),
            }
        }
    }
}

impl<T: Element> Producer<T> {
    /// Push `value` if there is room now.
    pub fn try_push(&mut self, value: T) -> Result<(), TryPushError<T>> {
        let src = elem_bytes(&value);
        // SAFETY: `src` is `value`'s `size_of::<T>()` bytes, private.
        match self.e.try_put(|s| unsafe { s.attempt(src) }) {
            Ok(pos) => {
                // The queue holds the bitwise copy now.
                std::mem::forget(value);
                self.e.h.q.wake_consumers(pos);
                Ok(())
            }
            Err(e) => Err(e.map(|()| value)),
        }
    }

    blocking_forms! {
        /// Push `value`, waiting for room; checks every 20 ms whether a consumer died holding
        /// a slot (and frees it) or all consumers are gone (`Disconnected`). Wakes one
        /// sleeping consumer (more only for elements other producers published out of
        /// order), never all of them.
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
        let src = elem_bytes(&value);
        // SAFETY: as in `try_push`.
        match self.e.put_within(deadline, |s| unsafe { s.attempt(src) }) {
            Ok(pos) => {
                // The queue holds the bitwise copy now.
                std::mem::forget(value);
                self.e.h.q.wake_consumers(pos);
                Ok(())
            }
            Err(e) => Err(e.map(|()| value)),
        }
    }

    handle_accessors!("producer");
}

impl<T: Element + Copy> Producer<T> {
    /// Push items in order while there is room, then wake consumers once for the batch;
    /// returns how many were pushed (at least 1), or the error of the first push.
    ///
    /// ```
    /// let q = shmkit::queue::mpmc::Queue::<u8>::with_capacity(4);
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
        let (n, first) = self.e.try_put(|s| s.attempt_many(items))?;
        self.e.h.q.wake_consumers(first);
        Ok(n)
    }

    fn push_slice_within(
        &mut self,
        mut items: &[T],
        deadline: Option<Instant>,
    ) -> Result<(), PushError<usize>> {
        let total = items.len();
        while !items.is_empty() {
            let done = total - items.len();
            let (n, first) = self
                .e
                .put_within(deadline, |s| s.attempt_many(items))
                .map_err(|e| e.map(|()| done))?;
            self.e.h.q.wake_consumers(first);
            items = &items[n..];
        }
        Ok(())
    }

    blocking_forms! {
        /// Push all of `items` in order, waiting (as [`push`](Self::push) does) for room as
        /// needed; each run that fits is published with one wake-up of the consumers. On
        /// timeout or disconnection the error holds how many were pushed.
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
    e: ConsEnd<TypedLayout<T>>,
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Consumer")
            .field("slot", &self.e.h.slot())
            .finish()
    }
}

/// A consumer's claim slot and protocol, generic over the element layout (as [`ProdEnd`]).
struct ConsEnd<L> {
    h: Handle,
    lay: L,
}

impl<L: ElemLayout> ConsEnd<L> {
    /// Run `op` (pop attempts, told whether to classify an empty slot) once, as a `try_`
    /// call. A position claimed by a producer that died before publishing is skipped once
    /// that producer is found dead (a due liveness check); a gone producer side is drained,
    /// then `Disconnected`.
    fn try_take<R>(
        &mut self,
        mut op: impl FnMut(&mut Self, bool) -> Result<R, Attempt>,
    ) -> Result<R, TryPopError> {
        loop {
            if self.h.is_closed() {
                return Err(TryPopError::Disconnected);
            }
            let a = match op(self, false) {
                Ok(r) => return Ok(r),
                Err(Attempt::Corrupt) => return Err(TryPopError::Corrupt),
                Err(a) => a,
            };
            let thorough = self.h.throttle.due();
            // Fast path of a busy poll on an empty queue: unless a thorough check is due or
            // the producer side was closed, both `Blocked` and `InFlight` end in `Empty`
            // below (no recovery without `thorough`; `side_gone(_, false)` is false while
            // the side's closed bit is clear), so skip classifying (a fence and a load of
            // the line producers write). Acquire: as in `side_gone`.
            if !thorough && self.h.q.ctrl().geo.state.load(Ordering::Acquire) & PRODUCER_CLOSED == 0
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
                        continue;
                    }
                }
            }
            if matches!(a, Attempt::Blocked) && self.h.q.side_gone(Role::Producer, thorough) {
                // The side is gone: a re-check drains what it left.
                return match op(self, true) {
                    Ok(r) => Ok(r),
                    Err(Attempt::Corrupt) => Err(TryPopError::Corrupt),
                    Err(_) => Err(TryPopError::Disconnected),
                };
            }
            return Err(TryPopError::Empty);
        }
    }

    /// Run `op` (pop attempts) until it succeeds, waiting for elements in between until
    /// `deadline`; every 20 ms skips a position whose producer died before publishing it, and
    /// checks whether every producer is gone (then drains, then `Disconnected`).
    fn take_within<R>(
        &mut self,
        deadline: Option<Instant>,
        mut op: impl FnMut(&mut Self, bool) -> Result<R, Attempt>,
    ) -> Result<R, PopError> {
        // The last attempt once the producer side is gone: what it left, then Disconnected.
        let drain =
            |s: &mut Self, op: &mut dyn FnMut(&mut Self, bool) -> Result<R, Attempt>| match op(
                s, true,
            ) {
                Ok(r) => Ok(r),
                Err(Attempt::Corrupt) => Err(PopError::Corrupt),
                Err(_) => Err(PopError::Disconnected),
            };
        loop {
            if self.h.is_closed() {
                return Err(PopError::Disconnected);
            }
            // Snapshot the tail before the attempt: any push after it changes the tail and ends
            // the wait below. Acquire pairs with producers' tail CAS (AcqRel).
            let tail0 = self.h.q.ctrl().tail.tail.load(Ordering::Acquire);
            let inflight = match op(self, true) {
                Ok(r) => return Ok(r),
                Err(Attempt::Corrupt) => return Err(PopError::Corrupt),
                // (`Unpublished` comes only from an unclassified consumer attempt; never here.)
                Err(Attempt::Blocked | Attempt::Unpublished { .. }) => None,
                Err(Attempt::InFlight(p)) => Some(p),
            };
            if self.h.q.side_gone(Role::Producer, false) {
                match inflight {
                    // Nothing will be published any more: drain, then Disconnected.
                    None => return drain(self, &mut op),
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
            match endpoint::wait_sliced(
                &sh.ctrl().tail.not_empty,
                &self.h.spin,
                ready,
                deadline,
                check,
            ) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PopError::Timeout),
                Wake::Gone(()) => return drain(self, &mut op),
            }
        }
    }
}

impl<T: Element> Consumer<T> {
    /// Pop the oldest element if there is one. A position claimed by a producer that died
    /// before publishing is skipped once that producer is found dead.
    pub fn try_pop(&mut self) -> Result<T, TryPopError> {
        let (v, pos) = self
            .e
            .try_take(|s, classify| s.attempt(classify, TakeTyped::NEW))?;
        self.e.h.q.wake_producers(pos);
        Ok(v)
    }

    blocking_forms! {
        /// Pop, waiting for an element; checks every 20 ms for dead producers (skipping a
        /// slot one of them claimed and never published) and for all producers gone
        /// (`Disconnected`). Never hangs on a dead peer. Wakes one sleeping producer (more
        /// only for slots other consumers freed out of order), never all of them.
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
        let (v, pos) = self
            .e
            .take_within(deadline, |s, classify| s.attempt(classify, TakeTyped::NEW))?;
        self.e.h.q.wake_producers(pos);
        Ok(v)
    }

    handle_accessors!("consumer");
}

impl<T: Element + Copy> Consumer<T> {
    /// Pop up to `out.len()` elements in order, then wake producers once for the batch;
    /// returns how many (at least 1 unless `out` is empty), or the error of the first pop.
    pub fn try_pop_slice(&mut self, out: &mut [T]) -> Result<usize, TryPopError> {
        if out.is_empty() {
            return Ok(0);
        }
        let (n, first) = self
            .e
            .try_take(|s, classify| s.attempt_many(out, classify))?;
        self.e.h.q.wake_producers(first);
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
        let (n, first) = self
            .e
            .take_within(deadline, |s, classify| s.attempt_many(out, classify))?;
        self.e.h.q.wake_producers(first);
        Ok(n)
    }

    blocking_forms! {
        /// Pop at least one element into `out` (up to `out.len()`, in order), waiting for
        /// the first as [`pop`](Self::pop) does, then wake producers once for the batch;
        /// returns how many.
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

/// An MPMC queue opened whatever its element type (or created with a size chosen at run
/// time), its elements handled as bytes: the same queue, claim slots and protocol as
/// [`Queue`]'s, with [`RawProducer`] and [`RawConsumer`] pushing and popping slices of exactly
/// [`elem_size`](Self::elem_size) bytes (what `shmkit queue push`/`pop` use for every element
/// size). Raw and typed handles attach side by side, in the same claim slots.
///
/// ```
/// use shmkit::queue::mpmc::{Queue, RawQueue};
/// # let name = format!("doc-mpmc-raw-{}", std::process::id());
/// let q = Queue::<[u64; 1024]>::options().unlink_on_drop(true).create(&name, 2)?;
/// let raw = RawQueue::open(&name)?; // any element type
/// assert_eq!(raw.elem_size(), 8192);
/// q.producer()?.try_push([7; 1024]).unwrap();
/// let mut out = vec![0; raw.elem_size()];
/// raw.consumer()?.try_pop_into(&mut out)?;
/// assert_eq!(out[..8], 7u64.to_ne_bytes());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(loom))]
pub struct RawQueue {
    shared: Arc<Shared>,
}

#[cfg(not(loom))]
impl std::fmt::Debug for RawQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::RawQueue")
            .field("name", &self.shared.region.name())
            .field("elem_size", &self.shared.elem_size)
            .field("capacity", &self.shared.capacity)
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
                    Kind::MPMC_QUEUE,
                    None,
                    |fp| {
                        let s = seg.clone().kind(Kind::MPMC_QUEUE, fp).open(name)?;
                        shared_from_segment(s, None)
                    },
                    Shared::stored_type,
                    fingerprint_of,
                )
                .map(Self::wrap)
            }
        };
        let t = options::byte_array(name, elem_size)?;
        let shared = make(seg, name, cap, existing, &t);
        options::typed(
            name,
            "elements",
            &t,
            shared,
            |fp| stored_type_of(name, fp),
            fingerprint_of,
        )
        .map(Self::wrap)
    }
}

#[cfg(not(loom))]
impl RawQueue {
    raw_queue_basics!("MPMC queue", shared: Shared);

    /// Attach a producer, as [`Queue::producer`] does (one of the same claim slots).
    pub fn producer(&self) -> Result<RawProducer, AttachError> {
        Ok(RawProducer {
            e: ProdEnd {
                h: Endpoint::attach(Arc::clone(&self.shared), Role::Producer)?,
                lay: self.layout(),
            },
        })
    }

    /// Attach a consumer, as [`Queue::consumer`] does.
    pub fn consumer(&self) -> Result<RawConsumer, AttachError> {
        Ok(RawConsumer {
            e: ConsEnd {
                h: Endpoint::attach(Arc::clone(&self.shared), Role::Consumer)?,
                lay: self.layout(),
            },
        })
    }

    fixed_queue_accessors!(shared, |q| q.stat());
}

/// A producing handle of a [`RawQueue`]: [`Producer`]'s claim slot and semantics, pushing
/// slices of exactly [`elem_size`](Self::elem_size) bytes (another length is
/// [`RawError::WrongLength`], and nothing is pushed).
#[cfg(not(loom))]
pub struct RawProducer {
    e: ProdEnd<RawLayout>,
}

#[cfg(not(loom))]
impl std::fmt::Debug for RawProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::RawProducer")
            .field("slot", &self.e.h.slot())
            .finish()
    }
}

#[cfg(not(loom))]
impl RawProducer {
    /// Push `elem` (exactly [`elem_size`](Self::elem_size) bytes) if there is room now, as
    /// [`Producer::try_push`].
    pub fn try_push(&mut self, elem: &[u8]) -> Result<(), RawError<TryPushError<()>>> {
        check_len(elem.len(), self.e.lay.size())?;
        let src = elem.as_ptr();
        // SAFETY: `src` is `elem_size` readable bytes (checked), private.
        let pos = self.e.try_put(|s| unsafe { s.attempt(src) })?;
        self.e.h.q.wake_consumers(pos);
        Ok(())
    }

    fn push_within(
        &mut self,
        elem: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), RawError<PushError<()>>> {
        check_len(elem.len(), self.e.lay.size())?;
        let src = elem.as_ptr();
        // SAFETY: as in `try_push`.
        let pos = self.e.put_within(deadline, |s| unsafe { s.attempt(src) })?;
        self.e.h.q.wake_consumers(pos);
        Ok(())
    }

    blocking_forms! {
        /// Push `elem`, waiting for room as [`Producer::push`] does.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{mpmc::RawQueue, PushError, RawError};
        /// # let name = format!("doc-mpmc-rawpush-{}", std::process::id());
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

    handle_accessors!("producer");
}

/// A consuming handle of a [`RawQueue`]: [`Consumer`]'s claim slot and semantics, popping
/// into slices of exactly [`elem_size`](Self::elem_size) bytes (another length is
/// [`RawError::WrongLength`], and nothing is popped).
#[cfg(not(loom))]
pub struct RawConsumer {
    e: ConsEnd<RawLayout>,
}

#[cfg(not(loom))]
impl std::fmt::Debug for RawConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::RawConsumer")
            .field("slot", &self.e.h.slot())
            .finish()
    }
}

#[cfg(not(loom))]
impl RawConsumer {
    /// Pop the oldest element into `out` (exactly [`elem_size`](Self::elem_size) bytes) if
    /// there is one, as [`Consumer::try_pop`].
    pub fn try_pop_into(&mut self, out: &mut [u8]) -> Result<(), RawError<TryPopError>> {
        check_len(out.len(), self.e.lay.size())?;
        let (dst, lay) = (out.as_mut_ptr(), self.e.lay);
        // SAFETY: `dst` is the layout's size of writable bytes (checked), private.
        let take = || unsafe { TakeRaw::new(lay, dst) };
        let ((), pos) = self.e.try_take(|s, classify| s.attempt(classify, take()))?;
        self.e.h.q.wake_producers(pos);
        Ok(())
    }

    fn pop_into_within(
        &mut self,
        out: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<(), RawError<PopError>> {
        check_len(out.len(), self.e.lay.size())?;
        let (dst, lay) = (out.as_mut_ptr(), self.e.lay);
        // SAFETY: as in `try_pop_into`.
        let take = || unsafe { TakeRaw::new(lay, dst) };
        let ((), pos) = self
            .e
            .take_within(deadline, |s, classify| s.attempt(classify, take()))?;
        self.e.h.q.wake_producers(pos);
        Ok(())
    }

    blocking_forms! {
        /// Pop the oldest element into `out`, waiting for one as [`Consumer::pop`] does.
        ///
        /// ```
        /// use std::time::Duration;
        /// use shmkit::queue::{mpmc::RawQueue, PopError, RawError};
        /// # let name = format!("doc-mpmc-rawpop-{}", std::process::id());
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

    handle_accessors!("consumer");
}
