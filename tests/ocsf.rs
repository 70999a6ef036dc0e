//! `--format ocsf`: real opens and closes (TCP and UDP) and a real alert,
//! each checked against the OCSF 1.8.0 schema's requirements
//! (tests/fixtures/ocsf/required.json, taken from the schema): required
//! attributes and objects, constraints, enum values and their captions,
//! type_uid, types, and no attribute the class, its object or its
//! profiles do not define.

use std::{
    io::{BufRead as _, BufReader},
    net::{TcpListener, UdpSocket},
    process::{Command, Stdio},
    sync::mpsc,
};

use serde_json::Value;

use crate::support::{BIN, EVENT_TIMEOUT, Killed, READY_TIMEOUT, free_port, rule_with_cooldown};

fn schema() -> Value {
    serde_json::from_str(include_str!("fixtures/ocsf/required.json")).unwrap()
}

/// What `spec` (a class or an object of the fixture) defines, for the
/// profiles named.
fn defined(spec: &Value, profiles: &[String]) -> serde_json::Map<String, Value> {
    let mut all = serde_json::Map::new();
    for level in ["required", "recommended", "optional"] {
        if let Some(m) = spec[level].as_object() {
            all.extend(m.clone());
        }
    }
    if let Some(gated) = spec["profile_gated"].as_object() {
        for (profile, attrs) in gated {
            if profiles.contains(profile) {
                for (k, v) in attrs.as_object().unwrap() {
                    all.insert(k.clone(), v[1].clone());
                }
            }
        }
    }
    all
}

fn check(
    schema: &Value,
    spec: &Value,
    v: &Value,
    path: &str,
    profiles: &[String],
    errors: &mut Vec<String>,
) {
    let Some(obj) = v.as_object() else {
        errors.push(format!("{path}: not an object"));
        return;
    };
    for (k, _) in spec["required"].as_object().into_iter().flatten() {
        if obj.get(k).is_none_or(Value::is_null) {
            errors.push(format!("{path}: required {k} missing"));
        }
    }
    if let Some(one) = spec["constraints"]["at_least_one"].as_array()
        && !one.iter().any(|k| obj.contains_key(k.as_str().unwrap()))
    {
        errors.push(format!("{path}: none of {one:?}"));
    }
    let defined = defined(spec, profiles);
    for (k, value) in obj {
        let Some(def) = defined.get(k) else {
            errors.push(format!("{path}: {k} is no attribute of it"));
            continue;
        };
        let ty = def.get("type").unwrap_or(def).as_str().unwrap_or_default();
        if let Some(choices) = def.get("enum").and_then(Value::as_object) {
            let key = value.to_string();
            match choices.get(&key) {
                None => errors.push(format!("{path}.{k}: {key} is none of {choices:?}")),
                Some(caption) => {
                    if let Some(sibling) = def["sibling"].as_str()
                        && let Some(said) = obj.get(sibling)
                        && said != caption
                    {
                        errors.push(format!("{path}.{sibling}: {said} is not {caption}"));
                    }
                }
            }
        }
        let (ty, many) = match ty.strip_suffix("[]") {
            Some(t) => (t, true),
            None => (ty, false),
        };
        let items: Vec<&Value> = if many {
            match value.as_array() {
                Some(a) => a.iter().collect(),
                None => {
                    errors.push(format!("{path}.{k}: not an array"));
                    continue;
                }
            }
        } else {
            vec![value]
        };
        for item in items {
            let ok = match ty {
                "integer_t" | "long_t" | "timestamp_t" | "port_t" => item.is_i64() || item.is_u64(),
                "boolean_t" => item.is_boolean(),
                t if t.starts_with("object:") => {
                    let name = &t["object:".len()..];
                    if let Some(object) = schema["objects"].get(name) {
                        check(
                            schema,
                            object,
                            item,
                            &format!("{path}.{k}"),
                            profiles,
                            errors,
                        );
                    }
                    item.is_object()
                }
                // string_t and its kinds (ip_t, hostname_t, file_name_t, ...)
                _ => item.is_string(),
            };
            if !ok {
                errors.push(format!("{path}.{k}: {item} is no {ty}"));
            }
        }
    }
}

/// Every requirement the schema puts on `record`; empty when it meets them.
fn validate(record: &Value) -> Vec<String> {
    let schema = schema();
    let class_uid = record["class_uid"].as_u64().unwrap_or_default();
    let Some(spec) = schema["classes"]
        .as_object()
        .unwrap()
        .values()
        .find(|c| c["class_uid"] == class_uid)
    else {
        return vec![format!("class {class_uid} is not in the fixture")];
    };
    let profiles: Vec<String> = record["metadata"]["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let mut errors = Vec::new();
    check(&schema, spec, record, "record", &profiles, &mut errors);
    let activity = record["activity_id"].as_u64().unwrap_or_default();
    if record["type_uid"].as_u64() != Some(class_uid * 100 + activity) {
        errors.push(format!(
            "type_uid {} is not class_uid * 100 + activity_id",
            record["type_uid"]
        ));
    }
    errors
}

/// `portwatch ARGS` whose stdout lines are OCSF records; ready once its
/// stderr says it watches.
fn start(args: &[&str]) -> (Killed, mpsc::Receiver<Value>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("watching") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready
        .recv_timeout(READY_TIMEOUT)
        .expect("portwatch never said it watches");
    (Killed(child), rx)
}

fn next(rx: &mpsc::Receiver<Value>, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let v = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what}"));
        if pred(&v) {
            return v;
        }
    }
}

fn at_port(v: &Value, activity: u64, proto: &str, port: u16) -> bool {
    v["class_uid"] == 4001
        && v["activity_id"] == activity
        && v["dst_endpoint"]["port"] == port
        && v["connection_info"]["protocol_name"] == proto
}

#[test]
fn watch_writes_valid_network_activity_for_tcp_and_udp() {
    let (_w, rx) = start(&["watch", "--format", "ocsf"]);
    let (tcp, udp) = (free_port(), free_port());
    let t = TcpListener::bind(("127.0.0.1", tcp)).unwrap();
    let u = UdpSocket::bind(("127.0.0.1", udp)).unwrap();
    let listen_tcp = next(&rx, "the TCP Listen", |v| at_port(v, 7, "tcp", tcp));
    let listen_udp = next(&rx, "the UDP Listen", |v| at_port(v, 7, "udp", udp));
    drop(t);
    drop(u);
    let close_tcp = next(&rx, "the TCP Close", |v| at_port(v, 2, "tcp", tcp));
    let close_udp = next(&rx, "the UDP Close", |v| at_port(v, 2, "udp", udp));
    for (r, proto, num) in [
        (&listen_tcp, "tcp", 6),
        (&listen_udp, "udp", 17),
        (&close_tcp, "tcp", 6),
        (&close_udp, "udp", 17),
    ] {
        let errors = validate(r);
        assert!(errors.is_empty(), "{errors:#?}\n{r}");
        assert_eq!(r["connection_info"]["protocol_name"], proto);
        assert_eq!(r["connection_info"]["protocol_num"], num);
        assert_eq!(r["actor"]["process"]["pid"], std::process::id());
        assert_eq!(r["dst_endpoint"]["ip"], "127.0.0.1");
    }
    assert_eq!(listen_tcp["type_uid"], 400107);
    assert_eq!(close_udp["type_uid"], 400102);
    // The check finds what is wrong: a record with a required attribute
    // gone, an unknown one and a wrong caption is refused.
    let mut bad = listen_tcp.clone();
    bad.as_object_mut().unwrap().remove("time");
    bad["listening"] = Value::Bool(true);
    bad["activity_name"] = "Open".into();
    assert_eq!(validate(&bad).len(), 3, "{:#?}", validate(&bad));
}

#[test]
fn the_daemon_writes_an_alert_as_a_valid_detection_finding() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("portwatch-ocsf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rule = rule_with_cooldown(
        "ocsf",
        &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#),
        3600,
    );
    let rules = dir.join("alerts.json");
    std::fs::write(&rules, format!(r#"{{"rules":[{rule}]}}"#)).unwrap();
    let (_d, rx) = start(&[
        "daemon",
        "--format",
        "ocsf",
        "--no-journal",
        "--alerts",
        rules.to_str().unwrap(),
    ]);
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let r = next(&rx, "the finding", |v| v["class_uid"] == 2004);
    let errors = validate(&r);
    assert!(errors.is_empty(), "{errors:#?}\n{r}");
    assert_eq!(
        (r["activity_id"].as_u64(), r["severity_id"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(r["finding_info"]["analytic"]["uid"], "ocsf");
    assert_eq!(r["evidences"][0]["dst_endpoint"]["port"], port);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_socket_client_that_asks_gets_records_and_the_sockets_own_lines() {
    let dir = std::env::temp_dir().join(format!("portwatch-ocsf-socket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    std::fs::write(&rules, r#"{"rules":[]}"#).unwrap();
    let socket = dir.join("portwatch.sock");
    let _d = crate::support::Watcher::spawn(&[
        "daemon",
        "--json",
        "--no-journal",
        "--alerts",
        rules.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
        "--socket-group",
        "daemon",
    ]);
    let before = TcpListener::bind("127.0.0.1:0").unwrap();
    let before_port = before.local_addr().unwrap().port();
    let connect = |request: &str| {
        use std::io::Write as _;
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
        writeln!(s, "{request}").unwrap();
        BufReader::new(s).lines()
    };
    // A first client, told of `before` (in its baseline or live): the
    // daemon has it in its table from then on.
    let mut first = connect("{}");
    loop {
        let v: Value = serde_json::from_str(&first.next().unwrap().unwrap()).unwrap();
        if v["event"] == "opened" && v["port"] == before_port {
            break;
        }
    }
    // A format it does not know: one sentence, and the end.
    let mut bad = connect(r#"{"format":"cef\u001b"}"#);
    let refusal: Value = serde_json::from_str(&bad.next().unwrap().unwrap()).unwrap();
    assert_eq!(refusal["event"], "error");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains(r#"format "cef\x1b" is neither json nor ocsf"#),
        "{refusal}"
    );
    assert!(bad.next().is_none());
    let mut lines = connect(r#"{"format":"ocsf","proto":"tcp"}"#);
    let mut next_line =
        || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    // The baseline as records, then the socket's own ready line.
    let mut baseline = Vec::new();
    let ready = loop {
        let v = next_line();
        if v["event"] == "ready" {
            break v;
        }
        baseline.push(v);
    };
    assert_eq!(ready["listeners"].as_u64(), Some(baseline.len() as u64));
    let mine = baseline
        .iter()
        .find(|v| at_port(v, 7, "tcp", before_port))
        .unwrap_or_else(|| panic!("{before_port} not in {baseline:?}"));
    assert_eq!(mine["unmapped"]["portwatch"]["source"], "baseline");
    for r in &baseline {
        let errors = validate(r);
        assert!(errors.is_empty(), "{errors:#?}\n{r}");
    }
    let live = TcpListener::bind("127.0.0.1:0").unwrap();
    let live_port = live.local_addr().unwrap().port();
    let r = loop {
        let v = next_line();
        if at_port(&v, 7, "tcp", live_port) {
            break v;
        }
    };
    let errors = validate(&r);
    assert!(errors.is_empty(), "{errors:#?}\n{r}");
    assert_eq!(r["actor"]["process"]["pid"], std::process::id());
    // Root's client gets the owner's context (which another user's will
    // not).
    assert!(r["actor"]["process"]["file"]["path"].is_string(), "{r}");
    assert!(r["actor"]["process"]["cmd_line"].is_string(), "{r}");
    // `watch --connect --format ocsf` makes the same records from the
    // daemon's lines.
    let (_c, rx) = start(&[
        "watch",
        "--connect",
        socket.to_str().unwrap(),
        "--format",
        "ocsf",
    ]);
    let third = TcpListener::bind("127.0.0.1:0").unwrap();
    let third_port = third.local_addr().unwrap().port();
    let r = next(&rx, "the record through --connect", |v| {
        at_port(v, 7, "tcp", third_port)
    });
    let errors = validate(&r);
    assert!(errors.is_empty(), "{errors:#?}\n{r}");
    // Another user's client gets the records without root's owner
    // context: no command line, no executable.
    let script = format!(
        "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.sendall(b'{{\"format\":\"ocsf\",\"proto\":\"tcp\"}}\\n')\nfor line in s.makefile():\n    print(line, end='', flush=True)",
        socket.to_str().unwrap()
    );
    let mut nobody = crate::support::Helper::command(crate::support::nobody(true).args([
        "--",
        "/usr/bin/python3",
        "-u",
        "-c",
        &script,
    ]));
    let seen = loop {
        let v: Value = serde_json::from_str(&nobody.read_line()).unwrap();
        if at_port(&v, 7, "tcp", before_port) {
            break v;
        }
    };
    let errors = validate(&seen);
    assert!(errors.is_empty(), "{errors:#?}\n{seen}");
    let process = &seen["actor"]["process"];
    assert_eq!(process["pid"], std::process::id(), "{seen}");
    assert!(
        process["cmd_line"].is_null() && process["file"].is_null(),
        "{seen}"
    );
    drop(before);
    let _ = std::fs::remove_dir_all(dir);
}

/// Every golden line with an OCSF class (opens and closes, exposure
/// changes, alerts with and without a socket, each kind of drift) makes a
/// record the schema accepts.
#[test]
fn every_kind_of_line_makes_a_valid_record() {
    let host = portwatch::wire::ocsf::OcsfHost {
        hostname: "web-1".into(),
        uid: Some("3d1219c7c4c5404aaa1f6d2a48adfda4".into()),
    };
    let mut seen = std::collections::BTreeSet::new();
    for row in include_str!("../portwatch/src/wire/golden.txt").lines() {
        let (name, json) = row.split_once('\t').unwrap();
        let Ok(line) = portwatch::wire::Line::parse(json) else {
            continue;
        };
        let Some(r) = portwatch::wire::ocsf::record(&line, &host) else {
            continue;
        };
        let errors = validate(&r);
        assert!(errors.is_empty(), "{name}: {errors:#?}\n{r}");
        seen.insert((
            r["class_uid"].as_u64().unwrap(),
            r["activity_id"].as_u64().unwrap(),
        ));
    }
    for kind in [(4001, 7), (4001, 2), (4001, 99), (2004, 1)] {
        assert!(seen.contains(&kind), "{kind:?} not among {seen:?}");
    }
}
