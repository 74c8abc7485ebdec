//! `shmkit info`: the header, then the state of the object inside.
//!
//! Each object family adds one arm to [`object_state`]: a function of the library that
//! returns a `serde::Serialize` description of its state.

use crate::{print_json, CmdResult};
use shmkit::segment::{self, Kind, Probe};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Segment name.
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

/// The object's own state, for kinds this build can describe.
fn object_state(p: &Probe) -> Result<Option<serde_json::Value>, String> {
    let Some(h) = &p.header else { return Ok(None) };
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
    println!("name:            {}", p.name);
    println!("size:            {} bytes", p.size);
    println!("mode:            {:04o} (uid {})", p.mode, p.uid);
    println!("kind:            {}", info.kind);
    match &p.header {
        None => println!("header:          none (a raw segment, e.g. CPython's SharedMemory)"),
        Some(h) => {
            println!("format version:  {}", h.version);
            println!("fingerprint:     {:#018x}", h.fingerprint);
            println!("header size:     {}", h.header_size);
            println!("payload size:    {}", h.payload_size);
            println!("state:           {:?}", h.state);
            println!("creator:         pid {} ({:?})", h.creator_pid, p.creator);
            if h.creator_pid_namespace != 0 {
                println!("creator pid ns:  pid:[{}]", h.creator_pid_namespace);
            }
            println!(
                "created:         {} ns after the Unix epoch",
                h.created_unix_ns
            );
        }
    }
    if let Some(s) = &info.state {
        if let Some(obj) = s.as_object() {
            for (k, v) in obj {
                println!("{:<16} {}", format!("{k}:"), v);
            }
        }
    }
    Ok(())
}
