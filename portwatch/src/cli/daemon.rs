//! `portwatch daemon`: watch, evaluate the alert rules, print each alert;
//! the monitor reloads the rules when their file changes.

use std::ops::ControlFlow;

use portwatch::{
    Monitor, MonitorConfig, MonitorEvent,
    monitor::{NoticeKind, RulesSource},
    output,
    rules::store,
};

use crate::{args::DaemonArgs, shutdown::Shutdown, sink::Sink};

pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let (engine, sample_interval) = args.config()?;
    let path = match args.alerts {
        Some(p) => p,
        None => store::read_path()?,
    };
    let rules = store::load(&path)?;
    let mut shutdown = Shutdown::install()?;
    let n_rules = rules.file.rules.len();
    let mut monitor = Monitor::start(MonitorConfig {
        engine,
        rules: Some(RulesSource {
            path: path.clone(),
            rules,
        }),
        sample_interval,
    })?;
    if let Some(reason) = monitor.fallback_reason() {
        eprintln!("portwatch: warning: eBPF unavailable ({reason}); polling procfs instead");
    }
    let mut sink = Sink::new(args.json);
    monitor
        .run_until(shutdown.requested(), |ev, more_queued| {
            // Messages on stderr come after the lines before them.
            if !matches!(ev, MonitorEvent::Port(_)) {
                sink.flush()?;
            }
            match ev {
                MonitorEvent::Ready(r) if sink.is_json() => {
                    sink.line(&output::ready_json(r.backend, r.listeners, &r.ts))?;
                }
                MonitorEvent::Ready(r) => eprintln!(
                    "portwatch: watching with {n_rules} rules from {} ({} listeners already open)",
                    path.display(),
                    r.listeners
                ),
                MonitorEvent::Alert(a) if sink.is_json() => sink.line(&output::alert_json(&a))?,
                MonitorEvent::Alert(a) => sink.line(&output::alert_line(&a))?,
                MonitorEvent::Notice(n) if sink.is_json() && n.kind != NoticeKind::Warning => {
                    sink.line(&output::notice_json(&n))?;
                }
                MonitorEvent::Notice(n) => eprintln!("portwatch: {}", n.message),
                MonitorEvent::Port(_) | MonitorEvent::Resync(_) => {}
            }
            if !more_queued {
                sink.flush()?;
            }
            Ok::<_, anyhow::Error>(ControlFlow::Continue(()))
        })
        .await?;
    sink.flush()?;
    Ok(())
}
