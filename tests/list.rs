//! `portwatch list --json` agrees with /proc/net/tcp{,6} and with `ss -ltn`.

use std::{collections::BTreeSet, net::TcpListener, process::Command};

type Set = BTreeSet<(String, u16)>;

fn from_portwatch() -> (Set, serde_json::Value) {
    let out = Command::new(crate::support::BIN)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON array");
    let set = v
        .as_array()
        .expect("an array")
        .iter()
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

fn from_ss() -> Set {
    let out = Command::new("ss")
        .args(["-Hltn"])
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
    // Other processes may open or close listeners meanwhile: compare
    // snapshots taken back to back until two agree, a few tries at most.
    let mut last = None;
    for _ in 0..5 {
        let before = from_procfs();
        let (listed, json) = from_portwatch();
        let ss = from_ss();
        let after = from_procfs();
        if before == after {
            assert_eq!(listed, before, "portwatch list vs /proc/net/tcp");
            assert_eq!(ss, before, "ss -ltn vs /proc/net/tcp");
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
        last = Some((before, after));
    }
    panic!("listeners never stable long enough to compare: {last:?}");
}
