//! `watch --pid`: a process, its threads, children and daemonized
//! descendants, and nothing else.

use std::{collections::HashMap, net::TcpListener, process::Command};

use crate::support::{EVENT_TIMEOUT, Helper, Signal, Watcher, is_event};
use serde_json::Value;

#[test]
fn the_whole_tree_and_only_the_tree_is_reported() {
    let mut tree = Helper::script("tree.py", &[]);
    let root = tree.pid();
    let watcher = Watcher::start(&["--pid", &root.to_string()]);
    // Outside the tree: the test process itself.
    let outsider = TcpListener::bind("127.0.0.1:0").unwrap();
    let outsider_port = outsider.local_addr().unwrap().port();

    tree.send("go");
    let mut who: HashMap<String, (u16, u32)> = HashMap::new();
    for _ in 0..4 {
        let line = tree.read_line();
        let f: Vec<&str> = line.split_whitespace().collect();
        who.insert(
            f[0].to_string(),
            (f[1].parse().unwrap(), f[2].parse().unwrap()),
        );
    }
    let _daemon = KillOnDrop(who["daemon"].1);
    let mut seen: Vec<Value> = Vec::new();
    let mut opened: HashMap<u16, Value> = HashMap::new();
    watcher.expect("four opens", EVENT_TIMEOUT * 2, |v| {
        seen.push(v.clone());
        if v["event"] == "opened" && who.values().any(|(p, _)| v["port"] == *p) {
            opened.insert(v["port"].as_u64().unwrap() as u16, v.clone());
        }
        opened.len() == 4
    });
    for (tag, (port, pid)) in &who {
        let v = &opened[port];
        assert_eq!(v["pid"], *pid, "{tag}: {v}");
        assert_eq!(v["source"], "ebpf", "{tag}: {v}");
    }
    assert_eq!(who["self"].1, root);
    assert_eq!(
        who["thread"].1, root,
        "a thread's listener belongs to its process"
    );
    assert_ne!(who["child"].1, root);
    assert_ne!(who["daemon"].1, root);

    // The root exits; its child follows. The daemon, re-parented away long
    // ago, is still watched and listens once more.
    tree.send("exit");
    // Reap it, or the daemon would see a zombie and wait on.
    tree.child.wait().unwrap();
    let late = tree.read_line();
    let f: Vec<&str> = late.split_whitespace().collect();
    assert_eq!(f[0], "daemon-late", "{late}");
    let (late_port, late_pid): (u16, u32) = (f[1].parse().unwrap(), f[2].parse().unwrap());
    assert_eq!(late_pid, who["daemon"].1);
    let mut pending: Vec<(&str, u16)> = vec![
        ("closed", who["self"].0),
        ("closed", who["thread"].0),
        ("closed", who["child"].0),
        ("opened", late_port),
    ];
    watcher.expect("the closes and the late open", EVENT_TIMEOUT, |v| {
        pending.retain(|(e, p)| !is_event(v, e, "127.0.0.1", *p));
        seen.push(v.clone());
        pending.is_empty()
    });
    // The child held copies of the root's listeners and closed them by
    // exiting; they are still the root's.
    for tag in ["self", "thread"] {
        let close = seen
            .iter()
            .find(|v| is_event(v, "closed", "127.0.0.1", who[tag].0))
            .unwrap();
        assert_eq!(close["pid"], root, "{tag}: {close}");
    }

    // The outsider closes; then the daemon ends: its closes are the fence
    // behind which any report of the outsider would have arrived.
    drop(outsider);
    crate::support::signal(late_pid, Signal::Kill);
    let mut daemon_closes = Vec::new();
    watcher.expect("both daemon closes", EVENT_TIMEOUT, |v| {
        seen.push(v.clone());
        if v["event"] == "closed" && (v["port"] == who["daemon"].0 || v["port"] == late_port) {
            daemon_closes.push(v.clone());
        }
        daemon_closes.len() == 2
    });
    assert!(
        daemon_closes.iter().all(|v| v["pid"] == late_pid),
        "{daemon_closes:?}"
    );
    assert!(
        !seen.iter().any(|v| v["port"] == outsider_port),
        "a listener outside the tree was reported"
    );
}

/// Kills a process that outlives its test (the daemon re-parents to init).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already gone when the test got that far: harmless.
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process(pid, Signal::Kill);
        }
    }
}

#[test]
fn listeners_of_the_tree_open_before_start_are_in_the_baseline() {
    let mut helper = Helper::spawn(
        "import socket, sys\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\nprint('port', s.getsockname()[1])\nsys.stdin.readline()\n",
    );
    let port: u16 = helper.read_value("port").parse().unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let watcher = Watcher::start(&["--pid", &helper.pid().to_string()]);
    let ports: Vec<u64> = watcher
        .baseline
        .iter()
        .map(|v| v["port"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ports,
        [u64::from(port)],
        "only the tree's listener: {:?}",
        watcher.baseline
    );
    assert_eq!(watcher.baseline[0]["pid"], helper.pid());
    drop(other);
}

#[test]
fn an_unknown_pid_is_a_usage_error() {
    // Above the largest possible pid (2^22).
    let out = Command::new(crate::support::BIN)
        .args(["watch", "--pid", "4194305"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim(), "portwatch: no process with pid 4194305 exists");
}
