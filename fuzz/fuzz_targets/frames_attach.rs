//! Every frame-channel path on a channel whose header is valid (the library wrote it) but
//! whose payload another process overwrote with arbitrary bytes: attaching as publisher and
//! subscriber, loaning, publishing, receiving, holding frames, `stat` and `copy_latest`. The
//! result of each call is a value or an error, never a panic, an out-of-bounds access or a
//! hang.
//!
//! Input: byte 0 chooses the geometry (slots 1..=4, subscribers 1..=4, the policy); byte 1
//! where the hostile bytes start in the payload (times 8: the control block, the slot
//! metadata, the records); byte 2 the number of operations, which follow (one byte each); the
//! rest overwrites the payload from that offset (never past its end).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::frames::{self, FramesOptions, Policy};
use shmkit_fuzz::{Scratch, TINY};

type Hdr = [u64; 2];

fn ops(name: &str, ops: &[u8]) {
    let _ = frames::stat(name);
    let _ = frames::copy_latest(name);
    let mut p = FramesOptions::<Hdr>::new().publisher(name).ok();
    let mut s = FramesOptions::<Hdr>::new().history(2).subscriber(name).ok();
    let mut held = Vec::new();
    for &op in ops {
        match op % 8 {
            0 | 1 => {
                if let Some(p) = p.as_mut() {
                    let max = p.max_bytes() as usize;
                    if let Ok(mut l) = p.try_loan() {
                        let n = (op as usize * 37) % (max + 1);
                        l.as_mut_slice()[..n].fill(op);
                        if op % 8 == 0 {
                            let _ = l.publish(n, &[op as u64, n as u64]);
                        } // else: dropped unpublished
                    }
                }
            }
            2 => {
                if let Some(s) = s.as_mut() {
                    if let Ok(f) = s.try_recv() {
                        let _ = (f.bytes().iter().map(|&b| b as u64).sum::<u64>(), f.header());
                        held.push(f);
                    }
                }
            }
            3 => {
                if let Some(s) = s.as_mut() {
                    if let Ok(f) = s.try_latest() {
                        let mut out = vec![0; f.len()];
                        f.copy_to(&mut out);
                        held.push(f);
                    }
                }
            }
            4 => {
                if let Some(s) = s.as_ref() {
                    held.extend(s.newest());
                }
            }
            5 => {
                if !held.is_empty() {
                    held.remove(op as usize / 8 % held.len());
                }
            }
            6 => {
                if let Some(s) = s.as_mut() {
                    let _ = s.recv_timeout(TINY);
                }
                if let Some(p) = p.as_mut() {
                    let _ = p.loan_timeout(TINY);
                }
            }
            _ => {
                let _ = frames::stat(name);
                let _ = frames::copy_latest(name);
            }
        }
    }
    drop(held);
    drop(s);
    drop(p);
}

fuzz_target!(|data: &[u8]| {
    let [geo, at, nops, rest @ ..] = data else {
        return;
    };
    let nops = (*nops as usize % 32).min(rest.len());
    let (opcodes, payload) = rest.split_at(nops);
    let scratch = Scratch::new("fuzz-f-");
    let name = scratch.name();
    let policy = if geo & 0x80 != 0 {
        Policy::Block
    } else {
        Policy::ReuseOldest
    };
    let created = FramesOptions::<Hdr>::new()
        .slots(1 + (*geo as u64 & 3))
        .subscribers(1 + ((*geo as u64 >> 2) & 3))
        .max_bytes(64 + (*geo as u64 >> 4 & 7) * 1000)
        .policy(policy)
        .create(name);
    let Ok(p) = created else { return };
    drop(p); // detached: the role is free for `ops`
    scratch.corrupt(u64::from(*at) * 8, usize::MAX, payload);
    ops(name, opcodes);
});
