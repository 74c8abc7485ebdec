//! The `shmkit queue` verbs, run as a separate process against the built binary.

mod common;

use std::process::Command;

use common::{unique_name, Cleanup, Rec100};
use shmkit::queue::{mpmc, spsc};
use zerocopy::{FromBytes, Immutable, IntoBytes};

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
        // Unquoted, as `queue stat` shows it (it was the JSON string, `"bytes"`).
        assert_eq!(field(&info, "len_unit"), Some(unit), "{info}");
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
    // An element size only for the fixed-size kinds (the byte kinds refuse one).
    let elem = if kind.contains("bytes") {
        "--elem-size=1"
    } else {
        "--elem-size=16"
    };
    ok(&[
        "queue",
        "create",
        &name,
        "--kind",
        kind,
        "--capacity",
        cap,
        elem,
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

/// A 24-byte `#[repr(C)]` record of a library user's (issue 9: the CLI refused such queues,
/// "element size 24 is not supported by the CLI").
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Rec24 {
    id: u64,
    text: [u8; 16],
}
shmkit::shm_type!(Rec24);

/// A record whose bytes are `id` then `text`, zero-padded (what `queue push` of the same
/// text stores).
fn rec24(id: &[u8; 8], text: &str) -> Rec24 {
    let mut t = [0u8; 16];
    t[..text.len()].copy_from_slice(text.as_bytes());
    Rec24 {
        id: u64::from_ne_bytes(*id),
        text: t,
    }
}

/// Queues a program made with element sizes outside the powers of two (a 24-byte struct in an
/// spsc queue, `[u8; 2048]` in an mpmc one): the CLI pops what the library pushed and the
/// library pops what the CLI pushed, each a separate process.
#[test]
fn queues_of_library_types_of_other_sizes_push_and_pop_both_ways() {
    // spsc of Rec24.
    let name = unique_name("clielem24");
    let _c = Cleanup::new(&[&name]);
    let q = spsc::Queue::<Rec24>::create(&name, 8).unwrap();
    let mut tx = q.producer().unwrap();
    tx.try_push(rec24(b"rec-0001", "hello from lib")).unwrap();
    // The producer role is the CLI's next; the element stays in the queue.
    drop(tx);
    assert_eq!(
        ok(&["queue", "pop", &name, "--timeout", "10"]),
        "rec-0001hello from lib\n"
    );
    ok(&["queue", "push", &name, "cli-0002hello from cli"]);
    let st = json(&["queue", "stat", &name, "--json"]);
    assert_eq!(
        (st["elem_size"].as_u64(), st["len"].as_u64()),
        (Some(24), Some(1))
    );
    let mut rx = q.consumer().unwrap();
    assert_eq!(rx.try_pop(), Ok(rec24(b"cli-0002", "hello from cli")));
    drop(rx);
    // A message longer than an element is refused, and nothing is pushed.
    let out = shmkit(&["queue", "push", &name, "twenty-five bytes of text"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "shmkit: queue {name:?}: the message is 25 bytes, more than its maximum of 24 (its \
             element size: create it with a larger --elem-size)\n"
        )
    );
    assert!(q.is_empty());

    // mpmc of [u8; 2048], a full element each way.
    let name = unique_name("clielem2048");
    let _c = Cleanup::new(&[&name]);
    let q = mpmc::Queue::<[u8; 2048]>::create(&name, 4).unwrap();
    let mut big = [b'l'; 2048];
    big[..9].copy_from_slice(b"from lib:");
    q.producer().unwrap().try_push(big).unwrap();
    let got = ok(&["queue", "pop", &name, "--timeout", "10"]);
    assert_eq!(got.as_bytes(), [&big[..], b"\n"].concat());
    let msg = format!("from cli:{}", "c".repeat(2048 - 9));
    ok(&["queue", "push", &name, &msg]);
    assert_eq!(
        q.consumer().unwrap().try_pop().map(|e| e.to_vec()),
        Ok(msg.into_bytes())
    );
}

/// An 8 KiB `#[repr(C)]` record.
#[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Rec8k {
    seq: u64,
    body: [u8; 8184],
}
shmkit::shm_type!(Rec8k);

/// A typed queue of `T` made by this program: an element it pushes (every byte printable) is
/// popped by `shmkit queue pop` (a separate process), and a message `shmkit queue push`
/// pushes is popped here as a `T` with the message's bytes, zero-padded. `push`/`pop` run the
/// typed handles of queue `Q`.
fn typed_and_cli_exchange<
    T: shmkit::queue::Element + FromBytes + IntoBytes + PartialEq + std::fmt::Debug,
>(
    name: &str,
    push: &mut dyn FnMut(T),
    pop: &mut dyn FnMut() -> T,
) {
    let n = std::mem::size_of::<T>();
    let msg: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
    push(T::read_from_bytes(&msg).unwrap());
    let got = ok(&["queue", "pop", name, "--timeout", "10"]);
    assert_eq!(got.as_bytes(), [&msg[..], b"\n"].concat(), "{n} bytes");
    let text = format!("from the cli, {n}-byte elements");
    ok(&["queue", "push", name, &text]);
    let mut want = vec![0u8; n];
    want[..text.len()].copy_from_slice(text.as_bytes());
    assert_eq!(pop().as_bytes(), &want[..], "{n} bytes");
}

/// Typed queues of a 100-byte and an 8 KiB `#[repr(C)]` record, spsc and mpmc, made by this
/// program: the CLI pops what the program pushed and the program pops what the CLI pushed
/// (issue: the CLI handled only a table of element sizes, neither of these).
#[test]
fn typed_queues_of_100_byte_and_8_kib_records_and_the_cli() {
    macro_rules! both_kinds {
        ($t:ty) => {{
            let name = unique_name("clirecspsc");
            let _c = Cleanup::new(&[&name]);
            let q = spsc::Queue::<$t>::create(&name, 2).unwrap();
            // Each role is held only for the call, so the CLI can take it in between.
            typed_and_cli_exchange::<$t>(
                &name,
                &mut |v| q.producer().unwrap().try_push(v).unwrap(),
                &mut || q.consumer().unwrap().try_pop().unwrap(),
            );
            let name = unique_name("clirecmpmc");
            let _c = Cleanup::new(&[&name]);
            let q = mpmc::Queue::<$t>::create(&name, 2).unwrap();
            let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
            typed_and_cli_exchange::<$t>(&name, &mut |v| tx.try_push(v).unwrap(), &mut || {
                rx.try_pop().unwrap()
            });
        }};
    }
    assert_eq!(std::mem::size_of::<Rec100>(), 100);
    assert_eq!(std::mem::size_of::<Rec8k>(), 8192);
    both_kinds!(Rec100);
    both_kinds!(Rec8k);
}

/// `queue create --elem-size 24` makes a queue of `[u8; 24]` that a program opens by size as
/// another 24-byte type; any size the library takes (1 byte to 1 MiB) is created, pushed and
/// popped by the CLI (issue: it handled only a table of sizes up to 4096); a size the library
/// refuses is refused with its message, and nothing is created.
#[test]
fn create_elem_size_24_and_any_size_the_library_takes() {
    let name = unique_name("clicreate24");
    let _c = Cleanup::new(&[&name]);
    ok(&[
        "queue",
        "create",
        &name,
        "--kind",
        "spsc",
        "--capacity",
        "4",
        "--elem-size",
        "24",
    ]);
    let st = json(&["queue", "stat", &name, "--json"]);
    assert_eq!(st["elem_size"], 24, "{st}");
    assert_eq!(st["elem_type"], "[u8; 24]", "{st}");
    ok(&["queue", "push", &name, "cli-0003created by cli"]);
    // Opened by size as another 24-byte type of alignment 1 (a `Rec24`, aligned to 8, would
    // need a queue whose recorded alignment is at least 8).
    let q = spsc::Queue::<[[u8; 12]; 2]>::options()
        .open_by_size(&name)
        .unwrap();
    assert_eq!(
        q.consumer().unwrap().try_pop(),
        Ok([*b"cli-0003crea", *b"ted by cli\0\0"])
    );

    // Sizes the old table did not have, up to the library's largest.
    for (kind, size) in [
        ("spsc", 4100),
        ("mpmc", 1032),
        ("spsc", 100),
        ("mpmc", 1 << 20),
    ] {
        let other = unique_name("clicreateany");
        let _o = Cleanup::new(&[&other]);
        ok(&[
            "queue",
            "create",
            &other,
            "--kind",
            kind,
            "--capacity",
            "2",
            "--elem-size",
            &size.to_string(),
        ]);
        let st = json(&["queue", "stat", &other, "--json"]);
        assert_eq!(st["elem_size"], size, "{st}");
        assert_eq!(st["elem_type"], format!("[u8; {size}]"), "{st}");
        ok(&["queue", "push", &other, "sized"]);
        assert_eq!(ok(&["queue", "pop", &other, "--timeout", "10"]), "sized\n");
    }

    // Sizes the library refuses: its message (exit 2), nothing created.
    let refused = unique_name("clicreatebad");
    let _r = Cleanup::new(&[&refused]);
    for (kind, size) in [("spsc", "0"), ("mpmc", "1048577")] {
        let out = shmkit(&[
            "queue",
            "create",
            &refused,
            "--kind",
            kind,
            "--capacity",
            "4",
            "--elem-size",
            size,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        // An invalid argument: a usage error, as before.
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("element size {size}: need 1..=1 MiB")),
            "{err}"
        );
        assert!(!std::path::Path::new(&format!("/dev/shm/{refused}")).exists());
    }
}

/// Review finding: `queue pop` consumed a message, could not print it (stdout a pipe with no
/// reader, or closed) and exited 0: the message was gone. Now stdout is checked before the
/// pop (the message stays, exit 1), and a write that fails after the pop (`/dev/full`) exits 1
/// saying the message is lost. Every kind.
#[test]
fn a_pop_that_cannot_print_its_message_does_not_succeed() {
    use std::process::Stdio;
    let len = |q: &str| {
        json(&["queue", "stat", q, "--json"])["len"]
            .as_u64()
            .unwrap()
    };
    for kind in ["bytes-ring", "mpmc-bytes", "spsc", "mpmc"] {
        let q = unique_name(&format!("clipop-lost-{kind}"));
        let _c = Cleanup::new(&[&q]);
        let (cap, elem) = if kind.contains("bytes") {
            ("4096", "1")
        } else {
            ("8", "16")
        };
        ok(&[
            "queue",
            "create",
            &q,
            "--kind",
            kind,
            "--capacity",
            cap,
            "--elem-size",
            elem,
        ]);
        ok(&["queue", "push", &q, "first"]);
        ok(&["queue", "push", &q, "second"]);
        let before = len(&q);
        // A pipe whose reader is already gone (`shmkit queue pop q | true`).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_shmkit"))
            .args(["queue", "pop", &q, "--timeout", "5"])
            .stdout(Stdio::from(writer))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && err.contains("nothing was consumed"),
            "{kind}, broken pipe: {}, {err}",
            out.status
        );
        assert_eq!(
            len(&q),
            before,
            "{kind}, broken pipe: a message was consumed"
        );
        // A closed standard output (`shmkit queue pop q >&-`).
        let out = Command::new("sh")
            .args(["-c", "exec \"$0\" queue pop \"$1\" --timeout 5 >&-"])
            .args([env!("CARGO_BIN_EXE_shmkit"), &q])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && err.contains("nothing was consumed"),
            "{kind}, closed stdout: {}, {err}",
            out.status
        );
        assert_eq!(
            len(&q),
            before,
            "{kind}, closed stdout: a message was consumed"
        );
        // A write that fails after the pop: the message is gone, and the exit says so.
        let full = std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_shmkit"))
            .args(["queue", "pop", &q, "--timeout", "5"])
            .stdout(Stdio::from(full))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && err.contains("it is lost"),
            "{kind}, /dev/full: {}, {err}",
            out.status
        );
        assert!(len(&q) < before, "{kind}, /dev/full: nothing was popped");
        // The other message is still there for a reader that takes it.
        assert_eq!(ok(&["queue", "pop", &q, "--timeout", "5"]), "second\n");
    }
}

/// An element type whose recorded name would add a line to `queue stat`'s output and clear
/// the terminal if printed as it is.
#[derive(FromBytes, IntoBytes, Immutable, Clone, Copy)]
#[repr(C)]
struct Forged([u8; 8]);
impl shmkit::ShmType for Forged {
    const TYPE_NAME: &'static str = "u64\nproducers:       pid 1 (alive)\x1b[2J";
}

/// Review finding: `queue stat` printed the element type name recorded in shared memory as it
/// is (a creator's text: newlines, escape sequences). It is quoted and escaped, as `ls`
/// shows names.
#[test]
fn queue_stat_quotes_a_type_name_it_did_not_write() {
    let q = unique_name("cli-forged-type");
    let _c = Cleanup::new(&[&q]);
    drop(spsc::Queue::<Forged>::create(&q, 8).unwrap());
    let text = ok(&["queue", "stat", &q]);
    assert!(!text.contains('\x1b'), "{text:?}");
    let producers = text.lines().filter(|l| l.starts_with("producers:")).count();
    assert_eq!(producers, 1, "{text:?}");
    assert_eq!(
        field(&text, "element type"),
        Some(r#""u64\nproducers:       pid 1 (alive)\u{1b}[2J""#),
        "{text:?}"
    );
    // JSON has it exactly.
    let v = json(&["queue", "stat", &q, "--json"]);
    assert_eq!(v["elem_type"], <Forged as shmkit::ShmType>::TYPE_NAME);
    // `info`, which shows the state's strings unquoted, quotes this one as `queue stat` does.
    let info = ok(&["info", &q]);
    assert!(!info.contains('\x1b'), "{info:?}");
    let producers = info.lines().filter(|l| l.starts_with("producers")).count();
    assert_eq!(producers, 1, "{info:?}");
    assert_eq!(
        field(&info, "elem_type"),
        Some(r#""u64\nproducers:       pid 1 (alive)\u{1b}[2J""#),
        "{info:?}"
    );
}

/// New-user walkthrough: `queue create --kind bytes-ring --elem-size 8` made a byte queue
/// and ignored `--elem-size` without a word. It is a usage error for the byte-message kinds
/// (exit 2, nothing created); 1, the element size `queue stat` shows for them, is accepted.
#[test]
fn elem_size_is_refused_for_byte_message_queues() {
    for (kind, cap) in [("bytes-ring", "1024"), ("mpmc-bytes", "1024")] {
        let q = unique_name("cli-elem-bytes");
        let _c = Cleanup::new(&[&q]);
        let args = ["queue", "create", &q, "--kind", kind, "--capacity", cap];
        let out = shmkit(&[&args[..], &["--elem-size", "8"]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{kind}: {err}");
        assert!(
            err.contains("--elem-size") && err.lines().count() == 1,
            "{err}"
        );
        assert!(!std::path::Path::new(&format!("/dev/shm/{q}")).exists());
        let out = shmkit(&[&args[..], &["--elem-size", "1"]].concat());
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// New-user walkthrough: a message too long for the queue was refused in three wordings, two
/// without the queue's name and none saying what to do ("message is 65 bytes, the queue's
/// elements are 64"; "a message of 505 bytes exceeds this ring's maximum of 504"). Every
/// kind says it one way, names the queue and the create option that makes room; nothing is
/// pushed.
#[test]
fn a_message_too_long_is_refused_one_way_for_every_kind() {
    for (kind, cap, max, how) in [
        ("spsc", "8", 64, "--elem-size"),
        ("mpmc", "8", 64, "--elem-size"),
        ("bytes-ring", "1024", 504, "--capacity"),
        ("mpmc-bytes", "1024", 512, "--capacity"),
    ] {
        let q = unique_name("cli-toolong");
        let _c = Cleanup::new(&[&q]);
        ok(&["queue", "create", &q, "--kind", kind, "--capacity", cap]);
        let long = "x".repeat(max + 1);
        let out = shmkit(&["queue", "push", &q, &long]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind}: {err}");
        let want = format!(
            "queue {q:?}: the message is {} bytes, more than its maximum of {max}",
            max + 1
        );
        assert!(err.contains(&want) && err.contains(how), "{kind}: {err}");
        assert_eq!(json(&["queue", "stat", &q, "--json"])["len"], 0, "{kind}");
        // The longest message fits.
        ok(&["queue", "push", &q, &"y".repeat(max)]);
    }
}

/// New-user walkthrough: a timed-out `queue pop` said "timed out: the queue stayed empty"
/// without naming the queue, and so did a full push but of mpmc-bytes (which alone named it).
/// Every push and pop failure names the queue, once, whatever the kind.
#[test]
fn push_and_pop_failures_name_the_queue_for_every_kind() {
    for (kind, cap) in [
        ("spsc", "2"),
        ("mpmc", "2"),
        ("bytes-ring", "64"),
        ("mpmc-bytes", "256"),
    ] {
        let q = unique_name("cli-named");
        let _c = Cleanup::new(&[&q]);
        ok(&["queue", "create", &q, "--kind", kind, "--capacity", cap]);
        let prefix = format!("shmkit: queue {q:?}: timed out");
        let out = shmkit(&["queue", "pop", &q, "--timeout", "0.05"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind}: {err}");
        assert!(
            err.starts_with(&prefix) && err.contains("empty"),
            "{kind}: {err}"
        );
        // Fill it, then one more push times out.
        let mut full = None;
        for _ in 0..16 {
            let out = shmkit(&[
                "queue",
                "push",
                &q,
                "twenty bytes of text",
                "--timeout",
                "0.05",
            ]);
            if !out.status.success() {
                full = Some(String::from_utf8_lossy(&out.stderr).into_owned());
                break;
            }
        }
        let err = full.unwrap_or_else(|| panic!("{kind}: never full"));
        assert!(
            err.starts_with(&prefix) && err.contains("full"),
            "{kind}: {err}"
        );
        assert_eq!(err.matches(&format!("{q:?}")).count(), 1, "{kind}: {err}");
    }
}
