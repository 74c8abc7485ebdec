//! `shmkit bench cells`: typed cells beside CPython's own `multiprocessing.Value('q')` locked
//! increment and `Array('d')` element get/set, run by this benchmark in the same run; and a
//! seqlock read of a 64-byte value while another process rewrites it at full speed.
//!
//! Every row is ns per operation, one process, uncontended (as CPython's are), except the
//! seqlock row, whose writer is the `bench-peer` process `cell_seqlock_writer`.

use std::time::{Duration, Instant};

use crate::bench_python::{CPython, PythonArg};
use crate::{outln, print_json, CmdResult};
use shmkit::cell::{Array, CellMode, Value};

#[derive(serde::Serialize)]
struct Row {
    name: String,
    ops: u64,
    ns_per_op: f64,
    /// CPython's ns/op of the same operation / this row's (higher is better).
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup_vs_cpython: Option<f64>,
}

fn unique(tag: &str) -> String {
    format!("shmkit-bench-{tag}-{}", std::process::id())
}

fn time(ops: u64, f: impl FnOnce() -> Result<(), String>) -> Result<f64, String> {
    let t0 = Instant::now();
    f()?;
    Ok(t0.elapsed().as_nanos() as f64 / ops as f64)
}

/// CPython's ns/op for `with v.get_lock(): v.value += 1` on `Value('q')` and for one element
/// read or write (`a[i] = a[i] + 1.0`: two operations) on `Array('d', 1024)`, with the
/// interpreter's version; `None` if the CPython rows are skipped ([`CPython::run`]).
fn cpython(py: &mut CPython, n: u64) -> Result<Option<(String, f64, f64)>, String> {
    let script = r#"
import multiprocessing as mp, sys, time
n = int(sys.argv[1])
v = mp.Value('q', 0)
t0 = time.perf_counter()
for _ in range(n):
    with v.get_lock():
        v.value += 1
inc = (time.perf_counter() - t0) / n * 1e9
a = mp.Array('d', 1024)
t0 = time.perf_counter()
for i in range(n):
    j = i & 1023
    a[j] = a[j] + 1.0
gs = (time.perf_counter() - t0) / (2 * n) * 1e9
assert v.value == n
print(sys.version.split()[0], inc, gs)
"#;
    py.run("the Value/Array script", script, &[n.to_string()], |s| {
        let mut it = s.split_whitespace();
        let ver = it.next()?.to_owned();
        let inc = it.next()?.parse().ok()?;
        let gs = it.next()?.parse().ok()?;
        Some((ver, inc, gs))
    })
}

/// The seqlock writer peer: rewrites the 64-byte value `[k; 8]` at full speed until killed.
pub(crate) fn peer_writer(name: &str) -> CmdResult {
    let v = Value::<[u64; 8]>::open(name).map_err(|e| e.to_string())?;
    outln!("ready")?;
    for k in 1u64.. {
        v.set([k; 8]).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn fmt_e(e: shmkit::Error) -> String {
    e.to_string()
}

/// The modules the CPython rows import (beyond `sys` and `time`).
const PY_MODULES: [&str; 3] = [
    "ctypes",
    "multiprocessing.sharedctypes",
    "multiprocessing.synchronize",
];

pub(crate) fn run(quick: bool, json: bool, python: &PythonArg) -> CmdResult {
    let n: u64 = if quick { 100_000 } else { 2_000_000 };
    let py_n: u64 = if quick { 20_000 } else { 200_000 };
    let mut rows = Vec::new();
    let mut py = CPython::find("cells", python, &PY_MODULES)?;
    let (ver, py_inc, py_gs) = match cpython(&mut py, py_n)? {
        Some((v, i, g)) => (Some(v), Some(i), Some(g)),
        None => (None, None, None),
    };
    let ver = ver.unwrap_or_else(|| "?".into());
    if let (Some(i), Some(g)) = (py_inc, py_gs) {
        rows.push(Row {
            name: format!("cpython{ver}_value_q_locked_increment"),
            ops: py_n,
            ns_per_op: i,
            speedup_vs_cpython: None,
        });
        rows.push(Row {
            name: format!("cpython{ver}_array_d_get_set"),
            ops: 2 * py_n,
            ns_per_op: g,
            speedup_vs_cpython: None,
        });
    }
    let vs = |py: Option<f64>, ns: f64| py.map(|p| p / ns);

    // Floors of the same run: an uncontended robust lock/unlock (the lock every locked call
    // takes) and a bare SeqCst fetch_add (what an atomic cell's fetch_add compiles to).
    let lock = shmkit::sync::LockState::new();
    let ns = time(n, || {
        for _ in 0..n {
            drop(lock.lock().map_err(|e| e.without_guard().to_string())?);
        }
        Ok(())
    })?;
    rows.push(Row {
        name: "floor_robust_lock_unlock (heap)".into(),
        ops: n,
        ns_per_op: ns,
        speedup_vs_cpython: vs(py_inc, ns),
    });
    let name = unique("cell-lockfloor");
    let v = Value::<i64>::options()
        .unlink_on_drop(true)
        .create(&name, 0)
        .map_err(fmt_e)?;
    let ns = time(n, || {
        for _ in 0..n {
            drop(v.lock().map_err(|e| e.without_guard().to_string())?);
        }
        Ok(())
    })?;
    rows.push(Row {
        name: "floor_value_lock_unlock (the cell's lock)".into(),
        ops: n,
        ns_per_op: ns,
        speedup_vs_cpython: vs(py_inc, ns),
    });
    drop(v);
    let atom = std::hint::black_box(Box::new(std::sync::atomic::AtomicI64::new(0)));
    let ns = time(n, || {
        for _ in 0..n {
            // SeqCst: the ordering of an atomic cell's `inc` (`RawCell::atomic_at`), whose
            // cost this row is the floor of; nothing pairs with it.
            std::hint::black_box(atom.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        }
        Ok(())
    })?;
    rows.push(Row {
        name: "floor_atomic_fetch_add".into(),
        ops: n,
        ns_per_op: ns,
        speedup_vs_cpython: vs(py_inc, ns),
    });

    // Locked increment: one lock, read, write, unlock.
    let name = unique("cell-locked");
    let v = Value::<i64>::options()
        .unlink_on_drop(true)
        .create(&name, 0)
        .map_err(fmt_e)?;
    let ns = time(n, || {
        for _ in 0..n {
            v.update(|x| x + 1).map_err(fmt_e)?;
        }
        Ok(())
    })?;
    if v.get().map_err(fmt_e)? != n as i64 {
        return Err("locked increment lost updates".into());
    }
    rows.push(Row {
        name: "value_i64_locked_increment".into(),
        ops: n,
        ns_per_op: ns,
        speedup_vs_cpython: vs(py_inc, ns),
    });
    drop(v);

    let name = unique("cell-atomic");
    let v = Value::<i64>::options()
        .cell_mode(CellMode::Atomic)
        .unlink_on_drop(true)
        .create(&name, 0)
        .map_err(fmt_e)?;
    let ns = time(n, || {
        for _ in 0..n {
            v.fetch_add(1).map_err(fmt_e)?;
        }
        Ok(())
    })?;
    rows.push(Row {
        name: "value_i64_atomic_fetch_add".into(),
        ops: n,
        ns_per_op: ns,
        speedup_vs_cpython: vs(py_inc, ns),
    });
    drop(v);

    // Array element get/set, locked (each call takes the lock, as CPython's do).
    let name = unique("cell-array");
    let a = Array::<f64>::options()
        .unlink_on_drop(true)
        .create(&name, 1024)
        .map_err(fmt_e)?;
    let ns = time(2 * n, || {
        for i in 0..n as usize {
            let j = i & 1023;
            a.set(j, a.get(j).map_err(fmt_e)? + 1.0).map_err(fmt_e)?;
        }
        Ok(())
    })?;
    rows.push(Row {
        name: "array_f64_locked_get_set".into(),
        ops: 2 * n,
        ns_per_op: ns,
        speedup_vs_cpython: vs(py_gs, ns),
    });
    drop(a);

    // Seqlock read of 64 bytes while another process writes at full speed.
    let name = unique("cell-seq");
    let v = Value::<[u64; 8]>::options()
        .cell_mode(CellMode::Seqlock)
        .unlink_on_drop(true)
        .create(&name, [0; 8])
        .map_err(fmt_e)?;
    let (peer, _out) = crate::bench::spawn_peer("cell_seqlock_writer", 64, 0, &name, &[])?;
    // Wait until the writer is writing.
    let t0 = Instant::now();
    while v.get().map_err(fmt_e)?[0] == 0 {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("the seqlock writer did not start".into());
        }
        std::thread::yield_now();
    }
    let (s0, mut torn) = (v.sequence(), 0u64);
    let ns = time(n, || {
        for _ in 0..n {
            let x = v.get().map_err(fmt_e)?;
            torn += u64::from(x.iter().any(|&e| e != x[0]));
        }
        Ok(())
    })?;
    let writes = (v.sequence() - s0) / 2;
    drop(peer); // kills the writer
    if torn != 0 {
        return Err(format!("{torn} torn seqlock reads").into());
    }
    rows.push(Row {
        name: format!("value_64B_seqlock_read_under_writer ({writes} writes)"),
        ops: n,
        ns_per_op: ns,
        speedup_vs_cpython: None,
    });

    if json {
        return print_json(&serde_json::json!({ "results": rows, "cpython": py.report() }));
    }
    outln!(
        "{:<52} {:>10} {:>10} {:>12}",
        "row",
        "ops",
        "ns/op",
        "x CPython"
    )?;
    for r in &rows {
        let x = r
            .speedup_vs_cpython
            .map_or("-".to_string(), |x| format!("{x:.0}x"));
        outln!(
            "{:<52} {:>10} {:>10.1} {:>12}",
            r.name,
            r.ops,
            r.ns_per_op,
            x
        )?;
    }
    Ok(())
}
