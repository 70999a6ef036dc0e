//! Expected listeners: a policy learned from real listeners in a
//! namespace of the test's own, then drifts (unexpected, missing, back)
//! live from `watch --policy`, `policy check`'s exit codes, a reload, and
//! files another user controls.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

use crate::support::{BIN, EVENT_TIMEOUT, Helper, NetNs, Watcher};

/// A listener on 127.0.0.1:`port` in `ns` that closes and opens again on
/// `close` / `open`, saying `open` / `closed` each time.
fn listener_in(ns: &NetNs, port: u16) -> Helper {
    let script = format!(
        r#"
import socket, sys
def op():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", {port}))
    s.listen()
    return s
s = op()
print("open", flush=True)
for line in sys.stdin:
    if line.strip() == "close":
        s.close()
        print("closed", flush=True)
    elif line.strip() == "open":
        s = op()
        print("open", flush=True)
"#
    );
    let mut h = Helper::command_in_netns(&ns.name, &script);
    assert_eq!(h.read_line(), "open");
    h
}

fn portwatch(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run portwatch")
}

fn check(policy: &Path, netns: u64, json: bool) -> Output {
    let netns = netns.to_string();
    let mut args = vec![
        "policy",
        "check",
        policy.to_str().unwrap(),
        "--netns",
        &netns,
    ];
    if json {
        args.push("--json");
    }
    portwatch(&args)
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pw-policy-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn drift(w: &Watcher, what: &str) -> Value {
    w.expect(what, EVENT_TIMEOUT, |v| v["event"] == "drift")
}

#[test]
fn a_learned_policy_reports_drifts_with_tags_and_their_end() {
    let ns = NetNs::new("policy");
    let netns = ns.inode();
    let dir = scratch("learn");
    let file = dir.join("policy.json");
    let mut expected = listener_in(&ns, 7001);
    let learned = portwatch(&[
        "policy",
        "learn",
        "--netns",
        &netns.to_string(),
        "--tag",
        "PCI-DSS-10.2.7",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(learned.status.success(), "{learned:?}");
    let policy: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let entries = policy["expected"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{policy}");
    assert_eq!(entries[0]["port"], 7001);
    assert_eq!(entries[0]["scope"], "loopback");
    assert!(
        entries[0]["exe"].as_str().unwrap().contains("python"),
        "{policy}"
    );
    assert_eq!(policy["tags"][0], "PCI-DSS-10.2.7");

    let ok = check(&file, netns, false);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(ok.stdout.is_empty());

    let w = Watcher::start(&[
        "--netns",
        &netns.to_string(),
        "--policy",
        file.to_str().unwrap(),
    ]);
    // An unexpected listener: the first drift after ready (none at start).
    let mut intruder = listener_in(&ns, 7002);
    let d = drift(&w, "the unexpected listener");
    assert_eq!(d["drift"], "unexpected", "{d}");
    assert_eq!(d["listener"]["port"], 7002);
    assert_eq!(d["listener"]["pid"], intruder.pid());
    assert_eq!(d["tags"][0], "PCI-DSS-10.2.7");
    // The expected one stops: missing, with its entry and tags.
    expected.send("close");
    assert_eq!(expected.read_line(), "closed");
    let d = drift(&w, "the missing entry");
    assert_eq!(d["drift"], "missing", "{d}");
    assert_eq!(d["entry"]["port"], 7001);
    assert_eq!(d["listener"]["port"], 7001);
    assert_eq!(d["tags"][0], "PCI-DSS-10.2.7");

    let drifted = check(&file, netns, false);
    assert_eq!(drifted.status.code(), Some(1), "{drifted:?}");
    let text = String::from_utf8_lossy(&drifted.stdout);
    assert!(text.contains("unexpected tcp 127.0.0.1:7002"), "{text}");
    assert!(
        text.contains("missing python3") && text.contains("port 7001"),
        "{text}"
    );
    let json = check(&file, netns, true);
    assert_eq!(json.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut kinds: Vec<&str> = lines.iter().map(|l| l["drift"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["missing", "unexpected"]);

    // Back to expected, both ways.
    intruder.send("close");
    assert_eq!(intruder.read_line(), "closed");
    let d = drift(&w, "the intruder's end");
    assert_eq!(
        (d["drift"].as_str(), d["listener"]["port"].as_u64()),
        (Some("expected"), Some(7002))
    );
    expected.send("open");
    assert_eq!(expected.read_line(), "open");
    let d = drift(&w, "the entry back");
    assert_eq!(
        (d["drift"].as_str(), d["entry"]["port"].as_u64()),
        (Some("expected"), Some(7001))
    );
    assert_eq!(check(&file, netns, false).status.code(), Some(0));

    // A new policy is in force at once; a broken one is not.
    let mut bigger = policy.clone();
    bigger["expected"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"port": 7003, "tags": ["new"]}));
    std::fs::write(&file, bigger.to_string()).unwrap();
    w.expect("the reload", EVENT_TIMEOUT, |v| {
        v["event"] == "policy_reloaded"
    });
    let d = drift(&w, "the new entry missing");
    assert_eq!(
        (d["drift"].as_str(), d["entry"]["port"].as_u64()),
        (Some("missing"), Some(7003))
    );
    assert_eq!(d["tags"], serde_json::json!(["PCI-DSS-10.2.7", "new"]));
    std::fs::write(&file, "{\"version\": 1, \"expected\": [{}]}").unwrap();
    let e = w.expect("the error", EVENT_TIMEOUT, |v| v["event"] == "policy_error");
    assert!(
        e["message"].as_str().unwrap().contains("an entry needs"),
        "{e}"
    );
    let (status, _, _) = w.stop();
    assert!(status.success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn policy_files_and_outputs_another_user_controls_are_refused() {
    let dir = scratch("hostile");
    // A policy planted by another user is not used (exit 2, one sentence).
    let planted = dir.join("planted.json");
    std::fs::write(&planted, r#"{"version":1,"expected":[{"port":1}]}"#).unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), None).unwrap();
    let out = portwatch(&["policy", "check", planted.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to user nobody"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // So is one that is no file, or no policy; the watch does not start.
    for (bad, why) in [
        ("/dev/zero", "not a regular file"),
        ("/nonexistent/policy.json", "no policy file"),
    ] {
        let out = portwatch(&["policy", "check", bad]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(why));
        let out = portwatch(&["watch", "--policy", bad]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(why));
    }
    // `learn --output` in a directory another user can write: refused
    // before anything is written.
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = portwatch(&[
        "policy",
        "learn",
        "--output",
        open.join("p.json").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by other users"));
    assert!(!open.join("p.json").exists());
    // A link planted at the name (in a root directory) is replaced, never
    // followed.
    let safe = dir.join("safe");
    std::fs::create_dir(&safe).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, safe.join("p.json")).unwrap();
    let out = portwatch(&[
        "policy",
        "learn",
        "--netns",
        "1",
        "--output",
        safe.join("p.json").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(!safe.join("p.json").is_symlink());
    std::fs::remove_dir_all(dir).unwrap();
}
