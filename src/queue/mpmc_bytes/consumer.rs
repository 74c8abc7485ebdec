//! [`Consumer`]: pop (`SPEC.md` §7.5.3) and the skipping of cells claimed by dead producers.

use super::*;

/// A consuming handle of an MPMC bytes [`Queue`]. `Send` (every operation takes `&mut self`). Dropping it detaches
/// it (the queue keeps its messages for the next consumer); [`close`](Self::close) closes the
/// consumer side once no other consumer is attached.
pub struct Consumer {
    pub(super) h: Handle,
    /// Scratch buffer of `try_pop`/`pop`, whose results are fresh `Vec`s.
    pub(super) buf: Vec<u8>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc_bytes::Consumer")
            .field("slot", &self.h.slot())
            .finish()
    }
}

impl Consumer {
    /// One pop attempt into `out`. With `classify` false, an unpublished cell is reported as
    /// `Unpublished` without telling empty from in flight.
    fn attempt(&mut self, out: &mut Vec<u8>, classify: bool) -> Result<usize, Attempt> {
        let sh = &*self.h.q;
        let ctrl = sh.ctrl();
        // Relaxed: a starting guess, validated by the stamp and the CAS.
        let mut pos = ctrl.head.head.load(Ordering::Relaxed);
        loop {
            // Acquire pairs with the producer's Release stamp store: the record is visible.
            let stamp = sh.stamp(pos).load(Ordering::Acquire);
            if stamp == pos.wrapping_add(1) {
                // Relaxed: ordered by the stamp's Acquire above. The stamp may be stale
                // (another consumer took the record since, and a producer of the next lap may
                // be writing this cell's length): the length is a word of the lengths array, never
                // a data byte, so this read races only whole-word stores; the CAS below fails
                // then.
                let len = sh.rec_len(pos).load(Ordering::Relaxed);
                // Room for the message before the claim: a length this process cannot
                // allocate (a forged one, up to `max_message` of a huge sparse queue) is then
                // an error that leaves the record in place, not an abort.
                if len > sh.max_message
                    || out
                        .try_reserve((len as usize).saturating_sub(out.len()))
                        .is_err()
                {
                    // A racing consumer took the record and a producer is rewriting the length,
                    // or the length is garbage. Acquire: as for the head CAS.
                    let h = ctrl.head.head.load(Ordering::Acquire);
                    if h == pos {
                        return Err(Attempt::Corrupt);
                    }
                    pos = h;
                    continue;
                }
                let end = pos.wrapping_add(cells_for(len));
                self.h.record(pos, end);
                // AcqRel: Release publishes the claim record with the new head.
                match ctrl.head.head.compare_exchange_weak(
                    pos,
                    end,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // The record is ours: no producer writes its cells until we free them.
                        sh.copy_out(pos, len, out);
                        let mut p = pos;
                        while p != end {
                            #[cfg(all(test, loom))]
                            sh.region.shadow_read(sh.cell_index(p));
                            // Release pairs with the producers' Acquire stamp loads: we are
                            // done reading before the next lap may overwrite.
                            sh.stamp(p)
                                .store(p.wrapping_add(sh.cells), Ordering::Release);
                            p = p.wrapping_add(1);
                        }
                        // SYNC POINT (pair A of `sync/park.rs`, waker side): our stamp
                        // store(s), this fence, then the load of `sleepers` in
                        // `notify_fenced`. No locked access when nobody sleeps. One producer
                        // for each cell claimed from `pos` up to the head, as the producer
                        // side does.
                        crate::loom::fence(Ordering::SeqCst);
                        let head = ctrl.head.head.load(Ordering::Relaxed);
                        ctrl.head
                            .not_full
                            .notify_fenced(crate::queue::mpmc::wake_count(head.wrapping_sub(pos)));
                        return Ok(len as usize);
                    }
                    Err(h) => {
                        self.h.withdraw();
                        pos = h;
                    }
                }
            } else if stamp == pos
                || stamp == pos.wrapping_sub(sh.cells).wrapping_add(1)
                || stamp == pos.wrapping_sub(sh.cells)
            {
                // Not written yet (`pos`), or the previous lap's consumer has not freed the
                // cell yet (then no producer can have claimed `pos`: empty).
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
    /// the cell and has not published).
    fn classify(&self, a: Attempt) -> Attempt {
        let Attempt::Unpublished { pos, stamp } = a else {
            return a;
        };
        let ctrl = self.h.q.ctrl();
        // SeqCst fence as crossbeam: order the (earlier) stamp load before the tail load.
        fence(Ordering::SeqCst);
        // Acquire pairs with the producers' tail CAS (their claim records).
        let tail = ctrl.tail.tail.load(Ordering::Acquire);
        if tail == pos || stamp != pos {
            return Attempt::Blocked { pos, stamp };
        }
        // At most N cells are claimed ahead of `head`: more, with `head` still at `pos`
        // (reloaded after `tail`), means corrupt indices (else skipping dead claims could
        // walk towards a garbage tail). Acquire: as for the head CAS.
        if tail.wrapping_sub(pos) > self.h.q.cells && ctrl.head.head.load(Ordering::Acquire) == pos
        {
            return Attempt::Corrupt;
        }
        Attempt::InFlight { pos, stamp }
    }

    /// Skip the cells from `pos` on that dead producers claimed and never published, all of
    /// them now (a dead producer's record is up to N/2 cells, and one cell per 20 ms slice
    /// stalled the queue for N/2 slices): each claimed cell (below the tail) that is
    /// unpublished and that no live producer's claim covers, until one is not. Returns
    /// whether `pos` was skipped.
    fn recover(&self, pos: u64) -> bool {
        let sh = &*self.h.q;
        // Acquire pairs with the producers' tail CAS: every cell below it was claimed, with its
        // claimer's record visible to `live_claimer`. A cell at or past it is nobody's.
        let tail = sh.ctrl().tail.tail.load(Ordering::Acquire);
        recover_run(pos, tail, sh.cells, |p| self.skip_one(p)) > 0
    }

    /// Skip cell `pos` (claimed: below the tail) if no live producer's claim covers it.
    /// Returns whether skipped.
    fn skip_one(&self, pos: u64) -> bool {
        let sh = &*self.h.q;
        if sh.live_claimer(Role::Producer, pos) {
            return false;
        }
        // Acquire (pairs with the producer's Release stamp store in `Producer::attempt`, as
        // in `attempt`): re-check after the scan; a published record is taken normally.
        if sh.stamp(pos).load(Ordering::Acquire) != pos {
            return false;
        }
        // Its claimer died between claiming and publishing: claim the cell as a consumer and
        // free it empty. The claim record first, as in `attempt`.
        self.h.record(pos, pos.wrapping_add(1));
        let ctrl = sh.ctrl();
        // AcqRel: as the head CAS in `attempt` (Release publishes the claim record with the
        // new head, for `live_claimer` and the producers' Acquire head loads).
        if ctrl
            .head
            .head
            .compare_exchange(
                pos,
                pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            // Release pairs with producers' Acquire stamp loads.
            sh.stamp(pos)
                .store(pos.wrapping_add(sh.cells), Ordering::Release);
            ctrl.head.not_full.notify_one();
            return true;
        }
        self.h.withdraw();
        false
    }

    /// Pop the oldest message into `out` (cleared first; its allocation is reused) if there
    /// is one now; returns its length. Never waits.
    pub fn try_pop_into(&mut self, out: &mut Vec<u8>) -> Result<usize, TryPopError> {
        if self.h.is_closed() {
            return Err(TryPopError::Disconnected);
        }
        match self.attempt(out, false) {
            Ok(n) => Ok(n),
            Err(Attempt::Corrupt) => Err(TryPopError::Corrupt),
            Err(a) => {
                let thorough = self.h.throttle.due();
                // Fast path of a busy poll on an empty queue (as `mpmc`): unless a thorough
                // check is due or the producer side was closed, the answer is `Empty`.
                // Acquire: as in `side_gone`.
                if !thorough
                    && self.h.q.ctrl().geo.state.load(Ordering::Acquire) & PRODUCER_CLOSED == 0
                {
                    return Err(TryPopError::Empty);
                }
                let a = self.classify(a);
                if matches!(a, Attempt::Corrupt) {
                    return Err(TryPopError::Corrupt);
                }
                if thorough {
                    if let Attempt::InFlight { pos, .. } = a {
                        if self.recover(pos) {
                            return self.try_pop_into(out);
                        }
                    }
                }
                if matches!(a, Attempt::Blocked { .. })
                    && side_gone(&*self.h.q, Role::Producer, thorough)
                {
                    return self.drain(out);
                }
                Err(TryPopError::Empty)
            }
        }
    }

    /// The producer side is gone: one more attempt delivers what it published last.
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<usize, TryPopError> {
        match self.attempt(out, true) {
            Ok(n) => Ok(n),
            Err(Attempt::Corrupt) => Err(TryPopError::Corrupt),
            Err(_) => Err(TryPopError::Disconnected),
        }
    }

    /// [`drain`](Self::drain) for the blocking forms (it is never `Empty`).
    fn drain_blocking(&mut self, out: &mut Vec<u8>) -> Result<usize, PopError> {
        self.drain(out)
            .map_err(|e| e.blocking().unwrap_or(PopError::Disconnected))
    }

    blocking_forms! {
        /// Pop the oldest message into `out`, waiting as long as it takes; returns its
        /// length (the other forms: then [`PopError::Timeout`]).
        fn pop_into / pop_into_timeout / pop_into_deadline (out: &mut Vec<u8>)
            -> Result<usize, PopError> = pop_within;
    }

    /// Pop the oldest message if there is one now (never waits).
    pub fn try_pop(&mut self) -> Result<Vec<u8>, TryPopError> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.try_pop_into(&mut buf);
        self.owned(r, buf)
    }

    blocking_forms! {
        /// Pop the oldest message, waiting as long as it takes (the other forms: then
        /// [`PopError::Timeout`]).
        fn pop / pop_timeout / pop_deadline () -> Result<Vec<u8>, PopError> = pop_deadline_opt;
    }

    fn pop_deadline_opt(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, PopError> {
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.pop_within(&mut buf, deadline);
        self.owned(r, buf)
    }

    /// The message as a `Vec` of its own length; an unused buffer is kept for next time.
    fn owned<E>(&mut self, r: Result<usize, E>, buf: Vec<u8>) -> Result<Vec<u8>, E> {
        match r {
            Ok(_) => Ok(buf),
            Err(e) => {
                self.buf = buf;
                Err(e)
            }
        }
    }

    /// The blocking loop: every 20 ms it skips a cell claimed by a dead producer and checks
    /// whether the producer side is gone (drain, then `Disconnected`).
    fn pop_within(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, PopError> {
        let mut round = 0u32;
        loop {
            if self.h.is_closed() {
                return Err(PopError::Disconnected);
            }
            // Acquire pairs with producers' tail CAS: a push after this snapshot ends the wait.
            let tail0 = self.h.q.ctrl().tail.tail.load(Ordering::Acquire);
            let inflight = match self.attempt(out, true) {
                Ok(n) => return Ok(n),
                Err(Attempt::Corrupt) => return Err(PopError::Corrupt),
                Err(Attempt::InFlight { pos, .. }) => Some(pos),
                Err(_) => None,
            };
            if side_gone(&*self.h.q, Role::Producer, false) {
                match inflight {
                    None => return self.drain_blocking(out),
                    // The cell's claimer is gone with its side: skip it and retry.
                    Some(p) => {
                        if self.recover(p) {
                            if deadline::passed(deadline) {
                                return Err(PopError::Timeout);
                            }
                            continue;
                        }
                    }
                }
            }
            // Every round checks the deadline: a wait that ends at once (a gone side, a
            // hostile stamp) must not loop past it.
            if deadline::passed(deadline) {
                return Err(PopError::Timeout);
            }
            if yield_first(&mut round) {
                continue;
            }
            let sh = &*self.h.q;
            // Ends when a producer moves `tail`, or publishes the in-flight cell. Acquire: as
            // `tail0` (the producers' tail CAS), and the stamp as in `attempt` (the producer's
            // Release stamp store).
            let ready = || {
                sh.ctrl().tail.tail.load(Ordering::Acquire) != tail0
                    || inflight.is_some_and(|p| sh.stamp(p).load(Ordering::Acquire) != p)
                    || (inflight.is_none() && side_gone(sh, Role::Producer, false))
            };
            // Every slice: skip the cell we wait for if its producer died, or end the wait if
            // the producer side is gone (then drain).
            let check = || match inflight {
                Some(p) => {
                    self.recover(p);
                    None
                }
                None => side_gone(sh, Role::Producer, true).then_some(()),
            };
            match wait_sliced(
                &sh.ctrl().tail.not_empty,
                &self.h.spin,
                ready,
                deadline,
                check,
            ) {
                Wake::Retry => {}
                Wake::TimedOut => return Err(PopError::Timeout),
                Wake::Gone(()) => return self.drain_blocking(out),
            }
        }
    }

    /// Close this consumer: free its claim slot and, if no other consumer is attached, close
    /// the consumer side (every push then fails with [`BytesPushError::Disconnected`]). While
    /// another consumer is attached this only detaches.
    pub fn close(&mut self) {
        self.h.close()
    }
}
