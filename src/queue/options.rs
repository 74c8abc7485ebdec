//! [`QueueOptions`]: the builder every queue kind shares, and the open paths that check a
//! typed queue's element type.

use std::marker::PhantomData;

use super::TypeId;
use crate::error::{Error, Result};
use crate::segment::{Kind, Segment, SegmentOptions};

/// Builder for creating or opening a queue `Q` ([`spsc::Queue`](super::spsc::Queue),
/// [`mpmc::Queue`](super::mpmc::Queue), [`bytes::Ring`](super::bytes::Ring), and the raw
/// [`spsc::RawQueue`](super::spsc::RawQueue) and [`mpmc::RawQueue`](super::mpmc::RawQueue),
/// whose `create` also takes the element size): start with `Q::options()`. The settings are those of [`SegmentOptions`], which it uses underneath;
/// the defaults are mode 0600, no unlink on drop,
/// [`Lifetime::Persistent`](crate::segment::Lifetime::Persistent), memory reserved
/// at creation, and a 5 s open timeout.
///
/// ```
/// use shmkit::queue::spsc::Queue;
/// use shmkit::segment::Lifetime;
/// # let name = format!("doc-qopts-{}", std::process::id());
/// let q = Queue::<u64>::options()
///     .mode(0o660)
///     .open_timeout(std::time::Duration::from_secs(1))
///     .unlink_on_drop(true)
///     .lifetime(Lifetime::Owned)
///     .sparse(false)
///     .create(&name, 1024)?;
/// let other = Queue::<u64>::options().open(&name)?;
/// assert_eq!(other.capacity(), 1024);
/// # drop(q);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct QueueOptions<Q> {
    seg: SegmentOptions,
    _for: PhantomData<fn() -> Q>,
}

impl<Q> Clone for QueueOptions<Q> {
    fn clone(&self) -> Self {
        QueueOptions {
            seg: self.seg.clone(),
            _for: PhantomData,
        }
    }
}

impl<Q> std::fmt::Debug for QueueOptions<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueOptions")
            .field("segment", &self.seg)
            .finish()
    }
}

impl<Q> Default for QueueOptions<Q> {
    fn default() -> Self {
        QueueOptions {
            seg: Segment::options(),
            _for: PhantomData,
        }
    }
}

impl<Q> QueueOptions<Q> {
    crate::segment::segment_settings!("queue"; mode, unlink_on_drop, open_timeout, lifetime, sparse);
}

/// How a queue is to be attached.
#[derive(Debug, Clone, Copy)]
pub enum How {
    /// Create with this capacity.
    Create(u64),
    /// Open an existing queue of this element type.
    Open,
    /// Open, or create with this capacity.
    OpenOrCreate(u64),
    /// Open an existing typed queue of any element type of this size.
    OpenBySize,
}

pub(crate) mod sealed {
    /// A queue type a [`QueueOptions`](super::QueueOptions) builds.
    pub trait Build: Sized {
        /// Create or open `name` with these segment settings.
        fn build(seg: &crate::SegmentOptions, name: &str, how: super::How) -> crate::Result<Self>;
    }

    /// A queue of typed elements (it records its element type).
    pub trait Typed: Build {}

    /// A raw fixed-size queue ([`spsc::RawQueue`](crate::queue::spsc::RawQueue),
    /// [`mpmc::RawQueue`](crate::queue::mpmc::RawQueue)) a
    /// [`QueueOptions`](super::QueueOptions) builds.
    pub trait BuildRaw: Sized {
        /// Create (elements of `elem_size` bytes, recorded as `[u8; elem_size]`), open
        /// (`How::Open`: any element type; `elem_size` is not used) or open-or-create `name`.
        fn build_raw(
            seg: &crate::SegmentOptions,
            name: &str,
            how: super::How,
            elem_size: usize,
        ) -> crate::Result<Self>;
    }
}

/// The builder's `create`, `open` and `open_or_create` of a raw fixed-size queue kind `$q`:
/// the raw queue takes its element size at creation, and opens whatever element type the
/// queue has.
macro_rules! raw_builder {
    ($q:ty, $path:literal, $link:literal) => {
        impl QueueOptions<$q> {
            #[doc = concat!("Create the named queue of `capacity` slots (a power of two, at \
                least 2) of `elem_size`-byte elements (1 byte to 1 MiB): the queue a [`Queue`](",
                $link, "::Queue) of `[u8; elem_size]` creates, which records that type (any \
                program opens it as that type, or raw, or by size). Fails with \
                [`Error::AlreadyExists`] if the name is taken.")]
            ///
            /// ```
            #[doc = concat!("use ", $path, "::{Queue, RawQueue};")]
            /// # let name = format!("doc-rawq-create-{}", std::process::id());
            /// let q = RawQueue::options().unlink_on_drop(true).create(&name, 100, 8)?;
            /// assert_eq!((q.elem_size(), q.capacity()), (100, 8));
            /// let typed = Queue::<[u8; 100]>::open(&name)?; // the same recorded type
            /// # drop(typed);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn create(&self, name: &str, elem_size: usize, capacity: u64) -> Result<$q> {
                <$q as sealed::BuildRaw>::build_raw(&self.seg, name, How::Create(capacity), elem_size)
            }

            /// Open the named queue of this kind whatever its element type: its elements are
            /// handled as bytes (`elem_size()` of them each).
            ///
            /// ```
            #[doc = concat!("use ", $path, "::{Queue, RawQueue};")]
            /// # let name = format!("doc-rawq-open-{}", std::process::id());
            /// let q = Queue::<u32>::options().unlink_on_drop(true).create(&name, 8)?;
            /// q.producer()?.try_push(7).unwrap();
            /// let raw = RawQueue::options().open(&name)?;
            /// let mut out = [0; 4];
            /// raw.consumer()?.try_pop_into(&mut out)?;
            /// assert_eq!(out, 7u32.to_ne_bytes());
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn open(&self, name: &str) -> Result<$q> {
                <$q as sealed::BuildRaw>::build_raw(&self.seg, name, How::Open, 0)
            }

            /// Open the named queue, or create it as [`create`](Self::create) does if it does
            /// not exist (race-free between processes); an existing queue must have this
            /// capacity and record `[u8; elem_size]` as its element type.
            pub fn open_or_create(&self, name: &str, elem_size: usize, capacity: u64) -> Result<$q> {
                <$q as sealed::BuildRaw>::build_raw(
                    &self.seg,
                    name,
                    How::OpenOrCreate(capacity),
                    elem_size,
                )
            }
        }
    };
}

raw_builder!(
    super::spsc::RawQueue,
    "shmkit::queue::spsc",
    "crate::queue::spsc"
);
raw_builder!(
    super::mpmc::RawQueue,
    "shmkit::queue::mpmc",
    "crate::queue::mpmc"
);

/// The element type a raw queue of `elem_size`-byte elements records: `[u8; elem_size]`,
/// the type name, size and alignment a typed queue of that byte array records; an
/// `InvalidArgument` unless `elem_size` is 1 byte to 1 MiB (as `check_type`).
pub(crate) fn byte_array(name: &str, elem_size: usize) -> Result<TypeId> {
    if elem_size == 0 || elem_size as u64 > super::geometry::MAX_ELEM_SIZE {
        return Err(Error::invalid(
            name,
            format!("element size {elem_size}: need 1..=1 MiB"),
        ));
    }
    Ok(TypeId {
        name: format!("[u8; {elem_size}]"),
        size: elem_size as u64,
        align: 1,
    })
}

impl<Q: sealed::Build> QueueOptions<Q> {
    /// Create the named queue with `capacity` slots (bytes for a [`bytes::Ring`](super::bytes::Ring)),
    /// a power of two; fails with [`Error::AlreadyExists`] if the name is taken.
    ///
    /// ```
    /// # let name = format!("doc-qopts-create-{}", std::process::id());
    /// let q = shmkit::queue::mpmc::Queue::<u64>::options().unlink_on_drop(true)
    ///     .create(&name, 64)?;
    /// assert_eq!(q.capacity(), 64);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(&self, name: &str, capacity: u64) -> Result<Q> {
        Q::build(&self.seg, name, How::Create(capacity))
    }

    /// Open the named queue. A typed queue must hold elements of this type (name, size,
    /// alignment; [`Error::TypeMismatch`] names both types otherwise).
    ///
    /// ```
    /// # let name = format!("doc-qopts-open-{}", std::process::id());
    /// let q = shmkit::queue::bytes::Ring::options().unlink_on_drop(true).create(&name, 4096)?;
    /// let r = shmkit::queue::bytes::Ring::options().open(&name)?;
    /// assert_eq!(r.capacity(), 4096);
    /// # drop(q);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open(&self, name: &str) -> Result<Q> {
        Q::build(&self.seg, name, How::Open)
    }

    /// Open the named queue, or create it with `capacity` if it does not exist (race-free
    /// between processes); an existing queue must have this capacity and element type.
    ///
    /// ```
    /// # let name = format!("doc-qopts-ooc-{}", std::process::id());
    /// use shmkit::queue::spsc::Queue;
    /// let a = Queue::<u32>::options().unlink_on_drop(true).open_or_create(&name, 8)?;
    /// let b = Queue::<u32>::options().open_or_create(&name, 8)?;
    /// assert_eq!(b.capacity(), 8);
    /// # drop(a);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_or_create(&self, name: &str, capacity: u64) -> Result<Q> {
        Q::build(&self.seg, name, How::OpenOrCreate(capacity))
    }
}

impl<Q: sealed::Typed> QueueOptions<Q> {
    /// Open the named typed queue whatever its element type, provided its elements are
    /// `size_of::<T>()` bytes (and aligned at least as `T`). The elements are reinterpreted
    /// as `T`. (A tool that knows neither the type nor the size opens raw:
    /// [`spsc::RawQueue`](super::spsc::RawQueue), [`mpmc::RawQueue`](super::mpmc::RawQueue).)
    ///
    /// ```
    /// use shmkit::queue::spsc::Queue;
    /// # let name = format!("doc-qopts-bysize-{}", std::process::id());
    /// let q = Queue::<u64>::options().unlink_on_drop(true).create(&name, 8)?;
    /// q.producer().unwrap().try_push(0x0102).unwrap();
    /// let raw = Queue::<[u8; 8]>::options().open_by_size(&name)?;
    /// assert_eq!(raw.consumer().unwrap().try_pop().unwrap(), 0x0102u64.to_ne_bytes());
    /// assert!(Queue::<[u8; 4]>::options().open_by_size(&name).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_by_size(&self, name: &str) -> Result<Q> {
        Q::build(&self.seg, name, How::OpenBySize)
    }
}

/// Turn a typed open's `LayoutMismatch` into [`Error::TypeMismatch`] when the queue is of the
/// same kind and layout with another element type (`of`: what has the type, as the error
/// says it). `stored(found)` opens the queue with the fingerprint it has and reads its
/// recorded type; `fp_of` is the layout's fingerprint of a type. Any other error, or a type
/// tag that does not match its fingerprint, is left as is.
pub(crate) fn typed<Q>(
    name: &str,
    of: &'static str,
    want: &TypeId,
    opened: Result<Q>,
    stored: impl FnOnce(u64) -> Result<TypeId>,
    fp_of: fn(&TypeId) -> u64,
) -> Result<Q> {
    match opened {
        Err(Error::LayoutMismatch { found, .. }) => match stored(found) {
            Ok(t) if fp_of(&t) == found => Err(Error::TypeMismatch {
                name: name.to_owned(),
                of,
                expected: want.to_string(),
                found: t.to_string(),
            }),
            _ => opened,
        },
        r => r,
    }
}

/// Open a typed queue by element size: read the header's fingerprint, open with it
/// (`open(fp)`), check the recorded type against that fingerprint, then that it has `size`
/// bytes and an alignment of at least `align` (`None`: any element type, the raw open).
pub(crate) fn by_size<R>(
    name: &str,
    kind: Kind,
    size_align: Option<(u64, u64)>,
    open: impl FnOnce(u64) -> Result<R>,
    stored: impl Fn(&R) -> std::result::Result<TypeId, String>,
    fp_of: fn(&TypeId) -> u64,
) -> Result<R> {
    let probe = crate::segment::probe(name)?;
    let Some(h) = probe.header.clone() else {
        return Err(probe.not_a(&kind.to_string()));
    };
    let r = open(h.fingerprint)?;
    let t = stored(&r).map_err(|what| Error::corrupt(name, what))?;
    if fp_of(&t) != h.fingerprint {
        return Err(Error::corrupt(
            name,
            format!("the recorded element type {t} does not match the layout fingerprint"),
        ));
    }
    let Some((size, align)) = size_align else {
        return Ok(r);
    };
    if t.size != size || t.align < align {
        return Err(Error::TypeMismatch {
            name: name.to_owned(),
            of: "elements",
            expected: format!("any type of size {size} (align {align})"),
            found: t.to_string(),
        });
    }
    Ok(r)
}
