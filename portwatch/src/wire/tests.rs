//! Lines read back as they were written, and what a newer writer's lines
//! do to this reader.

use super::golden::{GOLDEN, lines};
use super::*;

#[test]
fn every_golden_line_reads_back_and_writes_the_same_bytes() {
    for (name, text) in GOLDEN.lines().filter_map(|l| l.split_once('\t')) {
        if name.starts_with("list") || name.starts_with("request") {
            continue;
        }
        let line = Line::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(line, Line::Unknown, "{name}");
        assert_eq!(line.to_json(), text, "{name}");
        let mut written = Vec::new();
        line.write_json(&mut written).unwrap();
        assert_eq!(written, text.as_bytes(), "{name}: written into a buffer");
    }
    assert!(lines().len() >= 15);
}

#[test]
fn an_unknown_event_is_kept_as_unknown_and_an_unknown_field_is_skipped() {
    assert_eq!(
        Line::parse(r#"{"event":"teleported","port":22,"ts":"2026-12-01T10:00:00Z"}"#).unwrap(),
        Line::Unknown
    );
    let newer = r#"{"event":"ready","backend":"ebpf","listeners":3,"ts":"2026-12-01T10:00:00Z","exposure":"reachable"}"#;
    let Line::Ready(r) = Line::parse(newer).unwrap() else {
        panic!("a ready line")
    };
    assert_eq!((r.backend.as_str(), r.listeners), ("ebpf", 3));
}

#[test]
fn a_known_field_with_an_unknown_value_is_an_error_not_a_guess() {
    for (line, field) in [
        (
            r#"{"event":"resync","reason":"cosmic","opened":0,"closed":0,"drops":0,"ts":"2026-12-01T10:00:00Z"}"#,
            "cosmic",
        ),
        (
            r#"{"event":"opened","proto":"sctp","address":"::1","port":1,"pid":1,"comm":"a","uid":0,"netns":1,"cgroup":"/","container":null,"ts":"2026-12-01T10:00:00Z","source":"ebpf"}"#,
            "sctp",
        ),
        (
            r#"{"event":"opened","proto":"tcp","address":"::1","port":70000,"pid":1,"comm":"a","uid":0,"netns":1,"cgroup":"/","container":null,"ts":"2026-12-01T10:00:00Z","source":"ebpf"}"#,
            "70000",
        ),
        (
            r#"{"event":"ready","backend":"ebpf","listeners":1,"ts":"yesterday"}"#,
            "RFC 3339",
        ),
        (r#"{"event":"ready"}"#, "missing field"),
        ("nope", "expected"),
    ] {
        let e = Line::parse(line).unwrap_err();
        assert!(e.contains(field), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn a_hostile_line_is_quoted_escaped_in_the_error() {
    let e = Line::parse("{\"event\":\"ready\",\u{1b}[2J}").unwrap_err();
    assert!(!e.contains('\u{1b}'), "{e}");
}

#[test]
fn lines_turn_back_into_the_monitors_events() {
    use crate::monitor::MonitorEvent;
    let port = Line::parse(super::golden::golden("opened")).unwrap();
    let Some(MonitorEvent::Port(ev)) = port.into_monitor_event() else {
        panic!("a port event")
    };
    assert_eq!(ev.listener.port, 8080);
    assert_eq!(
        ev.listener.opened_at,
        Some(ev.ts),
        "a live open opened then"
    );
    for name in ["lost", "error", "stats", "delivery_error", "events_lost"] {
        let line = Line::parse(super::golden::golden(name)).unwrap();
        assert_eq!(line.into_monitor_event(), None, "{name}");
    }
}
