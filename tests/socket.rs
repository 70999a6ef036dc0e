//! The daemon's event socket: clients with their own filters, the group
//! that may connect and the users who may not, and a client that stops
//! reading while another gets everything.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    os::unix::net::UnixStream,
    path::PathBuf,
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::support::{BIN, Helper, Watcher};

/// A rules file with no rules and a socket path, in a fresh directory
/// that user nobody can traverse.
fn setup(tag: &str) -> (PathBuf, String, String) {
    let dir = std::env::temp_dir().join(format!("portwatch-socket-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    fs::write(&rules, r#"{"rules":[]}"#).unwrap();
    let socket = dir.join("portwatch.sock");
    (
        dir,
        rules.to_str().unwrap().to_string(),
        socket.to_str().unwrap().to_string(),
    )
}

fn daemon(rules: &str, socket: &str, extra: &[&str]) -> Watcher {
    let mut args = vec!["daemon", "--json", "--alerts", rules, "--socket", socket];
    args.extend_from_slice(extra);
    Watcher::spawn(&args)
}

/// `watch --connect SOCKET --json ARGS` run as user nobody, in `groups`.
fn as_nobody(groups: Option<&str>, socket: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "nobody", "--regid", "nogroup"]);
    match groups {
        Some(g) => cmd.args(["--groups", g]),
        None => cmd.arg("--clear-groups"),
    };
    cmd.args([BIN, "watch", "--connect", socket, "--json"])
        .args(args);
    cmd
}

/// On `go`: binds a UDP port, then listens on a TCP port (in that
/// order), and prints both.
const TREE_PORTS: &str = r#"
import socket, sys
sys.stdin.readline()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen()
print("ports", u.getsockname()[1], t.getsockname()[1])
sys.stdin.read()
"#;

/// Lines up to and including the first that `pred` accepts.
fn until(w: &Watcher, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    w.expect(what, Duration::from_secs(10), |v| {
        seen.push(v.clone());
        pred(v)
    });
    seen
}

fn opened(v: &Value, proto: &str, port: u16) -> bool {
    v["event"] == "opened" && v["proto"] == proto && v["port"] == port
}

#[test]
fn clients_get_what_their_own_filters_admit() {
    let (dir, rules, socket) = setup("filters");
    let d = daemon(&rules, &socket, &[]);
    let mut helper = Helper::spawn(TREE_PORTS);
    let pid = helper.pid().to_string();
    let tcp_only = Watcher::start(&["--connect", &socket, "--proto", "tcp"]);
    let tree = Watcher::start(&["--connect", &socket, "--pid", &pid]);
    // Opened before the helper's ports: each client has seen it, or left
    // it out, by the time the helper's ports arrive.
    let mine = TcpListener::bind("127.0.0.1:0").unwrap();
    let mine_port = mine.local_addr().unwrap().port();
    helper.send("go");
    let ports = helper.read_value("ports");
    let mut ports = ports.split(' ').map(|p| p.parse::<u16>().unwrap());
    let (udp, tcp) = (ports.next().unwrap(), ports.next().unwrap());

    // TCP only: the test's listener and the helper's TCP port; the UDP
    // port, bound before that TCP port, never came.
    let seen = until(&tcp_only, "the helper's TCP port", |v| {
        opened(v, "tcp", tcp)
    });
    assert!(seen.iter().any(|v| opened(v, "tcp", mine_port)), "{seen:?}");
    assert!(!seen.iter().any(|v| v["proto"] == "udp"), "{seen:?}");
    // The helper's tree: its two ports, not the test's listener.
    let seen = until(&tree, "the helper's TCP port", |v| opened(v, "tcp", tcp));
    assert!(seen.iter().any(|v| opened(v, "udp", udp)), "{seen:?}");
    assert!(!seen.iter().any(|v| v["port"] == mine_port), "{seen:?}");
    assert!(seen.iter().all(|v| v["pid"] == helper.pid()), "{seen:?}");
    drop((tcp_only, tree, d, mine));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn the_sockets_group_may_connect_and_nobody_else() {
    let (dir, rules, socket) = setup("group");
    let _d = daemon(&rules, &socket, &["--socket-group", "daemon"]);
    let meta = fs::metadata(&socket).unwrap();
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, 1), "root:daemon");

    // A member, unprivileged: its events, without root.
    let member = Watcher::spawn_command(&mut as_nobody(Some("daemon"), &socket, &[]));
    assert_eq!(member.ready["backend"], "ebpf");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    member.expect("the new listener", Duration::from_secs(10), |v| {
        opened(v, "tcp", port)
    });

    // Not a member: refused by the socket's mode, in one sentence.
    let out = as_nobody(None, &socket, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Permission denied") && err.lines().count() == 1,
        "{err}"
    );

    // A member asking for a tree it does not own: refused by the daemon.
    let out = as_nobody(Some("daemon"), &socket, &["--pid", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("process 1 belongs to another user: only root may watch it"),
        "{err}"
    );
    let _ = fs::remove_dir_all(dir);
}

/// On each `go`: opens and closes N TCP listeners as fast as it can,
/// then prints `done`.
const CHURN: &str = r#"
import socket, sys
n = int(sys.argv[1])
for _ in sys.stdin:
    for _ in range(n):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); s.close()
    print("done")
"#;

#[test]
fn a_client_that_stops_reading_loses_alone_and_gets_a_fresh_baseline() {
    // 30 rounds of 200 events: 6,000, more than a queue of 1,024 and the
    // socket's buffer hold; the reading client reads each round before
    // the next starts, so it never holds more than 200.
    const ROUNDS: usize = 30;
    const PER_ROUND: usize = 100;
    let (dir, rules, socket) = setup("stuck");
    let _d = daemon(&rules, &socket, &["--socket-queue", "1024"]);
    // A client that sends its request, then reads nothing for now.
    let mut stuck = UnixStream::connect(&socket).unwrap();
    stuck.write_all(b"{}\n").unwrap();
    let reader = Watcher::start(&["--connect", &socket]);
    let mut churn = Helper::script_inline(CHURN, &[&PER_ROUND.to_string()]);
    let (mut opens, mut closes) = (0, 0);
    for round in 1..=ROUNDS {
        churn.send("go");
        assert_eq!(churn.read_line(), "done");
        reader.expect(
            "the round's opens and closes",
            Duration::from_secs(10),
            |v| {
                assert_ne!(v["event"], "lost", "the reading client lost events");
                if v["pid"] == churn.pid() {
                    match v["event"].as_str() {
                        Some("opened") => opens += 1,
                        Some("closed") => closes += 1,
                        _ => {}
                    }
                }
                closes == round * PER_ROUND
            },
        );
    }
    assert_eq!(opens, ROUNDS * PER_ROUND);

    // Now the stuck one reads: what fit in its queue, then `lost`, then
    // a fresh baseline and a ready line.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut lines = BufReader::new(stuck).lines();
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    while next()["event"] != "ready" {}
    let lost = loop {
        let v = next();
        if v["event"] == "lost" {
            break v;
        }
    };
    assert!(lost["events"].as_u64().unwrap() > 0, "{lost}");
    while next()["event"] != "ready" {}
    let _ = fs::remove_dir_all(dir);
}
