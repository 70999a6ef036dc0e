//! The journal as `watch` and `daemon` keep it: opened after the monitor
//! started (a bad flag is said first), fed every event, and its warnings
//! said once each.

use portwatch::{MonitorEvent, journal::Journal};

use crate::args::JournalArgs;

/// Opens the journal at `path`. `asked`: the user named it, so failing
/// ends the run; the daemon's default journal only warns, and the watch
/// goes on without one.
pub fn open(
    path: std::path::PathBuf,
    limits: &JournalArgs,
    asked: bool,
) -> anyhow::Result<Option<Journal>> {
    match Journal::open(&limits.config(path)?) {
        Ok(j) => Ok(Some(j)),
        Err(e) if asked => Err(e.into()),
        Err(e) => {
            crate::log::warn(&format!(
                "{e}; no journal is kept (`--journal PATH` names another)"
            ));
            Ok(None)
        }
    }
}

/// Hands `ev` to the journal, and says what it has to say.
pub fn record(journal: &mut Option<Journal>, ev: &MonitorEvent) {
    if let Some(j) = journal {
        j.record(ev);
        if let Some(w) = j.take_warning() {
            crate::log::warn(&w);
        }
    }
}
