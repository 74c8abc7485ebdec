//! Clock readings in nanoseconds (`clock_gettime`, through the vDSO: no system call).
//!
//! Read through the C library's `clock_gettime`, not rustix's: rustix finds the vDSO by
//! parsing the ELF image the auxiliary vector points to, and under valgrind (which gives a
//! process no vDSO image there) that parse reads unmapped memory and the process dies with
//! SIGSEGV (rustix issue 1559). A user's program must stay runnable under memcheck; glibc
//! falls back to the system call when there is no vDSO. Test `runs_under_valgrind`.

#![cfg_attr(loom, allow(dead_code))] // the frame channel is not built under loom

fn ns(id: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock ids used here are ones every
    // Linux since 2.6.32 has, so the call cannot fail (and a failure would leave `t` zero).
    unsafe { libc::clock_gettime(id, &mut t) };
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC` in ns: the same clock in every process of the machine.
pub(crate) fn monotonic_ns() -> u64 {
    ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_MONOTONIC_COARSE` in ns: the monotonic clock at the last timer tick (its
/// resolution is the tick, 1 to 10 ms), read from the vDSO's data page without the TSC: about
/// 9 ns against `CLOCK_MONOTONIC`'s 40 on this project's VM. For rate limits of 10 ms or more.
pub(crate) fn coarse_ns() -> u64 {
    ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// `CLOCK_REALTIME` in ns since the Unix epoch.
pub(crate) fn realtime_ns() -> u64 {
    ns(libc::CLOCK_REALTIME)
}
