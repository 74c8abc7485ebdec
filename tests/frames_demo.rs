//! The camera demo (`examples/camera.rs`) as a test: three processes, clean exit, nothing left
//! in `/dev/shm`; and the demo again after a killed run left its channel behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{example, unique_name, Cleanup};

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
    // What is guaranteed: every frame published is received or counted lost (with 8 slots
    // and `ReuseOldest`, a consumer descheduled for 8 frame periods on a loaded machine loses
    // some), and none has a wrong checksum.
    assert!(stdout.contains("[producer] done: 30 frames"), "{stdout}");
    for id in 1..=2 {
        let tag = format!("[consumer {id}] done: ");
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag.as_str()))
            .unwrap_or_else(|| panic!("missing {tag:?} in:\n{stdout}"));
        let number_after = |word: &str| -> u64 {
            let at = line
                .find(word)
                .unwrap_or_else(|| panic!("{word:?} in {line:?}"));
            line[at + word.len()..]
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
        };
        let received: u64 = line
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no frame count in {line:?}"));
        let lost = number_after("lost");
        assert_eq!(received + lost, 30, "consumer {id}: {line}");
        assert_eq!(number_after("checksum errors"), 0, "consumer {id}: {line}");
    }
    assert!(
        !std::path::Path::new(&format!("/dev/shm/{name}")).exists(),
        "the channel is left in /dev/shm"
    );
}

/// A killed run's channel `name`: a camera producer that created it (and waits for a
/// consumer), killed with SIGKILL.
fn leave_a_killed_run(name: &str) {
    let mut p = Command::new(example("camera"))
        .args(["--role", "producer", "--wait-consumers", "1"])
        .args(["--size", "64x64", "--seconds", "1", "--name", name])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run the camera example");
    let t = std::time::Instant::now();
    while shmkit::frames::stat(name).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "no channel");
        std::thread::sleep(Duration::from_millis(5));
    }
    common::kill9(&mut p);
}

/// Review finding: after a killed run left its channel, a consumer of the next run could
/// attach to that dead channel before the new producer replaced it, get `Disconnected` at
/// once, print "done: 0 frames" and exit 0; the producer then waited 30 s for it and failed.
#[test]
fn camera_demo_runs_after_a_killed_run() {
    let name = unique_name("docs-camera");
    let _c = Cleanup::new(&[&name]);
    for attempt in 0..3 {
        leave_a_killed_run(&name);
        // The README's command, again.
        let out = Command::new(example("camera"))
            .args(["--size", "64x64", "--seconds", "0.5", "--name", &name])
            .output()
            .expect("run the camera example");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.contains("done: 0 frames"),
            "attempt {attempt}: the demo after a killed run failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The same finding with the order forced: a consumer started on a killed run's channel,
/// before any producer replaces it, must not finish with no frames (it did, with exit 0,
/// and the producer then waited 30 s for it and failed); it waits for the new channel.
#[test]
fn a_consumer_started_on_a_killed_runs_channel_waits_for_the_next_producer() {
    let name = unique_name("docs-camera-c");
    let _c = Cleanup::new(&[&name]);
    let cam = |role: &str| {
        let mut c = Command::new(example("camera"));
        c.args(["--role", role, "--size", "64x64", "--seconds", "0.5"])
            .args(["--name", &name, "--wait-consumers", "1"]);
        c
    };
    leave_a_killed_run(&name);
    let consumer = cam("consumer")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the camera example");
    // Give it time to find the dead channel first (the order the finding needs; not a bound).
    std::thread::sleep(Duration::from_millis(300));
    let producer = cam("producer").output().expect("run the camera example");
    let consumer = consumer.wait_with_output().expect("wait for the consumer");
    let (p, c) = (
        String::from_utf8_lossy(&producer.stdout),
        String::from_utf8_lossy(&consumer.stdout),
    );
    assert!(
        producer.status.success() && consumer.status.success(),
        "producer {}: {p}\n{}\nconsumer {}: {c}",
        producer.status,
        String::from_utf8_lossy(&producer.stderr),
        consumer.status
    );
    assert!(
        c.contains("[consumer 1] done: ") && !c.contains("done: 0 frames"),
        "{c}"
    );
}

/// New-user walkthrough: `camera --help` printed the usage on stderr and exited 2, as for a
/// mistake; `--size 100000x100000` said it "is not WxH". Help is on stdout with exit 0; a size
/// out of range says the range.
#[test]
fn camera_help_succeeds_and_a_bad_size_says_the_range() {
    let out = Command::new(example("camera"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text.contains("usage: camera"), "{text}");
    let out = Command::new(example("camera"))
        .args(["--size", "100000x100000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("1..=16384"), "{err}");
}
