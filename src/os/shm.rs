//! POSIX shared-memory objects: thin wrappers over rustix that report `io::Error`s.

use rustix::fs::Mode;
use rustix::shm::OFlags;
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

/// `shm_open("/NAME", …)`. The name must already be validated. On create, the mode is set
/// with `fchmod` afterwards so that the umask does not change what the caller asked for.
pub(crate) fn open(name: &str, how: OpenMode) -> io::Result<OwnedFd> {
    let path = posix_name(name);
    let fd = match how {
        OpenMode::CreateExclusive(mode) => {
            let fd = rustix::shm::open(
                path.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
                Mode::from_raw_mode(mode),
            )?;
            if let Err(e) = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)) {
                let _ = rustix::shm::unlink(path.as_str());
                return Err(e.into());
            }
            fd
        }
        OpenMode::ReadWrite => rustix::shm::open(path.as_str(), OFlags::RDWR, Mode::empty())?,
        OpenMode::ReadOnly => rustix::shm::open(path.as_str(), OFlags::RDONLY, Mode::empty())?,
    };
    Ok(fd)
}

/// `shm_unlink("/NAME")`.
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(posix_name(name).as_str())?)
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

/// Names of the regular files in `/dev/shm`.
pub(crate) fn list_names() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            if let Ok(n) = entry.file_name().into_string() {
                names.push(n);
            }
        }
    }
    Ok(names)
}

/// `stat` by name, for objects that cannot be opened.
pub(crate) fn stat_path(name: &str) -> Option<Stat> {
    rustix::fs::stat(format!("{SHM_DIR}/{name}").as_str())
        .ok()
        .map(Stat::from)
}
