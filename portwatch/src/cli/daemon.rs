//! `portwatch daemon`: watch, evaluate the alert rules, print each alert;
//! reload the rules when their file changes.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    pin::Pin,
};

use anyhow::Context as _;
use chrono::Utc;
use inotify::{EventStream, Inotify, WatchMask};
use portwatch::{
    Engine, EngineConfig, Filter, Report, output,
    rules::{eval::Evaluator, store},
    sys::sampler::Sampler,
};
use tokio::signal::unix::{SignalKind, signal};

use crate::{args::DaemonArgs, sink::Sink};

pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let path = match args.alerts {
        Some(p) => p,
        None => store::read_path()?,
    };
    let rules = store::load(&path)?;
    if args.sample_interval.is_zero() {
        anyhow::bail!("--sample-interval must be longer than 0");
    }
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut changes = watch_file(&path)?;

    // Connection events cost a program on the connection path: only on
    // when a rule needs them (the baseline does not matter for that).
    let wants_connections = Evaluator::new(&rules, [])?.wants_connections();
    let config = EngineConfig {
        filter: Filter {
            pid: args.pid,
            ..Filter::default()
        },
        connections: wants_connections,
        ..EngineConfig::default()
    };
    let (mut engine, baseline) = Engine::start(&config)?;
    if let Some(reason) = engine.fallback_reason() {
        eprintln!("portwatch: warning: eBPF unavailable ({reason}); polling procfs instead");
        if wants_connections {
            eprintln!("portwatch: warning: ExternalConnection rules need eBPF and will not fire");
        }
    }
    // Processes already listening are known to UnknownProcessListening.
    let mut evaluator = Evaluator::new(&rules, baseline.iter().map(|e| e.listener.comm.clone()))?;
    let mut sink = Sink::new(args.json);
    let ready = format!(
        "watching with {} rules from {} ({} listeners already open)",
        rules.rules.len(),
        path.display(),
        baseline.len()
    );
    if sink.is_json() {
        sink.line(&output::ready_json(
            engine.backend_name(),
            baseline.len(),
            &Utc::now(),
        ))?;
    } else {
        eprintln!("portwatch: {ready}");
    }

    let mut sampler = Sampler::new();
    let mut tick = tokio::time::interval(args.sample_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let alerts = tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            reports = engine.next_reports() => {
                let mut alerts = Vec::new();
                for r in reports? {
                    match r {
                        Report::Port(ev) => alerts.extend(evaluator.on_port(&ev)),
                        Report::Connection(c) => alerts.extend(evaluator.on_connection(&c)),
                        Report::Resync(_) => {}
                    }
                }
                alerts
            }
            _ = tick.tick(), if evaluator.wants_samples() => {
                let pids = owners(&engine);
                sampler.sample(&pids).iter().flat_map(|s| evaluator.on_sample(s)).collect()
            }
            changed = next_change(&mut changes, &path) => {
                changed?;
                reload(&path, &mut evaluator, &mut sink)?;
                // A reload may enable or disable connection rules.
                if let Err(e) = engine.set_connections(evaluator.wants_connections()) {
                    eprintln!("portwatch: connection rules cannot run: {e}");
                }
                Vec::new()
            }
        };
        for a in &alerts {
            let line = if sink.is_json() {
                output::alert_json(a)
            } else {
                output::alert_line(a)
            };
            sink.line(&line)?;
        }
    }
    Ok(())
}

/// The distinct owners of open listeners: (pid, name).
fn owners(engine: &Engine) -> Vec<(u32, String)> {
    let mut pids: Vec<(u32, String)> = engine
        .listeners()
        .into_iter()
        .filter(|l| l.pid != 0)
        .map(|l| (l.pid, l.comm))
        .collect();
    pids.sort();
    pids.dedup_by_key(|p| p.0);
    pids
}

fn reload(path: &Path, evaluator: &mut Evaluator, sink: &mut Sink) -> anyhow::Result<()> {
    let (kind, message) = match store::load(path)
        .map_err(anyhow::Error::from)
        .and_then(|r| {
            evaluator.replace_rules(&r)?;
            Ok(r.rules.len())
        }) {
        Ok(n) => (
            "rules_reloaded",
            format!("reloaded {n} rules from {}", path.display()),
        ),
        Err(e) => (
            "rules_error",
            format!("{e}; the previous rules stay in force"),
        ),
    };
    if sink.is_json() {
        sink.line(&output::notice_json(kind, &message))?;
    } else {
        eprintln!("portwatch: {message}");
    }
    Ok(())
}

type Changes = EventStream<Vec<u8>>;

/// Watches the file's directory: editors and `alerts init` replace the
/// file by renaming over it, which a watch on the file itself would miss.
fn watch_file(path: &Path) -> anyhow::Result<Changes> {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let inotify = Inotify::init().context("cannot start inotify")?;
    inotify
        .watches()
        .add(
            &dir,
            WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE,
        )
        .with_context(|| format!("cannot watch {} for changes", dir.display()))?;
    inotify
        .into_event_stream(vec![0u8; 4096])
        .context("cannot read inotify events")
}

/// Waits until the rules file itself changes.
async fn next_change(changes: &mut Changes, path: &Path) -> anyhow::Result<()> {
    let name: Option<OsString> = path.file_name().map(|n| n.to_os_string());
    loop {
        let event =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *changes), cx))
                .await;
        match event {
            Some(Ok(ev)) if ev.name.is_some() && ev.name == name => return Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("inotify failed"),
            None => anyhow::bail!("inotify stopped"),
        }
    }
}
