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
