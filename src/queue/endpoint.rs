//! One queue endpoint: what every queue kind's producer and consumer handles share, written
//! once. A handle holds an [`Endpoint`] over its queue's shared state (any type implementing
//! [`Roles`]) and calls it for:
//!
//! - **claiming a role** ([`Endpoint::attach`]): the first free (or dead-held) [`RoleSlot`] of
//!   its side, then reopening the side (clearing its closed bit in the queue's `state` word);
//! - **liveness** of the other side: [`side_gone`] (closed by its last handle, or every
//!   attached handle dead), [`Endpoint::peer_closed`] (one load, for hot paths),
//!   [`Endpoint::peer_gone`] (polling paths: rate-limited `/proc` reads through a
//!   [`Throttle`]), [`Endpoint::peer_dead`] (reads `/proc`);
//! - **detach** (what dropping does: free the slot, the side stays open) and **close**
//!   ([`Endpoint::close`]: the side closes when its last attached handle closes);
//! - **the blocking wait** ([`wait_sliced`]): sleep on a [`WaitQueue`] until a condition holds
//!   or the deadline passes, waking every [`WAIT_SLICE`](role::WAIT_SLICE) to run the kind's
//!   own liveness check (and recovery), which may end the wait.
//!
//! # Using it for a new queue kind
//!
//! 1. Put a `state` word (`PRODUCER_CLOSED | CONSUMER_CLOSED` bits: [`PRODUCER_CLOSED`],
//!    [`CONSUMER_CLOSED`]) and one or more [`RoleSlot`]s per side in the control block.
//! 2. Implement [`Roles`] on the type the handles share (`Arc<Q>`): where the state word and
//!    the slots are, what to reset in a slot just claimed ([`Roles::claimed`]), and which
//!    wait queues to wake when a side closes ([`Roles::wake_closed`]).
//! 3. Each handle holds an `Endpoint<Q>` from [`Endpoint::attach`]; its `close()` calls
//!    [`Endpoint::close`]; dropping the endpoint detaches it.
//! 4. Blocking calls: a private `x_within(…, deadline: Option<Instant>)` that tries, then waits
//!    with [`wait_sliced`] (or [`Endpoint::wait`], whose slice check is "the peer is dead"),
//!    and [`blocking_forms!`](crate::os::deadline::blocking_forms) for the public forms.
//!
//! A side with one slot (SPSC, bytes ring) reports a held role as [`AttachError::Busy`], one
//! with several (MPMC) a full side as [`AttachError::NoFreeSlot`].

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use super::error::{AttachError, Role};
use super::role::{self, RoleSlot, Throttle};
use crate::loom::{fence, AtomicU64, Ordering};
use crate::sync::waiter::Spin;
use crate::sync::WaitQueue;
use crate::Liveness;

/// `state` bit: the producer side is closed: its last attached handle called `close()` (not
/// set by a drop; cleared when a producer attaches).
pub(crate) const PRODUCER_CLOSED: u64 = 1;
/// `state` bit: the consumer side is closed (as [`PRODUCER_CLOSED`]).
pub(crate) const CONSUMER_CLOSED: u64 = 2;

/// The `state` bit of `role`'s side.
pub(crate) fn closed_bit(role: Role) -> u64 {
    match role {
        Role::Producer => PRODUCER_CLOSED,
        Role::Consumer => CONSUMER_CLOSED,
    }
}

/// The other side.
pub(crate) fn peer_of(role: Role) -> Role {
    match role {
        Role::Producer => Role::Consumer,
        Role::Consumer => Role::Producer,
    }
}

/// Where a queue keeps its roles (see the module docs).
pub(crate) trait Roles {
    /// The word holding the [`PRODUCER_CLOSED`] and [`CONSUMER_CLOSED`] bits.
    fn state(&self) -> &AtomicU64;
    /// How many handles `role`'s side may have at once.
    fn slots(&self, role: Role) -> usize;
    /// Slot `i < slots(role)` of `role`'s side.
    fn slot(&self, role: Role, i: usize) -> &RoleSlot;
    /// Reset the per-slot state of slot `i`, just claimed (before the side reopens).
    fn claimed(&self, _role: Role, _i: usize) {}
    /// Wake every waiter that must notice that `role`'s side closed.
    fn wake_closed(&self, role: Role);
}

/// Whether `role`'s side is gone: its last attached handle closed it (the bit is set and no
/// handle is attached), or (with `thorough`, which reads `/proc`) every attached handle is
/// dead. A side whose handles all detached without closing, or that nobody attached yet, is
/// not gone.
#[inline]
pub(crate) fn side_gone<Q: Roles + ?Sized>(q: &Q, role: Role, thorough: bool) -> bool {
    gone_holder(q, role, thorough).is_some()
}

/// [`side_gone`], and when the side is gone, the dead holder's owner word the check judged
/// (0: the side is closed and free, or none was judged).
#[inline]
fn gone_holder<Q: Roles + ?Sized>(q: &Q, role: Role, thorough: bool) -> Option<u64> {
    // Acquire pairs with the Release `fetch_or` in `Endpoint::close`: the closer's last
    // publication is visible to a re-check after this.
    let closed = q.state().load(Ordering::Acquire) & closed_bit(role) != 0;
    if !closed && !thorough {
        // The hot paths' answer (every try_push checks): one load, inlined.
        return None;
    }
    side_gone_slow(q, role, closed, thorough)
}

/// The rest of [`gone_holder`]: the holders, and with `thorough` their liveness.
///
/// Each owner word is loaded once: a scan that first found a holder and then, in a second
/// pass, found its slot freed by a detach counted the side as "occupied, every occupant
/// dead", and reported a side whose last handle only detached as gone (a consumer got
/// `Disconnected`; `loom_a_detached_producer_leaves_the_consumer_waiting_for_the_next`).
/// The dead word returned is one this scan judged, never a reload (see
/// [`Endpoint::peer_dead`]).
#[inline(never)]
fn side_gone_slow<Q: Roles + ?Sized>(
    q: &Q,
    role: Role,
    closed: bool,
    thorough: bool,
) -> Option<u64> {
    let (mut occupied, mut all_dead, mut dead) = (false, true, 0);
    for i in 0..q.slots(role) {
        let w = q.slot(role, i).holder();
        if w != 0 {
            occupied = true;
            // Only a thorough check reads `/proc`; the first live holder settles it.
            all_dead = all_dead && thorough && role::liveness_of(w) == Liveness::Dead;
            dead = w;
        }
    }
    if !occupied {
        // The last handle closed the side; or all detached (or none ever attached), which
        // leaves it open.
        return closed.then_some(0);
    }
    all_dead.then_some(dead)
}

/// How a blocking wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake<G = ()> {
    /// The condition may hold: retry the operation.
    Retry,
    /// The caller's deadline passed.
    TimedOut,
    /// The slice check said the wait is over (a dead peer, …).
    Gone(G),
}

/// Block on `wq` until `ready()`, the deadline, or `check()` (run after every
/// [`WAIT_SLICE`](role::WAIT_SLICE) of sleep that ended without the deadline passing) returns
/// `Some`. `check` may also repair what it finds (recover a dead handle's slot), which the
/// next `ready()` then sees. A deadline in the past checks `ready()` once.
pub(crate) fn wait_sliced<G>(
    wq: &WaitQueue,
    spin: &Spin,
    mut ready: impl FnMut() -> bool,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<G>,
) -> Wake<G> {
    loop {
        #[cfg(not(loom))]
        let until = crate::os::deadline::slice(deadline, role::WAIT_SLICE);
        // Under loom a timed futex wait returns at once, so wait without slices.
        #[cfg(loom)]
        let until = deadline;
        if wq.wait_adaptive(&mut ready, until, spin).is_ok() {
            return Wake::Retry;
        }
        if crate::os::deadline::passed(deadline) {
            return Wake::TimedOut;
        }
        if let Some(g) = check() {
            return Wake::Gone(g);
        }
    }
}

/// One handle's hold on a role of queue `Q`: from [`attach`](Self::attach) to
/// [`close`](Self::close), [`detach`](Self::detach) or drop (which detaches).
pub(crate) struct Endpoint<Q: Roles> {
    /// The queue's shared state.
    pub q: Arc<Q>,
    role: Role,
    /// Our slot among `role`'s.
    slot: usize,
    me: u64,
    closed: bool,
    /// Rate limit of the polling paths' liveness checks.
    pub throttle: Throttle,
    /// Owner word of a single-slot peer found dead (0: none), so later polls need no `/proc`
    /// read while the dead process still holds the role.
    dead_peer: Cell<u64>,
    /// Empty polls of a consumer so far (see [`Endpoint::look_at_tail`]).
    empty_polls: u32,
    /// This handle's adaptive spin before it parks in a blocking wait.
    pub spin: Spin,
}

impl<Q: Roles> Endpoint<Q> {
    /// Claim a slot of `role` (free, or held by a dead process), and reopen that side.
    pub(crate) fn attach(q: Arc<Q>, role: Role) -> Result<Self, AttachError> {
        let me = role::me()?;
        let n = q.slots(role);
        let mut busy = 0;
        for i in 0..n {
            match q.slot(role, i).claim(me) {
                Ok(()) => {
                    q.claimed(role, i);
                    // AcqRel: Acquire pairs with the previous holder's Release `close` (we see
                    // its indices); Release publishes the reopening to the peer's Acquire in
                    // `side_gone`.
                    q.state().fetch_and(!closed_bit(role), Ordering::AcqRel);
                    return Ok(Endpoint {
                        q,
                        role,
                        slot: i,
                        me,
                        closed: false,
                        throttle: Throttle::default(),
                        dead_peer: Cell::new(0),
                        empty_polls: 0,
                        spin: Spin::default(),
                    });
                }
                Err(w) => busy = w,
            }
        }
        Err(if n == 1 {
            AttachError::Busy {
                role,
                pid: role::pid_of(busy),
            }
        } else {
            AttachError::NoFreeSlot {
                role,
                slots: n as u32,
            }
        })
    }

    /// Our role.
    #[inline]
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// Our slot's index among our side's.
    #[inline]
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// Whether this handle was closed, or belongs to another process: a handle inherited by
    /// a `fork()`ed child is closed there (the role stays its parent's). One Relaxed load.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed || !role::is_mine(self.me)
    }

    /// Whether the peer side was closed by its last handle (no `/proc` read: one load while
    /// the bit is clear).
    #[inline]
    pub(crate) fn peer_closed(&self) -> bool {
        side_gone(&*self.q, peer_of(self.role), false)
    }

    /// Whether the peer side is gone: closed, or every attached peer is dead (reads `/proc`:
    /// not for hot paths).
    pub(crate) fn peer_dead(&self) -> bool {
        let peer = peer_of(self.role);
        let Some(dead) = gone_holder(&*self.q, peer, true) else {
            return false;
        };
        if self.q.slots(peer) == 1 {
            // The word the check judged dead, not a reload of the slot: a reload after a
            // close and a new handle's attach remembered the live newcomer as dead, and
            // `peer_gone` then reported it gone while it held the role
            // (`loom_a_liveness_check_racing_a_close_and_an_attach_does_not_condemn_the_new_producer`).
            self.dead_peer.set(dead);
        }
        true
    }

    /// Polling-path check: the peer closed, or (single-slot peer) its process is known dead
    /// and still holds the role, or (rate-limited) is found dead now.
    #[inline]
    pub(crate) fn peer_gone(&mut self) -> bool {
        if self.peer_closed() {
            return true;
        }
        let known = self.dead_peer.get();
        (known != 0 && self.q.slot(peer_of(self.role), 0).holder() == known)
            || (self.throttle.due() && self.peer_dead())
    }

    /// A consumer that found nothing at its head: whether it should read the producer's
    /// tail now (`Some(peer_gone)`), or report `Empty` at once (`None`). A polling consumer
    /// reads the tail on every 64th empty poll only (blocking calls, `check_tail`, on every
    /// attempt, and everyone before `Disconnected`): the tail sits on the producer's line, and
    /// polling it would take that line away from the producer at every message.
    #[inline]
    pub(crate) fn look_at_tail(&mut self, check_tail: bool) -> Option<bool> {
        self.empty_polls = self.empty_polls.wrapping_add(1);
        let gone = self.peer_gone();
        (gone || check_tail || self.empty_polls % 64 == 0).then_some(gone)
    }

    /// Block on `wq` until `ready()` (or the peer closes), the deadline, or the peer is found
    /// gone ([`Wake::Gone`]), checked every [`WAIT_SLICE`](role::WAIT_SLICE).
    pub(crate) fn wait(
        &self,
        wq: &WaitQueue,
        mut ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Wake {
        wait_sliced(
            wq,
            &self.spin,
            || ready() || self.peer_closed(),
            deadline,
            || self.peer_dead().then_some(()),
        )
    }

    /// Detach this handle (what dropping it does): free its slot, if this process still holds
    /// it, so that another handle (of any process) may attach, and change nothing else. The
    /// peer does not notice (`SPEC.md` §7.1.3). Idempotent; a no-op after `close`.
    pub(crate) fn detach(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !role::is_mine(self.me) {
            // A handle inherited by a fork()ed child: the role is the parent's.
            return;
        }
        // A no-op if the slot was taken over (we were judged dead).
        self.q.slot(self.role, self.slot).release(self.me);
    }

    /// Close this handle: free its slot and, if no other handle of its side is attached,
    /// close the side (the peer drains what is left, then gets `Disconnected`). Idempotent.
    pub(crate) fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !role::is_mine(self.me) {
            // A handle inherited by a fork()ed child: the role is the parent's. Change
            // nothing shared.
            return;
        }
        let (q, bit) = (&*self.q, closed_bit(self.role));
        let slot = q.slot(self.role, self.slot);
        if q.slots(self.role) == 1 {
            if slot.holder() != self.me {
                // Our role was taken over (we were judged dead): the close bit is the new
                // holder's to set, not ours.
                return;
            }
            // Set the bit while we hold the role, then free it: a handle attaching after
            // the release clears the bit again. Release pairs with the Acquire in
            // `side_gone`: our last index store happens-before the peer's reload.
            q.state().fetch_or(bit, Ordering::Release);
            slot.release(self.me);
        } else {
            slot.release(self.me);
            // SeqCst: of two handles that close at once, at least one sees the other's
            // release (store buffering), so the side does not stay open after both closed.
            fence(Ordering::SeqCst);
            let n = q.slots(self.role);
            if (0..n).all(|i| q.slot(self.role, i).holder() == 0) {
                // Release: as above.
                q.state().fetch_or(bit, Ordering::Release);
            }
        }
        q.wake_closed(self.role);
    }
}

impl<Q: Roles> Drop for Endpoint<Q> {
    /// Dropping detaches: the slot is freed, the side stays open (`SPEC.md` §7.1.3).
    fn drop(&mut self) {
        self.detach();
    }
}
