//! Lines from the monitor's own types, and back: the writers build a
//! [`Line`] from what happened; readers that show events as portwatch
//! does (the terminal UI) turn it back into a [`MonitorEvent`].

use chrono::{DateTime, Utc};

use super::{
    Alert, Drift, DriftListener, EventsLost, ExposureChanged, Judged, Line, Lost, Message, Port,
    Ready, Refusal, Resync, Stats, UdpSummary,
};
use crate::{
    event::{Change, Listener, PortEvent, Source},
    exposure::Exposure,
    monitor::{self, ExposureChange, MonitorEvent, Notice, NoticeKind},
    report::{self, ResyncSummary},
    rules::eval,
    safe_text::safe_str,
};

impl From<&PortEvent> for Line {
    fn from(ev: &PortEvent) -> Line {
        let l = &ev.listener;
        let port = Port {
            proto: l.proto,
            address: l.address,
            port: l.port,
            pid: l.pid,
            comm: l.comm.clone(),
            uid: l.uid,
            netns: l.netns,
            cgroup: l.cgroup.clone(),
            container: l.container.clone(),
            exposure: l.exposure.clone(),
            published_as: l.published_as.clone(),
            context: l.context.clone(),
            ts: ev.ts,
            source: ev.source,
        };
        match ev.change {
            Change::Opened => Line::Opened(port),
            Change::Closed => Line::Closed(port),
        }
    }
}

impl From<&ExposureChange> for Line {
    fn from(c: &ExposureChange) -> Line {
        let l = &c.listener;
        Line::ExposureChanged(ExposureChanged {
            proto: l.proto,
            address: l.address,
            port: l.port,
            pid: l.pid,
            comm: l.comm.clone(),
            uid: l.uid,
            netns: l.netns,
            cgroup: l.cgroup.clone(),
            container: l.container.clone(),
            exposure: l.exposure.clone().unwrap_or(Exposure::Unknown {
                why: "not judged".into(),
            }),
            published_as: l.published_as.clone(),
            before: Judged {
                exposure: c.before.clone(),
                published_as: c.before_published.clone(),
            },
            ts: c.ts,
        })
    }
}

impl From<&eval::Alert> for Line {
    fn from(a: &eval::Alert) -> Line {
        Line::Alert(Alert {
            // From the rules file: escaped like process names.
            rule_id: safe_str(&a.rule_id),
            rule_name: safe_str(&a.rule_name),
            severity: a.severity,
            condition: a.condition.to_string(),
            message: a.message.clone(),
            pid: a.pid,
            comm: a.comm.clone(),
            address: a.address,
            port: a.port,
            proto: a.proto,
            ts: a.ts,
        })
    }
}

impl From<&report::UdpSummary> for UdpSummary {
    fn from(s: &report::UdpSummary) -> UdpSummary {
        UdpSummary {
            pid: s.pid,
            comm: s.comm.clone(),
            class: s.class,
            binds: s.binds,
            reported: s.reported,
            interval_ms: s.interval_ms,
            ts: s.ts,
        }
    }
}

impl From<&report::UdpSummary> for Line {
    fn from(s: &report::UdpSummary) -> Line {
        Line::UdpSummary(s.into())
    }
}

impl From<&crate::policy::drift::Drift> for Line {
    fn from(d: &crate::policy::drift::Drift) -> Line {
        Line::Drift(Drift {
            drift: d.kind,
            listener: d.listener.as_ref().map(|l| DriftListener {
                proto: l.proto,
                address: l.address,
                port: l.port,
                pid: l.pid,
                comm: l.comm.clone(),
                uid: l.uid,
                netns: l.netns,
                container: l.container.clone(),
                exe: l.context.as_ref().and_then(|c| c.exe.clone()),
            }),
            // From the policy file: escaped like rule names.
            entry: d.entry.as_ref().map(safe_entry),
            tags: d.tags.iter().map(|t| safe_str(t)).collect(),
            ts: d.ts,
        })
    }
}

fn safe_entry(e: &crate::policy::Entry) -> crate::policy::Entry {
    let safe = |t: &Option<String>| t.as_deref().map(safe_str);
    crate::policy::Entry {
        name: safe(&e.name),
        exe: safe(&e.exe),
        unit: safe(&e.unit),
        container: safe(&e.container),
        user: safe(&e.user),
        tags: e.tags.iter().map(|t| safe_str(t)).collect(),
        ..e.clone()
    }
}

impl From<&Notice> for Line {
    fn from(n: &Notice) -> Line {
        let m = Message {
            message: n.message.clone(),
            ts: n.ts,
        };
        match n.kind {
            NoticeKind::RulesReloaded => Line::RulesReloaded(m),
            NoticeKind::RulesError => Line::RulesError(m),
            NoticeKind::Warning => Line::Warning(m),
            NoticeKind::PolicyReloaded => Line::PolicyReloaded(m),
            NoticeKind::PolicyError => Line::PolicyError(m),
        }
    }
}

impl Line {
    pub fn ready(backend: &str, listeners: usize, ts: DateTime<Utc>) -> Line {
        Line::Ready(Ready {
            backend: backend.to_string(),
            listeners,
            ts,
        })
    }

    pub fn resync(s: &ResyncSummary) -> Line {
        Line::Resync(Resync {
            reason: s.reason,
            opened: s.opened,
            closed: s.closed,
            drops: s.drops,
            ts: s.ts,
        })
    }

    /// The notice that the kernel dropped events (a resync for drops), as
    /// the daemon's outputs get it.
    pub fn events_lost(s: &ResyncSummary) -> Line {
        Line::EventsLost(EventsLost {
            dropped: s.drops,
            opened: s.opened,
            closed: s.closed,
            ts: s.ts,
        })
    }

    /// `message` is one sentence, its untrusted parts already made safe.
    pub fn delivery_error(message: &str, ts: DateTime<Utc>) -> Line {
        Line::DeliveryError(Message {
            message: message.to_string(),
            ts,
        })
    }

    pub fn stats(s: &report::Stats, ts: DateTime<Utc>) -> Line {
        Line::Stats(Stats {
            events: s.events,
            drops: s.drops,
            resyncs: s.resyncs,
            owners_full: s.owners_full,
            unresolved: s.unresolved,
            ts,
        })
    }

    pub fn lost(events: u64, ts: DateTime<Utc>) -> Line {
        Line::Lost(Lost { events, ts })
    }

    pub fn refusal(message: &str) -> Line {
        Line::Error(Refusal {
            message: message.to_string(),
        })
    }

    /// The monitor event this line tells of, for a client that shows
    /// events as portwatch does; None for the lines that are not one
    /// (`lost`, `error`, `stats`, delivery errors, an unknown `event`):
    /// the caller decides what those mean to it.
    pub fn into_monitor_event(self) -> Option<MonitorEvent> {
        Some(match self {
            Line::Opened(p) => MonitorEvent::Port(port_event(p, Change::Opened)),
            Line::Closed(p) => MonitorEvent::Port(port_event(p, Change::Closed)),
            Line::Ready(r) => MonitorEvent::Ready(monitor::Ready {
                backend: r.backend,
                listeners: r.listeners,
                ts: r.ts,
            }),
            Line::Resync(r) => MonitorEvent::Resync(ResyncSummary {
                reason: r.reason,
                opened: r.opened,
                closed: r.closed,
                drops: r.drops,
                ts: r.ts,
            }),
            Line::Alert(a) => MonitorEvent::Alert(eval::Alert {
                rule_id: a.rule_id,
                rule_name: a.rule_name,
                severity: a.severity,
                condition: a.condition,
                message: a.message,
                pid: a.pid,
                comm: a.comm,
                address: a.address,
                port: a.port,
                proto: a.proto,
                ts: a.ts,
            }),
            Line::ExposureChanged(c) => MonitorEvent::ExposureChanged(ExposureChange {
                listener: Listener {
                    pid: c.pid,
                    comm: c.comm,
                    uid: c.uid,
                    netns: c.netns,
                    cgroup: c.cgroup,
                    container: c.container,
                    exposure: Some(c.exposure),
                    published_as: c.published_as,
                    ..Listener::new(c.proto, c.address, c.port)
                },
                before: c.before.exposure,
                before_published: c.before.published_as,
                ts: c.ts,
            }),
            Line::RulesReloaded(m) => notice(NoticeKind::RulesReloaded, m),
            Line::RulesError(m) => notice(NoticeKind::RulesError, m),
            Line::Warning(m) => notice(NoticeKind::Warning, m),
            Line::PolicyReloaded(m) => notice(NoticeKind::PolicyReloaded, m),
            Line::PolicyError(m) => notice(NoticeKind::PolicyError, m),
            Line::UdpSummary(s) => MonitorEvent::UdpSummary(report::UdpSummary {
                pid: s.pid,
                comm: safe_str(&s.comm),
                class: s.class,
                binds: s.binds,
                reported: s.reported,
                interval_ms: s.interval_ms,
                ts: s.ts,
            }),
            Line::Drift(d) => MonitorEvent::Drift(crate::policy::drift::Drift {
                kind: d.drift,
                listener: d.listener.map(|l| Listener {
                    pid: l.pid,
                    comm: l.comm,
                    uid: l.uid,
                    netns: l.netns,
                    container: l.container,
                    context: l.exe.map(|exe| {
                        std::sync::Arc::new(crate::owner::OwnerContext {
                            exe: Some(exe),
                            ..Default::default()
                        })
                    }),
                    ..Listener::new(l.proto, l.address, l.port)
                }),
                entry: d.entry,
                tags: d.tags,
                ts: d.ts,
            }),
            Line::EventsLost(_)
            | Line::DeliveryError(_)
            | Line::Stats(_)
            | Line::Lost(_)
            | Line::Error(_)
            | Line::Unknown => return None,
        })
    }
}

fn notice(kind: NoticeKind, m: Message) -> MonitorEvent {
    MonitorEvent::Notice(Notice {
        kind,
        message: m.message,
        ts: m.ts,
    })
}

fn port_event(p: Port, change: Change) -> PortEvent {
    PortEvent {
        change,
        listener: Listener {
            proto: p.proto,
            address: p.address,
            port: p.port,
            pid: p.pid,
            comm: p.comm,
            uid: p.uid,
            // The daemon's own keys; a client keys rows by socket.
            cookie: None,
            inode: None,
            netns: p.netns,
            cgroup: p.cgroup,
            // The daemon's own, as its keys.
            socket_cgroup: 0,
            container: p.container,
            // A live open is when it opened; the baseline's age is unknown.
            opened_at: (change == Change::Opened && p.source != Source::Baseline).then_some(p.ts),
            exposure: p.exposure,
            published_as: p.published_as,
            context: p.context,
        },
        ts: p.ts,
        source: p.source,
    }
}
