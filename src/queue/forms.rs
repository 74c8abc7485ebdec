//! The shapes every queue kind shares, written once: [`queue_constructors!`] (a kind's
//! `options`, `create`, `open`, `open_or_create`) and the accessors. The blocking forms of
//! queue (and frames) handles are `os::deadline`'s `blocking_forms!`.

/// Inside a queue kind's `impl` block: its `options()`, `create`, `open` and `open_or_create`,
/// thin calls of [`QueueOptions`] with the defaults, written once for every kind. `what`
/// names the object in the docs (`"queue"`, `"ring"`), `capacity` what its capacity counts;
/// the doc attributes given before `options` and `open` (a kind's examples, a typed queue's
/// type check) are added to those methods' docs.
///
/// ```ignore
/// queue_constructors! {
///     what: "ring", capacity: "bytes (a power of two, at least 64)",
///     /// (examples for `options`)
///     options;
///     /// (what `open` checks, examples)
///     open;
/// }
/// ```
macro_rules! queue_constructors {
    (
        what: $what:literal, capacity: $cap:literal,
        $(#[$options_doc:meta])*
        options;
        $(#[$open_doc:meta])*
        open;
    ) => {
        #[doc = concat!("Options for creating or opening the ", $what, ": mode, open timeout, \
            unlink on drop, lifetime, sparse (see [`QueueOptions`](crate::queue::QueueOptions)).")]
        $(#[$options_doc])*
        #[cfg(not(loom))]
        pub fn options() -> $crate::queue::QueueOptions<Self> {
            $crate::queue::QueueOptions::default()
        }

        #[doc = concat!("Create the named ", $what, " with `capacity` ", $cap, ", with the \
            default [`options`](Self::options). Fails with \
            [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name is taken.")]
        #[cfg(not(loom))]
        pub fn create(name: &str, capacity: u64) -> $crate::Result<Self> {
            Self::options().create(name, capacity)
        }

        #[doc = concat!("Open the named ", $what, ", with the default \
            [`options`](Self::options).")]
        $(#[$open_doc])*
        #[cfg(not(loom))]
        pub fn open(name: &str) -> $crate::Result<Self> {
            Self::options().open(name)
        }

        #[doc = concat!("Open the named ", $what, ", or create it with `capacity` ", $cap, " \
            if it does not exist (race-free between processes). An existing ", $what, " must \
            have this capacity (and, for a typed queue, this element type), or the open \
            fails.")]
        #[cfg(not(loom))]
        pub fn open_or_create(name: &str, capacity: u64) -> $crate::Result<Self> {
            Self::options().open_or_create(name, capacity)
        }
    };
}

pub(crate) use queue_constructors;

/// The accessors of every fixed-size queue handle (SPSC and MPMC, typed and raw): `$s` is the
/// field holding the shared state (its `capacity`, `len()` and `region`), and `|$q| $stat`
/// takes a [`QueueStat`](crate::queue::QueueStat) of it (`$q` bound to `&self.$s`).
macro_rules! fixed_queue_accessors {
    ($s:ident, |$q:ident| $stat:expr) => {
        /// Slots in the queue.
        pub fn capacity(&self) -> u64 {
            self.$s.capacity
        }

        /// Elements in the queue now (a snapshot: it may change as soon as it is read).
        pub fn len(&self) -> u64 {
            self.$s.len()
        }

        /// Whether the queue is empty now (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the queue is full now (a snapshot).
        pub fn is_full(&self) -> bool {
            self.len() == self.$s.capacity
        }

        /// The segment name (`(private)` for a heap queue).
        pub fn name(&self) -> &str {
            self.$s.region.name()
        }

        /// Unlink the segment when the last handle of this queue in this process (the queue
        /// or one of its producers or consumers) drops.
        pub fn set_unlink_on_drop(&self, yes: bool) {
            self.$s.region.set_unlink_on_drop(yes)
        }

        /// Capacity, length, and the attached producers and consumers with their liveness.
        pub fn stat(&self) -> $crate::queue::QueueStat {
            let $q = &self.$s;
            $stat
        }
    };
}

pub(crate) use fixed_queue_accessors;

/// The constructors and element size of a raw fixed-size queue (`spsc::RawQueue`,
/// `mpmc::RawQueue`): `$what` names the kind in the docs, `$field: $shared` is the queue's
/// `Arc` field and the shared state it holds (whose `elem_size` is the validated one).
#[cfg(not(loom))] // the raw handles are not built under loom
macro_rules! raw_queue_basics {
    ($what:literal, $field:ident: $shared:ty) => {
        /// The builder for creating or opening a raw queue
        /// ([`QueueOptions`](crate::queue::QueueOptions)): `create(name, elem_size,
        /// capacity)`, `open(name)` (any element type), `open_or_create(name, elem_size,
        /// capacity)`.
        pub fn options() -> $crate::queue::QueueOptions<Self> {
            $crate::queue::QueueOptions::default()
        }

        #[doc = concat!("Open the named ", $what, " whatever its element type, with the \
            default options.")]
        pub fn open(name: &str) -> $crate::Result<Self> {
            Self::options().open(name)
        }

        fn wrap(shared: $shared) -> Self {
            RawQueue {
                $field: std::sync::Arc::new(shared),
            }
        }

        /// The layout of this queue's elements: the element size its geometry was validated
        /// (or created) with, never a second load of the shared word.
        fn layout(&self) -> $crate::queue::RawLayout {
            $crate::queue::RawLayout(self.$field.elem_size as usize)
        }

        /// Bytes per element: the length of every slice pushed or popped.
        pub fn elem_size(&self) -> usize {
            self.layout().0
        }
    };
}

#[cfg(not(loom))]
pub(crate) use raw_queue_basics;
