//! `shmkit rm`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::{CmdResult, Stop};
use shmkit::{segment, Segment};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Names to remove (without the leading `/`).
    #[arg(required = true)]
    names: Vec<OsString>,
    /// Also remove objects whose names shmkit refuses (which `shmkit ls` lists all the same):
    /// NAME must be an entry of /dev/shm itself, byte for byte (a name that is not UTF-8 is
    /// given as its own bytes, not as `ls` shows it), and still no `/`, `.` or `..`.
    #[arg(long)]
    any_name: bool,
}

pub(crate) fn run(args: Args) -> CmdResult {
    for name in &args.names {
        let b = name.as_bytes();
        // What even --any-name refuses: no entry of /dev/shm has such a name.
        let never = b.is_empty() || b.contains(&b'/') || b == b"." || b == b"..";
        let bad = if args.any_name {
            never.then(|| format!("invalid name {name:?}: empty, '.', '..' or contains '/'"))
        } else {
            // The hint only where --any-name would take the name.
            let hint = if never {
                ""
            } else {
                " (--any-name removes objects with such names)"
            };
            match name.to_str() {
                Some(n) => segment::validate_name(n)
                    .err()
                    .map(|e| format!("{e}{hint}")),
                None => Some(format!("invalid name {name:?}: not UTF-8{hint}")),
            }
        };
        if let Some(msg) = bad {
            return Err(Stop::Usage(msg));
        }
    }
    let mut failed = Vec::new();
    let listed = if args.any_name {
        segment::list().map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    for name in &args.names {
        let r = if args.any_name {
            // Through `ls`'s own listing: only a regular file directly in /dev/shm, and
            // only while the name still refers to the object listed.
            // Compared as bytes: `p.name` shows a name that is not UTF-8 with U+FFFD for
            // each bad byte, which must not match another file whose name is that text.
            match listed.iter().find(|p| p.file_name() == name.as_bytes()) {
                Some(p) => p
                    .unlink_if_unchanged()
                    .map_err(|e| e.to_string())
                    .and_then(|gone| {
                        gone.then_some(())
                            .ok_or_else(|| format!("{name:?} changed while being removed"))
                    }),
                None => Err(format!("no object {name:?} in /dev/shm")),
            }
        } else {
            // UTF-8: checked above.
            Segment::unlink(&name.to_string_lossy()).map_err(|e| e.to_string())
        };
        if let Err(e) = r {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}
