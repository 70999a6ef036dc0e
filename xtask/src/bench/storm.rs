//! Loss under a storm: a tiny ring buffer, listeners opened and closed by
//! several processes at once. Counts drops and resyncs, and times how long
//! after the storm the reported state equals what procfs shows.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::util::{Lines, mono_ns};

/// `tests/helpers/storm.py`: `workers` processes that open and close
/// `per` listeners each as fast as they can, keeping every `keep`-th open
/// until [`Storm::end`].
pub struct Storm {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Storm {
    pub fn start(root: &Path, workers: usize, per: usize, keep: usize) -> Result<Self> {
        let mut child = Command::new("python3")
            .arg(root.join("tests/helpers/storm.py"))
            .args([workers.to_string(), per.to_string(), keep.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("python3 runs the storm")?;
        let out = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Self { child, out })
    }

    /// Waits until each of the `workers` says its storm is over; their pids.
    pub fn wait_done(&mut self, workers: usize) -> Result<Vec<u32>> {
        let mut pids = Vec::new();
        for _ in 0..workers {
            let mut line = String::new();
            self.out.read_line(&mut line)?;
            pids.push(
                line.split_whitespace()
                    .nth(1)
                    .context("a done line")?
                    .parse::<u32>()?,
            );
        }
        Ok(pids)
    }

    /// Lets the workers close what they kept and exit, and waits for them.
    pub fn end(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Ports (local) that processes `pids` listen on, from `ss -Hltnp`.
fn listening_ports_of(pids: &[u32]) -> BTreeSet<u16> {
    super::monitors::ss_listening(&["-Hltnp"], |l| {
        pids.iter().any(|p| l.contains(&format!("pid={p},")))
    })
}

pub fn storm(root: &Path, workers: usize, per_worker: usize) -> Result<Value> {
    storm_with(root, workers, per_worker, &[])
}

/// [`storm`], with more flags for `portwatch watch` (`--journal PATH`).
pub fn storm_with(root: &Path, workers: usize, per_worker: usize, extra: &[&str]) -> Result<Value> {
    let watch = Lines::spawn(
        Command::new(super::portwatch_bin(root))
            .args([
                "watch",
                "--json",
                "--ring-buffer",
                "4096",
                "--resync-interval",
                "0",
            ])
            .args(extra),
    )?;
    watch.wait_for("\"ready\"", Duration::from_secs(30))?;
    let mut helper = Storm::start(root, workers, per_worker, 7)?;
    let pids = helper.wait_done(workers)?;
    let storm_end = mono_ns();
    let truth = listening_ports_of(&pids);

    let mut state = BTreeSet::new();
    let (mut drops, mut resyncs) = (0u64, 0u64);
    let (mut opened, mut closed) = (0u64, 0u64);
    let mut converged_ms = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while converged_ms.is_none() && Instant::now() < deadline {
        let Ok((t, line)) = watch.rx.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let pid = v["pid"].as_u64().unwrap_or(0) as u32;
        let port = v["port"].as_u64().unwrap_or(0) as u16;
        match v["event"].as_str() {
            Some("opened") if pids.contains(&pid) => {
                opened += 1;
                state.insert(port);
            }
            Some("closed") if pids.contains(&pid) => {
                closed += 1;
                state.remove(&port);
            }
            Some("resync") => {
                resyncs += 1;
                drops = v["drops"].as_u64().unwrap_or(0);
                if state == truth {
                    converged_ms = Some(t.saturating_sub(storm_end) as f64 / 1e6);
                }
            }
            _ => {}
        }
    }
    let after = after_convergence(&watch, 200)?;
    helper.end();
    watch.stop();
    Ok(json!({
        "workers": workers,
        "listeners": workers * per_worker,
        "events": workers * per_worker * 2,
        "ring_buffer_bytes": 4096,
        "drops": drops,
        "resyncs": resyncs,
        "kept_open": truth.len(),
        "converged": converged_ms.is_some(),
        "converge_ms_after_storm": converged_ms,
        "after": after,
        "pids": pids,
        "opened_reported": opened,
        "closed_reported": closed,
    }))
}

/// Nothing lost once converged: `n` listeners of our own, opened and
/// closed at a pace the tiny ring buffer holds, must all be reported.
fn after_convergence(watch: &Lines, n: usize) -> Result<Value> {
    let me = std::process::id();
    let mut ports = BTreeSet::new();
    let mut held = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0")?;
        ports.insert(l.local_addr()?.port());
        held.push(l);
        thread::sleep(Duration::from_micros(500));
    }
    for l in held {
        drop(l);
        thread::sleep(Duration::from_micros(500));
    }
    let (mut opened, mut closed) = (BTreeSet::new(), BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.len() < ports.len() && Instant::now() < deadline {
        let Ok((_, line)) = watch.rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let port = v["port"].as_u64().unwrap_or(0) as u16;
        if v["pid"].as_u64() != Some(u64::from(me)) || !ports.contains(&port) {
            continue;
        }
        match v["event"].as_str() {
            Some("opened") => {
                opened.insert(port);
            }
            Some("closed") => {
                closed.insert(port);
            }
            _ => {}
        }
    }
    Ok(json!({
        "listeners": n,
        "opened_reported": opened.len(),
        "closed_reported": closed.len(),
    }))
}
