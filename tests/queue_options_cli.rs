//! `shmkit queue create --mode/--sparse/--lifetime`, and the CLI's by-size open of a queue a
//! program created with its own element type.

mod common;

use std::os::unix::fs::PermissionsExt;
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
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn queue_create_mode_sparse_lifetime() {
    // (`--elem-size` is for the fixed-size kinds: the byte kinds take only 1.)
    for (kind, cap, elem) in [
        ("spsc", "8", "8"),
        ("mpmc", "8", "8"),
        ("bytes-ring", "4096", "1"),
    ] {
        let name = unique_name(&format!("clio-{kind}"));
        let _c = Cleanup::new(&[&name]);
        ok(&[
            "queue",
            "create",
            &name,
            "--kind",
            kind,
            "--capacity",
            cap,
            "--elem-size",
            elem,
            "--mode",
            "660",
            "--sparse",
            "--lifetime",
            "owned",
        ]);
        let mode = std::fs::metadata(format!("/dev/shm/{name}"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660, "{kind}");
        let info = ok(&["info", &name]);
        assert!(
            info.lines()
                .any(|l| l.starts_with("lifetime:") && l.ends_with("owned")),
            "{kind}: {info}"
        );
    }
    let name = unique_name("clio-default");
    let _c = Cleanup::new(&[&name]);
    ok(&[
        "queue",
        "create",
        &name,
        "--kind",
        "spsc",
        "--capacity",
        "4",
    ]);
    assert!(ok(&["info", &name])
        .lines()
        .any(|l| l.starts_with("lifetime:") && l.ends_with("persistent")));
    let bad = shmkit(&[
        "queue",
        "create",
        "x",
        "--kind",
        "spsc",
        "--capacity",
        "4",
        "--lifetime",
        "forever",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn cli_opens_a_typed_queue_by_element_size() {
    use shmkit::queue::{mpmc, spsc};
    let hi = u64::from_le_bytes(*b"hi\0\0\0\0\0\0");
    let yo = u64::from_le_bytes(*b"yo\0\0\0\0\0\0");
    for kind in ["spsc", "mpmc"] {
        // A program pushes a u64; the CLI pops it as 8 bytes (trailing zeros trimmed).
        let a = unique_name(&format!("clio-pop-{kind}"));
        // The CLI pushes 8 bytes; the program pops a u64.
        let b = unique_name(&format!("clio-push-{kind}"));
        let _c = Cleanup::new(&[&a, &b]);
        if kind == "spsc" {
            let q = spsc::Queue::<u64>::create(&a, 4).unwrap();
            q.producer().unwrap().try_push(hi).unwrap();
            drop(spsc::Queue::<u64>::create(&b, 4).unwrap());
        } else {
            let q = mpmc::Queue::<u64>::create(&a, 4).unwrap();
            q.producer().unwrap().try_push(hi).unwrap();
            drop(mpmc::Queue::<u64>::create(&b, 4).unwrap());
        }
        assert_eq!(ok(&["queue", "pop", &a, "--timeout", "5"]).trim_end(), "hi");
        ok(&["queue", "push", &b, "yo"]);
        let got = if kind == "spsc" {
            let q = spsc::Queue::<u64>::open(&b).unwrap();
            q.consumer().unwrap().try_pop()
        } else {
            let q = mpmc::Queue::<u64>::open(&b).unwrap();
            q.consumer().unwrap().try_pop()
        };
        assert_eq!(got, Ok(yo));
        let st = ok(&["queue", "stat", &b]);
        assert!(st.contains("element size:    8"), "{st}");
        assert!(st.contains("element type:    u64"), "{st}");
    }
}

/// Every verb that creates an object parses `--mode` and `--lifetime` with the CLI's one
/// parser of each (`main.rs`: octal bits; the library's lifetime names): a bad value is the
/// same usage error (exit 2) with the same message whichever verb it is given to.
#[test]
fn every_create_verb_parses_mode_and_lifetime_alike() {
    let verbs: [&[&str]; 5] = [
        &["create", "n", "--size", "64"],
        &["queue", "create", "n", "--kind", "spsc", "--capacity", "8"],
        &["list", "create", "n", "[1]"],
        &["frames", "create", "n", "--slots", "2", "--max-bytes", "64"],
        &["value", "create", "n", "i"],
    ];
    for verb in verbs {
        for (flag, bad, says) in [
            ("--mode", "9", "mode must be octal"),
            (
                "--lifetime",
                "forever",
                "lifetime is `persistent` or `owned`",
            ),
        ] {
            let mut args = verb.to_vec();
            args.extend([flag, bad]);
            let out = shmkit(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "shmkit {args:?}: {err}");
            assert!(err.contains(says), "shmkit {args:?}: {err}");
        }
    }
}
