use super::*;

fn line(json: &str) -> Line {
    Line::parse(json).unwrap()
}

fn attrs(r: &LogRecord) -> std::collections::BTreeMap<String, Value> {
    r.attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.clone().and_then(|v| v.value).unwrap(),
            )
        })
        .collect()
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

const POD: &str = r#"{"event":"opened","proto":"tcp","address":"::1","port":8080,"pid":4242,"comm":"node\\x1b","uid":1000,"netns":4026531840,"cgroup":"/kubepods.slice/kubepods-pod0f1e.slice/cri-containerd-ab.scope","container":{"runtime":"containerd","id":"ab","name":"shop/web-7f9"},"context":{"ancestry":[{"pid":4242,"comm":"node"},{"pid":1,"comm":"systemd"}],"source":{"kind":"container","name":"containerd:web","trusted":true},"exe":"/usr/bin/node","cmdline":"node server.js --port 8080","package":null},"exposure":"reachable","reachable_via":["eth0"],"ts":"2026-12-01T10:00:00.123456Z","source":"ebpf"}"#;

#[test]
fn an_open_carries_semconv_attributes_and_the_events_time() {
    let r = record(&line(POD), UNIX_EPOCH).unwrap();
    assert_eq!(r.event_name, OPEN);
    assert_eq!(r.time_unix_nano, 1_796_119_200_123_456_000);
    assert_eq!(r.severity_number, SeverityNumber::Info as i32);
    let a = attrs(&r);
    for (k, v) in [
        ("event.name", s(OPEN)),
        ("network.transport", s("tcp")),
        ("network.type", s("ipv6")),
        ("network.local.address", s("::1")),
        ("network.local.port", Value::IntValue(8080)),
        ("process.pid", Value::IntValue(4242)),
        ("process.parent_pid", Value::IntValue(1)),
        ("process.executable.name", s("node")),
        ("process.executable.path", s("/usr/bin/node")),
        ("process.command_line", s("node server.js --port 8080")),
        // Made safe once, by the line's writer: passed on as it is.
        ("portwatch.comm", s("node\\x1b")),
        ("process.user.id", Value::IntValue(1000)),
        ("container.id", s("ab")),
        ("container.runtime.name", s("containerd")),
        ("k8s.namespace.name", s("shop")),
        ("k8s.pod.name", s("web-7f9")),
        ("portwatch.netns", Value::IntValue(4026531840)),
        ("portwatch.source", s("ebpf")),
        ("portwatch.exposure", s("reachable")),
        ("portwatch.origin.kind", s("container")),
        ("portwatch.origin.trusted", Value::BoolValue(true)),
    ] {
        assert_eq!(a.get(k), Some(&v), "{k}");
    }
    assert!(!a.contains_key("container.name"));
}

#[test]
fn alerts_take_the_rules_severity_and_other_lines_are_not_exported() {
    for (severity, number) in [
        ("Info", SeverityNumber::Info),
        ("Warning", SeverityNumber::Warn),
        ("Critical", SeverityNumber::Error),
    ] {
        let json = format!(
            r#"{{"event":"alert","rule_id":"r1","rule_name":"R","severity":"{severity}","condition":"PortOpened","message":"port 22 opened","pid":7,"comm":"sshd","address":"0.0.0.0","port":22,"proto":"tcp","ts":"2026-12-01T10:00:00.123456Z"}}"#
        );
        let r = record(&line(&json), UNIX_EPOCH).unwrap();
        assert_eq!(
            (r.event_name.as_str(), r.severity_number),
            (ALERT, number as i32)
        );
        assert_eq!(r.severity_text, severity);
        assert_eq!(r.body, Some(string("port 22 opened".into())));
    }
    let ready =
        r#"{"event":"ready","backend":"ebpf","listeners":12,"ts":"2026-12-01T10:00:00.123456Z"}"#;
    assert!(record(&line(ready), UNIX_EPOCH).is_none());
}

#[test]
fn a_service_unit_is_no_container() {
    let json = POD
        .replace(
            r#""runtime":"containerd","id":"ab","name":"shop/web-7f9""#,
            r#""runtime":"service","id":"nginx.service""#,
        )
        .replace(
            "/kubepods.slice/kubepods-pod0f1e.slice/cri-containerd-ab.scope",
            "/system.slice/nginx.service",
        );
    let a = attrs(&record(&line(&json), UNIX_EPOCH).unwrap());
    assert_eq!(a.get("portwatch.unit"), Some(&s("nginx.service")));
    assert!(!a.contains_key("container.id") && !a.contains_key("k8s.pod.name"));
}
