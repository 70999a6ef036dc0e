//! `--metrics`: the exposition passes `promtool check metrics`, the health
//! and readiness endpoints answer, and a real Prometheus (Debian's)
//! scrapes it: a query returns the listener count `ss` shows.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{Helper, Killed, NetNs, Watcher, free_port};

/// GET `path` from `port` on 127.0.0.1: (status line, body).
pub(crate) fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Opens N listeners on 127.0.0.1 (in whatever namespace it runs in),
/// says `ready`, and holds them until stdin closes.
const HOLD: &str = r#"
import socket, sys
n = int(sys.argv[1])
held = []
for _ in range(n):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); held.append(s)
print("ready")
sys.stdin.read()
"#;

#[test]
fn prometheus_scrapes_the_listener_count_that_ss_shows() {
    let ns = NetNs::new("metrics");
    let mut holder = Helper::command(
        Command::new("ip").args(["netns", "exec", &ns.name, "python3", "-u", "-c", HOLD, "7"]),
    );
    assert_eq!(holder.read_line(), "ready");
    let ss = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ss", "-Htln"])
        .output()
        .unwrap();
    let expected = String::from_utf8_lossy(&ss.stdout).lines().count();
    assert_eq!(expected, 7);

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _w = Watcher::start(&["--netns", &ns.inode().to_string(), "--metrics", &addr]);
    assert_eq!(
        get(port, "/healthz"),
        ("HTTP/1.0 200 OK".into(), "ok\n".into())
    );
    assert_eq!(get(port, "/readyz").0, "HTTP/1.0 200 OK");
    let (status, body) = get(port, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(
        body.contains(&format!("portwatch_listeners{{proto=\"tcp\"}} {expected}")),
        "{body}"
    );
    // Debian's promtool lints the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is needed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus scrapes it every second.
    let dir = std::env::temp_dir().join(format!("portwatch-prometheus-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: portwatch\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let web = free_port();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's package) is needed");
    // Killed however the test ends.
    let _prometheus = Killed(prometheus);
    // Prometheus scrapes on its own schedule: ask until the answer is in.
    let query = "/api/v1/query?query=portwatch_listeners%7Bproto%3D%22tcp%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let answer = TcpStream::connect(("127.0.0.1", web))
            .ok()
            .map(|_| get(web, query).1)
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(String::from)
            });
        if let Some(v) = answer {
            break v;
        }
        assert!(Instant::now() < deadline, "Prometheus never had the metric");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(value, expected.to_string());
    let _ = fs::remove_dir_all(dir);
}

/// The status line of GET `path` from `port` on 127.0.0.1, asked from
/// source address `from`.
fn get_from(from: &str, port: u16, path: &str) -> String {
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {port}), timeout=30, source_address=('{from}', 0))\n\
         s.sendall(b'GET {path} HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')\n\
         print(s.makefile('rb').readline().decode().strip())\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Opens N connections to 127.0.0.1:PORT and holds them without a word,
/// says how many it got, and waits until stdin closes.
const FLOOD: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(n):
    s = socket.socket(); s.settimeout(2)
    try:
        # From four loopback addresses: the caps are per user, not address.
        # Not 127.0.0.1, whose ports other tests bind.
        s.bind(("127.0.0.%d" % (2 + i % 4), 0))
        s.connect(("127.0.0.1", port)); held.append(s)
    except OSError:
        s.close()
print("connected", len(held), flush=True)
sys.stdin.read()
"#;

/// User nobody opens 1,100 idle connections to the metrics port of a
/// watch whose descriptor limit is the unit's old 1,024, from several
/// loopback addresses: the watch goes on (its resyncs, which open /proc
/// files, and its events), and another local user's scrape is served.
#[test]
fn idle_connections_from_a_local_user_exhaust_nothing() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = Watcher::spawn_command(Command::new("prlimit").args([
        "--nofile=1024:1024",
        crate::support::BIN,
        "watch",
        "--json",
        "--resync-interval",
        "1s",
        "--metrics",
        &addr,
    ]));
    let mut flood = Helper::command(crate::support::as_nobody("/usr/bin/python3").args([
        "-u",
        "-c",
        FLOOD,
        &port.to_string(),
        "1100",
    ]));
    let got = flood.read_line();
    assert!(got.starts_with("connected "), "{got}");
    // Two resyncs after the flood: each reads /proc with descriptors of
    // its own.
    for _ in 0..2 {
        w.expect("a resync", Duration::from_secs(10), |v| {
            v["event"] == "resync"
        });
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    w.expect("the new listener", Duration::from_secs(10), |v| {
        crate::support::is_event(v, "opened", "127.0.0.1", p)
    });
    // A local scraper (root here), from the loopback address.
    assert_eq!(get_from("127.0.0.1", port, "/healthz"), "HTTP/1.0 200 OK");
    drop(flood);
}

/// A taken port: the error names the address and the cause.
#[test]
fn a_taken_metrics_port_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(crate::support::BIN)
        .args(["watch", "--json", "--metrics", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&addr) && err.contains("Address already in use"),
        "{err}"
    );
}
