//! Process facts for display and for `gc`'s second guard. Liveness itself is decided by
//! tokens (`os::liveness`), never by pids.

/// Whether a recorded process still runs (`SPEC.md` §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum Liveness {
    /// The process runs: it holds the lock on its liveness file.
    Alive,
    /// It exited or was killed: its liveness file is gone or unlocked.
    Dead,
    /// Nobody was recorded, or its liveness file could not be queried.
    Unknown,
}

impl Liveness {
    /// `alive`, `dead` or `unknown`: the one word the CLI's text and JSON (`serde`) both use.
    ///
    /// ```
    /// assert_eq!(shmkit::Liveness::Dead.to_string(), "dead");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which process made an object: what a process-local object (a handle pool, a mutex-guarded
/// state) keeps to tell, after `fork()`, whether it runs in the process that made it or in a
/// child holding a copy of its memory. In such a child, locks of the parent's other threads
/// may be held forever and what they guarded may be half-changed: the copy must be left
/// alone (leaked), not locked or dropped.
///
/// The same test the library's handles make on their own (`SPEC.md` §2.3): the process's
/// liveness token, which a child never shares with its parent; one load to check.
///
/// ```
/// let m = shmkit::ProcessMark::here();
/// assert!(m.is_here());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMark(u64);

impl ProcessMark {
    /// This process's mark.
    pub fn here() -> ProcessMark {
        ProcessMark(super::liveness::mark())
    }

    /// Whether this is the process that took the mark (false in a `fork()`ed child).
    #[inline]
    pub fn is_here(self) -> bool {
        super::liveness::is_marked_here(self.0)
    }
}

/// This process's pid.
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// This process's pid namespace: the inode number of `/proc/self/ns/pid`, or 0 if it cannot be
/// read. Not cached: a process forked after `unshare(CLONE_NEWPID)` is in another namespace.
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Pids whose `/proc/PID/maps` lists a mapping of `path` (also once unlinked: the kernel
/// then appends " (deleted)").
pub(crate) fn pids_mapping(path: &str) -> Vec<u32> {
    let deleted = format!("{path} (deleted)");
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            if maps
                .lines()
                .any(|l| l.ends_with(path) || l.ends_with(&deleted))
            {
                pids.push(pid);
            }
        }
    }
    pids
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::Liveness;

    /// The text word is the JSON one (new-user walkthrough: `ls` said yes/no, text `(Dead)`).
    #[test]
    fn liveness_display_is_its_serde_name() {
        for l in [Liveness::Alive, Liveness::Dead, Liveness::Unknown] {
            assert_eq!(
                serde_json::to_string(&l).unwrap(),
                format!("\"{l}\""),
                "{l:?}"
            );
        }
    }
}
