//! `shmkit bench`: the rows and fields it reports, and its errors. Smoke runs (`--quick`);
//! the figures themselves are judged in BENCHMARKS.md, never here.

use std::process::{Command, Output};

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

#[test]
fn latency_runs_the_chosen_rows_beside_their_floors() {
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
    let rows: Vec<(String, u64, String)> = v["results"]
        .as_array()
        .expect("results array")
        .iter()
        .map(|r| {
            for key in ["p50_ns", "p99_ns", "p999_ns", "iters", "ratio_p50"] {
                assert!(r[key].is_number(), "{key} missing in {r}");
            }
            assert!(r["p50_ns"].as_u64().unwrap() <= r["p99_ns"].as_u64().unwrap());
            assert!(r["p99_ns"].as_u64().unwrap() <= r["p999_ns"].as_u64().unwrap());
            (
                r["name"].as_str().unwrap().to_owned(),
                r["bytes"].as_u64().unwrap(),
                r["floor"].as_str().unwrap().to_owned(),
            )
        })
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
    let want: Vec<(String, u64, String)> = want
        .iter()
        .map(|(n, b, f)| (n.to_string(), *b, f.to_string()))
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn unknown_rows_and_sizes_are_usage_errors() {
    for args in [
        &["bench", "latency", "--only", "nope"][..],
        &["bench", "latency", "--sizes", "9"][..],
    ] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
    }
}

#[test]
fn throughput_reports_messages_per_second() {
    let v = json(&shmkit(&["bench", "throughput", "--quick", "--json"]));
    let names: Vec<&str> = v["results"]
        .as_array()
        .expect("results array")
        .iter()
        .map(|r| {
            assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
            r["name"].as_str().unwrap()
        })
        .collect();
    for want in ["spsc_u64", "spsc_u64_batched", "bytes_ring"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}
