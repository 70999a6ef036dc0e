//! `portwatch daemon`: every condition type fires for real, and the rules
//! reload when their file changes, keeping the old ones if the new file
//! is invalid.

use std::{collections::HashSet, fs, net::TcpListener, time::Duration};

use crate::support::{Helper, Watcher, free_port, rule_with_cooldown};

fn rule(id: &str, condition: &str) -> String {
    rule_with_cooldown(id, condition, 3600)
}

/// Renames itself (comm), optionally allocates, listens, then burns CPU or
/// sleeps until stdin closes.
const NAMED_LISTENER: &str = r#"
import ctypes, socket, sys, threading
name, mib, busy = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "busy"
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
ballast = bytearray(mib << 20)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1])
if busy:
    threading.Thread(target=lambda: sys.stdin.read() and None, daemon=True).start()
    while True:
        pass
sys.stdin.read()
"#;

#[test]
fn every_condition_fires_and_rules_reload() {
    let dir = std::env::temp_dir().join(format!("portwatch-daemon-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alerts.json");
    let (opened_port, range_port) = (free_port(), free_port());
    let rules = [
        rule(
            "opened",
            &format!(r#"{{"type":"PortOpened","params":{{"port":{opened_port}}}}}"#),
        ),
        rule(
            "closed",
            &format!(r#"{{"type":"PortClosed","params":{{"port":{opened_port}}}}}"#),
        ),
        rule(
            "range",
            &format!(
                r#"{{"type":"PortRangeActivity","params":{{"start_port":{range_port},"end_port":{range_port}}}}}"#
            ),
        ),
        rule(
            "external",
            r#"{"type":"ExternalConnection","params":{"ip_pattern":"^127\\.0\\.0\\.1$","exclude_private":false}}"#,
        ),
        // 5% of a CPU: a busy loop keeps that even on two cores shared
        // with every other test.
        rule(
            "cpu",
            r#"{"type":"ProcessCpuThreshold","params":{"process_pattern":"^pwbusy$","threshold_percent":5.0}}"#,
        ),
        rule(
            "memory",
            r#"{"type":"ProcessMemoryThreshold","params":{"process_pattern":"^pwalloc$","threshold_mb":64}}"#,
        ),
        rule(
            "unknown",
            r#"{"type":"UnknownProcessListening","params":null}"#,
        ),
    ];
    fs::write(
        &path,
        format!(
            r#"{{"rules":[{}],"known_processes":["never-this"]}}"#,
            rules.join(",")
        ),
    )
    .unwrap();
    let daemon = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        path.to_str().unwrap(),
        "--sample-interval",
        "200ms",
    ]);

    let busy = Helper::script_inline(NAMED_LISTENER, &["pwbusy", "0", "busy"]);
    let alloc = Helper::script_inline(NAMED_LISTENER, &["pwalloc", "128", "idle"]);
    let opened = TcpListener::bind(("127.0.0.1", opened_port)).unwrap();
    let range = TcpListener::bind(("127.0.0.1", range_port)).unwrap();
    let client = std::net::TcpStream::connect(range.local_addr().unwrap()).unwrap();
    drop(opened);

    let mut fired: HashSet<String> = HashSet::new();
    let mut alerts = Vec::new();
    daemon.expect("all seven rules", Duration::from_secs(20), |v| {
        if v["event"] == "alert" {
            fired.insert(v["rule_id"].as_str().unwrap().to_string());
            alerts.push(v.clone());
        }
        fired.len() == 7
    });
    let by_id = |id: &str| alerts.iter().find(|a| a["rule_id"] == id).unwrap().clone();
    assert_eq!(by_id("opened")["port"], opened_port);
    assert_eq!(by_id("opened")["severity"], "Warning");
    assert_eq!(by_id("opened")["condition"], "PortOpened");
    assert_eq!(by_id("closed")["condition"], "PortClosed");
    assert_eq!(by_id("range")["port"], range_port);
    assert_eq!(by_id("external")["address"], "127.0.0.1");
    assert_eq!(by_id("cpu")["pid"], busy.pid());
    assert_eq!(by_id("cpu")["comm"], "pwbusy");
    assert_eq!(by_id("memory")["pid"], alloc.pid());
    for a in &alerts {
        for key in [
            "rule_id",
            "rule_name",
            "severity",
            "condition",
            "message",
            "pid",
            "comm",
            "address",
            "port",
            "ts",
        ] {
            assert!(a.get(key).is_some(), "{key} missing in {a}");
        }
    }
    drop((busy, alloc, client, range));

    // An invalid new version: reported, the old rules stay in force.
    fs::write(&path, "{\"rules\": [").unwrap();
    let error = daemon.expect("rules_error", Duration::from_secs(5), |v| {
        v["event"] == "rules_error"
    });
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("previous rules stay in force"),
        "{error}"
    );
    // A valid one replaces them.
    let new_port = free_port();
    fs::write(
        &path,
        format!(
            r#"{{"rules":[{}]}}"#,
            rule(
                "new",
                &format!(r#"{{"type":"PortOpened","params":{{"port":{new_port}}}}}"#)
            )
        ),
    )
    .unwrap();
    daemon.expect("rules_reloaded", Duration::from_secs(5), |v| {
        v["event"] == "rules_reloaded"
    });
    let _l = TcpListener::bind(("127.0.0.1", new_port)).unwrap();
    let a = daemon.expect("the new rule", Duration::from_secs(5), |v| {
        v["event"] == "alert" && v["rule_id"] == "new"
    });
    assert_eq!(a["port"], new_port);
    let _ = fs::remove_dir_all(dir);
}

/// Listens on 127.0.0.1 and ::1; on `go`, connects to the first, then to
/// the second.
const TWO_CONNECTIONS: &str = r#"
import socket, sys
v4 = socket.socket(); v4.bind(("127.0.0.1", 0)); v4.listen()
v6 = socket.socket(socket.AF_INET6); v6.bind(("::1", 0)); v6.listen()
print("ready")
sys.stdin.readline()
held = []
for server, family, host in ((v4, socket.AF_INET, "127.0.0.1"), (v6, socket.AF_INET6, "::1")):
    c = socket.socket(family); c.connect((host, server.getsockname()[1]))
    held += [c, server.accept()[0]]
print("done")
sys.stdin.read()
"#;

/// portwatch 0.1.8's example file matches remote addresses with a
/// look-ahead, `^(?!127\.).+`; in 0.1.8 it compiled to nothing and never
/// fired. Here it fires for ::1 and not for 127.0.0.1, in a daemon started
/// with 0.1.8's `-i` and `--watch-config`.
#[test]
fn a_look_ahead_pattern_fires_under_0_1_8_flags() {
    let dir = std::env::temp_dir().join(format!("portwatch-lookahead-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alerts.json");
    let rules = rule(
        "not-loopback-v4",
        r#"{"type":"ExternalConnection","params":{"ip_pattern":"^(?!127\\.).+","exclude_private":false}}"#,
    );
    fs::write(&path, format!(r#"{{"rules":[{rules}]}}"#)).unwrap();
    let mut helper = Helper::spawn(TWO_CONNECTIONS);
    assert_eq!(helper.read_line(), "ready");
    // Only the helper's connections: the host's own cannot use up the
    // rule's cooldown first.
    let pid = helper.pid().to_string();
    let daemon = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        path.to_str().unwrap(),
        "-i",
        "500",
        "--watch-config",
        "--pid",
        &pid,
    ]);
    helper.send("go");
    assert_eq!(helper.read_line(), "done");
    // The 127.0.0.1 connection came first: had it fired, its alert would
    // be this one (and the rule's cooldown would hold back the next).
    let alert = daemon.expect("the alert", Duration::from_secs(10), |v| {
        v["event"] == "alert"
    });
    assert_eq!(alert["rule_id"], "not-loopback-v4");
    assert_eq!(alert["address"], "::1", "{alert}");
    let _ = fs::remove_dir_all(dir);
}

/// SIGHUP (what `systemctl reload` and logrotate send) reloads the rules
/// and never ends the daemon: systemd does not restart a unit that died
/// of it.
#[test]
fn sighup_reloads_the_rules_and_the_daemon_goes_on() {
    let dir = std::env::temp_dir().join(format!("portwatch-daemon-hup-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alerts.json");
    let port = free_port();
    fs::write(&path, r#"{"rules":[]}"#).unwrap();
    let daemon = Watcher::spawn(&["daemon", "--json", "--alerts", path.to_str().unwrap()]);
    crate::support::signal(daemon.pid(), crate::support::Signal::Hup);
    daemon.expect("rules_reloaded", Duration::from_secs(5), |v| {
        v["event"] == "rules_reloaded"
    });
    // Still watching: a rule written now fires.
    fs::write(
        &path,
        format!(
            r#"{{"rules":[{}]}}"#,
            rule(
                "opened",
                &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#)
            )
        ),
    )
    .unwrap();
    crate::support::signal(daemon.pid(), crate::support::Signal::Hup);
    daemon.expect("rules_reloaded", Duration::from_secs(5), |v| {
        v["event"] == "rules_reloaded"
    });
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    daemon.expect("the alert", Duration::from_secs(5), |v| {
        v["event"] == "alert" && v["port"] == port
    });
    drop(l);
    let (status, stderr, _) = daemon.stop();
    assert!(status.success(), "{status}: {stderr}");
    let _ = fs::remove_dir_all(dir);
}

/// As 0.1.8's did, the daemon runs without a rules file (no alerts, said
/// once), and a file written there later is used.
#[test]
fn the_daemon_runs_without_a_rules_file_and_takes_one_written_later() {
    let dir = std::env::temp_dir().join(format!("portwatch-daemon-norules-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alerts.json");
    let daemon = Watcher::spawn(&["daemon", "--json", "--alerts", path.to_str().unwrap()]);
    let port = free_port();
    fs::write(
        &path,
        format!(
            r#"{{"rules":[{}]}}"#,
            rule(
                "opened",
                &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#)
            )
        ),
    )
    .unwrap();
    daemon.expect("rules_reloaded", Duration::from_secs(5), |v| {
        v["event"] == "rules_reloaded"
    });
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    daemon.expect("the alert", Duration::from_secs(5), |v| {
        v["event"] == "alert" && v["port"] == port
    });
    drop(l);
    let (status, stderr, _) = daemon.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stderr.matches("no rules file at").count(), 1, "{stderr}");
    // A path whose directory does not exist: the daemon runs, and makes
    // no directory for it (a mistyped path leaves nothing behind).
    let missing = dir.join("missing/alerts.json");
    let daemon = Watcher::spawn(&["daemon", "--json", "--alerts", missing.to_str().unwrap()]);
    let (status, stderr, _) = daemon.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("restart the daemon"), "{stderr}");
    assert!(!dir.join("missing").exists());
    let _ = fs::remove_dir_all(dir);
}
