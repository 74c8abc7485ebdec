//! `shmkit create`, `shmkit read`, `shmkit write`: plain segments and raw (CPython) ones.

use crate::CmdResult;
use shmkit::{Error, Segment};
use std::io::{Read, Write};

#[derive(clap::Args)]
pub(crate) struct CreateArgs {
    /// Segment name.
    name: String,
    /// Payload size in bytes.
    #[arg(long)]
    size: u64,
    /// Create a raw segment (no shmkit header), as CPython's SharedMemory would.
    #[arg(long)]
    raw: bool,
    /// Permission bits, octal (default 600).
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    mode: u32,
}

#[derive(clap::Args)]
pub(crate) struct ReadArgs {
    /// Segment name.
    name: String,
    /// First payload byte (for a raw segment: object byte).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// How many bytes (default: to the end of the payload).
    #[arg(long)]
    len: Option<u64>,
    /// Open a raw segment (no shmkit header).
    #[arg(long)]
    raw: bool,
}

#[derive(clap::Args)]
pub(crate) struct WriteArgs {
    /// Segment name.
    name: String,
    /// The bytes to write, as UTF-8 text; `-` reads them from standard input.
    data: String,
    /// First payload byte to write (for a raw segment: object byte).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Open a raw segment (no shmkit header).
    #[arg(long)]
    raw: bool,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|e| format!("mode must be octal: {e}"))
}

fn open(name: &str, raw: bool) -> Result<Segment, Error> {
    let opts = Segment::options().raw(raw);
    match opts.open(name) {
        // A plain read/write of any shmkit object's payload: accept its kind as recorded.
        Err(Error::KindMismatch { .. }) | Err(Error::LayoutMismatch { .. }) if !raw => {
            let h = shmkit::segment::probe(name)?
                .header
                .ok_or_else(|| Error::NotFound { name: name.into() })?;
            Segment::options().kind(h.kind, h.fingerprint).open(name)
        }
        other => other,
    }
}

pub(crate) fn create(a: CreateArgs) -> CmdResult {
    Segment::options()
        .raw(a.raw)
        .mode(a.mode)
        .create(&a.name, a.size)
        .map(drop)
        .map_err(|e| e.to_string())
}

pub(crate) fn read(a: ReadArgs) -> CmdResult {
    let seg = open(&a.name, a.raw).map_err(|e| e.to_string())?;
    let len = a.len.unwrap_or((seg.len() as u64).saturating_sub(a.offset));
    let len = usize::try_from(len).map_err(|_| format!("--len {len} is too large"))?;
    let mut buf = vec![0u8; len];
    seg.read_at(a.offset, &mut buf).map_err(|e| e.to_string())?;
    std::io::stdout()
        .lock()
        .write_all(&buf)
        .map_err(|e| e.to_string())
}

pub(crate) fn write(a: WriteArgs) -> CmdResult {
    let seg = open(&a.name, a.raw).map_err(|e| e.to_string())?;
    let data = if a.data == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| e.to_string())?;
        v
    } else {
        a.data.into_bytes()
    };
    seg.write_at(a.offset, &data).map_err(|e| e.to_string())
}
