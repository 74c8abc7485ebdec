//! Random runs of every call of a cell (`Value`, `Array`, in each mode) interleaved with
//! forged words of its object: the control block (geometry words, the seqlock sequence, the
//! wait queue, the type tag, the lock's status and owner words), the data, and the segment
//! header (seen by re-opens and `inspect`). Debug builds (`cargo test --lib`) check overflow
//! and alignment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{inspect, read_only, AnyArray, AnyValue, Array, CellMode, Value, DATA_OFFSET};
use crate::forged::{owner_word, Peer, Rng};
use crate::segment::HEADER_SIZE;

/// Object offsets of the control block's words (`layout::CellControl`).
const SEQ: u64 = HEADER_SIZE as u64 + 32;
const LOCK: u64 = HEADER_SIZE as u64 + 128;

fn forge(rng: &mut Rng, p: &Peer) {
    let at = match rng.below(10) {
        0..=2 => SEQ,
        3 => SEQ + 8, // the wait queue
        4 | 5 => LOCK + 8 * rng.below(4),
        6 => HEADER_SIZE as u64 + 8 * rng.below(24), // the control block
        7 => 8 * rng.below(HEADER_SIZE as u64 / 8),  // the segment header
        _ => DATA_OFFSET as u64 + 8 * rng.below((p.len() - DATA_OFFSET as u64) / 8),
    };
    if (LOCK..LOCK + 32).contains(&at) && rng.below(4) == 0 {
        crate::forged::held_here(rng, p, LOCK);
        return;
    }
    let w = p.word(at);
    match rng.below(4) {
        0 if (LOCK..LOCK + 32).contains(&at) => w.store(owner_word(rng), Ordering::Release),
        1 if at == SEQ => {
            w.fetch_or(1, Ordering::Release); // a write under way (or a dead writer's)
        }
        _ => rng.forge_word(w),
    }
}

/// One cell under test: each call picks its form (`try_`, or a timeout of `short`).
enum Cell {
    Value(Value<u64>),
    Array(Array<u32>),
    Bytes(Array<u8>),
}

fn step(rng: &mut Rng, c: &Cell, name: &str, tally: &mut [u64; 2]) {
    let short = Duration::from_millis(1);
    let t = rng.below(2) == 0;
    let ok = match c {
        Cell::Value(v) => match rng.below(12) {
            0 => (if t { v.try_get() } else { v.get_timeout(short) }).is_ok(),
            1 => (if t {
                v.try_set(7)
            } else {
                v.set_timeout(9, short)
            })
            .is_ok(),
            2 => (if t {
                v.try_update(|x| x.wrapping_add(1))
            } else {
                v.update_timeout(|x| x.wrapping_mul(3), short)
            })
            .is_ok(),
            3 => {
                let g = if t {
                    v.try_lock()
                } else {
                    v.lock_timeout(short)
                };
                match g {
                    Ok(g) => {
                        g.set(g.get().unwrap_or(0).wrapping_add(1));
                        true
                    }
                    Err(crate::sync::LockError::OwnerDied(mut g)) => {
                        let _ = g.previous_owner();
                        if rng.below(2) == 0 {
                            let _ = g.make_consistent();
                        }
                        true
                    }
                    Err(_) => false,
                }
            }
            4 => {
                let s = v.sequence();
                (if t {
                    v.try_wait_changed(s.wrapping_sub(2))
                } else {
                    v.wait_changed_timeout(s, short)
                })
                .is_ok()
            }
            5 => v.load().is_ok(),
            6 => v.fetch_add(u64::MAX).is_ok(),
            7 => v.compare_exchange(0, 1).is_ok(),
            8 => v.swap(3).and(v.fetch_sub(1)).and(v.store(2)).is_ok(),
            _ => {
                let a = AnyValue::open(name);
                a.is_ok_and(|a| a.try_get_bytes().is_ok() && a.get_text_timeout(short).is_ok())
            }
        },
        Cell::Array(a) => array_step(rng, a, t, short),
        Cell::Bytes(a) => array_step(rng, a, t, short),
    };
    tally[ok as usize] += 1;
}

fn array_step<T>(rng: &mut Rng, a: &Array<T>, t: bool, short: Duration) -> bool
where
    T: super::CellAtomic + crate::ShmType + Copy + From<u8>,
{
    let n = a.len();
    let i = rng.below(n as u64 + 2) as usize;
    let j = rng.below(n as u64 + 2) as usize;
    let x = T::from(rng.below(256) as u8);
    match rng.below(12) {
        0 => (if t {
            a.try_get(i)
        } else {
            a.get_timeout(i, short)
        })
        .is_ok(),
        1 => (if t {
            a.try_set(i, x)
        } else {
            a.set_timeout(i, x, short)
        })
        .is_ok(),
        2 => (if t {
            a.try_read(i.min(j)..i.max(j))
        } else {
            a.read_timeout(j..i, short)
        })
        .is_ok(),
        3 => {
            let data = vec![x; j];
            (if t {
                a.try_write(i, &data)
            } else {
                a.write_timeout(i, &data, short)
            })
            .is_ok()
        }
        4 => (if t {
            a.try_with_lock(|s| s.len())
        } else {
            a.with_lock_timeout(|s| s.iter_mut().for_each(|e| *e = x), short)
                .map(|()| 0)
        })
        .is_ok(),
        5 => match if t {
            a.try_lock()
        } else {
            a.lock_timeout(short)
        } {
            Ok(g) => g.get(i).and(g.set(j, x)).is_ok(),
            Err(crate::sync::LockError::OwnerDied(mut g)) => {
                let _ = g.make_consistent();
                true
            }
            Err(_) => false,
        },
        6 => {
            let s = a.sequence();
            (if t {
                a.try_wait_changed(s)
            } else {
                a.wait_changed_timeout(s, short)
            })
            .is_ok()
        }
        7 => a.load(i).and(a.fetch_add(j, x)).and(a.swap(i, x)).is_ok(),
        8 => a.compare_exchange(i, x, x).and(a.store(j, x)).is_ok(),
        _ => AnyArray::open(a.name()).is_ok_and(|any| {
            any.try_read_bytes(i, j).is_ok()
                && any.write_bytes_timeout(j, &[1, 2, 3, 4], short).is_ok()
                && any.try_get_text(i).is_ok()
                && any.fetch_add(j, 1).is_ok()
        }),
    }
}

/// Whatever a hostile writer stores in a cell's object between calls (a sequence left odd or
/// moved, the lock's status and owner words set to none, our own live token, dead or huge
/// values, geometry and header words seen by re-opens and `inspect`), every call of
/// `Value`/`Array`/`AnyValue`/`AnyArray` in every mode returns (a value, a typed error):
/// no panic, no overflow, no access outside the object, and the `try_` and timeout forms
/// within their timeouts.
#[test]
fn forged_cell_words_never_panic_or_hang() {
    crate::forged::seeded(0x3c6e_f372_fe94_f82b, |mut rng| {
        let mut tally = [0; 2];
        for round in 0..90u64 {
            let name = format!("t-cell-forged-{}-{round}", std::process::id());
            let _remove = crate::forged::RemoveOnDrop(name.clone());
            let mode =
                [CellMode::Locked, CellMode::Atomic, CellMode::Seqlock][(round % 3) as usize];
            let mut cell = match round / 3 % 3 {
                0 => Cell::Value(Value::options().cell_mode(mode).create(&name, 5).unwrap()),
                1 => Cell::Array(Array::options().cell_mode(mode).create(&name, 7).unwrap()),
                _ => Cell::Bytes(Array::options().cell_mode(mode).create(&name, 37).unwrap()),
            };
            let p = Peer::new(&name);
            for _ in 0..150 {
                match rng.below(10) {
                    0..=5 => step(&mut rng, &cell, &name, &mut tally),
                    6 => {
                        let _ = inspect(&name);
                        let _ = read_only(&name, 0, rng.below(40) as usize, short());
                    }
                    7 => {
                        // Re-open (the header and control block read again).
                        let again = match &cell {
                            Cell::Value(_) => Value::open(&name).map(Cell::Value),
                            Cell::Array(_) => Array::open(&name).map(Cell::Array),
                            Cell::Bytes(_) => Array::open(&name).map(Cell::Bytes),
                        };
                        if let Ok(c) = again {
                            cell = c;
                        }
                    }
                    _ => forge(&mut rng, &p),
                }
            }
        }
        eprintln!("failed, succeeded: {tally:?}");
        assert!(
            tally.iter().all(|&n| n > 100),
            "a run that tried little: {tally:?}"
        );
    });
}

fn short() -> Duration {
    Duration::from_millis(1)
}
