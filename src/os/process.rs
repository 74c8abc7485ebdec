//! Process identity and liveness.
//!
//! A pid alone can be reused by the kernel, so shmkit records a process as `(pid, start time)`,
//! where the start time is field 22 of `/proc/PID/stat` (clock ticks since boot). A process is
//! alive when a process with that pid exists, is not a zombie, and started at that time.

use serde::Serialize;

/// Whether a recorded process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// The process runs (same pid, same start time).
    Alive,
    /// It exited, was killed, is a zombie, or its pid now belongs to another process.
    Dead,
    /// No process was recorded (pid 0).
    Unknown,
}

/// This process's pid.
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// This process's start time (clock ticks since boot); 0 if `/proc` is unreadable.
pub(crate) fn current_start_time() -> u64 {
    start_time(current_pid()).map(|(t, _)| t).unwrap_or(0)
}

/// This process's pid namespace: the inode number of `/proc/self/ns/pid`, or 0 if it cannot be
/// read. Not cached: a process forked after `unshare(CLONE_NEWPID)` is in another namespace.
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// `(start time, state letter)` of `pid` from `/proc/PID/stat`.
fn start_time(pid: u32) -> Option<(u64, u8)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': split after
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?; // field 3
                                                // Fields 4..=21 precede the start time (field 22): skip 18.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Liveness of the process recorded as `(pid, start_time)`. A `start_time` of 0 means it was
/// not recorded, and only the pid is checked.
pub(crate) fn liveness(pid: u32, recorded_start: u64) -> Liveness {
    liveness_where(pid, |start| recorded_start == 0 || start == recorded_start)
}

/// Liveness of `pid`, where `same(start)` says whether a process that started at `start` is
/// the recorded one (and not a later process that reused the pid).
fn liveness_where(pid: u32, same: impl Fn(u64) -> bool) -> Liveness {
    if pid == 0 {
        return Liveness::Unknown;
    }
    if pid > i32::MAX as u32 {
        return Liveness::Dead; // no such pid can exist (pid_max is at most 2^22)
    }
    match start_time(pid) {
        Some((start, _)) if !same(start) => Liveness::Dead, // pid reused
        // A zombie leader whose other threads still run (it called pthread_exit) is alive.
        Some((_, b'Z' | b'X')) if !other_threads_run(pid) => Liveness::Dead,
        Some(_) => Liveness::Alive,
        None => {
            // No /proc entry: fall back to kill(pid, 0).
            let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
                return Liveness::Unknown;
            };
            match rustix::process::test_kill_process(p) {
                Ok(()) | Err(rustix::io::Errno::PERM) => Liveness::Alive,
                Err(_) => Liveness::Dead,
            }
        }
    }
}

/// Whether thread group `pid` has a thread besides its leader that is not a zombie.
fn other_threads_run(pid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    dir.flatten().any(|t| {
        let tid = t.file_name();
        tid.to_str() != Some(&pid.to_string())
            && std::fs::read_to_string(format!("/proc/{pid}/task/{}/stat", tid.to_string_lossy()))
                .ok()
                .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().bytes().next()))
                .flatten()
                .is_some_and(|st| st != b'Z' && st != b'X')
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_bogus_pid_is_dead() {
        assert_eq!(
            liveness(current_pid(), current_start_time()),
            Liveness::Alive
        );
        assert_eq!(
            liveness(current_pid(), current_start_time() + 1),
            Liveness::Dead
        );
        assert_eq!(liveness(0, 0), Liveness::Unknown);
        // pid_max is at most 2^22.
        assert_eq!(liveness(4_194_305, 0), Liveness::Dead);
        // Found by fuzzing: a pid beyond i32 from a corrupt header must not panic.
        assert_eq!(liveness(u32::MAX, 0), Liveness::Dead);
    }
}
