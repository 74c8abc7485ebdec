#![cfg(not(loom))]
//! Liveness tokens between users: a hostile local user (`nobody`, through `setpriv`) against
//! processes running as root. Each test runs in a mount namespace of its own with a private
//! tmpfs on `/dev/shm` (`unshare --mount`), so the attacker sees and touches no other
//! process's registry. Needs root, as CI runs the tests: as another user they fail, saying so.

mod common;

use shmkit::sync::{Lock, LockError};
use shmkit::{Liveness, Segment};
use std::time::Duration;

const NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];
const REGISTRY: &str = "/dev/shm/.shmkit";

/// Runs a child role with a private tmpfs on `/dev/shm` (the test binary is `$0`).
const PRIVATE_SHM: [&str; 6] = ["unshare", "--mount", "--propagation", "private", "sh", "-c"];
const MOUNT: &str =
    "mount -t tmpfs -o size=8m,mode=1777 shmkit-test /dev/shm && exec \"$0\" \"$@\"";

/// Kills and reaps a child when dropped (a failing test leaves no process behind).
struct Reap(std::process::Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A whole-file `flock` of `kind`.
fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl
}

fn shmkit(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .unwrap()
}

fn shmkit_as_nobody(args: &[&str]) -> std::process::Output {
    std::process::Command::new(NOBODY[0])
        .args(&NOBODY[1..])
        .arg(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .unwrap()
}

/// Run `role` in a private `/dev/shm` and expect it to report "ok".
fn run_in_private_shm(role: &str) {
    let mut wrapper: Vec<&str> = PRIVATE_SHM.to_vec();
    wrapper.push(MOUNT);
    let mut child = Reap(
        common::child_command_under(&wrapper, role, &[])
            .spawn()
            .unwrap(),
    );
    let mut lines = common::Lines::of(&mut child.0);
    let got = lines.next_line();
    assert_eq!(
        got.as_deref(),
        Some("ok"),
        "{role} did not finish (see its output above; this test needs root: it mounts a tmpfs \
         on /dev/shm in a mount namespace of its own and runs user nobody with setpriv)"
    );
    let st = common::wait_exit(&mut child.0, Duration::from_secs(120));
    assert!(st.success(), "{role}: {st}");
}

#[test]
fn child_main() {
    common::child_entry(|role, args| match role {
        // Root, in a private /dev/shm: many processes get their tokens while user nobody
        // read-locks every file that appears in the registry.
        "rdlock-driver" => {
            // The registry exists (mode 1777, as shmkit creates it) before the watcher starts.
            let n = common::unique_name("mu-rd-first");
            let _c = common::Cleanup::new(&[&n]);
            Segment::options().create(&n, 8).unwrap();
            let mut attacker = Reap(
                common::child_command_under(&NOBODY, "rdlock-race", &[])
                    .spawn()
                    .unwrap(),
            );
            let mut al = common::Lines::of(&mut attacker.0);
            assert_eq!(al.next_line().as_deref(), Some("watching"));
            let base = common::unique_name("mu-rd");
            for i in 0..300 {
                let n = format!("{base}-{i}");
                let _c = common::Cleanup::new(&[&n]);
                let out = shmkit(&["create", &n, "--size", "8"]);
                assert!(
                    out.status.success(),
                    "victim {i} got no token: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            common::report("ok");
        }
        // Nobody: watch the registry; the moment a file appears in it, open it and take a
        // read lock, before its creator can take its write lock (if it could be opened).
        "rdlock-race" => {
            // SAFETY: plain system calls on descriptors this role owns; the event buffer is
            // read as the kernel's `inotify_event` records it wrote.
            unsafe {
                let ino = libc::inotify_init1(libc::IN_CLOEXEC);
                assert!(ino >= 0);
                let dir = c"/dev/shm/.shmkit";
                assert!(libc::inotify_add_watch(ino, dir.as_ptr(), libc::IN_CREATE) >= 0);
                common::report("watching");
                let mut held = Vec::new();
                let mut buf = [0u64; 512];
                loop {
                    let n = libc::read(ino, buf.as_mut_ptr().cast(), 4096);
                    assert!(n > 0);
                    let bytes = buf.as_ptr().cast::<u8>();
                    let mut at = 0;
                    while at < n as usize {
                        let ev = &*bytes.add(at).cast::<libc::inotify_event>();
                        let name = std::slice::from_raw_parts(bytes.add(at + 16), ev.len as usize);
                        at += 16 + ev.len as usize;
                        let mut path = b"/dev/shm/.shmkit/".to_vec();
                        path.extend(name.iter().take_while(|&&b| b != 0));
                        path.push(0);
                        let fd = libc::open(
                            path.as_ptr().cast(),
                            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
                        );
                        if fd < 0 {
                            continue;
                        }
                        let fl = whole_file_lock(libc::F_RDLCK);
                        libc::fcntl(fd, libc::F_OFD_SETLK, &fl);
                        held.push(fd);
                        if held.len() > 64 {
                            libc::close(held.remove(0));
                        }
                    }
                }
            }
        }
        // Root, in a private /dev/shm whose registry root made 1733.
        "registry-1733-driver" => registry_1733_driver(),
        // Root: take the lock and keep it until killed.
        "hold" => {
            let lock = Lock::open(&args[0]).unwrap();
            let g = lock.lock_timeout(Duration::from_secs(10)).unwrap();
            common::report("held");
            std::thread::sleep(Duration::from_secs(120));
            drop(g);
            panic!("the holder was never killed");
        }
        // Nobody: try to learn the token of process `args[0]` from the registry (its listing
        // and the display records, which name pids), and to watch it.
        "snoop" => {
            // SAFETY: geteuid has no preconditions.
            assert_ne!(unsafe { libc::geteuid() }, 0, "the snoop must not be root");
            match std::fs::read_dir(REGISTRY) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    common::report("list denied")
                }
                other => common::report(&format!("list {other:?}")),
            }
            // SAFETY: plain system calls on a descriptor this role owns.
            let watch = unsafe {
                let ino = libc::inotify_init1(libc::IN_CLOEXEC);
                assert!(ino >= 0);
                let r = libc::inotify_add_watch(ino, c"/dev/shm/.shmkit".as_ptr(), libc::IN_CREATE);
                let e = std::io::Error::last_os_error();
                libc::close(ino);
                (r, e)
            };
            match watch {
                (r, e) if r < 0 && e.raw_os_error() == Some(libc::EACCES) => {
                    common::report("watch denied")
                }
                (r, e) => common::report(&format!("watch {r} {e}")),
            }
            let want = format!("pid {}\n", args[0]);
            let found = std::fs::read_dir(REGISTRY).ok().and_then(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.starts_with(&want)))
            });
            match found {
                None => common::report("not-found"),
                Some(p) => common::report(&format!("found {}", p.display())),
            }
        }
        // Nobody: get a token, create a private lock and a segment, take the lock and keep
        // it until killed.
        "user" => {
            let lock = Lock::options().mode(0o600).create(&args[0]).unwrap();
            Segment::options().create(&args[1], 64).unwrap();
            let g = lock.lock().unwrap();
            common::report("held");
            std::thread::sleep(Duration::from_secs(120));
            drop(g);
            panic!("the user was never killed");
        }
        other => panic!("unknown role {other}"),
    });
}

fn registry_1733_driver() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir(REGISTRY).unwrap();
    std::fs::set_permissions(REGISTRY, std::fs::Permissions::from_mode(0o1733)).unwrap();
    // Root holds a root-only lock, then dies holding it.
    let ln = common::unique_name("mu-1733-lock");
    let (un, us) = (
        common::unique_name("mu-1733-user-lock"),
        common::unique_name("mu-1733-user-seg"),
    );
    let _c = common::Cleanup::new(&[&ln, &un, &us]);
    let lock = Lock::options().mode(0o600).create(&ln).unwrap();
    let mut victim = Reap(common::spawn_child("hold", &[&ln]));
    let mut vl = common::Lines::of(&mut victim.0);
    assert_eq!(vl.next_line().as_deref(), Some("held"));
    let pid = victim.0.id().to_string();
    // User nobody can neither list nor watch the registry: it cannot learn the victim's token.
    let mut snoop = Reap(
        common::child_command_under(&NOBODY, "snoop", &[&pid])
            .spawn()
            .unwrap(),
    );
    let mut sl = common::Lines::of(&mut snoop.0);
    for want in ["list denied", "watch denied", "not-found"] {
        assert_eq!(sl.next_line().as_deref(), Some(want));
    }
    common::wait_ok(&mut snoop.0, Duration::from_secs(60));
    // Nobody still gets a token, creates objects and takes locks there, and root sees it
    // alive by name.
    let mut user = Reap(
        common::child_command_under(&NOBODY, "user", &[&un, &us])
            .spawn()
            .unwrap(),
    );
    let mut ul = common::Lines::of(&mut user.0);
    assert_eq!(ul.next_line().as_deref(), Some("held"));
    let theirs = Lock::open(&un).unwrap();
    assert_eq!(theirs.owner().unwrap().liveness(), Liveness::Alive);
    assert!(matches!(
        theirs.lock_timeout(Duration::from_millis(50)),
        Err(LockError::Timeout)
    ));
    assert_eq!(
        std::fs::metadata(format!("/dev/shm/{us}")).unwrap().uid(),
        65534
    );
    // Nobody's gc cannot list the registry and says so (and why), without failing.
    let out = shmkit_as_nobody(&["gc", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("could not list the liveness directory")
            && text.contains("denied"),
        "{}: {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Both holders die; the registry's owner (root) sweeps their files, and nobody can have
    // put any back: the dead holders' locks are taken over.
    common::kill9(&mut user.0);
    common::kill9(&mut victim.0);
    assert_eq!(lock.owner().unwrap().liveness(), Liveness::Dead);
    let out = shmkit(&["gc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("removed .shmkit/live-"),
        "{}: {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for l in [&lock, &theirs] {
        match l.lock_timeout(Duration::from_secs(10)) {
            Err(LockError::OwnerDied(mut g)) => g.make_consistent().unwrap(),
            Err(e) => panic!("expected OwnerDied, got {e:?}"),
            Ok(_) => panic!("expected OwnerDied, got the lock"),
        }
    }
    let st = std::fs::metadata(REGISTRY).unwrap();
    assert_eq!((st.uid(), st.mode() & 0o7777), (0, 0o1733));
    common::report("ok");
}

/// Multi-user review finding: a process's liveness file was created 0644 and write-locked
/// only after, so another user watching the registry (inotify) could read-lock it first: the
/// creator's `F_OFD_SETLK` failed and it got no token (every create, lock and attach failed).
/// Now nobody can open the file before its creator's write lock is held.
#[test]
fn another_user_cannot_stop_a_process_from_getting_a_token() {
    run_in_private_shm("rdlock-driver");
}

/// Multi-user review finding: with the registry at mode 1777 (listable) any local user learns
/// every token and its pid, and can re-create a dead holder's removed file and hold a write
/// lock on it, keeping the dead holder of a root-only lock "alive". With a root-owned registry
/// of mode 1733 another user can neither list nor watch it (so cannot learn a token it has no
/// object to read it from), yet still gets a token, creates objects and takes locks there;
/// its `gc` says it cannot list the registry, and root's `gc` sweeps it.
#[test]
fn a_registry_of_mode_1733_hides_tokens_and_still_works_for_every_user() {
    run_in_private_shm("registry-1733-driver");
}
