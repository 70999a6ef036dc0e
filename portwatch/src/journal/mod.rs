//! The journal: every listener opened and closed, with its owner, its
//! context and its exposure, kept in an embedded SQLite file (WAL mode, the
//! library built in) so `portwatch history` can say who held a port at any
//! moment. Written by a thread of its own in batches: the monitor's loop
//! hands each event over without waiting, and a journal that fails (a full
//! disk) stops itself, never the monitor; what it could not write is
//! counted and said.

pub mod history;
pub mod store;
#[cfg(test)]
mod tests;
pub mod when;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    event::{Change, Source},
    monitor::MonitorEvent,
};
use writer::{Entry, Writer};

/// The daemon's journal (`StateDirectory=portwatch` in its unit).
pub const DEFAULT_PATH: &str = "/var/lib/portwatch/journal.db";

/// Entries queued for the writer before new ones are counted as lost:
/// over half a second of its pace, four storms' worth (some 20 MiB at
/// most).
pub const QUEUE: usize = 65_536;

/// Why the journal cannot be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("no journal at {0} (the daemon keeps one; `watch --journal PATH` writes one)")]
    Missing(PathBuf),
    #[error("cannot read the journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the journal: {0}")]
    Unsafe(#[from] crate::files::FileError),
    #[error("{path} is no portwatch journal ({why})")]
    NotAJournal { path: PathBuf, why: String },
    #[error("{path} was written by a newer portwatch (journal version {version})")]
    Newer { path: PathBuf, version: i64 },
    #[error("{path} belongs to uid {uid}: a journal another user could have written is not read")]
    NotOwned { path: PathBuf, uid: u32 },
    #[error("the journal {path}: {why}")]
    Sqlite { path: PathBuf, why: String },
    #[error("{0} is in use by another portwatch")]
    InUse(PathBuf),
    #[error("cannot start the journal's writer: {0}")]
    Thread(std::io::Error),
}

/// Where the journal is and how much it keeps.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub path: PathBuf,
    /// Closed listeners older than this are dropped (None: kept).
    pub retention: Option<Duration>,
    /// The oldest closed listeners are dropped while the rows take more
    /// than this (None: no limit).
    pub max_bytes: Option<u64>,
    /// The group that may read it (None: root alone).
    pub group: Option<u32>,
}

/// What the writer and the monitor's side share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    written: AtomicU64,
    lost: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    /// Another process held the journal's write lock for a while.
    busy: AtomicBool,
}

/// The journal's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Entries written.
    pub written: u64,
    /// Entries not written: the writer fell `QUEUE` behind, or failed.
    pub lost: u64,
    /// The journal stopped on an error.
    pub failed: bool,
}

/// A journal being written. Dropping it writes what is queued, then
/// stops.
pub struct Journal {
    tx: Option<SyncSender<Entry>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    /// The journal's lock; dropped after the writer's connection closed.
    _lock: std::fs::File,
    /// What was said already: the failure, the first loss, a lock held.
    said_failure: bool,
    said_loss: bool,
    said_busy: bool,
}

impl Journal {
    /// Opens (creating) the journal and starts its writer.
    pub fn open(config: &JournalConfig) -> Result<Journal, JournalError> {
        let (conn, path, lock) = store::open_write(&config.path, config.group)?;
        let shared = Arc::new(Shared::default());
        let writer = Writer::new(conn, shared.clone(), config.retention, config.max_bytes)
            .map_err(|e| JournalError::Sqlite {
                path: path.clone(),
                why: e.to_string(),
            })?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("portwatch-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(JournalError::Thread)?;
        Ok(Journal {
            tx: Some(tx),
            shared,
            thread: Some(thread),
            path,
            _lock: lock,
            said_failure: false,
            said_loss: false,
            said_busy: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands `ev` to the writer, if it is one the journal keeps. Never
    /// waits: when the writer is a whole queue behind, the entry is
    /// counted as lost.
    pub fn record(&mut self, ev: &MonitorEvent) {
        let entry = match ev {
            MonitorEvent::Port(p) => match p.change {
                Change::Opened => Entry::Opened {
                    listener: p.listener.clone(),
                    ts_us: p.ts.timestamp_micros(),
                    before: p.source == Source::Baseline,
                },
                Change::Closed => Entry::Closed {
                    listener: p.listener.clone(),
                    ts_us: p.ts.timestamp_micros(),
                },
            },
            MonitorEvent::Ready(r) => Entry::Ready {
                ts_us: r.ts.timestamp_micros(),
            },
            _ => return,
        };
        let Some(tx) = &self.tx else { return };
        match tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What the user must hear, once each: the journal stopped (and why),
    /// or it first lost entries while it ran.
    pub fn take_warning(&mut self) -> Option<String> {
        if self.shared.failed.load(Ordering::Relaxed) && !self.said_failure {
            self.said_failure = true;
            let why = self
                .shared
                .failure
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_default();
            return Some(format!(
                "the journal {} stopped ({why}): events from here on are not journaled, and the watch goes on",
                self.path.display()
            ));
        }
        if self.shared.busy.load(Ordering::Relaxed) && !self.said_busy {
            self.said_busy = true;
            return Some(format!(
                "another process holds the journal {}'s write lock: events wait for it (and past the queue are counted lost)",
                self.path.display()
            ));
        }
        let lost = self.shared.lost.load(Ordering::Relaxed);
        if lost > 0 && !self.said_loss && !self.said_failure {
            self.said_loss = true;
            return Some(format!(
                "the journal {} fell behind: {lost} events were not journaled (counted in portwatch_journal_lost_total)",
                self.path.display()
            ));
        }
        None
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            written: self.shared.written.load(Ordering::Relaxed),
            lost: self.shared.lost.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The writer drains what is queued, then ends.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
