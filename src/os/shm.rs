//! POSIX shared-memory objects: thin wrappers over rustix that report `io::Error`s.

use rustix::fs::Mode;
use rustix::fs::OFlags;
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
/// two system calls remains between the check and the unlink.)
pub(crate) fn unlink_if_same(name: &str, identity: (u64, u64)) -> io::Result<bool> {
    match stat_path(name) {
        Some(st) if st.identity == identity => unlink(name).map(|()| true),
        _ => Ok(false),
    }
}

/// Take the creation lock (`flock(LOCK_EX)`) on a freshly created object. The creator holds
/// it from before it records its pid until it publishes; the kernel drops it when the
/// creator's fd closes, including when the creator dies. Waits only while an opener holds a
/// brief shared probe lock; gives up after a second of that (a process is holding a lock on
/// an object it did not create).
pub(crate) fn lock_creation(fd: &OwnedFd) -> io::Result<()> {
    for _ in 0..1000 {
        match rustix::fs::flock(fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        "another process keeps a lock on the new object",
    ))
}

/// Whether nobody holds the creation lock: probe with `flock(LOCK_SH|LOCK_NB)` and release.
pub(crate) fn creation_lock_free(fd: &OwnedFd) -> bool {
    match rustix::fs::flock(fd, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(fd, rustix::fs::FlockOperation::Unlock);
            true
        }
        Err(_) => false,
    }
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
