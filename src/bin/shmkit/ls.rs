//! `shmkit ls`.

use crate::{outln, print_json, CmdResult};
use shmkit::segment::{self, Verdict};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Print JSON instead of a table: an array of objects with `name`, `size`, `kind`,
    /// `status`, `lifetime`, `creator_pid`, `alive` (`alive`, `dead` or `unknown`, the words
    /// of the table's ALIVE column, which shows `-` where no creator is recorded). A file
    /// whose name is not UTF-8 is listed too (as `raw`; the table shows its name quoted, each
    /// invalid byte as `\xNN`): its `name` has U+FFFD for each invalid byte sequence, and
    /// `name_bytes` holds the name's bytes as an array of integers (0..=255). `name_bytes` is
    /// absent for UTF-8 names.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    /// The name's bytes, for a name that is not UTF-8 (then `name` is lossy).
    #[serde(skip_serializing_if = "Option::is_none")]
    name_bytes: Option<Vec<u8>>,
    size: u64,
    kind: String,
    /// `valid`, `raw` or `invalid` (an open would refuse it; `shmkit info` says why).
    status: &'static str,
    /// `persistent` or `owned` (shmkit objects only).
    lifetime: Option<String>,
    creator_pid: Option<u32>,
    alive: shmkit::Liveness,
}

pub(crate) fn run(args: Args) -> CmdResult {
    let rows: Vec<Row> = segment::list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|p| Row {
            kind: p.kind_name(),
            status: match p.verdict {
                Verdict::Valid => "valid",
                Verdict::Raw => "raw",
                Verdict::Invalid(_) => "invalid",
                Verdict::Unreadable => "unreadable",
            },
            lifetime: p.header.as_ref().map(|h| h.lifetime.to_string()),
            creator_pid: p.header.as_ref().map(|h| h.creator_pid),
            alive: p.creator,
            size: p.size,
            name: p.name,
            name_bytes: p.name_bytes,
        })
        .collect();
    if args.json {
        return print_json(&rows);
    }
    let shown = |r: &Row| match &r.name_bytes {
        Some(b) => crate::shown_file_name(b),
        None => crate::shown_name(&r.name),
    };
    let w = rows
        .iter()
        .map(|r| shown(r).len())
        .max()
        .unwrap_or(4)
        .max(4);
    let kind_of = |r: &Row| match r.status {
        "invalid" if r.kind != "invalid" => format!("{} (invalid)", r.kind),
        _ => r.kind.clone(),
    };
    // As wide as the widest kind shown (e.g. `shareable-list (cpython)`), at least 18.
    let kw = rows
        .iter()
        .map(|r| kind_of(r).len())
        .max()
        .unwrap_or(0)
        .max(18);
    outln!(
        "{:<w$}  {:>12}  {:<kw$}  {:<10}  {:>8}  ALIVE",
        "NAME",
        "SIZE",
        "KIND",
        "LIFETIME",
        "CREATOR"
    )?;
    for r in &rows {
        let pid = r.creator_pid.map_or("-".to_string(), |p| p.to_string());
        // The JSON's word (`alive`, `dead`, `unknown`); `-` where no creator is recorded
        // (no header), as in the CREATOR column.
        let alive = match r.creator_pid {
            Some(_) => r.alive.name(),
            None => "-",
        };
        let kind = kind_of(r);
        let lifetime = r.lifetime.as_deref().unwrap_or("-");
        outln!(
            "{:<w$}  {:>12}  {kind:<kw$}  {lifetime:<10}  {:>8}  {alive}",
            shown(r),
            r.size,
            pid
        )?;
    }
    Ok(())
}
