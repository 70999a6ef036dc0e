//! `cargo xtask bench`: portwatch against its peers on the same workloads,
//! in one run. Prints a table and writes target/bench/results.json.

mod churn;
mod cost;
mod latency;
mod monitors;
mod scan;
mod storm;
mod util;

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

pub use churn::churn_main;
pub use scan::hold_child_main;

use monitors::Tool;

/// Debian packages the peers come from.
fn ensure_peers() -> Result<()> {
    let need: Vec<&str> = [
        ("bpftrace", "bpftrace"),
        ("bpftool", "bpftool"),
        ("ss", "iproute2"),
        ("lsof", "lsof"),
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

pub struct Options {
    pub quick: bool,
}

pub fn run(root: &Path, opts: &Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the benchmarks load eBPF programs and read every process: run `sudo -E cargo xtask bench`"
        );
    }
    ensure_peers()?;
    util::raise_nofile();
    let (lat_n, comp_n, rounds, churn_s, sizes, cost_s): (usize, usize, usize, f64, &[usize], u64) =
        if opts.quick {
            (200, 2000, 1, 2.0, &[1000, 10000], 10)
        } else {
            (1000, 10000, 3, 4.0, &[1000, 10000, 50000], 60)
        };
    let tools = [Tool::Portwatch, Tool::Bpftrace, Tool::Poller];

    eprintln!("bench: latency ({lat_n} listeners per tool)");
    let lat: Vec<Value> = tools
        .iter()
        .map(|t| latency::latency(*t, root, lat_n))
        .collect::<Result<_>>()?;
    eprintln!("bench: completeness ({comp_n} short-lived listeners per tool)");
    let comp: Vec<Value> = tools
        .iter()
        .map(|t| latency::completeness(*t, root, comp_n))
        .collect::<Result<_>>()?;
    eprintln!("bench: hot path ({rounds} rounds of {churn_s} s churn per mode)");
    let hot = churn::hot_path(root, rounds, churn_s)?;
    eprintln!("bench: loss under a storm (4 KiB ring buffer)");
    let storm = storm::storm(root, 4, if opts.quick { 1000 } else { 2000 })?;
    eprintln!("bench: scan cost");
    let scan = scan::scan_cost(root, sizes, 50, 5)?;
    eprintln!("bench: daemon cost ({cost_s} s idle, {cost_s} s at 1,000 events/s)");
    let cost = cost::daemon_cost(root, cost_s)?;
    eprintln!("bench: cleanup");
    let cleanup = cost::cleanup(root)?;

    let machine = json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": util::sh("uname -r")?.trim(),
        "cpu": util::sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")?.trim(),
    });
    let results = json!({
        "machine": machine,
        "quick": opts.quick,
        "latency": lat,
        "completeness": comp,
        "hot_path": hot,
        "storm": storm,
        "scan": scan,
        "daemon_cost": cost,
        "cleanup": cleanup,
    });
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?).context("write results")?;
    println!("{}", table(&results));
    eprintln!("bench: figures written to {}", path.display());
    Ok(())
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => v.to_string(),
    }
}

/// The results as Markdown tables (what BENCHMARKS.md holds).
pub fn table(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    let _ = writeln!(
        s,
        "Machine: {} cores, {}, Linux {}\n",
        m["cores"],
        m["cpu"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "Latency, listen() returning to the event line read:\n");
    let _ = writeln!(
        s,
        "| tool | listeners | reported | p50 us | p99 us | max us |\n|---|---|---|---|---|---|"
    );
    for x in r["latency"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            x["tool"].as_str().unwrap_or(""),
            x["listeners"],
            x["reported"],
            f(&x["p50_us"]),
            f(&x["p99_us"]),
            f(&x["max_us"])
        );
    }
    let _ = writeln!(s, "\nCompleteness, listeners living microseconds:\n");
    let _ = writeln!(
        s,
        "| tool | listeners | opens reported | closes reported | fraction |\n|---|---|---|---|---|"
    );
    for x in r["completeness"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            x["tool"].as_str().unwrap_or(""),
            x["listeners"],
            x["opened_reported"],
            x["closed_reported"],
            f(&x["fraction"])
        );
    }
    let _ = writeln!(
        s,
        "\nHot path, loopback connection churn (median of alternating runs):\n"
    );
    let _ = writeln!(
        s,
        "| mode | connections/s | ratio to no monitor |\n|---|---|---|"
    );
    for x in r["hot_path"]["throughput"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            x["mode"].as_str().unwrap_or(""),
            f(&x["conn_per_s"]),
            f(&x["ratio"])
        );
    }
    let _ = writeln!(
        s,
        "\nKernel run time of the state-change program (kernel.bpf_stats_enabled):\n"
    );
    let _ = writeln!(s, "| program | runs | ns per run |\n|---|---|---|");
    for x in r["hot_path"]["per_run"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            x["mode"].as_str().unwrap_or(""),
            x["run_cnt"],
            f(&x["ns_per_run"])
        );
    }
    let st = &r["storm"];
    let _ = writeln!(
        s,
        "\nLoss under a storm: {} processes, {} listeners ({} events) through a {}-byte ring buffer: {} events dropped, {} resyncs; state equal to procfs {} ms after the storm ended ({} listeners kept open).",
        st["workers"],
        st["listeners"],
        st["events"],
        st["ring_buffer_bytes"],
        st["drops"],
        st["resyncs"],
        f(&st["converge_ms_after_storm"]),
        st["kept_open"]
    );
    let _ = writeln!(s, "\nSnapshot cost (median wall time):\n");
    let _ = writeln!(
        s,
        "| listeners | processes | portwatch list ms | ss -ltnp ms | lsof ms | portwatch / ss |\n|---|---|---|---|---|---|"
    );
    for x in r["scan"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            x["listeners"],
            x["processes"],
            f(&x["portwatch_list_ms"]),
            f(&x["ss_ltnp_ms"]),
            f(&x["lsof_ms"]),
            f(&x["ratio_vs_ss"])
        );
    }
    let c = &r["daemon_cost"];
    let _ = writeln!(
        s,
        "\nDaemon cost over {} s: idle {} CPU s, {} wakeups, peak RSS {} MiB; at {} events/s {}% CPU, peak RSS {} MiB.",
        c["seconds"],
        f(&c["idle_cpu_s"]),
        c["idle_voluntary_switches"],
        f(&c["idle_peak_rss_mib"]),
        f(&c["events_per_s"]),
        f(&c["busy_cpu_percent"]),
        f(&c["peak_rss_mib"])
    );
    let _ = write!(s, "\nCleanup:");
    for x in r["cleanup"].as_array().into_iter().flatten() {
        let _ = write!(
            s,
            " after {}, {} of {} programs left;",
            x["signal"].as_str().unwrap_or(""),
            x["left_after"],
            x["programs"]
        );
    }
    s.push('\n');
    s
}
