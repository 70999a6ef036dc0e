//! Faults: a killed watcher leaves no program behind; a watched process
//! killed while listening, and a whole tree exiting, still get their
//! closes reported.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use crate::support::{EVENT_TIMEOUT, Helper, Signal, Watcher, fdinfo_texts, is_event};

/// The ids of the BPF programs a process holds, from its fdinfo.
fn prog_ids_of(pid: u32) -> HashSet<u32> {
    let mut ids = HashSet::new();
    for text in fdinfo_texts(pid) {
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("prog_id:") {
                ids.insert(id.trim().parse().unwrap());
            }
        }
    }
    ids
}

fn loaded_program_ids() -> HashSet<u32> {
    aya::programs::loaded_programs()
        .flatten()
        .map(|p| p.id())
        .collect()
}

fn assert_programs_gone(ids: &HashSet<u32>) {
    // The kernel frees programs asynchronously once the last reference is
    // gone: wait for that, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = loaded_program_ids().intersection(ids).copied().collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs {left:?} outlived their watcher"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_program_survives_sigterm_or_sigkill() {
    for signal in [Signal::Term, Signal::Kill] {
        let watcher = Watcher::start(&["--pid", &std::process::id().to_string()]);
        let ids = prog_ids_of(watcher.pid());
        // inet_sock_set_state (+ the connection program, loaded but not
        // attached), the listen confirmation, the fork/exit pair and the
        // three UDP programs (held through their cgroup links).
        let names: HashSet<String> = aya::programs::loaded_programs()
            .flatten()
            .filter(|p| ids.contains(&p.id()))
            .filter_map(|p| p.name_as_str().map(String::from))
            .collect();
        for prog in [
            "udp_post_bind4",
            "udp_post_bind6",
            "udp_sock_releas",
            "listen_exit",
        ] {
            assert!(names.contains(prog), "{prog} not attached: {names:?}");
        }
        assert!(ids.is_subset(&loaded_program_ids()));
        crate::support::signal(watcher.pid(), signal);
        drop(watcher);
        assert_programs_gone(&ids);
    }
}

const LISTEN_AND_WAIT: &str = r#"
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1])
sys.stdin.read()
"#;

#[test]
fn a_watched_process_killed_while_listening_reports_its_close() {
    let helper = Helper::spawn(LISTEN_AND_WAIT);
    let pid = helper.pid();
    let watcher = Watcher::start(&["--pid", &pid.to_string()]);
    let mut helper = helper;
    let port: u16 = helper.read_value("port").parse().unwrap();
    // The helper may have listened before the watcher's scan, or after.
    let opened = |v: &serde_json::Value| is_event(v, "opened", "127.0.0.1", port);
    if !watcher.baseline.iter().any(opened) {
        watcher.expect("opened", EVENT_TIMEOUT, opened);
    }
    crate::support::signal(pid, Signal::Kill);
    let closed = watcher.expect("closed", EVENT_TIMEOUT, |v| {
        is_event(v, "closed", "127.0.0.1", port)
    });
    assert_eq!(closed["pid"], pid);
}

/// A tree of 3 processes (a root and two children), each with 2
/// listeners; all killed at once.
const TREE: &str = r#"
import os, socket, sys
os.setpgid(0, 0)
for _ in range(2):
    if os.fork() == 0:
        break
ls = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); ls.append(s)
sys.stdout.write("ports %d %d %d\n" % (os.getpid(), ls[0].getsockname()[1], ls[1].getsockname()[1]))
sys.stdin.read()
"#;

#[test]
fn a_tree_exiting_while_its_listeners_close_reports_every_close() {
    let mut tree = Helper::spawn(TREE);
    let root = tree.pid();
    let watcher = Watcher::start(&["--pid", &root.to_string()]);
    let mut ports = HashSet::new();
    for _ in 0..3 {
        let line = tree.read_line();
        let f: Vec<u16> = line
            .split_whitespace()
            .skip(2)
            .map(|p| p.parse().unwrap())
            .collect();
        ports.extend(f);
    }
    assert_eq!(ports.len(), 6);
    // Wait until every listener is known (baseline or event).
    let mut known: HashSet<u16> = watcher
        .baseline
        .iter()
        .map(|v| v["port"].as_u64().unwrap() as u16)
        .collect();
    if !ports.is_subset(&known) {
        watcher.expect("all opens", EVENT_TIMEOUT, |v| {
            if v["event"] == "opened" {
                known.insert(v["port"].as_u64().unwrap() as u16);
            }
            ports.is_subset(&known)
        });
    }
    // Kill the whole process group at once.
    let group = rustix::process::Pid::from_raw(root as i32).unwrap();
    rustix::process::kill_process_group(group, Signal::Kill).unwrap();
    let mut closed = HashSet::new();
    watcher.expect("six closes", EVENT_TIMEOUT * 2, |v| {
        if v["event"] == "closed" && ports.contains(&(v["port"].as_u64().unwrap() as u16)) {
            closed.insert(v["port"].as_u64().unwrap() as u16);
        }
        closed == ports
    });
}
