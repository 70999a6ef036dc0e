//! The lines as OCSF records (`--format ocsf`), for SIEMs and data lakes:
//! a listener opened or closed (TCP, or a UDP port bound or released) is
//! a Network Activity record (class 4001, activity 7 Listen or 2 Close,
//! the transport in `connection_info`); an exposure change is one too
//! (activity 99 Other). An alert, and a drift from the policy, is a
//! Detection Finding (class 2004: Create, or Close when a drift ends).
//! OCSF 1.8.0; `tests/fixtures/ocsf/` holds the schema's requirements a
//! test checks every record against. Text was made safe by the line's
//! writer and goes out as it is.

use serde_json::{Map, Value, json};

use super::{Alert, Drift, DriftListener, ExposureChanged, Line, Port};
use crate::{
    container::{Container, Runtime},
    event::Proto,
    policy::drift::DriftKind,
    rules::model::Severity,
};

/// The OCSF version the records follow.
pub const OCSF_VERSION: &str = "1.8.0";

/// The host the records are about (`device`), as the caller read it.
#[derive(Clone, Debug, Default)]
pub struct OcsfHost {
    pub hostname: String,
    /// `/etc/machine-id`, when there is one.
    pub uid: Option<String>,
}

/// The record of `line`; None for a line OCSF has no class for (a
/// notice, `ready`, a client's own lines).
pub fn record(line: &Line, host: &OcsfHost) -> Option<Value> {
    match line {
        Line::Opened(p) => Some(port(p, 7, "Listen", host)),
        Line::Closed(p) => Some(port(p, 2, "Close", host)),
        Line::ExposureChanged(c) => Some(exposure(c, host)),
        Line::Alert(a) => Some(alert(a, host)),
        Line::Drift(d) => Some(drift(d, host)),
        _ => None,
    }
}

/// Milliseconds since the epoch, as OCSF's `timestamp_t`.
fn time(ts: &chrono::DateTime<chrono::Utc>) -> i64 {
    ts.timestamp_millis()
}

fn metadata(container: bool) -> Value {
    let mut profiles = vec!["host"];
    if container {
        profiles.push("container");
    }
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "portwatch",
            "vendor_name": "portwatch",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "profiles": profiles,
    })
}

fn device(host: &OcsfHost) -> Value {
    let mut d = json!({ "hostname": host.hostname, "type_id": 0, "type": "Unknown" });
    if let Some(uid) = &host.uid {
        d["uid"] = json!(uid);
    }
    d
}

fn proto_num(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// The listener's transport: a listener has no direction of its own.
fn connection_info(proto: Proto, address: std::net::IpAddr) -> Value {
    json!({
        "protocol_name": proto.as_str(),
        "protocol_num": proto_num(proto),
        "protocol_ver_id": if address.is_ipv4() { 4 } else { 6 },
        "direction_id": 0,
        "direction": "Unknown",
    })
}

/// OCSF's container: a service unit is none.
fn container(c: Option<&Container>) -> Option<Value> {
    let c = c.filter(|c| c.runtime != Runtime::Service)?;
    let mut v = json!({ "uid": c.id, "runtime": c.runtime.as_str() });
    if let Some(name) = &c.name {
        v["name"] = json!(name);
    }
    Some(v)
}

/// The owner, as OCSF's process.
fn process(
    pid: u32,
    comm: &str,
    uid: Option<u32>,
    exe: Option<&str>,
    cmdline: Option<&str>,
    c: Option<&Value>,
) -> Value {
    let mut p = json!({ "pid": pid, "name": comm });
    if let Some(uid) = uid {
        p["user"] = json!({ "uid": uid.to_string() });
    }
    if let Some(exe) = exe {
        let name = exe.rsplit('/').next().unwrap_or(exe);
        p["file"] = json!({ "path": exe, "name": name, "type_id": 1, "type": "Regular File" });
    }
    if let Some(cmdline) = cmdline {
        p["cmd_line"] = json!(cmdline);
    }
    if let Some(c) = c {
        p["container"] = c.clone();
    }
    p
}

/// What says which record it is: class, activity, severity.
struct Head<'a> {
    class_uid: u32,
    class_name: &'a str,
    activity_id: u32,
    activity_name: &'a str,
    severity_id: u32,
}

/// The attributes every record has.
fn class(
    head: Head<'_>,
    ts: &chrono::DateTime<chrono::Utc>,
    message: String,
    has_container: bool,
) -> Map<String, Value> {
    let Head {
        class_uid,
        class_name,
        activity_id,
        activity_name,
        severity_id,
    } = head;
    let (category_uid, category_name) = if class_uid == 4001 {
        (4, "Network Activity")
    } else {
        (2, "Findings")
    };
    let severity = match severity_id {
        1 => "Informational",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        _ => "Unknown",
    };
    let mut m = Map::new();
    for (k, v) in [
        ("class_uid", json!(class_uid)),
        ("class_name", json!(class_name)),
        ("category_uid", json!(category_uid)),
        ("category_name", json!(category_name)),
        ("activity_id", json!(activity_id)),
        ("activity_name", json!(activity_name)),
        ("type_uid", json!(class_uid * 100 + activity_id)),
        ("type_name", json!(format!("{class_name}: {activity_name}"))),
        ("severity_id", json!(severity_id)),
        ("severity", json!(severity)),
        ("time", json!(time(ts))),
        ("message", json!(message)),
        ("metadata", metadata(has_container)),
    ] {
        m.insert(k.into(), v);
    }
    m
}

/// A Network Activity record of a listener: the class, the listener as
/// `dst_endpoint` with its transport, its owner as `actor.process`, and
/// the host as `device`.
fn network_activity(
    (activity_id, activity_name): (u32, &str),
    ts: &chrono::DateTime<chrono::Utc>,
    message: String,
    (proto, address, port): (Proto, std::net::IpAddr, u16),
    owner: Value,
    has_container: bool,
    host: &OcsfHost,
) -> Map<String, Value> {
    let mut m = class(
        Head {
            class_uid: 4001,
            class_name: "Network Activity",
            activity_id,
            activity_name,
            severity_id: 1,
        },
        ts,
        message,
        has_container,
    );
    m.insert("dst_endpoint".into(), dst_endpoint(address, port));
    m.insert("connection_info".into(), connection_info(proto, address));
    m.insert("actor".into(), json!({ "process": owner }));
    m.insert("device".into(), device(host));
    m
}

fn dst_endpoint(address: std::net::IpAddr, port: u16) -> Value {
    json!({ "ip": address, "port": port })
}

fn port(p: &Port, activity_id: u32, activity: &str, host: &OcsfHost) -> Value {
    let c = container(p.container.as_ref());
    let ctx = p.context.as_ref();
    let message = format!(
        "{} {} {}:{} ({}, pid {})",
        if activity_id == 7 {
            "listening on"
        } else {
            "closed"
        },
        p.proto.as_str(),
        p.address,
        p.port,
        p.comm,
        p.pid
    );
    let owner = process(
        p.pid,
        &p.comm,
        Some(p.uid),
        ctx.and_then(|c| c.exe.as_deref()),
        ctx.and_then(|c| c.cmdline.as_deref()),
        c.as_ref(),
    );
    let mut m = network_activity(
        (activity_id, activity),
        &p.ts,
        message,
        (p.proto, p.address, p.port),
        owner,
        c.is_some(),
        host,
    );
    let mut extra = json!({ "netns": p.netns, "source": p.source.as_str(), "cgroup": p.cgroup });
    if let Some(e) = &p.exposure {
        extra["exposure"] = json!(e.name());
    }
    m.insert("unmapped".into(), json!({ "portwatch": extra }));
    Value::Object(m)
}

fn exposure(x: &ExposureChanged, host: &OcsfHost) -> Value {
    let c = container(x.container.as_ref());
    let message = x.sentence();
    let owner = process(x.pid, &x.comm, Some(x.uid), None, None, c.as_ref());
    let mut m = network_activity(
        (99, "Other"),
        &x.ts,
        message,
        (x.proto, x.address, x.port),
        owner,
        c.is_some(),
        host,
    );
    m.insert(
        "unmapped".into(),
        json!({ "portwatch": {
            "netns": x.netns,
            "exposure": x.exposure.name(),
            "exposure_before": x.before.exposure.name(),
        } }),
    );
    Value::Object(m)
}

/// What a finding was about: its listener, where it has one.
fn evidence(proto: Proto, address: std::net::IpAddr, port: u16, process: Value) -> Value {
    json!([{
        "dst_endpoint": dst_endpoint(address, port),
        "connection_info": connection_info(proto, address),
        "process": process,
    }])
}

fn alert(a: &Alert, host: &OcsfHost) -> Value {
    let severity_id = match a.severity {
        Severity::Info => 1,
        Severity::Warning => 3,
        Severity::Critical => 5,
    };
    let mut m = class(
        Head {
            class_uid: 2004,
            class_name: "Detection Finding",
            activity_id: 1,
            activity_name: "Create",
            severity_id,
        },
        &a.ts,
        a.message.clone(),
        false,
    );
    let where_ = match (a.proto, a.address, a.port) {
        (Some(p), Some(ad), Some(po)) => format!(":{}:{ad}:{po}", p.as_str()),
        _ => String::new(),
    };
    m.insert(
        "finding_info".into(),
        json!({
            "uid": format!("portwatch:alert:{}:{}{where_}:{}", a.rule_id, a.pid, time(&a.ts)),
            "title": a.rule_name,
            "types": [a.condition],
            "analytic": { "uid": a.rule_id, "name": a.rule_name, "type_id": 1, "type": "Rule" },
        }),
    );
    m.insert("is_alert".into(), json!(true));
    m.insert("status_id".into(), json!(1));
    m.insert("status".into(), json!("New"));
    m.insert("device".into(), device(host));
    let proc_ = process(a.pid, &a.comm, None, None, None, None);
    if let (Some(p), Some(ad), Some(po)) = (a.proto, a.address, a.port) {
        m.insert("evidences".into(), evidence(p, ad, po, proc_));
    } else if a.pid != 0 {
        m.insert("evidences".into(), json!([{ "process": proc_ }]));
    }
    Value::Object(m)
}

fn drift(d: &Drift, host: &OcsfHost) -> Value {
    let (activity_id, activity, severity_id, status_id, status) = match d.drift {
        DriftKind::Unexpected | DriftKind::Missing => (1, "Create", 3, 1, "New"),
        DriftKind::Expected => (3, "Close", 1, 4, "Resolved"),
    };
    let message = d.sentence();
    let mut m = class(
        Head {
            class_uid: 2004,
            class_name: "Detection Finding",
            activity_id,
            activity_name: activity,
            severity_id,
        },
        &d.ts,
        message,
        false,
    );
    // One finding per entry, or per unexpected listener and owner: its
    // Create and its Close carry the same uid. An entry is named by its
    // name, or else by a digest of what it says.
    let subject = match (&d.entry, &d.listener) {
        (Some(e), _) => match &e.name {
            Some(name) => format!("entry:{name}"),
            None => {
                use sha2::Digest as _;
                let text = serde_json::to_string(e).unwrap_or_default();
                let digest = sha2::Sha256::digest(text.as_bytes());
                let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
                format!("entry:{hex}")
            }
        },
        (None, Some(l)) => format!(
            "{}:{}:{}:{}:{}",
            l.proto.as_str(),
            l.netns,
            l.address,
            l.port,
            l.pid
        ),
        (None, None) => "policy".into(),
    };
    let title = match d.drift {
        DriftKind::Unexpected => "A listener the policy does not expect",
        DriftKind::Missing => "A listener the policy expects is missing",
        DriftKind::Expected => "Back to what the policy expects",
    };
    let mut info = json!({
        "uid": format!("portwatch:drift:{subject}"),
        "title": title,
        "types": [format!("drift:{}", d.drift.as_str())],
        "analytic": { "name": "expected listeners policy", "type_id": 1, "type": "Rule" },
    });
    if !d.tags.is_empty() {
        info["tags"] = Value::Array(
            d.tags
                .iter()
                .map(|t| json!({ "name": "tag", "value": t }))
                .collect(),
        );
    }
    m.insert("finding_info".into(), info);
    m.insert("status_id".into(), json!(status_id));
    m.insert("status".into(), json!(status));
    m.insert("device".into(), device(host));
    if let Some(l) = &d.listener {
        m.insert(
            "evidences".into(),
            evidence(l.proto, l.address, l.port, listener_process(l)),
        );
    }
    Value::Object(m)
}

fn listener_process(l: &DriftListener) -> Value {
    process(l.pid, &l.comm, Some(l.uid), l.exe.as_deref(), None, None)
}

#[cfg(test)]
#[path = "ocsf_tests.rs"]
mod tests;
