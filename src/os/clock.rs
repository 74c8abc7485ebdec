//! Clock readings in nanoseconds (`clock_gettime`, through the vDSO: no system call).

#![cfg_attr(loom, allow(dead_code))] // the frame channel is not built under loom

use rustix::time::{clock_gettime, ClockId};

fn ns(id: ClockId) -> u64 {
    let t = clock_gettime(id);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC` in ns: the same clock in every process of the machine.
pub(crate) fn monotonic_ns() -> u64 {
    ns(ClockId::Monotonic)
}

/// `CLOCK_REALTIME` in ns since the Unix epoch.
pub(crate) fn realtime_ns() -> u64 {
    ns(ClockId::Realtime)
}
