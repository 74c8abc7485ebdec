//! Every path of a `ShareableList` attach on a list whose bytes another process overwrote
//! arbitrarily (the CPython area: count, offsets, slots, formats, codes; and shmkit's trailer:
//! its header, body, writer lock and item entries): the read-write and read-only opens (the
//! recognition `classify` makes on a live mapping), `get` and `set` (their fast and slow
//! paths, the seqlock read, the repair of an item a dead writer left mid-write, the writer
//! lock), the slot and format queries, and inspection (`probe`). Each call returns a value or
//! an error, never a panic, an out-of-bounds access or a hang; only timed or non-blocking
//! forms are called.
//!
//! Input: byte 0 chooses the list the library creates first (bits 0..3: the item count, 0..7;
//! bits 3..6: each item's length, times 8 bytes: `bytes` items); byte 1 where the hostile
//! bytes start, times 8, from the object's byte 0 (a list has no header there); byte 2 the
//! number of operations, which follow (one byte each); the rest overwrites the object from
//! that offset (never past its end). The seed corpus (`fuzz/corpus/list_attach/seed-*`, from
//! `tests/fuzz_seeds.rs`) holds whole lists, shmkit's and CPython's layouts, in this format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::list::{Item, ShareableList};
use shmkit::segment::{Access, ReadWrite};
use shmkit_fuzz::{Scratch, TINY};

/// The value a set writes: bits 5..8 of its operation byte choose the type; the `str` fits
/// a 16-byte slot, the `bytes` is one byte longer.
fn item(op: u8) -> Item {
    match (op >> 5) % 6 {
        0 => Item::Int(i64::from(op) - 128),
        1 => Item::Float(f64::from(op) / 3.0),
        2 => Item::Bool(op & 1 == 1),
        3 => Item::None,
        4 => Item::Str("é\0".repeat(3)),
        _ => Item::Bytes(vec![op; 17]),
    }
}

/// The read paths, on either handle.
fn read<A: Access>(l: &ShareableList<A>, i: isize) {
    let _ = (l.len(), l.is_empty(), l.has_trailer(), l.name());
    let _ = (
        l.get_timeout(i, TINY),
        l.try_get(i),
        l.get_timeout(-1, TINY),
    );
    let _ = (l.slot_size(i), l.format_of(i));
}

fn ops(name: &str, ops: &[u8]) {
    let opts = ShareableList::options().open_timeout(TINY);
    let _ = shmkit::segment::probe(name);
    let mut rw: Option<ShareableList<ReadWrite>> = opts.open(name).ok();
    let mut ro = opts.clone().read_only().open(name).ok();
    for &op in ops {
        // The first, second, fifth (where the seeds' dead writer was) or last item.
        let i = [0, 1, 4, -1][usize::from((op >> 3) & 3)];
        match op % 8 {
            0 | 1 => {
                if let Some(l) = &rw {
                    let _ = l.set_timeout(i, &item(op), TINY);
                }
            }
            2 => {
                if let Some(l) = &rw {
                    let _ = l.try_set(i, &item(op));
                }
            }
            3 => {
                if let Some(l) = &rw {
                    read(l, i);
                }
            }
            4 => {
                if let Some(l) = &ro {
                    read(l, i);
                }
            }
            5 => {
                // What `shmkit info` does: a capped read-only open.
                let capped = opts.clone().read_only().max_items(u64::from(op >> 5));
                if let Ok(l) = capped.open(name) {
                    read(&l, i);
                }
            }
            6 => {
                let _ = shmkit::segment::probe(name);
            }
            _ => {
                // Attach again: the bytes may have changed under the handles (a repair).
                rw = opts.open(name).ok();
                ro = opts.clone().read_only().open(name).ok();
            }
        }
    }
    let _ = shmkit::segment::probe(name);
}

fuzz_target!(|data: &[u8]| {
    let [geo, at, nops, rest @ ..] = data else {
        return;
    };
    let nops = (*nops as usize % 32).min(rest.len());
    let (opcodes, hostile) = rest.split_at(nops);
    let scratch = Scratch::new("fuzz-l-");
    let name = scratch.name();
    let n = usize::from(geo & 7);
    let len = usize::from((geo >> 3) & 7) * 8;
    let items = vec![Item::Bytes(vec![b'x'; len]); n];
    let Ok(l) = ShareableList::create(name, &items) else {
        return;
    };
    drop(l);
    scratch.overwrite(u64::from(*at) * 8, usize::MAX, hostile);
    ops(name, opcodes);
});
