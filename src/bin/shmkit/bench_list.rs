//! `shmkit bench list`: `ShareableList` get/set per operation, for an int and a short str,
//! beside CPython's own `ShareableList` doing the same operations on the same list in the same
//! run (the bench starts the Python side itself), and beside a floor: an 8-byte atomic copy
//! out of the same shared memory (`Segment::read_at`), the least any get can cost.

use std::time::Instant;

use crate::bench_python::{CPython, PythonArg};
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
    #[command(flatten)]
    python: PythonArg,
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

/// A row of the JSON output, in the shape of `bench cells`'s: shmkit's operations (each with
/// its speedup over CPython's same operation and its ratio to the floor), the floor, and
/// CPython's operations (`cpython<version>_<op>`).
#[derive(serde::Serialize)]
struct Row {
    name: String,
    ops: u64,
    ns_per_op: f64,
    /// CPython's ns/op of the same operation / this row's (higher is better).
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup_vs_cpython: Option<f64>,
    /// This row's ns/op / the floor's.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_floor: Option<f64>,
}

/// The floor row's name in the JSON output.
const FLOOR: &str = "floor_atomic_copy_8B";

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
    let modules = [
        "multiprocessing.resource_tracker",
        "multiprocessing.shared_memory",
    ];
    let mut py = CPython::find("list", &a.python, &modules)?;
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
    let args = [name.clone(), py_n.to_string()];
    let cpython: Vec<(String, f64)> = py
        .run("the ShareableList script", PY, &args, |text| {
            ours.iter()
                .map(|&(op, _)| {
                    let ns = text
                        .lines()
                        .find_map(|l| l.strip_prefix(op)?.trim().parse().ok())?;
                    Some((op.to_owned(), ns))
                })
                .collect()
        })?
        .unwrap_or_default();
    drop(list);
    let cpython_ns = |op: &str| cpython.iter().find(|(o, _)| o == op).map(|&(_, ns)| ns);
    let ver = py.version().unwrap_or("?");
    let mut rows: Vec<Row> = ours
        .iter()
        .map(|&(op, ns)| Row {
            name: op.into(),
            ops: n,
            ns_per_op: ns,
            speedup_vs_cpython: cpython_ns(op).map(|p| p / ns),
            ratio_to_floor: Some(ns / floor),
        })
        .collect();
    rows.push(Row {
        name: FLOOR.into(),
        ops: n,
        ns_per_op: floor,
        speedup_vs_cpython: None,
        ratio_to_floor: None,
    });
    rows.extend(cpython.iter().map(|(op, ns)| Row {
        name: format!("cpython{ver}_{op}"),
        ops: py_n,
        ns_per_op: *ns,
        speedup_vs_cpython: None,
        ratio_to_floor: None,
    }));
    if a.json {
        return print_json(&serde_json::json!({ "results": rows, "cpython": py.report() }));
    }
    let via = match py.version() {
        Some(v) => format!("CPython {v} {py_n} ops via {}", py.path()),
        None => "no CPython".into(),
    };
    outln!("ShareableList get/set, ns per operation (best of {BATCHES} batches; shmkit {n} ops, {via})")?;
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
    for (op, ns) in ours {
        let (py_ns, speedup) = match cpython_ns(op) {
            Some(p) => (format!("{p:.1}"), format!("{:.0}×", p / ns)),
            None => ("-".into(), "-".into()),
        };
        outln!(
            "{:<8}  {:>10.1}  {:>11}  {:>8}  {:>9.1}",
            op,
            ns,
            py_ns,
            speedup,
            ns / floor
        )?;
    }
    Ok(())
}
