//! Copies between private memory and shared memory that another thread or process may access
//! at the same time, without a data race under Rust's memory model.
//!
//! A plain `memcpy` (`ptr::copy_nonoverlapping`) over bytes that someone else writes
//! concurrently is a data race, which Rust's memory model makes undefined behaviour, whatever
//! the hardware does. These copies make every access to the shared side an atomic access with
//! `Relaxed` ordering instead: aligned 8-byte words (`AtomicU64`) in the middle, single bytes
//! (`AtomicU8`) in the partial words at either end. Word boundaries are taken from the
//! *address* (a multiple of 8), so two copies over the same bytes use the same access for
//! every word that both cover entirely.
//!
//! What a racing copy can see: every aligned 8-byte word that a copy covers entirely is read
//! (or written) in one single-copy-atomic access, so it is a value some writer stored into
//! that word as a whole (if writers also write whole words), never a mix of two; the bytes of
//! partially covered words, and different words, may come from different writes. The copies
//! order nothing: a caller that publishes or consumes data with them pairs them with its own
//! Release/Acquire accesses or fences (see `examples/share_segment.rs`).
//!
//! Rules the caller keeps (documented on the public users, `Segment::read_at`/`write_at`):
//!
//! - Read-only mappings: the loads are `Relaxed` and at most 8 bytes, which std documents as
//!   permitted on `PROT_READ` memory on 64-bit Linux targets (x86-64, aarch64, riscv64, …):
//!   no other atomic operation is performed on the source.
//! - Mixed sizes: Rust's model (inherited from C++) forbids *racing* atomic accesses of
//!   different sizes to overlapping bytes unless both are reads. A copy that racing-writes a
//!   word through byte stores while another copy reads that whole word (or a caller's
//!   `AtomicU32` accesses the same bytes concurrently) is such a mixed-size race. It is benign
//!   on every supported CPU (each byte is single-copy atomic), but it is outside the model;
//!   protocols that race on words keep every access to a given word the same size (whole
//!   8-aligned words, as `Segment::atomic_u64` hands out, or every copy of a region through
//!   [`load_within`]/[`store_within`], whose sizes depend on the region, not on the copy: the
//!   seqlock cells, ShareableList slots, `Segment::read_at`/`write_at`; or, for queue
//!   payloads that start aligned and own their padding, [`load_padded`]/[`store_padded`],
//!   which access every word whole).
//!
//! These are `std` atomics, not the loom shim's: they carry no ordering, and under loom the
//! protocols that decide when bytes may be copied are modelled on their own words.

use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

const WORD: usize = std::mem::size_of::<u64>();

// The loads below are "sufficiently small" for read-only memory only on 64-bit targets.
const _: () = assert!(WORD <= std::mem::size_of::<usize>());

/// How many bytes from `addr` up to the next multiple of 8 (0 if aligned), at most `len`.
#[inline]
fn head_len(addr: usize, len: usize) -> usize {
    (addr.wrapping_neg() % WORD).min(len)
}

/// Copy `len` bytes from shared memory at `src` into private memory at `dst`.
///
/// # Safety
///
/// - `src` is valid for reads of `len` bytes for the whole call (it may be mapped
///   `PROT_READ`); every concurrent access to those bytes by this process is atomic (or
///   ordered before or after the call by happens-before);
/// - `dst` is valid for writes of `len` bytes and nobody else accesses it during the call;
/// - the two ranges do not overlap.
#[inline]
pub(crate) unsafe fn load(src: *const u8, dst: *mut u8, len: usize) {
    // One aligned word (an 8-byte element or item): what `copy_words` does, without the loop.
    if len == WORD && (src as usize) % WORD == 0 {
        #[cfg(test)]
        trace::record(src, WORD);
        // SAFETY: as in `copy_words` (8-aligned, inside the source range).
        unsafe {
            let v = AtomicU64::from_ptr(src.cast::<u64>().cast_mut()).load(Ordering::Relaxed);
            dst.cast::<u64>().write_unaligned(v);
        }
        return;
    }
    let head = head_len(src as usize, len);
    let words = (len - head) / WORD;
    let tail = head + words * WORD;
    for i in (0..head).chain(tail..len) {
        #[cfg(test)]
        trace::record(src.wrapping_add(i), 1);
        // SAFETY: `i < len`: inside both ranges (the contract); an AtomicU8 has the size and
        // alignment of a u8; the Relaxed byte load is permitted on read-only memory; `dst`
        // is private to this call.
        unsafe { *dst.add(i) = AtomicU8::from_ptr(src.add(i).cast_mut()).load(Ordering::Relaxed) };
    }
    // SAFETY: `src + head` is 8-aligned (`head` bytes took it to a multiple of 8) and the
    // `words` words from it lie inside the source range; the private range matches.
    unsafe { copy_words(src.add(head), dst.add(head), words, Dir::Load) };
}

/// Copy `len` bytes from private memory at `src` into shared memory at `dst`.
///
/// # Safety
///
/// - `dst` is valid for writes of `len` bytes for the whole call (a writable mapping); every
///   concurrent access to those bytes by this process is atomic (or ordered before or after
///   the call by happens-before);
/// - `src` is valid for reads of `len` bytes and nobody writes it during the call;
/// - the two ranges do not overlap.
#[inline]
pub(crate) unsafe fn store(src: *const u8, dst: *mut u8, len: usize) {
    // One aligned word: what `copy_words` does, without the loop.
    if len == WORD && (dst as usize) % WORD == 0 {
        #[cfg(test)]
        trace::record(dst, WORD);
        // SAFETY: as in `copy_words` (8-aligned, inside the destination range).
        unsafe {
            let v = src.cast::<u64>().read_unaligned();
            AtomicU64::from_ptr(dst.cast::<u64>()).store(v, Ordering::Relaxed);
        }
        return;
    }
    let head = head_len(dst as usize, len);
    let words = (len - head) / WORD;
    let tail = head + words * WORD;
    for i in (0..head).chain(tail..len) {
        #[cfg(test)]
        trace::record(dst.wrapping_add(i), 1);
        // SAFETY: `i < len`: inside both ranges; an AtomicU8 has the size and alignment of a
        // u8; the destination is writable (the contract).
        unsafe { AtomicU8::from_ptr(dst.add(i)).store(*src.add(i), Ordering::Relaxed) };
    }
    // SAFETY: `dst + head` is 8-aligned and the `words` words from it lie inside the
    // writable destination range; the private range matches.
    unsafe { copy_words(src.add(head), dst.add(head), words, Dir::Store) };
}

/// Copy `out.len()` bytes from byte `at` of the `len`-byte region at `region` (shared memory)
/// into `out`, with the accesses every racing copy of that region makes, whatever part of it
/// it copies ("one size per word", `SPEC.md` §10.4 and §9.4): each aligned 8-byte word lying
/// wholly inside the region is loaded whole, in one 8-byte access, even when only part of it
/// is wanted; every other byte of the region (in a word that the region covers only in part,
/// at an end it does not share with an aligned word boundary) by a byte access.
///
/// Why: [`load`] and [`store`] split a copy by the copy's own ends, so two racing copies of
/// different parts of a region (a reader of element 3 of an `Array<u8>` and a writer of the
/// whole array; a reader of a `"13s"` format's bytes and a writer of the whole 16-byte slot)
/// access one word with different sizes: a mixed-size race, undefined in Rust's model unless
/// both are loads. Copies that all go through [`load_within`]/[`store_within`] with the same
/// region never do, and regions that do not overlap share no word that either accesses whole.
///
/// # Safety
///
/// `region` is valid for reads of `len` bytes while the call runs (it may be mapped
/// `PROT_READ`); `at + out.len() <= len`; every concurrent access to the region by this
/// process is atomic (or ordered before or after the call by happens-before); `out` is
/// private and does not overlap the region.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) unsafe fn load_within(region: *const u8, len: usize, at: usize, out: &mut [u8]) {
    // Whole aligned words (an 8-byte field, an aligned run of them): every word of the copy
    // lies wholly inside the region, so `walk` would make one `Words` run; without it.
    if (region as usize + at) % WORD == 0 && out.len() % WORD == 0 {
        debug_assert!(at + out.len() <= len);
        // SAFETY: the contract (the copy lies inside the readable region; `out` private);
        // aligned whole words: `load` makes exactly the 8-byte loads `walk` would.
        unsafe { load(region.add(at), out.as_mut_ptr(), out.len()) };
        return;
    }
    walk(region as usize % WORD, len, at, out.len(), |run| {
        // SAFETY: `run` lies inside the region (`walk`), which the contract makes valid for
        // reads; a `Words` run starts on an aligned word and is whole words, a `Bytes` run
        // lies inside one word and is shorter than 8, so `load` makes exactly the accesses
        // named; `out` is private and distinct from the region.
        unsafe {
            match run {
                Run::Words(w, n) | Run::Bytes(w, n) => {
                    load(region.add(w), out.as_mut_ptr().add(w - at), n)
                }
                Run::Part(w, from, to) => {
                    let mut word = [0u8; WORD];
                    load(region.add(w), word.as_mut_ptr(), WORD);
                    out[w + from - at..w + to - at].copy_from_slice(&word[from..to]);
                }
            }
        }
    });
}

/// Who else may write a word that [`store_within`] changes only a part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) enum Merge {
    /// No other thread of this process (its writers are serialised, by a writer lock; or, for
    /// a CPython list, whose writers take no lock, every region's writers write it whole or
    /// from its start, so a merge happens only in layouts no creator makes, and two racing
    /// writers of one region leave a mix of their bytes either way): the word is loaded,
    /// changed and stored whole, and the load races with loads only. No read-modify-write.
    Exclusive,
    /// Other threads may write other bytes of the word concurrently (`Segment::write_at`):
    /// the word is changed by a compare-exchange loop, so their bytes are kept. It retries
    /// only when another write to the word came between its load (or its last failed
    /// attempt) and its compare-exchange; after [`SHARED_MERGE_TRIES`] failures (a peer that
    /// keeps writing the word) it clears its bytes and sets them with `fetch_and` and
    /// `fetch_or`, which always complete (a reader may then see the part half written, and
    /// a racing write of the same bytes may leave the bitwise OR of both values), so a write
    /// never waits on a peer.
    Shared,
}

/// How many failed compare-exchanges a [`Merge::Shared`] write of a part of a word makes
/// before it falls back to `fetch_and` + `fetch_or`.
const SHARED_MERGE_TRIES: u32 = 64;

/// Store `src` into byte `at` of the `len`-byte region at `region` (shared memory), with the
/// accesses of [`load_within`]: a part of a whole word is merged into the word (accessed
/// whole, as `merge` says).
///
/// With [`Merge::Exclusive`], another thread's write of other bytes of a partly written word
/// at the same time may be lost (all accesses stay 8-byte atomics: no undefined behaviour).
///
/// # Safety
///
/// As [`load_within`], and the region is writable.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) unsafe fn store_within(
    region: *mut u8,
    len: usize,
    at: usize,
    src: &[u8],
    merge: Merge,
) {
    // Whole aligned words: one `Words` run, as in `load_within`.
    if (region as usize + at) % WORD == 0 && src.len() % WORD == 0 {
        debug_assert!(at + src.len() <= len);
        // SAFETY: the contract (the copy lies inside the writable region; `src` private);
        // aligned whole words: `store` makes exactly the 8-byte stores `walk` would.
        unsafe { store(src.as_ptr(), region.add(at), src.len()) };
        return;
    }
    walk(region as usize % WORD, len, at, src.len(), |run| {
        // SAFETY: `run` lies inside the writable region (`walk`); accesses as in
        // `load_within`; `src` is private.
        unsafe {
            match run {
                Run::Words(w, n) | Run::Bytes(w, n) => {
                    store(src.as_ptr().add(w - at), region.add(w), n)
                }
                Run::Part(w, from, to) => {
                    let part = &src[w + from - at..w + to - at];
                    let merged = |old: u64| {
                        let mut b = old.to_ne_bytes();
                        b[from..to].copy_from_slice(part);
                        u64::from_ne_bytes(b)
                    };
                    match merge {
                        Merge::Exclusive => {
                            let mut word = [0u8; WORD];
                            load(region.add(w), word.as_mut_ptr(), WORD);
                            let v = merged(u64::from_ne_bytes(word)).to_ne_bytes();
                            store(v.as_ptr(), region.add(w), WORD);
                        }
                        Merge::Shared => {
                            #[cfg(test)]
                            trace::record(region.add(w), WORD);
                            // The word at `region + w` is aligned and lies inside the region.
                            let a = AtomicU64::from_ptr(region.add(w).cast::<u64>());
                            // Relaxed: a copy orders nothing (module docs); the value is a
                            // guess the compare-exchange checks.
                            let mut old = a.load(Ordering::Relaxed);
                            let mut tries = 0;
                            while let Err(now) = a.compare_exchange(
                                old,
                                merged(old),
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            ) {
                                old = now;
                                tries += 1;
                                if tries == SHARED_MERGE_TRIES {
                                    // Someone keeps writing the word (a peer in a loop): clear
                                    // our bytes, then set them, two read-modify-writes that
                                    // always complete and keep every other byte. A reader
                                    // may see our bytes half done in between.
                                    let mut m = [0u8; WORD];
                                    m[from..to].fill(0xff);
                                    let mask = u64::from_ne_bytes(m);
                                    a.fetch_and(!mask, Ordering::Relaxed);
                                    a.fetch_or(merged(0), Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// A piece of a [`load_within`]/[`store_within`] copy; offsets from the region's start.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(loom, allow(dead_code))]
enum Run {
    /// Whole words: `n` bytes (a multiple of 8) from `w` (an aligned word), each copied whole.
    Words(usize, usize),
    /// Bytes `from..to` of the whole word at `w`: the word is accessed whole.
    Part(usize, usize, usize),
    /// `n` bytes (fewer than 8) from `w`, inside one word the region covers only in part:
    /// byte accesses.
    Bytes(usize, usize),
}

/// Split the copy of `n` bytes at offset `at` of a `len`-byte region whose start lies `mis`
/// bytes past an aligned word (`0..8`) into [`Run`]s.
#[cfg_attr(loom, allow(dead_code))]
fn walk(mis: usize, len: usize, at: usize, n: usize, mut f: impl FnMut(Run)) {
    let end = at + n;
    debug_assert!(mis < WORD && end <= len);
    // The region's whole words are `head..whole`: `head` bytes up to the first aligned word,
    // then as many whole words as fit.
    let head = ((WORD - mis) % WORD).min(len);
    let whole = head + (len - head) / WORD * WORD;
    let mut pos = at;
    while pos < end {
        if pos < head {
            let stop = end.min(head);
            f(Run::Bytes(pos, stop - pos));
            pos = stop;
        } else if pos >= whole {
            f(Run::Bytes(pos, end - pos));
            return;
        } else {
            let w = pos - (pos - head) % WORD;
            if pos == w && end >= w + WORD {
                let stop = w + (end.min(whole) - w) / WORD * WORD;
                f(Run::Words(w, stop - w));
                pos = stop;
            } else {
                let to = (end - w).min(WORD);
                f(Run::Part(w, pos - w, to));
                pos = w + to;
            }
        }
    }
}

/// Which side of a word copy is shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// From shared memory at `src` to private memory at `dst`.
    Load,
    /// From private memory at `src` to shared memory at `dst`.
    Store,
}

/// `words` aligned 8-byte words from `src` to `dst`, the shared side (`dir`) 8-aligned: each
/// word one `Relaxed` 8-byte atomic access on the shared side ([`load_word`]/[`store_word`]).
/// Long runs go through [`wide`] 16 bytes at a time, which is the same in Rust's model (see
/// there): one word first if the shared side is not 16-aligned, then 16-byte pairs, then the
/// last word if one is left.
///
/// # Safety
///
/// The shared side 8-aligned and valid for reads (`Load`; it may be `PROT_READ`) or writes
/// (`Store`) of `8 * words` bytes, every concurrent access to them by this process atomic;
/// the private side valid for as many bytes, accessed by nobody else during the call; the
/// ranges do not overlap.
#[inline(always)]
unsafe fn copy_words(src: *const u8, dst: *mut u8, words: usize, dir: Dir) {
    let word = |w: usize| {
        // SAFETY: every caller passes `w < words`: the word lies inside both ranges and is
        // 8-aligned on the shared side (the contract).
        unsafe {
            match dir {
                Dir::Load => load_word(src.add(w * WORD), dst.add(w * WORD)),
                Dir::Store => store_word(src.add(w * WORD), dst.add(w * WORD)),
            }
        }
    };
    #[cfg_attr(not(all(target_arch = "x86_64", not(miri))), allow(unused_mut))]
    let mut done = 0;
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if words >= wide::MIN_WORDS && wide::available() {
        let shared = match dir {
            Dir::Load => src as usize,
            Dir::Store => dst as usize,
        };
        let lead = (shared / WORD) % 2;
        let pairs = (words - lead) / 2;
        // SAFETY: words `lead..lead + 2 * pairs` lie inside both ranges and start 16-aligned
        // on the shared side; the rest of the contract is ours.
        unsafe { wide::copy(src.add(lead * WORD), dst.add(lead * WORD), pairs, dir) };
        if lead == 1 {
            word(0);
        }
        done = lead + 2 * pairs;
    }
    for w in done..words {
        word(w);
    }
}

/// One aligned word of a [`copy_words`] load.
///
/// # Safety
///
/// `src` 8-aligned and readable for 8 bytes, accessed only atomically by this process;
/// `dst` private and writable for 8 bytes.
#[inline(always)]
unsafe fn load_word(src: *const u8, dst: *mut u8) {
    #[cfg(test)]
    trace::record(src, WORD);
    // SAFETY: the contract: an 8-byte Relaxed load of an aligned word, permitted on read-only
    // memory on 64-bit targets; only loads go through the reference, which does not outlive
    // this statement. The destination may be unaligned: `write_unaligned`.
    unsafe {
        let v = AtomicU64::from_ptr(src.cast::<u64>().cast_mut()).load(Ordering::Relaxed);
        dst.cast::<u64>().write_unaligned(v);
    }
}

/// One aligned word of a [`copy_words`] store.
///
/// # Safety
///
/// `dst` 8-aligned and writable for 8 bytes, accessed only atomically by this process; `src`
/// readable for 8 bytes and written by nobody during the call.
#[inline(always)]
unsafe fn store_word(src: *const u8, dst: *mut u8) {
    #[cfg(test)]
    trace::record(dst, WORD);
    // SAFETY: the contract; the private source may be unaligned: `read_unaligned`.
    unsafe {
        let v = src.cast::<u64>().read_unaligned();
        AtomicU64::from_ptr(dst.cast::<u64>()).store(v, Ordering::Relaxed);
    }
}

/// Runs of aligned words copied 16 bytes at a time, with SSE2 `movdqa` on the shared side, on
/// x86-64 processors that make an aligned 16-byte SSE access single-copy atomic: Intel's and
/// AMD's with AVX (Intel SDM vol. 3A §9.1.1, "Processors that enumerate support for Intel AVX
/// … guarantee that the 16-byte memory operations performed by … MOVDQA … will always be
/// carried out atomically", and AMD's APM for its own; GCC's libatomic, QEMU and the
/// `portable-atomic` crate rely on it for 16-byte atomic loads and stores, with the same
/// vendor check).
///
/// Why this is the word loop in Rust's model: the compiler cannot see into an `asm!` block,
/// which is treated as an operation some Rust code could have performed. One atomic 16-byte
/// access of an aligned pair of words gives values that two `Relaxed` `AtomicU64` accesses,
/// one per word, could give (each word whole, the pair in some order), and it orders nothing,
/// as `Relaxed` orders nothing; so each block is exactly the loop of 8-byte accesses that
/// [`copy_words`] makes otherwise, and every caller's one-size-per-word
/// reasoning (8-byte accesses of whole words) holds unchanged. The blocks are not `nomem`, so
/// the compiler moves no memory access across them. Loads only on the shared side: permitted
/// on read-only mappings, as an 8-byte `Relaxed` load is.
///
/// Speed (`BENCHMARKS.md`, "Queue payload copies: from `rep movsb` to 16-byte SSE loops",
/// `benches/copy_loops.c`): 45-51 GB/s at any distance
/// between source and destination, against 21-28 GB/s for the 8-byte loop, and without the
/// string copy's (`rep movsb`) drop to 3 GB/s when the destination lies 1 to 31 bytes after
/// the source modulo 4 KiB.
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod wide {
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Runs shorter than this many words take the 8-byte loop.
    pub(super) const MIN_WORDS: usize = 4;

    /// Whether this processor makes aligned 16-byte SSE accesses atomic (AVX, Intel or AMD);
    /// detected once.
    #[inline]
    pub(super) fn available() -> bool {
        #[cfg(test)]
        if NARROW.with(|n| n.get()) {
            return false;
        }
        // 0: not yet known, 1: no, 2: yes. Relaxed: a cache of a fact that never changes;
        // racing first calls compute the same answer.
        static KNOWN: AtomicU8 = AtomicU8::new(0);
        match KNOWN.load(Ordering::Relaxed) {
            2 => true,
            1 => false,
            _ => {
                let yes = detect();
                KNOWN.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
        }
    }

    #[cfg(test)]
    thread_local!(
        /// Tests set it to take the 8-byte loops on this thread, as a processor without the
        /// guarantee would.
        pub(super) static NARROW: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }
    );

    #[cold]
    fn detect() -> bool {
        if !std::is_x86_feature_detected!("avx") {
            return false;
        }
        // The vendor string, leaf 0: "GenuineIntel" or "AuthenticAMD" in ebx, edx, ecx.
        // SAFETY: every x86-64 processor has `cpuid` (the intrinsic is safe to call in newer
        // Rust versions, hence the allow).
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let vendor = [r.ebx, r.edx, r.ecx];
        vendor == [0x756e_6547, 0x4965_6e69, 0x6c65_746e]
            || vendor == [0x6874_7541, 0x6974_6e65, 0x444d_4163]
    }

    /// The 16-byte loop: `$ld` loads from `[s]`, `$st` stores to `[t]` (`movdqa` on the
    /// shared side, `movdqu` on the private one); four pairs (one 64-byte line) per round
    /// while at least four remain, then one per round. It clobbers the two pointers and the
    /// counter (declared), four xmm registers and the flags (declared as outputs, flags by
    /// default).
    macro_rules! sse_loop {
        ($ld:literal, $st:literal, $src:expr, $dst:expr, $pairs:expr) => {
            std::arch::asm!(
                "cmp {n}, 4",
                "jb 3f",
                "2:",
                concat!($ld, " {a}, xmmword ptr [{s}]"),
                concat!($ld, " {b}, xmmword ptr [{s} + 16]"),
                concat!($ld, " {c}, xmmword ptr [{s} + 32]"),
                concat!($ld, " {d}, xmmword ptr [{s} + 48]"),
                concat!($st, " xmmword ptr [{t}], {a}"),
                concat!($st, " xmmword ptr [{t} + 16], {b}"),
                concat!($st, " xmmword ptr [{t} + 32], {c}"),
                concat!($st, " xmmword ptr [{t} + 48], {d}"),
                "add {s}, 64",
                "add {t}, 64",
                "sub {n}, 4",
                "cmp {n}, 4",
                "jae 2b",
                "3:",
                "test {n}, {n}",
                "jz 5f",
                "4:",
                concat!($ld, " {a}, xmmword ptr [{s}]"),
                concat!($st, " xmmword ptr [{t}], {a}"),
                "add {s}, 16",
                "add {t}, 16",
                "dec {n}",
                "jnz 4b",
                "5:",
                s = inout(reg) $src => _,
                t = inout(reg) $dst => _,
                n = inout(reg) $pairs => _,
                a = out(xmm_reg) _,
                b = out(xmm_reg) _,
                c = out(xmm_reg) _,
                d = out(xmm_reg) _,
                options(nostack),
            )
        };
    }

    /// `pairs` 16-byte blocks from `src` to `dst`, the shared side (`dir`) 16-aligned.
    ///
    /// # Safety
    ///
    /// [`available`] returned true; the shared side 16-aligned and readable (`Load`) or
    /// writable (`Store`) for `16 * pairs` bytes, accessed only atomically by this process
    /// meanwhile; the private side valid for as many bytes, accessed by nobody else during
    /// the call; the ranges do not overlap.
    #[inline]
    pub(super) unsafe fn copy(src: *const u8, dst: *mut u8, pairs: usize, dir: super::Dir) {
        #[cfg(test)]
        for w in 0..2 * pairs {
            let shared = match dir {
                super::Dir::Load => src,
                super::Dir::Store => dst.cast_const(),
            };
            super::trace::record(shared.wrapping_add(w * super::WORD), super::WORD);
        }
        if pairs == 0 {
            return;
        }
        // SAFETY: the contract: every `movdqa` accesses a 16-aligned block inside the shared
        // range, every `movdqu` one inside the private range, `16 * pairs` bytes on each
        // side; the module docs say why a block is two Relaxed 8-byte accesses per pair in
        // Rust's model. Loads only on the shared side of a `Load` (read-only mappings).
        unsafe {
            match dir {
                super::Dir::Load => sse_loop!("movdqa", "movdqu", src, dst, pairs),
                super::Dir::Store => sse_loop!("movdqu", "movdqa", src, dst, pairs),
            }
        }
    }
}

/// Copy the `len`-byte message at `src` in shared memory into private memory at `dst`, for
/// queue payloads: `src` is 8-aligned, and the `round_up(len, 8)` bytes from it are the
/// message's (its record's padding included), so every word is loaded whole, the last one
/// too when `len` is not a multiple of 8 (its extra bytes are dropped). Every copy of a
/// payload, in either direction and of any length, then accesses each of its words with one
/// 8-byte access: copies that disagree about where a message ends (a length a peer forged,
/// a guard's shorter `copy_from`) never race with two sizes on one word.
///
/// # Safety
///
/// As [`load`], for the `round_up(len, 8)` bytes at `src` (8-aligned); `dst` for `len`
/// bytes.
#[inline]
pub(crate) unsafe fn load_padded(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract is `copy_padded`'s.
    unsafe { copy_padded(src, dst, len, Dir::Load) }
}

/// Copy `len` bytes from private memory at `src` into the message at `dst` in shared memory,
/// for queue payloads: `dst` is 8-aligned and the `round_up(len, 8)` bytes from it are the
/// caller's alone (a claimed record, whose bytes after the message are padding), so every
/// word is stored whole, a partial last word with zeroes after the message. Stores only:
/// merging into what the word held would load a line that the consumer had last, a miss
/// the producer waits for (a small message in a Python `Queue` of 2 + 2 processes ran at
/// a third of its rate). The access sizes of [`load_padded`]. A copy of a part of a record
/// that must keep the bytes after it is [`store_within`]'s (`Merge::Exclusive`).
///
/// # Safety
///
/// As [`store`], for the `round_up(len, 8)` bytes at `dst` (8-aligned); `src` for `len`
/// bytes.
#[inline]
pub(crate) unsafe fn store_padded(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract is `copy_padded`'s.
    unsafe { copy_padded(src, dst, len, Dir::Store) }
}

/// [`load_padded`] and [`store_padded`]: `len` bytes from `src` to `dst`, the shared side
/// (`dir`) accessed in whole words up to `round_up(len, 8)` bytes.
///
/// # Safety
///
/// The shared side 8-aligned and valid for reads (`Load`) or writes (`Store`) of
/// `round_up(len, 8)` bytes, every concurrent access to them by this process atomic; the
/// private side valid for `len` bytes and accessed by nobody else; no overlap.
#[inline(always)]
unsafe fn copy_padded(src: *const u8, dst: *mut u8, len: usize, dir: Dir) {
    let shared = match dir {
        Dir::Load => src as usize,
        Dir::Store => dst as usize,
    };
    // A precondition every caller keeps by construction (its positions are private and
    // 8-aligned); checked all the same, as a misaligned atomic access would be undefined.
    assert!(shared % WORD == 0, "a queue payload that is not 8-aligned");
    let words = len / WORD;
    // SAFETY: the contract: the whole words lie inside both ranges, the shared side aligned.
    unsafe { copy_words(src, dst, words, dir) };
    let (at, rest) = (words * WORD, len % WORD);
    if rest == 0 {
        return;
    }
    let mut word = [0u8; WORD];
    // SAFETY: the last word lies inside the padded shared range (the contract) and is
    // accessed whole; the private side has `rest` bytes left at `at`; `word` is private.
    unsafe {
        match dir {
            Dir::Load => {
                load_word(src.add(at), word.as_mut_ptr());
                std::ptr::copy_nonoverlapping(word.as_ptr(), dst.add(at), rest);
            }
            Dir::Store => {
                std::ptr::copy_nonoverlapping(src.add(at), word.as_mut_ptr(), rest);
                store_word(word.as_ptr(), dst.add(at));
            }
        }
    }
}

/// An `order` load the way read-only memory permits it: `relaxed_load` (which must load with
/// `Ordering::Relaxed`), then no fence for `Relaxed`, `fence(Acquire)` for `Acquire`, and
/// `fence(SeqCst)` for `SeqCst`. The result acquires exactly as an `Acquire` load would (an
/// acquire fence after a relaxed load synchronises with every release store or fence whose
/// value, or a later value in its release sequence, the load read); for `SeqCst` the fence,
/// not the load, takes part in the single total order of `SeqCst` operations.
///
/// Why: std permits only `Relaxed` atomic loads of at most 8 bytes on `PROT_READ` memory. An
/// `Acquire` or `SeqCst` load is allowed to be compiled as a read-modify-write on some
/// targets, which faults on a read-only page.
///
/// # Panics
///
/// For `Release` and `AcqRel`, before loading anything, as `AtomicU64::load` does.
#[inline]
pub(crate) fn load_read_only<T>(order: Ordering, relaxed_load: impl FnOnce() -> T) -> T {
    if matches!(order, Ordering::Release | Ordering::AcqRel) {
        panic!("there is no such thing as a release load");
    }
    let v = relaxed_load();
    match order {
        Ordering::Relaxed => {}
        Ordering::Acquire => fence(Ordering::Acquire),
        _ => fence(Ordering::SeqCst),
    }
    v
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A 64-byte-aligned buffer of words, used as "shared" memory.
    fn shared(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    fn base(v: &[AtomicU64]) -> *mut u8 {
        v.as_ptr().cast::<u8>().cast_mut()
    }

    /// Run `copy` into byte `priv_off` of a fresh private buffer of `size` bytes (0xee),
    /// check that exactly `want` landed there and nothing else changed; its access trace.
    fn load_checked(
        size: usize,
        priv_off: usize,
        want: &[u8],
        copy: impl FnOnce(*mut u8),
    ) -> Vec<(usize, usize)> {
        let mut out = vec![0xeeu8; size];
        trace::start();
        copy(out.as_mut_ptr().wrapping_add(priv_off));
        let t = trace::stop();
        assert_eq!(&out[priv_off..priv_off + want.len()], want);
        assert!(out[..priv_off].iter().all(|&b| b == 0xee), "wrote before");
        let after = &out[priv_off + want.len()..];
        assert!(after.iter().all(|&b| b == 0xee), "wrote after");
        t
    }

    #[test]
    fn every_offset_and_length_copies_exactly_those_bytes() {
        // Source/destination offsets 0..8 on both sides, lengths 0..40: every mix of head,
        // words and tail, aligned and unaligned private buffers.
        let pattern: Vec<u8> = (0..64u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(1))
            .collect();
        for off in 0..8 {
            for priv_off in 0..8 {
                for len in 0..40 {
                    // Load: shared -> private.
                    let sh = shared(8);
                    // SAFETY: 64 bytes, private to this test.
                    unsafe { std::ptr::copy_nonoverlapping(pattern.as_ptr(), base(&sh), 64) };
                    let mut out = vec![0xeeu8; 64];
                    // SAFETY: both ranges lie inside their 64-byte buffers (off + len < 48).
                    unsafe { load(base(&sh).add(off), out.as_mut_ptr().add(priv_off), len) };
                    assert_eq!(&out[priv_off..priv_off + len], &pattern[off..off + len]);
                    assert!(out[..priv_off].iter().all(|&b| b == 0xee), "wrote before");
                    assert!(
                        out[priv_off + len..].iter().all(|&b| b == 0xee),
                        "wrote after"
                    );

                    // Store: private -> shared.
                    let sh = shared(8);
                    // SAFETY: as above.
                    unsafe { store(pattern.as_ptr().add(priv_off), base(&sh).add(off), len) };
                    let mut got = vec![0u8; 64];
                    // SAFETY: 64 bytes; no other thread.
                    unsafe { std::ptr::copy_nonoverlapping(base(&sh), got.as_mut_ptr(), 64) };
                    assert_eq!(&got[off..off + len], &pattern[priv_off..priv_off + len]);
                    assert!(got[..off].iter().all(|&b| b == 0), "stored before");
                    assert!(got[off + len..].iter().all(|&b| b == 0), "stored after");
                }
            }
        }
    }

    /// Every split covers the range exactly, in order, and accesses each word in one way,
    /// decided by the region alone: whole (`Words`, `Part`) for an aligned word wholly inside
    /// the region, bytes for every other.
    #[test]
    fn walk_covers_the_range_with_one_access_size_per_word() {
        for mis in 0..8 {
            for len in 0..40 {
                // Absolute offsets (region start at `mis`) of the region's whole words.
                let whole = |w: usize| w % 8 == 0 && w >= mis && w + 8 <= mis + len;
                for at in 0..=len {
                    for n in 0..=len - at {
                        let mut next = at;
                        walk(mis, len, at, n, |r| match r {
                            Run::Words(w, k) => {
                                assert!(w == next && k % 8 == 0 && k > 0);
                                assert!((w..w + k).step_by(8).all(|x| whole(mis + x)));
                                next = w + k;
                            }
                            Run::Part(w, from, to) => {
                                assert!(w + from == next && from < to && to <= 8);
                                assert!(whole(mis + w) && (from > 0 || to < 8));
                                next = w + to;
                            }
                            Run::Bytes(w, k) => {
                                assert!(w == next && k > 0 && k < 8);
                                let word = (mis + w) & !7;
                                assert_eq!(word, (mis + w + k - 1) & !7, "one word");
                                assert!(!whole(word), "mis {mis} len {len}: bytes of a whole word");
                                next = w + k;
                            }
                        });
                        assert_eq!(next, at + n, "mis {mis} len {len} at {at} n {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn copies_within_a_region_copy_exactly_those_bytes() {
        let pattern: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(29) ^ 0x33).collect();
        for off in 0..8 {
            for len in 0..40 {
                for at in 0..=len {
                    for n in [0, 1, 7, 8, 9, 17].into_iter().filter(|&n| at + n <= len) {
                        for merge in [Merge::Exclusive, Merge::Shared] {
                            let sh = shared(8);
                            // SAFETY: 64 bytes, private to this test.
                            unsafe {
                                std::ptr::copy_nonoverlapping(pattern.as_ptr(), base(&sh), 64)
                            };
                            let mut out = vec![0xeeu8; n];
                            // SAFETY: off + len < 48, inside the buffer.
                            unsafe { load_within(base(&sh).add(off), len, at, &mut out) };
                            assert_eq!(out, &pattern[off + at..off + at + n]);
                            let src: Vec<u8> = (0..n as u8).map(|b| !b).collect();
                            // SAFETY: as above.
                            unsafe { store_within(base(&sh).add(off), len, at, &src, merge) };
                            let mut got = vec![0u8; 64];
                            // SAFETY: 64 bytes; no other thread.
                            unsafe {
                                std::ptr::copy_nonoverlapping(base(&sh), got.as_mut_ptr(), 64)
                            };
                            assert_eq!(&got[off + at..off + at + n], &src[..]);
                            assert_eq!(&got[..off + at], &pattern[..off + at], "stored before");
                            assert_eq!(&got[off + at + n..], &pattern[off + at + n..], "after");
                        }
                    }
                }
            }
        }
    }

    /// The 16-byte path is taken exactly where the processor makes aligned 16-byte accesses
    /// atomic (an Intel or AMD processor with AVX, as `/proc/cpuinfo` tells): a detection
    /// that went wrong would either lose the speed silently or use it where it is unsound.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn the_16_byte_path_is_taken_where_the_processor_guarantees_it() {
        let info = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in /proc/cpuinfo"))
        };
        let vendor = field("vendor_id");
        let avx = field("flags").split_whitespace().any(|f| f == "avx");
        let expect = avx && (vendor == "GenuineIntel" || vendor == "AuthenticAMD");
        assert_eq!(wide::available(), expect, "vendor {vendor}, avx {avx}");
    }

    #[test]
    fn long_copies_copy_exactly_those_bytes_at_every_alignment() {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        for narrow in [false, true] {
            wide::NARROW.with(|n| n.set(narrow));
            long_copies();
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        long_copies();
    }

    fn long_copies() {
        // Lengths across the 16-byte path's threshold and its 64-byte rounds, shared offsets
        // 0..16 (a leading word before the 16-aligned pairs, or none), private offsets too.
        let size = 1024;
        let pattern: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(37) ^ 0x5a)
            .collect();
        for len in [
            31, 32, 33, 40, 48, 63, 64, 65, 72, 100, 127, 128, 136, 200, 511, 800,
        ] {
            for off in 0..16 {
                for priv_off in [0, 3, 8] {
                    let sh = shared(size / 8);
                    // SAFETY: `size` bytes, private to this test.
                    unsafe { std::ptr::copy_nonoverlapping(pattern.as_ptr(), base(&sh), size) };
                    let loads = load_checked(size, priv_off, &pattern[off..off + len], |out| {
                        // SAFETY: off + len and priv_off + len are below `size`.
                        unsafe { load(base(&sh).add(off), out, len) }
                    });

                    let sh = shared(size / 8);
                    trace::start();
                    // SAFETY: as above.
                    unsafe { store(pattern.as_ptr().add(priv_off), base(&sh).add(off), len) };
                    let stores = trace::stop();
                    let mut got = vec![0u8; size];
                    // SAFETY: `size` bytes; no other thread.
                    unsafe { std::ptr::copy_nonoverlapping(base(&sh), got.as_mut_ptr(), size) };
                    assert_eq!(&got[off..off + len], &pattern[priv_off..priv_off + len]);
                    assert!(got[..off].iter().all(|&b| b == 0), "stored before");
                    assert!(got[off + len..].iter().all(|&b| b == 0), "stored after");

                    // Both directions: every byte once, whole words by 8-byte accesses.
                    for t in [loads, stores] {
                        let mut bytes: Vec<usize> = Vec::new();
                        let start = t.iter().map(|&(a, _)| a).min().unwrap();
                        for &(a, n) in &t {
                            assert!(n == 1 || (n == 8 && a % 8 == 0), "access ({a:#x}, {n})");
                            bytes.extend((a - start)..(a - start + n));
                        }
                        bytes.sort_unstable();
                        assert_eq!(bytes, (0..len).collect::<Vec<_>>(), "len {len} off {off}");
                        let whole = |a: usize| a % 8 == 0 && t.contains(&(a, 8));
                        assert!(
                            t.iter().all(|&(a, n)| n == 8 || !whole(a & !7)),
                            "bytes of a word copied whole"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn padded_copies_access_whole_words_only_and_zero_the_padding() {
        let size = 1024;
        let pattern: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(29) ^ 0x33)
            .collect();
        for len in (0..80).chain([127, 128, 129, 513, 800]) {
            for off in [0, 8, 16, 24] {
                for priv_off in [0, 5] {
                    let sh = shared(size / 8);
                    // SAFETY: `size` bytes, private to this test.
                    unsafe { std::ptr::copy_nonoverlapping(pattern.as_ptr(), base(&sh), size) };
                    let loads = load_checked(size, priv_off, &pattern[off..off + len], |out| {
                        // SAFETY: off + round_up(len, 8) and priv_off + len are below `size`.
                        unsafe { load_padded(base(&sh).add(off), out, len) }
                    });

                    let src: Vec<u8> = (0..size).map(|i| !(i as u8)).collect();
                    trace::start();
                    // SAFETY: as above.
                    unsafe { store_padded(src.as_ptr().add(priv_off), base(&sh).add(off), len) };
                    let stores = trace::stop();
                    let mut got = vec![0u8; size];
                    // SAFETY: `size` bytes; no other thread.
                    unsafe { std::ptr::copy_nonoverlapping(base(&sh), got.as_mut_ptr(), size) };
                    assert_eq!(&got[off..off + len], &src[priv_off..priv_off + len]);
                    assert_eq!(&got[..off], &pattern[..off], "stored before");
                    let pad = off + len.next_multiple_of(8);
                    assert!(got[off + len..pad].iter().all(|&b| b == 0), "padding");
                    assert_eq!(&got[pad..], &pattern[pad..], "stored after");

                    let words: Vec<usize> = (0..len.div_ceil(8))
                        .map(|w| base(&sh) as usize + off + 8 * w)
                        .collect();
                    // Each padded word once, whole; the stores load nothing.
                    for (t, what) in [(loads, "load"), (stores, "store")] {
                        let mut seen: Vec<usize> = t
                            .iter()
                            .map(|&(a, n)| {
                                assert_eq!(n, 8, "len {len}: a {what} of {n} bytes");
                                a
                            })
                            .collect();
                        seen.sort_unstable();
                        assert_eq!(seen, words, "len {len} off {off}: {what}s");
                    }
                }
            }
        }
    }

    #[test]
    fn whole_words_are_never_torn_by_a_concurrent_writer() {
        // The writer stores generation g into every word as g * 0x0001_0001_0001_0001 (whole
        // words); a reader copying the whole buffer must see, in every word, four equal
        // 16-bit lanes (one generation), and per word a generation that never goes back
        // (coherence of each atomic word).
        const WORDS: usize = 512;
        const GENS: u64 = 20_000;
        let sh = shared(WORDS);
        let p = base(&sh) as usize;
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = vec![0u8; WORDS * 8];
                for g in 1..=GENS {
                    let w = g * 0x0001_0001_0001_0001;
                    for c in buf.chunks_exact_mut(8) {
                        c.copy_from_slice(&w.to_le_bytes());
                    }
                    // SAFETY: `sh` is WORDS * 8 bytes and outlives the scope; the reader only
                    // accesses it atomically.
                    unsafe { store(buf.as_ptr(), p as *mut u8, buf.len()) };
                }
                done.store(true, Ordering::Release);
            });
            let mut last = vec![0u64; WORDS];
            let mut out = vec![0u8; WORDS * 8];
            let mut rounds = 0u64;
            while !done.load(Ordering::Acquire) || rounds == 0 {
                // SAFETY: as above; `out` is private.
                unsafe { load(p as *const u8, out.as_mut_ptr(), out.len()) };
                for (i, c) in out.chunks_exact(8).enumerate() {
                    let w = u64::from_le_bytes(c.try_into().unwrap());
                    let g = w & 0xffff;
                    assert_eq!(w, g * 0x0001_0001_0001_0001, "word {i} torn: {w:#x}");
                    assert!(g >= last[i], "word {i} went back from {} to {g}", last[i]);
                    last[i] = g;
                }
                rounds += 1;
            }
            // After the writer is done (Acquire above), its last stores are visible.
            // SAFETY: as above.
            unsafe { load(p as *const u8, out.as_mut_ptr(), out.len()) };
            assert!(
                out.chunks_exact(8)
                    .all(|c| u64::from_le_bytes(c.try_into().unwrap())
                        == GENS * 0x0001_0001_0001_0001)
            );
        });
    }
}

/// Test-only record of the shared-side accesses [`load`] and [`store`] make on this thread
/// (address, size), so that tests can check which access sizes a protocol uses for each word.
#[cfg(test)]
#[cfg_attr(loom, allow(dead_code))] // its users are not built under loom
pub(crate) mod trace {
    use std::cell::RefCell;

    thread_local!(static LOG: RefCell<Option<Vec<(usize, usize)>>> = const { RefCell::new(None) });

    /// Start recording on this thread.
    pub(crate) fn start() {
        LOG.with(|l| *l.borrow_mut() = Some(Vec::new()));
    }

    /// Stop recording; what was recorded since [`start`].
    pub(crate) fn stop() -> Vec<(usize, usize)> {
        LOG.with(|l| l.borrow_mut().take().unwrap_or_default())
    }

    pub(crate) fn record(at: *const u8, size: usize) {
        LOG.with(|l| {
            if let Some(v) = l.borrow_mut().as_mut() {
                v.push((at as usize, size));
            }
        });
    }
}
