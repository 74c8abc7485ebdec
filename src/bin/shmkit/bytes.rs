//! `shmkit create`, `shmkit read`, `shmkit write`: plain segments and raw (CPython) ones.

use crate::{create_error, segment_name, shmkit_header, write_stdout, CmdResult, Stop};
use shmkit::segment::{self, Access, Kind, Lifetime, HEADER_SIZE};
use shmkit::{Segment, SegmentOptions};
use std::io::Read;

/// How many bytes `read` (and `dump`) copy at a time: output of any length takes this much
/// memory, so a 1 TB (sparse) object streams instead of being allocated.
pub(crate) const CHUNK: usize = 64 * 1024;

#[derive(clap::Args)]
pub(crate) struct CreateArgs {
    /// Segment name.
    #[arg(value_parser = segment_name)]
    name: String,
    /// Payload size in bytes.
    #[arg(long)]
    size: u64,
    /// Create a raw segment (no shmkit header), as CPython's SharedMemory would.
    #[arg(long)]
    raw: bool,
    /// Permission bits, octal.
    #[arg(long, default_value = "600", value_parser = crate::mode)]
    mode: u32,
    /// Do not reserve the memory now: creation is instant and takes no memory until pages are
    /// written, but a process that touches a page when /dev/shm is full dies of SIGBUS.
    /// Without it, a full /dev/shm is an error at creation.
    #[arg(long)]
    sparse: bool,
    /// `persistent`: lives until removed; `owned`: `shmkit gc` removes it once this process
    /// (its creator) is dead (as `shmkit queue create`; not with --raw, which has no header
    /// to record it in).
    #[arg(long, default_value = "persistent", value_parser = crate::lifetime)]
    lifetime: Lifetime,
}

#[derive(clap::Args)]
pub(crate) struct ReadArgs {
    /// Segment name.
    #[arg(value_parser = segment_name)]
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
    #[arg(value_parser = segment_name)]
    name: String,
    /// The bytes to write, as UTF-8 text; `-` reads them from standard input.
    data: String,
    /// First payload byte to write (for a raw segment: object byte).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Open a raw segment (no shmkit header).
    #[arg(long)]
    raw: bool,
    /// Write into an object of any kind (a queue, a lock, …), not only a plain segment: its
    /// state is bytes like any other, and writing them can corrupt it. With --raw, also over a
    /// shmkit object's header, or over a ShareableList (shmkit's or CPython's).
    #[arg(long)]
    force: bool,
}

/// Open `name` with `opts`: raw, or as whatever shmkit object it holds (a plain read or write
/// of any object's payload bytes), after a look at its header that changes nothing, so a raw
/// or corrupt object gets a message naming `--raw`. Returns the handle and the object's kind
/// (`None` when raw).
fn open<A: Access>(
    name: &str,
    raw: bool,
    opts: SegmentOptions<A>,
) -> Result<(Segment<A>, Option<Kind>), Stop> {
    if raw {
        let seg = opts.raw(true).open(name).map_err(|e| e.to_string())?;
        return Ok((seg, None));
    }
    let h = shmkit_header(name, "; pass --raw to use its bytes")?;
    if h.kind == Kind::SHAREABLE_LIST {
        return Err(format!(
            "segment {name:?} holds a ShareableList, whose bytes are CPython's layout from byte \
             0 (shmkit keeps its header in a trailer at the end): pass --raw to use them"
        )
        .into());
    }
    let seg = opts
        .kind(h.kind, h.fingerprint)
        .open(name)
        .map_err(|e| e.to_string())?;
    Ok((seg, Some(h.kind)))
}

pub(crate) fn create(a: CreateArgs) -> CmdResult {
    Segment::options()
        .raw(a.raw)
        .mode(a.mode)
        .sparse(a.sparse)
        .lifetime(a.lifetime)
        .create(&a.name, a.size)
        .map(drop)
        .map_err(create_error)
}

/// Copy payload bytes to standard output, [`CHUNK`] bytes at a time, with `pread` from the
/// object opened ([`segment::ObjectFile`], the one `seg` maps, whatever its name holds
/// meanwhile) rather than from the mapping: reading a hole of a sparse object through a
/// mapping would allocate its pages in `/dev/shm` (and raise `SIGBUS` once it is full).
pub(crate) fn read(a: ReadArgs) -> CmdResult {
    let (seg, kind) = open(&a.name, a.raw, Segment::options().read_only())?;
    let payload = seg.len() as u64;
    let base = if kind.is_some() {
        HEADER_SIZE as u64
    } else {
        0
    };
    let avail = payload.saturating_sub(a.offset);
    let len = a.len.unwrap_or(avail);
    if a.offset > payload || len > avail {
        return Err(format!(
            "{:?}: range {}..{}+{len} is outside the {payload}-byte payload",
            a.name, a.offset, a.offset
        )
        .into());
    }
    // Every chunk from the object `seg` mapped, even if its name is reused meanwhile.
    let file = segment::ObjectFile::of(&seg).map_err(|e| e.to_string())?;
    let (mut at, end) = (a.offset, a.offset + len);
    while at < end {
        let n = (end - at).min(CHUNK as u64) as usize;
        let bytes = file.read(base + at, n).map_err(|e| e.to_string())?;
        if bytes.is_empty() {
            return Err(format!(
                "{:?} shrank to {} bytes while being read",
                a.name,
                base + at
            )
            .into());
        }
        write_stdout(&bytes)?;
        at += bytes.len() as u64;
    }
    Ok(())
}

/// The size of CPython's `ShareableList([])`: its item count and one offset, all zero.
const CPYTHON_EMPTY_LIST_SIZE: u64 = 16;

pub(crate) fn write(a: WriteArgs) -> CmdResult {
    if a.raw && !a.force {
        // `--raw` offsets count from byte 0 of the object: in a shmkit object (a header, or
        // shmkit's magic on a cut one) that is its header, so the write would corrupt it.
        // A ShareableList has no header at byte 0 (shmkit's is a trailer; CPython's has none)
        // but its bytes are its items: the same refusal for both. Except CPython's empty list,
        // 16 zero bytes, which is also what a new 16-byte raw segment holds: it has no item to
        // lose, and a raw segment just created must take a write.
        let p = segment::probe(&a.name).map_err(|e| e.to_string())?;
        if (p.cpython_list && p.size > CPYTHON_EMPTY_LIST_SIZE)
            || p.header
                .as_ref()
                .is_some_and(|h| h.kind == Kind::SHAREABLE_LIST)
        {
            return Err(format!(
                "segment {:?} holds a ShareableList{}: writing its bytes would corrupt it (pass \
                 --force to write anyway)",
                a.name,
                if p.cpython_list {
                    " made by CPython"
                } else {
                    ""
                }
            )
            .into());
        }
        if p.header.is_some() || matches!(p.verdict, segment::Verdict::Invalid(_)) {
            return Err(format!(
                "segment {:?} is a shmkit object ({}), not a raw one: --raw writes over its \
                 header (drop --raw to write its payload, or pass --force to write anyway)",
                a.name,
                p.kind_name()
            )
            .into());
        }
    }
    let (seg, kind) = open(&a.name, a.raw, Segment::options())?;
    if let Some(k) = kind.filter(|&k| k != Kind::SEGMENT && !a.force) {
        return Err(format!(
            "segment {:?} holds {}, not a plain segment: writing its bytes would corrupt it \
             (pass --force to write anyway)",
            a.name,
            k.with_article()
        )
        .into());
    }
    let data = if a.data == "-" {
        // At most one byte more than fits: a longer input is refused below by `write_at`
        // without being read (and held in memory) whole.
        let room = (seg.len() as u64).saturating_sub(a.offset);
        let mut v = Vec::new();
        std::io::stdin()
            .take(room.saturating_add(1))
            .read_to_end(&mut v)
            .map_err(|e| e.to_string())?;
        if v.len() as u64 > room {
            return Err(format!(
                "{:?}: standard input has more than the {room} bytes that fit from offset {} \
                 in the {}-byte payload",
                a.name,
                a.offset,
                seg.len()
            )
            .into());
        }
        v
    } else {
        a.data.into_bytes()
    };
    Ok(seg.write_at(a.offset, &data).map_err(|e| e.to_string())?)
}
