//! Lock-free ring-buffer queues in shared memory.
//!
//! - [`spsc::Queue`]: bounded single-producer single-consumer queue of `T`.
//! - [`mpmc::Queue`]: bounded multi-producer multi-consumer queue of `T` (per-slot stamps).
//! - [`spsc::RawQueue`], [`mpmc::RawQueue`]: the same two queues opened whatever their element
//!   type (or created with an element size chosen at run time), elements handled as bytes.
//! - [`bytes::Ring`]: single-producer single-consumer ring of variable-length byte messages,
//!   zero-copy on both sides.
//! - [`mpmc_bytes::Queue`]: multi-producer multi-consumer queue of variable-length byte
//!   messages (Python's `multiprocessing.Queue`).
//!
//! All four live in named segments, attach from unrelated processes, block with a short
//! spin then a futex sleep (the waking side makes no system call when nobody sleeps), and
//! never hang on a dead peer. `SPEC.md` §7 describes every byte and each crash case.

mod cache_padded;
mod endpoint;
mod error;
mod forms;
mod geometry;
#[cfg(not(loom))]
pub(crate) mod options;
mod region;
pub(crate) mod ring_control;
pub(crate) mod role;
pub(crate) mod shm_type;
mod stat;

pub mod bytes;
pub mod mpmc;
pub mod mpmc_bytes;
pub mod spsc;

/// Run a loom model with at most 2 preemptions unless `LOOM_MAX_PREEMPTIONS` says otherwise
/// (unbounded, the MPMC and bytes models take far longer than the CI budget).
#[cfg(all(test, loom))]
pub(crate) fn loom_model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// In a loom model: receive `wants` in order through `try_pop`, yielding to the other threads
/// while the queue is `Empty` or `Disconnected` (a producer that has not attached yet, or
/// whose dead predecessor still holds the role), failing on any other error or element.
#[cfg(all(test, loom))]
pub(crate) fn loom_pop_each<T: PartialEq + std::fmt::Debug>(
    mut try_pop: impl FnMut() -> Result<T, TryPopError>,
    wants: impl IntoIterator<Item = T>,
) {
    for want in wants {
        loop {
            match try_pop() {
                Ok(v) => {
                    assert_eq!(v, want);
                    break;
                }
                Err(TryPopError::Empty | TryPopError::Disconnected) => loom::thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
    }
}

pub use error::{
    AttachError, BytesPushError, PopError, PushError, QueueError, RawError, Role, TryPopError,
    TryPushError,
};
#[cfg(not(loom))]
pub use options::QueueOptions;
#[cfg(not(loom))]
pub(crate) use shm_type::check_name;
pub use shm_type::{ShmType, MAX_TYPE_NAME};
pub(crate) use shm_type::{TypeId, TypeTag};
pub use stat::{Attached, LenUnit, QueueStat};

/// Copy `v` into an element slot of a typed queue with whole-word atomic stores
/// (`atomic_copy::store_padded`, SPEC §1 byte copies): a slot another handle of this process
/// reads at the same time, because a peer forged a stamp or an index, is then no data race
/// and no mixed-size race here, only wrong bytes there. `v` is not dropped by this copy (the
/// caller forgets it: the value moves into the queue).
///
/// # Safety
///
/// `dst` is 8-aligned and the `round_up(size_of::<T>(), 8)` bytes from it are the slot's
/// element and its padding, inside the mapping, claimed by the caller, and accessed by this
/// process only with atomics.
#[inline(always)]
pub(crate) unsafe fn store_elem<T: ShmType>(dst: *mut u8, v: &T) {
    let b = zerocopy::IntoBytes::as_bytes(v);
    // SAFETY: the caller's contract is `store_padded`'s for `dst`; `b` is `v`'s private bytes.
    unsafe { crate::os::atomic_copy::store_padded(b.as_ptr(), dst, b.len()) }
}

/// Copy an element out of a typed queue's slot with whole-word atomic loads (as
/// [`store_elem`]). Any bytes make a valid `T` (`FromBytes`).
///
/// # Safety
///
/// As [`store_elem`] for `src`, readable rather than claimed for writing.
#[inline(always)]
pub(crate) unsafe fn load_elem<T: ShmType>(src: *const u8) -> T {
    let mut v = std::mem::MaybeUninit::<T>::uninit();
    // SAFETY: the caller's contract is `load_padded`'s for `src`; the destination is the
    // `size_of::<T>()` bytes of `v`, private. Every byte of `v` is then written, and any bytes
    // are a valid `T` (FromBytes; IntoBytes: no padding bytes).
    unsafe {
        crate::os::atomic_copy::load_padded(
            src,
            v.as_mut_ptr().cast::<u8>(),
            std::mem::size_of::<T>(),
        );
        v.assume_init()
    }
}

/// How a fixed-size queue's handles see its elements (spsc and mpmc): the element size, from
/// which each kind computes its slot stride, and the copies in and out of a slot. The
/// protocols are written once, generic over the layout, and instantiated twice: with
/// [`TypedLayout<T>`] (zero-sized: the size, hence the stride and the copy lengths, are
/// compile-time constants, so the typed handles' hot paths multiply and copy by constants)
/// and with [`RawLayout`] (the size the queue's geometry was validated with, carried at run
/// time: the raw handles).
pub(crate) trait ElemLayout: Copy {
    /// Bytes per element.
    fn size(self) -> usize;

    /// Copy an element from `src` into a slot with whole-word atomic stores, as
    /// [`store_elem`] does.
    ///
    /// # Safety
    ///
    /// `src` is readable for [`size`](Self::size) bytes, private to this thread; `dst` as in
    /// [`store_elem`] for an element of `size` bytes.
    #[inline(always)]
    unsafe fn store(self, src: *const u8, dst: *mut u8) {
        // SAFETY: the caller's contract is `store_padded`'s for `self.size()` bytes.
        unsafe { crate::os::atomic_copy::store_padded(src, dst, self.size()) }
    }

    /// Copy an element out of a slot with whole-word atomic loads, as [`load_elem`] does.
    ///
    /// # Safety
    ///
    /// `dst` is writable for [`size`](Self::size) bytes, private to this thread; `src` as in
    /// [`load_elem`] for an element of `size` bytes.
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code))] // the raw handles' (the typed ones use `load_elem`)
    unsafe fn load(self, src: *const u8, dst: *mut u8) {
        // SAFETY: the caller's contract is `load_padded`'s for `self.size()` bytes.
        unsafe { crate::os::atomic_copy::load_padded(src, dst, self.size()) }
    }
}

/// The layout of a typed queue's elements: `T`'s size, a constant.
pub(crate) struct TypedLayout<T>(std::marker::PhantomData<fn() -> T>);

impl<T> TypedLayout<T> {
    pub(crate) const NEW: Self = TypedLayout(std::marker::PhantomData);
}

impl<T> Clone for TypedLayout<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for TypedLayout<T> {}

impl<T> ElemLayout for TypedLayout<T> {
    #[inline(always)]
    fn size(self) -> usize {
        std::mem::size_of::<T>()
    }
}

/// The layout of a raw handle's elements: the element size the queue's geometry was
/// validated (or created) with, never re-read from shared memory.
#[derive(Debug, Clone, Copy)]
#[cfg(not(loom))]
pub(crate) struct RawLayout(pub(crate) usize);

#[cfg(not(loom))]
impl ElemLayout for RawLayout {
    #[inline(always)]
    fn size(self) -> usize {
        self.0
    }
}

/// Element types the typed queues carry: a [`ShmType`] that can be sent to another thread.
/// Implemented for every such type: implement [`ShmType`] (with [`shm_type!`](crate::shm_type))
/// on your own `#[repr(C)]` structs.
///
/// ```
/// use zerocopy::{FromBytes, Immutable, IntoBytes};
/// #[derive(Clone, Copy, FromBytes, IntoBytes, Immutable)]
/// #[repr(C)]
/// struct Tick { price: u64, qty: u32, side: u32 }
/// shmkit::shm_type!(Tick);
/// let q = shmkit::queue::spsc::Queue::<Tick>::with_capacity(16);
/// # let _ = q;
/// ```
pub trait Element: ShmType + Send {}

impl<T: ShmType + Send> Element for T {}

/// A snapshot of the named queue of any kind and element size (what `shmkit queue stat`
/// prints): maps it read-only (`O_RDONLY`, `PROT_READ`), takes no role and changes nothing,
/// so a user who may only read the queue can inspect it.
///
/// ```
/// # let name = format!("doc-qstat-{}", std::process::id());
/// let q = shmkit::queue::bytes::Ring::create(&name, 1024)?;
/// q.set_unlink_on_drop(true);
/// let st = shmkit::queue::stat(&name)?;
/// assert_eq!(st.kind, shmkit::Kind::BYTES_RING);
/// assert_eq!((st.capacity, st.max_message), (1024, Some(504)));
/// assert_eq!(st.len_unit, shmkit::queue::LenUnit::Bytes);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[cfg(not(loom))]
pub fn stat(name: &str) -> crate::Result<QueueStat> {
    use crate::Kind;
    let probe = crate::segment::probe(name)?;
    let Some(h) = probe.header.clone() else {
        return Err(probe.not_a("queue"));
    };
    match h.kind {
        Kind::SPSC_QUEUE | Kind::BYTES_RING => {
            let bytes = h.kind == Kind::BYTES_RING;
            let expect = ring_control::Expect {
                kind: h.kind,
                fingerprint: h.fingerprint,
                elem_size: None,
                min_capacity: if bytes { bytes::MIN_CAPACITY } else { 2 },
                slot_size: if bytes { |n| n } else { spsc::slot_size },
                type_name: None,
            };
            let r = ring_control::RingShared::open_snapshot(name, expect)?;
            let want = if bytes {
                bytes::LAYOUT_FINGERPRINT
            } else {
                let t = r
                    .stored_type()
                    .map_err(|what| crate::Error::corrupt(name, what))?;
                spsc::fingerprint_of(&t)
            };
            if want != h.fingerprint {
                return Err(crate::Error::LayoutMismatch {
                    name: name.into(),
                    expected: want,
                    found: h.fingerprint,
                });
            }
            Ok(stat::Stat::ring(&r, h.kind))
        }
        Kind::MPMC_QUEUE => mpmc::stat_named(name, h.fingerprint),
        Kind::MPMC_BYTES => mpmc_bytes::stat_named(name),
        k => Err(crate::Error::KindMismatch {
            name: name.into(),
            expected: "queue".into(),
            found: k.to_string(),
        }),
    }
}
