//! Named shared-memory segments: name rules, the versioned header, the create/open/
//! open_or_create protocol, ownership and `gc`. `SPEC.md` §2–§4 is the normative description.

#[cfg(all(test, not(loom)))]
mod forged_tests;
mod gc;
mod header;
mod kind;
mod name;
mod probe;
#[allow(clippy::module_inception)]
mod segment;

pub use gc::{gc, GcAction, GcEntry, GcOptions};
pub(crate) use header::STATE_WORD;
// Under loom, the list (which marks its trailer ready) is built only for its models.
#[cfg_attr(loom, allow(unused_imports))]
pub(crate) use header::{acquire_state, mark_ready};
pub(crate) use header::{validate_self, RawHeader};
pub use header::{HeaderInfo, Lifetime, State, FORMAT_VERSION, HEADER_SIZE, MAGIC};
pub use kind::{fingerprint, Kind};
pub use name::{validate_name, MAX_NAME_LEN};
pub use probe::{list, mapped_by, probe, ObjectFile, Probe, Verdict};
pub(crate) use probe::{CPYTHON_LIST_KIND, RAW_KIND};
pub use segment::{Access, ReadOnly, ReadWrite, Segment, SegmentOptions, DEFAULT_OPEN_TIMEOUT};

/// The segment settings that every object's options builder (`Lock::options()`,
/// `Queue::options()`, `Value::options()`, …) passes on to the [`SegmentOptions`] it keeps in
/// its field `seg`, written once: `segment_settings!("queue"; mode, unlink_on_drop,
/// open_timeout, lifetime, sparse);` inside the builder's `impl`. `$what` names the object in
/// the docs.
#[cfg_attr(loom, allow(unused_macros))]
macro_rules! segment_settings {
    ($what:literal; $($setting:ident),+ $(,)?) => {
        $( crate::segment::segment_settings!(@$setting $what); )+
    };
    (@mode $what:literal) => {
        #[doc = concat!("Permission bits for a created ", $what, " (default 0600), applied \
            exactly whatever the umask ([`SegmentOptions::mode`](crate::segment::SegmentOptions::mode)).")]
        pub fn mode(mut self, mode: u32) -> Self {
            self.seg = self.seg.mode(mode);
            self
        }
    };
    (@unlink_on_drop $what:literal) => {
        #[doc = concat!("Unlink the name when the returned ", $what, " handle is dropped \
            (default: no; [`SegmentOptions::unlink_on_drop`](crate::segment::SegmentOptions::unlink_on_drop)).")]
        pub fn unlink_on_drop(mut self, yes: bool) -> Self {
            self.seg = self.seg.unlink_on_drop(yes);
            self
        }
    };
    (@open_timeout $what:literal) => {
        #[doc = concat!("How long `open_or_create` keeps racing for a ", $what, " name that \
            others keep creating and removing (default 5 s; \
            [`SegmentOptions::open_timeout`](crate::segment::SegmentOptions::open_timeout)).")]
        pub fn open_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.seg = self.seg.open_timeout(timeout);
            self
        }
    };
    (@lifetime $what:literal) => {
        #[doc = concat!("Who may remove a created ", $what, " (default \
            [`Lifetime::Persistent`](crate::segment::Lifetime::Persistent); with \
            [`Lifetime::Owned`](crate::segment::Lifetime::Owned), `shmkit gc` removes it once \
            its creator is dead: [`SegmentOptions::lifetime`](crate::segment::SegmentOptions::lifetime)).")]
        pub fn lifetime(mut self, lifetime: crate::segment::Lifetime) -> Self {
            self.seg = self.seg.lifetime(lifetime);
            self
        }
    };
    (@sparse $what:literal) => {
        #[doc = concat!("Create the ", $what, " without reserving its memory (default: no; \
            [`SegmentOptions::sparse`](crate::segment::SegmentOptions::sparse): a later access \
            that finds `/dev/shm` full gets `SIGBUS`).")]
        pub fn sparse(mut self, yes: bool) -> Self {
            self.seg = self.seg.sparse(yes);
            self
        }
    };
}
#[cfg_attr(loom, allow(unused_imports))] // the builders are not built under loom
pub(crate) use segment_settings;
