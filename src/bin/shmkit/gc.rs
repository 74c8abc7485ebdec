//! `shmkit gc`.

use crate::{outln, CmdResult};
use shmkit::{segment, Liveness};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only print what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Only consider names starting with this prefix.
    #[arg(long, default_value = "", hide_default_value = true)]
    prefix: String,
}

pub(crate) fn run(args: Args) -> CmdResult {
    for p in segment::list().map_err(|e| e.to_string())? {
        // Only shmkit segments (raw objects have no recorded creator), only dead creators,
        // and only when no process maps the object.
        if !p.name.starts_with(&args.prefix) || p.header.is_none() || p.creator != Liveness::Dead {
            continue;
        }
        let users = segment::mapped_by(&p.name);
        if !users.is_empty() {
            continue;
        }
        if args.dry_run {
            outln!("would remove {}", p.name)?;
        } else if p.unlink_if_unchanged().map_err(|e| e.to_string())? {
            outln!("removed {}", p.name)?;
        }
    }
    Ok(())
}
