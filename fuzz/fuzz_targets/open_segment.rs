//! The whole open path, read-write and read-only, and inspection (`probe`), on an object whose
//! bytes another process wrote arbitrarily: the result is a segment or an error, never a panic,
//! a fault or a hang, and the object is never removed or changed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::Segment;
use shmkit_fuzz::Scratch;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let scratch = Scratch::new("fuzz-open-");
    let (name, path) = (scratch.name(), scratch.path());
    if std::fs::write(path, data).is_err() {
        return;
    }
    let opts = Segment::options().open_timeout(Duration::ZERO);
    if let Ok(seg) = opts.open(name) {
        // A validated segment's payload is fully readable.
        let mut buf = vec![0u8; seg.len()];
        seg.read_at(0, &mut buf).unwrap();
    }
    if let Ok(seg) = opts.clone().read_only().open(name) {
        let mut buf = vec![0u8; seg.len()];
        seg.read_at(0, &mut buf).unwrap();
    }
    if let Ok(seg) = opts.clone().raw(true).open(name) {
        assert_eq!(seg.len(), data.len());
    }
    let p = shmkit::segment::probe(name).expect("a regular file is always probed");
    assert_eq!(p.size, data.len() as u64);
    assert_eq!(
        std::fs::read(path).expect("opens never remove the object"),
        data,
        "opens never change the object"
    );
});
