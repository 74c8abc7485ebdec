//! [`RawCell`]: the byte-level cell every typed and untyped handle wraps. It owns the mapping
//! and the validated [`Geometry`], and implements each mode's access to element bytes.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::layout::{describe, CellControl, ElemType, Geometry, CELL_FINGERPRINT, DATA_IN_PAYLOAD};
use super::seqlock;
use super::{CellMode, CellOptions};
use crate::error::{Error, Result};
use crate::os::atomic_copy;
use crate::segment::Kind;
use crate::sync::{LockError, LockGuard};
use crate::Segment;

pub(crate) use crate::os::deadline::Wait;

/// An element-wise atomic operation on bit patterns (truncated to the element's size).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Load,
    Store(u64),
    Add(u64),
    Sub(u64),
    Swap(u64),
    /// Compare-exchange: `Ok(old)` if it held `current`, else `Err(actual)` (as `Err` bits
    /// in [`RawCell::atomic`]'s result).
    Cas(u64, u64),
}

/// A lock result on a cell.
pub(crate) type Locked<'a> = std::result::Result<LockGuard<'a>, LockError<LockGuard<'a>>>;

pub(crate) struct RawCell {
    seg: Segment,
    kind: Kind,
    geo: Geometry,
    /// The typecode is an integer one (`fetch_add` applies); from `geo`, kept for the hot path.
    integer: bool,
    /// `geo.len × geo.elem.size` (validated at open not to overflow and to fit the mapping).
    data_bytes: usize,
}

impl std::fmt::Debug for RawCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cell")
            .field("name", &self.seg.name())
            .field("what", &self.describe())
            .field("mode", &self.geo.mode)
            .finish()
    }
}

impl RawCell {
    /// Create (or, with `or_open`, open or create) a cell; `init` is the initial data
    /// (`geo.bytes()` bytes; zero-filled if empty).
    pub(crate) fn create(
        opts: &CellOptions,
        name: &str,
        kind: Kind,
        geo: Geometry,
        init: &[u8],
        or_open: Option<&ElemType>,
    ) -> Result<RawCell> {
        geo.check_new(name, kind)?;
        if !init.is_empty() && init.len() != geo.bytes() {
            return Err(Error::invalid(
                name,
                format!(
                    "{} initial bytes for {} data bytes",
                    init.len(),
                    geo.bytes()
                ),
            ));
        }
        let size = (DATA_IN_PAYLOAD + geo.bytes()) as u64;
        let seg_opts = opts.seg.clone().kind(kind, CELL_FINGERPRINT);
        let build = |seg: &Segment| {
            // SAFETY: the payload is `size` >= DATA_IN_PAYLOAD bytes, 64-aligned.
            let ctl = unsafe { control(seg) };
            geo.init(ctl);
            if !init.is_empty() {
                // SAFETY: the data range lies inside the unpublished payload (size above);
                // nobody else can access it yet.
                unsafe {
                    atomic_copy::store(
                        init.as_ptr(),
                        seg.as_mut_ptr().add(DATA_IN_PAYLOAD),
                        init.len(),
                    )
                };
            }
            Ok(())
        };
        let seg = match or_open {
            None => seg_opts.create_with(name, size, build),
            Some(want) => match seg_opts.open_or_create_with(name, size, build) {
                Err(Error::KindMismatch { .. }) => {
                    return Err(Self::mismatch(opts, name, kind, or_open, geo.len))
                }
                // It exists with another payload size: another type or length. Name both.
                Err(e @ Error::InvalidArgument { .. }) => {
                    return Err(match Self::open(opts, name, kind, None) {
                        Ok(cell) => Error::CellMismatch {
                            name: name.to_owned(),
                            expected: describe(kind, want, Some(geo.len)),
                            found: cell.describe(),
                        },
                        Err(_) => e,
                    })
                }
                r => r,
            },
        }?;
        let cell = Self::wrap(seg, kind)?;
        if let Some(want) = or_open {
            cell.check_type(want, geo.len)?;
        }
        Ok(cell)
    }

    /// Open a cell of `kind`; with `want`, its element type must be that one.
    pub(crate) fn open(
        opts: &CellOptions,
        name: &str,
        kind: Kind,
        want: Option<&ElemType>,
    ) -> Result<RawCell> {
        let seg = match opts.seg.clone().kind(kind, CELL_FINGERPRINT).open(name) {
            Err(Error::KindMismatch { .. }) => {
                return Err(Self::mismatch(opts, name, kind, want, 0))
            }
            r => r?,
        };
        let cell = Self::wrap(seg, kind)?;
        if let Some(want) = want {
            cell.check_type(want, cell.geo.len)?;
        }
        Ok(cell)
    }

    /// The error for opening a cell of another kind: names both sides when the segment holds
    /// the other cell kind.
    fn mismatch(
        opts: &CellOptions,
        name: &str,
        kind: Kind,
        want: Option<&ElemType>,
        len: usize,
    ) -> Error {
        let other = if kind == Kind::VALUE {
            Kind::ARRAY
        } else {
            Kind::VALUE
        };
        let asked = match want {
            Some(w) => describe(kind, w, (kind == Kind::ARRAY && len > 0).then_some(len)),
            None => kind.with_article(),
        };
        let ro = Segment::options()
            .read_only()
            .open_timeout(opts.seg.timeout())
            .kind(other, CELL_FINGERPRINT);
        match ro.open(name) {
            Ok(seg) => match Self::geometry_of(&seg, other) {
                Ok(geo) => Error::CellMismatch {
                    name: name.to_owned(),
                    expected: asked,
                    found: describe(other, &geo.elem, Some(geo.len)),
                },
                Err(e) => e,
            },
            Err(Error::KindMismatch { found, .. }) => Error::CellMismatch {
                name: name.to_owned(),
                expected: asked,
                found: Kind::phrase(&found),
            },
            Err(e) => e,
        }
    }

    fn geometry_of<A: crate::segment::Access>(seg: &Segment<A>, kind: Kind) -> Result<Geometry> {
        Ok(Self::snapshot(seg, kind)?.0)
    }

    /// A private copy of the control block (Relaxed loads, then an Acquire fence: usable on
    /// read-only mappings), checked, with the geometry it records.
    pub(crate) fn snapshot<A: crate::segment::Access>(
        seg: &Segment<A>,
        kind: Kind,
    ) -> Result<(Geometry, Box<CellControl>)> {
        if seg.len() < DATA_IN_PAYLOAD {
            return Err(Error::corrupt(
                seg.name(),
                format!(
                    "payload is {} bytes, a cell needs {DATA_IN_PAYLOAD}",
                    seg.len()
                ),
            ));
        }
        let mut copy = Box::new(std::mem::MaybeUninit::<CellControl>::uninit());
        // Each field with a load of its own size: other threads change the 4-byte fields
        // (the wait queues' words, the lock's depth, thread and pid) with 4-byte atomics, and
        // an 8-byte load of their word would race them with another size (SPEC §10.4, "one
        // size per word"). Runs of (payload offset, end, access size), covering the block.
        const FIELDS: [(usize, usize, usize); 8] = [
            (0, 24, 4),    // magic, mode, typecode, elem_size, elem_align, data_offset
            (24, 40, 8),   // len, seq
            (40, 48, 4),   // changed: seq, sleepers
            (48, 128, 8),  // reserved, type_tag
            (128, 136, 4), // lock: magic, depth
            (136, 144, 8), // lock: owner
            (144, 160, 4), // lock: queue seq, sleepers, thread, pid
            (160, DATA_IN_PAYLOAD, 8),
        ];
        let src = seg.as_ptr();
        let dst = copy.as_mut_ptr().cast::<u8>();
        for (start, end, size) in FIELDS {
            for at in (start..end).step_by(size) {
                #[cfg(test)]
                atomic_copy::trace::record(src.wrapping_add(at), size);
                // SAFETY: `at + size <= DATA_IN_PAYLOAD`, inside the payload (checked above),
                // which is mapped while `seg` lives and 64-aligned, so `src + at` is aligned to
                // `size`; Relaxed loads of at most 8 bytes (permitted on read-only mappings);
                // the destination is this function's own buffer of DATA_IN_PAYLOAD bytes
                // (written unaligned-safe through `write_unaligned`).
                unsafe {
                    if size == 4 {
                        let v = AtomicU32::from_ptr(src.add(at).cast::<u32>().cast_mut())
                            .load(Ordering::Relaxed);
                        dst.add(at).cast::<u32>().write_unaligned(v);
                    } else {
                        let v = AtomicU64::from_ptr(src.add(at).cast::<u64>().cast_mut())
                            .load(Ordering::Relaxed);
                        dst.add(at).cast::<u64>().write_unaligned(v);
                    }
                }
            }
        }
        // Acquire fence: pairs with the Release stores of the processes that changed the
        // lock and the sequence, as Acquire loads on the mapping would.
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: every byte was written above; CellControl is atomics only, valid for any
        // bytes, with no destructor that matters (atomics).
        let ctl: Box<CellControl> =
            unsafe { Box::from_raw(Box::into_raw(copy).cast::<CellControl>()) };
        let geo =
            Geometry::read(&ctl, kind, seg.len()).map_err(|w| Error::corrupt(seg.name(), w))?;
        // SAFETY: the copy's lock field is 8-aligned (offset 128 of a boxed CellControl) and
        // lives as long as `ctl`; only its magic is read.
        unsafe { crate::sync::LockState::from_ptr(&ctl.lock) }
            .map_err(|w| Error::corrupt(seg.name(), format!("lock: {w}")))?;
        Ok((geo, ctl))
    }

    fn wrap(seg: Segment, kind: Kind) -> Result<RawCell> {
        let geo = Self::geometry_of(&seg, kind)?;
        let integer = geo.elem.typecode.is_some_and(|t| t.is_integer());
        let data_bytes = geo.bytes();
        Ok(RawCell {
            seg,
            kind,
            geo,
            integer,
            data_bytes,
        })
    }

    fn check_type(&self, want: &ElemType, len: usize) -> Result<()> {
        if self.geo.elem.accepts(want) {
            return Ok(());
        }
        Err(Error::CellMismatch {
            name: self.seg.name().to_owned(),
            expected: describe(self.kind, want, (self.kind == Kind::ARRAY).then_some(len)),
            found: self.describe(),
        })
    }

    /// `Value<q>` or `Array<d>[4]`.
    pub(crate) fn describe(&self) -> String {
        describe(self.kind, &self.geo.elem, Some(self.geo.len))
    }

    pub(crate) fn geo(&self) -> &Geometry {
        &self.geo
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    pub(crate) fn set_unlink_on_drop(&mut self, yes: bool) {
        self.seg.set_unlink_on_drop(yes);
    }

    #[inline]
    pub(crate) fn ctl(&self) -> &CellControl {
        // SAFETY: `wrap` checked that the payload holds the control block.
        unsafe { control(&self.seg) }
    }

    /// Start of element `i`'s bytes; `i <= len` (checked by callers).
    #[inline]
    fn elem_ptr(&self, i: usize) -> *mut u8 {
        debug_assert!(i <= self.geo.len);
        // SAFETY: DATA_IN_PAYLOAD + i * size <= DATA_IN_PAYLOAD + len * size <= payload length
        // (checked at open), so the pointer stays inside the mapping (or one past its data).
        unsafe {
            self.seg
                .as_mut_ptr()
                .add(DATA_IN_PAYLOAD + i * self.geo.elem.size)
        }
    }

    #[inline]
    fn need_mode(&self, what: &str, modes: &[CellMode]) -> Result<()> {
        if modes.contains(&self.geo.mode) {
            return Ok(());
        }
        Err(Error::invalid(
            self.seg.name(),
            format!(
                "{what} needs {}; {} is {}",
                Kind::phrase(&format!("{} cell", modes_text(modes))),
                self.describe(),
                self.geo.mode
            ),
        ))
    }

    /// Check that `first..first + count` lies inside the array.
    #[inline]
    pub(crate) fn check_range(&self, first: usize, count: usize) -> Result<()> {
        match first.checked_add(count) {
            Some(end) if end <= self.geo.len => Ok(()),
            _ => Err(self.range_error(first, count)),
        }
    }

    /// Check that `nbytes` bytes from element `first` lie inside the data: the hot-path form
    /// of [`check_range`](Self::check_range) (no division), against this handle's own
    /// validated geometry (`data_bytes = len × size` did not overflow at open), never against
    /// shared memory.
    #[inline(always)]
    fn check_bytes(&self, first: usize, nbytes: usize) -> Result<()> {
        // `first <= len` keeps `first * size <= data_bytes` (no overflow, no underflow).
        if first <= self.geo.len && nbytes <= self.data_bytes - first * self.geo.elem.size {
            return Ok(());
        }
        Err(self.range_error(first, nbytes.div_ceil(self.geo.elem.size)))
    }

    #[cold]
    #[inline(never)]
    fn range_error(&self, first: usize, count: usize) -> Error {
        Error::invalid(
            self.seg.name(),
            format!(
                "elements {first}..{} are out of range for {} (length {})",
                first.saturating_add(count),
                self.describe(),
                self.geo.len
            ),
        )
    }

    /// Take the cell's lock (the data lock in locked mode, the writer lock in seqlock mode).
    #[inline(always)]
    pub(crate) fn lock(&self, wait: Wait) -> Locked<'_> {
        let l = &self.ctl().lock;
        match wait {
            Wait::No => l.try_lock(),
            Wait::Until(None) => l.lock(),
            Wait::Until(Some(d)) => l.lock_deadline(d),
        }
    }

    /// The lock for a read-modify-write (`update`, `with_lock`). After a dead holder
    /// (`OwnerDied`): locked mode reports it (`Error::Lock`, as `Lock` with `?`); seqlock
    /// mode repairs the lock and goes on when the data is whole (`seq` even). A seqlock
    /// cell whose writer died mid-write (`seq` odd: left so, whoever repaired the lock) is
    /// `Error::Corrupt` for every read-modify-write, this one and each retry, until a
    /// whole-value write recovers the data (SPEC §10.5).
    #[inline]
    pub(crate) fn lock_for_rmw(&self, wait: Wait) -> Result<LockGuard<'_>> {
        let g = match self.lock(wait) {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) if self.geo.mode == CellMode::Seqlock => {
                g.make_consistent()?;
                g
            }
            Err(LockError::OwnerDied(g)) => return Err(self.holder_died(g)),
            Err(e) => return Err(e.into()),
        };
        self.check_whole()?;
        Ok(g)
    }

    /// A locked-mode cell's dead holder, found by a call that cannot repair the data (a read,
    /// a partial write, a read-modify-write): the lock goes back to that holder unrepaired
    /// (the next acquirer gets `OwnerDied` as we did; dropping the guard would make it not
    /// recoverable for everyone), and the call fails with [`Error::HolderDied`].
    #[cold]
    #[inline(never)]
    fn holder_died(&self, g: LockGuard<'_>) -> Error {
        let pid = g.previous_owner().map_or(0, |o| o.pid);
        g.release_unrepaired();
        Error::HolderDied {
            name: self.seg.name().to_owned(),
            pid,
        }
    }

    /// Under the writer lock: `Error::Corrupt` when a seqlock cell's writer died mid-write
    /// (`seq` odd, which only a writer holding the lock makes it, and which a whole-value
    /// write ends); `Ok` otherwise and in the other modes.
    #[inline(always)]
    pub(crate) fn check_whole(&self) -> Result<()> {
        if self.geo.mode != CellMode::Seqlock || self.sequence() & 1 == 0 {
            return Ok(());
        }
        Err(self.torn_error())
    }

    #[cold]
    #[inline(never)]
    fn torn_error(&self) -> Error {
        Error::corrupt(
            self.seg.name(),
            format!(
                "a writer of {} died mid-write; a write of the whole value recovers it",
                self.describe()
            ),
        )
    }

    /// Read-modify-write all the data under the lock (`update`, `with_lock`): `buf` (the
    /// data's size) gets the data, `f` changes it, and it is written back (one seqlock write in
    /// seqlock mode). See `lock_for_rmw` for a dead previous holder.
    #[inline]
    pub(crate) fn rmw<R, F: FnOnce(&mut [u8]) -> R>(
        &self,
        buf: &mut [u8],
        wait: Wait,
        f: F,
    ) -> Result<R> {
        self.check_bytes(0, buf.len())?;
        let run = |buf: &mut [u8], f: F| {
            self.read_locked(0, buf);
            let r = f(buf);
            self.write_locked(0, buf);
            r
        };
        // The lock free at once (the common case): no guard (`run_if_free`). A dead
        // writer's half write (`check_whole`) is refused on this path as on the other.
        let f = match self.ctl().lock.run_if_free(|| {
            self.check_whole()?;
            Ok(run(buf, f))
        }) {
            Ok(r) => return r,
            Err(again) => again,
        };
        let _g = self.lock_for_rmw(wait)?;
        f()
    }

    /// Copy elements `first..first + out.len() / size` out, consistently: under the lock
    /// (locked), per element (atomic), or as one seqlock snapshot. Returns the sequence the
    /// copy is consistent with (seqlock mode; 0 otherwise).
    #[inline(always)]
    pub(crate) fn load(&self, first: usize, out: &mut [u8], wait: Wait) -> Result<u64> {
        self.check_bytes(first, out.len())?;
        match self.geo.mode {
            CellMode::Locked => {
                // SAFETY: the range is inside the data (checked); shared bytes are accessed
                // atomically by every shmkit process; `out` is private.
                let copy = || unsafe { self.copy_out(first, out) };
                // The lock free at once (the common case): no guard (`run_if_free`).
                let mut copy = match self.ctl().lock.run_if_free(copy) {
                    Ok(()) => return Ok(0),
                    Err(again) => again,
                };
                let _g = match self.lock(wait) {
                    Ok(g) => g,
                    Err(LockError::OwnerDied(g)) => return Err(self.holder_died(g)),
                    Err(e) => return Err(e.into()),
                };
                copy();
                Ok(0)
            }
            CellMode::Atomic => {
                self.read_locked(first, out);
                Ok(0)
            }
            CellMode::Seqlock => self.seq_load(first, out, wait),
        }
    }

    /// # Safety
    ///
    /// `first..first + out.len() / size` lies inside the data.
    #[inline]
    unsafe fn copy_out(&self, first: usize, out: &mut [u8]) {
        // Locked and seqlock modes (atomic mode accesses elements with their own atomics).
        // Both with the seqlock copies' accesses, one size per data word: seqlock readers
        // copy while a writer copies, and a locked cell's inspection reads without the lock
        // (SPEC §10.4, §10.6).
        debug_assert!(self.geo.mode != CellMode::Atomic);
        let at = first * self.geo.elem.size;
        // SAFETY: per the contract; the data (`elem_ptr(0)`, 8-aligned: 64-aligned payload
        // plus DATA_IN_PAYLOAD) is `bytes()` long inside the mapping; `out` is private.
        unsafe { atomic_copy::load_within(self.elem_ptr(0), self.geo.bytes(), at, out) }
    }

    /// # Safety
    ///
    /// `first..first + data.len() / size` lies inside the data.
    #[inline]
    unsafe fn copy_in(&self, first: usize, data: &[u8]) {
        // As `copy_out`: locked and seqlock modes, one size per data word.
        debug_assert!(self.geo.mode != CellMode::Atomic);
        let at = first * self.geo.elem.size;
        // SAFETY: as in `copy_out`; the mapping is writable; `data` is private; both modes
        // write under the lock (the data lock, or the seqlock's writer lock: every caller
        // holds it), which `store_within`'s merge of a partial word needs.
        unsafe {
            atomic_copy::store_within(
                self.elem_ptr(0),
                self.geo.bytes(),
                at,
                data,
                atomic_copy::Merge::Exclusive,
            )
        }
    }

    /// A seqlock read of elements `first..` (`seqlock::read`); the range must have been
    /// checked.
    fn seq_load(&self, first: usize, out: &mut [u8], wait: Wait) -> Result<u64> {
        let ctl = self.ctl();
        // SAFETY: range checked by the caller.
        seqlock::read(
            &ctl.seq,
            &ctl.changed,
            || unsafe { self.copy_out(first, out) },
            wait,
        )
    }

    /// Store elements `first..`, consistently. On `OwnerDied` a write that replaces all the
    /// data repairs the cell and succeeds; a partial write reports `OwnerDied` (the lock
    /// then is not recoverable unless the caller uses the lock API).
    #[inline(always)]
    pub(crate) fn store(&self, first: usize, data: &[u8], wait: Wait) -> Result<()> {
        self.check_bytes(first, data.len())?;
        match self.geo.mode {
            CellMode::Atomic => {
                self.write_locked(first, data);
                Ok(())
            }
            CellMode::Locked | CellMode::Seqlock => {
                // The lock free at once (the common case): no guard (`run_if_free`), and the
                // locked mode's copy without `write_locked`'s dispatch.
                let done = if self.geo.mode == CellMode::Locked {
                    // SAFETY: range checked above.
                    self.ctl()
                        .lock
                        .run_if_free(|| unsafe { self.copy_in(first, data) })
                        .is_ok()
                } else {
                    self.ctl()
                        .lock
                        .run_if_free(|| self.write_locked(first, data))
                        .is_ok()
                };
                if done {
                    return Ok(());
                }
                let whole = first == 0 && data.len() == self.geo.bytes();
                let mut g = match self.lock(wait) {
                    Ok(g) => g,
                    Err(LockError::OwnerDied(g)) if whole || self.geo.mode == CellMode::Seqlock => {
                        g
                    }
                    // A partial write cannot repair the rest of the data.
                    Err(LockError::OwnerDied(g)) => return Err(self.holder_died(g)),
                    Err(e) => return Err(e.into()),
                };
                self.write_locked(first, data);
                if g.needs_repair() {
                    g.make_consistent()?;
                }
                Ok(())
            }
        }
    }

    /// Store under the held lock: plainly (locked), as a seqlock write (seqlock), or as
    /// element-wise atomic stores (atomic mode, where the lock protects nothing). The range
    /// `first..first + data.len() / size` must have been checked.
    #[inline(always)]
    pub(crate) fn write_locked(&self, first: usize, data: &[u8]) {
        let size = self.geo.elem.size;
        match self.geo.mode {
            CellMode::Seqlock => {
                let ctl = self.ctl();
                // SAFETY: range checked by the callers.
                seqlock::write_and_wake(&ctl.seq, &ctl.changed, || unsafe {
                    self.copy_in(first, data)
                });
            }
            CellMode::Atomic => {
                for (k, chunk) in data.chunks_exact(size).enumerate() {
                    let mut w = [0u8; 8];
                    w[..size].copy_from_slice(chunk);
                    let _ = self.atomic_at(first + k, Op::Store(u64::from_le_bytes(w)));
                }
            }
            // SAFETY: range checked by the callers.
            CellMode::Locked => unsafe { self.copy_in(first, data) },
        }
    }

    /// Load under the held lock (the holder is the only writer), or element-wise atomic
    /// loads in atomic mode. The range must have been checked.
    #[inline(always)]
    pub(crate) fn read_locked(&self, first: usize, out: &mut [u8]) {
        let size = self.geo.elem.size;
        match self.geo.mode {
            CellMode::Atomic => {
                for (k, chunk) in out.chunks_exact_mut(size).enumerate() {
                    let v = self.atomic_at(first + k, Op::Load).unwrap_or_else(|v| v);
                    chunk.copy_from_slice(&v.to_le_bytes()[..size]);
                }
            }
            // SAFETY: range checked by the callers.
            _ => unsafe { self.copy_out(first, out) },
        }
    }

    /// An element-wise atomic operation (atomic mode).
    #[inline(always)]
    pub(crate) fn atomic(&self, i: usize, op: Op) -> Result<std::result::Result<u64, u64>> {
        // The fast path first: one comparison each (the hot loop of a counter).
        if self.geo.mode == CellMode::Atomic
            && i < self.geo.len
            && (self.integer || !matches!(op, Op::Add(_) | Op::Sub(_)))
        {
            return Ok(self.atomic_at(i, op));
        }
        Err(self.atomic_refused(i))
    }

    /// Why [`atomic`](Self::atomic) refused (out of line: the counter loop inlines only the
    /// fast path).
    #[cold]
    #[inline(never)]
    fn atomic_refused(&self, i: usize) -> Error {
        if let Err(e) = self
            .need_mode("an atomic operation", &[CellMode::Atomic])
            .and_then(|()| self.check_range(i, 1))
        {
            return e;
        }
        // Atomic mode, in range: the only refusal left is an add on a non-integer code.
        Error::invalid(
            self.seg.name(),
            format!(
                "fetch_add/fetch_sub need an integer typecode; {} is not",
                self.describe()
            ),
        )
    }

    /// `atomic` without the checks; `i < len`, atomic mode (so the size is 1, 2, 4 or 8).
    #[inline(always)]
    fn atomic_at(&self, i: usize, op: Op) -> std::result::Result<u64, u64> {
        let p = self.elem_ptr(i);
        // SeqCst for every operation: atomic cells are for counters and flags shared with
        // processes we know nothing about; SeqCst is what CPython users expect of a "lock"
        // and costs nothing extra for RMWs on x86.
        const O: Ordering = Ordering::SeqCst;
        macro_rules! run {
            ($a:ty, $t:ty) => {{
                // SAFETY: `p` is inside the data, aligned to the element size (the data is
                // 64-aligned and elements are size-aligned), and every access to it is an
                // atomic of this size (atomic mode).
                let a = unsafe { <$a>::from_ptr(p.cast::<$t>()) };
                match op {
                    Op::Load => Ok(a.load(O) as u64),
                    Op::Store(v) => {
                        a.store(v as $t, O);
                        Ok(v)
                    }
                    Op::Add(v) => Ok(a.fetch_add(v as $t, O) as u64),
                    Op::Sub(v) => Ok(a.fetch_sub(v as $t, O) as u64),
                    Op::Swap(v) => Ok(a.swap(v as $t, O) as u64),
                    Op::Cas(c, n) => a
                        .compare_exchange(c as $t, n as $t, O, O)
                        .map(|x| x as u64)
                        .map_err(|x| x as u64),
                }
            }};
        }
        match self.geo.elem.size {
            1 => run!(AtomicU8, u8),
            2 => run!(AtomicU16, u16),
            4 => run!(AtomicU32, u32),
            _ => run!(AtomicU64, u64),
        }
    }

    /// The seqlock sequence now (even: no write under way).
    pub(crate) fn sequence(&self) -> u64 {
        seqlock::current(&self.ctl().seq)
    }

    /// Wait until the sequence is even and not `last`, then load all of `out` (from element
    /// `first`) consistently; returns the new sequence (`seqlock::wait_changed`).
    pub(crate) fn wait_changed(
        &self,
        last: u64,
        first: usize,
        out: &mut [u8],
        wait: Wait,
    ) -> Result<u64> {
        self.need_mode("wait_changed", &[CellMode::Seqlock])?;
        self.check_bytes(first, out.len())?;
        let ctl = self.ctl();
        // SAFETY: range checked above.
        let copy = || unsafe { self.copy_out(first, out) };
        seqlock::wait_changed(&ctl.seq, &ctl.changed, last, copy, wait)
    }
}

fn modes_text(modes: &[CellMode]) -> String {
    modes
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The control block of a cell segment.
///
/// # Safety
///
/// The payload is at least `DATA_IN_PAYLOAD` bytes (the header keeps it 64-byte aligned).
unsafe fn control(seg: &Segment) -> &CellControl {
    // SAFETY: per the contract the block is in bounds and aligned; it is atomics only, so a
    // shared reference over memory others write is sound; it lives as long as `seg`.
    unsafe { &*seg.as_ptr().cast::<CellControl>() }
}

#[cfg(test)]
mod tests {
    use crate::cell::{Array, CellMode};
    use crate::os::atomic_copy::trace;

    /// Audit finding: seqlock readers copy while a writer copies (that is the protocol), so
    /// every racing access to a data word must have the same size (Rust's model, C++'s, makes
    /// racing atomic accesses of different sizes to overlapping bytes undefined unless both
    /// are loads; `os/atomic_copy.rs`). The word-and-byte copies split a range by its own
    /// ends: reading element 3 of an `Array<u8>` was one byte load inside word 0, while a
    /// write of the whole array stored word 0 whole. Every seqlock copy now accesses each
    /// word that lies wholly inside the data as one 8-byte access, and the bytes of a final
    /// partial word one at a time.
    #[test]
    fn seqlock_copies_access_each_word_with_one_size() {
        let name = format!("audit-seqlock-words-{}", std::process::id());
        let a = Array::<u8>::options()
            .cell_mode(CellMode::Seqlock)
            .unlink_on_drop(true)
            .create(&name, 21) // two whole words and a 5-byte partial one
            .unwrap();
        let all: Vec<u8> = (1..=21).collect();
        trace::start();
        a.write(0, &all).unwrap();
        let mut log = trace::stop();
        // The whole write's lowest address is element 0's.
        let data = log.iter().map(|&(at, _)| at).min().unwrap();
        trace::start();
        assert_eq!(a.get(3).unwrap(), 4);
        assert_eq!(a.read(5..19).unwrap(), all[5..19].to_vec());
        a.set(2, 99).unwrap();
        a.write(6, &all[..12]).unwrap();
        assert_eq!(a.read(17..21).unwrap(), [12, 19, 20, 21]);
        a.write(18, &[7, 7]).unwrap();
        log.extend(trace::stop());
        let mut sizes =
            std::collections::BTreeMap::<usize, std::collections::BTreeSet<usize>>::new();
        for (at, size) in log {
            if (data..data + 21).contains(&at) {
                sizes.entry((at - data) & !7).or_default().insert(size);
            }
        }
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        for (word, s) in &sizes {
            assert_eq!(s.len(), 1, "data word at {word} accessed with sizes {s:?}");
        }
        assert_eq!(a.read(0..21).unwrap()[..3], [1, 2, 99]);
    }

    /// Review finding (pre-existing, not from the seqlock change): opening a cell copies its
    /// control block out (`geometry_of`) with `atomic_copy::load`, i.e. one 8-byte load per
    /// word, while other threads of the process change 4-byte fields of those words with
    /// 4-byte atomics: the `changed` wait queue (`seq`, `sleepers`), and the lock's `depth`,
    /// wait queue, `thread` and `pid`. A racing load and store (or RMW) of different sizes on
    /// the same bytes is the mixed-size race SPEC §10.4 and `atomic_copy`'s docs rule out
    /// (SPEC §6.9 and §10.6 admit it as a known gap for inspection only; `open` is on every
    /// Value/Array open). The test records the copy's accesses and fails if a word holding
    /// such 4-byte fields is loaded whole.
    #[test]
    fn cell_open_does_not_load_words_of_four_byte_fields_whole() {
        use crate::cell::AnyArray;
        let name = format!("review6-open-words-{}", std::process::id());
        let a = Array::<u8>::options()
            .cell_mode(CellMode::Seqlock)
            .unlink_on_drop(true)
            .create(&name, 8)
            .unwrap();
        trace::start();
        let b = AnyArray::open(&name);
        let log = trace::stop();
        let b = b.unwrap();
        let payload = b.data_ptr() as usize - super::DATA_IN_PAYLOAD;
        // Payload offsets of the words whose 4-byte fields change after publication:
        // `changed` (40), the lock's magic/depth (128), its queue (144), thread/pid (152).
        let four_byte_words = [40usize, 128, 144, 152];
        let whole: Vec<usize> = log
            .iter()
            .filter(|&&(at, size)| size == 8 && (payload..payload + 192).contains(&at))
            .map(|&(at, _)| at - payload)
            .filter(|off| four_byte_words.contains(off))
            .collect();
        let fields: std::collections::BTreeSet<(usize, usize)> = log
            .iter()
            .filter(|&&(at, _)| (payload..payload + 192).contains(&at))
            .map(|&(at, size)| (at - payload, size))
            .collect();
        drop((a, b));
        assert!(
            whole.is_empty(),
            "open loaded words of 4-byte atomics whole (payload offsets {whole:?})"
        );
        for off in [40, 44, 128, 132, 144, 148, 152, 156] {
            assert!(
                fields.contains(&(off, 4)),
                "field at {off} not loaded with 4 bytes"
            );
        }
    }

    /// Review finding: a locked cell's inspection (`cell::inspect`, `shmkit info`) reads the
    /// data without the lock, so it races the lock holder's writes; both split a copy by its
    /// own ends (`atomic_copy`), so inspecting an `Array<u8>` (words 0 and 8 loaded whole)
    /// while element 3 is set (one byte store into word 0) is a mixed-size race, the one
    /// the seqlock copies were fixed for (SPEC §10.4). Locked-mode copies now access the data
    /// as the seqlock ones do: each whole word whole, the final partial word by bytes.
    #[test]
    fn locked_cell_writes_and_inspection_access_each_word_with_one_size() {
        let name = format!("review6-locked-words-{}", std::process::id());
        let a = Array::<u8>::options()
            .cell_mode(CellMode::Locked)
            .unlink_on_drop(true)
            .create(&name, 21)
            .unwrap();
        let all: Vec<u8> = (1..=21).collect();
        trace::start();
        a.write(0, &all).unwrap();
        let mut log = trace::stop();
        let data = log.iter().map(|&(at, _)| at).min().unwrap();
        trace::start();
        a.set(3, 9).unwrap();
        a.write(6, &all[..12]).unwrap();
        assert_eq!(a.read(17..21).unwrap(), [12, 19, 20, 21]);
        let info = crate::cell::inspect(&name).unwrap().unwrap();
        log.extend(trace::stop());
        assert_eq!(info.values.len(), 16);
        let mut sizes =
            std::collections::BTreeMap::<usize, std::collections::BTreeSet<usize>>::new();
        for (at, size) in log {
            if (data..data + 21).contains(&at) {
                sizes.entry((at - data) & !7).or_default().insert(size);
            }
        }
        for (word, s) in &sizes {
            assert_eq!(s.len(), 1, "data word at {word} accessed with sizes {s:?}");
        }
        assert_eq!(a.read(0..6).unwrap(), [1, 2, 3, 9, 5, 6]);
    }
}
