//! Exposure at scale: a namespace with 1,000 nftables rules and 1,000
//! listeners. How long a full re-judgement of every open listener takes
//! (portwatch's own debug line), and how long a rule change takes to
//! reach the `exposure_changed` line (from `nft` returning to the line
//! read).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::util::quantile;

const NS: &str = "pwbench-exposure";
const FIRST_PORT: u16 = 20000;

fn ip(args: &[&str]) -> Result<()> {
    crate::check(Command::new("ip").args(args), "ip")
}

fn nft(args: &[&str]) -> Result<()> {
    crate::check(
        Command::new("ip")
            .args(["netns", "exec", NS, "nft"])
            .args(args),
        "nft",
    )
}

/// The namespace: a veth pair (one interface up with an address is a way
/// in), a drop-policy input chain of `rules` accept rules, and a holder
/// process with `listeners` listeners on the wildcard.
fn set_up(rules: usize, listeners: usize) -> Result<std::process::Child> {
    let _ = Command::new("ip").args(["netns", "del", NS]).status();
    ip(&["netns", "add", NS])?;
    ip(&["-n", NS, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", NS, "link", "add", "pwa", "type", "veth", "peer", "name", "pwb",
    ])?;
    ip(&["-n", NS, "addr", "add", "192.0.2.1/24", "dev", "pwa"])?;
    ip(&["-n", NS, "link", "set", "pwa", "up"])?;
    ip(&["-n", NS, "link", "set", "pwb", "up"])?;
    let mut ruleset = String::from(
        "table inet f {\n chain input {\n  type filter hook input priority 0; policy drop;\n  iif lo accept\n",
    );
    for i in 0..rules {
        // Each rule on its own port, half of them with a source range:
        // a realistic mix, each evaluated in turn.
        let port = usize::from(FIRST_PORT) + i;
        if i % 2 == 0 {
            ruleset.push_str(&format!("  tcp dport {port} accept\n"));
        } else {
            ruleset.push_str(&format!(
                "  ip saddr 198.51.100.0/24 tcp dport {port} accept\n"
            ));
        }
    }
    ruleset.push_str(" }\n}\n");
    let mut load = Command::new("ip")
        .args(["netns", "exec", NS, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("nft (the nftables package) is needed for the exposure benchmark")?;
    load.stdin
        .take()
        .context("nft's stdin")?
        .write_all(ruleset.as_bytes())?;
    if !load.wait()?.success() {
        bail!("nft -f failed");
    }
    let script = format!(
        "import socket, sys\nheld = []\nfor p in range({FIRST_PORT}, {FIRST_PORT} + {listeners}):\n    s = socket.socket(); s.bind(('0.0.0.0', p)); s.listen(); held.append(s)\nprint('ready', flush=True)\nsys.stdin.read()\n"
    );
    let mut holder = Command::new("ip")
        .args(["netns", "exec", NS, "python3", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(holder.stdout.take().context("holder stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("the listener holder did not start");
    }
    Ok(holder)
}

pub fn exposure(root: &Path, rules: usize, listeners: usize, changes: usize) -> Result<Value> {
    let holder = set_up(rules, listeners)?;
    let result = measure(root, listeners, changes).map(|mut v| {
        // With the `iif lo accept` before them.
        v["rules"] = json!(rules + 1);
        v
    });
    drop(holder);
    let _ = Command::new("ip").args(["netns", "del", NS]).status();
    result
}

fn measure(root: &Path, listeners: usize, changes: usize) -> Result<Value> {
    let log = std::env::temp_dir().join(format!(
        "portwatch-exposure-bench-{}.log",
        std::process::id()
    ));
    let (mut child, lines) = super::util::watch_json_debug(&super::portwatch_bin(root), &log)?;
    let wait_for = |pred: &dyn Fn(&Value) -> bool, limit: Duration| -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return Some(Instant::now()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    };
    if wait_for(&|v| v["event"] == "ready", Duration::from_secs(60)).is_none() {
        let _ = child.kill();
        bail!("portwatch did not start");
    }
    // A drop for one port, inserted at the top and deleted again: each is
    // one exposure change of one listener among `listeners`.
    let port = FIRST_PORT + 2;
    let mut to_event_ms = Vec::new();
    for i in 0..changes {
        let started;
        if i % 2 == 0 {
            started = Instant::now();
            nft(&[
                "insert",
                "rule",
                "inet",
                "f",
                "input",
                "tcp",
                "dport",
                &port.to_string(),
                "drop",
            ])?;
        } else {
            let handle = first_handle()?;
            started = Instant::now();
            nft(&["delete", "rule", "inet", "f", "input", "handle", &handle])?;
        }
        let want = if i % 2 == 0 { "filtered" } else { "reachable" };
        let seen = wait_for(
            &|v| v["event"] == "exposure_changed" && v["port"] == port && v["exposure"] == want,
            Duration::from_secs(5),
        );
        match seen {
            Some(t) => to_event_ms.push(t.duration_since(started).as_secs_f64() * 1000.0),
            None => to_event_ms.push(f64::INFINITY),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let mut judge_ms: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("exposure: re-judged ")?.1;
            let (n, rest) = rest.split_once(" listeners")?;
            let us = rest.split_once(" in ")?.1.split_once(" us")?.0;
            (n.parse::<usize>().ok()? >= listeners)
                .then(|| us.parse::<f64>().ok().map(|u| u / 1000.0))?
        })
        .collect();
    judge_ms.sort_by(f64::total_cmp);
    // Reading the namespace's facts again (1,000 rules over netlink, and
    // their translation), from portwatch's other debug line.
    let ino = std::fs::metadata(format!("/run/netns/{NS}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or(0);
    let tag = format!("exposure: read netns {ino} in ");
    let mut read_ms: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let us = l.split_once(tag.as_str())?.1.split_once(" us")?.0;
            us.parse::<f64>().ok().map(|u| u / 1000.0)
        })
        .collect();
    read_ms.sort_by(f64::total_cmp);
    to_event_ms.sort_by(f64::total_cmp);
    Ok(json!({
        "listeners": listeners,
        "rejudgements": judge_ms.len(),
        "rejudge_p50_ms": quantile(&judge_ms, 0.5),
        "rejudge_max_ms": judge_ms.last().copied().unwrap_or(f64::NAN),
        "read_p50_ms": quantile(&read_ms, 0.5),
        "read_max_ms": read_ms.last().copied().unwrap_or(f64::NAN),
        "changes": changes,
        "change_to_event_p50_ms": quantile(&to_event_ms, 0.5),
        "change_to_event_max_ms": to_event_ms.last().copied().unwrap_or(f64::NAN),
    }))
}

/// The handle of the input chain's first rule (the drop just inserted).
fn first_handle() -> Result<String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", NS, "nft", "-a", "list", "chain", "inet", "f", "input",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains(" drop # handle "))
        .and_then(|l| l.rsplit_once("# handle "))
        .map(|(_, h)| h.trim().to_string())
        .context("the inserted rule's handle")
}
