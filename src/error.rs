//! The error type for creating and attaching to shared-memory objects.
//!
//! Every variant names the segment and says what was expected and what was found, so the
//! message alone tells a user what to do. Per-operation errors that hand a value back (a full
//! queue, a timed-out lock) live with their operation.

use std::fmt;
use std::io;
use std::time::Duration;

/// Result alias for attach/create operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why creating, opening or validating a shared-memory object failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No segment has this name (`/dev/shm/NAME` does not exist).
    NotFound {
        /// The segment name.
        name: String,
    },
    /// A segment with this name already exists (create uses `O_EXCL`).
    AlreadyExists {
        /// The segment name.
        name: String,
    },
    /// The name breaks the naming rules (1–200 bytes of `[A-Za-z0-9._-]`, not `.` or `..`).
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The operating system refused access (mode bits or a read-only attach).
    PermissionDenied {
        /// The segment name.
        name: String,
        /// What was being attempted.
        op: &'static str,
    },
    /// The segment holds another kind of object than the one asked for.
    KindMismatch {
        /// The segment name.
        name: String,
        /// The kind the caller asked for.
        expected: String,
        /// The kind recorded in the header.
        found: String,
    },
    /// Same kind, but its layout (element type, capacity rules, …) differs.
    LayoutMismatch {
        /// The segment name.
        name: String,
        /// The layout fingerprint this build expects.
        expected: u64,
        /// The fingerprint recorded in the header.
        found: u64,
    },
    /// The header's format version is not one this build understands.
    VersionMismatch {
        /// The segment name.
        name: String,
        /// The version this build writes and reads.
        expected: u32,
        /// The version recorded in the header.
        found: u32,
    },
    /// The segment's bytes are inconsistent: truncated, bad magic, impossible sizes.
    Corrupt {
        /// The segment name.
        name: String,
        /// Which field or check failed, with the values seen.
        what: String,
    },
    /// Nothing usable appeared within the open timeout: a raw segment stayed 0 bytes (its
    /// foreign creator never sized it), or `open_or_create` kept finding the name created and
    /// removed by others.
    NotReady {
        /// The segment name.
        name: String,
        /// How long the opener waited.
        waited: Duration,
        /// What was seen.
        detail: String,
    },
    /// A requested size or count is beyond what the layout can hold.
    TooLarge {
        /// The segment or object name.
        name: String,
        /// What was requested.
        requested: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// `/dev/shm` has too little free space for the object (creation reserves every byte, so
    /// that a full `/dev/shm` is this error and never a `SIGBUS` later).
    NoSpace {
        /// The segment name.
        name: String,
        /// Bytes the object needs (its header included).
        requested: u64,
        /// Bytes free in `/dev/shm` (`fstatvfs`), as seen right after the attempt.
        available: u64,
    },
    /// An argument is outside its domain (zero size, offset past the end, …).
    InvalidArgument {
        /// The segment or object name.
        name: String,
        /// What is wrong with it.
        what: String,
    },
    /// Any other operating-system error.
    Io {
        /// The segment name.
        name: String,
        /// The system operation that failed.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    /// Map an OS error from `op` on segment `name` to the matching variant.
    pub(crate) fn from_io(name: &str, op: &'static str, e: io::Error) -> Error {
        let name = name.to_owned();
        match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound { name },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { name },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { name, op },
            _ => Error::Io {
                name,
                op,
                source: e,
            },
        }
    }

    /// Shorthand for [`Error::Corrupt`].
    pub(crate) fn corrupt(name: &str, what: impl Into<String>) -> Error {
        Error::Corrupt {
            name: name.to_owned(),
            what: what.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub(crate) fn invalid(name: &str, what: impl Into<String>) -> Error {
        Error::InvalidArgument {
            name: name.to_owned(),
            what: what.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { name } => {
                write!(f, "segment {name:?} not found (no /dev/shm/{name}); create it first or check the name")
            }
            Error::AlreadyExists { name } => write!(
                f,
                "segment {name:?} already exists; open it, pick another name, or remove it with `shmkit rm {name}`"
            ),
            Error::InvalidName { name, reason } => write!(f, "invalid segment name {name:?}: {reason}"),
            Error::PermissionDenied { name, op } => {
                write!(f, "permission denied to {op} segment {name:?}; check its owner and mode with `ls -l /dev/shm/{name}`")
            }
            Error::KindMismatch { name, expected, found } => {
                write!(f, "segment {name:?} holds a {found}, not a {expected}")
            }
            Error::LayoutMismatch { name, expected, found } => write!(
                f,
                "segment {name:?} has layout fingerprint {found:#018x}, expected {expected:#018x}: \
                 it was created with another element type or parameters"
            ),
            Error::VersionMismatch { name, expected, found } => write!(
                f,
                "segment {name:?} has format version {found}, this build of shmkit reads version {expected}"
            ),
            Error::Corrupt { name, what } => write!(f, "segment {name:?} is corrupt: {what}"),
            Error::NotReady { name, waited, detail } => write!(
                f,
                "segment {name:?} was not usable within {waited:?}: {detail}"
            ),
            Error::TooLarge { name, requested, max } => {
                write!(f, "{name:?}: {requested} is too large (at most {max})")
            }
            Error::NoSpace { name, requested, available } => write!(
                f,
                "segment {name:?} needs {requested} bytes but /dev/shm has only {available} bytes free; \
                 remove objects (`shmkit gc`, `shmkit rm`), give /dev/shm more room (e.g. docker \
                 --shm-size), or create it sparse (which can SIGBUS when /dev/shm fills up)"
            ),
            Error::InvalidArgument { name, what } => write!(f, "{name:?}: {what}"),
            Error::Io { name, op, source } => write!(f, "{op} segment {name:?}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
