//! Where the terminal UI's events come from: its own monitor (root, or
//! procfs when unprivileged), or a running daemon's event socket
//! (`--connect`), read back into the same events.

use std::path::{Path, PathBuf};

use anyhow::bail;
use portwatch::{Filter, Monitor, MonitorEvent, Stats, wire::Line};

use crate::connect::{self, DaemonLines};

/// What the UI gets next.
pub enum Fed {
    Event(Box<MonitorEvent>),
    /// The daemon dropped this client's events; a fresh baseline follows.
    Lost(u64),
    /// A line of a newer daemon's that this version cannot read: skipped,
    /// said once.
    Skipped(String),
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
            Feed::Local(m) => Ok(Fed::Event(Box::new(m.next().await?))),
            Feed::Remote { lines, path } => loop {
                let Some(line) = lines
                    .next_line()
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot read from the daemon: {e}"))?
                else {
                    bail!("the daemon at {} closed the connection", path.display());
                };
                let line = match Line::parse(&line) {
                    Ok(line) => line,
                    Err(why) => match lines.skipped(&why) {
                        Some(m) => return Ok(Fed::Skipped(m)),
                        None => continue,
                    },
                };
                match line {
                    Line::Lost(l) => return Ok(Fed::Lost(l.events)),
                    Line::Error(r) => bail!(
                        "the daemon refused: {}",
                        portwatch::safe_text::safe_str(&r.message)
                    ),
                    // What the UI does not show (delivery errors, stats, a
                    // newer daemon's lines) is skipped.
                    other => {
                        if let Some(ev) = other.into_monitor_event() {
                            return Ok(Fed::Event(Box::new(ev)));
                        }
                    }
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
