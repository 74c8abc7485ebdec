//! A frame too large for this process to allocate a copy of, as a sparse channel's
//! `max_bytes` (up to 1 TiB) or a peer's forged `len` word can make it, makes `copy_latest`
//! (`shmkit frames save`) fail with an error; it does not abort the process. This file's
//! binary has an allocator that refuses every allocation above 1 MiB while the call runs.

mod common;
#[path = "common/limited_alloc.rs"]
mod limited_alloc;

use common::{unique_name, Cleanup};
use limited_alloc::{refusing, LIMIT};
use shmkit::frames::{copy_latest, FramesOptions};

#[test]
fn copy_latest_of_a_frame_too_large_to_allocate_is_an_error_not_an_abort() {
    let name = unique_name("frames-alloc");
    let _cleanup = Cleanup::new(&[&name]);
    let len = 2 * LIMIT;
    let mut p = FramesOptions::<u64>::new()
        .slots(2)
        .max_bytes(4 * LIMIT as u64)
        .create(&name)
        .unwrap();
    let mut loan = p.try_loan().unwrap();
    loan.as_mut_slice()[..len].fill(7);
    let seq = loan.publish(len, &1).unwrap();
    match refusing(|| copy_latest(&name)) {
        Err(shmkit::Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::OutOfMemory, "{source}");
        }
        other => panic!("expected an out-of-memory error, got {other:?}"),
    }
    // With the memory, the same call copies the frame.
    let c = copy_latest(&name).unwrap().expect("a frame is published");
    assert_eq!((c.seq, c.data.len()), (seq, len));
    assert!(c.data.iter().all(|&b| b == 7));
}
