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

/// How long a call may wait: not at all (`try_`), or until a deadline (`None`: no limit).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    No,
    Until(Option<Instant>),
}

impl Wait {
    /// Wait at most `timeout` from now (a timeout too large for `Instant`: no limit).
    #[inline]
    pub(crate) fn timeout(timeout: std::time::Duration) -> Wait {
        Wait::Until(after(Some(timeout)))
    }
}

/// The four forms of a blocking call (the crate's one scheme): `x()` blocks, `try_x()` never
/// waits ([`Error::WouldBlock`](crate::Error::WouldBlock)), `x_timeout(Duration)` and
/// `x_deadline(Instant)` give up with [`Error::Timeout`](crate::Error::Timeout) (for lock
/// calls, [`LockError::WouldBlock`](crate::sync::LockError::WouldBlock) /
/// [`LockError::Timeout`](crate::sync::LockError::Timeout)). All four call one private core
/// taking a [`raw::Wait`], so they cannot drift apart. Used by cells and `ShareableList`;
/// [`blocking_forms!`] is the three-form variant for `&mut self` handles.
#[cfg_attr(loom, allow(unused_macros))] // cells and lists are not built under loom
macro_rules! wait_forms {
    ($(#[$m:meta])* fn $x:ident, $try_x:ident, $x_timeout:ident, $x_deadline:ident
     $(<$($g:ident),*>)? ($($a:ident: $t:ty),*) -> $r:ty = $core:ident) => {
        $(#[$m])*
        #[inline]
        pub fn $x $(<$($g),*>)? (&self, $($a: $t),*) -> $r {
            self.$core($($a,)* $crate::os::deadline::Wait::Until(None))
        }

        #[doc = concat!("[`", stringify!($x), "`](Self::", stringify!($x), ") without waiting: `WouldBlock` if the lock is held (or a seqlock write is under way / nothing changed yet).")]
        #[inline]
        pub fn $try_x $(<$($g),*>)? (&self, $($a: $t),*) -> $r {
            self.$core($($a,)* $crate::os::deadline::Wait::No)
        }

        #[doc = concat!("[`", stringify!($x), "`](Self::", stringify!($x), "), waiting at most `timeout` (then `Timeout`).")]
        #[inline]
        pub fn $x_timeout $(<$($g),*>)? (&self, $($a: $t,)* timeout: std::time::Duration) -> $r {
            self.$core($($a,)* $crate::os::deadline::Wait::timeout(timeout))
        }

        #[doc = concat!("[`", stringify!($x), "`](Self::", stringify!($x), "), waiting until `deadline` (then `Timeout`).")]
        #[inline]
        pub fn $x_deadline $(<$($g),*>)? (&self, $($a: $t,)* deadline: std::time::Instant) -> $r {
            self.$core($($a,)* $crate::os::deadline::Wait::Until(Some(deadline)))
        }
    };
}

#[cfg_attr(loom, allow(unused_imports))]
pub(crate) use wait_forms;

/// The three-form variant for `&mut self` handles (queue endpoints, frames publishers and
/// subscribers), whose `try_x` is written by hand (its own code and error type):
/// `blocking_forms! { /// docs of x
///     fn x / x_timeout / x_deadline (arg: Ty, …) -> Ret = x_within; }`
/// inside an `impl` block writes the public `x(args…)` (no limit), `x_timeout(args…,
/// Duration)` and `x_deadline(args…, Instant)` over one private
/// `self.x_within(arg, …, deadline: Option<Instant>)`, so that every handle gets the same
/// three forms with the same deadline rules ([`after`]: a timeout too large for `Instant`
/// means no limit; a deadline in the past polls once, which `x_within` must do: try, then
/// wait). `= x_within(a, …)` passes fixed leading arguments first
/// (`self.x_within(a, …, arg, …, deadline)`). The docs given are `x`'s; the other two get
/// theirs from it.
macro_rules! blocking_forms {
    ($(
        $(#[$doc:meta])*
        fn $x:ident / $x_timeout:ident / $x_deadline:ident ($($arg:ident : $ty:ty),*) -> $ret:ty
            = $within:ident $(($($pre:expr),*))?;
    )*) => {$(
        $(#[$doc])*
        pub fn $x(&mut self $(, $arg: $ty)*) -> $ret {
            self.$within($($($pre,)*)? $($arg,)* None)
        }

        #[doc = concat!("[`", stringify!($x), "`](Self::", stringify!($x), "), waiting at most \
            `timeout` (a timeout too large for `Instant` means no limit; zero polls once), \
            then the `Timeout` outcome.")]
        pub fn $x_timeout(&mut self $(, $arg: $ty)*, timeout: std::time::Duration) -> $ret {
            self.$within($($($pre,)*)? $($arg,)* $crate::os::deadline::after(Some(timeout)))
        }

        #[doc = concat!("[`", stringify!($x), "`](Self::", stringify!($x), "), waiting until \
            `deadline` (`CLOCK_MONOTONIC`; one in the past polls once), then the `Timeout` \
            outcome.")]
        pub fn $x_deadline(&mut self $(, $arg: $ty)*, deadline: std::time::Instant) -> $ret {
            self.$within($($($pre,)*)? $($arg,)* Some(deadline))
        }
    )*};
}

pub(crate) use blocking_forms;

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
