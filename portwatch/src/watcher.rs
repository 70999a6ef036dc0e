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

use std::{
    net::IpAddr,
    pin::Pin,
    sync::mpsc as std_mpsc,
    task::{Context, Poll},
    thread::JoinHandle,
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use crate::{
    engine::EngineConfig,
    error::{Error, Result},
    event::{Change, PortEvent, Proto},
    filter::Filter,
    monitor::{Monitor, MonitorConfig, MonitorEvent},
};

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
}

/// A port that appeared or went away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortChange {
    Opened(Port),
    Closed(Port),
}

impl From<&PortEvent> for PortChange {
    fn from(ev: &PortEvent) -> Self {
        let port = Port {
            port: ev.listener.port,
            pid: ev.listener.pid,
            address: ev.listener.address,
            state: match ev.change {
                Change::Opened => State::Open,
                Change::Closed => State::Closed,
            },
            proto: ev.listener.proto,
            exposure: ev.listener.exposure.clone(),
        };
        match ev.change {
            Change::Opened => PortChange::Opened(port),
            Change::Closed => PortChange::Closed(port),
        }
    }
}

type Callback = Box<dyn FnMut(PortChange) + Send>;

/// What the watcher's thread is asked to do while it runs.
enum Command {
    Add(u32, std_mpsc::Sender<Result<()>>),
    Remove(u32, std_mpsc::Sender<Result<()>>),
}

struct Running {
    commands: mpsc::UnboundedSender<Command>,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// Watches process trees for ports opened and closed, calling back in
/// order from a thread of its own. Needs root (eBPF); falls back to
/// procfs polling otherwise.
pub struct PortWatcher {
    config: MonitorConfig,
    /// Trees added before [`Self::start`], besides the first.
    more_roots: Vec<u32>,
    callback: Option<Callback>,
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
        Self {
            config: MonitorConfig {
                engine: config,
                ..MonitorConfig::default()
            },
            more_roots: Vec::new(),
            callback: Some(Box::new(callback)),
            running: None,
        }
    }

    /// Reports a port only once it has lived `settle`; one that closes
    /// sooner is not reported at all. Takes effect at [`Self::start`].
    pub fn set_settle(&mut self, settle: Duration) {
        self.config.settle = (!settle.is_zero()).then_some(settle);
    }

    /// Watches the tree of `pid` too, now if running (its current ports
    /// are reported opened), else from [`Self::start`]. The Go package's
    /// `AddPID`. Needs a watcher made with a pid.
    pub fn add_pid(&mut self, pid: u32) -> Result<()> {
        match &self.running {
            Some(r) => ask(r, |reply| Command::Add(pid, reply)),
            None => {
                crate::engine::check_pid(pid)?;
                self.check_tree()?;
                if !self.more_roots.contains(&pid) {
                    self.more_roots.push(pid);
                }
                Ok(())
            }
        }
    }

    /// Stops watching the tree of `pid`; while running, its open ports
    /// are reported closed (to this watcher; they may still be open).
    /// The Go package's `RemovePID`. Like [`Self::add_pid`], not to be
    /// called from the callback, which runs on the thread that answers.
    pub fn remove_pid(&mut self, pid: u32) -> Result<()> {
        match &self.running {
            Some(r) => ask(r, |reply| Command::Remove(pid, reply)),
            None => {
                self.check_tree()?;
                if self.config.engine.filter.pid == Some(pid) {
                    // The first root goes; another takes its place. The
                    // last one cannot go: a watcher without a tree would
                    // watch every process.
                    let Some(next) = self.more_roots.pop() else {
                        return Err(Error::Refused(
                            "a watcher that has not started keeps at least one pid".into(),
                        ));
                    };
                    self.config.engine.filter.pid = Some(next);
                }
                self.more_roots.retain(|&p| p != pid);
                Ok(())
            }
        }
    }

    fn check_tree(&self) -> Result<()> {
        if self.config.engine.filter.pid.is_none() {
            return Err(Error::Refused(
                "pids can be added only to a watcher made with one".into(),
            ));
        }
        Ok(())
    }

    /// Scans the current ports (each reported to the callback as opened),
    /// then watches in the background. Returns once watching; an error if
    /// it cannot start. Calling it again while running does nothing.
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let Some(mut callback) = self.callback.take() else {
            return Ok(());
        };
        let config = self.config.clone();
        let more_roots = self.more_roots.clone();
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<()>>();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (commands, mut command_rx) = mpsc::unbounded_channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("portwatch".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = ready_tx.send(Err(Error::Io {
                            what: "cannot start the event loop",
                            source,
                        }));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut monitor = match Monitor::start(config) {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    for pid in more_roots {
                        if let Err(e) = monitor.add_root(pid) {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => return,
                            Some(cmd) = command_rx.recv() => match cmd {
                                Command::Add(pid, reply) => {
                                    let _ = reply.send(monitor.add_root(pid));
                                }
                                Command::Remove(pid, reply) => {
                                    let _ = reply.send(monitor.remove_root(pid));
                                }
                            },
                            ev = monitor.next() => match ev {
                                Ok(MonitorEvent::Port(ev)) => callback((&ev).into()),
                                Ok(MonitorEvent::Ready(_)) => {
                                    let _ = ready_tx.send(Ok(()));
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::error!("portwatch stopped: {e}");
                                    return;
                                }
                            },
                        }
                    }
                });
            })
            .map_err(|source| Error::Io {
                what: "cannot start the watcher thread",
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {
                self.running = Some(Running {
                    commands,
                    stop: stop_tx,
                    thread,
                });
                Ok(())
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::Io {
                    what: "the watcher thread died",
                    source: std::io::Error::other("no start result"),
                })
            }
        }
    }

    /// Stops watching and waits for the background thread to end; the
    /// kernel programs are detached when it returns.
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(());
            let _ = r.thread.join();
        }
    }
}

/// Asks the running watcher's thread and waits for its answer.
fn ask(r: &Running, command: impl FnOnce(std_mpsc::Sender<Result<()>>) -> Command) -> Result<()> {
    let (tx, rx) = std_mpsc::channel();
    let gone = || Error::Io {
        what: "the watcher thread has stopped",
        source: std::io::Error::other("no answer"),
    };
    r.commands.send(command(tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

impl Drop for PortWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every event of a watch as an async stream: first the baseline, then
/// live changes. Must be called inside a tokio runtime. The kernel's ring
/// buffer is read as the stream is polled: a consumer that falls behind
/// makes the kernel drop events, which a resync then repairs. The watch
/// stops when the stream is dropped.
pub fn watch(config: EngineConfig) -> Result<EventStream> {
    let monitor = Monitor::start(MonitorConfig {
        engine: config,
        ..MonitorConfig::default()
    })?;
    Ok(EventStream {
        state: StreamState::Idle(Box::new(monitor)),
    })
}

type NextEvent = Pin<Box<dyn Future<Output = (Box<Monitor>, Result<MonitorEvent>)> + Send>>;

/// See [`watch`].
pub struct EventStream {
    state: StreamState,
}

enum StreamState {
    Idle(Box<Monitor>),
    /// Waiting for the monitor's next event; the future owns the monitor
    /// until it is ready.
    Waiting(NextEvent),
    /// Stopped by an error.
    Done,
}

impl futures_core::Stream for EventStream {
    type Item = Result<PortEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match std::mem::replace(&mut self.state, StreamState::Done) {
                StreamState::Done => return Poll::Ready(None),
                StreamState::Idle(mut monitor) => {
                    self.state = StreamState::Waiting(Box::pin(async move {
                        let next = monitor.next().await;
                        (monitor, next)
                    }));
                }
                StreamState::Waiting(mut next) => match next.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = StreamState::Waiting(next);
                        return Poll::Pending;
                    }
                    Poll::Ready((monitor, Ok(MonitorEvent::Port(ev)))) => {
                        self.state = StreamState::Idle(monitor);
                        return Poll::Ready(Some(Ok(ev)));
                    }
                    Poll::Ready((monitor, Ok(_))) => self.state = StreamState::Idle(monitor),
                    Poll::Ready((_, Err(e))) => return Poll::Ready(Some(Err(e))),
                },
            }
        }
    }
}
