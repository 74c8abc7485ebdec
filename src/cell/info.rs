//! What `shmkit info NAME` shows for a cell, and reading a cell's elements through a read-only
//! mapping ([`ReadOnlyCell`], [`read_only`]): nothing here writes to the object.

use std::fmt;
use std::time::{Duration, Instant};

use super::layout::{CellControl, Geometry, DATA_IN_PAYLOAD, DATA_OFFSET};
use super::raw::RawCell;
use super::CellMode;
use crate::error::{Error, Result};
use crate::os::{atomic_copy, deadline};
use crate::segment::{probe, Kind, ReadOnly};
use crate::sync::LockInfo;
use crate::Segment;

/// How many elements [`inspect`] reads and shows (the first ones).
pub const SHOWN_ELEMENTS: usize = 16;

/// A cell's recorded type, geometry and lock state, as `shmkit info` shows it (a snapshot).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CellInfo {
    /// `Value<q>`, `Array<d>[4]`.
    pub cell: String,
    /// The typecode character, or `None` for a user type.
    pub typecode: Option<char>,
    /// The recorded element type name.
    pub type_name: String,
    /// Element size in bytes.
    pub elem_size: usize,
    /// Element alignment in bytes.
    pub elem_align: usize,
    /// Number of elements (1 for a value).
    pub len: usize,
    /// The mode.
    pub mode: CellMode,
    /// Where the data starts, from the start of the object (numpy's `offset=`).
    pub data_offset: usize,
    /// Data size in bytes.
    pub data_size: usize,
    /// The seqlock sequence (odd: a write under way, or a writer died mid-write).
    pub sequence: u64,
    /// The lock (locked mode: the data lock; seqlock: the writer lock; unused when atomic).
    pub lock: LockInfo,
    /// The first [`SHOWN_ELEMENTS`] elements (or all), as `shmkit value get` prints them
    /// (a user type in hex); empty when they could not be read consistently (see
    /// `values_read`).
    pub values: Vec<String>,
    /// How `values` were read: `atomic loads`, `seqlock snapshot`, `read without the lock`
    /// (locked mode: taking the lock would write; a holder may be mid-update), or why none
    /// were.
    pub values_read: String,
}

impl fmt::Display for CellInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {} mode, lock {}", self.cell, self.mode, self.lock)?;
        if self.mode == CellMode::Seqlock && self.sequence & 1 == 1 {
            write!(
                f,
                ", write under way (or its writer died: the next write recovers it)"
            )?;
        }
        Ok(())
    }
}

/// Describe the cell `name` read-only (`None` if it is not a cell); it opens the object
/// `O_RDONLY` and changes nothing.
pub fn inspect(name: &str) -> Result<Option<CellInfo>> {
    let Some(ReadOnlyCell {
        seg, geo, mut info, ..
    }) = ReadOnlyCell::open(name)?
    else {
        return Ok(None);
    };
    let n = geo.len.min(SHOWN_ELEMENTS);
    let mut data = vec![0u8; n * geo.elem.size];
    // A seqlock write under way is waited for only briefly: `info` is a snapshot.
    let until = deadline::after(Some(Duration::from_millis(20)));
    info.values_read = match read_range(&seg, &geo, 0, &mut data, until) {
        Some(how) => {
            info.values = data
                .chunks_exact(geo.elem.size)
                .map(|e| format_elem(&geo, e))
                .collect();
            how.into()
        }
        None => "not read: a seqlock write was under way (or its writer died mid-write)".into(),
    };
    Ok(Some(info))
}

/// Read elements `first..first + count` of the cell `name` through a read-only mapping:
/// [`ReadOnlyCell::open`], then [`ReadOnlyCell::read`]. Returns the cell's description
/// (without `values`) and the elements' bytes.
///
/// # Errors
///
/// As [`ReadOnlyCell::open`] and [`ReadOnlyCell::read`], and [`Error::InvalidArgument`] if
/// `name` holds no cell.
///
/// ```
/// use shmkit::cell::{read_only, CellMode, Value};
/// # let name = format!("doc-cell-ro-{}", std::process::id());
/// let v = Value::<u32>::options().cell_mode(CellMode::Seqlock).unlink_on_drop(true).create(&name, 7)?;
/// let (info, bytes) = read_only(&name, 0, 1, std::time::Duration::from_secs(1))?;
/// assert_eq!((info.cell.as_str(), bytes), ("Value<I>", 7u32.to_le_bytes().to_vec()));
/// # drop(v);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn read_only(
    name: &str,
    first: usize,
    count: usize,
    timeout: Duration,
) -> Result<(CellInfo, Vec<u8>)> {
    let cell =
        ReadOnlyCell::open(name)?.ok_or_else(|| Error::invalid(name, "not a shmkit cell"))?;
    let data = cell.read(first, count, timeout)?;
    Ok((cell.info, data))
}

/// A cell mapped read-only (`O_RDONLY`, `PROT_READ`), for a process that may only read the
/// object: its description, and reads of its elements that write nothing to it. One mapping
/// serves both, so the description and the reads are of the same object even if the name is
/// removed and reused meanwhile.
///
/// ```
/// use shmkit::cell::{Array, CellMode, ReadOnlyCell};
/// # let name = format!("doc-cell-rocell-{}", std::process::id());
/// let a = Array::<i32>::options().cell_mode(CellMode::Atomic).unlink_on_drop(true).create(&name, 4)?;
/// a.store(3, -2)?;
/// let ro = ReadOnlyCell::open(&name)?.expect("a cell");
/// assert_eq!((ro.info().len, ro.info().mode), (4, CellMode::Atomic));
/// let last = ro.read(ro.info().len - 1, 1, std::time::Duration::from_secs(1))?;
/// assert_eq!(last, (-2i32).to_le_bytes());
/// # drop(a);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ReadOnlyCell {
    seg: Segment<ReadOnly>,
    kind: Kind,
    geo: Geometry,
    info: CellInfo,
}

impl ReadOnlyCell {
    /// Map the cell `name` read-only and validate its control block (a private copy); `None`
    /// if `name` holds no cell.
    ///
    /// # Errors
    ///
    /// As [`Segment::open`] read-only (`NotFound`, `PermissionDenied`, …), and
    /// [`Error::Corrupt`] (or another validation error) if the control block is invalid.
    pub fn open(name: &str) -> Result<Option<ReadOnlyCell>> {
        let Some(header) = probe(name)?.header else {
            return Ok(None);
        };
        let kind = header.kind;
        if kind != Kind::VALUE && kind != Kind::ARRAY {
            return Ok(None);
        }
        let seg = Segment::options()
            .read_only()
            .kind(kind, super::layout::CELL_FINGERPRINT)
            .open(name)?;
        let (geo, ctl) = RawCell::snapshot(&seg, kind)?;
        let info = info_of(kind, &geo, &ctl);
        Ok(Some(ReadOnlyCell {
            seg,
            kind,
            geo,
            info,
        }))
    }

    /// The cell's kind: [`Kind::VALUE`] or [`Kind::ARRAY`].
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The cell's type, geometry, mode and lock as they were at [`open`](Self::open)
    /// (`values` empty: [`inspect`] reads those).
    pub fn info(&self) -> &CellInfo {
        &self.info
    }

    /// Elements `first..first + count` as little-endian bytes: in atomic mode element by
    /// element (each element atomic), in seqlock mode as one consistent snapshot, waiting up
    /// to `timeout` (polling: a read-only reader cannot announce itself to writers) while a
    /// write is under way.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a locked-mode cell (its reads take its lock, which
    /// writes: open it read-write) or a range past the end; [`Error::Timeout`] if a seqlock
    /// write (or a writer that died mid-write) kept the data inconsistent until `timeout`.
    pub fn read(&self, first: usize, count: usize, timeout: Duration) -> Result<Vec<u8>> {
        let (name, geo, info) = (self.seg.name(), &self.geo, &self.info);
        if geo.mode == CellMode::Locked {
            return Err(Error::invalid(
                name,
                format!(
                    "{} is in locked mode: a read takes its lock, which needs write permission \
                     (`shmkit info` shows its elements read without the lock)",
                    info.cell
                ),
            ));
        }
        match first.checked_add(count) {
            Some(end) if end <= geo.len => {}
            _ => {
                return Err(Error::invalid(
                    name,
                    format!(
                        "elements {first}..{} are out of range: {} holds {}",
                        first.saturating_add(count),
                        info.cell,
                        geo.len
                    ),
                ))
            }
        }
        // Fallible: `count` may follow the array's length (up to 2^40 bytes, sparse).
        let mut data = crate::error::try_zeroed::<u8>(name, "read", count * geo.elem.size)?;
        read_range(
            &self.seg,
            geo,
            first,
            &mut data,
            deadline::after(Some(timeout)),
        )
        .ok_or(Error::Timeout)?;
        Ok(data)
    }
}

impl fmt::Debug for ReadOnlyCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadOnlyCell")
            .field("name", &self.seg.name())
            .field("cell", &self.info.cell)
            .field("mode", &self.info.mode)
            .finish()
    }
}

/// Copy the elements from `first` into `out` (a whole number of elements, inside the data:
/// checked by the callers against the validated geometry), by the cell's mode, without
/// writing to the cell (locked mode: without the lock); how it read them, for `values_read`.
/// `None`: a seqlock write was under way (or overlapped) on every attempt until `until`.
fn read_range(
    seg: &Segment<ReadOnly>,
    geo: &Geometry,
    first: usize,
    out: &mut [u8],
    until: Option<Instant>,
) -> Option<&'static str> {
    let size = geo.elem.size;
    assert!(
        out.len() % size == 0 && first + out.len() / size <= geo.len,
        "read_range: elements out of the cell"
    );
    // SAFETY: the geometry was validated against the payload length (`Geometry::read`:
    // DATA_IN_PAYLOAD + len * size <= payload), and `first + out.len() / size <= len`
    // (asserted), so the range lies inside the mapping, which `seg` keeps alive.
    let src = unsafe { seg.as_ptr().add(DATA_IN_PAYLOAD + first * size) };
    match geo.mode {
        CellMode::Atomic => {
            // Element by element, each with one load of its own size, as every access to an
            // atomic cell's element is (`RawCell::atomic_at`). A copy in words and bytes
            // (`atomic_copy::load`) would read an element of a partly covered word byte by
            // byte (a `Value<i>`: four byte loads, which can mix two stores) and race the
            // writers' atomics with loads of another size (outside Rust's memory model).
            for (k, e) in out.chunks_exact_mut(size).enumerate() {
                // SAFETY: element `first + k` lies inside the mapping (above), aligned to its
                // size (the data is 64-aligned, elements are size-aligned), in atomic mode
                // (size 1, 2, 4 or 8: `Geometry::read`); loads only.
                let v = unsafe { load_element(src.add(k * size), size) };
                e.copy_from_slice(&v.to_le_bytes()[..size]);
            }
            Some("atomic loads")
        }
        CellMode::Locked => {
            // Without the lock, so racing the holder's writes: with their accesses, one size
            // per data word (`atomic_copy::load_within`, as locked-mode copies make them).
            // SAFETY: as for the seqlock copy below.
            unsafe {
                crate::os::atomic_copy::load_within(
                    seg.as_ptr().add(DATA_IN_PAYLOAD),
                    geo.bytes(),
                    first * size,
                    out,
                )
            };
            Some("read without the lock (taking it would write; a holder may be mid-update)")
        }
        CellMode::Seqlock => {
            // SAFETY: the sequence word lies in the control block at the start of the payload
            // (checked by `snapshot`), 8-aligned (the payload is; `seq` is at offset 32);
            // only loads go through the reference, which `seg` outlives.
            let seq = unsafe {
                crate::loom::AtomicU64::from_ptr(
                    seg.as_ptr()
                        .add(std::mem::offset_of!(CellControl, seq))
                        .cast::<u64>()
                        .cast_mut(),
                )
            };
            // The seqlock copy's accesses (one size per data word, `atomic_copy::load_within`), as every
            // seqlock reader and writer makes them.
            // SAFETY: the data starts at DATA_IN_PAYLOAD (8-aligned) and is `geo.bytes()` long
            // inside the mapping (above), `first * size + out.len() <= geo.bytes()`
            // (asserted); loads only; `out` is private.
            let copy = |out: &mut [u8]| unsafe {
                crate::os::atomic_copy::load_within(
                    seg.as_ptr().add(DATA_IN_PAYLOAD),
                    geo.bytes(),
                    first * size,
                    out,
                )
            };
            let mut polls = 0u32;
            loop {
                if super::seqlock::try_read(seq, || copy(out)).is_some() {
                    return Some("seqlock snapshot");
                }
                if deadline::passed(until) {
                    return None;
                }
                // Read-only: no sleeper count to announce, so poll (a spin, then short naps).
                polls += 1;
                if polls < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }
}

/// One atomic-mode element as the cell's SeqCst loads read it (`RawCell::atomic_at`), the way
/// a read-only mapping permits: a `Relaxed` load of the element's size, then `fence(SeqCst)`
/// ([`atomic_copy::load_read_only`]). Pairs, as their loads do, with the writers' SeqCst
/// stores and RMWs of the element.
///
/// # Safety
///
/// `p` is valid for reads of `size` bytes (1, 2, 4 or 8) for the call, aligned to `size`, and
/// every access to those bytes is an atomic of that size.
unsafe fn load_element(p: *const u8, size: usize) -> u64 {
    use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
    let relaxed = || {
        // SAFETY: per the contract: an atomic of the element's size at its alignment; only
        // a Relaxed load of at most 8 bytes goes through it (permitted on read-only memory).
        unsafe {
            match size {
                1 => u64::from(AtomicU8::from_ptr(p.cast_mut()).load(Ordering::Relaxed)),
                2 => u64::from(
                    AtomicU16::from_ptr(p.cast::<u16>().cast_mut()).load(Ordering::Relaxed),
                ),
                4 => u64::from(
                    AtomicU32::from_ptr(p.cast::<u32>().cast_mut()).load(Ordering::Relaxed),
                ),
                _ => AtomicU64::from_ptr(p.cast::<u64>().cast_mut()).load(Ordering::Relaxed),
            }
        }
    };
    atomic_copy::load_read_only(Ordering::SeqCst, relaxed)
}

/// One element as `shmkit value get` prints it: by its typecode, or in hex (a user type).
fn format_elem(geo: &Geometry, e: &[u8]) -> String {
    match geo.elem.typecode {
        Some(t) => t.format(e),
        None => e.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn info_of(kind: Kind, geo: &Geometry, ctl: &CellControl) -> CellInfo {
    use crate::loom::Ordering;
    CellInfo {
        cell: super::layout::describe(kind, &geo.elem, Some(geo.len)),
        typecode: geo.elem.typecode.map(|t| t.as_char()),
        type_name: geo.elem.name.clone(),
        elem_size: geo.elem.size,
        elem_align: geo.elem.align,
        len: geo.len,
        mode: geo.mode,
        data_offset: DATA_OFFSET,
        data_size: geo.bytes(),
        // Relaxed: a snapshot for display, from a private copy.
        sequence: ctl.seq.load(Ordering::Relaxed),
        lock: crate::sync::lock_info(&ctl.lock.core),
        values: Vec::new(),
        values_read: String::new(),
    }
}

const _: () = assert!(DATA_OFFSET == crate::segment::HEADER_SIZE + DATA_IN_PAYLOAD);
