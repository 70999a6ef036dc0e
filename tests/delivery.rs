//! Alert delivery: `--exec` commands and `--webhook` URLs get each alert;
//! a failing, hanging, down or slow output is reported and holds up
//! neither the daemon nor another output.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::PathBuf,
    time::Duration,
};

use serde_json::Value;

use crate::support::{Helper, Watcher, free_port, rule_with_cooldown};

/// A rules file with a PortOpened rule per (id, port).
fn rules_dir(tag: &str, rules: &[(&str, u16)]) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("portwatch-delivery-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rules: Vec<String> = rules
        .iter()
        .map(|(id, port)| {
            rule_with_cooldown(
                id,
                &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#),
                3600,
            )
        })
        .collect();
    let path = dir.join("alerts.json");
    fs::write(&path, format!(r#"{{"rules":[{}]}}"#, rules.join(","))).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

/// A FIFO in `dir` for commands to write to, and its lines. It is opened
/// read-write so that opening it never waits for a writer; each
/// command's line arrives whole.
fn fifo(dir: &std::path::Path, name: &str) -> (PathBuf, std::io::Lines<BufReader<fs::File>>) {
    let fifo = dir.join(name);
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    (fifo, BufReader::new(reader).lines())
}

fn delivery_error(d: &Watcher, what: &str, needle: &str) -> Value {
    d.expect(what, Duration::from_secs(20), |v| {
        v["event"] == "delivery_error" && v["message"].as_str().unwrap().contains(needle)
    })
}

#[test]
fn exec_runs_per_alert_and_reports_a_failing_or_hanging_command() {
    let (hang, fail, ok) = (free_port(), free_port(), free_port());
    let (dir, rules) = rules_dir("exec", &[("hang", hang), ("fail", fail), ("ok", ok)]);
    let (fifo, mut lines) = fifo(&dir, "alerts.fifo");
    let cmd = format!(
        r#"read line; case "$line" in *'"hang"'*) sleep 60;; *'"fail"'*) echo "no luck" >&2; exit 3;; *) printf '%s\n' "$line" >> {};; esac"#,
        fifo.display()
    );
    let d = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        &rules,
        "--exec",
        &cmd,
        "--exec-timeout",
        "1s",
    ]);
    // The hanging command first: the others are not held up by it.
    let _h = TcpListener::bind(("127.0.0.1", hang)).unwrap();
    let _f = TcpListener::bind(("127.0.0.1", fail)).unwrap();
    let _o = TcpListener::bind(("127.0.0.1", ok)).unwrap();
    let alert: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (alert["rule_id"].as_str(), alert["port"].as_u64()),
        (Some("ok"), Some(u64::from(ok)))
    );
    let failed = delivery_error(&d, "the failing command", "exit status: 3");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .ends_with("exit status: 3: no luck"),
        "{failed}"
    );
    delivery_error(&d, "the hanging command", "still running after 1s; killed");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn webhooks_get_each_alert_with_retries_and_a_down_or_slow_one_is_reported() {
    let port = free_port();
    let (dir, rules) = rules_dir("webhook", &[("p", port)]);
    let mut server = Helper::script("http_sink.py", &[]);
    let http = server.read_value("port");
    let url = |path: &str| format!("http://127.0.0.1:{http}{path}");
    // Nothing listens on a port just freed. The path stands for a secret
    // (Slack keeps its token there): reports leave it out.
    let down_port = free_port();
    let down = format!("http://127.0.0.1:{down_port}/secret-token");
    let d = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        &rules,
        "--webhook",
        &url("/slow"),
        "--webhook",
        &down,
        "--webhook",
        &url("/flaky"),
        "--webhook",
        &url("/ok"),
        "--webhook-timeout",
        "500ms",
    ]);
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    // Each webhook has its own worker: /ok and /flaky get the alert while
    // /slow hangs and the down one refuses. /flaky twice: 500, then
    // retried.
    let mut posts: Vec<(String, Value)> = Vec::new();
    while posts.iter().filter(|(p, _)| p != "/slow").count() < 3 {
        let line = server.read_value("post");
        let (path, body) = line.split_once(' ').unwrap();
        posts.push((path.to_string(), serde_json::from_str(body).unwrap()));
    }
    for (path, body) in &posts {
        assert_eq!(body["rule_id"], "p", "{path}");
        assert_eq!(body["port"], port, "{path}");
    }
    let count = |p: &str| posts.iter().filter(|(path, _)| path == p).count();
    assert_eq!((count("/ok"), count("/flaky")), (1, 2), "{posts:?}");
    let e = delivery_error(
        &d,
        "the down webhook",
        &format!("webhook http://127.0.0.1:{down_port}/...: not delivered after 4 tries"),
    );
    assert!(!e["message"].as_str().unwrap().contains("secret"), "{e}");
    delivery_error(
        &d,
        "the slow webhook",
        &format!(
            "webhook http://127.0.0.1:{http}/...: not delivered after 4 tries: no answer in time"
        ),
    );
    let _ = fs::remove_dir_all(dir);
}

/// Events the kernel dropped (a storm through a 4 KiB ring buffer) are
/// told to the outputs too, as an `events_lost` object.
#[test]
fn lost_events_reach_the_outputs() {
    let (dir, rules) = rules_dir("lost", &[]);
    let (fifo, mut lines) = fifo(&dir, "lost.fifo");
    let cmd = format!("cat >> {}", fifo.display());
    let d = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        &rules,
        "--exec",
        &cmd,
        "--ring-buffer",
        "4096",
    ]);
    let mut storm = Helper::script("storm.py", &["4", "1000", "7"]);
    for _ in 0..4 {
        storm.read_value("done");
    }
    let printed = d.expect("the daemon's own notice", Duration::from_secs(20), |v| {
        v["event"] == "events_lost"
    });
    assert!(printed["dropped"].as_u64().unwrap() > 0, "{printed}");
    let delivered: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(delivered["event"], "events_lost", "{delivered}");
    assert!(delivered["dropped"].as_u64().unwrap() > 0, "{delivered}");
    storm.close_stdin();
    let _ = fs::remove_dir_all(dir);
}
