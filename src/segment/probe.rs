//! Looking at segments without attaching: what `shmkit ls` and `shmkit info` start from.

use serde::Serialize;

use super::header::{HeaderInfo, RawHeader, State, HEADER_SIZE, MAGIC};
use super::kind::Kind;
use super::name::validate_name;
use crate::error::{Error, Result};
use crate::os::process::Liveness;
use crate::os::shm;

/// What a read of a segment's first bytes shows.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The segment name.
    pub name: String,
    /// Object size in bytes (`fstat`).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// The header, if the object starts with shmkit's magic and is long enough to hold one;
    /// `None` for raw (foreign) objects and for truncated ones.
    pub header: Option<HeaderInfo>,
    /// Why an object that starts with shmkit's magic cannot be a sound shmkit object (shorter
    /// than the header, or a published header that contradicts the object's size, an invalid
    /// state word: what `open` would report as corrupt); `None` if it looks sound, is still
    /// being initialised, or has no magic (raw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
    /// Liveness of the creator recorded in the header (`unknown` for raw objects).
    pub creator: Liveness,
    /// `(st_dev, st_ino)`, so that a removal can check the name still refers to this object.
    #[serde(skip)]
    identity: (u64, u64),
}

impl Probe {
    /// Unlink the probed object, but only if its name still refers to it (not to a newer
    /// object created under the same name since the probe). Returns whether it was removed.
    pub fn unlink_if_unchanged(&self) -> Result<bool> {
        shm::unlink_if_same(&self.name, self.identity)
            .map_err(|e| Error::from_io(&self.name, "unlink", e))
    }

    /// The kind as `shmkit ls` prints it: `corrupt`, the header's kind, or `raw`.
    pub fn kind_name(&self) -> String {
        if self.corrupt.is_some() {
            return "corrupt".into();
        }
        match &self.header {
            Some(h) => h.kind.to_string(),
            None => "raw".into(),
        }
    }
}

/// Read the first bytes of segment `name` (read-only, without mapping it) and describe it.
/// The header is parsed but not validated beyond its magic; attach to validate.
pub fn probe(name: &str) -> Result<Probe> {
    validate_name(name)?;
    let fd =
        shm::open(name, shm::OpenMode::ReadOnly).map_err(|e| Error::from_io(name, "open", e))?;
    let st = shm::stat(&fd).map_err(|e| Error::from_io(name, "fstat", e))?;
    let mut buf = [0u8; HEADER_SIZE];
    let n = shm::read_prefix(&fd, &mut buf).map_err(|e| Error::from_io(name, "read", e))?;
    let magic = buf[..n].starts_with(&MAGIC);
    let header = RawHeader::from_prefix(&buf[..n])
        .filter(|_| magic)
        .map(|h| HeaderInfo::from_raw(&h));
    let corrupt = if magic {
        corruption(name, &buf[..n], st.size)
    } else {
        None
    };
    let creator = header
        .as_ref()
        .map_or(Liveness::Unknown, HeaderInfo::creator_liveness);
    Ok(Probe {
        name: name.to_owned(),
        size: st.size,
        mode: st.mode,
        uid: st.uid,
        header,
        corrupt,
        creator,
        identity: st.identity,
    })
}

/// Why `bytes` (the first bytes of an object of `size` bytes, starting with shmkit's magic)
/// cannot be a sound shmkit object, checked as `open` checks a header (`SPEC.md` §3.3, §3.4).
/// A header still being written (state `initializing`) is not judged: its fields are not final.
fn corruption(name: &str, bytes: &[u8], size: u64) -> Option<String> {
    let (kind, fingerprint) = match RawHeader::from_prefix(bytes) {
        Some(h) => match State::from_word(h.state) {
            State::Initializing => return None,
            State::Invalid(w) => return Some(format!("state word is {w}, expected 0..=3")),
            _ => (Kind(h.kind), h.fingerprint),
        },
        None => (Kind(0), 0), // too short: `parse` says so
    };
    match HeaderInfo::parse(name, bytes, size, kind, fingerprint) {
        Err(Error::Corrupt { what, .. }) => Some(what),
        _ => None,
    }
}

/// Every object in `/dev/shm` this process can read, sorted by name. Objects whose names
/// shmkit would refuse (e.g. POSIX semaphores' `sem.*` files are fine, but names with odd
/// characters are not) are listed with what `fstat` shows and no header.
pub fn list() -> Result<Vec<Probe>> {
    let names = shm::list_names().map_err(|e| Error::from_io(shm::SHM_DIR, "list", e))?;
    let mut out: Vec<Probe> = names
        .into_iter()
        .filter_map(|name| match probe(&name) {
            Ok(p) => Some(p),
            Err(Error::NotFound { .. }) => None, // removed while we listed
            Err(_) => shm::stat_path(&name).map(|st| Probe {
                name,
                size: st.size,
                mode: st.mode,
                uid: st.uid,
                header: None,
                corrupt: None,
                creator: Liveness::Unknown,
                identity: st.identity,
            }),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Copy up to `len` bytes of object `name` starting at byte `offset` of the object (the
/// header included), without mapping it: what `shmkit dump` shows. Returns fewer bytes at the
/// end of the object.
pub fn read_object_bytes(name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
    validate_name(name)?;
    let fd =
        shm::open(name, shm::OpenMode::ReadOnly).map_err(|e| Error::from_io(name, "open", e))?;
    let size = shm::stat(&fd)
        .map_err(|e| Error::from_io(name, "fstat", e))?
        .size;
    let len = len.min(size.saturating_sub(offset) as usize);
    let mut buf = vec![0u8; len];
    let n = shm::read_at(&fd, offset, &mut buf).map_err(|e| Error::from_io(name, "read", e))?;
    buf.truncate(n);
    Ok(buf)
}

/// Processes that currently map object `name`, from `/proc/*/maps` (only those this user
/// can read). Used by `shmkit gc` to never remove a segment that is in use.
pub fn mapped_by(name: &str) -> Vec<u32> {
    crate::os::process::pids_mapping(&format!("{}/{name}", shm::SHM_DIR))
}
