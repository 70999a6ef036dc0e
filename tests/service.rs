//! Running as a service: what portwatch says on stderr as JSON lines.

use std::process::Command;

use serde_json::Value;

use crate::support::{BIN, Watcher};

/// Each stderr line of `out`, parsed; panics on one that is no JSON.
fn json_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("no JSON ({e}): {l:?}")))
        .collect()
}

#[test]
fn with_log_format_json_every_stderr_line_is_a_json_object() {
    // A start that fails: one error object, exit status 1.
    let out = Command::new(BIN)
        .args([
            "daemon",
            "--log-format",
            "json",
            "--alerts",
            "/nonexistent/alerts.json",
        ])
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
            .contains("/nonexistent/alerts.json"),
        "{lines:?}"
    );

    // A running daemon: a warning (no listen callback on the classic
    // tracepoint) as an object with its level.
    let dir = std::env::temp_dir().join(format!("portwatch-logjson-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
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
                .contains("listen callback")),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
