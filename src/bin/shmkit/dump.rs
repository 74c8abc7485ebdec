//! `shmkit dump`.

use crate::bytes::CHUNK;
use crate::{segment_name, write_stdout, CmdResult};
use std::fmt::Write;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Segment name.
    #[arg(value_parser = segment_name)]
    name: String,
    /// First byte to show, from the start of the object (the header is bytes 0..128).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// How many bytes to show (default: 64 KiB; fewer at the end of the object).
    #[arg(long, default_value_t = CHUNK as u64, hide_default_value = true)]
    len: u64,
}

/// Show the bytes [`CHUNK`] at a time (a multiple of the 16-byte line), so any `--len` takes
/// bounded memory. An `--offset` past the end of the object is an error (as `read`'s), not an
/// empty dump.
pub(crate) fn run(args: Args) -> CmdResult {
    // One open: every chunk comes from this object, even if its name is reused meanwhile.
    let file = shmkit::segment::ObjectFile::open(&args.name).map_err(|e| e.to_string())?;
    let size = file.size().map_err(|e| e.to_string())?;
    if args.offset > size {
        return Err(format!(
            "{:?}: offset {} is past the end of the {size}-byte object",
            args.name, args.offset
        )
        .into());
    }
    let end = args.offset.saturating_add(args.len);
    let mut at = args.offset;
    while at < end {
        let n = (end - at).min(CHUNK as u64) as usize;
        let bytes = file.read(at, n).map_err(|e| e.to_string())?;
        write_stdout(format_lines(at, &bytes).as_bytes())?;
        if bytes.len() < n {
            break; // the end of the object
        }
        at += n as u64;
    }
    Ok(())
}

/// `bytes`, which start at object offset `at`, as `hexdump -C` lines of 16.
fn format_lines(at: u64, bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() / 16 * 80 + 80);
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let mut hex = String::with_capacity(50);
        for (j, b) in chunk.iter().enumerate() {
            let _ = write!(hex, "{b:02x} ");
            if j == 7 {
                hex.push(' ');
            }
        }
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(out, "{:08x}  {hex:<50} |{ascii}|", at + 16 * i as u64);
    }
    out
}
