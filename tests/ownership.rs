//! Who owns a listener, listeners without bind(), failed listens,
//! start-up races and short-lived listeners. Real processes, real kernel.

use std::{collections::HashMap, time::Duration};

use crate::support::{EVENT_TIMEOUT, Helper, NetNs, Watcher, is_event};
use serde_json::Value;

/// A listener inherited by a forked child; the parent closes its copy, and
/// the child's exit drops the last reference.
const INHERITED: &str = r#"
import os, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1])
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w); os.read(r, 1); os._exit(0)
print("child", pid)
s.close()
sys.stdin.readline()
os.close(w)
os.waitpid(pid, 0)
print("done")
sys.stdin.readline()
"#;

#[test]
fn close_by_a_child_is_attributed_to_the_owner() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::spawn(INHERITED);
    let port: u16 = helper.read_value("port").parse().unwrap();
    let child: u32 = helper.read_value("child").parse().unwrap();
    let opened = watcher.expect("opened", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    assert_eq!(opened["pid"], helper.pid());
    helper.send("go");
    assert_eq!(helper.read_line(), "done");
    let closed = watcher.expect("closed", EVENT_TIMEOUT, |v| {
        is_event(v, "closed", "127.0.0.1", port)
    });
    assert_eq!(
        closed["pid"],
        helper.pid(),
        "closed by child {child}, owned by the parent: {closed}"
    );
    assert_eq!(closed["comm"], opened["comm"]);
}

const UNBOUND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6); s.listen()
print("port", s.getsockname()[1])
sys.stdin.readline()
s.close()
print("closed")
sys.stdin.readline()
"#;

#[test]
fn listen_without_bind_reports_the_real_port() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::spawn(UNBOUND);
    let port: u16 = helper.read_value("port").parse().unwrap();
    assert_ne!(port, 0);
    let opened = watcher.expect("opened", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "::", port)
    });
    assert_eq!(opened["pid"], helper.pid());
    helper.send("close");
    helper.read_line();
    watcher.expect("closed", EVENT_TIMEOUT, |v| {
        is_event(v, "closed", "::", port)
    });
}

/// Eight threads call listen() without bind() at the same moment.
const UNBOUND_AT_ONCE: &str = r#"
import json, socket, sys, threading
socks = [socket.socket() for _ in range(8)]
start = threading.Barrier(8)
def listen(s):
    start.wait(); s.listen()
threads = [threading.Thread(target=listen, args=(s,)) for s in socks]
for t in threads: t.start()
for t in threads: t.join()
print("ports", json.dumps([s.getsockname()[1] for s in socks]))
sys.stdin.readline()
"#;

#[test]
fn listens_without_bind_at_the_same_moment_each_get_their_port() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::spawn(UNBOUND_AT_ONCE);
    let ports: Vec<u16> = serde_json::from_str(&helper.read_value("ports")).unwrap();
    let mut opened = std::collections::BTreeSet::new();
    watcher.expect("eight opens", EVENT_TIMEOUT, |v| {
        if v["event"] == "opened" && v["pid"] == helper.pid() {
            opened.insert(v["port"].as_u64().unwrap() as u16);
        }
        opened.len() == 8
    });
    assert_eq!(opened, ports.iter().copied().collect());
}

/// In a namespace whose only ephemeral port is taken, listen() without
/// bind() fails after the socket briefly entered LISTEN.
const FAILED_LISTEN: &str = r#"
import errno, socket, sys
open("/proc/sys/net/ipv4/ip_local_port_range", "w").write("40000 40000")
taken = socket.socket(); taken.bind(("0.0.0.0", 40000)); taken.listen()
s = socket.socket()
try:
    s.listen()
    print("listened", s.getsockname()[1])
except OSError as e:
    print("failed", errno.errorcode[e.errno])
barrier = socket.socket(); barrier.bind(("127.0.0.1", 40001)); barrier.listen()
print("barrier 40001")
sys.stdin.readline()
"#;

#[test]
fn failed_listen_is_not_reported() {
    let ns = NetNs::new("fail");
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::command_in_netns(&ns.name, FAILED_LISTEN);
    assert_eq!(helper.read_value("failed"), "EADDRINUSE");
    helper.read_line();
    let mut seen = Vec::new();
    watcher.expect("the barrier listener", EVENT_TIMEOUT, |v| {
        seen.push(v.clone());
        is_event(v, "opened", "127.0.0.1", 40001) && v["netns"] == ns.inode()
    });
    // Port lines: an exposure_changed line may come between (the new
    // namespace's rules are read after its first listener opens).
    let ours: Vec<&Value> = seen
        .iter()
        .filter(|v| v["netns"] == ns.inode() && (v["event"] == "opened" || v["event"] == "closed"))
        .collect();
    assert!(
        ours.iter().all(|v| v["port"] != 0),
        "a failed listen was reported: {ours:?}"
    );
    assert!(
        ours.iter().any(|v| is_event(v, "opened", "0.0.0.0", 40000)),
        "{ours:?}"
    );
    assert_eq!(ours.len(), 2, "{ours:?}");
}

/// Holds 5 stable listeners and opens and closes others continuously,
/// keeping about 20 open, until told to stop; then closes everything and
/// prints every port it used.
const CHURN: &str = r#"
import json, select, socket, sys
stable = []
for _ in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); stable.append(s)
print("stable", json.dumps([s.getsockname()[1] for s in stable]))
open_ = []
used = [s.getsockname()[1] for s in stable]
while not select.select([sys.stdin], [], [], 0)[0]:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    open_.append(s); used.append(s.getsockname()[1])
    if len(open_) > 20:
        open_.pop(0).close()
    if len(used) == 30:
        print("churning", flush=True)
sys.stdin.readline()
for s in open_ + stable:
    s.close()
print("used", json.dumps(used))
sys.stdin.readline()
"#;

#[test]
fn listeners_churning_during_start_up_are_neither_missed_nor_repeated() {
    let mut helper = Helper::spawn(CHURN);
    let pid = helper.pid();
    let stable: Vec<u16> = serde_json::from_str(&helper.read_value("stable")).unwrap();
    assert_eq!(helper.read_line(), "churning");
    // Start while the helper churns. The churn runs flat out (tens of
    // thousands of listeners a second on a fast loopback): with the
    // default 1 MiB ring the reader, writing a JSON line into a pipe for
    // each event, can fall behind, and the kernel drops records (counted,
    // repaired by a resync, but a listener that lived a millisecond is
    // gone). That is the storm test's subject; this one is about start-up,
    // so the ring is large enough to hold the whole run.
    let watcher = Watcher::start(&["--ring-buffer", "67108864"]);
    let mut events: Vec<Value> = watcher
        .baseline
        .iter()
        .filter(|v| v["pid"] == pid)
        .cloned()
        .collect();
    // Listeners that live across the start-up are in the baseline, once.
    for port in &stable {
        let n = events.iter().filter(|v| v["port"] == *port).count();
        assert_eq!(n, 1, "stable listener {port} in the baseline: {events:?}");
    }
    // Let the churn go on for a while after start-up: 200 live opens.
    let mut live = 0;
    watcher.expect("200 live opens", Duration::from_secs(10), |v| {
        if v["pid"] == pid {
            events.push(v.clone());
            live += usize::from(v["event"] == "opened");
        }
        live >= 200
    });
    helper.send("stop");
    let used: Vec<u16> = serde_json::from_str(&helper.read_value("used")).unwrap();
    let last = stable[4];
    // Every listener the helper still had open gets closed, the last one
    // last; a fence then shows whatever else portwatch had to say.
    watcher.expect("the last close", EVENT_TIMEOUT, |v| {
        if v["pid"] == pid {
            events.push(v.clone());
        }
        v["pid"] == pid && v["event"] == "closed" && v["port"] == last
    });
    events.extend(watcher.fence().into_iter().filter(|v| v["pid"] == pid));

    let mut per_port: HashMap<u16, Vec<String>> = HashMap::new();
    for v in &events {
        per_port
            .entry(v["port"].as_u64().unwrap() as u16)
            .or_default()
            .push(v["event"].as_str().unwrap().into());
    }
    let mut times_used: HashMap<u16, usize> = HashMap::new();
    for p in &used {
        *times_used.entry(*p).or_default() += 1;
    }
    for (port, seq) in &per_port {
        // Opened, closed, opened, closed...: nothing twice, nothing lost.
        let alternating = seq
            .iter()
            .enumerate()
            .all(|(i, e)| e == if i % 2 == 0 { "opened" } else { "closed" });
        let detail: Vec<&Value> = events.iter().filter(|v| v["port"] == *port).collect();
        assert!(
            alternating && seq.len() % 2 == 0,
            "port {port}: {seq:?}: {detail:?}"
        );
        assert!(
            seq.len() / 2 <= times_used[port],
            "port {port} reported more often than used: {detail:?}"
        );
    }
    // Everything opened after start-up is complete: the last 150 ports.
    for port in used.iter().rev().take(150) {
        assert!(
            per_port.contains_key(port),
            "port {port} was never reported"
        );
    }
}

const SHORT_LIVED: &str = r#"
import json, socket, sys
ports = []
for _ in range(2000):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    ports.append(s.getsockname()[1]); s.close()
print("ports", json.dumps(ports))
sys.stdin.readline()
"#;

#[test]
fn two_thousand_short_lived_listeners_are_all_reported() {
    // A ring buffer that also holds the bursts of the tests beside this
    // one: this one is about owners, not about capacity.
    let watcher = Watcher::start(&["--ring-buffer", "16M"]);
    let mut helper = Helper::spawn(SHORT_LIVED);
    let pid = helper.pid();
    let ports: Vec<u16> = serde_json::from_str(&helper.read_value("ports")).unwrap();
    assert_eq!(ports.len(), 2000);
    let (mut opened, mut closed) = (HashMap::<u16, usize>::new(), HashMap::<u16, usize>::new());
    let mut total = 0;
    watcher.expect("4,000 events", Duration::from_secs(20), |v| {
        if v["pid"] == pid && v["source"] == "ebpf" {
            let port = v["port"].as_u64().unwrap() as u16;
            let map = if v["event"] == "opened" {
                &mut opened
            } else {
                &mut closed
            };
            *map.entry(port).or_default() += 1;
            total += 1;
        }
        total == 4000
    });
    let mut expected = HashMap::<u16, usize>::new();
    for p in &ports {
        *expected.entry(*p).or_default() += 1;
    }
    assert_eq!(opened, expected);
    assert_eq!(closed, expected);
}
