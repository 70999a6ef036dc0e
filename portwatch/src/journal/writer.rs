//! The journal's writer thread: takes entries from the monitor's loop
//! (which never waits for it), writes them in one transaction per batch
//! (whatever queued while the last one was written), pairs each close with
//! its open, and drops old rows by age and size, oldest first.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{Receiver, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{Shared, store::span_s};
use crate::event::{Listener, ListenerKey};

/// What the monitor hands the writer.
#[derive(Debug)]
pub(crate) enum Entry {
    Opened {
        listener: Listener,
        ts_us: i64,
        /// Open when the watch started (in the baseline).
        before: bool,
    },
    Closed {
        listener: Listener,
        ts_us: i64,
    },
    /// The baseline is complete: rows left open by an earlier run that no
    /// baseline listener took up closed while nobody watched.
    Ready {
        ts_us: i64,
    },
}

/// The most entries in one transaction.
const MAX_BATCH: usize = 20_000;
/// How often old rows are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per statement while the file is too large.
const PRUNE_CHUNK: i64 = 20_000;

/// A row an earlier run left open: (row, uid, name).
type StaleRow = (i64, u32, String);

pub(crate) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    retention: Option<Duration>,
    max_bytes: Option<u64>,
    /// Open rows (with their owner's uid) by listener and owner.
    open: HashMap<(ListenerKey, u32), Vec<(i64, u32)>>,
    /// Rows an earlier run left open, until the baseline takes them up.
    /// (row, uid, name): a reused pid is not its owner.
    stale: HashMap<(ListenerKey, u32), Vec<StaleRow>>,
    /// Contexts written, by the address of their shared copy.
    contexts: Written,
    last_prune: Instant,
}

fn key_of(l: &Listener) -> (ListenerKey, u32) {
    (l.key(), l.pid)
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        retention: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> rusqlite::Result<Writer> {
        let mut stale: HashMap<(ListenerKey, u32), Vec<StaleRow>> = HashMap::new();
        {
            let mut q = conn.prepare(
                "SELECT id, proto, address, port, netns, pid, uid, comm FROM holds WHERE closed IS NULL",
            )?;
            let rows = q.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u16>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, u32>(5)?,
                    r.get::<_, u32>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?;
            for row in rows {
                let (id, proto, address, port, netns, pid, uid, comm) = row?;
                let (Some(proto), Ok(address)) = (parse_proto(&proto), address.parse()) else {
                    continue;
                };
                let key = ListenerKey {
                    proto,
                    netns: netns as u64,
                    address,
                    port,
                };
                stale.entry((key, pid)).or_default().push((id, uid, comm));
            }
        }
        Ok(Writer {
            conn,
            shared,
            retention,
            max_bytes,
            open: HashMap::new(),
            stale,
            contexts: HashMap::new(),
            last_prune: Instant::now() - PRUNE_EVERY,
        })
    }

    /// Writes until the sender is dropped (everything queued is written
    /// first) or writing fails (then entries are counted as lost).
    pub(crate) fn run(mut self, rx: Receiver<Entry>) {
        loop {
            if self.last_prune.elapsed() >= PRUNE_EVERY {
                self.last_prune = Instant::now();
                if let Err(e) = self.prune(now_us()) {
                    return self.fail(&e, &rx);
                }
            }
            let first = match rx.recv_timeout(PRUNE_EVERY) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            if let Err(e) = self.begin().and_then(|()| self.write(batch)) {
                self.shared.lost.fetch_add(n, Ordering::Relaxed);
                return self.fail(&e, &rx);
            }
            self.shared.written.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Stops journaling: the failure is said once, and every entry from
    /// here on is counted as lost (the monitor goes on).
    fn fail(self, e: &rusqlite::Error, rx: &Receiver<Entry>) {
        if let Ok(mut f) = self.shared.failure.lock() {
            *f = Some(e.to_string());
        }
        self.shared.failed.store(true, Ordering::Relaxed);
        drop(self.conn);
        for _ in rx.iter() {
            self.shared.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the write lock before anything changes, waiting while
    /// another process holds it (a reader in the group can take SQLite's
    /// locks): events queue meanwhile, and past the queue are counted lost.
    fn begin(&mut self) -> rusqlite::Result<()> {
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(()),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) =>
                {
                    self.shared.busy.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a batch in the transaction [`Self::begin`] opened: committed
    /// whole, or rolled back and the error returned.
    fn write(&mut self, batch: Vec<Entry>) -> rusqlite::Result<()> {
        match self.apply(batch) {
            Ok(()) => self.conn.execute_batch("COMMIT"),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn apply(&mut self, batch: Vec<Entry>) -> rusqlite::Result<()> {
        let Writer {
            conn,
            open,
            stale,
            contexts,
            ..
        } = self;
        let tx: &Connection = conn;
        for e in batch {
            match e {
                Entry::Opened {
                    listener,
                    ts_us,
                    before,
                } => {
                    let key = key_of(&listener);
                    // The same listener, still open since an earlier run.
                    if before
                        && let Some(ids) = stale.get_mut(&key)
                        && let Some(at) = ids.iter().position(|(_, uid, comm)| {
                            *uid == listener.uid && *comm == listener.comm
                        })
                    {
                        let (id, _, _) = ids.swap_remove(at);
                        if ids.is_empty() {
                            stale.remove(&key);
                        }
                        open.entry(key).or_default().push((id, listener.uid));
                        continue;
                    }
                    let context = context_id(tx, contexts, &listener)?;
                    let exposure = listener
                        .exposure
                        .as_ref()
                        .map(|e| serde_json::to_string(e).unwrap_or_default());
                    let container = listener.container.as_ref().map(|c| c.label());
                    tx.prepare_cached(
                        "INSERT INTO holds(opened, opened_before, proto, address, port, netns, pid, uid, comm, exe, container, exposure, context)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )?
                    .execute(params![
                        ts_us,
                        before,
                        listener.proto.as_str(),
                        listener.address.to_string(),
                        listener.port,
                        listener.netns as i64,
                        listener.pid,
                        listener.uid,
                        listener.comm,
                        listener.context.as_ref().and_then(|c| c.exe.as_deref()),
                        container,
                        exposure,
                        context,
                    ])?;
                    let id = tx.last_insert_rowid();
                    tx.prepare_cached("INSERT INTO holds_span(id, lo, hi) VALUES (?1, ?2, ?3)")?
                        .execute(params![id, span_s(ts_us), i32::MAX])?;
                    open.entry(key).or_default().push((id, listener.uid));
                }
                Entry::Closed { listener, ts_us } => {
                    let key = key_of(&listener);
                    // Its owner's row, or (a close the kernel named the
                    // closer of) a row of that listener of the same user:
                    // never another user's.
                    let found = if open.contains_key(&key) {
                        Some(key)
                    } else {
                        open.iter()
                            .find(|((k, _), ids)| {
                                *k == key.0 && ids.iter().any(|(_, uid)| *uid == listener.uid)
                            })
                            .map(|(k, _)| *k)
                    };
                    let id = found.and_then(|k| {
                        let ids = open.get_mut(&k)?;
                        let id = ids.pop();
                        if ids.is_empty() {
                            open.remove(&k);
                        }
                        id
                    });
                    if let Some((id, _)) = id {
                        close(tx, id, ts_us, false)?;
                    }
                }
                Entry::Ready { ts_us } => {
                    for (id, _, _) in std::mem::take(stale).into_values().flatten() {
                        close(tx, id, ts_us, true)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes closed rows older than the retention, then the oldest
    /// closed rows while the file is larger than the maximum. Open rows
    /// (what is listening now) stay.
    fn prune(&mut self, now_us: i64) -> rusqlite::Result<()> {
        let mut deleted = 0usize;
        if let Some(keep) = self.retention {
            let keep = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
            let cut = now_us.saturating_sub(keep);
            loop {
                let n = self.delete_closed("closed < ?1", cut)?;
                deleted += n;
                if n < PRUNE_CHUNK as usize {
                    break;
                }
            }
            incremental_vacuum(&self.conn)?;
        }
        if let Some(max) = self.max_bytes
            && used_bytes(&self.conn)? > max
        {
            // Down to 90% of the maximum, so a full file is not pruned at
            // every check.
            let target = max / 10 * 9;
            // Bytes per row, from once: counting rows is a full scan.
            let per_row = (used_bytes(&self.conn)? / rows(&self.conn)?.max(1)).max(1);
            while used_bytes(&self.conn)? > target {
                let over = used_bytes(&self.conn)?.saturating_sub(target);
                let chunk = ((over / per_row) as i64).clamp(1000, PRUNE_CHUNK);
                let oldest: Option<i64> = self
                    .conn
                    .query_row(
                        "SELECT id FROM holds WHERE closed IS NOT NULL ORDER BY id LIMIT 1 OFFSET ?1",
                        [chunk - 1],
                        |r| r.get(0),
                    )
                    .optional()?;
                let n = match oldest {
                    Some(id) => self.delete_closed("id <= ?1", id)?,
                    // Fewer closed rows than a chunk: all of them.
                    None => self.delete_closed("id <= ?1", i64::MAX)?,
                };
                incremental_vacuum(&self.conn)?;
                deleted += n;
                if n == 0 {
                    break;
                }
            }
        }
        // Contexts no row points to any more: once per pruning (a scan).
        if deleted > 0 {
            self.conn.execute(
                "DELETE FROM contexts WHERE id NOT IN (SELECT context FROM holds WHERE context IS NOT NULL)",
                [],
            )?;
            self.contexts.clear();
        }
        Ok(())
    }

    /// Deletes up to a chunk of closed rows matching `cond` (on `?1`), and
    /// their span; the number deleted.
    fn delete_closed(&mut self, cond: &str, value: i64) -> rusqlite::Result<usize> {
        let tx = self.conn.unchecked_transaction()?;
        let ids: Vec<i64> = {
            let mut q = tx.prepare(&format!(
                "SELECT id FROM holds WHERE closed IS NOT NULL AND {cond} ORDER BY id LIMIT {PRUNE_CHUNK}"
            ))?;
            q.query_map([value], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for id in &ids {
            tx.prepare_cached("DELETE FROM holds WHERE id = ?1")?
                .execute([id])?;
            tx.prepare_cached("DELETE FROM holds_span WHERE id = ?1")?
                .execute([id])?;
        }
        tx.commit()?;
        Ok(ids.len())
    }
}

/// Contexts written, by the address of their shared copy.
type Written = HashMap<usize, (std::sync::Weak<crate::owner::OwnerContext>, i64)>;

/// The id of the listener's context, written once per process.
fn context_id(
    tx: &Connection,
    contexts: &mut Written,
    l: &Listener,
) -> rusqlite::Result<Option<i64>> {
    let Some(ctx) = &l.context else {
        return Ok(None);
    };
    let addr = Arc::as_ptr(ctx) as usize;
    if let Some((weak, id)) = contexts.get(&addr)
        && weak.upgrade().is_some_and(|c| Arc::ptr_eq(&c, ctx))
    {
        return Ok(Some(*id));
    }
    // Without the arguments: the journal's readers (its group) may be
    // other users, and arguments may hold a secret.
    let json = if ctx.cmdline.is_some() {
        let mut kept = (**ctx).clone();
        kept.cmdline = None;
        serde_json::to_string(&kept)
    } else {
        serde_json::to_string(&**ctx)
    }
    .unwrap_or_default();
    let digest = digest(&json);
    let id = match tx
        .prepare_cached("SELECT id FROM contexts WHERE digest = ?1 AND json = ?2")?
        .query_row(params![digest, json], |r| r.get::<_, i64>(0))
        .optional()?
    {
        Some(id) => id,
        None => {
            tx.prepare_cached("INSERT INTO contexts(digest, json) VALUES (?1, ?2)")?
                .execute(params![digest, json])?;
            tx.last_insert_rowid()
        }
    };
    // Bounded: entries of processes gone are dropped as it grows.
    if contexts.len() >= 65_536 {
        contexts.retain(|_, (w, _)| w.strong_count() > 0);
    }
    contexts.insert(addr, (Arc::downgrade(ctx), id));
    Ok(Some(id))
}

fn close(tx: &Connection, id: i64, ts_us: i64, unseen: bool) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE holds SET closed = ?2, closed_unseen = ?3 WHERE id = ?1")?
        .execute(params![id, ts_us, unseen])?;
    // Never below its start: a clock stepped back must not stop the
    // journal on the R*Tree's constraint.
    tx.prepare_cached("UPDATE holds_span SET hi = max(lo, ?2) WHERE id = ?1")?
        .execute(params![id, span_s(ts_us) + 1])?;
    Ok(())
}

/// Gives the free pages back to the file system (each step of the pragma
/// frees one page).
fn incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Bytes the rows take: the file's pages less the free ones.
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

fn rows(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM holds", [], |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
}

pub(crate) fn parse_proto(s: &str) -> Option<crate::event::Proto> {
    match s {
        "tcp" => Some(crate::event::Proto::Tcp),
        "udp" => Some(crate::event::Proto::Udp),
        _ => None,
    }
}

/// 64 bits of SHA-256: the key of a context's text.
fn digest(text: &str) -> i64 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(text.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_le_bytes(b)
}

pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
