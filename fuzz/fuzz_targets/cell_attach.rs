//! Every reader path of the named typed cells — `shmkit::cell::inspect` (what `shmkit info`
//! uses), the typed and untyped opens, and the non-blocking or timed operations of each mode —
//! on a cell whose header is valid (the library wrote it) but whose payload (control block:
//! magic, mode, typecode, sizes, length, data offset, sequence, type tag, lock words; and the
//! data) another process overwrote with arbitrary bytes: each call returns a value or an
//! error, never a panic, an out-of-bounds access or a hang.
//!
//! Input: byte 0 chooses value or array (bit 0), the mode (bits 1..3, mod 3) and the typecode
//! (bits 3.., mod 15); byte 1 the array length; byte 2 the number of operations, which follow
//! (one byte each); the rest overwrites the payload from its start. The seed corpus
//! (`fuzz/corpus/cell_attach/seed-*`, from `tests/fuzz_seeds.rs`) holds valid cells of every
//! mode in this format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::cell::{AnyArray, AnyValue, Array, CellMode, Typecode, Value};
use shmkit_fuzz::{Scratch, TINY};
use std::time::Duration;

fn value_ops(name: &str, ops: &[u8]) {
    let _ = (
        Value::<i64>::open(name),
        Value::<[u64; 16]>::open(name),
        Array::<u8>::open(name),
    );
    let Ok(v) = AnyValue::open(name) else { return };
    let _ = (
        v.describe(),
        v.cell_mode(),
        v.typecode(),
        v.type_name(),
        v.sequence(),
    );
    for &op in ops {
        match op % 8 {
            0 => {
                let _ = v.get_bytes_timeout(TINY);
            }
            1 => {
                let _ = v.set_bytes_timeout(&vec![op; v.elem_size()], TINY);
            }
            2 => {
                let _ = v.get_text_timeout(TINY);
            }
            3 => {
                let _ = v.set_text_timeout("1", TINY);
            }
            4 => {
                let _ = v.fetch_add(i64::from(op));
            }
            5 => {
                let _ = v.compare_exchange(0, u64::from(op));
            }
            6 => {
                if let Err(shmkit::sync::LockError::OwnerDied(mut g)) | Ok(mut g) =
                    v.lock_timeout(TINY)
                {
                    let _ = (
                        g.read_bytes(0, 1),
                        g.write_bytes(0, &[op]),
                        g.previous_owner(),
                    );
                    let _ = g.make_consistent();
                }
            }
            _ => {
                let _ = (
                    v.wait_changed_timeout(u64::from(op), TINY),
                    v.try_wait_changed(0),
                );
            }
        }
        let _ = shmkit::cell::inspect(name);
    }
}

fn array_ops(name: &str, ops: &[u8]) {
    let _ = (
        Array::<f64>::open(name),
        Array::<u8>::open(name),
        Value::<u8>::open(name),
    );
    let Ok(a) = AnyArray::open(name) else { return };
    let _ = (
        a.describe(),
        a.len(),
        a.cell_mode(),
        a.typecode(),
        a.sequence(),
    );
    for &op in ops {
        let i = usize::from(op >> 3);
        match op % 6 {
            0 => {
                let _ = (
                    a.read_bytes_timeout(0, a.len(), TINY),
                    a.try_wait_changed(0),
                );
            }
            1 => {
                let _ = a.write_bytes_timeout(i, &vec![op; a.elem_size()], TINY);
            }
            2 => {
                let _ = (
                    a.get_text_timeout(i, TINY),
                    a.set_text_timeout(i, "2", TINY),
                );
            }
            3 => {
                let _ = (a.fetch_add(i, -1), a.compare_exchange(i, 0, 1));
            }
            4 => {
                if let Ok(g) = a.lock_timeout(TINY) {
                    let _ = (g.read_bytes(i, 2), g.write_bytes(i, &[op; 8]));
                }
            }
            _ => {
                let _ = (
                    a.try_read_bytes(i, 1),
                    a.read_bytes_timeout(i, 1, Duration::ZERO),
                );
            }
        }
        let _ = shmkit::cell::inspect(name);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let array = data[0] & 1 == 1;
    let mode = [CellMode::Locked, CellMode::Atomic, CellMode::Seqlock]
        [usize::from((data[0] >> 1) & 3) % 3];
    let Some(tc) = Typecode::all().nth(usize::from(data[0] >> 3) % 15) else {
        return;
    };
    let len = usize::from(data[1]).max(1);
    let nops = usize::from(data[2] % 16);
    let ops = &data[3..(3 + nops).min(data.len())];
    let hostile = &data[(3 + nops).min(data.len())..];
    let scratch = Scratch::new("fuzz-c-");
    let name = scratch.name();
    let created = if array {
        AnyArray::options()
            .cell_mode(mode)
            .create(name, tc, len, None)
            .map(drop)
    } else {
        AnyValue::options()
            .cell_mode(mode)
            .create(name, tc, None)
            .map(drop)
    };
    if created.is_ok() {
        scratch.corrupt(0, usize::MAX, hostile);
        let _ = shmkit::cell::inspect(name);
        if array {
            array_ops(name, ops);
        } else {
            value_ops(name, ops);
        }
        let _ = shmkit::cell::inspect(name);
    }
});
