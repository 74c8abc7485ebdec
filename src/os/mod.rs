//! The only code in shmkit that makes system calls.
//!
//! - [`shm`]: `shm_open`, `shm_unlink`, `ftruncate`, `fallocate`, `fstat`, `fstatvfs`,
//!   `fchmod` and the publishing `renameat2` on `/dev/shm` objects.
//! - [`deadline`]: the one deadline helper (`after`, `passed`).
//! - [`map`]: the RAII mapping of a shared-memory fd (`memmap2::MmapRaw`).
//! - [`futex`]: futex wait with a `CLOCK_MONOTONIC` deadline and wake, on shared (not private)
//!   futex words, so they work across processes.
//! - [`liveness`]: process liveness tokens held by open-file-description locks.
//! - [`deadline`]: the one deadline helper.
//! - [`process`]: pids, process start times and liveness.
//! - [`atomic_copy`]: byte copies into and out of memory other processes write at the same
//!   time, as `Relaxed` atomic words (no system call; it lives beside the mapping it serves).

pub(crate) mod atomic_copy;
pub(crate) mod clock;
pub(crate) mod deadline;
pub(crate) mod futex;
pub(crate) mod liveness;
pub(crate) mod map;
pub(crate) mod process;
pub(crate) mod shm;
