//! The monitor on a scripted OS, under paused tokio time.

use std::{fs, time::Duration};

use portwatch_common::SockEventKind::{Closed, Opened};

use super::*;
use crate::{
    event::{Change, Proto, Source},
    report::ResyncReason,
    rules::validate::load_bytes,
    sys::{
        ProcessUsage,
        fake::{FakeOs, kernel_event as ev, scanned},
    },
};

fn rules_file(rules: &[&str]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, condition)| {
            format!(
                r#"{{"id":"r{i}","name":"rule {i}","condition":{condition},"enabled":true,"severity":"Warning","cooldown_seconds":1}}"#
            )
        })
        .collect();
    format!(r#"{{"rules":[{}]}}"#, rules.join(","))
}

/// A rules file in a fresh directory, compiled.
fn rules_source(tag: &str, rules: &[&str]) -> (RulesSource, PathBuf) {
    let dir = std::env::temp_dir().join(format!("portwatch-monitor-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alerts.json");
    let text = rules_file(rules);
    fs::write(&path, &text).unwrap();
    let rules = load_bytes(text.as_bytes(), &path).unwrap();
    (RulesSource { path, rules }, dir)
}

fn config(rules: Option<RulesSource>) -> MonitorConfig {
    MonitorConfig {
        engine: EngineConfig {
            resync_interval: None,
            ..EngineConfig::default()
        },
        rules,
        sample_interval: Duration::from_secs(1),
        settle: None,
        exposure: true,
        context: true,
        policy: None,
    }
}

async fn next(m: &mut Monitor) -> MonitorEvent {
    tokio::time::timeout(Duration::from_secs(3600), m.next())
        .await
        .expect("an event")
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_baseline_comes_first_then_ready_then_live_events() {
    let os = FakeOs::new();
    os.world().listeners = vec![scanned(Proto::Tcp, "0.0.0.0", 22, 1)];
    let mut m = Monitor::start_with(config(None), os.os()).unwrap();
    match next(&mut m).await {
        MonitorEvent::Port(e) => assert_eq!((e.listener.port, e.source), (22, Source::Baseline)),
        other => panic!("{other:?}"),
    }
    match next(&mut m).await {
        MonitorEvent::Ready(r) => assert_eq!((r.backend.as_str(), r.listeners), ("ebpf", 1)),
        other => panic!("{other:?}"),
    }
    let t = os.world().boot_ns;
    os.world()
        .listeners
        .push(scanned(Proto::Tcp, "127.0.0.1", 8080, 5));
    os.emit([ev(Opened, t, 0x1, "127.0.0.1", 8080, 5)]);
    match next(&mut m).await {
        MonitorEvent::Port(e) => {
            assert_eq!((e.change, e.listener.port), (Change::Opened, 8080));
            assert!(e.listener.opened_at.is_some(), "a live open has its time");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.listeners().count(), 2);
    m.resync_now();
    match next(&mut m).await {
        MonitorEvent::Resync(s) => {
            assert_eq!(
                (s.reason, s.opened, s.closed),
                (ResyncReason::Requested, 0, 0)
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Writers flush when `run_until` says nothing more is queued: the last
/// event of every burst must say so, or its line would sit in a buffer.
#[tokio::test(start_paused = true)]
async fn run_until_marks_the_last_event_of_each_burst() {
    let os = FakeOs::new();
    os.world().listeners = vec![
        scanned(Proto::Tcp, "0.0.0.0", 22, 1),
        scanned(Proto::Udp, "0.0.0.0", 53, 2),
    ];
    let mut m = Monitor::start_with(config(None), os.os()).unwrap();
    let t = os.world().boot_ns;
    os.emit([
        ev(Opened, t, 0x1, "127.0.0.1", 8080, 5),
        ev(Opened, t, 0x2, "127.0.0.1", 8081, 5),
        ev(Closed, t, 0x1, "127.0.0.1", 8080, 5),
    ]);
    let mut seen = Vec::new();
    m.run_until(std::future::pending(), |ev, more_queued| {
        let what = match &ev {
            MonitorEvent::Port(e) => e.listener.port.to_string(),
            MonitorEvent::Ready(_) => "ready".to_string(),
            other => format!("{other:?}"),
        };
        seen.push((what, more_queued));
        Ok::<_, Error>(if seen.len() == 6 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })
    .await
    .unwrap();
    let seen: Vec<(&str, bool)> = seen.iter().map(|(w, m)| (w.as_str(), *m)).collect();
    assert_eq!(
        seen,
        [
            ("22", true),
            ("53", true),
            ("ready", false),
            ("8080", true),
            ("8081", true),
            ("8080", false),
        ]
    );
}

/// With a settle time, a probe that opens and closes at once is never
/// reported, nor seen by the rules; a listener that stays is, once it
/// has lived the settle time.
#[tokio::test(start_paused = true)]
async fn a_settle_time_hides_probes_and_delays_real_opens() {
    let os = FakeOs::new();
    let (rules, dir) = rules_source(
        "settle",
        &[r#"{"type":"PortOpened","params":{"port":5173}}"#],
    );
    let mut m = Monitor::start_with(
        MonitorConfig {
            settle: Some(Duration::from_millis(50)),
            ..config(Some(rules))
        },
        os.os(),
    )
    .unwrap();
    assert!(matches!(next(&mut m).await, MonitorEvent::Ready(_)));
    let t = os.world().boot_ns;
    os.world()
        .listeners
        .push(scanned(Proto::Tcp, "127.0.0.1", 5173, 5));
    os.emit([
        ev(Opened, t, 0x1, "0.0.0.0", 5173, 5),
        ev(Closed, t, 0x1, "0.0.0.0", 5173, 5),
        ev(Opened, t, 0x2, "127.0.0.1", 5173, 5),
    ]);
    let start = tokio::time::Instant::now();
    match next(&mut m).await {
        MonitorEvent::Port(e) => {
            assert_eq!(
                (e.change, e.listener.address.to_string().as_str()),
                (Change::Opened, "127.0.0.1")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(50));
    match next(&mut m).await {
        MonitorEvent::Alert(a) => {
            assert_eq!(a.address.map(|a| a.to_string()), Some("127.0.0.1".into()))
        }
        other => panic!("{other:?}"),
    }
    let _ = fs::remove_dir_all(dir);
}

#[tokio::test(start_paused = true)]
async fn alerts_follow_the_event_that_fired_them() {
    let os = FakeOs::new();
    os.world().listeners = vec![scanned(Proto::Tcp, "0.0.0.0", 22, 1)];
    let (source, dir) = rules_source(
        "alerts",
        &[
            r#"{"type":"PortOpened","params":{"port":8080}}"#,
            r#"{"type":"UnknownProcessListening","params":null}"#,
        ],
    );
    let mut m = Monitor::start_with(config(Some(source)), os.os()).unwrap();
    assert!(matches!(next(&mut m).await, MonitorEvent::Port(_)));
    assert!(matches!(next(&mut m).await, MonitorEvent::Ready(_)));
    assert!(!os.world().connections, "no rule needs connections");
    let t = os.world().boot_ns;
    // p1 listened at start: known. p5 is not.
    os.emit([
        ev(Opened, t, 0x1, "127.0.0.1", 8080, 5),
        ev(Closed, t + 1, 0x1, "127.0.0.1", 8080, 5),
    ]);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(match next(&mut m).await {
            MonitorEvent::Port(e) => format!("{} {}", e.change.as_str(), e.listener.port),
            MonitorEvent::Alert(a) => format!("alert {}", a.rule_id),
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(got, ["opened 8080", "alert r0", "alert r1", "closed 8080"]);
    fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn connection_rules_turn_the_connection_program_on() {
    let os = FakeOs::new();
    let (source, dir) = rules_source(
        "conn",
        &[r#"{"type":"ExternalConnection","params":{"ip_pattern":".*","exclude_private":false}}"#],
    );
    let _m = Monitor::start_with(config(Some(source.clone())), os.os()).unwrap();
    assert!(os.world().connections);

    // Without eBPF they cannot fire, and the user is told.
    let os = FakeOs::new();
    os.world().attach_fails = true;
    let mut m = Monitor::start_with(config(Some(source)), os.os()).unwrap();
    match next(&mut m).await {
        MonitorEvent::Notice(n) => {
            assert_eq!(n.kind, NoticeKind::Warning);
            assert!(n.message.contains("ExternalConnection"), "{}", n.message);
        }
        other => panic!("{other:?}"),
    }
    fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn resource_rules_sample_the_listening_processes() {
    let os = FakeOs::new();
    os.world().listeners = vec![scanned(Proto::Tcp, "0.0.0.0", 22, 7)];
    os.world().usage.insert(
        7,
        ProcessUsage {
            cpu_ticks: 0,
            rss_bytes: 200 << 20,
        },
    );
    let (source, dir) = rules_source(
        "samples",
        &[
            r#"{"type":"ProcessMemoryThreshold","params":{"process_pattern":"^p7$","threshold_mb":100}}"#,
            r#"{"type":"ProcessCpuThreshold","params":{"process_pattern":".*","threshold_percent":50.0}}"#,
        ],
    );
    let mut m = Monitor::start_with(config(Some(source)), os.os()).unwrap();
    assert!(matches!(next(&mut m).await, MonitorEvent::Port(_)));
    assert!(matches!(next(&mut m).await, MonitorEvent::Ready(_)));
    // The first sample: memory over its threshold, no CPU interval yet.
    match next(&mut m).await {
        MonitorEvent::Alert(a) => assert_eq!((a.rule_id.as_str(), a.pid), ("r0", 7)),
        other => panic!("{other:?}"),
    }
    // 80 ticks (0.8 s of CPU) during the next second: 80%.
    os.world().usage.insert(
        7,
        ProcessUsage {
            cpu_ticks: 80,
            rss_bytes: 1 << 20,
        },
    );
    let before = tokio::time::Instant::now();
    match next(&mut m).await {
        MonitorEvent::Alert(a) => {
            assert_eq!(a.rule_id, "r1");
            assert!(a.message.contains("80.0% CPU"), "{}", a.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(tokio::time::Instant::now() - before, Duration::from_secs(1));
    fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_changed_rules_file_is_reloaded_and_a_broken_one_is_not() {
    let os = FakeOs::new();
    let (source, dir) = rules_source("reload", &[r#"{"type":"PortOpened","params":{"port":1}}"#]);
    let path = source.path.clone();
    let mut m = Monitor::start_with(config(Some(source)), os.os()).unwrap();
    assert!(matches!(next(&mut m).await, MonitorEvent::Ready(_)));
    fs::write(&path, "{\"rules\": [").unwrap();
    match next(&mut m).await {
        MonitorEvent::Notice(n) => {
            assert_eq!(n.kind, NoticeKind::RulesError);
            assert!(
                n.message.ends_with("the previous rules stay in force"),
                "{}",
                n.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.rules().map(|r| r.file.rules.len()), Some(1));
    let two = rules_file(&[
        r#"{"type":"PortOpened","params":{"port":1}}"#,
        r#"{"type":"PortClosed","params":{"port":1}}"#,
    ]);
    fs::write(&path, two).unwrap();
    match next(&mut m).await {
        MonitorEvent::Notice(n) => {
            assert_eq!(n.kind, NoticeKind::RulesReloaded);
            assert!(n.message.starts_with("reloaded 2 rules"), "{}", n.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.rules().map(|r| r.file.rules.len()), Some(2));
    fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn drifts_follow_the_baseline_live_events_and_a_new_policy() {
    let os = FakeOs::new();
    os.world().listeners = vec![
        scanned(Proto::Tcp, "0.0.0.0", 22, 1),
        scanned(Proto::Tcp, "0.0.0.0", 4444, 1),
    ];
    let dir = std::env::temp_dir().join(format!("portwatch-drift-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.json");
    let text = r#"{"version":1,"tags":["T"],"expected":[{"port":22},{"port":80}]}"#;
    fs::write(&path, text).unwrap();
    let policy = crate::policy::Policy::parse(text.as_bytes()).unwrap();
    let mut m = Monitor::start_with(
        MonitorConfig {
            policy: Some(PolicySource {
                path: path.clone(),
                policy,
            }),
            ..config(None)
        },
        os.os(),
    )
    .unwrap();
    let drifts = |ev: MonitorEvent| match ev {
        MonitorEvent::Drift(d) => Some(format!(
            "{} {}",
            d.kind.as_str(),
            d.listener.map_or_else(
                || format!("{:?}", d.entry.and_then(|e| e.port)),
                |l| l.port.to_string()
            )
        )),
        _ => None,
    };
    let mut got = Vec::new();
    loop {
        let ev = next(&mut m).await;
        let ready = matches!(ev, MonitorEvent::Ready(_));
        got.extend(drifts(ev));
        if ready {
            assert!(got.is_empty(), "drifts come after ready: {got:?}");
        }
        if got.len() == 2 {
            break;
        }
    }
    assert_eq!(got, ["unexpected 4444", "missing Some(One(80))"]);
    let t = os.world().boot_ns;
    os.emit([ev(Opened, t, 0x1, "0.0.0.0", 80, 5)]);
    assert!(matches!(next(&mut m).await, MonitorEvent::Port(_)));
    assert_eq!(drifts(next(&mut m).await).as_deref(), Some("expected 80"));
    fs::write(&path, r#"{"version":1,"expected":[{"port":"1-65535"}]}"#).unwrap();
    assert!(matches!(
        next(&mut m).await,
        MonitorEvent::Notice(Notice {
            kind: NoticeKind::PolicyReloaded,
            ..
        })
    ));
    assert_eq!(drifts(next(&mut m).await).as_deref(), Some("expected 4444"));
    assert_eq!(m.drifts().map(|d| d.counts()), Some((0, 0)));
    fs::write(&path, "{").unwrap();
    match next(&mut m).await {
        MonitorEvent::Notice(n) => {
            assert_eq!(n.kind, NoticeKind::PolicyError);
            assert!(
                n.message.ends_with("the previous policy stays in force"),
                "{}",
                n.message
            );
        }
        other => panic!("{other:?}"),
    }
    fs::remove_dir_all(dir).unwrap();
}

fn eth0_facts(chains: Vec<crate::exposure::Chain>) -> crate::exposure::NetnsFacts {
    crate::exposure::NetnsFacts {
        interfaces: vec![crate::exposure::Interface {
            name: "eth0".into(),
            loopback: false,
            up: true,
            addresses: vec!["192.0.2.10".parse().unwrap()],
        }],
        chains,
        ..Default::default()
    }
}

fn drop_all() -> Vec<crate::exposure::Chain> {
    vec![crate::exposure::Chain {
        name: "inet filter input".into(),
        hook: Some(crate::exposure::Hook::Input),
        priority: 0,
        policy: crate::exposure::Verdict::Drop,
        family: None,
        rules: Vec::new(),
    }]
}

/// The baseline and live opens carry their exposure; a rule change in
/// their namespace re-judges them, and only those whose judgement
/// changed are reported, with the judgement before.
#[tokio::test(start_paused = true)]
async fn exposure_is_judged_on_open_and_a_change_of_facts_is_an_event() {
    let os = FakeOs::new();
    os.world()
        .netns_facts
        .insert(crate::sys::fake::NETNS, eth0_facts(Vec::new()));
    os.world().listeners = vec![
        scanned(Proto::Tcp, "0.0.0.0", 22, 1),
        scanned(Proto::Tcp, "127.0.0.1", 5432, 2),
    ];
    let mut m = Monitor::start_with(config(None), os.os()).unwrap();
    let reachable = Exposure::Reachable {
        reachable_via: vec!["eth0".into()],
    };
    for _ in 0..2 {
        let MonitorEvent::Port(e) = next(&mut m).await else {
            panic!("the baseline first")
        };
        let want = if e.listener.port == 22 {
            reachable.clone()
        } else {
            Exposure::Loopback
        };
        assert_eq!(e.listener.exposure, Some(want), "{e:?}");
    }
    assert!(matches!(next(&mut m).await, MonitorEvent::Ready(_)));
    let t = os.world().boot_ns;
    os.world()
        .listeners
        .push(scanned(Proto::Udp, "0.0.0.0", 53, 5));
    os.emit([ev(Opened, t, 0x1, "0.0.0.0", 53, 5)]);
    let MonitorEvent::Port(e) = next(&mut m).await else {
        panic!("the open")
    };
    assert_eq!(e.listener.exposure, Some(reachable.clone()));

    // A drop-everything input chain: the two wildcard listeners change,
    // the loopback one does not.
    os.change_facts(crate::sys::fake::NETNS, eth0_facts(drop_all()));
    let mut changed = Vec::new();
    for _ in 0..2 {
        match next(&mut m).await {
            MonitorEvent::ExposureChanged(c) => {
                assert_eq!(c.before, reachable);
                assert_eq!(c.listener.exposure, Some(Exposure::Filtered));
                changed.push(c.listener.port);
            }
            other => panic!("{other:?}"),
        }
    }
    changed.sort_unstable();
    assert_eq!(changed, [22, 53]);
    assert!(!m.has_queued(), "the loopback listener did not change");
    // The close carries the last judgement.
    os.emit([ev(Closed, t, 0x1, "0.0.0.0", 53, 5)]);
    let MonitorEvent::Port(e) = next(&mut m).await else {
        panic!("the close")
    };
    assert_eq!(e.listener.exposure, Some(Exposure::Filtered));
}

/// The owner's context: told for the baseline and for a live open, read
/// once per process, and carried by a close after the process is gone.
#[tokio::test(start_paused = true)]
async fn listeners_carry_their_owners_context_to_the_close() {
    use crate::owner::{Ancestor, Forebear, OriginKind, OwnerFacts};
    let story = |pid: u32, parent: &str| OwnerFacts {
        start_time: 7,
        ancestry: vec![
            Forebear {
                ancestor: Ancestor {
                    pid,
                    comm: "srv".into(),
                },
                cgroup: "/x".into(),
                root: false,
            },
            Forebear {
                ancestor: Ancestor {
                    pid: 1,
                    comm: parent.into(),
                },
                cgroup: "/".into(),
                root: true,
            },
        ],
        ..OwnerFacts::default()
    };
    let os = FakeOs::new();
    os.world().listeners = vec![scanned(Proto::Tcp, "0.0.0.0", 22, 1)];
    os.world().owners.insert(1, story(1, "init"));
    os.world().owners.insert(5, story(5, "cron"));
    let mut m = Monitor::start_with(config(None), os.os()).unwrap();
    match next(&mut m).await {
        MonitorEvent::Port(e) => {
            let ctx = e.listener.context.expect("the baseline is told");
            assert_eq!(ctx.source.kind, OriginKind::Init);
        }
        other => panic!("{other:?}"),
    }
    let _ready = next(&mut m).await;
    let t = os.world().boot_ns;
    os.world()
        .listeners
        .push(scanned(Proto::Tcp, "127.0.0.1", 8080, 5));
    os.emit([ev(Opened, t, 0x1, "127.0.0.1", 8080, 5)]);
    let MonitorEvent::Port(opened) = next(&mut m).await else {
        panic!("no open")
    };
    let ctx = opened
        .listener
        .context
        .clone()
        .expect("a live open is told");
    assert_eq!(ctx.source.key(), "cron:cron");
    assert_eq!(m.context_of(&opened.listener), Some(&ctx));
    // The process exits; its close still tells its story.
    os.world().owners.remove(&5);
    os.world().listeners.retain(|l| l.port != 8080);
    os.emit([ev(Closed, t, 0x1, "127.0.0.1", 8080, 5)]);
    let MonitorEvent::Port(closed) = next(&mut m).await else {
        panic!("no close")
    };
    assert_eq!(closed.change, Change::Closed);
    assert_eq!(closed.listener.context, Some(ctx));
    assert_eq!(os.world().owner_reads, 2);
}
