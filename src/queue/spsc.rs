//! [`Queue`]: a bounded single-producer single-consumer queue of `T` in shared memory.
//!
//! The ring (`SPEC.md` §7.2) is a power-of-two array of slots with two monotonic 64-bit
//! counters on separate cache lines: `tail` (written by the producer) and `head` (written by
//! the consumer). Each end keeps a private copy of the other's counter and refreshes it only
//! when the ring looks full (producer) or empty (consumer), so in steady state an end touches
//! the other's cache line once per batch, not once per element (the rtrb design).
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{AttachError, PopError, PushError, Role, TryPopError, TryPushError};
use super::ring::{Expect, Ring, Side, Wake};
use super::stat::{QueueStat, Stat};
use super::Element;
use crate::loom::Ordering;
use crate::segment::fingerprint;
use crate::Kind;

/// Layout fingerprint of an SPSC queue of `elem_size`-byte elements.
pub fn layout_fingerprint(elem_size: u64) -> u64 {
    fingerprint(format!("shmkit spsc v1 elem_size={elem_size}").as_bytes())
}

#[cfg_attr(loom, allow(dead_code))]
fn expect<T>() -> Expect {
    let size = std::mem::size_of::<T>() as u64;
    Expect {
        kind: Kind::SPSC_QUEUE,
        fingerprint: layout_fingerprint(size),
        elem_size: Some(size),
        min_capacity: 2,
    }
}

fn check_type<T>(name: &str) -> crate::Result<()> {
    let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    if size == 0 || size > 1 << 20 || align > 128 {
        return Err(crate::Error::invalid(
            name,
            format!("element type of {size} bytes, alignment {align}: need 1..=1 MiB and alignment <= 128"),
        ));
    }
    Ok(())
}

/// A bounded SPSC queue of `T` living in a named shared-memory segment (or, from
/// [`with_capacity`](Self::with_capacity), on this process's heap).
///
/// `Queue` is the attachment to the segment; push through its one [`Producer`] and pop
/// through its one [`Consumer`]. A second producer (or consumer) anywhere on the machine is
/// refused with [`AttachError::Busy`] until the holder drops its handle, closes it, or dies.
///
/// `T` is plain data (zerocopy's `FromBytes + IntoBytes + Immutable`): every byte pattern is
/// a valid `T`, so a value read from memory another process wrote is always a valid value.
///
/// # Shared memory is shared
///
/// Any process that can open the name can write the ring. The indices are read once per
/// refresh, checked (`0 <= tail - head <= capacity`) and a violation reported as `Corrupt`;
/// slot positions are masked, so no access leaves the data area. A hostile writer can still
/// change element bytes while they are copied out (the copy may then hold garbage, never an
/// invalid `T`).
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
    /// Create the named queue with `capacity` slots (a power of two, at least 2). Fails with
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name is taken.
    #[cfg(not(loom))]
    pub fn create(name: &str, capacity: u64) -> crate::Result<Self> {
        check_type::<T>(name)?;
        let align = std::mem::align_of::<T>() as u64;
        Ok(Self::wrap(Ring::create(
            name,
            expect::<T>(),
            capacity,
            align,
            false,
        )?))
    }

    /// Open the named queue; its element size must be `size_of::<T>()`.
    ///
    /// ```
    /// use shmkit::queue::spsc::Queue;
    /// # let name = format!("doc-spsc-open-{}", std::process::id());
    /// let a = Queue::<u32>::create(&name, 8)?;
    /// a.set_unlink_on_drop(true);
    /// let b = Queue::<u32>::open(&name)?;
    /// assert_eq!(b.capacity(), 8);
    /// assert!(Queue::<u64>::open(&name).is_err()); // another element size
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn open(name: &str) -> crate::Result<Self> {
        check_type::<T>(name)?;
        Ok(Self::wrap(Ring::open(name, expect::<T>())?))
    }

    /// Open the named queue, or create it with `capacity` slots if it does not exist
    /// (race-free between processes). An existing queue must have this capacity and element
    /// size, or the open fails.
    #[cfg(not(loom))]
    pub fn open_or_create(name: &str, capacity: u64) -> crate::Result<Self> {
        check_type::<T>(name)?;
        let align = std::mem::align_of::<T>() as u64;
        Ok(Self::wrap(Ring::create(
            name,
            expect::<T>(),
            capacity,
            align,
            true,
        )?))
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
        super::ring::check_capacity("(private)", capacity, 2).expect("capacity");
        let size = std::mem::size_of::<T>() as u64;
        Self::wrap(Ring::heap(
            capacity,
            size,
            std::mem::align_of::<T>() as u64,
            0,
        ))
    }

    fn wrap(ring: Ring) -> Self {
        Queue {
            ring: Arc::new(ring),
            _t: PhantomData,
        }
    }

    /// Attach as the queue's producer.
    pub fn producer(&self) -> Result<Producer<T>, AttachError> {
        let side = Side::attach(Arc::clone(&self.ring), Role::Producer)?;
        let ctrl = self.ring.ctrl();
        // Acquire: pairs with the previous producer's Release stores of tail (we resume
        // after its last published element) and the consumer's Release stores of head.
        let tail = ctrl.prod.tail.load(Ordering::Acquire);
        let head = ctrl.cons.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.ring.capacity {
            return Err(crate::Error::corrupt(
                self.name(),
                format!("tail {tail} - head {head} exceeds the capacity"),
            )
            .into());
        }
        Ok(Producer {
            side,
            tail,
            head_cache: head,
            mask: self.ring.mask,
            cap: self.ring.capacity,
            _t: PhantomData,
        })
    }

    /// Attach as the queue's consumer.
    pub fn consumer(&self) -> Result<Consumer<T>, AttachError> {
        let side = Side::attach(Arc::clone(&self.ring), Role::Consumer)?;
        // Acquire: pairs with the previous consumer's Release stores of head.
        let head = self.ring.ctrl().cons.head.load(Ordering::Acquire);
        Ok(Consumer {
            side,
            head,
            tail_cache: head,
            mask: self.ring.mask,
            cap: self.ring.capacity,
            _t: PhantomData,
        })
    }
}

impl<T> Queue<T> {
    /// Slots in the ring.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity
    }

    /// Elements in the ring now (a snapshot: it may change as soon as it is read).
    pub fn len(&self) -> u64 {
        self.ring.len()
    }

    /// Whether the ring is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() == self.ring.capacity
    }

    /// The segment name (`(private)` for a heap queue).
    pub fn name(&self) -> &str {
        self.ring.region.name()
    }

    /// Unlink the segment when the last handle of this queue in this process (the queue,
    /// its producer or consumer) drops.
    pub fn set_unlink_on_drop(&self, yes: bool) {
        self.ring.region.set_unlink_on_drop(yes)
    }

    /// Capacity, length, and the attached producer and consumer with their liveness.
    pub fn stat(&self) -> QueueStat {
        Stat::ring(&self.ring, crate::Kind::SPSC_QUEUE)
    }
}

/// The pushing end of an SPSC [`Queue`]. `Send`, not `Sync`: one thread pushes at a time.
/// Dropping it closes the producer end (see [`close`](Self::close)).
pub struct Producer<T> {
    side: Side,
    /// Our tail: the only writer, so the shared copy is never read back.
    tail: u64,
    /// Last head seen; refreshed only when the ring looks full.
    head_cache: u64,
    mask: u64,
    cap: u64,
    _t: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::Producer")
            .field("tail", &self.tail)
            .finish()
    }
}

enum Fail {
    Busy,
    Disconnected,
    Corrupt,
}

impl<T: Element> Producer<T> {
    #[inline]
    fn slot(&self, pos: u64) -> *mut T {
        // SAFETY: `pos & mask < capacity`, and the data area holds `capacity` elements of
        // `size_of::<T>()` bytes (validated at attach), aligned to 128 >= align_of::<T>().
        unsafe {
            self.side
                .ring
                .data()
                .cast::<T>()
                .add((pos & self.mask) as usize)
        }
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
        // Acquire pairs with the consumer's Release store of head in `Consumer::advance`:
        // it finished reading the slots it released before we overwrite them.
        let head = self.side.ring.ctrl().cons.head.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.cap {
            return Err(Fail::Corrupt);
        }
        self.head_cache = head;
        let free = self.cap - used;
        if free > 0 {
            return Ok(free);
        }
        if self.side.peer_gone() {
            return Err(Fail::Disconnected);
        }
        Err(Fail::Busy)
    }

    #[inline]
    fn publish(&mut self, n: u64) {
        self.tail = self.tail.wrapping_add(n);
        let ctrl = self.side.ring.ctrl();
        // Release pairs with the consumer's Acquire load of tail in `Consumer::avail`: the
        // element bytes written before are visible to it.
        ctrl.prod.tail.store(self.tail, Ordering::Release);
        ctrl.prod.not_empty.notify_one();
    }

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
        match self.space(1) {
            Ok(_) => {}
            Err(Fail::Busy) => return Err(TryPushError::Full(value)),
            Err(Fail::Disconnected) => return Err(TryPushError::Disconnected(value)),
            Err(Fail::Corrupt) => return Err(TryPushError::Corrupt(value)),
        }
        // SAFETY: the slot at `tail` is free (tail - head < capacity): the consumer does not
        // read it until we publish, and it is in bounds and aligned (see `slot`).
        unsafe { self.slot(self.tail).write(value) };
        self.publish(1);
        Ok(())
    }

    /// Push `value`, waiting up to `timeout` (`None`: no limit) for room: a short spin, then
    /// a futex sleep. Returns [`PushError::Disconnected`] once the consumer closes its end or
    /// is found dead (checked at least every 20 ms while waiting), never hangs on a dead peer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmkit::queue::{spsc::Queue, PushError};
    /// let q = Queue::<u32>::with_capacity(2);
    /// let mut tx = q.producer().unwrap();
    /// tx.push(1, None).unwrap();
    /// tx.push(2, None).unwrap();
    /// assert_eq!(tx.push(3, Some(Duration::from_millis(5))), Err(PushError::Timeout(3)));
    /// ```
    pub fn push(&mut self, mut value: T, timeout: Option<Duration>) -> Result<(), PushError<T>> {
        let deadline = crate::os::deadline::after(timeout);
        loop {
            match self.try_push(value) {
                Ok(()) => return Ok(()),
                Err(TryPushError::Full(v)) => value = v,
                Err(TryPushError::Disconnected(v)) => return Err(PushError::Disconnected(v)),
                Err(TryPushError::Corrupt(v)) => return Err(PushError::Corrupt(v)),
            }
            let side = &self.side;
            let limit = self.tail.wrapping_sub(self.cap);
            // Acquire: as in `space`.
            let ready = || side.ring.ctrl().cons.head.load(Ordering::Acquire) != limit;
            match side.wait(&side.ring.ctrl().cons.not_full, ready, deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PushError::Timeout(value)),
                Wake::PeerDead => return Err(PushError::Disconnected(value)),
            }
        }
    }

    /// Close the producer end and free the role: the consumer pops what is left, then gets
    /// `Disconnected`; this handle's pushes fail with `Disconnected`. A new producer may
    /// attach afterwards (which reopens the queue). Dropping the producer closes it too.
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
        self.side.close()
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Elements in the ring now (a snapshot: the consumer may pop at any time, so the true
    /// length can only be smaller by the time this returns).
    pub fn len(&self) -> u64 {
        self.side.ring.len()
    }

    /// Whether the ring is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full now (a snapshot; it may have room by the time this returns).
    pub fn is_full(&self) -> bool {
        self.len() == self.cap
    }
}

impl<T: Element + Copy> Producer<T> {
    /// Push as many of `items` as fit, in order, with one index publication and one
    /// notification; returns how many were pushed (at least 1), or `Full(())` if none fit.
    pub fn try_push_slice(&mut self, items: &[T]) -> Result<usize, TryPushError<()>> {
        if items.is_empty() {
            return Ok(0);
        }
        let free = match self.space((items.len() as u64).min(self.cap)) {
            Ok(f) => f,
            Err(Fail::Busy) => return Err(TryPushError::Full(())),
            Err(Fail::Disconnected) => return Err(TryPushError::Disconnected(())),
            Err(Fail::Corrupt) => return Err(TryPushError::Corrupt(())),
        };
        let n = (items.len() as u64).min(free) as usize;
        let start = (self.tail & self.mask) as usize;
        let first = n.min(self.cap as usize - start);
        // SAFETY: slots [tail, tail + n) are free (n <= free) and, split at the ring's end,
        // lie in bounds; the source is a distinct local slice; T: Copy.
        unsafe {
            std::ptr::copy_nonoverlapping(items.as_ptr(), self.slot(self.tail), first);
            std::ptr::copy_nonoverlapping(items.as_ptr().add(first), self.slot(0), n - first);
        }
        self.publish(n as u64);
        Ok(n)
    }

    /// Push all of `items`, waiting (as [`push`](Self::push) does) for room as needed.
    /// On timeout or disconnection the error holds how many were pushed.
    pub fn push_slice(
        &mut self,
        mut items: &[T],
        timeout: Option<Duration>,
    ) -> Result<(), PushError<usize>> {
        let deadline = crate::os::deadline::after(timeout);
        let total = items.len();
        while !items.is_empty() {
            match self.try_push_slice(items) {
                Ok(n) => items = &items[n..],
                Err(TryPushError::Full(())) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if let Err(e) = self.push(items[0], left) {
                        let done = total - items.len();
                        return Err(match e {
                            PushError::Timeout(_) => PushError::Timeout(done),
                            PushError::Disconnected(_) => PushError::Disconnected(done),
                            PushError::Corrupt(_) => PushError::Corrupt(done),
                        });
                    }
                    items = &items[1..];
                }
                Err(TryPushError::Disconnected(())) => {
                    return Err(PushError::Disconnected(total - items.len()))
                }
                Err(TryPushError::Corrupt(())) => {
                    return Err(PushError::Corrupt(total - items.len()))
                }
            }
        }
        Ok(())
    }
}

/// The popping end of an SPSC [`Queue`]. `Send`, not `Sync`. Dropping it closes the consumer
/// end (see [`close`](Self::close)).
pub struct Consumer<T> {
    side: Side,
    /// Our head: the only writer.
    head: u64,
    /// Last tail seen; refreshed only when the ring looks empty.
    tail_cache: u64,
    mask: u64,
    cap: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("spsc::Consumer")
            .field("head", &self.head)
            .finish()
    }
}

impl<T: Element> Consumer<T> {
    #[inline]
    fn slot(&self, pos: u64) -> *const T {
        // SAFETY: as in `Producer::slot`.
        unsafe {
            self.side
                .ring
                .data()
                .cast::<T>()
                .add((pos & self.mask) as usize)
        }
    }

    /// Elements available (at least 1, and `want` if that many are published), refreshing the
    /// tail only when the cached count falls short.
    #[inline]
    fn avail(&mut self, want: u64) -> Result<u64, TryPopError> {
        if self.side.is_closed() {
            return Err(TryPopError::Disconnected);
        }
        let avail = self.tail_cache.wrapping_sub(self.head);
        if avail >= want {
            return Ok(avail);
        }
        let n = self.refresh()?;
        if n > 0 {
            return Ok(n);
        }
        if self.side.peer_gone() {
            // The peer closed (Acquire in peer_closed) or died: a reload now sees its final
            // tail, so what is left is drained before Disconnected.
            return match self.refresh()? {
                0 => Err(TryPopError::Disconnected),
                n => Ok(n),
            };
        }
        Err(TryPopError::Empty)
    }

    #[inline]
    fn refresh(&mut self) -> Result<u64, TryPopError> {
        // Acquire pairs with the producer's Release store of tail in `Producer::publish`: the
        // element bytes before it are visible.
        let tail = self.side.ring.ctrl().prod.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(self.head);
        if n > self.cap {
            return Err(TryPopError::Corrupt);
        }
        self.tail_cache = tail;
        Ok(n)
    }

    #[inline]
    fn advance(&mut self, n: u64) {
        self.head = self.head.wrapping_add(n);
        let ctrl = self.side.ring.ctrl();
        // Release pairs with the producer's Acquire load of head in `Producer::space`: we
        // are done reading the released slots.
        ctrl.cons.head.store(self.head, Ordering::Release);
        ctrl.cons.not_full.notify_one();
    }

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
        self.avail(1)?;
        // SAFETY: the slot at `head` was published (head < tail, Acquire in `refresh`) and
        // the producer does not write it until we advance; in bounds and aligned (`slot`).
        // Any bytes are a valid T (FromBytes).
        let v = unsafe { self.slot(self.head).read() };
        self.advance(1);
        Ok(v)
    }

    /// Pop, waiting up to `timeout` (`None`: no limit) for an element: a short spin, then a
    /// futex sleep. `Err(Disconnected)` once the queue is empty and the producer closed or
    /// is found dead (checked at least every 20 ms while waiting); never hangs on a dead peer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmkit::queue::{spsc::Queue, PopError};
    /// let q = Queue::<u64>::with_capacity(8);
    /// let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    /// std::thread::scope(|s| {
    ///     s.spawn(move || tx.push(5, None).unwrap());
    ///     assert_eq!(rx.pop(Some(Duration::from_secs(10))), Ok(5));
    /// });
    /// assert_eq!(rx.pop(Some(Duration::from_millis(1))), Err(PopError::Disconnected));
    /// ```
    pub fn pop(&mut self, timeout: Option<Duration>) -> Result<T, PopError> {
        let deadline = crate::os::deadline::after(timeout);
        loop {
            match self.try_pop() {
                Ok(v) => return Ok(v),
                Err(TryPopError::Empty) => {}
                Err(e) => return Err(e.into()),
            }
            match self.wait_nonempty(deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PopError::Timeout),
                Wake::PeerDead => {
                    return match self.try_pop() {
                        Ok(v) => Ok(v),
                        Err(TryPopError::Corrupt) => Err(PopError::Corrupt),
                        Err(_) => Err(PopError::Disconnected),
                    }
                }
            }
        }
    }

    fn wait_nonempty(&self, deadline: Option<Instant>) -> Wake {
        let side = &self.side;
        let head = self.head;
        // Acquire: as in `refresh`.
        let ready = || side.ring.ctrl().prod.tail.load(Ordering::Acquire) != head;
        side.wait(&side.ring.ctrl().prod.not_empty, ready, deadline)
    }

    /// Close the consumer end and free the role: the producer's pushes then fail with
    /// `Disconnected`. What is left in the ring stays for the next consumer. Dropping the
    /// consumer closes it too.
    pub fn close(&mut self) {
        self.side.close()
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Elements in the ring now (a snapshot: the producer may push at any time, so the true
    /// length can only be larger by the time this returns).
    pub fn len(&self) -> u64 {
        self.side.ring.len()
    }

    /// Whether the ring is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() == self.cap
    }
}

impl<T: Element + Copy> Consumer<T> {
    /// Pop up to `out.len()` elements in order into `out`, with one index publication;
    /// returns how many (at least 1 unless `out` is empty), or `Empty`/`Disconnected`.
    pub fn try_pop_slice(&mut self, out: &mut [T]) -> Result<usize, TryPopError> {
        if out.is_empty() {
            return Ok(0);
        }
        let avail = self.avail((out.len() as u64).min(self.cap))?;
        let n = (out.len() as u64).min(avail) as usize;
        let start = (self.head & self.mask) as usize;
        let first = n.min(self.cap as usize - start);
        // SAFETY: slots [head, head + n) are published and ours until we advance; split at
        // the ring's end they lie in bounds; the destination is a distinct local slice.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slot(self.head), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.slot(0), out.as_mut_ptr().add(first), n - first);
        }
        self.advance(n as u64);
        Ok(n)
    }

    /// Pop at least one element into `out` (up to `out.len()`), waiting up to `timeout`.
    pub fn pop_slice(
        &mut self,
        out: &mut [T],
        timeout: Option<Duration>,
    ) -> Result<usize, PopError> {
        let deadline = crate::os::deadline::after(timeout);
        loop {
            match self.try_pop_slice(out) {
                Ok(n) => return Ok(n),
                Err(TryPopError::Empty) => {}
                Err(e) => return Err(e.into()),
            }
            match self.wait_nonempty(deadline) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PopError::Timeout),
                Wake::PeerDead => {
                    return match self.try_pop_slice(out) {
                        Ok(n) => Ok(n),
                        Err(TryPopError::Corrupt) => Err(PopError::Corrupt),
                        Err(_) => Err(PopError::Disconnected),
                    }
                }
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn loom_blocking_push_pop_in_order_across_the_wrap() {
        crate::queue::loom_model(|| {
            let q = Queue::<u64>::with_capacity(2);
            let mut tx = q.producer().unwrap();
            let mut rx = q.consumer().unwrap();
            let h = loom::thread::spawn(move || {
                for i in 0..3 {
                    tx.push(i, None).unwrap();
                }
            });
            for i in 0..3 {
                assert_eq!(rx.pop(None), Ok(i));
            }
            h.join().unwrap();
            assert_eq!(rx.pop(None), Err(PopError::Disconnected));
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
            assert_eq!(rx.pop(None), Ok(1));
            assert_eq!(rx.pop(None), Err(PopError::Disconnected));
            h.join().unwrap();
        });
    }
}
