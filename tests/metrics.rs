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
fn get(port: u16, path: &str) -> (String, String) {
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
