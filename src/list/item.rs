//! [`Item`]: one value of a `ShareableList`.

/// One value of a [`ShareableList`](super::ShareableList): the six types CPython's
/// `ShareableList` stores.
///
/// `Str` and `Bytes` hold at most what their slot holds (a list's slots are sized when it is
/// created); the others take 8 bytes.
///
/// ```
/// use shmkit::list::Item;
/// assert_eq!(Item::from(5), Item::Int(5));
/// assert_eq!(Item::from("hé"), Item::Str("hé".into()));
/// assert_eq!(Item::from(&b"\x00"[..]), Item::Bytes(vec![0]));
/// // Python's equality: 1 == 1.0 == True.
/// assert!(Item::Int(1).py_eq(&Item::Float(1.0)) && Item::Bool(true).py_eq(&Item::Int(1)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Python `int` in the int64 range (format `q`).
    Int(i64),
    /// Python `float` (format `d`).
    Float(f64),
    /// Python `bool` (format `xxxxxxx?`).
    Bool(bool),
    /// Python `None` (format `xxxxxx?x`, code 3).
    None,
    /// Python `str`, stored as UTF-8 (format `<slot>s`, code 1).
    Str(String),
    /// Python `bytes` (format `<slot>s`, code 2).
    Bytes(Vec<u8>),
}

impl Item {
    /// Python's `==` between the values: numbers compare by value across `Int`, `Float` and
    /// `Bool` (exactly, as Python compares `int` with `float`; NaN equals nothing), `str` never
    /// equals `bytes`. What [`count`](super::ShareableList::count) and
    /// [`index`](super::ShareableList::index) use, as Python's do.
    pub fn py_eq(&self, other: &Item) -> bool {
        match (self.as_number(), other.as_number()) {
            (Some(a), Some(b)) => return a.eq(&b),
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        match (self, other) {
            (Item::None, Item::None) => true,
            (Item::Str(a), Item::Str(b)) => a == b,
            (Item::Bytes(a), Item::Bytes(b)) => a == b,
            _ => false,
        }
    }

    fn as_number(&self) -> Option<Number> {
        match *self {
            Item::Int(i) => Some(Number::Int(i)),
            Item::Bool(b) => Some(Number::Int(b as i64)),
            Item::Float(f) => Some(Number::Float(f)),
            _ => None,
        }
    }

    /// The Python type name: `int`, `float`, `bool`, `NoneType`, `str` or `bytes`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Item::Int(_) => "int",
            Item::Float(_) => "float",
            Item::Bool(_) => "bool",
            Item::None => "NoneType",
            Item::Str(_) => "str",
            Item::Bytes(_) => "bytes",
        }
    }
}

#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn eq(&self, other: &Number) -> bool {
        match (*self, *other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Float(a), Number::Float(b)) => a == b,
            (Number::Int(i), Number::Float(f)) | (Number::Float(f), Number::Int(i)) => {
                // Exact, as Python compares: an integral float inside the i64 range equals
                // the int it is exactly (2^63 itself is outside).
                f.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                    && f as i64 == i
            }
        }
    }
}

impl From<i64> for Item {
    fn from(v: i64) -> Item {
        Item::Int(v)
    }
}

impl From<f64> for Item {
    fn from(v: f64) -> Item {
        Item::Float(v)
    }
}

impl From<bool> for Item {
    fn from(v: bool) -> Item {
        Item::Bool(v)
    }
}

impl From<&str> for Item {
    fn from(v: &str) -> Item {
        Item::Str(v.to_owned())
    }
}

impl From<String> for Item {
    fn from(v: String) -> Item {
        Item::Str(v)
    }
}

impl From<&[u8]> for Item {
    fn from(v: &[u8]) -> Item {
        Item::Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for Item {
    fn from(v: Vec<u8>) -> Item {
        Item::Bytes(v)
    }
}

impl From<()> for Item {
    fn from(_: ()) -> Item {
        Item::None
    }
}

impl std::fmt::Display for Item {
    /// As Python's `repr` prints the value (bytes with `\xNN` escapes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Int(i) => write!(f, "{i}"),
            Item::Float(x) => write!(f, "{x:?}"),
            Item::Bool(true) => f.write_str("True"),
            Item::Bool(false) => f.write_str("False"),
            Item::None => f.write_str("None"),
            Item::Str(s) => write!(f, "{s:?}"),
            Item::Bytes(b) => {
                f.write_str("b'")?;
                for &c in b {
                    match c {
                        b'\'' | b'\\' => write!(f, "\\{}", c as char)?,
                        0x20..=0x7e => write!(f, "{}", c as char)?,
                        _ => write!(f, "\\x{c:02x}")?,
                    }
                }
                f.write_str("'")
            }
        }
    }
}
