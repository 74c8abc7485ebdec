//! The `shmkit queue` verbs, run as a separate process against the built binary.

mod common;

use std::process::Command;

use common::{unique_name, Cleanup};

fn shmkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run shmkit")
}

#[test]
fn create_push_pop_stat_for_each_kind() {
    for (kind, extra) in [
        ("spsc", "--elem-size=16"),
        ("mpmc", "--elem-size=16"),
        ("bytes-ring", "--elem-size=1"),
    ] {
        let name = unique_name(&format!("cli{kind}"));
        let _c = Cleanup::new(&[&name]);
        let cap = if kind == "bytes-ring" { "1024" } else { "8" };
        let out = shmkit(&[
            "queue",
            "create",
            &name,
            "--kind",
            kind,
            "--capacity",
            cap,
            extra,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(shmkit(&["queue", "push", &name, "hello"]).status.success());
        assert!(shmkit(&["queue", "push", &name, "world"]).status.success());
        let st = shmkit(&["queue", "stat", &name, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        assert_eq!(v["kind"], kind);
        assert!(v["len"].as_u64().unwrap() > 0);
        let out = shmkit(&["queue", "pop", &name, "--timeout", "10"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
        let out = shmkit(&["queue", "pop", &name, "--timeout", "10"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "world");
        // Empty: exit 1 after the timeout, one line on stderr.
        let out = shmkit(&["queue", "pop", &name, "--timeout", "0.2"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
        let info = shmkit(&["info", &name, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["state"]["kind"], kind);
    }
}

fn ok(args: &[&str]) -> String {
    let out = shmkit(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

/// The value of `key:` in `text` (the `name:   value` lines of `info` and `queue stat`).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// `--kind` takes exactly the queue kinds' names, and `queue create --kind K` makes a queue
/// that `ls`, `info` and `queue stat` (text and JSON) all call exactly `K`; `queue stat` says
/// whether its length counts messages or bytes.
#[test]
fn every_kind_name_round_trips() {
    let names: Vec<&str> = shmkit::Kind::QUEUES
        .iter()
        .map(|k| k.name().unwrap())
        .collect();
    assert_eq!(names, ["spsc", "mpmc", "bytes-ring", "mpmc-bytes"]);

    // The CLI lists exactly these (clap prints the possible values of a rejected one).
    let probe = unique_name("clikind-none");
    let out = shmkit(&[
        "queue",
        "create",
        &probe,
        "--kind",
        "nope",
        "--capacity",
        "8",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let listed = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("[possible values: "))
        .and_then(|l| l.strip_suffix(']'))
        .unwrap_or_else(|| panic!("no possible values in {err}"));
    assert_eq!(listed.split(", ").collect::<Vec<_>>(), names, "{err}");

    for kind in names {
        let name = unique_name("clikind");
        let _c = Cleanup::new(&[&name]);
        let (cap, unit) = match kind {
            "bytes-ring" | "mpmc-bytes" => ("1024", "bytes"),
            _ => ("8", "messages"),
        };
        ok(&["queue", "create", &name, "--kind", kind, "--capacity", cap]);
        ok(&["queue", "push", &name, "hello"]);

        // ls: the KIND column, and the JSON row.
        let ls = ok(&["ls"]);
        let row = ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not in {ls}"));
        assert_eq!(row.split_whitespace().nth(2), Some(kind), "{row}");
        let rows = json(&["ls", "--json"]);
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name.as_str())
            .unwrap();
        assert_eq!(row["kind"], kind);

        // info: the object's kind, the header's and the queue state's.
        let info = ok(&["info", &name]);
        assert_eq!(field(&info, "kind"), Some(kind), "{info}");
        assert_eq!(
            field(&info, "len_unit"),
            Some(&*format!("\"{unit}\"")),
            "{info}"
        );
        let info = json(&["info", &name, "--json"]);
        assert_eq!(info["kind"], kind);
        assert_eq!(info["header"]["kind"], kind);
        assert_eq!(info["state"]["kind"], kind);
        assert_eq!(info["state"]["len_unit"], unit);

        // queue stat.
        let st = ok(&["queue", "stat", &name]);
        assert_eq!(field(&st, "kind"), Some(kind), "{st}");
        assert_eq!(field(&st, "len unit"), Some(unit), "{st}");
        let len = field(&st, "length").unwrap();
        if unit == "messages" {
            assert_eq!(len, "1 message", "{st}"); // the one "hello"
        } else {
            assert!(len.ends_with(" bytes"), "{st}");
        }
        assert_eq!(
            field(&st, "capacity"),
            Some(&*format!("{cap} {unit}")),
            "{st}"
        );
        let st = json(&["queue", "stat", &name, "--json"]);
        assert_eq!(st["kind"], kind);
        assert_eq!(st["len_unit"], unit);
        // An 8-byte record header + "hello" padded (mpmc-bytes: one 64-byte cell).
        let want_len = match kind {
            "bytes-ring" => 16,
            "mpmc-bytes" => 64,
            _ => 1,
        };
        assert_eq!(st["len"], want_len, "{st}");
    }
}

/// What one `shmkit` step of an order test does, and what it must print.
enum Step {
    /// `queue push NAME MSG`: succeeds.
    Push(&'static str),
    /// `queue push NAME MSG --timeout 0.2` on a full queue: exit 1, "timed out" on stderr.
    PushFull(&'static str),
    /// `queue pop NAME`: prints the message.
    Pop(&'static str),
    /// `queue pop NAME --timeout 0.2` on an empty queue: exit 1, one "timed out" line.
    PopEmpty,
}

fn run_steps(kind: &str, cap: &str, steps: &[Step]) {
    let name = unique_name(&format!("cliorder{kind}"));
    let _c = Cleanup::new(&[&name]);
    ok(&[
        "queue",
        "create",
        &name,
        "--kind",
        kind,
        "--capacity",
        cap,
        "--elem-size=16",
    ]);
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{kind}, step {i}");
        match *step {
            Step::Push(m) => {
                ok(&["queue", "push", &name, m, "--timeout", "10"]);
            }
            Step::PushFull(m) => {
                let out = shmkit(&["queue", "push", &name, m, "--timeout", "0.2"]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(1), "{at}: {err}");
                assert!(err.contains("timed out"), "{at}: {err}");
                assert_eq!(err.lines().count(), 1, "{at}: {err}");
            }
            Step::Pop(m) => {
                let got = ok(&["queue", "pop", &name, "--timeout", "10"]);
                assert_eq!(got.trim_end(), m, "{at}");
            }
            Step::PopEmpty => {
                let out = shmkit(&["queue", "pop", &name, "--timeout", "0.2"]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(1), "{at}: {err}");
                assert!(out.stdout.is_empty(), "{at}");
                assert!(err.contains("timed out"), "{at}: {err}");
                assert_eq!(err.lines().count(), 1, "{at}: {err}");
            }
        }
    }
    // Every process detached: no role held, neither end closed, nothing left.
    let st = json(&["queue", "stat", &name, "--json"]);
    assert_eq!(st["len"], 0, "{kind}: {st}");
    assert_eq!(st["producer_closed"], false, "{kind}: {st}");
    assert_eq!(st["consumer_closed"], false, "{kind}: {st}");
    assert_eq!(
        st["producers"].as_array().map(Vec::len),
        Some(0),
        "{kind}: {st}"
    );
    assert_eq!(
        st["consumers"].as_array().map(Vec::len),
        Some(0),
        "{kind}: {st}"
    );
}

/// Pushes and pops from separate `shmkit` processes in every order, for every kind: each
/// process attaches, does its one operation and exits (detaching, not closing), so the queue
/// keeps its messages and stays usable by the next process.
#[test]
fn push_and_pop_from_separate_processes_in_every_order() {
    use Step::*;
    for kind in ["spsc", "mpmc", "bytes-ring", "mpmc-bytes"] {
        let cap = if kind.contains("bytes") { "1024" } else { "8" };
        run_steps(
            kind,
            cap,
            &[
                // Pop on a fresh queue (no producer ever attached).
                PopEmpty,
                Push("a"),
                Push("b"),
                Pop("a"),
                // Push after a pop (used to fail: the popping process closed the consumer end).
                Push("c"),
                Pop("b"),
                Pop("c"),
                PopEmpty,
                PopEmpty,
                Push("d"),
                Pop("d"),
                Push("e"),
                Push("f"),
                Push("g"),
                Pop("e"),
                Pop("f"),
                Push("h"),
                Pop("g"),
                Pop("h"),
                PopEmpty,
                Push("i"),
                Pop("i"),
            ],
        );
        // A full queue: a push times out; after a pop, pushes go on; then drain.
        let (cap, fill): (&str, &[&'static str]) = match kind {
            // 4 records of 16 bytes (8-byte header + "m0" padded to 8) fill 64 bytes.
            "bytes-ring" => ("64", &["m0", "m1", "m2", "m3"]),
            // 4 cells of 64 bytes, one record each.
            "mpmc-bytes" => ("256", &["m0", "m1", "m2", "m3"]),
            _ => ("2", &["m0", "m1"]),
        };
        let mut steps: Vec<Step> = fill.iter().map(|&m| Push(m)).collect();
        steps.push(PushFull("x"));
        steps.push(Pop("m0"));
        steps.push(Push("m9"));
        steps.push(PushFull("y"));
        steps.extend(fill[1..].iter().map(|&m| Pop(m)));
        steps.push(Pop("m9"));
        steps.push(PopEmpty);
        steps.push(Push("z"));
        steps.push(Pop("z"));
        run_steps(kind, cap, &steps);
    }
}
