//! The event socket's lines read back into the monitor's own types, for
//! clients that show them as portwatch does (the terminal UI). Text in
//! the lines was made safe by the daemon; it is kept as it is.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{
    container::Container,
    event::{Change, Listener, PortEvent, Proto, Source},
    monitor::{MonitorEvent, Notice, NoticeKind, Ready},
    report::{ResyncReason, ResyncSummary},
    rules::{eval::Alert, model::Severity},
};

/// One line from the daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum WireEvent {
    Monitor(MonitorEvent),
    /// This client fell behind and missed `events`; a fresh baseline
    /// follows, which replaces everything it was told before.
    Lost {
        events: u64,
    },
    /// The daemon refused the request; the connection ends.
    Refused(String),
    /// Something this client does not show (a delivery error, ...).
    Other,
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn number(v: &Value, key: &str) -> Result<u64, String> {
    v[key]
        .as_u64()
        .ok_or_else(|| format!("the daemon's line lacks a number `{key}`"))
}

fn small<T: TryFrom<u64>>(v: &Value, key: &str) -> Result<T, String> {
    T::try_from(number(v, key)?).map_err(|_| format!("`{key}` is out of range"))
}

fn ts(v: &Value) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap_or_default())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("the daemon's line has no valid `ts`: {e}"))
}

fn proto(s: &str) -> Option<Proto> {
    match s {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        _ => None,
    }
}

/// The condition names alerts carry, as the static strings [`Alert`]
/// holds.
fn condition(s: &str) -> &'static str {
    [
        "PortOpened",
        "PortClosed",
        "PortRangeActivity",
        "ExternalConnection",
        "ProcessCpuThreshold",
        "ProcessMemoryThreshold",
        "UnknownProcessListening",
    ]
    .into_iter()
    .find(|c| *c == s)
    .unwrap_or("unknown")
}

fn port_event(v: &Value, change: Change) -> Result<PortEvent, String> {
    let ts = ts(v)?;
    let source = match v["source"].as_str() {
        Some("baseline") => Source::Baseline,
        Some("ebpf") => Source::Ebpf,
        Some("resync") => Source::Resync,
        Some("procfs") => Source::Procfs,
        _ => return Err("the daemon's line has an unknown `source`".into()),
    };
    let listener = Listener {
        proto: proto(v["proto"].as_str().unwrap_or_default())
            .ok_or("the daemon's line has an unknown `proto`")?,
        address: text(v, "address")
            .parse()
            .map_err(|_| "the daemon's line has no valid `address`")?,
        port: small(v, "port")?,
        pid: small(v, "pid")?,
        comm: text(v, "comm"),
        uid: small(v, "uid")?,
        cookie: None,
        inode: None,
        netns: number(v, "netns")?,
        cgroup: text(v, "cgroup"),
        container: serde_json::from_value::<Option<Container>>(v["container"].clone())
            .ok()
            .flatten(),
        // A live open is when it opened; the baseline's age is unknown.
        opened_at: (change == Change::Opened && source != Source::Baseline).then_some(ts),
    };
    Ok(PortEvent {
        change,
        listener,
        ts,
        source,
    })
}

/// Reads one line of the daemon's socket.
pub fn parse_line(line: &str) -> Result<WireEvent, String> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("the daemon sent no JSON: {e}"))?;
    let ev = match v["event"].as_str().unwrap_or_default() {
        "opened" => MonitorEvent::Port(port_event(&v, Change::Opened)?),
        "closed" => MonitorEvent::Port(port_event(&v, Change::Closed)?),
        "ready" => MonitorEvent::Ready(Ready {
            backend: match v["backend"].as_str() {
                Some("ebpf") => "ebpf",
                Some("procfs") => "procfs",
                _ => "daemon",
            },
            listeners: small(&v, "listeners")?,
            ts: ts(&v)?,
        }),
        "resync" => MonitorEvent::Resync(ResyncSummary {
            reason: match v["reason"].as_str() {
                Some("drops") => ResyncReason::Drops,
                Some("requested") => ResyncReason::Requested,
                Some("unresolved") => ResyncReason::Unresolved,
                _ => ResyncReason::Interval,
            },
            opened: small(&v, "opened")?,
            closed: small(&v, "closed")?,
            drops: number(&v, "drops")?,
            ts: ts(&v)?,
        }),
        "alert" => MonitorEvent::Alert(Alert {
            rule_id: text(&v, "rule_id"),
            rule_name: text(&v, "rule_name"),
            severity: serde_json::from_value::<Severity>(v["severity"].clone())
                .map_err(|_| "the daemon's alert has an unknown `severity`")?,
            condition: condition(v["condition"].as_str().unwrap_or_default()),
            message: text(&v, "message"),
            pid: small(&v, "pid")?,
            comm: text(&v, "comm"),
            address: v["address"].as_str().and_then(|a| a.parse().ok()),
            port: v["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            proto: v["proto"].as_str().and_then(proto),
            ts: ts(&v)?,
        }),
        kind @ ("rules_reloaded" | "rules_error" | "warning") => MonitorEvent::Notice(Notice {
            kind: match kind {
                "rules_reloaded" => NoticeKind::RulesReloaded,
                "rules_error" => NoticeKind::RulesError,
                _ => NoticeKind::Warning,
            },
            message: text(&v, "message"),
            ts: ts(&v)?,
        }),
        "lost" => {
            return Ok(WireEvent::Lost {
                events: number(&v, "events")?,
            });
        }
        "error" => return Ok(WireEvent::Refused(text(&v, "message"))),
        _ => return Ok(WireEvent::Other),
    };
    Ok(WireEvent::Monitor(ev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output;

    fn listener() -> Listener {
        Listener {
            proto: Proto::Udp,
            address: "::1".parse().unwrap(),
            port: 5353,
            pid: 7,
            comm: "a\\x1bb".into(),
            uid: 1000,
            cookie: None,
            inode: None,
            netns: 4026531840,
            cgroup: "/system.slice/docker-ab.scope".into(),
            container: Container::classify("/system.slice/docker-ab.scope"),
            opened_at: None,
        }
    }

    #[test]
    fn what_the_daemon_writes_reads_back_the_same() {
        let ts = DateTime::parse_from_rfc3339("2026-12-01T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let ev = PortEvent {
            change: Change::Closed,
            listener: listener(),
            ts,
            source: Source::Ebpf,
        };
        assert_eq!(
            parse_line(&output::event_json(&ev)).unwrap(),
            WireEvent::Monitor(MonitorEvent::Port(ev))
        );
        let ready = output::ready_json("ebpf", 3, &ts);
        assert!(matches!(
            parse_line(&ready).unwrap(),
            WireEvent::Monitor(MonitorEvent::Ready(Ready {
                backend: "ebpf",
                listeners: 3,
                ..
            }))
        ));
        assert_eq!(
            parse_line(r#"{"event":"lost","events":12,"ts":"2026-12-01T10:00:00Z"}"#).unwrap(),
            WireEvent::Lost { events: 12 }
        );
        assert_eq!(
            parse_line(r#"{"event":"error","message":"no"}"#).unwrap(),
            WireEvent::Refused("no".into())
        );
    }

    #[test]
    fn a_broken_line_is_one_sentence() {
        for line in [
            "nope",
            r#"{"event":"opened"}"#,
            r#"{"event":"opened","proto":"sctp","ts":"2026-12-01T10:00:00Z","source":"ebpf"}"#,
            r#"{"event":"ready","listeners":1,"ts":"yesterday"}"#,
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
