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
//! For tokio users, [`watch`] gives every [`PortEvent`] as a `Stream`.

use std::{
    net::IpAddr,
    ops::ControlFlow,
    pin::Pin,
    sync::mpsc as std_mpsc,
    task::{Context, Poll},
    thread::JoinHandle,
};

use tokio::sync::oneshot;

use crate::{
    engine::EngineConfig,
    error::{Error, Result},
    event::{Change, PortEvent},
    filter::Filter,
    monitor::{Monitor, MonitorConfig, MonitorEvent},
};

/// A listening port, as the Go package reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub port: u16,
    /// The owning process.
    pub pid: u32,
    pub address: IpAddr,
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
        };
        match ev.change {
            Change::Opened => PortChange::Opened(port),
            Change::Closed => PortChange::Closed(port),
        }
    }
}

type Callback = Box<dyn FnMut(PortChange) + Send>;

/// Watches one process and all its descendants for ports opened and closed,
/// calling back from a thread of its own. Needs root (eBPF); falls back to
/// procfs polling otherwise.
pub struct PortWatcher {
    config: EngineConfig,
    callback: Option<Callback>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl PortWatcher {
    /// A watcher of `pid` and its descendants. Fails if `pid` does not exist.
    pub fn new(pid: u32, callback: impl FnMut(PortChange) + Send + 'static) -> Result<Self> {
        crate::engine::check_pid(pid)?;
        let config = EngineConfig {
            filter: Filter {
                pid: Some(pid),
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
            config,
            callback: Some(Box::new(callback)),
            running: None,
        }
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
        let config = MonitorConfig {
            engine: self.config.clone(),
            ..MonitorConfig::default()
        };
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<()>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
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
                    let stop = async {
                        let _ = stop_rx.await;
                    };
                    let run = monitor
                        .run_until(stop, |ev, _| {
                            match ev {
                                MonitorEvent::Port(ev) => callback((&ev).into()),
                                MonitorEvent::Ready(_) => {
                                    let _ = ready_tx.send(Ok(()));
                                }
                                _ => {}
                            }
                            Ok::<_, Error>(ControlFlow::Continue(()))
                        })
                        .await;
                    if let Err(e) = run {
                        tracing::error!("portwatch stopped: {e}");
                    }
                });
            })
            .map_err(|source| Error::Io {
                what: "cannot start the watcher thread",
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {
                self.running = Some((stop_tx, thread));
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
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
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
