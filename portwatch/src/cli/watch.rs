//! `portwatch watch`: the baseline, a ready line, then every change live.

use chrono::Utc;
use portwatch::{
    Monitor, MonitorConfig, MonitorEvent, Proto, bench_stages, monitor::NoticeKind, output,
    wire::Line,
};

use crate::{args::WatchArgs, metrics, otlp::Otlp, shutdown::Shutdown, sink::Sink};

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.connect {
        if args.otlp.otlp.is_some() {
            anyhow::bail!(
                "--otlp exports what this watch's own monitor sees: it does not run with --connect (give the daemon --otlp)"
            );
        }
        return crate::connect::run(path, &args).await;
    }
    let config = MonitorConfig {
        engine: args.engine.config()?,
        settle: args.engine.settle(),
        policy: crate::policy::source(args.policy.as_deref())?,
        ..MonitorConfig::default()
    };
    let otlp = args.otlp.config()?;
    let mut shutdown = Shutdown::install()?;
    // Before the programs load: a rotation's SIGHUP during start-up must
    // not end the watch.
    let mut sink = Sink::formatted(
        crate::args::format_of(args.json, args.format),
        args.output.as_deref(),
    )?;
    let mut hangups = sink.hangups()?;
    let metrics = metrics::start(args.metrics).await?;
    let mut monitor = Monitor::start(config.clone())?;
    if let Some(reason) = monitor.fallback_reason() {
        crate::log::warn(&format!(
            "eBPF unavailable ({reason}); polling procfs every {:?} instead",
            config.engine.poll_interval
        ));
    }
    let mut journal = match &args.journal {
        Some(path) => crate::journal::open(path.clone(), &args.journal_limits, true)?,
        None => None,
    };
    let mut otlp = otlp.map(Otlp::start).transpose()?;
    let watched = match config.engine.filter.proto {
        Some(Proto::Tcp) => "TCP listeners",
        Some(Proto::Udp) => "bound UDP ports",
        None => "TCP listeners and bound UDP ports",
    };
    if sink.is_text() {
        sink.line(&output::event_header())?;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        let ev = tokio::select! {
            () = &mut stop => break,
            ev = monitor.next() => ev?,
            Some(()) = crate::sink::hangup(&mut hangups) => {
                // A name planted at the path is refused: lines still go
                // to the file open now, and the warning says why.
                if let Err(e) = sink.reopen() {
                    crate::log::warn(&format!("{e:#}"));
                }
                monitor.reload_policy();
                continue;
            }
            Some(failure) = crate::otlp::next_failure(&mut otlp) => {
                print_failure(&mut sink, &failure)?;
                continue;
            }
            _ = tick.tick(), if metrics.is_some() => {
                if let Some(m) = &metrics {
                    if let Some(o) = &otlp {
                        m.otlp(o.stats());
                    }
                    m.stats(&monitor.stats());
                    if let Some(d) = monitor.drifts() {
                        m.drifting(d.counts());
                    }
                    if let Some(j) = &journal {
                        m.journal(j.stats());
                    }
                }
                continue;
            }
        };
        let stages = bench_stages::enabled().then(|| stage_start(&ev)).flatten();
        if let Some(m) = &metrics {
            m.observe(&ev);
        }
        crate::journal::record(&mut journal, &ev);
        if let Some(o) = &mut otlp {
            o.send(&ev);
        }
        // Messages on stderr come after the lines before them.
        if !matches!(ev, MonitorEvent::Port(_)) {
            sink.flush()?;
        }
        if sink.ocsf_event(&ev)? {
            if !monitor.has_queued() {
                sink.flush()?;
            }
            continue;
        }
        match ev {
            MonitorEvent::Port(ev) => sink.event(&ev)?,
            MonitorEvent::Ready(r) if sink.is_json() => {
                sink.line(&Line::ready(&r.backend, r.listeners, r.ts).to_json())?;
            }
            MonitorEvent::Ready(r) => crate::log::info(&format!(
                "watching {watched} with {} ({} already open); Ctrl-C stops",
                r.backend, r.listeners
            )),
            MonitorEvent::Resync(s) if sink.is_json() => {
                sink.line(&Line::resync(&s).to_json())?;
            }
            MonitorEvent::Resync(s) => crate::log::info(&output::resync_text(&s)),
            MonitorEvent::Notice(n)
                if sink.is_json()
                    && matches!(n.kind, NoticeKind::PolicyReloaded | NoticeKind::PolicyError) =>
            {
                sink.line(&Line::from(&n).to_json())?;
            }
            MonitorEvent::Notice(n) => crate::log::notice(&n),
            MonitorEvent::ExposureChanged(c) if sink.is_json() => {
                sink.line(&Line::from(&c).to_json())?;
            }
            MonitorEvent::ExposureChanged(c) => sink.line(&output::exposure_change_line(&c))?,
            MonitorEvent::Drift(d) if sink.is_json() => sink.line(&Line::from(&d).to_json())?,
            MonitorEvent::Drift(d) => sink.line(&output::drift_line(&d))?,
            MonitorEvent::UdpSummary(s) if sink.is_json() => {
                sink.line(&Line::from(&s).to_json())?;
            }
            // OCSF records only on stdout: a summary is no finding.
            MonitorEvent::UdpSummary(_) if sink.is_ocsf() => {}
            MonitorEvent::UdpSummary(s) => sink.line(&output::udp_summary_line(&s))?,
            // Alerts are the daemon's; what a newer library adds, too.
            _ => {}
        }
        // Encoded into the sink's buffer by now: the write comes at the
        // flush.
        let encoded = stages.map(|_| bench_stages::now_ns());
        if !monitor.has_queued() {
            sink.flush()?;
        }
        if let (Some((kernel, drained, handed_out)), Some(encoded)) = (stages, encoded) {
            sink.flush()?;
            let written = bench_stages::now_ns();
            bench_stages::record([kernel, drained, handed_out, encoded, written]);
        }
    }
    if let Some(o) = &mut otlp {
        for failure in o.finish().await {
            print_failure(&mut sink, &failure)?;
        }
    }
    if args.stats {
        let stats = monitor.stats();
        if sink.is_json() {
            sink.line(&Line::stats(&stats, Utc::now()).to_json())?;
        } else {
            crate::log::info(&format!(
                "{} events, {} dropped, {} resyncs, {} owners not tracked, {} ports not found, {} UDP binds not tallied",
                stats.events,
                stats.drops,
                stats.resyncs,
                stats.owners_full,
                stats.unresolved,
                stats.binds_full
            ));
        }
    }
    sink.flush()?;
    bench_stages::print();
    Ok(())
}

/// For an open: its kernel time, the ring's last drain and now, in
/// wall-clock ns (see `portwatch::bench_stages`).
fn stage_start(ev: &MonitorEvent) -> Option<(u64, u64, u64)> {
    let MonitorEvent::Port(p) = ev else {
        return None;
    };
    if p.change != portwatch::event::Change::Opened {
        return None;
    }
    let kernel = u64::try_from(p.ts.timestamp_nanos_opt()?).ok()?;
    Some((kernel, bench_stages::drained_ns(), bench_stages::now_ns()))
}

/// What the OTLP exporter has to say: a `delivery_error` line, or a
/// warning.
fn print_failure(sink: &mut Sink, failure: &str) -> anyhow::Result<()> {
    sink.flush()?;
    if sink.is_json() {
        sink.line(&Line::delivery_error(failure, Utc::now()).to_json())?;
        sink.flush()?;
    } else {
        crate::log::warn(&format!("delivery failed: {failure}"));
    }
    Ok(())
}
