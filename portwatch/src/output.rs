//! Formats events and listener lists as JSON lines or aligned text.
//!
//! Names reaching this module were made safe at ingestion
//! ([`crate::safe_text`]), so neither format carries raw control bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::{
    container::Container,
    event::{Change, Listener, PortEvent, Proto, Source},
    monitor::Notice,
    report::{ResyncSummary, Stats},
    rules::{eval::Alert, model::Severity},
    safe_text::safe_str,
};

/// RFC 3339 with microseconds, UTC.
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Serialize)]
struct EventJson<'a> {
    event: Change,
    proto: Proto,
    address: String,
    port: u16,
    pid: u32,
    comm: &'a str,
    uid: u32,
    netns: u64,
    cgroup: &'a str,
    container: Option<&'a Container>,
    ts: String,
    source: Source,
}

/// One event as a single JSON line (without the newline).
pub fn event_json(ev: &PortEvent) -> String {
    let l = &ev.listener;
    let obj = EventJson {
        event: ev.change,
        proto: l.proto,
        address: l.address.to_string(),
        port: l.port,
        pid: l.pid,
        comm: &l.comm,
        uid: l.uid,
        netns: l.netns,
        cgroup: &l.cgroup,
        container: l.container.as_ref(),
        ts: format_ts(&ev.ts),
        source: ev.source,
    };
    to_json(&obj)
}

#[derive(Serialize)]
struct ReadyJson<'a> {
    event: &'static str,
    backend: &'a str,
    listeners: usize,
    ts: String,
}

/// The line that says the watcher is attached and the baseline is printed.
pub fn ready_json(backend: &str, listeners: usize, ts: &DateTime<Utc>) -> String {
    to_json(&ReadyJson {
        event: "ready",
        backend,
        listeners,
        ts: format_ts(ts),
    })
}

#[derive(Serialize)]
struct ResyncJson {
    event: &'static str,
    reason: &'static str,
    opened: usize,
    closed: usize,
    drops: u64,
    ts: String,
}

/// The summary line of a procfs resynchronisation.
pub fn resync_json(s: &ResyncSummary) -> String {
    to_json(&ResyncJson {
        event: "resync",
        reason: s.reason.as_str(),
        opened: s.opened,
        closed: s.closed,
        drops: s.drops,
        ts: format_ts(&s.ts),
    })
}

#[derive(Serialize)]
struct EventsLostJson {
    event: &'static str,
    /// Events the kernel dropped since the start, as it counted them.
    dropped: u64,
    /// What the resync that followed found the events had missed.
    opened: usize,
    closed: usize,
    ts: String,
}

/// The notice that the kernel dropped events (a resync for drops), for
/// the daemon's outputs.
pub fn events_lost_json(s: &ResyncSummary) -> String {
    to_json(&EventsLostJson {
        event: "events_lost",
        dropped: s.drops,
        opened: s.opened,
        closed: s.closed,
        ts: format_ts(&s.ts),
    })
}

#[derive(Serialize)]
struct DeliveryErrorJson<'a> {
    event: &'static str,
    message: &'a str,
    ts: String,
}

/// An alert output (a command, a webhook) that failed, as a JSON line;
/// `message` is one sentence, its untrusted parts already made safe.
pub fn delivery_error_json(message: &str, ts: &DateTime<Utc>) -> String {
    to_json(&DeliveryErrorJson {
        event: "delivery_error",
        message,
        ts: format_ts(ts),
    })
}

/// The same, as text.
pub fn resync_text(s: &ResyncSummary) -> String {
    format!(
        "resync ({}): {} opened, {} closed that events had missed ({} events dropped so far)",
        s.reason.as_str(),
        s.opened,
        s.closed,
        s.drops
    )
}

#[derive(Serialize)]
struct StatsJson {
    event: &'static str,
    events: u64,
    drops: u64,
    resyncs: u64,
    owners_full: u64,
    unresolved: u64,
    ts: String,
}

/// The counters, as printed by `watch --stats --json` on exit.
pub fn stats_json(s: &Stats, ts: &DateTime<Utc>) -> String {
    to_json(&StatsJson {
        event: "stats",
        events: s.events,
        drops: s.drops,
        resyncs: s.resyncs,
        owners_full: s.owners_full,
        unresolved: s.unresolved,
        ts: format_ts(ts),
    })
}

#[derive(Serialize)]
struct AlertJson<'a> {
    event: &'static str,
    rule_id: String,
    rule_name: String,
    severity: Severity,
    condition: &'a str,
    message: &'a str,
    pid: u32,
    comm: &'a str,
    address: Option<String>,
    port: Option<u16>,
    proto: Option<Proto>,
    ts: String,
}

/// One alert as a JSON line.
pub fn alert_json(a: &Alert) -> String {
    to_json(&AlertJson {
        event: "alert",
        // From the rules file: escaped like process names.
        rule_id: safe_str(&a.rule_id),
        rule_name: safe_str(&a.rule_name),
        severity: a.severity,
        condition: a.condition,
        message: &a.message,
        pid: a.pid,
        comm: &a.comm,
        address: a.address.map(|x| x.to_string()),
        port: a.port,
        proto: a.proto,
        ts: format_ts(&a.ts),
    })
}

/// One alert as a readable line. Rule names come from the rules file, so
/// they are escaped like process names.
pub fn alert_line(a: &Alert) -> String {
    format!(
        "{}  {:<8}  {}: {}",
        format_ts(&a.ts),
        a.severity.as_str().to_uppercase(),
        safe_str(&a.rule_name),
        a.message
    )
}

/// A notice as a JSON line: `{"event": kind, "message": ..., "ts": ...}`.
pub fn notice_json(n: &Notice) -> String {
    #[derive(Serialize)]
    struct NoticeJson<'a> {
        event: &'a str,
        message: &'a str,
        ts: String,
    }
    to_json(&NoticeJson {
        event: n.kind.as_str(),
        message: &n.message,
        ts: format_ts(&n.ts),
    })
}

pub(crate) fn to_json(value: &impl Serialize) -> String {
    // Serializing these plain structs of strings and integers cannot fail.
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"event\":\"error\",\"error\":\"{e}\"}}"))
}

/// One event as an aligned, readable line.
pub fn event_line(ev: &PortEvent) -> String {
    let l = &ev.listener;
    event_line_of(&EventColumns {
        ts: &format_ts(&ev.ts),
        change: ev.change.as_str(),
        proto: l.proto.as_str(),
        socket: &l.socket().to_string(),
        pid: l.pid,
        comm: &l.comm,
        uid: l.uid,
        source: ev.source.as_str(),
    })
}

/// The columns of [`event_line`], for an event that arrives as JSON (from
/// the daemon's socket), its text already made safe there.
pub struct EventColumns<'a> {
    pub ts: &'a str,
    pub change: &'a str,
    pub proto: &'a str,
    /// `address:port`, IPv6 in brackets.
    pub socket: &'a str,
    pub pid: u32,
    pub comm: &'a str,
    pub uid: u32,
    pub source: &'a str,
}

/// [`event_line`] from its columns.
pub fn event_line_of(c: &EventColumns<'_>) -> String {
    format!(
        "{}  {:<6}  {:<5}  {:<28} {:>7}  {:<16} {:>6}  {}",
        c.ts, c.change, c.proto, c.socket, c.pid, c.comm, c.uid, c.source,
    )
}

/// Header matching [`event_line`].
pub fn event_header() -> String {
    format!(
        "{:<27}  {:<6}  {:<5}  {:<28} {:>7}  {:<16} {:>6}  {}",
        "TIME", "EVENT", "PROTO", "LOCAL", "PID", "COMM", "UID", "SOURCE"
    )
}

#[derive(Serialize)]
struct ListenerJson<'a> {
    proto: Proto,
    address: String,
    port: u16,
    pid: u32,
    comm: &'a str,
    uid: u32,
    inode: Option<u64>,
    netns: u64,
    cgroup: &'a str,
    container: Option<&'a Container>,
}

/// A snapshot as one JSON array.
pub fn listeners_json(listeners: &[Listener]) -> String {
    let rows: Vec<ListenerJson<'_>> = listeners
        .iter()
        .map(|l| ListenerJson {
            proto: l.proto,
            address: l.address.to_string(),
            port: l.port,
            pid: l.pid,
            comm: &l.comm,
            uid: l.uid,
            inode: l.inode,
            netns: l.netns,
            cgroup: &l.cgroup,
            container: l.container.as_ref(),
        })
        .collect();
    to_json(&rows)
}

/// A snapshot as a table like `ss -ltnp`.
pub fn listeners_table(listeners: &[Listener]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:<5} {:<28} {:>7}  {:<16} {:>6}\n",
        "PROTO", "LOCAL", "PID", "COMM", "UID"
    );
    for l in listeners {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:<5} {:<28} {:>7}  {:<16} {:>6}",
            l.proto.as_str(),
            l.socket(),
            l.pid,
            l.comm,
            l.uid
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safe_text::safe_text;

    fn event(comm: &str, addr: &str) -> PortEvent {
        PortEvent {
            change: Change::Opened,
            listener: Listener {
                proto: Proto::Tcp,
                address: addr.parse().unwrap(),
                port: 8080,
                pid: 42,
                comm: comm.into(),
                uid: 1000,
                cookie: Some(1),
                inode: None,
                netns: 4026531840,
                cgroup: "/user.slice".into(),
                container: None,
                opened_at: None,
            },
            ts: DateTime::from_timestamp(1_764_000_000, 123_456_789).unwrap(),
            source: Source::Ebpf,
        }
    }

    #[test]
    fn json_event_fields() {
        let line = event_json(&event("web", "::1"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "opened");
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["address"], "::1");
        assert_eq!(v["port"], 8080);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["comm"], "web");
        assert_eq!(v["source"], "ebpf");
        assert_eq!(v["netns"], 4026531840u64);
        assert_eq!(v["cgroup"], "/user.slice");
        assert_eq!(v["ts"], "2025-11-24T16:00:00.123456Z");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn hostile_names_stay_valid_and_inert() {
        let comm = safe_text(b"\x1b]0;pwned\x07\"\n\xff");
        let line = event_json(&event(&comm, "0.0.0.0"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["comm"], "\\x1b]0;pwned\\x07\"\\x0a\\xff");
        let text = event_line(&event(&comm, "0.0.0.0"));
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[test]
    fn ready_line() {
        let ts = DateTime::from_timestamp(0, 0).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ready_json("ebpf", 3, &ts)).unwrap();
        assert_eq!(
            (
                v["event"].as_str(),
                v["backend"].as_str(),
                v["listeners"].as_u64()
            ),
            (Some("ready"), Some("ebpf"), Some(3))
        );
    }

    #[test]
    fn human_lines_align() {
        let a = event_line(&event("a", "127.0.0.1"));
        let b = event_line(&event("longer-name", "::ffff:10.0.0.1"));
        let col = |s: &str| s.find(" 42 ").unwrap();
        assert_eq!(col(&a), col(&b));
        assert!(a.contains("127.0.0.1:8080"));
        assert!(b.contains("[::ffff:10.0.0.1]:8080"));
        assert_eq!(event_header().find("PID").unwrap() + 3, col(&a) + 3);
    }

    #[test]
    fn list_formats() {
        let l = event("web", "0.0.0.0").listener;
        let v: serde_json::Value =
            serde_json::from_str(&listeners_json(std::slice::from_ref(&l))).unwrap();
        assert_eq!(v[0]["port"], 8080);
        assert_eq!(v[0]["address"], "0.0.0.0");
        let table = listeners_table(&[l]);
        assert!(table.lines().nth(1).unwrap().contains("0.0.0.0:8080"));
    }
}

#[cfg(test)]
mod golden;
