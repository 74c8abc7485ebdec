//! [`Producer`]: push (`SPEC.md` §7.5.2) and the recovery of cells held by dead consumers.

use super::*;

/// A producing handle of an MPMC bytes [`Queue`]. `Send` (every operation takes `&mut self`). Dropping it detaches
/// it (the queue stays open); [`close`](Self::close) closes the producer side once no other
/// producer is attached.
pub struct Producer {
    pub(super) h: Handle,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc_bytes::Producer")
            .field("slot", &self.h.slot())
            .finish()
    }
}

impl Producer {
    fn attempt(&mut self, msg: &[u8]) -> Result<(), Attempt> {
        let sh = &*self.h.q;
        let ctrl = sh.ctrl();
        let k = cells_for(msg.len() as u64);
        // Relaxed: a starting guess, validated by the stamps and the CAS.
        let mut pos = ctrl.tail.tail.load(Ordering::Relaxed);
        'retry: loop {
            for i in 0..k {
                let p = pos.wrapping_add(i);
                // Acquire pairs with the consumers' Release stores freeing the cell (after
                // they read the previous lap): we may overwrite it.
                let stamp = sh.stamp(p).load(Ordering::Acquire);
                if stamp == p {
                    continue;
                }
                let prev = p.wrapping_sub(sh.cells);
                if stamp == prev || stamp == prev.wrapping_add(1) {
                    // The previous lap's record is still there: full, or a consumer claimed
                    // it (head is past it) and has not freed the cell. SeqCst fence, as
                    // crossbeam: order the stamp load before the head load. Acquire pairs
                    // with the consumers' head CAS (their claim records).
                    fence(Ordering::SeqCst);
                    let head = ctrl.head.head.load(Ordering::Acquire);
                    return Err(if head.wrapping_sub(prev) as i64 > 0 {
                        Attempt::InFlight { pos: prev, stamp }
                    } else {
                        Attempt::Blocked { pos: p, stamp }
                    });
                }
                // Another producer claimed past `pos`, or the stamp is garbage. Acquire
                // (pairs with the tail CAS): a tail that has not moved says the stamp we
                // read is current.
                let t = ctrl.tail.tail.load(Ordering::Acquire);
                if t == pos {
                    return Err(Attempt::Corrupt);
                }
                pos = t;
                continue 'retry;
            }
            let end = pos.wrapping_add(k);
            self.h.record(pos, end);
            // AcqRel: Release makes the claim record visible to whoever sees the new tail.
            match ctrl.tail.tail.compare_exchange_weak(
                pos,
                end,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // The cells are ours.
                    sh.copy_in(pos, msg);
                    #[cfg(all(test, loom))]
                    for i in 0..k {
                        sh.region.shadow_write(sh.cell_index(pos.wrapping_add(i)));
                    }
                    // Relaxed: published by the stamp store below.
                    sh.rec_len(pos).store(msg.len() as u64, Ordering::Relaxed);
                    // Release pairs with the consumers' Acquire stamp load: length and bytes
                    // are visible before the stamp says the record is there.
                    sh.stamp(pos).store(pos.wrapping_add(1), Ordering::Release);
                    // SYNC POINT (pair A of `sync/park.rs`, waker side): our stamp
                    // store(s), this fence, then the load of `sleepers` in `notify_fenced`.
                    // No locked access when nobody sleeps. One consumer for each cell claimed
                    // from `pos` up to the tail, as MPMC does (`SPEC.md` §7.4): a consumer
                    // woken for a later message published before ours could not pop past
                    // `pos` and went back to sleep.
                    crate::loom::fence(Ordering::SeqCst);
                    let tail = ctrl.tail.tail.load(Ordering::Relaxed);
                    ctrl.tail
                        .not_empty
                        .notify_fenced(crate::queue::mpmc::wake_count(tail.wrapping_sub(pos)));
                    return Ok(());
                }
                Err(t) => {
                    self.h.withdraw();
                    pos = t;
                }
            }
        }
    }

    /// Free the cells from `prev` on that dead consumers claimed and never freed (their
    /// messages are lost), all of them now (a record is up to N/2 cells, and one cell per
    /// 20 ms slice stalled the queue for N/2 slices): each claimed cell (below the head) that
    /// no live consumer's claim covers and that is still unfreed, until one is not.
    fn recover(&self, prev: u64) {
        let sh = &*self.h.q;
        // Acquire pairs with the consumers' head CAS: every cell below it was claimed by a
        // consumer, with its claim record visible to `live_claimer`.
        let head = sh.ctrl().head.head.load(Ordering::Acquire);
        recover_run(prev, head, sh.cells, |p| self.free_one(p));
    }

    /// Free cell `prev` (claimed by a consumer: below the head) if no live consumer's claim
    /// covers it. Returns whether this call freed it.
    fn free_one(&self, prev: u64) -> bool {
        let sh = &*self.h.q;
        if sh.live_claimer(Role::Consumer, prev) {
            return false;
        }
        // Release the cell as its claimer would have: from `prev + 1` (first cell of a
        // record), or `prev` (an inner cell, or a dead producer's cell it was skipping).
        // AcqRel: the CAS decides among racing recoverers; Release pairs with producers'
        // Acquire stamp loads.
        for from in [prev.wrapping_add(1), prev] {
            if sh
                .stamp(prev)
                .compare_exchange(
                    from,
                    prev.wrapping_add(sh.cells),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                sh.ctrl().head.not_full.notify_one();
                return true;
            }
        }
        false
    }

    fn check(&self, msg: &[u8]) -> Result<(), BytesPushError> {
        let max = self.h.q.max_message;
        if msg.len() as u64 > max {
            return Err(BytesPushError::TooLarge {
                len: msg.len() as u64,
                max,
            });
        }
        if self.h.is_closed() || side_gone(&*self.h.q, Role::Consumer, false) {
            return Err(BytesPushError::Disconnected);
        }
        Ok(())
    }

    /// Push `msg` if there is room now (never waits): [`BytesPushError::Full`] otherwise.
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), BytesPushError> {
        self.check(msg)?;
        match self.attempt(msg) {
            Ok(()) => Ok(()),
            Err(Attempt::Corrupt) => Err(BytesPushError::Corrupt),
            Err(a) => {
                if self.h.throttle.due() {
                    if let Attempt::InFlight { pos, .. } = a {
                        self.recover(pos);
                    }
                    if side_gone(&*self.h.q, Role::Consumer, true) {
                        return Err(BytesPushError::Disconnected);
                    }
                }
                Err(BytesPushError::Full)
            }
        }
    }

    blocking_forms! {
        /// Push `msg`, waiting as long as it takes for room (the other forms: then
        /// [`BytesPushError::Timeout`]).
        fn push / push_timeout / push_deadline (msg: &[u8]) -> Result<(), BytesPushError> = push_within;
    }

    /// The blocking loop: every 20 ms it frees a cell held by a dead consumer and checks
    /// whether the consumer side is gone.
    fn push_within(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), BytesPushError> {
        self.check(msg)?;
        let mut round = 0u32;
        // Whether the last wait ended (a wake-up, or `head` or the stamp moved), and the
        // `head` at which we last passed a wake-up on.
        let mut woke = false;
        let mut passed_at = None;
        loop {
            if self.h.is_closed() || side_gone(&*self.h.q, Role::Consumer, false) {
                return Err(BytesPushError::Disconnected);
            }
            // Acquire pairs with consumers' head CAS: a pop after this snapshot ends the wait.
            let head0 = self.h.q.ctrl().head.head.load(Ordering::Acquire);
            let (pos, stamp, inflight) = match self.attempt(msg) {
                Ok(()) => return Ok(()),
                Err(Attempt::Corrupt) => return Err(BytesPushError::Corrupt),
                Err(Attempt::InFlight { pos, stamp }) => (pos, stamp, true),
                Err(Attempt::Blocked { pos, stamp } | Attempt::Unpublished { pos, stamp }) => {
                    (pos, stamp, false)
                }
            };
            // Woken for freed cells we still cannot use (our record needs more of them): the
            // wake-up may have been the one a shorter message's producer needed, asleep
            // behind us. Pass one on, at most once for each value of `head`, so that
            // producers that all need more cells than are free stop after one round instead
            // of waking each other for ever (SPEC §7.5.4).
            if woke && passed_at != Some(head0) {
                passed_at = Some(head0);
                self.h.q.ctrl().head.not_full.notify_if_sleepers(1);
            }
            woke = false;
            if deadline::passed(deadline) {
                return Err(BytesPushError::Timeout);
            }
            if yield_first(&mut round) {
                continue;
            }
            let sh = &*self.h.q;
            // The wait ends when a consumer moves `head` or frees the cell we wait for.
            // Acquire: as `head0`, and the stamp as in `attempt`.
            let ready = || {
                sh.ctrl().head.head.load(Ordering::Acquire) != head0
                    || sh.stamp(pos).load(Ordering::Acquire) != stamp
                    || side_gone(sh, Role::Consumer, false)
            };
            // Every slice: free the cell we wait for if its consumer died, and end the wait
            // if the consumer side is gone.
            let check = || {
                if inflight {
                    self.recover(pos);
                }
                side_gone(sh, Role::Consumer, true).then_some(())
            };
            match wait_sliced(
                &sh.ctrl().head.not_full,
                &self.h.spin,
                ready,
                deadline,
                check,
            ) {
                Wake::Retry => woke = true,
                Wake::TimedOut => return Err(BytesPushError::Timeout),
                Wake::Gone(()) => return Err(BytesPushError::Disconnected),
            }
        }
    }

    /// The largest message accepted.
    pub fn max_message(&self) -> u64 {
        self.h.q.max_message
    }

    /// Close this producer: free its claim slot and, if no other producer is attached, close
    /// the producer side (consumers drain, then get [`PopError::Disconnected`]). While another
    /// producer is attached this only detaches, as dropping does. A producer that attaches
    /// later reopens the side.
    pub fn close(&mut self) {
        self.h.close()
    }
}
