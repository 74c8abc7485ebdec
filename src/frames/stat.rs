//! Read-only inspection of a frame channel: [`stat`] (what `shmkit frames stat` and `info`
//! print) and [`copy_latest`] (what `shmkit frames save` writes). Both map the channel
//! `PROT_READ`, take no role, pin nothing and change nothing.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use super::channel::{fingerprint_of, object_offset};
use super::layout::{self, Geometry, Policy, View};
use super::pin::CLAIMED;
use crate::error::{Error, Result};
use crate::os::{atomic_copy, deadline, map};
use crate::queue::{Attached, TypeId};
use crate::segment::{Kind, ReadOnly, Segment};

/// Where things are in the channel's object (`/dev/shm/NAME`), as byte offsets from the start
/// of the file, for tools that map it themselves (`examples/python/frames_numpy.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FramesLayout {
    /// Offset of slot 0's metadata; slot `i`'s is at `meta_offset + i * meta_stride`.
    pub meta_offset: u64,
    /// Bytes between two slots' metadata.
    pub meta_stride: u64,
    /// Within a slot's metadata: the little-endian `u64` sequence word (0 empty; bit 63 set
    /// while the publisher writes the slot), then `len` at +8, `mono_ns` at +16, `real_ns` at
    /// +24, the slot's pin words (one bit per subscriber record) from +32, the user header at
    /// `header_at`.
    pub seq_at: u64,
    /// Offset of the payload length within a slot's metadata.
    pub len_at: u64,
    /// Offset of the user header within a slot's metadata.
    pub header_at: u64,
    /// Offset of slot 0's frame bytes; slot `i`'s at `data_offset + i * stride`.
    pub data_offset: u64,
    /// Bytes between two slots' frame data (page-aligned).
    pub stride: u64,
}

/// One slot as [`stat`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SlotStat {
    /// The slot's index.
    pub slot: u64,
    /// `"empty"`, `"published"` or `"writing"` (loaned by the publisher).
    pub state: &'static str,
    /// Sequence number of the frame in it (0 if none).
    pub seq: u64,
    /// Payload length.
    pub len: u64,
    /// Publish time, `CLOCK_MONOTONIC` ns.
    pub mono_ns: u64,
    /// Publish time, `CLOCK_REALTIME` ns.
    pub real_ns: u64,
    /// Pids of the attached subscribers that hold (pin) it.
    pub held_by: Vec<u32>,
}

/// One attached subscriber as [`stat`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SubscriberStat {
    /// Its record's index.
    pub record: u64,
    /// Its process and liveness.
    pub process: Attached,
    /// The last sequence it received.
    pub last_seq: u64,
    /// Frames it received.
    pub received: u64,
    /// Frames it learned it lost.
    pub lost: u64,
    /// Slots it holds.
    pub holding: Vec<u64>,
}

/// A snapshot of a frame channel.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FramesStat {
    /// Always [`Kind::FRAMES`].
    pub kind: Kind,
    /// Slots.
    pub slots: u64,
    /// Largest frame in bytes.
    pub max_bytes: u64,
    /// What the publisher does when every slot is held.
    pub policy: Policy,
    /// The user header's type name.
    pub header_type: String,
    /// The user header's size in bytes.
    pub header_size: u64,
    /// Subscribers admitted at once.
    pub max_subscribers: u64,
    /// The attached publisher, if any.
    pub publisher: Option<Attached>,
    /// Sequence number of the last frame published (0: none).
    pub last_seq: u64,
    /// Frames per second over the frames now in the slots (`None` with fewer than two).
    pub publish_rate_hz: Option<f64>,
    /// Every slot.
    pub slot_states: Vec<SlotStat>,
    /// The attached subscribers (records with an owner).
    pub subscribers: Vec<SubscriberStat>,
    /// Byte offsets for tools that map the object themselves.
    pub layout: FramesLayout,
}

/// The latest frame as [`copy_latest`] copied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameCopy {
    /// Sequence number.
    pub seq: u64,
    /// `CLOCK_MONOTONIC` at publish, ns.
    pub mono_ns: u64,
    /// `CLOCK_REALTIME` at publish, ns.
    pub real_ns: u64,
    /// The user header's bytes.
    pub header: Vec<u8>,
    /// The payload.
    pub data: Vec<u8>,
}

/// A read-only mapping of a channel with its checked geometry and recorded header type.
struct ReadOnlyChannel {
    _seg: Segment<ReadOnly>,
    view: View,
    header: TypeId,
}

fn open_read_only(name: &str, fp: Option<u64>) -> Result<ReadOnlyChannel> {
    let fp = match fp {
        Some(fp) => fp,
        None => {
            let probe = crate::segment::probe(name)?;
            match &probe.header {
                Some(h) if h.kind == Kind::FRAMES => h.fingerprint,
                // Another kind, or no shmkit header: what it holds.
                _ => return Err(probe.not_a(&Kind::FRAMES.to_string())),
            }
        }
    };
    let seg = Segment::options()
        .read_only()
        .kind(Kind::FRAMES, fp)
        .open(name)?;
    if (seg.len() as u64) < layout::CONTROL_SIZE {
        return Err(Error::corrupt(
            name,
            "the payload is smaller than the control block",
        ));
    }
    let base = seg.as_ptr().cast_mut();
    // SAFETY: the payload holds the control block (checked), 64-aligned, and lives as long as
    // `seg`; through this read-only mapping only Relaxed loads are made (`Geometry::load`,
    // `TypeTag::load`, and the loads below).
    let ctrl = unsafe { layout::control(base) };
    let g = Geometry::load(name, ctrl, seg.len() as u64, map::page_size() as u64)?;
    let tag = ctrl.tag.load().map_err(|what| Error::corrupt(name, what))?;
    let header = TypeId {
        name: tag,
        size: g.header_size,
        align: g.header_align,
    };
    if fingerprint_of(&header) != fp {
        return Err(Error::corrupt(
            name,
            format!("the recorded user header type {header} does not match the layout fingerprint"),
        ));
    }
    Ok(ReadOnlyChannel {
        _seg: seg,
        view: View { base, g },
        header,
    })
}

/// The user header type recorded in a channel of fingerprint `fp` (for `TypeMismatch`).
pub(crate) fn stored_type(name: &str, fp: u64) -> Result<TypeId> {
    open_read_only(name, Some(fp)).map(|c| c.header)
}

/// A Relaxed load and an acquire fence: an Acquire load as a `PROT_READ` mapping permits.
/// For `seq` and `head` it pairs with their Release stores (`pin::publish`,
/// `pin::publish_frame`); the other words it reads (a record's cursor and counts, a slot's
/// metadata) are stored Relaxed and are a snapshot only.
fn load(w: &AtomicU64) -> u64 {
    atomic_copy::load_read_only(Ordering::Acquire, || w.load(Ordering::Relaxed))
}

/// A snapshot of the named frame channel (`shmkit frames stat`). Maps it read-only and
/// changes nothing; queries the liveness of the attached processes.
///
/// ```
/// # let name = format!("doc-frames-stat-{}", std::process::id());
/// let mut p = shmkit::frames::FramesOptions::<u64>::new().slots(2).max_bytes(100)
///     .unlink_on_drop(true).create(&name)?;
/// p.try_loan()?.publish(3, &7)?;
/// let st = shmkit::frames::stat(&name)?;
/// assert_eq!((st.slots, st.last_seq, st.header_type.as_str()), (2, 1, "u64"));
/// assert_eq!(st.publisher.unwrap().pid, std::process::id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stat(name: &str) -> Result<FramesStat> {
    let c = open_read_only(name, None)?;
    let (v, g) = (&c.view, c.view.g);
    let mut subscribers = Vec::new();
    let mut pins: Vec<(u32, Vec<u64>)> = Vec::new();
    for r in 0..g.subscribers {
        let rec = v.record(r);
        let w = rec.owner.holder();
        if w == 0 {
            continue;
        }
        let holding: Vec<u64> = (0..g.slots)
            .filter(|&i| {
                let (word, bit) = v.pin_of(r, i);
                load(word) & bit != 0
            })
            .collect();
        let process = Attached::of(w);
        pins.push((process.pid, holding.clone()));
        subscribers.push(SubscriberStat {
            record: r,
            process,
            last_seq: load(&rec.cursor),
            received: load(&rec.received),
            lost: load(&rec.lost),
            holding,
        });
    }
    let slot_states: Vec<SlotStat> = (0..g.slots)
        .map(|i| {
            let m = v.meta(i);
            let s = load(&m.seq);
            SlotStat {
                slot: i,
                state: match s {
                    0 => "empty",
                    s if s & CLAIMED != 0 => "writing",
                    _ => "published",
                },
                seq: s & !CLAIMED,
                len: load(&m.len),
                mono_ns: load(&m.mono_ns),
                real_ns: load(&m.real_ns),
                held_by: pins
                    .iter()
                    .filter(|(_, h)| h.contains(&i))
                    .map(|(pid, _)| *pid)
                    .collect(),
            }
        })
        .collect();
    let mut published: Vec<&SlotStat> = slot_states
        .iter()
        .filter(|s| s.state == "published")
        .collect();
    published.sort_by_key(|s| s.seq);
    let publish_rate_hz = match (published.first(), published.last()) {
        (Some(a), Some(b)) if b.seq > a.seq && b.mono_ns > a.mono_ns => {
            Some((b.seq - a.seq) as f64 * 1e9 / (b.mono_ns - a.mono_ns) as f64)
        }
        _ => None,
    };
    let pw = v.ctrl().publisher.holder();
    Ok(FramesStat {
        kind: Kind::FRAMES,
        slots: g.slots,
        max_bytes: g.max_bytes,
        policy: g.policy,
        header_type: c.header.name.clone(),
        header_size: g.header_size,
        max_subscribers: g.subscribers,
        publisher: (pw != 0).then(|| Attached::of(pw)),
        last_seq: load(&v.ctrl().head),
        publish_rate_hz,
        slot_states,
        subscribers,
        layout: FramesLayout {
            meta_offset: object_offset(g.meta_offset(0)),
            meta_stride: g.meta_stride(),
            seq_at: 0,
            len_at: 8,
            header_at: g.header_at(),
            data_offset: object_offset(g.data_offset),
            stride: g.stride,
        },
    })
}

/// How long [`copy_latest`] keeps retrying a copy that raced with the publisher.
pub const COPY_LATEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Copy the newest published frame of the named channel (`shmkit frames save`), without
/// pinning it: a seqlock read (load the slot's sequence, copy, re-load it), retried if the
/// publisher overwrote the slot meanwhile. `None` if no frame is published; `Err(Timeout)` if
/// every attempt raced with the publisher: 1000 attempts, or as many as fit in
/// [`COPY_LATEST_LIMIT`] (a large frame's copy is long, and a publisher, or a peer rewriting
/// the sequence words, may overwrite it every time). [`Error::Io`] (`OutOfMemory`) if this
/// process cannot allocate room for the frame (its length, at most `max_bytes`, is read from
/// the slot).
///
/// It maps the channel read-only on its own, so a publisher in the same process writes
/// through another mapping, which for Rust's memory model is other memory, as another
/// process's is: a copy that overlaps a [`Loan`](super::Loan)'s writes is detected by the
/// re-check and retried. A process that reads every frame, or needs one without copying it,
/// uses a [`Subscriber`](super::Subscriber), which pins the frame.
pub fn copy_latest(name: &str) -> Result<Option<FrameCopy>> {
    let c = open_read_only(name, None)?;
    let (v, g) = (&c.view, c.view.g);
    let until = deadline::after(Some(COPY_LATEST_LIMIT));
    for attempt in 0..1000 {
        if attempt > 0 && deadline::passed(until) {
            break;
        }
        let newest = (0..g.slots)
            .map(|i| (i, load(&v.meta(i).seq)))
            .filter(|&(_, s)| s != 0 && s & CLAIMED == 0)
            .max_by_key(|&(_, s)| s);
        let Some((i, s)) = newest else {
            return Ok(None);
        };
        let m = v.meta(i);
        let len = load(&m.len).min(g.max_bytes) as usize;
        // `len` is a peer's word, and `max_bytes` may be up to 1 TiB (a sparse channel): room
        // this process cannot get is an error, not an abort.
        let mut data = crate::error::try_zeroed::<u8>(name, "copy the newest frame of", len)?;
        let mut header = vec![0u8; g.header_size as usize];
        // SAFETY: the slot's data (len <= max_bytes <= stride bytes) and header words lie
        // inside the read-only mapping `c` keeps alive; loads only; destinations private.
        unsafe {
            atomic_copy::load(v.data(i), data.as_mut_ptr(), len);
            if !header.is_empty() {
                let h = v.header_word(i, 0).as_ptr().cast();
                atomic_copy::load(h, header.as_mut_ptr(), header.len());
            }
        }
        let (mono_ns, real_ns) = (load(&m.mono_ns), load(&m.real_ns));
        // Acquire fence: if the copy saw any byte of a later write, the re-load below sees the
        // publisher's CLAIMED store that precedes it (its fence in `pin::claim`).
        fence(Ordering::Acquire);
        if m.seq.load(Ordering::Relaxed) == s {
            return Ok(Some(FrameCopy {
                seq: s,
                mono_ns,
                real_ns,
                header,
                data,
            }));
        }
    }
    Err(Error::Timeout)
}
