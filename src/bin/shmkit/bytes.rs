//! `shmkit create`, `shmkit read`, `shmkit write`: plain segments and raw (CPython) ones.

use crate::CmdResult;
use shmkit::segment::Access;
use shmkit::{Error, Segment, SegmentOptions};
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
    /// Do not reserve the memory now: creation is instant and takes no memory until pages are
    /// written, but a process that touches a page when /dev/shm is full dies of SIGBUS.
    /// Without it, a full /dev/shm is an error at creation.
    #[arg(long)]
    sparse: bool,
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

/// Open `name` with `opts` as whatever shmkit object it holds (a plain read or write of
/// any object's payload bytes), or raw.
fn open<A: Access>(name: &str, raw: bool, opts: SegmentOptions<A>) -> Result<Segment<A>, Error> {
    let opts = opts.raw(raw);
    if raw {
        return opts.open(name);
    }
    let h = shmkit::segment::probe(name)?.header;
    match h {
        Some(h) => opts.kind(h.kind, h.fingerprint).open(name),
        None => opts.open(name), // reports why it is not a shmkit segment
    }
}

pub(crate) fn create(a: CreateArgs) -> CmdResult {
    Segment::options()
        .raw(a.raw)
        .mode(a.mode)
        .sparse(a.sparse)
        .create(&a.name, a.size)
        .map(drop)
        .map_err(|e| e.to_string())
}

pub(crate) fn read(a: ReadArgs) -> CmdResult {
    let seg = open(&a.name, a.raw, Segment::options().read_only()).map_err(|e| e.to_string())?;
    let avail = (seg.len() as u64).saturating_sub(a.offset);
    let len = a.len.unwrap_or(avail);
    if a.offset > seg.len() as u64 || len > avail {
        return Err(format!(
            "{:?}: range {}..{}+{len} is outside the {}-byte payload",
            a.name,
            a.offset,
            a.offset,
            seg.len()
        ));
    }
    let len = len as usize;
    let mut buf = vec![0u8; len];
    seg.read_at(a.offset, &mut buf).map_err(|e| e.to_string())?;
    std::io::stdout()
        .lock()
        .write_all(&buf)
        .map_err(|e| e.to_string())
}

pub(crate) fn write(a: WriteArgs) -> CmdResult {
    let seg = open(&a.name, a.raw, Segment::options()).map_err(|e| e.to_string())?;
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
