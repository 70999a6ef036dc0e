//! The library API: what the Go port-watcher offered, in Rust.
//!
//! ```no_run
//! use portwatch::watcher::{PortChange, PortWatcher};
//!
//! let mut watcher = PortWatcher::new(std::process::id(), |change| match change {
//!     PortChange::Opened(p) => println!("new port {}:{} (pid {})", p.address, p.port, p.pid),
//!     PortChange::Closed(p) => println!("closed {}:{} (pid {})", p.address, p.port, p.pid),
//! })?;
//! watcher.start()?; // the initial scan's ports are reported before this returns
//! // ...
//! watcher.stop();
//! # Ok::<(), portwatch::Error>(())
//! ```
//!
//! Like the Go package's v3, one watcher can follow several process trees,
//! added and removed while it runs ([`PortWatcher::add_pid`],
//! [`PortWatcher::remove_pid`]), in one network namespace
//! ([`PortWatcher::with_namespace`]); with a settle time
//! ([`PortWatcher::set_settle`]) a port that closes at once is not
//! reported. For tokio users, [`watch`] gives every [`PortEvent`] as a
//! `Stream`.
//!
//! Without root, [`PortWatcher::connect`] follows a tree through a running
//! daemon's event socket instead (`portwatch daemon --socket`), with the
//! same callbacks; it reconnects when the daemon restarts, and reports
//! only what changed meanwhile. [`PortWatcher::on_lost`] hears of the
//! gaps:
//!
//! ```no_run
//! use portwatch::watcher::{PortChange, PortWatcher};
//!
//! let pid = std::process::id();
//! let mut watcher = PortWatcher::connect("/run/portwatch/portwatch.sock", pid, |change| {
//!     println!("{change:?}");
//! })?;
//! watcher.on_lost(|lost| eprintln!("events may be missing: {lost}"));
//! watcher.start()?; // Err: no daemon there, or it refused (another user's pid)
//! # Ok::<(), portwatch::Error>(())
//! ```

mod follow;
mod lines;
mod local;
mod remote;
mod stream;
mod view;

use std::{
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::mpsc as std_mpsc,
    thread::JoinHandle,
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use crate::{
    engine::EngineConfig,
    error::{Error, Result},
    event::{Change, Listener, PortEvent, Proto},
    filter::Filter,
    monitor::MonitorConfig,
};

pub use stream::{EventStream, watch};

/// Whether a port is open or closed, as the Go package's `State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    Closed,
}

impl State {
    /// `"open"` or `"closed"`, the Go package's strings.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Closed => "closed",
        }
    }
}

/// A listening port, as the Go package reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub port: u16,
    /// The owning process.
    pub pid: u32,
    pub address: IpAddr,
    pub state: State,
    /// TCP or UDP (the Go package watched TCP alone).
    pub proto: Proto,
    /// Who can reach it (see `docs/exposure.md`); a close carries the
    /// last judgement. `None` where it was not judged.
    pub exposure: Option<crate::event::Exposure>,
    /// Why its owner is there (see `docs/why.md`): ancestry, source,
    /// project, executable and package. `None` where it was not told.
    pub context: Option<std::sync::Arc<crate::owner::OwnerContext>>,
}

/// A port that appeared or went away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortChange {
    Opened(Port),
    Closed(Port),
}

impl PortChange {
    /// `listener` opened or closed.
    pub(crate) fn of(change: Change, listener: &Listener) -> Self {
        let port = Port {
            port: listener.port,
            pid: listener.pid,
            address: listener.address,
            state: match change {
                Change::Opened => State::Open,
                Change::Closed => State::Closed,
            },
            proto: listener.proto,
            exposure: listener.exposure.clone(),
            context: listener.context.clone(),
        };
        match change {
            Change::Opened => PortChange::Opened(port),
            Change::Closed => PortChange::Closed(port),
        }
    }
}

impl From<&PortEvent> for PortChange {
    fn from(ev: &PortEvent) -> Self {
        PortChange::of(ev.change, &ev.listener)
    }
}

/// Why a connected watcher's view may lack changes (see
/// [`PortWatcher::on_lost`]). Each is also logged (`tracing`, warn).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lost {
    /// The daemon says this watcher fell behind and missed `events`
    /// events. Its fresh baseline follows, and only the difference is
    /// reported, as after a reconnection.
    Missed { events: u64 },
    /// The connection ended (the daemon stopped or restarted, or sent
    /// what this version cannot read). The watcher reconnects, and then
    /// reports what closed and opened meanwhile.
    Disconnected { reason: String },
    /// An attempt to reconnect failed (no daemon yet, a refusal); the
    /// next is made in `retry_in`, which grows from 100 ms to 5 s.
    Reconnecting { reason: String, retry_in: Duration },
    /// A line of a newer daemon's this version cannot read (a value it
    /// does not know) was skipped: the change it told of is missing.
    Unreadable { reason: String },
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Missed { events } => write!(
                f,
                "fell behind the daemon and missed {events} events; reconciling with its fresh baseline"
            ),
            Lost::Disconnected { reason } => write!(f, "disconnected: {reason}; reconnecting"),
            Lost::Reconnecting { reason, retry_in } => write!(
                f,
                "cannot reconnect yet: {reason}; trying again in {} ms",
                retry_in.as_millis()
            ),
            Lost::Unreadable { reason } => write!(f, "skipped a line: {reason}"),
        }
    }
}

type Callback = Box<dyn FnMut(PortChange) + Send>;
type LostCallback = Box<dyn FnMut(Lost) + Send>;

/// The user's callbacks, handed back when a start fails.
struct Callbacks {
    change: Callback,
    lost: Option<LostCallback>,
}

/// What the watcher's thread is asked to do while it runs.
enum Command {
    Add(u32, std_mpsc::Sender<Result<()>>),
    Remove(u32, std_mpsc::Sender<Result<()>>),
}

/// What is watched, and how.
enum Origin {
    /// A monitor of the watcher's own (root).
    Local {
        /// Boxed: far larger than the daemon's path and filter.
        config: Box<MonitorConfig>,
        /// Trees added before [`PortWatcher::start`], besides the first.
        more_roots: Vec<u32>,
    },
    /// A daemon's event socket, asked for `filter`.
    Daemon { path: PathBuf, filter: Filter },
}

struct Running {
    /// None for a connected watcher, which answers no commands.
    commands: Option<mpsc::UnboundedSender<Command>>,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<Option<Callbacks>>,
}

/// The body of a watcher's thread: Some(callbacks) when it could not
/// start, so that a later [`PortWatcher::start`] can try again.
type Body = Pin<Box<dyn Future<Output = Option<Callbacks>> + Send>>;

/// Watches process trees for ports opened and closed, calling back in
/// order from a thread of its own. Made with [`Self::new`] it runs a
/// monitor of its own, which needs root (eBPF; it falls back to procfs
/// polling otherwise); made with [`Self::connect`] it reads a running
/// daemon's event socket instead, as any member of the socket's group.
pub struct PortWatcher {
    origin: Origin,
    callbacks: Option<Callbacks>,
    running: Option<Running>,
}

impl PortWatcher {
    /// A watcher of `pid` and its descendants. Fails if `pid` does not exist.
    pub fn new(pid: u32, callback: impl FnMut(PortChange) + Send + 'static) -> Result<Self> {
        Self::with_namespace(pid, "", callback)
    }

    /// A watcher of `pid` and its descendants, in one network namespace:
    /// its name as `ip netns` knows it (`/run/netns/NAME`), or its inode
    /// number; `""` for every namespace. Fails if either does not exist.
    pub fn with_namespace(
        pid: u32,
        namespace: &str,
        callback: impl FnMut(PortChange) + Send + 'static,
    ) -> Result<Self> {
        crate::engine::check_pid(pid)?;
        let netns = match namespace {
            "" => None,
            n => Some(match n.parse::<u64>() {
                Ok(ino) => ino,
                Err(_) => crate::sys::netns::inode_of_name(n).ok_or_else(|| {
                    Error::Refused(format!(
                        "no network namespace is named {:?} (in /run/netns)",
                        crate::safe_text::safe_str(n)
                    ))
                })?,
            }),
        };
        let config = EngineConfig {
            filter: Filter {
                pid: Some(pid),
                netns,
                ..Filter::default()
            },
            ..EngineConfig::default()
        };
        Ok(Self::with_config(config, callback))
    }

    /// A watcher with any settings (filters, backend, ...).
    pub fn with_config(
        config: EngineConfig,
        callback: impl FnMut(PortChange) + Send + 'static,
    ) -> Self {
        Self::made(
            Origin::Local {
                config: Box::new(MonitorConfig {
                    engine: config,
                    ..MonitorConfig::default()
                }),
                more_roots: Vec::new(),
            },
            callback,
        )
    }

    /// A watcher of `pid` and its descendants through the event socket of
    /// a running daemon at `path` (`portwatch daemon --socket PATH`;
    /// [`crate::serve::DEFAULT_SOCKET`] by default), which needs no root:
    /// membership of the socket's group, and `pid` owned by the caller's
    /// user (root may ask for any). Nothing is checked before
    /// [`Self::start`], whose error carries the daemon's refusal.
    ///
    /// The same callbacks as a watcher of its own, in order, from a
    /// thread of its own. When the connection ends after the start, the
    /// watcher reconnects (after 100 ms, doubling up to 5 s), and on the
    /// new baseline reports as closed what closed meanwhile and as opened
    /// only what is new; [`Self::on_lost`] hears of every such gap. A
    /// connected watcher follows one tree: [`Self::add_pid`] and
    /// [`Self::remove_pid`] are refused (connect one watcher per tree),
    /// and [`Self::set_settle`] is the daemon's to set.
    pub fn connect(
        path: impl AsRef<Path>,
        pid: u32,
        callback: impl FnMut(PortChange) + Send + 'static,
    ) -> Result<Self> {
        if pid == 0 {
            return Err(Error::NoSuchProcess(0));
        }
        let filter = Filter {
            pid: Some(pid),
            ..Filter::default()
        };
        Ok(Self::connect_with_filter(path, filter, callback))
    }

    /// Like [`Self::connect`], with any filter the daemon's request takes:
    /// a pid tree, a protocol, local addresses only, a network namespace
    /// (by inode); `Filter::default()` for every port the daemon sees.
    pub fn connect_with_filter(
        path: impl AsRef<Path>,
        filter: Filter,
        callback: impl FnMut(PortChange) + Send + 'static,
    ) -> Self {
        Self::made(
            Origin::Daemon {
                path: path.as_ref().to_path_buf(),
                filter,
            },
            callback,
        )
    }

    fn made(origin: Origin, callback: impl FnMut(PortChange) + Send + 'static) -> Self {
        Self {
            origin,
            callbacks: Some(Callbacks {
                change: Box::new(callback),
                lost: None,
            }),
            running: None,
        }
    }

    /// Calls `callback`, from the watcher's thread, whenever a connected
    /// watcher's view may lack changes: the daemon says it fell behind, the
    /// connection ended, an attempt to reconnect failed, or a line was
    /// skipped (see [`Lost`]). What it missed is repaired when the fresh
    /// baseline is reconciled; in between, a supervisor knows its view had
    /// a gap. A watcher with a monitor of its own repairs its losses with
    /// resyncs, and never calls it. Takes effect at [`Self::start`].
    pub fn on_lost(&mut self, callback: impl FnMut(Lost) + Send + 'static) {
        if let Some(c) = &mut self.callbacks {
            c.lost = Some(Box::new(callback));
        }
    }

    /// Reports a port only once it has lived `settle`; one that closes
    /// sooner is not reported at all. Takes effect at [`Self::start`].
    /// A connected watcher gets what its daemon reports (`--settle`), and
    /// ignores this.
    pub fn set_settle(&mut self, settle: Duration) {
        if let Origin::Local { config, .. } = &mut self.origin {
            config.settle = (!settle.is_zero()).then_some(settle);
        }
    }

    /// Watches the tree of `pid` too, now if running (its current ports
    /// are reported opened), else from [`Self::start`]. The Go package's
    /// `AddPID`. Needs a watcher made with a pid, and one of its own: a
    /// connected watcher follows one tree (connect another for another).
    pub fn add_pid(&mut self, pid: u32) -> Result<()> {
        if let Some(r) = &self.running {
            return ask(r, |reply| Command::Add(pid, reply));
        }
        let (config, more_roots) = self.tree()?;
        crate::engine::check_pid(pid)?;
        if config.engine.filter.pid != Some(pid) && !more_roots.contains(&pid) {
            more_roots.push(pid);
        }
        Ok(())
    }

    /// Stops watching the tree of `pid`; while running, its open ports
    /// are reported closed (to this watcher; they may still be open).
    /// The Go package's `RemovePID`. Like [`Self::add_pid`], not to be
    /// called from the callback, which runs on the thread that answers,
    /// and refused by a connected watcher.
    pub fn remove_pid(&mut self, pid: u32) -> Result<()> {
        if let Some(r) = &self.running {
            return ask(r, |reply| Command::Remove(pid, reply));
        }
        let (config, more_roots) = self.tree()?;
        if config.engine.filter.pid == Some(pid) {
            // The first root goes; another takes its place. The last one
            // cannot go: a watcher without a tree would watch every
            // process.
            let Some(next) = more_roots.pop() else {
                return Err(Error::Refused(
                    "a watcher that has not started keeps at least one pid".into(),
                ));
            };
            config.engine.filter.pid = Some(next);
        }
        more_roots.retain(|&p| p != pid);
        Ok(())
    }

    /// The settings of a watcher of its own made with a pid.
    fn tree(&mut self) -> Result<(&mut MonitorConfig, &mut Vec<u32>)> {
        match &mut self.origin {
            Origin::Local { config, more_roots } if config.engine.filter.pid.is_some() => {
                Ok((config, more_roots))
            }
            Origin::Local { .. } => Err(Error::Refused(
                "pids can be added only to a watcher made with one".into(),
            )),
            Origin::Daemon { .. } => Err(connected_follows_one_tree()),
        }
    }

    /// Reports the current ports (each to the callback as opened), then
    /// watches in the background. Returns once watching; an error if it
    /// cannot start (for a connected watcher: the socket cannot be
    /// reached, the daemon refused, or it sent no baseline within 10 s),
    /// after which it may be started again. Calling it again while
    /// running does nothing.
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let Some(callbacks) = self.callbacks.take() else {
            return Ok(());
        };
        let (started_tx, started_rx) = std_mpsc::channel::<Result<()>>();
        let no_runtime = started_tx.clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (commands, body): (_, Body) = match &self.origin {
            Origin::Local { config, more_roots } => {
                let (tx, rx) = mpsc::unbounded_channel::<Command>();
                let (config, more_roots) = ((**config).clone(), more_roots.clone());
                let body = async move {
                    let Callbacks { change, lost } = callbacks;
                    local::run(config, more_roots, change, started_tx, rx)
                        .await
                        .map(|change| Callbacks { change, lost })
                };
                (Some(tx), Box::pin(body))
            }
            Origin::Daemon { path, filter } => {
                let mut request = crate::wire::request::request_line(filter);
                request.push('\n');
                let daemon = remote::Daemon {
                    path: path.clone(),
                    request,
                };
                (None, Box::pin(remote::run(daemon, callbacks, started_tx)))
            }
        };
        let thread = std::thread::Builder::new()
            .name("portwatch".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = no_runtime.send(Err(Error::Io {
                            what: "cannot start the event loop",
                            source,
                        }));
                        return None;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stop_rx => None,
                        back = body => back,
                    }
                })
            })
            .map_err(|source| Error::Io {
                what: "cannot start the watcher thread",
                source,
            })?;
        match started_rx.recv() {
            Ok(Ok(())) => {
                self.running = Some(Running {
                    commands,
                    stop: stop_tx,
                    thread,
                });
                Ok(())
            }
            Ok(Err(e)) => {
                self.callbacks = thread.join().ok().flatten();
                Err(e)
            }
            Err(_) => {
                self.callbacks = thread.join().ok().flatten();
                Err(Error::Io {
                    what: "the watcher thread died",
                    source: std::io::Error::other("no start result"),
                })
            }
        }
    }

    /// Stops watching and waits for the background thread to end; the
    /// kernel programs are detached (or the connection closed) when it
    /// returns.
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(());
            let _ = r.thread.join();
        }
    }
}

fn connected_follows_one_tree() -> Error {
    Error::Refused(
        "a watcher connected to a daemon follows the one tree it asked for: connect another watcher for another tree".into(),
    )
}

/// Asks the running watcher's thread and waits for its answer.
fn ask(r: &Running, command: impl FnOnce(std_mpsc::Sender<Result<()>>) -> Command) -> Result<()> {
    let Some(commands) = &r.commands else {
        return Err(connected_follows_one_tree());
    };
    let (tx, rx) = std_mpsc::channel();
    let gone = || Error::Io {
        what: "the watcher thread has stopped",
        source: std::io::Error::other("no answer"),
    };
    commands.send(command(tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

impl Drop for PortWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}
