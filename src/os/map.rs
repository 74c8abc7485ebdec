//! The mapping of a shared-memory object into this process.

use memmap2::{MmapOptions, MmapRaw};
use std::io;
use std::os::fd::OwnedFd;

/// A `MAP_SHARED` mapping of the whole object. It hands out raw pointers only: the bytes may be
/// written by another process at any time, so no `&[u8]` is ever formed over them.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Map `len` bytes of `fd` from offset 0, `PROT_READ|PROT_WRITE` or `PROT_READ` only.
    pub(crate) fn new(fd: &OwnedFd, len: u64, writable: bool) -> io::Result<Mapping> {
        let len = usize::try_from(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "segment larger than the address space",
            )
        })?;
        let mut opts = MmapOptions::new();
        opts.len(len);
        let raw = if writable {
            opts.map_raw(fd)?
        } else {
            opts.map_raw_read_only(fd)?
        };
        Ok(Mapping { raw })
    }

    /// Start of the mapping (page-aligned).
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.raw.as_mut_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }
}

/// The system's page size in bytes.
#[cfg_attr(loom, allow(dead_code))] // frames only
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the running system; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Make `[ptr, ptr + len)` of a live mapping `PROT_READ` only (`mprotect`): a later write
/// through it faults with `SIGSEGV` instead of changing the shared bytes.
///
/// # Safety
///
/// `ptr` is page-aligned and `[ptr, ptr + len)` lies inside a mapping this process owns, which
/// nobody in this process writes from now on.
#[cfg_attr(loom, allow(dead_code))] // frames only
pub(crate) unsafe fn protect_read_only(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller's contract: our own mapping, page-aligned, no writer left.
    unsafe { rustix::mm::mprotect(ptr.cast(), len, rustix::mm::MprotectFlags::READ) }
        .map_err(io::Error::from)
}

/// Ask the kernel to back `[ptr, ptr + len)` with transparent huge pages (`MADV_HUGEPAGE`).
/// Whether it does depends on `/sys/kernel/mm/transparent_hugepage/shmem_enabled`; the
/// returned text says what happens (the caller reports it).
///
/// # Safety
///
/// `[ptr, ptr + len)` lies inside a mapping this process owns (advice changes no contents).
#[cfg_attr(loom, allow(dead_code))] // frames only
pub(crate) unsafe fn advise_huge_pages(ptr: *mut u8, len: usize) -> String {
    let policy = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .map(|s| {
            s.split_whitespace()
                .find(|w| w.starts_with('['))
                .map_or_else(
                    || s.trim().to_owned(),
                    |w| w.trim_matches(['[', ']']).to_owned(),
                )
        })
        .unwrap_or_else(|_| "unknown (no transparent huge pages in this kernel)".to_owned());
    // SAFETY: the caller's contract; MADV_HUGEPAGE changes no contents.
    let r = unsafe { rustix::mm::madvise(ptr.cast(), len, rustix::mm::Advice::LinuxHugepage) };
    match (r, policy.as_str()) {
        (Err(e), _) => format!("huge pages unavailable ({e}); using normal pages"),
        (Ok(()), "advise" | "always" | "within_size" | "force") => {
            format!("huge pages requested (shmem_enabled: {policy})")
        }
        (Ok(()), _) => format!(
            "huge pages unavailable: /sys/kernel/mm/transparent_hugepage/shmem_enabled is \
             {policy}; using normal pages"
        ),
    }
}

/// Pre-fault the page tables of `[ptr, ptr + len)` (`MADV_POPULATE_READ`, or
/// `MADV_POPULATE_WRITE` for a writable range), so the first access to each page takes no
/// fault. Kernels before 5.14 lack these: the range is then touched page by page (reads
/// only). Returns a note when it fell back.
///
/// # Safety
///
/// `[ptr, ptr + len)` lies inside a live mapping this process owns (readable).
#[cfg_attr(loom, allow(dead_code))] // frames only
pub(crate) unsafe fn populate(ptr: *mut u8, len: usize, writable: bool) -> Option<String> {
    let advice = if writable {
        rustix::mm::Advice::LinuxPopulateWrite
    } else {
        rustix::mm::Advice::LinuxPopulateRead
    };
    // SAFETY: the caller's contract; populating changes no contents.
    match unsafe { rustix::mm::madvise(ptr.cast(), len, advice) } {
        Ok(()) => None,
        Err(e) => {
            let page = page_size();
            let mut at = 0;
            while at < len {
                // SAFETY: `at < len`: inside the range; a Relaxed byte load is permitted on
                // read-only memory and races with nothing (atomic).
                unsafe {
                    std::sync::atomic::AtomicU8::from_ptr(ptr.add(at))
                        .load(std::sync::atomic::Ordering::Relaxed)
                };
                at += page;
            }
            Some(format!(
                "MADV_POPULATE unavailable ({e}); touched every page instead"
            ))
        }
    }
}
