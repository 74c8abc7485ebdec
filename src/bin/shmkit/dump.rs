//! `shmkit dump`.

use crate::CmdResult;
use std::io::Write;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Segment name.
    name: String,
    /// First byte to show, from the start of the object (the header is bytes 0..128).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// How many bytes to show (default: to the end of the object, at most 64 KiB).
    #[arg(long)]
    len: Option<usize>,
}

pub(crate) fn run(args: Args) -> CmdResult {
    let len = args.len.unwrap_or(64 * 1024);
    let bytes = shmkit::segment::read_object_bytes(&args.name, args.offset, len)
        .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let at = args.offset + 16 * i as u64;
        let mut hex = String::with_capacity(48);
        for (j, b) in chunk.iter().enumerate() {
            hex.push_str(&format!("{b:02x} "));
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
        writeln!(out, "{at:08x}  {hex:<50} |{ascii}|").map_err(|e| e.to_string())?;
    }
    Ok(())
}
