//! POSIX shared-memory objects: thin wrappers over rustix that report `io::Error`s.

use rustix::fs::Mode;
use rustix::fs::OFlags;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;

/// How to open a shared-memory object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// `O_CREAT | O_EXCL | O_RDWR` with the given permission bits.
    CreateExclusive(u32),
    /// `O_RDWR`.
    ReadWrite,
    /// `O_RDONLY`.
    ReadOnly,
}

fn posix_name(name: &str) -> String {
    format!("/{name}")
}

fn path_of(name: &str) -> String {
    format!("{SHM_DIR}/{name}")
}

/// `shm_open("/NAME", …)`, done as glibc does it (`open("/dev/shm/NAME")`), plus
/// `O_NOFOLLOW` (a symbolic link planted in `/dev/shm` is refused, not followed) and
/// `O_NONBLOCK` (a FIFO planted there cannot block the open); then the object must be a
/// regular file. The name must already be validated. On create, the mode is set with `fchmod`
/// afterwards so that the umask does not change what the caller asked for.
pub(crate) fn open(name: &str, how: OpenMode) -> io::Result<OwnedFd> {
    let path = path_of(name);
    let base = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let (flags, mode) = match how {
        OpenMode::CreateExclusive(mode) => {
            (base | OFlags::CREATE | OFlags::EXCL | OFlags::RDWR, mode)
        }
        OpenMode::ReadWrite => (base | OFlags::RDWR, 0),
        OpenMode::ReadOnly => (base | OFlags::RDONLY, 0),
    };
    let fd = match rustix::fs::open(path.as_str(), flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path} is a symbolic link; shmkit does not follow links in {SHM_DIR}"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{path} is not a regular file"),
        ));
    }
    if let OpenMode::CreateExclusive(mode) = how {
        if let Err(e) = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)) {
            let _ = rustix::shm::unlink(posix_name(name).as_str());
            return Err(e.into());
        }
    }
    Ok(fd)
}

/// `shm_unlink("/NAME")`.
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(posix_name(name).as_str())?)
}

/// Unlink `name` only if it still names the object `identity` (`(st_dev, st_ino)`), so a
/// newer object that reused the name is left alone. Returns whether it unlinked. (A gap of
/// two system calls remains between the check and the unlink.) `name` may be any file name
/// in `/dev/shm` (one that is not UTF-8 too); it is not validated.
pub(crate) fn unlink_if_same(name: impl AsRef<OsStr>, identity: (u64, u64)) -> io::Result<bool> {
    let name = name.as_ref();
    match stat_path(name) {
        Some(st) if st.identity == identity => {
            let mut posix = OsString::from("/");
            posix.push(name);
            rustix::shm::unlink(posix.as_os_str())?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Names in `/dev/shm` starting with this are shmkit's own (its liveness directory, objects
/// being built); segment names may not start with it (`SPEC.md` §2).
pub(crate) const RESERVED_PREFIX: &str = ".shmkit";

/// Prefix of the temporary name an object is built under before it is published (`SPEC.md`
/// §4.1): `.shmkit-tmp-<creator token, 16 hex digits>-<counter, hex>-<final name>`.
pub(crate) const TEMP_PREFIX: &str = ".shmkit-tmp-";

/// A temporary name for building object `name` in the process whose liveness token is
/// `token`. The token makes it unique among live processes; the counter, among this process's
/// builds. At most 12 + 16 + 1 + 16 + 1 + 200 = 246 bytes, under Linux's 255.
pub(crate) fn temp_name(token: u64, name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Relaxed: only uniqueness matters, and a fetch_add never hands out a value twice.
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{TEMP_PREFIX}{token:016x}-{n:x}-{name}")
}

/// `(creator token, final name)` of a temporary name made by [`temp_name`], or `None` if
/// `file` is not one.
pub(crate) fn parse_temp_name(file: &str) -> Option<(u64, &str)> {
    let rest = file.strip_prefix(TEMP_PREFIX)?;
    let (token, rest) = rest.split_once('-')?;
    let (n, name) = rest.split_once('-')?;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if token.len() != 16 || !hex(token) || !hex(n) || name.is_empty() {
        return None;
    }
    Some((u64::from_str_radix(token, 16).ok()?, name))
}

/// Give the object built under `temp` its final `name`, atomically, unless `name` exists
/// (`renameat2(RENAME_NOREPLACE)`: `AlreadyExists` then, and `temp` keeps the object).
pub(crate) fn publish(temp: &str, name: &str) -> io::Result<()> {
    Ok(rustix::fs::renameat_with(
        rustix::fs::CWD,
        path_of(temp).as_str(),
        rustix::fs::CWD,
        path_of(name).as_str(),
        rustix::fs::RenameFlags::NOREPLACE,
    )?)
}

/// Allocate the object's first `len` bytes now (`fallocate`, mode 0, which also sets the
/// size), so that touching them later cannot fail. `ENOSPC` when `/dev/shm` lacks the space.
pub(crate) fn reserve(fd: &OwnedFd, len: u64) -> io::Result<()> {
    loop {
        // tmpfs stops a long allocation with EINTR when a signal arrives; the pages it
        // allocated stay, so a retry continues from there.
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Bytes free in the filesystem holding `fd` for an unprivileged user (`fstatvfs`:
/// `f_bavail * f_frsize`).
pub(crate) fn free_space(fd: &OwnedFd) -> io::Result<u64> {
    let st = rustix::fs::fstatvfs(fd)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Size, permission bits and identity of an object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    /// `(st_dev, st_ino)`: which object this is, whatever name it has now.
    pub identity: (u64, u64),
}

impl From<rustix::fs::Stat> for Stat {
    fn from(st: rustix::fs::Stat) -> Stat {
        Stat {
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            identity: (st.st_dev, st.st_ino),
        }
    }
}

/// `fstat`.
pub(crate) fn stat(fd: &OwnedFd) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?.into())
}

/// `ftruncate` to `size` bytes (new bytes read as zero).
pub(crate) fn set_len(fd: &OwnedFd, size: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, size)?)
}

/// The directory where Linux keeps POSIX shared-memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Read up to `buf.len()` bytes from offset 0 with `pread` (no mapping, so a truncated or
/// hostile object cannot fault us).
pub(crate) fn read_prefix(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    read_at(fd, 0, buf)
}

/// Read up to `buf.len()` bytes from `offset` with `pread`; fewer at the end of the object.
pub(crate) fn read_at(fd: &OwnedFd, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Names of the regular files in `/dev/shm`, temporary ones ([`TEMP_PREFIX`]) included, and
/// names that are not UTF-8 (no segment name, but files all the same: `shmkit ls` shows
/// them).
pub(crate) fn list_names() -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name());
        }
    }
    Ok(names)
}

/// `stat` by name (any file name in `/dev/shm`, not validated), for objects that cannot be
/// opened.
pub(crate) fn stat_path(name: impl AsRef<OsStr>) -> Option<Stat> {
    let mut path = OsString::from(SHM_DIR);
    path.push("/");
    path.push(name);
    rustix::fs::stat(path.as_os_str()).ok().map(Stat::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_round_trip_and_strangers_are_not_temp_names() {
        let t = temp_name(0x1234, "cam.frames-0");
        assert!(t.starts_with(TEMP_PREFIX) && t.len() <= 255);
        assert_eq!(parse_temp_name(&t), Some((0x1234, "cam.frames-0")));
        // The final name may itself hold '-'.
        let u = temp_name(u64::MAX >> 2, "a-b-c");
        assert_eq!(parse_temp_name(&u), Some((u64::MAX >> 2, "a-b-c")));
        // The longest: a 200-byte name still fits Linux's 255.
        assert!(temp_name(u64::MAX, &"x".repeat(200)).len() <= 255);
        for stranger in [
            "x",
            ".shmkit",
            ".shmkit-tmp-",
            ".shmkit-tmp-12-0-x",               // token not 16 digits
            ".shmkit-tmp-000000000000000g-0-x", // not hex
            ".shmkit-tmp-0000000000000001-0-",  // no final name
            ".shmkit-tmp-0000000000000001--x",  // no counter
        ] {
            assert_eq!(parse_temp_name(stranger), None, "{stranger}");
        }
    }
}
