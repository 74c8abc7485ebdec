//! Random runs of every call of a ShareableList interleaved with forged bytes: the CPython
//! layout is writable by any Python peer (item count, offsets, format strings, codes, slot
//! bytes), and so is shmkit's trailer (its header, the writer lock, the per-item sequence,
//! length and check words). Debug builds (`cargo test --lib`) check overflow and alignment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cpython::Geometry;
use super::{trailer, Item, ShareableList};
use crate::forged::{owner_word, Peer, Rng};
use crate::segment::ReadOnly;

/// A format field as a hostile (or broken) Python peer leaves it.
fn format_field(rng: &mut Rng, slot: usize) -> [u8; 8] {
    let mut f = [0u8; 8];
    let text = match rng.below(12) {
        0 => "q".to_owned(),
        1 => "d".to_owned(),
        2 => "xxxxxxx?".to_owned(),
        3 => "xxxxxx?x".to_owned(),
        4 => format!("{slot}s"),
        5 => format!("{}s", slot + 8 * (1 + rng.below(4)) as usize), // wider than the slot
        6 => format!("{}s", rng.below(10_000_000)),
        7 => "9999999s".to_owned(),
        8 => "0s".to_owned(),
        9 => "12345678".to_owned(), // unterminated, no `s`
        10 => "-8s".to_owned(),
        _ => {
            for b in &mut f {
                *b = rng.below(256) as u8; // non-ASCII, anything
            }
            return f;
        }
    };
    let n = text.len().min(8);
    f[..n].copy_from_slice(&text.as_bytes()[..n]);
    f
}

fn item(rng: &mut Rng) -> Item {
    let text = |rng: &mut Rng, n: u64| -> String {
        (0..rng.below(n))
            .map(|_| ['a', 'é', '\0', '€', 'z'][rng.below(5) as usize])
            .collect()
    };
    // Half the str/bytes values end with NUL bytes: their writers record an exact length
    // and a check (the trailer words a reader then trusts if they match).
    let nuls = "\0".repeat(rng.below(2) as usize * (1 + rng.below(3) as usize));
    match rng.below(7) {
        0 => Item::Int(rng.below(u64::MAX) as i64),
        1 => Item::Float(f64::from_bits(rng.below(u64::MAX))),
        2 => Item::Bool(rng.below(2) == 1),
        3 => Item::None,
        4 | 5 => Item::Str(text(rng, 30) + &nuls),
        _ => {
            let mut b: Vec<u8> = (0..rng.below(80)).map(|_| rng.below(256) as u8).collect();
            b.extend(nuls.bytes());
            Item::Bytes(b)
        }
    }
}

/// Forge something in the object whose geometry (as created) is `g`, trailer at `t`.
fn forge(rng: &mut Rng, p: &Peer, g: &Geometry, t: Option<u64>) {
    let n = g.len();
    let i = rng.below(n as u64) as usize;
    match (rng.below(12), t) {
        (0, _) => rng.forge_word(p.word(0)), // item count
        (1, _) => {
            let k = rng.below(n as u64 + 1);
            rng.forge_word(p.word(8 + 8 * k)); // offsets
        }
        (2 | 3, _) => p.put(g.format_at(i), &format_field(rng, g.slot(i).1)),
        (4, _) => p.put(
            g.code_at(i),
            &[[0, 1, 2, 3, rng.below(256) as u8][rng.below(5) as usize]],
        ),
        (5, _) => {
            let (start, slot) = g.slot(i);
            let bytes: Vec<u8> = (0..slot).map(|_| rng.below(256) as u8).collect();
            p.put(start, &bytes);
        }
        (6, Some(t)) => {
            // The item's sequence word: odd (a write under way, or a dead writer's), moved.
            let seq = p.word(trailer::entry(t, i, trailer::SEQ));
            match rng.below(3) {
                0 => seq.fetch_or(1, Ordering::Release),
                1 => seq.fetch_add(2, Ordering::Release),
                _ => seq.swap(rng.forge(seq.load(Ordering::Relaxed)), Ordering::Release),
            };
        }
        (7, Some(t)) => {
            // Its exact length: beyond the slot, NO_LEN, anything; its check.
            let slot = g.slot(i).1 as u64;
            let len = p.word(trailer::entry(t, i, trailer::LEN));
            let v = match rng.below(4) {
                0 => slot + 1 + rng.below(64),
                1 => u64::MAX,
                2 => rng.below(slot + 1),
                _ => rng.forge(len.load(Ordering::Relaxed)),
            };
            len.store(v, Ordering::Relaxed);
            if rng.below(2) == 0 {
                rng.forge_word(p.word(trailer::entry(t, i, trailer::CHECK)));
            }
        }
        (8, Some(t)) => {
            // The writer lock: held by this very thread, its owner word, or another word.
            let w = p.word(t + trailer::LOCK + 8 * rng.below(4));
            if rng.below(3) == 0 {
                crate::forged::held_here(rng, p, t + trailer::LOCK);
            } else if rng.below(2) == 0 {
                w.store(owner_word(rng), Ordering::Release);
            } else {
                rng.forge_word(w);
            }
        }
        (9, Some(t)) => {
            // The trailer's header and body (seen by the next open).
            let at = t + 8 * rng.below(trailer::ENTRIES / 8);
            rng.forge_word(p.word(at));
        }
        _ => {
            // Any byte of the object.
            let at = rng.below(p.len());
            p.byte(at).store(rng.below(256) as u8, Ordering::Relaxed);
        }
    }
}

/// Whether every item's sequence word is even: a blocking read then never waits (a hostile
/// writer's odd word behind a live-looking owner makes `get` wait, as a live writer would).
fn quiet(p: &Peer, n: usize, t: Option<u64>) -> bool {
    t.map_or(true, |t| {
        (0..n).all(|i| {
            p.word(trailer::entry(t, i, trailer::SEQ))
                .load(Ordering::Relaxed)
                & 1
                == 0
        })
    })
}

fn run(rng: &mut Rng, name: &str, shmkit: bool) -> [u64; 3] {
    let mut tally = [0; 3];
    let items: Vec<Item> = (0..1 + rng.below(6)).map(|_| item(rng)).collect();
    let creator = if shmkit {
        ShareableList::options()
            .reserve(rng.below(80) as usize)
            .create(name, &items)
            .expect("create")
    } else {
        std::fs::write(
            format!("/dev/shm/{name}"),
            super::encode_cpython_object(&items),
        )
        .expect("write a CPython list");
        ShareableList::open(name).expect("open a CPython list")
    };
    let p = Peer::new(name);
    let (g, t) = creator.layout();
    let (g, t) = (g.clone(), t);
    let mut rw = vec![creator];
    let mut ro: Vec<ShareableList<ReadOnly>> = Vec::new();
    let short = Duration::from_millis(1);
    for _ in 0..200 {
        let k = rng.below(rw.len() as u64 + 1) as usize;
        let idx = rng.below(2 * g.len() as u64 + 2) as isize - g.len() as isize - 1;
        match rng.below(16) {
            0..=2 => {
                if let Some(l) = rw.get(k) {
                    let r = match rng.below(2) {
                        0 => l.try_get(idx),
                        _ => l.get_timeout(idx, short),
                    };
                    tally[r.is_ok() as usize] += 1;
                }
            }
            3 | 4 => {
                if let Some(l) = rw.get(k) {
                    let v = item(rng);
                    let r = match rng.below(2) {
                        0 => l.try_set(idx, &v),
                        _ => l.set_timeout(idx, &v, short),
                    };
                    tally[2] += r.is_ok() as u64;
                }
            }
            5 => {
                if let Some(l) = ro.get(k % ro.len().max(1)) {
                    let _ = (l.try_get(idx), l.get_timeout(idx, short));
                }
            }
            6 => {
                let l = rw.get(k).or(rw.first());
                if let (Some(l), true) = (l, quiet(&p, g.len(), t)) {
                    let _ = l.iter().collect::<Vec<_>>();
                    let _ = (l.count(&Item::Int(0)), l.index(&Item::None));
                }
            }
            7 => {
                if let Some(l) = rw.get(k) {
                    let _ = (l.len(), l.is_empty(), l.has_trailer());
                    let _ = (l.slot_size(idx), l.format_of(idx));
                }
            }
            8 => {
                // What `shmkit info` does: probe, then a read-only open that never waits,
                // bounded in items, and every item's value (one short deadline), format and
                // slot size.
                let _ = crate::segment::probe(name);
                let opened = ShareableList::options()
                    .read_only()
                    .open_timeout(Duration::ZERO)
                    .max_items(super::PROBE_MAX_ITEMS)
                    .open(name);
                if let Ok(l) = opened {
                    let until = std::time::Instant::now() + short;
                    for i in 0..l.len() as isize {
                        let _ = (l.get_deadline(i, until), l.format_of(i), l.slot_size(i));
                    }
                }
            }
            9 => {
                // Re-open (the item count, offsets and trailer read again).
                let opts = ShareableList::options().open_timeout(short);
                if let Ok(l) = opts.max_items(1 << 20).open(name) {
                    rw.push(l);
                }
                if let Ok(l) = ShareableList::options()
                    .read_only()
                    .open_timeout(short)
                    .open(name)
                {
                    ro.push(l);
                }
                if rw.len() > 3 {
                    rw.swap_remove(1);
                }
                if ro.len() > 2 {
                    ro.swap_remove(0);
                }
            }
            _ => forge(rng, &p, &g, t),
        }
    }
    tally
}

/// Whatever a hostile peer writes into a ShareableList (made by shmkit or by CPython) between
/// calls, every get, set, format, iteration, probe and re-open returns (an item, a typed
/// error) without a panic, an overflow or an access outside the object, the `try_` and
/// timeout forms within their timeouts.
#[test]
fn forged_list_bytes_never_panic_or_hang() {
    crate::forged::seeded(0xbb67_ae85_84ca_a73b, |mut rng| {
        let mut tally = [0; 3];
        for round in 0..150 {
            let name = format!("t-list-forged-{}-{round}", std::process::id());
            let _remove = crate::forged::RemoveOnDrop(name.clone());
            let got = run(&mut rng, &name, round % 3 != 2);
            for (t, g) in tally.iter_mut().zip(got) {
                *t += g;
            }
        }
        eprintln!("failed gets, gets, sets: {tally:?}");
        assert!(
            tally.iter().all(|&n| n > 100),
            "a run that tried little: {tally:?}"
        );
    });
}
