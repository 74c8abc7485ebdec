//! [`gc`]: remove what nobody will use again (`SPEC.md` §4.6).

use super::header::Lifetime;
use super::probe::{mapped_by, probe, Verdict};
use crate::error::{Error, Result};
use crate::os::process::Liveness;
use crate::os::{liveness, shm};
use std::os::unix::ffi::OsStringExt;

/// What [`gc`] considers: everything, or only names starting with a prefix; for real, or as
/// a dry run.
///
/// ```
/// use shmkit::segment::{gc, GcOptions};
/// # let prefix = format!("doc-gc-{}-", std::process::id());
/// let report = gc(&GcOptions::new().prefix(&prefix).dry_run(true))?;
/// assert!(report.is_empty()); // nothing has that prefix
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    dry_run: bool,
    prefix: String,
}

impl GcOptions {
    /// Every object, for real.
    pub fn new() -> GcOptions {
        GcOptions::default()
    }

    /// Only report what would be removed (default: no).
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Only consider objects whose names start with `prefix` (temporary objects: whose final
    /// names do). With a prefix, liveness files are left alone: they have no object name.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }
}

/// What [`gc`] did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcAction {
    /// Removed.
    Removed,
    /// Would be removed (a dry run).
    WouldRemove,
    /// Kept.
    Kept,
    /// Should have been removed, but the removal failed: the error.
    Failed(String),
}

/// One line of a [`gc`] report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcEntry {
    /// The file, relative to `/dev/shm`: an object's name, a temporary object's name
    /// (`.shmkit-tmp-…`), or a liveness file (`.shmkit/live-…`). A lossy copy (U+FFFD for
    /// each invalid sequence) if the name is not UTF-8: [`file_bytes`](Self::file_bytes)
    /// has it then.
    pub file: String,
    /// The file's name as bytes if it is not UTF-8 (such a file is never a segment, and is
    /// always kept); `None` otherwise.
    pub file_bytes: Option<Vec<u8>>,
    /// What happened to it.
    pub action: GcAction,
    /// Why.
    pub reason: String,
}

/// Remove what nobody will use again, and say what was removed and what was kept, and why:
///
/// - objects created with [`Lifetime::Owned`] whose creator is dead (by its liveness token)
///   and that no process maps (`/proc/*/maps`);
/// - temporary objects left by creators that died while building them (their names carry the
///   creator's token), again only if nobody maps them;
/// - liveness files of dead processes (not with a prefix; if this user may not list their
///   directory, a registry of mode 1733 owned by root, one entry for `.shmkit` says so and
///   why, kept).
///
/// Persistent objects, raw objects, objects whose header is invalid or whose creator's
/// liveness cannot be told, and anything mapped are kept. The maps check sees only the
/// processes this user may inspect in this pid namespace: run it as the objects' owner (or
/// root), in their namespace. A process that opens an object between the check and the unlink
/// keeps a mapping of a removed object.
pub fn gc(options: &GcOptions) -> Result<Vec<GcEntry>> {
    let mut names = shm::list_names().map_err(|e| Error::from_io(shm::SHM_DIR, "list", e))?;
    names.sort();
    let mut out = Vec::new();
    for file in names {
        let file = match file.into_string() {
            Ok(f) => f,
            Err(f) => {
                let b = f.into_vec();
                if b.starts_with(shm::RESERVED_PREFIX.as_bytes())
                    || !b.starts_with(options.prefix.as_bytes())
                {
                    continue;
                }
                out.push(GcEntry {
                    file: String::from_utf8_lossy(&b).into_owned(),
                    file_bytes: Some(b),
                    action: GcAction::Kept,
                    reason: "not inspectable: its name is not UTF-8, so not a segment name".into(),
                });
                continue;
            }
        };
        let entry = if let Some((token, target)) = shm::parse_temp_name(&file) {
            if !target.starts_with(&options.prefix) {
                continue;
            }
            judge_temp(options, &file, token, target)
        } else if file.starts_with(shm::RESERVED_PREFIX) || !file.starts_with(&options.prefix) {
            continue;
        } else {
            match judge_object(options, &file) {
                Some(e) => e,
                None => continue, // removed while we listed
            }
        };
        out.push(entry);
    }
    if options.prefix.is_empty() {
        let swept = match liveness::sweep(options.dry_run)
            .map_err(|e| Error::from_io(&liveness::dir(), "sweep", e))?
        {
            liveness::Sweep::Swept(swept) => swept,
            liveness::Sweep::Unlistable(e) => {
                // A registry of mode 1733 (`SPEC.md` §2.3): only its owner lists it.
                out.push(entry(
                    ".shmkit",
                    GcAction::Kept,
                    format!(
                        "could not list the liveness directory {} ({e}): this user may search it \
                         but not read it (a registry of mode 1733); only its owner's \
                         `shmkit gc` removes the liveness files of dead processes there",
                        liveness::dir()
                    ),
                ));
                Vec::new()
            }
        };
        out.extend(swept.into_iter().map(|s| GcEntry {
            file: format!(".shmkit/{}", s.file),
            file_bytes: None,
            action: match (s.outcome, options.dry_run) {
                (Ok(()), true) => GcAction::WouldRemove,
                (Ok(()), false) => GcAction::Removed,
                (Err(e), _) => GcAction::Failed(e),
            },
            reason: "the liveness file of a dead process".into(),
        }));
    }
    Ok(out)
}

fn entry(file: &str, action: GcAction, reason: String) -> GcEntry {
    GcEntry {
        file: file.to_owned(),
        file_bytes: None,
        action,
        reason,
    }
}

/// Remove `file` (if it is still the object `identity`) unless this is a dry run, or say
/// who maps it.
fn remove(
    options: &GcOptions,
    file: &str,
    identity: Option<(u64, u64)>,
    reason: String,
) -> GcEntry {
    let users = mapped_by(file);
    if !users.is_empty() {
        return entry(
            file,
            GcAction::Kept,
            format!("{reason}, but pid {users:?} maps it"),
        );
    }
    if options.dry_run {
        return entry(file, GcAction::WouldRemove, reason);
    }
    let Some(identity) = identity else {
        return entry(file, GcAction::Failed("it vanished".into()), reason);
    };
    match shm::unlink_if_same(file, identity) {
        Ok(true) => entry(file, GcAction::Removed, reason),
        Ok(false) => entry(
            file,
            GcAction::Kept,
            "it was replaced or removed meanwhile".into(),
        ),
        Err(e) => entry(file, GcAction::Failed(e.to_string()), reason),
    }
}

fn judge_temp(options: &GcOptions, file: &str, token: u64, target: &str) -> GcEntry {
    match liveness::liveness(token) {
        Liveness::Dead => remove(
            options,
            file,
            shm::stat_path(file).map(|st| st.identity),
            format!("an unfinished build of {target:?} whose creator died"),
        ),
        Liveness::Alive => entry(
            file,
            GcAction::Kept,
            format!("{target:?} is being built by a live process"),
        ),
        Liveness::Unknown => entry(
            file,
            GcAction::Kept,
            format!("a build of {target:?} whose creator's liveness cannot be told"),
        ),
    }
}

fn judge_object(options: &GcOptions, file: &str) -> Option<GcEntry> {
    let p = match probe(file) {
        Ok(p) => p,
        Err(Error::NotFound { .. }) => return None,
        Err(e) => return Some(entry(file, GcAction::Kept, format!("not inspectable: {e}"))),
    };
    let kept = |reason: String| Some(entry(file, GcAction::Kept, reason));
    let h = match (&p.verdict, &p.header) {
        (Verdict::Raw, _) | (_, None) => {
            return kept("raw (no shmkit header): lives until removed".into())
        }
        (Verdict::Invalid(why), _) => return kept(format!("invalid header ({why})")),
        // `probe` never says it (it fails instead, handled above).
        (Verdict::Unreadable, _) => return kept("not readable by this user".into()),
        (Verdict::Valid, Some(h)) => h,
    };
    let pid = h.creator_pid;
    match (h.lifetime, p.creator) {
        (Lifetime::Owned, Liveness::Dead) => Some(remove(
            options,
            file,
            Some(p.identity()),
            format!("owned, and its creator (pid {pid}) is dead"),
        )),
        (Lifetime::Owned, Liveness::Alive) => kept(format!("owned by a live creator (pid {pid})")),
        (Lifetime::Owned, Liveness::Unknown) => kept(format!(
            "owned, but its creator's (pid {pid}) liveness cannot be told"
        )),
        (Lifetime::Persistent, _) => kept("persistent: lives until removed".into()),
        (Lifetime::Invalid(x), _) => kept(format!("unknown lifetime {x}")),
    }
}
