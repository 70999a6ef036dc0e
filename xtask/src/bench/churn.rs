//! Hot-path cost: loopback TCP connection churn with and without a
//! monitor, and the kernel's own per-run time of each BPF program.

use std::{
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{
    monitors::BPFTRACE_LISTEN,
    util::{Lines, median, prog_stats, programs_json, set_bpf_stats},
};

/// Close without TIME_WAIT, so a long churn never runs out of ports.
fn linger_zero(socket: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(socket, Some(Duration::ZERO));
}

/// Pins the calling thread to `cpu` when the machine has it.
pub(super) fn pin_to_cpu(cpu: usize) {
    if thread::available_parallelism().map_or(1, |n| n.get()) <= cpu {
        return;
    }
    let mut set = rustix::process::CpuSet::new();
    set.set(cpu);
    let _ = rustix::process::sched_setaffinity(None, &set);
}

/// The churn itself (`xtask churn SECONDS`): a server thread accepts and
/// closes, the client connects and closes, as fast as they can. Prints
/// the connections per second.
pub fn churn_main(seconds: f64) -> Result<()> {
    let server = TcpListener::bind("127.0.0.1:0")?;
    // A deep accept queue: a dropped SYN would stall the client for the
    // 1 s retransmit and measure that instead of the hot path.
    // listen(2) again on a listening socket only resizes its backlog.
    rustix::net::listen(&server, 4096)?;
    let addr = server.local_addr()?;
    // Server and client each on a core of their own, the same in every
    // run: left to the scheduler, their placement changes from run to run
    // and moves the rate by more than the monitors do.
    thread::spawn(move || {
        pin_to_cpu(0);
        for _conn in server.incoming().flatten() {}
    });
    pin_to_cpu(1);
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < end {
        // A reset from the server's abortive close can race the handshake:
        // count only connections that were made.
        if let Ok(c) = TcpStream::connect(addr) {
            linger_zero(&c);
            drop(c);
            n += 1;
        }
    }
    println!("{:.0}", n as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

/// The syscall loop (`xtask syscalls SECONDS`): getppid() as fast as one
/// core allows. Prints the ns per call. A monitor on a syscall tracepoint
/// makes every syscall of the host take the kernel's traced exit path,
/// which no program's run time shows.
pub fn syscalls_main(seconds: f64) -> Result<()> {
    pin_to_cpu(1);
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < end {
        for _ in 0..1024 {
            std::hint::black_box(rustix::process::getppid());
        }
        n += 1024;
    }
    println!("{:.2}", start.elapsed().as_nanos() as f64 / n as f64);
    Ok(())
}

/// Runs the worker's `task` for `seconds`; the figure it printed.
fn run_worker(task: &str, seconds: f64) -> Result<f64> {
    let exe = super::worker_exe()?;
    let out = Command::new(exe)
        .args([task, &seconds.to_string()])
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("{task} printed no figure"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    None,
    /// The default: tp_btf, the listen confirmation and the UDP programs.
    TpBtf,
    /// The default without the UDP programs (`--proto tcp`): what their
    /// release hook, which runs for every socket, costs TCP.
    TpBtfTcpOnly,
    /// The default with a UDP port bound in the churn's own cgroup: the
    /// release program then runs there, at every socket's release (the
    /// worst case; elsewhere a connection runs no release program).
    TpBtfUdpHere,
    /// tp_btf alone: what the listen confirmation costs.
    TpBtfNoCallback,
    Tracepoint,
    Bpftrace,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::None => "no monitor",
            Mode::TpBtf => "portwatch (tp_btf + listen confirmation + UDP)",
            Mode::TpBtfTcpOnly => "portwatch --proto tcp (no UDP programs)",
            Mode::TpBtfUdpHere => "portwatch, a UDP port bound in the churn's cgroup",
            Mode::TpBtfNoCallback => "portwatch (tp_btf alone)",
            Mode::Tracepoint => "portwatch (tracepoint)",
            Mode::Bpftrace => "bpftrace",
        }
    }
}

fn start(mode: Mode, root: &Path) -> Result<Option<Lines>> {
    let bin = super::portwatch_bin(root);
    let lines = match mode {
        Mode::None => return Ok(None),
        Mode::TpBtf | Mode::TpBtfUdpHere => {
            Lines::spawn(Command::new(&bin).args(["watch", "--json", "--hook", "tp-btf"]))?
        }
        Mode::TpBtfTcpOnly => Lines::spawn(
            Command::new(&bin).args(["watch", "--json", "--hook", "tp-btf", "--proto", "tcp"]),
        )?,
        Mode::TpBtfNoCallback => Lines::spawn(Command::new(&bin).args([
            "watch",
            "--json",
            "--hook",
            "tp-btf",
            "--listen-callback",
            "off",
        ]))?,
        Mode::Tracepoint => {
            Lines::spawn(Command::new(&bin).args(["watch", "--json", "--hook", "tracepoint"]))?
        }
        Mode::Bpftrace => {
            Lines::spawn(Command::new("bpftrace").args(["-B", "line", "-e", BPFTRACE_LISTEN]))?
        }
    };
    let ready = if mode == Mode::Bpftrace {
        "Attaching"
    } else {
        "\"ready\""
    };
    lines.wait_for(ready, Duration::from_secs(60))?;
    Ok(Some(lines))
}

/// Runs every mode once per round for `rounds` rounds of `seconds` each,
/// the order rotated each round so that no mode always runs first or
/// last; then one run per monitor with `kernel.bpf_stats_enabled` for the
/// per-run cost of each of its programs, and their kernel time per
/// connection. A mode's ratio is the median over rounds of its rate over
/// the same round's no-monitor rate: the machine's drift between rounds
/// cancels out.
pub fn hot_path(root: &Path, rounds: usize, seconds: f64) -> Result<Value> {
    let modes = [
        Mode::None,
        Mode::TpBtf,
        Mode::TpBtfTcpOnly,
        Mode::TpBtfNoCallback,
        Mode::Tracepoint,
        Mode::Bpftrace,
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut syscall_ns: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    set_bpf_stats(false);
    for round in 0..rounds {
        for k in 0..modes.len() {
            let i = (k + round) % modes.len();
            let mon = start(modes[i], root)?;
            rates[i].push(run_worker("churn", seconds)?);
            syscall_ns[i].push(run_worker("syscalls", seconds.min(1.0))?);
            if let Some(m) = mon {
                m.stop();
            }
        }
    }
    let mut throughput = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let mut ratios: Vec<f64> = rates[i]
            .iter()
            .zip(&rates[0])
            .map(|(r, base)| r / base)
            .collect();
        ratios.sort_by(f64::total_cmp);
        throughput.push(json!({
            "mode": mode.name(),
            "conn_per_s": median(&rates[i]),
            "ratio": median(&ratios),
            "ratio_min": ratios.first(),
            "ratio_max": ratios.last(),
            "runs": rates[i],
            "syscall_ns": median(&syscall_ns[i]),
            "syscall_ns_runs": syscall_ns[i],
        }));
    }

    let mut per_run = Vec::new();
    let with_udp = [Mode::TpBtfUdpHere];
    for mode in modes[1..].iter().chain(&with_udp) {
        let mon = start(*mode, root)?.context("a monitor")?;
        // This process shares the churn worker's cgroup: a port bound
        // here has the release program attached there.
        let _udp = if *mode == Mode::TpBtfUdpHere {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
            let port = udp.local_addr()?.port();
            mon.wait_for(&format!("\"port\":{port},"), Duration::from_secs(10))?;
            Some(udp)
        } else {
            None
        };
        set_bpf_stats(true);
        let rate = run_worker("churn", seconds)?;
        let stats = prog_stats(mon.child.id());
        set_bpf_stats(false);
        mon.stop();
        let connections = (rate * seconds).max(1.0);
        let programs = programs_json(&stats, "runs_per_connection", connections);
        let total_ns: u64 = stats.iter().map(|p| p.run_time_ns).sum();
        per_run.push(json!({
            "mode": mode.name(),
            "programs": programs,
            "ns_per_connection": total_ns as f64 / connections,
        }));
    }
    Ok(
        json!({ "throughput": throughput, "per_run": per_run, "seconds_per_run": seconds, "rounds": rounds }),
    )
}
