#![cfg(not(loom))]
//! An item count that this process cannot allocate the private geometry for, as a peer can
//! write into a huge sparse object (N up to (size − 16) / 17), makes `ShareableList::open`
//! fail with an error; it does not abort the process. This file's binary has the allocator of
//! `common/limited_alloc.rs`, which refuses large allocations around the calls under test, as
//! a machine without the memory would, whatever `vm.overcommit_memory` says (a global
//! allocator is per test binary, so this test has a file of its own).

mod common;
#[path = "common/limited_alloc.rs"]
mod limited_alloc;

use common::{unique_name, Cleanup};
use limited_alloc::refusing;
use shmkit::list::ShareableList;

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "open" => {
            // The opens under test, in a process of their own: an abort (the bug) must not
            // take the parent's `Cleanup` with it.
            let e = refusing(|| ShareableList::open_read_only(&args[0])).unwrap_err();
            assert!(e.to_string().contains("memory"), "{e}");
            let e = refusing(|| ShareableList::open(&args[0])).unwrap_err();
            assert!(e.to_string().contains("memory"), "{e}");
            common::report("errors");
        }
        _ => panic!("unknown role {role}"),
    });
}

/// Review finding: a sparse 1 TiB object whose first word says N = 2^35 (within the bound
/// N ≤ (size − 16) / 17) made the open allocate 8 (N + 1) bytes for the offsets table with
/// `vec!`, which aborts when the allocation fails ("memory allocation of 274877906952 bytes
/// failed"). It must be an error. (Only the library is checked: `shmkit`'s allocator is the
/// system's, and whether the system grants 256 GiB depends on `vm.overcommit_memory`.) The
/// opens run in a child (this binary, with this allocator), so that the object is removed
/// even when they abort.
#[test]
fn an_item_count_too_large_to_allocate_is_an_error_not_an_abort() {
    let name = unique_name("sl-alloc");
    let _c = Cleanup::new(&[&name]);
    let size: u64 = 1 << 40;
    let n: i64 = 1 << 35;
    assert!(n as u64 <= (size - 16) / 17);
    common::sparse_raw(&name, size);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &n.to_le_bytes(), 0).unwrap();
    drop(f);
    let mut child = common::spawn_child("open", &[&name]);
    let status = common::wait_exit(&mut child, std::time::Duration::from_secs(60));
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut said).unwrap();
    assert!(
        status.success() && said.lines().any(|l| l == "errors"),
        "the opens did not end with errors: {status}, said {said:?}"
    );
}
