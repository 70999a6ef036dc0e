//! `portwatch list --json` agrees with /proc/net/tcp{,6} and with `ss -ltn`
//! for TCP, with `ss -uan` off the ephemeral range for UDP.

use std::{collections::BTreeSet, net::TcpListener, process::Command};

type Set = BTreeSet<(String, u16)>;

fn from_portwatch(proto: &str) -> (Set, serde_json::Value) {
    let out = Command::new(crate::support::BIN)
        .args(["list", "--json", "--proto", proto])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON array");
    // ss and /proc/net show this namespace; list shows every namespace.
    let own = crate::support::own_netns();
    let set = v
        .as_array()
        .expect("an array")
        .iter()
        .filter(|l| l["netns"] == own)
        .map(|l| {
            (
                l["address"].as_str().unwrap().to_string(),
                l["port"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    (set, v)
}

fn from_procfs() -> Set {
    let mut rows = procfs::net::tcp().unwrap();
    rows.extend(procfs::net::tcp6().unwrap());
    rows.into_iter()
        .filter(|r| r.state == procfs::net::TcpState::Listen)
        .map(|r| (r.local_address.ip().to_string(), r.local_address.port()))
        .collect()
}

fn from_ss(args: &str) -> Set {
    let out = Command::new("ss")
        .arg(args)
        .output()
        .expect("ss (iproute2)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            // State Recv-Q Send-Q Local:Port Peer:Port
            let local = line.split_whitespace().nth(3).unwrap();
            let (addr, port) = local.rsplit_once(':').unwrap();
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            // ss prints a wildcard as `*` or `0.0.0.0`; an interface scope as `%lo`.
            let addr = addr.split('%').next().unwrap();
            let addr = match addr {
                "*" => "0.0.0.0",
                a => a,
            };
            (addr.to_string(), port.parse().unwrap())
        })
        .collect()
}

#[test]
fn list_matches_procfs_and_ss() {
    let mine = [
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("[::1]:0").unwrap(),
        TcpListener::bind("0.0.0.0:0").unwrap(),
    ];
    // Other processes may open or close listeners meanwhile (even between
    // two reads that agree): compare snapshots taken back to back until all
    // agree, a few tries at most. A real difference fails every try.
    let mut last = None;
    for _ in 0..5 {
        let before = from_procfs();
        let (listed, json) = from_portwatch("tcp");
        let ss = from_ss("-Hltn");
        let after = from_procfs();
        if before == after && listed == before && ss == before {
            for l in &mine {
                let port = l.local_addr().unwrap().port();
                let row = json
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["port"] == port)
                    .expect("our listener is listed");
                assert_eq!(row["pid"], std::process::id(), "{row}");
            }
            return;
        }
        last = Some((before, listed, ss, after));
    }
    panic!("/proc/net/tcp, portwatch list, ss -ltn, /proc/net/tcp disagree: {last:?}");
}

/// Every UDP socket off the ephemeral range, in any state: what a server
/// binds (the kernel gives clients ephemeral ports).
fn udp_from_ss() -> Set {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let range: Vec<u16> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    from_ss("-Huan")
        .into_iter()
        .filter(|(_, port)| !(range[0]..=range[1]).contains(port))
        .collect()
}

#[test]
fn list_shows_udp_ports_as_ss_does_without_client_ports() {
    use std::net::UdpSocket;
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let low: u16 = text.split_whitespace().next().unwrap().parse().unwrap();
    let server = (1025..low)
        .rev()
        .find_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
        .expect("a free UDP port below the ephemeral range");
    let port = server.local_addr().unwrap().port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"q", server.local_addr().unwrap()).unwrap();
    let client_port = client.local_addr().unwrap().port();
    let mut last = None;
    for _ in 0..5 {
        let before = udp_from_ss();
        let (listed, json) = from_portwatch("udp");
        let after = udp_from_ss();
        if before == after && listed == before {
            let rows = json.as_array().unwrap();
            let row = rows
                .iter()
                .find(|r| r["port"] == port)
                .expect("the server is listed");
            assert_eq!(row["pid"], std::process::id(), "{row}");
            assert_eq!(row["proto"], "udp", "{row}");
            assert!(!rows.iter().any(|r| r["port"] == client_port));
            assert!(rows.iter().all(|r| r["proto"] == "udp"));
            return;
        }
        last = Some((before, listed, after));
    }
    panic!("ss -uan, portwatch list --proto udp, ss -uan disagree: {last:?}");
}

/// Unprivileged, `list` still lists what it can see, and ends with one
/// line on stderr saying what it could not see and how to see it.
#[test]
fn list_as_a_user_says_what_it_cannot_see() {
    let out = crate::support::as_nobody(crate::support::BIN)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("sudo portwatch list"), "{err}");
}
