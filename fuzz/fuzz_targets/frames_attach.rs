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
use std::os::unix::fs::FileExt;
use std::time::Duration;

const HEADER: u64 = 128;
const TINY: Duration = Duration::from_millis(1);

/// Remove channels left by earlier runs of this target that were killed mid-run.
fn clean_stale(prefix: &str) {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    let me = std::process::id();
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == me || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Overwrite the payload from `start` with `bytes`, keeping the file's size.
fn corrupt(path: &str, start: u64, bytes: &[u8]) {
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    let Ok(meta) = f.metadata() else { return };
    let end = meta.len();
    let at = HEADER + start;
    if at >= end {
        return;
    }
    let n = bytes.len().min((end - at) as usize);
    let _ = f.write_all_at(&bytes[..n], at);
}

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
    let prefix = "fz-frames-";
    clean_stale(prefix);
    let name = format!("{prefix}{}", std::process::id());
    let _ = shmkit::Segment::unlink(&name);
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
        .create(&name);
    let Ok(p) = created else { return };
    drop(p); // detached: the role is free for `ops`
    corrupt(&format!("/dev/shm/{name}"), *at as u64 * 8, payload);
    ops(&name, opcodes);
    let _ = shmkit::Segment::unlink(&name);
});
