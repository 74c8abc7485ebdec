//! Test support for the forged-word tests of every shared object (`forged_*_never_panic*`): a small
//! deterministic random source, the forgeries a hostile writer makes of a word, and a bound on
//! how long a run of non-blocking calls may take.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// A xorshift64 generator: the same sequence on every run, so a failure replays.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A number below `n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// `v` as a hostile writer may leave it: a little or far off either way, off the word
    /// grid, wrapped.
    pub(crate) fn forge(&mut self, v: u64) -> u64 {
        const OFFSETS: [u64; 11] = [1, 2, 3, 4, 6, 8, 64, 256, 1 << 32, 1 << 63, u64::MAX];
        let off = OFFSETS[self.below(OFFSETS.len() as u64) as usize];
        if self.below(2) == 0 {
            v.wrapping_add(off)
        } else {
            v.wrapping_sub(off)
        }
    }

    /// Forge the word `w` ([`forge`](Self::forge) of what it holds), as a hostile writer
    /// between two calls.
    pub(crate) fn forge_word(&mut self, w: &AtomicU64) {
        let v = self.forge(w.load(Ordering::Relaxed));
        w.store(v, Ordering::Release);
    }
}

/// Run `f` on a thread; panic if it has not returned within two minutes (non-blocking
/// calls that hang on forged words fail the test instead of hanging it).
pub(crate) fn within_two_minutes(f: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(120))
        .expect("a non-blocking call hung on forged words (or panicked: see above)");
}

/// Run a forged-word test: `f` with a generator seeded by `default` (or by
/// `SHMKIT_FORGED_SEED`, decimal or `0x` hex, to explore other runs), bounded by
/// [`within_two_minutes`]; a failing run prints its seed, from which it replays.
pub(crate) fn seeded(default: u64, f: impl FnOnce(Rng) + Send + 'static) {
    let seed = match std::env::var("SHMKIT_FORGED_SEED") {
        Err(_) => default,
        Ok(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        }
        .expect("SHMKIT_FORGED_SEED: a number"),
    };
    struct Say(u64);
    impl Drop for Say {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("forged-word test failed with seed {:#x}", self.0);
            }
        }
    }
    within_two_minutes(move || {
        let _say = Say(seed);
        f(Rng::new(seed));
    });
}

/// An owner word as a hostile writer leaves it: none (0), this process's own liveness token
/// (alive: whatever waits for it waits) bare or as a lock's owner word (`token << 3` and its
/// flag bits, `sync::robust`), a token no process holds (dead), or a huge value (beyond
/// every token).
pub(crate) fn owner_word(rng: &mut Rng) -> u64 {
    let me = crate::os::liveness::current().expect("a liveness token");
    let dead = 1 + rng.below(crate::os::liveness::TOKEN_MAX);
    match rng.below(7) {
        0 => 0,
        1 => me,
        2 => me << 3 | rng.below(8),
        3 => dead,
        4 => dead << 3 | rng.below(8),
        5 => u64::MAX - rng.below(8),
        _ => (1 << 61) + rng.below(1 << 20),
    }
}

/// Make the lock (`sync::LockState`, a `MutexCore`) at `at` of `p` look held by this very
/// thread: our token in its owner word, our thread number beside it, at some depth (0, 1,
/// 2, or near `u32::MAX`): a lock this thread never took.
pub(crate) fn held_here(rng: &mut Rng, p: &Peer, at: u64) {
    let me = crate::os::liveness::current().expect("a liveness token");
    p.word(at + 8).store(me << 3, Ordering::Release);
    let depth = [0, 1, 2, u32::MAX - 1, u32::MAX][rng.below(5) as usize];
    p.word32(at + 4).store(depth, Ordering::Relaxed);
    p.word32(at + 24)
        .store(crate::sync::thread_number(), Ordering::Relaxed);
}

/// A shm object mapped once more, read-write, as a hostile peer maps it: every access
/// atomic (the object's own handles in this process access it atomically too).
pub(crate) struct Peer {
    map: memmap2::MmapMut,
}

impl Peer {
    pub(crate) fn new(name: &str) -> Peer {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .expect("open the object");
        // SAFETY: a shared mapping of a shm object; this test accesses it only atomically.
        let map = unsafe { memmap2::MmapMut::map_mut(&f) }.expect("map the object");
        Peer { map }
    }

    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub(crate) fn byte(&self, at: u64) -> &AtomicU8 {
        assert!(at < self.len());
        // SAFETY: inside the mapping, which lives as long as `self`.
        unsafe { AtomicU8::from_ptr(self.map.as_ptr().add(at as usize).cast_mut()) }
    }

    /// The 4-byte word at `at` (4-aligned, inside).
    pub(crate) fn word32(&self, at: u64) -> &AtomicU32 {
        assert!(at % 4 == 0 && at + 4 <= self.len());
        // SAFETY: 4-aligned (the mapping is page-aligned) and inside the mapping.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(at as usize).cast::<u32>().cast_mut()) }
    }

    /// The word at `at` (8-aligned, inside).
    pub(crate) fn word(&self, at: u64) -> &AtomicU64 {
        assert!(at % 8 == 0 && at + 8 <= self.len());
        // SAFETY: 8-aligned (the mapping is page-aligned) and inside the mapping.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(at as usize).cast::<u64>().cast_mut()) }
    }

    pub(crate) fn put(&self, at: u64, bytes: &[u8]) {
        for (k, &b) in bytes.iter().enumerate() {
            if at + (k as u64) < self.len() {
                self.byte(at + k as u64).store(b, Ordering::Relaxed);
            }
        }
    }
}

/// Removes `/dev/shm/NAME` when dropped: a forged-word test's object is removed when the test
/// fails (panics) as well as when it passes.
pub(crate) struct RemoveOnDrop(pub(crate) String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
    }
}
