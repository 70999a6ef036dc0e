//! UDP: a churn of socket(), bind() to port 0 and close() from two
//! processes with no monitor, with portwatch and with a 1 s `ss -lun`
//! poller; the kernel's run time of portwatch's programs meanwhile; bind()
//! to event line latency; completeness of sockets living microseconds.

use std::{
    net::UdpSocket,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{
    churn::pin_to_cpu,
    latency,
    monitors::{self, Proto, Running, Tool},
    util::{median, prog_stats},
};

/// One churning process (`xtask udp-churn SECONDS CPU`): socket, bind to
/// 127.0.0.1 port 0, close, as fast as it can, on core CPU. Prints the
/// sockets per second.
pub fn udp_churn_main(seconds: f64, cpu: usize) -> Result<()> {
    pin_to_cpu(cpu);
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < end {
        drop(UdpSocket::bind("127.0.0.1:0")?);
        n += 1;
    }
    println!("{:.0}", n as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

/// Two churning processes at once, one per core: their summed rate.
fn run_churn(seconds: f64) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..2)
        .map(|cpu| {
            Command::new(&exe)
                .args(["udp-churn", &seconds.to_string(), &cpu.to_string()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut total = 0.0;
    for child in children {
        let out = child.wait_with_output()?;
        total += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<f64>()
            .context("udp-churn printed no rate")?;
    }
    Ok(total)
}

const TOOLS: [Option<Tool>; 3] = [None, Some(Tool::Portwatch), Some(Tool::Poller)];

fn start(tool: Option<Tool>, root: &Path) -> Result<Option<Running>> {
    tool.map(|t| monitors::start_for(t, root, Proto::Udp))
        .transpose()
}

fn set_bpf_stats(on: bool) {
    let _ = std::fs::write(
        "/proc/sys/kernel/bpf_stats_enabled",
        if on { "1" } else { "0" },
    );
}

/// The churn for every mode in `rounds` rotated rounds of `seconds`, one
/// more portwatch run with bpf_stats, then latency and completeness.
pub fn udp(root: &Path, rounds: usize, seconds: f64, lat_n: usize, comp_n: usize) -> Result<Value> {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); TOOLS.len()];
    set_bpf_stats(false);
    for round in 0..rounds {
        for k in 0..TOOLS.len() {
            let i = (k + round) % TOOLS.len();
            let mon = start(TOOLS[i], root)?;
            rates[i].push(run_churn(seconds)?);
            if let Some(m) = mon {
                m.stop();
            }
        }
    }
    let throughput: Vec<Value> = TOOLS
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let mut ratios: Vec<f64> = rates[i]
                .iter()
                .zip(&rates[0])
                .map(|(r, base)| r / base)
                .collect();
            ratios.sort_by(f64::total_cmp);
            json!({
                "mode": tool.map_or("no monitor", Tool::name),
                "sockets_per_s": median(&rates[i]),
                "ratio": median(&ratios),
                "ratio_min": ratios.first(),
                "ratio_max": ratios.last(),
            })
        })
        .collect();

    let mon = monitors::start_for(Tool::Portwatch, root, Proto::Udp)?;
    let pid = mon.pid().context("portwatch runs as a process")?;
    set_bpf_stats(true);
    let rate = run_churn(seconds)?;
    let stats = prog_stats(pid);
    set_bpf_stats(false);
    mon.stop();
    let sockets = (rate * seconds).max(1.0);
    let programs: Vec<Value> = stats
        .iter()
        .filter(|p| p.run_cnt > 0)
        .map(|p| {
            json!({
                "name": p.name,
                "type": p.prog_type,
                "ns_per_run": p.run_time_ns as f64 / p.run_cnt as f64,
                "runs_per_socket": p.run_cnt as f64 / sockets,
            })
        })
        .collect();
    let total_ns: u64 = stats.iter().map(|p| p.run_time_ns).sum();

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
        "programs": programs,
        "ns_per_socket": total_ns as f64 / sockets,
        "latency": latency,
        "completeness": completeness,
    }))
}
