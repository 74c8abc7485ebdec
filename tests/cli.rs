//! The `shmkit` command line: ls, info, dump, rm, gc and exit codes.

mod common;

use common::{Cleanup, Lines};
use shmkit::segment::Lifetime;
use shmkit::Segment;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run shmkit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        "create-and-die" => {
            let _s = Segment::create(&args[0], 32).unwrap();
            common::report("created");
            std::thread::sleep(Duration::from_secs(60));
        }
        "create-owned-and-die" => {
            let _s = Segment::options()
                .lifetime(Lifetime::Owned)
                .create(&args[0], 32)
                .unwrap();
            common::report("created");
            std::thread::sleep(Duration::from_secs(60));
        }
        "build-and-die" => {
            Segment::options()
                .create_with(&args[0], 32, |_| {
                    common::report("building");
                    std::thread::sleep(Duration::from_secs(60));
                    Ok(())
                })
                .unwrap();
        }
        // Read up to N bytes of standard input, then exit (closing the pipe): `head -c N`.
        "head" => {
            let n: u64 = args[0].parse().unwrap();
            std::io::copy(&mut std::io::stdin().take(n), &mut std::io::sink()).unwrap();
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn ls_lists_shmkit_and_raw_segments() {
    let a = common::unique_name("cli-ls");
    let b = common::unique_name("cli-raw");
    let _c = Cleanup::new(&[&a, &b]);
    let _sa = Segment::create(&a, 100).unwrap();
    let _sb = Segment::options().raw(true).create(&b, 50).unwrap();
    let out = shmkit(&["ls"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let line_a = text.lines().find(|l| l.starts_with(&a)).expect("a listed");
    assert!(
        line_a.contains("228")
            && line_a.contains("segment")
            && line_a.split_whitespace().last() == Some("alive"),
        "{line_a}"
    );
    assert!(line_a.contains(&std::process::id().to_string()), "{line_a}");
    let line_b = text.lines().find(|l| l.starts_with(&b)).expect("b listed");
    assert!(line_b.contains("raw"), "{line_b}");

    let json: serde_json::Value =
        serde_json::from_slice(&shmkit(&["ls", "--json"]).stdout).unwrap();
    let row = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == a.as_str())
        .unwrap();
    assert_eq!(row["kind"], "segment");
    assert_eq!(row["size"], 228);
    assert_eq!(row["alive"], "alive");
    assert_eq!(row["creator_pid"], std::process::id());
    assert_eq!(row["lifetime"], "persistent");
    assert_eq!(row["status"], "valid");
}

#[test]
fn info_prints_the_header() {
    let a = common::unique_name("cli-info");
    let _c = Cleanup::new(&[&a]);
    let _s = Segment::create(&a, 64).unwrap();
    let out = shmkit(&["info", &a]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("kind:            segment"), "{text}");
    assert!(text.contains("payload size:    64"), "{text}");
    // The creation time as a date and time in UTC (it was only "N ns after the Unix epoch"),
    // today's as `date -u` says it (or the day before, when the test runs across midnight).
    let created = text
        .lines()
        .find_map(|l| l.strip_prefix("created:"))
        .unwrap_or_else(|| panic!("{text}"))
        .trim();
    let today = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    let yesterday = Command::new("date")
        .args(["-u", "-d", "yesterday", "+%Y-%m-%d"])
        .output()
        .unwrap();
    let day = |o: &Output| String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(
        created.starts_with(&day(&today)) || created.starts_with(&day(&yesterday)),
        "{created}"
    );
    assert!(created.contains(" UTC (") && created.ends_with(" ns after the Unix epoch)"));
    let json: serde_json::Value =
        serde_json::from_slice(&shmkit(&["info", &a, "--json"]).stdout).unwrap();
    assert_eq!(json["header"]["payload_size"], 64);
    assert_eq!(json["header"]["state"], "ready");
    assert_eq!(json["header"]["lifetime"], "persistent");
    assert_eq!(json["header"]["creator_pid"], std::process::id());
    assert_eq!(json["header"]["creator_token"].as_str().unwrap().len(), 16);
    assert_eq!(json["status"], "valid");
    assert_eq!(json["creator"], "alive");
    assert_eq!(json["kind"], "segment");
}

/// New-user walkthrough: `info` printed an object's state as raw JSON (`lock:
/// {"depth":0,…}`, quoted strings). It prints the summary first, then each field as a
/// `key.sub: value` line, strings unquoted; `--json` is as it was.
#[test]
fn info_shows_the_state_as_key_value_lines() {
    let name = common::unique_name("cli-info-state");
    let _c = Cleanup::new(&[&name]);
    let l = shmkit::sync::Lock::create(&name).unwrap();
    let _g = l.lock().unwrap();
    let text = stdout(&shmkit(&["info", &name]));
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("created:"))
        .unwrap_or_else(|| panic!("{text}"));
    let state = &lines[at + 1..];
    let me = std::process::id().to_string();
    assert!(
        state[0].starts_with("summary:") && state[0].contains(&format!("locked by pid {me}")),
        "{text}"
    );
    let field = |k: &str| {
        state
            .iter()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .map(str::trim)
    };
    assert_eq!(field("primitive"), Some("lock"), "{text}");
    assert_eq!(field("status"), Some("locked"), "{text}");
    assert_eq!(field("depth"), Some("1"), "{text}");
    assert_eq!(field("owner.pid"), Some(&*me), "{text}");
    assert_eq!(field("owner.liveness"), Some("alive"), "{text}");
    assert!(
        state.iter().all(|l| !l.contains(['{', '"'])),
        "JSON in the text: {text}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&shmkit(&["info", &name, "--json"]).stdout).unwrap();
    assert_eq!(v["state"]["primitive"], "lock");
    assert_eq!(v["state"]["owner"]["liveness"], "alive");
    assert_eq!(v["state"]["depth"], 1);
}

/// New-user walkthrough: `frames create` printed a confirmation line and every other
/// `create` printed nothing. Each is silent on success, as Unix tools are.
#[test]
fn every_create_is_silent() {
    let base = common::unique_name("cli-silent");
    let n = |k: &str| format!("{base}-{k}");
    let names = ["seg", "q", "value", "array", "list", "frames"].map(n);
    let _c = Cleanup::new(&names.each_ref().map(String::as_str));
    let [seg, q, value, array, list, frames] = &names;
    for args in [
        &["create", seg, "--size", "8"][..],
        &["queue", "create", q, "--kind", "spsc", "--capacity", "4"],
        &["value", "create", value, "q", "5"],
        &["array", "create", array, "d", "4"],
        &["list", "create", list, "[1, \"a\"]"],
        &[
            "frames",
            "create",
            frames,
            "--slots",
            "2",
            "--max-bytes",
            "64",
        ],
    ] {
        let out = shmkit(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
}

/// New-user walkthrough: whether a process runs was shown three ways (`ls` yes/no, `info`
/// and `queue stat` `(Alive)`/`(Dead)`, JSON `alive`/`dead`). Text says what JSON says.
#[test]
fn liveness_reads_the_same_in_text_and_json() {
    let base = common::unique_name("cli-liveness");
    let (live, dead, raw, lock, q) = (
        format!("{base}-live"),
        format!("{base}-dead"),
        format!("{base}-raw"),
        format!("{base}-lock"),
        format!("{base}-q"),
    );
    let _c = Cleanup::new(&[&live, &dead, &raw, &lock, &q]);
    let _s = Segment::create(&live, 8).unwrap();
    let mut child = common::spawn_child("create-and-die", &[&dead]);
    Lines::of(&mut child).expect("created");
    common::kill9(&mut child);
    let _r = Segment::options().raw(true).create(&raw, 8).unwrap();

    let ls = stdout(&shmkit(&["ls"]));
    let head = ls.lines().next().unwrap();
    assert_eq!(head.split_whitespace().last(), Some("ALIVE"), "{ls}");
    let rows: serde_json::Value =
        serde_json::from_slice(&shmkit(&["ls", "--json"]).stdout).unwrap();
    for (name, word, column) in [
        (&live, "alive", "alive"),
        (&dead, "dead", "dead"),
        (&raw, "unknown", "-"),
    ] {
        let row = ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not in {ls}"));
        assert_eq!(row.split_whitespace().last(), Some(column), "{row}");
        let j = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name.as_str())
            .unwrap();
        assert_eq!(j["alive"], word, "{j}");
        let info: serde_json::Value =
            serde_json::from_slice(&shmkit(&["info", name, "--json"]).stdout).unwrap();
        assert_eq!(info["creator"], word, "{info}");
    }
    for (name, word) in [(&live, "alive"), (&dead, "dead")] {
        let info = stdout(&shmkit(&["info", name]));
        let creator = info
            .lines()
            .find_map(|l| l.strip_prefix("creator:"))
            .unwrap_or_else(|| panic!("{info}"));
        assert!(creator.contains(&format!(" ({word}), token ")), "{info}");
    }

    // A held lock's holder, and a queue's attached producer.
    let l = shmkit::sync::Lock::create(&lock).unwrap();
    let _g = l.lock().unwrap();
    let info = stdout(&shmkit(&["info", &lock]));
    assert!(info.contains(", alive, token "), "{info}");
    let sq = shmkit::queue::spsc::Queue::<u64>::create(&q, 4).unwrap();
    let _p = sq.producer().unwrap();
    let st = stdout(&shmkit(&["queue", "stat", &q]));
    let me = format!("pid {} (alive)", std::process::id());
    assert!(
        st.lines()
            .any(|l| l.starts_with("producers:") && l.contains(&me)),
        "{st}"
    );
}

#[test]
fn dump_shows_bytes_at_an_offset() {
    let a = common::unique_name("cli-dump");
    let _c = Cleanup::new(&[&a]);
    let s = Segment::create(&a, 64).unwrap();
    s.write_at(0, b"ABCDEFGH").unwrap();
    let out = shmkit(&["dump", &a, "--offset", "128", "--len", "8"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with("00000080  41 42 43 44 45 46 47 48"),
        "{text}"
    );
    assert!(text.contains("|ABCDEFGH|"), "{text}");
    // The header's magic at offset 0.
    assert!(stdout(&shmkit(&["dump", &a, "--len", "8"])).contains("89 53 48 4d 4b 49 54 0a"));
}

#[test]
fn rm_removes_and_reports_missing() {
    let a = common::unique_name("cli-rm");
    let _c = Cleanup::new(&[&a]);
    Segment::create(&a, 8).unwrap();
    assert!(shmkit(&["rm", &a]).status.success());
    assert!(!std::path::Path::new(&format!("/dev/shm/{a}")).exists());
    let out = shmkit(&["rm", &a]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("shmkit: ") && err.contains("not found") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn exit_codes() {
    assert_eq!(
        shmkit(&["info", "no-such-segment-xyz"]).status.code(),
        Some(1)
    );
    // A name that breaks the naming rules is a bad value: a usage error.
    assert_eq!(shmkit(&["info", "bad/name"]).status.code(), Some(2));
    assert_eq!(shmkit(&["no-such-verb"]).status.code(), Some(2));
    assert_eq!(shmkit(&["dump"]).status.code(), Some(2));
}

#[test]
fn gc_removes_only_owned_objects_of_dead_creators_and_abandoned_builds() {
    let base = common::unique_name("cli-gc");
    let owned_dead = format!("{base}-owned-dead");
    let persistent_dead = format!("{base}-persistent-dead");
    let owned_live = format!("{base}-owned-live");
    let cli_made = format!("{base}-cli");
    let cli_queue = format!("{base}-cli-queue");
    let building = format!("{base}-building");
    let _c = Cleanup::new(&[
        &owned_dead,
        &persistent_dead,
        &owned_live,
        &cli_made,
        &cli_queue,
        &building,
    ]);
    for (role, name, says) in [
        ("create-owned-and-die", &owned_dead, "created"),
        ("create-and-die", &persistent_dead, "created"),
        ("build-and-die", &building, "building"),
    ] {
        let mut child = common::spawn_child(role, &[name]);
        Lines::of(&mut child).expect(says);
        common::kill9(&mut child);
    }
    let _live = Segment::options()
        .lifetime(Lifetime::Owned)
        .create(&owned_live, 8)
        .unwrap();
    assert!(shmkit(&["create", &cli_made, "--size", "8"])
        .status
        .success());
    let q = [
        "queue",
        "create",
        &cli_queue,
        "--kind",
        "spsc",
        "--capacity",
        "4",
    ];
    assert!(shmkit(&q).status.success());
    let temps = common::temp_objects_of(&building);
    assert_eq!(temps.len(), 1, "{temps:?}");
    let exists = |n: &str| std::path::Path::new(&format!("/dev/shm/{n}")).exists();
    // Restrict gc to this test's names: other tests run in parallel.
    let prefix = format!("{base}-");
    let gc = |extra: &[&str]| {
        let out = shmkit(&[&["gc", "--prefix", &prefix], extra].concat());
        assert!(out.status.success(), "gc {extra:?}: {out:?}");
        stdout(&out)
    };
    let has = |text: &str, line_start: &str| text.lines().any(|l| l.starts_with(line_start));

    let dry = gc(&["--dry-run"]);
    assert!(
        has(&dry, &format!("would remove {owned_dead}: owned")),
        "{dry}"
    );
    assert!(has(&dry, &format!("would remove {}: ", temps[0])), "{dry}");
    assert!(
        has(&dry, &format!("kept {persistent_dead}: persistent")),
        "{dry}"
    );
    assert!(
        has(&dry, &format!("kept {owned_live}: owned by a live creator")),
        "{dry}"
    );
    assert!(has(&dry, &format!("kept {cli_made}: persistent")), "{dry}");
    assert!(has(&dry, &format!("kept {cli_queue}: persistent")), "{dry}");
    assert!(
        exists(&owned_dead) && exists(&temps[0]),
        "a dry run removes nothing"
    );

    // While this process maps the dead creator's segment, gc keeps it.
    let mapped = Segment::open(&owned_dead).unwrap();
    let out = gc(&[]);
    // Among the pids that map it: this one (a parallel test's inspection may map it too).
    let kept = out
        .lines()
        .find(|l| l.starts_with(&format!("kept {owned_dead}: ")))
        .unwrap_or_else(|| panic!("{owned_dead} not kept: {out}"));
    let pids = kept
        .split_once("pid [")
        .and_then(|(_, rest)| rest.split_once("] maps it"))
        .map(|(pids, _)| pids.split(", ").map(str::to_owned).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(pids.contains(&std::process::id().to_string()), "{out}");
    assert!(exists(&owned_dead));
    drop(mapped);

    let out = gc(&[]);
    assert!(has(&out, &format!("removed {owned_dead}: owned")), "{out}");
    assert!(!exists(&owned_dead));
    assert!(common::temp_objects_of(&building).is_empty(), "{out}");
    for kept in [&persistent_dead, &owned_live, &cli_made, &cli_queue] {
        assert!(exists(kept), "{kept}: {out}");
        assert!(!has(&out, &format!("removed {kept}")), "{out}");
    }
}

/// Review finding: `gc` listed `/dev/shm/.shmkit` by path and removed `live-*`/old `tmp-*`
/// files through a symbolic link planted there, in whatever directory it pointed to. Runs
/// `gc` with a private tmpfs on `/dev/shm` (a mount namespace of its own) holding such a link:
/// gc refuses the link, and the files it points to stay. Needs root (`unshare --mount`), as
/// CI runs the tests: as another user the test fails, saying so.
#[test]
fn gc_does_not_follow_a_planted_liveness_directory_link() {
    struct RmDir(std::path::PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let victim = std::env::temp_dir().join(common::unique_name("cli-gc-victim"));
    std::fs::create_dir_all(&victim).unwrap();
    let _rm = RmDir(victim.clone());
    // Names gc would remove in its own directory: an unlocked liveness file and an unlocked
    // temporary file older than a minute.
    let files = ["live-0000000000000001", "tmp-notes"];
    for f in files {
        std::fs::write(victim.join(f), b"keep me").unwrap();
    }
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(victim.join("tmp-notes"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let script = format!(
        "mount -t tmpfs -o size=1m,mode=1777 shmkit-test /dev/shm && \
         ln -s '{}' /dev/shm/.shmkit && echo set-up && exec \"$0\" gc",
        victim.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_shmkit"))
        .output()
        .expect("run unshare");
    let text = stdout(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.starts_with("set-up\n"),
        "unshare/mount failed (this test needs root: it mounts a tmpfs on /dev/shm in a mount \
         namespace of its own): {err}"
    );
    let left: Vec<_> = files.iter().filter(|f| victim.join(f).exists()).collect();
    assert_eq!(
        left.len(),
        files.len(),
        "gc removed files outside /dev/shm through the link: {text}{err}"
    );
    assert!(
        !out.status.success() && err.contains("not a directory"),
        "gc must refuse the link: {}, {text}{err}",
        out.status
    );
}

/// Review finding: `read` and `dump` opened the object by name again for each 64 KiB chunk,
/// so a name removed and created again while they copied spliced two objects into one
/// output. Each reads a 1 MiB object of `A`s through a pipe; once it has started (its first
/// bytes arrived) the name is given to an object of `B`s: every byte still comes from the
/// first.
#[test]
fn read_and_dump_copy_one_object_even_if_its_name_is_reused_meanwhile() {
    const SIZE: usize = 1 << 20;
    let size = SIZE.to_string();
    for verb in ["read", "dump"] {
        let n = common::unique_name(&format!("cli-{verb}-swap"));
        let _c = Cleanup::new(&[&n]);
        let make = |fill: u8| {
            let s = Segment::create(&n, SIZE as u64).unwrap();
            s.write_at(0, &vec![fill; SIZE]).unwrap();
        };
        make(b'A');
        let args: &[&str] = if verb == "read" {
            &["read", &n]
        } else {
            &["dump", &n, "--offset", "128", "--len", &size]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdout.take().unwrap();
        // The first bytes: the object is open and being copied; the pipe (64 KiB) holds the
        // copy back, a chunk or two in, while the name changes hands.
        let mut out = vec![0u8; 16];
        pipe.read_exact(&mut out).unwrap();
        Segment::unlink(&n).unwrap();
        make(b'B');
        pipe.read_to_end(&mut out).unwrap();
        let status = common::wait_exit(&mut child, Duration::from_secs(60));
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "{verb}: {status}: {err}");
        let bytes: Vec<u8> = if verb == "read" {
            out
        } else {
            // The hex column of `dump`'s lines (`hexdump -C`'s).
            String::from_utf8(out)
                .unwrap()
                .lines()
                .flat_map(|l| l[10..60].split_whitespace().collect::<Vec<_>>())
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect()
        };
        assert_eq!(bytes.len(), SIZE, "{verb}");
        assert!(
            bytes.iter().all(|&x| x == b'A'),
            "{verb}: {} bytes of the object opened and {} of another one created later under \
             the same name",
            bytes.iter().filter(|&&x| x == b'A').count(),
            bytes.iter().filter(|&&x| x == b'B').count()
        );
    }
}

#[test]
fn create_write_read_roundtrip() {
    let a = common::unique_name("cli-rw");
    let r = common::unique_name("cli-rwraw");
    let _c = Cleanup::new(&[&a, &r]);
    assert!(shmkit(&["create", &a, "--size", "32", "--mode", "640"])
        .status
        .success());
    assert!(shmkit(&["write", &a, "--offset", "4", "hello"])
        .status
        .success());
    assert_eq!(
        shmkit(&["read", &a, "--offset", "4", "--len", "5"]).stdout,
        b"hello"
    );
    assert_eq!(shmkit(&["read", &a]).stdout.len(), 32);
    let seg = Segment::open(&a).unwrap();
    let mut buf = [0u8; 5];
    seg.read_at(4, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    // Writing past the end is an error, and writes nothing.
    let out = shmkit(&["write", &a, "--offset", "30", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside"));
    // Raw segments.
    assert!(shmkit(&["create", &r, "--size", "10", "--raw"])
        .status
        .success());
    assert!(shmkit(&["write", &r, "--raw", "rawdata"]).status.success());
    assert_eq!(
        shmkit(&["read", &r, "--raw", "--len", "7"]).stdout,
        b"rawdata"
    );
    assert_eq!(shmkit(&["info", &r]).status.code(), Some(0));
    assert!(stdout(&shmkit(&["info", &r])).contains("kind:            raw"));
    // Bad mode is a usage error.
    assert_eq!(
        shmkit(&["create", &a, "--size", "1", "--mode", "9"])
            .status
            .code(),
        Some(2)
    );
}

/// Run `shmkit args` with its standard output piped into a reader that reads `n` bytes and
/// exits (a separate process, as in `shmkit ... | head -c N`); with `n == 0` the reader has
/// exited before shmkit starts, so its first write meets a closed pipe. Returns shmkit's exit
/// status, its stderr and its pid.
fn shmkit_into_head(args: &[&str], n: u64) -> (std::process::ExitStatus, String, u32) {
    let mut reader = common::child_command("head", &[&n.to_string()]);
    let mut reader = reader
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn reader");
    let pipe = reader.stdin.take().expect("stdin is piped");
    if n == 0 {
        assert!(common::wait_exit(&mut reader, Duration::from_secs(60)).success());
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .stdout(Stdio::from(pipe))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmkit");
    // A guard against a hang, not a timing assertion.
    let status = common::wait_exit(&mut child, Duration::from_secs(120));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(common::wait_exit(&mut reader, Duration::from_secs(60)).success());
    (status, err, child.id())
}

#[test]
fn a_closed_stdout_ends_every_verb_quietly() {
    let a = common::unique_name("cli-epipe");
    let q = common::unique_name("cli-epipe-q");
    let r = common::unique_name("cli-epipe-raw");
    let _c = Cleanup::new(&[&a, &q, &r]);
    let s = Segment::create(&a, 4096).unwrap();
    s.write_at(0, b"hello").unwrap();
    drop(shmkit::queue::spsc::Queue::<u64>::create(&q, 8).unwrap());
    Segment::options().raw(true).create(&r, 100).unwrap();
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["info", &a],
        &["info", &a, "--json"],
        &["info", &q],
        &["queue", "stat", &q],
        &["queue", "stat", &q, "--json"],
        &["dump", &a],
        &["read", &a],
        &["read", &r, "--raw"],
        &[
            "bench",
            "latency",
            "--quick",
            "--only",
            "spsc_spin",
            "--sizes",
            "8",
        ],
    ] {
        let (status, err, pid) = shmkit_into_head(args, 0);
        assert!(
            status.success() && err.is_empty(),
            "shmkit {args:?}: {status}, stderr {err:?}"
        );
        // It unwound rather than dying at the write: the bench run removed its segments.
        let left: Vec<_> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with("shmkit-bench-")
                    && (n.ends_with(&format!("-{pid}")) || n.contains(&format!("-{pid}-")))
            })
            .collect();
        assert!(left.is_empty(), "shmkit {args:?} left {left:?}");
    }
}

#[test]
fn other_stdout_errors_are_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .arg("ls")
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("shmkit: ") && err.lines().count() == 1 && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn read_and_dump_of_a_1_tib_sparse_object_stream() {
    let r = common::unique_name("cli-sparse");
    let _c = Cleanup::new(&[&r]);
    let size: u64 = 1 << 40;
    common::sparse_raw(&r, size);
    // The whole object, into a reader that takes 1 MiB and leaves: no allocation of the
    // object (which aborts), and a quiet end when the reader goes.
    let len = size.to_string();
    for args in [&["read", &r, "--raw"][..], &["dump", &r, "--len", &len]] {
        let (status, err, _) = shmkit_into_head(args, 1 << 20);
        assert!(
            status.success() && err.is_empty(),
            "shmkit {args:?}: {status}, stderr {err:?}"
        );
    }
    // The last bytes, exactly.
    let at = (size - 5).to_string();
    let out = shmkit(&["read", &r, "--raw", "--offset", &at]);
    assert!(out.status.success());
    assert_eq!(out.stdout, [0u8; 5]);
    let at = (size - 16).to_string();
    let out = shmkit(&["dump", &r, "--offset", &at]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!(
            "{:08x}  {:<50} |{}|\n",
            size - 16,
            "00 ".repeat(8) + " " + &"00 ".repeat(8),
            ".".repeat(16)
        )
    );
    // Reading through the file, not the mapping, allocated none of it in /dev/shm.
    let used = std::fs::metadata(format!("/dev/shm/{r}")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::blocks(&used), 0);
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn write_refuses_typed_objects_without_force() {
    let q = common::unique_name("cli-wq");
    let _c = Cleanup::new(&[&q]);
    let queue = shmkit::queue::spsc::Queue::<u64>::create(&q, 8).unwrap();
    let before = shmkit(&["dump", &q, "--len", "4096"]).stdout;
    let out = shmkit(&["write", &q, "hello"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("holds an spsc queue,") && err.contains("--force") && err.lines().count() == 1,
        "{err}"
    );
    // Nothing was written: the queue is intact.
    assert_eq!(shmkit(&["dump", &q, "--len", "4096"]).stdout, before);
    assert_eq!(queue.stat().capacity, 8);
    assert!(shmkit(&["queue", "stat", &q]).status.success());
    // --force writes (and here corrupts the queue, as the flag's help says it may).
    let out = shmkit(&["write", &q, "--force", "x"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(shmkit(&["dump", &q, "--len", "4096"]).stdout, before);
}

#[test]
fn truncated_objects_are_corrupt_and_foreign_bytes_are_raw() {
    let t = common::unique_name("cli-trunc");
    let g = common::unique_name("cli-grown");
    let f = common::unique_name("cli-foreign");
    let _c = Cleanup::new(&[&t, &g, &f]);
    Segment::create(&t, 64).unwrap();
    Segment::create(&g, 64).unwrap();
    let resize = |name: &str, len: u64| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap()
            .set_len(len)
            .unwrap()
    };
    resize(&t, 100); // the magic stays, the header is cut
    resize(&g, 300); // a whole header whose payload size no longer matches
                     // Bytes that are no shmkit object (and whose "state word" would be 0xb1b1b1b1).
    let s = Segment::options().raw(true).create(&f, 4096).unwrap();
    s.write_at(0, &[0xb1; 4096]).unwrap();

    let ls = stdout(&shmkit(&["ls"]));
    let kind = |name: &str| {
        let line = ls.lines().find(|l| l.starts_with(name)).expect("listed");
        line.split_whitespace()
            .skip(2)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(kind(&t).starts_with("invalid "), "{ls}");
    assert_eq!(kind(&g), "segment (invalid)", "{ls}");
    assert!(kind(&f).starts_with("raw "), "{ls}");

    let info = stdout(&shmkit(&["info", &t]));
    assert!(info.contains("kind:            invalid"), "{info}");
    assert!(info.contains("status:          invalid: "), "{info}");
    assert!(info.contains("smaller than the 128-byte header"), "{info}");
    let info = stdout(&shmkit(&["info", &g]));
    assert!(
        info.contains("does not match the object size 300"),
        "{info}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&shmkit(&["info", &t, "--json"]).stdout).unwrap();
    assert_eq!(json["status"], "invalid");
    assert!(json["problem"].is_string(), "{json}");

    for name in [&t, &g] {
        let out = shmkit(&["read", name]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("is corrupt") && !err.contains(".raw("),
            "{err}"
        );
    }
    for args in [
        &["read", &f][..],
        &["write", &f, "x"],
        &["queue", "stat", &f],
        &["queue", "pop", &f, "--timeout", "0"],
        &["frames", "stat", &f],
        &["frames", "save", &f, "-"],
    ] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        // The typed verbs say it as the cell verbs do (they said "not a shmkit object (raw)",
        // frames "holds a raw segment"); read and write point to --raw.
        let says = match args[0] {
            "queue" => "holds no shmkit object (a raw segment), not a queue",
            "frames" => "holds no shmkit object (a raw segment), not a frames channel",
            _ => "not a shmkit object (raw)",
        };
        assert!(
            err.contains(says) && !err.contains("state word") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
        if !matches!(args[0], "queue" | "frames") {
            assert!(err.contains("--raw") && !err.contains(".raw("), "{err}");
        }
    }
    // 16 zero bytes are CPython's empty ShareableList: the verbs name it as `ls` does.
    let l = common::unique_name("cli-cpylist");
    let _l = Cleanup::new(&[&l]);
    drop(Segment::options().raw(true).create(&l, 16).unwrap());
    for (args, what) in [
        (&["queue", "stat", &l][..], "a queue"),
        (&["frames", "stat", &l], "a frames channel"),
        (&["value", "get", &l], "a value cell"),
    ] {
        let err = stderr(&shmkit(args));
        let want = format!("holds a ShareableList made by CPython, not {what}");
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    let mut buf = [0u8; 1];
    s.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [0xb1], "the refused write changed nothing");
}

#[test]
fn bad_values_are_usage_errors_and_failures_exit_1() {
    let a = common::unique_name("cli-codes");
    let q = common::unique_name("cli-codes-q");
    let _c = Cleanup::new(&[&a, &q]);
    Segment::create(&a, 8).unwrap();
    drop(shmkit::queue::spsc::Queue::<u64>::create(&q, 8).unwrap());
    let n = common::unique_name("cli-codes-new");
    let _n = Cleanup::new(&[&n]);
    for args in [
        &["info", "bad/name"][..],
        &["rm", "bad:name"],
        &["create", &n, "--size", "8", "--mode", "7777"],
        &["create", &n, "--size", "0", "--raw"],
        &["queue", "create", &n, "--kind", "spsc", "--capacity", "3"],
        &[
            "queue",
            "create",
            &n,
            "--kind",
            "bytes-ring",
            "--capacity",
            "8",
        ],
        // Only the names `ls` prints: the bytes ring is `bytes-ring`, never `bytes`.
        &[
            "queue",
            "create",
            &n,
            "--kind",
            "bytes",
            "--capacity",
            "1024",
        ],
        &[
            "queue",
            "create",
            &n,
            "--kind",
            "spsc_queue",
            "--capacity",
            "8",
        ],
        &[
            "queue",
            "create",
            &n,
            "--kind",
            "spsc",
            "--capacity",
            "4",
            "--elem-size",
            "0",
        ],
        &["queue", "push", &q, "x", "--timeout=-1"],
        &["queue", "pop", &q, "--timeout", "nan"],
        &["dump", &a, "--len", "-1"],
    ] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!std::path::Path::new(&format!("/dev/shm/{n}")).exists());
    }
    for args in [
        &["info", "no-such-segment-xyz"][..],
        &["read", &a, "--offset", "9"],
        &["create", &a, "--size", "8"],
        &["queue", "pop", &q, "--timeout", "0"],
        &["queue", "stat", &a],
    ] {
        let out = shmkit(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("shmkit: ") && err.lines().count() == 1,
            "{err}"
        );
    }
}

#[test]
fn help_states_each_default_once() {
    for verb in [
        &["ls"][..],
        &["info"],
        &["rm"],
        &["dump"],
        &["gc"],
        &["create"],
        &["read"],
        &["write"],
        &["queue", "create"],
        &["queue", "push"],
        &["queue", "pop"],
        &["queue", "stat"],
        &["bench", "latency"],
        &["bench", "throughput"],
    ] {
        let out = shmkit(&[verb, &["--help"]].concat());
        assert!(out.status.success());
        for line in stdout(&out).lines() {
            assert!(
                !(line.contains("(default") && line.contains("[default:")),
                "shmkit {verb:?} --help: {line}"
            );
        }
    }
}

#[test]
fn rm_any_name_removes_what_ls_lists() {
    let odd = format!("{}:odd name", common::unique_name("cli-anyname"));
    let _c = Cleanup::new(&[&odd]);
    common::sparse_raw(&odd, 16);
    let path = format!("/dev/shm/{odd}");
    assert!(stdout(&shmkit(&["ls"])).contains(&odd));
    // shmkit's own name rules refuse it, and say what to do.
    let out = shmkit(&["rm", &odd]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--any-name"), "{}", stderr(&out));
    assert!(std::path::Path::new(&path).exists());
    // Still no way out of /dev/shm; and without --any-name, the refusal of such a name does
    // not suggest --any-name, which refuses it too.
    for bad in ["..", ".", "", "a/b", "../shm/x"] {
        assert_eq!(
            shmkit(&["rm", "--any-name", bad]).status.code(),
            Some(2),
            "{bad:?}"
        );
        let out = shmkit(&["rm", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            !stderr(&out).contains("--any-name"),
            "{bad:?}: {}",
            stderr(&out)
        );
    }
    assert!(shmkit(&["rm", "--any-name", &odd]).status.success());
    assert!(!std::path::Path::new(&path).exists());
    let out = shmkit(&["rm", "--any-name", &odd]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no object"), "{}", stderr(&out));
}

#[test]
fn json_gives_wide_integers_exactly() {
    let a = common::unique_name("cli-json");
    let big = common::unique_name("cli-json-big");
    let _c = Cleanup::new(&[&a, &big]);
    Segment::create(&a, 8).unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&shmkit(&["info", &a, "--json"]).stdout).unwrap();
    let h = &info["header"];
    let fp = h["fingerprint"].as_u64().unwrap();
    assert_eq!(h["fingerprint_hex"], format!("{fp:#018x}"));
    assert_eq!(fp, shmkit::segment::fingerprint(b"shmkit bytes v1"));
    let ns = h["created_unix_ns"].as_u64().unwrap();
    assert!(ns > 1 << 53, "a creation time in ns is above 2^53");
    assert_eq!(h["created_unix_ns_str"], ns.to_string());
    assert_eq!(info["size_str"], "136");
    // An object size a double cannot hold (a sparse object: no memory is used).
    let size: u64 = (1 << 53) + 1;
    common::sparse_raw(&big, size);
    let ls: serde_json::Value = serde_json::from_slice(&shmkit(&["ls", "--json"]).stdout).unwrap();
    let row = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == big.as_str())
        .unwrap();
    assert_eq!(row["size"].as_u64(), Some(size));
    assert_eq!(row["size_str"], "9007199254740993");
}

/// Write bytes into an object behind the API's back, as a buggy or hostile process would.
fn poke(name: &str, offset: u64, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap()
        .write_all_at(bytes, offset)
        .unwrap();
}

fn object_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("/dev/shm/{name}")).unwrap()
}

/// Run shmkit as user `nobody` (65534), with no supplementary groups. Dropping privileges
/// needs root (CI runs the tests as root): as another user the test fails, saying so.
fn shmkit_as_nobody(args: &[&str]) -> Output {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: it runs shmkit as user nobody with setpriv (run the tests as \
         root, as CI does, or leave it out)"
    );
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run setpriv (util-linux); this test needs root to drop privileges")
}

#[test]
fn inspection_needs_only_read_permission_and_changes_nothing() {
    use shmkit::queue::{mpmc, spsc};
    let base = common::unique_name("cli-ro");
    let (seg, sq, mq, lock) = (
        format!("{base}-seg"),
        format!("{base}-spsc"),
        format!("{base}-mpmc"),
        format!("{base}-lock"),
    );
    let _c = Cleanup::new(&[&seg, &sq, &mq, &lock]);
    // Owned by root, readable by everyone, writable by nobody else.
    let s = Segment::options().mode(0o444).create(&seg, 64).unwrap();
    s.write_at(0, b"hello").unwrap();
    let q = spsc::Queue::<u64>::create(&sq, 4).unwrap();
    q.producer().unwrap().push(7).unwrap();
    let m = mpmc::Queue::<u64>::create(&mq, 4).unwrap();
    let _l = shmkit::sync::Lock::options()
        .mode(0o444)
        .create(&lock)
        .unwrap();
    for n in [&sq, &mq] {
        std::fs::set_permissions(
            format!("/dev/shm/{n}"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
    }
    let before: Vec<Vec<u8>> = [&seg, &sq, &mq, &lock].map(|n| object_bytes(n)).to_vec();

    // Privileges are really dropped: a read-write open is refused.
    let out = shmkit_as_nobody(&["write", &seg, "x"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );
    let ok = |args: &[&str]| {
        let out = shmkit_as_nobody(args);
        assert!(out.status.success(), "shmkit {args:?} as nobody: {out:?}");
        stdout(&out)
    };
    let info = ok(&["info", &seg]);
    assert!(
        info.contains("payload size:    64") && info.contains("status:          valid"),
        "{info}"
    );
    assert!(ok(&["info", &sq]).contains("capacity"));
    assert!(ok(&["info", &mq]).contains("capacity"));
    assert!(ok(&["info", &lock]).contains("unlocked"));
    let ls = ok(&["ls"]);
    for n in [&seg, &sq, &mq, &lock] {
        assert!(ls.lines().any(|l| l.starts_with(n.as_str())), "{n}: {ls}");
    }
    assert!(ok(&["dump", &seg, "--offset", "128", "--len", "5"]).contains("|hello|"));
    let st: serde_json::Value =
        serde_json::from_str(&ok(&["queue", "stat", &sq, "--json"])).unwrap();
    assert_eq!(
        (st["capacity"].as_u64(), st["len"].as_u64()),
        (Some(4), Some(1))
    );
    let st: serde_json::Value =
        serde_json::from_str(&ok(&["queue", "stat", &mq, "--json"])).unwrap();
    assert_eq!(st["kind"], "mpmc");
    let after: Vec<Vec<u8>> = [&seg, &sq, &mq, &lock].map(|n| object_bytes(n)).to_vec();
    assert!(before == after, "inspection changed an object");
    drop((q, m));
}

/// Every other kind of object, as `inspection_needs_only_read_permission_and_changes_nothing`
/// does for segments, SPSC/MPMC queues and a lock: `ls`, `info` (text and JSON), `dump`,
/// `queue stat`, `frames stat`/`save` and `list get` work for a user who may only read, and
/// leave every byte as it was. `value get`/`array get` read atomic and seqlock cells
/// read-only; a locked cell's read takes its lock, so it is refused, saying why; `info`
/// shows a cell's first elements (a locked one read without the lock).
#[test]
fn inspection_of_every_kind_needs_only_read_permission_and_changes_nothing() {
    use shmkit::sync::{Barrier, BoundedSemaphore, Condition, Event, RLock, Semaphore};
    let base = common::unique_name("cli-ro2");
    let n = |s: &str| format!("{base}-{s}");
    let names: Vec<String> = [
        "br", "mb", "rlock", "event", "sem", "bsem", "cond", "barrier", "vl", "va", "vs", "arr",
        "list", "fr",
    ]
    .iter()
    .map(|s| n(s))
    .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let _c = Cleanup::new(&refs);
    let run = |args: &[&str]| {
        let out = shmkit(args);
        assert!(out.status.success(), "shmkit {args:?}: {out:?}");
    };
    run(&[
        "queue",
        "create",
        &n("br"),
        "--kind",
        "bytes-ring",
        "--capacity",
        "1024",
    ]);
    run(&[
        "queue",
        "create",
        &n("mb"),
        "--kind",
        "mpmc-bytes",
        "--capacity",
        "1024",
    ]);
    for q in ["br", "mb"] {
        run(&["queue", "push", &n(q), "hello"]);
    }
    let _sync = (
        RLock::create(&n("rlock")).unwrap(),
        Event::create(&n("event")).unwrap(),
        Semaphore::create(&n("sem"), 3).unwrap(),
        BoundedSemaphore::create(&n("bsem"), 2).unwrap(),
        Condition::create(&n("cond")).unwrap(),
        Barrier::create(&n("barrier"), 2).unwrap(),
    );
    _sync.1.set();
    run(&["value", "create", &n("vl"), "q", "-5"]);
    run(&["value", "create", &n("va"), "H", "7", "--cell-mode=atomic"]);
    run(&[
        "value",
        "create",
        &n("vs"),
        "d",
        "2.5",
        "--cell-mode=seqlock",
    ]);
    run(&[
        "array",
        "create",
        &n("arr"),
        "i",
        "20",
        "--cell-mode=seqlock",
    ]);
    run(&["array", "set", &n("arr"), "19", "42"]);
    run(&["list", "create", &n("list"), r#"[1, "two", 3.5, null]"#]);
    run(&[
        "frames",
        "create",
        &n("fr"),
        "--slots",
        "2",
        "--max-bytes",
        "4096",
    ]);
    {
        let mut p = shmkit::frames::FramesOptions::<[u8; 0]>::new()
            .any_header()
            .publisher(&n("fr"))
            .unwrap();
        let mut l = p.loan().unwrap();
        l.as_mut_slice()[..5].copy_from_slice(b"frame");
        l.publish_header_bytes(5, &[]).unwrap();
    }
    for name in &names {
        std::fs::set_permissions(
            format!("/dev/shm/{name}"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
    }
    let before: Vec<Vec<u8>> = names.iter().map(|n| object_bytes(n)).collect();

    let ok = |args: &[&str]| {
        let out = shmkit_as_nobody(args);
        assert!(out.status.success(), "shmkit {args:?} as nobody: {out:?}");
        stdout(&out)
    };
    let ls = ok(&["ls", "--json"]);
    for name in &names {
        assert!(ls.contains(name.as_str()), "{name}: {ls}");
        ok(&["info", name]);
        let info: serde_json::Value = serde_json::from_str(&ok(&["info", name, "--json"])).unwrap();
        assert_eq!(info["status"], "valid", "{name}: {info}");
        ok(&["dump", name, "--len", "256"]);
    }
    for q in ["br", "mb"] {
        let st: serde_json::Value =
            serde_json::from_str(&ok(&["queue", "stat", &n(q), "--json"])).unwrap();
        assert!(st["len"].as_u64().unwrap() > 0, "{q}: {st}");
    }
    let st: serde_json::Value =
        serde_json::from_str(&ok(&["frames", "stat", &n("fr"), "--json"])).unwrap();
    assert_eq!(st["last_seq"].as_u64(), Some(1), "{st}");
    ok(&["frames", "stat", &n("fr")]);
    /// Removes the directory when dropped, also when the test fails.
    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!("{base}-save"));
    std::fs::create_dir_all(&dir).unwrap();
    let _rm = TempDir(dir.clone());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = dir.join("frame.bin");
    ok(&["frames", "save", &n("fr"), file.to_str().unwrap()]);
    assert_eq!(std::fs::read(&file).unwrap(), b"frame");
    assert_eq!(ok(&["list", "get", &n("list"), "1"]).trim(), r#""two""#);
    // Cells: atomic and seqlock modes read read-only; a locked cell is refused, saying why.
    assert_eq!(ok(&["value", "get", &n("va")]).trim(), "7");
    assert_eq!(ok(&["value", "get", &n("vs")]).trim(), "2.5");
    assert_eq!(ok(&["array", "get", &n("arr"), "18:20"]), "0\n42\n");
    let out = shmkit_as_nobody(&["value", "get", &n("vl")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") && err.contains("locked-mode"),
        "{err}"
    );
    let info = |name: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&["info", name, "--json"])).unwrap()
    };
    let vl = info(&n("vl"));
    assert_eq!(vl["state"]["values"], serde_json::json!(["-5"]), "{vl}");
    assert!(
        vl["state"]["values_read"]
            .as_str()
            .unwrap()
            .starts_with("read without the lock"),
        "{vl}"
    );
    let arr = info(&n("arr"));
    let shown = arr["state"]["values"].as_array().unwrap();
    assert_eq!(shown.len(), shmkit::cell::SHOWN_ELEMENTS, "{arr}");
    assert_eq!(arr["state"]["values_read"], "seqlock snapshot", "{arr}");
    assert_eq!(info(&n("va"))["state"]["values_read"], "atomic loads");

    let after: Vec<Vec<u8>> = names.iter().map(|n| object_bytes(n)).collect();
    for ((name, b), a) in names.iter().zip(&before).zip(&after) {
        assert!(b == a, "inspection changed {name}");
    }
}

#[test]
fn a_half_initialised_object_is_reported_not_removed() {
    let seg = common::unique_name("cli-half");
    let sq = common::unique_name("cli-halfq");
    let _c = Cleanup::new(&[&seg, &sq]);
    drop(Segment::create(&seg, 64).unwrap());
    drop(shmkit::queue::spsc::Queue::<u64>::create(&sq, 4).unwrap());
    // Back to "initialising", as a version-1 creator killed mid-initialisation left it.
    for n in [&seg, &sq] {
        poke(n, 56, &0u32.to_le_bytes());
    }
    let before = [object_bytes(&seg), object_bytes(&sq)];

    let out = shmkit(&["info", &seg]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("status:          invalid: state word is 0"),
        "{text}"
    );
    assert!(text.contains("state:           initializing"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&shmkit(&["info", &seg, "--json"]).stdout).unwrap();
    assert_eq!(json["status"], "invalid");
    assert!(json["problem"]
        .as_str()
        .unwrap()
        .contains("state word is 0"));
    let out = shmkit(&["info", &sq]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !stdout(&out).contains("capacity"),
        "no queue state from an invalid header"
    );
    let ls = stdout(&shmkit(&["ls"]));
    let line = ls
        .lines()
        .find(|l| l.starts_with(seg.as_str()))
        .expect("listed");
    assert!(line.contains("segment (invalid)"), "{line}");
    let out = shmkit(&["queue", "stat", &sq]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("state word is 0"),
        "{out:?}"
    );
    assert!(shmkit(&["dump", &seg, "--len", "64"]).status.success());
    // Nothing removed, nothing changed.
    assert_eq!([object_bytes(&seg), object_bytes(&sq)], before);
}

/// `dump --offset` past the end of the object is an error like `read`'s, not an empty success;
/// at the very end it is an empty dump.
#[test]
fn dump_past_the_end_is_an_error() {
    let a = common::unique_name("cli-dump-end");
    let _c = Cleanup::new(&[&a]);
    Segment::create(&a, 8).unwrap(); // 136 bytes with the header
    let out = shmkit(&["dump", &a, "--offset", "137"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("past the end of the 136-byte object"), "{err}");
    let out = shmkit(&[
        "dump",
        &a,
        "--offset",
        "18446744073709551615",
        "--len",
        "16",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = shmkit(&["dump", &a, "--offset", "136"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
}

/// `value create NAME TYPECODE INIT` with an INIT that TYPECODE cannot hold is wrong on its
/// face (both are on the command line): exit 2, as a bad typecode or mode is, and no object.
#[test]
fn value_create_with_an_init_the_typecode_cannot_hold_is_a_usage_error() {
    let n = common::unique_name("cli-vinit");
    let _c = Cleanup::new(&[&n]);
    for (tc, init) in [("c", "abc"), ("i", "2147483648"), ("u", ""), ("B", "x")] {
        let out = shmkit(&["value", "create", &n, tc, init]);
        assert_eq!(out.status.code(), Some(2), "{tc} {init:?}: {out:?}");
        assert!(stderr(&out).starts_with("shmkit: "), "{out:?}");
        assert!(!std::path::Path::new(&format!("/dev/shm/{n}")).exists());
    }
}

/// An integer literal beyond int64 is refused (exit 2), as one beyond it on the positive side
/// always was, instead of being stored as the nearest float; float literals of any size and
/// integers in range are stored as given, and `-` (standard input) is checked the same way.
#[test]
fn list_integers_beyond_int64_are_refused_not_stored_as_floats() {
    let n = common::unique_name("cli-list-int");
    let _c = Cleanup::new(&[&n]);
    for items in [
        "[-9223372036854775809]",
        "[18446744073709551616]",
        r#"["a\"", 100000000000000000000]"#,
    ] {
        let out = shmkit(&["list", "create", &n, items]);
        assert_eq!(out.status.code(), Some(2), "{items}: {out:?}");
        assert!(stderr(&out).contains("beyond the int64 range"), "{out:?}");
        assert!(!std::path::Path::new(&format!("/dev/shm/{n}")).exists());
    }
    let items = r#"[-9223372036854775808, 1e20, 2.5, "12345678901234567890", true, false]"#;
    let out = shmkit(&["list", "create", &n, items]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&shmkit(&["list", "get", &n])).trim(),
        r#"[-9223372036854775808,1e+20,2.5,"12345678901234567890",true,false]"#
    );
    let out = common::shmkit_with_stdin(&["list", "set", &n, "0", "-"], b"-9223372036854775809");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Standard input that is not UTF-8 is not JSON either: a usage error too.
    let out = common::shmkit_with_stdin(&["list", "set", &n, "0", "-"], b"\"\xff\"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("not JSON"), "{out:?}");
    assert_eq!(
        stdout(&shmkit(&["list", "get", &n, "0"])).trim(),
        "-9223372036854775808"
    );
}

/// `write --raw` counts offsets from byte 0 of the object, so on a shmkit object it writes over
/// the header: refused without --force (like a write into a typed object's payload), for a
/// plain segment and a queue alike; a raw segment takes it, and --force still writes.
#[test]
fn write_raw_refuses_to_overwrite_a_shmkit_header_without_force() {
    let (s, q, r) = (
        common::unique_name("cli-wr-seg"),
        common::unique_name("cli-wr-q"),
        common::unique_name("cli-wr-raw"),
    );
    let _c = Cleanup::new(&[&s, &q, &r]);
    Segment::create(&s, 16).unwrap();
    drop(shmkit::queue::spsc::Queue::<u64>::create(&q, 8).unwrap());
    Segment::options().raw(true).create(&r, 16).unwrap();
    for name in [&s, &q] {
        let before = object_bytes(name);
        let out = shmkit(&["write", name, "--raw", "XXXX"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        let err = stderr(&out);
        assert!(err.contains("--force") && err.lines().count() == 1, "{err}");
        assert!(
            object_bytes(name) == before,
            "{name}: the refused write changed it"
        );
        let info: serde_json::Value =
            serde_json::from_slice(&shmkit(&["info", name, "--json"]).stdout).unwrap();
        assert_eq!(info["status"], "valid", "{name}: {info}");
    }
    assert!(shmkit(&["write", &r, "--raw", "XXXX"]).status.success());
    assert_eq!(&object_bytes(&r)[..4], b"XXXX");
    assert!(shmkit(&["write", &s, "--raw", "--force", "XXXX"])
        .status
        .success());
    assert_eq!(&object_bytes(&s)[..4], b"XXXX");
}

/// Review finding: `write --raw` refused to overwrite a ShareableList shmkit made but wrote
/// over one CPython made (no shmkit header anywhere), after which CPython's
/// `ShareableList(name=…)` failed to open it. Both are refused without --force. The list is
/// built by stock CPython.
#[test]
fn write_raw_refuses_a_cpython_shareable_list_without_force() {
    let n = common::unique_name("cli-wr-cpylist");
    let _c = Cleanup::new(&[&n]);
    // Created by CPython, then left to us (its resource tracker would unlink it at exit).
    let made = common::python(
        "python3",
        "import sys\n\
         from multiprocessing import resource_tracker\n\
         from multiprocessing.shared_memory import ShareableList\n\
         l = ShareableList([7, 'abc', 2.5], name=sys.argv[1])\n\
         resource_tracker.unregister(l.shm._name, 'shared_memory')\n\
         l.shm.close()\n\
         print('made')",
        &[&n],
    );
    assert_eq!(made.trim(), "made");
    let read_back = "import sys\n\
                     from multiprocessing import resource_tracker\n\
                     from multiprocessing.shared_memory import ShareableList\n\
                     l = ShareableList(name=sys.argv[1])\n\
                     resource_tracker.unregister(l.shm._name, 'shared_memory')\n\
                     print(list(l))\n\
                     l.shm.close()";
    let before = object_bytes(&n);
    let out = shmkit(&["write", &n, "--raw", "XXXX"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        err.contains("ShareableList made by CPython")
            && err.contains("--force")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(object_bytes(&n) == before, "the refused write changed it");
    assert_eq!(
        common::python("python3", read_back, &[&n]).trim(),
        "[7, 'abc', 2.5]"
    );
    // --force still writes (and corrupts it, as the flag's help says).
    assert!(shmkit(&["write", &n, "--raw", "--force", "XXXX"])
        .status
        .success());
    assert_eq!(&object_bytes(&n)[..4], b"XXXX");
}

/// A name with a control character (here a newline and an ESC) is one quoted, escaped row of
/// `ls`'s table, never a broken row or raw terminal bytes; `--json` gives the name exactly.
#[test]
fn ls_escapes_control_characters_in_names() {
    let base = common::unique_name("cli-ctl");
    let odd = format!("{base}\nfake-row\x1b[2J");
    let _c = Cleanup::new(&[&odd]);
    common::sparse_raw(&odd, 16);
    let text = stdout(&shmkit(&["ls"]));
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(!text.lines().any(|l| l.starts_with("fake-row")), "{text}");
    let row = text.lines().find(|l| l.contains(&base)).expect("listed");
    assert!(
        row.starts_with(&format!("{odd:?}")) && row.contains("raw"),
        "{row}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&shmkit(&["ls", "--json"]).stdout).unwrap();
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == odd.as_str()));
    // `gc` names it on one escaped line too.
    let text = stdout(&shmkit(&["gc", "--dry-run", "--prefix", &base]));
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("kept {odd:?}"))),
        "{text}"
    );
}

/// A file whose name is not UTF-8 is listed (it was skipped): quoted in `ls`'s table with
/// each invalid byte as `\xNN`, and in `--json` with a lossy `name` and its exact
/// `name_bytes`; `gc` names it the same way and keeps it. `ls` changes nothing.
#[test]
fn ls_lists_names_that_are_not_utf8() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    /// Unlinks the file when dropped, also when the test fails.
    struct Unlink(std::path::PathBuf);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    let base = common::unique_name("cli-utf8");
    let mut bytes = base.as_bytes().to_vec();
    bytes.extend_from_slice(b"-\xff\xfe-\xc3\x28-\x1b");
    let path = std::path::Path::new("/dev/shm").join(OsStr::from_bytes(&bytes));
    let _u = Unlink(path.clone());
    std::fs::write(&path, b"not a shmkit object").unwrap();

    let text = stdout(&shmkit(&["ls"]));
    let row = text
        .lines()
        .find(|l| l.contains(&base))
        .unwrap_or_else(|| panic!("not listed: {text}"));
    let shown = format!("\"{base}-\\xff\\xfe-\\xc3(-\\u{{1b}}\"");
    assert!(row.starts_with(&shown) && row.contains("raw"), "{row}");
    assert!(!text.contains('\x1b'), "{text:?}");

    let json: serde_json::Value =
        serde_json::from_slice(&shmkit(&["ls", "--json"]).stdout).unwrap();
    let r = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with(&base)))
        .unwrap_or_else(|| panic!("not in --json: {json}"));
    assert_eq!(r["name"], String::from_utf8_lossy(&bytes).as_ref(), "{r}");
    let exact: Vec<u8> = r["name_bytes"]
        .as_array()
        .unwrap_or_else(|| panic!("no name_bytes: {r}"))
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(exact, bytes);
    assert_eq!(r["kind"], "raw", "{r}");
    assert_eq!(r["size"], 19, "{r}");
    // UTF-8 names carry no `name_bytes`.
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| !n.contains('\u{fffd}')))
        .all(|r| r.get("name_bytes").is_none()));
    // Read-only: the file is as it was.
    assert_eq!(std::fs::read(&path).unwrap(), b"not a shmkit object");

    let text = stdout(&shmkit(&["gc", "--dry-run", "--prefix", &base]));
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("kept {shown}: "))),
        "{text}"
    );
    assert!(path.exists());
}

/// Review finding: `rm --any-name` matched the name given against `ls`'s display name,
/// which shows a name that is not UTF-8 with U+FFFD for each bad byte: asking to remove
/// `t-…-\u{FFFD}` removed the file named `t-…-\xff`. Names are compared as bytes; a name that
/// is not UTF-8 is given as its own bytes.
#[test]
fn rm_any_name_compares_names_as_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    /// Removes the file when dropped (`Cleanup` takes UTF-8 names only).
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let base = common::unique_name("cli-anyname-bytes");
    let mut raw = format!("{base}-").into_bytes();
    raw.push(0xff);
    let path = std::path::Path::new("/dev/shm").join(OsStr::from_bytes(&raw));
    let _r = Remove(path.clone());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    let lossy = format!("{base}-\u{FFFD}");
    let out = shmkit(&["rm", "--any-name", &lossy]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        path.exists(),
        "rm removed {path:?} when asked for {lossy:?}"
    );
    // The name's own bytes remove it.
    let out = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args([
            OsStr::new("rm"),
            OsStr::new("--any-name"),
            OsStr::from_bytes(&raw),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!path.exists());
}

/// `shmkit info` is the tool to look at a damaged object: a valid header over a corrupt
/// object (here an SPSC queue's capacity word) is shown with its header and status
/// `invalid` with the problem, as a corrupt header is; it printed only an error line and no
/// JSON before. (From the CLI review.)
#[test]
fn info_describes_an_object_whose_state_is_corrupt() {
    let name = common::unique_name("cli-infocorrupt");
    let _c = Cleanup::new(&[&name]);
    let c = shmkit(&[
        "queue",
        "create",
        &name,
        "--kind",
        "spsc",
        "--capacity",
        "16",
        "--elem-size",
        "8",
    ]);
    assert!(c.status.success(), "{}", stderr(&c));
    // The queue's capacity word (first payload byte) becomes 51: not a power of two.
    let w = shmkit(&["write", &name, "--force", "--offset", "0", "3"]);
    assert!(w.status.success(), "{}", stderr(&w));
    let out = shmkit(&["info", &name, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "spsc", "{v}");
    assert!(v["header"].is_object(), "{v}");
    assert_eq!(v["status"], "invalid", "{v}");
    assert!(
        v["problem"].as_str().unwrap().contains("capacity 51"),
        "{v}"
    );
    let text = stdout(&shmkit(&["info", &name]));
    assert!(
        text.contains("status:          invalid: ") && text.contains("fingerprint:"),
        "{text}"
    );
}

/// A verb used on a valid shmkit object of another kind says what the object holds, as the
/// queue and frames verbs do, not that a valid object is "corrupt" with Rust API advice
/// (`.raw(true)`). (From the CLI review.)
#[test]
fn wrong_kind_messages_name_the_kind_not_corruption() {
    let list = common::unique_name("cli-kind-list");
    let val = common::unique_name("cli-kind-val");
    let raw = common::unique_name("cli-kind-raw");
    let _c = Cleanup::new(&[&list, &val, &raw]);
    assert!(shmkit(&["list", "create", &list, "[1, 2]"])
        .status
        .success());
    assert!(shmkit(&["value", "create", &val, "q", "5"])
        .status
        .success());
    assert!(shmkit(&["create", &raw, "--size", "100", "--raw"])
        .status
        .success());
    for (args, want) in [
        (
            vec!["value", "get", list.as_str()],
            "holds a shareable-list, not a value cell",
        ),
        (vec!["value", "set", list.as_str(), "1"], "not a value cell"),
        (
            vec!["array", "get", val.as_str()],
            "holds Value<q>, asked for an array",
        ),
        (
            vec!["array", "set", list.as_str(), "0", "1"],
            "not an array cell",
        ),
        (
            vec!["list", "get", val.as_str()],
            "holds a value, not a ShareableList",
        ),
        (
            vec!["list", "set", val.as_str(), "0", "1"],
            "not a ShareableList",
        ),
        (vec!["value", "get", raw.as_str()], "raw segment"),
    ] {
        let o = shmkit(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {e:?} lacks {want:?}");
        assert!(
            !e.contains("corrupt") && !e.contains(".raw(true)"),
            "{args:?}: {e}"
        );
    }
}

/// `read`/`write` on a ShareableList that shmkit made (its header is a trailer): they called
/// it corrupt, and `write --raw`'s advice ("drop --raw") led back to that error. Now both say
/// to use --raw for its bytes, which works (and `write --raw` asks for --force). (From the
/// CLI review.)
#[test]
fn read_and_write_of_a_shmkit_list_point_to_raw() {
    let list = common::unique_name("cli-rw-list");
    let _c = Cleanup::new(&[&list]);
    assert!(shmkit(&["list", "create", &list, "[1, 2]"])
        .status
        .success());
    for args in [
        vec!["read", list.as_str()],
        vec!["write", list.as_str(), "--force", "x"],
    ] {
        let o = shmkit(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(
            e.contains("--raw") && !e.contains("corrupt"),
            "{args:?}: {e}"
        );
    }
    let r = shmkit(&["read", &list, "--raw", "--len", "8"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(r.stdout, 2u64.to_le_bytes()); // CPython's layout: the item count first
    let w = shmkit(&["write", &list, "--raw", "x"]);
    assert!(stderr(&w).contains("--force"), "{}", stderr(&w));
}

/// `ls` by a user who may not read an object: it showed another user's 0600 shmkit queue as
/// kind `raw`, status `raw` (which `--help` and the README define as "foreign"); now both say
/// `unreadable`. (From the CLI review.)
#[test]
fn ls_says_unreadable_for_an_object_this_user_cannot_read() {
    let q = common::unique_name("cli-unreadable");
    let _c = Cleanup::new(&[&q]);
    let c = shmkit(&["queue", "create", &q, "--kind", "spsc", "--capacity", "4"]);
    assert!(c.status.success(), "{}", stderr(&c));
    let out = shmkit_as_nobody(&["ls", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == q.as_str())
        .unwrap_or_else(|| panic!("{q} not listed: {rows}"));
    assert_eq!(
        (&row["kind"], &row["status"]),
        (&"unreadable".into(), &"unreadable".into()),
        "{row}"
    );
    // As root (who may read it), the same object is a valid spsc queue.
    let ls = stdout(&shmkit(&["ls"]));
    let line = ls.lines().find(|l| l.starts_with(q.as_str())).unwrap();
    assert!(line.contains(" spsc "), "{line}");
}

/// `write NAME -` reads at most one byte more than fits from standard input: it read all of it
/// first (a 1 GB pipe into a 64-byte segment ran out of memory under a limit). (From the CLI
/// review.)
#[test]
fn write_from_stdin_stops_reading_past_the_payload() {
    use std::io::Write;
    let name = common::unique_name("cli-stdin-big");
    let _c = Cleanup::new(&[&name]);
    assert!(shmkit(&["create", &name, "--size", "64"]).status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(["write", &name, "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // 64 MiB, more than a pipe holds: the writer gets EPIPE once shmkit stops reading.
    let fed = (0..1024).try_for_each(|_| input.write_all(&[1u8; 65536]));
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("more than the 64 bytes"),
        "{}",
        stderr(&out)
    );
    assert!(fed.is_err(), "shmkit read all 64 MiB");
    let mut b = [9u8];
    Segment::open(&name).unwrap().read_at(0, &mut b).unwrap();
    assert_eq!(b, [0]); // nothing written
}

/// `create`, `value create` and `array create` take `--lifetime` as `queue create`, `list
/// create` and `frames create` do: an owned object, whose creator (the CLI process) has
/// exited, is removed by `gc`; a persistent one is kept. The cells take `--sparse` too.
#[test]
fn create_value_and_array_take_lifetime_and_gc_collects_the_owned_ones() {
    let base = common::unique_name("cli-life");
    let n = |s: &str| format!("{base}-{s}");
    let names = [n("seg"), n("val"), n("arr"), n("kept")];
    let _c = Cleanup::new(&names);
    let run = |args: &[&str]| {
        let out = shmkit(args);
        assert!(out.status.success(), "shmkit {args:?}: {out:?}");
    };
    let owned = ["--lifetime", "owned"];
    run(&[&["create", &n("seg"), "--size", "64"][..], &owned].concat());
    run(&[
        &["value", "create", &n("val"), "q", "7", "--sparse"][..],
        &owned,
    ]
    .concat());
    run(&[&["array", "create", &n("arr"), "d", "4"][..], &owned].concat());
    run(&[
        "value",
        "create",
        &n("kept"),
        "q",
        "--lifetime",
        "persistent",
    ]);
    for name in &names[..3] {
        let info = stdout(&shmkit(&["info", name]));
        assert!(
            info.lines()
                .any(|l| l.starts_with("lifetime:") && l.ends_with("owned")),
            "{name}: {info}"
        );
    }
    // A raw segment has no header to record it in: refused, as the library refuses it.
    let raw = shmkit(&[
        "create",
        &n("raw"),
        "--size",
        "8",
        "--raw",
        "--lifetime",
        "owned",
    ]);
    assert_eq!(raw.status.code(), Some(2), "{raw:?}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{}", n("raw"))).exists());

    let out = shmkit(&["gc", "--prefix", &format!("{base}-")]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for name in &names[..3] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("removed {name}: owned"))),
            "{name}: {text}"
        );
        assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    }
    assert!(std::path::Path::new(&format!("/dev/shm/{}", n("kept"))).exists());
}

/// Review finding: with only read permission, `value get ARRAY` printed the array's element
/// 0 and `array get VALUE` the value (the read-only fallback did not check the kind), while
/// with write permission both are refused naming the kinds. Both paths refuse alike.
#[test]
fn cell_get_needs_only_read_permission_and_checks_the_kind() {
    let base = common::unique_name("cli-rokind");
    let (val, arr) = (format!("{base}-val"), format!("{base}-arr"));
    let _c = Cleanup::new(&[&val, &arr]);
    for args in [
        ["value", "create", &val, "q", "5", "--cell-mode=atomic"],
        ["array", "create", &arr, "d", "4", "--cell-mode=seqlock"],
    ] {
        let out = shmkit(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    for name in [&val, &arr] {
        std::fs::set_permissions(
            format!("/dev/shm/{name}"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
    }
    let refused = |out: Output, want: &str| {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    };
    let as_array = format!("segment {val:?} holds Value<q>, asked for an array");
    let as_value = format!("segment {arr:?} holds Array<d>[4], asked for a value");
    // Read-write (root) and read-only (nobody): the same refusal.
    refused(shmkit(&["array", "get", &val]), &as_array);
    refused(shmkit(&["value", "get", &arr]), &as_value);
    refused(shmkit_as_nobody(&["array", "get", &val]), &as_array);
    refused(shmkit_as_nobody(&["value", "get", &arr]), &as_value);
    // And the right verbs still read them read-only.
    let out = shmkit_as_nobody(&["value", "get", &val]);
    assert_eq!(stdout(&out), "5\n", "{out:?}");
    let out = shmkit_as_nobody(&["array", "get", &arr]);
    assert_eq!(stdout(&out), "0\n0\n0\n0\n", "{out:?}");
}
