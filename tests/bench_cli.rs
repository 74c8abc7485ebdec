//! `shmkit bench`: the rows and fields it reports, and its errors. Smoke runs (`--quick`);
//! the figures themselves are judged in BENCHMARKS.md, never here.

mod common;

use std::process::{Command, Output};

/// Held by every test that runs spinning benchmark rows, across the test processes (nextest
/// runs each test in its own): two such runs at once put four spinning processes on this
/// machine's two CPUs, and each round trip then waits for the scheduler (a 4 s run took
/// 3 min beside another). An exclusive `flock` on a file in the target directory, released
/// when the guard (the open file) drops.
fn spinning() -> std::fs::File {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench_cli.spinning.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
    f
}

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run shmkit")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "shmkit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// One latency row as `--json` reports it.
#[derive(Debug)]
struct Row {
    name: String,
    bytes: u64,
    iters: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    floor: String,
    ratio: f64,
}

fn row(r: &serde_json::Value) -> Row {
    let int = |k: &str| {
        r[k].as_u64()
            .unwrap_or_else(|| panic!("{k} missing or not an integer in {r}"))
    };
    let text = |k: &str| {
        r[k].as_str()
            .unwrap_or_else(|| panic!("{k} missing or not a string in {r}"))
            .to_owned()
    };
    Row {
        name: text("name"),
        bytes: int("bytes"),
        iters: int("iters"),
        p50: int("p50_ns"),
        p99: int("p99_ns"),
        p999: int("p999_ns"),
        floor: text("floor"),
        ratio: r["ratio_p50"]
            .as_f64()
            .unwrap_or_else(|| panic!("ratio_p50 missing in {r}")),
    }
}

#[test]
fn latency_runs_the_chosen_rows_beside_their_floors() {
    let _spinning = spinning();
    let out = shmkit(&[
        "bench",
        "latency",
        "--quick",
        "--json",
        "--only",
        "spsc_spin,bytes_spin,bytes_block",
        "--sizes",
        "8,64",
    ]);
    let v = json(&out);
    let rows: Vec<Row> = v["results"]
        .as_array()
        .expect("results array")
        .iter()
        .map(row)
        .collect();
    // Exactly the rows asked for, each with the floor it is compared with, floors first.
    let got: Vec<(&str, u64, &str)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.bytes, r.floor.as_str()))
        .collect();
    let want = [
        ("floor_spin", 8, "floor_spin"),
        ("floor_futex", 8, "floor_futex"),
        ("spsc_spin", 8, "floor_spin"),
        ("spsc_spin", 64, "floor_spin"),
        ("bytes_spin", 8, "floor_spin"),
        ("bytes_spin", 64, "floor_spin"),
        ("bytes_block", 8, "floor_futex"),
        ("bytes_block", 64, "floor_futex"),
    ];
    assert_eq!(got, want);
    for r in &rows {
        // Every row measured something, and its percentiles are in order (a swapped or
        // unfilled field fails here).
        assert!(r.iters > 0 && r.p50 > 0, "{r:?}");
        assert!(r.p50 <= r.p99 && r.p99 <= r.p999, "{r:?}");
        // The ratio is this row's p50 over the p50 of the floor row of this very run.
        let floor = rows
            .iter()
            .find(|f| f.name == r.floor)
            .unwrap_or_else(|| panic!("{}: its floor {} is not in the run", r.name, r.floor));
        let want = r.p50 as f64 / floor.p50 as f64;
        assert!(
            (r.ratio - want).abs() <= 1e-9 * want,
            "{}: ratio {} is not {} / {} from this run",
            r.name,
            r.ratio,
            r.p50,
            floor.p50
        );
        if r.name == r.floor {
            assert_eq!(r.ratio, 1.0, "a floor's ratio to itself");
        }
    }
}

#[test]
fn unknown_rows_and_sizes_are_usage_errors() {
    for args in [
        &["bench", "latency", "--only", "nope"][..],
        &["bench", "latency", "--sizes", "9"][..],
        &["bench", "frames", "--only", "nope"][..],
    ] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
    }
}

#[test]
fn throughput_reports_messages_per_second() {
    let _spinning = spinning();
    let v = json(&shmkit(&["bench", "throughput", "--quick", "--json"]));
    let names: Vec<&str> = v["results"]
        .as_array()
        .expect("results array")
        .iter()
        .map(|r| {
            let (msgs, rate) = (
                r["messages"].as_u64().unwrap(),
                r["msgs_per_s"].as_f64().unwrap(),
            );
            assert!(msgs > 0 && rate > 0.0, "{r}");
            // GB/s is the same run's message rate times the message size.
            let gb = rate * r["bytes"].as_u64().unwrap() as f64 / 1e9;
            assert!(
                (r["gb_per_s"].as_f64().unwrap() - gb).abs() <= 1e-9 * gb.max(1e-9),
                "{r}"
            );
            r["name"].as_str().unwrap()
        })
        .collect();
    // The CPython rows of the same run, under the `python3` that `cpython` names.
    let ver = v["cpython"]["version"].as_str().expect("cpython.version");
    let (mp, mp2) = (
        format!("cpython{ver}_mp_queue_int"),
        format!("cpython{ver}_mp_queue_2p2c"),
    );
    for want in [
        "spsc_u64",
        "spsc_u64_batched",
        "bytes_ring",
        "mpmc_bytes_2p2c",
        &mp,
        &mp2,
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}

#[test]
fn frames_only_publish_runs_the_publish_rows_and_their_goal() {
    let _spinning = spinning();
    let v = json(&shmkit(&[
        "bench", "frames", "--quick", "--json", "--only", "publish",
    ]));
    let rows = v["results"].as_array().expect("results array");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["frames_publish_1sub", "frames_publish_8sub"]);
    for r in rows {
        // --quick: 2 rounds of one 50-publish block per row, pooled.
        assert_eq!(r["iters"].as_u64(), Some(100), "{r}");
        assert_eq!(r["bytes"].as_u64(), Some(65536), "{r}");
        let (p50, p99) = (r["p50_ns"].as_u64().unwrap(), r["p99_ns"].as_u64().unwrap());
        assert!(p50 > 0 && p50 <= p99, "{r}");
    }
    // The goals whose rows did not run are left out; the publish goal is the ratio of the
    // two rows' p50s.
    let goals = v["goals"].as_array().expect("goals array");
    assert_eq!(goals.len(), 1, "{goals:?}");
    let g = &goals[0];
    assert!(g["goal"].as_str().unwrap().contains("frames_publish_8sub"));
    let ratio = rows[1]["p50_ns"].as_f64().unwrap() / rows[0]["p50_ns"].as_f64().unwrap();
    assert!((g["value"].as_f64().unwrap() - ratio).abs() < 1e-9, "{g}");
    assert_eq!(g["met"].as_bool(), Some(ratio <= 2.0), "{g}");
}

/// `bench frames` times the frames round trip on bare atomics beside the library's
/// (`floor_frames_8388608`) and the whole loan-to-release cycle (`frames_cycle_8388608`), and
/// prints their ratios as `info`, not as goals.
#[test]
fn frames_floor_row_and_its_info_ratio() {
    let _spinning = spinning();
    let v = json(&shmkit(&[
        "bench", "frames", "--quick", "--json", "--only", "frames",
    ]));
    let rows = v["results"].as_array().expect("results array");
    let p50 = |name: &str, bytes: u64| {
        let r = rows
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {rows:?}"));
        assert_eq!(r["bytes"].as_u64(), Some(bytes), "{r}");
        r["p50_ns"].as_f64().unwrap()
    };
    let big = 8 << 20;
    let lib = p50("frames_8388608", big);
    let floor = p50("floor_frames_8388608", big);
    assert!(floor > 0.0, "{rows:?}");
    // The whole loan-to-release cycle is a row of its own, compared with `spsc_spin`.
    let (cycle, spsc) = (p50("frames_cycle_8388608", big), p50("spsc_spin", 8));
    let info = v["info"].as_array().expect("info array");
    assert_eq!(info.len(), 2, "{info:?}");
    for (i, (names, value)) in [
        ("floor_frames_8388608", lib / floor),
        ("frames_cycle_8388608", cycle / spsc),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            info[i]["info"].as_str().unwrap().contains(names),
            "{info:?}"
        );
        assert!(
            (info[i]["value"].as_f64().unwrap() - value).abs() < 1e-9,
            "{info:?}"
        );
    }
    // Not a goal: the goals are the four of the issue, whichever rows ran.
    let goals = v["goals"].as_array().expect("goals array");
    assert!(goals
        .iter()
        .all(|g| !g["goal"].as_str().unwrap().contains("floor")));
}

/// Review finding: the hidden `bench-peer` verb (the peer process `shmkit bench` starts)
/// panicked or aborted on a bad command line (a segment too small for the floors' words,
/// missing descriptors, `-1`, a 1 TiB buffer) and took descriptors 1 and 2 for its pipe,
/// closing standard output and error. Each is now a one-line error, and the descriptors it
/// takes must be open and above 2.
#[test]
fn bench_peer_refuses_a_bad_command_line_without_a_panic() {
    let small = common::unique_name("bench-peer-small");
    let floor = common::unique_name("bench-peer-floor");
    let (floor_a, floor_b) = (format!("{floor}-a"), format!("{floor}-b"));
    let _c = common::Cleanup::new(&[&small, &floor_a, &floor_b]);
    for n in [&small, &floor_a, &floor_b] {
        assert!(shmkit(&["create", n, "--size", "8"]).status.success());
    }
    // Through `sh`, with descriptor 5 open (on /dev/null) and 7 closed.
    let sh = |args: &str| {
        Command::new("sh")
            .args([
                "-c",
                &format!("exec 5</dev/null 7>&-; exec \"$0\" bench-peer {args}"),
            ])
            .arg(env!("CARGO_BIN_EXE_shmkit"))
            .output()
            .expect("run sh")
    };
    let cases: [(String, i32, &str); 10] = [
        (format!("floor_spin 8 1 {small}"), 1, "outside"),
        (format!("frames_floor 8 1 {floor}"), 1, "are not"),
        (format!("frames_floor 12 1 {floor}"), 1, "whole words"),
        (format!("floor_futex 8 1 {small}"), 1, "outside"),
        ("pipe 8 1 x".into(), 1, "two descriptors"),
        ("pipe 8 0 x -- -1 -1".into(), 1, "above 2"),
        ("pipe 8 0 x 1 2".into(), 1, "above 2"),
        ("pipe 8 0 x 5 7".into(), 1, "descriptor 7"),
        (
            "pipe 1099511627776 1 x 5 6".into(),
            2,
            "more than a peer handles",
        ),
        ("tput_mpmcb_producer 4 1 x".into(), 1, "8-byte"),
    ];
    let mut wrong = Vec::new();
    for (args, code, says) in &cases {
        let out = sh(args);
        let err = String::from_utf8_lossy(&out.stderr);
        // The error on stderr, which is still open (a peer that took descriptor 2 could not
        // say anything): one line, or clap's usage text (exit 2); nothing on stdout (no
        // "ready").
        if out.status.code() != Some(*code)
            || !err.contains(says)
            || (*code == 1 && err.lines().count() != 1)
            || !out.stdout.is_empty()
        {
            wrong.push(format!("bench-peer {args}: {}, stderr {err:?}", out.status));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // One open descriptor given twice is the socket form (read and write on one end).
    let out = sh("pipe 8 0 x 5 5");
    assert!(
        out.status.success() && out.stdout == b"ready\n",
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `shmkit` with `env` set (the bench's CPython side sees it).
fn shmkit_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run shmkit")
}

/// New-user walkthrough: every group's `--json` is one envelope, `{"results": [...]}` (plus
/// `goals`/`info` for frames, `cpython` for the groups with CPython rows); `cells` printed a
/// bare array and `list` `{"rows": [...]}` with other field names. `cells` and `list` rows
/// are alike: `name`, `ops`, `ns_per_op`, and on shmkit's rows `speedup_vs_cpython` over
/// CPython's rows of the same run.
#[test]
fn cells_and_list_json_is_the_results_envelope_with_their_cpython_rows() {
    let _spinning = spinning();
    for (group, ours, theirs) in [
        (
            "cells",
            "value_i64_locked_increment",
            "_value_q_locked_increment",
        ),
        ("list", "get_int", "_get_int"),
    ] {
        let v = json(&shmkit(&["bench", group, "--quick", "--json"]));
        let py = &v["cpython"];
        assert_eq!(py["python"], "python3", "{group}: {v}");
        let ver = py["version"]
            .as_str()
            .unwrap_or_else(|| panic!("{group}: {v}"));
        assert!(py["skipped"].is_null(), "{group}: {v}");
        let rows = v["results"].as_array().expect("results array");
        let find = |name: &str| {
            rows.iter()
                .find(|r| r["name"] == name)
                .unwrap_or_else(|| panic!("{group}: {name} missing from {rows:?}"))
        };
        for r in rows {
            assert!(r["ops"].as_u64().unwrap() > 0, "{group}: {r}");
            assert!(r["ns_per_op"].as_f64().unwrap() > 0.0, "{group}: {r}");
        }
        let (ours, theirs) = (find(ours), find(&format!("cpython{ver}{theirs}")));
        let speedup = theirs["ns_per_op"].as_f64().unwrap() / ours["ns_per_op"].as_f64().unwrap();
        let got = ours["speedup_vs_cpython"].as_f64().unwrap();
        assert!(
            (got - speedup).abs() <= 1e-9 * speedup,
            "{group}: {ours} {theirs}"
        );
    }
}

/// New-user walkthrough: `cells` and `throughput` ran `python3` whatever it was and skipped
/// the CPython rows silently when it was missing; `list` failed. Every group with CPython
/// rows now says on stderr, in one line, what is missing and that those rows are skipped
/// (and `cpython.skipped` in the JSON), and still runs its own rows.
#[test]
fn a_missing_or_unfit_python3_skips_the_cpython_rows_with_a_notice() {
    let _spinning = spinning();
    let dir = std::env::temp_dir().join(common::unique_name("bench-py"));
    // A `multiprocessing` that is only an empty package: the real interpreter then lacks
    // `multiprocessing.shared_memory` and the rest.
    std::fs::create_dir_all(dir.join("fake/multiprocessing")).unwrap();
    std::fs::write(dir.join("fake/multiprocessing/__init__.py"), "").unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let (fake, empty) = (dir.join("fake"), dir.join("empty"));
    let cases = [
        ("PATH", empty.as_os_str(), "python3 not found"),
        (
            "PYTHONPATH",
            fake.as_os_str(),
            "python3 lacks a module the CPython rows need (No module named 'multiprocessing.",
        ),
    ];
    for (group, only) in [
        ("cells", None),
        ("list", None),
        ("throughput", Some("spsc")),
    ] {
        for &(var, value, says) in &cases {
            let mut args = vec!["bench", group, "--quick", "--json"];
            args.extend(only.map(|o| ["--only", o]).into_iter().flatten());
            let out = shmkit_env(&args, &[(var, value)]);
            let v = json(&out);
            // One line: what is missing, and that the CPython rows are skipped; the JSON
            // says the same.
            let err = String::from_utf8_lossy(&out.stderr);
            let why = err
                .strip_prefix(&format!("shmkit bench {group}: "))
                .and_then(|e| e.strip_suffix(": the CPython rows are skipped\n"));
            assert!(
                err.lines().count() == 1 && why.is_some_and(|w| w.starts_with(says)),
                "{group} with {var}: {err}"
            );
            assert_eq!(
                v["cpython"]["skipped"].as_str(),
                why,
                "{group} with {var}: {v}"
            );
            let rows = v["results"].as_array().expect("results array");
            assert!(!rows.is_empty(), "{group} with {var}");
            for r in rows {
                let name = r["name"].as_str().unwrap();
                assert!(!name.starts_with("cpython"), "{group} with {var}: {r}");
                assert!(
                    r.get("speedup_vs_cpython").is_none(),
                    "{group} with {var}: {r}"
                );
            }
        }
    }
    // Text output: the rows on stdout, the same notice on stderr.
    let out = shmkit_env(
        &["bench", "list", "--quick"],
        &[cases[0]].map(|(k, v, _)| (k, v)),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("get_int"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("python3 not found"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--python PATH`, now on every group with CPython rows, asks for those rows: a PATH that
/// cannot run them is an error (exit 1, one line naming it), before any row runs.
#[test]
fn an_explicit_python_that_cannot_run_the_cpython_rows_is_an_error() {
    let dir = std::env::temp_dir().join(common::unique_name("bench-pyx"));
    std::fs::create_dir_all(dir.join("multiprocessing")).unwrap();
    std::fs::write(dir.join("multiprocessing/__init__.py"), "").unwrap();
    for group in ["cells", "list", "throughput"] {
        for (python, env, says) in [
            (
                "/nonexistent/python9",
                None,
                "/nonexistent/python9 not found",
            ),
            ("python3", Some(dir.as_os_str()), "python3 lacks a module"),
        ] {
            let env: Vec<_> = env.map(|d| ("PYTHONPATH", d)).into_iter().collect();
            let out = shmkit_env(&["bench", group, "--quick", "--python", python], &env);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{group} --python {python}: {err}"
            );
            assert!(
                err.lines().count() == 1
                    && err.contains(says)
                    && err.contains("cannot run the CPython rows"),
                "{group} --python {python}: {err}"
            );
            assert!(out.stdout.is_empty(), "{group} --python {python}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Review: a `--python` that the selected rows never use was silently ignored.
    let out = shmkit_env(
        &[
            "bench",
            "throughput",
            "--quick",
            "--only",
            "bytes_ring",
            "--python",
            "/nonexistent/python9",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--python is for the CPython rows"), "{err}");
    assert!(out.stdout.is_empty());
}
