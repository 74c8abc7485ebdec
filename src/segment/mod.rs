//! Named shared-memory segments: name rules, the versioned header, the create/open/
//! open_or_create protocol, ownership and `gc`. `SPEC.md` §2–§4 is the normative description.

mod gc;
mod header;
mod kind;
mod name;
mod probe;
#[allow(clippy::module_inception)]
mod segment;

pub use gc::{gc, GcAction, GcEntry, GcOptions};
#[cfg(not(loom))]
pub(crate) use header::STATE_WORD;
pub(crate) use header::{validate_self, RawHeader};
pub use header::{HeaderInfo, Lifetime, State, FORMAT_VERSION, HEADER_SIZE, MAGIC};
pub use kind::{fingerprint, Kind};
pub use name::{validate_name, MAX_NAME_LEN};
pub use probe::{list, mapped_by, probe, read_object_bytes, Probe, Verdict};
pub use segment::{Access, ReadOnly, ReadWrite, Segment, SegmentOptions, DEFAULT_OPEN_TIMEOUT};
