//! The terminal UI with 10,000 listeners, in a real terminal (tmux): how
//! long a frame takes, how much memory, how long a new listener takes to
//! reach the screen, and what it does while nothing happens.

use std::{
    net::TcpListener,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{
    scan::{release, spawn_holders},
    util::{quantile, status_field},
};

const SOCKET: &str = "portwatch-bench";

fn tmux(args: &[&str]) -> Result<String> {
    let out = Command::new("tmux")
        .args(["-L", SOCKET])
        .args(args)
        .output()
        .context("tmux is needed for the TUI benchmark")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn shows_port(screen: &str, port: u16) -> bool {
    let port = port.to_string();
    screen.lines().any(|l| {
        l.split(|c: char| c.is_whitespace() || c == '│')
            .filter(|t| !t.is_empty())
            .nth(1)
            == Some(port.as_str())
    })
}

/// Frame times (us) and row counts from the UI's debug log.
fn frames(log: &str) -> Vec<(f64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split_once("frame: ")?.1;
            let (us, rows) = rest.split_once(" us, ")?;
            Some((
                us.parse().ok()?,
                rows.split_whitespace().next()?.parse().ok()?,
            ))
        })
        .collect()
}

pub fn tui(root: &Path, listeners: usize, probes: usize, idle_s: u64) -> Result<Value> {
    let procs = 50;
    let holders = spawn_holders(procs, listeners / procs)?;
    let log = std::env::temp_dir().join(format!("portwatch-tui-bench-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let _ = tmux(&["kill-server"]);
    // Rows on 127.0.0.1 only: the probes are on screen whatever the sort,
    // and every frame still filters all rows.
    let command = format!(
        "env PORTWATCH_LOG={} RUST_LOG=portwatch=debug {} -f addr:127.0.0.1",
        log.display(),
        super::portwatch_bin(root).display()
    );
    tmux(&["new-session", "-d", "-x", "200", "-y", "50", &command])?;
    let ready = Instant::now() + Duration::from_secs(60);
    while !tmux(&["capture-pane", "-p"])?.contains("watching with") {
        if Instant::now() > ready {
            let _ = tmux(&["kill-server"]);
            release(holders);
            bail!("the TUI did not start");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let pid: u32 = tmux(&["display-message", "-p", "#{pane_pid}"])?
        .trim()
        .parse()
        .context("the TUI's pid")?;

    // A new listener: from listen() to the screen, capture-pane polled.
    let mut delays_ms = Vec::new();
    let mut held = Vec::new();
    for _ in 0..probes {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let t = Instant::now();
        held.push(l);
        while !shows_port(&tmux(&["capture-pane", "-p"])?, port) {
            if t.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        delays_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    let rss_mib = status_field(pid, "VmRSS") as f64 / 1024.0;
    let hwm_mib = status_field(pid, "VmHWM") as f64 / 1024.0;

    // Idle: frames and wakeups over `idle_s` seconds with nothing new.
    thread::sleep(Duration::from_secs(2));
    let before = frames(&std::fs::read_to_string(&log).unwrap_or_default()).len();
    let switches = status_field(pid, "voluntary_ctxt_switches");
    thread::sleep(Duration::from_secs(idle_s));
    let all = frames(&std::fs::read_to_string(&log).unwrap_or_default());
    let idle_frames = all.len() - before;
    let idle_wakeups = status_field(pid, "voluntary_ctxt_switches") - switches;
    let _ = tmux(&["kill-server"]);
    release(holders);
    let _ = std::fs::remove_file(&log);

    let mut frame_ms: Vec<f64> = all
        .iter()
        .filter(|(_, rows)| *rows >= listeners as u64)
        .map(|(us, _)| us / 1000.0)
        .collect();
    frame_ms.sort_by(f64::total_cmp);
    delays_ms.sort_by(f64::total_cmp);
    Ok(json!({
        "listeners": listeners,
        "frames": frame_ms.len(),
        "frame_p50_ms": quantile(&frame_ms, 0.5),
        "frame_p99_ms": quantile(&frame_ms, 0.99),
        "frame_max_ms": frame_ms.last().copied().unwrap_or(f64::NAN),
        "rss_mib": rss_mib,
        "peak_rss_mib": hwm_mib,
        "probes": probes,
        "to_screen_p50_ms": quantile(&delays_ms, 0.5),
        "to_screen_p99_ms": quantile(&delays_ms, 0.99),
        "idle_s": idle_s,
        "idle_frames": idle_frames,
        "idle_wakeups": idle_wakeups,
    }))
}
