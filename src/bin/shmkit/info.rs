//! `shmkit info`: the header, then the state of the object inside.
//!
//! Each object family adds one arm to [`object_state`]: a function of the library that
//! returns a `serde::Serialize` description of its state.

use crate::{outln, print_json, segment_name, CmdResult};
use shmkit::segment::{self, Kind, Probe};

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
    #[serde(flatten)]
    probe: Probe,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<serde_json::Value>,
}

/// The object's own state, for kinds this build can describe (not for corrupt objects,
/// which `Probe::corrupt` describes).
fn object_state(p: &Probe) -> Result<Option<serde_json::Value>, String> {
    let Some(h) = p.header.as_ref().filter(|_| p.corrupt.is_none()) else {
        return Ok(None);
    };
    match h.kind {
        // Plain bytes have no state beyond the header; kinds this build does not know are
        // shown by their header alone.
        Kind::BYTES => Ok(None),
        Kind::SPSC_QUEUE | Kind::MPMC_QUEUE | Kind::BYTES_RING => {
            let st = shmkit::queue::stat(&p.name).map_err(|e| e.to_string())?;
            Ok(Some(serde_json::to_value(st).map_err(|e| e.to_string())?))
        }
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
            let mut v = serde_json::to_value(&info).map_err(|e| e.to_string())?;
            v["summary"] = serde_json::Value::String(info.to_string());
            Ok(Some(v))
        }
        _ => Ok(None),
    }
}

pub(crate) fn run(args: Args) -> CmdResult {
    let probe = segment::probe(&args.name).map_err(|e| e.to_string())?;
    let state = object_state(&probe)?;
    let info = Info {
        kind: probe.kind_name(),
        probe,
        state,
    };
    if args.json {
        return print_json(&info);
    }
    let p = &info.probe;
    outln!("name:            {}", p.name)?;
    outln!("size:            {} bytes", p.size)?;
    outln!("mode:            {:04o} (uid {})", p.mode, p.uid)?;
    outln!("kind:            {}", info.kind)?;
    if let Some(what) = &p.corrupt {
        outln!("corrupt:         {what}")?;
    }
    match &p.header {
        None if p.corrupt.is_some() => {}
        None => {
            outln!("header:          none: not a shmkit object (raw, e.g. CPython's SharedMemory)")?
        }
        Some(h) => {
            outln!("format version:  {}", h.version)?;
            outln!("fingerprint:     {:#018x}", h.fingerprint)?;
            outln!("header size:     {}", h.header_size)?;
            outln!("payload size:    {}", h.payload_size)?;
            outln!("state:           {:?}", h.state)?;
            outln!("creator:         pid {} ({:?})", h.creator_pid, p.creator)?;
            if h.creator_pid_namespace != 0 {
                outln!("creator pid ns:  pid:[{}]", h.creator_pid_namespace)?;
            }
            outln!(
                "created:         {} ns after the Unix epoch",
                h.created_unix_ns
            )?;
        }
    }
    if let Some(s) = &info.state {
        if let Some(obj) = s.as_object() {
            for (k, v) in obj {
                outln!("{:<16} {}", format!("{k}:"), v)?;
            }
        }
    }
    Ok(())
}
