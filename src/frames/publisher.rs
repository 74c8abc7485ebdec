//! [`Publisher`] and its [`Loan`]: writing frames in place.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::channel::Channel;
use super::error::{AttachError, LoanError, TryLoanError};
use super::layout::View;
use super::{pin, recovery};
use crate::os::atomic_copy;
use crate::os::clock;
use crate::os::deadline::{self, blocking_forms};
use crate::queue::role::{self, WAIT_SLICE};
use crate::queue::ShmType;
use crate::sync::waiter::Step;

/// The publishing end of a frame channel: loans a slot no subscriber holds, the caller
/// writes the frame in place, [`Loan::publish`] makes it visible to every subscriber. One
/// publisher per channel; a new one takes over from a dead one (`SPEC.md`, frames section).
///
/// `Send`, not `Sync`-useful: every operation takes `&mut self`. Dropping it detaches
/// (subscribers then get [`Disconnected`](super::RecvError::Disconnected) once they have
/// received every published frame); frames already published stay readable.
///
/// A handle inherited across `fork()` is its parent's: in the child loans fail with
/// [`TryLoanError::Disconnected`] / [`LoanError::Disconnected`], an inherited [`Loan`] cannot
/// be published, and dropping either there changes nothing shared (nor does an unlink on
/// drop that the parent asked for happen in the child).
pub struct Publisher<H> {
    ch: Arc<Channel>,
    token: u64,
    next_seq: u64,
    /// Subscriber tokens found dead (liveness queried only when no slot was free).
    dead: Vec<u64>,
    /// The slot (and its `seq`) the next loan claims, picked after the last publish: the
    /// smallest of `seqs`.
    hint: Option<(u64, u64)>,
    /// What we last stored in each slot's `seq` (we are its only writer): the hint is chosen
    /// from this private copy, without reading the slots' lines, which subscribers' pins
    /// write. A wrong entry (a hostile write) only makes a hint fail (`recovery::claim_hint`
    /// compares it with the slot's word), and the loan scans.
    seqs: Vec<u64>,
    /// `CLOCK_REALTIME − CLOCK_MONOTONIC` (wrapping) and the monotonic time it was read at:
    /// `real_ns` is derived from it for up to [`REALTIME_REFRESH_NS`].
    realtime_offset: Option<(u64, u64)>,
    _h: PhantomData<fn(H)>,
}

impl<H> std::fmt::Debug for Publisher<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::Publisher")
            .field("name", &self.ch.name())
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl<H: ShmType> Publisher<H> {
    /// Attach as `token` (this process's): claim the role, unless `create` already claimed it
    /// for us (`created`) before publishing the name.
    pub(crate) fn attach(
        ch: Arc<Channel>,
        token: u64,
        created: bool,
    ) -> Result<Publisher<H>, AttachError> {
        let v = ch.view;
        if !created {
            let claimed = v.ctrl().publisher.claim(token);
            claimed.map_err(|holder| AttachError::PublisherBusy {
                pid: role::pid_of(holder),
            })?;
        }
        let next_seq = match recovery::take_over(&v) {
            Ok(s) => s,
            Err(what) => {
                v.ctrl().publisher.release(token);
                return Err(crate::Error::corrupt(ch.name(), what).into());
            }
        };
        Ok(Publisher {
            ch,
            token,
            next_seq,
            dead: Vec::new(),
            hint: None,
            seqs: (0..v.g.slots)
                // Acquire: as in `recovery::take_over`, which ran just before.
                .map(|i| v.meta(i).seq.load(Ordering::Acquire))
                .collect(),
            realtime_offset: None,
            _h: PhantomData,
        })
    }

    /// Loan a slot without waiting: [`TryLoanError::Full`] if every slot is held (after
    /// reclaiming the slots of dead subscribers).
    #[inline]
    pub fn try_loan(&mut self) -> Result<Loan<'_, H>, TryLoanError> {
        let slot = self.find()?.ok_or(TryLoanError::Full)?;
        Ok(self.loan_of(slot))
    }

    blocking_forms! {
        /// Loan a slot, waiting as long as every slot is held (the other forms: then
        /// [`LoanError::Timeout`]).
        fn loan / loan_timeout / loan_deadline () -> Result<Loan<'_, H>, LoanError> = loan_until;
    }

    fn loan_until(&mut self, until: Option<Instant>) -> Result<Loan<'_, H>, LoanError> {
        // `find`'s only error is `Disconnected` (a full channel is `Ok(None)`).
        let gone = |_: TryLoanError| LoanError::Disconnected;
        // A free slot (the usual case): no wait-queue snapshot, no handle clone.
        if let Some(slot) = self.find().map_err(gone)? {
            return Ok(self.loan_of(slot));
        }
        let ch = Arc::clone(&self.ch);
        // Wake up every slice to re-check liveness: a killed subscriber releases nothing.
        // Subscribers notify only when someone sleeps (`notify_if_sleepers`), so the wait
        // claims once more after registering as a sleeper (`WaitQueue::wait_for`).
        let slot = ch.view.ctrl().released.wait_for(|check| {
            if check {
                if deadline::passed(until) {
                    return Step::Done(Err(LoanError::Timeout));
                }
                return Step::Sleep(deadline::slice(until, WAIT_SLICE));
            }
            match self.find() {
                Ok(Some(slot)) => Step::Done(Ok(slot)),
                Ok(None) => Step::Nothing,
                Err(e) => Step::Done(Err(gone(e))),
            }
        })?;
        Ok(self.loan_of(slot))
    }

    fn loan_of(&mut self, slot: u64) -> Loan<'_, H> {
        Loan {
            p: self,
            slot,
            done: false,
        }
    }

    /// Claim a free slot, reclaiming dead subscribers' pins if none is free: `Ok(None)` if
    /// every slot is held; the only error is `Disconnected`.
    #[inline]
    fn find(&mut self) -> Result<Option<u64>, TryLoanError> {
        if !role::is_mine(self.token) || self.ch.view.ctrl().publisher.holder() != self.token {
            return Err(TryLoanError::Disconnected);
        }
        // Borrowed, not copied: a View is its base and the whole geometry (15 words).
        let v = &self.ch.view;
        if let Some(h) = self.hint.take() {
            if recovery::claim_hint(v, h, &self.dead) {
                return Ok(Some(h.0));
            }
        }
        if let Some(s) = recovery::claim_free(v, &self.dead) {
            return Ok(Some(s));
        }
        // Every slot is held: are some holders dead? (Queried only now, never per publish.)
        if recovery::find_dead(v, &mut self.dead) {
            return Ok(recovery::claim_free(v, &self.dead));
        }
        Ok(None)
    }

    /// The publish timestamps: `CLOCK_MONOTONIC` now, and `CLOCK_REALTIME` now, read at most
    /// every [`REALTIME_REFRESH_NS`] and otherwise derived from the monotonic time (a clock
    /// read costs 30–60 ns on a VM, a third of a publish). The derived value is off by the
    /// realtime clock's slew since the last read (at most 0.5 µs under NTP's 500 ppm), or by
    /// a step of the realtime clock for at most that long. `offset` is the publisher's
    /// `realtime_offset` (a field, not `&mut self`: `Loan::put` holds the view borrowed).
    #[inline]
    fn timestamps(offset: &mut Option<(u64, u64)>) -> (u64, u64) {
        let mono = clock::monotonic_ns();
        match *offset {
            Some((at, off)) if mono.wrapping_sub(at) < REALTIME_REFRESH_NS => {
                (mono, mono.wrapping_add(off))
            }
            _ => {
                let real = clock::realtime_ns();
                *offset = Some((mono, real.wrapping_sub(mono)));
                (mono, real)
            }
        }
    }

    /// The slot with the smallest `seq` as we last stored it (the oldest frame, or an empty
    /// slot), and that `seq`: the next loan's first choice.
    #[inline]
    fn oldest(&self) -> Option<(u64, u64)> {
        let (i, &s) = self.seqs.iter().enumerate().min_by_key(|&(_, s)| *s)?;
        Some((i as u64, s))
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.ch.name()
    }

    /// A [`Mapping`](super::Mapping): the channel stays mapped in this process while it
    /// lives, whatever happens to this publisher.
    pub fn mapping(&self) -> super::Mapping {
        super::Mapping(Arc::clone(&self.ch))
    }

    /// Slots in the channel.
    pub fn slots(&self) -> u64 {
        self.ch.view.g.slots
    }

    /// The largest frame, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.ch.view.g.max_bytes
    }

    /// The user header type the channel records.
    pub fn header_type(&self) -> super::HeaderType {
        (&self.ch.header).into()
    }

    /// The channel's policy when every slot is held.
    pub fn policy(&self) -> super::Policy {
        self.ch.view.g.policy
    }

    /// The sequence number the next published frame gets (frames are numbered from 1).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// What happened to the memory advice asked for ([`FramesOptions::populate`],
    /// [`huge_pages`](super::FramesOptions::huge_pages)), e.g. "huge pages unavailable: …;
    /// using normal pages". Empty when nothing was asked or everything worked silently.
    ///
    /// [`FramesOptions::populate`]: super::FramesOptions::populate
    pub fn notes(&self) -> &[String] {
        &self.ch.notes
    }

    /// Unlink the channel's name when this handle drops (or stop it from doing so), in this
    /// process only (see [`Segment::set_unlink_on_drop`](crate::Segment::set_unlink_on_drop));
    /// while a [`Mapping`](super::Mapping) of it lives, when the last one goes.
    pub fn set_unlink_on_drop(&mut self, yes: bool) {
        self.ch.set_unlink_on_drop(yes);
    }
}

impl<H> Drop for Publisher<H> {
    fn drop(&mut self) {
        if !role::is_mine(self.token) {
            return; // inherited across fork(): the role is the parent's
        }
        let ctrl = self.ch.view.ctrl();
        ctrl.publisher.release(self.token);
        // Subscribers parked for a frame re-check and see no publisher (`Disconnected`).
        ctrl.published.notify_all();
    }
}

/// How long a read of `CLOCK_REALTIME` serves for the frames' `real_ns` (1 ms).
const REALTIME_REFRESH_NS: u64 = 1_000_000;

/// A slot loaned by [`Publisher::loan`]: write the frame into [`as_mut_slice`](Self::as_mut_slice),
/// then [`publish`](Self::publish). Dropped without publishing, the slot is emptied (its
/// previous frame is gone: it may be partly overwritten).
///
/// A loan inherited across `fork()` is the parent's: in the child
/// [`as_mut_slice`](Self::as_mut_slice) is empty, [`publish`](Self::publish) fails with
/// [`Error::Disconnected`](crate::Error::Disconnected), and dropping it leaves the slot to the
/// parent, which may still publish it. (A slice taken from `as_mut_slice` *before* the fork
/// and still used in the child is beyond any check; do not fork while holding one.)
pub struct Loan<'a, H: ShmType> {
    p: &'a mut Publisher<H>,
    slot: u64,
    done: bool,
}

impl<H: ShmType> std::fmt::Debug for Loan<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("frames::Loan")
            .field("slot", &self.slot)
            .finish()
    }
}

impl<H: ShmType> Loan<'_, H> {
    /// Whether the loan is this process's: false in a `fork()`ed child that inherited it
    /// (the publisher role, and the claim on the slot, are the parent's). One Relaxed load.
    #[inline]
    fn is_mine(&self) -> bool {
        role::is_mine(self.p.token)
    }

    /// Whether this loan was inherited across `fork()`: true in a child process that got it
    /// from its parent, where [`as_mut_slice`](Self::as_mut_slice) is empty and
    /// [`publish`](Self::publish) fails (the slot is the parent's). One `Relaxed` load, no
    /// system call. For code that keeps a pointer into the slot (a binding exporting it,
    /// say), which the loan cannot check itself: refuse when this is true.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmkit::frames::FramesOptions;
    /// # let name = format!("doc-loan-inherited-{}", std::process::id());
    /// let mut p = FramesOptions::<u64>::new().slots(2).max_bytes(64).create(&name)?;
    /// # p.set_unlink_on_drop(true);
    /// let mut loan = p.loan().unwrap();
    /// assert!(!loan.is_inherited());
    /// // SAFETY: the child only reads flags and calls `_exit`.
    /// match unsafe { libc::fork() } {
    ///     0 => {
    ///         let ok = loan.is_inherited() && loan.as_mut_slice().is_empty();
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
    /// assert_eq!(loan.publish(0, &7)?, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_inherited(&self) -> bool {
        !self.is_mine()
    }

    /// The slot's index.
    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// The slot's bytes: [`max_bytes`](Publisher::max_bytes) long, page-aligned. They hold
    /// whatever was there before (an old frame, or zeros).
    ///
    /// No conforming subscriber reads a loaned slot (`SPEC.md`, frames section "Pinning"); a
    /// process that maps the segment could, which changes nothing here. A process that maps it
    /// read-write could also *write* the slot while this slice lives: a data race on memory
    /// this process holds a `&mut [u8]` to, undefined behaviour in Rust's model for the code
    /// that uses the slice (as for the queues' in-place guards). Share a channel read-write
    /// only with processes you trust to follow the protocol.
    ///
    /// Empty in a `fork()`ed child that inherited the loan: the slot is the parent's, which
    /// may be writing it (see the type's docs).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if !self.is_mine() {
            return &mut [];
        }
        let v = &self.p.ch.view;
        // SAFETY: the slot is claimed by us (its sequence word carries CLAIMED and no live
        // record pins it), and we are the process that claimed it (checked above: a fork()ed
        // child's copy of the loan is not): no handle reads or writes it until `publish`; the
        // range [data(slot), +max_bytes) lies inside the slot (stride >= max_bytes) in our
        // writable mapping, which `self.p.ch` keeps alive for the borrow.
        unsafe { std::slice::from_raw_parts_mut(v.data(self.slot), v.g.max_bytes as usize) }
    }

    /// Publish the first `len` bytes of the slot as the next frame, with `header`; returns its
    /// sequence number. Stamps `CLOCK_MONOTONIC` and `CLOCK_REALTIME` now.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`](crate::Error::TooLarge) if `len` exceeds
    /// [`max_bytes`](Publisher::max_bytes): nothing is published and the loan is dropped (its
    /// slot emptied, as when a loan is dropped unpublished).
    ///
    /// [`Error::Disconnected`](crate::Error::Disconnected) in a `fork()`ed child that inherited
    /// the loan: nothing is published and nothing shared changes (the slot and the role are
    /// the parent's).
    #[inline]
    pub fn publish(self, len: usize, header: &H) -> crate::Result<u64> {
        self.put(len, header.as_bytes())
    }

    /// Publish with `hb` as the header's first bytes (at most `header_size`; the rest of the
    /// header is zeroed).
    #[inline]
    fn put(mut self, len: usize, hb: &[u8]) -> crate::Result<u64> {
        if !self.is_mine() {
            return Err(crate::Error::Disconnected); // dropped without touching the slot
        }
        let v: &View = &self.p.ch.view;
        if len as u64 > v.g.max_bytes {
            return Err(crate::Error::TooLarge {
                name: format!("{} (frame length)", self.p.ch.name()),
                requested: len as u64,
                max: v.g.max_bytes,
            });
        }
        let hsize = v.g.header_size as usize;
        if hb.len() > hsize {
            return Err(crate::Error::TooLarge {
                name: format!("{} (frame header)", self.p.ch.name()),
                requested: hb.len() as u64,
                max: hsize as u64,
            });
        }
        let seq = self.p.next_seq;
        if seq >= pin::CLAIMED {
            // Sequence numbers are below 2^63 (a takeover checks the channel's); 2^63 frames
            // are out of reach, but a number that would carry into CLAIMED is never stored.
            return Err(crate::Error::corrupt(
                self.p.ch.name(),
                format!("sequence number {seq} is out of range"),
            ));
        }
        let m = v.meta(self.slot);
        // Relaxed: published by the Release store of `seq` below.
        m.len.store(len as u64, Ordering::Relaxed);
        let (mono, real) = Publisher::<H>::timestamps(&mut self.p.realtime_offset);
        m.mono_ns.store(mono, Ordering::Relaxed);
        m.real_ns.store(real, Ordering::Relaxed);
        if hsize > 0 {
            // A typed header is exactly header_size bytes; a shorter untyped one is zero-padded
            // in a private buffer (only then: zeroing 1 KiB on every publish costs).
            let store = |src: &[u8]| {
                // SAFETY: the header words of this slot's metadata are header_words * 8 >=
                // header_size bytes (checked geometry), 8-aligned, writable; `src` is private
                // and header_size bytes long (header_size <= MAX_USER_HEADER, checked
                // geometry); only atomic stores touch shared bytes.
                unsafe {
                    atomic_copy::store(
                        src.as_ptr(),
                        v.header_word(self.slot, 0).as_ptr().cast(),
                        hsize,
                    )
                }
            };
            if hb.len() == hsize {
                store(hb);
            } else {
                let mut buf = [0u8; super::MAX_USER_HEADER as usize];
                buf[..hb.len()].copy_from_slice(hb);
                store(&buf[..hsize]);
            }
        }
        pin::publish_frame(v, self.slot, seq);
        self.p.next_seq = seq + 1;
        self.done = true;
        // Choose the next loan's slot now, while nobody waits on us, rather than on the next
        // frame's path (from our private copy of the sequence words: no shared line is read),
        // and ask for its metadata line (the claim writes it).
        self.p.seqs[self.slot as usize] = seq;
        self.p.hint = self.p.oldest();
        // Its first data line too: a frame is usually written from its start (the subscribers
        // read that slot's bytes `slots − 1` frames ago at the latest, not now).
        if let Some((next, _)) = self.p.hint {
            prefetch_for_write(std::ptr::from_ref(v.meta(next)).cast());
            prefetch_for_write(v.data(next));
        }
        Ok(seq)
    }
}

/// A hint to bring the cache line of `at` into this CPU's cache in exclusive state, ready to
/// be written. No architectural effect (it writes nothing, never faults, whatever `at` is); a
/// no-op off x86-64.
#[inline]
fn prefetch_for_write(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHW only moves a cache line; it has no architectural effect, cannot
    // fault, and touches no register, flag or stack. (CPUs without PRFCHW, Intel before
    // Broadwell, execute it as a NOP.)
    unsafe {
        std::arch::asm!(
            "prefetchw [{0}]",
            in(reg) at,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

impl Loan<'_, [u8; 0]> {
    /// Publish on an untyped channel (opened with
    /// [`FramesOptions::header_type`](super::FramesOptions::header_type) or
    /// [`any_header`](super::FramesOptions::any_header)): `header` is the user header's bytes,
    /// at most its recorded size (the rest is zeroed). Otherwise as [`publish`](Self::publish);
    /// a header longer than the recorded size is [`Error::TooLarge`](crate::Error::TooLarge).
    pub fn publish_header_bytes(self, len: usize, header: &[u8]) -> crate::Result<u64> {
        self.put(len, header)
    }
}

impl<H: ShmType> Drop for Loan<'_, H> {
    fn drop(&mut self) {
        // In a fork()ed child the claim is the parent's, which may still publish the slot:
        // leave it alone.
        if !self.done && self.is_mine() {
            // Release: pairs with subscribers' Acquire loads; the slot is empty (0).
            self.p
                .ch
                .view
                .meta(self.slot)
                .seq
                .store(0, Ordering::Release);
            self.p.seqs[self.slot as usize] = 0;
        }
    }
}
