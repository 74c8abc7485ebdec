//! Standalone named primitives: a segment whose payload is one primitive's state.
//!
//! [`SyncOptions`] is the builder every named primitive shares (`Lock::options()`,
//! `Semaphore::options()`, …); `Named<S>` is the handle inside each of them.

use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::segment::{Kind, Segment, SegmentOptions};

/// Builder for creating or opening a named primitive `T`: start with `T::options()`, e.g.
/// [`Lock::options`](crate::sync::Lock::options). The defaults are mode 0600, no unlink on
/// drop, [`Lifetime::Persistent`](crate::segment::Lifetime::Persistent), memory reserved at creation, and a 5 s open timeout.
///
/// ```
/// use shmkit::sync::Lock;
/// # let name = format!("doc-syncopts-{}", std::process::id());
/// let lock = Lock::options().unlink_on_drop(true).mode(0o600).create(&name)?;
/// assert!(!lock.is_locked());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct SyncOptions<T> {
    /// Every setting is the segment's: the kind and fingerprint are added per primitive.
    seg: SegmentOptions,
    _for: PhantomData<fn() -> T>,
}

impl<T> Clone for SyncOptions<T> {
    fn clone(&self) -> Self {
        SyncOptions {
            seg: self.seg.clone(),
            _for: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for SyncOptions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("seg", &self.seg)
            .finish()
    }
}

impl<T> Default for SyncOptions<T> {
    fn default() -> Self {
        SyncOptions {
            seg: Segment::options(),
            _for: PhantomData,
        }
    }
}

impl<T> SyncOptions<T> {
    crate::segment::segment_settings!("object"; unlink_on_drop, mode, open_timeout, lifetime, sparse);

    fn segment(&self, kind: Kind, fp: u64) -> SegmentOptions {
        self.seg.clone().kind(kind, fp)
    }
}

/// A mapped segment whose payload starts with an `S`.
pub(crate) struct Named<S> {
    seg: Segment,
    state: NonNull<S>,
}

// SAFETY: every state type `S` used here is built for concurrent use from many threads and
// processes (atomics and process-shared pthread mutexes only), which is what `S: Sync`
// asserts; the segment keeps the memory mapped for as long as the handle lives.
unsafe impl<S: Sync> Send for Named<S> {}
// SAFETY: as above.
unsafe impl<S: Sync> Sync for Named<S> {}

/// How a named primitive is described to the segment layer.
pub(crate) struct Layout<S> {
    pub kind: Kind,
    pub fingerprint: u64,
    /// Check a published state (attach-time validation of shared, untrusted words).
    pub check: fn(&S) -> std::result::Result<(), String>,
}

impl<S> Named<S> {
    fn wrap(seg: Segment, layout: &Layout<S>) -> Result<Self> {
        let size = std::mem::size_of::<S>();
        if seg.len() < size {
            return Err(Error::corrupt(
                seg.name(),
                format!(
                    "payload is {} bytes, {} needs {size}",
                    seg.len(),
                    layout.kind.with_article()
                ),
            ));
        }
        let ptr = seg.as_mut_ptr().cast::<S>();
        if ptr.align_offset(std::mem::align_of::<S>()) != 0 {
            return Err(Error::corrupt(seg.name(), "payload is misaligned"));
        }
        let state = NonNull::new(ptr).ok_or_else(|| Error::corrupt(seg.name(), "null mapping"))?;
        let named = Named { seg, state };
        (layout.check)(named.state()).map_err(|what| Error::corrupt(named.seg.name(), what))?;
        Ok(named)
    }

    /// Create the segment and run `init` on its zeroed payload before publishing it.
    pub(crate) fn create<T>(
        opts: &SyncOptions<T>,
        name: &str,
        layout: &Layout<S>,
        init: impl Fn(*mut S) -> std::io::Result<()>,
    ) -> Result<Self> {
        let size = std::mem::size_of::<S>() as u64;
        let seg = opts
            .segment(layout.kind, layout.fingerprint)
            .create_with(name, size, |seg| {
                init(seg.as_mut_ptr().cast::<S>())
                    .map_err(|e| Error::from_io(name, "initialise", e))
            })?;
        Self::wrap(seg, layout)
    }

    /// Open an existing segment and validate its header and state.
    pub(crate) fn open<T>(opts: &SyncOptions<T>, name: &str, layout: &Layout<S>) -> Result<Self> {
        let seg = opts.segment(layout.kind, layout.fingerprint).open(name)?;
        Self::wrap(seg, layout)
    }

    /// Open, or create and initialise (exactly one racing process runs `init`).
    pub(crate) fn open_or_create<T>(
        opts: &SyncOptions<T>,
        name: &str,
        layout: &Layout<S>,
        init: impl Fn(*mut S) -> std::io::Result<()>,
    ) -> Result<Self> {
        let size = std::mem::size_of::<S>() as u64;
        let seg = opts
            .segment(layout.kind, layout.fingerprint)
            .open_or_create_with(name, size, |seg| {
                init(seg.as_mut_ptr().cast::<S>())
                    .map_err(|e| Error::from_io(name, "initialise", e))
            })?;
        Self::wrap(seg, layout)
    }

    /// The state.
    pub(crate) fn state(&self) -> &S {
        // SAFETY: `wrap` checked size and alignment; the mapping lives as long as `self`; `S`
        // consists of atomics and `UnsafeCell`s only, so a shared reference over memory that
        // other processes write is sound (all access is through interior mutability).
        unsafe { self.state.as_ref() }
    }

    /// The segment.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Stop or start unlinking on drop.
    pub(crate) fn set_unlink_on_drop(&mut self, yes: bool) {
        self.seg.set_unlink_on_drop(yes);
    }
}

/// `fingerprint(desc)` mixed with a size that the description cannot spell at compile time
/// (e.g. `size_of::<libc::pthread_mutex_t>()`).
pub(crate) const fn fingerprint_with(desc: &[u8], size: usize) -> u64 {
    crate::segment::fingerprint(desc)
        ^ crate::segment::fingerprint(&(size as u64).to_le_bytes()).rotate_left(1)
}

/// The accessors every named primitive handle shares: `name`, `segment`,
/// `set_unlink_on_drop`, `Deref` to its state, and `Debug`.
///
/// The second form, for a primitive created without a parameter, adds its constructors:
/// `options`, `create`, `open`, `open_or_create`, and the same three on `SyncOptions`.
/// `$what` names it in their docs, `$fresh` says what a new one is (", unlocked").
///
/// The third form, for a primitive created with one `u32` (a semaphore's permits, a barrier's
/// parties), adds the same constructors taking it: `check` validates it (an error, nothing
/// created), `init` is the initialiser; both may use `$name` and `$arg`. `create` and
/// `open_or_create` are the type-level docs of those two.
macro_rules! named_handle {
    (
        $handle:ident, $state:ty, $what:literal, $layout:expr,
        ($name:ident, $arg:ident), check: $check:expr, init: $init:expr,
        create: $create:literal, open_or_create: $ooc:literal
    ) => {
        crate::sync::named::named_handle!($handle, $state);

        impl $handle {
            #[doc = concat!("Options for creating or opening a named ", $what, ".")]
            pub fn options() -> SyncOptions<$handle> {
                SyncOptions::default()
            }

            #[doc = $create]
            pub fn create($name: &str, $arg: u32) -> crate::Result<$handle> {
                Self::options().create($name, $arg)
            }

            #[doc = concat!("Open an existing named ", $what, ".")]
            pub fn open($name: &str) -> crate::Result<$handle> {
                Self::options().open($name)
            }

            #[doc = $ooc]
            pub fn open_or_create($name: &str, $arg: u32) -> crate::Result<$handle> {
                Self::options().open_or_create($name, $arg)
            }
        }

        impl SyncOptions<$handle> {
            #[doc = concat!("Create a new named ", $what, ".")]
            pub fn create(&self, $name: &str, $arg: u32) -> crate::Result<$handle> {
                $check?;
                Ok($handle {
                    inner: Named::create(self, $name, &$layout, $init)?,
                })
            }

            #[doc = concat!("Open an existing named ", $what, ".")]
            pub fn open(&self, $name: &str) -> crate::Result<$handle> {
                Ok($handle {
                    inner: Named::open(self, $name, &$layout)?,
                })
            }

            #[doc = concat!("Open or create a named ", $what, ".")]
            pub fn open_or_create(&self, $name: &str, $arg: u32) -> crate::Result<$handle> {
                $check?;
                Ok($handle {
                    inner: Named::open_or_create(self, $name, &$layout, $init)?,
                })
            }
        }
    };
    ($handle:ident, $state:ty, $what:literal, $fresh:literal, $layout:expr, $init:expr) => {
        crate::sync::named::named_handle!($handle, $state);

        impl $handle {
            #[doc = concat!("Options for creating or opening a named ", $what, ".")]
            pub fn options() -> SyncOptions<$handle> {
                SyncOptions::default()
            }

            #[doc = concat!("Create a new named ", $what, $fresh, "; fails if the name exists.")]
            pub fn create(name: &str) -> crate::Result<$handle> {
                Self::options().create(name)
            }

            #[doc = concat!("Open an existing named ", $what, ".")]
            pub fn open(name: &str) -> crate::Result<$handle> {
                Self::options().open(name)
            }

            #[doc = concat!("Open the named ", $what, ", or create it", $fresh, " if it does not exist (race-free).")]
            pub fn open_or_create(name: &str) -> crate::Result<$handle> {
                Self::options().open_or_create(name)
            }
        }

        impl SyncOptions<$handle> {
            #[doc = concat!("Create a new named ", $what, ".")]
            pub fn create(&self, name: &str) -> crate::Result<$handle> {
                Ok($handle {
                    inner: Named::create(self, name, &$layout, $init)?,
                })
            }

            #[doc = concat!("Open an existing named ", $what, ".")]
            pub fn open(&self, name: &str) -> crate::Result<$handle> {
                Ok($handle {
                    inner: Named::open(self, name, &$layout)?,
                })
            }

            #[doc = concat!("Open or create a named ", $what, ".")]
            pub fn open_or_create(&self, name: &str) -> crate::Result<$handle> {
                Ok($handle {
                    inner: Named::open_or_create(self, name, &$layout, $init)?,
                })
            }
        }
    };
    ($handle:ident, $state:ty) => {
        impl $handle {
            /// The name.
            pub fn name(&self) -> &str {
                self.inner.segment().name()
            }

            /// The object's header, as validated when this handle was made (kind, layout
            /// fingerprint, sizes, creator, lifetime). The state is reached only through this
            /// handle's methods: a `&Segment` over its mapping would let safe code load the
            /// 4-byte futex words in whole 8-byte words, a mixed-size race. Tools that need
            /// the raw bytes map the object on their own
            /// (`Segment::options().raw(true).open(name)`).
            pub fn header(&self) -> &crate::segment::HeaderInfo {
                self.inner
                    .segment()
                    .header()
                    .expect("a synchronisation object's segment always has a header")
            }

            /// Make this handle unlink the name when dropped (or not).
            pub fn set_unlink_on_drop(&mut self, yes: bool) {
                self.inner.set_unlink_on_drop(yes);
            }
        }

        impl std::ops::Deref for $handle {
            type Target = $state;
            fn deref(&self) -> &$state {
                self.inner.state()
            }
        }

        impl std::fmt::Debug for $handle {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($handle))
                    .field("name", &self.name())
                    .field("state", self.inner.state())
                    .finish()
            }
        }
    };
}
pub(crate) use named_handle;
