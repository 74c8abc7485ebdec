//! Shared by the tests that kill processes and rewrite shared memory at random
//! (`tests/torture.rs`, the hostile test of `tests/frames.rs`): the random numbers, the scale
//! and seed knobs (`SHMKIT_TORTURE_ROUNDS`, `SHMKIT_TORTURE_SEED`), and a raw-word snapshot a
//! hostile writer puts back now and then.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

/// Default number of kill rounds per test (`SHMKIT_TORTURE_ROUNDS` overrides it).
pub const DEFAULT_ROUNDS: u64 = 40;

/// splitmix64: small, good enough, and no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// True `p` times in 100.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// A pause of up to `max` µs.
    pub fn micros(&mut self, max: u64) -> Duration {
        Duration::from_micros(self.below(max + 1))
    }
}

/// One splitmix64 step of `x`: a well-mixed value derived from it.
pub fn mix(x: u64) -> u64 {
    Rng::new(x).next()
}

/// Kill rounds per test: `SHMKIT_TORTURE_ROUNDS`, else [`DEFAULT_ROUNDS`].
pub fn rounds() -> u64 {
    std::env::var("SHMKIT_TORTURE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_ROUNDS)
}

/// The seed of one test: `SHMKIT_TORTURE_SEED` or a fresh one, printed so a failure can be
/// replayed (the timing of kills is not replayable, the random choices are), mixed with the
/// test's name so that tests run with one seed still differ.
pub fn seed_for(test: &str) -> u64 {
    let base = std::env::var("SHMKIT_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            mix(t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 40))
        });
    eprintln!(
        "torture {test}: seed {base} (replay with SHMKIT_TORTURE_SEED={base}), {} rounds",
        rounds()
    );
    base ^ test.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A hostile writer's generic new value for a word that holds `cur` (and held `original` when
/// the test began): anything, 0, all ones, a small step either way, one bit flipped, the
/// original value, or a small number.
pub fn scribble(rng: &mut Rng, cur: u64, original: u64) -> u64 {
    match rng.below(9) {
        0 | 1 => rng.next(),
        2 => 0,
        3 => u64::MAX,
        4 => cur.wrapping_add(1 + rng.below(4)),
        5 => cur.wrapping_sub(1 + rng.below(4)),
        6 => cur ^ (1 << rng.below(64)),
        7 => original,
        _ => rng.below(4096),
    }
}

/// The 8-byte words `lo..hi` of a raw mapping as they were when taken, for a hostile writer
/// to put back now and then (so the victims run again for a while, into states mixed with
/// what they have done since).
pub struct Snapshot {
    lo: u64,
    words: Vec<u64>,
}

impl Snapshot {
    pub fn take(seg: &shmkit::Segment, lo: u64, hi: u64) -> Snapshot {
        let words = (lo..hi)
            .step_by(8)
            .map(|o| seg.atomic_u64(o).expect("word").load(SeqCst))
            .collect();
        Snapshot { lo, words }
    }

    /// The word at object offset `off` (inside `lo..hi`) as it was taken.
    pub fn at(&self, off: u64) -> u64 {
        self.words[((off - self.lo) / 8) as usize]
    }

    /// [`restore`](Self::restore) one time in 100; whether it did.
    pub fn restore_now_and_then(&self, seg: &shmkit::Segment, rng: &mut Rng) -> bool {
        let now = rng.percent(1);
        if now {
            self.restore(seg);
        }
        now
    }

    pub fn restore(&self, seg: &shmkit::Segment) {
        for (i, v) in self.words.iter().enumerate() {
            seg.atomic_u64(self.lo + 8 * i as u64)
                .expect("word")
                .store(*v, SeqCst);
        }
    }
}
