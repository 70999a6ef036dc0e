//! The socket's clients against lines a newer daemon might send: an unknown
//! `event`, a known field with a value this version does not know, a field
//! it does not know, a line too long. Nothing kills the client but the
//! line too long; nothing is guessed; `--json` passes every object on.

use std::{fs, process::Command};

use crate::support::{BIN, Helper, helper_path};

const READY: &str =
    r#"{"event":"ready","backend":"ebpf","listeners":0,"ts":"2026-12-01T10:00:00Z"}"#;
const OPENED: &str = r#"{"event":"opened","proto":"tcp","address":"127.0.0.1","port":4242,"pid":7,"comm":"new\u001b[2Jer","uid":0,"netns":1,"cgroup":"/","container":null,"ts":"2026-12-01T10:00:01Z","source":"ebpf","exposure":"reachable"}"#;
const NEW_SOURCE: &str = r#"{"event":"opened","proto":"tcp","address":"127.0.0.1","port":4343,"pid":7,"comm":"x","uid":0,"netns":1,"cgroup":"/","container":null,"ts":"2026-12-01T10:00:02Z","source":"journal"}"#;
const NEW_EVENT: &str = r#"{"event":"drift","port":22,"ts":"2026-12-01T10:00:03Z"}"#;
const CLOSED: &str = r#"{"event":"closed","proto":"tcp","address":"127.0.0.1","port":4242,"pid":7,"comm":"x","uid":0,"netns":1,"cgroup":"/","container":null,"ts":"2026-12-01T10:00:04Z","source":"ebpf"}"#;

/// A fake daemon at a fresh path sending `lines`, and `watch --connect`
/// with `args` run until the daemon hangs up: (status, stdout, stderr).
fn watch_against(tag: &str, lines: &str, args: &[&str]) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("portwatch-wire-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("daemon.sock");
    let file = dir.join("lines");
    fs::write(&file, lines).unwrap();
    let mut daemon = Helper::command(
        Command::new("python3")
            .arg("-u")
            .arg(helper_path("fake_daemon.py"))
            .arg(&socket)
            .arg(&file),
    );
    assert_eq!(daemon.read_line(), "listening");
    let client = Command::new(BIN)
        .args(["watch", "--connect"])
        .arg(&socket)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(daemon.read_line().starts_with("request"));
    assert_eq!(daemon.read_line(), "sent");
    // The daemon hangs up: the client ends, having read every line.
    daemon.close_stdin();
    let _ = daemon.child.wait();
    let out = client.wait_with_output().unwrap();
    let _ = fs::remove_dir_all(dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_newer_daemons_lines_are_skipped_said_once_and_never_guessed() {
    let lines = [READY, NEW_SOURCE, OPENED, NEW_EVENT, NEW_SOURCE, CLOSED].join("\n") + "\n";
    let (status, out, err) = watch_against("text", &lines, &[]);
    // It ran to the daemon's hang-up, which is the one error.
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("closed the connection"), "{err}");
    let shown: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(shown.len(), 2, "{out}");
    assert!(shown[0].contains("opened") && shown[0].contains("127.0.0.1:4242"));
    assert!(shown[1].contains("closed"));
    // The name is escaped, never a raw escape sequence.
    assert!(
        !out.contains('\u{1b}') && out.contains("new\\x1b[2Jer"),
        "{out}"
    );
    assert_eq!(err.matches("skipping lines").count(), 1, "{err}");
    assert!(err.contains("journal"), "{err}");
    assert!(
        !out.contains("4343"),
        "a line with an unknown value is not guessed at"
    );
}

#[test]
fn json_passes_every_object_of_a_newer_daemon_on() {
    let lines = [READY, NEW_SOURCE, OPENED, NEW_EVENT, CLOSED].join("\n") + "\n";
    let (_, out, err) = watch_against("json", &lines, &["--json"]);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, [READY, NEW_SOURCE, OPENED, NEW_EVENT, CLOSED], "{err}");
}

#[test]
fn a_line_too_long_ends_the_client_in_one_sentence() {
    let lines = format!("{READY}\n{}\n", "x".repeat(2 << 20));
    let (status, _, err) = watch_against("long", &lines, &[]);
    assert_eq!(status, 1);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.contains("longer than 1048576 bytes"), "{err}");
}
