//! SPEC.md's layout tables, checked against the code (`cargo test --lib spec_tables`).
//!
//! Each layout table of SPEC.md is found by its section heading (and its index among the tables
//! of that section), its rows are parsed (`offset | size | field`), and every row is compared
//! with an explicit mapping, written below table by table, from SPEC's field name to the code:
//! the offset and size of a field of the `#[repr(C)]` struct, or a named constant. The test
//! fails, naming the section, the field, SPEC's value and the code's value, when
//!
//! - a row's offset, per-element stride, size, or a number its text states (`= 384`, `` `seq`
//!   at 136 ``) differs from the code's;
//! - a row the mapping expects is gone from SPEC (a renamed or removed field);
//! - SPEC has a row the mapping does not cover, unless the table's allowlist names it as not
//!   a struct field (reserved words, padding);
//! - two rows of a table overlap, or a section heading's "N bytes, A-aligned" is not the
//!   struct's size and alignment.
//!
//! Besides the layout tables it checks §3.1 (every kind the code names, with its value),
//! §6.1.1 (each primitive's kind, payload size and state alignment), and every layout
//! fingerprint's description string (each `fingerprint("shmkit …")` call under `src/`, found in
//! the source, must be written in SPEC.md word for word) with §3.2's FNV-1a constants.
//!
//! What it cannot check is named in the mapping as a *formula* (for example the slot size `Z`
//! of `384 + Z i`, or a size `S`): the test then requires SPEC to write exactly those formula
//! terms, and checks every number around them. Not checked at all: §9.1 (CPython's own
//! ShareableList layout, which the code parses procedurally, with no struct or constants to
//! compare), and the prose around the tables.
//!
//! Offsets come from [`field!`]: `addr_of!` on an uninitialised value, which works through
//! nested fields and array elements (nested `offset_of!` needs Rust 1.82; the crate's MSRV is
//! 1.77). The layout structs are crate-private, hence this module lives inside the crate.

use std::mem::size_of;
use std::sync::atomic::AtomicU64;

const SPEC: &str = include_str!("../SPEC.md");

// ---------------------------------------------------------------------------------------------
// Parsing SPEC.md

/// A number or a sum such as `384 + 128 i` or `4480 + Z i + 8`: the sum of its numbers, the
/// numeric per-element stride (`128 i`, `32·i`, `8 j`), and the terms that are formulas.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expr {
    value: u64,
    stride: Option<u64>,
    formula: Vec<String>,
}

impl Expr {
    fn parse(cell: &str) -> Expr {
        let cell = cell.replace(['`', '*'], "");
        let mut e = Expr {
            value: 0,
            stride: None,
            formula: Vec::new(),
        };
        for term in cell.split('+').map(str::trim) {
            let (num, rest) = term.split_at(
                term.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(term.len()),
            );
            let rest = rest.trim_start_matches([' ', '·', '*']);
            match (num.parse::<u64>(), rest) {
                (Ok(n), "") => e.value += n,
                (Ok(n), "i" | "j") => e.stride = Some(n),
                _ => e.formula.push(term.to_owned()),
            }
        }
        e
    }
}

/// As SPEC writes it: `2432 + 128 i`, `4480 + 8 + Z i`.
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.value)?;
        if let Some(s) = self.stride {
            write!(f, " + {s} i")?;
        }
        self.formula.iter().try_for_each(|t| write!(f, " + {t}"))
    }
}

/// One row of a layout table, as written.
#[derive(Debug)]
struct Row {
    /// 1-based line in SPEC.md.
    line: usize,
    offset: Expr,
    /// The object offset column (§10.1), if the table has one.
    object_offset: Option<Expr>,
    /// The size: the size column, or the length of an `a..b` offset range; `None` if SPEC
    /// states neither (then the table's `bare_size` applies).
    size: Option<Expr>,
    field: String,
    /// The field and the meaning cells (what `Expect::says` searches).
    text: String,
}

/// Split a table line into cells (`\|` does not split).
fn cells(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut prev = ' ';
    for c in line.trim().trim_start_matches('|').chars() {
        if c == '|' && prev != '\\' {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
        prev = c;
    }
    if out.last().is_some_and(|c| c.trim().is_empty()) {
        out.pop();
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// A SPEC.md line and its 1-based number.
type Line = (usize, &'static str);
/// A table row's cells and its 1-based line number.
type Cells = (usize, Vec<String>);

/// The heading line of section `section` ("7.2", "6.2.1", "3.") and the lines up to the
/// next heading.
fn section(section: &str) -> Result<(&'static str, Vec<Line>), String> {
    let lines: Vec<Line> = SPEC.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
    let heading = |l: &str| l.starts_with('#');
    let start = lines
        .iter()
        .position(|(_, l)| {
            heading(l)
                && l.trim_start_matches('#')
                    .trim_start()
                    .starts_with(&format!("{section} "))
        })
        .ok_or_else(|| format!("§{section}: no such heading in SPEC.md"))?;
    let body = lines[start + 1..]
        .iter()
        .take_while(|(_, l)| !heading(l))
        .copied()
        .collect();
    Ok((lines[start].1, body))
}

/// The `index`th table (from 0) of `section`: its header cells and its body rows (with their
/// 1-based line numbers), or why there is none.
fn raw_table(section: &str, index: usize) -> Result<(Vec<String>, Vec<Cells>), String> {
    let (_, body) = self::section(section)?;
    // Tables: runs of lines starting with '|'.
    let mut tables: Vec<&[Line]> = Vec::new();
    let mut rest = &body[..];
    while let Some(t0) = rest.iter().position(|(_, l)| l.starts_with('|')) {
        let len = rest[t0..]
            .iter()
            .take_while(|(_, l)| l.starts_with('|'))
            .count();
        tables.push(&rest[t0..t0 + len]);
        rest = &rest[t0 + len..];
    }
    let t = tables.get(index).ok_or_else(|| {
        format!(
            "§{section}: table {index} not found (the section has {})",
            tables.len()
        )
    })?;
    let header = cells(t[0].1);
    Ok((
        header,
        t.iter().skip(2).map(|(n, l)| (*n, cells(l))).collect(),
    ))
}

/// The `index`th table (from 0) of section `section` as a layout table: its body rows, or why
/// there is none.
fn table(section: &str, index: usize) -> Result<Vec<Row>, String> {
    let (header, body) = raw_table(section, index)?;
    let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let off_col = col(&["offset", "payload offset", "offset from T", "bits"])
        .ok_or_else(|| format!("§{section} table {index}: no offset column in {header:?}"))?;
    let field_col =
        col(&["field"]).ok_or_else(|| format!("§{section} table {index}: no field column"))?;
    let size_col = col(&["size"]);
    let obj_col = col(&["object offset"]);
    let mut rows = Vec::new();
    for (line, c) in body {
        let get = |i: usize| c.get(i).map(String::as_str).unwrap_or("");
        let raw_off = get(off_col).replace('`', "");
        let (offset, range) = match raw_off.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (Expr::parse(a), Expr::parse(b));
                let len = (a.formula.is_empty() && b.formula.is_empty()).then(|| b.value - a.value);
                (a, len)
            }
            None => (Expr::parse(&raw_off), None),
        };
        let size = match (size_col, range) {
            (Some(s), _) => Some(Expr::parse(get(s))),
            (None, Some(len)) => Some(Expr::parse(&len.to_string())),
            (None, None) => None,
        };
        rows.push(Row {
            line,
            offset,
            object_offset: obj_col.map(|o| Expr::parse(get(o))),
            size,
            field: get(field_col).to_owned(),
            text: c[field_col.min(c.len())..].join(" | "),
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// The mapping's vocabulary

/// What the code says one SPEC row must be.
struct Expect {
    /// How SPEC's field cell starts (backticks included).
    field: &'static str,
    /// The offset, or the base of a per-element row (the sum of its numbers).
    offset: usize,
    /// The per-element stride, for rows such as `384 + 128 i`.
    stride: Option<usize>,
    /// Terms of SPEC's offset that are formulas, not checked here (e.g. `Z i`).
    formula: &'static [&'static str],
    /// The size; `None`: SPEC's size is a formula (e.g. `S`), not checked here.
    size: Option<usize>,
    /// A value the row states as `= N` (in its field or meaning cell).
    value: Option<u64>,
    /// Texts the field or meaning cells must contain, made from the code's numbers (e.g. "`seq` at 136").
    says: Vec<String>,
}

/// A field at `(offset, size)`.
fn at(field: &'static str, (offset, size): (usize, usize)) -> Expect {
    Expect {
        field,
        offset,
        stride: None,
        formula: &[],
        size: Some(size),
        value: None,
        says: Vec::new(),
    }
}

/// Element `i` of an array at `base + stride · i`, `size` bytes each.
fn each(field: &'static str, base: usize, stride: usize, size: usize) -> Expect {
    Expect {
        stride: Some(stride),
        ..at(field, (base, size))
    }
}

impl Expect {
    /// SPEC's offset has these formula terms besides the numbers checked.
    fn formula(self, terms: &'static [&'static str]) -> Expect {
        Expect {
            formula: terms,
            ..self
        }
    }
    /// SPEC's size is a formula.
    fn size_formula(self) -> Expect {
        Expect { size: None, ..self }
    }
    /// SPEC's field or meaning cell contains `text`.
    fn says(mut self, text: String) -> Expect {
        self.says.push(text);
        self
    }
    /// The row says `= value`.
    fn value(self, value: u64) -> Expect {
        Expect {
            value: Some(value),
            ..self
        }
    }
}

/// `(offset, size)` of a field of a `#[repr(C)]` type, through nested fields and array
/// elements: `field!(RingControl, prod.0.tail)`, `field!(Control, producers[1])`.
macro_rules! field {
    ($t:ty, $($path:tt)+) => {{
        let base = std::mem::MaybeUninit::<$t>::uninit();
        let p = base.as_ptr();
        // SAFETY: `addr_of!` only computes the address of a field of `base` (allocated and
        // aligned; array indexes are in bounds): nothing is read, no reference is formed.
        let f = unsafe { std::ptr::addr_of!((*p).$($path)+) };
        (f as usize - p as usize, size_of_pointee(f))
    }};
}

fn size_of_pointee<T>(_: *const T) -> usize {
    size_of::<T>()
}

/// "N bytes, A-aligned": the size and alignment of `T`, as a section heading states them.
fn whole<T>() -> String {
    format!(
        "{} bytes, {}-aligned",
        size_of::<T>(),
        std::mem::align_of::<T>()
    )
}

/// The bit range `(first bit, bit count)` of a word with one contiguous run of ones.
fn bits(w: u64) -> (usize, usize) {
    assert_eq!(
        w.count_ones() + w.leading_zeros() + w.trailing_zeros(),
        64,
        "{w:#x} is one run"
    );
    (w.trailing_zeros() as usize, w.count_ones() as usize)
}

/// One SPEC table and the code it must match.
struct Table {
    section: &'static str,
    /// Which table of the section, from 0.
    index: usize,
    /// The size of a row that gives none (§8.1: all words are `u64`).
    bare_size: Option<u64>,
    expect: Vec<Expect>,
    /// Rows that are not struct fields (how their field cell starts): reserved words, padding.
    not_fields: &'static [&'static str],
    /// What the section's heading must say about the whole struct ("32 bytes, 8-aligned").
    heading_says: Option<String>,
}

fn check(t: &Table, errors: &mut Vec<String>) {
    let rows = match table(t.section, t.index) {
        Ok(r) => r,
        Err(e) => return errors.push(e),
    };
    let sec = t.section;
    if let Some(text) = &t.heading_says {
        match section(sec) {
            Ok((h, _)) if h.contains(text.as_str()) => {}
            Ok((h, _)) => errors.push(format!(
                "§{sec}: heading {h:?} should say {text:?} (the code's size and alignment)"
            )),
            Err(e) => errors.push(e),
        }
    }
    // Rows at plain offsets with plain sizes (fields, reserved words, padding) never overlap.
    let mut spans: Vec<(u64, u64, &Row)> = rows
        .iter()
        .filter(|r| r.offset.stride.is_none() && r.offset.formula.is_empty())
        .filter_map(|r| {
            let s = r
                .size
                .clone()
                .or_else(|| t.bare_size.map(|b| Expr::parse(&b.to_string())))?;
            (s.formula.is_empty() && s.stride.is_none()).then_some((
                r.offset.value,
                r.offset.value + s.value,
                r,
            ))
        })
        .collect();
    spans.sort_by_key(|&(a, b, _)| (a, b));
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            errors.push(format!(
                "§{sec}: rows overlap: {:?} (SPEC.md line {}, bytes {}..{}) and {:?} (line {}, bytes {}..{})",
                w[0].2.field,
                w[0].2.line,
                w[0].0,
                w[0].1,
                w[1].2.field,
                w[1].2.line,
                w[1].0,
                w[1].1
            ));
        }
    }
    for r in &rows {
        let mapped: Vec<&Expect> = t
            .expect
            .iter()
            .filter(|e| r.field.starts_with(e.field))
            .collect();
        let allowed = t
            .not_fields
            .iter()
            .filter(|a| r.field.starts_with(*a))
            .count();
        let name: String = r.field.chars().take(48).collect();
        let at = format!("§{sec} field {name:?} (SPEC.md line {})", r.line);
        match (mapped.as_slice(), allowed) {
            ([], 0) => errors.push(format!(
                "{at}: row not covered by the mapping in src/spec_tables.rs (map it, or allowlist it if it is not a struct field)"
            )),
            ([], _) => {}
            ([e], 0) => compare(e, r, t.bare_size, &at, errors),
            _ => errors.push(format!("{at}: matched by more than one mapping entry")),
        }
    }
    for e in &t.expect {
        let n = rows.iter().filter(|r| r.field.starts_with(e.field)).count();
        if n != 1 {
            errors.push(format!(
                "§{sec} table {}: the mapping expects one row whose field starts with {:?}; SPEC has {n} (renamed or removed?)",
                t.index, e.field
            ));
        }
    }
}

fn compare(e: &Expect, r: &Row, bare_size: Option<u64>, at: &str, errors: &mut Vec<String>) {
    let mut err = |what: &str, spec: String, code: String| {
        errors.push(format!("{at}: {what}: SPEC says {spec}, code says {code}"));
    };
    let formula: Vec<String> = e.formula.iter().map(|s| s.to_string()).collect();
    let want = Expr {
        value: e.offset as u64,
        stride: e.stride.map(|s| s as u64),
        formula,
    };
    if r.offset != want {
        err("offset", r.offset.to_string(), want.to_string());
    }
    if let Some(o) = &r.object_offset {
        let obj = Expr {
            value: want.value + crate::segment::HEADER_SIZE as u64,
            ..want.clone()
        };
        if *o != obj {
            err("object offset", o.to_string(), obj.to_string());
        }
    }
    // A row that states no size (§8.1) is a bare word of the table's `bare_size`, unless the
    // mapping says its size is a formula (then SPEC gives it in the meaning column).
    let bare = bare_size.map(|b| Expr::parse(&b.to_string()));
    match (r.size.as_ref().or(bare.as_ref()), e.size) {
        (Some(s), Some(n)) if s.formula.is_empty() && s.stride.is_none() => {
            if s.value != n as u64 {
                err("size", s.value.to_string(), n.to_string());
            }
        }
        (_, None) if r.size.is_none() => {} // no size stated: a formula in the prose
        (Some(s), None) if !s.formula.is_empty() => {} // a formula: not checked
        (s, n) => err(
            "size",
            s.map_or("none".to_owned(), Expr::to_string),
            n.map_or("a formula".to_owned(), |n| n.to_string()),
        ),
    }
    let says = e
        .value
        .map(|v| format!("= {v}"))
        .into_iter()
        .chain(e.says.iter().cloned());
    for text in says {
        if !r.text.contains(&text) {
            err(
                "row text",
                format!("{:?}", r.text),
                format!("it should say {text:?}"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The mapping, table by table

fn tables() -> Vec<Table> {
    use crate::cell::layout as cell;
    use crate::frames::layout as frames;
    use crate::list::trailer;
    use crate::queue::mpmc::layout as mpmc;
    use crate::queue::mpmc_bytes as mb;
    use crate::queue::ring_control::RingControl;
    use crate::segment::RawHeader;
    use crate::sync::{
        BarrierState, ConditionState, EventState, LockState, SemaphoreState, WaitQueue,
    };
    let u64_size = size_of::<AtomicU64>();

    vec![
        // §3 Segment header.
        Table {
            section: "3.",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`magic`", field!(RawHeader, magic)),
                at("`version`", field!(RawHeader, version)),
                at("`kind`", field!(RawHeader, kind)),
                at("`fingerprint`", field!(RawHeader, fingerprint)),
                at("`header_size`", field!(RawHeader, header_size)),
                at("`payload_size`", field!(RawHeader, payload_size)),
                at("`creator_token`", field!(RawHeader, creator_token)),
                at("`creator_pid`", field!(RawHeader, creator_pid)),
                at("`flags`", field!(RawHeader, flags)),
                at("`state`", field!(RawHeader, state)),
                at("`lifetime`", field!(RawHeader, lifetime)),
                at("`created_unix_ns`", field!(RawHeader, created_unix_ns)),
                at("`creator_pidns`", field!(RawHeader, creator_pidns)),
                at("reserved", field!(RawHeader, reserved)),
            ],
            not_fields: &[],
            heading_says: None,
        },
        // §5.1 WaitQueue.
        Table {
            section: "5.1",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`seq`", field!(WaitQueue, seq)),
                at("`sleepers`", field!(WaitQueue, sleepers)),
            ],
            not_fields: &[],
            heading_says: Some(whole::<WaitQueue>()),
        },
        // §6.2.1 LockState (its `MutexCore`).
        Table {
            section: "6.2.1",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`magic`", field!(LockState, core.magic)),
                at("`depth`", field!(LockState, core.depth)),
                at("`owner`", field!(LockState, core.owner)),
                at("`queue`", field!(LockState, core.queue)),
                at("`thread`", field!(LockState, core.thread)),
                at("`pid`", field!(LockState, core.pid)),
            ],
            not_fields: &[],
            heading_says: Some(whole::<LockState>()),
        },
        // §6.4.1 SemaphoreState.
        Table {
            section: "6.4.1",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`value`", field!(SemaphoreState, value)),
                at("`sleepers`", field!(SemaphoreState, sleepers)),
                at("`max`", field!(SemaphoreState, max)),
                at("`initial`", field!(SemaphoreState, initial)),
            ],
            not_fields: &[],
            heading_says: Some(whole::<SemaphoreState>()),
        },
        // §6.5.1 EventState.
        Table {
            section: "6.5.1",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`word`", field!(EventState, word)),
                at("`sleepers`", field!(EventState, sleepers)),
            ],
            not_fields: &[],
            heading_says: Some(whole::<EventState>()),
        },
        // §6.6.1 ConditionState (its wait queue is the field `seq`).
        Table {
            section: "6.6.1",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`lock`", field!(ConditionState, lock)),
                at("`queue`", field!(ConditionState, seq)),
                at("`grants`", field!(ConditionState, grants)),
            ],
            not_fields: &[],
            heading_says: Some(whole::<ConditionState>()),
        },
        // §6.7.1 BarrierState.
        Table {
            section: "6.7.1",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`word`", field!(BarrierState, word)),
                at("`parties`", field!(BarrierState, parties)),
                at("reserved", field!(BarrierState, reserved)),
                at("`queue`", field!(BarrierState, queue)),
            ],
            not_fields: &[],
            heading_says: Some(whole::<BarrierState>()),
        },
        // §7.1.4 Element type tag (as the SPSC control block holds it; §7.4 checks mpmc's).
        Table {
            section: "7.1.4",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`type_name_len`", field!(RingControl, geo.0.tag.len)),
                at("`type_name`", field!(RingControl, geo.0.tag.name)),
            ],
            not_fields: &[],
            heading_says: None,
        },
        // §7.2 SPSC control block (shared by the bytes ring, §7.3).
        Table {
            section: "7.2",
            index: 0,
            bare_size: None,
            expect: vec![
                at("`capacity`", field!(RingControl, geo.0.capacity)),
                at("`elem_size`", field!(RingControl, geo.0.elem_size)),
                at("`elem_align`", field!(RingControl, geo.0.elem_align)),
                at("`data_offset`", field!(RingControl, geo.0.data_offset))
                    .value(crate::queue::ring_control::CONTROL_SIZE as u64),
                at("`state`", field!(RingControl, geo.0.state)),
                at("producer owner word", field!(RingControl, geo.0.producer)),
                at("consumer owner word", field!(RingControl, geo.0.consumer)),
                at("`type_name_len`", field!(RingControl, geo.0.tag.len)),
                at("`type_name`", field!(RingControl, geo.0.tag.name)),
                at("`tail`", field!(RingControl, prod.0.tail)),
                at("`not_empty`", field!(RingControl, prod.0.not_empty))
                    .says(format!(
                        "`seq` at {}",
                        field!(RingControl, prod.0.not_empty.seq).0
                    ))
                    .says(format!(
                        "`sleepers` at {}",
                        field!(RingControl, prod.0.not_empty.sleepers).0
                    )),
                at(
                    "reserved, 0 (v3's `consumer_waiting`)",
                    field!(RingControl, prod.0.reserved),
                ),
                at("`head`", field!(RingControl, cons.0.head)),
                at("`not_full`", field!(RingControl, cons.0.not_full))
                    .says(format!(
                        "`seq` at {}",
                        field!(RingControl, cons.0.not_full.seq).0
                    ))
                    .says(format!(
                        "`sleepers` at {}",
                        field!(RingControl, cons.0.not_full.sleepers).0
                    )),
                at(
                    "reserved, 0 (v3's `producer_waiting`)",
                    field!(RingControl, cons.0.reserved),
                ),
                // The slots: the slot size Z and the stamp's offset o in the slot are functions
                // of the element size (`spsc::slot_size`), formulas here; the base is checked.
                at(
                    "slot i (0..capacity): the element",
                    (size_of::<RingControl>(), 0),
                )
                .formula(&["Z i"])
                .size_formula(),
                at("slot i: `stamp`", (size_of::<RingControl>(), u64_size)).formula(&["Z i", "o"]),
            ],
            // The rest of each 128-byte line (`CachePadded`).
            not_fields: &["zero"],
            heading_says: None,
        },
        // §7.3 Bytes ring record header bits (`bytes::header`).
        Table {
            section: "7.3",
            index: 0,
            bare_size: None,
            expect: {
                use crate::queue::bytes::header;
                vec![
                    at("`len`", bits(header(0, 0, 0, u64::from(u32::MAX)))),
                    at("`lap`", bits(header(0, u64::MAX, 0, 0))),
                    at("`kind`", bits(header(0xff, 0, 0, 0))),
                ]
            },
            not_fields: &[],
            heading_says: None,
        },
        // §7.4 MPMC control block and slots.
        Table {
            section: "7.4",
            index: 0,
            bare_size: None,
            expect: {
                use mpmc::Control;
                let claim = size_of::<mpmc::Claim>();
                let (p0, p1) = (
                    field!(Control, producers[0]).0,
                    field!(Control, producers[1]).0,
                );
                let (c0, c1) = (
                    field!(Control, consumers[0]).0,
                    field!(Control, consumers[1]).0,
                );
                let data = mpmc::DATA_OFFSET as usize;
                vec![
                    at("`capacity`", field!(Control, geo.0.capacity)),
                    at("`elem_size`", field!(Control, geo.0.elem_size)),
                    at("`elem_align`", field!(Control, geo.0.elem_align)),
                    at("`slot_size`", field!(Control, geo.0.slot_size)),
                    at("`data_offset`", field!(Control, geo.0.data_offset)).value(data as u64),
                    at("`handles`", field!(Control, geo.0.handles)).value(mpmc::MAX_HANDLES as u64),
                    at("`state`", field!(Control, geo.0.state)),
                    at("`type_name_len`", field!(Control, geo.0.tag.len)),
                    at("`type_name`", field!(Control, geo.0.tag.name)),
                    at("`tail`", field!(Control, tail.0.tail)),
                    at("`not_empty`", field!(Control, tail.0.not_empty)),
                    at("`head`", field!(Control, head.0.head)),
                    at("`not_full`", field!(Control, head.0.not_full)),
                    each("producer claim slot i", p0, p1 - p0, claim),
                    each("consumer claim slot i", c0, c1 - c0, claim),
                    // Slot i at data + Z i: Z is `slot_size(S)`, a formula; the stamp and the
                    // element's offset in the slot are checked.
                    at("slot i (0..capacity): `stamp`", (data, u64_size)).formula(&["Z i"]),
                    at("slot i: the element", (data + mpmc::ELEM_IN_SLOT, 0))
                        .formula(&["Z i"])
                        .size_formula(),
                ]
            },
            not_fields: &[],
            heading_says: None,
        },
        // §7.5.1 MPMC bytes control block, stamps and cells.
        Table {
            section: "7.5.1",
            index: 0,
            bare_size: None,
            expect: {
                use mb::Control;
                let claim = size_of::<mb::Claim>();
                let (p0, p1) = (
                    field!(Control, producers[0]).0,
                    field!(Control, producers[1]).0,
                );
                let (c0, c1) = (
                    field!(Control, consumers[0]).0,
                    field!(Control, consumers[1]).0,
                );
                let cell = mb::CELL as usize;
                vec![
                    at("`capacity`", field!(Control, geo.0.capacity)),
                    at("`cell_size`", field!(Control, geo.0.cell_size)).value(mb::CELL),
                    at("`cells`", field!(Control, geo.0.cells)),
                    at("`stamps_offset`", field!(Control, geo.0.stamps_offset))
                        .value(mb::STAMPS_OFFSET),
                    // D = 4480 + round_up(16 N, 128): a formula, checked by the mpmc-bytes tests.
                    at("`data_offset`", field!(Control, geo.0.data_offset)),
                    at("`handles`", field!(Control, geo.0.handles)).value(mpmc::MAX_HANDLES as u64),
                    at("`state`", field!(Control, geo.0.state)),
                    at("`max_message`", field!(Control, geo.0.max_message)),
                    at("`tail`", field!(Control, tail.0.tail)),
                    at("`not_empty`", field!(Control, tail.0.not_empty)),
                    at("`head`", field!(Control, head.0.head)),
                    at("`not_full`", field!(Control, head.0.not_full)),
                    each("producer claim slot i", p0, p1 - p0, claim),
                    each("consumer claim slot i", c0, c1 - c0, claim),
                    // The stamps at 4480 + 8 j, then the lengths at 4480 + 8 N + 8 j.
                    each("`stamp[j]`", mb::STAMPS_OFFSET as usize, 8, u64_size),
                    each(
                        "`len[j]`",
                        mb::lens_offset(0) as usize,
                        (mb::lens_offset(1) - mb::lens_offset(0)) as usize,
                        u64_size,
                    )
                    .formula(&["8 N"]),
                    // Cell j at D + 64 j: D is a formula of N.
                    each("cell j", 0, cell, cell).formula(&["D"]),
                ]
            },
            not_fields: &[],
            heading_says: None,
        },
        // §8.1 Frames control block (`frames::Control`).
        Table {
            section: "8.1",
            index: 0,
            bare_size: Some(8),
            expect: {
                use frames::Control;
                vec![
                    at("`slots`", field!(Control, slots)),
                    at("`max_bytes`", field!(Control, max_bytes)),
                    at("`stride`", field!(Control, stride)),
                    at("`data_offset`", field!(Control, data_offset)),
                    at("`subscribers`", field!(Control, subscribers)),
                    at("`policy`", field!(Control, policy)),
                    at("`header_size`", field!(Control, header_size)),
                    at("`header_align`", field!(Control, header_align)),
                    at("type tag", field!(Control, tag))
                        .says(format!("name length at {}", field!(Control, tag.len).0))
                        .says({
                            let (at, size) = field!(Control, tag.name);
                            format!("name at {at}..{}", at + size)
                        }),
                    at("`publisher`", field!(Control, publisher)),
                    at("`head`", field!(Control, head)),
                    at("`published`", field!(Control, published)),
                    at("`released`", field!(Control, released)),
                ]
            },
            // `_reserved`, `_pad1` .. `_pad4`: zero words that give each changing word its line.
            not_fields: &["reserved"],
            heading_says: None,
        },
        // §8.1 Frames slot metadata (`frames::SlotMeta`, then the pins and the user header).
        Table {
            section: "8.1",
            index: 1,
            bare_size: Some(8),
            expect: {
                use frames::SlotMeta;
                vec![
                    at("`seq`", field!(SlotMeta, seq)),
                    at("`len`", field!(SlotMeta, len)),
                    at("`mono_ns`", field!(SlotMeta, mono_ns)),
                    at("`real_ns`", field!(SlotMeta, real_ns)),
                    // `ceil(S/64)` words: a formula of S.
                    at("pin bitmap", (frames::META_FIXED as usize, 0)).size_formula(),
                    // At `header_at` (`Geometry::header_at`), `header_size` bytes: formulas.
                    at("user header", (0, 0))
                        .formula(&["header_at"])
                        .size_formula(),
                ]
            },
            not_fields: &[],
            heading_says: None,
        },
        // §8.1 Frames subscriber record (`frames::Record`, padded to 64).
        Table {
            section: "8.1",
            index: 2,
            bare_size: Some(8),
            expect: {
                use frames::Record;
                vec![
                    at("`owner`", field!(Record, owner)),
                    at("`cursor`", field!(Record, cursor)),
                    at("`received`", field!(Record, received)),
                    at("`lost`", field!(Record, lost)),
                ]
            },
            not_fields: &["reserved"],
            heading_says: None,
        },
        // §9.3 ShareableList trailer (offsets from T: `trailer::*` constants).
        Table {
            section: "9.3",
            index: 0,
            bare_size: None,
            expect: {
                let c = |x: u64| x as usize;
                let entry = c(trailer::ENTRY);
                vec![
                    at("a §3 header", (0, size_of::<RawHeader>())).says(format!(
                        "`payload_size` = {} + {}·N",
                        trailer::size(0) - crate::segment::HEADER_SIZE as u64,
                        trailer::ENTRY
                    )),
                    at("`cpython_end`", (c(trailer::CPYTHON_END), u64_size)),
                    // No constant: the creator writes `[cpython_end, items]` as one 16-byte
                    // body at CPYTHON_END (`list.rs`), and `body_mismatch` reads it so.
                    at("`items`", (c(trailer::CPYTHON_END) + 8, u64_size)),
                    at("writer lock", (c(trailer::LOCK), size_of::<LockState>())),
                    each(
                        "item i `seq`",
                        c(trailer::ENTRIES + trailer::SEQ),
                        entry,
                        u64_size,
                    ),
                    each(
                        "item i `len`",
                        c(trailer::ENTRIES + trailer::LEN),
                        entry,
                        u64_size,
                    ),
                    each(
                        "item i `check`",
                        c(trailer::ENTRIES + trailer::CHECK),
                        entry,
                        u64_size,
                    ),
                ]
            },
            not_fields: &["reserved"],
            heading_says: None,
        },
        // §10.1 Cell control block (`cell::CellControl`) and data.
        Table {
            section: "10.1",
            index: 0,
            bare_size: None,
            expect: {
                use cell::CellControl;
                vec![
                    at("`magic`", field!(CellControl, magic)),
                    at("`mode`", field!(CellControl, mode)),
                    at("`typecode`", field!(CellControl, typecode)),
                    at("`elem_size`", field!(CellControl, elem_size)),
                    at("`elem_align`", field!(CellControl, elem_align)),
                    at("`data_offset`", field!(CellControl, data_offset)),
                    at("`len`", field!(CellControl, len)),
                    at("`seq`", field!(CellControl, seq)),
                    at("`changed`", field!(CellControl, changed)),
                    at("type tag", field!(CellControl, type_tag)),
                    at("`lock`", field!(CellControl, lock)),
                    // `len × elem_size` bytes: a formula.
                    at("data", (cell::DATA_IN_PAYLOAD, 0)).size_formula(),
                ]
            },
            not_fields: &["reserved"],
            heading_says: None,
        },
    ]
}

/// The first backticked word of a cell (`` `lock` `` of "2 `lock`").
fn backticked(cell: &str) -> Option<&str> {
    cell.split('`').nth(1)
}

/// §3.1: the kind table (two `value | kind` pairs per row) lists exactly the kinds the code
/// names (`Kind::name`), with the code's values.
fn check_kinds(errors: &mut Vec<String>) {
    use crate::segment::Kind;
    let (_, body) = match raw_table("3.1", 0) {
        Ok(t) => t,
        Err(e) => return errors.push(e),
    };
    let mut spec: Vec<(u32, String)> = Vec::new();
    for (line, c) in &body {
        for pair in c.chunks(2) {
            match (
                pair[0].parse::<u32>(),
                pair.get(1).and_then(|k| backticked(k)),
            ) {
                (Ok(v), Some(k)) => spec.push((v, k.to_owned())),
                _ if pair.iter().all(|x| x.is_empty()) => {}
                _ => errors.push(format!("§3.1 (SPEC.md line {line}): cannot read {pair:?}")),
            }
        }
    }
    spec.sort();
    let code: Vec<(u32, String)> = (0..1024)
        .filter_map(|v| Kind(v).name().map(|n| (v, n.to_owned())))
        .collect();
    for k in &code {
        if !spec.contains(k) {
            errors.push(format!(
                "§3.1: kind {} `{}` is missing (code: `Kind::name`)",
                k.0, k.1
            ));
        }
    }
    for k in &spec {
        if !code.contains(k) {
            errors.push(format!(
                "§3.1: SPEC lists kind {} `{}`, the code has no such kind",
                k.0, k.1
            ));
        }
    }
}

/// §6.1.1: each primitive's kind, payload size (its state's size: `sync::named` creates the
/// payload `size_of::<State>()` bytes) and state alignment.
fn check_primitives(errors: &mut Vec<String>) {
    use crate::segment::Kind;
    use crate::sync::{
        BarrierState, ConditionState, EventState, LockState, RLockState, SemaphoreState,
    };
    use std::mem::align_of;
    let (header, body) = match raw_table("6.1.1", 0) {
        Ok(t) => t,
        Err(e) => return errors.push(e),
    };
    if header
        != [
            "primitive",
            "kind (header offset 12)",
            "payload size",
            "state alignment",
        ]
    {
        return errors.push(format!("§6.1.1: unexpected columns {header:?}"));
    }
    let code: Vec<(&str, Kind, usize, usize)> = vec![
        (
            "`Lock`",
            Kind::LOCK,
            size_of::<LockState>(),
            align_of::<LockState>(),
        ),
        (
            "`RLock`",
            Kind::RLOCK,
            size_of::<RLockState>(),
            align_of::<RLockState>(),
        ),
        (
            "`Semaphore`",
            Kind::SEMAPHORE,
            size_of::<SemaphoreState>(),
            align_of::<SemaphoreState>(),
        ),
        (
            "`BoundedSemaphore`",
            Kind::BOUNDED_SEMAPHORE,
            size_of::<SemaphoreState>(),
            align_of::<SemaphoreState>(),
        ),
        (
            "`Condition`",
            Kind::CONDITION,
            size_of::<ConditionState>(),
            align_of::<ConditionState>(),
        ),
        (
            "`Event`",
            Kind::EVENT,
            size_of::<EventState>(),
            align_of::<EventState>(),
        ),
        (
            "`Barrier`",
            Kind::BARRIER,
            size_of::<BarrierState>(),
            align_of::<BarrierState>(),
        ),
    ];
    for (line, c) in &body {
        let Some(&(_, kind, size, align)) = code.iter().find(|p| p.0 == c[0]) else {
            errors.push(format!(
                "§6.1.1 (SPEC.md line {line}): primitive {} not covered by the mapping",
                c[0]
            ));
            continue;
        };
        let want = [
            format!("{} `{}`", kind.0, kind.name().unwrap_or("?")),
            size.to_string(),
            align.to_string(),
        ];
        for (i, w) in want.iter().enumerate() {
            if c.get(i + 1) != Some(w) {
                errors.push(format!(
                    "§6.1.1 {} (SPEC.md line {line}): {}: SPEC says {:?}, code says {w:?}",
                    c[0],
                    header[i + 1],
                    c.get(i + 1)
                ));
            }
        }
    }
    for p in &code {
        if !body.iter().any(|(_, c)| c[0] == p.0) {
            errors.push(format!(
                "§6.1.1: the mapping expects a row for {}; SPEC has none",
                p.0
            ));
        }
    }
}

/// The layout description strings the code hashes into fingerprints, found in the source
/// itself: the first string literal of every `fingerprint(` / `fingerprint_with(` call under
/// `src/` (this file aside) that starts with `shmkit ` (a `b"…"` literal, or a `format!` template, whose
/// element-type placeholders SPEC writes as `type=NAME size=S align=A`, and frames' header type
/// as `NAME (size N, align A)`). Sorted by file, then position.
fn code_descriptions() -> Result<Vec<(String, String)>, String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("spec_tables.rs") {
                out.push(p);
            }
        }
        Ok(())
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files).map_err(|e| format!("listing src/: {e}"))?;
    files.sort();
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        for call in ["fingerprint(", "fingerprint_with("] {
            for (at, _) in text.match_indices(call) {
                let rest = text[at + call.len()..].trim_start();
                let rest = rest.strip_prefix("format!(").unwrap_or(rest).trim_start();
                let (template, rest) = match rest.strip_prefix('b') {
                    Some(r) => (false, r),
                    None => (true, rest),
                };
                let Some(lit) = rest.strip_prefix("\"shmkit ") else {
                    continue;
                };
                let Some(end) = lit.find('"') else {
                    return Err(format!("{rel}: unterminated description"));
                };
                let mut d = format!("shmkit {}", &lit[..end]);
                if template {
                    for (from, to) in [
                        ("type={}", "type=NAME"),
                        ("size={}", "size=S"),
                        ("align={}", "align=A"),
                        ("{t}", "NAME (size N, align A)"),
                    ] {
                        d = d.replace(from, to);
                    }
                    if d.contains('{') {
                        return Err(format!("{rel}: cannot read the template {d:?}"));
                    }
                }
                found.push((rel.clone(), d));
            }
        }
    }
    Ok(found)
}

/// §3.2, §6.1.2, §7, §8.1, §9.3, §10: every layout description the code hashes (see
/// [`code_descriptions`]) is written in SPEC.md word for word (SPEC's line breaks read as
/// spaces, its table escapes `\|` as `|`), and §3.2's FNV-1a constants are the code's.
fn check_fingerprints(errors: &mut Vec<String>) {
    let spec = SPEC.replace("\\|", "|");
    let spec = spec.split_whitespace().collect::<Vec<_>>().join(" ");
    match code_descriptions() {
        Err(e) => errors.push(format!("fingerprint descriptions: {e}")),
        Ok(found) => {
            // Every kind with a layout: bytes, the seven primitives (semaphores share one),
            // four queues, frames, cells, the list trailer.
            if found.len() < 14 {
                errors.push(format!(
                    "fingerprint descriptions: found only {} in src/ (the scan is broken?): {found:?}",
                    found.len()
                ));
            }
            for (file, d) in found {
                if !spec.contains(&d) {
                    errors.push(format!(
                        "fingerprint description of {file} is not in SPEC.md: {d:?}"
                    ));
                }
            }
        }
    }
    use crate::segment::fingerprint;
    let (basis, prime) = (0xcbf2_9ce4_8422_2325_u64, 0x0000_0100_0000_01b3_u64);
    if fingerprint(b"") != basis || fingerprint(b"\0") != basis.wrapping_mul(prime) {
        errors.push("§3.2: the code's FNV-1a basis or prime is not SPEC's".into());
    }
    for c in ["`0xcbf29ce484222325`", "`0x100000001b3`"] {
        if !spec.contains(c) {
            errors.push(format!(
                "§3.2: SPEC no longer states the FNV-1a constant {c}"
            ));
        }
    }
}

#[test]
fn spec_layout_tables_match_the_code() {
    let mut errors = Vec::new();
    for t in tables() {
        check(&t, &mut errors);
    }
    check_kinds(&mut errors);
    check_primitives(&mut errors);
    check_fingerprints(&mut errors);
    assert!(
        errors.is_empty(),
        "SPEC.md's layout tables disagree with the code:\n  {}",
        errors.join("\n  ")
    );
}
