//! `portwatch watch`: the baseline, a ready line, then every change live.

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use portwatch::{
    Backend, Engine, EngineConfig, Filter, Report, Scope, output,
    sys::bpf::{Hook, validate_ring_buffer_size},
};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    args::{BackendArg, HookArg, ScopeArg, WatchArgs},
    sink::Sink,
};

pub fn config(args: &WatchArgs) -> anyhow::Result<EngineConfig> {
    if args.interval.is_zero() {
        anyhow::bail!("--interval must be longer than 0");
    }
    Ok(EngineConfig {
        backend: match args.backend {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Ebpf => Backend::Ebpf,
            BackendArg::Procfs => Backend::Procfs,
        },
        ring_buffer_bytes: validate_ring_buffer_size(args.ring_buffer)?,
        hook: match args.hook {
            HookArg::Auto => Hook::Auto,
            HookArg::Tracepoint => Hook::Tracepoint,
            HookArg::TpBtf => Hook::TpBtf,
        },
        filter: Filter {
            scope: match args.scope {
                ScopeArg::All => Scope::All,
                ScopeArg::Local => Scope::Local,
            },
            netns: args.netns,
            pid: args.pid,
        },
        resync_interval: (args.resync_interval > Duration::ZERO).then_some(args.resync_interval),
        poll_interval: args.interval,
        connections: false,
    })
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    // Handlers first, so a signal during start-up still ends the run cleanly.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let (mut engine, baseline) = Engine::start(&config)?;
    if let Some(reason) = engine.fallback_reason() {
        eprintln!(
            "portwatch: warning: eBPF unavailable ({reason}); polling procfs every {:?} instead",
            config.poll_interval
        );
    }
    let mut sink = Sink::new(args.json);
    if !sink.is_json() {
        sink.line(&output::event_header())?;
    }
    for ev in &baseline {
        sink.event(ev)?;
    }
    if sink.is_json() {
        sink.line(&output::ready_json(
            engine.backend_name(),
            baseline.len(),
            &Utc::now(),
        ))?;
    } else {
        eprintln!(
            "portwatch: watching TCP listeners with {} ({} already listening); Ctrl-C stops",
            engine.backend_name(),
            baseline.len()
        );
    }

    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            reports = engine.next_reports() => {
                for report in reports? {
                    match report {
                        Report::Port(ev) => sink.event(&ev)?,
                        Report::Resync(summary) if sink.is_json() => sink.line(&output::resync_json(&summary))?,
                        Report::Resync(summary) => eprintln!("portwatch: {}", output::resync_text(&summary)),
                        Report::Connection(_) => {}
                    }
                }
            }
        }
    }
    if args.stats {
        let stats = engine.stats();
        if sink.is_json() {
            sink.line(&output::stats_json(&stats, &Utc::now()))?;
        } else {
            eprintln!(
                "portwatch: {} events, {} dropped, {} resyncs, {} owners not tracked",
                stats.events, stats.drops, stats.resyncs, stats.owners_full
            );
        }
    }
    Ok(())
}
