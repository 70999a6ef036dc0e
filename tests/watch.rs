//! `portwatch watch` against real sockets, with the real eBPF programs.
//! Runs as root (`cargo xtask test`).

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener},
    process::{Command, Stdio},
};

use crate::support::{EVENT_TIMEOUT, Helper, Watcher, is_event};

fn check_open_close(watcher: &Watcher, bind: &str) {
    let listener = TcpListener::bind(bind).expect("bind");
    let local: SocketAddr = listener.local_addr().unwrap();
    let (address, port) = (local.ip().to_string(), local.port());
    let me = std::process::id();

    let opened = watcher.expect(&format!("opened {address}:{port}"), EVENT_TIMEOUT, |v| {
        is_event(v, "opened", &address, port)
    });
    assert_eq!(opened["pid"], me, "{opened}");
    assert_eq!(opened["source"], "ebpf", "{opened}");
    assert_eq!(opened["proto"], "tcp", "{opened}");
    assert!(
        opened["comm"].is_string() && opened["ts"].is_string(),
        "{opened}"
    );

    drop(listener);
    let closed = watcher.expect(&format!("closed {address}:{port}"), EVENT_TIMEOUT, |v| {
        is_event(v, "closed", &address, port)
    });
    assert_eq!(closed["pid"], me, "{closed}");
    assert_eq!(closed["source"], "ebpf", "{closed}");
}

#[test]
fn reports_open_and_close_on_every_address_family() {
    let watcher = Watcher::start(&[]);
    assert_eq!(watcher.ready["backend"], "ebpf");
    for bind in ["127.0.0.1:0", "0.0.0.0:0", "[::1]:0", "[::]:0"] {
        check_open_close(&watcher, bind);
    }
}

#[test]
fn baseline_lists_listeners_open_before_start() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let watcher = Watcher::start(&[]);
    let mine: Vec<_> = watcher
        .baseline
        .iter()
        .filter(|v| is_event(v, "opened", "127.0.0.1", port))
        .collect();
    assert_eq!(mine.len(), 1, "baseline: {:?}", watcher.baseline);
    assert_eq!(mine[0]["source"], "baseline");
    assert_eq!(mine[0]["pid"], std::process::id());
    // Lines before the ready line are the baseline and what other
    // processes (tests running beside this one) opened or closed during
    // the start-up: the ready line counts the former.
    let baseline_lines = watcher
        .baseline
        .iter()
        .filter(|v| v["source"] == "baseline")
        .count();
    assert_eq!(watcher.ready["listeners"], baseline_lines);

    // Its close is attributed to us, found by address and port.
    drop(listener);
    let closed = watcher.expect("close of a baseline listener", EVENT_TIMEOUT, |v| {
        is_event(v, "closed", "127.0.0.1", port)
    });
    assert_eq!(closed["pid"], std::process::id());
}

/// Listens on 127.0.0.1, says which port, closes when told to.
const LISTEN_THEN_CLOSE: &str = r#"
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("port", s.getsockname()[1])
sys.stdin.readline()
s.close()
print("closed")
sys.stdin.readline()
"#;

#[test]
fn listener_of_another_process_names_that_process() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::spawn(LISTEN_THEN_CLOSE);
    let port: u16 = helper.read_value("port").parse().unwrap();
    let opened = watcher.expect("opened by the helper", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    assert_eq!(opened["pid"], helper.pid(), "{opened}");
    assert!(
        opened["comm"].as_str().unwrap().starts_with("python"),
        "{opened}"
    );
    helper.send("close");
    assert_eq!(helper.read_line(), "closed");
    let closed = watcher.expect("closed by the helper", EVENT_TIMEOUT, |v| {
        is_event(v, "closed", "127.0.0.1", port)
    });
    assert_eq!(closed["pid"], helper.pid(), "{closed}");
}

#[test]
fn sigterm_exits_cleanly_with_stats() {
    let watcher = Watcher::start(&["--stats"]);
    let (status, stderr, rest) = watcher.stop();
    assert!(status.success(), "{status:?} {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let stats = rest
        .iter()
        .find(|v| v["event"] == "stats")
        .expect("a stats line");
    for counter in ["events", "drops", "resyncs", "owners_full"] {
        assert!(stats[counter].is_u64(), "{stats}");
    }
}

#[test]
fn human_output_is_aligned_text() {
    let mut child = Command::new(crate::support::BIN)
        .arg("watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes are read as the lines come: the baseline of a busy host
    // (other tests hold thousands of listeners) fills stdout's pipe
    // before the ready line reaches stderr, and a storm's warnings fill
    // stderr's.
    let lines = |pipe: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let stderr = lines(Box::new(child.stderr.take().unwrap()));
    let stdout = lines(Box::new(child.stdout.take().unwrap()));
    // The ready line goes to stderr in human mode.
    let ready = stderr
        .recv_timeout(crate::support::READY_TIMEOUT)
        .expect("a ready line");
    assert!(ready.starts_with("portwatch: watching"), "{ready:?}");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let needle = format!("127.0.0.1:{port} ");
    let next = || {
        stdout
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("portwatch printed nothing more")
    };
    let header = next();
    assert!(header.starts_with("TIME"), "{header:?}");
    let line = loop {
        let line = next();
        if line.contains(&needle) {
            break line;
        }
    };
    crate::support::signal(child.id(), crate::support::Signal::Int);
    assert!(child.wait().unwrap().success());
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1..4], ["opened", "tcp", needle.trim()], "{line:?}");
    assert_eq!(fields[4], std::process::id().to_string(), "{line:?}");
    assert_eq!(*fields.last().unwrap(), "ebpf");
    // Columns line up with the header.
    let pid_end = |s: &str, pat: &str| s.find(pat).map(|i| i + pat.len());
    assert_eq!(
        pid_end(&header, "PID"),
        pid_end(&line, &format!(" {} ", std::process::id())).map(|i| i - 1)
    );
}

#[test]
fn invalid_ring_buffer_size_is_one_clear_error() {
    let out = Command::new(crate::support::BIN)
        .args(["watch", "--ring-buffer", "5000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("power of two"), "{err}");
}

/// Inside a time namespace whose boot clock runs a day ahead, events are
/// still stamped with the wall-clock time: the kernel's programs read the
/// host's boot clock, not the namespace's.
#[test]
fn events_in_a_time_namespace_carry_the_wall_clock_time() {
    let w = Watcher::spawn_command(std::process::Command::new("unshare").args([
        "--time",
        "--boottime",
        "86400",
        "--fork",
        "--kill-child=SIGTERM",
        crate::support::BIN,
        "watch",
        "--json",
    ]));
    let before = chrono::Utc::now();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ev = w.expect("the listener", crate::support::EVENT_TIMEOUT, |v| {
        crate::support::is_event(v, "opened", "127.0.0.1", port)
    });
    let after = chrono::Utc::now();
    let ts: chrono::DateTime<chrono::Utc> = ev["ts"].as_str().unwrap().parse().unwrap();
    assert!(
        ts >= before - chrono::TimeDelta::seconds(1) && ts <= after + chrono::TimeDelta::seconds(1),
        "stamped {ts}, between {before} and {after}"
    );
}
