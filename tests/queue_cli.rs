//! The `shmkit queue` verbs, run as a separate process against the built binary.

mod common;

use std::process::Command;

use common::{unique_name, Cleanup};

fn shmkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run shmkit")
}

#[test]
fn create_push_pop_stat_for_each_kind() {
    for (kind, extra) in [
        ("spsc", "--elem-size=16"),
        ("mpmc", "--elem-size=16"),
        ("bytes", "--elem-size=1"),
    ] {
        let name = unique_name(&format!("cli{kind}"));
        let _c = Cleanup::new(&[&name]);
        let cap = if kind == "bytes" { "1024" } else { "8" };
        let out = shmkit(&[
            "queue",
            "create",
            &name,
            "--kind",
            kind,
            "--capacity",
            cap,
            extra,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(shmkit(&["queue", "push", &name, "hello"]).status.success());
        assert!(shmkit(&["queue", "push", &name, "world"]).status.success());
        let st = shmkit(&["queue", "stat", &name, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        assert_eq!(v["kind"], kind);
        assert!(v["len"].as_u64().unwrap() > 0);
        let out = shmkit(&["queue", "pop", &name, "--timeout", "10"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
        let out = shmkit(&["queue", "pop", &name, "--timeout", "10"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "world");
        // Empty: exit 1 after the timeout, one line on stderr.
        let out = shmkit(&["queue", "pop", &name, "--timeout", "0.2"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
        let info = shmkit(&["info", &name, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["state"]["kind"], kind);
    }
}
