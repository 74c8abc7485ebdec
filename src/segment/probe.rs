//! Looking at segments without attaching: what `shmkit ls`, `shmkit info` and `shmkit gc`
//! start from. Nothing here waits, maps, or changes an object.

use super::header::{validate_self, HeaderInfo, RawHeader, HEADER_SIZE, MAGIC};
use super::kind::Kind;
use super::name::validate_name;
use crate::error::{Error, Result};
use crate::os::process::Liveness;
use crate::os::shm;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// What a read of a segment's first bytes shows.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The segment name. For a file whose name is not UTF-8 (never a segment name, but
    /// [`list`] shows every file), a lossy copy for display, with U+FFFD for each invalid
    /// sequence: [`name_bytes`](Self::name_bytes) has the name itself.
    pub name: String,
    /// The name's bytes if they are not UTF-8 (then [`name`](Self::name) is lossy); `None`
    /// for every UTF-8 name.
    pub name_bytes: Option<Vec<u8>>,
    /// Object size in bytes (`fstat`).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// The header as its bytes read, if the object starts with shmkit's magic and holds a
    /// whole header; `None` for raw (foreign) objects. Not validated: see
    /// [`verdict`](Self::verdict).
    pub header: Option<HeaderInfo>,
    /// Liveness of the creator recorded in the header (`unknown` for raw objects).
    pub creator: Liveness,
    /// Whether an open would accept the object.
    pub verdict: Verdict,
    /// No shmkit magic at byte 0 and no shmkit trailer, but the bytes are a valid CPython
    /// 3.9–3.13 `ShareableList` filling the object exactly (what `ShareableList` in Python
    /// made); shown as `shareable-list (cpython)`. A shmkit `ShareableList` has its header in
    /// a trailer instead, which [`header`](Self::header) shows.
    pub cpython_list: bool,
    /// `(st_dev, st_ino)`, so that a removal can check the name still refers to this object.
    identity: (u64, u64),
}

/// What an open of a probed object would find, judged from one copy of its first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A shmkit object whose header passes every check an open makes, except the kind and
    /// layout fingerprint, which depend on what the opener asks for.
    Valid,
    /// No shmkit magic: a raw object (CPython's `SharedMemory`, or one made with
    /// `.raw(true)`), possibly still 0 bytes while a foreign creator sizes it.
    Raw,
    /// shmkit's magic, but an open would refuse the object: why (for instance a state word
    /// that is not ready, a size that does not match, another format version).
    Invalid(String),
    /// This user may not read the object ([`list`] only; [`probe`] fails with
    /// [`Error::PermissionDenied`]): nothing is known of its bytes, only what `stat` shows.
    Unreadable,
}

impl Probe {
    /// Unlink the probed object, but only if its name still refers to it (not to a newer
    /// object created under the same name since the probe). Returns whether it was removed.
    pub fn unlink_if_unchanged(&self) -> Result<bool> {
        let r = match &self.name_bytes {
            Some(b) => shm::unlink_if_same(OsStr::from_bytes(b), self.identity),
            None => shm::unlink_if_same(&self.name, self.identity),
        };
        r.map_err(|e| Error::from_io(&self.name, "unlink", e))
    }

    /// The file's name as bytes: [`name_bytes`](Self::name_bytes) if it is not UTF-8, else
    /// [`name`](Self::name)'s.
    pub fn file_name(&self) -> &[u8] {
        self.name_bytes.as_deref().unwrap_or(self.name.as_bytes())
    }

    /// `(st_dev, st_ino)` of the probed object.
    pub(crate) fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// The kind as `shmkit ls` prints it: the header's kind, or `raw`.
    pub fn kind_name(&self) -> String {
        match (&self.header, &self.verdict) {
            (Some(h), _) => h.kind.to_string(),
            // shmkit's magic without a whole header: not a foreign object, a cut one.
            (None, Verdict::Invalid(_)) => "invalid".into(),
            (None, Verdict::Unreadable) => "unreadable".into(),
            (None, _) if self.cpython_list => CPYTHON_LIST_KIND.into(),
            (None, _) => RAW_KIND.into(),
        }
    }

    /// What the object holds, as the errors of an open of another kind say it: "a lock",
    /// "a shareable-list", "a ShareableList made by CPython", "no shmkit object (a raw
    /// segment)" (from [`kind_name`](Self::kind_name)).
    ///
    /// ```
    /// # let name = format!("doc-holds-{}", std::process::id());
    /// let _s = shmkit::Segment::options().raw(true).unlink_on_drop(true).create(&name, 64)?;
    /// let p = shmkit::segment::probe(&name)?;
    /// assert_eq!(p.holds(), "no shmkit object (a raw segment)");
    /// let e = shmkit::sync::Lock::open(&name).unwrap_err();
    /// assert_eq!(e.to_string(), format!("segment {name:?} holds {}, not a lock", p.holds()));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn holds(&self) -> String {
        Kind::phrase(&self.kind_name())
    }

    /// The error of an open that wanted `expected` (a kind's name, or a noun phrase as
    /// [`Error::KindMismatch`] takes it) and found this object, which is not one: a kind
    /// mismatch naming what it holds ([`kind_name`](Self::kind_name)), or [`Error::Corrupt`]
    /// for an object that starts with shmkit's magic but has no whole header.
    #[cfg(not(loom))] // its callers, the queue and frames opens by name, are not built under loom
    pub(crate) fn not_a(&self, expected: &str) -> Error {
        match (&self.header, &self.verdict) {
            (None, Verdict::Invalid(what)) => Error::corrupt(&self.name, what.clone()),
            _ => Error::KindMismatch {
                name: self.name.clone(),
                expected: expected.to_owned(),
                found: self.kind_name(),
            },
        }
    }
}

/// [`Probe::kind_name`] of an object without shmkit's header (no magic at byte 0, no
/// ShareableList trailer), and [`Error::KindMismatch`]'s `found` for it.
pub(crate) const RAW_KIND: &str = "raw";
/// [`Probe::kind_name`] of a ShareableList made by CPython (no shmkit header or trailer).
pub(crate) const CPYTHON_LIST_KIND: &str = "shareable-list (cpython)";

/// Whether `prefix`, an object's first bytes (all of them if it is shorter than the magic),
/// are shmkit's magic or, for an object shorter than it, its start: an object that claims to
/// be shmkit's, cut or overwritten if an open refuses it (`Corrupt`), never a foreign one.
fn claims_magic(prefix: &[u8]) -> bool {
    let n = prefix.len().min(MAGIC.len());
    n > 0 && prefix[..n] == MAGIC[..n]
}

/// What an object without shmkit's magic at byte 0 holds, read from `fd` by `pread` (no
/// mapping, so a truncated object cannot fault us; `size` is its `fstat` size).
enum NoHeader {
    /// A shmkit ShareableList: its header is in a trailer after the CPython area, and `why`
    /// says why an open would refuse that header (`None`: it would not).
    ShmkitList {
        header: RawHeader,
        why: Option<String>,
    },
    /// A ShareableList made by CPython, filling the object exactly.
    CpythonList,
    /// Anything else.
    Raw,
}

fn without_header(name: &str, fd: &OwnedFd, size: u64) -> NoHeader {
    let mut read = |at: u64, b: &mut [u8]| shm::read_at(fd, at, b).is_ok_and(|n| n == b.len());
    // `ls` looks at every object: a raw one whose first word claims millions of items is
    // not read as a list (that would copy its whole "offsets table" into memory). The
    // limit is checked by the parse on the one count it reads (a peer may change the
    // word between two reads); a shmkit list of more items is found by its trailer,
    // from that count and two offsets.
    use crate::list::{trailer, Classified, PROBE_MAX_ITEMS};
    let found = match crate::list::classify(name, size, &mut read, false, PROBE_MAX_ITEMS) {
        Ok(Classified::Shmkit { header, .. }) => Some((header, None)),
        Ok(Classified::BadTrailer { header, why }) => Some((header, Some(why))),
        Ok(Classified::Cpython(g)) if g.end == size => return NoHeader::CpythonList,
        Ok(Classified::Cpython(_)) => None,
        Err(crate::list::NotAList::TooMany { n, .. }) => {
            trailer::large_list_trailer(name, size, n, &mut read)
        }
        Err(_) => None,
    };
    match found {
        Some((header, why)) => NoHeader::ShmkitList { header, why },
        None => NoHeader::Raw,
    }
}

/// For an open of object `name` (opened as `fd`, `size` bytes) that found no valid shmkit
/// header at byte 0: what the object holds, as [`Probe::kind_name`] names it
/// (`shareable-list`, [`CPYTHON_LIST_KIND`], [`RAW_KIND`]), for the [`Error::KindMismatch`] the open
/// returns; `None` if the object claims to be shmkit's ([`claims_magic`]), which the open
/// reports as corrupt. Judged as [`probe`] judges it, from the bytes `pread` reads now.
pub(crate) fn foreign_kind(name: &str, fd: &OwnedFd, size: u64) -> Option<String> {
    let mut prefix = [0u8; MAGIC.len()];
    let n = shm::read_prefix(fd, &mut prefix).ok()?;
    if claims_magic(&prefix[..n]) {
        return None;
    }
    Some(match without_header(name, fd, size) {
        NoHeader::ShmkitList { .. } => Kind::SHAREABLE_LIST.to_string(),
        NoHeader::CpythonList => CPYTHON_LIST_KIND.into(),
        NoHeader::Raw => RAW_KIND.into(),
    })
}

/// Read the first bytes of segment `name` (`O_RDONLY` and `pread`: no mapping, so a truncated
/// or hostile object cannot fault us) and describe it. Never waits and never changes
/// anything, so it works on objects this user may only read, and reports a half-built or
/// corrupt object as such ([`Verdict::Invalid`]).
///
/// ```
/// use shmkit::segment::{probe, Verdict};
/// # let name = format!("doc-probe-{}", std::process::id());
/// let _s = shmkit::Segment::options().unlink_on_drop(true).create(&name, 64)?;
/// let p = probe(&name)?;
/// assert_eq!(p.verdict, Verdict::Valid);
/// assert_eq!(p.header.unwrap().payload_size, 64);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn probe(name: &str) -> Result<Probe> {
    validate_name(name)?;
    let fd =
        shm::open(name, shm::OpenMode::ReadOnly).map_err(|e| Error::from_io(name, "open", e))?;
    let st = shm::stat(&fd).map_err(|e| Error::from_io(name, "fstat", e))?;
    let mut buf = [0u8; HEADER_SIZE];
    let n = shm::read_prefix(&fd, &mut buf).map_err(|e| Error::from_io(name, "read", e))?;
    let mut raw = RawHeader::from_prefix(&buf[..n]).filter(|h| h.magic == MAGIC);
    let mut cpython_list = false;
    let mut verdict = match &raw {
        Some(h) => match validate_self(name, h, st.size) {
            Ok(()) => Verdict::Valid,
            Err(Error::Corrupt { what, .. }) => Verdict::Invalid(what),
            Err(e) => Verdict::Invalid(e.to_string()),
        },
        None if claims_magic(&buf[..n]) => Verdict::Invalid(format!(
            "it is {} bytes, smaller than the {HEADER_SIZE}-byte header",
            st.size
        )),
        None => Verdict::Raw,
    };
    if verdict == Verdict::Raw {
        // A ShareableList keeps shmkit's header in a trailer after its CPython area.
        match without_header(name, &fd, st.size) {
            NoHeader::ShmkitList { header, why } => {
                raw = Some(header);
                verdict = why.map_or(Verdict::Valid, Verdict::Invalid);
            }
            NoHeader::CpythonList => cpython_list = true,
            NoHeader::Raw => {}
        }
    }
    let header = raw.as_ref().map(HeaderInfo::from_raw);
    let creator = header
        .as_ref()
        .map_or(Liveness::Unknown, HeaderInfo::creator_liveness);
    Ok(Probe {
        name: name.to_owned(),
        name_bytes: None,
        size: st.size,
        mode: st.mode,
        uid: st.uid,
        header,
        creator,
        verdict,
        cpython_list,
        identity: st.identity,
    })
}

/// Every object in `/dev/shm`, sorted by name (by its bytes), except shmkit's own files
/// (objects being built, under names starting with `.shmkit`). Objects whose names shmkit
/// would refuse (names that are not UTF-8 too: see [`Probe::name_bytes`]) are listed with
/// what `stat` shows, no header, and [`Verdict::Raw`]; objects this user cannot read, the
/// same with [`Verdict::Unreadable`].
pub fn list() -> Result<Vec<Probe>> {
    let names = shm::list_names().map_err(|e| Error::from_io(shm::SHM_DIR, "list", e))?;
    let mut out: Vec<Probe> = names
        .into_iter()
        .filter(|name| !name.as_bytes().starts_with(shm::RESERVED_PREFIX.as_bytes()))
        .filter_map(|name| match name.into_string() {
            Ok(name) => probed(name),
            Err(name) => stat_only(String::new(), Some(name.into_vec()), Verdict::Raw),
        })
        .collect();
    out.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    Ok(out)
}

/// The probe [`list`] shows for the UTF-8 name `name` (`None` if it was removed meanwhile).
fn probed(name: String) -> Option<Probe> {
    match probe(&name) {
        Ok(p) => Some(p),
        Err(Error::NotFound { .. }) => None, // removed while we listed
        Err(Error::PermissionDenied { .. }) => stat_only(name, None, Verdict::Unreadable),
        Err(_) => stat_only(name, None, Verdict::Raw),
    }
}

/// What `stat` shows of a file that is not probed: `name`, or the non-UTF-8 name `bytes`.
fn stat_only(name: String, bytes: Option<Vec<u8>>, verdict: Verdict) -> Option<Probe> {
    let st = match &bytes {
        Some(b) => shm::stat_path(OsStr::from_bytes(b)),
        None => shm::stat_path(&name),
    }?;
    Some(Probe {
        name: match &bytes {
            Some(b) => String::from_utf8_lossy(b).into_owned(),
            None => name,
        },
        name_bytes: bytes,
        size: st.size,
        mode: st.mode,
        uid: st.uid,
        header: None,
        creator: Liveness::Unknown,
        verdict,
        cpython_list: false,
        identity: st.identity,
    })
}

/// An object opened once, read-only, to copy its bytes with `pread`, without mapping it (so
/// reading a hole of a sparse object allocates nothing): what `shmkit dump` and `shmkit read`
/// copy from. Every read comes from the object opened, even if its name is unlinked and
/// reused meanwhile, so a copy made in pieces never splices two objects.
///
/// ```
/// use shmkit::segment::{ObjectFile, Segment, HEADER_SIZE};
/// # let name = format!("doc-objectfile-{}", std::process::id());
/// let seg = Segment::create(&name, 8)?;
/// seg.write_at(0, b"shmkit!\n")?;
/// // The bytes of the object `seg` mapped, header included (offsets count from byte 0).
/// let file = ObjectFile::of(&seg)?;
/// assert_eq!(file.read(HEADER_SIZE as u64, 100)?, b"shmkit!\n"); // fewer at the end
/// assert_eq!(ObjectFile::open(&name)?.size()?, HEADER_SIZE as u64 + 8);
/// # Segment::unlink(&name)?;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct ObjectFile {
    name: String,
    fd: std::os::fd::OwnedFd,
}

impl ObjectFile {
    /// Open object `name` read-only (`O_RDONLY`; no liveness file, no mapping).
    pub fn open(name: &str) -> Result<ObjectFile> {
        validate_name(name)?;
        let fd = shm::open(name, shm::OpenMode::ReadOnly)
            .map_err(|e| Error::from_io(name, "open", e))?;
        Ok(ObjectFile {
            name: name.to_owned(),
            fd,
        })
    }

    /// Open the object that `seg` maps, by its name: an error if the name now holds another
    /// object (unlinked and created again since `seg` was opened).
    pub fn of<A: super::Access>(seg: &super::Segment<A>) -> Result<ObjectFile> {
        let f = ObjectFile::open(seg.name())?;
        let now = shm::stat(&f.fd)
            .map_err(|e| Error::from_io(seg.name(), "fstat", e))?
            .identity;
        if now != seg.identity() {
            return Err(Error::Io {
                name: seg.name().to_owned(),
                op: "open",
                source: std::io::Error::other(
                    "the name now holds another object (the one opened was removed and the \
                     name reused)",
                ),
            });
        }
        Ok(f)
    }

    /// The object's size in bytes now (`fstat`; another process may resize it).
    pub fn size(&self) -> Result<u64> {
        Ok(shm::stat(&self.fd)
            .map_err(|e| Error::from_io(&self.name, "fstat", e))?
            .size)
    }

    /// Copy up to `len` bytes starting at byte `offset` of the object (the header included):
    /// fewer at the end of the object, none past it. An error, not an abort, when that many
    /// bytes cannot be allocated.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let len = len.min(self.size()?.saturating_sub(offset) as usize);
        // Fallible: a caller may ask for all of a huge sparse object.
        let mut buf: Vec<u8> = crate::error::try_zeroed(&self.name, "read", len)?;
        let n = shm::read_at(&self.fd, offset, &mut buf)
            .map_err(|e| Error::from_io(&self.name, "read", e))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Processes that currently map object `name`, from `/proc/*/maps` (only those this user
/// can read). Used by `shmkit gc` to never remove a segment that is in use.
pub fn mapped_by(name: &str) -> Vec<u32> {
    crate::os::process::pids_mapping(&format!("{}/{name}", shm::SHM_DIR))
}
