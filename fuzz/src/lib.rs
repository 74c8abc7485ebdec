//! What the attach targets share: one scratch object per fuzzing process, named
//! `PREFIX<pid>`, that the target creates with the library, overwrites with hostile bytes
//! ([`Scratch::corrupt`]), opens and drives, and that is removed when the [`Scratch`] drops.
//!
//! `.ci/run` checks that no `fuzz-*` name is left in `/dev/shm` after the fuzz step, so every
//! prefix starts with `fuzz-`.

use std::os::unix::fs::FileExt;
use std::sync::Once;
use std::time::Duration;

/// Where a segment's payload starts (the shmkit header comes first).
pub const HEADER: u64 = shmkit::segment::HEADER_SIZE as u64;

/// The timeout of every timed operation a target makes: long enough to take the timed path,
/// short enough that a fuzz run is not slowed.
pub const TINY: Duration = Duration::from_millis(1);

/// The scratch object of this process. Creating one removes a stale object of this
/// process's name (and, once per process, those of earlier runs whose process is gone: a run
/// killed mid-iteration leaves its object behind); dropping it removes the object.
pub struct Scratch {
    name: String,
    path: String,
}

impl Scratch {
    /// The scratch object `PREFIX<pid>` (not yet created).
    pub fn new(prefix: &str) -> Scratch {
        assert!(
            prefix.starts_with("fuzz-"),
            "`.ci/run` counts `fuzz-*` names"
        );
        static CLEAN: Once = Once::new();
        CLEAN.call_once(|| clean_stale(prefix));
        let name = format!("{prefix}{}", std::process::id());
        let path = format!("/dev/shm/{name}");
        let _ = std::fs::remove_file(&path);
        Scratch { name, path }
    }

    /// The object's name, for `create` / `open`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object's file, `/dev/shm/NAME`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Overwrite at most `limit` bytes of the payload, from its byte `start`, with `bytes`,
    /// keeping the file's size: what another process could write. Nothing is written past the
    /// end of the file or where the object does not exist.
    pub fn corrupt(&self, start: u64, limit: usize, bytes: &[u8]) {
        if let Some(at) = HEADER.checked_add(start) {
            self.overwrite(at, limit, bytes);
        }
    }

    /// [`corrupt`](Self::corrupt) from byte `at` of the object, not of its payload: for an
    /// object whose first bytes are not a shmkit header (a ShareableList: CPython's layout from
    /// byte 0, shmkit's header in a trailer).
    pub fn overwrite(&self, at: u64, limit: usize, bytes: &[u8]) {
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.path) else {
            return;
        };
        let Ok(meta) = f.metadata() else { return };
        if at >= meta.len() {
            return;
        }
        let room = usize::try_from(meta.len() - at).unwrap_or(usize::MAX);
        let n = bytes.len().min(limit).min(room);
        let _ = f.write_all_at(&bytes[..n], at);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Remove the objects `PREFIX<pid>` whose process is gone.
fn clean_stale(prefix: &str) {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
