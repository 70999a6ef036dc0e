//! UDP: a churn of socket(), bind() to port 0 and close() from two
//! processes with no monitor, with portwatch and with a 1 s `ss -lun`
//! poller; portwatch's cost decomposed by stage (programs that return at
//! once, plus the owner map, plus ring records read and dropped, the whole
//! monitor), each stage's kernel run time and reader wake-ups; portwatch
//! in its aggregate mode (`--udp-aggregate`), with the binds its
//! summaries counted; bind() to event line latency; completeness of
//! sockets living microseconds.

use std::{
    io::{BufRead as _, BufReader},
    net::UdpSocket,
    path::Path,
    process::{Child, ChildStderr, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{
    churn::pin_to_cpu,
    latency,
    monitors::{self, Proto, Tool},
    util::{median, prog_stats, programs_json, set_bpf_stats, stop_child},
};

/// One churning process (`xtask udp-churn SECONDS CPU`): socket, bind to
/// 127.0.0.1 port 0, close, as fast as it can, on core CPU. Prints the
/// sockets per second and how many it bound.
pub fn udp_churn_main(seconds: f64, cpu: usize) -> Result<()> {
    pin_to_cpu(cpu);
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < end {
        drop(UdpSocket::bind("127.0.0.1:0")?);
        n += 1;
    }
    println!("{:.0} {n}", n as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

/// Two churning processes at once, one per core: their summed rate.
fn run_churn(seconds: f64) -> Result<f64> {
    Ok(run_churn_counted(seconds)?.0)
}

/// [`run_churn`], and the sockets bound.
fn run_churn_counted(seconds: f64) -> Result<(f64, u64)> {
    let exe = super::worker_exe()?;
    let children: Vec<_> = (0..2)
        .map(|cpu| {
            Command::new(&exe)
                .args(["udp-churn", &seconds.to_string(), &cpu.to_string()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let (mut total, mut sockets) = (0.0, 0);
    for child in children {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let (Some(rate), Some(n)) = (words.next(), words.next()) else {
            bail!("udp-churn printed no rate and count: {text:?}");
        };
        total += rate.parse::<f64>()?;
        sockets += n.parse::<u64>()?;
    }
    Ok((total, sockets))
}

/// What watches a churn round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Nothing,
    /// portwatch with its UDP path cut at a stage
    /// (`PORTWATCH_BENCH_UDP_STAGE`), or whole (`None`).
    Portwatch(Option<&'static str>),
    /// portwatch with `--udp-aggregate` (1 s).
    Aggregate,
    Poller,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Nothing => "no monitor",
            Self::Portwatch(Some("return")) => "programs attached, returning at once",
            Self::Portwatch(Some("owner")) => "+ the owner map (bind inserts, release deletes)",
            Self::Portwatch(Some(_)) => "+ ring records, read and dropped unread",
            Self::Portwatch(None) => "portwatch (the whole monitor)",
            Self::Aggregate => "portwatch --udp-aggregate",
            Self::Poller => Tool::Poller.name(),
        }
    }
}

const MODES: [Mode; 7] = [
    Mode::Nothing,
    Mode::Portwatch(Some("return")),
    Mode::Portwatch(Some("owner")),
    Mode::Portwatch(Some("ring")),
    Mode::Portwatch(None),
    Mode::Aggregate,
    Mode::Poller,
];

/// portwatch as in the churn rounds: every line goes to /dev/null, so the
/// rounds measure the monitor and not a reader parsing 100,000s of lines a
/// second on the same two cores. `--stats` says on exit how many kernel
/// events it received and how many the ring buffer dropped.
struct Quiet {
    child: Child,
    stderr: BufReader<ChildStderr>,
    /// In the aggregate mode: the binds its `udp_summary` lines counted so
    /// far (its lines are read, not thrown away).
    counted: Option<Arc<AtomicU64>>,
}

/// (events received, events dropped) by a quiet portwatch run.
type Delivered = (u64, u64);

impl Quiet {
    fn start(root: &Path, stage: Option<&str>) -> Result<Self> {
        Self::start_with(root, stage, false)
    }

    fn start_with(root: &Path, stage: Option<&str>, aggregate: bool) -> Result<Self> {
        let mut cmd = Command::new(super::portwatch_bin(root));
        if let Some(stage) = stage {
            cmd.env("PORTWATCH_BENCH_UDP_STAGE", stage);
        }
        cmd.args([
            "watch",
            "--proto",
            "udp",
            "--stats",
            "--resync-interval",
            "0",
        ]);
        if aggregate {
            cmd.arg("--udp-aggregate");
        }
        let mut child = cmd
            .stdout(if aggregate {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start portwatch")?;
        let counted = match child.stdout.take() {
            Some(out) => {
                let counted = Arc::new(AtomicU64::new(0));
                let sum = counted.clone();
                std::thread::spawn(move || {
                    // Text lines (the ready line is then on stderr, as
                    // `start` waits for it): `... bound N UDP ports ...`.
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        let mut words = line.split(' ').skip_while(|w| *w != "bound").skip(1);
                        if let (Some(n), Some("UDP")) = (words.next(), words.next()) {
                            sum.fetch_add(n.parse().unwrap_or(0), Ordering::Relaxed);
                        }
                    }
                });
                Some(counted)
            }
            None => None,
        };
        let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
        let mut line = String::new();
        // Its ready line; the pipe closing first means it failed.
        while !line.contains("watching") {
            line.clear();
            if stderr.read_line(&mut line)? == 0 {
                bail!("portwatch exited before it was ready");
            }
        }
        Ok(Self {
            child,
            stderr,
            counted,
        })
    }

    /// Waits (up to 5 s: a few settle intervals) until the summaries
    /// counted `binds`; the binds they counted.
    fn counted_up_to(&self, binds: u64) -> u64 {
        let Some(counted) = &self.counted else {
            return 0;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while counted.load(Ordering::Relaxed) < binds && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        counted.load(Ordering::Relaxed)
    }

    /// Stops it and reads its `--stats` line.
    fn stop(mut self) -> Result<Delivered> {
        stop_child(&mut self.child);
        for line in self.stderr.lines() {
            let line = line?;
            let mut words = line.split_whitespace().skip(1);
            if let (Some(events), Some("events,"), Some(dropped), Some("dropped,")) =
                (words.next(), words.next(), words.next(), words.next())
            {
                return Ok((events.parse()?, dropped.parse()?));
            }
        }
        bail!("portwatch printed no stats line")
    }
}

/// One churn run in `mode`: sockets per second, what a whole portwatch
/// run delivered, and the fraction of binds the aggregate mode counted.
fn churn_with(
    mode: Mode,
    root: &Path,
    seconds: f64,
) -> Result<(f64, Option<Delivered>, Option<f64>)> {
    match mode {
        Mode::Nothing => Ok((run_churn(seconds)?, None, None)),
        Mode::Aggregate => {
            let pw = Quiet::start_with(root, None, true)?;
            let (rate, sockets) = run_churn_counted(seconds)?;
            let counted = pw.counted_up_to(sockets);
            pw.stop()?;
            Ok((rate, None, Some(counted as f64 / sockets.max(1) as f64)))
        }
        Mode::Portwatch(stage) => {
            let pw = Quiet::start(root, stage)?;
            let rate = run_churn(seconds)?;
            let delivered = pw.stop()?;
            Ok((rate, stage.is_none().then_some(delivered), None))
        }
        Mode::Poller => {
            let mon = monitors::start_for(Tool::Poller, root, Proto::Udp)?;
            let rate = run_churn(seconds)?;
            mon.stop();
            Ok((rate, None, None))
        }
    }
}

/// Context switches of every thread of `pid` so far: how often it slept
/// and was woken.
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse::<u32>().ok())
        .map(|tid| {
            super::util::status_field_of(
                &format!("/proc/{pid}/task/{tid}/status"),
                "voluntary_ctxt_switches",
            )
        })
        .sum()
}

/// One churn run with portwatch cut at `stage` and bpf_stats on: its
/// programs' run time per socket, and the reader's wake-ups per second.
fn stage_cost(
    root: &Path,
    stage: Option<&'static str>,
    seconds: f64,
    aggregate: bool,
) -> Result<Value> {
    let pw = Quiet::start_with(root, stage, aggregate)?;
    let pid = pw.child.id();
    set_bpf_stats(true);
    let before = switches(pid);
    let rate = run_churn(seconds)?;
    let woken = switches(pid).saturating_sub(before);
    let stats = prog_stats(pid);
    set_bpf_stats(false);
    pw.stop()?;
    let sockets = (rate * seconds).max(1.0);
    let total_ns: u64 = stats.iter().map(|p| p.run_time_ns).sum();
    let mode = if aggregate {
        Mode::Aggregate
    } else {
        Mode::Portwatch(stage)
    };
    Ok(json!({
        "mode": mode.name(),
        "sockets_per_s": rate,
        "ns_per_socket": total_ns as f64 / sockets,
        "wakeups_per_s": woken as f64 / seconds,
        "programs": programs_json(&stats, "runs_per_socket", sockets),
    }))
}

/// The churn for every mode in `rounds` rotated rounds of `seconds`, one
/// more portwatch run with bpf_stats, then latency and completeness.
pub fn udp(root: &Path, rounds: usize, seconds: f64, lat_n: usize, comp_n: usize) -> Result<Value> {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    // Events portwatch received and dropped per socket churned, each round.
    let (mut received, mut dropped) = (Vec::new(), Vec::new());
    // Binds the aggregate mode's summaries counted per bind made, each round.
    let mut counted = Vec::new();
    set_bpf_stats(false);
    for round in 0..rounds {
        for k in 0..MODES.len() {
            let i = (k + round) % MODES.len();
            let (rate, delivered, fraction) = churn_with(MODES[i], root, seconds)?;
            rates[i].push(rate);
            counted.extend(fraction);
            if let Some((w, d)) = delivered {
                let sockets = (rate * seconds).max(1.0);
                received.push(w as f64 / sockets);
                dropped.push(d as f64 / sockets);
            }
        }
    }
    let throughput: Vec<Value> = MODES
        .iter()
        .enumerate()
        .map(|(i, mode)| {
            let mut ratios: Vec<f64> = rates[i]
                .iter()
                .zip(&rates[0])
                .map(|(r, base)| r / base)
                .collect();
            ratios.sort_by(f64::total_cmp);
            json!({
                "mode": mode.name(),
                "sockets_per_s": median(&rates[i]),
                "ratio": median(&ratios),
                "ratio_min": ratios.first(),
                "ratio_max": ratios.last(),
            })
        })
        .collect();

    // Each stage once more with bpf_stats on (which adds to every run).
    let stages: Vec<Value> = MODES
        .iter()
        .filter_map(|m| match m {
            Mode::Portwatch(stage) => Some(*stage),
            _ => None,
        })
        .map(|stage| stage_cost(root, stage, seconds, false))
        .chain(std::iter::once(stage_cost(root, None, seconds, true)))
        .collect::<Result<_>>()?;

    let tools = [Tool::Portwatch, Tool::Poller];
    let latency = latency::latency_rounds(&tools, root, Proto::Udp, lat_n, 1)?;
    let completeness: Vec<Value> = tools
        .iter()
        .map(|t| latency::completeness(*t, root, Proto::Udp, comp_n))
        .collect::<Result<_>>()?;
    Ok(json!({
        "rounds": rounds,
        "seconds_per_run": seconds,
        "throughput": throughput,
        "events_received_per_socket": median(&received),
        "events_dropped_per_socket": median(&dropped),
        "aggregate_binds_counted": counted.iter().copied().fold(f64::INFINITY, f64::min),
        "stages": stages,
        "latency": latency,
        "completeness": completeness,
    }))
}
