//! `Segment::read_at` / `write_at` (word-wise `Relaxed` atomic copies, so that a concurrent
//! writer is not a data race) against the floor they replace, a plain `memcpy` between the
//! same buffers, measured in the same run: `cargo bench --bench copy`.
//!
//! One thread, warm caches, no concurrent writer: this is the cost of the atomic copy itself.
//! Each figure is the median of 31 batches; reported per call and as a ratio to `memcpy`.

use shmkit::Segment;
use std::hint::black_box;
use std::time::Instant;

const SIZES: [usize; 4] = [64, 4096, 256 * 1024, 4 << 20];

/// Median ns per call of `f` over 31 batches of `n` calls.
fn time(n: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..31)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let name = format!("bench-copy-{}", std::process::id());
    let max = *SIZES.iter().max().unwrap();
    let seg = Segment::options()
        .unlink_on_drop(true)
        .create(&name, max as u64)
        .expect("create the segment");
    let mut buf = vec![1u8; max];
    println!(
        "{:<10} {:>9} {:>11} {:>11} {:>9} {:>7}",
        "op", "bytes", "shmkit ns", "memcpy ns", "GB/s", "ratio"
    );
    for &len in &SIZES {
        let n = (64 << 20) / len.max(4096) * 4;
        for op in ["read_at", "write_at"] {
            let ours = time(n, || {
                if op == "read_at" {
                    seg.read_at(0, black_box(&mut buf[..len])).unwrap();
                } else {
                    seg.write_at(0, black_box(&buf[..len])).unwrap();
                }
            });
            let floor = time(n, || {
                let (p, b) = (seg.as_mut_ptr(), black_box(buf.as_mut_ptr()));
                // SAFETY: both ranges are `len` bytes inside their buffers and no other
                // thread or process touches the segment during the benchmark.
                unsafe {
                    if op == "read_at" {
                        std::ptr::copy_nonoverlapping(p, b, len)
                    } else {
                        std::ptr::copy_nonoverlapping(b, p, len)
                    }
                }
            });
            println!(
                "{op:<10} {len:>9} {ours:>11.1} {floor:>11.1} {:>9.2} {:>6.2}x",
                len as f64 / ours,
                ours / floor
            );
        }
    }
}
