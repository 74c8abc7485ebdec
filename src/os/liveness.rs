//! Process liveness: one mechanism for every object (queue roles, lock owners, registries).
//!
//! A process that takes part in a shmkit protocol gets a **token**: a random 61-bit number,
//! never 0, created on first use. The token names a file `/dev/shm/.shmkit/live-<token hex>`
//! on which the process holds an open-file-description write lock (`F_OFD_SETLK`) for as long
//! as it lives. The kernel drops that lock when the last descriptor of the open file
//! description is closed, which happens when the process exits or is killed, however it dies.
//! Anyone asks whether token `t` lives with `F_OFD_GETLK` on that file: a conflicting lock
//! means alive; no lock, or no file, means dead. `SPEC.md` §2.3 has the whole protocol and its
//! failure cases.
//!
//! Why this and not pid + start time (what shmkit used before):
//! - **Pid namespaces.** OFD locks belong to an open file description, not to a pid, so the
//!   answer is the same in every pid namespace that sees the same `/dev/shm` (sidecar
//!   containers, `docker run --ipc=container:…`); no `/proc` is read.
//! - **Pid reuse.** A token is never derived from a pid. A new process picks 61 random bits
//!   and publishes its file under a name that must not exist yet (`linkat`, or
//!   `renameat2(RENAME_NOREPLACE)`), so it never takes a token whose file still exists; a
//!   dead token whose file was removed could be drawn again only with probability 2^-61 per
//!   new process.
//! - **Cost.** A fast path never makes a system call: objects store the token in their words,
//!   and a handle checks that it still belongs to this process with one `Relaxed` load of a
//!   static ([`is_current`]). A liveness query (three system calls) is made only by a side
//!   that is already blocked on a peer. Each process holds exactly one descriptor.
//! - **`fork()`.** A child inherits its parent's descriptors, which would keep the parent's
//!   lock held after the parent dies. A `pthread_atfork` child handler closes the inherited
//!   descriptor (the parent's stays open, so the lock stays the parent's) and forgets the
//!   token: the child is a different process, gets its own token on first use, and every
//!   handle it inherited sees that it is not its own ([`is_current`] is false).
//!
//! The file holds a short text record (`pid`, pid namespace, command name) for `shmkit info`;
//! it is written before the file is published and is display-only: nothing trusts it.

#![cfg_attr(loom, allow(dead_code))] // under loom, processes are modelled as threads

use crate::loom::AtomicU64;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use super::process::Liveness;
use super::shm::SHM_DIR;

/// The directory of liveness files, inside `/dev/shm` so that every process that shares
/// `/dev/shm` shares it. Not a valid shm name (it is a directory), so it collides with no
/// object.
pub(crate) fn dir() -> String {
    format!("{SHM_DIR}/.shmkit")
}

/// The largest token: tokens fit in 61 bits, so a lock word can keep three flag bits beside
/// one (`sync::robust`).
pub(crate) const TOKEN_MAX: u64 = (1 << 61) - 1;

/// This process's token; 0 before the first [`current`], a [`BUSY`] mark while it is being
/// created ([`token_in`]).
#[cfg(not(loom))]
static TOKEN: AtomicU64 = AtomicU64::new(0);

#[cfg(loom)]
loom::lazy_static! {
    // Under loom (where the shim's atomics are loom's, which have no `const` constructor):
    // built, never run, since the models pass their own word to `token_in`.
    static ref TOKEN: AtomicU64 = AtomicU64::new(0);
}

/// Marks [`TOKEN`] as being created by some thread of the process whose pid is in the low 32
/// bits (tokens are at most [`TOKEN_MAX`], so never have this bit). The pid matters: a
/// `fork()` by another thread before the creating thread registered the fork handlers leaves
/// the child this mark with nobody to clear it; the child sees it is its parent's and takes
/// it back to 0 (waiting on it hung the child for ever).
const BUSY: u64 = 1 << 63;

/// [`BUSY`] for this process.
fn busy_mark() -> u64 {
    BUSY | u64::from(std::process::id())
}
/// This process's pid, cached when its token is created (0: none yet).
static PID: AtomicU32 = AtomicU32::new(0);
/// The descriptor holding this process's lock (-1: none).
static FD: AtomicI32 = AtomicI32::new(-1);
/// Whether the fork and exit handlers are registered (once per process image: registrations
/// survive `fork`). Touched by the thread that holds [`BUSY`], and by the child handler.
static HANDLERS: AtomicBool = AtomicBool::new(false);

/// The liveness-file path of `token`.
pub(crate) fn path_of(token: u64) -> String {
    format!("{}/live-{token:016x}", dir())
}

/// This process's token, creating (and locking) its liveness file on first use.
///
/// Errors come from `/dev/shm` (full, read-only, `/dev/shm/.shmkit` not a sticky directory).
#[inline]
pub(crate) fn current() -> io::Result<u64> {
    // Acquire pairs with the Release store of the token in `token_in`: a token seen is a
    // token published.
    match TOKEN.load(Ordering::Acquire) {
        t if t == 0 || t & BUSY != 0 => current_slow(),
        t => Ok(t),
    }
}

#[cold]
fn current_slow() -> io::Result<u64> {
    let (token, created) = token_in(&TOKEN, busy_mark(), || {
        // The fork handlers first, before PUBLISHING is taken: a fork() before they exist
        // leaves the child our BUSY mark, which it takes back (`token_in`), and PUBLISHING
        // free; once they exist, a fork waits for PUBLISHING (prepare handler) and the child
        // starts afresh (child handler).
        let registered = register_handlers();
        take_publishing();
        let published = registered.and_then(|()| publish());
        if let Ok((_, fd)) = &published {
            // The descriptor lives as long as the process (or until a fork child's handler
            // closes its inherited copy). Recorded before a fork can happen (PUBLISHING is
            // held).
            FD.store(fd.as_raw_fd(), Ordering::Relaxed);
        }
        release_publishing();
        let (token, fd) = published?;
        // Owned by FD from now on.
        let _ = fd.into_raw_fd();
        // Relaxed: published by `token_in`'s Release store of the token.
        PID.store(std::process::id(), Ordering::Relaxed);
        Ok(token)
    })?;
    if created {
        // Processes that were killed leave their files behind: each new process removes a
        // few, so they do not pile up (`gc` removes all).
        sweep_some(SWEEP_ON_START);
    }
    Ok(token)
}

/// The token state machine of `SPEC.md` §2.3 on `word` (the process's [`TOKEN`]; the loom
/// models pass their own): the token `word` holds, or one that `create` makes, in this thread,
/// and this function stores in `word`. Returns the token and whether this call created it.
///
/// `word` holds 0 (no token: the thread that moves it to `mine`, this process's [`BUSY`] mark,
/// calls `create`), `mine` (another thread of this process is creating it: wait), another
/// `BUSY` mark (a parent's, inherited by a `fork()` before the fork handlers existed: nobody
/// here clears it, so it is taken back to 0), or the token. `create` publishes a token and its
/// liveness file; if it fails, `word` goes back to 0, its error is returned, and a later call
/// (or a thread waiting meanwhile) tries again.
fn token_in(
    word: &AtomicU64,
    mine: u64,
    create: impl FnOnce() -> io::Result<u64>,
) -> io::Result<(u64, bool)> {
    use crate::loom::Ordering::{Acquire, Relaxed, Release};
    loop {
        // Acquire pairs with the Release stores below: a token seen is a token published
        // (its file, and everything `create` stored).
        match word.load(Acquire) {
            0 => {
                // Acquire: as the load above (pairs with a failed creator's Release store of
                // 0). Relaxed on failure: another thread won; we loop and see its result.
                if word.compare_exchange(0, mine, Acquire, Relaxed).is_err() {
                    continue;
                }
                return match create() {
                    Ok(token) => {
                        // Release pairs with the Acquire loads above and in `current`.
                        word.store(token, Release);
                        Ok((token, true))
                    }
                    Err(e) => {
                        // Release pairs with the Acquire loads above and in `current`
                        // (nothing was published; another thread may now try again).
                        word.store(0, Release);
                        Err(e)
                    }
                };
            }
            t if t & BUSY != 0 => {
                if t == mine {
                    crate::loom::yield_now(); // another thread of ours is creating it
                } else {
                    // Our parent's mark: nobody here is creating a token. Relaxed: as the CAS
                    // above (on success we loop and create one; on failure we see who did).
                    let _ = word.compare_exchange(t, 0, Relaxed, Relaxed);
                }
            }
            t => return Ok((t, false)),
        }
    }
}

/// Whether `token` is this process's own token. One `Relaxed` load, no system call: the
/// check a handle makes before it acts, so that a handle inherited across `fork()` refuses.
/// Relaxed suffices: the only writers are this process's first [`current`] (which
/// happened-before any handle holding the token was made, in this thread or through the
/// handle's own synchronisation) and the fork handler (which runs in the child before any of
/// its code).
#[inline]
pub(crate) fn is_current(token: u64) -> bool {
    token != 0 && TOKEN.load(Ordering::Relaxed) == token
}

/// A word naming this process, for a handle that remembers which process asked it for
/// something it must do only in that process (a segment's unlink on drop: a `fork()`ed child
/// that inherits the handle must not unlink its parent's name). This process's token (see
/// [`current`]); if it has none and cannot get one, its pid with [`MARK_PID`] set. Never 0, so
/// a handle may keep 0 for "nobody". Check it with [`is_marked_here`].
pub(crate) fn mark() -> u64 {
    match current() {
        Ok(t) => t,
        Err(_) => MARK_PID | u64::from(std::process::id()),
    }
}

/// Whether `mark` (from [`mark`]) names this process: [`is_current`] for a token (one load),
/// a `getpid` comparison for a pid (a child's pid differs from its living parent's).
pub(crate) fn is_marked_here(mark: u64) -> bool {
    if mark & MARK_PID != 0 {
        mark & !MARK_PID == u64::from(std::process::id())
    } else {
        is_current(mark)
    }
}

/// The bit that makes a [`mark`] a pid, not a token (tokens are at most [`TOKEN_MAX`]).
const MARK_PID: u64 = 1 << 63;

#[inline]
/// This process's pid as cached with its token (0 before the first [`current`]); for display
/// records, without a `getpid` system call.
pub(crate) fn current_pid() -> u32 {
    PID.load(Ordering::Relaxed)
}

/// Held while a thread publishes this process's token, and by a forking thread from just
/// before `fork()` until just after it (in both processes): a fork therefore never happens
/// while the token's descriptor is open but not yet recorded in [`FD`], which would let the
/// child keep the parent's lock alive.
static PUBLISHING: AtomicBool = AtomicBool::new(false);

fn take_publishing() {
    // Acquire pairs with the Release in `release_publishing`.
    while PUBLISHING
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

fn release_publishing() {
    // Release pairs with the Acquire CAS in `take_publishing`: the next holder sees FD and
    // TOKEN as we left them.
    PUBLISHING.store(false, Ordering::Release);
}

extern "C" fn hold_off_publishing() {
    take_publishing();
}

extern "C" fn allow_publishing() {
    release_publishing();
}

extern "C" fn forget_in_child() {
    // Runs in the child right after fork(), in the forking thread only: async-signal-safe
    // calls only. Closing our copy of the descriptor leaves the parent's lock held by the
    // parent's copy. The forking thread took PUBLISHING in the prepare handler.
    release_publishing();
    let fd = FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: `fd` is the liveness descriptor this module owns; nothing else closes it.
        unsafe { libc::close(fd) };
    }
    PID.store(0, Ordering::Relaxed);
    TOKEN.store(0, Ordering::Relaxed);
    // This handler runs, so the handlers are registered in the child (it inherits them), even
    // when the fork came between `pthread_atfork` and the parent's record of it: recorded
    // here, the child never registers them a second time.
    HANDLERS.store(true, Ordering::Relaxed);
}

fn register_handlers() -> io::Result<()> {
    if HANDLERS.load(Ordering::Relaxed) {
        return Ok(());
    }
    // SAFETY: the handlers are valid `extern "C" fn()`s that live for the whole program;
    // registering them has no other precondition. Without the child handler a forked child
    // could keep its parent's token alive, so a failure (ENOMEM) means no token.
    //
    // No `atexit` removal of our file: exit handlers run while other threads of the process
    // still hold locks and roles, and a removed file reads as dead. A file whose lock is gone
    // reads as dead anyway; `sweep` removes it later.
    let r = unsafe {
        libc::pthread_atfork(
            Some(hold_off_publishing),
            Some(allow_publishing),
            Some(forget_in_child),
        )
    };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    HANDLERS.store(true, Ordering::Relaxed);
    Ok(())
}

/// 61 random bits, never 0.
fn random_token() -> io::Result<u64> {
    loop {
        let mut b = [0u8; 8];
        let mut got = 0;
        while got < b.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `b`.
            let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            got += n as usize;
        }
        let t = u64::from_le_bytes(b) & TOKEN_MAX;
        if t != 0 {
            return Ok(t);
        }
    }
}

fn cstr(path: &str) -> io::Result<CString> {
    CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Make sure `/dev/shm/.shmkit` exists and is a directory nobody can use to remove another
/// user's files: a real directory (not a link), sticky if others may write it.
///
/// Created `1777`, whoever creates it (root too): the mode must not depend on which user
/// happened to use shmkit first after a boot. A directory an administrator made `1733`
/// (root's, sticky, not listable by others: `SPEC.md` §2.3, `docs/OPERATIONS.md`) is used as
/// it is: everything but a sweep works by name, with search permission only.
fn ensure_dir() -> io::Result<()> {
    let d = dir();
    let c = cstr(&d)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkdir(c.as_ptr(), 0o1777) } == 0 {
        // The umask may have cleared bits: set them exactly. A failure leaves a directory that
        // the check below judges.
        // SAFETY: as above.
        unsafe { libc::chmod(c.as_ptr(), 0o1777) };
    } else {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(io::Error::new(e.kind(), format!("cannot create {d}: {e}")));
        }
    }
    open_dir_checked(&d).map(drop)
}

/// Open the liveness directory `d` without following a link and check, on the opened
/// directory itself, that nobody can use it to remove another user's files: a real directory
/// (not a link), owned by root or this user, sticky if others may write it. Whoever lists or
/// removes files in it does so relative to the returned descriptor, so what was checked is
/// what is used (a link planted at `d` is refused, never followed).
fn open_dir_checked(d: &str) -> io::Result<OwnedFd> {
    use rustix::fs::{FileType, Mode, OFlags};
    // O_PATH: the directory may be search-only for this user (mode 1733, `SPEC.md` §2.3):
    // the `*at` calls work relative to such a descriptor; listing opens it again ([`list`]).
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(rustix::fs::CWD, d, flags, Mode::empty()) {
        Ok(fd) => fd,
        // ELOOP: a symbolic link (O_NOFOLLOW); ENOTDIR: another kind of file.
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            return Err(not_a_directory(d));
        }
        Err(e) => {
            let e = io::Error::from(e);
            return Err(io::Error::new(e.kind(), format!("cannot open {d}: {e}")));
        }
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(not_a_directory(d));
    }
    let mode = st.st_mode;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != 0 && st.st_uid != euid {
        // The owner of a sticky directory may remove anyone's files in it, which would make
        // their processes look dead.
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{d} belongs to uid {} (neither root nor this user, uid {euid}), who could \
                 remove other users' liveness files; have root create it: \
                 `install -d -m 1777 -o root -g root {d}`",
                st.st_uid
            ),
        ));
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{d} is writable by others but not sticky (mode {:o}); run `chmod 1777 {d}`",
                mode & 0o7777
            ),
        ));
    }
    Ok(fd)
}

/// The names in the checked liveness directory `dirfd` (from [`open_dir_checked`]). A
/// directory this user may search but not read (mode 1733 owned by another user, `SPEC.md`
/// §2.3) cannot be listed: `PermissionDenied`.
fn list(dirfd: &OwnedFd) -> io::Result<Vec<CString>> {
    use rustix::fs::{Mode, OFlags};
    // "." relative to the checked descriptor: the same directory, whatever its path names now.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let rd = rustix::fs::openat(dirfd, c".", flags, Mode::empty())?;
    Ok(rustix::fs::Dir::read_from(&rd)?
        .flatten()
        .map(|e| e.file_name().to_owned())
        .collect())
}

fn not_a_directory(d: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{d} is not a directory (a symbolic link or another kind of file); remove it so \
             shmkit can create its liveness directory"
        ),
    )
}

/// A whole-file `struct flock` of `kind` for the OFD calls.
fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to the end of the file, whatever its size
    fl.l_pid = 0; // required by the OFD calls
    fl
}

/// Create, lock and publish this process's liveness file; returns its token and the
/// descriptor that holds the lock.
///
/// Nobody else can open the file before our write lock is held (a read lock taken first by
/// another user would make our `F_OFD_SETLK` fail, and this process would get no token): it
/// is created unnamed (`O_TMPFILE`), or, where that is not supported, named but mode 0600,
/// and made readable (0644) only once locked.
fn publish() -> io::Result<(u64, OwnedFd)> {
    ensure_dir()?;
    let record = record_text();
    let mut unnamed = true;
    let mut tries = 0;
    while tries < 16 {
        let token = random_token()?;
        let fin = cstr(&path_of(token))?;
        let (fd, tmp) = if unnamed {
            match create_unnamed() {
                Ok(fd) => (fd, None),
                Err(e) if tmpfile_unsupported(&e) => {
                    unnamed = false;
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            let tmp = format!("{}/tmp-{token:016x}", dir());
            match create_named(&tmp)? {
                Some(fd) => (fd, Some(cstr(&tmp)?)),
                None => {
                    tries += 1;
                    continue; // that temporary name exists: draw another token
                }
            }
        };
        let result = (|| {
            let mut f = std::fs::File::from(fd.try_clone()?);
            use std::io::Write;
            f.write_all(record.as_bytes())?;
            let fl = whole_file(libc::F_WRLCK);
            // SAFETY: valid descriptor and a valid `flock`.
            if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // Locked: now readable by everyone (they query the lock through their own
            // descriptor), writable only by us, whatever the umask. A file others cannot
            // read would make this process's liveness unknown to them.
            // SAFETY: valid descriptor.
            if unsafe { libc::fchmod(fd.as_raw_fd(), 0o644) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let r = match &tmp {
                // SAFETY: both paths are valid; RENAME_NOREPLACE fails instead of replacing.
                Some(c) => unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        c.as_ptr(),
                        libc::AT_FDCWD,
                        fin.as_ptr(),
                        libc::RENAME_NOREPLACE,
                    )
                },
                None => {
                    // linkat never replaces an existing name (EEXIST). Through /proc: linking a
                    // descriptor itself (AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH.
                    let proc = cstr(&format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
                    // SAFETY: both paths are valid NUL-terminated strings.
                    unsafe {
                        libc::linkat(
                            libc::AT_FDCWD,
                            proc.as_ptr(),
                            libc::AT_FDCWD,
                            fin.as_ptr(),
                            libc::AT_SYMLINK_FOLLOW,
                        )
                    }
                }
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })();
        if let Some(c) = &tmp {
            if result.is_err() {
                // SAFETY: valid path.
                unsafe { libc::unlink(c.as_ptr()) };
            }
        }
        match result {
            Ok(()) => return Ok((token, fd)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tries += 1; // that token's file exists: draw another
            }
            // No /proc to link the unnamed file through: use a named one.
            Err(e) if tmp.is_none() && e.kind() == io::ErrorKind::NotFound => unnamed = false,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "could not draw an unused liveness token in 16 tries",
    ))
}

/// An unnamed regular file in the liveness directory (`O_TMPFILE`, mode 0600): nobody can
/// open it until it is linked.
fn create_unnamed() -> io::Result<OwnedFd> {
    let d = dir();
    let c = cstr(&d)?;
    // SAFETY: valid path; the flags create an unnamed regular file and return a descriptor
    // we take ownership of below.
    let raw = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        if tmpfile_unsupported(&e) {
            return Err(e);
        }
        return Err(io::Error::new(
            e.kind(),
            format!("cannot create a liveness file in {d}: {e}"),
        ));
    }
    // SAFETY: `raw` is a descriptor we just opened and nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether `open(O_TMPFILE)` failed because the kernel or file system does not support it
/// (`EOPNOTSUPP`; `EISDIR` or `EINVAL` from kernels that predate it).
fn tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
    )
}

/// The temporary file `tmp` (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600: nobody else can open
/// it); `None` if the name exists.
fn create_named(tmp: &str) -> io::Result<Option<OwnedFd>> {
    let c = cstr(tmp)?;
    // SAFETY: valid path; the flags create a new regular file and return a descriptor we
    // take ownership of below.
    let raw = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600 as libc::c_uint,
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::AlreadyExists {
            return Ok(None);
        }
        return Err(io::Error::new(
            e.kind(),
            format!("cannot create {tmp}: {e}"),
        ));
    }
    // SAFETY: `raw` is a descriptor we just opened and nobody else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// The display record written into a liveness file.
fn record_text() -> String {
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    format!(
        "pid {}\npidns {}\ncomm {}\n",
        std::process::id(),
        super::process::pid_namespace(),
        comm.trim()
    )
}

/// Whether the process that holds `token` lives. `Unknown` for 0 (nobody) and for a file that
/// cannot be queried (e.g. unreadable); `Dead` when the file is gone or nobody holds its lock.
///
/// Three system calls (`open`, `fcntl`, `close`): for paths that are already waiting on a peer.
pub(crate) fn liveness(token: u64) -> Liveness {
    if token == 0 {
        return Liveness::Unknown;
    }
    if token > TOKEN_MAX {
        return Liveness::Dead; // no process can hold it
    }
    if is_current(token) {
        return Liveness::Alive;
    }
    let Ok(c) = cstr(&path_of(token)) else {
        return Liveness::Unknown;
    };
    // SAFETY: valid path; O_NONBLOCK so that a FIFO planted there cannot block us.
    let raw = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )
    };
    if raw < 0 {
        return match io::Error::last_os_error().raw_os_error() {
            // No file, or a symbolic link planted under the name: no process holds it.
            Some(libc::ENOENT | libc::ELOOP) => Liveness::Dead,
            _ => Liveness::Unknown,
        };
    }
    // SAFETY: a descriptor we just opened.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if !is_regular(&fd) {
        return Liveness::Dead; // a FIFO or device planted under the name: no process's file
    }
    query(&fd)
}

/// Whether `fd` is a regular file.
fn is_regular(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
    })
}

/// `F_OFD_GETLK` for a whole-file write lock: does someone hold a *write* lock on this file?
/// Only the process that owns the file can (it is not writable by others); a read lock, which
/// anyone who can read the file can take, does not count, so nobody else can keep a dead
/// token alive.
fn query(fd: &OwnedFd) -> Liveness {
    let mut fl = whole_file(libc::F_WRLCK);
    // SAFETY: valid descriptor and a valid, writable `flock`.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } != 0 {
        return Liveness::Unknown;
    }
    if fl.l_type == libc::F_WRLCK as libc::c_short {
        Liveness::Alive
    } else {
        Liveness::Dead
    }
}

/// What a liveness file says about its process (display only: the file is the process's own
/// writing, not checked by anyone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessRecord {
    /// The pid in the process's own pid namespace.
    pub pid: u32,
    /// The inode of its pid namespace (`/proc/PID/ns/pid`), 0 if unknown.
    pub pid_ns: u64,
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
}

/// The record of `token`'s liveness file, if it exists and is readable.
pub(crate) fn record(token: u64) -> Option<ProcessRecord> {
    if token == 0 || token > TOKEN_MAX {
        return None;
    }
    use std::os::unix::fs::OpenOptionsExt;
    // Never follow a planted link, never block on a planted FIFO.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path_of(token))
        .ok()?;
    if !is_regular(&OwnedFd::from(f.try_clone().ok()?)) {
        return None;
    }
    let mut text = String::new();
    use std::io::Read;
    f.take(4096).read_to_string(&mut text).ok()?;
    let mut r = ProcessRecord::default();
    for line in text.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "pid" => r.pid = v.parse().unwrap_or(0),
            "pidns" => r.pid_ns = v.parse().unwrap_or(0),
            "comm" => r.comm = v.chars().take(64).collect(),
            _ => {}
        }
    }
    Some(r)
}

/// How many liveness files of other processes a process checks (and removes if dead) when it
/// creates its own token: more than one process can leave behind, so leftovers shrink.
const SWEEP_ON_START: usize = 16;

/// Check up to `n` liveness files chosen at random and remove those of dead processes.
/// Best effort: errors are ignored (files of other users cannot be removed in the sticky
/// directory; `gc` as their owner or root removes them).
fn sweep_some(n: usize) {
    let Ok(dirfd) = open_dir_checked(&dir()) else {
        return;
    };
    // A directory this user may not list (mode 1733): no sweep; its owner's `gc` sweeps it.
    let Ok(mut names) = list(&dirfd) else {
        return;
    };
    names.retain(|f| f.to_bytes().starts_with(b"live-"));
    let mut seed = random_token().unwrap_or(1);
    for _ in 0..n.min(names.len()) {
        // xorshift: a cheap random pick; fairness does not matter.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let f = names.swap_remove((seed % names.len() as u64) as usize);
        // Judged by the file's own lock only, never by the token's value: a file whose name
        // this build would not draw (another version's token) is still a live process's if
        // its write lock is held.
        if dead_in(&dirfd, &f, 0) {
            let _ = rustix::fs::unlinkat(&dirfd, f.as_c_str(), rustix::fs::AtFlags::empty());
        }
    }
}

/// What [`sweep`] did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Swept {
    /// The file's name inside the liveness directory.
    pub file: String,
    /// Whether it was removed (else: why not).
    pub outcome: Result<(), String>,
}

/// What [`sweep`] found.
#[derive(Debug)]
pub(crate) enum Sweep {
    /// The directory was listed: what was done with each dead file.
    Swept(Vec<Swept>),
    /// The directory may be searched but not listed by this user (mode 1733, owned by
    /// another user, `SPEC.md` §2.3): nothing was swept; why.
    Unlistable(io::Error),
}

/// Remove the liveness files of dead processes (and temporary files of processes that died
/// while publishing, once older than a minute). With `dry_run`, only report them.
pub(crate) fn sweep(dry_run: bool) -> io::Result<Sweep> {
    sweep_in(&dir(), dry_run)
}

/// Whether `name` in the directory `dirfd` is a regular file, last modified at least
/// `min_age_secs` seconds ago, on which nobody holds a lock (false if it cannot be opened).
/// Opened relative to `dirfd` without following a link nor blocking on a FIFO.
fn dead_in(dirfd: &OwnedFd, name: &std::ffi::CStr, min_age_secs: i64) -> bool {
    use rustix::fs::{FileType, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(dirfd, name, flags, Mode::empty()) else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(&fd) else {
        return false;
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return false;
    }
    if min_age_secs > 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if now.saturating_sub(st.st_mtime) < min_age_secs {
            return false;
        }
    }
    query(&fd) == Liveness::Dead
}

/// [`sweep`] in the directory `dir`: opened and checked as [`open_dir_checked`] does (a link
/// there is an error, not followed), listed and unlinked relative to that descriptor.
fn sweep_in(dir: &str, dry_run: bool) -> io::Result<Sweep> {
    let mut out = Vec::new();
    let dirfd = match open_dir_checked(dir) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Sweep::Swept(out)),
        Err(e) => return Err(e),
    };
    let names = match list(&dirfd) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Ok(Sweep::Unlistable(e));
        }
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot list {dir}: {e}"))),
    };
    for name in &names {
        let name = name.as_c_str();
        let Some(file) = name.to_str().ok().map(str::to_owned) else {
            continue;
        };
        let dead = if file.starts_with("live-") {
            dead_in(&dirfd, name, 0)
        } else if file.starts_with("tmp-") {
            // A publisher holds its lock before the rename; an unlocked temporary file older
            // than a minute belongs to a process that died in between.
            dead_in(&dirfd, name, 60)
        } else {
            false
        };
        if !dead {
            continue;
        }
        let outcome = if dry_run {
            Ok(())
        } else {
            rustix::fs::unlinkat(&dirfd, name, rustix::fs::AtFlags::empty())
                .map_err(|e| io::Error::from(e).to_string())
        };
        out.push(Swept { file, outcome });
    }
    Ok(Sweep::Swept(out))
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// This process's BUSY mark, and its parent's.
    const ME: u64 = BUSY | 1000;
    const PARENT: u64 = BUSY | 999;

    /// A process as `token_in` sees it: its token word, how many creations ran, and what the
    /// last one published with its token (its liveness file, `PID`, `FD`).
    #[derive(Default)]
    struct Process {
        token: AtomicU64,
        creations: AtomicU64,
        file: AtomicU64,
    }

    /// A thread asks for the token, as `current_slow` does, with a creation that stands for
    /// publishing the liveness file: the n-th creation (from 0) fails if `fails`, else
    /// writes token 100 + n to the file word (Relaxed, as production's `PID`) and returns it.
    /// A token returned is never 0 nor a BUSY mark, and its file is seen as written.
    fn ask(p: &Process, fails: bool) -> io::Result<(u64, bool)> {
        let got = token_in(&p.token, ME, || {
            let n = p.creations.fetch_add(1, Ordering::Relaxed);
            if fails {
                return Err(io::Error::other("/dev/shm is full"));
            }
            p.file.store(100 + n, Ordering::Relaxed);
            Ok(100 + n)
        });
        if let Ok((t, _)) = got {
            assert!(t != 0 && t & BUSY == 0, "returned {t:#x}");
            assert_eq!(
                p.file.load(Ordering::Relaxed),
                t,
                "a token whose file is not seen"
            );
        }
        got
    }

    /// Two threads of one process whose token word holds `initial` ask for the token at once:
    /// both get the same one, made by exactly one creation, in one of them.
    fn two_threads_ask(initial: u64) {
        crate::queue::loom_model(move || {
            let p = Arc::new(Process::default());
            p.token.store(initial, Ordering::Relaxed);
            let other = {
                let p = p.clone();
                thread::spawn(move || ask(&p, false).unwrap())
            };
            let (a, a_created) = ask(&p, false).unwrap();
            let (b, b_created) = other.join().unwrap();
            assert_eq!(a, b, "two tokens in one process");
            assert_eq!(p.creations.load(Ordering::Relaxed), 1);
            assert!(a_created != b_created, "created by both or by neither");
            assert_eq!(p.token.load(Ordering::Relaxed), a);
        });
    }

    #[test]
    fn loom_token_is_created_once_for_two_threads() {
        two_threads_ask(0);
    }

    /// A `fork()` before the fork handlers existed left the parent's BUSY mark in the child's
    /// word: a thread of the child takes it back, and the two still get one token.
    #[test]
    fn loom_token_busy_mark_of_a_parent_is_taken_back() {
        two_threads_ask(PARENT);
    }

    /// One thread's creation fails while another asks: the failing thread returns its error
    /// (or finds the other's token, if that came first); the other, waiting on the failed
    /// creation, creates the token itself; a later call finds it.
    #[test]
    fn loom_token_failed_creation_is_retried() {
        crate::queue::loom_model(|| {
            let p = Arc::new(Process::default());
            let failing = {
                let p = p.clone();
                thread::spawn(move || ask(&p, true))
            };
            let (t, created) = ask(&p, false).unwrap();
            assert!(created, "a token found that only this thread could create");
            let failed = match failing.join().unwrap() {
                Ok((u, false)) => {
                    assert_eq!(u, t);
                    false
                }
                Ok((_, true)) => unreachable!("a failing creation returned a token"),
                Err(_) => true,
            };
            // One creation, or the failed one and ours.
            assert_eq!(p.creations.load(Ordering::Relaxed), 1 + u64::from(failed));
            assert_eq!(ask(&p, true).unwrap(), (t, false));
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The files a sweep of a listable directory handled.
    fn listed(s: io::Result<Sweep>) -> Vec<Swept> {
        match s.unwrap() {
            Sweep::Swept(v) => v,
            Sweep::Unlistable(e) => panic!("unlistable: {e}"),
        }
    }

    #[test]
    fn own_token_is_alive_and_stable() {
        let t = current().unwrap();
        assert!(t != 0 && t <= TOKEN_MAX);
        assert_eq!(current().unwrap(), t);
        assert!(is_current(t));
        assert!(!is_current(0));
        // Asked through a fresh descriptor, as another process would.
        let fd = OwnedFd::from(std::fs::File::open(path_of(t)).unwrap());
        assert_eq!(query(&fd), Liveness::Alive);
        let r = record(t).unwrap();
        assert_eq!(r.pid, std::process::id());
        // Readable by everyone once published, writable only by us.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path_of(t)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
    }

    #[test]
    fn unknown_tokens_are_dead() {
        current().unwrap();
        // A token with no file: dead. (A random one: its file cannot exist in practice.)
        let t = random_token().unwrap();
        assert_eq!(liveness(t), Liveness::Dead);
        assert_eq!(liveness(TOKEN_MAX + 1), Liveness::Dead);
        assert_eq!(liveness(u64::MAX), Liveness::Dead);
        assert_eq!(liveness(0), Liveness::Unknown);
    }

    /// Review finding: a FIFO or a symbolic link planted under a dead token's name is dead,
    /// and reading its record neither follows nor blocks.
    #[test]
    fn planted_fifos_and_links_are_dead_and_do_not_block() {
        ensure_dir().unwrap();
        let (t1, t2) = (random_token().unwrap(), random_token().unwrap());
        let (p1, p2) = (path_of(t1), path_of(t2));
        struct Rm(Vec<String>);
        impl Drop for Rm {
            fn drop(&mut self) {
                for p in &self.0 {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        let _rm = Rm(vec![p1.clone(), p2.clone()]);
        let c = cstr(&p1).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink(&p1, &p2).unwrap();
        for t in [t1, t2] {
            assert_eq!(liveness(t), Liveness::Dead);
            assert_eq!(record(t), None);
        }
    }

    #[test]
    fn an_unlocked_file_is_dead_and_swept() {
        ensure_dir().unwrap();
        // A token with no file is dead; so is one whose file nobody locks.
        let t = random_token().unwrap();
        assert_eq!(liveness(t), Liveness::Dead);
        // Sweep a private directory (the shared one is swept by other processes too).
        let d = std::env::temp_dir().join(format!("shmkit-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        struct Rm(std::path::PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _rm = Rm(d.clone());
        let dead = d.join(format!("live-{t:016x}"));
        std::fs::write(&dead, b"pid 1\n").unwrap();
        let held = d.join("live-0000000000000001");
        let f = std::fs::File::create(&held).unwrap();
        let fl = whole_file(libc::F_WRLCK);
        // SAFETY: valid descriptor and flock.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        assert_eq!(r, 0);
        let dir = d.to_str().unwrap();
        let swept = listed(sweep_in(dir, true));
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert_eq!(swept[0].file, format!("live-{t:016x}"));
        assert!(dead.exists(), "a dry run removes nothing");
        assert_eq!(listed(sweep_in(dir, false)).len(), 1);
        assert!(!dead.exists() && held.exists());
    }

    /// Review finding: `sweep_in` listed a directory by path and removed through a symbolic
    /// link planted in its place, in whatever directory the link pointed to. A link is
    /// refused; the files behind it stay.
    #[test]
    fn a_link_in_place_of_the_directory_is_refused_not_followed() {
        let base = std::env::temp_dir().join(format!("shmkit-sweep-link-{}", std::process::id()));
        let (victim, link) = (base.join("victim"), base.join("link"));
        std::fs::create_dir_all(&victim).unwrap();
        struct Rm(std::path::PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _rm = Rm(base.clone());
        let file = victim.join(format!("live-{:016x}", random_token().unwrap()));
        std::fs::write(&file, b"pid 1\n").unwrap();
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        // The directory itself is swept (the file is dead)...
        assert_eq!(listed(sweep_in(victim.to_str().unwrap(), true)).len(), 1);
        // ...but not through the link.
        let e = sweep_in(link.to_str().unwrap(), false).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert!(file.exists());
    }
}
