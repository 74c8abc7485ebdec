//! What `shmkit info NAME` shows for a cell: a read-only look at its control block.

use std::fmt;

use super::layout::{CellControl, Geometry, DATA_IN_PAYLOAD, DATA_OFFSET};
use super::raw::RawCell;
use super::CellMode;
use crate::error::Result;
use crate::segment::{probe, Kind};
use crate::sync::LockInfo;
use crate::Segment;

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
    Ok(Some(info_of(kind, &geo, &ctl)))
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
    }
}

const _: () = assert!(DATA_OFFSET == crate::segment::HEADER_SIZE + DATA_IN_PAYLOAD);
