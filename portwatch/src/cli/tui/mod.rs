//! The terminal UI: `portwatch` with no command. The monitor's events,
//! keys, the mouse and two clocks (the age column's second and the
//! sampling tick) feed `App`, plain state; `draw` renders it without I/O;
//! this file is the loop that does the I/O `App` asks for.
//!
//! - `app.rs`: the state and what each input does to it;
//! - `view.rs`: the table's rows (filter, sort, tree, groups);
//! - `filter.rs`: the filter language; `keys.rs`: the key map;
//! - `layout.rs`: where each part goes; `draw.rs`: drawing;
//! - `text.rs`: shortening and wrapping text to a width;
//! - `editor.rs`: the rule editor; `export.rs`: JSON and CSV of the view;
//! - `feed.rs`: its own monitor, or a daemon's event socket;
//! - `terminal.rs`: raw mode and its restoration (exit, panic, signal).

mod app;
mod draw;
mod editor;
mod export;
mod feed;
mod filter;
mod keys;
mod layout;
mod terminal;
mod text;
mod view;

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::Utc;
use crossterm::event::{Event, EventStream};
use futures_core::Stream as _;
use portwatch::{
    Monitor, MonitorConfig,
    host::{self, KillTarget, UserNames},
    monitor::RulesSource,
    rules::{
        store::{self, StoreError},
        validate::Rules,
    },
};
use tokio::time::{Instant, MissedTickBehavior, interval};

use crate::{args::TuiArgs, shutdown::Shutdown};
use app::{App, Effect};
use feed::{Fed, Feed};
use view::ProcSummary;

/// The shortest time between two frames.
const FRAME: Duration = Duration::from_millis(16);

pub async fn run(args: TuiArgs) -> anyhow::Result<()> {
    if args.refresh_interval == 0 {
        bail!("--refresh-interval must be longer than 0");
    }
    if let Err(e) = filter::Query::parse(&args.filter) {
        bail!("--filter: {e}");
    }
    // With `--backend auto` (the default) an unprivileged TUI still works,
    // on procfs, as portwatch 0.1.8 did; the status bar says why.
    let engine = args.engine.config()?;
    let path = match &args.alerts {
        Some(p) => p.clone(),
        None => store::read_path()?,
    };
    let refresh = Duration::from_millis(args.refresh_interval);
    let mut shutdown = Shutdown::install()?;
    let now = Utc::now();
    let mut app = App::new(args.read_only, &args.filter, now);
    let mut feed = match &args.connect {
        Some(socket) => {
            let feed = Feed::connect(socket, &engine.filter).await?;
            app.set_rules(Err(format!(
                "the rules are the daemon's (connected to {})",
                socket.display()
            )));
            app.status.backend = format!("daemon at {}", socket.display());
            feed
        }
        None => {
            let (rules, editable) = rules_at(&path, args.read_only);
            let monitor = Monitor::start(MonitorConfig {
                engine,
                rules,
                sample_interval: refresh,
                settle: args.engine.settle(),
                policy: crate::policy::source(args.policy.as_deref())?,
                ..MonitorConfig::default()
            })?;
            app.set_rules(editable);
            // The reason is said in full (its fix is at its end), in the
            // message line.
            app.status.backend = monitor.backend_name().to_string();
            app.status.fallback = monitor.fallback_reason().map(|why| format!("eBPF: {why}"));
            Feed::Local(Box::new(monitor))
        }
    };
    let mut term = terminal::Terminal::enter().context("cannot set up the terminal")?;
    let journal = Past {
        path: args.journal.clone(),
    };
    let result = event_loop(
        &mut term,
        &mut app,
        &mut feed,
        &mut shutdown,
        refresh,
        &path,
        &journal,
    )
    .await;
    drop(term);
    result
}

/// The rules the monitor evaluates, and what the editor edits (or why it
/// cannot). A missing file is an empty one that the editor can create.
fn rules_at(
    path: &std::path::Path,
    read_only: bool,
) -> (
    Option<RulesSource>,
    Result<portwatch::rules::model::AlertsFile, String>,
) {
    match store::load(path) {
        Ok(rules) => {
            let file = rules.file.clone();
            (
                Some(RulesSource {
                    path: path.to_path_buf(),
                    rules,
                }),
                Ok(file),
            )
        }
        Err(StoreError::Missing(_)) => {
            // Watched from the start, so that rules the editor saves take
            // effect at once: the directory must exist.
            let watchable = !read_only
                && path
                    .parent()
                    .is_some_and(|d| std::fs::create_dir_all(d).is_ok());
            (
                watchable.then(|| RulesSource {
                    path: path.to_path_buf(),
                    rules: Rules::empty(),
                }),
                Ok(Default::default()),
            )
        }
        Err(e) => (None, Err(e.to_string())),
    }
}

/// The journal the details pane reads a port's last holders from, opened
/// for each query (when the selected port changes): a daemon may start or
/// stop writing it meanwhile, and a file opened while no writer was there
/// is read as one that does not change.
struct Past {
    path: std::path::PathBuf,
}

/// Holders the details pane shows.
const HISTORY_ROWS: usize = 10;

impl Past {
    fn recent(
        &self,
        proto: portwatch::Proto,
        port: u16,
    ) -> Result<Vec<portwatch::journal::history::Hold>, String> {
        portwatch::journal::history::History::open(&self.path)
            .and_then(|h| h.recent(proto, port, HISTORY_ROWS))
            .map_err(|e| e.to_string())
    }
}

async fn event_loop(
    term: &mut terminal::Terminal,
    app: &mut App,
    feed: &mut Feed,
    shutdown: &mut Shutdown,
    refresh: Duration,
    rules_path: &std::path::Path,
    journal: &Past,
) -> anyhow::Result<()> {
    let mut input = EventStream::new();
    let mut second = interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sample = interval(refresh);
    sample.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut users = UserNames::new();
    let mut target: Option<KillTarget> = None;
    // SIGHUP reloads the rules, as in every mode; a terminal that really
    // hung up ends the input stream, and with it the UI.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    // At most one frame per FRAME: a burst of events is drawn once.
    let mut last_frame = Instant::now()
        .checked_sub(FRAME)
        .unwrap_or_else(Instant::now);
    let mut next_frame: Option<Instant> = None;
    loop {
        if app.take_dirty() {
            next_frame.get_or_insert((last_frame + FRAME).max(Instant::now()));
        }
        if next_frame.is_some_and(|t| t <= Instant::now()) {
            next_frame = None;
            last_frame = Instant::now();
            app.prepare();
            // The selection moved under the details pane (rows came or
            // went): read its process before drawing.
            if let Some(pid) = app.pending_inspect() {
                app.on_inspected(host::inspect_process(pid));
            }
            // One indexed query, when the selected port changes.
            if let Some((proto, port)) = app.pending_history() {
                app.on_history(proto, port, journal.recent(proto, port));
            }
            app.lay_out(term.size()?);
            term.draw(|f| draw::draw(f, app))?;
            // What preparing the frame changed is in this frame.
            app.take_dirty();
            // Rows: every open one the frame went through (the filter
            // included); shown: the lines it left.
            let live = app.live();
            tracing::debug!(
                "frame: {} us, {} rows, {} shown",
                last_frame.elapsed().as_micros(),
                live.tcp + live.udp,
                app.counts().lines
            );
            continue;
        }
        let frame_due = async {
            match next_frame {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let effects = tokio::select! {
            fed = feed.next() => match fed? {
                Fed::Event(ev) => {
                    let mut name = |uid| users.name(uid);
                    app.on_monitor(*ev, &mut name)
                }
                Fed::Lost(events) => {
                    app.on_lost(events);
                    Vec::new()
                }
                Fed::Skipped(why) => {
                    app.on_signalled(Err(why));
                    Vec::new()
                }
            },
            ev = std::future::poll_fn(|cx| std::pin::Pin::new(&mut input).poll_next(cx)) => match ev {
                Some(Ok(Event::Key(key))) => app.on_key(key),
                Some(Ok(Event::Mouse(m))) => app.on_mouse(m),
                Some(Ok(Event::Resize(..))) => app.on_tick(Utc::now(), false),
                Some(Ok(_)) => Vec::new(),
                Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                None => vec![Effect::Quit],
            },
            _ = second.tick() => {
                // The counters are read once a second: each read is a
                // syscall, which a busy host would pay per event.
                if let Some(stats) = feed.stats() {
                    app.set_stats(stats);
                }
                app.on_tick(Utc::now(), false)
            }
            _ = sample.tick() => app.on_tick(Utc::now(), true),
            () = frame_due => Vec::new(),
            () = shutdown.requested() => vec![Effect::Quit],
            Some(()) = hangups.recv() => {
                if let Feed::Local(monitor) = feed {
                    monitor.reload_rules();
                    monitor.reload_policy();
                }
                Vec::new()
            }
        };
        for effect in effects {
            if !perform(effect, app, feed, &mut users, &mut target, rules_path) {
                return Ok(());
            }
        }
    }
}

/// Does what the app asked; false to quit.
fn perform(
    effect: Effect,
    app: &mut App,
    feed: &mut Feed,
    users: &mut UserNames,
    target: &mut Option<KillTarget>,
    rules_path: &std::path::Path,
) -> bool {
    match effect {
        Effect::Quit => return false,
        Effect::Resync => {
            if !feed.resync_now() {
                app.on_signalled(Err("the daemon resyncs on its own schedule".into()));
            }
        }
        Effect::Inspect(pid) => app.on_inspected(host::inspect_process(pid)),
        Effect::Describe(pids) => {
            for pid in pids {
                let brief = host::describe_process(pid).unwrap_or_default();
                let mut ancestry = brief.ancestry;
                ancestry.reverse();
                app.on_described(
                    pid,
                    ProcSummary {
                        exe: brief.exe,
                        cmdline: brief.cmdline,
                        ancestry,
                    },
                );
            }
        }
        Effect::LoadSockets => match portwatch::list_sockets(None) {
            Ok(sockets) => {
                let mut name = |uid| users.name(uid);
                app.on_sockets(sockets, &mut name);
            }
            Err(e) => app.on_signalled(Err(format!("cannot list the sockets: {e}"))),
        },
        Effect::Pin {
            pid,
            kill: _,
            socket: (proto, local, netns),
        } => {
            let pinned = KillTarget::pin_holding(pid, proto, local, netns)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    // Read after pinning: what the dialog shows is the process
                    // the signal would reach.
                    let info = host::inspect_process(pid)
                        .ok_or_else(|| format!("process {pid} has exited"))?;
                    *target = Some(t);
                    Ok(info)
                });
            app.on_pinned(pinned);
        }
        Effect::Signal { kill } => {
            let result = match target.take() {
                Some(t) => {
                    let pid = t.pid();
                    t.signal(kill)
                        .map(|()| {
                            format!(
                                "sent {} to process {pid}",
                                if kill { "SIGKILL" } else { "SIGTERM" }
                            )
                        })
                        .map_err(|e| e.to_string())
                }
                None => Err("no process is pinned".into()),
            };
            app.on_signalled(result);
        }
        Effect::Unpin => *target = None,
        Effect::Export { csv, text } => app.on_exported(export_file(csv, &text)),
        Effect::SaveRules { base, file } => match store::save_over(rules_path, &file, &base) {
            Ok(()) => app.on_rules_saved(Ok(file)),
            Err(e @ StoreError::ChangedOnDisk(_)) => {
                let now = match store::load(rules_path) {
                    Ok(rules) => Ok(rules.file),
                    Err(StoreError::Missing(_)) => Ok(Default::default()),
                    Err(bad) => Err(bad.to_string()),
                };
                app.on_rules_changed_on_disk(e.to_string(), now);
            }
            Err(e) => app.on_rules_saved(Err(e.to_string())),
        },
    }
    true
}

/// Writes an export to a new file in the working directory (checked like
/// every directory portwatch writes in: see `portwatch::files`); its path.
fn export_file(csv: bool, text: &str) -> Result<String, String> {
    use std::io::Write as _;
    let name = format!(
        "portwatch-view-{}.{}",
        Utc::now().format("%Y%m%d-%H%M%S%.3f"),
        if csv { "csv" } else { "json" }
    );
    let dir = portwatch::files::CheckedDir::open(std::path::Path::new("."), false)
        .map_err(|e| format!("not exported: {e}"))?;
    // The view holds command lines: readable by its owner only.
    dir.create_new(std::path::Path::new(&name), 0o600)
        .map_err(|e| e.to_string())
        .and_then(|mut f| {
            f.write_all(text.as_bytes())
                .map_err(|e| format!("{name}: {e}"))
        })?;
    Ok(std::fs::canonicalize(&name)
        .map(|p| p.display().to_string())
        .unwrap_or(name))
}
