//! Exposure against the truth: in namespaces made here, a "host" H with a
//! veth to an "outside" O and one to a "container" C (addresses from
//! 192.0.2.0/24 and 2001:db8::/32; nothing leaves them), each listener's
//! verdict is compared with what a connection from O actually does.

use std::{
    collections::BTreeMap,
    io::Write as _,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::support::{BIN, EVENT_TIMEOUT, Helper, NetNs, Watcher, as_nobody, helper_path};

/// H, O and C, wired: H 192.0.2.1 / 2001:db8::1 on `vh` to O's
/// 192.0.2.2 / 2001:db8::2; H 192.0.2.65 on `vc` to C's 192.0.2.66, C
/// routed through H.
struct Lab {
    h: NetNs,
    o: NetNs,
    c: NetNs,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let lab = Lab {
            h: NetNs::new(&format!("{tag}h")),
            o: NetNs::new(&format!("{tag}o")),
            c: NetNs::new(&format!("{tag}c")),
        };
        let (h, o, c) = (&lab.h.name, &lab.o.name, &lab.c.name);
        for args in [
            vec![
                "ip", "-n", h, "link", "add", "vh", "type", "veth", "peer", "name", "vo", "netns",
                o,
            ],
            vec![
                "ip", "-n", h, "link", "add", "vc", "type", "veth", "peer", "name", "eth0",
                "netns", c,
            ],
            vec!["ip", "-n", h, "addr", "add", "192.0.2.1/26", "dev", "vh"],
            vec![
                "ip",
                "-n",
                h,
                "addr",
                "add",
                "2001:db8::1/64",
                "dev",
                "vh",
                "nodad",
            ],
            vec!["ip", "-n", o, "addr", "add", "192.0.2.2/26", "dev", "vo"],
            vec![
                "ip",
                "-n",
                o,
                "addr",
                "add",
                "2001:db8::2/64",
                "dev",
                "vo",
                "nodad",
            ],
            vec!["ip", "-n", h, "addr", "add", "192.0.2.65/26", "dev", "vc"],
            vec!["ip", "-n", c, "addr", "add", "192.0.2.66/26", "dev", "eth0"],
            vec!["ip", "-n", h, "link", "set", "vh", "up"],
            vec!["ip", "-n", h, "link", "set", "vc", "up"],
            vec!["ip", "-n", o, "link", "set", "vo", "up"],
            vec!["ip", "-n", c, "link", "set", "eth0", "up"],
            vec![
                "ip",
                "-n",
                c,
                "route",
                "add",
                "default",
                "via",
                "192.0.2.65",
            ],
            vec![
                "ip",
                "-n",
                o,
                "route",
                "add",
                "192.0.2.64/26",
                "via",
                "192.0.2.1",
            ],
            vec![
                "ip",
                "netns",
                "exec",
                h,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        ] {
            run(&args);
        }
        lab
    }

    /// Loads an nftables ruleset into `ns`.
    fn nft(ns: &NetNs, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft (the nftables package)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft -f:\n{ruleset}");
    }

    fn serve(ns: &NetNs, specs: &[&str]) -> Helper {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "python3", "-u"])
            .arg(helper_path("exposure.py"))
            .arg("serve")
            .args(specs);
        let mut helper = Helper::command(&mut cmd);
        assert_eq!(helper.read_line(), "ready");
        helper
    }

    /// What connecting from O to each spec does: true if it connected
    /// (TCP) or was answered (UDP).
    fn probe(&self, specs: &[String]) -> BTreeMap<String, bool> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.o.name, "python3"])
            .arg(helper_path("exposure.py"))
            .arg("probe")
            .args(specs)
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// The line of the listener on `proto address:port` in namespace `netns`.
fn line_of<'a>(lines: &'a [Value], netns: u64, proto: &str, address: &str, port: u16) -> &'a Value {
    lines
        .iter()
        .find(|v| {
            v["netns"] == netns
                && v["proto"] == proto
                && v["address"] == address
                && v["port"] == port
        })
        .unwrap_or_else(|| panic!("no line for {proto} {address}:{port} in {netns}: {lines:?}"))
}

/// Each listener's verdict, checked against a real attempt from O to the
/// address H answers on: `reachable` must connect, the others must not.
fn check_against_truth(lab: &Lab, lines: &[Value], listeners: &[(&str, &str, u16, &str)]) {
    let h = lab.h.inode();
    let mut specs = Vec::new();
    for (proto, address, port, want) in listeners {
        let v = line_of(lines, h, proto, address, *port);
        assert_eq!(v["exposure"], *want, "{proto} {address}:{port}: {v}");
        let target = if address.contains(':') {
            "[2001:db8::1]"
        } else {
            "192.0.2.1"
        };
        specs.push(format!("{proto}:{target}:{port}"));
    }
    let truth = lab.probe(&specs);
    for ((proto, address, port, want), spec) in listeners.iter().zip(&specs) {
        assert_eq!(
            truth[spec],
            *want == "reachable",
            "{proto} {address}:{port} was judged {want}, but a connection from outside {}",
            if truth[spec] {
                "got through"
            } else {
                "did not"
            }
        );
    }
}

const NFT_RULESET: &str = r#"
table inet filter {
    chain allowed {
        tcp dport 7003 accept
        return
    }
    chain input {
        type filter hook input priority 0; policy drop;
        iif lo accept
        ct state established,related accept
        meta l4proto ipv6-icmp accept
        jump allowed
        tcp dport { 7005, 7009, 7030 } accept
        tcp dport vmap { 7008 : drop, 7012 : accept }
        tcp dport 7004 reject
        udp dport 7006 accept
    }
}
table ip nat {
    chain prerouting {
        type nat hook prerouting priority -100;
        tcp dport 7010 dnat to 192.0.2.66:7011
        tcp dport 7020 dnat to 192.0.2.66:7021
    }
}
"#;

/// Listeners in H, with the verdict each must get under NFT_RULESET.
const H_LISTENERS: [(&str, &str, u16, &str); 9] = [
    ("tcp", "127.0.0.1", 7001, "loopback"),
    ("tcp", "::1", 7002, "loopback"),
    ("tcp", "0.0.0.0", 7003, "reachable"),
    ("tcp", "192.0.2.1", 7004, "filtered"),
    ("tcp", "::", 7005, "reachable"),
    ("udp", "0.0.0.0", 7006, "reachable"),
    ("udp", "0.0.0.0", 7007, "filtered"),
    ("tcp", "192.0.2.1", 7008, "filtered"),
    ("tcp", "0.0.0.0", 7012, "reachable"),
];

fn specs_of(listeners: &[(&str, &str, u16, &str)]) -> Vec<String> {
    listeners
        .iter()
        .map(|(p, a, port, _)| {
            if a.contains(':') {
                format!("{p}:[{a}]:{port}")
            } else {
                format!("{p}:{a}:{port}")
            }
        })
        .collect()
}

#[test]
fn nftables_verdicts_and_published_ports_match_real_connections_and_follow_changes() {
    let lab = Lab::new("ex");
    Lab::nft(&lab.h, NFT_RULESET);
    let specs = specs_of(&H_LISTENERS);
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let _h = Lab::serve(&lab.h, &specs);
    let _c = Lab::serve(&lab.c, &["tcp:192.0.2.66:7011"]);
    // Docker's userland proxy, as it runs: root's `docker-proxy` in H,
    // listening on 7030 for C's 192.0.2.66:7011 (python under that name:
    // the name and the flags are what portwatch reads).
    let dir = std::env::temp_dir().join(format!("portwatch-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let proxy_bin = dir.join("docker-proxy");
    let _ = std::fs::remove_file(&proxy_bin);
    std::os::unix::fs::symlink("/usr/bin/python3", &proxy_bin).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.h.name])
        .arg(&proxy_bin)
        .arg(helper_path("exposure.py"))
        .args(["serve", "tcp:0.0.0.0:7030", "--"])
        .args("-proto tcp -host-ip 0.0.0.0 -host-port 7030 -container-ip 192.0.2.66 -container-port 7011".split(' '));
    let mut proxy = Helper::command(&mut cmd);
    assert_eq!(proxy.read_line(), "ready");

    let w = Watcher::start(&[]);
    // A daemon with an ExposedListener rule for the listener that the
    // rule change below opens.
    let dir = std::env::temp_dir().join(format!("portwatch-exposure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    std::fs::write(
        &rules,
        r#"{"rules":[{"id":"exposed","name":"exposed","condition":{"type":"ExposedListener","params":{"exposure":["reachable"],"ports":[7004]}},"enabled":true,"severity":"Critical","cooldown_seconds":60}]}"#,
    )
    .unwrap();
    let daemon = Watcher::spawn(&["daemon", "--json", "--alerts", rules.to_str().unwrap()]);
    check_against_truth(&lab, &w.baseline, &H_LISTENERS);
    let h = lab.h.inode();
    let wildcard = line_of(&w.baseline, h, "tcp", "0.0.0.0", 7003);
    assert_eq!(
        wildcard["reachable_via"],
        serde_json::json!(["vh", "vc"]),
        "{wildcard}"
    );

    // C's listener is published on H's port 7010 (DNAT), reachable from
    // outside through it.
    // And on H's 7030 through the proxy.
    let target = line_of(&w.baseline, lab.c.inode(), "tcp", "192.0.2.66", 7011);
    let published: Vec<(u64, u64, String)> = target["published_as"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["netns"].as_u64().unwrap_or(0),
                p["port"].as_u64().unwrap_or(0),
                p["exposure"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        published,
        [(h, 7010, "reachable".into()), (h, 7030, "reachable".into())],
        "{target}"
    );
    let proxy_line = line_of(&w.baseline, h, "tcp", "0.0.0.0", 7030);
    assert_eq!(proxy_line["comm"], "docker-proxy", "{proxy_line}");
    let truth = lab.probe(&["tcp:192.0.2.1:7010".into()]);
    assert!(
        truth["tcp:192.0.2.1:7010"],
        "the published port does not connect"
    );

    // `list` shows the DNAT rule with no listener behind it.
    let out = Command::new(BIN).args(["list", "--json"]).output().unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let unbacked = rows
        .iter()
        .find(|r| r["netns"] == h && r["port"] == 7020)
        .unwrap_or_else(|| panic!("no row for the unbacked DNAT: {rows:?}"));
    assert_eq!(unbacked["pid"], 0);
    assert_eq!(unbacked["dnat_to"], "192.0.2.66:7021");
    assert_eq!(unbacked["exposure"], "reachable");
    // And the same judgement as watch for the listeners.
    for (proto, address, port, want) in H_LISTENERS {
        assert_eq!(line_of(&rows, h, proto, address, port)["exposure"], want);
    }

    // A rule added while watching: 7004 is accepted before its reject.
    run(&[
        "ip",
        "netns",
        "exec",
        &lab.h.name,
        "nft",
        "insert",
        "rule",
        "inet",
        "filter",
        "input",
        "tcp",
        "dport",
        "7004",
        "accept",
    ]);
    let changed = w.expect("7004's exposure change", EVENT_TIMEOUT, |v| {
        v["event"] == "exposure_changed" && v["port"] == 7004
    });
    assert_eq!(changed["before"]["exposure"], "filtered", "{changed}");
    assert_eq!(changed["exposure"], "reachable", "{changed}");
    assert!(lab.probe(&["tcp:192.0.2.1:7004".into()])["tcp:192.0.2.1:7004"]);
    let alert = daemon.expect("the ExposedListener alert", EVENT_TIMEOUT, |v| {
        v["event"] == "alert" && v["rule_id"] == "exposed"
    });
    assert_eq!(alert["port"], 7004, "{alert}");
    let message = alert["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("is now reachable via vh,vc (was filtered)"),
        "{message}"
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);

    // The proxy stops: C's listener is published through DNAT alone.
    proxy.close_stdin();
    let changed = w.expect("7011's exposure change", EVENT_TIMEOUT, |v| {
        v["event"] == "exposure_changed" && v["port"] == 7011
    });
    assert_eq!(
        changed["published_as"].as_array().map(Vec::len),
        Some(1),
        "{changed}"
    );
    assert_eq!(
        changed["before"]["published_as"].as_array().map(Vec::len),
        Some(2)
    );
    let _ = std::fs::remove_dir_all(proxy_bin.parent().unwrap());

    // An interface going down: the wildcard listeners lose it.
    run(&["ip", "-n", &lab.h.name, "link", "set", "vc", "down"]);
    let changed = w.expect("7003's exposure change", EVENT_TIMEOUT, |v| {
        v["event"] == "exposure_changed" && v["port"] == 7003
    });
    assert_eq!(
        changed["before"]["reachable_via"],
        serde_json::json!(["vh", "vc"])
    );
    assert_eq!(
        changed["reachable_via"],
        serde_json::json!(["vh"]),
        "{changed}"
    );
}

#[test]
fn iptables_nft_rules_are_judged_as_real_connections_see_them() {
    let lab = Lab::new("ipt");
    let h = &lab.h.name;
    for rule in [
        "-P INPUT DROP",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -p tcp --dport 7003 -j ACCEPT",
        "-A INPUT -p tcp --dport 7004 -j REJECT",
        "-A INPUT -p udp --dport 7006 -j ACCEPT",
        // Another port than the nftables test's: the two labs' C have the
        // same address, and a DNAT names an address, not a namespace.
        "-t nat -A PREROUTING -p tcp --dport 7010 -j DNAT --to-destination 192.0.2.66:7111",
    ] {
        let mut args = vec!["ip", "netns", "exec", h, "iptables-nft"];
        args.extend(rule.split(' '));
        run(&args);
    }
    let listeners = [
        ("tcp", "127.0.0.1", 7001, "loopback"),
        ("tcp", "0.0.0.0", 7003, "reachable"),
        ("tcp", "192.0.2.1", 7004, "filtered"),
        ("udp", "0.0.0.0", 7006, "reachable"),
        ("tcp", "0.0.0.0", 7007, "filtered"),
    ];
    let specs = specs_of(&listeners);
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let _h = Lab::serve(&lab.h, &specs);
    let _c = Lab::serve(&lab.c, &["tcp:192.0.2.66:7111"]);
    let w = Watcher::start(&[]);
    check_against_truth(&lab, &w.baseline, &listeners);
    // iptables' DNAT publishes C's listener on H's 7010, and that goes
    // through.
    let target = line_of(&w.baseline, lab.c.inode(), "tcp", "192.0.2.66", 7111);
    let published = &target["published_as"];
    assert_eq!(published.as_array().map(Vec::len), Some(1), "{target}");
    assert_eq!(published[0]["port"], 7010, "{target}");
    assert_eq!(published[0]["netns"], lab.h.inode(), "{target}");
    assert_eq!(published[0]["exposure"], "reachable", "{target}");
    assert!(lab.probe(&["tcp:192.0.2.1:7010".into()])["tcp:192.0.2.1:7010"]);
}

/// An unprivileged user's own namespace: a DNAT rule there that names a
/// root namespace's listener does not make it look published, and rules
/// changed without pause there delay nobody's events.
#[test]
fn a_users_namespace_cannot_publish_others_listeners_or_stall_the_watch() {
    // A root namespace with a listener on 198.51.100.7:7060.
    let v = NetNs::new("victim");
    for args in [
        vec![
            "ip", "-n", &v.name, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
        vec![
            "ip",
            "-n",
            &v.name,
            "addr",
            "add",
            "198.51.100.7/24",
            "dev",
            "v0",
        ],
        vec!["ip", "-n", &v.name, "link", "set", "v0", "up"],
        vec!["ip", "-n", &v.name, "link", "set", "v1", "up"],
    ] {
        run(&args);
    }
    let _victim = Lab::serve(&v, &["tcp:198.51.100.7:7060"]);
    let w = Watcher::start(&[]);
    // The user's namespace: a DNAT of its port 7061 to the victim, then
    // a flood of rule changes.
    let script = r#"
set -e
exec 3<&0
ip link set lo up
ip link add p0 type veth peer name p1
ip link set p0 up
ip link set p1 up
ip addr add 198.51.100.8/24 dev p0
nft add table ip nat
nft add chain ip nat pre '{ type nat hook prerouting priority -100; }'
nft add rule ip nat pre tcp dport 7061 dnat to 198.51.100.7:7060
nft add table inet churn
nft add chain inet churn input '{ type filter hook input priority 0; }'
# The script's stdin, saved as fd 3 (a background job's own stdin is
# /dev/null): it ends when the test closes it.
python3 -c '
import socket, sys
s = socket.socket(); s.bind(("0.0.0.0", 7062)); s.listen()
print("ready", flush=True)
sys.stdin.read()
' <&3 &
while :; do nft add rule inet churn input tcp dport 9 accept; nft flush chain inet churn input; done
"#;
    let mut cmd = as_nobody("unshare");
    cmd.args(["-rn", "sh", "-c", script]);
    let mut user = Helper::command(&mut cmd);
    assert_eq!(user.read_line(), "ready");
    let judged = w.expect("the user's listener judged", EVENT_TIMEOUT, |v| {
        v["port"] == 7062 && v["exposure"] == "reachable"
    });
    let mut via: Vec<&str> = judged["reachable_via"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    via.sort_unstable();
    assert_eq!(via, ["p0", "p1"], "{judged}");
    // Meanwhile the host's own listeners are reported as ever: each of
    // these fences waits for an open and a close.
    for _ in 0..20 {
        w.fence();
    }
    // The victim's listener, as list sees it with the user's rule in
    // place: published by no one.
    let out = Command::new(BIN).args(["list", "--json"]).output().unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let victim = line_of(&rows, v.inode(), "tcp", "198.51.100.7", 7060);
    assert!(victim.get("published_as").is_none(), "{victim}");
    assert_eq!(victim["exposure"], "reachable", "{victim}");
    drop(user);
}

/// An unprivileged user owns a network namespace of their own (a user
/// namespace's): its interface names, table names and rules are theirs.
/// They reach portwatch's lines only escaped, and a rule portwatch cannot
/// judge makes its verdict `unknown`, never a guess.
#[test]
fn a_users_own_namespace_cannot_put_raw_text_in_the_lines_or_force_a_guess() {
    let w = Watcher::start(&[]);
    let script = r#"
set -e
ip link set lo up
ip link add "ev$(printf '\033')il" type veth peer name p1
ip link set "ev$(printf '\033')il" up
ip link set p1 up
ip addr add 192.0.2.200/32 dev p1
# nft's own language refuses such a name; its JSON input does not.
echo '{"nftables":[
  {"add":{"table":{"family":"inet","name":"t\u001bx"}}},
  {"add":{"chain":{"family":"inet","table":"t\u001bx","name":"input","type":"filter","hook":"input","prio":0,"policy":"drop"}}},
  {"add":{"rule":{"family":"inet","table":"t\u001bx","chain":"input","expr":[
    {"match":{"op":"==","left":{"fib":{"result":"type","flags":["daddr"]}},"right":"local"}},
    {"accept":null}]}}}
]}' | nft -j -f -
exec python3 -c '
import socket, sys
s = socket.socket(); s.bind(("0.0.0.0", 7050)); s.listen()
print("ready", flush=True)
sys.stdin.read()
'
"#;
    let mut cmd = as_nobody("unshare");
    cmd.args(["-rn", "sh", "-c", script]);
    let mut helper = Helper::command(&mut cmd);
    assert_eq!(helper.read_line(), "ready");
    // Judged when its namespace's rules are read: on the open, or in the
    // change that follows it.
    let v = w.expect("the user's listener judged", EVENT_TIMEOUT, |v| {
        (v["event"] == "opened" || v["event"] == "exposure_changed")
            && v["port"] == 7050
            && v["why"].as_str().is_some_and(|w| w.contains("fib"))
    });
    assert_eq!(v["exposure"], "unknown", "{v}");
    let why = v["why"].as_str().unwrap_or_default();
    assert!(why.contains("fib"), "{why}");
    assert!(
        why.contains("t\\x1bx"),
        "the table's name is not escaped: {why}"
    );
    assert!(!why.contains('\u{1b}'), "{why}");
    drop(helper);
}
