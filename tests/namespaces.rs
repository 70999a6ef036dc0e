//! Network namespaces, IPv4-mapped addresses and address scope.

use std::{net::TcpListener, time::Duration};

use crate::support::{EVENT_TIMEOUT, Helper, NetNs, Watcher, is_event};
use serde_json::Value;

const LISTEN_TWICE: &str = r#"
import socket, sys
a = socket.socket(); a.bind(("0.0.0.0", 7001)); a.listen()
print("ready")
sys.stdin.readline()
b = socket.socket(); b.bind(("127.0.0.1", 7002)); b.listen()
print("second")
sys.stdin.readline()
"#;

#[test]
fn listeners_in_other_namespaces_carry_their_namespace() {
    let ns = NetNs::new("ns");
    let inode = ns.inode();
    let mut helper = Helper::command_in_netns(&ns.name, LISTEN_TWICE);
    assert_eq!(helper.read_line(), "ready");

    let all = Watcher::start(&[]);
    let only_ns = Watcher::start(&["--netns", &inode.to_string()]);
    // The baseline covers the other namespace.
    let base = all
        .baseline
        .iter()
        .find(|v| v["netns"] == inode && v["port"] == 7001)
        .unwrap_or_else(|| panic!("no baseline entry in netns {inode}: {:?}", all.baseline));
    assert_eq!(base["address"], "0.0.0.0");
    assert_eq!(base["pid"], helper.pid(), "{base}");
    assert!(
        only_ns.baseline.iter().all(|v| v["netns"] == inode),
        "{:?}",
        only_ns.baseline
    );
    assert_eq!(only_ns.baseline.len(), 1);

    // A host listener first, then one in the namespace as a barrier.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    all.expect("host listener", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", host_port)
    });
    helper.send("next");
    assert_eq!(helper.read_line(), "second");
    for w in [&all, &only_ns] {
        let mut seen: Vec<Value> = Vec::new();
        let v = w.expect("namespace listener", EVENT_TIMEOUT, |v| {
            seen.push(v.clone());
            is_event(v, "opened", "127.0.0.1", 7002)
        });
        assert_eq!(v["netns"], inode, "{v}");
        if std::ptr::eq(w, &only_ns) {
            assert!(
                !seen.iter().any(|s| s["port"] == host_port),
                "--netns let a host listener through"
            );
        }
    }
    drop(host);
}

#[test]
fn ipv4_mapped_addresses_are_reported_and_scope_local_keeps_four_addresses() {
    let all = Watcher::start(&[]);
    let local = Watcher::start(&["--scope", "local"]);
    let mapped = TcpListener::bind("[::ffff:127.0.0.1]:0").unwrap();
    let mapped_port = mapped.local_addr().unwrap().port();
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_port = plain.local_addr().unwrap().port();

    all.expect("mapped listener", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "::ffff:127.0.0.1", mapped_port)
    });
    let mut seen: Vec<Value> = Vec::new();
    local.expect("the 127.0.0.1 listener", EVENT_TIMEOUT, |v| {
        seen.push(v.clone());
        is_event(v, "opened", "127.0.0.1", plain_port)
    });
    drop(mapped);
    seen.extend(local.fence());
    assert!(
        !seen.iter().any(|v| v["port"] == mapped_port),
        "--scope local reported {mapped_port}"
    );
    assert!(local.baseline.iter().all(|v| {
        ["127.0.0.1", "0.0.0.0", "::1", "::"].contains(&v["address"].as_str().unwrap())
    }));
}

/// Moves itself into the cgroup given as argv[1], then listens.
const IN_CGROUP: &str = r#"
import os, socket, sys
open(os.path.join(sys.argv[1], "cgroup.procs"), "w").write(str(os.getpid()))
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1])
sys.stdin.readline()
"#;

#[test]
fn events_carry_the_owners_cgroup_path() {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = mounts
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|fs| fs.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4))
        .expect("a cgroup2 mount")
        .to_string();
    let name = format!("pwtest-{}", std::process::id());
    let dir = format!("{root}/{name}");
    std::fs::create_dir(&dir).unwrap();
    let watcher = Watcher::start(&[]);
    let mut helper =
        Helper::command(std::process::Command::new("python3").args(["-u", "-c", IN_CGROUP, &dir]));
    let port: u16 = helper.read_value("port").parse().unwrap();
    let v = watcher.expect("opened in the cgroup", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    assert_eq!(v["cgroup"], format!("/{name}"), "{v}");
    drop(helper);
    // The helper is gone: the cgroup can be removed (retry while it exits).
    for _ in 0..100 {
        if std::fs::remove_dir(&dir).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

const LISTEN_V4_V6: &str = r#"
import socket
held = []
for fam, addr in [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")]:
    s = socket.socket(fam); s.bind((addr, 0)); s.listen(); held.append(s)
print("ready")
import sys; sys.stdin.readline()
"#;

/// The snapshot reads a namespace's listening sockets through sock_diag
/// (entering the namespace) and falls back to /proc/PID/net/tcp{,6}: both
/// must see the same rows.
#[test]
fn sock_diag_rows_match_the_proc_tables_of_another_namespace() {
    use std::collections::BTreeSet;

    let ns = NetNs::new("diag");
    let inode = ns.inode();
    let mut helper = Helper::command_in_netns(&ns.name, LISTEN_V4_V6);
    assert_eq!(helper.read_line(), "ready");

    let diag: BTreeSet<(String, u64)> = portwatch::list_listeners(Some(portwatch::Proto::Tcp))
        .expect("a snapshot")
        .into_iter()
        .filter(|l| l.netns == inode)
        .inspect(|l| assert_eq!(l.pid, helper.pid()))
        .map(|l| (l.socket().to_string(), l.inode.unwrap()))
        .collect();
    let proc = procfs::process::Process::new(helper.pid() as i32).unwrap();
    let mut rows = proc.tcp().unwrap();
    rows.extend(proc.tcp6().unwrap());
    let text: BTreeSet<(String, u64)> = rows
        .into_iter()
        .filter(|r| r.state == procfs::net::TcpState::Listen)
        .map(|r| (r.local_address.to_string(), r.inode))
        .collect();
    assert_eq!(diag.len(), 3, "{diag:?}");
    assert_eq!(diag, text);
}
