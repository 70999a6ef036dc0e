//! Golden lines: every JSON line portwatch writes, byte for byte, as the
//! shippers that read them have seen them since 0.2.0. A change here is a
//! change of the published format (see `schema/`).

use chrono::{DateTime, Utc};

use super::*;
use crate::{
    container::Container,
    event::{Change, Listener, PortEvent},
    monitor::{ExposureChange, Notice, NoticeKind},
    report::{ResyncSummary, Stats},
    rules::eval::Alert,
};

pub(crate) fn ts() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00.123456789Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) fn listener() -> Listener {
    Listener {
        pid: 4242,
        comm: "node\\x1b".into(),
        uid: 1000,
        cookie: Some(77),
        inode: Some(991),
        netns: 4026531840,
        cgroup: "/system.slice/docker-ab.scope".into(),
        container: Container::classify(&format!("/system.slice/docker-{}.scope", "ab".repeat(32))),
        ..Listener::new(Proto::Tcp, "::1".parse().unwrap(), 8080)
    }
}

pub(crate) fn alert(with_socket: bool) -> Alert {
    Alert {
        rule_id: "r1\u{1b}".into(),
        rule_name: "SSH \"open\"".into(),
        severity: Severity::Warning,
        condition: "PortOpened".into(),
        message: "port 22 opened by sshd (pid 1)".into(),
        pid: 1,
        comm: "sshd".into(),
        address: with_socket.then(|| "0.0.0.0".parse().unwrap()),
        port: with_socket.then_some(22),
        proto: with_socket.then_some(Proto::Tcp),
        ts: ts(),
    }
}

/// Each kind of line, as written today.
pub(crate) fn lines() -> Vec<(&'static str, String)> {
    let udp = Listener {
        proto: Proto::Udp,
        address: "0.0.0.0".parse().unwrap(),
        container: None,
        cgroup: "/".into(),
        ..listener()
    };
    let resync = ResyncSummary {
        reason: ResyncReason::Drops,
        opened: 2,
        closed: 1,
        drops: 9,
        ts: ts(),
    };
    let notice = |kind| Notice {
        kind,
        message: "alerts.json: rule 2 has no id".into(),
        ts: ts(),
    };
    vec![
        (
            "opened",
            Line::from(&PortEvent {
                change: Change::Opened,
                listener: listener(),
                ts: ts(),
                source: Source::Ebpf,
            })
            .to_json(),
        ),
        (
            "closed",
            Line::from(&PortEvent {
                change: Change::Closed,
                listener: udp,
                ts: ts(),
                source: Source::Baseline,
            })
            .to_json(),
        ),
        (
            "opened with exposure",
            Line::from(&PortEvent {
                change: Change::Opened,
                listener: Listener {
                    address: "0.0.0.0".parse().unwrap(),
                    exposure: Some(Exposure::Reachable {
                        reachable_via: vec!["eth0".into()],
                    }),
                    ..listener()
                },
                ts: ts(),
                source: Source::Ebpf,
            })
            .to_json(),
        ),
        (
            "exposure_changed",
            Line::from(&ExposureChange {
                listener: Listener {
                    address: "0.0.0.0".parse().unwrap(),
                    exposure: Some(Exposure::Unknown {
                        why: "`rule 4 of chain inet filter input` (the expression fib)".into(),
                    }),
                    ..listener()
                },
                before: Exposure::Filtered,
                before_published: Vec::new(),
                ts: ts(),
            })
            .to_json(),
        ),
        ("ready", Line::ready("ebpf", 12, ts()).to_json()),
        ("resync", Line::resync(&resync).to_json()),
        ("events_lost", Line::events_lost(&resync).to_json()),
        ("alert", Line::from(&alert(true)).to_json()),
        (
            "alert without a socket",
            Line::from(&alert(false)).to_json(),
        ),
        (
            "rules_reloaded",
            Line::from(&notice(NoticeKind::RulesReloaded)).to_json(),
        ),
        (
            "rules_error",
            Line::from(&notice(NoticeKind::RulesError)).to_json(),
        ),
        (
            "warning",
            Line::from(&notice(NoticeKind::Warning)).to_json(),
        ),
        (
            "delivery_error",
            Line::delivery_error("exec #1 (sh) failed: exit status 3", ts()).to_json(),
        ),
        (
            "udp_summary",
            Line::from(&crate::report::UdpSummary {
                pid: 42,
                comm: "churn".into(),
                class: crate::report::PortClass::Ephemeral,
                binds: 1200,
                reported: 1,
                interval_ms: 1000,
                ts: ts(),
            })
            .to_json(),
        ),
        (
            "stats",
            Line::stats(
                &Stats {
                    events: 10,
                    drops: 1,
                    owners_full: 2,
                    resyncs: 3,
                    malformed: 4,
                    unresolved: 5,
                    binds_full: 6,
                },
                ts(),
            )
            .to_json(),
        ),
        (
            "list",
            list::to_json(&crate::Listing {
                listeners: vec![listener()],
                unbacked: Vec::new(),
            }),
        ),
        (
            "list with a published port",
            list::to_json(&crate::Listing {
                listeners: vec![Listener {
                    exposure: Some(Exposure::Filtered),
                    published_as: vec![crate::exposure::Published {
                        netns: 4026531840,
                        address: "0.0.0.0".parse().unwrap(),
                        port: 80,
                        proto: Proto::Tcp,
                        exposure: Exposure::Reachable {
                            reachable_via: vec!["eth0".into()],
                        },
                    }],
                    ..listener()
                }],
                unbacked: vec![crate::Unbacked {
                    published: crate::exposure::Published {
                        netns: 4026531840,
                        address: "192.0.2.10".parse().unwrap(),
                        port: 8443,
                        proto: Proto::Tcp,
                        exposure: Exposure::Unknown {
                            why:
                                "`rule 7 of chain ip filter FORWARD` (the iptables match addrtype)"
                                    .into(),
                        },
                    },
                    to: "172.17.0.2:443".parse().unwrap(),
                }],
            }),
        ),
        (
            "drift unexpected",
            Line::from(&crate::policy::drift::Drift {
                kind: crate::policy::drift::DriftKind::Unexpected,
                listener: Some(Listener {
                    context: Some(std::sync::Arc::new(crate::owner::OwnerContext {
                        exe: Some("/usr/bin/nc".into()),
                        ..Default::default()
                    })),
                    ..listener()
                }),
                entry: None,
                tags: vec!["PCI-DSS-10.2.7".into()],
                ts: ts(),
            })
            .to_json(),
        ),
        (
            "drift missing",
            Line::from(&crate::policy::drift::Drift {
                kind: crate::policy::drift::DriftKind::Missing,
                listener: None,
                entry: Some(crate::policy::Entry {
                    name: Some("ssh\u{1b}".into()),
                    exe: Some("/usr/sbin/sshd".into()),
                    proto: Some(Proto::Tcp),
                    port: Some(crate::policy::PortSpec::One(22)),
                    tags: vec!["remote-access".into()],
                    ..Default::default()
                }),
                tags: vec!["PCI-DSS-10.2.7".into(), "remote-access".into()],
                ts: ts(),
            })
            .to_json(),
        ),
        (
            "policy_reloaded",
            Line::from(&notice(NoticeKind::PolicyReloaded)).to_json(),
        ),
        ("lost", Line::lost(3, ts()).to_json()),
        (
            "error",
            Line::refusal("too many clients of uid 1000 (8)").to_json(),
        ),
        (
            "request",
            super::request::request_line(&crate::Filter {
                pid: Some(42),
                proto: Some(Proto::Tcp),
                scope: crate::filter::Scope::Local,
                netns: Some(4026531840),
            }),
        ),
        (
            "request for everything",
            super::request::request_line(&crate::Filter::default()),
        ),
    ]
}

/// The golden file: `name<TAB>line`, one per kind.
pub(crate) const GOLDEN: &str = include_str!("golden.txt");

pub(crate) fn golden(name: &str) -> &'static str {
    GOLDEN
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('\t'))
        .unwrap_or_else(|| panic!("no golden line `{name}`"))
}

#[test]
fn every_line_is_what_it_was() {
    for (name, line) in lines() {
        assert_eq!(line, golden(name), "{name}");
    }
}
