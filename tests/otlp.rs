//! `--otlp`: every event and alert reaches a real OTLP/HTTP receiver (the
//! OpenTelemetry project's protobuf messages, in Python) as a log record
//! whose attributes are the truth (`ss`, /proc); retried while the
//! receiver fails or is down; counted when it never comes back, without
//! holding up the monitor; and a user's flood of ports cannot crowd an
//! alert out of the export.

use std::{collections::BTreeMap, fs, net::TcpListener, process::Command, time::Duration};

use serde_json::Value;

use crate::support::{
    BIN, EVENT_TIMEOUT, Helper, Watcher, as_nobody, free_port, helper_path, rule_with_cooldown,
};

/// The receiver, run by Debian's python3 with the packages `cargo xtask
/// test` installs.
fn receiver() -> (Helper, String) {
    let deps = format!("{}/../.tools/python", env!("CARGO_MANIFEST_DIR"));
    let mut r = Helper::command(
        Command::new("/usr/bin/python3")
            .arg("-u")
            .arg(helper_path("otlp_receiver.py"))
            .env("PYTHONPATH", deps),
    );
    let port = r.read_value("port");
    (r, format!("http://127.0.0.1:{port}/v1/logs"))
}

/// The receiver's next request's records (skipping its other lines).
fn records(r: &mut Helper) -> (Value, Vec<Value>) {
    loop {
        let line = r.read_line();
        if let Some(json) = line.strip_prefix("request ") {
            let req: Value = serde_json::from_str(json).unwrap();
            let recs = req["records"].as_array().unwrap().clone();
            return (req, recs);
        }
    }
}

/// Records until `want` has matched `n`, and the last request (for its
/// headers).
fn collect_with(
    r: &mut Helper,
    mut want: impl FnMut(&Value) -> bool,
    n: usize,
) -> (Vec<Value>, Value) {
    let mut got = Vec::new();
    loop {
        let (req, recs) = records(r);
        got.extend(recs.into_iter().filter(|v| want(v)));
        if got.len() >= n {
            return (got, req);
        }
    }
}

fn collect(r: &mut Helper, want: impl FnMut(&Value) -> bool, n: usize) -> Vec<Value> {
    collect_with(r, want, n).0
}

fn attr<'a>(rec: &'a Value, key: &str) -> &'a Value {
    &rec["attributes"][key]
}

fn is_port(rec: &Value, name: &str, port: u16) -> bool {
    rec["event_name"] == name && attr(rec, "network.local.port") == port
}

/// What `ss` says of the socket on `port`: (local address, pid).
fn ss(proto: &str, port: u16) -> (String, u32) {
    let flag = if proto == "tcp" { "-Hltnp" } else { "-Hulnp" };
    let out = Command::new("ss")
        .args([flag, &format!("sport = :{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("ss: nothing on {port}"));
    let local = line.split_whitespace().nth(3).unwrap();
    let address = local.rsplit_once(':').unwrap().0.trim_matches(['[', ']']);
    let pid = line.split("pid=").nth(1).unwrap();
    let pid = pid.split(',').next().unwrap().parse().unwrap();
    (address.to_string(), pid)
}

/// A helper run as nobody that opens, on command, a TCP listener and a
/// UDP socket on the ports it is given.
fn opener() -> Helper {
    let script = r#"
import socket, sys
socks = {}
print("ready", flush=True)
for line in sys.stdin:
    what, port = line.split()
    if what == "tcp":
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port))); s.listen(); socks[line] = s
    elif what == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(port))); socks[line] = s
    else:
        for s in socks.values(): s.close()
        socks.clear()
    print("done", flush=True)
"#;
    let mut h = Helper::command(as_nobody("/usr/bin/python3").args(["-u", "-c", script]));
    h.read_value("ready");
    h
}

/// The count a `delivery_error` line of dropped records begins with.
fn count_said(v: &Value) -> u64 {
    let message = v["message"].as_str().unwrap();
    message.split(' ').next().unwrap().parse().unwrap()
}

/// Scrapes until every one of `lines` is in the metrics: they are read
/// from the exporter once a second.
fn metrics_until(port: u16, lines: &[&str]) {
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let (_, body) = crate::metrics::get(port, "/metrics");
        if lines.iter().all(|l| body.contains(l)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{lines:?} not in {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn records_carry_the_truth_of_tcp_and_udp_opens_and_closes() {
    let (mut r, url) = receiver();
    let mut h = opener();
    let pid = h.pid();
    let pid_s = pid.to_string();
    // The token stands for a secret: nothing portwatch prints shows it.
    let w = Watcher::start(&[
        "--pid",
        &pid_s,
        "--otlp",
        &url,
        "--otlp-header",
        "Authorization=Bearer secret-token-1234",
    ]);
    let (tcp, udp) = (free_port(), free_port());
    h.send(&format!("tcp {tcp}"));
    h.read_value("done");
    h.send(&format!("udp {udp}"));
    h.read_value("done");
    let truth_tcp = ss("tcp", tcp);
    let truth_udp = ss("udp", udp);
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        // Made safe as every text portwatch writes.
        .map(|a| String::from_utf8_lossy(a).replace('\n', "\\x0a"))
        .collect();
    let netns = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let netns: u64 = netns.to_str().unwrap()[5..]
        .trim_end_matches(']')
        .parse()
        .unwrap();
    h.send("close 0");
    h.read_value("done");
    // The watch's own lines, for the times.
    let mut lines = BTreeMap::new();
    for _ in 0..4 {
        let v = w.expect("a port line", EVENT_TIMEOUT, |v| {
            v["event"] == "opened" || v["event"] == "closed"
        });
        lines.insert(
            (
                v["event"].as_str().unwrap().to_string(),
                v["port"].as_u64().unwrap(),
            ),
            v,
        );
    }
    let (recs, req) = collect_with(
        &mut r,
        |v| {
            [tcp, udp].iter().any(|&p| {
                is_port(v, "portwatch.listen.open", p) || is_port(v, "portwatch.listen.close", p)
            })
        },
        4,
    );
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for rec in &recs {
        let port = attr(rec, "network.local.port").as_u64().unwrap() as u16;
        let (proto, truth) = if port == tcp {
            ("tcp", &truth_tcp)
        } else {
            ("udp", &truth_udp)
        };
        let open = rec["event_name"] == "portwatch.listen.open";
        let line = &lines[&(
            if open { "opened" } else { "closed" }.to_string(),
            u64::from(port),
        )];
        assert_eq!(attr(rec, "event.name"), &rec["event_name"], "{rec}");
        assert_eq!(attr(rec, "network.transport"), proto, "{rec}");
        assert_eq!(attr(rec, "network.type"), "ipv4", "{rec}");
        assert_eq!(
            attr(rec, "network.local.address"),
            truth.0.as_str(),
            "{rec}"
        );
        assert_eq!(attr(rec, "process.pid"), truth.1, "{rec}");
        assert_eq!(attr(rec, "process.pid"), pid, "{rec}");
        assert_eq!(attr(rec, "process.user.id"), 65534, "{rec}");
        assert_eq!(attr(rec, "portwatch.netns"), netns, "{rec}");
        assert_eq!(attr(rec, "portwatch.source"), "ebpf", "{rec}");
        assert_eq!(
            attr(rec, "process.executable.path"),
            exe.to_str().unwrap(),
            "{rec}"
        );
        assert_eq!(
            attr(rec, "process.executable.name"),
            exe.file_name().unwrap().to_str().unwrap(),
            "{rec}"
        );
        assert_eq!(
            attr(rec, "process.command_line"),
            cmdline.join(" ").as_str(),
            "{rec}"
        );
        assert!(attr(rec, "portwatch.exposure").is_string(), "{rec}");
        assert_eq!(rec["severity_text"], "INFO", "{rec}");
        assert_eq!(rec["severity_number"], 9, "{rec}");
        // The record's time is the event's (the line's `ts`), to the
        // microsecond the line writes.
        let ts = chrono::DateTime::parse_from_rfc3339(line["ts"].as_str().unwrap()).unwrap();
        assert_eq!(
            rec["time"].as_u64().unwrap() / 1000,
            ts.timestamp_nanos_opt().unwrap() as u64 / 1000,
            "{rec} {line}"
        );
        assert!(rec["observed"].as_u64().unwrap() >= rec["time"].as_u64().unwrap());
        let res = &rec["resource"];
        assert_eq!(res["service.name"], "portwatch");
        assert_eq!(res["host.name"], hostname.trim());
        assert_eq!(res["os.type"], "linux");
    }
    assert_eq!(req["path"], "/v1/logs");
    assert_eq!(req["content_type"], "application/x-protobuf");
    assert_eq!(req["content_encoding"], "gzip");
    assert_eq!(req["authorization"], "Bearer secret-token-1234");
    let (status, err, rest) = w.stop();
    assert!(status.success(), "{err}");
    let printed = format!("{err}{rest:?}");
    assert!(!printed.contains("secret-token"), "{printed}");
}

/// A rules file alerting (Critical) on a PortOpened of `port`.
fn rules(tag: &str, port: u16) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("portwatch-otlp-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rule = rule_with_cooldown(
        "otlp-alert",
        &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#),
        3600,
    )
    .replace("\"Warning\"", "\"Critical\"");
    let path = dir.join("alerts.json");
    fs::write(&path, format!(r#"{{"rules":[{rule}]}}"#)).unwrap();
    let p = path.to_str().unwrap().to_string();
    (dir, p)
}

#[test]
fn an_alert_is_retried_through_503s_and_arrives_with_its_severity() {
    let (mut r, url) = receiver();
    let port = free_port();
    let (dir, rules) = rules("alert", port);
    // Only the helper's tree: no other test's events make requests, so
    // the requests that fail are the alert's.
    let mut h = opener();
    let pid = h.pid().to_string();
    let d = Watcher::spawn(&[
        "daemon",
        "--json",
        "--no-journal",
        "--alerts",
        &rules,
        "--pid",
        &pid,
        "--otlp",
        &url,
    ]);
    r.send("fail 503 2");
    r.read_value("set");
    h.send(&format!("tcp {port}"));
    h.read_value("done");
    let alert = d.expect("the alert line", EVENT_TIMEOUT, |v| v["event"] == "alert");
    // The alert's batch is refused twice, then taken.
    assert_eq!(r.read_line(), "failed 503");
    assert_eq!(r.read_line(), "failed 503");
    let (_, recs) = records(&mut r);
    let rec = recs
        .iter()
        .find(|v| v["event_name"] == "portwatch.alert")
        .unwrap_or_else(|| panic!("no alert in {recs:?}"))
        .clone();
    assert_eq!(attr(&rec, "portwatch.rule.id"), "otlp-alert", "{rec}");
    assert_eq!(attr(&rec, "portwatch.rule.severity"), "Critical", "{rec}");
    assert_eq!(rec["severity_number"], 17, "{rec}");
    assert_eq!(rec["severity_text"], "Critical", "{rec}");
    assert_eq!(rec["body"], alert["message"], "{rec}");
    assert_eq!(attr(&rec, "network.local.port"), port, "{rec}");
    assert_eq!(attr(&rec, "process.pid"), h.pid(), "{rec}");
    // Told once that it retries, then that it delivers again.
    d.expect("the retry notice", EVENT_TIMEOUT, |v| {
        let m = v["message"].as_str().unwrap_or_default();
        v["event"] == "delivery_error"
            && m.contains("the collector answered 503")
            && m.contains("retrying with backoff")
    });
    d.expect("the recovery notice", EVENT_TIMEOUT, |v| {
        v["event"] == "delivery_error"
            && v["message"].as_str().unwrap().contains("delivering again")
    });
    // A partial success is counted and said, the collector's words made
    // safe.
    r.send("partial 1");
    r.read_value("set");
    h.send(&format!("tcp {}", free_port()));
    h.read_value("done");
    let said = d.expect("the rejection", EVENT_TIMEOUT, |v| {
        v["event"] == "delivery_error" && v["message"].as_str().unwrap().contains("rejected 1 of")
    });
    let message = said["message"].as_str().unwrap();
    assert!(message.contains("test rejects \\x1b[31mthese"), "{message}");
    h.send("close 0");
    h.read_value("done");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn records_wait_while_the_receiver_is_down_and_arrive_when_it_is_back() {
    let (mut r, url) = receiver();
    let metrics = free_port();
    let metrics_s = format!("127.0.0.1:{metrics}");
    let mut h = opener();
    let pid = h.pid().to_string();
    let w = Watcher::start(&["--pid", &pid, "--otlp", &url, "--metrics", &metrics_s]);
    r.send("down");
    r.read_value("down");
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    for p in &ports {
        h.send(&format!("tcp {p}"));
        h.read_value("done");
    }
    for _ in &ports {
        w.expect("an open on stdout", EVENT_TIMEOUT, |v| {
            v["event"] == "opened"
        });
    }
    w.expect("the retry notice", EVENT_TIMEOUT, |v| {
        v["event"] == "delivery_error" && v["message"].as_str().unwrap().contains("retrying")
    });
    // Down for ten seconds: the outage itself, not a wait for anything.
    std::thread::sleep(Duration::from_secs(10));
    r.send("up");
    r.read_value("up");
    let got = collect(
        &mut r,
        |v| {
            v["event_name"] == "portwatch.listen.open"
                && ports.iter().any(|&p| attr(v, "network.local.port") == p)
        },
        ports.len(),
    );
    assert_eq!(got.len(), ports.len());
    w.expect("the recovery notice", Duration::from_secs(10), |v| {
        v["event"] == "delivery_error"
            && v["message"].as_str().unwrap().contains("delivering again")
    });
    metrics_until(
        metrics,
        &[
            "portwatch_otlp_records_lost_total 0\n",
            "portwatch_otlp_records_sent_total 5\n",
        ],
    );
    h.send("close 0");
    h.read_value("done");
}

#[test]
fn a_receiver_that_never_answers_holds_up_nothing_and_its_losses_are_counted() {
    let (mut r, url) = receiver();
    let metrics = free_port();
    let metrics_s = format!("127.0.0.1:{metrics}");
    let mut h = opener();
    let pid = h.pid().to_string();
    // A queue of 4: ports may take 3 of it.
    let w = Watcher::start(&[
        "--pid",
        &pid,
        "--otlp",
        &url,
        "--otlp-queue",
        "4",
        "--otlp-timeout",
        "60s",
        "--metrics",
        &metrics_s,
    ]);
    r.send("hold");
    r.read_value("set");
    let ports: Vec<u16> = (0..12).map(|_| free_port()).collect();
    h.send(&format!("tcp {}", ports[0]));
    h.read_value("done");
    // The first batch's request hangs in the receiver from here on.
    assert_eq!(r.read_line(), "holding");
    for p in &ports[1..] {
        h.send(&format!("tcp {p}"));
        h.read_value("done");
    }
    // Every open is on stdout while the exporter waits on its request;
    // 1 record is in the held batch, 3 are queued (the rest of the queue
    // is kept for alerts), 8 are dropped: said in one or more counts.
    let (mut opened, mut dropped) = (0, 0);
    while opened < ports.len() || dropped < 8 {
        let v = w.expect("opens and counts of records dropped", EVENT_TIMEOUT, |v| {
            v["event"] == "opened"
                || (v["event"] == "delivery_error"
                    && v["message"]
                        .as_str()
                        .unwrap()
                        .contains("queue of 4 records"))
        });
        if v["event"] == "opened" {
            opened += 1;
        } else {
            dropped += count_said(&v);
        }
    }
    assert_eq!((opened, dropped), (ports.len(), 8));
    metrics_until(
        metrics,
        &[
            "portwatch_otlp_records_lost_total 8\n",
            "portwatch_otlp_records_queued 4\n",
        ],
    );
    // Stopped with the receiver still holding: what is left is counted.
    let (status, err, rest) = w.stop();
    assert!(status.success(), "{err}");
    let left: Vec<&Value> = rest
        .iter()
        .filter(|v| v["event"] == "delivery_error")
        .collect();
    assert!(
        left.iter().any(|v| v["message"]
            .as_str()
            .unwrap()
            .starts_with("4 records still queued")),
        "{left:?}"
    );
    r.send("release");
    h.send("close 0");
    h.read_value("done");
}

#[test]
fn a_users_flood_of_ports_cannot_crowd_an_alert_out() {
    let (mut r, url) = receiver();
    let port = free_port();
    let (dir, rules) = rules("flood", port);
    let d = Watcher::spawn(&[
        "daemon",
        "--json",
        "--no-journal",
        "--alerts",
        &rules,
        "--otlp",
        &url,
        "--otlp-queue",
        "8",
    ]);
    r.send("hold");
    r.read_value("set");
    // Any event makes a request, which hangs in the receiver.
    drop(TcpListener::bind("127.0.0.1:0").unwrap());
    assert_eq!(r.read_line(), "holding");
    // Nobody binds UDP ports by the hundred while the collector hangs.
    let mut flood = Helper::command(as_nobody("/usr/bin/python3").args([
        "-u",
        "-c",
        "import socket\nsocks=[]\nfor i in range(300):\n    s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); socks.append(s)\nprint('bound', flush=True)\ninput()",
    ]));
    flood.read_value("bound");
    // The flood filled what ports may take of the queue: nearly all of
    // its 300 binds were dropped (said in one or more counts).
    let mut dropped = 0;
    while dropped < 250 {
        let v = d.expect("counts of ports dropped", EVENT_TIMEOUT, |v| {
            v["event"] == "delivery_error"
                && v["message"]
                    .as_str()
                    .unwrap()
                    .contains("queue of 8 records")
        });
        dropped += count_said(&v);
    }
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    d.expect("the alert line", EVENT_TIMEOUT, |v| v["event"] == "alert");
    r.send("release");
    let rec = collect(&mut r, |v| v["event_name"] == "portwatch.alert", 1).remove(0);
    assert_eq!(attr(&rec, "network.local.port"), port, "{rec}");
    drop(flood);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn bad_otlp_settings_get_one_sentence_that_quotes_no_secret() {
    for (args, want) in [
        (
            vec!["--otlp", "ftp://user:pw@example.invalid/x"],
            "--otlp ftp://example.invalid/... is no http:// or https:// URL",
        ),
        (
            vec![
                "--otlp",
                "http://example.invalid/v1/logs",
                "--otlp-header",
                "Bearer hunter2",
            ],
            "--otlp-header #1 is no NAME=VALUE",
        ),
        (
            vec![
                "--otlp",
                "http://example.invalid/v1/logs",
                "--otlp-header",
                "X=hunter2\u{7}",
            ],
            "--otlp-header #1 (x): its value is no valid header value",
        ),
        (
            vec![
                "--otlp",
                "http://example.invalid/v1/logs",
                "--otlp-queue",
                "0",
            ],
            "--otlp-queue must be at least 1",
        ),
    ] {
        let out = Command::new(BIN).arg("watch").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("hunter2") && !err.contains("pw@"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn portwatchs_own_command_line_with_its_secrets_is_never_exported() {
    let (mut r, url) = receiver();
    let metrics = free_port();
    let metrics_s = format!("127.0.0.1:{metrics}");
    // The URL's query stands for a secret on portwatch's own command line.
    let with_secret = format!("{url}?token=secret-in-argv");
    let w = Watcher::start(&[
        "--proto",
        "tcp",
        "--otlp",
        &with_secret,
        "--metrics",
        &metrics_s,
    ]);
    // Its own metrics listener is in the baseline, with its owner.
    let own = collect(&mut r, |v| is_port(v, "portwatch.listen.open", metrics), 1).remove(0);
    assert_eq!(attr(&own, "process.pid"), w.pid(), "{own}");
    assert!(attr(&own, "process.executable.path").is_string(), "{own}");
    assert!(attr(&own, "process.command_line").is_null(), "{own}");
    assert!(!own.to_string().contains("secret-in-argv"), "{own}");
}
