//! The examples' failures, as a new user meets them: one readable line naming the example,
//! exit status 1 (not the `Debug` form of the error that `main` returning `Err` prints).

mod common;

use std::process::Command;

use common::{example, unique_name};

/// New-user walkthrough: `share_segment reader` of a missing segment printed
/// `Error: NotFound { name: "..." }`.
#[test]
fn an_example_s_error_is_its_message_and_exit_1() {
    let name = unique_name("missing");
    for (ex, args) in [
        ("share_segment", vec!["reader", name.as_str()]),
        ("robust_lock", vec!["recover", name.as_str()]),
        ("queue_pair", vec![]),
    ] {
        let out = Command::new(example(ex)).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{ex}: {out:?}");
        assert!(err.starts_with(&format!("{ex}: ")), "{ex}: {err}");
        assert!(
            !err.contains("Error: ") && !err.contains(" { "),
            "{ex}: {err}"
        );
    }
}
