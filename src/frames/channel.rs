//! [`FramesOptions`]: creating and opening a frame channel, and the mapping each handle owns.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::error::AttachError;
use super::layout::{Geometry, Policy, View};
use super::publisher::Publisher;
use super::subscriber::Subscriber;
use crate::error::{Error, Result};
use crate::os::map;
use crate::queue::{ShmType, TypeId};
use crate::segment::{fingerprint, Kind, Segment, SegmentOptions, HEADER_SIZE};

/// The layout fingerprint of a channel whose user header is `t`.
pub(crate) fn fingerprint_of(t: &TypeId) -> u64 {
    fingerprint(format!("shmkit frames v2; user header {t}").as_bytes())
}

/// Huge-page alignment of the data area when [`FramesOptions::huge_pages`] is asked for.
const HUGE_PAGE: u64 = 2 << 20;

/// A mapped channel: the segment, its checked geometry, and notes about memory advice.
pub(crate) struct Channel {
    pub seg: Segment,
    pub view: View,
    pub notes: Vec<String>,
    /// The user header type the channel records.
    pub header: TypeId,
    /// Unlink the name when the channel (its last handle, frame or [`Mapping`] in this
    /// process) goes: the asking process's `liveness::mark`, 0 for no. Kept here, not in the
    /// segment, so that a handle can change it through the shared `Arc` (as queues do,
    /// `queue::region`); handed to the segment on drop.
    unlink: AtomicU64,
}

/// Keeps a frame channel's memory mapped in this process, and nothing else: no pin, no
/// subscriber record, no publisher role. For code that hands out raw pointers into frames or
/// loaned slots whose lifetime it cannot tie to a [`Frame`](super::Frame) or
/// [`Loan`](super::Loan) guard: the Python binding keeps one in each frame and publisher
/// object, because NumPy before 1.22.4 keeps a reference to an array's source object but no
/// buffer export, so an array can point into a slot after the guard is gone. Reading there
/// then gives whatever the slot holds now (the publisher may have reused it), never a fault.
///
/// ```
/// use shmkit::frames::FramesOptions;
/// # let name = format!("doc-frames-mapping-{}", std::process::id());
/// let mut p = FramesOptions::<u64>::new().unlink_on_drop(true).create(&name)?;
/// let keep = p.mapping();
/// let ptr = p.loan()?.as_mut_slice().as_ptr(); // the loan ends here
/// drop(p);
/// // `ptr` still points into mapped memory while `keep` lives.
/// drop(keep);
/// # let _ = ptr;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone)]
pub struct Mapping(pub(crate) Arc<Channel>);

// A mapping keeper crosses threads (a binding's frame objects do).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Mapping>();
};

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("frames::Mapping")
            .field(&self.0.name())
            .finish()
    }
}

impl Channel {
    pub(crate) fn name(&self) -> &str {
        self.seg.name()
    }

    /// Map `seg` (a validated frames segment) and check its geometry; `read_only_data` maps the
    /// frame data `PROT_READ` (subscribers).
    fn new(seg: Segment, want: &TypeId, opts: &Settings, read_only_data: bool) -> Result<Channel> {
        let name = seg.name().to_owned();
        let page = map::page_size() as u64;
        let base = seg.as_mut_ptr();
        if (seg.len() as u64) < super::layout::CONTROL_SIZE {
            return Err(Error::corrupt(
                &name,
                "the payload is smaller than the control block",
            ));
        }
        // SAFETY: the payload (64-aligned) holds the control block (checked above) and lives
        // as long as `seg`, which outlives this use.
        let ctrl = unsafe { super::layout::control(base) };
        let g = Geometry::load(&name, ctrl, seg.len() as u64, page)?;
        if g.header_size != want.size || g.header_align < want.align.min(8) {
            return Err(Error::corrupt(
                &name,
                format!(
                    "the user header is {} bytes (align {}) but its type {want} says otherwise",
                    g.header_size, g.header_align
                ),
            ));
        }
        let view = View { base, g };
        let mut notes = Vec::new();
        let data = view.data(0);
        let data_len = (g.slots * g.stride) as usize;
        if opts.huge_pages {
            // SAFETY: the data area lies inside our mapping.
            notes.push(unsafe { map::advise_huge_pages(data, data_len) });
        }
        if read_only_data {
            // SAFETY: `data` is page-aligned (checked geometry: HEADER + data_offset is a
            // multiple of the page size, the mapping starts on a page), the range is inside
            // our mapping, and a subscriber never writes frame data.
            unsafe { map::protect_read_only(data, data_len) }
                .map_err(|e| Error::from_io(&name, "mprotect the frame data read-only", e))?;
        }
        if opts.populate {
            // SAFETY: the data area lies inside our live mapping.
            if let Some(n) = unsafe { map::populate(data, data_len, !read_only_data) } {
                notes.push(n);
            }
        }
        let mut seg = seg;
        let unlink = AtomicU64::new(seg.take_unlink_by());
        Ok(Channel {
            seg,
            view,
            notes,
            header: want.clone(),
            unlink,
        })
    }

    /// Unlink the name when the channel goes, in this process only (or stop it from doing so).
    pub(crate) fn set_unlink_on_drop(&self, yes: bool) {
        let mark = if yes { crate::os::liveness::mark() } else { 0 };
        // Relaxed: a process-local word read in `drop`, after every `Arc` (so every store) is
        // gone.
        self.unlink.store(mark, Ordering::Relaxed);
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // The segment unlinks only if the mark names this process.
        self.seg.set_unlink_by(*self.unlink.get_mut());
    }
}

/// The channel settings beside the segment's.
#[derive(Debug, Clone, Copy)]
struct Settings {
    slots: u64,
    max_bytes: u64,
    subscribers: u64,
    policy: Policy,
    populate: bool,
    huge_pages: bool,
    history: u64,
}

/// Builder for creating a frame channel (and attaching as its publisher), or attaching to one
/// as publisher or subscriber. `H` is the fixed user header every frame carries (width,
/// height, pixel format, …): a [`ShmType`] of at most 1024 bytes, recorded in the channel so
/// that attaching with another type fails with [`Error::TypeMismatch`] naming both.
///
/// Defaults: 4 slots of 1 MiB, 16 subscribers, [`Policy::ReuseOldest`], no history, no
/// populate, no huge pages; segment defaults as [`SegmentOptions`] (mode 0600, memory reserved
/// at creation, no unlink on drop, persistent).
///
/// ```
/// use shmkit::frames::{FramesOptions, Policy};
/// # let name = format!("doc-frames-opts-{}", std::process::id());
/// let mut publisher = FramesOptions::<[u32; 4]>::new()
///     .slots(3)
///     .max_bytes(64 << 10)
///     .policy(Policy::Block)
///     .unlink_on_drop(true)
///     .create(&name)?;
/// let mut sub = FramesOptions::<[u32; 4]>::new().subscriber(&name)?;
/// let mut loan = publisher.try_loan()?;
/// loan.as_mut_slice()[..5].copy_from_slice(b"hello");
/// let seq = loan.publish(5, &[640, 480, 640 * 3, 1])?;
/// let frame = sub.try_recv()?;
/// assert_eq!((frame.seq(), frame.bytes(), frame.header()[0]), (seq, &b"hello"[..], 640));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FramesOptions<H = [u8; 0]> {
    seg: SegmentOptions,
    set: Settings,
    header: HeaderChoice,
    _h: PhantomData<fn() -> H>,
}

/// Which user header type a handle creates or expects.
#[derive(Debug, Clone)]
enum HeaderChoice {
    /// `H`'s.
    Static,
    /// One described at runtime ([`FramesOptions::header_type`]).
    Given(TypeId),
    /// Whatever the channel records ([`FramesOptions::any_header`]; open only).
    Recorded,
}

/// A user header type described at runtime, as a channel records it: the name given to
/// [`ShmType::TYPE_NAME`] (or to [`FramesOptions::header_type`]), the size and alignment.
/// See [`Publisher::header_type`](super::Publisher::header_type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderType {
    /// The recorded type name.
    pub name: String,
    /// Its size in bytes (at most [`MAX_USER_HEADER`](super::MAX_USER_HEADER)).
    pub size: u64,
    /// Its alignment (1, 2, 4 or 8).
    pub align: u64,
}

impl From<&TypeId> for HeaderType {
    fn from(t: &TypeId) -> Self {
        HeaderType {
            name: t.name.clone(),
            size: t.size,
            align: t.align,
        }
    }
}

impl<H> Clone for FramesOptions<H> {
    fn clone(&self) -> Self {
        FramesOptions {
            seg: self.seg.clone(),
            set: self.set,
            header: self.header.clone(),
            _h: PhantomData,
        }
    }
}

impl<H> std::fmt::Debug for FramesOptions<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramesOptions")
            .field("segment", &self.seg)
            .field("settings", &self.set)
            .finish()
    }
}

impl<H: ShmType> Default for FramesOptions<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: ShmType> FramesOptions<H> {
    /// The defaults (see the type's docs).
    pub fn new() -> Self {
        FramesOptions {
            seg: Segment::options(),
            set: Settings {
                slots: 4,
                max_bytes: 1 << 20,
                subscribers: 16,
                policy: Policy::ReuseOldest,
                populate: false,
                huge_pages: false,
                history: 0,
            },
            header: HeaderChoice::Static,
            _h: PhantomData,
        }
    }

    /// Slots in a created channel (1..=1024; default 4). With `K` slots a subscriber can hold
    /// up to `K - 1` frames while the publisher keeps publishing.
    pub fn slots(mut self, k: u64) -> Self {
        self.set.slots = k;
        self
    }

    /// Largest frame of a created channel, in bytes (default 1 MiB; up to 1 TiB). Each slot
    /// takes this, rounded up to a page (or 2 MiB with huge pages).
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.set.max_bytes = n;
        self
    }

    /// Subscribers a created channel admits at once (1..=256; default 16).
    pub fn subscribers(mut self, n: u64) -> Self {
        self.set.subscribers = n;
        self
    }

    /// What `loan` does when every slot is held (default [`Policy::ReuseOldest`]).
    pub fn policy(mut self, p: Policy) -> Self {
        self.set.policy = p;
        self
    }

    /// Pre-fault this handle's page tables for the frame data when attaching
    /// (`MADV_POPULATE_WRITE` / `_READ`, the `MAP_POPULATE` of an existing mapping; default
    /// no), so that the first frames take no page faults. Kernels before 5.14 fall back to
    /// touching every page, noted in [`Publisher::notes`] / [`Subscriber::notes`].
    pub fn populate(mut self, yes: bool) -> Self {
        self.set.populate = yes;
        self
    }

    /// Ask for transparent huge pages for the frame data (default no): a created channel
    /// aligns its slots to 2 MiB and every attaching handle advises `MADV_HUGEPAGE`. Whether
    /// the kernel obliges depends on `/sys/kernel/mm/transparent_hugepage/shmem_enabled`; when
    /// it cannot, the handle works with normal pages and its `notes()` say so.
    pub fn huge_pages(mut self, yes: bool) -> Self {
        self.set.huge_pages = yes;
        self
    }

    /// For a subscriber: also receive up to `h` frames published before it attached, those
    /// still in their slots (default 0: only frames published after attaching). Frames of
    /// those `h` that are already gone are skipped, not counted [`lost`](Subscriber::lost).
    pub fn history(mut self, h: u64) -> Self {
        self.set.history = h;
        self
    }

    crate::segment::segment_settings!("channel"; mode, unlink_on_drop, lifetime, sparse, open_timeout);

    /// Create the named channel and attach as its publisher. Fails with
    /// [`Error::AlreadyExists`] (in [`AttachError::Segment`]) if the name is taken.
    pub fn create(&self, name: &str) -> std::result::Result<Publisher<H>, AttachError> {
        let t = match &self.header {
            HeaderChoice::Static => {
                crate::queue::check_name::<H>(name)?;
                TypeId::of::<H>()
            }
            HeaderChoice::Given(t) => t.clone(),
            HeaderChoice::Recorded => {
                return Err(Error::invalid(
                    name,
                    "any_header() opens an existing channel; create with header_type()",
                )
                .into())
            }
        };
        let token = crate::os::liveness::current().map_err(AttachError::Liveness)?;
        let page = map::page_size() as u64;
        let align = if self.set.huge_pages {
            HUGE_PAGE.max(page)
        } else {
            page
        };
        let s = self.set;
        let g = Geometry::new(
            name,
            s.slots,
            s.max_bytes,
            s.subscribers,
            s.policy,
            (t.size, t.align),
            align,
        )?;
        let seg = self
            .seg
            .clone()
            .kind(Kind::FRAMES, fingerprint_of(&t))
            .create_with(name, g.payload_len(), |seg| {
                debug_assert!(seg.len() as u64 >= g.payload_len());
                let v = View {
                    base: seg.as_mut_ptr(),
                    g,
                };
                g.store(v.ctrl(), &t.name);
                // The creator is the publisher from the moment the name appears, so a
                // subscriber that attaches at once never sees a channel without publisher.
                v.ctrl().publisher.claim(token).map_err(|_| {
                    Error::corrupt(name, "the fresh channel's publisher word is not free")
                })?;
                Ok(())
            })?;
        let ch = Channel::new(seg, &t, &self.set, false)?;
        Publisher::attach(Arc::new(ch), token, true)
    }

    /// Open the named channel and attach as its publisher (taking over from a dead one).
    pub fn publisher(&self, name: &str) -> std::result::Result<Publisher<H>, AttachError> {
        let ch = self.open(name, false)?;
        let token = crate::os::liveness::current().map_err(AttachError::Liveness)?;
        Publisher::attach(Arc::new(ch), token, false)
    }

    /// Open the named channel and attach as a subscriber: its frame data is mapped read-only
    /// (a write faults), and it receives frames published from now on (see
    /// [`history`](Self::history)).
    pub fn subscriber(&self, name: &str) -> std::result::Result<Subscriber<H>, AttachError> {
        let ch = self.open(name, true)?;
        Subscriber::attach(Arc::new(ch), self.set.history)
    }

    fn open(&self, name: &str, read_only_data: bool) -> Result<Channel> {
        let want = match &self.header {
            HeaderChoice::Static => {
                crate::queue::check_name::<H>(name)?;
                TypeId::of::<H>()
            }
            HeaderChoice::Given(t) => t.clone(),
            HeaderChoice::Recorded => return self.open_recorded(name, read_only_data),
        };
        let opened = self
            .seg
            .clone()
            .kind(Kind::FRAMES, fingerprint_of(&want))
            .open(name);
        let stored = |found| super::stat::stored_type(name, found);
        let seg = crate::queue::options::typed(
            name,
            "a user header",
            &want,
            opened,
            stored,
            fingerprint_of,
        )?;
        Channel::new(seg, &want, &self.set, read_only_data)
    }

    /// Open with the fingerprint the channel has, then check that its recorded header type
    /// matches that fingerprint (so the geometry is checked against the recorded type).
    fn open_recorded(&self, name: &str, read_only_data: bool) -> Result<Channel> {
        let probe = crate::segment::probe(name)?;
        let Some(h) = probe.header.clone() else {
            return Err(probe.not_a(&Kind::FRAMES.to_string()));
        };
        let seg = self
            .seg
            .clone()
            .kind(Kind::FRAMES, h.fingerprint)
            .open(name)?;
        let t = super::stat::stored_type(name, h.fingerprint)?;
        if fingerprint_of(&t) != h.fingerprint {
            return Err(Error::corrupt(
                name,
                format!("the recorded user header type {t} does not match the layout fingerprint"),
            ));
        }
        Channel::new(seg, &t, &self.set, read_only_data)
    }
}

impl FramesOptions<[u8; 0]> {
    /// Use a user header type described at runtime instead of a Rust type (for language
    /// bindings and tools): `create` records `name` (1..=64 bytes), `size` (at most
    /// [`MAX_USER_HEADER`](super::MAX_USER_HEADER)) and `align` (1, 2, 4 or 8), and attaching
    /// requires the channel to record exactly this type (else [`Error::TypeMismatch`]), as a
    /// Rust type `H` with that [`ShmType::TYPE_NAME`], size and alignment would. Publish with
    /// [`Loan::publish_header_bytes`](super::Loan::publish_header_bytes), read with
    /// [`Frame::header_bytes`](super::Frame::header_bytes).
    ///
    /// ```
    /// use shmkit::frames::FramesOptions;
    /// # let name = format!("doc-frames-untyped-{}", std::process::id());
    /// let mut p = FramesOptions::<[u8; 0]>::new()
    ///     .header_type("Info", 8, 8)?
    ///     .unlink_on_drop(true)
    ///     .create(&name)?;
    /// let mut s = FramesOptions::<[u8; 0]>::new().any_header().subscriber(&name)?;
    /// assert_eq!(s.header_type().name, "Info");
    /// p.try_loan()?.publish_header_bytes(0, &7u64.to_le_bytes())?;
    /// assert_eq!(s.try_recv()?.header_bytes(), 7u64.to_le_bytes());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a name, size or alignment out of range.
    pub fn header_type(mut self, name: &str, size: u64, align: u64) -> Result<Self> {
        let bad = |what: String| Err(Error::invalid(name, what));
        if name.is_empty() || name.len() > crate::queue::MAX_TYPE_NAME {
            return bad(format!(
                "a header type name is 1..={} bytes",
                crate::queue::MAX_TYPE_NAME
            ));
        }
        if size > super::MAX_USER_HEADER {
            return bad(format!(
                "a user header is at most {} bytes, not {size}",
                super::MAX_USER_HEADER
            ));
        }
        if !matches!(align, 1 | 2 | 4 | 8) || size % align != 0 {
            return bad(format!(
                "a header alignment is 1, 2, 4 or 8 and divides the size (size {size}, align {align})"
            ));
        }
        self.header = HeaderChoice::Given(TypeId {
            name: name.to_owned(),
            size,
            align,
        });
        Ok(self)
    }

    /// Attach to a channel whatever user header type it records (open only; `create` needs
    /// [`header_type`](Self::header_type)): the handle's `header_type()` says which it is,
    /// [`Frame::header_bytes`](super::Frame::header_bytes) gives a frame's header, and
    /// [`Loan::publish_header_bytes`](super::Loan::publish_header_bytes) publishes one.
    pub fn any_header(mut self) -> Self {
        self.header = HeaderChoice::Recorded;
        self
    }
}

/// The object offset of payload offset `p` (what `shmkit info --json` reports for tools that
/// map the file themselves).
pub(crate) fn object_offset(p: u64) -> u64 {
    HEADER_SIZE as u64 + p
}
