//! The lock-free core of the MPMC queue: one push or pop attempt on the sequence-stamped
//! slots (Vyukov's bounded queue), and what an attempt that could not complete found.

use super::*;

/// What one attempt found.
pub(super) enum Attempt {
    /// Full (producer) or empty (consumer).
    Blocked,
    /// The position `pos` is claimed by another handle that has not finished with it.
    InFlight(u64),
    /// Consumer only, from `attempt(false)`: position `pos`'s slot held `stamp` (`pos`, or
    /// the previous lap's `pos - capacity + 1`), nothing to pop; whether that is `Blocked` or
    /// `InFlight` was not decided (it costs a fence and a load of the producers' `tail` line,
    /// which `Consumer::classify` does when the caller needs to know).
    Unpublished {
        pos: u64,
        stamp: u64,
    },
    Corrupt,
}

impl<L: ElemLayout> ProdEnd<L> {
    /// One push attempt of the element at `src`: on success, the position published (the
    /// caller wakes consumers: [`Shared::wake_consumers`]).
    ///
    /// # Safety
    ///
    /// `src` is readable for the layout's size, private to this thread.
    pub(super) unsafe fn attempt(&mut self, src: *const u8) -> Result<u64, Attempt> {
        let sh = &*self.h.q;
        let st = stride_of(self.lay);
        let ctrl = sh.ctrl();
        let claim = &ctrl.producers[self.h.slot()];
        // Relaxed: only a starting guess; the stamp check and the CAS validate it.
        let mut pos = ctrl.tail.tail.load(Ordering::Relaxed);
        loop {
            // Acquire pairs with the consumer's Release store of `pos` into the stamp after
            // it read the previous lap's element: we may overwrite the slot.
            let stamp = sh.stamp_in(pos, st).load(Ordering::Acquire);
            if stamp == pos {
                // Record the claim before making it. Release: a survivor that sees a newer
                // inflight of ours also sees our publication of this position.
                claim.inflight.store(pos, Ordering::Release);
                // AcqRel: Release makes the inflight store visible to whoever sees the new
                // tail (the Acquire tail loads in the consumers' in-flight checks).
                match ctrl.tail.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: we own the slot for position `pos` (stamp == pos, and the CAS
                        // made the position ours); in bounds (`elem_in`), written unaligned;
                        // `src` has the layout's size (the caller).
                        unsafe { self.lay.store(src, sh.elem_in(pos, st)) };
                        #[cfg(all(test, loom))]
                        sh.region.shadow_write((pos & sh.mask) as usize);
                        // Release pairs with the consumer's Acquire stamp load: the element
                        // is visible before the stamp says it is there.
                        sh.stamp_in(pos, st)
                            .store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(pos);
                    }
                    Err(t) => {
                        // Lost the race for `pos`: withdraw the claim record, or recovery
                        // would take us for its live claimer when the winner dies.
                        // Release: as for the inflight store above.
                        claim.inflight.store(NONE, Ordering::Release);
                        pos = t;
                    }
                }
            } else if stamp == pos.wrapping_sub(sh.capacity) {
                // The previous lap's producer of this slot claimed it and has not published:
                // the queue is full up to an in-flight element (consumers resolve it) — unless
                // a consumer already skipped that position (head is past it: only `recover`
                // moves head over an unpublished stamp) and died before freeing the slot.
                // SeqCst fence and Acquire head load: as in the branch below.
                fence(Ordering::SeqCst);
                let head = ctrl.head.head.load(Ordering::Acquire);
                let prev = pos.wrapping_sub(sh.capacity);
                return Err(if head.wrapping_sub(prev) as i64 > 0 {
                    Attempt::InFlight(prev)
                } else {
                    Attempt::Blocked
                });
            } else if stamp == pos.wrapping_sub(sh.capacity).wrapping_add(1) {
                // The previous lap's element is still there: full, or a consumer is reading it.
                // SeqCst fence, as crossbeam: order the stamp load before the head load.
                fence(Ordering::SeqCst);
                // Acquire pairs with consumers' head CAS (their inflight stores).
                let head = ctrl.head.head.load(Ordering::Acquire);
                let prev = pos.wrapping_sub(sh.capacity);
                return Err(if head.wrapping_sub(prev) as i64 > 0 {
                    Attempt::InFlight(prev)
                } else {
                    Attempt::Blocked
                });
            } else {
                // Acquire (pairs with the producers' tail CAS): a tail that has not moved
                // then really says the stamp we read is current, so "did not move" means
                // Corrupt, not a stale read.
                let t = ctrl.tail.tail.load(Ordering::Acquire);
                if t == pos {
                    return Err(Attempt::Corrupt);
                }
                pos = t;
            }
        }
    }
}

impl<L: ElemLayout> ConsEnd<L> {
    /// One pop attempt: on success, what `take` made of the element (the typed element, or
    /// nothing once a raw handle's slice holds it) and its position (the caller wakes
    /// producers: [`Shared::wake_producers`]); `take` is used only then. With `classify`
    /// false, an empty slot is reported as `Attempt::Unpublished` without telling `Blocked`
    /// from `InFlight` (see `classify`).
    pub(super) fn attempt<K: Take<L>>(
        &mut self,
        classify: bool,
        take: K,
    ) -> Result<(K::Out, u64), Attempt> {
        let sh = &*self.h.q;
        let st = stride_of(self.lay);
        let ctrl = sh.ctrl();
        let claim = &ctrl.consumers[self.h.slot()];
        // Relaxed: a starting guess, validated by the stamp and the CAS.
        let mut pos = ctrl.head.head.load(Ordering::Relaxed);
        loop {
            // Acquire pairs with the producer's Release stamp store: the element is visible.
            let stamp = sh.stamp_in(pos, st).load(Ordering::Acquire);
            if stamp == pos.wrapping_add(1) {
                // Release: see the producer side.
                claim.inflight.store(pos, Ordering::Release);
                // AcqRel: Release publishes the inflight store with the new head.
                match ctrl.head.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: position `pos` is ours (stamp pos + 1, CAS won): no producer
                        // writes the slot until we release it; in bounds (`elem_in`), of the
                        // layout's size (`take` is for this layout), unaligned.
                        let v = unsafe { take.take(sh.elem_in(pos, st)) };
                        #[cfg(all(test, loom))]
                        sh.region.shadow_read((pos & sh.mask) as usize);
                        // Release pairs with the producers' Acquire stamp load: we are done
                        // reading before the next lap may overwrite.
                        sh.stamp_in(pos, st)
                            .store(pos.wrapping_add(sh.capacity), Ordering::Release);
                        return Ok((v, pos));
                    }
                    Err(h) => {
                        // Lost the race for `pos`: withdraw the claim record (as in push).
                        claim.inflight.store(NONE, Ordering::Release);
                        pos = h;
                    }
                }
            } else if stamp == pos
                || stamp == pos.wrapping_sub(sh.capacity).wrapping_add(1)
                || stamp == pos.wrapping_sub(sh.capacity)
            {
                // Not yet written. (`pos - capacity`: the previous lap's position was skipped
                // by a consumer that died before freeing the slot; the next producer here
                // frees it, see `Producer::attempt`.)
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
    /// the position and has not published). Other attempts are returned unchanged.
    pub(super) fn classify(&self, a: Attempt) -> Attempt {
        let Attempt::Unpublished { pos, stamp } = a else {
            return a;
        };
        // SeqCst fence as crossbeam: order the (earlier) stamp load before the tail load.
        fence(Ordering::SeqCst);
        // Acquire pairs with the producers' tail CAS (their inflight stores).
        let tail = self.h.q.ctrl().tail.tail.load(Ordering::Acquire);
        if tail == pos || stamp != pos {
            return Attempt::Blocked;
        }
        // No producer claims `pos + capacity` before a consumer claimed `pos`: with `head`
        // still at `pos` (reloaded after `tail`), more than `capacity` claimed positions mean
        // the indices are corrupt (else skipping dead claims could walk up to a garbage tail).
        // Acquire: as for the head CAS.
        if tail.wrapping_sub(pos) > self.h.q.capacity
            && self.h.q.ctrl().head.head.load(Ordering::Acquire) == pos
        {
            return Attempt::Corrupt;
        }
        Attempt::InFlight(pos)
    }
}

impl<T: Element + Copy> ProdEnd<TypedLayout<T>> {
    /// Push a prefix of `items` (at least one, else the first attempt's outcome): how many,
    /// and the first position. Each element is claimed and published as by
    /// [`attempt`](Self::attempt); the caller wakes consumers once for the batch.
    pub(super) fn attempt_many(&mut self, items: &[T]) -> Result<(usize, u64), Attempt> {
        let Some((v, rest)) = items.split_first() else {
            return Ok((0, 0));
        };
        // SAFETY: an element of `items` is `size_of::<T>()` readable bytes, private.
        let first = unsafe { self.attempt(elem_bytes(v)) }?;
        let n = 1 + rest
            .iter()
            // SAFETY: as for the first.
            .take_while(|&v| unsafe { self.attempt(elem_bytes(v)) }.is_ok())
            .count();
        Ok((n, first))
    }
}

impl<T: Element + Copy> ConsEnd<TypedLayout<T>> {
    /// Pop into a prefix of `out` (at least one element, else the first attempt's outcome,
    /// classified as `classify` says): how many, and the first position. The caller wakes
    /// producers once for the batch.
    pub(super) fn attempt_many(
        &mut self,
        out: &mut [T],
        classify: bool,
    ) -> Result<(usize, u64), Attempt> {
        let Some((o, rest)) = out.split_first_mut() else {
            return Ok((0, 0));
        };
        let (v, first) = self.attempt(classify, TakeTyped::NEW)?;
        *o = v;
        let mut n = 1;
        for o in rest {
            match self.attempt(false, TakeTyped::NEW) {
                Ok((v, _)) => *o = v,
                Err(_) => break,
            }
            n += 1;
        }
        Ok((n, first))
    }
}

/// The bytes of a typed element, as the source of a push attempt.
#[inline(always)]
pub(super) fn elem_bytes<T: Element>(v: &T) -> *const u8 {
    zerocopy::IntoBytes::as_bytes(v).as_ptr()
}

/// What a pop attempt does with the element it claimed, for a consumer of layout `L`: copy it
/// out of the slot ([`ConsEnd::attempt`]).
pub(super) trait Take<L> {
    /// What the copy gives: the typed element, or nothing (a raw handle's slice holds it).
    type Out;

    /// Copy the element out of the slot at `src`.
    ///
    /// # Safety
    ///
    /// `src` is the element bytes of a slot the consumer owns (no producer that follows the
    /// protocol writes them), of `L`'s size, unaligned; they are read only with whole-word
    /// atomic loads (`SPEC.md` §1).
    unsafe fn take(self, src: *const u8) -> Self::Out;
}

/// A typed consumer's [`Take`]: the element, returned by value (in a register for a small
/// one), as the typed pop returns it.
pub(super) struct TakeTyped<T>(PhantomData<fn() -> T>);

impl<T> TakeTyped<T> {
    pub(super) const NEW: Self = TakeTyped(PhantomData);
}

impl<T: Element> Take<TypedLayout<T>> for TakeTyped<T> {
    type Out = T;

    #[inline(always)]
    unsafe fn take(self, src: *const u8) -> T {
        // SAFETY: the caller's contract, for `size_of::<T>()` bytes (`TypedLayout<T>`'s size);
        // any bytes are a valid T (FromBytes).
        unsafe { crate::queue::load_elem::<T>(src) }
    }
}

/// A raw consumer's [`Take`]: the element's bytes, copied into the caller's slice.
#[cfg(not(loom))]
pub(super) struct TakeRaw {
    lay: RawLayout,
    dst: *mut u8,
}

#[cfg(not(loom))]
impl TakeRaw {
    /// # Safety
    ///
    /// `dst` is writable for `lay`'s size, private to this thread, while the value lives.
    pub(super) unsafe fn new(lay: RawLayout, dst: *mut u8) -> Self {
        TakeRaw { lay, dst }
    }
}

#[cfg(not(loom))]
impl Take<RawLayout> for TakeRaw {
    type Out = ();

    #[inline(always)]
    unsafe fn take(self, src: *const u8) {
        // SAFETY: the caller's contract for `src`, of the layout's size; `dst` is that many
        // writable private bytes (`TakeRaw::new`).
        unsafe { self.lay.load(src, self.dst) }
    }
}
