//! Queues refuse processes that cannot judge their peers' liveness by pid: a process in
//! another pid namespace than the queue's creator, or one whose `/proc` is another
//! namespace's (`SPEC.md` §7). Uses `unshare(1)` (root, or unprivileged user namespaces); where
//! it cannot make a pid namespace the tests say so and pass without checking.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{child_command_under, unique_name, wait_ok, Cleanup, Lines};
use shmkit::queue::bytes::Ring;
use shmkit::queue::{mpmc, spsc, AttachError};

const WAIT: Duration = Duration::from_secs(60);

/// `unshare` arguments that make a new pid namespace (the child is its pid 1), as root or
/// through a user namespace; `None` if neither works here.
fn unshare(mount_proc: bool) -> Option<Vec<&'static str>> {
    let extra: &[&str] = if mount_proc { &["--mount-proc"] } else { &[] };
    for base in [
        &["unshare", "--pid", "--fork"][..],
        &["unshare", "--user", "--map-root-user", "--pid", "--fork"][..],
    ] {
        let mut argv: Vec<&str> = base.to_vec();
        argv.extend_from_slice(extra);
        let ok = Command::new(argv[0])
            .args(&argv[1..])
            .arg("true")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(argv);
        }
    }
    eprintln!("note: unshare cannot make a pid namespace here; pid-namespace checks not run");
    None
}

/// What `attach` gave: `pidns: REASON`, `ok`, or `other: ERROR`.
fn outcome<T>(r: Result<T, AttachError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(AttachError::PidNamespace { reason, .. }) => format!("pidns: {reason}"),
        Err(e) => format!("other: {e}"),
    }
}

#[test]
fn child_main() {
    common::child_entry(|role, args| {
        let name = &args[0];
        let line = match role {
            "attach-spsc" => outcome(spsc::Queue::<u64>::open(name).unwrap().producer()),
            "attach-mpmc" => outcome(mpmc::Queue::<u64>::open(name).unwrap().consumer()),
            "attach-bytes" => outcome(Ring::open(name).unwrap().consumer()),
            "create-spsc" => {
                let q = spsc::Queue::<u64>::create(name, 8).unwrap();
                let r = outcome(q.consumer());
                common::report(&r);
                // Keep the queue (and its creator) alive until the parent has tried.
                let mut s = String::new();
                std::io::stdin().read_line(&mut s).unwrap();
                return;
            }
            other => panic!("unknown role {other}"),
        };
        common::report(&line);
    });
}

/// Run `role NAME` under `wrapper` and return the line it reports.
fn run(wrapper: &[&str], role: &str, name: &str) -> String {
    let mut child = child_command_under(wrapper, role, &[name]).spawn().unwrap();
    let line = Lines::of(&mut child).next_line().expect("a report line");
    wait_ok(&mut child, WAIT);
    line
}

#[test]
fn a_process_in_another_pid_namespace_is_refused() {
    let Some(ns) = unshare(true) else { return };
    let base = unique_name("pidns");
    let names: Vec<String> = ["spsc", "mpmc", "bytes"]
        .iter()
        .map(|k| format!("{base}-{k}"))
        .collect();
    let _cleanup = Cleanup::new(&names);
    let _s = spsc::Queue::<u64>::create(&names[0], 8).unwrap();
    let _m = mpmc::Queue::<u64>::create(&names[1], 8).unwrap();
    let _b = Ring::create(&names[2], 4096).unwrap();
    for (role, name) in ["attach-spsc", "attach-mpmc", "attach-bytes"]
        .iter()
        .zip(&names)
    {
        let line = run(&ns, role, name);
        assert!(
            line.starts_with("pidns: it was created in pid namespace pid:["),
            "{role}: {line}"
        );
    }
    // The control: the same attach from this namespace works.
    assert_eq!(run(&[], "attach-spsc", &names[0]), "ok");
}

#[test]
fn a_process_whose_proc_is_another_namespaces_is_refused() {
    let Some(ns) = unshare(false) else { return };
    let name = unique_name("pidns-proc");
    let _cleanup = Cleanup::new(&[&name]);
    let _q = spsc::Queue::<u64>::create(&name, 8).unwrap();
    let line = run(&ns, "attach-spsc", &name);
    assert!(
        line.starts_with("pidns: /proc is another pid namespace's")
            && line.ends_with("; mount a /proc for this namespace"),
        "{line}"
    );
}

#[test]
fn a_queue_created_in_another_pid_namespace_refuses_this_process() {
    let Some(ns) = unshare(true) else { return };
    let name = unique_name("pidns-creator");
    let _cleanup = Cleanup::new(&[&name]);
    let mut child = child_command_under(&ns, "create-spsc", &[&name])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut child);
    // Inside its own namespace the creator attaches.
    assert_eq!(lines.next_line().as_deref(), Some("ok"));
    let q = spsc::Queue::<u64>::open(&name).unwrap();
    let r = outcome(q.producer());
    assert!(
        r.starts_with("pidns: it was created in pid namespace pid:["),
        "{r}"
    );
    drop(child.stdin.take());
    wait_ok(&mut child, WAIT);
}
