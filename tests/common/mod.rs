//! Cross-process test harness, shared by every integration test file (`mod common;`).
//!
//! - [`unique_name`]: a segment name no other test, process or run uses.
//! - [`Cleanup`]: unlinks names in `Drop`, so a failing (panicking) test leaves nothing in
//!   `/dev/shm`.
//! - [`spawn_child`] / [`child_entry`]: run a *separate process* by re-executing the current
//!   test binary. Each test file has
//!
//!   ```ignore
//!   #[test]
//!   fn child_main() {
//!       common::child_entry(|role, args| match role {
//!           "writer" => { /* ... */ }
//!           other => panic!("unknown role {other}"),
//!       });
//!   }
//!   ```
//!
//!   and a test starts a child with `common::spawn_child("writer", &[name])`. The child runs
//!   only `child_main` (`--exact child_main`), with the role and arguments in its environment;
//!   in a normal test run `child_main` sees no role and returns at once. Nothing is inherited
//!   through `fork`: the child attaches to segments by name like any unrelated process.
#![allow(dead_code)]

pub mod chaos;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROLE_VAR: &str = "SHMKIT_CHILD_ROLE";
const ARGS_VAR: &str = "SHMKIT_CHILD_ARGS";

/// An example binary built beside the test binary (`cargo test` builds the examples).
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join("examples").join(name);
    assert!(
        p.exists(),
        "{} is missing: `cargo test` builds the examples; for one test file alone run \
         `cargo build --examples` first",
        p.display()
    );
    p
}

/// Run the `shmkit` binary with `args` and `input` on its standard input (closed after it);
/// its whole output.
pub fn shmkit_with_stdin(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmkit");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).expect("write shmkit's input");
    drop(stdin);
    child.wait_with_output().expect("run shmkit")
}

/// A name unique to this process, this call site's `tag` and a counter:
/// `t-<tag>-<pid>-<n>`.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("t-{tag}-{}-{n}", std::process::id())
}

/// Unlinks every name it holds when dropped, ignoring names that are already gone, and any
/// temporary object left by a creator killed while building one of them.
pub struct Cleanup(Vec<String>);

impl Cleanup {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Cleanup {
        Cleanup(names.iter().map(|s| s.as_ref().to_owned()).collect())
    }

    pub fn add(&mut self, name: &str) {
        self.0.push(name.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
            for t in temp_objects_of(n) {
                let _ = std::fs::remove_file(format!("/dev/shm/{t}"));
            }
        }
    }
}

/// Files in `/dev/shm` holding objects being built (or abandoned while being built) for
/// `name`: `.shmkit-tmp-<token>-<counter>-<name>` (`SPEC.md` §4.1).
pub fn temp_objects_of(name: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|f| {
            f.strip_prefix(".shmkit-tmp-")
                .and_then(|r| r.split_once('-'))
                .and_then(|(_, r)| r.split_once('-'))
                .is_some_and(|(_, target)| target == name)
        })
        .collect()
}

/// Start `role` in a new process (this test binary, re-executed). Its stdout is piped so the
/// test can read what it reports; stderr passes through.
pub fn spawn_child(role: &str, args: &[&str]) -> Child {
    child_command(role, args)
        .spawn()
        .expect("spawn child test process")
}

/// The command [`spawn_child`] runs, for tests that want to adjust it.
pub fn child_command(role: &str, args: &[&str]) -> Command {
    child_command_under(&[], role, args)
}

/// [`child_command`] run through `wrapper` (a program and its arguments, such as
/// `["unshare", "--pid", "--fork"]`), which gets the test binary and its arguments last.
pub fn child_command_under(wrapper: &[&str], role: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match wrapper.split_first() {
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args([
        "--exact",
        "child_main",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE_VAR, role)
    .env(ARGS_VAR, args.join("\u{1f}"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

/// In `child_main`: if this process was started by [`spawn_child`], run `body` with its role
/// and arguments, then exit the process (0, or 101 if `body` panicked). Otherwise return.
pub fn child_entry(body: impl FnOnce(&str, &[String])) {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    let args: Vec<String> = match std::env::var(ARGS_VAR) {
        Ok(s) if !s.is_empty() => s.split('\u{1f}').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&role, &args)));
    let _ = std::io::stdout().flush();
    std::process::exit(if r.is_ok() { 0 } else { 101 });
}

/// Print a line for the parent to read (children talk to tests over stdout).
pub fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// How long [`Lines`] waits for a child's next line before it fails the test: a hang
/// detector, not a speed assertion, so generous enough that a child descheduled on an
/// oversubscribed machine never trips it.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads a child's reported lines. A thread reads the pipe (and ends at its EOF), so that a
/// wait for a line is bounded by [`LINE_TIMEOUT`]: a child that hangs without printing
/// fails the test instead of hanging it.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    /// The last lines read, for the message of a timeout.
    seen: Vec<String>,
}

impl Lines {
    pub fn of(child: &mut Child) -> Lines {
        let out = child.stdout.take().expect("child stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Until EOF or a line that is not UTF-8 (as `read_line` stopped); the receiver
            // then sees the channel closed.
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The next non-empty line that is not libtest noise, or `None` at EOF; panics if no line
    /// comes within [`LINE_TIMEOUT`].
    pub fn next_line(&mut self) -> Option<String> {
        loop {
            let s = match self.rx.recv_timeout(LINE_TIMEOUT) {
                Ok(s) => s,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "no line from the child within {LINE_TIMEOUT:?} (hung?); its last lines: {:?}",
                    self.seen
                ),
            };
            let t = s.trim();
            if !t.is_empty() && !t.starts_with("running ") && !t.starts_with("test ") {
                if self.seen.len() == 20 {
                    self.seen.remove(0);
                }
                self.seen.push(t.to_owned());
                return Some(t.to_owned());
            }
        }
    }

    /// Read lines until one equals `want`; panics at EOF, or if no line comes within
    /// [`LINE_TIMEOUT`].
    pub fn expect(&mut self, want: &str) {
        while let Some(l) = self.next_line() {
            if l == want {
                return;
            }
        }
        panic!("child exited before reporting {want:?}");
    }
}

/// Wait for `child` to exit, up to `timeout`; kill it and panic if it does not, so a hung
/// child fails the test instead of hanging it.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait for `child` and assert it exited successfully.
pub fn wait_ok(child: &mut Child, timeout: Duration) {
    let st = wait_exit(child, timeout);
    assert!(st.success(), "child {} failed: {st}", child.id());
}

/// SIGKILL `child` and reap it.
pub fn kill9(child: &mut Child) {
    let _ = child.kill(); // std's kill is SIGKILL on Unix
    let _ = child.wait();
}

/// Run a Python interpreter on `script` with `args`; returns stdout, panics with stderr on
/// failure. `python` is e.g. `python3` or a pyenv path.
pub fn python(python: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    assert!(
        out.status.success(),
        "{python} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// `python3` plus every CPython ≥ 3.8 under pyenv (the versions with
/// `multiprocessing.shared_memory`), for interop tests.
pub fn pythons() -> Vec<String> {
    let mut v = vec!["python3".to_string()];
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if let Ok(dir) = std::fs::read_dir(format!("{root}/versions")) {
            let mut found: Vec<String> = dir
                .flatten()
                .filter(|e| {
                    let v = e.file_name().to_string_lossy().into_owned();
                    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                    (it.next(), it.next()) >= (Some(3), Some(8))
                })
                .map(|e| format!("{}/bin/python3", e.path().display()))
                .filter(|p| std::path::Path::new(p).exists())
                .collect();
            found.sort();
            v.extend(found);
        }
    }
    v
}

/// The forked child's own copy of a value its parent also owns (`tests/fork.rs`, `tests/torture.rs`): the child
/// `_exit`s without dropping the original, so dropping this copy is what a child that
/// inherited the handle and dropped it does.
pub fn inherited<V>(v: &V) -> V {
    // SAFETY: only called in a forked child, which never drops `v` itself (it `_exit`s).
    unsafe { std::ptr::read(v) }
}

/// fork(); run `child` in the child and `_exit` with its code; wait (60 s at most) for it and
/// return its exit code (200 if it had to be killed, 128 + n if a signal killed it).
pub fn fork_and(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the children of this test are single-threaded apart from libtest's idle main
    // thread; glibc's fork keeps malloc usable in the child, which ends with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(99);
        // SAFETY: ends the forked child at once, without destructors or exit handlers.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
        if Instant::now() >= deadline {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return 200;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Create `/dev/shm/NAME` as a sparse raw object of `size` bytes (no memory is used).
pub fn sparse_raw(name: &str, size: u64) {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.set_len(size).unwrap();
}

/// A 100-byte `#[repr(C)]` record (neither a power of two nor a multiple of 8): the element
/// of the tests of queues whose element size the CLI and the raw handles must take as it is.
#[derive(
    Clone, Copy, Debug, PartialEq, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable,
)]
#[repr(C)]
pub struct Rec100 {
    pub id: u32,
    pub text: [u8; 96],
}
shmkit::shm_type!(Rec100);
