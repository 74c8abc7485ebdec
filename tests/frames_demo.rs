//! The camera demo (`examples/camera.rs`) as a test: three processes, clean exit, nothing left
//! in `/dev/shm`.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// An example binary built beside this test (`cargo test` builds the examples).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join("examples").join(name);
    assert!(
        p.exists(),
        "{} is missing: `cargo test` builds the examples; for this file alone run \
         `cargo build --example camera` first",
        p.display()
    );
    p
}

#[test]
fn camera_demo_runs_and_cleans_up() {
    let name = common::unique_name("camera");
    let _c = common::Cleanup::new(&[&name]);
    let out = Command::new(example("camera"))
        .args([
            "--seconds",
            "1",
            "--fps",
            "30",
            "--size",
            "320x240",
            "--name",
            &name,
        ])
        .output()
        .expect("run the camera example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "camera failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for id in [
        "[consumer 1] done: 30 frames",
        "[consumer 2] done: 30 frames",
    ] {
        assert!(stdout.contains(id), "missing {id:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("checksum errors 0").count(), 2, "{stdout}");
    assert!(
        !std::path::Path::new(&format!("/dev/shm/{name}")).exists(),
        "the channel is left in /dev/shm"
    );
}
