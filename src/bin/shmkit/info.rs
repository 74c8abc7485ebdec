//! `shmkit info`: the header, then the state of the object inside. Read-only: it opens the
//! object `O_RDONLY`, never waits, and changes nothing.
//!
//! Each object family adds one arm to [`object_state`]: a function of the library that
//! returns a `serde::Serialize` description of its state.

use crate::{outln, print_json, segment_name, CmdResult};
use shmkit::segment::{self, HeaderInfo, Kind, Probe, Verdict};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Segment name.
    #[arg(value_parser = segment_name)]
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Info {
    name: String,
    size: u64,
    mode: u32,
    uid: u32,
    kind: String,
    /// `valid`, `raw` or `invalid`.
    status: &'static str,
    /// Why an open would refuse it (status `invalid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<Header>,
    creator: shmkit::Liveness,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<serde_json::Value>,
}

/// The JSON form of [`HeaderInfo`] (the library type carries no serde).
#[derive(serde::Serialize)]
struct Header {
    version: u32,
    kind: String,
    fingerprint: u64,
    header_size: u64,
    payload_size: u64,
    state: String,
    lifetime: String,
    /// 16 hex digits (a 62-bit number, beyond what JSON numbers hold exactly).
    creator_token: String,
    creator_pid: u32,
    creator_pid_namespace: u64,
    created_unix_ns: u64,
}

impl From<&HeaderInfo> for Header {
    fn from(h: &HeaderInfo) -> Header {
        Header {
            version: h.version,
            kind: h.kind.to_string(),
            fingerprint: h.fingerprint,
            header_size: h.header_size,
            payload_size: h.payload_size,
            state: h.state.to_string(),
            lifetime: h.lifetime.to_string(),
            creator_token: format!("{:016x}", h.creator_token),
            creator_pid: h.creator_pid,
            creator_pid_namespace: h.creator_pid_namespace,
            created_unix_ns: h.created_unix_ns,
        }
    }
}

/// The object's own state, for valid objects of kinds this build can describe.
fn object_state(p: &Probe) -> Result<Option<serde_json::Value>, String> {
    if let Some(v) = crate::list::info_state(p)? {
        return Ok(Some(v));
    }
    let Some(h) = &p.header else { return Ok(None) };
    if p.verdict != Verdict::Valid {
        return Ok(None);
    }
    match h.kind {
        // Plain bytes have no state beyond the header; kinds this build does not know are
        // shown by their header alone.
        Kind::SEGMENT => Ok(None),
        Kind::SPSC_QUEUE | Kind::MPMC_QUEUE | Kind::BYTES_RING | Kind::MPMC_BYTES => {
            let st = shmkit::queue::stat(&p.name).map_err(|e| e.to_string())?;
            Ok(Some(serde_json::to_value(st).map_err(|e| e.to_string())?))
        }
        Kind::FRAMES => crate::frames::state(&p.name).map(Some),
        Kind::LOCK
        | Kind::RLOCK
        | Kind::SEMAPHORE
        | Kind::BOUNDED_SEMAPHORE
        | Kind::CONDITION
        | Kind::EVENT
        | Kind::BARRIER => {
            let Some(info) = shmkit::sync::inspect(&p.name).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            summarized(&info).map(Some)
        }
        Kind::VALUE | Kind::ARRAY => crate::cell::info_state(&p.name),
        _ => Ok(None),
    }
}

/// An inspected object's state as JSON, with its one-line `Display` as `summary` (the sync
/// objects' and the cells' `state`).
pub(crate) fn summarized(
    info: &(impl serde::Serialize + std::fmt::Display),
) -> Result<serde_json::Value, String> {
    let mut v = serde_json::to_value(info).map_err(|e| e.to_string())?;
    v["summary"] = serde_json::Value::String(info.to_string());
    Ok(v)
}

pub(crate) fn run(args: Args) -> CmdResult {
    let p = segment::probe(&args.name).map_err(|e| e.to_string())?;
    // A valid header over a corrupt object (its control block, geometry or layout): the
    // header is still shown, with the object's problem, as for a corrupt header.
    let (state, state_problem) = match object_state(&p) {
        Ok(s) => (s, None),
        Err(why) => (None, Some(why)),
    };
    let (status, problem) = match (&p.verdict, state_problem) {
        (Verdict::Invalid(why), _) => ("invalid", Some(why.clone())),
        (_, Some(why)) => ("invalid", Some(why)),
        (Verdict::Valid, None) => ("valid", None),
        (Verdict::Raw, None) => ("raw", None),
        (Verdict::Unreadable, None) => ("unreadable", None),
    };
    let info = Info {
        name: p.name.clone(),
        size: p.size,
        mode: p.mode,
        uid: p.uid,
        kind: p.kind_name(),
        status,
        problem,
        header: p.header.as_ref().map(Header::from),
        creator: p.creator,
        state,
    };
    if args.json {
        return print_json(&info);
    }
    outln!("name:            {}", info.name)?;
    outln!("size:            {} bytes", info.size)?;
    outln!("mode:            {:04o} (uid {})", info.mode, info.uid)?;
    outln!("kind:            {}", info.kind)?;
    match &info.problem {
        Some(why) => outln!("status:          invalid: {why}")?,
        None => outln!("status:          {}", info.status)?,
    }
    match &p.header {
        None => outln!("header:          {}", crate::list::no_header_note(&p))?,
        Some(h) => {
            outln!("format version:  {}", h.version)?;
            outln!("fingerprint:     {:#018x}", h.fingerprint)?;
            outln!("header size:     {}", h.header_size)?;
            outln!("payload size:    {}", h.payload_size)?;
            outln!("state:           {}", h.state)?;
            outln!("lifetime:        {}", h.lifetime)?;
            outln!(
                "creator:         pid {} ({}), token {:016x}",
                h.creator_pid,
                p.creator,
                h.creator_token
            )?;
            if h.creator_pid_namespace != 0 {
                outln!("creator pid ns:  pid:[{}]", h.creator_pid_namespace)?;
            }
            outln!(
                "created:         {} ({} ns after the Unix epoch)",
                crate::utc(h.created_unix_ns),
                h.created_unix_ns
            )?;
        }
    }
    // A frame channel's state as `frames stat` shows it (a table of slots and subscribers,
    // not its JSON fields one per line).
    if info.state.is_some() && p.header.as_ref().is_some_and(|h| h.kind == Kind::FRAMES) {
        if let Ok(st) = shmkit::frames::stat(&p.name) {
            return crate::frames::print_state(&st);
        }
    }
    if let Some(s) = &info.state {
        print_state(s)?;
    }
    Ok(())
}

/// The object's state as `info`'s text shows it: its `summary` (the one-line `Display` of
/// the kinds that have one) first, then every other field as a `key: value` line, in the
/// JSON's order. A nested field is `key.sub` (an array's elements by index, `items.1.value`);
/// a string is shown unquoted unless it holds a control character (it may come from shared
/// memory: [`shown_name`](crate::shown_name)); null and an empty array or object are `none`.
/// `--json` has the state as it is.
fn print_state(state: &serde_json::Value) -> CmdResult {
    let mut lines = Vec::new();
    if let Some(s) = state.get("summary") {
        lines.push(("summary".to_owned(), scalar(s)));
    }
    match state.as_object() {
        Some(obj) => {
            for (k, v) in obj.iter().filter(|(k, _)| *k != "summary") {
                flatten(k.clone(), v, &mut lines);
            }
        }
        None => flatten("state".to_owned(), state, &mut lines),
    }
    // Aligned with the header's lines (`name:` and its value 17 columns apart), wider when a
    // key needs it.
    let w = lines
        .iter()
        .map(|(k, _)| k.len() + 1)
        .max()
        .unwrap_or(0)
        .max(16);
    for (k, v) in lines {
        outln!("{:<w$} {v}", format!("{k}:"))?;
    }
    Ok(())
}

/// `v`'s `key: value` lines, each scalar under its dotted path.
fn flatten(key: String, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, v) in o {
                flatten(format!("{key}.{k}"), v, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                flatten(format!("{key}.{i}"), v, out);
            }
        }
        _ => out.push((key, scalar(v))),
    }
}

/// A leaf of the state as text: a string unquoted (quoted and escaped as [`shown_name`]
/// quotes, and when it is empty or `none`, which would read as null), null and an empty array
/// or object `none`, numbers and booleans as JSON has them.
///
/// [`shown_name`]: crate::shown_name
fn scalar(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) if s.is_empty() || s == "none" => format!("{s:?}"),
        Value::String(s) => crate::shown_name(s),
        Value::Null => "none".to_owned(),
        Value::Array(a) if a.is_empty() => "none".to_owned(),
        Value::Object(o) if o.is_empty() => "none".to_owned(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    /// Review: an empty string and the string `none` printed as a blank and as `none`, the
    /// latter the same as null.
    #[test]
    fn strings_that_would_read_as_null_or_blank_are_quoted() {
        use serde_json::json;
        assert_eq!(super::scalar(&json!(null)), "none");
        assert_eq!(super::scalar(&json!("none")), "\"none\"");
        assert_eq!(super::scalar(&json!("")), "\"\"");
        assert_eq!(super::scalar(&json!("unlocked")), "unlocked");
    }
}
