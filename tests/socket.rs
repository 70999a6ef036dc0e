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

/// As the user and groups setpriv is given: connects N times to the
/// socket, sends `{}` on each and never reads; peeks at each one's first
/// line (leaving it unread) to tell an accepted client from a refused
/// one, then prints `ready ACCEPTED REFUSED` and the first refusal, and
/// holds every connection until stdin closes.
const HOLD: &str = r#"
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
held, accepted, refused, why = [], 0, 0, ""
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    try:
        s.sendall(b"{}\n")
    except OSError:
        pass  # refused already: its error line waits unread
    first = s.recv(65536, socket.MSG_PEEK)
    if first.startswith(b'{"event":"error"'):
        refused += 1
        why = why or first.decode().strip()
    else:
        accepted += 1
    held.append(s)
print("ready", accepted, refused)
print("refusal", why)
sys.stdin.read()
"#;

/// `watch --connect SOCKET --json` as uid `uid` in group daemon.
fn as_member(uid: &str, socket: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", uid, "--regid", uid, "--groups", "daemon"])
        .args([BIN, "watch", "--connect", socket, "--json"]);
    cmd
}

#[test]
fn one_member_cannot_hold_every_slot() {
    let (dir, rules, socket) = setup("slots");
    let _d = daemon(&rules, &socket, &["--socket-group", "daemon"]);
    // 70 connections of user nobody (a member), none of them reading.
    let mut holder = Helper::command(
        Command::new("setpriv")
            .args([
                "--reuid", "nobody", "--regid", "nogroup", "--groups", "daemon",
            ])
            // Debian's python3: root's own (pyenv) is out of nobody's reach.
            .args(["/usr/bin/python3", "-u", "-c", HOLD, &socket, "70"]),
    );
    let counts = holder.read_value("ready");
    let refusal = holder.read_value("refusal");

    // Root has its own allowance, and another member its own share.
    let root = Watcher::start(&["--connect", &socket]);
    assert_eq!(root.ready["event"], "ready");
    let other = Watcher::spawn_command(&mut as_member("12345", &socket));
    assert_eq!(other.ready["event"], "ready");

    assert_eq!(counts, "8 62", "accepted and refused of one user's 70");
    assert!(
        refusal.contains("user 65534 has 8 clients connected already"),
        "{refusal}"
    );
    drop((root, other, holder));
    let _ = fs::remove_dir_all(dir);
}

/// Starts a daemon serving `socket` and returns how it ended: Ok with
/// its stderr when it exited before becoming ready, Err when it served.
fn daemon_refuses(rules: &str, socket: &str) -> Result<(Option<i32>, String), ()> {
    let mut child = Command::new(BIN)
        .args(["daemon", "--json", "--alerts", rules, "--socket", socket])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let Ok(line) = line else { break };
        if line.contains(r#""event":"ready""#) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(());
        }
    }
    let out = child.wait_with_output().unwrap();
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn a_socket_directory_another_user_could_swap_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, rules, _) = setup("dirs");
    // A directory of user nobody's: nobody could put an impostor in
    // place of the socket.
    let theirs = std::env::temp_dir().join(format!("portwatch-nobodys-{}", std::process::id()));
    let _ = fs::remove_dir_all(&theirs);
    let made = Command::new("setpriv")
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
        .args(["mkdir", "-m", "0755"])
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(made.success());
    let socket = theirs.join("events.sock");
    let ended = daemon_refuses(&rules, socket.to_str().unwrap());
    let _ = fs::remove_dir_all(&theirs);
    let (code, err) = ended.expect("the daemon served from a directory user nobody owns");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(theirs.to_str().unwrap())
            && err.contains("nobody")
            && err.lines().count() == 1,
        "{err}"
    );

    // Root's, but writable by everybody without the sticky bit.
    let open = dir.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let socket = open.join("events.sock");
    let (code, err) = daemon_refuses(&rules, socket.to_str().unwrap())
        .expect("the daemon served from a directory anybody may rename in");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(open.to_str().unwrap())
            && err.contains("writable")
            && err.lines().count() == 1,
        "{err}"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_directory_planted_at_a_guessable_private_name_is_left_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, rules, _) = setup("planted");
    // Sticky and writable by all, like /tmp: only a file's owner may
    // rename or remove it there, so the socket is safe in it.
    let shared = dir.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = shared.join("events.sock");
    // The shell that becomes the daemon (same pid) first has nobody plant
    // a directory where the daemon used to put its private one.
    let script = format!(
        "setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c \
         'mkdir {s}/.portwatch-'$$'.tmp && touch {s}/.portwatch-'$$'.tmp/mine' && \
         exec {BIN} daemon --json --alerts {rules} --socket {sock}",
        s = shared.display(),
        sock = socket.display(),
    );
    let d = Watcher::spawn_command(Command::new("sh").args(["-c", &script]));
    let planted = shared.join(format!(".portwatch-{}.tmp", d.pid()));
    assert!(
        planted.join("mine").exists(),
        "the daemon removed {}",
        planted.display()
    );
    // And left nothing of its own behind but the socket.
    let left: Vec<_> = fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "events.sock" && *n != planted.file_name().unwrap().to_str().unwrap())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(d);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn connecting_to_a_stopped_daemon_fails_instead_of_waiting() {
    use crate::support::{Signal, signal};
    let (dir, rules, socket) = setup("stopped");
    let d = daemon(&rules, &socket, &[]);
    signal(d.pid(), Signal::Stop);
    let client = Command::new(BIN)
        .args(["watch", "--connect", &socket, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client_pid = client.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(client.wait_with_output());
    });
    // A deadline for a hang, not a timing check.
    let out = rx.recv_timeout(Duration::from_secs(60));
    signal(d.pid(), Signal::Cont);
    let Ok(out) = out else {
        signal(client_pid, Signal::Kill);
        panic!("watch --connect still waits on a stopped daemon after 60 s");
    };
    let out = out.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the daemon at {socket} accepted the connection but sent nothing within 10 s"
        )) && err.lines().count() == 1,
        "{err}"
    );
    drop(d);
    let _ = fs::remove_dir_all(dir);
}

/// As the user setpriv gives: connects, sends `{}`, reads up to the ready
/// line, then keeps sending bytes until the daemon hangs up; prints
/// `cut N` (bytes it got out before that) or `never cut` after 64 MiB.
const TALKER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"{}\n")
f = s.makefile("rb")
while b'"ready"' not in f.readline():
    pass
sent = 0
try:
    while sent < 64 << 20:
        sent += s.send(b"x" * 65536)
    print("never cut", flush=True)
except OSError:
    print("cut", sent, flush=True)
"#;

/// The protocol is one request line: a member that keeps sending after it
/// (which would keep the daemon's event loop reading) is cut off, and the
/// daemon goes on serving others.
#[test]
fn a_client_that_keeps_talking_is_cut_off() {
    let (dir, rules, socket) = setup("talker");
    let _d = daemon(&rules, &socket, &["--socket-group", "daemon"]);
    let mut talker = Helper::command(
        Command::new("setpriv")
            .args([
                "--reuid", "nobody", "--regid", "nogroup", "--groups", "daemon",
            ])
            .args(["/usr/bin/python3", "-u", "-c", TALKER, &socket]),
    );
    let said = talker.read_line();
    assert!(said.starts_with("cut "), "{said}");
    let root = Watcher::start(&["--connect", &socket]);
    assert_eq!(root.ready["event"], "ready");
    drop((root, talker));
    let _ = fs::remove_dir_all(dir);
}
