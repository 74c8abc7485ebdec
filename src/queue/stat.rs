//! [`QueueStat`]: what `shmkit queue stat` and `shmkit info` show about a queue.

use std::fmt;

use super::endpoint::{CONSUMER_CLOSED, PRODUCER_CLOSED};
use super::error::Role;
use super::ring_control::RingShared as Ring;
use crate::{Kind, Liveness};

/// A process attached to a queue end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Attached {
    /// Its liveness token (`SPEC.md` §2.3).
    pub token: u64,
    /// Its pid in its own pid namespace, from its liveness file (0 if unknown).
    pub pid: u32,
    /// Whether it still runs (its liveness lock is held).
    pub liveness: Liveness,
}

impl Attached {
    /// The process holding owner word `w` (non-zero).
    pub(crate) fn of(w: u64) -> Attached {
        Attached {
            token: w,
            pid: super::role::pid_of(w),
            liveness: super::role::liveness_of(w),
        }
    }
}

/// What a queue's [`capacity`](QueueStat::capacity) and [`len`](QueueStat::len) count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum LenUnit {
    /// Messages (elements): `spsc`, `mpmc`.
    Messages,
    /// Bytes: `bytes-ring` (record headers and padding included), `mpmc-bytes` (whole
    /// 64-byte cells of claimed records).
    Bytes,
}

impl fmt::Display for LenUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LenUnit::Messages => "messages",
            LenUnit::Bytes => "bytes",
        })
    }
}

/// A snapshot of a queue's state.
///
/// ```
/// let q = shmkit::queue::spsc::Queue::<u64>::with_capacity(4);
/// let _tx = q.producer().unwrap();
/// let st = q.stat();
/// assert_eq!((st.kind, st.capacity, st.len), (shmkit::Kind::SPSC_QUEUE, 4, 0));
/// assert_eq!(st.len_unit, shmkit::queue::LenUnit::Messages);
/// assert_eq!(st.elem_type.as_deref(), Some("u64"));
/// assert_eq!(st.producers[0].pid, std::process::id());
/// assert!(st.consumers.is_empty());
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct QueueStat {
    /// The queue's kind: [`Kind::SPSC_QUEUE`] (`spsc`), [`Kind::MPMC_QUEUE`] (`mpmc`),
    /// [`Kind::BYTES_RING`] (`bytes-ring`) or [`Kind::MPMC_BYTES`] (`mpmc-bytes`); serialized
    /// as its name.
    pub kind: Kind,
    /// Slots (spsc, mpmc) or bytes (bytes ring, mpmc-bytes), in
    /// [`len_unit`](QueueStat::len_unit)s.
    pub capacity: u64,
    /// Elements (spsc, mpmc) or bytes in use (bytes ring, including record headers;
    /// mpmc-bytes, whole cells of claimed records), in
    /// [`len_unit`](QueueStat::len_unit)s.
    pub len: u64,
    /// What `len` and `capacity` count: messages or bytes.
    pub len_unit: LenUnit,
    /// Element size in bytes (spsc, mpmc); 1 for the bytes ring.
    pub elem_size: u64,
    /// The element type's recorded [`TYPE_NAME`](crate::ShmType::TYPE_NAME) (spsc, mpmc;
    /// `None` for the bytes ring, or a tag that is not a name).
    pub elem_type: Option<String>,
    /// Largest message the bytes ring or the mpmc-bytes queue accepts (`None` for the
    /// others).
    pub max_message: Option<u64>,
    /// Attached producers (at most one for spsc and bytes).
    pub producers: Vec<Attached>,
    /// Attached consumers.
    pub consumers: Vec<Attached>,
    /// Whether the producer side closed the queue.
    pub producer_closed: bool,
    /// Whether the consumer side closed the queue.
    pub consumer_closed: bool,
}

pub(crate) struct Stat;

impl Stat {
    /// `kind` is [`Kind::SPSC_QUEUE`] or [`Kind::BYTES_RING`].
    pub(crate) fn ring(ring: &Ring, kind: Kind) -> QueueStat {
        let attached = |role| match ring.holder(role) {
            0 => vec![],
            w => vec![Attached::of(w)],
        };
        let state = ring.state();
        let bytes = kind == Kind::BYTES_RING;
        QueueStat {
            kind,
            capacity: ring.capacity,
            len: ring.len(),
            len_unit: if bytes {
                LenUnit::Bytes
            } else {
                LenUnit::Messages
            },
            elem_size: ring.elem_size,
            elem_type: if bytes {
                None
            } else {
                ring.ctrl().geo.tag.load().ok()
            },
            max_message: bytes.then(|| super::bytes::max_message(ring.capacity)),
            producers: attached(Role::Producer),
            consumers: attached(Role::Consumer),
            producer_closed: state & PRODUCER_CLOSED != 0,
            consumer_closed: state & CONSUMER_CLOSED != 0,
        }
    }
}
