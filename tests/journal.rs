//! The journal with real processes and a real store: who held a port at
//! three instants, a writer killed during a burst, a full disk, and a
//! journal its group alone reads.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;

use crate::support::{
    BIN, EVENT_TIMEOUT, Helper, Signal, Watcher, as_nobody, free_port, is_event, signal,
};

/// Listeners on 127.0.0.1 on command: `open PORT` (says `open PORT`),
/// `close PORT` (says `closed PORT`), `burst N` (opens and closes N on
/// ports the kernel picks; says `burst N`).
const LISTENERS: &str = r#"
import socket, sys
held = {}
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "open":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(arg)))
        s.listen()
        held[arg] = s
        print("open", arg, flush=True)
    elif cmd == "close":
        held.pop(arg).close()
        print("closed", arg, flush=True)
    elif cmd == "burst":
        for _ in range(int(arg)):
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); s.close()
        print("burst", arg, flush=True)
"#;

fn listeners() -> Helper {
    Helper::spawn(LISTENERS)
}

fn ask(h: &mut Helper, line: &str, answer: &str) {
    h.send(line);
    assert_eq!(h.read_line(), answer);
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pw-journal-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn history(journal: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["history", "--journal", journal.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap())
        .unwrap()
        .to_utc()
}

fn at(journal: &Path, port: u16, t: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let out = history(
        journal,
        &[
            "--port",
            &port.to_string(),
            "--at",
            &portwatch::wire::format_ts(&t),
            "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn history_names_who_held_a_port_at_each_instant() {
    let dir = scratch("at");
    let journal = dir.join("journal.db");
    let w = Watcher::start(&["--journal", journal.to_str().unwrap()]);
    let port = free_port();
    let p = port.to_string();
    let (mut a, mut b) = (listeners(), listeners());
    let event = |what: &str, pid: u32| {
        w.expect(what, EVENT_TIMEOUT, |v| {
            v["port"] == port && v["event"] == what && v["pid"] == pid
        })
    };
    ask(&mut a, &format!("open {p}"), &format!("open {p}"));
    let a_open = ts(&event("opened", a.pid()));
    ask(&mut a, &format!("close {p}"), &format!("closed {p}"));
    let a_close = ts(&event("closed", a.pid()));
    ask(&mut b, &format!("open {p}"), &format!("open {p}"));
    let b_open = ts(&event("opened", b.pid()));
    ask(&mut b, &format!("close {p}"), &format!("closed {p}"));
    let b_close = ts(&event("closed", b.pid()));
    // Stopping the watch writes what is queued: the fence.
    let (status, err, _) = w.stop();
    assert!(status.success(), "{err}");
    let mid = |x: chrono::DateTime<chrono::Utc>, y| x + (y - x) / 2;
    let held = at(&journal, port, mid(a_open, a_close));
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["pid"], a.pid());
    assert_eq!(
        held[0]["exe"].as_str().map(|e| e.contains("python")),
        Some(true)
    );
    let held = at(&journal, port, mid(b_open, b_close));
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["pid"], b.pid());
    let after = history(
        &journal,
        &[
            "--port",
            &p,
            "--at",
            &portwatch::wire::format_ts(&(b_close + chrono::Duration::milliseconds(1))),
        ],
    );
    assert!(after.status.success());
    assert!(after.stdout.is_empty());
    assert!(String::from_utf8_lossy(&after.stderr).contains("nobody held a matching port"));
    // Every open and close, in order, with lifetimes.
    let all = history(
        &journal,
        &["--port", &p, "--proto", "tcp", "--exe", "*python*"],
    );
    let text = String::from_utf8_lossy(&all.stdout);
    let kinds: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(kinds, ["opened", "closed", "opened", "closed"], "{text}");
    assert!(text.lines().nth(1).unwrap().contains(" after "), "{text}");
    assert_eq!(
        history(&journal, &["--pid", &b.pid().to_string()])
            .stdout
            .iter()
            .filter(|&&c| c == b'\n')
            .count(),
        2
    );
    // Bad times: one sentence, exit 1.
    let bad = history(&journal, &["--at", "teatime"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`teatime` is no time"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_writer_killed_during_a_burst_keeps_what_it_wrote_a_second_before() {
    let dir = scratch("kill");
    let journal = dir.join("journal.db");
    let w = Watcher::start(&["--journal", journal.to_str().unwrap()]);
    let mut h = listeners();
    ask(&mut h, "burst 300", "burst 300");
    let fence = w.fence();
    let fence_port = fence.last().unwrap()["port"].as_u64().unwrap();
    // What the guarantee is about: a second after it happened.
    std::thread::sleep(Duration::from_millis(1100));
    // More of it while the writer dies.
    h.send("burst 1000");
    signal(w.pid(), Signal::Kill);
    assert_eq!(h.read_line(), "burst 1000");
    drop(w);
    // The store opens cleanly, and holds the first burst and the fence.
    let out = history(&journal, &["--pid", &h.pid().to_string(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let closes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"event\":\"closed\""))
        .count();
    assert!(
        closes >= 300,
        "{closes} closes of the burst before the kill"
    );
    let fenced = history(&journal, &["--port", &fence_port.to_string()]);
    assert!(String::from_utf8_lossy(&fenced.stdout).contains("closed"));
    // A new writer takes the store over.
    let w = Watcher::start(&["--journal", journal.to_str().unwrap()]);
    let (status, err, _) = w.stop();
    assert!(status.success(), "{err}");
    assert!(!err.contains("journal"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_full_disk_stops_the_journal_and_never_the_watch() {
    let dir = scratch("full");
    let mount = dir.join("small");
    std::fs::create_dir(&mount).unwrap();
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=160k,mode=0755",
            "tmpfs",
            mount.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "mount a small tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let metrics = free_port();
    let w = Watcher::start(&[
        "--journal",
        mount.join("journal.db").to_str().unwrap(),
        "--metrics",
        &format!("127.0.0.1:{metrics}"),
    ]);
    let mut h = listeners();
    // Enough to fill the disk; no more (the tests beside this one watch
    // every listener of the host, through ring buffers of their own).
    ask(&mut h, "burst 1000", "burst 1000");
    // The watch goes on: a listener after the disk filled is reported.
    let port = free_port();
    ask(&mut h, &format!("open {port}"), &format!("open {port}"));
    w.expect("the listener after", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    // The metrics say it (read about once a second: waited for).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = crate::metrics::get(metrics, "/metrics");
        if body.lines().any(|l| l == "portwatch_journal_failed 1") {
            let lost = body
                .lines()
                .find_map(|l| l.strip_prefix("portwatch_journal_lost_total "))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            assert!(lost > 0, "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no journal failure in {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, err, _) = w.stop();
    assert!(status.success(), "{err}");
    assert_eq!(err.matches("stopped").count(), 1, "one warning: {err}");
    assert!(err.contains("full"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_journal_is_read_by_its_group_and_nobody_else() {
    let dir = scratch("group");
    let journal = dir.join("journal.db");
    let w = Watcher::start(&[
        "--journal",
        journal.to_str().unwrap(),
        "--journal-group",
        "daemon",
    ]);
    w.fence();
    w.stop();
    let run = |member: bool| {
        crate::support::nobody(member)
            .args([BIN, "history", "--journal", journal.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let member = run(true);
    assert!(member.status.success(), "{member:?}");
    assert!(String::from_utf8_lossy(&member.stdout).contains("opened tcp 127.0.0.1:"));
    let other = run(false);
    assert_eq!(other.status.code(), Some(1));
    let err = String::from_utf8_lossy(&other.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A journal another user wrote is not believed.
    let forged = dir.join("forged.db");
    std::fs::copy(&journal, &forged).unwrap();
    std::os::unix::fs::chown(&forged, Some(65534), None).unwrap();
    let out = history(&forged, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to uid 65534"));
    // Nor is one written in a directory another user controls, or
    // through a link planted at its name.
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::os::unix::fs::chown(&open, Some(65534), None).unwrap();
    let out = Command::new(BIN)
        .args(["watch", "--journal", open.join("j.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to user nobody"));
    let _ = as_nobody("true");
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("link.db")).unwrap();
    let out = Command::new(BIN)
        .args(["watch", "--journal", dir.join("link.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    std::fs::remove_dir_all(dir).unwrap();
}
