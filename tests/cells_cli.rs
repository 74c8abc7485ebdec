//! `shmkit value …` / `shmkit array …` and `shmkit info` on cells; a CPython process reading a
//! shmkit Array with `struct` at the documented `data_offset` (no numpy needed).

mod common;

use std::process::{Command, Output};

use common::{python, pythons, unique_name, Cleanup};
use shmkit::cell::{Array, Value};

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run shmkit")
}

fn ok(args: &[&str]) -> String {
    let o = shmkit(args);
    assert!(
        o.status.success(),
        "shmkit {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Exit 1 with a message containing each of `want`.
fn fails(args: &[&str], want: &[&str]) {
    let o = shmkit(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "shmkit {args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "shmkit {args:?}: {err:?} lacks {w:?}");
    }
}

#[test]
fn value_verbs_round_trip_and_refuse_what_does_not_fit() {
    let n = unique_name("cli-val");
    let _c = Cleanup::new(&[&n]);
    ok(&["value", "create", &n, "q", "-5"]);
    assert_eq!(ok(&["value", "get", &n]), "-5\n");
    ok(&["value", "set", &n, "-9223372036854775808"]);
    assert_eq!(Value::<i64>::open(&n).unwrap().get().unwrap(), i64::MIN);
    fails(
        &["value", "set", &n, "9223372036854775808"],
        &["Value<q>", "'q'", "does not fit"],
    );
    assert_eq!(ok(&["value", "get", &n]), "-9223372036854775808\n"); // nothing written
    fails(&["array", "get", &n], &["holds Value<q>", "asked for"]);

    let c = unique_name("cli-valc");
    let _c2 = Cleanup::new(&[&c]);
    // INIT and TYPECODE are both on the command line: a usage error (exit 2).
    let o = shmkit(&["value", "create", &c, "c", "ab"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("'c'") && err.contains("one byte"), "{err}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{c}")).exists());
    ok(&["value", "create", &c, "c", "x", "--cell-mode", "atomic"]);
    assert_eq!(ok(&["value", "get", &c]), "x\n");
    fails(&["value", "set", &c, "xy"], &["Value<c>", "one byte"]);
    // A byte `get` prints escaped (not printable ASCII) is set back in that form.
    ok(&["value", "set", &c, "\\x00"]);
    assert_eq!(ok(&["value", "get", &c]), "\\x00\n");
    ok(&["value", "set", &c, "\\xff"]);
    assert_eq!(ok(&["value", "get", &c]), "\\xff\n");
    let a = unique_name("cli-arrc");
    let _c3 = Cleanup::new(&[&a]);
    ok(&["array", "create", &a, "c", "3"]);
    ok(&["array", "set", &a, "0", "\\x01", "\\", "b"]);
    assert_eq!(ok(&["array", "get", &a]), "\\x01\n\\\nb\n");
    let o = shmkit(&["value", "create", &unique_name("cli-bad"), "z"]);
    assert_eq!(o.status.code(), Some(2), "a bad typecode is a usage error");
}

#[test]
fn array_verbs_and_info() {
    let n = unique_name("cli-arr");
    let _c = Cleanup::new(&[&n]);
    ok(&["array", "create", &n, "d", "4", "--cell-mode", "seqlock"]);
    ok(&["array", "set", &n, "2", "1.5"]);
    assert_eq!(ok(&["array", "get", &n]), "0\n0\n1.5\n0\n");
    assert_eq!(ok(&["array", "get", &n, "1:3"]), "0\n1.5\n");
    assert_eq!(ok(&["array", "get", &n, "2"]), "1.5\n");
    fails(
        &["array", "set", &n, "4", "1"],
        &["out of range", "Array<d>[4]"],
    );
    fails(
        &["array", "get", &n, "3:9"],
        &["out of range", "Array<d>[4]"],
    );
    fails(&["array", "set", &n, "0", "abc"], &["Array<d>[4]", "'d'"]);
    fails(
        &["value", "get", &n],
        &["holds Array<d>[4], asked for a value"],
    );
    assert_eq!(
        Array::<f64>::open(&n).unwrap().read(0..4).unwrap(),
        vec![0.0, 0.0, 1.5, 0.0]
    );

    let info: serde_json::Value = serde_json::from_str(&ok(&["info", "--json", &n])).unwrap();
    let st = &info["state"];
    assert_eq!(st["data_offset"], 320);
    assert_eq!(st["typecode"], "d");
    assert_eq!(st["len"], 4);
    assert_eq!(st["mode"], "seqlock");
    assert_eq!(st["lock"]["locked"], false);
    // The one-line summary, as for a sync object (`info.rs`'s `summarized`).
    assert!(
        st["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Array<d>[4], seqlock mode")),
        "{st}"
    );
    let text = ok(&["info", &n]);
    assert!(
        text.contains("Array<d>[4], seqlock mode, lock unlocked"),
        "{text}"
    );

    // A held lock shows its holder.
    let l = unique_name("cli-arrl");
    let _c2 = Cleanup::new(&[&l]);
    let a = Array::<i32>::create(&l, 2).unwrap();
    let g = a.lock().unwrap();
    let text = ok(&["info", &l]);
    assert!(
        text.contains(&format!("locked by pid {}", std::process::id())),
        "{text}"
    );
    drop(g);
}

/// CPython (no numpy) reads and writes a shmkit Array<d> through `SharedMemory(name).buf`
/// at `data_offset`, with the resource-tracker opt-out of the README.
#[test]
fn cpython_reads_an_array_with_struct_at_data_offset() {
    let n = unique_name("cli-py");
    let _c = Cleanup::new(&[&n]);
    let a = Array::<f64>::create_from(&n, &[1.5, -2.0, 3.25, 1e300]).unwrap();
    let script = r#"
import struct, sys
from multiprocessing import shared_memory, resource_tracker
name, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if sys.version_info >= (3, 13):
    shm = shared_memory.SharedMemory(name=name, track=False)
else:
    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")
vals = struct.unpack_from("<%dd" % n, shm.buf, off)
print(" ".join(repr(v) for v in vals))
struct.pack_into("<d", shm.buf, off + 8, 42.0)
shm.close()
"#;
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", "--json", &n])).unwrap();
    let off = info["state"]["data_offset"].to_string();
    for py in pythons() {
        let out = python(&py, script, &[&n, &off, "4"]);
        assert_eq!(out.trim(), "1.5 -2.0 3.25 1e+300", "{py}");
        assert_eq!(a.get(1).unwrap(), 42.0, "{py}");
        a.set(1, -2.0).unwrap();
        // The tracker opt-out kept the segment.
        assert!(Array::<f64>::open(&n).is_ok(), "{py} unlinked it");
    }
}

/// A locked-mode cell whose holder died is repairable (SPEC §10.5: a whole-value `set`
/// repairs it). `shmkit value get` and `array get`/`set` (an element), which cannot repair it,
/// took the lock, got `OwnerDied` and dropped the guard unrepaired, leaving the cell not
/// recoverable for every process for ever, so the `set` that would have repaired it failed.
/// Now they fail saying so and leave the lock for a repair. (From the CLI review.)
#[test]
fn reading_a_cell_whose_holder_died_leaves_it_repairable() {
    let v = unique_name("cli-died-val");
    let a = unique_name("cli-died-arr");
    let _c = Cleanup::new(&[&v, &a]);
    Value::<i64>::create(&v, 7).unwrap();
    Array::<i64>::create(&a, 3).unwrap();
    // A process takes each cell's lock and dies holding it.
    let code = common::fork_and(|| {
        let val = Value::<i64>::open(&v).unwrap();
        std::mem::forget(val.lock().map_err(|_| ()).unwrap());
        let arr = Array::<i64>::open(&a).unwrap();
        std::mem::forget(arr.lock().map_err(|_| ()).unwrap());
        0
    });
    assert_eq!(code, 0);
    for _ in 0..2 {
        fails(
            &["value", "get", &v, "--timeout", "5"],
            &["died holding it", "repair"],
        );
        fails(
            &["array", "get", &a, "--timeout", "5"],
            &["died holding it"],
        );
        fails(
            &["array", "set", &a, "1", "5", "--timeout", "5"],
            &["died holding it"],
        );
    }
    // The repair SPEC §10.5 promises still works.
    ok(&["value", "set", &v, "9", "--timeout", "5"]);
    assert_eq!(ok(&["value", "get", &v, "--timeout", "5"]).trim(), "9");
    // An array: every element set at once (from index 0) is a whole-array write.
    fails(
        &["array", "set", &a, "1", "5", "6", "--timeout", "5"],
        &["died holding it"],
    );
    fails(
        &["array", "set", &a, "0", "1", "2", "3", "4"],
        &["out of range"],
    );
    ok(&["array", "set", &a, "0", "1", "2", "3", "--timeout", "5"]);
    assert_eq!(ok(&["array", "get", &a, "--timeout", "5"]), "1\n2\n3\n");
    ok(&["array", "set", &a, "1", "-5", "6"]);
    assert_eq!(ok(&["array", "get", &a]), "1\n-5\n6\n");
}

/// Double-fetch review: an array's length is its creator's choice (up to 2^40 bytes in a
/// sparse object), and reading the whole of one allocated it infallibly: `shmkit array get`
/// of a 1 TiB sparse `Array<q>` aborted ("memory allocation of 1099511627776 bytes failed",
/// exit 134). Every read sized by the array's length now asks the allocator first and fails
/// with an error. (The library side runs in the CLI's process here, so an abort cannot take
/// this test binary's cleanup with it.)
#[test]
fn reading_an_array_larger_than_memory_is_an_error_not_an_abort() {
    let n = unique_name("cli-huge");
    let _c = Cleanup::new(&[&n]);
    let len = 1usize << 37; // 1 TiB of i64, nothing of it resident
                            // Atomic mode: the read-only path below reads without the lock.
    let a = Array::<i64>::options()
        .cell_mode(shmkit::cell::CellMode::Atomic)
        .sparse(true)
        .create(&n, len)
        .unwrap();
    a.set(len - 1, 7).unwrap();
    assert_eq!(
        ok(&["array", "get", &n, &(len - 1).to_string()]).trim(),
        "7"
    );
    fails(
        &["array", "get", &n],
        &["cannot allocate", "private memory"],
    );
    // A read-only reader (the CLI's path for a user without write permission) the same way.
    let ro = shmkit::cell::ReadOnlyCell::open(&n).unwrap().unwrap();
    let e = ro
        .read(0, len, std::time::Duration::from_secs(5))
        .unwrap_err();
    assert!(e.to_string().contains("cannot allocate"), "{e}");
    let e = a.read(0..len).unwrap_err();
    assert!(e.to_string().contains("cannot allocate"), "{e}");
}

/// New-user walkthrough: `list get L -1` takes a negative index, `array get A -1` said
/// "unexpected argument '-1'" (and after `--`, "invalid digit found in string"). Array
/// indices count from the end when negative, as Python's and `list`'s do, for get (an
/// index, either end of a range) and set; before the start is an error saying so.
#[test]
fn array_indices_count_from_the_end_when_negative() {
    let a = unique_name("cli-arrneg");
    let _c = Cleanup::new(&[&a]);
    ok(&["array", "create", &a, "i", "4"]);
    ok(&["array", "set", &a, "0", "10", "11", "12", "13"]);
    assert_eq!(ok(&["array", "get", &a, "-1"]), "13\n");
    assert_eq!(ok(&["array", "get", &a, "-4"]), "10\n");
    assert_eq!(ok(&["array", "get", &a, "-3:"]), "11\n12\n13\n");
    assert_eq!(ok(&["array", "get", &a, "1:-1"]), "11\n12\n");
    assert_eq!(
        ok(&["array", "get", &a, "--timeout", "5", ":-2"]),
        "10\n11\n"
    );
    ok(&["array", "set", &a, "-2", "-7", "-8"]);
    assert_eq!(ok(&["array", "get", &a, "2:"]), "-7\n-8\n");
    fails(
        &["array", "get", &a, "-5"],
        &["index -5", "before the start"],
    );
    fails(
        &["array", "set", &a, "-5", "1"],
        &["index -5", "before the start"],
    );
    let o = shmkit(&["array", "get", &a, "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad index \"x\""));
}
