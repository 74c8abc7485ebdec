#![cfg(not(loom))]
//! Every committed seed of an attach fuzz target gets past the target's validating open:
//! the seeds exist so that the short CI fuzz runs start from inputs that reach the
//! operations, and a seed the open refuses reaches none of them. Each check decodes the seed
//! as its target does, creates the target's object, overwrites the payload as
//! `shmkit_fuzz::Scratch::corrupt` does (a list's whole object, as `Scratch::overwrite`
//! does), and opens it as the target's first call does.

mod common;

use common::Cleanup;
use shmkit::cell::{AnyArray, AnyValue, CellMode, Typecode};
use shmkit::queue::{bytes, mpmc, mpmc_bytes, spsc};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEADER: u64 = shmkit::segment::HEADER_SIZE as u64;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seed-"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds in {}", dir.display());
    v
}

/// `Scratch::corrupt`: overwrite the payload from `start` with at most `limit` bytes, never
/// past the end of the object.
fn corrupt(name: &str, start: u64, limit: usize, bytes: &[u8]) {
    overwrite(name, HEADER + start, limit, bytes);
}

/// `Scratch::overwrite`: as [`corrupt`], from byte `at` of the object (a list has no header
/// at its start).
fn overwrite(name: &str, at: u64, limit: usize, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let len = f.metadata().unwrap().len();
    if at >= len {
        return;
    }
    let n = bytes.len().min(limit).min((len - at) as usize);
    f.write_all_at(&bytes[..n], at).unwrap();
}

/// Run `check` on every seed of `target` with a fresh name; the names of seeds whose
/// validating open failed, with the error.
fn refused(target: &str, check: impl Fn(&str, &[u8]) -> Result<(), String>) -> Vec<String> {
    let mut bad = Vec::new();
    for (seed, data) in seeds(target) {
        let name = common::unique_name("seedreach");
        let _c = Cleanup::new(&[&name]);
        if let Err(e) = check(&name, &data) {
            bad.push(format!("{target}/{seed}: {e}"));
        }
    }
    bad
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

#[test]
fn every_attach_seed_gets_past_validation() {
    let mut bad = Vec::new();
    bad.extend(refused("queue_attach", |name, data| {
        let (kind, capbits) = (data[0] % 3, (data[0] / 3) % 4);
        assert_eq!(data[1] % 4, 0, "seeds overwrite the whole payload");
        let nops = (data[2] % 32) as usize;
        let hostile = &data[(3 + nops).min(data.len())..];
        match kind {
            0 => drop(spsc::Queue::<u64>::create(name, 2 << capbits).unwrap()),
            1 => drop(mpmc::Queue::<u64>::create(name, 2 << capbits).unwrap()),
            _ => drop(bytes::Ring::create(name, 64 << capbits).unwrap()),
        }
        corrupt(name, 0, usize::MAX, hostile);
        match kind {
            0 => spsc::Queue::<u64>::open(name).map(drop).map_err(err),
            1 => mpmc::Queue::<u64>::open(name).map(drop).map_err(err),
            _ => bytes::Ring::open(name).map(drop).map_err(err),
        }
    }));
    bad.extend(refused("mpmc_bytes_attach", |name, data| {
        assert_eq!(data[1] % 6, 0, "seeds overwrite the whole payload");
        let nops = (data[2] % 32) as usize;
        let hostile = &data[(3 + nops).min(data.len())..];
        drop(mpmc_bytes::Queue::create(name, 256u64 << (data[0] % 4)).unwrap());
        corrupt(name, 0, usize::MAX, hostile);
        mpmc_bytes::Queue::open(name).map(drop).map_err(err)
    }));
    bad.extend(refused("sync_attach", |name, data| {
        let (kind, param) = (data[0] % 7, u32::from(data[0] / 7));
        let nops = (data[1] % 16) as usize;
        let hostile = &data[(2 + nops).min(data.len())..];
        use shmkit::sync::{
            Barrier, BarrierState, BoundedSemaphore, Condition, ConditionState, Event, EventState,
            Lock, LockState, RLock, RLockState, Semaphore, SemaphoreState,
        };
        use std::mem::size_of;
        let len = match kind {
            0 => {
                drop(Lock::create(name).unwrap());
                size_of::<LockState>()
            }
            1 => {
                drop(RLock::create(name).unwrap());
                size_of::<RLockState>()
            }
            2 => {
                drop(Condition::create(name).unwrap());
                size_of::<ConditionState>()
            }
            3 => {
                drop(Semaphore::create(name, param).unwrap());
                size_of::<SemaphoreState>()
            }
            4 => {
                drop(BoundedSemaphore::create(name, param).unwrap());
                size_of::<SemaphoreState>()
            }
            5 => {
                drop(Event::create(name).unwrap());
                size_of::<EventState>()
            }
            _ => {
                drop(Barrier::create(name, param.max(1)).unwrap());
                size_of::<BarrierState>()
            }
        };
        corrupt(name, 0, len, hostile);
        match kind {
            0 => Lock::open(name).map(drop).map_err(err),
            1 => RLock::open(name).map(drop).map_err(err),
            2 => Condition::open(name).map(drop).map_err(err),
            3 => Semaphore::open(name).map(drop).map_err(err),
            4 => BoundedSemaphore::open(name).map(drop).map_err(err),
            5 => Event::open(name).map(drop).map_err(err),
            _ => Barrier::open(name).map(drop).map_err(err),
        }
    }));
    bad.extend(refused("cell_attach", |name, data| {
        let array = data[0] & 1 == 1;
        let mode = [CellMode::Locked, CellMode::Atomic, CellMode::Seqlock]
            [usize::from((data[0] >> 1) & 3) % 3];
        let tc = Typecode::all().nth(usize::from(data[0] >> 3) % 15).unwrap();
        let len = usize::from(data[1]).max(1);
        let nops = usize::from(data[2] % 16);
        let hostile = &data[(3 + nops).min(data.len())..];
        if array {
            drop(
                AnyArray::options()
                    .cell_mode(mode)
                    .create(name, tc, len, None)
                    .unwrap(),
            );
        } else {
            drop(
                AnyValue::options()
                    .cell_mode(mode)
                    .create(name, tc, None)
                    .unwrap(),
            );
        }
        corrupt(name, 0, usize::MAX, hostile);
        if array {
            AnyArray::open(name).map(drop).map_err(err)
        } else {
            AnyValue::open(name).map(drop).map_err(err)
        }
    }));
    bad.extend(refused("frames_attach", |name, data| {
        use shmkit::frames::{FramesOptions, Policy};
        let [geo, at, nops, rest @ ..] = data else {
            panic!("short seed")
        };
        let nops = (*nops as usize % 32).min(rest.len());
        let payload = &rest[nops..];
        let policy = if geo & 0x80 != 0 {
            Policy::Block
        } else {
            Policy::ReuseOldest
        };
        drop(
            FramesOptions::<[u64; 2]>::new()
                .slots(1 + (*geo as u64 & 3))
                .subscribers(1 + ((*geo as u64 >> 2) & 3))
                .max_bytes(64 + (*geo as u64 >> 4 & 7) * 1000)
                .policy(policy)
                .create(name)
                .unwrap(),
        );
        corrupt(name, u64::from(*at) * 8, usize::MAX, payload);
        FramesOptions::<[u64; 2]>::new()
            .history(2)
            .subscriber(name)
            .map(drop)
            .map_err(err)?;
        FramesOptions::<[u64; 2]>::new()
            .publisher(name)
            .map(drop)
            .map_err(err)
    }));
    bad.extend(refused("list_attach", |name, data| {
        use shmkit::list::{Item, ShareableList};
        let [geo, at, nops, rest @ ..] = data else {
            panic!("short seed")
        };
        assert_eq!(*at, 0, "seeds overwrite the whole object");
        let nops = (*nops as usize % 32).min(rest.len());
        let hostile = &rest[nops..];
        let items =
            vec![Item::Bytes(vec![b'x'; usize::from((geo >> 3) & 7) * 8]); usize::from(geo & 7)];
        drop(ShareableList::create(name, &items).unwrap());
        overwrite(name, 0, usize::MAX, hostile);
        let opts = ShareableList::options().open_timeout(std::time::Duration::from_millis(1));
        opts.clone().read_only().open(name).map(drop).map_err(err)?;
        opts.open(name).map(drop).map_err(err)
    }));
    assert!(
        bad.is_empty(),
        "seeds refused by their target's open (they reach no operation):\n{}",
        bad.join("\n")
    );
}
