//! `portwatch doctor` on this host as root, as user nobody, with
//! capabilities dropped, and without tracefs (a private mount namespace).

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::BIN;

fn doctor(wrapper: &[&str]) -> (Output, Value) {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let out = cmd.args(["doctor", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out, v)
}

fn status<'a>(v: &'a Value, check: &str) -> &'a str {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
}

#[test]
fn as_root_everything_passes_and_the_programs_load() {
    let (out, v) = doctor(&[]);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["blocker"], Value::Null);
    assert_eq!(status(&v, "programs"), "ok", "{v}");
    // The human form says so too.
    let text = Command::new(BIN).arg("doctor").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("portwatch can watch here with eBPF."));
}

#[test]
fn unprivileged_the_blocker_is_capabilities() {
    let (out, v) = doctor(&[
        "setpriv",
        "--reuid",
        "nobody",
        "--regid",
        "nogroup",
        "--clear-groups",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["blocker"], "capabilities", "{v}");
    assert_eq!(
        status(&v, "programs"),
        "absent",
        "nothing is loaded past a blocker"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "portwatch: capabilities blocks eBPF here");
}

#[test]
fn root_without_cap_bpf_is_told_which_capabilities_are_missing() {
    let (out, v) = doctor(&["setpriv", "--bounding-set=-bpf,-perfmon,-sys_admin"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["blocker"], "capabilities", "{v}");
    let caps = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "capabilities")
        .unwrap();
    let detail = caps["detail"].as_str().unwrap();
    assert!(
        detail.contains("CAP_BPF") && !detail.contains("CAP_NET_ADMIN"),
        "{detail}"
    );
}

#[test]
fn without_tracefs_it_says_what_needs_it_and_still_loads() {
    let script = format!(
        "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; exec {BIN} doctor --json"
    );
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v}");
    assert_eq!(status(&v, "tracefs"), "warn", "{v}");
    assert_eq!(status(&v, "programs"), "ok", "{v}");
}
