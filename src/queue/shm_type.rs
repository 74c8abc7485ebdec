//! [`ShmType`]: the element types typed queues carry, each with a stable name, and the
//! type tag (`SPEC.md` §7.1.4) that records that name in a queue so that opening it with another
//! type can say which type it holds.

use crate::loom::{AtomicU64, Ordering};

/// Longest [`ShmType::TYPE_NAME`] accepted, in bytes: the type tag stores the name whole.
pub const MAX_TYPE_NAME: usize = 64;

/// An element type of the typed queues ([`spsc::Queue`](super::spsc::Queue),
/// [`mpmc::Queue`](super::mpmc::Queue)): plain data for which every byte pattern is a valid
/// value and that has no padding (zerocopy's `FromBytes + IntoBytes + Immutable`), with a
/// stable name.
///
/// A queue records its element's [`TYPE_NAME`](Self::TYPE_NAME), size and alignment when it
/// is created (in its layout fingerprint and, readable, in its type tag); opening it as a
/// queue of another type fails with [`Error::TypeMismatch`](crate::Error::TypeMismatch)
/// naming both. The name must therefore be the same in every program that shares the type,
/// whatever compiler built it: it is written by hand or by [`shm_type!`](crate::shm_type)
/// (the type's path as written, via `stringify!`), never taken from
/// `std::any::type_name`, whose output is not stable across compilers.
///
/// Implemented for the integer and float primitives (`TYPE_NAME` is the Rust name: `"u64"`,
/// `"f32"`, …) and for arrays of any `ShmType` (`"[u8; 16]"`, `"[[f32; 4]; 4]"`).
///
/// The trait is safe to implement: the zerocopy bounds already make any bytes another process
/// writes a valid value, so the name only guards against mistakes (two types of the same size
/// taken for each other), not against undefined behaviour. Give each layout its own name (a
/// path such as `"my_crate::Tick"` is a good one) and keep the definition the same (`#[repr(C)]`)
/// in every program that uses the name.
///
/// ```
/// use shmkit::queue::spsc::Queue;
/// use zerocopy::{FromBytes, Immutable, IntoBytes};
///
/// #[derive(Clone, Copy, FromBytes, IntoBytes, Immutable)]
/// #[repr(C)]
/// struct Tick { price: u64, qty: u32, side: u32 }
/// shmkit::shm_type!(Tick);
/// assert_eq!(<Tick as shmkit::ShmType>::TYPE_NAME, "Tick");
///
/// # let name = format!("doc-shmtype-{}", std::process::id());
/// let q = Queue::<Tick>::create(&name, 16)?;
/// q.set_unlink_on_drop(true);
/// let e = Queue::<[u64; 2]>::open(&name).unwrap_err(); // same size, another type
/// assert!(matches!(e, shmkit::Error::TypeMismatch { .. }));
/// assert!(e.to_string().contains("Tick") && e.to_string().contains("[u64; 2]"));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub trait ShmType:
    zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable + 'static
{
    /// The type's stable name: at most [`MAX_TYPE_NAME`] bytes of UTF-8, the same in every
    /// program that shares the type.
    const TYPE_NAME: &'static str;
}

/// Implement [`ShmType`] for your own types, named by their path as written
/// (`stringify!`): `shm_type!(Tick)` names it `"Tick"`, `shm_type!(feed::Tick)` names it
/// `"feed::Tick"`. Write the same path in every program that shares the type (or implement
/// the trait by hand with a `TYPE_NAME` of your choice). Names longer than
/// [`MAX_TYPE_NAME`](crate::queue::MAX_TYPE_NAME) bytes fail to compile.
///
/// ```
/// use zerocopy::{FromBytes, Immutable, IntoBytes};
/// mod feed {
///     #[derive(Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable)]
///     #[repr(C)]
///     pub struct Tick { pub price: u64, pub qty: u64 }
///     #[derive(Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable)]
///     #[repr(C)]
///     pub struct Quote { pub bid: f64, pub ask: f64 }
/// }
/// shmkit::shm_type!(feed::Tick, feed::Quote);
/// assert_eq!(<feed::Tick as shmkit::ShmType>::TYPE_NAME, "feed::Tick");
/// let q = shmkit::queue::mpmc::Queue::<feed::Quote>::with_capacity(4);
/// # let _ = q;
/// ```
#[macro_export]
macro_rules! shm_type {
    ($($t:ty),+ $(,)?) => {
        $(
            impl $crate::ShmType for $t {
                const TYPE_NAME: &'static str = {
                    const NAME: &str = stringify!($t);
                    assert!(
                        NAME.len() <= $crate::queue::MAX_TYPE_NAME,
                        "shm_type!: the type name is longer than MAX_TYPE_NAME bytes"
                    );
                    NAME
                };
            }
        )+
    };
}

macro_rules! primitives {
    ($($t:ident),+) => {
        $(
            impl ShmType for $t {
                const TYPE_NAME: &'static str = stringify!($t);
            }
        )+
    };
}

primitives!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

/// `"[" + name + "; " + n + "]"` in a fixed buffer, at compile time; the length is the last
/// byte's position (`.1`).
const fn array_name(elem: &str, n: usize) -> ([u8; MAX_TYPE_NAME], usize) {
    const fn push(mut buf: ([u8; MAX_TYPE_NAME], usize), b: u8) -> ([u8; MAX_TYPE_NAME], usize) {
        assert!(
            buf.1 < MAX_TYPE_NAME,
            "array type name longer than MAX_TYPE_NAME bytes"
        );
        buf.0[buf.1] = b;
        buf.1 += 1;
        buf
    }
    let mut out = push(([0u8; MAX_TYPE_NAME], 0), b'[');
    let e = elem.as_bytes();
    let mut i = 0;
    while i < e.len() {
        out = push(out, e[i]);
        i += 1;
    }
    out = push(push(out, b';'), b' ');
    let mut digits = [0u8; 20];
    let (mut d, mut v) = (0, n);
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        out = push(out, digits[d]);
    }
    push(out, b']')
}

struct ArrayName<T, const N: usize>(std::marker::PhantomData<T>);

impl<T: ShmType, const N: usize> ArrayName<T, N> {
    const BUF: ([u8; MAX_TYPE_NAME], usize) = array_name(T::TYPE_NAME, N);
    const NAME: &'static str = match std::str::from_utf8(Self::BUF.0.split_at(Self::BUF.1).0) {
        Ok(s) => s,
        Err(_) => panic!("a type name is not UTF-8"),
    };
}

impl<T: ShmType, const N: usize> ShmType for [T; N] {
    const TYPE_NAME: &'static str = ArrayName::<T, N>::NAME;
}

/// Refuse a [`ShmType::TYPE_NAME`] that the type tag cannot hold (a hand-written impl; the
/// macro checks at compile time).
pub(crate) fn check_name<T: ShmType>(name: &str) -> crate::Result<()> {
    let n = T::TYPE_NAME.len();
    if n == 0 || n > MAX_TYPE_NAME {
        return Err(crate::Error::invalid(
            name,
            format!(
                "element type name {:?} is not 1..={MAX_TYPE_NAME} bytes",
                T::TYPE_NAME
            ),
        ));
    }
    Ok(())
}

/// An element type as a queue records it: name, size, alignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeId {
    pub name: String,
    pub size: u64,
    pub align: u64,
}

impl TypeId {
    pub(crate) fn of<T: ShmType>() -> TypeId {
        TypeId {
            name: T::TYPE_NAME.to_owned(),
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
        }
    }
}

impl std::fmt::Display for TypeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (size {}, align {})",
            self.name, self.size, self.align
        )
    }
}

/// The type tag in a typed queue's geometry line (`SPEC.md` §7.1.4): at offset 56 the name's
/// length in bytes, at 64..128 the name, zero-padded. Atomics only, like the rest of the
/// control block; written before the queue is published, read once at open.
#[repr(C)]
pub(crate) struct TypeTag {
    pub(crate) len: AtomicU64,
    pub(crate) name: [AtomicU64; MAX_TYPE_NAME / 8],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<TypeTag>() == 72);

impl TypeTag {
    pub(crate) fn new() -> TypeTag {
        TypeTag {
            len: AtomicU64::new(0),
            name: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Record `name` (at most [`MAX_TYPE_NAME`] bytes; checked by `check_type`).
    pub(crate) fn store(&self, name: &str) {
        let b = name.as_bytes();
        debug_assert!(b.len() <= MAX_TYPE_NAME);
        for (i, w) in self.name.iter().enumerate() {
            let mut word = [0u8; 8];
            for (j, x) in word.iter_mut().enumerate() {
                *x = b.get(i * 8 + j).copied().unwrap_or(0);
            }
            // Relaxed: published by the segment's READY store (Release), as the geometry.
            w.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        // Relaxed: as above.
        self.len.store(b.len() as u64, Ordering::Relaxed);
    }

    /// The recorded name, or why it is not one.
    pub(crate) fn load(&self) -> Result<String, String> {
        // Relaxed: the open loaded READY with Acquire, which made the tag visible; it never
        // changes afterwards.
        let len = self.len.load(Ordering::Relaxed);
        if len == 0 || len > MAX_TYPE_NAME as u64 {
            return Err(format!(
                "type name length {len} is not in 1..={MAX_TYPE_NAME}"
            ));
        }
        let mut bytes = Vec::with_capacity(MAX_TYPE_NAME);
        for w in &self.name {
            // Relaxed: as above.
            bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        bytes.truncate(len as usize);
        String::from_utf8(bytes).map_err(|_| "the type name is not UTF-8".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(u64::TYPE_NAME, "u64");
        assert_eq!(<[u8; 16]>::TYPE_NAME, "[u8; 16]");
        assert_eq!(<[[f32; 4]; 10]>::TYPE_NAME, "[[f32; 4]; 10]");
        assert_eq!(<[i8; 0]>::TYPE_NAME, "[i8; 0]");
    }

    #[cfg(not(loom))]
    #[test]
    fn tag_round_trip() {
        let t = TypeTag::new();
        assert!(t.load().is_err());
        for name in ["u8", "feed::Tick", &"x".repeat(MAX_TYPE_NAME)] {
            t.store(name);
            assert_eq!(t.load().as_deref(), Ok(name));
        }
    }
}
