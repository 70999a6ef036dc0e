//! Evaluates rules against what the watcher sees. Pure logic: events,
//! connections and process samples in, alerts out.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use chrono::{DateTime, Utc};

use super::{
    model::{ExposureName, Severity},
    private::is_private,
    validate::{CompiledRule, Matcher, Rules},
};
use crate::{
    event::{Change, Exposure, Listener, PortEvent, Proto, Source},
    report::{Connection, ProcessSample},
};

/// One firing of a rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub rule_id: String,
    pub rule_name: String,
    pub severity: Severity,
    /// The rule's condition `type` (`PortOpened`, ...).
    pub condition: String,
    pub message: String,
    pub pid: u32,
    pub comm: String,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    /// The protocol of the port, for rules about ports and connections.
    pub proto: Option<Proto>,
    pub ts: DateTime<Utc>,
}

const MIB: u64 = 1024 * 1024;

/// Whether listener `l` has one of `exposure`, on one of `ports` (any
/// when `None`).
fn exposed(l: &Listener, exposure: &[ExposureName], ports: Option<&[u16]>) -> bool {
    let named = l
        .exposure
        .as_ref()
        .and_then(|e| ExposureName::parse(e.name()))
        .is_some_and(|e| exposure.contains(&e));
    named && ports.is_none_or(|p| p.contains(&l.port))
}

/// The rules in force, their cooldowns, and the processes known to listen.
pub struct Evaluator {
    rules: Rules,
    /// Names of processes listening when the daemon started.
    known_names: HashSet<String>,
    last_fired: HashMap<String, DateTime<Utc>>,
}

/// What a firing is about.
struct Fired {
    message: String,
    pid: u32,
    comm: String,
    address: Option<IpAddr>,
    port: Option<u16>,
    proto: Option<Proto>,
}

/// Fires `rule` unless disabled or cooling down.
fn fire(
    rule: &CompiledRule,
    last_fired: &mut HashMap<String, DateTime<Utc>>,
    ts: DateTime<Utc>,
    what: Fired,
) -> Option<Alert> {
    if !rule.enabled {
        return None;
    }
    // A difference of two times, never a time plus a user's number: no
    // cooldown, however long, can overflow.
    if let Some(last) = last_fired.get(&rule.id)
        && ts.signed_duration_since(*last) < rule.cooldown
    {
        return None;
    }
    last_fired.insert(rule.id.clone(), ts);
    Some(Alert {
        rule_id: rule.id.clone(),
        rule_name: rule.name.clone(),
        severity: rule.severity,
        condition: rule.condition.to_string(),
        message: what.message,
        pid: what.pid,
        comm: what.comm,
        address: what.address,
        port: what.port,
        proto: what.proto,
        ts,
    })
}

impl Evaluator {
    /// `listening_at_start` are the names of processes already listening
    /// (known to UnknownProcessListening).
    pub fn new(rules: Rules, listening_at_start: impl IntoIterator<Item = String>) -> Self {
        Self {
            rules,
            known_names: listening_at_start.into_iter().collect(),
            last_fired: HashMap::new(),
        }
    }

    /// Replaces the rules (a reloaded file); cooldowns of ids that remain
    /// carry over, so a reload does not re-fire everything.
    pub fn replace_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Whether any enabled rule needs connection events.
    pub fn wants_connections(&self) -> bool {
        self.rules
            .compiled
            .iter()
            .any(|r| r.enabled && matches!(r.matcher, Matcher::External { .. }))
    }

    /// Whether any enabled rule needs process samples.
    pub fn wants_samples(&self) -> bool {
        self.rules
            .compiled
            .iter()
            .any(|r| r.enabled && matches!(r.matcher, Matcher::Cpu { .. } | Matcher::Memory { .. }))
    }

    fn is_known(&self, l: &Listener) -> bool {
        self.known_names.contains(&l.comm) || self.rules.known.iter().any(|k| k.knows(l))
    }

    /// Rules about listeners. The baseline is the state at start, not a
    /// change, so it fires nothing.
    pub fn on_port(&mut self, ev: &PortEvent) -> Vec<Alert> {
        if ev.source == Source::Baseline {
            return Vec::new();
        }
        let l = &ev.listener;
        let opened = ev.change == Change::Opened;
        let verb = ev.change.as_str();
        // "0.0.0.0:53/udp", as services(5) writes a port and its protocol.
        let socket = format!("{}/{}", l.socket(), l.proto.as_str());
        let mut out = Vec::new();
        for r in &self.rules.compiled {
            let message = match r.matcher {
                Matcher::Opened(p) if opened && p == l.port => {
                    format!("{} (pid {}) {verb} {socket}", l.comm, l.pid)
                }
                Matcher::Closed(p) if !opened && p == l.port => {
                    format!("{} (pid {}) {verb} {socket}", l.comm, l.pid)
                }
                Matcher::Range(a, b) if opened && (a..=b).contains(&l.port) => {
                    format!("{} (pid {}) {verb} {socket}", l.comm, l.pid)
                }
                Matcher::Unknown if opened && !self.is_known(l) => format!(
                    "unknown process {} (pid {}) is listening on {socket}",
                    l.comm, l.pid
                ),
                Matcher::Exposed {
                    ref exposure,
                    ref ports,
                } if opened && exposed(l, exposure, ports.as_deref()) => format!(
                    "{} (pid {}) {verb} {socket}, {}",
                    l.comm,
                    l.pid,
                    l.exposure
                        .as_ref()
                        .map_or_else(String::new, Exposure::describe)
                ),
                _ => continue,
            };
            let what = Fired {
                message,
                pid: l.pid,
                comm: l.comm.clone(),
                address: Some(l.address),
                port: Some(l.port),
                proto: Some(l.proto),
            };
            out.extend(fire(r, &mut self.last_fired, ev.ts, what));
        }
        out
    }

    /// `ExposedListener` rules on listener `l`, whose exposure changed
    /// from `before` at `ts`: they fire when it enters one of theirs.
    pub fn on_exposure(
        &mut self,
        l: &Listener,
        before: &Exposure,
        ts: DateTime<Utc>,
    ) -> Vec<Alert> {
        let socket = format!("{}/{}", l.socket(), l.proto.as_str());
        let mut out = Vec::new();
        for r in &self.rules.compiled {
            let Matcher::Exposed { exposure, ports } = &r.matcher else {
                continue;
            };
            let was = ExposureName::parse(before.name()).is_some_and(|b| exposure.contains(&b));
            if was || !exposed(l, exposure, ports.as_deref()) {
                continue;
            }
            let what = Fired {
                message: format!(
                    "{} (pid {}) on {socket} is now {} (was {})",
                    l.comm,
                    l.pid,
                    l.exposure
                        .as_ref()
                        .map_or_else(String::new, Exposure::describe),
                    before.describe()
                ),
                pid: l.pid,
                comm: l.comm.clone(),
                address: Some(l.address),
                port: Some(l.port),
                proto: Some(l.proto),
            };
            out.extend(fire(r, &mut self.last_fired, ts, what));
        }
        out
    }

    /// Rules about connections.
    pub fn on_connection(&mut self, c: &Connection) -> Vec<Alert> {
        let remote_ip = c.remote.ip();
        let text = remote_ip.to_string();
        let mut out = Vec::new();
        for r in &self.rules.compiled {
            let Matcher::External {
                ip,
                exclude_private,
            } = &r.matcher
            else {
                continue;
            };
            if !ip.is_match(&text) || (*exclude_private && is_private(remote_ip)) {
                continue;
            }
            let dir = if c.outbound {
                "connected to"
            } else {
                "accepted a connection from"
            };
            let message = format!(
                "{} (pid {}) {dir} {}",
                c.comm,
                c.pid,
                SocketAddr::new(remote_ip, c.remote.port())
            );
            let what = Fired {
                message,
                pid: c.pid,
                comm: c.comm.clone(),
                address: Some(remote_ip),
                port: Some(c.remote.port()),
                proto: Some(Proto::Tcp),
            };
            out.extend(fire(r, &mut self.last_fired, c.ts, what));
        }
        out
    }

    /// Rules about the resource use of listening processes.
    pub fn on_sample(&mut self, s: &ProcessSample) -> Vec<Alert> {
        let mut out = Vec::new();
        for r in &self.rules.compiled {
            let message = match &r.matcher {
                Matcher::Cpu { name, threshold }
                    if name.is_match(&s.comm) && s.cpu_percent > *threshold =>
                {
                    format!(
                        "{} (pid {}) uses {:.1}% CPU, above {threshold}%",
                        s.comm, s.pid, s.cpu_percent
                    )
                }
                Matcher::Memory { name, threshold_mb }
                    if name.is_match(&s.comm) && s.rss_bytes > threshold_mb.saturating_mul(MIB) =>
                {
                    format!(
                        "{} (pid {}) uses {} MiB of memory, above {threshold_mb} MiB",
                        s.comm,
                        s.pid,
                        s.rss_bytes / MIB
                    )
                }
                _ => continue,
            };
            let what = Fired {
                message,
                pid: s.pid,
                comm: s.comm.clone(),
                address: None,
                port: None,
                proto: None,
            };
            out.extend(fire(r, &mut self.last_fired, s.ts, what));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::validate::load_bytes;

    fn rules(json: &str) -> Rules {
        load_bytes(json.as_bytes(), std::path::Path::new("t")).unwrap()
    }

    fn rule(id: &str, condition: &str, cooldown: u64, enabled: bool) -> String {
        format!(
            r#"{{"id":"{id}","name":"{id} rule","condition":{condition},"enabled":{enabled},"severity":"Warning","cooldown_seconds":{cooldown}}}"#
        )
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn port_event(change: Change, port: u16, comm: &str, secs: i64, source: Source) -> PortEvent {
        PortEvent {
            change,
            listener: Listener {
                pid: 7,
                comm: comm.into(),
                netns: 1,
                ..Listener::new(Proto::Tcp, "0.0.0.0".parse().unwrap(), port)
            },
            ts: at(secs),
            source,
        }
    }

    #[test]
    fn port_rules_fire_on_the_right_change_only() {
        let file = rules(&format!(
            r#"{{"rules":[{},{},{}]}}"#,
            rule(
                "open22",
                r#"{"type":"PortOpened","params":{"port":22}}"#,
                10,
                true
            ),
            rule(
                "close22",
                r#"{"type":"PortClosed","params":{"port":22}}"#,
                10,
                true
            ),
            rule(
                "range",
                r#"{"type":"PortRangeActivity","params":{"start_port":20,"end_port":25}}"#,
                10,
                true
            ),
        ));
        let mut e = Evaluator::new(file.clone(), []);
        let ids = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.rule_id).collect::<Vec<_>>();
        assert_eq!(
            ids(e.on_port(&port_event(Change::Opened, 22, "sshd", 0, Source::Ebpf))),
            ["open22", "range"]
        );
        assert_eq!(
            ids(e.on_port(&port_event(Change::Closed, 22, "sshd", 100, Source::Ebpf))),
            ["close22"]
        );
        assert!(
            e.on_port(&port_event(Change::Opened, 26, "x", 200, Source::Ebpf))
                .is_empty()
        );
        // The baseline is not a change.
        assert!(
            e.on_port(&port_event(
                Change::Opened,
                22,
                "sshd",
                300,
                Source::Baseline
            ))
            .is_empty()
        );
    }

    #[test]
    fn port_rules_match_udp_as_0_1_8_did() {
        let file = rules(&format!(
            r#"{{"rules":[{},{},{}]}}"#,
            rule(
                "open53",
                r#"{"type":"PortOpened","params":{"port":53}}"#,
                1,
                true
            ),
            rule(
                "close53",
                r#"{"type":"PortClosed","params":{"port":53}}"#,
                1,
                true
            ),
            rule(
                "range",
                r#"{"type":"PortRangeActivity","params":{"start_port":50,"end_port":60}}"#,
                1,
                true
            ),
        ));
        let mut e = Evaluator::new(file, []);
        let udp = |change, secs| {
            let mut ev = port_event(change, 53, "dnsmasq", secs, Source::Ebpf);
            ev.listener.proto = Proto::Udp;
            ev
        };
        let ids = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.rule_id).collect::<Vec<_>>();
        assert_eq!(ids(e.on_port(&udp(Change::Opened, 0))), ["open53", "range"]);
        let closed = e.on_port(&udp(Change::Closed, 10));
        assert_eq!(closed[0].proto, Some(Proto::Udp));
        assert_eq!(closed[0].message, "dnsmasq (pid 7) closed 0.0.0.0:53/udp");
        assert_eq!(ids(closed), ["close53"]);
    }

    #[test]
    fn cooldown_and_disabled_rules() {
        let file = rules(&format!(
            r#"{{"rules":[{},{}]}}"#,
            rule(
                "a",
                r#"{"type":"PortOpened","params":{"port":80}}"#,
                60,
                true
            ),
            rule(
                "off",
                r#"{"type":"PortOpened","params":{"port":80}}"#,
                1,
                false
            ),
        ));
        let mut e = Evaluator::new(file.clone(), []);
        assert_eq!(
            e.on_port(&port_event(Change::Opened, 80, "w", 0, Source::Ebpf))
                .len(),
            1
        );
        assert!(
            e.on_port(&port_event(Change::Opened, 80, "w", 59, Source::Ebpf))
                .is_empty()
        );
        assert_eq!(
            e.on_port(&port_event(Change::Opened, 80, "w", 60, Source::Ebpf))
                .len(),
            1
        );
        // A reload keeps the cooldown of an id that stays.
        e.replace_rules(file);
        assert!(
            e.on_port(&port_event(Change::Opened, 80, "w", 61, Source::Ebpf))
                .is_empty()
        );
    }

    #[test]
    fn unknown_process_listening() {
        let file = rules(&format!(
            r#"{{"rules":[{}],"known_processes":["sshd","python3\\.\\d+"]}}"#,
            rule(
                "u",
                r#"{"type":"UnknownProcessListening","params":null}"#,
                1,
                true
            ),
        ));
        let mut e = Evaluator::new(file, ["nginx".to_string()]);
        let fires = |e: &mut Evaluator, comm: &str, t| {
            e.on_port(&port_event(Change::Opened, 9, comm, t, Source::Ebpf))
                .len()
        };
        assert_eq!(fires(&mut e, "sshd", 0), 0, "listed by name");
        assert_eq!(fires(&mut e, "python3.11", 10), 0, "listed by regex");
        assert_eq!(fires(&mut e, "nginx", 20), 0, "listening at start");
        assert_eq!(fires(&mut e, "sshd-evil", 30), 1, "names match whole");
        assert_eq!(fires(&mut e, "nc", 40), 1);
        assert!(
            e.on_port(&port_event(Change::Closed, 9, "nc", 50, Source::Ebpf))
                .is_empty()
        );
    }

    #[test]
    fn known_processes_match_sources_and_packages() {
        use crate::owner::{Origin, OriginKind, OwnerContext};
        let json = |extra: &str| {
            format!(
                r#"{{"rules":[{}],"known_processes":["source:systemd:nginx\\.service","package:postgresql-\\d+"{extra}]}}"#,
                rule(
                    "u",
                    r#"{"type":"UnknownProcessListening","params":null}"#,
                    1,
                    true
                ),
            )
        };
        // An entry that is no regex is refused, with its index.
        let Err(e) = load_bytes(
            json(r#","source:(cron"#).as_bytes(),
            std::path::Path::new("t"),
        ) else {
            panic!("a bad source regex was accepted")
        };
        assert!(e.to_string().contains("known_processes[2]"), "{e}");
        let ok = rules(&json(""));
        let mut e = Evaluator::new(ok, []);
        let mut t = 0;
        let mut fires = |comm: &str, kind, name: &str, package: Option<&str>| {
            let mut ev = port_event(Change::Opened, 9, comm, t, Source::Ebpf);
            t += 10;
            ev.listener.context = Some(std::sync::Arc::new(OwnerContext {
                source: Origin {
                    kind,
                    name: name.into(),
                    user: None,
                    session: None,
                    trusted: kind != OriginKind::Terminal,
                },
                package: package.map(str::to_string),
                ..OwnerContext::default()
            }));
            e.on_port(&ev).len()
        };
        assert_eq!(
            fires("nginx", OriginKind::Systemd, "nginx.service", None),
            0
        );
        assert_eq!(
            fires("nginx", OriginKind::Terminal, "nginx.service", None),
            1,
            "kind and name match together"
        );
        assert_eq!(
            fires("nginx", OriginKind::Systemd, "nginx.service.evil", None),
            1,
            "whole"
        );
        assert_eq!(
            fires(
                "postgres",
                OriginKind::Init,
                "systemd",
                Some("postgresql-15")
            ),
            0
        );
        assert_eq!(
            fires("postgres", OriginKind::Init, "systemd", None),
            1,
            "no package"
        );
        // Without a context, only names are known.
        let mut ev = port_event(Change::Opened, 9, "nginx", 100, Source::Ebpf);
        ev.listener.context = None;
        assert_eq!(e.on_port(&ev).len(), 1);
        // A source root does not vouch for (a user's own unit) is no
        // source a rule knows.
        let mut ev = port_event(Change::Opened, 9, "nginx", 110, Source::Ebpf);
        ev.listener.context = Some(std::sync::Arc::new(OwnerContext {
            source: Origin {
                kind: OriginKind::Systemd,
                name: "nginx.service".into(),
                user: Some("1000".into()),
                session: None,
                trusted: false,
            },
            ..OwnerContext::default()
        }));
        assert_eq!(e.on_port(&ev).len(), 1);
    }

    #[test]
    fn external_connections_respect_exclude_private() {
        let file = rules(&format!(
            r#"{{"rules":[{},{}]}}"#,
            rule(
                "all",
                r#"{"type":"ExternalConnection","params":{"ip_pattern":"^127\\.|^8\\.8","exclude_private":false}}"#,
                1,
                true
            ),
            rule(
                "public",
                r#"{"type":"ExternalConnection","params":{"ip_pattern":".*","exclude_private":true}}"#,
                1,
                true
            ),
        ));
        let mut e = Evaluator::new(file.clone(), []);
        assert!(e.wants_connections() && !e.wants_samples());
        let conn = |remote: &str, t| Connection {
            pid: 3,
            comm: "curl".into(),
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: remote.parse().unwrap(),
            outbound: true,
            ts: at(t),
        };
        let ids = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.rule_id).collect::<Vec<_>>();
        assert_eq!(ids(e.on_connection(&conn("127.0.0.1:80", 0))), ["all"]);
        assert_eq!(
            ids(e.on_connection(&conn("8.8.8.8:53", 10))),
            ["all", "public"]
        );
        assert!(
            e.on_connection(&conn("[::ffff:10.0.0.1]:80", 20))
                .is_empty()
        );
    }

    /// portwatch 0.1.8's example matched remote addresses with a
    /// look-ahead, `^(?!127\.).+`, which its regex engine could not
    /// compile, so the rule never fired. The example shipped now uses the
    /// same pattern, and it fires.
    #[test]
    fn the_examples_look_ahead_rule_fires() {
        let file = crate::rules::validate::load_bytes(
            crate::rules::store::EXAMPLE.as_bytes(),
            std::path::Path::new("alerts.example.json"),
        )
        .unwrap();
        let mut e = Evaluator::new(file, []);
        let conn = |remote: &str| Connection {
            pid: 3,
            comm: "curl".into(),
            local: "192.0.2.1:40000".parse().unwrap(),
            remote: remote.parse().unwrap(),
            outbound: true,
            ts: at(0),
        };
        let ids = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.rule_id).collect::<Vec<_>>();
        assert!(ids(e.on_connection(&conn("127.0.0.1:80"))).is_empty());
        assert_eq!(ids(e.on_connection(&conn("8.8.8.8:53"))), ["external"]);
    }

    #[test]
    fn cpu_and_memory_thresholds() {
        let file = rules(&format!(
            r#"{{"rules":[{},{}]}}"#,
            rule(
                "cpu",
                r#"{"type":"ProcessCpuThreshold","params":{"process_pattern":"^busy$","threshold_percent":50.0}}"#,
                1,
                true
            ),
            rule(
                "mem",
                r#"{"type":"ProcessMemoryThreshold","params":{"process_pattern":".*","threshold_mb":100}}"#,
                1,
                true
            ),
        ));
        let mut e = Evaluator::new(file.clone(), []);
        let sample = |comm: &str, cpu, rss, t| ProcessSample {
            pid: 5,
            comm: comm.into(),
            cpu_percent: cpu,
            rss_bytes: rss,
            ts: at(t),
        };
        let ids = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.rule_id).collect::<Vec<_>>();
        assert_eq!(
            ids(e.on_sample(&sample("busy", 75.0, 10 * MIB, 0))),
            ["cpu"]
        );
        assert!(
            e.on_sample(&sample("busy", 50.0, 100 * MIB, 10)).is_empty(),
            "exceeds means strictly above"
        );
        assert_eq!(
            ids(e.on_sample(&sample("idle", 0.0, 100 * MIB + 1, 20))),
            ["mem"]
        );
    }

    fn exposed_event(port: u16, exposure: Exposure) -> PortEvent {
        let mut ev = port_event(Change::Opened, port, "srv", 0, Source::Ebpf);
        ev.listener.exposure = Some(exposure);
        ev
    }

    fn reachable() -> Exposure {
        Exposure::Reachable {
            reachable_via: vec!["eth0".into()],
        }
    }

    /// ExposedListener fires on an open with one of its exposures (on its
    /// ports), and on a change into one, never on one that stays.
    #[test]
    fn exposed_listener_fires_on_opening_or_becoming_exposed() {
        let file = rules(&format!(
            r#"{{"rules":[{},{}]}}"#,
            rule(
                "any",
                r#"{"type":"ExposedListener","params":{"exposure":["reachable"],"ports":null}}"#,
                1,
                true
            ),
            rule(
                "db",
                r#"{"type":"ExposedListener","params":{"exposure":["reachable","unknown"],"ports":[5432]}}"#,
                1,
                true
            ),
        ));
        let mut e = Evaluator::new(file, []);
        let ids = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.rule_id).collect::<Vec<_>>();
        assert_eq!(ids(e.on_port(&exposed_event(80, reachable()))), ["any"]);
        assert!(e.on_port(&exposed_event(81, Exposure::Filtered)).is_empty());
        let a = e.on_port(&exposed_event(5432, reachable()));
        assert_eq!(ids(a.clone()), ["db"], "any is cooling down");
        assert!(
            a[0].message.contains("reachable via eth0"),
            "{}",
            a[0].message
        );

        let on = |e: &mut Evaluator, before: Exposure, now: Exposure, secs| {
            let l = Listener {
                exposure: Some(now),
                ..exposed_event(5432, Exposure::Loopback).listener
            };
            e.on_exposure(&l, &before, at(secs))
        };
        // Into one of its exposures: fires.
        assert_eq!(
            ids(on(&mut e, Exposure::Filtered, reachable(), 10)),
            ["any", "db"]
        );
        // From unknown to reachable: `db` had it already, `any` did not.
        let unknown = Exposure::Unknown { why: "x".into() };
        assert_eq!(ids(on(&mut e, unknown, reachable(), 20)), ["any"]);
        // Out of it: nothing.
        assert!(on(&mut e, reachable(), Exposure::Filtered, 30).is_empty());
    }

    #[test]
    fn exposed_listener_refuses_bad_params_in_one_sentence() {
        let err = |params: &str| {
            let text = format!(
                r#"{{"rules":[{}]}}"#,
                rule(
                    "x",
                    &format!(r#"{{"type":"ExposedListener","params":{params}}}"#),
                    1,
                    true
                )
            );
            load_bytes(text.as_bytes(), std::path::Path::new("alerts.json"))
                .unwrap_err()
                .to_string()
        };
        let e = err(r#"{"exposure":[],"ports":null}"#);
        assert!(e.contains("condition.params.exposure is empty"), "{e}");
        let e = err(r#"{"exposure":["reachable"],"ports":[70000]}"#);
        assert!(e.contains("70000, outside 0-65535"), "{e}");
        let e = err(r#"{"exposure":["public"],"ports":null}"#);
        assert!(e.contains("public"), "{e}");
    }
}
