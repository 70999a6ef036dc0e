//! What a hostile or unlucky host does to a monitor: listens that fail,
//! floods of listen() without bind() from an unprivileged user, sockets
//! handed between processes, reused ports, namespaces nobody is in, clock
//! steps, readers that go away, names built to fool a terminal, and
//! arguments that cannot mean what was asked.

use std::{
    collections::{BTreeSet, HashMap},
    io::Read as _,
    net::TcpListener,
    os::unix::process::ExitStatusExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    BIN, EVENT_TIMEOUT, Helper, NetNs, Signal, Watcher, free_port, is_event, rule_with_cooldown,
};

fn events_for(lines: &[Value], address: &str, port: u16) -> Vec<String> {
    lines
        .iter()
        .filter(|v| v["address"] == address && v["port"] == port)
        .map(|v| v["event"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Two SO_REUSEADDR sockets bound to one port; listen() succeeds on the
/// first and fails with EADDRINUSE on the second. Port from argv[1] (0:
/// any).
const FAILED_SECOND_LISTEN: &str = r#"
import errno, socket, sys
a = socket.socket(); a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
a.bind(("127.0.0.1", int(sys.argv[1])))
port = a.getsockname()[1]
b = socket.socket(); b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
b.bind(("127.0.0.1", port))
a.listen()
try:
    b.listen()
    print("second", "listened")
except OSError as e:
    print("second", errno.errorcode[e.errno])
print("port", port)
sys.stdin.readline()
a.close(); b.close()
print("closed")
sys.stdin.readline()
"#;

#[test]
fn a_listen_that_fails_reports_nothing() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::script_inline(FAILED_SECOND_LISTEN, &["0"]);
    assert_eq!(helper.read_value("second"), "EADDRINUSE");
    let port: u16 = helper.read_value("port").parse().unwrap();
    let seen = watcher.fence();
    assert_eq!(
        events_for(&seen, "127.0.0.1", port),
        ["opened"],
        "only the listener that listens: {seen:?}"
    );
    helper.send("close");
    assert_eq!(helper.read_line(), "closed");
    let rest = watcher.until_closed("127.0.0.1", port);
    assert_eq!(events_for(&rest, "127.0.0.1", port), ["closed"]);
}

/// A rule that may fire again after a second.
fn rule(id: &str, condition: &str) -> String {
    rule_with_cooldown(id, condition, 1)
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portwatch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_listen_that_fails_fires_no_port_closed_rule() {
    let dir = temp_dir("failed-listen");
    let (port, fence) = (free_port(), free_port());
    let path = dir.join("alerts.json");
    let rules = [
        rule(
            "closed",
            &format!(r#"{{"type":"PortClosed","params":{{"port":{port}}}}}"#),
        ),
        rule(
            "fence",
            &format!(r#"{{"type":"PortOpened","params":{{"port":{fence}}}}}"#),
        ),
    ];
    std::fs::write(&path, format!(r#"{{"rules":[{}]}}"#, rules.join(","))).unwrap();
    let daemon = Watcher::spawn(&["daemon", "--json", "--alerts", path.to_str().unwrap()]);
    let mut helper = Helper::script_inline(FAILED_SECOND_LISTEN, &[&port.to_string()]);
    assert_eq!(helper.read_value("second"), "EADDRINUSE");
    helper.read_value("port");
    // The fence: an alert for a listener opened after the failed listen.
    drop(TcpListener::bind(("127.0.0.1", fence)).unwrap());
    let mut before = Vec::new();
    daemon.expect("the fence alert", EVENT_TIMEOUT, |v| {
        before.push(v.clone());
        v["rule_id"] == "fence"
    });
    assert!(
        !before.iter().any(|v| v["rule_id"] == "closed"),
        "PortClosed fired while the listener was open: {before:?}"
    );
    // The rule does fire when the listener really closes.
    helper.send("close");
    helper.read_line();
    daemon.expect("PortClosed", EVENT_TIMEOUT, |v| v["rule_id"] == "closed");
    std::fs::remove_dir_all(dir).unwrap();
}

/// As user nobody: 3,000 sockets call listen() without bind().
const FLOOD: &str = r#"
import json, resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for _ in range(3000):
    s = socket.socket(); s.listen(); socks.append(s)
print("ports", json.dumps([s.getsockname()[1] for s in socks]))
sys.stdin.readline()
"#;

#[test]
fn a_flood_of_unbound_listens_delays_nobody_and_gets_every_port_right() {
    let watcher = Watcher::start(&[]);
    let mut flood = Helper::command(
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            // Debian's python3: a user's own (pyenv under /root) is out of
            // nobody's reach.
            .args(["/usr/bin/python3", "-u", "-c", FLOOD]),
    );
    let ports: Vec<u16> = serde_json::from_str(&flood.read_value("ports")).unwrap();
    assert_eq!(ports.len(), 3000);
    // Root's listener, right after the flood: reported as any other.
    let root = TcpListener::bind("127.0.0.1:0").unwrap();
    let root_port = root.local_addr().unwrap().port();
    let mut reported = Vec::new();
    let mut root_seen = false;
    watcher.expect("root's listener and 3,000 opens", EVENT_TIMEOUT, |v| {
        if v["event"] == "opened" && v["pid"] == flood.pid() {
            reported.push(v["port"].as_u64().unwrap() as u16);
        }
        root_seen |= is_event(v, "opened", "127.0.0.1", root_port);
        root_seen && reported.len() >= ports.len()
    });
    // Every flood listener has its own, right port.
    reported.sort_unstable();
    let mut expected = ports.clone();
    expected.sort_unstable();
    assert_eq!(reported, expected);
}

/// Ten listen() calls without bind(), then closes one at a time on
/// request.
const TEN_UNBOUND: &str = r#"
import json, socket, sys
socks = []
for _ in range(10):
    s = socket.socket(); s.listen(); socks.append(s)
print("ports", json.dumps([s.getsockname()[1] for s in socks]))
for s in socks:
    sys.stdin.readline()
    port = s.getsockname()[1]
    s.close()
    print("closed", port)
sys.stdin.readline()
"#;

#[test]
fn every_listener_without_bind_gets_its_own_port() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::spawn(TEN_UNBOUND);
    let ports: Vec<u16> = serde_json::from_str(&helper.read_value("ports")).unwrap();
    let mut opened = BTreeSet::new();
    watcher.expect("ten opens", EVENT_TIMEOUT, |v| {
        if v["event"] == "opened" && v["pid"] == helper.pid() {
            opened.insert(v["port"].as_u64().unwrap() as u16);
        }
        opened.len() == 10
    });
    assert_eq!(opened, ports.iter().copied().collect());
    for expected in &ports {
        helper.send("close");
        let port: u16 = helper.read_value("closed").parse().unwrap();
        assert_eq!(port, *expected);
        let closed = watcher.expect("a close", EVENT_TIMEOUT, |v| {
            v["event"] == "closed" && v["pid"] == helper.pid()
        });
        assert_eq!(closed["port"], port, "the close names the port that closed");
    }
}

/// A child forked to keep the socket; the parent calls listen() without
/// bind(), drops its descriptor at once and exits. The child closes the
/// socket when told.
const HANDED_TO_CHILD: &str = r#"
import os, socket, sys
s = socket.socket()
if os.fork() == 0:
    sys.stdin.readline()
    s.close()
    print("closed", flush=True)
    sys.stdin.readline()
    os._exit(0)
s.listen()
port = s.getsockname()[1]
s.close()
print("port", port, flush=True)
os._exit(0)
"#;

#[test]
fn a_listener_handed_to_a_child_is_reported_at_once_and_once() {
    // Resyncs every 100 ms: each must agree with the events.
    let watcher = Watcher::start(&["--resync-interval", "100ms"]);
    let mut helper = Helper::spawn(HANDED_TO_CHILD);
    let port: u16 = helper.read_value("port").parse().unwrap();
    // Reported before a fence, not at the next resync or at the close.
    let seen = watcher.fence();
    assert_eq!(events_for(&seen, "0.0.0.0", port), ["opened"], "{seen:?}");
    // Three resyncs later, still once.
    let mut resyncs = 0;
    let mut later = Vec::new();
    watcher.expect("three resyncs", Duration::from_secs(10), |v| {
        later.push(v.clone());
        resyncs += usize::from(v["event"] == "resync");
        resyncs == 3
    });
    assert!(events_for(&later, "0.0.0.0", port).is_empty(), "{later:?}");
    helper.send("close");
    assert_eq!(helper.read_line(), "closed");
    let rest = watcher.until_closed("0.0.0.0", port);
    let mut all = later;
    all.extend(rest);
    all.extend(watcher.fence());
    assert_eq!(events_for(&all, "0.0.0.0", port), ["closed"], "{all:?}");
}

/// listen() without bind(), shutdown(), listen() again: the kernel picks a
/// new port.
const RELISTEN: &str = r#"
import socket, sys
s = socket.socket(); s.listen()
first = s.getsockname()[1]
s.shutdown(socket.SHUT_RDWR)
s.listen()
print("ports", first, s.getsockname()[1])
sys.stdin.readline()
s.close()
print("closed")
sys.stdin.readline()
"#;

#[test]
fn a_socket_listening_again_reports_its_new_port() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::spawn(RELISTEN);
    let line = helper.read_value("ports");
    let (first, second) = line.split_once(' ').unwrap();
    let (first, second): (u16, u16) = (first.parse().unwrap(), second.parse().unwrap());
    assert_ne!(first, second);
    helper.send("close");
    helper.read_line();
    let seen = watcher.until_closed("0.0.0.0", second);
    let ours: Vec<(String, u64)> = seen
        .iter()
        .filter(|v| v["pid"] == helper.pid())
        .map(|v| {
            (
                v["event"].as_str().unwrap().into(),
                v["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ours,
        [
            ("opened".into(), u64::from(first)),
            ("closed".into(), u64::from(first)),
            ("opened".into(), u64::from(second)),
            ("closed".into(), u64::from(second)),
        ]
    );
}

/// One member of an SO_REUSEPORT group: binds the port of argv[1] (0: a
/// new one) and closes when told.
const REUSEPORT_MEMBER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("port", s.getsockname()[1])
sys.stdin.readline()
s.close()
print("closed")
sys.stdin.readline()
"#;

#[test]
fn each_close_of_a_reuseport_group_names_its_holder() {
    let mut first = Helper::script_inline(REUSEPORT_MEMBER, &["0"]);
    let port: u16 = first.read_value("port").parse().unwrap();
    let mut members = vec![first];
    for _ in 0..2 {
        let mut m = Helper::script_inline(REUSEPORT_MEMBER, &[&port.to_string()]);
        assert_eq!(m.read_value("port"), port.to_string());
        members.push(m);
    }
    // The group listened before portwatch started.
    let watcher = Watcher::start(&[]);
    let in_baseline = watcher
        .baseline
        .iter()
        .filter(|v| is_event(v, "opened", "127.0.0.1", port))
        .count();
    assert_eq!(in_baseline, 3);
    for i in [1, 0, 2] {
        members[i].send("close");
        members[i].read_line();
        let closed = watcher.expect("a close", EVENT_TIMEOUT, |v| {
            is_event(v, "closed", "127.0.0.1", port)
        });
        assert_eq!(closed["pid"], members[i].pid(), "{closed}");
    }
}

/// Listens in a new network namespace, then goes back to its own: no
/// process is left in the new one, which only the socket leads to.
const LISTEN_IN_A_NAMESPACE_LEFT_BEHIND: &str = r#"
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
home = os.open("/proc/self/ns/net", os.O_RDONLY)
assert libc.unshare(CLONE_NEWNET) == 0
ns = os.stat("/proc/self/ns/net").st_ino
s = socket.socket(); s.bind(("0.0.0.0", 0)); s.listen()
assert libc.setns(home, CLONE_NEWNET) == 0
print("listening", s.getsockname()[1], ns)
sys.stdin.readline()
"#;

#[test]
fn a_listener_in_a_namespace_nobody_is_in_is_neither_closed_nor_hidden() {
    let watcher = Watcher::start(&["--resync-interval", "100ms"]);
    let mut helper = Helper::spawn(LISTEN_IN_A_NAMESPACE_LEFT_BEHIND);
    let line = helper.read_value("listening");
    let (port, ns) = line.split_once(' ').unwrap();
    let (port, ns): (u16, u64) = (port.parse().unwrap(), ns.parse().unwrap());
    watcher.expect("its open", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "0.0.0.0", port) && v["netns"] == ns
    });
    // Resyncs see the namespace through the socket, or leave it alone.
    let mut seen = Vec::new();
    let mut resyncs = 0;
    watcher.expect("three resyncs", Duration::from_secs(10), |v| {
        seen.push(v.clone());
        resyncs += usize::from(v["event"] == "resync");
        resyncs == 3
    });
    // (Its exposure may be judged once the namespace is read: no close.)
    assert!(
        !seen
            .iter()
            .any(|v| v["port"] == port && v["netns"] == ns && v["event"] != "exposure_changed"),
        "{seen:?}"
    );
    // A new watcher's baseline and `list` show it, owned by the helper.
    let second = Watcher::start(&[]);
    assert!(
        second
            .baseline
            .iter()
            .any(|v| v["port"] == port && v["netns"] == ns && v["pid"] == helper.pid()),
        "{:?}",
        second.baseline
    );
    let out = Command::new(BIN).args(["list", "--json"]).output().unwrap();
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.iter()
            .any(|v| v["port"] == port && v["netns"] == ns && v["pid"] == helper.pid()),
        "{list:?}"
    );
}

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[test]
fn event_times_follow_a_step_of_the_wall_clock() {
    let dir = temp_dir("clock");
    let offset = dir.join("offset");
    std::fs::write(&offset, "+0\n").unwrap();
    // libfaketime steps CLOCK_REALTIME for portwatch alone; the kernel's
    // boot-time stamps are untouched, as when NTP steps a host's clock.
    let watcher = Watcher::spawn_command(
        Command::new(BIN)
            .args(["watch", "--json"])
            .env("LD_PRELOAD", FAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &offset)
            .env("FAKETIME_NO_CACHE", "1")
            .env("DONT_FAKE_MONOTONIC", "1"),
    );
    let ts = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let near = |t: chrono::DateTime<chrono::Utc>, want: chrono::DateTime<chrono::Utc>| {
        (t - want).abs() < chrono::TimeDelta::minutes(5)
    };
    let before = watcher.fence();
    assert!(near(ts(before.last().unwrap()), chrono::Utc::now()));
    std::fs::write(&offset, "+1h\n").unwrap();
    let after = watcher.fence();
    let stepped = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let t = ts(after.last().unwrap());
    assert!(near(t, stepped), "{t} is not the stepped clock's {stepped}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_reader_that_goes_away_ends_the_watch_on_a_quiet_host() {
    // An empty namespace: no event will come to make a write fail.
    let ns = NetNs::new("quiet");
    let mut child = Command::new(BIN)
        .args(["watch", "--json", "--netns", &ns.inode().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    // `| head -1`: the reader is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("portwatch runs on with nobody reading it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success() || status.signal() == Some(Signal::Pipe as i32),
        "{status:?}"
    );
}

/// Names itself with bytes that are no UTF-8, an escape sequence and a
/// right-to-left override, listens, and waits.
const HOSTILE_NAME: &str = r#"
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"\xffa\x1bb\xe2\x80\xae", 0, 0, 0)  # PR_SET_NAME
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1])
sys.stdin.readline()
"#;

/// The three views of a listener on 127.0.0.1:`port` that the helper
/// opens once `watcher` runs: its live open, a new watcher's baseline, and
/// `list --json`.
fn three_views(watcher: &Watcher, port: u16) -> [Value; 3] {
    let live = watcher.expect("its open", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    let second = Watcher::start(&[]);
    let base = second
        .baseline
        .iter()
        .find(|v| is_event(v, "opened", "127.0.0.1", port))
        .cloned()
        .unwrap();
    let out = Command::new(BIN).args(["list", "--json"]).output().unwrap();
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let listed = list.iter().find(|v| v["port"] == port).cloned().unwrap();
    [live, base, listed]
}

#[test]
fn a_hostile_name_is_shown_the_same_safe_way_everywhere() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::spawn(HOSTILE_NAME);
    let port: u16 = helper.read_value("port").parse().unwrap();
    let [live, base, listed] = three_views(&watcher, port);
    let expected = r"\xffa\x1bb\u{202e}";
    for (what, v) in [("live", &live), ("baseline", &base), ("list", &listed)] {
        assert_eq!(v["comm"], expected, "{what}: {v}");
    }
    let text = Command::new(BIN).args(["list"]).output().unwrap().stdout;
    assert!(!text.contains(&0x1b), "raw escape in `list`");
    assert!(String::from_utf8(text).unwrap().contains(expected));
}

#[test]
fn a_rules_file_cannot_write_to_the_terminal() {
    let dir = temp_dir("hostile-rules");
    let path = dir.join("alerts.json");
    // An id with an escape sequence (JSON-escaped, so the file parses) and
    // a cooldown of 0, which quotes the id in the error.
    std::fs::write(
        &path,
        r#"{"rules":[{"id":"\u001b]0;owned\u0007\u001b[2J","name":"x","condition":{"type":"PortOpened","params":{"port":1}},"enabled":true,"severity":"Info","cooldown_seconds":0}]}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["alerts", "validate", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(r"\x1b]0;owned\x07\x1b[2J"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A process whose listening thread has a name of its own, and which
/// drops to uid 65534 after creating its socket as root.
const THREAD_AND_UID: &str = r#"
import ctypes, os, socket, sys, threading
libc = ctypes.CDLL(None)
libc.prctl(15, b"pwmain", 0, 0, 0)
s = socket.socket(); s.bind(("127.0.0.1", 0))
os.setresuid(65534, 65534, 65534)
def listen():
    libc.prctl(15, b"pwthread", 0, 0, 0)
    s.listen()
    print("tid", threading.get_native_id(), flush=True)
t = threading.Thread(target=listen); t.start(); t.join()
print("port", s.getsockname()[1])
sys.stdin.readline()
"#;

#[test]
fn live_events_baseline_and_list_agree_on_a_socket() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::spawn(THREAD_AND_UID);
    helper.read_value("tid");
    let port: u16 = helper.read_value("port").parse().unwrap();
    let [live, base, listed] = three_views(&watcher, port);
    let fields = [
        "proto", "address", "port", "pid", "comm", "uid", "netns", "cgroup",
    ];
    let pick = |v: &Value| -> HashMap<&str, Value> {
        fields.iter().map(|f| (*f, v[*f].clone())).collect()
    };
    assert_eq!(pick(&live), pick(&base), "live against baseline");
    assert_eq!(pick(&listed), pick(&base), "list against baseline");
    assert_eq!(
        (live["comm"].as_str(), live["uid"].as_u64()),
        (Some("pwmain"), Some(0))
    );
}

/// A process with a second thread, whose id it prints.
const WITH_A_THREAD: &str = r#"
import sys, threading
ready = threading.Event()
def run():
    print("tid", threading.get_native_id(), flush=True)
    sys.stdin.readline()
threading.Thread(target=run).start()
"#;

#[test]
fn arguments_that_cannot_mean_what_was_asked_are_refused() {
    let mut helper = Helper::spawn(WITH_A_THREAD);
    let tid = helper.read_value("tid");
    let out = Command::new(BIN)
        .args(["watch", "--pid", &tid])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "portwatch: {tid} is a thread of process {}, not a process: watch {} instead\n",
            helper.pid(),
            helper.pid()
        )
    );
    let out = Command::new(BIN)
        .args(["watch", "--netns", "12345"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "portwatch: no network namespace with inode 12345 exists on this host\n"
    );
    helper.send("done");
}

#[test]
fn a_rules_file_that_is_no_regular_file_is_refused_at_once() {
    let dir = temp_dir("fifo-rules");
    let fifo = dir.join("alerts.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // No writer will ever come: a read would block for ever.
    let mut validate = Command::new(BIN)
        .args(["alerts", "validate", fifo.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = validate.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = validate.kill();
            panic!("`alerts validate` on a FIFO hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    validate.stderr.unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(
        err,
        format!(
            "portwatch: {} is not a regular file, so it is not read as alerts\n",
            fifo.display()
        )
    );
    for special in ["/dev/zero", "/dev/null"] {
        let out = Command::new(BIN)
            .args(["alerts", "validate", special])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{special}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_daemon_survives_huge_cooldowns_and_a_rules_file_turned_into_a_fifo() {
    let dir = temp_dir("daemon-hostile");
    let path = dir.join("alerts.json");
    let port = free_port();
    // Cooldowns that once overflowed: at start-up (1e16 s) and at the
    // second firing (1e13 s).
    let rules = format!(
        r#"{{"rules":[{},{}]}}"#,
        rule(
            "soon",
            &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#)
        )
        .replace(
            r#""cooldown_seconds":1"#,
            r#""cooldown_seconds":10000000000000"#
        ),
        rule(
            "never",
            r#"{"type":"UnknownProcessListening","params":null}"#
        )
        .replace(
            r#""cooldown_seconds":1"#,
            r#""cooldown_seconds":10000000000000000"#
        ),
    );
    std::fs::write(&path, rules).unwrap();
    let daemon = Watcher::spawn(&["daemon", "--json", "--alerts", path.to_str().unwrap()]);
    for _ in 0..2 {
        drop(TcpListener::bind(("127.0.0.1", port)).unwrap());
    }
    daemon.expect("the first firing", EVENT_TIMEOUT, |v| {
        v["rule_id"] == "soon"
    });
    // The second open is within the cooldown: no alert, and no crash. A
    // rules file replaced by a FIFO is refused, and the rules stay.
    let fifo = dir.join("alerts.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::rename(&fifo, &path).unwrap();
    let error = daemon.expect("the reload's refusal", EVENT_TIMEOUT, |v| {
        v["event"] == "rules_error"
    });
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("is not a regular file"),
        "{error}"
    );
    // Still alive and evaluating: a fresh rule id fires.
    std::fs::remove_file(&path).unwrap();
    let again = free_port();
    std::fs::write(
        &path,
        format!(
            r#"{{"rules":[{}]}}"#,
            rule(
                "after",
                &format!(r#"{{"type":"PortOpened","params":{{"port":{again}}}}}"#)
            )
        ),
    )
    .unwrap();
    daemon.expect("the reload", EVENT_TIMEOUT, |v| {
        v["event"] == "rules_reloaded"
    });
    drop(TcpListener::bind(("127.0.0.1", again)).unwrap());
    daemon.expect("the new rule", EVENT_TIMEOUT, |v| v["rule_id"] == "after");
    let (status, stderr, _) = daemon.stop();
    assert!(status.success(), "{status:?}: {stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
