//! Segment names.

use crate::error::{Error, Result};
use crate::os::shm::RESERVED_PREFIX;

/// Longest accepted name, in bytes. CPython's resource tracker limits a message to 512 bytes
/// and Linux limits a file name to 255; 200 leaves room for both.
pub const MAX_NAME_LEN: usize = 200;

/// Check a segment name: 1–[`MAX_NAME_LEN`] bytes of ASCII letters, digits, `.`, `_` and `-`,
/// not `.` or `..`, and not starting with `.shmkit` (reserved for shmkit's own files: objects
/// being built, and its liveness directory). The name `NAME` is the POSIX name `/NAME` and the
/// file `/dev/shm/NAME`, exactly as CPython's `SharedMemory(name="NAME")`.
///
/// ```
/// use shmkit::segment::validate_name;
/// assert!(validate_name("camera.frames-0").is_ok());
/// assert!(validate_name("/camera").is_err()); // no slash: CPython adds it, and so do we
/// assert!(validate_name("").is_err());
/// assert!(validate_name(".shmkit-tmp-x").is_err()); // reserved
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name.len() > MAX_NAME_LEN {
        "the name is longer than 200 bytes"
    } else if name.contains('/') {
        "the name contains '/': give it without the leading slash, as CPython does"
    } else if !name.is_ascii() {
        "the name is not ASCII"
    } else if name == "." || name == ".." {
        "'.' and '..' are not names"
    } else if name.starts_with(RESERVED_PREFIX) {
        "names starting with '.shmkit' are reserved for shmkit's own files"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "only letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        for bad in [
            "",
            "/",
            "/a",
            "a/b",
            ".",
            "..",
            "ü",
            "a b",
            "a:b",
            ".shmkit",
            ".shmkit-tmp-0000000000000001-0-x",
            &"x".repeat(201),
        ] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        for good in [
            "a",
            "psm_b1eb98ec",
            "A.b-c_9",
            ".shmki",
            ".x",
            &"x".repeat(200),
        ] {
            validate_name(good).unwrap();
        }
    }
}
