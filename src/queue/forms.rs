//! The one blocking-call shape for queue handles (`crate::error`'s module docs): from one
//! private `x_within(args…, deadline: Option<Instant>)` method, [`blocking_forms!`] writes the
//! public `x(args…)` (no limit), `x_timeout(args…, Duration)` and `x_deadline(args…, Instant)`
//! forms, so that every queue kind (and any future one) gets the same three forms with the
//! same deadline rules (`os::deadline`: a timeout too large for `Instant` means no limit; a
//! deadline in the past polls once, which `x_within` must do: try, then wait).

/// `blocking_forms! { /// docs of x
///     fn x / x_timeout / x_deadline (arg: Ty, …) -> Ret = x_within; }`
/// inside an `impl` block: writes the three public forms over `self.x_within(arg, …, deadline)`
/// (see the module docs). The docs given are `x`'s; the other two get theirs from it.
macro_rules! blocking_forms {
    ($(
        $(#[$doc:meta])*
        fn $x:ident / $x_timeout:ident / $x_deadline:ident ($($arg:ident : $ty:ty),*) -> $ret:ty
            = $within:ident;
    )*) => {$(
        $(#[$doc])*
        pub fn $x(&mut self $(, $arg: $ty)*) -> $ret {
            self.$within($($arg,)* None)
        }

        #[doc = concat!("[`", stringify!($x), "`](Self::", stringify!($x), "), waiting at most \
            `timeout` (a timeout too large for `Instant` means no limit; zero polls once), \
            then the `Timeout` outcome.")]
        pub fn $x_timeout(&mut self $(, $arg: $ty)*, timeout: std::time::Duration) -> $ret {
            self.$within($($arg,)* crate::os::deadline::after(Some(timeout)))
        }

        #[doc = concat!("[`", stringify!($x), "`](Self::", stringify!($x), "), waiting until \
            `deadline` (`CLOCK_MONOTONIC`; one in the past polls once), then the `Timeout` \
            outcome.")]
        pub fn $x_deadline(&mut self $(, $arg: $ty)*, deadline: std::time::Instant) -> $ret {
            self.$within($($arg,)* Some(deadline))
        }
    )*};
}

pub(crate) use blocking_forms;
