//! `shmkit bench throughput` rows for the `mpmc-bytes` queue: 2 producer and 2 consumer
//! processes at 64 B and 4 KiB, beside CPython's `multiprocessing.Queue` with the same
//! processes and message sizes, run in the same bench.
//!
//! Each side: the parent creates the queue, starts the two consumers and the two producers
//! (this binary's hidden `bench-peer` verb), and once all four have attached sets a start
//! word in a small segment. Producers push their share and close; consumers pop until the
//! producer side is closed and drained (`Disconnected`), then print their count. The rate is
//! all messages over the parent's wall time from the start word to the last consumer's report.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::bench::{read_ns, spawn_peer, tput, unique, Peer, ThroughputResult};
use super::bench_python::CPython;
use crate::CmdResult;
use shmkit::queue::mpmc_bytes::Queue;
use shmkit::queue::PopError;
use shmkit::Segment;

/// The message sizes of the rows.
const SIZES: [usize; 2] = [64, 4096];

/// Peer scenario names.
pub(crate) const PRODUCER: &str = "tput_mpmcb_producer";
pub(crate) const CONSUMER: &str = "tput_mpmcb_consumer";

/// Bytes in the ring: 1 MiB.
const CAPACITY: u64 = 1 << 20;

fn go_name(tag: &str) -> String {
    format!("{tag}-go")
}

/// Wait (spinning, then sleeping) until the parent sets the start word.
fn wait_go(tag: &str) -> Result<(), String> {
    let seg = Segment::open(&go_name(tag)).map_err(|e| e.to_string())?;
    let go = seg.atomic_u64(0).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    // Acquire pairs with the parent's Release store.
    while go.load(Ordering::Acquire) == 0 {
        if t0.elapsed() > Duration::from_secs(60) {
            return Err("the bench parent never started the run".into());
        }
        std::thread::yield_now();
    }
    Ok(())
}

/// The peer side: `count` messages of `bytes` bytes pushed (producer), or popped until
/// `Disconnected` (consumer, which prints how many it got).
pub(crate) fn peer(scenario: &str, bytes: usize, count: u64, tag: &str) -> CmdResult {
    if scenario == PRODUCER && bytes < 8 {
        return Err(format!("messages of {bytes} bytes cannot hold their 8-byte number").into());
    }
    let q = Queue::open(tag).map_err(|e| e.to_string())?;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    if scenario == PRODUCER {
        let mut tx = q.producer().map_err(|x| e(&x))?;
        crate::outln!("ready")?;
        wait_go(tag)?;
        let mut msg = vec![0u8; bytes];
        for i in 0..count {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            tx.push(&msg).map_err(|x| e(&x))?;
        }
        tx.close();
    } else {
        let mut rx = q.consumer().map_err(|x| e(&x))?;
        crate::outln!("ready")?;
        wait_go(tag)?;
        let mut buf = Vec::with_capacity(bytes);
        let mut n = 0u64;
        loop {
            match rx.pop_into(&mut buf) {
                Ok(len) if len == bytes => n += 1,
                Ok(len) => return Err(format!("popped {len} bytes, pushed {bytes}").into()),
                Err(PopError::Disconnected) => break,
                Err(x) => return Err(e(&x).into()),
            }
        }
        crate::outln!("{n}")?;
    }
    Ok(())
}

/// One run of 2 + 2 processes: `total` messages of `bytes` bytes.
fn run(bytes: usize, total: u64) -> Result<ThroughputResult, String> {
    let tag = unique(&format!("tput_mpmcb{bytes}"));
    let q = Queue::options()
        .unlink_on_drop(true)
        .create(&tag, CAPACITY)
        .map_err(|e| e.to_string())?;
    let mut go = Segment::options()
        .create(&go_name(&tag), 4096)
        .map_err(|e| e.to_string())?;
    go.set_unlink_on_drop(true);
    let mut consumers: Vec<(Peer, _)> = Vec::new();
    for _ in 0..2 {
        consumers.push(spawn_peer(CONSUMER, bytes, 0, &tag, &[])?);
    }
    let mut producers = Vec::new();
    for _ in 0..2 {
        producers.push(spawn_peer(PRODUCER, bytes, total / 2, &tag, &[])?);
    }
    let t0 = Instant::now();
    // Release pairs with the peers' Acquire loads in `wait_go`.
    go.atomic_u64(0)
        .map_err(|e| e.to_string())?
        .store(1, Ordering::Release);
    let mut got = 0;
    for (_, out) in consumers.iter_mut() {
        got += read_ns(out)?; // the count the consumer prints
    }
    let ns = t0.elapsed().as_nanos() as u64;
    for (p, _) in producers.into_iter().chain(consumers) {
        p.wait()?;
    }
    drop(q);
    if got != total / 2 * 2 {
        return Err(format!("consumers popped {got} of {total} messages"));
    }
    Ok(tput("mpmc_bytes_2p2c", bytes, got, ns))
}

/// CPython's `multiprocessing.Queue` with 2 producer and 2 consumer processes, `n` messages
/// of `bytes` bytes in all (`None` if the CPython rows are skipped).
fn python(py: &mut CPython, bytes: usize, n: u64) -> Result<Option<ThroughputResult>, String> {
    let script = r#"
import multiprocessing as mp, sys, time
def producer(q, go, n, size):
    msg = bytes(size)
    go.wait()
    for _ in range(n):
        q.put(msg)
def consumer(q, go, done):
    go.wait()
    k = 0
    while q.get() is not None:
        k += 1
    done.put(k)
if __name__ == "__main__":
    n, size = int(sys.argv[1]), int(sys.argv[2])
    q, done, go = mp.Queue(), mp.Queue(), mp.Event()
    ps = [mp.Process(target=producer, args=(q, go, n // 2, size)) for _ in range(2)]
    cs = [mp.Process(target=consumer, args=(q, go, done)) for _ in range(2)]
    for p in ps + cs:
        p.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    go.set()
    for p in ps:
        p.join()
    q.put(None)
    q.put(None)
    k = done.get() + done.get()
    dt = time.perf_counter() - t0
    for c in cs:
        c.join()
    print(int(dt * 1e9), k)
"#;
    let ver = py.version().unwrap_or("?").to_owned();
    py.run(
        "the multiprocessing.Queue 2p2c script",
        script,
        &[n.to_string(), bytes.to_string()],
        |s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            let (ns, k) = (it.next()??, it.next()??);
            Some(tput(&format!("cpython{ver}_mp_queue_2p2c"), bytes, k, ns))
        },
    )
}

/// The rows, and one line per size with the ratio to CPython in this run.
pub(crate) fn rows(
    quick: bool,
    py: &mut CPython,
) -> Result<(Vec<ThroughputResult>, Vec<String>), String> {
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for bytes in SIZES {
        let (ours, py_n) = match (bytes, quick) {
            (64, false) => (4_000_000, 200_000),
            (_, false) => (1_000_000, 100_000),
            (64, true) => (400_000, 20_000),
            (_, true) => (100_000, 10_000),
        };
        let r = run(bytes, ours)?;
        if let Some(p) = python(py, bytes, py_n)? {
            ratios.push(format!(
                "mpmc_bytes_2p2c / CPython multiprocessing.Queue 2p2c at {bytes} B: {:.0}x",
                r.msgs_per_s / p.msgs_per_s
            ));
            rows.push(r);
            rows.push(p);
        } else {
            rows.push(r);
        }
    }
    Ok((rows, ratios))
}
