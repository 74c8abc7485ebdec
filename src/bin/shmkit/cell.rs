//! `shmkit value …` and `shmkit array …`: create, read and write named typed cells
//! (`shmkit::cell`), and what `shmkit info` shows for them.
//!
//! Values are text in the typecode's syntax (`Typecode::parse`): integers in range, floats,
//! one byte for `c`, one character for `u`, `true`/`false`/`1`/`0` for `?`. A value that does
//! not fit, an index out of range, or a segment holding another kind or type of cell is an
//! error naming both sides, exit 1, and nothing is written.

use std::time::Duration;

use crate::{create_error, outln, refuse_other_kind, seconds, segment_name, CmdResult, Stop};
use shmkit::cell::{AnyArray, AnyValue, CellMode, ReadOnlyCell, Typecode};
use shmkit::segment::{Kind, Lifetime};

/// `shmkit value …`.
#[derive(clap::Args)]
pub(crate) struct ValueArgs {
    #[command(subcommand)]
    cmd: ValueCmd,
}

/// `shmkit array …`.
#[derive(clap::Args)]
pub(crate) struct ArrayArgs {
    #[command(subcommand)]
    cmd: ArrayCmd,
}

#[derive(clap::Args)]
struct CreateFlags {
    /// locked (Python's lock=True), atomic (integer, c, u, ? only) or seqlock (the library's
    /// `cell_mode`).
    #[arg(long, default_value = "locked", value_parser = cell_mode)]
    cell_mode: CellMode,
    /// Permission bits, octal (as every create verb's `--mode`).
    #[arg(long, default_value = "600", value_parser = crate::mode)]
    mode: u32,
    /// Do not reserve the memory now (as `shmkit create --sparse`): a process that touches a
    /// page when /dev/shm is full dies of SIGBUS.
    #[arg(long)]
    sparse: bool,
    /// `persistent`: lives until removed; `owned`: `shmkit gc` removes it once this process
    /// (its creator) is dead (as `shmkit queue create`).
    #[arg(long, default_value = "persistent", value_parser = crate::lifetime)]
    lifetime: Lifetime,
}

#[derive(clap::Subcommand)]
enum ValueCmd {
    /// Create a value cell of TYPECODE (b B h H i I l L q Q f d c u ?), holding INIT or zero.
    Create {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// The element typecode.
        #[arg(value_parser = typecode)]
        typecode: Typecode,
        /// Initial value (default zero).
        #[arg(allow_hyphen_values = true)]
        init: Option<String>,
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Print the value.
    Get {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// Seconds to wait for the lock or a write under way.
        #[arg(long, default_value = "10", value_parser = seconds)]
        timeout: Duration,
    },
    /// Set the value.
    Set {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// The new value, in the typecode's syntax.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Seconds to wait for the lock.
        #[arg(long, default_value = "10", value_parser = seconds)]
        timeout: Duration,
    },
}

#[derive(clap::Subcommand)]
enum ArrayCmd {
    /// Create an array of LEN zeroed elements of TYPECODE.
    Create {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// The element typecode.
        #[arg(value_parser = typecode)]
        typecode: Typecode,
        /// Number of elements (at least 1).
        len: usize,
        #[command(flatten)]
        flags: CreateFlags,
    },
    /// Print elements, one per line: all, one INDEX, or START:END (END excluded).
    Get {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// INDEX or START:END (default: all); negative ones count from the end (`-1`: the
        /// last element, `-3:` the last three).
        #[arg(allow_hyphen_values = true)]
        at: Option<String>,
        /// Seconds to wait for the lock or a write under way.
        #[arg(long, default_value = "10", value_parser = seconds)]
        timeout: Duration,
    },
    /// Set elements INDEX, INDEX + 1, … to VALUES (one write under the lock).
    Set {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// Index of the first element to set (negative counts from the end).
        #[arg(allow_negative_numbers = true)]
        index: String,
        /// The new values, in the typecode's syntax: elements INDEX, INDEX + 1, … in one write
        /// under the lock. Every element (INDEX 0) is a whole-array write, which also repairs
        /// an array whose lock holder died. Negative numbers are values; after `--`, so is
        /// anything else that starts with `-` (`-- -inf`).
        #[arg(allow_negative_numbers = true, required = true, num_args = 1..)]
        values: Vec<String>,
        /// Seconds to wait for the lock.
        #[arg(long, default_value = "10", value_parser = seconds)]
        timeout: Duration,
    },
}

fn typecode(s: &str) -> Result<Typecode, String> {
    Typecode::from_str_code(s)
        .ok_or_else(|| format!("{s:?} is not a typecode: one of b B h H i I l L q Q f d c u ?"))
}

fn cell_mode(s: &str) -> Result<CellMode, String> {
    CellMode::from_name(s)
        .ok_or_else(|| format!("{s:?} is not a cell mode: locked, atomic or seqlock"))
}

pub(crate) fn value(args: ValueArgs) -> CmdResult {
    match args.cmd {
        ValueCmd::Create {
            name,
            typecode,
            init,
            flags,
        } => {
            let init = match &init {
                Some(s) => Some(
                    typecode
                        .parse(s)
                        // INIT and TYPECODE are both on the command line: a usage error.
                        .map_err(|e| Stop::Usage(format!("value {name:?}: {e}")))?,
                ),
                None => None,
            };
            AnyValue::options()
                .cell_mode(flags.cell_mode)
                .mode(flags.mode)
                .sparse(flags.sparse)
                .lifetime(flags.lifetime)
                .create(&name, typecode, init.as_deref())
                .map_err(create_error)?;
            Ok(())
        }
        ValueCmd::Get { name, timeout } => {
            refuse_other_kind(&name, CELLS, "a value cell", true)?;
            let (typecode, b) = match AnyValue::open(&name) {
                Ok(v) => (
                    v.typecode(),
                    v.get_bytes_timeout(timeout).map_err(|e| waited(&name, e))?,
                ),
                // Read permission only: an atomic or seqlock cell reads without writing.
                Err(e @ shmkit::Error::PermissionDenied { .. }) => {
                    let cell = open_read_only(&name, Kind::VALUE, e)?;
                    let t = cell.info().typecode.and_then(Typecode::from_char);
                    (t, cell.read(0, 1, timeout).map_err(|e| waited(&name, e))?)
                }
                Err(e) => return Err(e.to_string().into()),
            };
            match typecode {
                Some(t) => outln!("{}", t.format(&b)),
                None => outln!("{}", hex(&b)),
            }
        }
        ValueCmd::Set {
            name,
            value,
            timeout,
        } => {
            refuse_other_kind(&name, CELLS, "a value cell", true)?;
            let v = AnyValue::open(&name).map_err(|e| e.to_string())?;
            let t = v.typecode().ok_or_else(|| {
                format!(
                    "segment {name:?} holds {}, a user type: the CLI sets typecode cells only",
                    v.describe()
                )
            })?;
            let b = t
                .parse(&value)
                .map_err(|e| format!("segment {name:?} holds {}: {e}", v.describe()))?;
            v.set_bytes_timeout(&b, timeout)
                .map_err(|e| waited(&name, e))?;
            Ok(())
        }
    }
}

/// `value get`/`array get` on a cell this user may only read: open it read-only
/// ([`shmkit::cell::ReadOnlyCell`], one mapping for the geometry and the read: atomic and
/// seqlock modes). A cell of another kind than `kind` (an array for `value get`) is refused
/// as the read-write open refuses it, naming both. A locked cell's read takes its lock, so it
/// reports `denied` (the permission error) and why.
fn open_read_only(name: &str, kind: Kind, denied: shmkit::Error) -> Result<ReadOnlyCell, Stop> {
    let cell = ReadOnlyCell::open(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("segment {name:?} is not a cell"))?;
    if cell.kind() != kind {
        return Err(Stop::Failed(
            shmkit::Error::CellMismatch {
                name: name.to_owned(),
                expected: kind.with_article(),
                found: cell.info().cell.clone(),
            }
            .to_string(),
        ));
    }
    if cell.info().mode == CellMode::Locked {
        return Err(Stop::Failed(format!(
            "{denied} (a locked-mode cell is read under its lock, which needs write \
             permission; `shmkit info {name}` shows it read without the lock)"
        )));
    }
    Ok(cell)
}

/// A cell call's error as the CLI says it ([`crate::waited`]).
fn waited(name: &str, e: shmkit::Error) -> String {
    crate::waited(
        name,
        e,
        "its lock (held by another process) or the end of a write (a writer that died \
         mid-write leaves a seqlock cell so until a whole-value `set`; `shmkit info` shows \
         which)",
    )
}

/// The kinds the value and array verbs let through to their open: a value opened as an
/// array (or the reverse) gets the library's message, which names both ("holds
/// Array<d>[4], asked for a value").
const CELLS: &[Kind] = &[Kind::VALUE, Kind::ARRAY];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn array(args: ArrayArgs) -> CmdResult {
    match args.cmd {
        ArrayCmd::Create {
            name,
            typecode,
            len,
            flags,
        } => {
            AnyArray::options()
                .cell_mode(flags.cell_mode)
                .mode(flags.mode)
                .sparse(flags.sparse)
                .lifetime(flags.lifetime)
                .create(&name, typecode, len, None)
                .map_err(create_error)?;
            Ok(())
        }
        ArrayCmd::Get { name, at, timeout } => {
            // One handle for the geometry and the read (a second open could find another
            // object under the name).
            let span_of = |len| match at.as_deref() {
                None => Ok((0, len)),
                Some(s) => span(s, len),
            };
            refuse_other_kind(&name, CELLS, "an array cell", true)?;
            let (b, size, typecode) = match AnyArray::open(&name) {
                Ok(a) => {
                    let (first, count) = span_of(a.len())?;
                    let b = a.read_bytes_timeout(first, count, timeout);
                    (
                        b.map_err(|e| waited(&name, e))?,
                        a.elem_size(),
                        a.typecode(),
                    )
                }
                // Read permission only: an atomic or seqlock cell reads without writing.
                Err(e @ shmkit::Error::PermissionDenied { .. }) => {
                    let c = open_read_only(&name, Kind::ARRAY, e)?;
                    let (first, count) = span_of(c.info().len)?;
                    let b = c
                        .read(first, count, timeout)
                        .map_err(|e| waited(&name, e))?;
                    let t = c.info().typecode.and_then(Typecode::from_char);
                    (b, c.info().elem_size, t)
                }
                Err(e) => return Err(e.to_string().into()),
            };
            for e in b.chunks_exact(size) {
                match typecode {
                    Some(t) => outln!("{}", t.format(e))?,
                    None => outln!("{}", hex(e))?,
                }
            }
            Ok(())
        }
        ArrayCmd::Set {
            name,
            index,
            values,
            timeout,
        } => {
            refuse_other_kind(&name, CELLS, "an array cell", true)?;
            let a = AnyArray::open(&name).map_err(|e| e.to_string())?;
            let t = a.typecode().ok_or_else(|| {
                format!(
                    "segment {name:?} holds {}, a user type: the CLI sets typecode cells only",
                    a.describe()
                )
            })?;
            let index = self::index(&index, a.len())?;
            if index >= a.len() || values.len() > a.len() - index {
                return Err(Stop::Failed(format!(
                    "{} out of range: segment {name:?} holds {} (indices 0..{})",
                    match values.len() {
                        1 => format!("index {index} is"),
                        n => format!("indices {index}..{} are", index.saturating_add(n)),
                    },
                    a.describe(),
                    a.len()
                )));
            }
            let mut b = Vec::with_capacity(values.len() * a.elem_size());
            for v in &values {
                b.extend(
                    t.parse(v)
                        .map_err(|e| format!("segment {name:?} holds {}: {e}", a.describe()))?,
                );
            }
            a.write_bytes_timeout(index, &b, timeout)
                .map_err(|e| waited(&name, e))?;
            Ok(())
        }
    }
}

/// Index `x` of an array of `len` elements, a negative one counting from the end (as
/// Python's and `list get`'s); past the end is left to the library's check, which names the
/// array. Not a number: a usage error; before the start: a failure (it depends on `len`).
fn index(x: &str, len: usize) -> Result<usize, Stop> {
    let v: i64 = x.parse().map_err(|_| {
        Stop::Usage(format!(
            "bad index {x:?}: a whole number (negative ones count from the end)"
        ))
    })?;
    if v >= 0 {
        return Ok(v as usize);
    }
    usize::try_from(v.unsigned_abs())
        .ok()
        .and_then(|back| len.checked_sub(back))
        .ok_or_else(|| Stop::Failed(format!("index {v} is before the start of {len} elements")))
}

/// `INDEX` or `START:END` (either side may be omitted; negative ones count from the end) as
/// (first, count); past the end is left to the library's check, which names the array.
fn span(s: &str, len: usize) -> Result<(usize, usize), Stop> {
    let num = |x: &str, default: usize| match x {
        "" => Ok(default),
        x => index(x, len),
    };
    match s.split_once(':') {
        None => Ok((num(s, 0)?, 1)),
        Some((a, b)) => {
            let (a, b) = (num(a, 0)?, num(b, len)?);
            if b < a && a > len {
                return Err(Stop::Usage(format!(
                    "range {s:?} starts past the end (indices 0..{len})"
                )));
            }
            if b < a {
                return Err(Stop::Usage(format!("range {s:?} ends before it starts")));
            }
            Ok((a, b - a))
        }
    }
}

/// The state `shmkit info` shows for a cell (`None` if `name` is not one).
pub(crate) fn info_state(name: &str) -> Result<Option<serde_json::Value>, String> {
    let Some(info) = shmkit::cell::inspect(name).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    crate::info::summarized(&info).map(Some)
}
