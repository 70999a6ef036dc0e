//! Where the terminal UI's events come from: its own monitor (root, or
//! procfs when unprivileged), or a running daemon's event socket
//! (`--connect`), read back into the same events.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use portwatch::{
    Filter, Monitor, MonitorEvent, Stats,
    serve::{WireEvent, parse_line},
};

use crate::connect::{self, DaemonLines};

/// What the UI gets next.
pub enum Fed {
    Event(MonitorEvent),
    /// The daemon dropped this client's events; a fresh baseline follows.
    Lost(u64),
}

pub enum Feed {
    Local(Box<Monitor>),
    Remote { lines: DaemonLines, path: PathBuf },
}

impl Feed {
    pub async fn connect(path: &Path, filter: &Filter) -> anyhow::Result<Self> {
        Ok(Feed::Remote {
            lines: connect::open(path, filter).await?,
            path: path.to_path_buf(),
        })
    }

    /// The next event. Cancel-safe: the monitor's `next` is, and a line
    /// read is returned in the same poll that reads it.
    pub async fn next(&mut self) -> anyhow::Result<Fed> {
        match self {
            Feed::Local(m) => Ok(Fed::Event(m.next().await?)),
            Feed::Remote { lines, path } => loop {
                let Some(line) = lines
                    .next_line()
                    .await
                    .context("cannot read from the daemon")?
                else {
                    bail!("the daemon at {} closed the connection", path.display());
                };
                match parse_line(&line).map_err(anyhow::Error::msg)? {
                    WireEvent::Monitor(ev) => return Ok(Fed::Event(ev)),
                    WireEvent::Lost { events } => return Ok(Fed::Lost(events)),
                    WireEvent::Refused(why) => bail!("the daemon refused: {why}"),
                    WireEvent::Other => {}
                }
            },
        }
    }

    /// The kernel counters, when they are this process's to read.
    pub fn stats(&self) -> Option<Stats> {
        match self {
            Feed::Local(m) => Some(m.stats()),
            Feed::Remote { .. } => None,
        }
    }

    /// Asks for a resync; the daemon's are its own.
    pub fn resync_now(&mut self) -> bool {
        match self {
            Feed::Local(m) => {
                m.resync_now();
                true
            }
            Feed::Remote { .. } => false,
        }
    }
}
