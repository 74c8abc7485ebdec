//! Header validation on arbitrary bytes: never panics; accepts only self-consistent headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::segment::{HeaderInfo, Kind, HEADER_SIZE};

fuzz_target!(|data: &[u8]| {
    // First 12 bytes choose the claimed object size and the expected kind; the rest is the
    // header as another process left it.
    if data.len() < 12 {
        return;
    }
    let size = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let kind = Kind(u32::from_le_bytes(data[8..12].try_into().unwrap()));
    let bytes = &data[12..];
    // Expect the fingerprint the header claims (offset 16), so that a self-consistent header
    // (every seed of fuzz/corpus/header) reaches the end of validation, and also 0.
    let claimed = bytes
        .get(16..24)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    for fingerprint in [claimed, 0] {
        if let Ok(h) = HeaderInfo::parse("fuzz", bytes, size, kind, fingerprint) {
            assert!(bytes.len() >= HEADER_SIZE);
            assert_eq!(h.header_size as usize, HEADER_SIZE);
            assert_eq!(h.payload_size + HEADER_SIZE as u64, size);
            assert_eq!(h.kind, kind);
            assert_eq!(h.fingerprint, fingerprint);
        }
    }
});
