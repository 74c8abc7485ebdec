//! `shmkit frames create|stat|save`, `shmkit info` on a frame channel, and the stock-CPython
//! reader `examples/python/frames_numpy.py` against a live publisher.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{unique_name, Cleanup};
use shmkit::frames::FramesOptions;
use zerocopy::{FromBytes, Immutable, IntoBytes};

fn shmkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run shmkit")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = shmkit(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn create_stat_save_info() {
    let name = unique_name("frcli");
    let _c = Cleanup::new(&[&name]);
    let out = shmkit(&[
        "frames",
        "create",
        &name,
        "--slots",
        "3",
        "--max-bytes",
        "1000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Usage errors exit 2, failures 1, naming the channel.
    assert_eq!(
        shmkit(&[
            "frames",
            "create",
            &name,
            "--slots",
            "0",
            "--max-bytes",
            "1"
        ])
        .status
        .code(),
        Some(2)
    );
    let again = shmkit(&[
        "frames",
        "create",
        &name,
        "--slots",
        "3",
        "--max-bytes",
        "1000",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains(&name));
    let none = shmkit(&["frames", "save", &name, "/dev/null"]);
    assert_eq!(none.status.code(), Some(1));

    // A publisher and a subscriber holding a frame.
    let mut p = FramesOptions::<[u8; 0]>::new().publisher(&name).unwrap();
    let mut s = FramesOptions::<[u8; 0]>::new().subscriber(&name).unwrap();
    for i in 0..3u8 {
        let mut loan = p.try_loan().unwrap();
        loan.as_mut_slice()[..4].copy_from_slice(&[i, 1, 2, 3]);
        loan.publish(4, &[]).unwrap();
    }
    let f = s.try_latest().unwrap();
    let st = json(&["frames", "stat", &name, "--json"]);
    assert_eq!(st["slots"], 3);
    assert_eq!(st["last_seq"], 3);
    assert_eq!(st["publisher"]["pid"], std::process::id());
    assert_eq!(st["subscribers"][0]["process"]["pid"], std::process::id());
    assert_eq!(st["subscribers"][0]["holding"][0], f.slot());
    assert_eq!(
        st["slot_states"][f.slot() as usize]["held_by"][0],
        std::process::id()
    );
    let info = json(&["info", &name, "--json"]);
    assert_eq!(info["kind"], "frames");
    assert_eq!(info["state"]["layout"], st["layout"]);
    let text = String::from_utf8(shmkit(&["frames", "stat", &name]).stdout).unwrap();
    assert!(text.contains("held by pid"), "{text}");
    // `info` shows the same table as `stat` (its text showed each JSON field on one line).
    let text = String::from_utf8(shmkit(&["info", &name]).stdout).unwrap();
    assert!(
        text.contains("held by pid") && text.contains("subscribers:") && text.contains("kind:"),
        "{text}"
    );
    assert!(!text.contains("slot_states"), "{text}");

    let file = std::env::temp_dir().join(format!("{name}.bin"));
    let out = shmkit(&["frames", "save", &name, file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&file).unwrap(), [2, 1, 2, 3]);
    std::fs::remove_file(&file).unwrap();
    // When it was published, as a UTC date and time (it was only nanoseconds).
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(" UTC (realtime ") && said.contains("; published at 2"),
        "{said}"
    );
    // `-` is standard output (as `write` and `list create` read `-` from stdin): the bytes
    // there, the metadata line on stderr, and no file named `-`.
    let dir = std::env::temp_dir().join(format!("{name}-dash"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(["frames", "save", &name, "-"])
        .current_dir(&dir)
        .output()
        .expect("run shmkit");
    let dash_made = dir.join("-").exists();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, [2, 1, 2, 3]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to standard output"),
        "{out:?}"
    );
    assert!(!dash_made, "`frames save NAME -` wrote a file named -");
    drop(f);
}

/// The camera demo's header (`examples/camera.rs`).
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct FrameInfo {
    width: u32,
    height: u32,
    stride: u32,
    format: u32,
    index: u64,
    checksum: u64,
}
shmkit::shm_type!(FrameInfo);

fn camera_checksum(b: &[u8]) -> u64 {
    let mut words = b.chunks_exact(8);
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for w in &mut words {
        h = h.rotate_left(5) ^ u64::from_le_bytes(w.try_into().unwrap());
    }
    for &x in words.remainder() {
        h = h.rotate_left(5) ^ x as u64;
    }
    h
}

/// `frames_numpy.py` reads the newest frame while the publisher keeps overwriting slots (few
/// slots, so reads race with claims): it must verify the checksum every time. Runs with numpy
/// if the machine's python3 has it, and without otherwise (the script falls back to bytes);
/// the output says which. With or without `--verify`, numpy's array has the header's shape.
#[test]
fn python_reader_validates_against_the_sequence() {
    let name = unique_name("frpy");
    let _c = Cleanup::new(&[&name]);
    let (w, h) = (64u32, 48u32);
    let bytes = (3 * w * h) as usize;
    let mut p = FramesOptions::<FrameInfo>::new()
        .slots(2)
        .max_bytes(bytes as u64)
        .create(&name)
        .unwrap();
    let stop = AtomicBool::new(false);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python/frames_numpy.py"
    );
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut t = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut loan = p.try_loan().unwrap();
                let buf = &mut loan.as_mut_slice()[..bytes];
                buf.iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b = (i as u64 + t) as u8);
                let checksum = camera_checksum(buf);
                let info = FrameInfo {
                    width: w,
                    height: h,
                    stride: 3 * w,
                    format: 1,
                    index: t,
                    checksum,
                };
                loan.publish(bytes, &info).unwrap();
                t += 1;
            }
        });
        // A failed assertion below must stop the publisher too, or the scope never ends.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        let numpy = Command::new("python3")
            .args(["-c", "import numpy"])
            .status()
            .is_ok_and(|s| s.success());
        // Every other run without `--verify`: the frame still takes its shape from the header.
        for run in 0..6 {
            let verify = run % 2 == 0;
            let mut args = vec![script, &name, "--shmkit", env!("CARGO_BIN_EXE_shmkit")];
            if verify {
                args.push("--verify");
            }
            let out = Command::new("python3")
                .args(&args)
                .output()
                .expect("run python3");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(text.contains("checksum ok"), verify, "{text}");
            let want = if numpy {
                "numpy array (48, 64, 3)"
            } else {
                "numpy not installed"
            };
            assert!(text.contains(want), "{text}");
        }
    });
}

#[test]
fn create_sparse_reserves_nothing_and_a_default_create_reserves_the_slots() {
    use std::os::unix::fs::MetadataExt;
    let (sparse, full) = (unique_name("frsparse"), unique_name("frfull"));
    let _c = Cleanup::new(&[&sparse, &full]);
    let used_kib = |name: &str| {
        std::fs::metadata(format!("/dev/shm/{name}"))
            .expect("the channel's file")
            .blocks()
            / 2
    };
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "frames",
            "create",
            name,
            "--slots",
            "2",
            "--max-bytes",
            "33554432",
        ];
        args.extend_from_slice(extra);
        let out = shmkit(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Two 32 MiB slots: reserved at creation (64 MiB of pages), or not at all with --sparse.
    create(&full, &[]);
    create(&sparse, &["--sparse"]);
    assert!(used_kib(&full) >= 64 * 1024, "{} KiB", used_kib(&full));
    assert!(used_kib(&sparse) < 1024, "{} KiB", used_kib(&sparse));
}

/// A user-header type whose recorded name would add lines to `frames stat`'s output and clear
/// the terminal if printed as it is.
#[derive(FromBytes, IntoBytes, Immutable, Clone, Copy)]
#[repr(C)]
struct Forged([u8; 8]);
impl shmkit::ShmType for Forged {
    const TYPE_NAME: &'static str = "u64\npublisher:    pid 1 (alive)\x1b[2J";
}

/// Review finding: `frames stat` and `info` printed the header type name recorded in shared
/// memory as it is (a creator's text: newlines, escape sequences). Both quote and escape it,
/// as `ls` shows names.
#[test]
fn frames_stat_and_info_quote_a_type_name_they_did_not_write() {
    let f = unique_name("cli-forged-frames");
    let _c = Cleanup::new(&[&f]);
    let p = FramesOptions::<Forged>::new()
        .slots(2)
        .max_bytes(64)
        .create(&f)
        .unwrap();
    drop(p);
    for args in [&["frames", "stat", &f][..], &["info", &f]] {
        let out = shmkit(args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains('\x1b'), "{args:?}: {text:?}");
        let publisher = text.lines().filter(|l| l.starts_with("publisher:")).count();
        assert_eq!(publisher, 1, "{args:?}: {text:?}");
        assert!(
            text.contains(r#"header type:  "u64\npublisher:    pid 1 (alive)\u{1b}[2J" (8 bytes)"#),
            "{args:?}: {text:?}"
        );
    }
}

/// New-user walkthrough: `frames_numpy.py` given a name that does not exist, or run without
/// `shmkit` on PATH (its documented default), ended in a Python traceback
/// (`CalledProcessError`, `FileNotFoundError`). Each is one line saying what is wrong, exit 1;
/// another kind of object too.
#[test]
fn python_reader_says_what_is_wrong_without_a_traceback() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python/frames_numpy.py"
    );
    let seg = unique_name("frpy-seg");
    let _c = Cleanup::new(&[&seg]);
    drop(shmkit::Segment::create(&seg, 8).unwrap());
    let missing = unique_name("frpy-missing");
    let bin = env!("CARGO_BIN_EXE_shmkit");
    for (args, says) in [
        (vec![&missing[..], "--shmkit", bin], "not found"),
        (vec![&seg[..], "--shmkit", bin], "not a frame channel"),
        (
            vec![&seg[..], "--shmkit", "/nonexistent/shmkit"],
            "pass --shmkit",
        ),
    ] {
        let out = Command::new("python3")
            .arg(script)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(says) && !err.contains("Traceback") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
