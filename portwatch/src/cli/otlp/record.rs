//! One OTLP log record per line worth exporting: its event name, the
//! OpenTelemetry semantic-convention attributes where they name what the
//! line says (`network.*`, `process.*`, `user.id`, `container.id`,
//! `k8s.*`), and `portwatch.*` for what they do not. Pure: the text in a
//! line was made safe by the code that wrote it, and goes out as it is.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value},
    logs::v1::{LogRecord, SeverityNumber},
};
use portwatch::{
    container::{Container, Runtime},
    event::Exposure,
    owner::OwnerContext,
    policy::drift::DriftKind,
    rules::model::Severity,
    wire::{self, Line},
};

/// The event names, one per kind of record.
pub const OPEN: &str = "portwatch.listen.open";
pub const CLOSE: &str = "portwatch.listen.close";
pub const ALERT: &str = "portwatch.alert";
pub const DRIFT: &str = "portwatch.drift";
pub const EXPOSURE: &str = "portwatch.exposure.change";
pub const EVENTS_LOST: &str = "portwatch.events.lost";
pub const UDP_SUMMARY: &str = "portwatch.udp.summary";

/// The record for `line`, observed at `observed`; None for a line that is
/// not exported (a notice, a client's own lines).
pub fn record(line: &Line, observed: SystemTime) -> Option<LogRecord> {
    let mut r = Attrs::default();
    let (name, ts, severity, text, body) = match line {
        Line::Opened(p) | Line::Closed(p) => {
            let opened = matches!(line, Line::Opened(_));
            r.port(p);
            let body = format!(
                "{} {} {}:{} {} by {} (pid {}, uid {})",
                if opened { "opened" } else { "closed" },
                p.proto.as_str(),
                p.address,
                p.port,
                if opened {
                    "listening"
                } else {
                    "no longer listening"
                },
                p.comm,
                p.pid,
                p.uid
            );
            let name = if opened { OPEN } else { CLOSE };
            (name, p.ts, SeverityNumber::Info, "INFO", body)
        }
        Line::Alert(a) => {
            r.str("portwatch.rule.id", &a.rule_id);
            r.str("portwatch.rule.name", &a.rule_name);
            r.str("portwatch.rule.condition", &a.condition);
            r.str("portwatch.rule.severity", a.severity.as_str());
            r.process(a.pid, &a.comm, None);
            if let (Some(proto), Some(address), Some(port)) = (a.proto, a.address, a.port) {
                r.socket(proto.as_str(), address, port);
            }
            let severity = match a.severity {
                Severity::Info => SeverityNumber::Info,
                Severity::Warning => SeverityNumber::Warn,
                Severity::Critical => SeverityNumber::Error,
            };
            (
                ALERT,
                a.ts,
                severity,
                a.severity.as_str(),
                a.message.clone(),
            )
        }
        Line::Drift(d) => {
            r.str("portwatch.drift", d.drift.as_str());
            if !d.tags.is_empty() {
                r.strs("portwatch.policy.tags", &d.tags);
            }
            if let Some(name) = d.entry.as_ref().and_then(|e| e.name.as_deref()) {
                r.str("portwatch.policy.entry", name);
            }
            if let Some(l) = &d.listener {
                r.socket(l.proto.as_str(), l.address, l.port);
                r.process(l.pid, &l.comm, l.exe.as_deref());
                r.int("process.user.id", i64::from(l.uid));
                r.int("portwatch.netns", l.netns as i64);
                r.container(l.container.as_ref(), "");
            }
            let (severity, text) = match d.drift {
                DriftKind::Expected => (SeverityNumber::Info, "INFO"),
                DriftKind::Unexpected | DriftKind::Missing => (SeverityNumber::Warn, "WARN"),
            };
            let body = d.sentence();
            (DRIFT, d.ts, severity, text, body)
        }
        Line::ExposureChanged(c) => {
            r.socket(c.proto.as_str(), c.address, c.port);
            r.process(c.pid, &c.comm, None);
            r.int("process.user.id", i64::from(c.uid));
            r.int("portwatch.netns", c.netns as i64);
            r.container(c.container.as_ref(), &c.cgroup);
            r.exposure("portwatch.exposure", &c.exposure);
            r.exposure("portwatch.exposure.before", &c.before.exposure);
            let (severity, text) = match c.exposure {
                Exposure::Reachable { .. } => (SeverityNumber::Warn, "WARN"),
                _ => (SeverityNumber::Info, "INFO"),
            };
            let body = c.sentence();
            (EXPOSURE, c.ts, severity, text, body)
        }
        Line::EventsLost(l) => {
            r.int("portwatch.events.dropped", l.dropped as i64);
            r.int("portwatch.resync.opened", l.opened as i64);
            r.int("portwatch.resync.closed", l.closed as i64);
            let body = format!(
                "the kernel dropped events ({} since the start); a rescan found {} opened and {} closed",
                l.dropped, l.opened, l.closed
            );
            (EVENTS_LOST, l.ts, SeverityNumber::Warn, "WARN", body)
        }
        Line::UdpSummary(u) => {
            r.process(u.pid, &u.comm, None);
            r.str("network.transport", "udp");
            r.str("portwatch.port.class", u.class.as_str());
            r.int(
                "portwatch.udp.binds",
                i64::try_from(u.binds).unwrap_or(i64::MAX),
            );
            r.int(
                "portwatch.udp.reported",
                i64::try_from(u.reported).unwrap_or(i64::MAX),
            );
            r.int(
                "portwatch.interval_ms",
                i64::try_from(u.interval_ms).unwrap_or(i64::MAX),
            );
            let body = u.sentence();
            (UDP_SUMMARY, u.ts, SeverityNumber::Info, "INFO", body)
        }
        _ => return None,
    };
    r.str("event.name", name);
    Some(LogRecord {
        time_unix_nano: nanos(ts),
        observed_time_unix_nano: observed
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        severity_number: severity as i32,
        severity_text: text.to_string(),
        body: Some(string(body)),
        attributes: r.0,
        event_name: name.to_string(),
        ..LogRecord::default()
    })
}

/// Nanoseconds since the epoch; 0 (unknown, to OTLP) before it.
fn nanos(ts: DateTime<Utc>) -> u64 {
    ts.timestamp_nanos_opt()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

fn string(s: String) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s)),
    }
}

#[derive(Default)]
struct Attrs(Vec<KeyValue>);

impl Attrs {
    fn put(&mut self, key: &str, value: Value) {
        self.0.push(KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        });
    }

    fn str(&mut self, key: &str, value: &str) {
        self.put(key, Value::StringValue(value.to_string()));
    }

    fn int(&mut self, key: &str, value: i64) {
        self.put(key, Value::IntValue(value));
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.put(key, Value::BoolValue(value));
    }

    fn strs(&mut self, key: &str, values: &[String]) {
        let values = values.iter().map(|v| string(v.clone())).collect();
        self.put(key, Value::ArrayValue(ArrayValue { values }));
    }

    fn socket(&mut self, transport: &str, address: std::net::IpAddr, port: u16) {
        self.str("network.transport", transport);
        self.str(
            "network.type",
            if address.is_ipv4() { "ipv4" } else { "ipv6" },
        );
        self.str("network.local.address", &address.to_string());
        self.int("network.local.port", i64::from(port));
    }

    /// The owner: semconv's executable name is the base name of its
    /// executable, where it is known; its `comm` otherwise.
    fn process(&mut self, pid: u32, comm: &str, exe: Option<&str>) {
        if pid == 0 {
            return;
        }
        self.int("process.pid", i64::from(pid));
        let name = exe
            .and_then(|e| e.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .unwrap_or(comm);
        self.str("process.executable.name", name);
        self.str("portwatch.comm", comm);
        if let Some(exe) = exe {
            self.str("process.executable.path", exe);
        }
    }

    fn port(&mut self, p: &wire::Port) {
        self.socket(p.proto.as_str(), p.address, p.port);
        let ctx = p.context.as_deref();
        self.process(p.pid, &p.comm, ctx.and_then(|c| c.exe.as_deref()));
        self.context(ctx);
        self.int("process.user.id", i64::from(p.uid));
        self.int("portwatch.netns", p.netns as i64);
        self.str("portwatch.source", p.source.as_str());
        self.container(p.container.as_ref(), &p.cgroup);
        if let Some(e) = &p.exposure {
            self.exposure("portwatch.exposure", e);
        }
    }

    fn context(&mut self, ctx: Option<&OwnerContext>) {
        let Some(c) = ctx else {
            return;
        };
        if let Some(cmdline) = &c.cmdline {
            self.str("process.command_line", cmdline);
        }
        if let Some(parent) = c.ancestry.get(1) {
            self.int("process.parent_pid", i64::from(parent.pid));
        }
        self.str("portwatch.origin.kind", c.source.kind.as_str());
        self.str("portwatch.origin.name", &c.source.name);
        self.bool("portwatch.origin.trusted", c.source.trusted);
        if let Some(package) = &c.package {
            self.str("portwatch.package", package);
        }
    }

    /// A container's id and runtime; a pod's name and namespace where the
    /// kubelet named it (`namespace/name`); a service unit's name.
    fn container(&mut self, c: Option<&Container>, cgroup: &str) {
        if !cgroup.is_empty() {
            self.str("portwatch.cgroup", cgroup);
        }
        let Some(c) = c else {
            return;
        };
        if c.runtime == Runtime::Service {
            self.str("portwatch.unit", &c.id);
            return;
        }
        self.str("container.id", &c.id);
        self.str("container.runtime.name", c.runtime.as_str());
        // The kubelet's names are `namespace/pod`: no runtime's own name
        // holds a slash (a drift's listener carries no cgroup to tell).
        let kubelet = matches!(c.runtime, Runtime::Containerd | Runtime::Crio)
            && (cgroup.is_empty() || cgroup.contains("kubepods"));
        match c.name.as_deref().map(|n| (n, n.split_once('/'))) {
            Some((_, Some((namespace, pod)))) if kubelet => {
                self.str("k8s.namespace.name", namespace);
                self.str("k8s.pod.name", pod);
            }
            Some((name, _)) => self.str("container.name", name),
            None => {}
        }
    }

    fn exposure(&mut self, key: &str, e: &Exposure) {
        self.str(key, e.name());
        match e {
            Exposure::Reachable { reachable_via } => {
                self.strs(&format!("{key}.reachable_via"), reachable_via);
            }
            Exposure::Unknown { why } => self.str(&format!("{key}.why"), why),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
