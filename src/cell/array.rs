//! [`Array<T>`] (typed) and [`AnyArray`] (typed at run time): a named, fixed-length cell of
//! elements; and the lock guards [`ArrayGuard`] and [`AnyGuard`].

use std::marker::PhantomData;
use std::ops::Range;

use zerocopy::{FromZeros, IntoBytes};

use super::layout::{ElemType, Geometry, DATA_IN_PAYLOAD};
use super::raw::{Op, RawCell, Wait};
use super::value::CellAtomic;
use super::{CellMode, CellOptions, Typecode};
use crate::error::{Error, Result};
use crate::os::deadline::wait_forms;
use crate::segment::Kind;
use crate::sync::{LockError, LockGuard, Owner};
use crate::ShmType;

type LockResult<'a, G> = std::result::Result<G, LockError<G>>;

/// A named, fixed-length array of `T`: Python's `multiprocessing.Array`, attachable by name
/// from any process, and mappable from numpy at [`DATA_OFFSET`](super::DATA_OFFSET).
///
/// Locked mode (the default): every call takes the lock; [`with_lock`](Self::with_lock) runs
/// a closure over the whole array under it. Atomic mode: element-wise atomics
/// ([`fetch_add`](Self::fetch_add), …) and per-element `get`/`set`/`read`. Seqlock mode:
/// [`read`](Self::read) is a consistent snapshot of the range (of the whole array with
/// `read(0..len)`), writes go one at a time under the writer lock.
///
/// ```
/// use shmkit::cell::Array;
/// # let name = format!("doc-array-{}", std::process::id());
/// let a = Array::<i32>::options().unlink_on_drop(true).create_from(&name, &[1, 2, 3])?;
/// let b = Array::<i32>::open(&name)?; // e.g. in another process
/// b.write(1, &[20, 30])?;
/// assert_eq!(a.read(0..3)?, vec![1, 20, 30]);
/// let sum = a.with_lock(|xs| { xs[0] = 100; xs.iter().sum::<i32>() })?;
/// assert_eq!((sum, b.get(0)?), (150, 100));
/// assert!(a.get(3).is_err()); // out of range
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Array<T> {
    raw: RawCell,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

/// `n` zeroed elements to read array `name` into: fallible, since `n` may follow the
/// array's length, which its creator chose (up to 2^40 bytes in a sparse object).
fn zeroed<T: FromZeros>(name: &str, n: usize) -> Result<Vec<T>> {
    crate::error::try_zeroed(name, "read", n)
}

/// The length of `r`, a range of array `name`'s elements; a reversed range (`2..1`) is an
/// error, as slicing makes it.
fn range_len(name: &str, r: &Range<usize>) -> Result<usize> {
    r.end.checked_sub(r.start).ok_or_else(|| {
        Error::invalid(
            name,
            format!("elements {}..{}: the range is reversed", r.start, r.end),
        )
    })
}

impl<T: ShmType> Array<T> {
    /// Options for creating or opening an `Array<T>`.
    pub fn options() -> CellOptions<Array<T>> {
        CellOptions::default()
    }

    /// Create a locked array of `len` zeroed elements; fails if the name exists.
    pub fn create(name: &str, len: usize) -> Result<Self> {
        Self::options().create(name, len)
    }

    /// Create a locked array holding a copy of `init`; fails if the name exists.
    pub fn create_from(name: &str, init: &[T]) -> Result<Self> {
        Self::options().create_from(name, init)
    }

    /// Open an existing array of element type `T` (any length; its mode is the recorded one).
    pub fn open(name: &str) -> Result<Self> {
        Self::options().open(name)
    }

    super::cell_accessors!(typed);

    /// Number of elements (fixed at creation).
    pub fn len(&self) -> usize {
        self.raw.geo().len
    }

    /// Always false: an array has at least one element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_with(&self, i: usize, wait: Wait) -> Result<T> {
        let mut v = T::new_zeroed();
        self.raw.load(i, v.as_mut_bytes(), wait)?;
        Ok(v)
    }

    wait_forms! {
        /// Element `i` (an error if `i >= len`): under the lock (locked), one atomic load
        /// (atomic), a consistent copy (seqlock).
        fn get, try_get, get_timeout, get_deadline (i: usize) -> Result<T> = get_with
    }

    fn set_with(&self, i: usize, v: T, wait: Wait) -> Result<()> {
        self.raw.store(i, v.as_bytes(), wait)
    }

    wait_forms! {
        /// Set element `i` (an error if `i >= len`; nothing written).
        fn set, try_set, set_timeout, set_deadline (i: usize, v: T) -> Result<()> = set_with
    }

    fn read_with(&self, range: Range<usize>, wait: Wait) -> Result<Vec<T>> {
        let n = range_len(self.name(), &range)?;
        self.raw.check_range(range.start, n)?;
        let mut v = zeroed::<T>(self.name(), n)?;
        self.raw.load(range.start, v.as_mut_bytes(), wait)?;
        Ok(v)
    }

    wait_forms! {
        /// The elements in `range`, as one consistent copy (under the lock, or one seqlock
        /// snapshot; element by element in atomic mode).
        fn read, try_read, read_timeout, read_deadline (range: Range<usize>) -> Result<Vec<T>> = read_with
    }

    fn read_into_with(&self, offset: usize, out: &mut [T], wait: Wait) -> Result<()> {
        self.raw.load(offset, out.as_mut_bytes(), wait).map(drop)
    }

    wait_forms! {
        /// Read elements `offset..offset + out.len()` into `out` (as [`read`](Self::read)).
        fn read_into, try_read_into, read_into_timeout, read_into_deadline
            (offset: usize, out: &mut [T]) -> Result<()> = read_into_with
    }

    fn write_with(&self, offset: usize, data: &[T], wait: Wait) -> Result<()> {
        self.raw.store(offset, data.as_bytes(), wait)
    }

    wait_forms! {
        /// Write `data` at elements `offset..` (an error, nothing written, if it does not fit).
        fn write, try_write, write_timeout, write_deadline (offset: usize, data: &[T]) -> Result<()> = write_with
    }

    fn with_lock_with<R>(&self, f: impl FnOnce(&mut [T]) -> R, wait: Wait) -> Result<R> {
        let g = AnyGuard::new(&self.raw, self.raw.lock_for_rmw(wait)?);
        let mut v = zeroed::<T>(self.name(), self.len())?;
        g.read_into(0, v.as_mut_bytes())?;
        let r = f(&mut v);
        g.write(0, v.as_bytes());
        Ok(r)
    }

    wait_forms! {
        /// Run `f` over the whole array under the lock (locked or seqlock mode): `f` gets a
        /// private copy, which is written back (as one seqlock write in seqlock mode) before
        /// the lock is released. Shared memory is never handed out as `&mut [T]`: another
        /// process may write it at any time, which Rust's model does not allow under a
        /// reference.
        ///
        /// A dead previous holder: as [`Value::update`](super::Value::update).
        fn with_lock, try_with_lock, with_lock_timeout, with_lock_deadline <R>
            (f: impl FnOnce(&mut [T]) -> R) -> Result<R> = with_lock_with
    }

    fn lock_with(&self, wait: Wait) -> LockResult<'_, ArrayGuard<'_, T>> {
        let wrap = |g| ArrayGuard {
            inner: AnyGuard::new(&self.raw, g),
            _t: PhantomData,
        };
        self.raw.lock(wait).map(wrap).map_err(|e| e.map(wrap))
    }

    wait_forms! {
        /// Take the array's lock (the data lock; seqlock: the writer lock). See
        /// [`Value::lock`](super::Value::lock).
        fn lock, try_lock, lock_timeout, lock_deadline () -> LockResult<'_, ArrayGuard<'_, T>> = lock_with
    }

    /// The seqlock sequence (see [`Value::sequence`](super::Value::sequence)).
    pub fn sequence(&self) -> u64 {
        self.raw.sequence()
    }

    fn wait_changed_with(&self, last: u64, wait: Wait) -> Result<(Vec<T>, u64)> {
        let mut v = zeroed::<T>(self.name(), self.len())?;
        let s = self.raw.wait_changed(last, 0, v.as_mut_bytes(), wait)?;
        Ok((v, s))
    }

    wait_forms! {
        /// Seqlock mode: wait for a write after sequence `last`; the whole array and its
        /// sequence.
        fn wait_changed, try_wait_changed, wait_changed_timeout, wait_changed_deadline
            (last: u64) -> Result<(Vec<T>, u64)> = wait_changed_with
    }
}

impl<T: CellAtomic> Array<T> {
    #[inline]
    fn op(&self, i: usize, op: Op) -> Result<std::result::Result<T, T>> {
        Ok(self
            .raw
            .atomic(i, op)?
            .map(T::from_bits)
            .map_err(T::from_bits))
    }

    /// Atomic mode: element `i` (`SeqCst`).
    #[inline]
    pub fn load(&self, i: usize) -> Result<T> {
        Ok(self.op(i, Op::Load)?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: store `v` into element `i`.
    #[inline]
    pub fn store(&self, i: usize, v: T) -> Result<()> {
        self.op(i, Op::Store(v.to_bits())).map(drop)
    }

    /// Atomic mode: add `v` (wrapping) to element `i`, returning its previous value.
    #[inline]
    pub fn fetch_add(&self, i: usize, v: T) -> Result<T> {
        Ok(self.op(i, Op::Add(v.to_bits()))?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: subtract `v` (wrapping) from element `i`, returning its previous value.
    #[inline]
    pub fn fetch_sub(&self, i: usize, v: T) -> Result<T> {
        Ok(self.op(i, Op::Sub(v.to_bits()))?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: store `v` into element `i`, returning its previous value.
    #[inline]
    pub fn swap(&self, i: usize, v: T) -> Result<T> {
        Ok(self.op(i, Op::Swap(v.to_bits()))?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: compare-exchange element `i` (`Ok(Ok(previous))` / `Ok(Err(actual))`).
    pub fn compare_exchange(
        &self,
        i: usize,
        current: T,
        new: T,
    ) -> Result<std::result::Result<T, T>> {
        self.op(i, Op::Cas(current.to_bits(), new.to_bits()))
    }
}

fn array_geo(mode: CellMode, elem: ElemType, len: usize) -> Geometry {
    Geometry { mode, elem, len }
}

impl<T: ShmType> CellOptions<Array<T>> {
    /// Create the array with `len` zeroed elements, in the chosen mode.
    pub fn create(&self, name: &str, len: usize) -> Result<Array<T>> {
        let geo = array_geo(self.cell_mode, ElemType::of::<T>(), len);
        let raw = RawCell::create(&self.untyped(), name, Kind::ARRAY, geo, &[], None)?;
        Ok(Array {
            raw,
            _t: PhantomData,
        })
    }

    /// Create the array holding a copy of `init` (its length is the array's).
    pub fn create_from(&self, name: &str, init: &[T]) -> Result<Array<T>> {
        let geo = array_geo(self.cell_mode, ElemType::of::<T>(), init.len());
        let raw = RawCell::create(
            &self.untyped(),
            name,
            Kind::ARRAY,
            geo,
            init.as_bytes(),
            None,
        )?;
        Ok(Array {
            raw,
            _t: PhantomData,
        })
    }

    /// Open an existing array of element type `T`.
    pub fn open(&self, name: &str) -> Result<Array<T>> {
        let raw = RawCell::open(
            &self.untyped(),
            name,
            Kind::ARRAY,
            Some(&ElemType::of::<T>()),
        )?;
        Ok(Array {
            raw,
            _t: PhantomData,
        })
    }

    /// Open the array, or create it with `len` zeroed elements; an existing one must have
    /// that length.
    pub fn open_or_create(&self, name: &str, len: usize) -> Result<Array<T>> {
        let elem = ElemType::of::<T>();
        let geo = array_geo(self.cell_mode, elem.clone(), len);
        let raw = RawCell::create(&self.untyped(), name, Kind::ARRAY, geo, &[], Some(&elem))?;
        Ok(Array {
            raw,
            _t: PhantomData,
        })
    }
}

/// Holds a cell's lock, for any cell ([`AnyValue::lock`](super::AnyValue::lock),
/// [`AnyArray::lock`]); unlocks when dropped. Not `Send`. Elements as little-endian bytes.
///
/// A guard inherited by a `fork()`ed child is its parent's: the child does not hold the lock,
/// so its writes through the guard are refused ([`Error::Lock`]`(`[`LockError::NotOwner`]`)`;
/// [`ValueGuard::set`](super::ValueGuard::set) panics), and its reads are not protected from
/// the parent's writes. Dropping it there leaves the lock to the parent.
pub struct AnyGuard<'a> {
    raw: &'a RawCell,
    g: LockGuard<'a>,
}

impl std::fmt::Debug for AnyGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellGuard")
            .field("cell", self.raw)
            .field("guard", &self.g)
            .finish()
    }
}

/// Lock `raw` for an [`AnyGuard`].
#[inline]
pub(crate) fn any_lock(raw: &RawCell, wait: Wait) -> LockResult<'_, AnyGuard<'_>> {
    match raw.lock(wait) {
        Ok(g) => Ok(AnyGuard::new(raw, g)),
        Err(e) => Err(e.map(|g| AnyGuard::new(raw, g))),
    }
}

impl<'a> AnyGuard<'a> {
    #[inline]
    pub(crate) fn new(raw: &'a RawCell, g: LockGuard<'a>) -> AnyGuard<'a> {
        AnyGuard { raw, g }
    }

    /// `first..first + out.len() / size` must be in range (the typed guards' callers check).
    /// `Error::Corrupt`, `out` untouched, when a seqlock writer died mid-write (`seq` odd:
    /// the data is half old, half new until a whole-value write, SPEC §10.5).
    #[inline]
    pub(crate) fn read_into(&self, first: usize, out: &mut [u8]) -> Result<()> {
        self.raw.check_whole()?;
        self.raw.read_locked(first, out);
        Ok(())
    }

    /// As `read_into`. The caller checked [`held`](Self::held) (or asserted it).
    #[inline]
    pub(crate) fn write(&self, first: usize, data: &[u8]) {
        self.raw.write_locked(first, data)
    }

    /// `Ok` if this process holds the lock; [`LockError::NotOwner`] in a `fork()`ed child
    /// that inherited the guard (its writes would change data under the parent's lock).
    #[inline]
    pub(crate) fn held(&self) -> Result<()> {
        if self.g.held_here() {
            Ok(())
        } else {
            Err(Error::Lock(LockError::NotOwner))
        }
    }

    /// Elements `first..first + count` as bytes.
    pub fn read_bytes(&self, first: usize, count: usize) -> Result<Vec<u8>> {
        // The range first: `count * elem_size` is within the array's validated size after it
        // (a count past the array wrapped the product, or asked the allocator for it).
        self.raw.check_range(first, count)?;
        let mut b = zeroed::<u8>(self.raw.segment().name(), count * self.raw.geo().elem.size)?;
        self.read_bytes_into(first, &mut b)?;
        Ok(b)
    }

    /// Fill `out` (whole elements, so a caller's stack buffer serves: no allocation) with the
    /// elements from `first`; an error, `out` untouched, if they are not in range.
    #[inline(always)]
    pub fn read_bytes_into(&self, first: usize, out: &mut [u8]) -> Result<()> {
        let count = self.whole_elements(out.len())?;
        self.raw.check_range(first, count)?;
        self.read_into(first, out)
    }

    /// Write whole elements' bytes at element `first` (an error, nothing written, if they do
    /// not fit or are not a whole number of elements).
    #[inline(always)]
    pub fn write_bytes(&self, first: usize, data: &[u8]) -> Result<()> {
        self.held()?;
        let count = self.whole_elements(data.len())?;
        self.raw.check_range(first, count)?;
        self.write(first, data);
        Ok(())
    }

    /// How many elements `len` bytes are; an error if not a whole number.
    #[inline(always)]
    fn whole_elements(&self, len: usize) -> Result<usize> {
        let size = self.raw.geo().elem.size;
        // Typecodes' sizes are powers of two: a mask and a shift, not a division, for them.
        let (rem, n) = if size.is_power_of_two() {
            (len & (size - 1), len >> size.trailing_zeros())
        } else {
            (len % size, len / size)
        };
        if rem != 0 {
            return Err(self.not_whole(len));
        }
        Ok(n)
    }

    #[cold]
    #[inline(never)]
    fn not_whole(&self, len: usize) -> Error {
        Error::invalid(
            self.raw.segment().name(),
            format!(
                "{len} bytes are not whole {}-byte elements of {}",
                self.raw.geo().elem.size,
                self.raw.describe()
            ),
        )
    }

    /// After `OwnerDied`: declare the data repaired (see
    /// [`LockGuard::make_consistent`](crate::sync::LockGuard::make_consistent)).
    pub fn make_consistent(&mut self) -> std::result::Result<(), LockError<()>> {
        self.g.make_consistent()
    }

    /// The dead previous holder, until [`make_consistent`](Self::make_consistent).
    pub fn previous_owner(&self) -> Option<Owner> {
        self.g.previous_owner()
    }

    /// After `OwnerDied`, without repairing: release the lock back to its dead previous
    /// owner, so the next taker gets `OwnerDied` too (see
    /// [`LockGuard::release_unrepaired`](crate::sync::LockGuard::release_unrepaired)).
    pub fn release_unrepaired(self) {
        self.g.release_unrepaired()
    }

    /// Keep the lock held without a guard (for Python-style `acquire()`/`release()` pairs);
    /// the holding thread gets a guard back with `adopt_lock` (see
    /// [`LockGuard::leak`](crate::sync::LockGuard::leak)).
    #[inline]
    pub fn leak(self) {
        self.g.leak()
    }
}

/// A guard for the cell lock the calling thread holds after [`AnyGuard::leak`]
/// ([`LockError::NotOwner`] if it does not hold it; see
/// [`LockState::adopt`](crate::sync::LockState::adopt)).
#[inline]
pub(crate) fn any_adopt(raw: &RawCell) -> std::result::Result<AnyGuard<'_>, LockError<()>> {
    Ok(AnyGuard::new(raw, raw.ctl().lock.adopt()?))
}

/// Holds an array's lock ([`Array::lock`]); unlocks when dropped. Not `Send`. Inherited by a
/// `fork()`ed child, it is the parent's: writes through it fail there (see [`AnyGuard`]).
#[must_use = "the lock is released when the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    inner: AnyGuard<'a>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: ShmType> ArrayGuard<'_, T> {
    /// Element `i`. Seqlock mode: [`Error::Corrupt`] while a writer that died mid-write
    /// left the data half written (until a whole-array [`write`](Self::write)).
    #[inline]
    pub fn get(&self, i: usize) -> Result<T> {
        self.inner.raw.check_range(i, 1)?;
        let mut v = T::new_zeroed();
        self.inner.read_into(i, v.as_mut_bytes())?;
        Ok(v)
    }

    /// Set element `i` (seqlock: one seqlock write).
    #[inline]
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.inner.held()?;
        self.inner.raw.check_range(i, 1)?;
        self.inner.write(i, v.as_bytes());
        Ok(())
    }

    /// The elements in `range` (seqlock mode: as [`get`](Self::get)).
    pub fn read(&self, range: Range<usize>) -> Result<Vec<T>> {
        let name = self.inner.raw.segment().name();
        let n = range_len(name, &range)?;
        self.inner.raw.check_range(range.start, n)?;
        let mut v = zeroed::<T>(name, n)?;
        self.inner.read_into(range.start, v.as_mut_bytes())?;
        Ok(v)
    }

    /// Write `data` at elements `offset..` (seqlock: one seqlock write).
    pub fn write(&self, offset: usize, data: &[T]) -> Result<()> {
        self.inner.held()?;
        self.inner.raw.check_range(offset, data.len())?;
        self.inner.write(offset, data.as_bytes());
        Ok(())
    }

    /// After `OwnerDied`: declare the array repaired.
    pub fn make_consistent(&mut self) -> std::result::Result<(), LockError<()>> {
        self.inner.make_consistent()
    }

    /// The dead previous holder, until [`make_consistent`](Self::make_consistent).
    pub fn previous_owner(&self) -> Option<Owner> {
        self.inner.previous_owner()
    }

    /// After `OwnerDied`, without repairing: release the lock back to its dead previous
    /// owner (see [`AnyGuard::release_unrepaired`]).
    pub fn release_unrepaired(self) {
        self.inner.release_unrepaired()
    }
}

/// An array cell of any element type, as recorded in it (for the CLI and the Python
/// package): elements as little-endian bytes or typecode text.
///
/// ```
/// use shmkit::cell::{AnyArray, Array, Typecode};
/// # let name = format!("doc-anyarray-{}", std::process::id());
/// let a = Array::<f64>::options().unlink_on_drop(true).create(&name, 3)?;
/// let any = AnyArray::open(&name)?;
/// assert_eq!((any.typecode(), any.len()), (Typecode::from_char('d'), 3));
/// any.set_text(1, "2.5")?;
/// assert_eq!(a.get(1)?, 2.5);
/// assert_eq!(any.get_text(1)?, "2.5");
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct AnyArray {
    raw: RawCell,
}

impl AnyArray {
    /// Options for creating or opening an array of a run-time typecode.
    pub fn options() -> CellOptions<AnyArray> {
        CellOptions::default()
    }

    /// Open an existing array of any element type.
    pub fn open(name: &str) -> Result<AnyArray> {
        Self::options().open(name)
    }

    super::cell_accessors!(any);

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.raw.geo().len
    }

    /// Always false: an array has at least one element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read_bytes_with(&self, first: usize, count: usize, wait: Wait) -> Result<Vec<u8>> {
        self.raw.check_range(first, count)?;
        let mut b = zeroed::<u8>(self.name(), count * self.elem_size())?;
        self.raw.load(first, &mut b, wait)?;
        Ok(b)
    }

    wait_forms! {
        /// Elements `first..first + count` as little-endian bytes, one consistent copy (as
        /// [`Array::read`]).
        fn read_bytes, try_read_bytes, read_bytes_timeout, read_bytes_deadline
            (first: usize, count: usize) -> Result<Vec<u8>> = read_bytes_with
    }

    fn write_bytes_with(&self, first: usize, data: &[u8], wait: Wait) -> Result<()> {
        if data.len() % self.elem_size() != 0 {
            return Err(Error::invalid(
                self.name(),
                format!(
                    "{} bytes are not whole {}-byte elements of {}",
                    data.len(),
                    self.elem_size(),
                    self.describe()
                ),
            ));
        }
        self.raw.store(first, data, wait)
    }

    wait_forms! {
        /// Write whole elements' little-endian bytes at element `first` (an error, nothing
        /// written, if they do not fit; as [`Array::write`]).
        fn write_bytes, try_write_bytes, write_bytes_timeout, write_bytes_deadline
            (first: usize, data: &[u8]) -> Result<()> = write_bytes_with
    }

    fn typecode_for_text(&self) -> Result<Typecode> {
        self.typecode().ok_or_else(|| {
            Error::invalid(
                self.name(),
                format!(
                    "{} holds a user type, which has no text form",
                    self.describe()
                ),
            )
        })
    }

    fn get_text_with(&self, i: usize, wait: Wait) -> Result<String> {
        let t = self.typecode_for_text()?;
        Ok(t.format(&self.read_bytes_with(i, 1, wait)?))
    }

    wait_forms! {
        /// Element `i` in its typecode's text form (as [`read_bytes`](Self::read_bytes)).
        fn get_text, try_get_text, get_text_timeout, get_text_deadline (i: usize) -> Result<String> = get_text_with
    }

    fn set_text_with(&self, i: usize, s: &str, wait: Wait) -> Result<()> {
        let t = self.typecode_for_text()?;
        self.raw.check_range(i, 1)?;
        let b = t.parse(s).map_err(|e| {
            Error::invalid(
                self.name(),
                format!("{e} (the segment holds {})", self.describe()),
            )
        })?;
        self.write_bytes_with(i, &b, wait)
    }

    wait_forms! {
        /// Set element `i` from text in its typecode's syntax (an error naming both sides,
        /// nothing written, if it does not fit or `i` is out of range; as
        /// [`write_bytes`](Self::write_bytes)).
        fn set_text, try_set_text, set_text_timeout, set_text_deadline (i: usize, s: &str) -> Result<()> = set_text_with
    }

    /// Atomic mode: add `v` (two's complement, wrapping) to element `i`; the previous bits.
    #[inline]
    pub fn fetch_add(&self, i: usize, v: i64) -> Result<u64> {
        Ok(self.raw.atomic(i, Op::Add(v as u64))?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: compare-exchange element `i`'s bits (`Ok(previous)` / `Err(actual)`).
    pub fn compare_exchange(
        &self,
        i: usize,
        current: u64,
        new: u64,
    ) -> Result<std::result::Result<u64, u64>> {
        self.raw.atomic(i, Op::Cas(current, new))
    }

    #[inline]
    fn lock_with(&self, wait: Wait) -> LockResult<'_, AnyGuard<'_>> {
        any_lock(&self.raw, wait)
    }

    wait_forms! {
        /// Take the array's lock (see [`Array::lock`]).
        fn lock, try_lock, lock_timeout, lock_deadline () -> LockResult<'_, AnyGuard<'_>> = lock_with
    }

    /// A guard for the lock this thread holds after [`AnyGuard::leak`]
    /// ([`LockError::NotOwner`] if it does not hold it).
    #[inline]
    pub fn adopt_lock(&self) -> std::result::Result<AnyGuard<'_>, LockError<()>> {
        any_adopt(&self.raw)
    }

    /// The start of the data (element 0), in this process's mapping of the array, valid while
    /// this handle lives (this is what the Python package exports through the buffer
    /// protocol, for numpy). Accesses through it bypass the lock and the sequence, and other
    /// processes may write the bytes at any time. Other threads of this process may access
    /// the same bytes through this handle (or its clones) at the same time, and Rust's memory
    /// model makes that a data race, undefined behaviour, unless both accesses are atomic and
    /// of the same size (or both loads): so access each byte with the atomics this handle's
    /// own calls use for it, elements with atomics of their size in atomic mode, and in
    /// locked and seqlock modes whole aligned 8-byte words (single bytes only in a final
    /// word the data covers partly), or hold the lock in locked mode (then plain accesses are
    /// ordered with this process's lock holders). Volatile accesses are not atomic.
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: the data lies inside the mapping (checked at open).
        unsafe { self.raw.segment().as_mut_ptr().add(DATA_IN_PAYLOAD) }
    }

    /// The seqlock sequence (see [`Value::sequence`](super::Value::sequence)).
    pub fn sequence(&self) -> u64 {
        self.raw.sequence()
    }

    fn wait_changed_with(&self, last: u64, wait: Wait) -> Result<(Vec<u8>, u64)> {
        let mut b = zeroed::<u8>(self.name(), self.raw.geo().bytes())?;
        let s = self.raw.wait_changed(last, 0, &mut b, wait)?;
        Ok((b, s))
    }

    wait_forms! {
        /// Seqlock mode: wait for a write after sequence `last`; the whole array's bytes and
        /// the sequence (as [`Array::wait_changed`]).
        fn wait_changed, try_wait_changed, wait_changed_timeout, wait_changed_deadline
            (last: u64) -> Result<(Vec<u8>, u64)> = wait_changed_with
    }
}

impl CellOptions<AnyArray> {
    /// Create an array of `len` elements of typecode `t`, holding `init` (the elements'
    /// little-endian bytes, `len` times the typecode's size) or zeroed. The data is written
    /// before the array is published: no process can open it half-written.
    pub fn create(
        &self,
        name: &str,
        t: Typecode,
        len: usize,
        init: Option<&[u8]>,
    ) -> Result<AnyArray> {
        self.build(name, t, len, init, false)
    }

    /// Open the array of `len` elements of typecode `t`, or create it holding `init` (exactly
    /// one racing creator's `init` wins), as the typed `open_or_create` does;
    /// an existing array of another element type or length is refused, and so is another
    /// user's where this mode is private (`SPEC.md` §4.3).
    ///
    /// ```
    /// use shmkit::cell::{AnyArray, Typecode};
    /// # let name = format!("doc-anyarray-ooc-{}", std::process::id());
    /// let i = Typecode::from_char('i').unwrap();
    /// let a = AnyArray::options().unlink_on_drop(true).open_or_create(&name, i, 3, None)?;
    /// let b = AnyArray::options().open_or_create(&name, i, 3, None)?;
    /// assert_eq!(b.len(), 3);
    /// assert!(AnyArray::options().open_or_create(&name, i, 4, None).is_err()); // another length
    /// # drop((a, b));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_or_create(
        &self,
        name: &str,
        t: Typecode,
        len: usize,
        init: Option<&[u8]>,
    ) -> Result<AnyArray> {
        self.build(name, t, len, init, true)
    }

    fn build(
        &self,
        name: &str,
        t: Typecode,
        len: usize,
        init: Option<&[u8]>,
        or_open: bool,
    ) -> Result<AnyArray> {
        let init = init.unwrap_or(&[]);
        if !init.is_empty() && Some(init.len()) != len.checked_mul(t.size()) {
            return Err(Error::invalid(
                name,
                format!(
                    "{} initial bytes for {len} elements of typecode '{t}' of size {}",
                    init.len(),
                    t.size()
                ),
            ));
        }
        let elem = ElemType::of_typecode(t);
        let geo = array_geo(self.cell_mode, elem.clone(), len);
        let want = or_open.then_some(&elem);
        Ok(AnyArray {
            raw: RawCell::create(&self.untyped(), name, Kind::ARRAY, geo, init, want)?,
        })
    }

    /// Open an existing array of any element type.
    pub fn open(&self, name: &str) -> Result<AnyArray> {
        Ok(AnyArray {
            raw: RawCell::open(&self.untyped(), name, Kind::ARRAY, None)?,
        })
    }
}
