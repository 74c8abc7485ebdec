//! The whole open path, read-write and read-only, on an object whose bytes another process
//! wrote arbitrarily: the result is a segment or an error, never a panic, a fault or a hang.
//! (A read-write open may remove an object it judges abandoned; the target rewrites it each
//! run.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::Segment;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let name = format!("fuzz-open-{}", std::process::id());
    let path = format!("/dev/shm/{name}");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let opts = Segment::options().open_timeout(Duration::ZERO);
    if let Ok(seg) = opts.open(&name) {
        // A validated segment's payload is fully readable.
        let mut buf = vec![0u8; seg.len()];
        seg.read_at(0, &mut buf).unwrap();
    }
    if let Ok(seg) = opts.clone().read_only().open(&name) {
        let mut buf = vec![0u8; seg.len()];
        seg.read_at(0, &mut buf).unwrap();
    }
    if let Ok(seg) = opts.clone().raw(true).open(&name) {
        assert_eq!(seg.len(), data.len());
    }
    let _ = std::fs::remove_file(&path);
});
