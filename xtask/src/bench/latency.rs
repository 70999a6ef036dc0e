//! Latency (listen() or, for UDP, bind() returning -> event read) and
//! completeness (ports living well under a millisecond).

use std::{
    collections::HashMap,
    net::{TcpListener, UdpSocket},
    os::fd::OwnedFd,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::{Value, json};

use super::{
    monitors::{self, Proto, Tool},
    util::{mono_ns, quantile},
};

/// A listener (TCP) or a bound socket (UDP) on 127.0.0.1 and its port.
fn open(proto: Proto) -> Result<(u16, OwnedFd)> {
    Ok(match proto {
        Proto::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0")?;
            (l.local_addr()?.port(), l.into())
        }
        Proto::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            (s.local_addr()?.port(), s.into())
        }
    })
}

/// Latency of each tool over `rounds` rounds of `per_round` listeners,
/// the tools' order rotated each round so that none always runs first on
/// a machine whose load drifts; each tool's samples are pooled.
pub fn latency_rounds(
    tools: &[Tool],
    root: &Path,
    proto: Proto,
    per_round: usize,
    rounds: usize,
) -> Result<Vec<Value>> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
    let mut stages: Vec<Vec<[f64; 4]>> = vec![Vec::new(); tools.len()];
    for round in 0..rounds {
        for k in 0..tools.len() {
            let i = (k + round) % tools.len();
            let (lat, st) = latency(tools[i], root, proto, per_round)?;
            samples[i].extend(lat);
            stages[i].extend(st);
        }
    }
    Ok(tools
        .iter()
        .zip(samples)
        .zip(stages)
        .map(|((tool, mut lat_us), stages)| {
            lat_us.sort_by(f64::total_cmp);
            json!({
                "stages": stage_quantiles(&stages),
                "tool": tool.name(),
                "listeners": per_round * rounds,
                "rounds": rounds,
                "reported": lat_us.len(),
                "p50_us": quantile(&lat_us, 0.5),
                "p99_us": quantile(&lat_us, 0.99),
                "max_us": lat_us.last().copied().unwrap_or(f64::NAN),
            })
        })
        .collect())
}

/// p50 and p99 in microseconds of each of portwatch's stages (see
/// `portwatch::bench_stages`); null for the other tools.
fn stage_quantiles(stages: &[[f64; 4]]) -> Value {
    if stages.is_empty() {
        return Value::Null;
    }
    let names = [
        "kernel_to_drained",
        "drained_to_handed_out",
        "handed_out_to_encoded",
        "encoded_to_written",
    ];
    let mut out = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        let mut v: Vec<f64> = stages.iter().map(|s| s[i]).collect();
        v.sort_by(f64::total_cmp);
        out.insert(
            (*name).into(),
            json!({ "p50_us": quantile(&v, 0.5), "p99_us": quantile(&v, 0.99) }),
        );
    }
    out.into()
}

/// portwatch's `bench-stages` lines: four nanosecond figures each.
fn parse_stages(lines: &[String]) -> Vec<[f64; 4]> {
    lines
        .iter()
        .filter_map(|l| {
            let v: Vec<f64> = l
                .split_whitespace()
                .filter_map(|x| x.parse::<f64>().ok())
                .map(|ns| ns / 1000.0)
                .collect();
            <[f64; 4]>::try_from(v).ok()
        })
        .collect()
}

/// Opens `count` ports 2 ms apart, keeps them until each is reported (or
/// 3 s after the last), and returns the latencies in microseconds, with
/// portwatch's stages.
fn latency(
    tool: Tool,
    root: &Path,
    proto: Proto,
    count: usize,
) -> Result<(Vec<f64>, Vec<[f64; 4]>)> {
    let mon = monitors::start_with_stages(tool, root, proto)?;
    let mut opened_at: HashMap<u16, u64> = HashMap::new();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let (port, fd) = open(proto)?;
        let t = mono_ns();
        opened_at.insert(port, t);
        held.push(fd);
        thread::sleep(Duration::from_millis(2));
    }
    let mut lat_us = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while lat_us.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((t, opened, port)) = mon.events.recv_timeout(left) else {
            break;
        };
        if opened && let Some(t0) = opened_at.remove(&port) {
            lat_us.push(t.saturating_sub(t0) as f64 / 1000.0);
        }
    }
    drop(held);
    let stages = parse_stages(&mon.stop());
    Ok((lat_us, stages))
}

/// Opens and closes `count` ports back to back (each lives a few
/// microseconds) and counts how many opens and closes were reported.
pub fn completeness(tool: Tool, root: &Path, proto: Proto, count: usize) -> Result<Value> {
    let mon = monitors::start_for(tool, root, proto)?;
    let mut ports: HashMap<u16, usize> = HashMap::new();
    let started = Instant::now();
    for _ in 0..count {
        let (port, _fd) = open(proto)?;
        *ports.entry(port).or_default() += 1;
    }
    let storm = started.elapsed();
    let (mut opened, mut closed) = (0usize, 0usize);
    // Quiet for 2 s (or 1.5 poll periods) means everything arrived.
    while let Ok((_, is_open, port)) = mon.events.recv_timeout(Duration::from_millis(2000)) {
        if ports.contains_key(&port) {
            if is_open {
                opened += 1;
            } else {
                closed += 1;
            }
        }
    }
    mon.stop();
    Ok(json!({
        "tool": tool.name(),
        "listeners": count,
        "storm_ms": storm.as_secs_f64() * 1000.0,
        "opened_reported": opened.min(count),
        "closed_reported": closed.min(count),
        "fraction": (opened.min(count) + closed.min(count)) as f64 / (2 * count) as f64,
    }))
}
