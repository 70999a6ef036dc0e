//! `portwatch policy`: learn the expected listeners of this host, or
//! check it against them (exit 0: it matches; 1: it drifted; 2: the
//! check could not run).

use std::{collections::HashMap, path::Path, time::Duration};

use portwatch::{
    Monitor, MonitorConfig, MonitorEvent,
    event::{Change, Listener},
    files::CheckedDir,
    policy::{self, drift},
    wire::Line,
};

use crate::{args::PolicyCommand, shutdown::Shutdown, sink::Sink};

/// `policy check` found drifts: exit status 1.
#[derive(Debug, thiserror::Error)]
#[error("the host drifted from the policy ({0} drifts)")]
pub struct Drifted(pub usize);

pub async fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Learn {
            duration,
            output,
            tag,
            netns,
        } => learn(duration, output.as_deref(), tag, netns).await,
        PolicyCommand::Check { file, json, netns } => check(&file, json, netns),
    }
}

/// The monitor's `--policy FILE`, loaded (a bad file stops the start).
pub fn source(path: Option<&Path>) -> anyhow::Result<Option<portwatch::monitor::PolicySource>> {
    let Some(path) = path else { return Ok(None) };
    Ok(Some(portwatch::monitor::PolicySource {
        path: path.to_path_buf(),
        policy: policy::load(path)?,
    }))
}

/// Owners of other users' sockets are out of reach for a user: they
/// would be judged unexpected, and a policy learned would name none.
fn need_root(what: &str) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        anyhow::bail!(
            "`portwatch policy {what}` needs root (sudo): as a user, other users' sockets show no owner and their entries cannot be told apart"
        );
    }
    Ok(())
}

/// The listeners open now, of one namespace or all.
fn open_now(netns: Option<u64>) -> anyhow::Result<Vec<Listener>> {
    let mut listeners = portwatch::list(None)?.listeners;
    listeners.retain(|l| netns.is_none_or(|n| l.netns == n));
    Ok(listeners)
}

fn check(file: &Path, json: bool, netns: Option<u64>) -> anyhow::Result<()> {
    let policy = policy::load(file)?;
    need_root("check")?;
    let drifts = drift::check(&policy, &open_now(netns)?, chrono::Utc::now());
    let mut sink = Sink::new(json);
    for d in &drifts {
        if json {
            sink.line(&Line::from(d).to_json())?;
        } else {
            sink.line(&portwatch::output::drift_line(d))?;
        }
    }
    sink.flush()?;
    if drifts.is_empty() {
        Ok(())
    } else {
        Err(Drifted(drifts.len()).into())
    }
}

async fn learn(
    duration: Option<Duration>,
    output: Option<&Path>,
    tags: Vec<String>,
    netns: Option<u64>,
) -> anyhow::Result<()> {
    need_root("learn")?;
    // Checked before the wait, not after it.
    let target = output.map(|p| CheckedDir::of_file(p, false)).transpose()?;
    for t in &tags {
        if t.is_empty() || t.chars().any(char::is_control) {
            anyhow::bail!("a --tag must be a non-empty line of text");
        }
    }
    let seen = match duration.filter(|d| !d.is_zero()) {
        None => open_now(netns)?,
        Some(d) => watch_for(d, netns).await?,
    };
    let mut users = portwatch::host::UserNames::new();
    let file = policy::learn::learn(&seen, ephemeral_range(), &mut |uid| users.name(uid), tags);
    // What it writes, it must read back the same.
    policy::Policy::compile(file.clone()).map_err(|why| {
        anyhow::anyhow!("the learned policy would not load ({why}); this is a bug")
    })?;
    let mut text = serde_json::to_string_pretty(&file)?;
    text.push('\n');
    match target {
        None => {
            let mut sink = Sink::new(true);
            sink.line(text.trim_end())?;
            sink.flush()?;
        }
        Some((dir, name)) => {
            dir.replace(&name, text.as_bytes(), 0o644, None)?;
            crate::log::info(&format!(
                "wrote {} expected listeners to {}",
                file.expected.len(),
                dir.path().join(&name).display()
            ));
        }
    }
    Ok(())
}

/// Every listener open at the start or opened within `d` (Ctrl-C ends
/// the wait early, keeping what was seen).
async fn watch_for(d: Duration, netns: Option<u64>) -> anyhow::Result<Vec<Listener>> {
    let mut shutdown = Shutdown::install()?;
    let mut config = MonitorConfig::default();
    config.engine.filter.netns = netns;
    let mut monitor = Monitor::start(config)?;
    let mut seen: HashMap<(portwatch::event::ListenerKey, u32), Listener> = HashMap::new();
    let stop = shutdown.requested();
    tokio::pin!(stop);
    let end = tokio::time::sleep(d);
    tokio::pin!(end);
    let mut ready = false;
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = &mut end, if ready => break,
            ev = monitor.next() => match ev? {
                MonitorEvent::Port(ev) if ev.change == Change::Opened => {
                    seen.insert((ev.listener.key(), ev.listener.pid), ev.listener);
                }
                MonitorEvent::Ready(r) => {
                    ready = true;
                    crate::log::info(&format!(
                        "learning for {d:?} from {} listeners open now; Ctrl-C stops early",
                        r.listeners
                    ));
                    end.as_mut().reset(tokio::time::Instant::now() + d);
                }
                _ => {}
            },
        }
    }
    Ok(seen.into_values().collect())
}

/// `net.ipv4.ip_local_port_range`, or the kernel's default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or((32768, 60999))
}
