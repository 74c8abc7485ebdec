//! `shmkit list`: create, read and write a `ShareableList` (CPython's layout; stock Python
//! opens it with `ShareableList(name=NAME)`), and what `shmkit info` shows of one.
//!
//! Items are JSON: integers (the full i64 range, exactly), floats (printed so that they parse
//! back to the same float; NaN and the infinities as `{"float": "nan" | "inf" | "-inf"}`),
//! `true`/`false`, `null`, strings, and bytes as `{"hex": "00ff"}`. A JSON argument of `-`
//! is read from standard input (a 10 MB item does not fit on a command line).

use std::io::Read;
use std::time::{Duration, Instant};

use crate::{create_error, outln, seconds, segment_name, CmdResult, Stop};
use serde_json::{json, Value};
use shmkit::cell::SHOWN_ELEMENTS;
use shmkit::list::{Item, ShareableList};
use shmkit::segment::{Kind, Lifetime, Probe, Verdict};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Create a list from a JSON array (`-`: read it from standard input).
    Create {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// The items, e.g. '[1, 2.5, true, null, "hé", {"hex": "00ff"}]', or `-`.
        items: String,
        /// Make every slot at least this many bytes, so longer str/bytes values fit later.
        #[arg(long, default_value_t = 0)]
        reserve: usize,
        /// Permission bits, octal.
        #[arg(long, default_value = "600", value_parser = crate::mode)]
        mode: u32,
        /// `persistent`: lives until removed; `owned`: `shmkit gc` removes it once this
        /// process (its creator) is dead.
        #[arg(long, default_value = "persistent", value_parser = crate::lifetime)]
        lifetime: Lifetime,
    },
    /// Print one item (negative indices count from the end), or all of them as a JSON array.
    Get {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// The index.
        #[arg(allow_negative_numbers = true)]
        index: Option<isize>,
        /// Seconds to wait for another shmkit writer's update (or for the writer lock), and
        /// for a list whose creator (CPython) has not written it yet.
        #[arg(long, default_value = "10", value_parser = seconds)]
        timeout: Duration,
    },
    /// Assign one item from JSON (`-`: read it from standard input).
    Set {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// The index (negative counts from the end).
        #[arg(allow_negative_numbers = true)]
        index: isize,
        /// The value, e.g. '"text"', '42', '-5', '{"hex": "00"}', or `-`.
        #[arg(allow_negative_numbers = true)]
        item: String,
        /// Seconds to wait for another shmkit writer's update (or for the writer lock), and
        /// for a list whose creator (CPython) has not written it yet.
        #[arg(long, default_value = "10", value_parser = seconds)]
        timeout: Duration,
    },
}

/// [`create_error`], except that a full `/dev/shm` is said without the library's "or create
/// it sparse": a ShareableList writes every byte of its area when it is created, so it has no
/// sparse form (and `list create` no `--sparse`).
fn no_space_without_sparse(e: shmkit::Error) -> Stop {
    match e {
        shmkit::Error::NoSpace {
            name,
            requested,
            available,
        } => Stop::Failed(format!(
            "segment {name:?} needs {requested} bytes but /dev/shm has only {available} bytes \
             free; remove objects (`shmkit gc`, `shmkit rm`) or give /dev/shm more room (e.g. \
             docker --shm-size)"
        )),
        e => create_error(e),
    }
}

pub(crate) fn run(args: Args) -> CmdResult {
    match args.cmd {
        Cmd::Create {
            name,
            items,
            reserve,
            mode,
            lifetime,
        } => {
            let v = parse_json(&items)?;
            let Value::Array(vs) = v else {
                return Err(Stop::Usage("the items must be a JSON array".into()));
            };
            let items = vs
                .iter()
                .map(item_from_json)
                .collect::<Result<Vec<_>, _>>()?;
            ShareableList::options()
                .reserve(reserve)
                .mode(mode)
                .lifetime(lifetime)
                .create(&name, &items)
                .map_err(no_space_without_sparse)?;
            Ok(())
        }
        Cmd::Get {
            name,
            index,
            timeout,
        } => {
            // One budget for the whole command.
            let deadline = shmkit::Timeout::deadline_after(timeout);
            let get = |l: &ShareableList<_>, i| match deadline {
                Some(d) => l.get_deadline(i, d),
                None => l.get(i),
            };
            // A raw object may be a CPython list its creator is still writing: the open waits.
            crate::refuse_other_kind(&name, &[Kind::SHAREABLE_LIST], "a ShareableList", false)?;
            let l = ShareableList::options()
                .read_only()
                .open_timeout(timeout)
                .open(&name)
                .map_err(|e| e.to_string())?;
            let v = match index {
                Some(i) => item_to_json(&get(&l, i).map_err(|e| waited(&name, e))?),
                None => Value::Array(
                    (0..l.len() as isize)
                        .map(|i| get(&l, i).map(|v| item_to_json(&v)))
                        .collect::<Result<_, _>>()
                        .map_err(|e| waited(&name, e))?,
                ),
            };
            outln!("{v}")
        }
        Cmd::Set {
            name,
            index,
            item,
            timeout,
        } => {
            let v = item_from_json(&parse_json(&item)?)?;
            // One budget for the whole command.
            let deadline = shmkit::Timeout::deadline_after(timeout);
            crate::refuse_other_kind(&name, &[Kind::SHAREABLE_LIST], "a ShareableList", false)?;
            let l = ShareableList::options()
                .open_timeout(timeout)
                .open(&name)
                .map_err(|e| e.to_string())?;
            match deadline {
                Some(d) => l.set_deadline(index, &v, d),
                None => l.set(index, &v),
            }
            .map_err(|e| waited(&name, e))?;
            Ok(())
        }
    }
}

/// An error of a `get`/`set`, naming the list when the error itself does not (a timeout).
fn waited(name: &str, e: shmkit::Error) -> String {
    crate::waited(name, e, "another shmkit writer of the list")
}

/// `text`, or standard input for `-`, as JSON (a usage error if it is not JSON).
fn parse_json(text: &str) -> Result<Value, Stop> {
    let mut buf = String::new();
    let text = if text == "-" {
        std::io::stdin()
            .read_to_string(&mut buf)
            .map_err(|e| match e.kind() {
                // Bytes that are not UTF-8 are not JSON: as malformed as any other bad text.
                std::io::ErrorKind::InvalidData => Stop::Usage(format!("not JSON: {e}")),
                _ => Stop::Failed(format!("cannot read standard input: {e}")),
            })?;
        &buf
    } else {
        text
    };
    let v = serde_json::from_str(text).map_err(|e| Stop::Usage(format!("not JSON: {e}")))?;
    let minus_zeros = integer_literals(text)?;
    if minus_zeros.is_empty() {
        return Ok(v);
    }
    // `serde_json` reads the integer literal `-0` as the float -0.0 (to keep its sign); as an
    // integer (Python's `json` too) it is 0: the same text with those signs blanked.
    let mut fixed = text.as_bytes().to_vec();
    for i in minus_zeros {
        fixed[i] = b' ';
    }
    serde_json::from_slice(&fixed).map_err(|e| Stop::Usage(format!("not JSON: {e}")))
}

/// Check the integer literals (no `.`, `e` or `E`) of `text`, valid JSON, and return the byte
/// offsets of the `-` of each `-0` among them (see [`parse_json`]).
///
/// An integer outside the int64 range is refused: `serde_json` turns one into the nearest
/// float, which [`item_from_json`] cannot tell from a float literal, so
/// `-9223372036854775809` would be stored as the float `-9.223372036854776e18`. `text` is
/// valid JSON, so a number token is a run of `-+.eE0-9` outside a string.
fn integer_literals(text: &str) -> Result<Vec<usize>, Stop> {
    let (mut in_str, mut escaped, mut token, mut start) = (false, false, String::new(), 0);
    let mut minus_zeros = Vec::new();
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        if in_str {
            (in_str, escaped) = (escaped || c != '"', !escaped && c == '\\');
        } else if c.is_ascii_digit() || "-+.eE".contains(c) {
            if token.is_empty() {
                start = i;
            }
            token.push(c);
        } else {
            if !token.contains(['.', 'e', 'E']) && !token.is_empty() {
                if token.parse::<i64>().is_err() {
                    return Err(Stop::Usage(format!(
                        "{token} is beyond the int64 range a ShareableList stores"
                    )));
                }
                if token == "-0" {
                    minus_zeros.push(start);
                }
            }
            token.clear();
            in_str = c == '"';
        }
    }
    Ok(minus_zeros)
}

/// A JSON value as an item (see the module docs).
fn item_from_json(v: &Value) -> Result<Item, Stop> {
    let bad = |what: String| Err(Stop::Usage(what));
    match v {
        Value::Null => Ok(Item::None),
        Value::Bool(b) => Ok(Item::Bool(*b)),
        Value::String(s) => Ok(Item::Str(s.clone())),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Ok(Item::Int(i)),
            (None, Some(u), _) => bad(format!(
                "{u} is beyond the int64 range a ShareableList stores"
            )),
            (None, None, Some(f)) if n.to_string().contains(['.', 'e', 'E']) => Ok(Item::Float(f)),
            _ => bad(format!(
                "{n} is beyond the int64 range a ShareableList stores"
            )),
        },
        Value::Object(o) if o.len() == 1 => match o.iter().next() {
            Some((k, Value::String(h))) if k == "hex" => match hex_decode(h) {
                Some(b) => Ok(Item::Bytes(b)),
                None => bad(format!(
                    "{h:?} is not bytes in hex (an even number of digits 0-9, a-f)"
                )),
            },
            Some((k, Value::String(f))) if k == "float" => match f.as_str() {
                "nan" => Ok(Item::Float(f64::NAN)),
                "inf" => Ok(Item::Float(f64::INFINITY)),
                "-inf" => Ok(Item::Float(f64::NEG_INFINITY)),
                _ => bad(format!(
                    "{{\"float\": {f:?}}}: use \"nan\", \"inf\" or \"-inf\""
                )),
            },
            _ => bad(format!("unknown item {v}: bytes are {{\"hex\": \"00ff\"}}")),
        },
        _ => bad(format!(
            "{v} is not an item: a number, true/false, null, a string or {{\"hex\": \"00ff\"}}"
        )),
    }
}

/// An item as JSON (see the module docs).
pub(crate) fn item_to_json(v: &Item) -> Value {
    match v {
        Item::Int(i) => json!(i),
        Item::Float(f) if f.is_nan() => json!({"float": "nan"}),
        Item::Float(f) if f.is_infinite() => {
            json!({"float": if *f > 0.0 { "inf" } else { "-inf" }})
        }
        Item::Float(f) => json!(f),
        Item::Bool(b) => json!(b),
        Item::None => Value::Null,
        Item::Str(s) => json!(s),
        Item::Bytes(b) => json!({"hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>()}),
    }
}

/// Bytes from pairs of hex digits (`u8::from_str_radix` alone would take a sign: `+1`).
fn hex_decode(h: &str) -> Option<Vec<u8>> {
    if h.len() % 2 != 0 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What `shmkit info` says of an object with no shmkit header: a ShareableList CPython made
/// (which `probe` recognised), or any other raw segment.
pub(crate) fn no_header_note(p: &Probe) -> &'static str {
    if p.cpython_list {
        "none (a ShareableList made by CPython: its layout, no shmkit header or trailer)"
    } else {
        "none (a raw segment, e.g. CPython's SharedMemory)"
    }
}

/// How long `shmkit info` waits, for all of a list's items together, for writers in the
/// middle of an item (as long as it waits for a seqlock cell).
const INFO_WAIT: Duration = Duration::from_millis(20);

/// What `shmkit info` shows of a list (made by shmkit or by CPython): its length and, for the
/// first [`SHOWN_ELEMENTS`] items (as for a cell's elements: a list of millions of items took
/// gigabytes to show whole), each one's value (long ones cut), format and slot size. `None`
/// for other objects.
pub(crate) fn info_state(p: &Probe) -> Result<Option<Value>, String> {
    let shmkit_made = p.verdict == Verdict::Valid
        && p.header
            .as_ref()
            .is_some_and(|h| h.kind == Kind::SHAREABLE_LIST);
    if !shmkit_made && !p.cpython_list {
        return Ok(None);
    }
    // Inspection never waits: not for a creator still writing the list (no open timeout), and
    // not for a writer in the middle of an item (one short budget for all the items, as `info`
    // of a seqlock cell has; an item still being written then is reported as such).
    let layout = if shmkit_made {
        "CPython 3.9–3.13, shmkit trailer"
    } else {
        "CPython 3.9–3.13, no trailer (made by CPython)"
    };
    // Bounded like `probe` (which read the count once already; a peer may have changed it
    // since): a larger list is shown without its items rather than its offsets copied.
    let opened = ShareableList::options()
        .read_only()
        .open_timeout(Duration::ZERO)
        .max_items(shmkit::list::PROBE_MAX_ITEMS)
        .open(&p.name);
    let l = match opened {
        Err(shmkit::Error::TooLarge { requested, max, .. }) => {
            return Ok(Some(json!({
                "layout": layout,
                "len": requested,
                "items": [],
                "items_shown": format!(
                    "none: more than {max} items (`shmkit list get {}` prints every item)",
                    p.name
                ),
            })))
        }
        other => other.map_err(|e| e.to_string())?,
    };
    let until = Instant::now() + INFO_WAIT;
    let shown = l.len().min(SHOWN_ELEMENTS);
    let mut items = Vec::with_capacity(shown);
    for i in 0..shown as isize {
        let value = match l.get_deadline(i, until) {
            Ok(v) => shorten(item_to_json(&v)),
            Err(shmkit::Error::Timeout | shmkit::Error::WouldBlock) => json!({
                "error": "not read: being written by a shmkit writer (or its writer stopped mid-write)"
            }),
            Err(e) => json!({"error": e.to_string()}),
        };
        items.push(json!({
            "value": value,
            "format": l.format_of(i).unwrap_or_else(|e| e.to_string()),
            "slot": l.slot_size(i).unwrap_or(0),
        }));
    }
    let mut state = json!({
        "layout": layout,
        "len": l.len(),
        "items": items,
    });
    if shown < l.len() {
        state["items_shown"] = format!(
            "the first {shown} of {} (`shmkit list get {}` prints every item)",
            l.len(),
            p.name
        )
        .into();
    }
    Ok(Some(state))
}

/// Long strings and hex cut to 64 characters, with the full length beside.
fn shorten(v: Value) -> Value {
    const MAX: usize = 64;
    match &v {
        Value::String(s) if s.chars().count() > MAX => {
            json!({"str_prefix": s.chars().take(MAX).collect::<String>(), "bytes": s.len()})
        }
        Value::Object(o) => match o.get("hex") {
            Some(Value::String(h)) if h.len() > MAX => {
                json!({"hex_prefix": &h[..MAX], "bytes": h.len() / 2})
            }
            _ => v,
        },
        _ => v,
    }
}
