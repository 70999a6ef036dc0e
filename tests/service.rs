//! Running as a service: what portwatch says on stderr as JSON lines.

use std::process::Command;

use serde_json::Value;

use crate::support::{BIN, Killed, Watcher, file_until};

/// Each stderr line of `out`, parsed; panics on one that is no JSON.
fn json_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("no JSON ({e}): {l:?}")))
        .collect()
}

#[test]
fn with_log_format_json_every_stderr_line_is_a_json_object() {
    // A start that fails (a rules file that does not parse): one error
    // object, exit status 1.
    let dir = std::env::temp_dir().join(format!("portwatch-logjson-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"rules\": [").unwrap();
    let out = Command::new(BIN)
        .args(["daemon", "--log-format", "json", "--alerts"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out.stderr);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "ERROR");
    assert!(
        lines[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("broken.json"),
        "{lines:?}"
    );

    // A running daemon: a warning (no listen confirmation on the classic
    // tracepoint) as an object with its level.
    let rules = dir.join("alerts.json");
    std::fs::write(&rules, r#"{"rules":[]}"#).unwrap();
    let d = Watcher::spawn(&[
        "daemon",
        "--json",
        "--log-format",
        "json",
        "--hook",
        "tracepoint",
        "--alerts",
        rules.to_str().unwrap(),
    ]);
    let (_, stderr, _) = d.stop();
    let lines = json_lines(stderr.as_bytes());
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .unwrap()
                .contains("listen confirmation")),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn unit() -> String {
    format!(
        "{}/../packaging/portwatch.service",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The unit's exposure score, as `systemd-analyze security` rates it
/// offline: 3.2 when written; it fails past 3.5.
#[test]
fn the_unit_is_hardened() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=35", &unit()])
        .output()
        .expect("systemd-analyze (systemd) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Overall exposure level for portwatch.service: 3."),
        "{text}"
    );
}

/// Type=notify: READY=1 once the programs are attached and the baseline
/// is out, WATCHDOG=1 from the event loop, STOPPING=1 on SIGTERM, on the
/// socket systemd names.
#[test]
fn readiness_and_watchdog_reach_the_notify_socket() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("portwatch-notify-socket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    std::fs::write(&rules, r#"{"rules":[]}"#).unwrap();
    let path = dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = systemd.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let d = Watcher::spawn_command(
        Command::new(BIN)
            .args(["daemon", "--json", "--alerts", rules.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "200000"),
    );
    // Pings may come while the baseline is written; READY once it is out.
    let first = loop {
        let m = next();
        if m != "WATCHDOG=1\n" {
            break m;
        }
    };
    assert_eq!(first, "READY=1\n");
    assert_eq!(next(), "WATCHDOG=1\n");
    assert_eq!(next(), "WATCHDOG=1\n");
    let (status, _, _) = d.stop();
    assert!(status.success());
    loop {
        match next().as_str() {
            "WATCHDOG=1\n" => continue,
            other => {
                assert_eq!(other, "STOPPING=1\n");
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The shipper-independent path: event lines appended to a file that
/// Debian's logrotate rotates; SIGHUP (its postrotate) makes portwatch
/// open a new file, and no line is lost or lands in the wrong one.
#[test]
fn events_go_to_a_file_that_logrotate_rotates() {
    let dir = std::env::temp_dir().join(format!("portwatch-logrotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    let watch = Killed(
        Command::new(BIN)
            .args(["watch", "--json", "--output"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    file_until(&file, "ready line", |t| t.contains("\"event\":\"ready\""));
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pa = a.local_addr().unwrap().port();
    let opened = |port: u16| {
        move |t: &str| {
            t.contains(&format!("\"port\":{port},")) && t.contains("\"event\":\"opened\"")
        }
    };
    file_until(&file, "the first listener", opened(pa));

    let config = dir.join("logrotate.conf");
    std::fs::write(
        &config,
        format!(
            "{} {{\n  rotate 1\n  postrotate\n    kill -HUP {}\n  endscript\n}}\n",
            file.display(),
            watch.0.id()
        ),
    )
    .unwrap();
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(dir.join("state"))
        .arg(&config)
        .output()
        .expect("logrotate (Debian's package) is needed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The new file appears when portwatch has opened it: a fence.
    file_until(&file, "the new file", |_| file.exists());
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pb = b.local_addr().unwrap().port();
    let new = file_until(&file, "the second listener", opened(pb));
    let old = std::fs::read_to_string(dir.join("events.jsonl.1")).unwrap();
    assert!(
        opened(pa)(&old) && !old.contains(&format!("\"port\":{pb},")),
        "{old}"
    );
    assert!(!new.contains(&format!("\"port\":{pa},")), "{new}");
    drop(watch);
    let _ = std::fs::remove_dir_all(dir);
}

/// The syscalls portwatch makes that a filter could take away: allowed by
/// the unit's allow list, and in none of the groups its deny list names
/// (as this systemd expands them).
#[test]
fn the_units_syscall_filter_keeps_what_portwatch_calls() {
    let unit = std::fs::read_to_string(unit()).unwrap();
    let filters: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .collect();
    fn expand(entry: &str) -> Vec<String> {
        if !entry.starts_with('@') {
            return vec![entry.to_string()];
        }
        let out = Command::new("systemd-analyze")
            .args(["syscall-filter", entry])
            .output()
            .expect("systemd-analyze (systemd) is needed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1) // the group's own name
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            // Groups name other groups: those are expanded in turn.
            .flat_map(expand)
            .collect()
    }
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for f in filters {
        match f.strip_prefix('~') {
            Some(deny) => denied.extend(deny.split_whitespace().flat_map(expand)),
            None => allowed.extend(f.split_whitespace().flat_map(expand)),
        }
    }
    for call in [
        "bpf",
        "perf_event_open",
        "setns",
        "open_by_handle_at",
        "pidfd_getfd",
        "landlock_create_ruleset",
        "landlock_restrict_self",
        "socket",
        "sendmsg",
    ] {
        assert!(allowed.iter().any(|a| a == call), "{call} is not allowed");
        assert!(!denied.iter().any(|d| d == call), "{call} is denied");
    }
}
