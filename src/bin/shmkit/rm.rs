//! `shmkit rm`.

use crate::CmdResult;
use shmkit::Segment;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Names to remove (without the leading `/`).
    #[arg(required = true)]
    names: Vec<String>,
}

pub(crate) fn run(args: Args) -> CmdResult {
    let mut failed = Vec::new();
    for name in &args.names {
        if let Err(e) = Segment::unlink(name) {
            failed.push(e.to_string());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}
