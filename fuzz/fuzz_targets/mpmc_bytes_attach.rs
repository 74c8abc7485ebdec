//! Every `mpmc-bytes` queue path on a queue whose header is valid (the library wrote it) but
//! whose payload another process overwrote with arbitrary bytes: each call gives a value or
//! an error, never a panic, an out-of-bounds access or a hang.
//!
//! Input: byte 0 chooses the capacity (256 << (b % 4)); byte 1 where the hostile bytes start
//! in the payload (the whole control block, the state word, the indices, a claim slot, the
//! stamps and lengths, or the data); byte 2 the number of operations, which follow
//! (one byte each); the rest overwrites the payload from that offset (never past its end).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::queue::mpmc_bytes::Queue;
use shmkit_fuzz::{Scratch, TINY};

fn ops(name: &str, ops: &[u8]) {
    let Ok(q) = Queue::open(name) else {
        return;
    };
    let _ = (
        q.len(),
        q.is_empty(),
        q.capacity(),
        q.max_message(),
        q.stat(),
    );
    let mut p = q.producer().ok();
    let mut c = q.consumer().ok();
    let msg = [0xa5u8; 2048];
    let mut buf = Vec::new();
    for &op in ops {
        // Message lengths 0, 9, …, 135, or (bit 3) up to the maximum and one past it.
        let n = if op & 0x8 != 0 {
            (q.max_message() as usize + (op as usize >> 7)).min(msg.len())
        } else {
            (op as usize >> 4) * 9
        };
        match op % 10 {
            0 => {
                if let Some(c) = c.as_mut() {
                    let _ = c.try_pop();
                }
            }
            1 => {
                if let Some(c) = c.as_mut() {
                    let _ = c.try_pop_into(&mut buf);
                }
            }
            2 => {
                if let Some(c) = c.as_mut() {
                    let _ = c.pop_timeout(TINY);
                }
            }
            3 => {
                if let Some(p) = p.as_mut() {
                    let _ = p.try_push(&msg[..n]);
                }
            }
            4 => {
                if let Some(p) = p.as_mut() {
                    let _ = p.push_timeout(&msg[..n], TINY);
                }
            }
            5 => {
                if let Some(c) = c.as_mut() {
                    let _ = c.pop_into_timeout(&mut buf, TINY);
                }
            }
            6 => {
                if let Some(mut p) = p.take() {
                    p.close();
                }
            }
            7 => {
                if let Some(mut c) = c.take() {
                    c.close();
                }
            }
            _ => {
                let _ = (q.len(), q.stat(), shmkit::queue::stat(name));
                if p.is_none() {
                    p = q.producer().ok();
                }
                if c.is_none() {
                    c = q.consumer().ok();
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let capacity = 256u64 << (data[0] % 4);
    let nops = (data[2] % 32) as usize;
    let todo = &data[3..(3 + nops).min(data.len())];
    let hostile = &data[(3 + nops).min(data.len())..];
    let scratch = Scratch::new("fuzz-qb-");
    let name = scratch.name();
    if Queue::create(name, capacity).is_ok() {
        let start = match data[1] % 6 {
            0 => 0,
            1 => 48,
            2 => 128,
            3 => 384 + u64::from(data[1] / 6) * 64,
            4 => 4480,
            // The data area, after the stamps and the lengths (8 bytes each per 64-byte
            // cell, 128-aligned).
            _ => 4480 + (capacity / 4).next_multiple_of(128),
        };
        scratch.corrupt(start, usize::MAX, hostile);
        let _ = shmkit::queue::stat(name);
        ops(name, todo);
    }
});
