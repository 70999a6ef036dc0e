//! Owner contexts at scale: 1,000 processes with 10 listeners each when
//! portwatch starts (each working in a git work tree, so the search for
//! one finds it), then new processes one by one. How long telling every
//! story at start takes, and one new process's (portwatch's own debug
//! lines, which time the reads alone).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::util::quantile;

/// The holder: forks `processes` children with `per` listeners each,
/// working in `tree/src`; then, for each line it reads, one more child
/// with one listener. Each child prints its port(s) and waits.
const HOLDER: &str = r#"
import os, socket, sys
processes, per, tree = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.chdir(os.path.join(tree, "src"))
def child(n):
    # Returns once the child listens: its port, and the pipe that holds it.
    hold_r, hold_w = os.pipe()
    port_r, port_w = os.pipe()
    if os.fork() == 0:
        os.close(hold_w); os.close(port_r)
        held = []
        for _ in range(n):
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); held.append(s)
        os.write(port_w, str(held[0].getsockname()[1]).encode())
        os.read(hold_r, 1)
        os._exit(0)
    os.close(hold_r); os.close(port_w)
    port = os.read(port_r, 16).decode()
    os.close(port_r)
    return hold_w, port
kids = [child(per) for _ in range(processes)]
print("ready", flush=True)
for line in sys.stdin:
    w, port = child(1)
    kids.append(w)
    print("port", port, flush=True)
"#;

pub fn context(root: &Path, processes: usize, per: usize, new: usize) -> Result<Value> {
    let tree = std::env::temp_dir().join(format!("portwatch-context-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join(".git"))?;
    std::fs::create_dir_all(tree.join("src"))?;
    std::fs::write(tree.join(".git/HEAD"), "ref: refs/heads/main\n")?;
    let result = measure(root, &tree, processes, per, new);
    let _ = std::fs::remove_dir_all(&tree);
    result
}

fn measure(root: &Path, tree: &Path, processes: usize, per: usize, new: usize) -> Result<Value> {
    let mut holder = Command::new("python3")
        .args(["-u", "-c", HOLDER])
        .arg(processes.to_string())
        .arg(per.to_string())
        .arg(tree)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_holder = holder.stdin.take().context("holder stdin")?;
    let mut from_holder = BufReader::new(holder.stdout.take().context("holder stdout")?);
    let mut line = String::new();
    loop {
        line.clear();
        if from_holder.read_line(&mut line)? == 0 {
            bail!("the listener holder did not start");
        }
        if line.trim() == "ready" {
            break;
        }
    }
    let log = std::env::temp_dir().join(format!(
        "portwatch-context-bench-{}.log",
        std::process::id()
    ));
    let (mut child, lines) = super::util::watch_json_debug(&super::portwatch_bin(root), &log)?;
    let wait_for = |pred: &dyn Fn(&Value) -> bool| -> bool {
        loop {
            match lines.recv_timeout(Duration::from_secs(60)) {
                Ok(v) if pred(&v) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    };
    if !wait_for(&|v| v["event"] == "ready") {
        let _ = child.kill();
        bail!("portwatch did not start");
    }
    let mut told = 0;
    for _ in 0..new {
        writeln!(to_holder, "more")?;
        line.clear();
        from_holder.read_line(&mut line)?;
        let port: u64 = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .context("the new child's port")?;
        if wait_for(&|v| v["event"] == "opened" && v["port"] == port && v["context"].is_object()) {
            told += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(to_holder);
    let _ = holder.kill();
    let _ = holder.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    // "context: told N listeners of M processes in X us"
    let start = text
        .lines()
        .find_map(|l| {
            let rest = l.split_once("context: told ")?.1;
            let (n, rest) = rest.split_once(" listeners of ")?;
            let (m, rest) = rest.split_once(" processes in ")?;
            let us = rest.split_once(" us")?.0;
            Some((
                n.parse::<u64>().ok()?,
                m.parse::<u64>().ok()?,
                us.parse::<f64>().ok()?,
            ))
        })
        .context("portwatch's start-up context line")?;
    // "context: told pid P in X us", the last `new` of them (the rest
    // are the start's).
    let mut per_process: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("context: told pid ")?.1;
            rest.split_once(" in ")?.1.split_once(" us")?.0.parse().ok()
        })
        .collect();
    let mut live = per_process.split_off(per_process.len().saturating_sub(new));
    live.sort_by(f64::total_cmp);
    Ok(json!({
        "start_listeners": start.0,
        "start_processes": start.1,
        "start_ms": start.2 / 1000.0,
        "new_processes": new,
        "new_told": told,
        "new_p50_us": quantile(&live, 0.5),
        "new_p99_us": quantile(&live, 0.99),
        "new_max_us": live.last().copied().unwrap_or(f64::NAN),
    }))
}
