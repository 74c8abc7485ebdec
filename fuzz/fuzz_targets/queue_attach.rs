//! Every queue reader path on a queue whose header is valid (the library wrote it) but whose
//! payload another process overwrote with arbitrary bytes: the result of each call is a value
//! or an error, never a panic, an out-of-bounds access or a hang.
//!
//! SPSC op codes 0 and 3 with bit 4 set use the in-place guards (`try_peek`, `try_reserve`).
//!
//! Input: byte 0 chooses the kind (spsc / mpmc / bytes ring) and the capacity; byte 1 where the
//! hostile bytes start in the payload (the whole control block, after the geometry, at the
//! indices, or in the data area); byte 2 the number of operations, which follow (one byte
//! each); the rest overwrites the payload from that offset (never past its end).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::queue::{bytes, mpmc, spsc};
use shmkit_fuzz::{Scratch, TINY};

/// The typed queues' operations: SPSC and MPMC have the same calls. `$pop` and `$push` are
/// op codes 0 and 3, which SPSC widens with its in-place guards.
macro_rules! typed_ops {
    ($queue:ty, $name:expr, $ops:expr,
     pop($c:ident, $pop_op:ident) $pop:block,
     push($p:ident, $push_op:ident, $push_i:ident) $push:block) => {{
        let Ok(q) = <$queue>::open($name) else {
            return;
        };
        let _ = (q.len(), q.is_empty(), q.is_full(), q.capacity(), q.stat());
        let mut p = q.producer().ok();
        let mut c = q.consumer().ok();
        let mut buf = [0u64; 5];
        for (i, &op) in $ops.iter().enumerate() {
            match op % 10 {
                0 => {
                    if let Some($c) = c.as_mut() {
                        let $pop_op = op;
                        $pop
                    }
                }
                1 => {
                    if let Some(c) = c.as_mut() {
                        let _ = c.try_pop_slice(&mut buf[..(op as usize >> 4) % 6]);
                    }
                }
                2 => {
                    if let Some(c) = c.as_mut() {
                        let _ = c.pop_timeout(TINY);
                    }
                }
                3 => {
                    if let Some($p) = p.as_mut() {
                        let ($push_op, $push_i) = (op, i);
                        $push
                    }
                }
                4 => {
                    if let Some(p) = p.as_mut() {
                        let _ = p.try_push_slice(&buf[..(op as usize >> 4) % 6]);
                    }
                }
                5 => {
                    if let Some(p) = p.as_mut() {
                        let _ = p.push_timeout(i as u64, TINY);
                    }
                }
                6 => {
                    if let Some(p) = p.as_mut() {
                        let _ = (p.len(), p.is_empty(), p.is_full());
                    }
                    if let Some(c) = c.as_mut() {
                        let _ = (c.len(), c.is_empty(), c.is_full());
                    }
                }
                7 => {
                    if let Some(mut p) = p.take() {
                        p.close();
                    }
                }
                8 => {
                    if let Some(mut c) = c.take() {
                        c.close();
                    }
                }
                _ => {
                    let _ = (q.len(), q.stat(), shmkit::queue::stat($name));
                    if p.is_none() {
                        p = q.producer().ok();
                    }
                    if c.is_none() {
                        c = q.consumer().ok();
                    }
                }
            }
        }
    }};
}

fn spsc_ops(name: &str, ops: &[u8]) {
    typed_ops!(spsc::Queue<u64>, name, ops,
    pop(c, op) {
        if op & 0x10 != 0 {
            // In place (layout v2): peek, look at the element, release.
            let _ = c.try_peek().map(|g| {
                let _ = *g;
                g.release()
            });
        } else {
            let _ = c.try_pop();
        }
    },
    push(p, op, i) {
        if op & 0x10 != 0 {
            // In place: write and commit, or (0x20) drop without committing.
            if let Ok(mut g) = p.try_reserve() {
                *g = i as u64;
                if op & 0x20 == 0 {
                    g.commit();
                }
            }
        } else {
            let _ = p.try_push(i as u64);
        }
    })
}

fn mpmc_ops(name: &str, ops: &[u8]) {
    typed_ops!(mpmc::Queue<u64>, name, ops,
    pop(c, _op) {
        let _ = c.try_pop();
    },
    push(p, _op, i) {
        let _ = p.try_push(i as u64);
    })
}

fn bytes_ops(name: &str, ops: &[u8]) {
    let Ok(q) = bytes::Ring::open(name) else {
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
    let msg = [0xa5u8; 300];
    for &op in ops {
        let n = (op as usize >> 4) * 9;
        match op % 11 {
            0 => {
                if let Some(c) = c.as_mut() {
                    let _ = c.try_pop();
                }
            }
            1 => {
                if let Some(c) = c.as_mut() {
                    if let Ok(g) = c.try_peek() {
                        // The whole message is readable.
                        let _ = g.iter().fold(0u8, |a, b| a ^ b);
                        g.release();
                    }
                }
            }
            2 => {
                if let Some(c) = c.as_mut() {
                    if let Ok(g) = c.try_peek() {
                        let _unreleased = g; // dropped unreleased: the next peek sees it again
                    }
                    let _ = c.pop_timeout(TINY);
                }
            }
            3 => {
                if let Some(p) = p.as_mut() {
                    let _ = p.try_push(&msg[..n.min(msg.len())]);
                }
            }
            4 => {
                if let Some(p) = p.as_mut() {
                    if let Ok(mut g) = p.try_reserve(n) {
                        g.fill(0x5a);
                        if op & 0x8 != 0 {
                            g.commit_len(n / 2);
                        } else {
                            g.commit();
                        }
                    }
                }
            }
            5 => {
                if let Some(p) = p.as_mut() {
                    let _ = p.push_timeout(&msg[..n.min(msg.len())], TINY);
                }
            }
            6 => {
                if let Some(p) = p.as_mut() {
                    let _ = p.max_message();
                    // Reserved but dropped without a commit: nothing is published.
                    drop(p.try_reserve(n));
                }
            }
            7 => {
                if let Some(mut p) = p.take() {
                    p.close();
                }
            }
            8 => {
                if let Some(mut c) = c.take() {
                    c.close();
                }
            }
            9 => {
                if let Some(c) = c.as_mut() {
                    let _ = c.peek_timeout(TINY).map(|g| g.release());
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
    let (kind, capbits) = (data[0] % 3, (data[0] / 3) % 4);
    let nops = (data[2] % 32) as usize;
    let ops = &data[3..(3 + nops).min(data.len())];
    let hostile = &data[(3 + nops).min(data.len())..];
    let scratch = Scratch::new("fuzz-q-");
    let name = scratch.name();
    let created = match kind {
        0 => spsc::Queue::<u64>::create(name, 2 << capbits).map(drop),
        1 => mpmc::Queue::<u64>::create(name, 2 << capbits).map(drop),
        _ => bytes::Ring::create(name, 64 << capbits).map(drop),
    };
    if created.is_ok() {
        // Where the hostile bytes start: the whole control block, after the geometry (state
        // and roles), at the indices (tail / head lines), or further in (claim slots, stamps,
        // data).
        let start = match data[1] % 4 {
            0 => 0,
            1 => 32,
            2 => 128,
            _ => 384 + u64::from(data[1] / 4) * 80,
        };
        scratch.corrupt(start, usize::MAX, hostile);
        // A validated open must not fail on a read-only snapshot either.
        let _ = shmkit::queue::stat(name);
        match kind {
            0 => spsc_ops(name, ops),
            1 => mpmc_ops(name, ops),
            _ => bytes_ops(name, ops),
        }
    }
});
