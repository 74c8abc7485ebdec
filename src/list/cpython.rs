//! The byte layout of CPython 3.9–3.13's `multiprocessing.shared_memory.ShareableList`
//! (`SPEC.md`, ShareableList section): the geometry (item count, running offsets, the data,
//! format and code areas), the per-item format strings and back-transform codes, and the
//! encoding and decoding of one item.
//!
//! Everything here works on private copies: the geometry is parsed from bytes handed in by a
//! reader function (a mapping, `pread`, or a fuzzer's buffer), and items are decoded from
//! copies of their format, code and slot bytes. Nothing here panics or indexes out of bounds
//! on any input.

use super::item::Item;
use crate::error::Error;

/// The largest `str`/`bytes` value CPython accepts when it builds a list: its slot,
/// `8 * (len / 8 + 1)` = 9 999 992 bytes, is the largest whose format (`"9999992s"`) fits the
/// 8-byte format field.
pub const MAX_ITEM_LEN: usize = 9_999_991;
/// The largest slot whose `"<n>s"` format fits 8 bytes.
pub(crate) const MAX_SLOT: usize = 9_999_992;

/// `_back_transforms_mapping` codes.
pub(crate) const CODE_VALUE: u8 = 0;
pub(crate) const CODE_STR: u8 = 1;
pub(crate) const CODE_BYTES: u8 = 2;
pub(crate) const CODE_NONE: u8 = 3;

/// One item's `struct` format, as CPython writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `q`: int64.
    Int,
    /// `d`: float64.
    Float,
    /// `xxxxxxx?`: a bool in byte 7.
    Bool,
    /// `xxxxxx?x`: what CPython writes for `None` (a bool in byte 6).
    NoneFmt,
    /// `<n>s`: `n` raw bytes (str and bytes).
    Bytes(usize),
}

impl Format {
    /// Parse an 8-byte format field (NUL-padded ASCII). `Err` describes what was found.
    pub(crate) fn parse(field: &[u8; 8]) -> std::result::Result<Format, String> {
        let end = field.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let f = &field[..end];
        match f {
            b"q" => return Ok(Format::Int),
            b"d" => return Ok(Format::Float),
            b"xxxxxxx?" => return Ok(Format::Bool),
            b"xxxxxx?x" => return Ok(Format::NoneFmt),
            _ => {}
        }
        if let [digits @ .., b's'] = f {
            if !digits.is_empty()
                && digits.iter().all(u8::is_ascii_digit)
                && (digits[0] != b'0' || digits.len() == 1)
            {
                // At most 7 digits: cannot overflow.
                let n = digits
                    .iter()
                    .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
                return Ok(Format::Bytes(n));
            }
        }
        Err(format!(
            "format field {:?} is not one CPython 3.9–3.13 writes (q, d, xxxxxxx?, xxxxxx?x or <n>s)",
            String::from_utf8_lossy(field)
        ))
    }

    /// The 8-byte, NUL-padded field. `None` for a `<n>s` whose digits do not fit.
    pub(crate) fn field(self) -> Option<[u8; 8]> {
        let fixed: &[u8; 8] = match self {
            Format::Int => b"q\0\0\0\0\0\0\0",
            Format::Float => b"d\0\0\0\0\0\0\0",
            Format::Bool => b"xxxxxxx?",
            Format::NoneFmt => b"xxxxxx?x",
            Format::Bytes(n) => {
                // "%ds" % n, without allocating: at most 7 digits and the 's'.
                let digits = (1..=7).find(|&d| n < 10usize.pow(d))?;
                let mut out = [0u8; 8];
                let mut m = n;
                for k in (0..digits as usize).rev() {
                    out[k] = b'0' + (m % 10) as u8;
                    m /= 10;
                }
                out[digits as usize] = b's';
                return Some(out);
            }
        };
        Some(*fixed)
    }

    /// How many slot bytes `struct.unpack_from` reads.
    pub(crate) fn size(self) -> usize {
        match self {
            Format::Bytes(n) => n,
            _ => 8,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Format::Int => f.write_str("q"),
            Format::Float => f.write_str("d"),
            Format::Bool => f.write_str("xxxxxxx?"),
            Format::NoneFmt => f.write_str("xxxxxx?x"),
            Format::Bytes(n) => write!(f, "{n}s"),
        }
    }
}

/// Where everything is, from a list's `N` and offsets table: private, validated once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// `offsets[0..=N]`, running offsets into the data area (`offsets[0] == 0`,
    /// non-decreasing).
    pub offsets: Vec<u64>,
    /// Start of the data area, `8 * (N + 2)`.
    pub data: u64,
    /// Start of the format area, `data + offsets[N]`.
    pub formats: u64,
    /// Start of the code area, `formats + 8 * N`.
    pub codes: u64,
    /// End of the CPython area, `codes + N`.
    pub end: u64,
}

/// Why bytes are not a CPython 3.9–3.13 ShareableList.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotAList {
    /// CPython 3.8's older layout (per-item sizes instead of running offsets).
    Python38(String),
    /// Anything else: which field, with the values seen.
    Bad(String),
    /// Bytes no writer leaves behind a finished list, as a creator that has sized its object
    /// but not yet written it shows (CPython writes N, the offsets and the items milliseconds
    /// after its `ftruncate`): an empty list with slack and no trailer, or a format field of
    /// zeros. What was seen; an open polls until its timeout (`SPEC.md` §9.2).
    Incomplete(String),
    /// The list is well-formed so far, but this process cannot allocate the private copy of
    /// its geometry (N can be as large as the object's size allows, and the object sparse):
    /// what was needed.
    NoMemory(String),
    /// More items than the caller's limit (`probe`'s [`PROBE_MAX_ITEMS`], an inspection's
    /// open): `n`, the count parse read (the one value it would have used), and the limit.
    /// Nothing past `N` was read.
    ///
    /// [`PROBE_MAX_ITEMS`]: super::PROBE_MAX_ITEMS
    TooMany { n: u64, max: u64 },
}

impl NotAList {
    /// As an [`Error`] for segment `name`: 3.8's layout is a [`Error::KindMismatch`] naming
    /// what was found, anything else [`Error::Corrupt`].
    pub(crate) fn into_error(self, name: &str) -> Error {
        match self {
            NotAList::Python38(what) => Error::KindMismatch {
                name: name.to_owned(),
                expected: "ShareableList in CPython 3.9–3.13's layout".into(),
                found: what,
            },
            NotAList::Bad(what) => Error::corrupt(name, format!("as a ShareableList: {what}")),
            NotAList::NoMemory(what) => Error::Io {
                name: name.to_owned(),
                op: "allocate memory to open",
                source: std::io::Error::new(std::io::ErrorKind::OutOfMemory, what),
            },
            NotAList::TooMany { n, max } => Error::TooLarge {
                name: name.to_owned(),
                requested: n,
                max,
            },
            NotAList::Incomplete(what) => Error::NotReady {
                name: name.to_owned(),
                waited: std::time::Duration::ZERO,
                detail: what,
            },
        }
    }
}

/// How many words of the offsets table one read copies.
pub(crate) const TABLE_CHUNK: usize = 512;

fn word(b: &[u8]) -> i64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    i64::from_le_bytes(w)
}

impl Geometry {
    /// Parse the geometry of an object of `size` bytes; `read(at, buf)` copies `buf.len()`
    /// bytes at `at` and returns `false` if they are not all inside the object. A count above
    /// `max_items` is [`NotAList::TooMany`]: the limit applies to the one `N` this parse
    /// reads and uses (a caller that read `N` itself and checked it could be shown another
    /// value here by a peer).
    pub(crate) fn parse(
        size: u64,
        max_items: u64,
        read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    ) -> std::result::Result<Geometry, NotAList> {
        let bad = |s: String| Err(NotAList::Bad(s));
        let mut w = [0u8; 8];
        if size < 8 || !read(0, &mut w) {
            return bad(format!("it is {size} bytes, too small for the item count"));
        }
        let n = i64::from_le_bytes(w);
        if n < 0 {
            return bad(format!("item count N at offset 0 is {n}, negative"));
        }
        if size == 8 && n == 0 {
            return Err(NotAList::Python38(
                "empty ShareableList in CPython 3.8's layout (8 bytes: no offsets table)".into(),
            ));
        }
        // Every item takes at least 17 bytes (offset, format, code): bounds N before any
        // arithmetic.
        let n = n as u64;
        if size < 16 || n > (size - 16) / 17 {
            return bad(format!(
                "item count N at offset 0 is {n}: {n} items do not fit in {size} bytes"
            ));
        }
        if n > max_items {
            return Err(NotAList::TooMany { n, max: max_items });
        }
        let count = n as usize;
        // The private copy of the offsets table: as long as the object's size allows (N up to
        // (size - 16) / 17, and the object may be sparse), so asked for, never assumed.
        let mut offsets: Vec<u64> = Vec::new();
        if offsets.try_reserve_exact(count + 1).is_err() {
            return Err(NotAList::NoMemory(format!(
                "its {n} items need {} bytes for their offsets, which this process cannot allocate",
                8 * (n + 1)
            )));
        }
        // Read in chunks of whole words from 8-aligned offsets (the accesses of one copy of
        // the table), never the whole table at once.
        let mut chunk = [0u8; 8 * TABLE_CHUNK];
        // CPython writes N and then the offsets one word after another (`struct.pack_into`
        // into the mapping): an opener can find the first offsets written and the rest still
        // zero. A zero after a non-zero offset with only zeros after it is that, not ready
        // yet (SPEC §9.2 step 7); any non-zero after such a zero is corrupt.
        let mut zeros_from: Option<usize> = None;
        let mut k = 0;
        while k <= count {
            let m = (count + 1 - k).min(TABLE_CHUNK);
            let buf = &mut chunk[..8 * m];
            if !read(8 + 8 * k as u64, buf) {
                return bad(format!(
                    "the offsets table of {n} items runs past {size} bytes"
                ));
            }
            for (j, w) in buf.chunks_exact(8).enumerate() {
                let (k, o) = (k + j, word(w));
                if k == 0 && o != 0 {
                    return Err(match python38(count, size, read) {
                        Some(what) => NotAList::Python38(what),
                        None => NotAList::Bad(format!("offsets[0] at offset 8 is {o}, expected 0")),
                    });
                }
                let prev = offsets.last().copied().unwrap_or(0);
                if o == 0 && (prev > 0 || zeros_from.is_some()) {
                    zeros_from.get_or_insert(k);
                    offsets.push(0);
                    continue;
                }
                if o < 0 || (o as u64) < prev || o as u64 > size || zeros_from.is_some() {
                    return bad(format!(
                        "offsets[{k}] at offset {} is {o}: offsets must be non-decreasing and inside the {size}-byte object",
                        8 + 8 * k
                    ));
                }
                offsets.push(o as u64);
            }
            k += m;
        }
        if let Some(k) = zeros_from {
            return Err(NotAList::Incomplete(format!(
                "offsets[{k}..={count}] are 0 after non-zero ones: its creator is still writing its offsets table"
            )));
        }
        let data = 8 * (n + 2);
        let end = data
            .checked_add(offsets[count])
            .and_then(|f| f.checked_add(9 * n))
            .filter(|&e| e <= size);
        let Some(end) = end else {
            return bad(format!(
                "the data ({} bytes), formats and codes of {n} items end past the {size}-byte object",
                offsets[count]
            ));
        };
        let formats = data + offsets[count];
        Ok(Geometry {
            offsets,
            data,
            formats,
            codes: formats + 8 * n,
            end,
        })
    }

    /// The number of items.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Item `i`'s slot: start and size. `i < len()`.
    pub(crate) fn slot(&self, i: usize) -> (u64, usize) {
        (
            self.data + self.offsets[i],
            (self.offsets[i + 1] - self.offsets[i]) as usize,
        )
    }

    /// Item `i`'s format field offset.
    pub(crate) fn format_at(&self, i: usize) -> u64 {
        self.formats + 8 * i as u64
    }

    /// Item `i`'s code byte offset.
    pub(crate) fn code_at(&self, i: usize) -> u64 {
        self.codes + i as u64
    }

    /// The geometry of a new list with these slot sizes.
    pub(crate) fn for_slots(slots: &[usize]) -> Geometry {
        let n = slots.len() as u64;
        let mut offsets = Vec::with_capacity(slots.len() + 1);
        let mut o = 0u64;
        offsets.push(0);
        for &s in slots {
            o += s as u64;
            offsets.push(o);
        }
        let data = 8 * (n + 2);
        let formats = data + o;
        Geometry {
            offsets,
            data,
            formats,
            codes: formats + 8 * n,
            end: formats + 9 * n,
        }
    }

    /// The first `8 * (N + 2)` bytes: `N` and the offsets table.
    pub(crate) fn head_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data as usize);
        out.extend_from_slice(&(self.len() as i64).to_le_bytes());
        for &o in &self.offsets {
            out.extend_from_slice(&(o as i64).to_le_bytes());
        }
        out
    }
}

/// If the `count` words after the count read as CPython 3.8's per-item slot sizes that fit
/// the object, say so (read in chunks, as the offsets table).
fn python38(
    count: usize,
    size: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> Option<String> {
    let mut total: u64 = 0;
    let mut first = Vec::with_capacity(4);
    let mut chunk = [0u8; 8 * TABLE_CHUNK];
    let mut k = 0;
    while k < count {
        let m = (count - k).min(TABLE_CHUNK);
        let buf = &mut chunk[..8 * m];
        if !read(8 + 8 * k as u64, buf) {
            return None;
        }
        for w in buf.chunks_exact(8) {
            let s = word(w);
            if s < 8 {
                return None;
            }
            if first.len() < 4 {
                first.push(s);
            }
            total = total.checked_add(s as u64)?;
        }
        k += m;
    }
    let n = count as u64;
    let end = (8 + 8 * n).checked_add(total)?.checked_add(9 * n)?;
    (end <= size).then(|| {
        format!(
            "ShareableList in CPython 3.8's layout (per-item sizes {first:?}… at offset 8 instead \
             of running offsets starting at 0); only CPython 3.8 reads it"
        )
    })
}

/// Copies of one item's format field, code, and the slot bytes its format covers.
pub(crate) struct Snapshot {
    /// The 8-byte format field as read.
    pub field: [u8; 8],
    /// The parsed format.
    pub fmt: Format,
    /// The code byte.
    pub code: u8,
    /// `fmt.size()` bytes from the slot's start.
    pub data: SlotBuf,
}

/// A copy of slot bytes: inline up to [`SlotBuf::INLINE`] bytes (an int, a float, a short
/// str: no allocation), on the heap beyond.
pub(crate) struct SlotBuf {
    inline: [u8; SlotBuf::INLINE],
    len: usize,
    heap: Vec<u8>,
}

impl SlotBuf {
    /// The most bytes kept inline.
    pub(crate) const INLINE: usize = 32;

    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> SlotBuf {
        SlotBuf {
            inline: [0; Self::INLINE],
            len,
            heap: if len > Self::INLINE {
                vec![0; len]
            } else {
                Vec::new()
            },
        }
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self.inline.get(..self.len) {
            Some(s) if self.heap.is_empty() => s,
            _ => &self.heap,
        }
    }

    /// The bytes, to fill.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self.inline.get_mut(..self.len) {
            Some(s) if self.heap.is_empty() => s,
            _ => &mut self.heap,
        }
    }

    /// The number of bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Copy item `i` (`i < g.len()`) through `read` (see [`Geometry::parse`]). `Err` describes a
/// format that is not CPython's, or one that does not fit the slot.
pub(crate) fn snapshot(
    g: &Geometry,
    i: usize,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> std::result::Result<Snapshot, String> {
    let mut field = [0u8; 8];
    let mut code = [0u8];
    if !read(g.format_at(i), &mut field) || !read(g.code_at(i), &mut code) {
        return Err("its format or code lies past the end".into());
    }
    let fmt = Format::parse(&field)?;
    let (start, slot) = g.slot(i);
    if fmt.size() > slot {
        return Err(format!(
            "format {fmt} reads {} bytes from a slot of {slot} bytes",
            fmt.size()
        ));
    }
    let mut data = SlotBuf::zeroed(fmt.size());
    if !read(start, data.as_mut_slice()) {
        return Err("its slot lies past the end".into());
    }
    Ok(Snapshot {
        field,
        fmt,
        code: code[0],
        data,
    })
}

/// Decode one item from copies of its format field, code and slot, with CPython's semantics:
/// `str`/`bytes` lose trailing NULs, unless `exact_len` (the length a shmkit writer recorded
/// for exactly these bytes) is given. `Err` names what is wrong.
pub(crate) fn decode(
    fmt: Format,
    code: u8,
    slot: &[u8],
    exact_len: Option<usize>,
) -> std::result::Result<Item, String> {
    let raw = slot.get(..fmt.size()).ok_or_else(|| {
        format!(
            "format {fmt} reads {} bytes from a slot of {} bytes",
            fmt.size(),
            slot.len()
        )
    })?;
    let word = || {
        let mut w = [0u8; 8];
        w.copy_from_slice(&raw[..8]);
        w
    };
    let trimmed = || match exact_len {
        Some(l) if l <= raw.len() => &raw[..l],
        _ => {
            let end = raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            &raw[..end]
        }
    };
    match (code as i8, fmt) {
        (3, _) => Ok(Item::None),
        (0, Format::Int) => Ok(Item::Int(i64::from_le_bytes(word()))),
        (0, Format::Float) => Ok(Item::Float(f64::from_le_bytes(word()))),
        (0, Format::Bool) => Ok(Item::Bool(raw[7] != 0)),
        (0, Format::NoneFmt) => Ok(Item::Bool(raw[6] != 0)),
        (0, Format::Bytes(_)) => Ok(Item::Bytes(raw.to_vec())),
        (1, Format::Bytes(_)) => String::from_utf8(trimmed().to_vec())
            .map(Item::Str)
            .map_err(|e| format!("str value is not UTF-8: {}", e.utf8_error())),
        (2, Format::Bytes(_)) => Ok(Item::Bytes(trimmed().to_vec())),
        (1 | 2, f) => Err(format!(
            "code {code} ({}) with format {f}, which unpacks a number",
            if code == 1 { "str" } else { "bytes" }
        )),
        (c, _) => Err(format!(
            "code {c} is not one of CPython's back-transform codes 0–3"
        )),
    }
}

/// How item `value` is stored in a slot of `slot` bytes: format, code, and the bytes written
/// from the slot's start (a whole zero-padded slot for `str`/`bytes`, 8 bytes otherwise, as
/// CPython's `struct.pack_into` writes). `Err(len)`: a `str`/`bytes` of `len` bytes that does
/// not fit.
pub(crate) fn encode(
    value: &Item,
    slot: usize,
) -> std::result::Result<(Format, u8, SlotBuf), usize> {
    let fixed = |f: Format, code: u8, w: [u8; 8]| {
        if slot < 8 {
            Err(8)
        } else {
            let mut v = SlotBuf::zeroed(8);
            v.as_mut_slice().copy_from_slice(&w);
            Ok((f, code, v))
        }
    };
    let var = |code: u8, b: &[u8]| {
        if b.len() > slot || slot > MAX_SLOT {
            return Err(b.len());
        }
        let mut v = SlotBuf::zeroed(slot);
        v.as_mut_slice()[..b.len()].copy_from_slice(b);
        Ok((Format::Bytes(slot), code, v))
    };
    match value {
        Item::Int(i) => fixed(Format::Int, CODE_VALUE, i.to_le_bytes()),
        Item::Float(x) => fixed(Format::Float, CODE_VALUE, x.to_le_bytes()),
        Item::Bool(b) => fixed(Format::Bool, CODE_VALUE, [0, 0, 0, 0, 0, 0, 0, *b as u8]),
        Item::None => fixed(Format::NoneFmt, CODE_NONE, [0; 8]),
        Item::Str(s) => var(CODE_STR, s.as_bytes()),
        Item::Bytes(b) => var(CODE_BYTES, b),
    }
}

/// The slot CPython gives a new item (`8 * (len // 8 + 1)` for `str`/`bytes`, with `len` in
/// UTF-8 bytes here instead of characters: gh-88336), at least `reserve` rounded up to 8.
pub(crate) fn slot_for(value: &Item, reserve: usize) -> usize {
    let natural = match value {
        Item::Str(s) => 8 * (s.len() / 8 + 1),
        Item::Bytes(b) => 8 * (b.len() / 8 + 1),
        _ => 8,
    };
    natural.max(reserve.div_ceil(8) * 8)
}

/// A whole CPython-layout list of `items` (no trailer), as CPython 3.9–3.13 would build it
/// (except that `str` slots are sized by UTF-8 bytes), in private memory. Used by tests and
/// seed generation only (`create` writes into the new object instead).
pub(crate) fn build(items: &[Item], reserve: usize) -> (Geometry, Vec<u8>) {
    let slots: Vec<usize> = items.iter().map(|v| slot_for(v, reserve)).collect();
    let g = Geometry::for_slots(&slots);
    let mut out = g.head_bytes();
    out.resize(g.end as usize, 0);
    for (i, v) in items.iter().enumerate() {
        let (start, size) = g.slot(i);
        if let Ok((f, code, bytes)) = encode(v, size) {
            out[start as usize..start as usize + bytes.len()].copy_from_slice(bytes.as_slice());
            if let Some(field) = f.field() {
                out[g.format_at(i) as usize..][..8].copy_from_slice(&field);
            }
            out[g.code_at(i) as usize] = code;
        }
    }
    (g, out)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_reference_demo_list_is_byte_identical() {
        // `SPEC.md`'s worked example (CPython 3.11.7; identical in 3.9–3.13), with b'ab'.
        let items = [
            Item::Int(1),
            Item::Float(2.5),
            Item::Bool(true),
            Item::None,
            Item::Str("hé".into()),
            Item::Bytes(b"ab".to_vec()),
        ];
        let (g, bytes) = build(&items, 0);
        assert_eq!(bytes.len(), 166);
        assert_eq!((g.data, g.formats, g.codes), (64, 112, 160));
        assert_eq!(&bytes[0x80..0x88], b"xxxxxxx?");
        assert_eq!(&bytes[0x88..0x90], b"xxxxxx?x");
        assert_eq!(&bytes[160..], &[0, 0, 0, 3, 1, 2]);
        let mut read =
            |at: u64, buf: &mut [u8]| match bytes.get(at as usize..at as usize + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            };
        assert_eq!(Geometry::parse(166, u64::MAX, &mut read).unwrap(), g);
    }

    #[test]
    fn formats_round_trip_and_strangers_are_refused() {
        for f in [
            Format::Int,
            Format::Float,
            Format::Bool,
            Format::NoneFmt,
            Format::Bytes(8),
            Format::Bytes(9_999_992),
        ] {
            assert_eq!(Format::parse(&f.field().unwrap()), Ok(f));
        }
        assert_eq!(Format::Bytes(10_000_000).field(), None);
        for bad in [&b"10000000"[..], b"08s", b"s", b"i", b"q\0d", b"", b"\xff"] {
            let mut f = [0u8; 8];
            f[..bad.len()].copy_from_slice(bad);
            assert!(Format::parse(&f).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn python_3_8_layout_is_named() {
        // The demo list under 3.8: N = 6, sizes of 8 at offset 8, 158 bytes.
        let mut b = [0u8; 158];
        b[..8].copy_from_slice(&6i64.to_le_bytes());
        for k in 0..6 {
            b[8 + 8 * k..16 + 8 * k].copy_from_slice(&8i64.to_le_bytes());
        }
        let mut read = |at: u64, buf: &mut [u8]| match b.get(at as usize..at as usize + buf.len()) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        };
        assert!(matches!(
            Geometry::parse(158, u64::MAX, &mut read),
            Err(NotAList::Python38(_))
        ));
    }
}
