//! `cargo xtask bench`: portwatch against its peers on the same workloads,
//! in one run. Prints a table and writes target/bench/results.json.

mod churn;
mod context;
mod cost;
mod exposure;
mod flood;
mod journal;
mod latency;
mod monitors;
mod otlp;
mod report;
mod scan;
mod storm;
mod tui;
mod udp;
mod util;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

pub use churn::{churn_main, syscalls_main};
pub use scan::hold_child_main;
pub use udp::udp_churn_main;

use monitors::Tool;

/// Debian packages the peers (and the sections' workloads) come from.
fn ensure_peers() -> Result<()> {
    let need: Vec<&str> = [
        ("bpftrace", "bpftrace"),
        ("bpftool", "bpftool"),
        ("ss", "iproute2"),
        ("lsof", "lsof"),
        ("tmux", "tmux"),
        // The exposure section writes its rulesets with nft.
        ("nft", "nftables"),
    ]
    .into_iter()
    .filter(|(cmd, _)| {
        !Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .map(|(_, pkg)| pkg)
    .collect();
    if need.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", need.join(" "));
    crate::check(
        Command::new("apt-get").arg("update").arg("-qq"),
        "apt-get update",
    )?;
    crate::check(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&need)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

/// bpftrace attaches to the classic tracepoints, which need tracefs; a
/// freshly booted host does not mount it (portwatch itself uses BTF
/// tracepoints and mounts it only when told to use the classic ones).
fn ensure_tracefs() -> Result<()> {
    const TRACING: &str = "/sys/kernel/tracing";
    if Path::new(TRACING).join("events").is_dir() {
        return Ok(());
    }
    eprintln!("xtask: mounting tracefs on {TRACING} for bpftrace");
    crate::check(
        Command::new("mount").args(["-t", "tracefs", "nodev", TRACING]),
        "mount -t tracefs",
    )
}

pub struct Options {
    pub quick: bool,
    /// Empty: every section.
    pub only: Vec<Section>,
    /// Another portwatch binary to measure (an older build, say) instead
    /// of target/release/portwatch.
    pub portwatch: Option<PathBuf>,
}

/// The portwatch binary the benchmarks run: `--portwatch`, else this
/// tree's release build.
static PORTWATCH: OnceLock<PathBuf> = OnceLock::new();

/// This program as the benchmark's worker processes run it (churn,
/// holders): a copy of the running binary, taken at start. The build
/// before the benchmark may have replaced `target/release/xtask` under
/// the running one (`cargo xtask` and `cargo build` build it with other
/// features), and `current_exe()` then names a deleted file; the copy is
/// of the running program itself (`/proc/self/exe`).
static WORKER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn worker_exe() -> Result<PathBuf> {
    WORKER
        .get()
        .cloned()
        .context("the benchmark's worker program was not set up")
}

/// Copies the running program to `target/bench/xtask-worker`.
fn set_up_worker(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let worker = dir.join("xtask-worker");
    // A new file each run: one still running from an aborted run is not
    // written into.
    let _ = std::fs::remove_file(&worker);
    std::fs::copy("/proc/self/exe", &worker).context("cannot copy the running xtask")?;
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755))?;
    let _ = WORKER.set(worker);
    Ok(())
}

fn portwatch_bin(root: &Path) -> PathBuf {
    PORTWATCH
        .get()
        .cloned()
        .unwrap_or_else(|| root.join("target/release/portwatch"))
}

/// The parts of the benchmark, each runnable on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Latency,
    Completeness,
    Churn,
    Storm,
    Scan,
    Cost,
    Cleanup,
    Flood,
    Tui,
    Udp,
    Exposure,
    Context,
    Journal,
    Otlp,
}

impl Options {
    fn wants(&self, s: Section) -> bool {
        self.only.is_empty() || self.only.contains(&s)
    }
}

pub fn run(root: &Path, opts: &Options) -> Result<()> {
    if !util::is_root() {
        bail!(
            "the benchmarks load eBPF programs and read every process: run `sudo -E cargo xtask bench`"
        );
    }
    ensure_peers()?;
    ensure_tracefs()?;
    set_up_worker(root)?;
    util::raise_nofile();
    if let Some(p) = &opts.portwatch {
        let _ = PORTWATCH.set(p.clone());
    }
    let (lat_n, comp_n, rounds, churn_s, sizes, cost_s): (usize, usize, usize, f64, &[usize], u64) =
        if opts.quick {
            (200, 2000, 2, 2.0, &[1000, 10000], 10)
        } else {
            (500, 10000, 12, 2.5, &[1000, 10000, 50000], 60)
        };
    let tools = [Tool::Portwatch, Tool::Bpftrace, Tool::Poller];

    let mut results = serde_json::Map::new();
    if opts.wants(Section::Latency) {
        let rounds = if opts.quick { 1 } else { 4 };
        eprintln!("bench: latency ({rounds} rounds of {lat_n} listeners per tool)");
        // And the unprivileged path: a root daemon's socket, read by
        // `watch --connect` as user nobody.
        let with_socket = [
            Tool::Portwatch,
            Tool::PortwatchSocket,
            Tool::Bpftrace,
            Tool::Poller,
        ];
        let lat = latency::latency_rounds(&with_socket, root, monitors::Proto::Tcp, lat_n, rounds)?;
        results.insert("latency".into(), lat.into());
    }
    if opts.wants(Section::Completeness) {
        eprintln!("bench: completeness ({comp_n} short-lived listeners per tool)");
        let comp: Vec<Value> = tools
            .iter()
            .map(|t| latency::completeness(*t, root, monitors::Proto::Tcp, comp_n))
            .collect::<Result<_>>()?;
        results.insert("completeness".into(), comp.into());
    }
    if opts.wants(Section::Churn) {
        eprintln!("bench: hot path ({rounds} rounds of {churn_s} s churn per mode)");
        results.insert("hot_path".into(), churn::hot_path(root, rounds, churn_s)?);
    }
    if opts.wants(Section::Storm) {
        eprintln!("bench: loss under a storm (4 KiB ring buffer)");
        let per_worker = if opts.quick { 1000 } else { 2000 };
        results.insert("storm".into(), storm::storm(root, 4, per_worker)?);
    }
    if opts.wants(Section::Scan) {
        eprintln!("bench: scan cost");
        results.insert("scan".into(), scan::scan_cost(root, sizes, 50, 5)?);
    }
    if opts.wants(Section::Cost) {
        eprintln!("bench: daemon cost ({cost_s} s idle, {cost_s} s at 1,000 events/s)");
        results.insert("daemon_cost".into(), cost::daemon_cost(root, cost_s)?);
    }
    if opts.wants(Section::Flood) {
        let (waves, probes) = if opts.quick { (4, 100) } else { (10, 300) };
        eprintln!(
            "bench: a flood of listen() without bind() from user nobody (waves of 3,000, {probes} root listeners meanwhile)"
        );
        results.insert("flood".into(), flood::flood(root, waves, 3000, probes)?);
    }
    if opts.wants(Section::Tui) {
        let (n, probes, idle) = if opts.quick {
            (2000, 10, 5)
        } else {
            (10000, 30, 10)
        };
        eprintln!("bench: the TUI with {n} listeners, in tmux");
        results.insert("tui".into(), tui::tui(root, n, probes, idle)?);
    }
    if opts.wants(Section::Udp) {
        let (rounds, lat_n, comp_n) = if opts.quick {
            (2, 200, 2000)
        } else {
            (8, 500, 10000)
        };
        eprintln!(
            "bench: UDP ({rounds} rounds of {churn_s} s socket/bind/close churn per mode, {lat_n} binds for latency, {comp_n} microsecond sockets)"
        );
        results.insert(
            "udp".into(),
            udp::udp(root, rounds, churn_s, lat_n, comp_n)?,
        );
    }
    if opts.wants(Section::Exposure) {
        let changes = if opts.quick { 10 } else { 40 };
        eprintln!(
            "bench: exposure (1,000 nftables rules, 1,000 listeners, {changes} rule changes)"
        );
        results.insert(
            "exposure".into(),
            exposure::exposure(root, 1000, 1000, changes)?,
        );
    }
    if opts.wants(Section::Context) {
        let new = if opts.quick { 50 } else { 200 };
        eprintln!(
            "bench: owner contexts (1,000 processes with 10 listeners each at start, {new} new processes)"
        );
        results.insert("context".into(), context::context(root, 1000, 10, new)?);
    }
    if opts.wants(Section::Journal) {
        let (events, rounds) = if opts.quick {
            (1_000_000, 1)
        } else {
            (10_000_000, 3)
        };
        eprintln!(
            "bench: journal (the storm with and without it, {rounds} rounds; {events} events written, then history --at)"
        );
        results.insert("journal".into(), journal::journal(root, events, rounds)?);
    }
    if opts.wants(Section::Otlp) {
        let (rounds, per) = if opts.quick { (1, 2500) } else { (3, 10_000) };
        eprintln!(
            "bench: OTLP export cost ({rounds} rounds of {} events with and without --otlp)",
            4 * per * 2
        );
        results.insert("otlp".into(), otlp::otlp(root, 4, per, rounds)?);
    }
    if opts.wants(Section::Cleanup) {
        eprintln!("bench: cleanup");
        results.insert("cleanup".into(), cost::cleanup(root)?);
    }

    let machine = json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": util::sh("uname -r")?.trim(),
        "cpu": util::sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")?.trim(),
    });
    results.insert("machine".into(), machine);
    results.insert("quick".into(), opts.quick.into());
    let results = Value::Object(results);
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?).context("write results")?;
    println!("{}", report::tables(&results));
    eprintln!("bench: figures written to {}", path.display());
    Ok(())
}
