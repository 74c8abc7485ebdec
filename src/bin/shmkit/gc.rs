//! `shmkit gc`.

use crate::{outln, CmdResult};
use shmkit::segment::{self, GcAction, GcOptions};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only print what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Only consider names starting with this prefix (and leave liveness files alone).
    #[arg(long, default_value = "", hide_default_value = true)]
    prefix: String,
}

/// One line per file: `removed NAME: why`, `would remove NAME: why`, `kept NAME: why`, or
/// `failed to remove NAME: error (why)`; exit 1 if a removal failed.
pub(crate) fn run(args: Args) -> CmdResult {
    let opts = GcOptions::new().dry_run(args.dry_run).prefix(&args.prefix);
    let report = segment::gc(&opts).map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for e in &report {
        let file = match &e.file_bytes {
            Some(b) => crate::shown_file_name(b),
            None => crate::shown_name(&e.file),
        };
        match &e.action {
            GcAction::Removed => outln!("removed {file}: {}", e.reason)?,
            GcAction::WouldRemove => outln!("would remove {file}: {}", e.reason)?,
            GcAction::Kept => outln!("kept {file}: {}", e.reason)?,
            GcAction::Failed(err) => {
                outln!("failed to remove {file}: {err} ({})", e.reason)?;
                failed.push(format!("{file}: {err}"));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("could not remove {}", failed.join("; ")).into())
    }
}
