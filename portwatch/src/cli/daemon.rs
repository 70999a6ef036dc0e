//! `portwatch daemon`: watch, evaluate the alert rules, print each alert;
//! the monitor reloads the rules when their file changes. With
//! `--socket`, it also serves its events to local clients.

use std::time::Duration;

use portwatch::{
    Monitor, MonitorConfig, MonitorEvent, ResyncReason,
    monitor::{NoticeKind, RulesSource},
    output,
    rules::{store, validate::Rules},
    serve::{self, Hub, Server},
    wire::Line,
};

use crate::{args::DaemonArgs, deliver::Deliveries, metrics, shutdown::Shutdown, sink::Sink};

/// How often a client that fell behind is checked for having caught up.
const RECOVER_EVERY: Duration = Duration::from_millis(50);
/// How often the kernel's counters are read for the metrics (each read
/// is a syscall: not per event).
const METRICS_EVERY: Duration = Duration::from_secs(1);

pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let (engine, sample_interval) = args.config()?;
    let socket = args.socket_config()?;
    let delivery = args.delivery_config()?;
    let otlp = args.otlp.config()?;
    let path = match args.alerts {
        Some(p) => p,
        None => store::read_path()?,
    };
    // As 0.1.8's did, the daemon runs without a rules file: no alerts
    // until one is written there (the directory is watched for it).
    let rules = match store::load(&path) {
        Err(store::StoreError::Missing(_)) => {
            // Its directory is watched when it exists: never made here (a
            // mistyped path must not leave directories behind).
            let watchable = path
                .parent()
                .is_some_and(|d| portwatch::files::CheckedDir::open(d, false).is_ok());
            crate::log::info(&format!(
                "no rules file at {}: no alerts until one is written there (`portwatch alerts init` writes the example){}",
                path.display(),
                if watchable {
                    ""
                } else {
                    "; its directory cannot be watched, so restart the daemon then"
                }
            ));
            watchable.then(Rules::empty)
        }
        other => Some(other?),
    };
    let mut shutdown = Shutdown::install()?;
    let mut sink = Sink::formatted(crate::args::format_of(args.json, args.format), None)?;
    // SIGHUP reloads the rules (its default action would end the daemon,
    // and systemd does not restart a unit that died of it); from before
    // start-up, which takes a while.
    let mut hangups = sink.hangups()?;
    let metrics = metrics::start(args.metrics).await?;
    let mut metrics_tick = tokio::time::interval(METRICS_EVERY);
    // Under systemd (Type=notify): pinged from this loop at half the
    // watchdog interval, so a stuck loop is restarted.
    let watchdog = sd_notify::watchdog_enabled();
    let watchdog_every = watchdog.map_or(Duration::from_secs(3600), |d| d / 2);
    let mut watchdog_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + watchdog_every, watchdog_every);
    let n_rules = rules.as_ref().map_or(0, |r| r.file.rules.len());
    let policy = crate::policy::source(args.policy.as_deref())?;
    let mut monitor = Monitor::start(MonitorConfig {
        engine,
        rules: rules.map(|rules| RulesSource {
            path: path.clone(),
            rules,
        }),
        sample_interval,
        settle: args.engine.settle(),
        policy,
        ..MonitorConfig::default()
    })?;
    if let Some(reason) = monitor.fallback_reason() {
        crate::log::warn(&format!(
            "eBPF unavailable ({reason}); polling procfs instead"
        ));
    }
    let mut server = socket.map(Server::start).transpose()?;
    let mut deliveries = Deliveries::start(&delivery)?;
    let mut otlp = otlp.map(crate::otlp::Otlp::start).transpose()?;
    // Last of what can fail: a start that fails says one thing.
    let mut journal = if args.no_journal {
        None
    } else {
        // The default one is kept where it can be; a path asked for must be.
        let asked = args.journal.as_os_str() != portwatch::journal::DEFAULT_PATH;
        crate::journal::open(args.journal.clone(), &args.journal_limits, asked)?
    };
    let mut hub = Hub::new();
    hub.set_ocsf_host(crate::sink::this_host());
    let mut in_tree = |root: u32, pid: u32| serve::is_descendant(pid, root);
    let mut recover = tokio::time::interval(RECOVER_EVERY);
    // Clients join once the baseline is in the monitor's table.
    let mut ready = false;
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(()) = crate::sink::hangup(&mut hangups) => {
                monitor.reload_rules();
                monitor.reload_policy();
                if let Err(e) = sink.reopen() {
                    crate::log::warn(&format!("{e:#}"));
                }
            }
            ev = monitor.next() => {
                let ev = ev?;
                if matches!(ev, MonitorEvent::Ready(_)) {
                    ready = true;
                    // Programs attached, the baseline out: systemd may
                    // start what comes after portwatch.
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
                if let Some(m) = &metrics {
                    m.observe(&ev);
                }
                crate::journal::record(&mut journal, &ev);
                if let Some(o) = &mut otlp {
                    o.send(&ev);
                }
                hub.publish(&ev, &mut in_tree);
                deliver(&mut deliveries, &ev);
                print(&mut sink, ev, n_rules, &path)?;
                if !monitor.has_queued() {
                    sink.flush()?;
                }
            }
            Some(join) = async {
                match server.as_mut() {
                    Some(s) => s.next_join().await,
                    None => std::future::pending().await,
                }
            }, if ready => {
                hub.join(join, monitor.backend_name(), chrono::Utc::now(), &mut in_tree);
            }
            Some(failure) = deliveries.next_failure() => print_failure(&mut sink, &failure)?,
            Some(failure) = crate::otlp::next_failure(&mut otlp) => print_failure(&mut sink, &failure)?,
            // From READY on: the loop that serves this tick is the one
            // that reads the kernel's events.
            _ = watchdog_tick.tick(), if watchdog.is_some() && ready => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            _ = metrics_tick.tick(), if metrics.is_some() => {
                if let Some(m) = &metrics {
                    m.stats(&monitor.stats());
                    m.set_clients(hub.len());
                    if let Some(o) = &otlp {
                        m.otlp(o.stats());
                    }
                    if let Some(d) = monitor.drifts() {
                        m.drifting(d.counts());
                    }
                    if let Some(j) = &journal {
                        m.journal(j.stats());
                    }
                }
            }
            _ = recover.tick(), if hub.has_lost() => {
                hub.recover(monitor.backend_name(), chrono::Utc::now(), &mut in_tree);
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // No loss is silent, at stop either.
    for failure in deliveries.remaining() {
        print_failure(&mut sink, &failure)?;
    }
    if let Some(o) = &mut otlp {
        for failure in o.finish().await {
            print_failure(&mut sink, &failure)?;
        }
    }
    sink.flush()?;
    Ok(())
}

/// A delivery failure (or a count of alerts not delivered), as the
/// daemon says it: a `delivery_error` line, or a warning.
fn print_failure(sink: &mut Sink, failure: &str) -> anyhow::Result<()> {
    sink.flush()?;
    if sink.is_json() {
        sink.line(&Line::delivery_error(failure, chrono::Utc::now()).to_json())?;
        sink.flush()?;
    } else {
        crate::log::warn(&format!("delivery failed: {failure}"));
    }
    Ok(())
}

/// Alerts, and the notice that the kernel dropped events, to every
/// output.
fn deliver(deliveries: &mut Deliveries, ev: &MonitorEvent) {
    if deliveries.is_empty() {
        return;
    }
    match ev {
        MonitorEvent::Alert(a) => deliveries.send(Line::from(a)),
        MonitorEvent::Drift(d) => deliveries.send_drift(Line::from(d)),
        MonitorEvent::Resync(s) if s.reason == ResyncReason::Drops => {
            deliveries.send(Line::events_lost(s));
        }
        _ => {}
    }
}

/// The daemon's own output: alerts, and what it has to say.
fn print(
    sink: &mut Sink,
    ev: MonitorEvent,
    n_rules: usize,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    // Messages on stderr come after the lines before them.
    if !matches!(ev, MonitorEvent::Port(_)) {
        sink.flush()?;
    }
    // What the daemon prints in every format: alerts and drifts (ports
    // are the socket's, the metrics' and the collector's).
    if matches!(ev, MonitorEvent::Alert(_) | MonitorEvent::Drift(_)) && sink.ocsf_event(&ev)? {
        return Ok(());
    }
    match ev {
        MonitorEvent::Ready(r) if sink.is_json() => {
            sink.line(&Line::ready(&r.backend, r.listeners, r.ts).to_json())?;
        }
        MonitorEvent::Ready(r) => crate::log::info(&format!(
            "watching with {n_rules} rules from {} ({} listeners already open)",
            path.display(),
            r.listeners
        )),
        MonitorEvent::Alert(a) if sink.is_json() => sink.line(&Line::from(&a).to_json())?,
        MonitorEvent::Alert(a) => sink.line(&output::alert_line(&a))?,
        MonitorEvent::Drift(d) if sink.is_json() => sink.line(&Line::from(&d).to_json())?,
        MonitorEvent::Drift(d) => sink.line(&output::drift_line(&d))?,
        MonitorEvent::Notice(n) if sink.is_json() && n.kind != NoticeKind::Warning => {
            sink.line(&Line::from(&n).to_json())?;
        }
        MonitorEvent::Notice(n) => crate::log::notice(&n),
        MonitorEvent::Resync(s) if s.reason == ResyncReason::Drops && sink.is_json() => {
            sink.line(&Line::events_lost(&s).to_json())?;
        }
        MonitorEvent::Resync(s) if s.reason == ResyncReason::Drops => {
            crate::log::info(&output::resync_text(&s));
        }
        // Ports are the socket's and the metrics'; what a newer library
        // adds is not printed.
        _ => {}
    }
    Ok(())
}
