//! Reading the journal: who held a port at an instant, and the opens and
//! closes of a span of time, each with its owner and lifetime.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params_from_iter, types::Value};

use super::{JournalError, store::span_s, writer::parse_proto};
use crate::event::Proto;

/// Which rows a query wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub port: Option<u16>,
    pub proto: Option<Proto>,
    pub pid: Option<u32>,
    /// A glob over the executable's path (SQLite's GLOB: `*` crosses `/`).
    pub exe: Option<String>,
}

/// One listener held: when, by whom.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hold {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    pub netns: u64,
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: Option<String>,
    /// `runtime:name` of its container or unit.
    pub container: Option<String>,
    #[serde(serialize_with = "crate::wire::micros::serialize")]
    pub opened: DateTime<Utc>,
    /// Already open when the watch started: it opened at or before
    /// `opened`.
    pub opened_before: bool,
    #[serde(with = "ts_opt")]
    pub closed: Option<DateTime<Utc>>,
    /// It closed while nobody watched: at or before `closed`.
    pub closed_unseen: bool,
    /// Its owner context's JSON (`docs/why.md`), as it was told.
    pub context: Option<serde_json::Value>,
    /// Its exposure when it opened.
    pub exposure: Option<serde_json::Value>,
}

mod ts_opt {
    pub(super) fn serialize<S: serde::Serializer>(
        t: &Option<chrono::DateTime<chrono::Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => crate::wire::micros::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

/// An open or a close, in time order ([`History::between`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub ts: DateTime<Utc>,
    pub opened: bool,
    pub hold: Hold,
}

const COLUMNS: &str = "h.proto, h.address, h.port, h.netns, h.pid, h.uid, h.comm, h.exe, h.container, h.opened, h.opened_before, h.closed, h.closed_unseen, c.json, h.exposure";

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn hold(r: &Row<'_>) -> rusqlite::Result<Hold> {
    hold_at(r, 0)
}

/// An open journal, read-only.
pub struct History {
    conn: Connection,
    path: std::path::PathBuf,
}

impl History {
    /// Opens the journal at `path` (see [`super::store::open_read`]).
    pub fn open(path: &std::path::Path) -> Result<History, JournalError> {
        Ok(History {
            conn: super::store::open_read(path)?,
            path: path.to_path_buf(),
        })
    }

    fn error(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        move |e| JournalError::Sqlite {
            path: self.path.clone(),
            why: e.to_string(),
        }
    }

    /// The filter's SQL and its values, from `?{first}` on.
    fn filter(q: &Query, first: usize) -> (String, Vec<Value>) {
        let mut sql = String::new();
        let mut values: Vec<Value> = Vec::new();
        let mut n = first;
        let mut add = |cond: &str, v: Value, sql: &mut String| {
            sql.push_str(&format!(" AND {cond} ?{n}"));
            values.push(v);
            n += 1;
        };
        if let Some(p) = q.port {
            add("h.port =", Value::Integer(p.into()), &mut sql);
        }
        if let Some(p) = q.proto {
            add("h.proto =", Value::Text(p.as_str().into()), &mut sql);
        }
        if let Some(p) = q.pid {
            add("h.pid =", Value::Integer(p.into()), &mut sql);
        }
        if let Some(e) = &q.exe {
            add("h.exe GLOB", Value::Text(e.clone()), &mut sql);
        }
        (sql, values)
    }

    /// Who held the matching listeners at `at`.
    pub fn at(&self, at: DateTime<Utc>, q: &Query) -> Result<Vec<Hold>, JournalError> {
        let us = at.timestamp_micros();
        let (cond, mut values) = Self::filter(q, 3);
        // The span index finds the rows alive in that second; the exact
        // times decide.
        let sql = format!(
            "SELECT {COLUMNS} FROM holds_span s JOIN holds h ON h.id = s.id
             LEFT JOIN contexts c ON c.id = h.context
             WHERE s.lo <= ?1 AND s.hi >= ?1
               AND h.opened <= ?2 AND (h.closed IS NULL OR h.closed > ?2){cond}
             ORDER BY h.port, h.proto, h.address, h.opened"
        );
        let mut all = vec![Value::Integer(span_s(us)), Value::Integer(us)];
        all.append(&mut values);
        let mut stmt = self.conn.prepare(&sql).map_err(self.error())?;
        let rows = stmt
            .query_map(params_from_iter(all), hold)
            .map_err(self.error())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.error())
    }

    /// The opens and closes between `since` and `until` (either open),
    /// in time order, to `each` as they are read.
    pub fn between(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        q: &Query,
        mut each: impl FnMut(Change) -> std::io::Result<()>,
    ) -> Result<(), JournalError> {
        let lo = since.map_or(i64::MIN, |t| t.timestamp_micros());
        let hi = until.map_or(i64::MAX, |t| t.timestamp_micros());
        let (cond, values) = Self::filter(q, 3);
        let sql = format!(
            "SELECT * FROM (
               SELECT h.opened AS ts, 1 AS opening, {COLUMNS} FROM holds h
                 LEFT JOIN contexts c ON c.id = h.context
                 WHERE h.opened BETWEEN ?1 AND ?2{cond}
               UNION ALL
               SELECT h.closed AS ts, 0 AS opening, {COLUMNS} FROM holds h
                 LEFT JOIN contexts c ON c.id = h.context
                 WHERE h.closed BETWEEN ?1 AND ?2{cond})
             ORDER BY ts, opening"
        );
        let mut all = vec![Value::Integer(lo), Value::Integer(hi)];
        all.extend(values);
        let mut stmt = self.conn.prepare(&sql).map_err(self.error())?;
        let mut rows = stmt.query(params_from_iter(all)).map_err(self.error())?;
        while let Some(r) = rows.next().map_err(self.error())? {
            let ts: i64 = r.get(0).map_err(self.error())?;
            let opened: bool = r.get(1).map_err(self.error())?;
            let hold = hold_at(r, 2).map_err(self.error())?;
            each(Change {
                ts: time(ts),
                opened,
                hold,
            })
            .map_err(|source| JournalError::Io {
                path: "the output".into(),
                source,
            })?;
        }
        Ok(())
    }

    /// The last `n` holders of a port, newest first (the TUI's details).
    pub fn recent(&self, proto: Proto, port: u16, n: usize) -> Result<Vec<Hold>, JournalError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM holds h LEFT JOIN contexts c ON c.id = h.context
             WHERE h.port = ?1 AND h.proto = ?2 ORDER BY h.opened DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.error())?;
        let rows = stmt
            .query_map(rusqlite::params![port, proto.as_str(), n as i64], hold)
            .map_err(self.error())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.error())
    }

    /// When the oldest listener in the journal opened (one step down an
    /// index: no scan).
    pub fn first_opened(&self) -> Result<Option<DateTime<Utc>>, JournalError> {
        self.conn
            .query_row("SELECT min(opened) FROM holds", [], |r| {
                Ok(r.get::<_, Option<i64>>(0)?.map(time))
            })
            .map_err(self.error())
    }

    /// The rows in the journal (a scan of them all), and its oldest
    /// open's time.
    pub fn extent(&self) -> Result<(u64, Option<DateTime<Utc>>), JournalError> {
        self.conn
            .query_row("SELECT count(*), min(opened) FROM holds", [], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, Option<i64>>(1)?.map(time),
                ))
            })
            .map_err(self.error())
    }
}

/// A [`Hold`] from the [`COLUMNS`] that start at column `at`.
fn hold_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Hold> {
    let json = |i: usize| -> rusqlite::Result<Option<serde_json::Value>> {
        Ok(r.get::<_, Option<String>>(at + i)?
            .and_then(|t| serde_json::from_str(&t).ok()))
    };
    let proto: String = r.get(at)?;
    let address: String = r.get(at + 1)?;
    Ok(Hold {
        proto: parse_proto(&proto).unwrap_or(Proto::Tcp),
        address: address
            .parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        port: r.get(at + 2)?,
        netns: r.get::<_, i64>(at + 3)? as u64,
        pid: r.get(at + 4)?,
        uid: r.get(at + 5)?,
        comm: r.get(at + 6)?,
        exe: r.get(at + 7)?,
        container: r.get(at + 8)?,
        opened: time(r.get(at + 9)?),
        opened_before: r.get(at + 10)?,
        closed: r.get::<_, Option<i64>>(at + 11)?.map(time),
        closed_unseen: r.get(at + 12)?,
        context: json(13)?,
        exposure: json(14)?,
    })
}
