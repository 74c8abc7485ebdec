//! `shmkit queue` for the `mpmc-bytes` kind: create, push and pop. Each MESSAGE is one
//! variable-length message (its UTF-8 bytes); `--capacity` counts bytes.

use std::time::{Duration, Instant};

use crate::{create_error, CmdResult, Stop};
use shmkit::queue::mpmc_bytes::Queue;
use shmkit::segment::Lifetime;

/// `queue create NAME --kind mpmc-bytes --capacity BYTES`.
pub(crate) fn create(
    name: &str,
    capacity: u64,
    mode: u32,
    sparse: bool,
    lifetime: Lifetime,
) -> CmdResult {
    Queue::options()
        .mode(mode)
        .sparse(sparse)
        .lifetime(lifetime)
        .create(name, capacity)
        .map(drop)
        .map_err(create_error)
}

/// `queue push NAME MESSAGE`: attach a producer for the call, wait up to `timeout` for room.
pub(crate) fn push(name: &str, message: &str, timeout: Duration) -> CmdResult {
    let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
    let q = Queue::open(name).map_err(|x| e(&x))?;
    let mut tx = q.producer().map_err(|x| e(&x))?;
    tx.push_timeout(message.as_bytes(), timeout)
        .map_err(|x| e(&x))
}

/// `queue pop NAME`: attach a consumer for the call and pop one message before `deadline`,
/// as the other kinds do ([`pop_until`](super::queue::pop_until)).
pub(crate) fn pop(name: &str, deadline: Option<Instant>) -> Result<Vec<u8>, Stop> {
    let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
    let q = Queue::open(name).map_err(|x| e(&x))?;
    let mut rx = q.consumer().map_err(|x| e(&x))?;
    super::queue::pop_until(deadline, |d| match d {
        Some(d) => rx.pop_deadline(d),
        None => rx.pop(),
    })
    .map_err(Stop::from)
}
