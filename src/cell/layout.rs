//! The cell's control block and data placement (`SPEC.md` §10.1): what is recorded in the
//! payload of a segment of kind [`Kind::VALUE`] or [`Kind::ARRAY`], how it is checked at open,
//! and the private, validated copy of it ([`Geometry`]) that every handle works from.

use std::fmt;

use super::typecode::Typecode;
use super::CellMode;
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::queue::shm_type::TypeTag;
use crate::queue::MAX_TYPE_NAME;
use crate::segment::{fingerprint, Kind, HEADER_SIZE};
use crate::sync::{LockState, WaitQueue};

/// `magic` of an initialised cell: `"CEL1"` little-endian.
pub(crate) const CELL_MAGIC: u32 = u32::from_le_bytes(*b"CEL1");

/// Where the data starts, from the start of the payload: after the 192-byte control block.
pub(crate) const DATA_IN_PAYLOAD: usize = 192;

/// Where the data starts, from the start of the object (what `SharedMemory(name).buf` sees):
/// the 128-byte header plus the control block, a multiple of 64.
pub const DATA_OFFSET: usize = HEADER_SIZE + DATA_IN_PAYLOAD;
const _: () = assert!(DATA_OFFSET % 64 == 0);

/// Largest element alignment a cell accepts (the data is 64-byte aligned).
pub const MAX_ALIGN: usize = 64;

/// Largest data size of a seqlocked cell, in bytes (a reader copies it whole each try).
pub const MAX_SEQLOCK_BYTES: usize = 1 << 20;

/// Largest data size of any cell, in bytes.
pub const MAX_DATA_BYTES: usize = 1 << 40;

/// The layout fingerprint of both cell kinds (the element type is recorded in the control
/// block, not in the fingerprint, so that a mismatch can name both sides).
pub(crate) const CELL_FINGERPRINT: u64 = fingerprint(
    b"shmkit cell v1: control 192 (magic u32, mode u32, typecode u32, elem_size u32, elem_align u32, data_offset u32, len u64, seq u64, waitqueue 8, reserved 8, type tag 72, lock 32, reserved 32), data at payload 192",
);

/// The control block at payload offset 0: `#[repr(C)]`, 192 bytes, atomics only.
#[repr(C)]
pub(crate) struct CellControl {
    pub magic: AtomicU32,
    pub mode: AtomicU32,
    pub typecode: AtomicU32,
    pub elem_size: AtomicU32,
    pub elem_align: AtomicU32,
    pub data_offset: AtomicU32,
    pub len: AtomicU64,
    /// The seqlock sequence (seqlock mode; 0 otherwise).
    pub seq: AtomicU64,
    /// Woken after every seqlock write (`wait_changed`).
    pub changed: WaitQueue,
    _reserved: AtomicU64,
    /// The element type's name (a typecode's `type_name`, or the user type's `TYPE_NAME`).
    pub type_tag: TypeTag,
    /// The data lock (locked mode) or the writer lock (seqlock mode); unused in atomic mode.
    pub lock: LockState,
    _reserved2: [AtomicU64; 4],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<CellControl>() == DATA_IN_PAYLOAD);
#[cfg(not(loom))]
const _: () = assert!(std::mem::offset_of!(CellControl, type_tag) == 56);
#[cfg(not(loom))]
const _: () = assert!(std::mem::offset_of!(CellControl, lock) == 128);
// `RawCell::snapshot` loads the block field by field with these offsets.
#[cfg(not(loom))]
const _: () = assert!(
    std::mem::offset_of!(CellControl, len) == 24
        && std::mem::offset_of!(CellControl, seq) == 32
        && std::mem::offset_of!(CellControl, changed) == 40
        && std::mem::offset_of!(CellControl, _reserved2) == 160
);

/// The element type a cell holds, as recorded or as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElemType {
    pub typecode: Option<Typecode>,
    pub name: String,
    pub size: usize,
    pub align: usize,
}

impl ElemType {
    pub(crate) fn of_typecode(t: Typecode) -> ElemType {
        ElemType {
            typecode: Some(t),
            name: t.type_name().to_owned(),
            size: t.size(),
            align: t.size(),
        }
    }

    pub(crate) fn of<T: crate::ShmType>() -> ElemType {
        ElemType {
            typecode: Typecode::for_rust_name(T::TYPE_NAME),
            name: T::TYPE_NAME.to_owned(),
            size: std::mem::size_of::<T>(),
            align: std::mem::align_of::<T>(),
        }
    }

    /// Whether a handle asking for `want` (a typed handle's [`of`](Self::of), or an untyped
    /// open-or-create's [`of_typecode`](Self::of_typecode)) may use a cell holding `self`.
    pub(crate) fn accepts(&self, want: &ElemType) -> bool {
        if self.size != want.size || self.align != want.align {
            return false;
        }
        if want.typecode.is_some() && want.typecode == self.typecode {
            // The same typecode: the same C type (also the codes no Rust type maps to, such
            // as 'c', '?' and 'u', which an untyped open-or-create asks for).
            return true;
        }
        match self.typecode {
            Some(t) => t.accepts_rust_name(&want.name),
            None => want.typecode.is_none() && self.name == want.name,
        }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.typecode {
            Some(t) => write!(f, "{t}"),
            None => f.write_str(&self.name),
        }
    }
}

/// What a cell is, for messages: `Value<q>`, `Array<d>[4]`.
pub(crate) fn describe(kind: Kind, elem: &ElemType, len: Option<usize>) -> String {
    match (kind, len) {
        (Kind::VALUE, _) => format!("Value<{elem}>"),
        (_, Some(n)) => format!("Array<{elem}>[{n}]"),
        (_, None) => format!("Array<{elem}>"),
    }
}

/// The validated, private copy of a cell's control block: a handle never re-reads these
/// from shared memory.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub mode: CellMode,
    pub elem: ElemType,
    pub len: usize,
}

impl Geometry {
    /// Data size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.elem.size * self.len
    }

    /// Check a geometry before creating a cell with it.
    pub(crate) fn check_new(&self, name: &str, kind: Kind) -> crate::Result<()> {
        let e = &self.elem;
        let bad = |what: String| Err(crate::Error::invalid(name, what));
        if e.size == 0 {
            return bad(format!("element type {e} has size 0"));
        }
        if !e.align.is_power_of_two() || e.align > MAX_ALIGN || e.size % e.align != 0 {
            return bad(format!(
                "element type {e} has alignment {} (1..={MAX_ALIGN}, a power of two dividing its size)",
                e.align
            ));
        }
        if e.name.is_empty() || e.name.len() > MAX_TYPE_NAME {
            return bad(format!(
                "element type name {:?} is not 1..={MAX_TYPE_NAME} bytes",
                e.name
            ));
        }
        if kind == Kind::ARRAY && self.len == 0 {
            return bad("an array needs at least one element".into());
        }
        let max = if self.mode == CellMode::Seqlock {
            MAX_SEQLOCK_BYTES
        } else {
            MAX_DATA_BYTES
        };
        match e.size.checked_mul(self.len) {
            Some(b) if b <= max => {}
            // An array's size in its user's unit, elements (its byte count may not even fit
            // a u64); a value's in bytes.
            _ if kind == Kind::ARRAY => {
                return Err(crate::Error::TooLarge {
                    name: name.to_owned(),
                    requested: self.len as u64,
                    max: (max / e.size.max(1)) as u64,
                })
            }
            _ => {
                return Err(crate::Error::TooLarge {
                    name: name.to_owned(),
                    requested: (e.size as u64).saturating_mul(self.len as u64),
                    max: max as u64,
                })
            }
        }
        if self.mode == CellMode::Atomic && !matches!(e.typecode, Some(t) if t.is_atomic()) {
            return bad(format!(
                "atomic mode needs an integer, c, u or ? typecode, not {}",
                describe(kind, e, None)
            ));
        }
        Ok(())
    }

    /// Write the control block into a fresh, unpublished payload.
    pub(crate) fn init(&self, ctl: &CellControl) {
        // Relaxed throughout: the segment's READY store (Release) publishes the object, and
        // an opener's Acquire load of it makes all of this visible.
        ctl.mode.store(self.mode.word(), Ordering::Relaxed);
        let tc = self.elem.typecode.map_or(0, Typecode::byte);
        ctl.typecode.store(tc, Ordering::Relaxed);
        ctl.elem_size
            .store(self.elem.size as u32, Ordering::Relaxed);
        ctl.elem_align
            .store(self.elem.align as u32, Ordering::Relaxed);
        ctl.data_offset
            .store(DATA_IN_PAYLOAD as u32, Ordering::Relaxed);
        ctl.len.store(self.len as u64, Ordering::Relaxed);
        ctl.type_tag.store(&self.elem.name);
        // SAFETY: the lock lies inside the unpublished payload that only this process sees;
        // it is 8-aligned (offset 128 of a 64-aligned payload).
        unsafe { LockState::init(std::ptr::addr_of!(ctl.lock).cast_mut()) };
        ctl.magic.store(CELL_MAGIC, Ordering::Relaxed);
    }

    /// Read and check a published control block against a payload of `payload_len` bytes.
    pub(crate) fn read(
        ctl: &CellControl,
        kind: Kind,
        payload_len: usize,
    ) -> Result<Geometry, String> {
        // Relaxed loads: the open's Acquire load of READY made the block visible; it never
        // changes after publication (a peer that scribbles on it gets checked values here,
        // and this handle keeps its own copy).
        let magic = ctl.magic.load(Ordering::Relaxed);
        if magic != CELL_MAGIC {
            return Err(format!(
                "cell magic is {magic:#010x}, expected {CELL_MAGIC:#010x}"
            ));
        }
        let mode_w = ctl.mode.load(Ordering::Relaxed);
        let mode = CellMode::from_word(mode_w).ok_or(format!("mode {mode_w} is not 1, 2 or 3"))?;
        let tc_w = ctl.typecode.load(Ordering::Relaxed);
        let typecode = match tc_w {
            0 => None,
            w => Some(
                char::from_u32(w)
                    .and_then(Typecode::from_char)
                    .ok_or(format!(
                        "typecode {w:#x} is not one of b B h H i I l L q Q f d c u ?"
                    ))?,
            ),
        };
        let size = ctl.elem_size.load(Ordering::Relaxed) as usize;
        let align = ctl.elem_align.load(Ordering::Relaxed) as usize;
        let off = ctl.data_offset.load(Ordering::Relaxed) as usize;
        if off != DATA_IN_PAYLOAD {
            return Err(format!("data offset {off} is not {DATA_IN_PAYLOAD}"));
        }
        let name = ctl.type_tag.load()?;
        if let Some(t) = typecode {
            if size != t.size() || align != t.size() || name != t.type_name() {
                return Err(format!(
                    "typecode '{t}' recorded with size {size}, align {align}, name {name:?}"
                ));
            }
        }
        let len = ctl.len.load(Ordering::Relaxed);
        let geo = Geometry {
            mode,
            elem: ElemType {
                typecode,
                name,
                size,
                align,
            },
            len: usize::try_from(len).map_err(|_| format!("length {len} is too large"))?,
        };
        if kind == Kind::VALUE && geo.len != 1 {
            return Err(format!("a value's length is {len}, not 1"));
        }
        geo.check_new("", kind).map_err(|e| match e {
            crate::Error::InvalidArgument { what, .. } => what,
            e => e.to_string(),
        })?;
        // Checked above: size * len does not overflow and is at most MAX_DATA_BYTES.
        let need = DATA_IN_PAYLOAD + geo.bytes();
        if payload_len < need {
            return Err(format!(
                "payload is {payload_len} bytes, {} needs {need}",
                describe(kind, &geo.elem, Some(geo.len))
            ));
        }
        Ok(geo)
    }
}
