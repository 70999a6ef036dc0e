//! A watcher connected to a running daemon's event socket: one connection
//! at a time, its lines followed ([`Follower`]), and a reconnection with
//! a growing delay whenever it ends, until the watcher stops.

use std::{
    path::PathBuf,
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

use super::{
    Callbacks, Lost,
    follow::{Follower, Step, Stop},
    lines::Lines,
};
use crate::error::{Error, Result};

/// How long a connection may take to deliver its baseline: a stopped
/// daemon's socket still accepts (into its backlog), so only a read can
/// tell. Live lines have no deadline: a quiet host sends nothing.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the daemon is, and the one line that asks it for a tree.
pub(crate) struct Daemon {
    pub(crate) path: PathBuf,
    pub(crate) request: String,
}

impl Callbacks {
    fn lost(&mut self, lost: Lost) {
        tracing::warn!("portwatch watcher: {lost}");
        if let Some(callback) = &mut self.lost {
            callback(lost);
        }
    }
}

/// The delay before the next attempt to reconnect: 100 ms, doubling up
/// to 5 s; back to 100 ms once a connection delivered its baseline.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) const FIRST: Duration = Duration::from_millis(100);
    pub(crate) const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay to wait now; the one after it doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// How a connection ended.
struct Ended {
    error: Error,
    /// Whether it delivered a baseline (was live) before it ended.
    live: bool,
    /// Whether the daemon sent what no daemon sends (a line too long, no
    /// JSON): not a reason to hurry back.
    malformed: bool,
}

/// Follows the daemon until dropped: `started` gets Ok once the first
/// baseline is reported, or the first connection's error (and then this
/// returns the callbacks).
pub(crate) async fn run(
    daemon: Daemon,
    mut report: Callbacks,
    started: std_mpsc::Sender<Result<()>>,
) -> Option<Callbacks> {
    let mut follower = Follower::new();
    let mut started = Some(started);
    let mut backoff = Backoff::new();
    let mut ended = connection(&daemon, &mut follower, &mut report, &mut started).await;
    if let Some(started) = started.take() {
        let _ = started.send(Err(ended.error));
        return Some(report);
    }
    loop {
        if ended.live && !ended.malformed {
            backoff.reset();
        }
        let retry_in = backoff.next_delay();
        let reason = ended.error.to_string();
        report.lost(if ended.live {
            Lost::Disconnected { reason }
        } else {
            Lost::Reconnecting { reason, retry_in }
        });
        tokio::time::sleep(retry_in).await;
        ended = connection(&daemon, &mut follower, &mut report, &mut started).await;
    }
}

/// One connection, from connecting to its end.
async fn connection(
    daemon: &Daemon,
    follower: &mut Follower,
    report: &mut Callbacks,
    started: &mut Option<std_mpsc::Sender<Result<()>>>,
) -> Ended {
    let deadline = tokio::time::Instant::from_std(Instant::now() + READY_TIMEOUT);
    let ended = |error, live, malformed| Ended {
        error,
        live,
        malformed,
    };
    let broken = |why: String| Error::DaemonConnection {
        path: daemon.path.clone(),
        why,
    };
    let (mut lines, sent) = match tokio::time::timeout_at(deadline, connect(daemon)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return ended(e, false, false),
        Err(_) => return ended(broken(no_baseline()), false, false),
    };
    follower.connected();
    let mut live = false;
    let mut steps = Vec::new();
    loop {
        let next = if live {
            lines.next_line().await
        } else {
            match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(next) => next,
                Err(_) => return ended(broken(no_baseline()), false, false),
            }
        };
        let text = match next {
            Ok(Some(text)) => text,
            // A daemon that refused at once may have closed before the
            // request was out: say why the request failed.
            Ok(None) | Err(_) if !live && sent.is_err() => {
                let why = sent
                    .as_ref()
                    .err()
                    .map(|e| format!("cannot send the request ({e})"))
                    .unwrap_or_default();
                return ended(broken(why), false, false);
            }
            Ok(None) => {
                return ended(broken("closed the connection".into()), live, false);
            }
            Err(e) => {
                let malformed = e.kind() == std::io::ErrorKind::InvalidData;
                return ended(
                    broken(format!("cannot read from it ({e})")),
                    live,
                    malformed,
                );
            }
        };
        match follower.line(&text, &mut steps) {
            Ok(()) => {}
            Err(Stop::Refused(message)) => {
                let error = Error::DaemonRefused {
                    path: daemon.path.clone(),
                    message,
                };
                return ended(error, live, false);
            }
            Err(Stop::Malformed(why)) => return ended(broken(why), live, true),
        }
        for step in steps.drain(..) {
            match step {
                Step::Change(change) => (report.change)(change),
                Step::Ready => {
                    live = true;
                    if let Some(started) = started.take() {
                        let _ = started.send(Ok(()));
                    }
                }
                Step::Missed(events) => report.lost(Lost::Missed { events }),
                Step::Skipped(reason) => report.lost(Lost::Unreadable { reason }),
            }
        }
    }
}

fn no_baseline() -> String {
    format!(
        "it sent no baseline within {} s (is it starting, stopped or overloaded?)",
        READY_TIMEOUT.as_secs()
    )
}

/// Connects and sends the request. Its sending may fail where the daemon
/// refused at once (all slots taken): the refusal is still there to read.
async fn connect(daemon: &Daemon) -> Result<(Lines<BufReader<UnixStream>>, std::io::Result<()>)> {
    let mut stream =
        UnixStream::connect(&daemon.path)
            .await
            .map_err(|source| Error::DaemonUnreachable {
                path: daemon.path.clone(),
                source,
            })?;
    // Whoever can bind the path could forge every line: only root's
    // daemon, or one of the caller's own, is talked to.
    let peer = stream
        .peer_cred()
        .map_err(|source| Error::DaemonUnreachable {
            path: daemon.path.clone(),
            source,
        })?
        .uid();
    let me = rustix::process::geteuid().as_raw();
    if peer != 0 && peer != me {
        return Err(Error::DaemonConnection {
            path: daemon.path.clone(),
            why: format!("it is served by user {peer}, neither root nor this user: not trusted"),
        });
    }
    let sent = stream.write_all(daemon.request.as_bytes()).await;
    Ok((Lines::new(BufReader::new(stream)), sent))
}

#[cfg(test)]
mod tests;
