//! `shmkit ls`.

use crate::{outln, print_json, CmdResult};
use shmkit::segment;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    size: u64,
    kind: String,
    creator_pid: Option<u32>,
    alive: shmkit::Liveness,
}

pub(crate) fn run(args: Args) -> CmdResult {
    let rows: Vec<Row> = segment::list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|p| Row {
            kind: p.kind_name(),
            creator_pid: p.header.as_ref().map(|h| h.creator_pid),
            alive: p.creator,
            size: p.size,
            name: p.name,
        })
        .collect();
    if args.json {
        return print_json(&rows);
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    outln!(
        "{:<w$}  {:>12}  {:<18}  {:>8}  ALIVE",
        "NAME",
        "SIZE",
        "KIND",
        "CREATOR"
    )?;
    for r in &rows {
        let pid = r.creator_pid.map_or("-".to_string(), |p| p.to_string());
        let alive = match r.alive {
            shmkit::Liveness::Alive => "yes",
            shmkit::Liveness::Dead => "no",
            shmkit::Liveness::Unknown => "-",
        };
        outln!(
            "{:<w$}  {:>12}  {:<18}  {:>8}  {alive}",
            r.name,
            r.size,
            r.kind,
            pid
        )?;
    }
    Ok(())
}
