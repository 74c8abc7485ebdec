//! [`Typecode`]: the element types of `multiprocessing.sharedctypes` (`b B h H i I l L q Q f d
//! c u ?`), with their Linux x86-64 sizes, as a cell records them (`SPEC.md` §10.2), and the
//! text form the CLI reads and prints.

use std::fmt;

/// A ctypes / `multiprocessing.sharedctypes` typecode, with its size on Linux x86-64 (LP64):
/// the element type of a cell created from Python-compatible scalars.
///
/// | code | C type | size | Rust type |
/// |---|---|---|---|
/// | `b` `B` | `signed char` / `unsigned char` | 1 | `i8` / `u8` |
/// | `h` `H` | `short` / `unsigned short` | 2 | `i16` / `u16` |
/// | `i` `I` | `int` / `unsigned int` | 4 | `i32` / `u32` |
/// | `l` `L` | `long` / `unsigned long` | 8 | `i64` / `u64` (through [`AnyValue`](super::AnyValue)) |
/// | `q` `Q` | `long long` / `unsigned long long` | 8 | `i64` / `u64` |
/// | `f` `d` | `float` / `double` | 4 / 8 | `f32` / `f64` |
/// | `c` | `char` (a 1-byte `bytes` in Python) | 1 | through `AnyValue` |
/// | `u` | `wchar_t` (UTF-32) | 4 | through `AnyValue` |
/// | `?` | `_Bool` | 1 | through `AnyValue` |
///
/// ```
/// use shmkit::cell::Typecode;
/// let t = Typecode::from_char('q').unwrap();
/// assert_eq!(t.size(), 8);
/// assert_eq!(t.parse("-5").unwrap(), (-5i64).to_le_bytes());
/// assert!(t.parse("9223372036854775808").is_err()); // out of range for 'q'
/// assert_eq!(Typecode::from_char('x'), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Typecode {
    /// `b`: `i8`.
    I8,
    /// `B`: `u8`.
    U8,
    /// `h`: `i16`.
    I16,
    /// `H`: `u16`.
    U16,
    /// `i`: `i32`.
    I32,
    /// `I`: `u32`.
    U32,
    /// `l`: C `long`, 8 bytes.
    Long,
    /// `L`: C `unsigned long`, 8 bytes.
    ULong,
    /// `q`: `i64`.
    I64,
    /// `Q`: `u64`.
    U64,
    /// `f`: `f32`.
    F32,
    /// `d`: `f64`.
    F64,
    /// `c`: one byte (Python `bytes` of length 1).
    Char,
    /// `u`: a UTF-32 code unit (`wchar_t`).
    WChar,
    /// `?`: a bool byte (0 or 1).
    Bool,
}

const ALL: [(Typecode, char, &str); 15] = [
    (Typecode::I8, 'b', "i8"),
    (Typecode::U8, 'B', "u8"),
    (Typecode::I16, 'h', "i16"),
    (Typecode::U16, 'H', "u16"),
    (Typecode::I32, 'i', "i32"),
    (Typecode::U32, 'I', "u32"),
    (Typecode::Long, 'l', "c_long"),
    (Typecode::ULong, 'L', "c_ulong"),
    (Typecode::I64, 'q', "i64"),
    (Typecode::U64, 'Q', "u64"),
    (Typecode::F32, 'f', "f32"),
    (Typecode::F64, 'd', "f64"),
    (Typecode::Char, 'c', "c_char"),
    (Typecode::WChar, 'u', "c_wchar"),
    (Typecode::Bool, '?', "c_bool"),
];

impl Typecode {
    /// Every typecode, in the order of the table above.
    pub fn all() -> impl Iterator<Item = Typecode> {
        ALL.iter().map(|e| e.0)
    }

    /// The typecode written `c`, if it is one.
    pub fn from_char(c: char) -> Option<Typecode> {
        ALL.iter().find(|e| e.1 == c).map(|e| e.0)
    }

    /// The typecode a `&str` of one character names (`"q"`), if any.
    pub fn from_str_code(s: &str) -> Option<Typecode> {
        let mut it = s.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => Typecode::from_char(c),
            _ => None,
        }
    }

    /// The character (`'q'`).
    pub fn as_char(self) -> char {
        ALL.iter().find(|e| e.0 == self).map_or('?', |e| e.1)
    }

    /// The byte recorded in a cell (the character's ASCII code).
    pub(crate) fn byte(self) -> u32 {
        self.as_char() as u32
    }

    /// The type name recorded in the cell's type tag: the Rust name of the primitive (`"i64"`)
    /// for the codes with one, else the ctypes name (`"c_long"`, `"c_char"`, …).
    pub fn type_name(self) -> &'static str {
        ALL.iter().find(|e| e.0 == self).map_or("", |e| e.2)
    }

    /// The typecode a typed cell of the [`ShmType`](crate::ShmType) named `rust_name` gets at
    /// creation: the primitives map to `b B h H i I q Q f d`; every other type is a user type
    /// (no typecode).
    pub(crate) fn for_rust_name(rust_name: &str) -> Option<Typecode> {
        ALL.iter()
            .find(|e| e.2 == rust_name && typed(e.2))
            .map(|e| e.0)
    }

    /// Whether a typed cell of the Rust type named `rust_name` may open a cell of this
    /// typecode: its own code, and `l`/`L` for `i64`/`u64` (the same C type on LP64).
    pub(crate) fn accepts_rust_name(self, rust_name: &str) -> bool {
        match self {
            Typecode::Long => rust_name == "i64",
            Typecode::ULong => rust_name == "u64",
            t => t.type_name() == rust_name && typed(rust_name),
        }
    }

    /// Size in bytes (Linux x86-64).
    pub fn size(self) -> usize {
        match self {
            Typecode::I8 | Typecode::U8 | Typecode::Char | Typecode::Bool => 1,
            Typecode::I16 | Typecode::U16 => 2,
            Typecode::I32 | Typecode::U32 | Typecode::F32 | Typecode::WChar => 4,
            _ => 8,
        }
    }

    /// Whether the element-wise atomic operations apply (integers, `c`, `u` and `?`; not the
    /// floats). `fetch_add`/`fetch_sub` apply to the integer codes only.
    pub fn is_atomic(self) -> bool {
        !matches!(self, Typecode::F32 | Typecode::F64)
    }

    /// Whether `fetch_add`/`fetch_sub` apply (the integer codes).
    pub fn is_integer(self) -> bool {
        !matches!(
            self,
            Typecode::F32 | Typecode::F64 | Typecode::Char | Typecode::WChar | Typecode::Bool
        )
    }

    fn signed(self) -> bool {
        matches!(
            self,
            Typecode::I8 | Typecode::I16 | Typecode::I32 | Typecode::Long | Typecode::I64
        )
    }

    /// The element's bytes (little-endian) for the text `s`, or why `s` does not fit: an
    /// integer out of range, a float that does not parse, a `c` that is not exactly one byte
    /// (or `\\xNN`), a `u` that is not exactly one character (or `\\UNNNNNNNN`), a `?` that
    /// is not `true`/`false`/`1`/`0`. Reads back every text [`format`](Self::format) writes.
    pub fn parse(self, s: &str) -> Result<Vec<u8>, String> {
        let what = || format!("{s:?} does not fit typecode '{}'", self.as_char());
        match self {
            Typecode::F32 => s
                .trim()
                .parse::<f32>()
                .map(|v| v.to_le_bytes().to_vec())
                .map_err(|e| format!("{}: {e}", what())),
            Typecode::F64 => s
                .trim()
                .parse::<f64>()
                .map(|v| v.to_le_bytes().to_vec())
                .map_err(|e| format!("{}: {e}", what())),
            Typecode::Char => match (s.as_bytes(), hex_escape(s, "\\x", 2)) {
                ([b], _) => Ok(vec![*b]),
                // `format`'s form of a byte that is not printable ASCII.
                (_, Some(v)) => Ok(vec![v as u8]),
                (b, None) => Err(format!(
                    "{}: it is {} bytes, a 'c' is one byte (\\xNN for any byte)",
                    what(),
                    b.len()
                )),
            },
            Typecode::WChar => {
                let mut it = s.chars();
                match (it.next(), it.next(), hex_escape(s, "\\U", 8)) {
                    (Some(c), None, _) => Ok((c as u32).to_le_bytes().to_vec()),
                    // `format`'s form of a value that is no character.
                    (_, _, Some(v)) => Ok(v.to_le_bytes().to_vec()),
                    _ => Err(format!(
                        "{}: a 'u' is exactly one character (or \\UNNNNNNNN)",
                        what()
                    )),
                }
            }
            Typecode::Bool => match s.trim() {
                "1" | "true" | "True" => Ok(vec![1]),
                "0" | "false" | "False" => Ok(vec![0]),
                _ => Err(format!("{}: a '?' is true, false, 1 or 0", what())),
            },
            t => {
                let n = t.size();
                let bits = n as u32 * 8;
                if t.signed() {
                    let v: i128 = s.trim().parse().map_err(|e| format!("{}: {e}", what()))?;
                    let (lo, hi) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
                    if v < lo || v > hi {
                        return Err(format!("{}: the range is {lo}..={hi}", what()));
                    }
                    Ok(v.to_le_bytes()[..n].to_vec())
                } else {
                    let v: i128 = s.trim().parse().map_err(|e| format!("{}: {e}", what()))?;
                    let hi = (1i128 << bits) - 1;
                    if v < 0 || v > hi {
                        return Err(format!("{}: the range is 0..={hi}", what()));
                    }
                    Ok(v.to_le_bytes()[..n].to_vec())
                }
            }
        }
    }

    /// The text form of one element's bytes (`bytes.len() == self.size()`); what `parse`
    /// reads back. A `c` prints as its character if printable ASCII, else `\xNN`.
    pub fn format(self, bytes: &[u8]) -> String {
        if bytes.len() != self.size() {
            return format!("<{} bytes>", bytes.len());
        }
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        let u = u64::from_le_bytes(w);
        match self {
            Typecode::F32 => f32::from_bits(u as u32).to_string(),
            Typecode::F64 => f64::from_bits(u).to_string(),
            Typecode::Char => {
                let b = bytes[0];
                if b.is_ascii_graphic() || b == b' ' {
                    (b as char).to_string()
                } else {
                    format!("\\x{b:02x}")
                }
            }
            Typecode::WChar => char::from_u32(u as u32)
                .map_or_else(|| format!("\\U{:08x}", u as u32), |c| c.to_string()),
            Typecode::Bool => (bytes[0] != 0).to_string(),
            t if t.signed() => {
                let shift = 64 - 8 * t.size() as u32;
                (((u << shift) as i64) >> shift).to_string()
            }
            _ => u.to_string(),
        }
    }
}

/// The value of `s` if it is `prefix` followed by exactly `digits` hex digits (`\\x41`,
/// `\\U0000d800`: how [`Typecode::format`] writes a `c` or `u` it cannot show as itself).
fn hex_escape(s: &str, prefix: &str, digits: usize) -> Option<u32> {
    let hex = s.strip_prefix(prefix)?;
    (hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

impl fmt::Display for Typecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip_with_ranges() {
        for t in Typecode::all() {
            assert_eq!(Typecode::from_char(t.as_char()), Some(t));
        }
        let cases: &[(char, &str, bool)] = &[
            ('b', "-128", true),
            ('b', "128", false),
            ('B', "255", true),
            ('B', "-1", false),
            ('h', "-32768", true),
            ('H', "65536", false),
            ('i', "2147483647", true),
            ('I', "4294967296", false),
            ('q', "-9223372036854775808", true),
            ('q', "9223372036854775808", false),
            ('Q', "18446744073709551615", true),
            ('l', "-1", true),
            ('L', "18446744073709551616", false),
            ('d', "1.5", true),
            ('f', "x", false),
            ('c', "a", true),
            ('c', "ab", false),
            ('c', "\\x00", true),
            ('c', "\\xff", true),
            ('c', "\\", true),
            ('c', "\\x+f", false),
            ('c', "\\x100", false),
            ('u', "é", true),
            ('u', "ab", false),
            ('u', "\\U0000d800", true),
            ('u', "\\Uffffffff", true),
            ('u', "\\U+000d800", false),
            ('?', "true", true),
            ('?', "2", false),
        ];
        for &(c, s, ok) in cases {
            let t = Typecode::from_char(c).unwrap();
            let r = t.parse(s);
            assert_eq!(r.is_ok(), ok, "{c} {s}: {r:?}");
            if let Ok(b) = r {
                assert_eq!(b.len(), t.size());
                let back = t.format(&b);
                assert_eq!(t.parse(&back).unwrap(), b, "{c} {s} -> {back}");
            }
        }
        // Every byte of a `c`, and a `u` that is no character, print as what parses back.
        for b in 0..=255u8 {
            assert_eq!(
                Typecode::Char.parse(&Typecode::Char.format(&[b])),
                Ok(vec![b])
            );
        }
        let bad = 0xd800u32.to_le_bytes();
        assert_eq!(Typecode::WChar.format(&bad), "\\U0000d800");
        assert_eq!(Typecode::for_rust_name("i64"), Some(Typecode::I64));
        assert_eq!(Typecode::for_rust_name("c_long"), None);
        assert!(Typecode::Long.accepts_rust_name("i64"));
        assert!(!Typecode::Long.accepts_rust_name("u64"));
    }
}

/// Whether a typed handle names this typecode by its Rust type name: the Rust primitives, and
/// [`CBool`] for `?`. `c_long`/`c_ulong` are opened by `i64`/`u64`; `c_char` and `c_wchar`
/// have no Rust type of their own here (a `u8` is `B`, a `char` is not valid for every
/// 4 bytes a peer may write): they are reached through [`AnyValue`](super::AnyValue) and
/// [`AnyArray`](super::AnyArray).
fn typed(rust_name: &str) -> bool {
    !rust_name.starts_with("c_") || rust_name == "c_bool"
}

/// The element type of a `?` (C `_Bool`) cell: `Value<CBool>`, `Array<CBool>`. A byte, as
/// in C and ctypes: 0 is false, anything else (a peer may write any byte) true. Not `bool`
/// itself: a peer's byte 2 would be undefined behaviour as a Rust `bool`.
///
/// ```
/// use shmkit::cell::{CBool, Typecode, Value};
/// # let name = format!("doc-cbool-{}", std::process::id());
/// let flag = Value::<CBool>::options().unlink_on_drop(true).create(&name, true.into())?;
/// assert_eq!(flag.typecode(), Typecode::from_char('?'));
/// assert!(flag.get()?.get());
/// flag.set(CBool::from(false))?;
/// assert!(!bool::from(flag.get()?));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(transparent)]
pub struct CBool(pub u8);

impl CBool {
    /// The truth value: any byte but 0 is true.
    pub fn get(self) -> bool {
        self.0 != 0
    }
}

impl From<bool> for CBool {
    fn from(b: bool) -> CBool {
        CBool(u8::from(b))
    }
}

impl From<CBool> for bool {
    fn from(b: CBool) -> bool {
        b.get()
    }
}

impl crate::ShmType for CBool {
    const TYPE_NAME: &'static str = "c_bool";
}
