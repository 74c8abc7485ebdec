//! Named shared-memory segments: name rules, the versioned header, the create/open/
//! open_or_create protocol and ownership. `SPEC.md` §2–§4 is the normative description.

mod header;
mod kind;
mod name;
mod probe;
#[allow(clippy::module_inception)]
mod segment;

pub use header::{HeaderInfo, State, FORMAT_VERSION, HEADER_SIZE, MAGIC};
pub use kind::{fingerprint, Kind};
pub use name::{validate_name, MAX_NAME_LEN};
pub use probe::{list, mapped_by, probe, read_object_bytes, Probe};
pub use segment::{Access, ReadOnly, ReadWrite, Segment, SegmentOptions, DEFAULT_OPEN_TIMEOUT};
