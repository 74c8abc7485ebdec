//! `shmkit rm`.

use crate::{CmdResult, Stop};
use shmkit::{segment, Segment};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Names to remove (without the leading `/`).
    #[arg(required = true)]
    names: Vec<String>,
    /// Also remove objects whose names shmkit refuses (which `shmkit ls` lists all the same):
    /// NAME must be an entry of /dev/shm itself, and still no `/`, `.` or `..`.
    #[arg(long)]
    any_name: bool,
}

pub(crate) fn run(args: Args) -> CmdResult {
    for name in &args.names {
        let bad = if args.any_name {
            (name.is_empty() || name.contains('/') || name == "." || name == "..")
                .then(|| format!("invalid name {name:?}: empty, '.', '..' or contains '/'"))
        } else {
            segment::validate_name(name)
                .err()
                .map(|e| format!("{e} (--any-name removes objects with such names)"))
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
            match listed.iter().find(|p| &p.name == name) {
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
            Segment::unlink(name).map_err(|e| e.to_string())
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
