use super::*;

#[test]
fn settings_are_checked_without_quoting_secrets() {
    let t = Duration::from_secs(1);
    let ok = OtlpConfig::new(
        "https://collector:4318/v1/logs",
        &[
            "Authorization=Bearer abc".into(),
            "X-Scope-OrgID = team".into(),
        ],
        t,
        8,
    )
    .unwrap();
    assert_eq!(ok.headers.len(), 2);
    assert!(ok.headers["authorization"].is_sensitive());
    for (url, headers, want) in [
        ("collector:4318", vec![], "is no http:// or https:// URL"),
        (
            "http://c/v1/logs",
            vec!["Bearer secret".to_string()],
            "--otlp-header #1 is no NAME=VALUE",
        ),
        (
            "http://c/v1/logs",
            vec!["Bad Name=secret".to_string()],
            "its name is no valid header name",
        ),
    ] {
        let e = OtlpConfig::new(url, &headers, t, 8)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
    assert!(OtlpConfig::new("http://c/", &[], Duration::ZERO, 8).is_err());
    assert!(OtlpConfig::new("http://c/", &[], t, 0).is_err());
}

#[test]
fn a_batch_is_one_gzipped_request_with_the_resource() {
    let port: Line = Line::parse(r#"{"event":"opened","proto":"tcp","address":"127.0.0.1","port":80,"pid":1,"comm":"x","uid":0,"netns":1,"cgroup":"/","container":null,"ts":"2026-12-01T10:00:00.123456Z","source":"ebpf"}"#).unwrap();
    let Line::Opened(p) = port else {
        unreachable!()
    };
    let ev = portwatch::PortEvent {
        change: portwatch::event::Change::Opened,
        listener: portwatch::event::Listener::new(p.proto, p.address, p.port),
        ts: p.ts,
        source: p.source,
    };
    let (body, n) = encode(
        resource(),
        vec![MonitorEvent::Port(ev.clone()), MonitorEvent::Port(ev)],
    );
    assert_eq!(n, 2);
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body.as_slice()), &mut raw)
        .unwrap();
    let req = ExportLogsServiceRequest::decode(raw.as_slice()).unwrap();
    let rl = &req.resource_logs[0];
    let keys: Vec<&str> = rl
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert!(
        keys.contains(&"service.name") && keys.contains(&"host.name"),
        "{keys:?}"
    );
    assert_eq!(rl.scope_logs[0].log_records.len(), 2);
}

#[test]
#[ignore = "a measurement, run by hand"]
fn encode_cost() {
    let port: Line = Line::parse(r#"{"event":"opened","proto":"tcp","address":"127.0.0.1","port":80,"pid":1,"comm":"x","uid":0,"netns":1,"cgroup":"/user.slice/user-0.slice/session-1.scope","container":null,"ts":"2026-12-01T10:00:00.123456Z","source":"ebpf"}"#).unwrap();
    let Line::Opened(p) = port else {
        unreachable!()
    };
    let mut l = portwatch::event::Listener::new(p.proto, p.address, p.port);
    l.comm = "python3".into();
    l.pid = 1234;
    l.cgroup = "/user.slice/user-0.slice/session-1.scope".into();
    l.context = Some(std::sync::Arc::new(portwatch::owner::OwnerContext {
        exe: Some("/usr/bin/python3.11".into()),
        cmdline: Some("python3 tests/helpers/storm.py 4 10000 1000000".into()),
        ..Default::default()
    }));
    let ev = portwatch::PortEvent {
        change: portwatch::event::Change::Opened,
        listener: l,
        ts: p.ts,
        source: p.source,
    };
    let events: Vec<MonitorEvent> = (0..512).map(|_| MonitorEvent::Port(ev.clone())).collect();
    let t = std::time::Instant::now();
    let observed = SystemTime::now();
    let lines: Vec<Line> = events.iter().filter_map(line_of).collect();
    let t_lines = t.elapsed();
    let recs: Vec<_> = lines
        .iter()
        .filter_map(|l| record::record(l, observed))
        .collect();
    let t_recs = t.elapsed();
    let raw = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                log_records: recs,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let t_enc = t.elapsed();
    let (body, _) = encode(resource(), events.clone());
    let t_all = t.elapsed();
    eprintln!(
        "lines {:?} records {:?} protobuf {:?} (raw {} bytes) whole encode {:?} (gz {} bytes)",
        t_lines,
        t_recs - t_lines,
        t_enc - t_recs,
        raw.len(),
        t_all - t_enc,
        body.len()
    );
}

#[test]
fn an_events_weight_grows_with_what_a_user_controls() {
    let mut l = portwatch::event::Listener::new(
        portwatch::event::Proto::Tcp,
        "127.0.0.1".parse().unwrap(),
        80,
    );
    let ev = |l: &portwatch::event::Listener| {
        MonitorEvent::Port(portwatch::PortEvent {
            change: portwatch::event::Change::Opened,
            listener: l.clone(),
            ts: chrono::Utc::now(),
            source: portwatch::event::Source::Ebpf,
        })
    };
    let small = weight(&ev(&l));
    l.cgroup = "/user.slice/".to_string() + &"x".repeat(16_000);
    assert!(weight(&ev(&l)) >= small + 16_000);
    // What the byte bound is for: 64 MiB hold the count bound's worth of
    // ordinary events.
    assert!(small * 65_536 <= MAX_BYTES, "{small}");
}
