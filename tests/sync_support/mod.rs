//! Stand-in for the lead's `tests/common` harness (same API): unique names, an unlinking
//! guard, and re-exec of the test binary as a child process. Replace with `mod common;` once
//! it lands on main.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const ROLE: &str = "SHMKIT_CHILD_ROLE";
const ARGS: &str = "SHMKIT_CHILD_ARGS";

/// A segment name unique to this process and call.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Unlinks the names when dropped (even when the test panics).
pub struct Cleanup(Vec<String>);

impl Cleanup {
    pub fn new(names: &[&str]) -> Cleanup {
        Cleanup(names.iter().map(|s| s.to_string()).collect())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmkit::Segment::unlink(n);
        }
    }
}

/// In the `child_main` test: run `f(role, args)` and exit with its status if this process was
/// spawned as a child; otherwise return at once.
pub fn child_entry(f: impl FnOnce(&str, &[String]) -> i32) {
    let Ok(role) = std::env::var(ROLE) else { return };
    let args: Vec<String> = std::env::var(ARGS)
        .map(|a| if a.is_empty() { Vec::new() } else { a.split('\u{1f}').map(str::to_owned).collect() })
        .unwrap_or_default();
    let code = f(&role, &args);
    std::process::exit(code);
}

/// Start this test binary again as a child running `role` with `args`.
pub fn spawn_child(role: &str, args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(ARGS, args.join("\u{1f}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// Wait for a child with a deadline; kill it and panic if it overruns.
pub fn wait_child(mut c: Child, secs: u64) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if std::time::Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("child did not finish within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
