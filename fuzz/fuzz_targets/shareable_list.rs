//! The ShareableList decoder on arbitrary bytes (a whole object as another process, or a
//! foreign CPython, left it): never panics, never reads out of bounds; what it accepts is
//! self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::list::{decode_object, Item};

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = decode_object(data) {
        // Every item costs at least 17 bytes of the object (offset, format, code).
        assert!(16 + 17 * items.len() <= data.len());
        for v in &items {
            let len = match v {
                Item::Str(s) => s.len(),
                Item::Bytes(b) => b.len(),
                _ => 0,
            };
            assert!(len <= data.len());
        }
    }
});
