//! Named typed cells: [`Value<T>`] and [`Array<T>`], Python's `multiprocessing.Value` and
//! `Array` as named objects any process can attach to (`SPEC.md` §10).
//!
//! A cell holds one element ([`Value`]) or a fixed number of them ([`Array`]) of either a
//! ctypes [`Typecode`] (`b B h H i I l L q Q f d c u ?`) or a user
//! [`ShmType`](crate::ShmType) (a `#[repr(C)]` zerocopy type with a stable name). The type,
//! the length and the [`CellMode`] are recorded in the object, so [`AnyValue`] and
//! [`AnyArray`] open a cell without knowing its type at compile time, and opening it as
//! another type fails with [`Error::CellMismatch`](crate::Error::CellMismatch) naming both
//! sides (`segment "x" holds Array<d>[4], asked for Value<q>`).
//!
//! Typed handles name a typecode by its Rust type (`i64` is `q`, `f64` is `d`, …); `?` is
//! [`CBool`]; `c` and `u` have no Rust type of their own and are used through [`AnyValue`] /
//! [`AnyArray`] (bytes or text).
//!
//! Three modes, chosen at creation:
//!
//! - [`CellMode::Locked`] (the default, Python's `lock=True`): every access takes the cell's
//!   robust lock; `lock()` hands out a guard for longer critical sections, and a holder
//!   killed mid-update is reported to the next taker as
//!   [`LockError::OwnerDied`](crate::sync::LockError::OwnerDied), as for
//!   [`Lock`](crate::sync::Lock);
//! - [`CellMode::Atomic`] (integer, `c`, `u`, `?` typecodes): element-wise `load`, `store`,
//!   `fetch_add`, `fetch_sub`, `swap`, `compare_exchange`, lock-free, `SeqCst`;
//! - [`CellMode::Seqlock`]: one writer at a time (it holds the lock), readers never block the
//!   writer and never see a torn value, and `wait_changed` waits for the next write. A writer
//!   killed mid-write leaves the cell unreadable until the next write, which recovers it.
//!
//! The data starts at [`DATA_OFFSET`] (320) bytes from the start of the object, 64-byte
//! aligned and tightly packed, so numpy maps it from a stock CPython:
//! `np.ndarray((n,), dtype, buffer=SharedMemory(name).buf, offset=320)` (see
//! `examples/python/array_numpy.py`; `shmkit info --json NAME` reports `data_offset`).
//!
//! ```
//! use shmkit::cell::{Array, CellMode, Value};
//! # let (a, b) = (format!("doc-cell-v-{}", std::process::id()), format!("doc-cell-a-{}", std::process::id()));
//! let counter = Value::<i64>::options().cell_mode(CellMode::Atomic).unlink_on_drop(true).create(&a, 0)?;
//! counter.fetch_add(5)?;
//! assert_eq!(Value::<i64>::open(&a)?.load()?, 5);
//!
//! let arr = Array::<f64>::options().unlink_on_drop(true).create(&b, 4)?; // locked, zeroed
//! arr.set(2, 1.5)?;
//! assert_eq!(arr.read(0..4)?, vec![0.0, 0.0, 1.5, 0.0]);
//! let e = Value::<i64>::open(&b).unwrap_err();
//! assert!(e.to_string().contains("holds Array<d>[4], asked for Value<q>"));
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! A handle reaches the cell's bytes only through its own methods, each with the access size
//! the cell's protocol uses for those bytes: it hands out no `&Segment` over its mapping, on
//! which safe code could load an atomic `u8` element's word whole while another thread
//! changes the element, a mixed-size race that Rust's model leaves undefined (`SPEC.md` §1).
//! [`header`](Value::header) gives the validated header; tools that want the raw bytes map
//! the object on their own:
//!
//! ```compile_fail
//! let v = shmkit::cell::Value::<u8>::open("some-cell").unwrap();
//! v.segment(); // error: no method named `segment`
//! ```

mod array;
#[cfg(test)]
mod forged_tests;
mod info;
pub(crate) mod layout;
mod raw;
pub(crate) mod seqlock;
mod typecode;
mod value;

use std::fmt;
use std::marker::PhantomData;

pub use array::{AnyArray, AnyGuard, Array, ArrayGuard};
pub use info::{inspect, read_only, CellInfo, ReadOnlyCell, SHOWN_ELEMENTS};
pub use layout::{DATA_OFFSET, MAX_ALIGN, MAX_SEQLOCK_BYTES};
pub use typecode::{CBool, Typecode};
pub use value::{AnyValue, CellAtomic, Value, ValueGuard};

use crate::segment::{Segment, SegmentOptions};

/// How a cell's data is accessed: chosen at creation, recorded in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum CellMode {
    /// Every access under the cell's robust lock (Python's `lock=True`).
    #[default]
    Locked,
    /// Element-wise lock-free atomics (integer, `c`, `u` and `?` typecodes only).
    Atomic,
    /// One writer at a time (under the lock); lock-free readers that retry on a concurrent
    /// write and never see a torn value.
    Seqlock,
}

impl CellMode {
    pub(crate) fn word(self) -> u32 {
        match self {
            CellMode::Locked => 1,
            CellMode::Atomic => 2,
            CellMode::Seqlock => 3,
        }
    }

    pub(crate) fn from_word(w: u32) -> Option<CellMode> {
        match w {
            1 => Some(CellMode::Locked),
            2 => Some(CellMode::Atomic),
            3 => Some(CellMode::Seqlock),
            _ => None,
        }
    }

    /// The mode named `locked`, `atomic` or `seqlock` (as `Display` prints it).
    ///
    /// ```
    /// use shmkit::cell::CellMode;
    /// assert_eq!(CellMode::from_name("seqlock"), Some(CellMode::Seqlock));
    /// assert_eq!(CellMode::Atomic.to_string(), "atomic");
    /// ```
    pub fn from_name(s: &str) -> Option<CellMode> {
        [CellMode::Locked, CellMode::Atomic, CellMode::Seqlock]
            .into_iter()
            .find(|m| m.to_string() == s)
    }
}

impl fmt::Display for CellMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellMode::Locked => "locked",
            CellMode::Atomic => "atomic",
            CellMode::Seqlock => "seqlock",
        })
    }
}

/// Builder for creating or opening a cell `C` ([`Value`], [`Array`], [`AnyValue`],
/// [`AnyArray`]): start with `C::options()`. Defaults: [`CellMode::Locked`], permission mode
/// 0600, no unlink on drop, [`Lifetime::Persistent`](crate::segment::Lifetime::Persistent), memory reserved at creation, a 5 s open
/// timeout.
///
/// ```
/// use shmkit::cell::{CellMode, Value};
/// # let name = format!("doc-cellopts-{}", std::process::id());
/// let v = Value::<[u64; 8]>::options()
///     .cell_mode(CellMode::Seqlock)
///     .mode(0o600)
///     .unlink_on_drop(true)
///     .create(&name, [0; 8])?;
/// assert_eq!(v.cell_mode(), CellMode::Seqlock);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct CellOptions<C = ()> {
    pub(crate) seg: SegmentOptions,
    pub(crate) cell_mode: CellMode,
    _for: PhantomData<fn() -> C>,
}

impl<C> Clone for CellOptions<C> {
    fn clone(&self) -> Self {
        CellOptions {
            seg: self.seg.clone(),
            cell_mode: self.cell_mode,
            _for: PhantomData,
        }
    }
}

impl<C> fmt::Debug for CellOptions<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CellOptions")
            .field("seg", &self.seg)
            .field("cell_mode", &self.cell_mode)
            .finish()
    }
}

impl<C> Default for CellOptions<C> {
    fn default() -> Self {
        CellOptions {
            seg: Segment::options(),
            cell_mode: CellMode::Locked,
            _for: PhantomData,
        }
    }
}

impl<C> CellOptions<C> {
    /// How a created cell's data is accessed (default [`CellMode::Locked`]); an opener gets
    /// the recorded mode whatever this says.
    pub fn cell_mode(mut self, mode: CellMode) -> Self {
        self.cell_mode = mode;
        self
    }

    crate::segment::segment_settings!("cell"; mode, unlink_on_drop, open_timeout, lifetime, sparse);

    pub(crate) fn untyped(&self) -> CellOptions {
        CellOptions {
            seg: self.seg.clone(),
            cell_mode: self.cell_mode,
            _for: PhantomData,
        }
    }
}

/// The accessors every cell handle shares (each keeps its `RawCell` in `raw`): `name`,
/// `segment`, `set_unlink_on_drop`, `cell_mode`, `typecode`; the run-time-typed handles
/// (`any`) also `describe`, `type_name`, `elem_size`.
macro_rules! cell_accessors {
    (typed) => {
        /// The name.
        pub fn name(&self) -> &str {
            self.raw.segment().name()
        }

        /// The object's header, as validated when this handle was made (kind, layout
        /// fingerprint, sizes, creator, lifetime). The object's bytes are reached only
        /// through this handle's methods: a `&Segment` over its mapping would let safe code
        /// access the words the cell changes with smaller atomics (an atomic-mode `u8`
        /// element, the control block's 4-byte fields) in whole 8-byte words, a mixed-size
        /// race. Tools that need the raw bytes map the object on their own
        /// (`Segment::options().raw(true).open(name)`).
        pub fn header(&self) -> &crate::segment::HeaderInfo {
            self.raw
                .segment()
                .header()
                .expect("a cell's segment always has a header")
        }

        /// Make this handle unlink the name when dropped (or not).
        pub fn set_unlink_on_drop(&mut self, yes: bool) {
            self.raw.set_unlink_on_drop(yes)
        }

        /// The recorded mode.
        pub fn cell_mode(&self) -> CellMode {
            self.raw.geo().mode
        }

        /// The recorded typecode (`None` for a user type).
        pub fn typecode(&self) -> Option<Typecode> {
            self.raw.geo().elem.typecode
        }
    };
    (any) => {
        super::cell_accessors!(typed);

        /// What the cell holds, as errors name it: `Value<q>`, `Value<Tick>`, `Array<d>[4]`.
        pub fn describe(&self) -> String {
            self.raw.describe()
        }

        /// The recorded element type name (`"i64"`, `"c_char"`, a user type's `TYPE_NAME`).
        pub fn type_name(&self) -> &str {
            &self.raw.geo().elem.name
        }

        /// Element size in bytes.
        pub fn elem_size(&self) -> usize {
            self.raw.geo().elem.size
        }
    };
}
use cell_accessors;
