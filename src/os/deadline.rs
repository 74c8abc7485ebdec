//! Deadlines for every wait in shmkit: `CLOCK_MONOTONIC` instants (`std::time::Instant`), where
//! `None` means "no deadline".

use std::time::{Duration, Instant};

/// `timeout` from now, or `None` (no deadline) for `None` or a timeout too large for an
/// `Instant` to hold (so `Duration::MAX` means "wait forever").
pub(crate) fn after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Whether `deadline` has passed (`None`: never).
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_huge_timeouts_never_pass() {
        assert_eq!(after(None), None);
        assert_eq!(after(Some(Duration::MAX)), None);
        assert!(!passed(None));
        assert!(passed(after(Some(Duration::ZERO))));
        assert!(!passed(after(Some(Duration::from_secs(3600)))));
    }
}
