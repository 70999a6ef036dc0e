//! The daemon's own cost (idle and at 1,000 events/s) and its cleanup
//! after SIGTERM and SIGKILL.

use std::{
    net::TcpListener,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::{Value, json};

use super::util::{Lines, cpu_seconds, prog_stats, status_field};

fn start_watch(root: &Path) -> Result<Lines> {
    let lines = Lines::spawn(Command::new(super::portwatch_bin(root)).args(["watch", "--json"]))?;
    lines.wait_for("\"ready\"", Duration::from_secs(30))?;
    Ok(lines)
}

/// CPU seconds, context switches and peak RSS over `seconds` idle, then
/// over `seconds` at 1,000 events/s (500 listeners opened and closed a
/// second).
pub fn daemon_cost(root: &Path, seconds: u64) -> Result<Value> {
    let w = start_watch(root)?;
    let pid = w.child.id();
    // The ready line comes before the first wait for events: let it settle
    // into that wait, so the window below holds only idle time.
    thread::sleep(Duration::from_secs(1));
    // VmHWM is the high-water mark since exec, start-up included; the
    // largest VmRSS sampled during each window is what the daemon holds
    // while it runs.
    let startup_peak_kb = status_field(pid, "VmHWM");
    let cpu0 = cpu_seconds(pid);
    let sw0 = status_field(pid, "voluntary_ctxt_switches");
    let mut idle_rss_kb = 0;
    for _ in 0..seconds {
        thread::sleep(Duration::from_secs(1));
        idle_rss_kb = idle_rss_kb.max(status_field(pid, "VmRSS"));
    }
    let idle_cpu = cpu_seconds(pid) - cpu0;
    let idle_switches = status_field(pid, "voluntary_ctxt_switches") - sw0;

    let cpu1 = cpu_seconds(pid);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut opened = 0u64;
    let mut busy_rss_kb = 0;
    while Instant::now() < end {
        let tick = Instant::now();
        for _ in 0..50 {
            drop(TcpListener::bind("127.0.0.1:0")?);
            opened += 1;
        }
        busy_rss_kb = busy_rss_kb.max(status_field(pid, "VmRSS"));
        // 50 listeners per 100 ms: 1,000 events per second.
        thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
    }
    let busy_cpu = cpu_seconds(pid) - cpu1;
    let peak_kb = status_field(pid, "VmHWM");
    w.stop();
    let mib = |kb: u64| kb as f64 / 1024.0;
    Ok(json!({
        "seconds": seconds,
        "idle_cpu_s": idle_cpu,
        "idle_voluntary_switches": idle_switches,
        "idle_rss_mib": mib(idle_rss_kb),
        "events_per_s": (opened * 2) as f64 / seconds as f64,
        "busy_cpu_s": busy_cpu,
        "busy_cpu_percent": busy_cpu / seconds as f64 * 100.0,
        "busy_rss_mib": mib(busy_rss_kb),
        "startup_peak_rss_mib": mib(startup_peak_kb),
        "peak_rss_mib": mib(peak_kb),
    }))
}

fn program_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// After SIGTERM and after SIGKILL, does `bpftool prog show` still list
/// any of the watcher's programs? Waits up to 5 s for the kernel to free
/// them.
pub fn cleanup(root: &Path) -> Result<Value> {
    let mut out = Vec::new();
    use rustix::process::Signal;
    for (name, sig) in [("SIGTERM", Signal::Term), ("SIGKILL", Signal::Kill)] {
        let mut w = start_watch(root)?;
        let ids: Vec<u32> = prog_stats(w.child.id()).iter().map(|p| p.id).collect();
        super::util::signal(&w.child, sig);
        let _ = w.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left: Vec<u32> = ids.clone();
        while !left.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            left.retain(|id| program_exists(*id));
        }
        out.push(json!({ "signal": name, "programs": ids.len(), "left_after": left.len() }));
    }
    Ok(Value::Array(out))
}
