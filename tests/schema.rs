//! The published schemas (`schema/`) against real output: `watch --json`
//! (baseline, events, resyncs, stats), `list --json`, the daemon's alerts
//! and notices, the event socket's lines (baseline, ready, events, a
//! refusal) and the example rules file. The validator is
//! python3-jsonschema, a reader this project did not write.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, UdpSocket},
    os::unix::net::UnixStream,
    path::PathBuf,
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::support::{
    BIN, EVENT_TIMEOUT, Watcher, free_port, helper_path, is_event, rule_with_cooldown,
};

fn schema(name: &str) -> String {
    format!("{}/../schema/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Validates `docs` (one JSON document each) against `schema/NAME`.
fn validate(name: &str, docs: &[String]) {
    let file = std::env::temp_dir().join(format!(
        "portwatch-schema-{}-{name}.jsonl",
        std::process::id()
    ));
    fs::write(&file, docs.join("\n")).unwrap();
    let out = Command::new("python3")
        .arg(helper_path("validate.py"))
        .arg(schema(name))
        .arg(&file)
        .output()
        .expect("python3 with python3-jsonschema is needed by the tests");
    let _ = fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn texts(values: &[Value]) -> Vec<String> {
    values.iter().map(Value::to_string).collect()
}

fn events(values: &[Value]) -> Vec<&str> {
    values.iter().filter_map(|v| v["event"].as_str()).collect()
}

#[test]
fn watch_json_lines_match_the_event_line_schema() {
    let w = Watcher::start(&["--stats", "--resync-interval", "1s"]);
    let mut seen = w.baseline.clone();
    seen.push(w.ready.clone());
    let tcp = TcpListener::bind("[::1]:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp_port = free_port();
    let udp = UdpSocket::bind(("127.0.0.1", udp_port)).unwrap();
    drop(tcp);
    drop(udp);
    seen.extend(w.until_closed("::1", tcp_port));
    seen.extend(w.until_closed("127.0.0.1", udp_port));
    seen.push(w.expect("a resync", Duration::from_secs(10), |v| {
        v["event"] == "resync"
    }));
    let (status, _, rest) = w.stop();
    assert!(status.success());
    seen.extend(rest);
    let kinds = events(&seen);
    for kind in ["opened", "closed", "ready", "resync", "stats"] {
        assert!(kinds.contains(&kind), "no {kind} line in {kinds:?}");
    }
    validate("event-line.v1.json", &texts(&seen));
}

#[test]
fn list_json_matches_the_list_schema() {
    let _l = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(BIN).args(["list", "--json"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(!rows.is_empty());
    validate("list.v1.json", &[text.trim().to_string()]);
}

#[test]
fn the_example_rules_match_the_alerts_schema() {
    let example = format!(
        "{}/../examples/alerts.example.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: Value = serde_json::from_str(&fs::read_to_string(example).unwrap()).unwrap();
    validate("alerts.v1.json", &[v.to_string()]);
    // And the schema refuses what portwatch refuses.
    let file = std::env::temp_dir().join(format!("portwatch-schema-bad-{}", std::process::id()));
    let bad = r#"{"rules":[{"id":"a","name":"a","condition":{"type":"PortOpened","params":{"port":70000}},"enabled":true,"severity":"Warning","cooldown_seconds":1}]}"#;
    fs::write(&file, bad).unwrap();
    let out = Command::new("python3")
        .arg(helper_path("validate.py"))
        .arg(schema("alerts.v1.json"))
        .arg(&file)
        .output()
        .unwrap();
    let _ = fs::remove_file(&file);
    assert!(!out.status.success(), "port 70000 passed the schema");
}

#[test]
fn the_daemons_lines_and_its_sockets_match_the_schemas() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("portwatch-schema-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let rules = dir.join("alerts.json");
    fs::write(
        &rules,
        format!(
            r#"{{"rules":[{}]}}"#,
            rule_with_cooldown(
                "open",
                &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#),
                3600
            )
        ),
    )
    .unwrap();
    let socket = dir.join("portwatch.sock");
    let daemon = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        rules.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
    ]);
    let client = Watcher::spawn(&["watch", "--json", "--connect", socket.to_str().unwrap()]);
    let mut socket_lines = client.baseline.clone();
    socket_lines.push(client.ready.clone());
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut daemon_lines = vec![daemon.ready.clone()];
    daemon_lines.push(daemon.expect("the alert", EVENT_TIMEOUT, |v| v["event"] == "alert"));
    // A rules file that changes: a notice.
    fs::write(&rules, r#"{"rules":[]}"#).unwrap();
    daemon_lines.push(daemon.expect("the reload", Duration::from_secs(10), |v| {
        v["event"] == "rules_reloaded"
    }));
    drop(l);
    socket_lines.extend(client.until_closed("127.0.0.1", port));
    assert!(
        socket_lines
            .iter()
            .any(|v| is_event(v, "opened", "127.0.0.1", port))
    );
    validate("event-line.v1.json", &texts(&daemon_lines));
    validate("event-line.v1.json", &texts(&socket_lines));

    // A refused request gets an error line.
    let mut raw = UnixStream::connect(&socket).unwrap();
    raw.write_all(b"{\"proto\":\"sctp\"}\n").unwrap();
    let mut refusal = String::new();
    BufReader::new(&raw).read_line(&mut refusal).unwrap();
    assert!(refusal.contains("\"event\":\"error\""), "{refusal}");
    validate("event-line.v1.json", &[refusal.trim().to_string()]);
    // What a client sends (the golden lines `request_line` writes) is the
    // request schema's.
    let golden = fs::read_to_string(format!(
        "{}/src/wire/golden.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let requests: Vec<String> = golden
        .lines()
        .filter_map(|l| l.strip_prefix("request")?.split_once('\t'))
        .map(|(_, line)| line.to_string())
        .collect();
    assert_eq!(requests.len(), 2);
    validate("request.v1.json", &requests);
    drop(client);
    drop(daemon);
    let _ = fs::remove_dir_all(dir);
}
