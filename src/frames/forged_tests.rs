//! Random runs of every call of a frame channel interleaved with forged control words (the
//! geometry, `head`, the publisher's role word, the wait queues, every slot's sequence, length,
//! stamp, pin and header words, every subscriber record), as a hostile writer makes them
//! between two calls. Debug builds (`cargo test --lib`) check overflow and alignment, so a
//! forged word that leads to either panics here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::layout::{Geometry, CONTROL_SIZE, META_FIXED};
use super::pin::CLAIMED;
use super::{copy_latest, stat, Frame, FramesOptions, Mapping, Policy, Publisher, Subscriber};
use crate::forged::Rng;

type H = [u32; 2];

/// The byte offset (from the payload's start) of a word a hostile writer aims at.
fn target(rng: &mut Rng, g: &Geometry) -> u64 {
    let slot = rng.below(g.slots);
    let meta = g.meta_offset(slot);
    let rec = g.record_offset(rng.below(g.subscribers));
    match rng.below(16) {
        0..=3 => meta,                                               // seq
        4 => meta + 8,                                               // len
        5 => meta + 16 + 8 * rng.below(2),                           // stamps
        6 | 7 => meta + META_FIXED + 8 * rng.below(g.pin_words()),   // pins
        8 => meta + g.header_at() + 8 * rng.below(g.header_words()), // user header
        9 => 256,                                                    // head
        10 => 192,                                                   // publisher's role word
        11 => [320, 384][rng.below(2) as usize],                     // wait queues
        12 => rec + 8 * rng.below(4), // record: owner, cursor, counts
        13 => 8 * rng.below(CONTROL_SIZE / 8), // control (geometry, tag, ...)
        _ => 8 * rng.below(g.data_offset / 8), // anything before the data
    }
}

/// Forge the word at payload offset `at` of `m`'s channel: [`Rng::forge`], or a value with a
/// meaning of its own (a length beyond `max_bytes`, a sequence jump of 2^63, 0, a word with
/// the claim bit, a big slot count).
fn forge_at(rng: &mut Rng, m: &Mapping, at: u64) {
    let v = m.0.view;
    // SAFETY: `at` is 8-aligned and below `data_offset` (`target`), inside the mapping `m`
    // keeps alive; the control area is atomics only.
    let w = unsafe { &*v.base.add(at as usize).cast::<AtomicU64>() };
    let old = w.load(Ordering::Relaxed);
    // Values that make sense here: near `head`, another slot's sequence, a claimed one.
    let head = v.ctrl().head.load(Ordering::Relaxed);
    let other = v.meta(rng.below(v.g.slots)).seq.load(Ordering::Relaxed);
    let new = match rng.below(12) {
        8 => head.wrapping_add(rng.below(4)).wrapping_sub(1),
        9 => other,
        10 => (other | CLAIMED).wrapping_add(rng.below(3)),
        11 => crate::os::liveness::current().unwrap() ^ rng.below(2),
        0 => 0,
        1 => v.g.max_bytes + 1 + rng.below(1 << 20),
        2 => old ^ (1 << 63),
        3 => old.wrapping_add(1 << 62),
        4 => rng.below(2 * v.g.slots + 2),
        5 => u64::MAX - rng.below(4),
        _ => rng.forge(old),
    };
    w.store(new, Ordering::Release);
}

/// Forge the geometry words into another geometry that passes every check of an attach
/// (`Geometry::load`), for the handles attached from now on: fewer or more subscriber
/// records, a smaller `max_bytes`, or the same data area cut into half as many slots twice
/// as long (or twice as many half as long). Handles attached before keep theirs.
fn forge_geometry(rng: &mut Rng, m: &Mapping) {
    let c = m.0.view.ctrl();
    let load = |w: &AtomicU64| w.load(Ordering::Relaxed);
    let (slots, stride, max) = (load(&c.slots), load(&c.stride), load(&c.max_bytes));
    match rng.below(3) {
        0 => c.subscribers.store(1 + rng.below(8), Ordering::Relaxed),
        1 => c
            .max_bytes
            .store(1 + rng.below(stride.max(1)), Ordering::Relaxed),
        _ => {
            let page = crate::os::map::page_size() as u64;
            // (The words may hold earlier forgeries: any value.)
            if let (0, Some(double)) = (slots % 2, stride.checked_mul(2)) {
                c.slots.store(slots / 2, Ordering::Relaxed);
                c.stride.store(double, Ordering::Relaxed);
            } else if let Some(more) = slots.checked_mul(2) {
                if stride / 2 >= max && (stride / 2) % page == 0 {
                    c.slots.store(more, Ordering::Relaxed);
                    c.stride.store(stride / 2, Ordering::Relaxed);
                }
            }
        }
    }
}

struct Run {
    name: String,
    opts: FramesOptions<H>,
    keep: Mapping,
    publisher: Option<Publisher<H>>,
    subs: Vec<Subscriber<H>>,
    frames: Vec<Frame<H>>,
    /// Frames published, frames received, calls that failed: a run that exercised nothing
    /// fails the test.
    tally: [u64; 3],
}

impl Run {
    fn new(name: String, policy: Policy) -> Run {
        let opts = FramesOptions::<H>::new()
            .slots(4)
            .max_bytes(200)
            .subscribers(3)
            .policy(policy)
            .history(2);
        let p = opts.create(&name).expect("create");
        let keep = p.mapping();
        let subs = (0..2)
            .map(|_| opts.subscriber(&name).expect("attach"))
            .collect();
        Run {
            name,
            opts,
            keep,
            publisher: Some(p),
            subs,
            frames: Vec::new(),
            tally: [0; 3],
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        let g = self.keep.0.view.g;
        let short = Duration::from_millis(1);
        match rng.below(20) {
            0..=3 => {
                let Some(p) = self.publisher.as_mut() else {
                    return;
                };
                // Its geometry: a re-attach may have read forged (but consistent) words.
                let max = p.max_bytes();
                let loan = if rng.below(4) == 0 {
                    p.loan_timeout(short).ok()
                } else {
                    p.try_loan().ok()
                };
                if let Some(mut loan) = loan {
                    let slice = loan.as_mut_slice();
                    assert_eq!(slice.len() as u64, max);
                    slice.fill(rng.below(256) as u8);
                    if rng.below(3) == 0 {
                        let at = target(rng, &g);
                        forge_at(rng, &self.keep, at);
                    }
                    match rng.below(6) {
                        0 => drop(loan),
                        1 => {
                            let r = loan.publish(max as usize + 1, &[1, 2]);
                            assert!(r.is_err(), "a frame longer than max_bytes was published");
                        }
                        _ => {
                            let len = rng.below(max + 1) as usize;
                            match loan.publish(len, &[len as u32, 7]) {
                                Ok(_) => self.tally[0] += 1,
                                Err(_) => self.tally[2] += 1,
                            }
                        }
                    }
                }
            }
            4..=6 => {
                let s = rng.below(self.subs.len() as u64 + 1) as usize;
                if let Some(sub) = self.subs.get_mut(s) {
                    let (max, slots) = (sub.max_bytes(), sub.slots());
                    let got = match rng.below(5) {
                        0 => sub.try_latest().map_err(drop),
                        1 => sub.recv_timeout(short).map_err(drop),
                        2 => sub.latest_timeout(short).map_err(drop),
                        3 => sub.newest().ok_or(()),
                        _ => sub.try_recv().map_err(drop),
                    };
                    if got.is_err() {
                        self.tally[2] += 1;
                    }
                    if let Ok(f) = got {
                        self.tally[1] += 1;
                        assert!(f.len() as u64 <= max && f.slot() < slots);
                        let _ = (f.bytes().iter().map(|&b| b as u64).sum::<u64>(), f.header());
                        let mut out = [0u8; 64];
                        f.copy_to(&mut out);
                        if rng.below(2) == 0 {
                            self.frames.push(f);
                        }
                    }
                    let _ = (sub.lost(), sub.last_seq());
                }
            }
            7 | 8 => {
                if !self.frames.is_empty() {
                    let i = rng.below(self.frames.len() as u64) as usize;
                    self.frames.swap_remove(i);
                }
            }
            9 => {
                let _ = stat(&self.name);
            }
            10 => {
                let _ = copy_latest(&self.name);
            }
            11 => {
                // Detach and re-attach the publisher (a takeover of forged words).
                self.publisher = None;
                self.publisher = self.opts.publisher(&self.name).ok();
            }
            12 => {
                if !self.subs.is_empty() {
                    let i = rng.below(self.subs.len() as u64) as usize;
                    self.subs.swap_remove(i);
                }
                if let Ok(s) = self.opts.subscriber(&self.name) {
                    self.subs.push(s);
                }
            }
            13 => forge_geometry(rng, &self.keep),
            _ => {
                let at = target(rng, &g);
                forge_at(rng, &self.keep, at);
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.name));
    }
}

/// Whatever a hostile writer stores in the channel's control words between calls (lengths
/// beyond `max_bytes`, sequences that go back or jump by 2^63, claim bits, pin bits, owners,
/// cursors, geometry words seen by a re-attach or `stat`), every call returns (a frame, a
/// typed error, `None`) without a panic, an overflow or an access outside the channel, and
/// the non-blocking ones without a hang; the blocking ones within their 1 ms timeouts.
#[test]
fn forged_control_words_never_panic_or_hang() {
    crate::forged::seeded(0x6a09_e667_f3bc_c908, |mut rng| {
        let mut tally = [0; 3];
        for round in 0..400 {
            let policy = [Policy::ReuseOldest, Policy::Block][round % 2];
            let name = format!("t-frames-forged-{}-{round}", std::process::id());
            let mut run = Run::new(name, policy);
            for _ in 0..250 {
                run.step(&mut rng);
            }
            for (t, r) in tally.iter_mut().zip(run.tally) {
                *t += r;
            }
        }
        eprintln!("published, received, failed: {tally:?}");
        assert!(
            tally.iter().all(|&n| n > 100),
            "a run that tried little: {tally:?}"
        );
    });
}
