//! `portwatch watch`: the baseline, a ready line, then every change live.

use anyhow::Context as _;
use chrono::Utc;
use portwatch::{Engine, EngineConfig, output, sys::bpf::validate_ring_buffer_size};
use tokio::signal::unix::{SignalKind, signal};

use crate::{args::WatchArgs, sink::Sink};

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let config = EngineConfig {
        ring_buffer_bytes: validate_ring_buffer_size(args.ring_buffer)?,
    };
    // Handlers first, so a signal during start-up still ends the run cleanly.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let (mut engine, baseline) = Engine::start(&config)?;
    let mut sink = Sink::new(args.json);
    if !sink.is_json() {
        sink.line(&output::event_header())?;
    }
    for ev in &baseline {
        sink.event(ev)?;
    }
    if sink.is_json() {
        sink.line(&output::ready_json("ebpf", baseline.len(), &Utc::now()))?;
    } else {
        eprintln!(
            "portwatch: watching TCP listeners with eBPF ({} already listening); Ctrl-C stops",
            baseline.len()
        );
    }

    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            events = engine.next_events() => {
                for ev in events? {
                    sink.event(&ev)?;
                }
            }
        }
    }
    if args.stats {
        let stats = engine.stats()?;
        eprintln!(
            "portwatch: {} events, {} dropped",
            stats.events, stats.drops
        );
    }
    Ok(())
}
