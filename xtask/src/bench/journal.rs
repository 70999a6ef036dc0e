//! The journal: does it keep up with the storm (every event the watch
//! reports is journaled, and no more kernel drops than without it), how
//! fast its writer is, how large a row is, and how long `history --at`
//! takes over ten million events.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::util::{median, quantile};

fn scratch() -> Result<PathBuf> {
    let dir = PathBuf::from("/var/tmp/portwatch-bench-journal");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Opens and closes `history` found in the journal for `pid`.
fn journaled(root: &Path, journal: &Path, pid: u64) -> Result<(u64, u64)> {
    let out = Command::new(super::portwatch_bin(root))
        .args(["history", "--json", "--pid", &pid.to_string(), "--journal"])
        .arg(journal)
        .output()?;
    if !out.status.success() {
        bail!("history: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let opened = text.matches("{\"event\":\"opened\"").count() as u64;
    let closed = text.matches("{\"event\":\"closed\"").count() as u64;
    Ok((opened, closed))
}

/// The storm, with and without a journal, `rounds` times each.
fn storm(root: &Path, rounds: usize) -> Result<Value> {
    let dir = scratch()?;
    let mut runs = Vec::new();
    for round in 0..rounds {
        let plain = super::storm::storm_with(root, 4, 2000, &[])?;
        let journal = dir.join(format!("storm-{round}.db"));
        let with = super::storm::storm_with(
            root,
            4,
            2000,
            &["--journal", journal.to_str().context("path")?],
        )?;
        let (mut opened, mut closed) = (0, 0);
        for pid in with["pids"].as_array().into_iter().flatten() {
            let (o, c) = journaled(root, &journal, pid.as_u64().unwrap_or(0))?;
            opened += o;
            closed += c;
        }
        runs.push(json!({
            "drops_without": plain["drops"],
            "drops_with": with["drops"],
            "reported_opened": with["opened_reported"],
            "reported_closed": with["closed_reported"],
            "journaled_opened": opened,
            "journaled_closed": closed,
        }));
    }
    Ok(json!(runs))
}

/// Fills a journal with `events` synthetic events through the library's
/// writer, then times `history --at` on it.
fn fill_and_query(root: &Path, events: u64, queries: usize) -> Result<Value> {
    crate::check(
        crate::cargo().current_dir(root).args([
            "build",
            "--release",
            "-p",
            "portwatch",
            "--example",
            "journal_fill",
        ]),
        "cargo build --example journal_fill",
    )?;
    let dir = scratch()?;
    let journal = dir.join("fill.db");
    let out = Command::new(root.join("target/release/examples/journal_fill"))
        .arg(&journal)
        .arg(events.to_string())
        .output()?;
    if !out.status.success() {
        bail!("journal_fill: {}", String::from_utf8_lossy(&out.stderr));
    }
    let fill: Value = serde_json::from_slice(&out.stdout)?;
    let first = chrono::DateTime::parse_from_rfc3339(fill["first"].as_str().unwrap_or_default())?;
    let step_ms = fill["step_ms"].as_i64().unwrap_or(1);
    let holds = (events / 2) as i64;
    let mut with_port = Vec::new();
    let mut whole_host = Vec::new();
    let mut held = Vec::new();
    for q in 0..queries as i64 {
        // Instants spread over the span; the port of the listener that
        // opened just before each, so most queries have an answer.
        let i = (holds / queries as i64) * q + 7;
        let at = first + chrono::Duration::milliseconds(i * step_ms + step_ms / 2);
        let port = 1024 + (i % 64_000);
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        for (port, into) in [(Some(port), &mut with_port), (None, &mut whole_host)] {
            let mut cmd = Command::new(super::portwatch_bin(root));
            cmd.args(["history", "--json", "--at", &at, "--journal"])
                .arg(&journal);
            if let Some(p) = port {
                cmd.args(["--port", &p.to_string()]);
            }
            let started = Instant::now();
            let out = cmd.output()?;
            into.push(started.elapsed().as_secs_f64() * 1e3);
            if !out.status.success() {
                bail!("history: {}", String::from_utf8_lossy(&out.stderr));
            }
            if port.is_none() {
                held.push(out.stdout.iter().filter(|&&b| b == b'\n').count() as f64);
            }
        }
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let (with_port, whole_host) = (sorted(with_port), sorted(whole_host));
    let bytes = fill["bytes"].as_u64().unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "events": events,
        "written": fill["written"],
        "lost": fill["lost"],
        "fill_ms": fill["ms"],
        "events_per_s": events as f64 / (fill["ms"].as_f64().unwrap_or(1.0) / 1e3),
        "bytes": bytes,
        "bytes_per_event": bytes as f64 / events as f64,
        "queries": queries,
        "at_port_ms_p50": median(&with_port),
        "at_port_ms_max": quantile(&with_port, 1.0),
        "at_host_ms_p50": median(&whole_host),
        "at_host_ms_max": quantile(&whole_host, 1.0),
        "holders_at_host_p50": median(&sorted(held)),
    }))
}

pub fn journal(root: &Path, events: u64, rounds: usize) -> Result<Value> {
    Ok(json!({
        "storm": storm(root, rounds)?,
        "fill": fill_and_query(root, events, 20)?,
    }))
}
