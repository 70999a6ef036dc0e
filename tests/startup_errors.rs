//! Start-up without the needed privileges: one clear sentence, exit 1.

mod support;

use std::process::{Command, Output};

fn assert_clear_refusal(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "expected one line: {err}");
    assert!(err.contains("needs root"), "{err}");
    assert!(err.contains("sudo"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn unprivileged_user_is_told_to_use_root() {
    use std::os::unix::process::CommandExt as _;
    let out = Command::new(support::BIN)
        .args(["watch", "--json"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_clear_refusal(&out);
}

#[test]
fn root_without_capabilities_is_told_to_use_root() {
    // uid 0, but an empty bounding set: exec gives the process no capabilities.
    let out = Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(support::BIN)
        .args(["watch", "--json"])
        .output()
        .expect("setpriv (util-linux) is needed by this test");
    assert_clear_refusal(&out);
}
