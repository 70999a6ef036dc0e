//! The library without root: `PortWatcher::connect`, as the forwarding
//! example uses it (`forward_ports --connect SOCKET --pid PID`), run as
//! user nobody in the socket's group against the real daemon, following a
//! tree of nobody's own; and the daemon's refusal of another user's tree.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

use crate::support::{Helper, Watcher, nobody};

/// A rules file with no rules and a socket path, in a fresh directory
/// that user nobody can traverse.
fn setup(tag: &str) -> (PathBuf, String, String) {
    let dir = std::env::temp_dir().join(format!("portwatch-remote-{tag}-{}", std::process::id()));
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

/// The daemon, serving `socket` to the members of group daemon.
fn daemon(rules: &str, socket: &str) -> Watcher {
    Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        rules,
        "--socket",
        socket,
        "--socket-group",
        "daemon",
    ])
}

/// The newest modification time of `path` or of any file below it.
fn newest(path: &Path) -> SystemTime {
    let own = fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    match fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .map(|e| newest(&e.path()))
            .fold(own, SystemTime::max),
        Err(_) => own,
    }
}

/// The forwarding example, built from today's sources: `cargo test`
/// without a target filter builds it, `--test integration` does not, so
/// it is built here (once) when older than what it is made of.
fn example() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_example).clone()
}

fn build_example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/PROFILE/deps/integration-HASH
    let profile = exe.parent().unwrap().parent().unwrap();
    let example = profile.join("examples/forward_ports");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = fs::metadata(&example).and_then(|m| m.modified()).ok();
    let sources = [
        manifest.join("src"),
        manifest.join("examples/forward_ports.rs"),
        manifest.join("Cargo.toml"),
        manifest.join("../Cargo.lock"),
    ];
    let made_of = sources
        .iter()
        .map(|s| newest(s))
        .fold(SystemTime::UNIX_EPOCH, SystemTime::max);
    if built.is_none_or(|b| b < made_of) {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.current_dir(manifest).args([
            "build",
            "-p",
            "portwatch",
            "--example",
            "forward_ports",
        ]);
        if profile.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo, to build the example");
        assert!(
            status.success(),
            "cargo build --example forward_ports failed"
        );
    }
    assert!(example.exists(), "{} is missing", example.display());
    example
}

/// Listeners on 127.0.0.1: `open` opens one more and prints `port N`;
/// `close` closes the oldest still open and prints `closed N`.
const LISTENERS: &str = r#"
import socket, sys
held = []
print("ready")
for line in sys.stdin:
    if line.strip() == "open":
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        held.append(s)
        print("port", s.getsockname()[1])
    else:
        s = held.pop(0); port = s.getsockname()[1]; s.close()
        print("closed", port)
"#;

/// The example's next line that is not a `lost` notice, and whether a
/// `lost` notice came before it.
fn next_change(fwd: &mut Helper) -> (String, bool) {
    let mut lost = false;
    loop {
        let line = fwd.read_line();
        if line.starts_with("lost ") {
            lost = true;
            continue;
        }
        return (line, lost);
    }
}

#[test]
fn a_user_follows_a_tree_of_their_own_through_the_daemon_and_across_its_restart() {
    let example = example();
    let (dir, rules, socket) = setup("follow");
    let first = daemon(&rules, &socket);
    // Debian's python3: root's own (pyenv) is out of nobody's reach.
    let mut server =
        Helper::command(nobody(false).args(["/usr/bin/python3", "-u", "-c", LISTENERS]));
    // Its pid is setpriv's until setpriv has become nobody and run python:
    // asked for before that, the daemon rightly finds root's process.
    assert_eq!(server.read_line(), "ready");
    let pid = server.pid().to_string();
    let mut fwd = Helper::command(
        nobody(true)
            .arg(&example)
            .args(["--connect", &socket, "--pid", &pid])
            .stderr(Stdio::inherit()),
    );
    assert_eq!(fwd.read_line(), "ready");

    server.send("open");
    let a: u16 = server.read_value("port").parse().unwrap();
    assert_eq!(
        next_change(&mut fwd),
        (format!("opened 127.0.0.1:{a}"), false)
    );
    server.send("close");
    assert_eq!(server.read_value("closed"), a.to_string());
    assert_eq!(
        next_change(&mut fwd),
        (format!("closed 127.0.0.1:{a}"), false)
    );

    // The daemon restarts while one port closes and another opens, and a
    // third stays open: the example says it lost the connection,
    // reconnects by itself, and reports the two that changed, and only
    // them.
    server.send("open");
    let b: u16 = server.read_value("port").parse().unwrap();
    assert_eq!(
        next_change(&mut fwd),
        (format!("opened 127.0.0.1:{b}"), false)
    );
    server.send("open");
    let c: u16 = server.read_value("port").parse().unwrap();
    assert_eq!(
        next_change(&mut fwd),
        (format!("opened 127.0.0.1:{c}"), false)
    );
    let (status, err, _) = first.stop();
    assert!(status.success(), "{err}");
    let said = fwd.read_line();
    assert!(said.starts_with("lost disconnected: "), "{said}");
    server.send("open");
    let d: u16 = server.read_value("port").parse().unwrap();
    server.send("close");
    assert_eq!(server.read_value("closed"), b.to_string());
    let second = daemon(&rules, &socket);
    assert_eq!(next_change(&mut fwd).0, format!("closed 127.0.0.1:{b}"));
    assert_eq!(next_change(&mut fwd).0, format!("opened 127.0.0.1:{d}"));
    // Live again, and nothing said of the port that stayed open: its
    // close is the next line.
    for port in [c, d] {
        server.send("close");
        assert_eq!(server.read_value("closed"), port.to_string());
        assert_eq!(
            next_change(&mut fwd),
            (format!("closed 127.0.0.1:{port}"), false)
        );
    }
    drop((fwd, server, second));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn another_users_tree_and_a_non_member_are_refused_in_one_sentence() {
    let example = example();
    let (dir, rules, socket) = setup("refused");
    let _d = daemon(&rules, &socket);

    // Pid 1 is root's: the daemon's refusal, as the start's error.
    let out = nobody(true)
        .arg(&example)
        .args(["--connect", &socket, "--pid", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused: process 1 belongs to another user: only root may watch it")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));

    // Not in the socket's group: the socket's mode refuses.
    let me = std::process::id().to_string();
    let out = nobody(false)
        .arg(&example)
        .args(["--connect", &socket, "--pid", &me])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to the portwatch daemon at {socket}"
        )) && err.contains("Permission denied")
            && err.lines().count() == 1,
        "{err}"
    );
    let _ = fs::remove_dir_all(dir);
}

/// A socket another user serves (a name in a directory anyone can write,
/// while the daemon is down): root's watcher does not believe a line of
/// it, and says who serves it.
#[test]
fn a_socket_another_user_serves_is_not_believed() {
    let example = example();
    let dir =
        std::env::temp_dir().join(format!("portwatch-remote-impostor-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut perms = fs::metadata(&dir).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o1777);
    fs::set_permissions(&dir, perms).unwrap();
    let socket = dir.join("portwatch.sock");
    // User nobody's impostor: a forged baseline for whoever connects.
    let impostor = format!(
        r#"
import socket
s = socket.socket(socket.AF_UNIX); s.bind({path:?}); s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b'{{"event":"opened","proto":"tcp","address":"0.0.0.0","port":22,"pid":1,"comm":"sshd","uid":0,"netns":1,"cgroup":"/","container":null,"ts":"2026-12-04T10:00:00.000000Z","source":"baseline"}}\n{{"event":"ready","backend":"ebpf","listeners":1,"ts":"2026-12-04T10:00:00.000000Z"}}\n')
"#,
        path = socket.to_str().unwrap()
    );
    let mut served = Helper::command(
        crate::support::as_nobody("/usr/bin/python3").args(["-u", "-c", &impostor]),
    );
    assert_eq!(served.read_line(), "listening");
    let me = std::process::id().to_string();
    // A watcher that believed it would follow on: `timeout` ends it
    // (status 124) and the test fails instead of hanging.
    let out = Command::new("timeout")
        .arg("20")
        .arg(&example)
        .args(["--connect", socket.to_str().unwrap(), "--pid", &me])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("neither root nor this user"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("22"),
        "believed"
    );
    drop(served);
    let _ = fs::remove_dir_all(dir);
}
