//! `shmkit queue` with `--kind mpmc-bytes`, each verb a separate process, in every order.

mod common;

use std::process::Command;

use common::{unique_name, Cleanup};

fn shmkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run shmkit")
}

fn ok(args: &[&str]) -> String {
    let out = shmkit(args);
    assert!(
        out.status.success(),
        "shmkit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn create_push_pop_stat_ls_info_in_any_order() {
    let name = unique_name("climpmcb");
    let _c = Cleanup::new(&[&name]);
    ok(&[
        "queue",
        "create",
        &name,
        "--kind",
        "mpmc-bytes",
        "--capacity",
        "4096",
    ]);
    // pop before any push: times out (exit 1, one line on stderr).
    let out = shmkit(&["queue", "pop", &name, "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    // push, pop, push, push, pop, pop: each a new process attaching and leaving.
    ok(&["queue", "push", &name, "one"]);
    assert_eq!(ok(&["queue", "pop", &name, "--timeout", "10"]), "one");
    ok(&["queue", "push", &name, "two"]);
    ok(&["queue", "push", &name, "a somewhat longer third message"]);
    let st = shmkit(&["queue", "stat", &name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["kind"], "mpmc-bytes");
    assert_eq!(v["len_unit"], "bytes");
    assert_eq!(v["capacity"], 4096);
    assert_eq!(v["max_message"], 2048);
    assert_eq!(v["len"], 128, "two records of one 64-byte cell each");
    assert_eq!(v["producer_closed"], false);
    let text = ok(&["queue", "stat", &name]);
    assert!(
        text.contains("mpmc-bytes") && text.contains("bytes"),
        "{text}"
    );
    assert_eq!(ok(&["queue", "pop", &name, "--timeout", "10"]), "two");
    assert_eq!(
        ok(&["queue", "pop", &name, "--timeout", "10"]),
        "a somewhat longer third message"
    );
    let ls = ok(&["ls"]);
    assert!(
        ls.lines()
            .any(|l| l.contains(&name) && l.contains("mpmc-bytes")),
        "{ls}"
    );
    let info = shmkit(&["info", &name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["state"]["kind"], "mpmc-bytes");
}

#[test]
fn too_large_and_bad_capacity_are_errors() {
    let name = unique_name("climpmcbbad");
    let _c = Cleanup::new(&[&name]);
    let out = shmkit(&[
        "queue",
        "create",
        &name,
        "--kind",
        "mpmc-bytes",
        "--capacity",
        "1000",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "capacity not a power of two: a usage error"
    );
    ok(&[
        "queue",
        "create",
        &name,
        "--kind",
        "mpmc-bytes",
        "--capacity",
        "256",
    ]);
    let big = "x".repeat(129);
    let out = shmkit(&["queue", "push", &name, &big, "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("129") && err.contains("128"), "{err}");
    let out = shmkit(&[
        "queue",
        "create",
        &name,
        "--kind",
        "mpmc-bytes",
        "--capacity",
        "256",
    ]);
    assert_eq!(out.status.code(), Some(1), "exists");
}
