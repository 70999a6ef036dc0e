//! Small tools shared by the benchmarks: clocks, statistics, processes.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes.
pub fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The value at quantile `q` (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// Lifts the open-files limit to its hard maximum (scan benchmarks hold
/// tens of thousands of sockets).
pub fn raise_nofile() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
}

/// Sends `sig` to a child (gone already: nothing to do).
pub fn signal(child: &Child, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A child whose stdout lines arrive, each with its arrival time, on a
/// channel read by a thread (so reading never waits on our own work).
pub struct Lines {
    pub child: Child,
    pub rx: Receiver<(u64, String)>,
    /// portwatch's `bench-stages` lines from stderr (`PORTWATCH_BENCH_STAGES`),
    /// complete once the stderr reader below has ended.
    pub stages: Arc<Mutex<Vec<String>>>,
    pub stderr_reader: thread::JoinHandle<()>,
}

impl Lines {
    pub fn spawn(cmd: &mut Command) -> Result<Lines> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((mono_ns(), line)).is_err() {
                    break;
                }
            }
        });
        // Drain stderr so the child never blocks on it, keeping what
        // portwatch says of its stages.
        let stderr = child.stderr.take().context("stderr")?;
        let stages = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&stages);
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("bench-stages ")
                    && let Ok(mut v) = kept.lock()
                {
                    v.push(rest.to_string());
                }
            }
        });
        Ok(Lines {
            child,
            rx,
            stages,
            stderr_reader,
        })
    }

    /// Waits for a stdout line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((_, line)) if line.contains(needle) => return Ok(()),
                Ok(_) => continue,
                Err(_) => bail!("no line with {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Waits for a stdout line `KEY VALUE` and returns the value.
    pub fn wait_for_value(&self, key: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((_, line)) => {
                    if let Some((k, v)) = line.split_once(' ')
                        && k == key
                    {
                        return Ok(v.to_string());
                    }
                }
                Err(_) => bail!("no {key:?} line within {timeout:?}"),
            }
        }
    }

    pub fn stop(mut self) {
        stop_child(&mut self.child);
    }
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are 11 and 12 after the comm.
    let hz = rustix::param::clock_ticks_per_second() as f64;
    (ticks(11) + ticks(12)) / hz
}

/// A field of /proc/PID/status, as a number (kB for memory fields).
pub fn status_field(pid: u32, name: &str) -> u64 {
    status_field_of(&format!("/proc/{pid}/status"), name)
}

/// A number from a `status` file (a process's or one of its threads').
pub fn status_field_of(path: &str, name: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What the kernel counted for one program (`kernel.bpf_stats_enabled`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProgStats {
    pub id: u32,
    /// The program's name as the kernel keeps it (15 bytes at most).
    pub name: String,
    /// `prog_type` from fdinfo (e.g. 26 tracing, 13 sock_ops).
    pub prog_type: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Program id -> name, from `bpftool prog show`.
fn prog_names() -> std::collections::HashMap<u64, String> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_string())))
        .collect()
}

/// The programs process `pid` holds, from its fdinfo.
pub fn prog_stats(pid: u32) -> Vec<ProgStats> {
    let names = prog_names();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(ty), Some(t), Some(n)) = (
            get("prog_id:"),
            get("prog_type:"),
            get("run_time_ns:"),
            get("run_cnt:"),
        ) {
            out.push(ProgStats {
                id: id as u32,
                name: names.get(&id).cloned().unwrap_or_default(),
                prog_type: ty as u32,
                run_time_ns: t,
                run_cnt: n,
            });
        }
    }
    out.sort();
    out.dedup_by_key(|p| p.id);
    out
}

pub fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("sh").args(["-c", cmd]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Ends a monitor: SIGINT (bpftrace only checks its exit flag when events
/// arrive after a SIGTERM, and may wait for ever), then SIGKILL after 5 s.
pub fn stop_child(child: &mut Child) {
    signal(child, rustix::process::Signal::Int);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Turns the kernel's per-program run counting (`kernel.bpf_stats_enabled`)
/// on or off.
pub fn set_bpf_stats(on: bool) {
    let _ = std::fs::write(
        "/proc/sys/kernel/bpf_stats_enabled",
        if on { "1" } else { "0" },
    );
}

/// Each program that ran: its name, type, runs, ns per run, and runs per
/// unit of work (`per_key`, out of `units`).
pub fn programs_json(stats: &[ProgStats], per_key: &str, units: f64) -> Vec<serde_json::Value> {
    stats
        .iter()
        .filter(|p| p.run_cnt > 0)
        .map(|p| {
            let mut v = serde_json::json!({
                "name": p.name,
                "type": p.prog_type,
                "run_cnt": p.run_cnt,
                "ns_per_run": p.run_time_ns as f64 / p.run_cnt as f64,
            });
            v[per_key] = (p.run_cnt as f64 / units).into();
            v
        })
        .collect()
}

/// `portwatch watch --json` with debug logging into `log` (the debug lines
/// the benchmarks read), and its lines, parsed, as they come.
pub fn watch_json_debug(
    portwatch: &std::path::Path,
    log: &std::path::Path,
) -> Result<(Child, std::sync::mpsc::Receiver<serde_json::Value>)> {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(portwatch)
        .args(["watch", "--json"])
        .env("RUST_LOG", "portwatch=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().context("watch stdout")?;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    Ok((child, lines))
}
