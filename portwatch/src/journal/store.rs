//! The journal's SQLite file: its schema, and opening it to write (WAL,
//! created safely) or to read (read-only, never through a link, never a
//! file another user could have forged).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::JournalError;

/// The schema's version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// The R*Tree keeps whole seconds from this instant (2020-01-01 UTC) in
/// 32 bits: good until 2088.
pub const EPOCH_S: i64 = 1_577_836_800;

/// One row per listener held: when it opened and closed (microseconds
/// since the Unix epoch) and its owner. `opened_before`: it was open when
/// the watch started (opened at or before `opened`). `closed_unseen`: it
/// closed while nobody watched (at or before `closed`). `holds_span`
/// indexes each row's life in whole seconds, for "who held it at T".
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS contexts(
    id INTEGER PRIMARY KEY,
    digest INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS contexts_digest ON contexts(digest);
CREATE TABLE IF NOT EXISTS holds(
    id INTEGER PRIMARY KEY,
    opened INTEGER NOT NULL,
    opened_before INTEGER NOT NULL,
    closed INTEGER,
    closed_unseen INTEGER NOT NULL DEFAULT 0,
    proto TEXT NOT NULL,
    address TEXT NOT NULL,
    port INTEGER NOT NULL,
    netns INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    comm TEXT NOT NULL,
    exe TEXT,
    container TEXT,
    exposure TEXT,
    context INTEGER REFERENCES contexts(id)
);
CREATE INDEX IF NOT EXISTS holds_port ON holds(port, opened);
CREATE INDEX IF NOT EXISTS holds_opened ON holds(opened);
CREATE INDEX IF NOT EXISTS holds_closed ON holds(closed);
CREATE VIRTUAL TABLE IF NOT EXISTS holds_span USING rtree_i32(id, lo, hi);
";

/// Seconds of the span index, from microseconds.
pub fn span_s(us: i64) -> i64 {
    // Below i32::MAX: a close's span ends one second later.
    (us.div_euclid(1_000_000) - EPOCH_S).clamp(i64::from(i32::MIN), i64::from(i32::MAX) - 1)
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
    move |e| JournalError::Sqlite {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// The names SQLite opens beside a database, by path: each must be what
/// a planted file cannot be (absent, or a regular file of root's or ours
/// with one name).
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Refuses side files another user could have planted (a `-wal` of theirs
/// would be read as the journal's rows; a hot `-journal` rolled back into
/// it).
fn check_side_files(path: &Path) -> Result<(), JournalError> {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    for suffix in SIDE_FILES {
        let side = beside(path, suffix);
        match std::fs::symlink_metadata(&side) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(JournalError::Io { path: side, source }),
            Ok(m) if m.is_file() && (m.uid() == 0 || m.uid() == me) && m.nlink() == 1 => {}
            Ok(_) => {
                return Err(JournalError::NotAJournal {
                    path: path.to_path_buf(),
                    why: format!(
                        "{} is no file of root's with one name: another user may have put it there",
                        side.display()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Opens the journal at `path` for writing, creating it (mode 0640, in
/// group `group`) when missing. Its directory must be one only root (or
/// we) can write, sticky or not: SQLite opens the files beside it by
/// name. An existing file is used only when it is ours and a journal (or
/// empty); its mode and group are left as they are.
/// The returned file holds an exclusive lock (`NAME.lock`, mode 0600) for
/// as long as it is open: one writer at a time (close it after the
/// connection).
pub fn open_write(
    path: &Path,
    group: Option<u32>,
) -> Result<(Connection, PathBuf, std::fs::File), JournalError> {
    let (dir, name) = crate::files::CheckedDir::of_file(path, true)?;
    let full = dir.path().join(&name);
    if let Some(mode) = dir.shared_mode()? {
        return Err(JournalError::NotAJournal {
            path: full,
            why: format!(
                "its directory {} is writable by other users (mode {mode:04o}), who could plant the files SQLite keeps beside it: choose a directory only root can write",
                dir.path().display(),
            ),
        });
    }
    let mut lock_name = name.as_os_str().to_owned();
    lock_name.push(".lock");
    // A lock nobody else can open: a reader of the journal cannot take it
    // first and keep the daemon from journaling.
    let lock = dir.append(Path::new(&lock_name), 0o600)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| JournalError::InUse(full.clone()))?;
    check_side_files(&full)?;
    match dir.create_new(&name, 0o640) {
        Ok(file) => {
            // Made here: members of the group read the history, nobody
            // else (it holds working directories and executables' paths).
            if let Some(gid) = group {
                std::os::unix::fs::fchown(&file, None, Some(gid)).map_err(|source| {
                    JournalError::Io {
                        path: full.clone(),
                        source,
                    }
                })?;
            }
            rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(0o640)).map_err(|e| {
                JournalError::Io {
                    path: full.clone(),
                    source: e.into(),
                }
            })?;
        }
        Err(crate::files::FileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            // Checked (a regular file of ours, one name, no link), and
            // left as it is unless it is a journal or empty.
            drop(dir.append(&name, 0o640)?);
            // SQLite's 16-byte header (`read` gives up to max + 1 bytes).
            const HEADER: &[u8; 16] = b"SQLite format 3\0";
            let head = dir
                .read(&name, HEADER.len() as u64 - 1)?
                .map(|(bytes, _)| bytes)
                .unwrap_or_default();
            if !head.is_empty() && head != HEADER {
                return Err(JournalError::NotAJournal {
                    path: full,
                    why: "it is no SQLite file, so it is left as it is".into(),
                });
            }
        }
        Err(e) => return Err(e.into()),
    }
    let conn = Connection::open_with_flags(
        &full,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(sql_error(&full))?;
    let shown = full.clone();
    let err = sql_error(&shown);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| not_a_journal(&full, &e))?;
    if version > SCHEMA_VERSION {
        return Err(JournalError::Newer {
            path: full,
            version,
        });
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| not_a_journal(&full, &e))?;
    if version == 0 && tables > 0 {
        return Err(JournalError::NotAJournal {
            path: full,
            why: "it is an SQLite file of something else".into(),
        });
    }
    // Before anything is written (WAL mode writes the header): freed pages
    // can then be given back to the file system.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(&err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(&err)?;
    // A commit is safe from a crash of portwatch (not of the machine)
    // without an fsync each: the kernel holds what was written.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(&err)?;
    // The WAL is cut back to this after a checkpoint.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(&err)?;
    conn.execute_batch(SCHEMA).map_err(&err)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(&err)?;
    Ok((conn, full, lock))
}

fn not_a_journal(path: &Path, e: &rusqlite::Error) -> JournalError {
    JournalError::NotAJournal {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// Opens the journal at `path` to read. Refuses a file another user owns
/// (a forged history), and one that is no journal.
pub fn open_read(path: &Path) -> Result<Connection, JournalError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            JournalError::Missing(path.to_path_buf())
        } else {
            JournalError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    if !meta.is_file() {
        return Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
            why: "it is not a regular file".into(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(JournalError::NotOwned {
            path: path.to_path_buf(),
            uid: meta.uid(),
        });
    }
    check_side_files(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(sql_error(path))?;
    let version = match conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)) {
        Ok(v) => v,
        // No writer left its WAL files, and a reader may not make them:
        // with no writer, the file is as good as immutable.
        Err(_) if wal_files_missing(path) => {
            let uri = format!(
                "file:{}?immutable=1",
                uri_path(path).ok_or_else(|| JournalError::NotAJournal {
                    path: path.to_path_buf(),
                    why: "its path is no UTF-8".into(),
                })?
            );
            let conn = Connection::open_with_flags(&uri, flags).map_err(sql_error(path))?;
            let v = conn
                .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
                .map_err(|e| not_a_journal(path, &e))?;
            return check_version(conn, path, v);
        }
        Err(e) => return Err(not_a_journal(path, &e)),
    };
    check_version(conn, path, version)
}

fn check_version(conn: Connection, path: &Path, version: i64) -> Result<Connection, JournalError> {
    match version {
        SCHEMA_VERSION => Ok(conn),
        0 => Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
            why: "it holds no portwatch journal".into(),
        }),
        v => Err(JournalError::Newer {
            path: path.to_path_buf(),
            version: v,
        }),
    }
}

fn wal_files_missing(path: &Path) -> bool {
    !beside(path, "-wal").exists() || !beside(path, "-shm").exists()
}

/// `path` escaped for an SQLite URI.
fn uri_path(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}
