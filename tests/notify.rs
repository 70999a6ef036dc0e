//! Desktop notifications: `portwatch notify`, run as an unprivileged user
//! in that user's own D-Bus session, shows a root daemon's alerts; the
//! notification server is a stand-in that records what it is asked to
//! show, on a private session bus.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use serde_json::Value;

use crate::support::{BIN, Helper, Watcher, free_port, helper_path, rule_with_cooldown};

/// `setpriv` as user nobody in group `daemon` (the socket's group here).
fn as_nobody(cmd: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid", "nobody", "--regid", "nogroup", "--groups", "daemon",
    ])
    .args(cmd);
    c
}

/// CMD as root, or as nobody.
fn as_user(root: bool, cmd: &[&str]) -> Command {
    if root {
        let mut c = Command::new(cmd[0]);
        c.args(&cmd[1..]);
        c
    } else {
        as_nobody(cmd)
    }
}

/// A private session bus (root's or nobody's), and a stand-in
/// notification server on it.
struct SessionBus {
    daemon: Helper,
    address: String,
    server: Helper,
}

impl SessionBus {
    fn start(root: bool) -> Self {
        let mut daemon = Helper::command(&mut as_user(
            root,
            &["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        ));
        let address = daemon.read_line();
        assert!(address.starts_with("unix:"), "{address}");
        let mut server = Helper::command(
            as_user(
                root,
                &["/usr/bin/python3", "-u", &helper_path("notifications.py")],
            )
            .env("DBUS_SESSION_BUS_ADDRESS", &address),
        );
        assert_eq!(server.read_line(), "ready");
        Self {
            daemon,
            address,
            server,
        }
    }
}

/// A rules file in a fresh directory: one Critical PortOpened rule.
fn critical_rule(tag: &str, port: u16) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("portwatch-notify-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    let rule = rule_with_cooldown(
        "crit",
        &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#),
        3600,
    )
    .replace("\"Warning\"", "\"Critical\"");
    fs::write(&rules, format!(r#"{{"rules":[{rule}]}}"#)).unwrap();
    let rules = rules.to_str().unwrap().to_string();
    (dir, rules)
}

/// What the stand-in server was asked to show, checked against the rule.
fn expect_shown(bus: &mut SessionBus, port: u16) {
    let shown: Value = serde_json::from_str(&bus.server.read_value("notify")).unwrap();
    assert_eq!(shown["app"], "portwatch");
    assert_eq!(shown["summary"], "portwatch: crit rule");
    assert!(
        shown["body"]
            .as_str()
            .unwrap()
            .contains(&format!("opened 127.0.0.1:{port}/tcp")),
        "{shown}"
    );
    assert_eq!(shown["urgency"], 2, "Critical severity, critical urgency");
}

/// A process's stderr lines, as they come.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn notify_shows_a_root_daemons_alerts_in_an_unprivileged_session() {
    let port = free_port();
    let (dir, rules) = critical_rule("client", port);
    let socket = dir.join("portwatch.sock");
    let socket = socket.to_str().unwrap();
    let _d = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        &rules,
        "--socket",
        socket,
        "--socket-group",
        "daemon",
    ]);

    let mut bus = SessionBus::start(false);
    let mut notify = as_nobody(&[BIN, "notify", "--connect", socket])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = stderr_lines(&mut notify);
    let ready = err.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(ready.contains("as desktop notifications"), "{ready}");

    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    expect_shown(&mut bus, port);
    let _ = notify.kill();
    let _ = notify.wait();
    drop(bus.daemon);
    let _ = fs::remove_dir_all(dir);
}

/// A daemon that has a session bus (here root's own) shows its alerts
/// itself with `--notify`.
#[test]
fn daemon_notify_shows_alerts_on_its_session_bus() {
    let port = free_port();
    let (dir, rules) = critical_rule("daemon", port);
    let mut bus = SessionBus::start(true);
    let _d = Watcher::spawn_command(
        Command::new(BIN)
            .args(["daemon", "--json", "--alerts", &rules, "--notify"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address),
    );
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    expect_shown(&mut bus, port);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn notify_without_a_session_bus_says_so() {
    let out = Command::new(BIN)
        .args(["notify", "--connect", "/nonexistent.sock"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("need a D-Bus session bus"), "{err}");
    let out = Command::new(BIN)
        .args(["daemon", "--notify"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("run `portwatch notify` in the user's session"),
        "{err}"
    );
}
