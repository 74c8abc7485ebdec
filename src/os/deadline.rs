//! Deadlines: the one place that turns a timeout into a `CLOCK_MONOTONIC` instant and asks
//! whether it has passed. Every blocking call in shmkit measures against an `Option<Instant>`
//! deadline (`None`: no limit), so a call made of several waits keeps one budget.

#![cfg_attr(loom, allow(dead_code))] // the queues wait in slices only outside loom

use std::time::{Duration, Instant};

/// `now + timeout`, or `None` (no deadline) for `None` or a timeout too large for `Instant`
/// (e.g. `Duration::MAX`): a huge timeout means "no limit", never a panic.
#[inline]
pub(crate) fn after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Whether `deadline` has passed (`None`: never).
#[inline]
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// The earlier of `deadline` and `slice` from now: the end of one bounded sleep of a wait that
/// must wake up regularly (to check a peer's liveness) without overrunning its own deadline.
pub(crate) fn slice(deadline: Option<Instant>, slice: Duration) -> Option<Instant> {
    let end = Instant::now().checked_add(slice);
    match (deadline, end) {
        (Some(d), Some(e)) => Some(d.min(e)),
        (d, None) => d,
        (None, e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_mean_no_deadline() {
        assert_eq!(after(None), None);
        assert_eq!(after(Some(Duration::MAX)), None);
        assert!(!passed(None));
        assert!(passed(after(Some(Duration::ZERO))));
        let d = after(Some(Duration::from_secs(3600)));
        assert!(slice(d, Duration::from_millis(1)) < d);
        assert_eq!(slice(None, Duration::MAX), None);
    }
}
