//! [`Subscriber`] and the [`Frame`] guard: reading frames in place.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::channel::Channel;
use super::error::{AttachError, RecvError, TryRecvError};
use super::layout::{Policy, View};
use super::pin::GuardCount;
use super::recovery::clear_pins;
use super::window::{self, Scan, Want, Window};
use crate::os::atomic_copy;
use crate::os::deadline::{self, blocking_forms};
use crate::os::process::Liveness;
use crate::queue::role::{self, Throttle, WAIT_SLICE};
use crate::queue::ShmType;
use crate::sync::waiter::Step;

/// What a subscriber shares with the frames it hands out: the mapping, its record, its
/// process-local guard counts (`pin::GuardCount`: a slot's pin bit is set while its count is
/// non-zero), and per slot what was copied out of the metadata of the frame pinned there.
struct Inner<H> {
    ch: Arc<Channel>,
    rec: u64,
    token: u64,
    counts: Box<[GuardCount]>,
    /// Per slot: the metadata of the frame its pin holds, written by the guard that pinned it
    /// first (`GuardCount::pin`'s `first`, while the count is `LOCKED`) and read by the
    /// `Frame`s of that pin. Never written while a guard of the slot lives: the count is
    /// non-zero then, and only its 0 → 1 transition writes (a guard's reads happen before its
    /// release, which the next transition's Acquire sees).
    held: Box<[UnsafeCell<Held<H>>]>,
}

/// What a [`Frame`] reports, copied out of its slot's metadata when the slot was pinned.
struct Held<H> {
    seq: u64,
    len: usize,
    mono_ns: u64,
    real_ns: u64,
    header: H,
}

// SAFETY: `held` (the only `UnsafeCell`) is written only by the thread that takes a slot's
// first guard, while no guard of that slot exists, and read only through guards of it (the
// count's Acquire/Release order the two; `Inner::held`); everything else is atomics or
// immutable (`Send` is derived). Through a shared `&Inner` one thread reads an `H` that
// another wrote (`H: Sync`), and replaces and drops an `H` that another thread wrote (`H:
// Send`, as for a `Mutex`). No public path shares an `Inner` but through an `Arc`, whose Send and Sync need
// both anyway.
unsafe impl<H: Send + Sync> Sync for Inner<H> {}

// A panic caught around code that uses a guard or a subscriber never leaves a `held` entry half
// written or a count `LOCKED`: both change only inside `GuardCount::pin` and `unpin`, which run
// no user code and do not panic (the `Drop` of a replaced `H` runs after, `Subscriber::frame`).
// Without this the `UnsafeCell` would make `Frame` and `Subscriber` neither `UnwindSafe` nor
// `RefUnwindSafe` (they were both before the guard shared this state).
impl<H: RefUnwindSafe> RefUnwindSafe for Inner<H> {}

// What users and the Python binding rely on: guards and subscribers cross threads, and code
// that reads a frame can run under `catch_unwind`.
const _: fn() = || {
    fn traits<T: Send + Sync + UnwindSafe + RefUnwindSafe>() {}
    traits::<Frame<u64>>();
    traits::<Subscriber<u64>>();
};

impl<H> Inner<H> {
    fn view(&self) -> &View {
        &self.ch.view
    }

    /// Whether the record is this process's: false in a `fork()`ed child that inherited the
    /// handle (or a frame), where the record and its pins are the parent's. One Relaxed load.
    /// Every receive checks it first, so a child never pins through its parent's record (the
    /// parent's unpin could then let the publisher overwrite a frame the child reads).
    #[inline]
    fn is_mine(&self) -> bool {
        role::is_mine(self.token)
    }

    /// What the pin of slot `i` holds; the caller holds a guard of that pin.
    #[inline(always)]
    fn held(&self, i: u64) -> &Held<H> {
        // SAFETY: the caller holds a guard of slot `i` (a `Frame`, or the pin just taken), so
        // the count is non-zero and nothing writes this entry until every guard is released;
        // the write that filled it happened before (`Inner::held`'s field docs).
        unsafe { &*self.held[i as usize].get() }
    }

    /// Release a pin of slot `i` ([`GuardCount::unpin`]).
    #[inline(always)]
    fn unpin(&self, i: u64) {
        let v = self.view();
        self.counts[i as usize].unpin(|| v.pin_of(self.rec, i), &v.ctrl().released);
    }
}

impl<H: ShmType> Inner<H> {
    /// Pin slot `i` holding frame `seq` ([`GuardCount::pin`]); the first guard of the pin
    /// copies the frame's metadata into `held` (read after the pin: made visible by its
    /// Acquire, and stable while pinned by a conforming publisher; a hostile one can only make
    /// the copy wrong, and `len` is bounded).
    ///
    /// If `H` has drop glue, the copy it replaces is moved to `old`, for the caller to drop
    /// once its guard exists: `H`'s `Drop` is the user's code, which must not run while the
    /// count is `LOCKED` (a panic there would leave it locked, and every later pin or unpin of
    /// the slot would spin; code that blocks would hold up the other threads' guards).
    #[inline(always)]
    fn pin(&self, i: u64, seq: u64, old: &mut Option<Held<H>>) -> bool {
        let v = self.view();
        self.counts[i as usize].pin(
            &v.meta(i).seq,
            seq,
            || v.pin_of(self.rec, i),
            &v.ctrl().released,
            || {
                let m = v.meta(i);
                let mut header = H::new_zeroed();
                let hb = header.as_mut_bytes();
                if !hb.is_empty() {
                    // SAFETY: the slot's header words hold header_words * 8 >= size_of::<H>()
                    // bytes (geometry checked against H), 8-aligned, in our mapping; `hb` is
                    // private.
                    unsafe {
                        atomic_copy::load(
                            v.header_word(i, 0).as_ptr().cast(),
                            hb.as_mut_ptr(),
                            hb.len(),
                        )
                    };
                }
                let held = Held {
                    seq,
                    // Relaxed: made visible by the Acquire in the pin.
                    len: m.len.load(Ordering::Relaxed).min(v.g.max_bytes) as usize,
                    mono_ns: m.mono_ns.load(Ordering::Relaxed),
                    real_ns: m.real_ns.load(Ordering::Relaxed),
                    header,
                };
                let entry = self.held[i as usize].get();
                if std::mem::needs_drop::<H>() {
                    // SAFETY: we hold the count LOCKED after the slot's first pin: no guard of
                    // the slot exists, so nothing reads this entry now (`Inner::held`'s field
                    // docs); it is initialized (since `attach`). `*old` is `None` (the caller's),
                    // so assigning it runs no drop.
                    *old = Some(unsafe { std::ptr::replace(entry, held) });
                } else {
                    // SAFETY: as above; the old value's drop does nothing.
                    unsafe { *entry = held };
                }
            },
        )
    }
}

impl<H> Drop for Inner<H> {
    fn drop(&mut self) {
        if !self.is_mine() {
            return; // inherited across fork(): the record is the parent's
        }
        let v = &self.ch.view;
        clear_pins(v, self.rec);
        v.record(self.rec).owner.release(self.token);
        v.ctrl().released.notify_one();
    }
}

/// A subscribing end of a frame channel: receives every frame in order ([`recv`](Self::recv)),
/// or skips to the newest ([`latest`](Self::latest)), at its own pace. Each [`Frame`] it
/// returns pins its slot until dropped. Its view of the frame data is mapped `PROT_READ`.
///
/// `Send` and `Sync` when `H` is `Send + Sync`; the blocking calls take `&mut self`.
/// Frames may outlive the subscriber (they keep the mapping and the record alive).
///
/// A handle inherited across `fork()` is its parent's: in the child every receive fails at
/// once with [`TryRecvError::Inherited`] / [`RecvError::Inherited`] (and
/// [`newest`](Self::newest) is `None`), and dropping it there leaves the record and its pins
/// to the parent. A child attaches its own subscriber.
pub struct Subscriber<H> {
    inner: Arc<Inner<H>>,
    cursor: u64,
    /// What attaching saw, until the cursor passes its `top` (then empty).
    window: Window,
    lost: u64,
    /// Frames received (mirrored into the record for `stat`; only we write it).
    received: u64,
    /// Where the next scan starts: the slot after the last frame received's.
    next_slot: u64,
    throttle: Throttle,
    _h: PhantomData<fn() -> H>,
}

impl<H> std::fmt::Debug for Subscriber<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::Subscriber")
            .field("name", &self.inner.ch.name())
            .field("record", &self.inner.rec)
            .field("cursor", &self.cursor)
            .field("lost", &self.lost)
            .finish()
    }
}

impl<H: ShmType> Subscriber<H> {
    pub(crate) fn attach(ch: Arc<Channel>, history: u64) -> Result<Subscriber<H>, AttachError> {
        let token = crate::os::liveness::current().map_err(AttachError::Liveness)?;
        let v = ch.view;
        // Free records first (no liveness query), then records of dead subscribers.
        let free = (0..v.g.subscribers)
            .find(|&r| v.record(r).owner.holder() == 0 && v.record(r).owner.claim(token).is_ok());
        let rec = free
            .or_else(|| (0..v.g.subscribers).find(|&r| v.record(r).owner.claim(token).is_ok()))
            .ok_or(AttachError::NoFreeSubscriberSlot {
                slots: v.g.subscribers,
            })?;
        // The record is ours: clear the pins a dead previous owner left.
        clear_pins(&v, rec);
        // Acquire: pairs with the Release store of head in `Loan::publish`.
        let head = v.ctrl().head.load(Ordering::Acquire);
        let wanted = head.saturating_sub(history);
        // The cursor, the window, and a wake for a publisher parked in `loan`.
        let window = Window::attach(&v, rec, wanted);
        let r = v.record(rec);
        // Relaxed: statistics.
        r.received.store(0, Ordering::Relaxed);
        r.lost.store(0, Ordering::Relaxed);
        let counts = (0..v.g.slots).map(|_| GuardCount::new()).collect();
        let held = (0..v.g.slots)
            .map(|_| {
                UnsafeCell::new(Held {
                    seq: 0,
                    len: 0,
                    mono_ns: 0,
                    real_ns: 0,
                    header: H::new_zeroed(),
                })
            })
            .collect();
        Ok(Subscriber {
            inner: Arc::new(Inner {
                ch,
                rec,
                token,
                counts,
                held,
            }),
            cursor: wanted,
            window,
            lost: 0,
            received: 0,
            next_slot: 0,
            throttle: Throttle::default(),
            _h: PhantomData,
        })
    }

    /// The next frame in order without waiting: the oldest frame newer than the last one
    /// received that is still in its slot (those overwritten meanwhile count as
    /// [`lost`](Self::lost)).
    #[inline]
    pub fn try_recv(&mut self) -> Result<Frame<H>, TryRecvError> {
        self.try_get(Want::Next)
    }

    blocking_forms! {
        /// The next frame in order, waiting for it (the other forms: then
        /// [`RecvError::Timeout`]).
        fn recv / recv_timeout / recv_deadline () -> Result<Frame<H>, RecvError>
            = get_until(Want::Next);
    }

    /// The newest frame, if it is newer than the last one received, without waiting; the
    /// frames skipped count as [`lost`](Self::lost).
    pub fn try_latest(&mut self) -> Result<Frame<H>, TryRecvError> {
        self.try_get(Want::Latest)
    }

    blocking_forms! {
        /// The newest frame newer than the last one received, waiting for one (the other
        /// forms: then [`RecvError::Timeout`]).
        fn latest / latest_timeout / latest_deadline () -> Result<Frame<H>, RecvError>
            = get_until(Want::Latest);
    }

    /// The newest frame in the channel, whether received before or not, and whether a
    /// publisher is attached or not (frames stay readable after the publisher is gone). Does
    /// not move the cursor. `None` if no frame is published, if this handle was inherited
    /// across `fork()` ([`TryRecvError::Inherited`]), or if this process already holds 2³² − 2
    /// guards of the newest frame (leaked with `mem::forget`: the most a slot's count holds).
    pub fn newest(&self) -> Option<Frame<H>> {
        if !self.inner.is_mine() {
            return None;
        }
        for _ in 0..64 {
            let (i, s) = self.scan(0, Want::Latest, false)?;
            if let Some(f) = self.frame(i, s) {
                return Some(f);
            }
        }
        None
    }

    /// Whether this handle was inherited across `fork()`: true in a child process that got it
    /// from its parent, where every receive fails with [`TryRecvError::Inherited`] /
    /// [`RecvError::Inherited`]. One `Relaxed` load, no system call (an example is at
    /// [`Frame::is_inherited`]).
    #[inline]
    pub fn is_inherited(&self) -> bool {
        !self.inner.is_mine()
    }

    fn get_until(&mut self, want: Want, until: Option<Instant>) -> Result<Frame<H>, RecvError> {
        if !self.inner.is_mine() {
            return Err(RecvError::Inherited);
        }
        let inner = Arc::clone(&self.inner);
        // Wake up every slice to re-check the publisher's liveness. The publisher notifies
        // only when someone sleeps (`notify_if_sleepers`), so the wait takes once more after
        // registering as a sleeper (`WaitQueue::wait_for`).
        inner.view().ctrl().published.wait_for(|check| {
            if !check {
                return match self.take(want, false) {
                    Some(f) => Step::Done(Ok(f)),
                    None => Step::Nothing,
                };
            }
            if !self.publisher_lives(true) {
                // As in `try_get`: every slot, since `head` may be behind.
                return Step::Done(self.take(want, true).ok_or(RecvError::Disconnected));
            }
            if deadline::passed(until) {
                return Step::Done(Err(RecvError::Timeout));
            }
            Step::Sleep(deadline::slice(until, WAIT_SLICE))
        })
    }

    #[inline(always)]
    fn try_get(&mut self, want: Want) -> Result<Frame<H>, TryRecvError> {
        if !self.inner.is_mine() {
            return Err(TryRecvError::Inherited);
        }
        if let Some(f) = self.take(want, false) {
            return Ok(f);
        }
        let check = self.throttle.due();
        if self.publisher_lives(check) {
            return Err(TryRecvError::Empty);
        }
        // The publisher's release (or death) came after its last publish: look once more,
        // at every slot (a publisher killed between `seq = n` and `head = n` left `head`
        // behind).
        self.take(want, true).ok_or(TryRecvError::Disconnected)
    }

    /// Whether a publisher is attached and (if `query`) its process lives.
    fn publisher_lives(&self, query: bool) -> bool {
        // `holder` acquires: a release seen means every publish before it is visible.
        let w = self.inner.view().ctrl().publisher.holder();
        w != 0 && (!query || role::liveness_of(w) != Liveness::Dead)
    }

    /// Find and pin the frame `want` asks for, newer than the cursor; move the cursor.
    /// Bounded: a slot overwritten between the scan and the pin is looked for again, at most
    /// 64 times (a hostile writer flipping sequence words cannot keep us here).
    ///
    /// Unless `full`, `head` is the doorbell (`SPEC.md`, frames section "Receiving"): nothing
    /// is looked at while `head <= cursor` (one load of a line that changes once per frame),
    /// and for `Next` the frame `cursor + 1` is first pinned directly in the slot after the
    /// last one received (the pin's read-modify-write is then the first touch of that slot's
    /// line: one transfer of it, not a read followed by an upgrade); the slots are scanned
    /// only if it is not there.
    ///
    /// Under [`Policy::Block`], unless `full` (the publisher is gone), `Next` waits for a frame
    /// whose slot shows a claim that will be rolled back instead of skipping it (`scan`).
    #[inline(always)]
    fn take(&mut self, want: Want, full: bool) -> Option<Frame<H>> {
        if !full {
            // Relaxed: a hint; the pin's SeqCst load of the slot's `seq` is what acquires the
            // frame (the head store follows the seq store in `Loan::put`).
            let head = self.inner.view().ctrl().head.load(Ordering::Relaxed);
            if self.window.top > head.saturating_add(1) {
                // `head` only grows and was at least `top − 1` when the window was taken
                // (`Window::scan`): a forged `head` made a forged word look plausible then.
                // The window is wrong; from now on every gap counts.
                self.window = Window::default();
            }
            if head <= self.cursor {
                return None;
            }
            if let (Want::Next, Some(s)) = (want, self.cursor.checked_add(1)) {
                let i = if self.next_slot < self.inner.view().g.slots {
                    self.next_slot
                } else {
                    0
                };
                // Ask for the frame's first data line now: the pin's locked RMW below holds
                // back later loads, so a read of the bytes after it would start its transfer
                // only then. A hint with no effect on memory.
                prefetch(self.inner.view().data(i));
                if let Some(f) = self.frame(i, s) {
                    self.accept(i, s);
                    return Some(f);
                }
            }
        }
        let wait_claimed =
            !full && matches!(want, Want::Next) && self.inner.view().g.policy == Policy::Block;
        for _ in 0..64 {
            let (i, s) = self.scan(self.cursor, want, wait_claimed)?;
            let Some(f) = self.frame(i, s) else {
                continue; // overwritten between the scan and the pin: look again
            };
            self.accept(i, s);
            return Some(f);
        }
        None
    }

    /// Move the cursor to frame `s` (in slot `i`), just pinned, and record the statistics.
    #[inline(always)]
    fn accept(&mut self, i: u64, s: u64) {
        // `s > cursor` (the scan's condition, or `cursor + 1`); saturating: a forged
        // sequence may be huge.
        let lost = if self.cursor < self.window.top {
            self.window.lost_between(self.cursor, s)
        } else {
            s - self.cursor - 1
        };
        self.lost = self.lost.saturating_add(lost);
        let from = self.cursor;
        self.cursor = s;
        if s >= self.window.top && self.window.top != 0 {
            self.window = Window::default(); // past the window: every gap counts
        }
        self.next_slot = i + 1;
        self.received = self.received.wrapping_add(1);
        let v = self.inner.view();
        let r = v.record(self.inner.rec);
        // Relaxed: statistics; plain stores from private copies (only we write the record).
        r.received.store(self.received, Ordering::Relaxed);
        r.lost.store(self.lost, Ordering::Relaxed);
        window::advance_cursor(v, self.inner.rec, from, s);
    }

    /// The slot and sequence of the frame `want` asks for, newer than `after`
    /// ([`window::scan`], starting at the slot after the last one received); `None` if there
    /// is none yet, or a claim to wait for comes first.
    #[inline(always)]
    fn scan(&self, after: u64, want: Want, wait_claimed: bool) -> Option<(u64, u64)> {
        let v = self.inner.view();
        let claimed = &self.window.claimed;
        match window::scan(v, self.next_slot, after, want, wait_claimed, claimed) {
            Scan::Found(i, s) => Some((i, s)),
            Scan::Wait | Scan::Nothing => None,
        }
    }

    /// Pin slot `i` holding frame `seq` (the first guard of the pin copies its metadata,
    /// `Inner::pin`); `None` if it moved on.
    #[inline(always)]
    fn frame(&self, i: u64, seq: u64) -> Option<Frame<H>> {
        // The previous pin's copy, if this guard replaced it (only if `H` has drop glue).
        let mut old = None;
        if !self.inner.pin(i, seq, &mut old) {
            return None;
        }
        // A further guard of a pin shares the first one's copy, of the frame the slot held
        // then. A conforming publisher never rewrites a pinned slot, so that is `seq` (the
        // pin checked the slot's word); if it is not, a hostile process rewrote the word
        // under the pin: refuse, as if the frame had moved on (a guard must report the frame
        // the cursor moved to, or sequence numbers could go back).
        if self.inner.held(i).seq != seq {
            self.inner.unpin(i);
            return None;
        }
        let f = Frame {
            inner: Arc::clone(&self.inner),
            slot: i,
        };
        // Outside the count's lock, with the guard built: a panicking `Drop` of `H` drops the
        // guard too (its unpin), leaving the slot as it was.
        drop(old);
        Some(f)
    }

    /// Frames this subscriber learned it missed: overwritten (with
    /// [`Policy::ReuseOldest`](super::Policy::ReuseOldest)) before it received them, or
    /// skipped by [`latest`](Self::latest).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The sequence number of the last frame received (0: none).
    pub fn last_seq(&self) -> u64 {
        self.cursor
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.inner.ch.name()
    }

    /// Slots in the channel.
    pub fn slots(&self) -> u64 {
        self.inner.view().g.slots
    }

    /// The largest frame, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.inner.view().g.max_bytes
    }

    /// The user header type the channel records.
    pub fn header_type(&self) -> super::HeaderType {
        (&self.inner.ch.header).into()
    }

    /// What happened to the memory advice asked for (see [`Publisher::notes`](super::Publisher::notes)).
    pub fn notes(&self) -> &[String] {
        &self.inner.ch.notes
    }
}

/// A received frame: its slot stays pinned (the publisher never overwrites it) until the
/// guard drops. `Send` and `Sync` when `H` is `Send + Sync`; it keeps the subscriber's mapping
/// alive.
///
/// # The bytes
///
/// [`bytes`](Self::bytes) is a `&[u8]` over the shared slot, mapped `PROT_READ` in this
/// process. A conforming publisher never writes a pinned slot (`SPEC.md`, frames section
/// "Pinning"), so the bytes do not change while the guard lives. A process that breaks the
/// protocol (any process that can open the segment read-write can write the slot, or forge
/// the pin and sequence words so that the publisher overwrites it) can still change them
/// underneath: a write while the slice lives is a data race on memory this process holds a
/// `&[u8]` to, which is undefined behaviour in Rust's model for the code that uses the slice
/// (not merely changing bytes: code that checks a byte and uses it again may act on a value
/// it did not check). shmkit's own code never reads the frame through the slice, so its
/// indices and bounds stay checked. If you must not trust the other processes, copy out with
/// [`copy_to`](Self::copy_to) (atomic loads: a racing writer can then only make the copy hold
/// its bytes) and validate the copy, and never call `bytes`.
///
/// # Across `fork()`
///
/// A guard pins its slot through its subscriber's record, which belongs to the process that
/// received it. A `fork()`ed child's copy of a guard received before the fork holds no pin of
/// its own: the parent may drop its guard, and the publisher may then rewrite the slot while
/// the child looks. So in the child the guard gives no access to the slot:
/// [`bytes`](Self::bytes) is empty, [`copy_to`](Self::copy_to) copies nothing,
/// [`header_bytes`](Self::header_bytes) is empty; what was copied out at receipt
/// ([`seq`](Self::seq), [`len`](Self::len), [`header`](Self::header), the timestamps) stays.
/// Dropping it there leaves the parent's pin alone. (A slice taken from `bytes` *before* the
/// fork and still used in the child is beyond any check; do not fork while holding one.)
///
/// # Layout
///
/// A guard is two words (its subscriber's shared state and the slot), so that a receive
/// returns it in registers: what it reports was copied out of the slot's metadata into the
/// subscriber's state when the slot was pinned, once per pin however many guards share it.
/// (Returned as a larger struct through `Result`, it was copied in pieces that straddled the
/// stores that built it; the reader's first load of the frame's address then waited for the
/// pin's locked read-modify-write to complete instead of running beside it: about one cache
/// line transfer more per hop. BENCHMARKS.md, eighteenth session.)
pub struct Frame<H> {
    inner: Arc<Inner<H>>,
    slot: u64,
}

impl<H: std::fmt::Debug> std::fmt::Debug for Frame<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::Frame")
            .field("seq", &self.seq())
            .field("slot", &self.slot)
            .field("len", &self.len())
            .field("header", self.header())
            .finish()
    }
}

impl<H> Frame<H> {
    /// What the pin holds (copied out when the slot was pinned).
    #[inline(always)]
    fn held(&self) -> &Held<H> {
        self.inner.held(self.slot)
    }

    /// The frame's sequence number (frames are numbered from 1 by their publishers).
    pub fn seq(&self) -> u64 {
        self.held().seq
    }

    /// The slot it occupies.
    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// Payload length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.held().len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `CLOCK_MONOTONIC` at publish, in ns (compare with [`monotonic_ns`](super::monotonic_ns)).
    pub fn mono_ns(&self) -> u64 {
        self.held().mono_ns
    }

    /// `CLOCK_REALTIME` at publish, in ns since the Unix epoch.
    pub fn real_ns(&self) -> u64 {
        self.held().real_ns
    }

    /// The user header published with the frame (a copy).
    pub fn header(&self) -> &H {
        &self.held().header
    }

    /// The user header's bytes as published (its recorded size; see
    /// [`FramesOptions::header_type`](super::FramesOptions::header_type)), read now from the
    /// pinned slot's metadata with atomic loads. Empty in a `fork()`ed child (see the type's
    /// docs).
    pub fn header_bytes(&self) -> Vec<u8> {
        if !self.inner.is_mine() {
            return Vec::new();
        }
        let v = self.inner.view();
        let mut out = vec![0u8; v.g.header_size as usize];
        if !out.is_empty() {
            // SAFETY: the slot's header words hold header_words * 8 >= header_size bytes
            // (checked geometry), 8-aligned, in the mapping `inner` keeps alive; `out` is
            // private and header_size bytes long.
            unsafe {
                atomic_copy::load(
                    v.header_word(self.slot, 0).as_ptr().cast(),
                    out.as_mut_ptr(),
                    out.len(),
                )
            };
        }
        out
    }

    /// Whether this guard was inherited across `fork()`: true in a child process that got it
    /// from its parent, where the pin is the parent's and the guard gives no access to the
    /// slot (see the type's docs). One `Relaxed` load, no system call. For code that hands
    /// out [`as_ptr`](Self::as_ptr) (a binding exporting the payload, say), which the guard
    /// cannot check itself: refuse when this is true.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmkit::frames::FramesOptions;
    /// # let name = format!("doc-frame-inherited-{}", std::process::id());
    /// let mut p = FramesOptions::<u64>::new().slots(2).max_bytes(64).create(&name)?;
    /// # p.set_unlink_on_drop(true);
    /// let mut s = FramesOptions::<u64>::new().subscriber(&name).unwrap();
    /// p.loan().unwrap().publish(3, &0)?;
    /// let f = s.try_recv().unwrap();
    /// assert!(!f.is_inherited() && !s.is_inherited());
    /// // SAFETY: the child only reads flags and calls `_exit`.
    /// match unsafe { libc::fork() } {
    ///     0 => {
    ///         let ok = f.is_inherited() && s.is_inherited() && f.bytes().is_empty();
    ///         // SAFETY: ends the child without running the parent's destructors.
    ///         unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    ///     }
    ///     pid => {
    ///         assert!(pid > 0);
    ///         let mut status = 0;
    ///         // SAFETY: waits for our own child.
    ///         assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    ///         assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    ///     }
    /// }
    /// assert!(!f.is_inherited());
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_inherited(&self) -> bool {
        !self.inner.is_mine()
    }

    /// A [`Mapping`](super::Mapping): the channel stays mapped in this process while it
    /// lives, after this frame is released and its subscriber detached.
    pub fn mapping(&self) -> super::Mapping {
        super::Mapping(Arc::clone(&self.inner.ch))
    }

    /// The payload, in place (see the type's docs for the contract). Empty in a `fork()`ed
    /// child: the pin is the parent's there (see the type's docs).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        if !self.inner.is_mine() {
            return &[];
        }
        // SAFETY: `as_ptr` is the pinned slot's first byte in a mapping `inner` keeps alive;
        // `len <= max_bytes <= stride`; the slot is not written while pinned by a conforming
        // publisher (the documented contract covers a hostile one), and this process maps it
        // read-only. The pin is this process's (checked above): a fork()ed child's guard is
        // pinned only by its parent's record, which the parent may clear while the child
        // reads.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The payload's first byte (page-aligned), for handing to other APIs. Reading through
    /// it is subject to the type's contract, and in a `fork()`ed child to no pin at all.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.inner.view().data(self.slot)
    }

    /// Copy the payload out with atomic loads (never a data race, whatever other processes
    /// do); `out` must be at least [`len`](Self::len) bytes. Returns the bytes copied: 0 in a
    /// `fork()`ed child (see the type's docs).
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        if !self.inner.is_mine() {
            return 0;
        }
        let n = self.len().min(out.len());
        // SAFETY: as in `bytes`, for n <= len bytes; `out` is private and distinct.
        unsafe { atomic_copy::load(self.as_ptr(), out.as_mut_ptr(), n) };
        n
    }
}

impl<H> Drop for Frame<H> {
    #[inline]
    fn drop(&mut self) {
        // In a fork()ed child the pin is the parent's (its own guard of this frame still
        // holds it): leave it alone.
        if self.inner.is_mine() {
            self.inner.unpin(self.slot);
        }
    }
}

/// A hint to bring the cache line of `at` into this CPU's cache for reading. No architectural
/// effect (it never faults, whatever `at` is); a no-op off x86-64.
#[inline]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only moves a cache line; it has no architectural effect and cannot
    // fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch(at.cast(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::pin::LOCKED;
    use crate::frames::FramesOptions;

    /// Unlinks the channel it names when dropped.
    struct Unlink(String);

    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
        }
    }

    /// A slot's guard count stops one below [`LOCKED`]: a further guard of the slot is
    /// refused (`newest` gives `None`), where it used to make the count read as locked for
    /// ever (every later pin or unpin of the slot, the guards' drops included, then spun).
    #[test]
    fn a_slot_s_guard_count_stops_below_locked() {
        let name = format!("t-frames-guardcount-{}", std::process::id());
        let _unlink = Unlink(name.clone());
        let mut p = FramesOptions::<u64>::new()
            .slots(2)
            .max_bytes(64)
            .create(&name)
            .unwrap();
        p.try_loan().unwrap().publish(8, &0).unwrap();
        let s = FramesOptions::<u64>::new().subscriber(&name).unwrap();
        let f = s.newest().expect("a frame is published");
        let count = &s.inner.counts[f.slot() as usize].0;
        // As if LOCKED - 2 more guards of the slot had been leaked (`mem::forget`).
        count.store(LOCKED - 1, Ordering::Relaxed);
        let more = s.newest();
        let refused = more.is_none();
        std::mem::forget(more); // a guard at LOCKED could not be dropped
        let after = count.load(Ordering::Relaxed);
        // Back to the one guard `f` so that it can drop, whatever happened above.
        count.store(1, Ordering::Relaxed);
        assert!(refused, "a guard past the count's limit was handed out");
        assert_eq!(after, LOCKED - 1);
        drop(f);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        let again = s.newest().expect("pinned again once the guards are gone");
        assert_eq!(again.seq(), 1);
    }

    /// While set, dropping a [`Touchy`] panics.
    static TOUCHY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// A header type whose `Drop` (the user's code) panics while [`TOUCHY`] is set.
    #[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable)]
    #[repr(C)]
    struct Touchy(u64);

    crate::shm_type!(Touchy);

    impl Drop for Touchy {
        fn drop(&mut self) {
            assert!(!TOUCHY.load(Ordering::Relaxed), "Touchy dropped");
        }
    }

    /// The header's `Drop` is the user's code: the first guard of a pin replaces the previous
    /// pin's copy, and that copy's drop must not run while the slot's guard count is
    /// [`LOCKED`] (other threads spin on it). A panic there left the count locked for ever:
    /// every later pin or unpin of the slot spun. Now the old copy is dropped once the new
    /// guard exists, so a panic releases the guard and the slot is received again.
    #[test]
    fn a_header_s_drop_never_runs_while_a_guard_count_is_locked() {
        let name = format!("t-frames-touchy-{}", std::process::id());
        let _unlink = Unlink(name.clone());
        let mut p = FramesOptions::<Touchy>::new()
            .slots(1)
            .max_bytes(64)
            .create(&name)
            .unwrap();
        let mut s = FramesOptions::<Touchy>::new().subscriber(&name).unwrap();
        p.try_loan().unwrap().publish(8, &Touchy(1)).unwrap();
        drop(s.try_recv().unwrap()); // slot 0 now holds frame 1's copy
        p.try_loan().unwrap().publish(8, &Touchy(2)).unwrap();
        TOUCHY.store(true, Ordering::Relaxed);
        // Pinning slot 0 for frame 2 replaces frame 1's copy, whose drop panics.
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.try_recv()));
        TOUCHY.store(false, Ordering::Relaxed);
        assert!(got.is_err(), "the old copy was not dropped");
        let count = s.inner.counts[0].0.load(Ordering::Relaxed);
        assert_ne!(
            count, LOCKED,
            "the header's drop panicked while the count was locked"
        );
        assert_eq!(count, 0, "the panicking receive kept a guard");
        let f = s.try_recv().expect("frame 2 received after the panic");
        assert_eq!((f.seq(), f.header().0), (2, 2));
    }
}
