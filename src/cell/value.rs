//! [`Value<T>`] (typed) and [`AnyValue`] (typed at run time by the recorded typecode): a named
//! cell holding one element.

use std::marker::PhantomData;

use super::array::AnyGuard;
use super::layout::{ElemType, Geometry};
use super::raw::{Op, RawCell, Wait};
use super::{CellMode, CellOptions, Typecode};
use crate::error::{Error, Result};
use crate::os::deadline::wait_forms;
use crate::segment::Kind;
use crate::sync::{LockError, Owner};
use crate::ShmType;

/// The types of atomic cells: `i8`–`i64`, `u8`–`u64`, and [`CBool`](super::CBool) (`?`;
/// `fetch_add` on it is refused, as for any non-integer typecode). Sealed.
pub trait CellAtomic: ShmType + Copy + sealed::Sealed {
    #[doc(hidden)]
    fn to_bits(self) -> u64;
    #[doc(hidden)]
    fn from_bits(b: u64) -> Self;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! cell_atomic {
    ($($t:ty),+) => {$(
        impl sealed::Sealed for $t {}
        impl CellAtomic for $t {
            fn to_bits(self) -> u64 { self as u64 }
            fn from_bits(b: u64) -> Self { b as $t }
        }
    )+};
}
cell_atomic!(i8, u8, i16, u16, i32, u32, i64, u64);

impl sealed::Sealed for super::CBool {}
impl CellAtomic for super::CBool {
    fn to_bits(self) -> u64 {
        u64::from(self.0)
    }
    fn from_bits(b: u64) -> Self {
        super::CBool(b as u8)
    }
}

/// A named cell holding one `T`: Python's `multiprocessing.Value`, attachable by name from any
/// process. See the [module docs](super) for the modes; which calls apply in which mode:
///
/// | call | locked | atomic | seqlock |
/// |---|---|---|---|
/// | `get`, `set` (and `try_`/`_timeout`/`_deadline`) | under the lock | atomic load/store | lock-free read / write under the writer lock |
/// | `update`, `lock` | yes | the lock exists but atomics ignore it | yes (writer lock) |
/// | `load`, `store`, `fetch_add`, … | no | yes | no |
/// | `wait_changed` | no | no | yes |
///
/// ```
/// use shmkit::cell::Value;
/// # let name = format!("doc-value-{}", std::process::id());
/// let v = Value::<i64>::options().unlink_on_drop(true).create(&name, 41)?; // locked
/// let other = Value::<i64>::open(&name)?; // e.g. in another process
/// other.update(|x| x + 1)?;
/// assert_eq!(v.get()?, 42);
/// {
///     let g = v.lock().unwrap(); // a longer critical section
///     g.set(g.get()? * 2);
/// }
/// assert_eq!(other.get()?, 84);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Value<T> {
    raw: RawCell,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

fn value_geo(mode: CellMode, elem: ElemType) -> Geometry {
    Geometry { mode, elem, len: 1 }
}

impl<T: ShmType> Value<T> {
    /// Options for creating or opening a `Value<T>` (the mode, permissions, lifetime, …).
    pub fn options() -> CellOptions<Value<T>> {
        CellOptions::default()
    }

    /// Create a locked value holding `init`; fails if the name exists.
    pub fn create(name: &str, init: T) -> Result<Self> {
        Self::options().create(name, init)
    }

    /// Open an existing value of element type `T` (its mode is the recorded one).
    pub fn open(name: &str) -> Result<Self> {
        Self::options().open(name)
    }

    /// Open the value, or create it (locked) holding `init`.
    pub fn open_or_create(name: &str, init: T) -> Result<Self> {
        Self::options().open_or_create(name, init)
    }

    super::cell_accessors!(typed);

    fn get_with(&self, wait: Wait) -> Result<T> {
        let mut v = T::new_zeroed();
        self.raw.load(0, v.as_mut_bytes(), wait)?;
        Ok(v)
    }

    fn set_with(&self, v: T, wait: Wait) -> Result<()> {
        self.raw.store(0, v.as_bytes(), wait)
    }

    wait_forms! {
        /// The value. Locked: under the lock (after a holder died holding it,
        /// [`Error::HolderDied`], with the lock left for a repair: [`set`](Self::set), or
        /// [`lock`](Self::lock) and `make_consistent`); seqlock: a consistent copy, waiting while a write is under way (or
        /// until the next write, after a writer died mid-write); atomic: one atomic load.
        fn get, try_get, get_timeout, get_deadline () -> Result<T> = get_with
    }

    wait_forms! {
        /// Replace the value. Locked and seqlock: under the lock; since it replaces the whole
        /// value it also repairs a dead holder's cell (`OwnerDied`: it writes, then marks the
        /// lock consistent). Seqlock: readers see the old or the new value, never a mix.
        fn set, try_set, set_timeout, set_deadline (v: T) -> Result<()> = set_with
    }

    fn update_with(&self, f: impl FnOnce(T) -> T, wait: Wait) -> Result<T> {
        let mut v = T::new_zeroed();
        self.raw.rmw(v.as_mut_bytes(), wait, |b| {
            let mut cur = T::new_zeroed();
            cur.as_mut_bytes().copy_from_slice(b);
            let new = f(cur);
            b.copy_from_slice(new.as_bytes());
        })?;
        Ok(v)
    }

    wait_forms! {
        /// Read, transform and write back under the lock (locked or seqlock mode); returns
        /// the new value. Python's `with v.get_lock(): v.value = f(v.value)`.
        ///
        /// A dead previous holder: locked mode returns [`Error::HolderDied`] and leaves the
        /// lock for a repair ([`set`](Self::set), or [`lock`](Self::lock)); seqlock mode goes on if the dead writer left the
        /// value whole, else returns [`Error::Corrupt`] (a [`set`](Self::set) recovers it).
        fn update, try_update, update_timeout, update_deadline (f: impl FnOnce(T) -> T) -> Result<T> = update_with
    }

    fn lock_with(
        &self,
        wait: Wait,
    ) -> std::result::Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        let wrap = |g| ValueGuard {
            inner: AnyGuard::new(&self.raw, g),
            _t: PhantomData,
        };
        self.raw.lock(wait).map(wrap).map_err(|e| e.map(wrap))
    }

    wait_forms! {
        /// Take the cell's lock (locked mode: the data lock; seqlock: the writer lock) for a
        /// longer critical section; [`LockError::OwnerDied`] hands the guard of a dead
        /// holder's cell to repair, as [`Lock`](crate::sync::Lock) does.
        fn lock, try_lock, lock_timeout, lock_deadline ()
            -> std::result::Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> = lock_with
    }

    /// The seqlock sequence: even when no write is under way, `+2` per write. Pass it to
    /// [`wait_changed`](Self::wait_changed).
    pub fn sequence(&self) -> u64 {
        self.raw.sequence()
    }

    fn wait_changed_with(&self, last: u64, wait: Wait) -> Result<(T, u64)> {
        let mut v = T::new_zeroed();
        let s = self.raw.wait_changed(last, 0, v.as_mut_bytes(), wait)?;
        Ok((v, s))
    }

    wait_forms! {
        /// Seqlock mode: wait until a write after sequence `last` has completed, and return
        /// the value with its sequence (the `last` of the next call).
        ///
        /// ```
        /// use shmkit::cell::{CellMode, Value};
        /// # let name = format!("doc-waitchanged-{}", std::process::id());
        /// let v = Value::<u64>::options().cell_mode(CellMode::Seqlock).unlink_on_drop(true).create(&name, 1)?;
        /// let seen = v.sequence();
        /// std::thread::scope(|s| {
        ///     s.spawn(|| v.set(2).unwrap());
        ///     let (x, _) = v.wait_changed_timeout(seen, std::time::Duration::from_secs(10)).unwrap();
        ///     assert_eq!(x, 2);
        /// });
        /// # Ok::<(), shmkit::Error>(())
        /// ```
        fn wait_changed, try_wait_changed, wait_changed_timeout, wait_changed_deadline
            (last: u64) -> Result<(T, u64)> = wait_changed_with
    }
}

impl<T: CellAtomic> Value<T> {
    #[inline]
    fn op(&self, op: Op) -> Result<std::result::Result<T, T>> {
        Ok(self
            .raw
            .atomic(0, op)?
            .map(T::from_bits)
            .map_err(T::from_bits))
    }

    /// Atomic mode: the value (`SeqCst`).
    #[inline]
    pub fn load(&self) -> Result<T> {
        Ok(self.op(Op::Load)?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: store `v` (`SeqCst`).
    #[inline]
    pub fn store(&self, v: T) -> Result<()> {
        self.op(Op::Store(v.to_bits())).map(drop)
    }

    /// Atomic mode: add `v` (wrapping), returning the previous value.
    #[inline]
    pub fn fetch_add(&self, v: T) -> Result<T> {
        Ok(self.op(Op::Add(v.to_bits()))?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: subtract `v` (wrapping), returning the previous value.
    #[inline]
    pub fn fetch_sub(&self, v: T) -> Result<T> {
        Ok(self.op(Op::Sub(v.to_bits()))?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: store `v`, returning the previous value.
    #[inline]
    pub fn swap(&self, v: T) -> Result<T> {
        Ok(self.op(Op::Swap(v.to_bits()))?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: store `new` if the value is `current`; `Ok(Ok(previous))` if it was,
    /// `Ok(Err(actual))` if not.
    #[inline]
    pub fn compare_exchange(&self, current: T, new: T) -> Result<std::result::Result<T, T>> {
        self.op(Op::Cas(current.to_bits(), new.to_bits()))
    }
}

impl<T: ShmType> CellOptions<Value<T>> {
    /// Create the value holding `init`, in the chosen mode.
    pub fn create(&self, name: &str, init: T) -> Result<Value<T>> {
        let geo = value_geo(self.cell_mode, ElemType::of::<T>());
        let raw = RawCell::create(
            &self.untyped(),
            name,
            Kind::VALUE,
            geo,
            init.as_bytes(),
            None,
        )?;
        Ok(Value {
            raw,
            _t: PhantomData,
        })
    }

    /// Open an existing value of element type `T`.
    pub fn open(&self, name: &str) -> Result<Value<T>> {
        let raw = RawCell::open(
            &self.untyped(),
            name,
            Kind::VALUE,
            Some(&ElemType::of::<T>()),
        )?;
        Ok(Value {
            raw,
            _t: PhantomData,
        })
    }

    /// Open the value, or create it holding `init` (exactly one racing creator's `init` wins).
    pub fn open_or_create(&self, name: &str, init: T) -> Result<Value<T>> {
        let elem = ElemType::of::<T>();
        let geo = value_geo(self.cell_mode, elem.clone());
        let raw = RawCell::create(
            &self.untyped(),
            name,
            Kind::VALUE,
            geo,
            init.as_bytes(),
            Some(&elem),
        )?;
        Ok(Value {
            raw,
            _t: PhantomData,
        })
    }
}

/// Holds a value's lock ([`Value::lock`]); unlocks when dropped. Not `Send`. Inherited by a
/// `fork()`ed child, it is the parent's: [`set`](Self::set) panics there (see
/// [`AnyGuard`](super::AnyGuard)).
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T> {
    inner: AnyGuard<'a>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: ShmType> ValueGuard<'_, T> {
    /// The value (no other shmkit writer can change it while the guard lives). Seqlock
    /// mode: [`Error::Corrupt`] while a writer that died mid-write left the value half
    /// written (until a [`set`](Self::set), which recovers it; SPEC §10.5).
    #[inline]
    pub fn get(&self) -> Result<T> {
        let mut v = T::new_zeroed();
        self.inner.read_into(0, v.as_mut_bytes())?;
        Ok(v)
    }

    /// Replace the value (seqlock: as one seqlock write, readers never see a mix).
    ///
    /// # Panics
    ///
    /// In a `fork()`ed child that inherited the guard: the lock is the parent's (see
    /// [`AnyGuard`](super::AnyGuard)).
    #[inline]
    pub fn set(&self, v: T) {
        assert!(
            self.inner.held().is_ok(),
            "a cell guard inherited across fork() cannot write in the child"
        );
        self.inner.write(0, v.as_bytes());
    }

    /// After `OwnerDied`: declare the value repaired (see
    /// [`LockGuard::make_consistent`](crate::sync::LockGuard::make_consistent)).
    pub fn make_consistent(&mut self) -> std::result::Result<(), LockError<()>> {
        self.inner.make_consistent()
    }

    /// The dead previous holder, until [`make_consistent`](Self::make_consistent).
    pub fn previous_owner(&self) -> Option<Owner> {
        self.inner.previous_owner()
    }

    /// After `OwnerDied`, without repairing: release the lock back to its dead previous
    /// owner, so the next taker gets `OwnerDied` too (see
    /// [`AnyGuard::release_unrepaired`](super::AnyGuard::release_unrepaired)).
    pub fn release_unrepaired(self) {
        self.inner.release_unrepaired()
    }
}

/// A value cell of any element type, as recorded in it: what the CLI and the Python package
/// use. Elements are handled as little-endian bytes ([`get_bytes`](Self::get_bytes)) or as
/// text in the typecode's syntax ([`get_text`](Self::get_text), [`Typecode::parse`]).
///
/// ```
/// use shmkit::cell::{AnyValue, Typecode, Value};
/// # let name = format!("doc-anyvalue-{}", std::process::id());
/// let v = AnyValue::options().unlink_on_drop(true).create(&name, Typecode::from_char('h').unwrap(), None)?;
/// v.set_text("-300")?;
/// assert!(v.set_text("40000").is_err()); // does not fit 'h'; nothing written
/// assert_eq!(Value::<i16>::open(&name)?.get()?, -300);
/// assert_eq!(v.get_text()?, "-300");
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct AnyValue {
    raw: RawCell,
}

impl AnyValue {
    /// Options for creating or opening a value of a run-time typecode.
    pub fn options() -> CellOptions<AnyValue> {
        CellOptions::default()
    }

    /// Open an existing value of any element type.
    pub fn open(name: &str) -> Result<AnyValue> {
        Self::options().open(name)
    }

    super::cell_accessors!(any);

    fn get_bytes_with(&self, wait: Wait) -> Result<Vec<u8>> {
        let mut b = vec![0u8; self.elem_size()];
        self.raw.load(0, &mut b, wait)?;
        Ok(b)
    }

    wait_forms! {
        /// The value's little-endian bytes (as [`Value::get`]).
        fn get_bytes, try_get_bytes, get_bytes_timeout, get_bytes_deadline () -> Result<Vec<u8>> = get_bytes_with
    }

    fn set_bytes_with(&self, b: &[u8], wait: Wait) -> Result<()> {
        if b.len() != self.elem_size() {
            return Err(Error::invalid(
                self.name(),
                format!(
                    "{} bytes given, {} holds {}-byte elements",
                    b.len(),
                    self.describe(),
                    self.elem_size()
                ),
            ));
        }
        self.raw.store(0, b, wait)
    }

    wait_forms! {
        /// Replace the value's bytes (exactly [`elem_size`](Self::elem_size) of them; as
        /// [`Value::set`]).
        fn set_bytes, try_set_bytes, set_bytes_timeout, set_bytes_deadline (b: &[u8]) -> Result<()> = set_bytes_with
    }

    fn typecode_for_text(&self) -> Result<Typecode> {
        self.typecode().ok_or_else(|| {
            Error::invalid(
                self.name(),
                format!(
                    "{} holds a user type, which has no text form; use the bytes",
                    self.describe()
                ),
            )
        })
    }

    fn get_text_with(&self, wait: Wait) -> Result<String> {
        let t = self.typecode_for_text()?;
        Ok(t.format(&self.get_bytes_with(wait)?))
    }

    wait_forms! {
        /// The value in its typecode's text form (`"-5"`, `"1.5"`, `"a"`, `"true"`; as
        /// [`get_bytes`](Self::get_bytes)).
        fn get_text, try_get_text, get_text_timeout, get_text_deadline () -> Result<String> = get_text_with
    }

    fn set_text_with(&self, s: &str, wait: Wait) -> Result<()> {
        let t = self.typecode_for_text()?;
        let b = t.parse(s).map_err(|e| {
            Error::invalid(
                self.name(),
                format!("{e} (the segment holds {})", self.describe()),
            )
        })?;
        self.set_bytes_with(&b, wait)
    }

    wait_forms! {
        /// Set the value from text in its typecode's syntax; text that does not fit (out of
        /// range, two characters for a `c`) is an error naming the typecode, and nothing is
        /// written (as [`set_bytes`](Self::set_bytes)).
        fn set_text, try_set_text, set_text_timeout, set_text_deadline (s: &str) -> Result<()> = set_text_with
    }

    /// Atomic mode: an element-wise atomic operation on the value's bit pattern; see
    /// [`AnyArray::fetch_add`](super::AnyArray::fetch_add) and friends for the forms.
    #[inline]
    pub fn fetch_add(&self, v: i64) -> Result<u64> {
        Ok(self.raw.atomic(0, Op::Add(v as u64))?.unwrap_or_else(|v| v))
    }

    /// Atomic mode: compare-exchange on bit patterns (`Ok(previous)` / `Err(actual)`).
    pub fn compare_exchange(
        &self,
        current: u64,
        new: u64,
    ) -> Result<std::result::Result<u64, u64>> {
        self.raw.atomic(0, Op::Cas(current, new))
    }

    #[inline]
    fn lock_with(&self, wait: Wait) -> std::result::Result<AnyGuard<'_>, LockError<AnyGuard<'_>>> {
        super::array::any_lock(&self.raw, wait)
    }

    wait_forms! {
        /// Take the cell's lock (see [`Value::lock`]).
        fn lock, try_lock, lock_timeout, lock_deadline ()
            -> std::result::Result<AnyGuard<'_>, LockError<AnyGuard<'_>>> = lock_with
    }

    /// A guard for the lock this thread holds after
    /// [`AnyGuard::leak`](super::AnyGuard::leak) ([`LockError::NotOwner`] if it does not hold
    /// it).
    #[inline]
    pub fn adopt_lock(&self) -> std::result::Result<AnyGuard<'_>, LockError<()>> {
        super::array::any_adopt(&self.raw)
    }

    /// The seqlock sequence (see [`Value::sequence`]).
    pub fn sequence(&self) -> u64 {
        self.raw.sequence()
    }

    fn wait_changed_with(&self, last: u64, wait: Wait) -> Result<(Vec<u8>, u64)> {
        let mut b = vec![0u8; self.elem_size()];
        let s = self.raw.wait_changed(last, 0, &mut b, wait)?;
        Ok((b, s))
    }

    wait_forms! {
        /// Seqlock mode: wait for a write after sequence `last`; the new bytes and sequence
        /// (as [`Value::wait_changed`]).
        fn wait_changed, try_wait_changed, wait_changed_timeout, wait_changed_deadline
            (last: u64) -> Result<(Vec<u8>, u64)> = wait_changed_with
    }
}

impl CellOptions<AnyValue> {
    /// Create a value of typecode `t`, holding `init` (its little-endian bytes) or zero.
    pub fn create(&self, name: &str, t: Typecode, init: Option<&[u8]>) -> Result<AnyValue> {
        self.build(name, t, init, false)
    }

    /// Open the value of typecode `t`, or create it holding `init` (exactly one racing
    /// creator's `init` wins), as [`Value::open_or_create`] does; an existing value of another
    /// element type is refused, and so is another user's where this mode is private
    /// (`SPEC.md` §4.3).
    ///
    /// ```
    /// use shmkit::cell::{AnyValue, Typecode};
    /// # let name = format!("doc-anyvalue-ooc-{}", std::process::id());
    /// let h = Typecode::from_char('h').unwrap();
    /// let a = AnyValue::options().unlink_on_drop(true).open_or_create(&name, h, Some(&7i16.to_le_bytes()))?;
    /// let b = AnyValue::options().open_or_create(&name, h, Some(&9i16.to_le_bytes()))?;
    /// assert_eq!(b.get_text()?, "7"); // opened: the first creator's value
    /// assert!(AnyValue::options().open_or_create(&name, Typecode::from_char('d').unwrap(), None).is_err());
    /// # drop((a, b));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_or_create(&self, name: &str, t: Typecode, init: Option<&[u8]>) -> Result<AnyValue> {
        self.build(name, t, init, true)
    }

    fn build(
        &self,
        name: &str,
        t: Typecode,
        init: Option<&[u8]>,
        or_open: bool,
    ) -> Result<AnyValue> {
        let init = init.unwrap_or(&[]);
        if !init.is_empty() && init.len() != t.size() {
            return Err(Error::invalid(
                name,
                format!(
                    "{} initial bytes for typecode '{t}' of size {}",
                    init.len(),
                    t.size()
                ),
            ));
        }
        let elem = ElemType::of_typecode(t);
        let geo = value_geo(self.cell_mode, elem.clone());
        let want = or_open.then_some(&elem);
        Ok(AnyValue {
            raw: RawCell::create(&self.untyped(), name, Kind::VALUE, geo, init, want)?,
        })
    }

    /// Open an existing value of any element type.
    pub fn open(&self, name: &str) -> Result<AnyValue> {
        Ok(AnyValue {
            raw: RawCell::open(&self.untyped(), name, Kind::VALUE, None)?,
        })
    }
}
