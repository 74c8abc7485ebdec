//! A `fork()` by another thread while a process creates its first liveness token, before it
//! has registered its fork handlers: the child inherited the token's "being created" mark
//! with nobody to clear it, and its first call that needed a token waited on it for ever
//! (SPEC §2.3, failure cases). An `LD_PRELOAD` shim that delays `__register_atfork` (which
//! glibc's `pthread_atfork` calls) widens that window to 300 ms. (From the segment review.)

mod common;

use std::time::Duration;

#[test]
fn child_main() {
    common::child_entry(|role, _| match role {
        "fork-in-first-token" => {
            // This process's first token, on another thread: the (slowed) registration.
            let t = std::thread::spawn(shmkit::ProcessMark::here);
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: the child calls only alarm, shmkit's first token and _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: plain system calls; SIGALRM ends the child if it hangs.
                unsafe { libc::alarm(10) };
                let m = shmkit::ProcessMark::here();
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(if m.is_here() { 0 } else { 2 }) };
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            t.join().unwrap();
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the forked child hung in its first token (signal {}) or failed (exit {})",
                libc::WTERMSIG(status),
                libc::WEXITSTATUS(status)
            );
            common::report("child got its token");
        }
        other => panic!("unknown role {other}"),
    });
}

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
int __register_atfork(void (*p)(void), void (*a)(void), void (*c)(void), void *d) {
    usleep(300000);
    int (*real)(void (*)(void), void (*)(void), void (*)(void), void *) =
        (int (*)(void (*)(void), void (*)(void), void (*)(void), void *))dlsym(RTLD_NEXT, "__register_atfork");
    return real(p, a, c, d);
}
"#;

/// Removes a directory when dropped.
struct RmDir(std::path::PathBuf);

impl Drop for RmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_fork_during_the_first_token_does_not_hang_the_child() {
    let dir = RmDir(std::env::temp_dir().join(common::unique_name("liveness-fork-shim")));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (c, so) = (dir.0.join("shim.c"), dir.0.join("shim.so"));
    std::fs::write(&c, SHIM).unwrap();
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&c)
        .arg("-ldl")
        .status()
        .expect("run cc (the C compiler Rust links with)");
    assert!(built.success(), "cc failed to build the shim");
    let out = common::child_command("fork-in-first-token", &[])
        .env("LD_PRELOAD", &so)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("child got its token"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
