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

/// `queue pop` writes a message's exact bytes, then a newline: a message that is not text
/// (Python's `put_bytes`, here a pickle ending in a NUL) comes out as it went in. A
/// fixed-size element loses only its trailing zero padding, and is not converted either.
#[test]
fn pop_writes_the_exact_bytes_of_a_binary_message() {
    let name = unique_name("climpmcb-bin");
    let spsc = unique_name("climpmcb-bin-spsc");
    let _c = Cleanup::new(&[&name, &spsc]);
    let msg = b"\x80\x04K\x01.\0";
    let q = shmkit::queue::mpmc_bytes::Queue::create(&name, 4096).unwrap();
    q.producer().unwrap().try_push(msg).unwrap();
    let out = shmkit(&["queue", "pop", &name, "--timeout", "10"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, [&msg[..], b"\n"].concat());

    let s = shmkit::queue::spsc::Queue::<[u8; 8]>::create(&spsc, 4).unwrap();
    s.producer()
        .unwrap()
        .try_push(*b"\x80\xff\0a\0\0\0\0")
        .unwrap();
    let out = shmkit(&["queue", "pop", &spsc, "--timeout", "10"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"\x80\xff\0a\n");
    drop((q, s));
}
