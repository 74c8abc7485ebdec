//! `shmkit bench list`: `ShareableList` get/set per operation, for an int and a short str,
//! beside CPython's own `ShareableList` doing the same operations on the same list in the same
//! run (the bench starts the Python side itself), and beside a floor: an 8-byte atomic copy
//! out of the same shared memory (`Segment::read_at`), the least any get can cost.

use std::process::Command;
use std::time::Instant;

use crate::{outln, print_json, CmdResult};
use shmkit::list::{Item, ShareableList};
use shmkit::Segment;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Fewer iterations (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The Python interpreter for the CPython side.
    #[arg(long, default_value = "python3")]
    python: String,
}

/// The CPython side: attach to the list, time each operation as the best of 20 batches of
/// `n / 20` iterations (as [`time`] does), print `op ns_per_op` lines. Unregisters from the resource tracker so that Python does not unlink
/// the bench's segment when it exits (README, "Python interop").
const PY: &str = r#"
import sys, time
from multiprocessing import resource_tracker, shared_memory
sl = shared_memory.ShareableList(name=sys.argv[1])
resource_tracker.unregister(sl.shm._name, "shared_memory")
n = int(sys.argv[2]) // 20
def run(op, f):
    best = None
    for _ in range(20):
        t = time.perf_counter_ns(); f(); d = (time.perf_counter_ns() - t) / n
        best = d if best is None else min(best, d)
    print(op, best)
def get_int():
    for _ in range(n): sl[0]
def set_int():
    for _ in range(n): sl[0] = 42
def get_str():
    for _ in range(n): sl[1]
def set_str():
    for _ in range(n): sl[1] = "hello"
run("get_int", get_int); run("set_int", set_int); run("get_str", get_str); run("set_str", set_str)
sl.shm.close()
"#;

#[derive(serde::Serialize)]
struct Row {
    op: &'static str,
    shmkit_ns: f64,
    cpython_ns: f64,
    /// cpython_ns / shmkit_ns.
    speedup: f64,
    /// shmkit_ns / floor_ns.
    ratio_to_floor: f64,
}

#[derive(serde::Serialize)]
struct Report {
    iterations: u64,
    floor_ns: f64,
    python: String,
    rows: Vec<Row>,
}

/// Batches per measurement: the best batch is reported, so that a batch during which another
/// process had the CPU (this machine is shared) does not count.
const BATCHES: u64 = 20;

/// Best of [`BATCHES`] batches of `n / BATCHES` calls of `f`, in ns per call.
fn time(n: u64, mut f: impl FnMut()) -> f64 {
    let per = (n / BATCHES).max(1);
    (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per {
                f();
            }
            t.elapsed().as_nanos() as f64 / per as f64
        })
        .fold(f64::INFINITY, f64::min)
}

pub(crate) fn run(a: Args) -> CmdResult {
    let n: u64 = if a.quick { 20_000 } else { 1_000_000 };
    let name = format!("shmkit-bench-list-{}", std::process::id());
    let list = ShareableList::options()
        .unlink_on_drop(true)
        .create(&name, &[Item::Int(42), Item::Str("hello".into())])
        .map_err(|e| e.to_string())?;
    let (int, text) = (Item::Int(42), Item::Str("hello".into()));
    // The first error, if any (reported after timing: the loops stay branch-light).
    let mut err: Option<shmkit::Error> = None;
    let mut keep = |r: shmkit::Result<()>| {
        if let Err(e) = r {
            err.get_or_insert(e);
        }
    };
    let ours = [
        (
            "get_int",
            time(n, || {
                keep(list.get(0).map(|v| drop(std::hint::black_box(v))))
            }),
        ),
        ("set_int", time(n, || keep(list.set(0, &int)))),
        (
            "get_str",
            time(n, || {
                keep(list.get(1).map(|v| drop(std::hint::black_box(v))))
            }),
        ),
        ("set_str", time(n, || keep(list.set(1, &text)))),
    ];
    if let Some(e) = err {
        return Err(e.to_string().into());
    }

    let floor_name = format!("shmkit-bench-list-floor-{}", std::process::id());
    let floor_seg = Segment::options()
        .raw(true)
        .unlink_on_drop(true)
        .create(&floor_name, 64)
        .map_err(|e| e.to_string())?;
    let mut w = [0u8; 8];
    let floor = time(n, || {
        let _ = floor_seg.read_at(std::hint::black_box(8), &mut w);
        std::hint::black_box(&w);
    });

    // CPython runs fewer iterations: it is two orders of magnitude slower per operation.
    let py_n = (n / 10).max(1000);
    let out = Command::new(&a.python)
        .args(["-c", PY, &name, &py_n.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", a.python))?;
    if !out.status.success() {
        return Err(format!(
            "the CPython side ({}) failed: {}",
            a.python,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let py_text = String::from_utf8_lossy(&out.stdout);
    let cpython = |op: &str| -> f64 {
        py_text
            .lines()
            .find_map(|l| l.strip_prefix(op)?.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let rows: Vec<Row> = ours
        .into_iter()
        .map(|(op, ns)| Row {
            op,
            shmkit_ns: ns,
            cpython_ns: cpython(op),
            speedup: cpython(op) / ns,
            ratio_to_floor: ns / floor,
        })
        .collect();
    drop(list);
    let report = Report {
        iterations: n,
        floor_ns: floor,
        python: a.python,
        rows,
    };
    if a.json {
        return print_json(&report);
    }
    outln!(
        "ShareableList get/set, ns per operation (best of {BATCHES} batches; shmkit {n} ops, CPython {py_n} ops via {})",
        report.python
    )?;
    outln!(
        "floor (8-byte atomic copy out of shared memory): {:.1} ns",
        floor
    )?;
    outln!(
        "{:<8}  {:>10}  {:>11}  {:>8}  {:>9}",
        "op",
        "shmkit",
        "CPython",
        "speedup",
        "÷ floor"
    )?;
    for r in &report.rows {
        outln!(
            "{:<8}  {:>10.1}  {:>11.1}  {:>7.0}×  {:>9.1}",
            r.op,
            r.shmkit_ns,
            r.cpython_ns,
            r.speedup,
            r.ratio_to_floor
        )?;
    }
    Ok(())
}
