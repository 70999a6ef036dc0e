//! UDP: real sockets bound by real processes (every family, wildcard and
//! specific addresses, port 0, SO_REUSEPORT, a child cgroup, another
//! network namespace, a descriptor passed on before close) are reported
//! opened and closed with their binder; client sockets the kernel binds
//! at sendto() are not, live or in resyncs; bind() never fails while
//! portwatch runs.

use std::{collections::HashSet, fs, path::PathBuf, process::Command, time::Duration};

use serde_json::Value;

use crate::support::{
    EVENT_TIMEOUT, Helper, NetNs, Watcher, as_nobody, cgroup2_root, fdinfo_texts, helper_path,
    is_event, own_netns, rule_with_cooldown,
};

/// tests/helpers/udp.py: holds sockets on command.
struct Sockets(Helper);

impl Sockets {
    fn new() -> Sockets {
        Sockets(Helper::script("udp.py", &[]))
    }

    fn in_netns(ns: &NetNs) -> Sockets {
        Sockets(Helper::command(Command::new("ip").args([
            "netns",
            "exec",
            &ns.name,
            "python3",
            "-u",
            &helper_path("udp.py"),
        ])))
    }

    fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Sends a command and returns the words of its answer after the first.
    fn ask(&mut self, command: &str) -> Vec<String> {
        self.0.send(command);
        let line = self.0.read_line();
        line.split_whitespace().skip(1).map(String::from).collect()
    }

    /// `bind`, `tcp` or `client`: (id, port).
    fn open(&mut self, command: &str) -> (u32, u16) {
        let a = self.ask(command);
        (a[0].parse().unwrap(), a[1].parse().unwrap())
    }

    fn bind(&mut self, family: &str, addr: &str, port: u16) -> (u32, u16) {
        self.open(&format!("bind {family} {addr} {port}"))
    }

    fn close(&mut self, id: u32) {
        self.ask(&format!("close {id}"));
    }

    /// A UDP port below the ephemeral range, free a moment ago.
    fn free_port(&mut self) -> u16 {
        let (low, _) = ephemeral_range();
        self.ask(&format!("free-below {low}"))[0].parse().unwrap()
    }

    /// This helper opens and closes a TCP listener; every line up to its
    /// close is returned (the ring buffer is one ordered queue, so what
    /// the helper did before is out by then).
    fn fence(&mut self, watcher: &Watcher) -> Vec<Value> {
        let port: u16 = self.ask("fence")[0].parse().unwrap();
        watcher.until_closed("127.0.0.1", port)
    }
}

fn ephemeral_range() -> (u16, u16) {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let mut it = text.split_whitespace().map(|n| n.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn is_udp(v: &Value, event: &str, address: &str, port: u16) -> bool {
    is_event(v, event, address, port) && v["proto"] == "udp"
}

fn expect_udp(w: &Watcher, event: &str, address: &str, port: u16) -> Value {
    w.expect(
        &format!("udp {event} {address}:{port}"),
        EVENT_TIMEOUT,
        |v| is_udp(v, event, address, port),
    )
}

#[test]
fn udp_binds_of_every_family_are_reported_with_their_binder() {
    let mut h = Sockets::new();
    let pid = h.pid();
    let w = Watcher::start(&["--pid", &pid.to_string()]);
    let specific = h.free_port();
    let cases = [
        ("4", "0.0.0.0", 0),
        ("4", "127.0.0.1", 0),
        ("4", "127.0.0.1", specific),
        ("6", "::", 0),
        ("6", "::1", 0),
        ("6", "::ffff:127.0.0.1", 0),
    ];
    let mut bound = Vec::new();
    for (family, addr, port) in cases {
        let (id, port) = h.bind(family, addr, port);
        let opened = expect_udp(&w, "opened", addr, port);
        assert_eq!(opened["pid"], pid, "{opened}");
        assert_eq!(opened["comm"], "python3", "{opened}");
        assert_eq!(opened["source"], "ebpf", "{opened}");
        bound.push((id, addr, port));
    }
    assert_eq!(bound[2].2, specific);
    for (id, addr, port) in bound {
        h.close(id);
        let closed = expect_udp(&w, "closed", addr, port);
        assert_eq!(closed["pid"], pid, "{closed}");
    }
}

/// A bind within a millisecond of one that woke the reader sends its
/// record without a wake-up: the reader's next look finds it, though
/// nothing else happens after it.
#[test]
fn a_bind_right_after_another_is_reported_without_a_wake_up() {
    let mut h = Sockets::new();
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    let a = h.ask("pair 127.0.0.1");
    for port in [&a[1], &a[3]] {
        expect_udp(&w, "opened", "127.0.0.1", port.parse().unwrap());
    }
}

#[test]
fn tcp_and_udp_on_one_port_number_are_kept_apart() {
    let mut h = Sockets::new();
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    let (tcp, port) = h.open("tcp 127.0.0.1 0");
    let (udp, _) = h.bind("4", "127.0.0.1", port);
    w.expect("the TCP open", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port) && v["proto"] == "tcp"
    });
    expect_udp(&w, "opened", "127.0.0.1", port);
    h.close(udp);
    expect_udp(&w, "closed", "127.0.0.1", port);
    let after = h.fence(&w);
    assert!(
        !after
            .iter()
            .any(|v| is_event(v, "closed", "127.0.0.1", port)),
        "the TCP listener was closed with the UDP socket: {after:?}"
    );
    h.close(tcp);
    w.expect("the TCP close", EVENT_TIMEOUT, |v| {
        is_event(v, "closed", "127.0.0.1", port) && v["proto"] == "tcp"
    });
}

#[test]
fn each_socket_of_a_reuseport_group_is_its_own_port() {
    let mut h = Sockets::new();
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    let (first, port) = h.open("bind 4 127.0.0.1 0 reuseport");
    let (second, _) = h.open(&format!("bind 4 127.0.0.1 {port} reuseport"));
    let mut opens = 0;
    w.expect("two opens", EVENT_TIMEOUT, |v| {
        opens += usize::from(is_udp(v, "opened", "127.0.0.1", port));
        opens == 2
    });
    h.close(first);
    expect_udp(&w, "closed", "127.0.0.1", port);
    let after = h.fence(&w);
    assert!(
        !after.iter().any(|v| is_udp(v, "closed", "127.0.0.1", port)),
        "one release closed both: {after:?}"
    );
    h.close(second);
    expect_udp(&w, "closed", "127.0.0.1", port);
}

/// A cgroup made for one test, removed after it (once empty).
struct Cgroup(PathBuf);

impl Cgroup {
    /// Makes the cgroup at `path`.
    fn make(path: PathBuf) -> Cgroup {
        fs::create_dir(&path).unwrap();
        Cgroup(path)
    }

    /// Its id: its directory's inode.
    fn id(&self) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(&self.0).unwrap())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Closes the helper's socket `id` on 127.0.0.1:`port`: its close is
/// reported from the kernel's release program.
fn close_seen_by_the_kernel(h: &mut Sockets, w: &Watcher, id: u32, port: u16) -> Value {
    h.close(id);
    let closed = expect_udp(w, "closed", "127.0.0.1", port);
    assert_eq!(closed["source"], "ebpf", "{closed}");
    closed
}

#[test]
fn a_binder_in_a_child_cgroup_is_seen_with_its_cgroup() {
    let base = format!("pwtest-udp-{}", std::process::id());
    let first = Cgroup(cgroup2_root().join(&base));
    let second = Cgroup(first.0.join("next"));
    // Declared after the cgroups: dropped (killed) before they are removed.
    let mut h = Sockets::new();
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    // Made after the start, one right after the other: each is named.
    for (cgroup, name) in [
        (&first, format!("/{base}")),
        (&second, format!("/{base}/next")),
    ] {
        fs::create_dir(&cgroup.0).unwrap();
        h.ask(&format!("join {}", cgroup.0.display()));
        let (id, port) = h.bind("4", "127.0.0.1", 0);
        let opened = expect_udp(&w, "opened", "127.0.0.1", port);
        assert_eq!(opened["cgroup"], name, "{opened}");
        h.close(id);
        expect_udp(&w, "closed", "127.0.0.1", port);
    }
}

/// The cgroups portwatch's UDP release program is attached to: its
/// cgroup links (`/proc/PID/fdinfo`) of attach type 34,
/// `BPF_CGROUP_INET_SOCK_RELEASE`.
fn release_cgroups(pid: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for text in fdinfo_texts(pid) {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        if field("link_type:").as_deref() == Some("cgroup")
            && field("attach_type:").as_deref() == Some("34")
            && let Some(id) = field("cgroup_id:").and_then(|v| v.parse().ok())
        {
            out.push(id);
        }
    }
    out.sort_unstable();
    out
}

/// The release program runs where a reported UDP port was bound and
/// nowhere else: none at the start, then the binder's cgroup (not the
/// root), so that a socket released in any other cgroup (a TCP
/// connection's) runs no program. The port's close is the program's.
#[test]
fn the_release_program_is_attached_only_where_a_udp_port_was_bound() {
    let base = format!("pwtest-release-{}", std::process::id());
    let cgroup = Cgroup::make(cgroup2_root().join(&base));
    // Declared after the cgroup: dropped (killed) before it is removed.
    let mut h = Sockets::new();
    // Only the helper's binds are reported, so other tests' binds attach
    // nothing to this watcher's program.
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    assert_eq!(release_cgroups(w.pid()), Vec::<u64>::new());
    h.ask(&format!("join {}", cgroup.0.display()));
    let (id, port) = h.bind("4", "127.0.0.1", 0);
    expect_udp(&w, "opened", "127.0.0.1", port);
    let inode = cgroup.id();
    assert_eq!(release_cgroups(w.pid()), [inode]);
    let closed = close_seen_by_the_kernel(&mut h, &w, id, port);
    assert_eq!(closed["pid"], h.pid(), "{closed}");
}

/// A socket bound in a cgroup the release program does not cover yet and
/// closed at once is released before the program is attached there: the
/// look that follows the attach finds it gone, and reports it closed.
#[test]
fn a_udp_port_closed_before_its_cgroup_was_covered_is_reported_closed() {
    let base = format!("pwtest-release-race-{}", std::process::id());
    let cgroup = Cgroup::make(cgroup2_root().join(&base));
    let mut h = Sockets::new();
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    h.ask(&format!("join {}", cgroup.0.display()));
    assert_eq!(h.ask("churn 1"), ["1"]);
    let opened = w.expect("the socket's open", EVENT_TIMEOUT, |v| {
        v["event"] == "opened" && v["proto"] == "udp" && v["pid"] == h.pid()
    });
    let port = u16::try_from(opened["port"].as_u64().unwrap()).unwrap();
    let closed = expect_udp(&w, "closed", "127.0.0.1", port);
    assert_eq!(closed["pid"], h.pid(), "{closed}");
}

/// A UDP socket open before the watcher starts is covered in its own
/// cgroup, which sock_diag tells, not from the root: a host with UDP
/// sockets at start does not pay the release program on every socket.
#[test]
fn a_udp_port_open_at_start_has_the_release_program_in_its_cgroup() {
    let base = format!("pwtest-release-seed-{}", std::process::id());
    let cgroup = Cgroup::make(cgroup2_root().join(&base));
    let mut h = Sockets::new();
    h.ask(&format!("join {}", cgroup.0.display()));
    // Off the ephemeral range: the baseline reports it.
    let port = h.free_port();
    let (id, _) = h.bind("4", "127.0.0.1", port);
    // The socket stays in the cgroup it was made in.
    h.ask(&format!("join {}", cgroup2_root().display()));
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    let inode = cgroup.id();
    assert_eq!(release_cgroups(w.pid()), [inode]);
    close_seen_by_the_kernel(&mut h, &w, id, port);
}

/// Past 64 cgroups the release program goes to the root and leaves the
/// others: another user with delegated cgroups cannot make portwatch hold
/// links without bound, and every close is still seen.
#[test]
fn past_64_cgroups_the_release_program_runs_from_the_root() {
    let base =
        Cgroup::make(cgroup2_root().join(format!("pwtest-release-64-{}", std::process::id())));
    let cgroups: Vec<Cgroup> = (0..65)
        .map(|i| Cgroup::make(base.0.join(format!("c{i}"))))
        .collect();
    let mut h = Sockets::new();
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    let mut last = None;
    for (i, c) in cgroups.iter().enumerate() {
        h.ask(&format!("join {}", c.0.display()));
        let (id, port) = h.bind("4", "127.0.0.1", 0);
        expect_udp(&w, "opened", "127.0.0.1", port);
        if i == 63 {
            assert_eq!(release_cgroups(w.pid()).len(), 64);
        }
        last = Some((id, port));
    }
    // The cgroup2 root's id is 1.
    assert_eq!(release_cgroups(w.pid()), [1]);
    let (id, port) = last.unwrap();
    close_seen_by_the_kernel(&mut h, &w, id, port);
    h.ask(&format!("join {}", cgroup2_root().display()));
}

/// Cgroups freed since (transient units, sessions) give their places
/// back: the kernel detaches the program from a freed cgroup, and the
/// 65th cgroup is attached by itself rather than pushing the program to
/// the root.
#[test]
fn freed_cgroups_do_not_count_toward_the_64() {
    let base =
        Cgroup::make(cgroup2_root().join(format!("pwtest-release-freed-{}", std::process::id())));
    let mut h = Sockets::new();
    let w = Watcher::start(&["--pid", &h.pid().to_string()]);
    for i in 0..64 {
        let c = Cgroup::make(base.0.join(format!("c{i}")));
        h.ask(&format!("join {}", c.0.display()));
        let (id, port) = h.bind("4", "127.0.0.1", 0);
        expect_udp(&w, "opened", "127.0.0.1", port);
        h.close(id);
        expect_udp(&w, "closed", "127.0.0.1", port);
        h.ask(&format!("join {}", base.0.display()));
        // Removed here; freed once its last socket is.
    }
    // The kernel detaches a freed cgroup's links (their cgroup id reads
    // 0) from a workqueue, after its sockets' RCU grace periods: wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while release_cgroups(w.pid()).iter().any(|id| *id != 0) {
        assert!(std::time::Instant::now() < deadline, "cgroups not freed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let last = Cgroup::make(base.0.join("last"));
    h.ask(&format!("join {}", last.0.display()));
    let (id, port) = h.bind("4", "127.0.0.1", 0);
    expect_udp(&w, "opened", "127.0.0.1", port);
    let inode = last.id();
    // The freed cgroups' links are let go, not only no longer counted.
    assert_eq!(release_cgroups(w.pid()), [inode]);
    close_seen_by_the_kernel(&mut h, &w, id, port);
    h.ask(&format!("join {}", cgroup2_root().display()));
}

/// The bind programs report UDP-Lite ports as UDP: the tables portwatch
/// reads hold them too, so neither the look after its cgroup is covered
/// nor a resync takes one for closed while it is open.
#[test]
fn a_udp_lite_port_is_not_reported_closed_while_open() {
    let cgroup =
        Cgroup::make(cgroup2_root().join(format!("pwtest-udplite-{}", std::process::id())));
    let mut h = Sockets::new();
    let w = Watcher::start(&["--pid", &h.pid().to_string(), "--resync-interval", "100ms"]);
    h.ask(&format!("join {}", cgroup.0.display()));
    let (id, port) = h.open("bind 4 127.0.0.1 0 lite");
    expect_udp(&w, "opened", "127.0.0.1", port);
    // Twelve resyncs, 100 ms apart: past both looks (10 ms, 1 s).
    let mut resyncs = 0;
    w.expect("twelve resyncs", Duration::from_secs(20), |v| {
        assert!(!is_event(v, "closed", "127.0.0.1", port), "{v}");
        if v["event"] == "resync" {
            assert_eq!(v["closed"], 0, "{v}");
            resyncs += 1;
        }
        resyncs == 12
    });
    close_seen_by_the_kernel(&mut h, &w, id, port);
    h.ask(&format!("join {}", cgroup2_root().display()));
}

#[test]
fn a_binder_in_another_network_namespace_is_seen_in_it() {
    let ns = NetNs::new("udp");
    let inode = ns.inode().to_string();
    let w = Watcher::start(&["--netns", &inode]);
    let mut h = Sockets::in_netns(&ns);
    let (id, port) = h.bind("4", "127.0.0.1", 0);
    let opened = expect_udp(&w, "opened", "127.0.0.1", port);
    assert_eq!(opened["netns"].to_string(), inode);
    assert_eq!(opened["pid"], h.pid());
    h.close(id);
    let closed = expect_udp(&w, "closed", "127.0.0.1", port);
    assert_eq!(closed["netns"].to_string(), inode);
}

/// An unprivileged binder makes its sockets here, moves to a network
/// namespace of its own (with a user namespace, unshare(2) needs no
/// privilege), then binds and listens: the ports are this namespace's,
/// reachable as this namespace's are, and are reported in it, never in
/// the binder's new one, whose exposure would be judged instead.
#[test]
fn a_port_bound_after_its_binder_left_the_sockets_namespace_is_reported_in_the_sockets() {
    let here = own_netns();
    let w = Watcher::start(&[]);
    let mut h = unprivileged_sockets();
    let a = h.ask("bind-after-leaving 0.0.0.0");
    let (udp_id, udp_port): (u32, u16) = (a[0].parse().unwrap(), a[1].parse().unwrap());
    let (tcp_id, tcp_port): (u32, u16) = (a[2].parse().unwrap(), a[3].parse().unwrap());
    let udp = expect_udp(&w, "opened", "0.0.0.0", udp_port);
    assert_eq!(udp["netns"], here, "{udp}");
    let tcp = w.expect("the TCP open", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "0.0.0.0", tcp_port) && v["proto"] == "tcp"
    });
    assert_eq!(tcp["netns"], here, "{tcp}");
    h.close(udp_id);
    let closed = expect_udp(&w, "closed", "0.0.0.0", udp_port);
    assert_eq!(closed["netns"], here, "{closed}");
    h.close(tcp_id);
}

/// tests/helpers/udp.py run as user nobody.
fn unprivileged_sockets() -> Sockets {
    let mut cmd = as_nobody("/usr/bin/python3");
    cmd.args(["-u", &helper_path("udp.py")]);
    Sockets(Helper::command(&mut cmd))
}

/// The aggregate mode finds the ports that live on by a look at its
/// binders' sockets: that look finds a socket whose binder left its
/// namespace before binding it, in the socket's namespace (an ephemeral
/// port, which no resync would report), past 1,200 other descriptors.
#[test]
fn in_the_aggregate_mode_a_port_bound_after_its_binder_left_the_sockets_namespace_is_found() {
    let here = own_netns();
    let w = Watcher::start(&["--udp-aggregate", "100ms"]);
    let mut h = unprivileged_sockets();
    // Sockets of its own that the look gets past without asking each one
    // where it lives (it asks a few per look at most).
    assert_eq!(h.ask("unix-pairs 600"), ["600"]);
    let a = h.ask("bind-after-leaving 0.0.0.0");
    let (udp_id, udp_port): (u32, u16) = (a[0].parse().unwrap(), a[1].parse().unwrap());
    let opened = expect_udp(&w, "opened", "0.0.0.0", udp_port);
    assert_eq!(opened["netns"], here, "{opened}");
    assert_eq!(opened["source"], "aggregate", "{opened}");
    assert_eq!(opened["pid"], h.pid(), "{opened}");
    h.close(udp_id);
    let closed = expect_udp(&w, "closed", "0.0.0.0", udp_port);
    assert_eq!(closed["netns"], here, "{closed}");
}

#[test]
fn a_socket_passed_to_another_process_stays_its_binders() {
    let path = std::env::temp_dir().join(format!("pwtest-udp-fd-{}.sock", std::process::id()));
    let _ = fs::remove_file(&path);
    let w = Watcher::start(&[]);
    let mut binder = Sockets::new();
    let mut holder = Sockets::new();
    let binder_pid = binder.pid();
    assert_eq!(
        holder.ask(&format!("receive {}", path.display())),
        Vec::<String>::new()
    );
    let (id, port) = binder.bind("4", "127.0.0.1", 0);
    binder.ask(&format!("send {id} {}", path.display()));
    let received: u32 = holder.0.read_value("received").parse().unwrap();
    let opened = expect_udp(&w, "opened", "127.0.0.1", port);
    assert_eq!(opened["pid"], binder_pid);
    // The binder is gone when the holder closes the last descriptor.
    drop(binder);
    holder.close(received);
    let closed = expect_udp(&w, "closed", "127.0.0.1", port);
    assert_eq!(closed["pid"], binder_pid, "{closed}");
    let _ = fs::remove_file(&path);
}

#[test]
fn udp_ports_bound_before_the_start_are_the_baselines_and_their_release_is_reported() {
    let mut h = Sockets::new();
    let server_port = h.free_port();
    let (server, _) = h.bind("4", "0.0.0.0", server_port);
    // bind(0) and a client's sendto(): ports from the ephemeral range, which
    // a scan cannot tell from a DNS lookup's.
    let (explicit, explicit_port) = h.bind("4", "127.0.0.1", 0);
    let (client, client_port) = h.open(&format!("client 127.0.0.1 {server_port}"));
    let pid = h.pid();
    let w = Watcher::start(&["--pid", &pid.to_string()]);
    let udp_ports: HashSet<u64> = w
        .baseline
        .iter()
        .filter(|v| v["proto"] == "udp")
        .map(|v| v["port"].as_u64().unwrap())
        .collect();
    assert_eq!(udp_ports, HashSet::from([u64::from(server_port)]));
    for id in [server, explicit, client] {
        h.close(id);
    }
    let lines = h.fence(&w);
    let closed: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "closed" && v["proto"] == "udp")
        .collect();
    assert_eq!(closed.len(), 1, "{lines:?}");
    assert_eq!(closed[0]["port"], server_port);
    assert_eq!(closed[0]["pid"], pid);
    assert!(
        !lines
            .iter()
            .any(|v| v["port"] == explicit_port || v["port"] == client_port)
    );
}

/// A DNS server and its clients: each lookup a new socket that the
/// kernel binds at its first send (half with sendto(), half connected, as
/// resolvers do), 64 in flight at once, until stdin says stop. 32 lookups
/// that never get an answer stay open throughout, so every scan meets
/// client sockets.
const LOOKUPS: &str = r#"
import collections, os, select, socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))
port = server.getsockname()[1]

def lookup(n):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if n % 2:
        c.connect(("127.0.0.1", port))
        c.send(b"q")
    else:
        c.sendto(b"q", ("127.0.0.1", port))
    return c

unanswered = [lookup(n) for n in range(32)]
print("server", port)
in_flight = collections.deque()
n = 0
while True:
    for _ in range(500):
        in_flight.append(lookup(n))
        if len(in_flight) > 64:
            in_flight.popleft().close()
        n += 1
    try:
        while True:
            server.recv(64, socket.MSG_DONTWAIT)
    except BlockingIOError:
        pass
    if select.select([sys.stdin], [], [], 0)[0]:
        break
while in_flight:
    in_flight.popleft().close()
for c in unanswered:
    c.close()
f = socket.socket(); f.bind(("127.0.0.1", 0)); f.listen()
fence = f.getsockname()[1]
f.close()
print("lookups", n, fence)
sys.stdin.read()
"#;

#[test]
fn dns_lookups_make_no_events_and_no_resync_corrections() {
    let mut h = Helper::spawn(LOOKUPS);
    let w = Watcher::start(&["--pid", &h.pid().to_string(), "--resync-interval", "100ms"]);
    let server: u16 = h.read_value("server").parse().unwrap();
    let mut seen = Vec::new();
    // Resyncs while thousands of lookups run: each must find nothing the
    // events missed.
    let mut resyncs = 0;
    w.expect(
        "five resyncs during the lookups",
        Duration::from_secs(20),
        |v| {
            seen.push(v.clone());
            if v["event"] == "resync" {
                assert_eq!((&v["opened"], &v["closed"]), (&0.into(), &0.into()), "{v}");
                resyncs += 1;
            }
            resyncs == 5
        },
    );
    h.send("stop");
    let done = h.read_value("lookups");
    let (lookups, fence) = done.split_once(' ').unwrap();
    assert!(lookups.parse::<u32>().unwrap() >= 2000, "{lookups} lookups");
    seen.extend(w.until_closed("127.0.0.1", fence.parse().unwrap()));
    for v in &seen {
        if v["event"] == "resync" {
            assert_eq!((&v["opened"], &v["closed"]), (&0.into(), &0.into()), "{v}");
        }
    }
    let udp: Vec<&Value> = seen.iter().filter(|v| v["proto"] == "udp").collect();
    assert!(
        udp.iter().all(|v| v["port"] == server),
        "a client port was reported: {udp:?}"
    );
}

/// Two processes binding and closing as fast as they can: UDP and TCP
/// (`mixed`) or UDP alone (`udp`), under their own name when one is given;
/// any failed bind() is printed and ends the worker with status 1.
/// Arguments: COUNT KIND [NAME].
const STORM: &str = r#"
import ctypes, os, socket, sys
count = int(sys.argv[1])
udp_only = sys.argv[2] == "udp"
if len(sys.argv) > 3:
    ctypes.CDLL(None).prctl(15, os.fsencode(sys.argv[3]), 0, 0, 0)
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        for i in range(count):
            udp = udp_only or i % 4
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", 0))
            except OSError as e:
                print("failed", e, flush=True)
                os._exit(1)
            s.close()
        os._exit(0)
    pids.append(pid)
failed = sum(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) != 0 for p in pids)
print("storm", 2 * count, "failed", failed)
"#;

#[test]
fn bind_never_fails_under_a_storm_with_a_4_kib_ring() {
    let w = Watcher::start(&["--ring-buffer", "4K"]);
    let mut storm = Helper::script_inline(STORM, &["20000", "mixed"]);
    let result = storm.read_line();
    assert_eq!(result, "storm 40000 failed 0");
    assert!(storm.child.wait().unwrap().success());
    // The watcher lived through it and still reports.
    let mut h = Sockets::new();
    let (id, port) = h.bind("4", "127.0.0.1", 0);
    expect_udp(&w, "opened", "127.0.0.1", port);
    h.close(id);
    expect_udp(&w, "closed", "127.0.0.1", port);
}

/// Sums the `udp_summary` lines of `pid` until they count `binds`;
/// returns every line read meanwhile.
fn summed_binds(w: &Watcher, pid: u32, binds: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut sum = 0;
    w.expect(
        &format!("udp_summary lines of {binds} binds"),
        EVENT_TIMEOUT,
        |v| {
            seen.push(v.clone());
            if v["event"] == "udp_summary" && v["pid"] == pid {
                assert_eq!(v["class"], "ephemeral", "{v}");
                sum += v["binds"].as_u64().unwrap();
                assert!(sum <= binds, "more binds counted than made: {seen:?}");
            }
            sum == binds
        },
    );
    seen
}

#[test]
fn the_aggregate_mode_counts_every_bind_and_reports_the_sockets_that_live_on() {
    let mut h = Sockets::new();
    let pid = h.pid();
    let w = Watcher::start(&["--pid", &pid.to_string(), "--udp-aggregate", "100ms"]);
    assert_eq!(h.ask("churn 500"), ["500"]);
    let (id, port) = h.bind("4", "127.0.0.1", 0);
    let mut lines = summed_binds(&w, pid, 501);
    let opened = match lines
        .iter()
        .find(|v| is_udp(v, "opened", "127.0.0.1", port))
    {
        Some(v) => v.clone(),
        None => expect_udp(&w, "opened", "127.0.0.1", port),
    };
    assert_eq!(opened["pid"], pid, "{opened}");
    assert_eq!(opened["source"], "aggregate", "{opened}");
    // Its release is the kernel's event.
    h.close(id);
    lines.extend(w.until_closed("127.0.0.1", port));
    let closed = lines
        .iter()
        .find(|v| is_udp(v, "closed", "127.0.0.1", port))
        .unwrap();
    assert_eq!(closed["source"], "ebpf", "{closed}");
    // None of the 500 that closed at once was reported one by one.
    let ports: Vec<&Value> = lines
        .iter()
        .filter(|v| v["event"] == "opened" && v["proto"] == "udp")
        .collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
}

#[test]
fn in_the_aggregate_mode_a_port_passed_on_before_the_look_is_found_by_a_resync() {
    let path = std::env::temp_dir().join(format!("pwtest-agg-fd-{}.sock", std::process::id()));
    let _ = fs::remove_file(&path);
    let mut binder = Sockets::new();
    let mut holder = Sockets::new();
    let w = Watcher::start(&["--udp-aggregate", "100ms"]);
    assert_eq!(
        holder.ask(&format!("receive {}", path.display())),
        Vec::<String>::new()
    );
    // A port off the ephemeral range, bound and handed over at once: the
    // binder holds nothing when the interval ends.
    let port = binder.free_port();
    let (id, port) = binder.bind("4", "127.0.0.1", port);
    binder.ask(&format!("send {id} {}", path.display()));
    let received: u32 = holder.0.read_value("received").parse().unwrap();
    let opened = expect_udp(&w, "opened", "127.0.0.1", port);
    assert_eq!(opened["source"], "resync", "{opened}");
    assert_eq!(opened["pid"], holder.pid(), "{opened}");
    holder.close(received);
    let _ = fs::remove_file(&path);
}

#[test]
fn an_unprivileged_churn_in_the_aggregate_mode_neither_fails_binds_nor_hides_others() {
    let w = Watcher::start(&["--udp-aggregate", "100ms"]);
    // Another user binds and closes as fast as it can, under a name of
    // its own (and a terminal escape in it).
    let out = as_nobody("/usr/bin/python3")
        .args(["-c", STORM, "20000", "udp", "agg\u{1b}storm"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "storm 40000 failed 0"
    );
    // Every bind of it is counted, by its two workers, which exited.
    let mut sum = 0;
    let mut workers = HashSet::new();
    w.expect("the storm's binds counted", EVENT_TIMEOUT, |v| {
        if v["event"] == "udp_summary" && v["comm"] == "agg\\x1bstorm" {
            sum += v["binds"].as_u64().unwrap();
            workers.insert(v["pid"].as_u64().unwrap());
        }
        sum >= 40000
    });
    assert_eq!((sum, workers.len()), (40000, 2));
    // And a bound port of root's is still told.
    let mut h = Sockets::new();
    let (id, port) = h.bind("4", "127.0.0.1", 0);
    let opened = expect_udp(&w, "opened", "127.0.0.1", port);
    assert_eq!(opened["pid"], h.pid(), "{opened}");
    h.close(id);
    expect_udp(&w, "closed", "127.0.0.1", port);
}

#[test]
fn the_procfs_backend_polls_udp_ports_off_the_ephemeral_range() {
    let mut h = Sockets::new();
    let w = Watcher::start(&[
        "--backend",
        "procfs",
        "--interval",
        "100ms",
        "--pid",
        &h.pid().to_string(),
    ]);
    let (ephemeral, ephemeral_port) = h.bind("4", "127.0.0.1", 0);
    let port = h.free_port();
    let (server, _) = h.bind("4", "127.0.0.1", port);
    // The poll that finds the server finds the bind(0) socket too, and
    // does not count it.
    let mut before = Vec::new();
    w.expect("the server", EVENT_TIMEOUT, |v| {
        before.push(v.clone());
        is_udp(v, "opened", "127.0.0.1", port)
    });
    assert_eq!(before.last().unwrap()["source"], "procfs");
    assert!(
        !before.iter().any(|v| v["port"] == ephemeral_port),
        "{before:?}"
    );
    h.close(server);
    h.close(ephemeral);
    let closed = expect_udp(&w, "closed", "127.0.0.1", port);
    assert_eq!(closed["pid"], h.pid());
}

#[test]
fn port_rules_fire_for_udp() {
    let dir = std::env::temp_dir().join(format!("portwatch-udp-rules-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut h = Sockets::new();
    let port = h.free_port();
    let path = dir.join("alerts.json");
    let rules = [
        rule_with_cooldown(
            "opened",
            &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#),
            1,
        ),
        rule_with_cooldown(
            "closed",
            &format!(r#"{{"type":"PortClosed","params":{{"port":{port}}}}}"#),
            1,
        ),
        rule_with_cooldown(
            "range",
            &format!(
                r#"{{"type":"PortRangeActivity","params":{{"start_port":{port},"end_port":{port}}}}}"#
            ),
            1,
        ),
    ];
    fs::write(&path, format!(r#"{{"rules":[{}]}}"#, rules.join(","))).unwrap();
    let daemon = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        path.to_str().unwrap(),
        "--pid",
        &h.pid().to_string(),
    ]);
    let (id, _) = h.bind("4", "127.0.0.1", port);
    h.close(id);
    let mut fired = HashSet::new();
    daemon.expect("three alerts", EVENT_TIMEOUT, |v| {
        if v["event"] == "alert" {
            assert_eq!(v["proto"], "udp", "{v}");
            assert_eq!(v["port"], port, "{v}");
            fired.insert(v["rule_id"].as_str().unwrap().to_string());
        }
        fired.len() == 3
    });
    let _ = fs::remove_dir_all(dir);
}

/// `portwatch ARGS` in a mount namespace of its own without the cgroup v2
/// hierarchy (unmounted there only).
fn without_cgroup2(args: &str) -> Command {
    let script = format!(
        "umount -l {} && exec {} {args}",
        cgroup2_root().display(),
        crate::support::BIN
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    cmd
}

#[test]
fn without_cgroup2_udp_is_left_out_in_one_sentence_and_tcp_goes_on() {
    let w = Watcher::spawn_command(&mut without_cgroup2("watch --json"));
    assert_eq!(w.ready["backend"], "ebpf");
    w.fence();
    let (status, stderr, _) = w.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr
            .contains("warning: UDP ports are not watched: no cgroup v2 hierarchy root is mounted"),
        "{stderr}"
    );

    // UDP alone: eBPF would watch nothing, so auto polls procfs instead...
    let w = Watcher::spawn_command(&mut without_cgroup2("watch --json --proto udp"));
    assert_eq!(w.ready["backend"], "procfs");
    let (_, stderr, _) = w.stop();
    assert!(
        stderr.contains("needs the root of the cgroup v2 hierarchy"),
        "{stderr}"
    );
    // ...and eBPF, asked for, is refused.
    let out = without_cgroup2("watch --json --proto udp --backend ebpf")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("needs the root of the cgroup v2 hierarchy"),
        "{stderr}"
    );
}

/// A socket bound to port 0, connected and disconnected (the kernel then
/// releases its port) and sending from a port the kernel picked: its bound
/// port is reported closed at the next resync, though its cookie is the
/// same, and the client's port is not reported.
#[test]
fn a_port_released_at_a_disconnect_closes_at_the_next_resync() {
    let mut h = Sockets::new();
    let w = Watcher::start(&[
        "--pid",
        &h.pid().to_string(),
        "--proto",
        "udp",
        "--resync-interval",
        "200ms",
    ]);
    let (id, port) = h.bind("4", "127.0.0.1", 0);
    w.expect("the bound port", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    let moved: u16 = h.ask(&format!("disconnect {id} 127.0.0.1 9"))[1]
        .parse()
        .unwrap();
    assert_ne!(moved, port);
    let mut seen = Vec::new();
    w.expect("the released port closed", Duration::from_secs(10), |v| {
        seen.push(v.clone());
        is_event(v, "closed", "127.0.0.1", port)
    });
    assert!(
        !seen.iter().any(|v| v["port"] == moved),
        "the client's port was reported: {seen:?}"
    );
}
