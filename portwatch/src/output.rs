//! Formats events and listener lists as aligned text; their JSON is
//! [`crate::wire`]'s.
//!
//! Names reaching this module were made safe at ingestion
//! ([`crate::safe_text`]), so no line carries raw control bytes.

use crate::{
    event::{Listener, PortEvent},
    report::ResyncSummary,
    rules::eval::Alert,
    safe_text::safe_str,
};

pub use crate::wire::format_ts;

/// A resync, as text.
pub fn resync_text(s: &ResyncSummary) -> String {
    format!(
        "resync ({}): {} opened, {} closed that events had missed ({} events dropped so far)",
        s.reason.as_str(),
        s.opened,
        s.closed,
        s.drops
    )
}

/// A UDP aggregate summary as a readable line (the name was made safe
/// when it was read).
pub fn udp_summary_line(s: &crate::report::UdpSummary) -> String {
    let line = crate::wire::UdpSummary::from(s);
    format!("{} {}", crate::wire::format_ts(&s.ts), line.sentence())
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

/// One event as an aligned, readable line (a stream of them:
/// [`EventLines`]).
pub fn event_line(ev: &PortEvent) -> String {
    EventLines::default().line(ev).to_owned()
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
    let mut out = String::with_capacity(128);
    push_event_line(&mut out, c);
    out
}

/// Writes the columns as `{}  {:<6}  {:<5}  {:<28} {:>7}  {:<16} {:>6}  {}`
/// would, without the formatting machinery: a UDP churn writes 500,000
/// lines a second, and `format!` was a third of portwatch's time there.
fn push_event_line(out: &mut String, c: &EventColumns<'_>) {
    out.push_str(c.ts);
    out.push_str("  ");
    push_left(out, c.change, 6);
    out.push_str("  ");
    push_left(out, c.proto, 5);
    out.push_str("  ");
    push_left(out, c.socket, 28);
    out.push(' ');
    push_right(out, c.pid, 7);
    out.push_str("  ");
    push_left(out, c.comm, 16);
    out.push(' ');
    push_right(out, c.uid, 6);
    out.push_str("  ");
    out.push_str(c.source);
}

/// `s` padded with spaces to `width` characters (as `{:<width}` counts).
fn push_left(out: &mut String, s: &str, width: usize) {
    out.push_str(s);
    for _ in s.chars().count()..width {
        out.push(' ');
    }
}

/// `n` right-aligned in `width` characters.
fn push_right(out: &mut String, n: u32, width: usize) {
    use std::fmt::Write as _;
    let digits = n.checked_ilog10().map_or(1, |d| d as usize + 1);
    for _ in digits..width {
        out.push(' ');
    }
    // Writing to a String cannot fail.
    let _ = write!(out, "{n}");
}

/// [`event_line`] for a stream of events, with its buffers kept between
/// lines and the time's date and second formatted once a second.
#[derive(Default)]
pub struct EventLines {
    second: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    prefix: String,
    ts: String,
    socket: String,
    line: String,
}

impl EventLines {
    /// The event's line, as [`event_line`] writes it.
    pub fn line(&mut self, ev: &PortEvent) -> &str {
        use std::fmt::Write as _;
        self.format_ts(&ev.ts);
        let l = &ev.listener;
        self.socket.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.socket, "{}", l.socket());
        self.line.clear();
        push_event_line(
            &mut self.line,
            &EventColumns {
                ts: &self.ts,
                change: ev.change.as_str(),
                proto: l.proto.as_str(),
                socket: &self.socket,
                pid: l.pid,
                comm: &l.comm,
                uid: l.uid,
                source: ev.source.as_str(),
            },
        );
        &self.line
    }

    /// [`format_ts`] into `self.ts`.
    fn format_ts(&mut self, ts: &chrono::DateTime<chrono::Utc>) {
        use std::fmt::Write as _;
        let micros = ts.timestamp_subsec_micros();
        self.ts.clear();
        if micros >= 1_000_000 {
            // A leap second: as chrono writes it.
            self.ts.push_str(&format_ts(ts));
            return;
        }
        let second = ts.timestamp();
        if self.second != Some(second) {
            self.prefix.clear();
            let _ = write!(self.prefix, "{}", ts.format("%Y-%m-%dT%H:%M:%S"));
            self.second = Some(second);
        }
        // Writing to a String cannot fail.
        let _ = write!(self.ts, "{}.{micros:06}Z", self.prefix);
    }
}

/// Header matching [`event_line`].
pub fn event_header() -> String {
    format!(
        "{:<27}  {:<6}  {:<5}  {:<28} {:>7}  {:<16} {:>6}  {}",
        "TIME", "EVENT", "PROTO", "LOCAL", "PID", "COMM", "UID", "SOURCE"
    )
}

/// A snapshot as a table like `ss -ltnp`.
pub fn listeners_table(listeners: &[Listener]) -> String {
    listing_table(&crate::Listing {
        listeners: listeners.to_vec(),
        unbacked: Vec::new(),
    })
}

/// `list`'s table: each listener with its exposure (and the ports DNAT
/// publishes for it), then each published port no listener is behind.
pub fn listing_table(listing: &crate::Listing) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:<5} {:<28} {:>7}  {:<16} {:>6}  {}\n",
        "PROTO", "LOCAL", "PID", "COMM", "UID", "EXPOSURE"
    );
    for l in &listing.listeners {
        let mut exposure = l.exposure.as_ref().map_or(String::new(), exposure_text);
        for p in &l.published_as {
            let _ = write!(
                exposure,
                "; published as {} ({})",
                std::net::SocketAddr::new(p.address, p.port),
                exposure_text(&p.exposure)
            );
        }
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:<5} {:<28} {:>7}  {:<16} {:>6}  {}",
            l.proto.as_str(),
            l.socket(),
            l.pid,
            l.comm,
            l.uid,
            exposure
        );
    }
    for u in &listing.unbacked {
        let p = &u.published;
        let _ = writeln!(
            out,
            "{:<5} {:<28} {:>7}  {:<16} {:>6}  {}; DNAT to {}, no listener",
            p.proto.as_str(),
            std::net::SocketAddr::new(p.address, p.port),
            "-",
            "-",
            "-",
            exposure_text(&p.exposure),
            u.to
        );
    }
    out
}

/// An exposure change, for people: `exposure of tcp 0.0.0.0:8080 (nginx,
/// pid 42): filtered -> reachable via eth0`.
pub fn exposure_change_line(c: &crate::monitor::ExposureChange) -> String {
    let l = &c.listener;
    format!(
        "{} exposure of {} {} ({}, pid {}): {} -> {}",
        crate::wire::format_ts(&c.ts),
        l.proto.as_str(),
        l.socket(),
        l.comm,
        l.pid,
        exposure_text(&c.before),
        l.exposure.as_ref().map_or_else(String::new, exposure_text)
    )
}

/// A drift as one line: `TS unexpected tcp 0.0.0.0:4444 (nc, pid 7,
/// /usr/bin/nc) [TAGS]`, `TS missing ssh (exe /usr/sbin/sshd, port 22)`.
pub fn drift_line(d: &crate::policy::drift::Drift) -> String {
    use crate::safe_text::safe_str;
    let mut out = format!("{} {}", crate::wire::format_ts(&d.ts), d.kind.as_str());
    if let Some(e) = &d.entry {
        out.push(' ');
        out.push_str(&safe_str(&entry_text(e)));
    }
    if let Some(l) = &d.listener {
        let exe = l.context.as_ref().and_then(|c| c.exe.as_deref());
        out.push_str(&format!(
            " {} {} ({}, pid {}{})",
            l.proto.as_str(),
            l.socket(),
            l.comm,
            l.pid,
            exe.map(|x| format!(", {x}")).unwrap_or_default()
        ));
    }
    if !d.tags.is_empty() {
        let tags: Vec<String> = d.tags.iter().map(|t| safe_str(t)).collect();
        out.push_str(&format!(" [{}]", tags.join(", ")));
    }
    out
}

/// A policy entry in a few words: `ssh (exe /usr/sbin/sshd, tcp, port
/// 22)`; not yet made safe.
pub fn entry_text(e: &crate::policy::Entry) -> String {
    let mut parts = Vec::new();
    for (key, value) in [
        ("exe", &e.exe),
        ("unit", &e.unit),
        ("container", &e.container),
        ("user", &e.user),
    ] {
        if let Some(v) = value {
            parts.push(format!("{key} {v}"));
        }
    }
    if let Some(p) = e.proto {
        parts.push(p.as_str().into());
    }
    match &e.port {
        Some(crate::policy::PortSpec::One(p)) => parts.push(format!("port {p}")),
        Some(crate::policy::PortSpec::Range(r)) => parts.push(format!("ports {r}")),
        None => {}
    }
    if let Some(s) = e.scope {
        parts.push(s.as_str().into());
    }
    if let Some(x) = e.exposure {
        parts.push(x.as_str().into());
    }
    match &e.name {
        Some(n) => format!("{n} ({})", parts.join(", ")),
        None => format!("({})", parts.join(", ")),
    }
}

/// Who held a listener, as the journal's lines show it: `tcp
/// 0.0.0.0:4444 nc (pid 7, uid 0, /usr/bin/nc` and, with `container`, its
/// container; the caller closes the parenthesis.
fn holder_text(h: &crate::journal::history::Hold, container: bool) -> String {
    use crate::safe_text::safe_str;
    let mut text = format!(
        "{} {} {} (pid {}, uid {}",
        h.proto,
        std::net::SocketAddr::new(h.address, h.port),
        safe_str(&h.comm),
        h.pid,
        h.uid,
    );
    let container = h.container.as_deref().filter(|_| container);
    for extra in [h.exe.as_deref(), container].into_iter().flatten() {
        text.push_str(", ");
        text.push_str(&safe_str(extra));
    }
    text
}

/// A hold from the journal, as `history --at` shows it: `tcp
/// 0.0.0.0:4444 nc (pid 7, uid 0, /usr/bin/nc) from TS until TS`.
pub fn hold_line(h: &crate::journal::history::Hold) -> String {
    let from = if h.opened_before {
        format!("open before {}", crate::wire::format_ts(&h.opened))
    } else {
        format!("from {}", crate::wire::format_ts(&h.opened))
    };
    let until = match (h.closed, h.closed_unseen) {
        (None, _) => "still open".to_string(),
        (Some(c), false) => format!("until {}", crate::wire::format_ts(&c)),
        (Some(c), true) => format!("closed unseen by {}", crate::wire::format_ts(&c)),
    };
    format!("{}) {from} {until}", holder_text(h, true))
}

/// An open or close from the journal: `TS opened tcp 0.0.0.0:80 nginx
/// (pid 7, ...)`, `TS closed ... after 2 h 3 min`.
pub fn history_line(c: &crate::journal::history::Change) -> String {
    let h = &c.hold;
    let mut line = format!(
        "{} {} {})",
        crate::wire::format_ts(&c.ts),
        if c.opened { "opened" } else { "closed" },
        holder_text(h, false)
    );
    if c.opened && h.opened_before {
        line.push_str(" (open before portwatch watched)");
    }
    if !c.opened {
        let lived = (c.ts - h.opened).to_std().unwrap_or_default();
        line.push_str(&format!(
            " after {}{}",
            if h.opened_before { "more than " } else { "" },
            lifetime_text(lived)
        ));
        if h.closed_unseen {
            line.push_str(" (closed while portwatch did not watch: at or before this)");
        }
    }
    line
}

/// A lifetime in two units at most: `350 ms`, `4.2 s`, `3 min 20 s`,
/// `5 h 2 min`, `3 d 4 h`.
pub fn lifetime_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// An exposure in a few words: `reachable via eth0`, `unknown: why`.
pub fn exposure_text(e: &crate::exposure::Exposure) -> String {
    e.describe()
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::{
        event::{Change, Proto, Source},
        safe_text::safe_text,
    };

    fn event(comm: &str, addr: &str) -> PortEvent {
        PortEvent {
            change: Change::Opened,
            listener: Listener {
                pid: 42,
                comm: comm.into(),
                uid: 1000,
                cookie: Some(1),
                netns: 4026531840,
                cgroup: "/user.slice".into(),
                ..Listener::new(Proto::Tcp, addr.parse().unwrap(), 8080)
            },
            ts: DateTime::from_timestamp(1_764_000_000, 123_456_789).unwrap(),
            source: Source::Ebpf,
        }
    }

    #[test]
    fn json_event_fields() {
        let line = crate::wire::Line::from(&event("web", "::1")).to_json();
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
        let line = crate::wire::Line::from(&event(&comm, "0.0.0.0")).to_json();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["comm"], "\\x1b]0;pwned\\x07\"\\x0a\\xff");
        let text = event_line(&event(&comm, "0.0.0.0"));
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[test]
    fn ready_line() {
        let ts = DateTime::from_timestamp(0, 0).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&crate::wire::Line::ready("ebpf", 3, ts).to_json()).unwrap();
        assert_eq!(
            (
                v["event"].as_str(),
                v["backend"].as_str(),
                v["listeners"].as_u64()
            ),
            (Some("ready"), Some("ebpf"), Some(3))
        );
    }

    /// The line as `format!` wrote it before `push_event_line`.
    fn formatted(ev: &PortEvent) -> String {
        let l = &ev.listener;
        format!(
            "{}  {:<6}  {:<5}  {:<28} {:>7}  {:<16} {:>6}  {}",
            format_ts(&ev.ts),
            ev.change.as_str(),
            l.proto.as_str(),
            l.socket().to_string(),
            l.pid,
            l.comm,
            l.uid,
            ev.source.as_str(),
        )
    }

    #[test]
    fn event_lines_write_what_format_wrote() {
        let mut lines = EventLines::default();
        let mut n = 0;
        for comm in [
            "",
            "a",
            "wébserveur-ü☕",
            "exactly-16-chars",
            "much-longer-than-sixteen",
        ] {
            for addr in ["0.0.0.0", "127.0.0.1", "::", "fe80::1234:5678:9abc:def0"] {
                for (pid, uid) in [(0, 0), (7, 65534), (u32::MAX, u32::MAX), (1_234_567, 10)] {
                    for (secs, nanos) in [
                        (0, 0),
                        (1_764_000_000, 123_456_789),
                        (1_764_000_000, 999_999_999),
                        (1_764_000_001, 5_000),
                        // A leap second (chrono's nanoseconds past 10^9).
                        (1_483_228_799, 1_500_000_000),
                    ] {
                        let mut ev = event(comm, addr);
                        ev.listener.pid = pid;
                        ev.listener.uid = uid;
                        ev.ts = DateTime::from_timestamp(secs, nanos).unwrap();
                        assert_eq!(lines.line(&ev), formatted(&ev));
                        assert_eq!(event_line(&ev), formatted(&ev));
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 400);
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
            serde_json::from_str(&crate::wire::list::to_json(&crate::Listing {
                listeners: vec![l.clone()],
                unbacked: Vec::new(),
            }))
            .unwrap();
        assert_eq!(v[0]["port"], 8080);
        assert_eq!(v[0]["address"], "0.0.0.0");
        let table = listeners_table(&[l]);
        assert!(table.lines().nth(1).unwrap().contains("0.0.0.0:8080"));
    }

    #[test]
    fn journal_lines_name_the_holder() {
        use crate::journal::history::{Change, Hold};
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let h = Hold {
            proto: Proto::Tcp,
            address: "0.0.0.0".parse().unwrap(),
            port: 4444,
            netns: 1,
            pid: 7,
            uid: 0,
            comm: "nc".into(),
            exe: Some("/usr/bin/nc".into()),
            container: Some("docker:web".into()),
            opened: t(0),
            opened_before: false,
            closed: Some(t(90)),
            closed_unseen: false,
            context: None,
            exposure: None,
        };
        assert_eq!(
            hold_line(&h),
            "tcp 0.0.0.0:4444 nc (pid 7, uid 0, /usr/bin/nc, docker:web) from 2027-01-15T08:00:00.000000Z until 2027-01-15T08:01:30.000000Z"
        );
        let closed = Change {
            ts: t(90),
            opened: false,
            hold: Hold { exe: None, ..h },
        };
        assert_eq!(
            history_line(&closed),
            "2027-01-15T08:01:30.000000Z closed tcp 0.0.0.0:4444 nc (pid 7, uid 0) after 1 min 30 s"
        );
    }
}
