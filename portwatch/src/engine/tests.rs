//! The engine on a scripted OS ([`crate::sys::fake`]), under paused tokio
//! time: no root, no kernel, deterministic timers.

use std::time::Duration;

use portwatch_common::SockEventKind::{Closed, Opened};
use tokio::time::Instant;

use super::*;
use crate::{
    event::Proto,
    report::ResyncReason,
    sys::fake::{FakeOs, kernel_event as ev, scanned},
};

fn start(os: &FakeOs, config: EngineConfig) -> (Engine, Vec<PortEvent>) {
    Engine::start_with(&config, os.os()).unwrap()
}

fn config() -> EngineConfig {
    EngineConfig {
        resync_interval: None,
        ..EngineConfig::default()
    }
}

/// (change, port, pid, source) of each port report; resyncs as port 0.
fn summary(reports: &[Report]) -> Vec<(Change, u16, u32, Source)> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Port(e) => Some((e.change, e.listener.port, e.listener.pid, e.source)),
            _ => None,
        })
        .collect()
}

fn resyncs(reports: &[Report]) -> Vec<ResyncSummary> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Resync(s) => Some(*s),
            _ => None,
        })
        .collect()
}

/// Waits at most `limit` (of paused, auto-advancing time) for reports.
async fn within(engine: &mut Engine, limit: Duration) -> Option<Vec<Report>> {
    tokio::time::timeout(limit, engine.next_reports())
        .await
        .ok()
        .map(|r| r.unwrap())
}

#[tokio::test(start_paused = true)]
async fn start_up_reconciles_the_events_that_arrive_during_the_scan() {
    let os = FakeOs::new();
    {
        let mut w = os.world();
        w.listeners = vec![
            scanned(Proto::Tcp, "127.0.0.1", 7000, 5),
            // The scan saw the socket but not who holds it.
            scanned(Proto::Tcp, "127.0.0.1", 7001, 0),
        ];
        w.during_scan.push_back(Box::new(|w| {
            let t = w.boot_ns;
            // Opens the scan also saw: they name the owner, and are not
            // reported twice.
            w.ring.push(ev(Opened, t, 0x70, "127.0.0.1", 7000, 5));
            w.ring.push(ev(Opened, t, 0x71, "127.0.0.1", 7001, 9));
            // Opened after the scan read the tables: reported once, live.
            w.ring.push(ev(Opened, t, 0x72, "127.0.0.1", 7002, 6));
        }));
    }
    let (mut engine, baseline) = start(&os, config());
    let mut base: Vec<(u16, u32, Source)> = baseline
        .iter()
        .map(|e| (e.listener.port, e.listener.pid, e.source))
        .collect();
    base.sort_by_key(|b| (b.0, b.1));
    assert_eq!(
        base,
        [(7000, 5, Source::Baseline), (7001, 9, Source::Baseline)]
    );
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Opened, 7002, 6, Source::Ebpf)]
    );
    // The adopted listeners close by socket address, naming their owner.
    let t = os.world().boot_ns;
    os.emit([ev(Closed, t, 0x71, "127.0.0.1", 7001, 9)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Closed, 7001, 9, Source::Ebpf)]
    );
    assert_eq!(engine.stats().events, 4);
}

#[tokio::test(start_paused = true)]
async fn a_close_from_before_the_scan_is_not_paired_with_the_scanned_socket() {
    let os = FakeOs::new();
    {
        let mut w = os.world();
        // Port 7000 was closed and reopened by another socket before the
        // scan read the tables: the scan shows the new one.
        let t = w.boot_ns;
        w.ring.push(ev(Opened, t - 10, 0xa, "127.0.0.1", 7000, 5));
        w.ring.push(ev(Closed, t - 5, 0xa, "127.0.0.1", 7000, 5));
        w.listeners = vec![scanned(Proto::Tcp, "127.0.0.1", 7000, 8)];
    }
    let (mut engine, baseline) = start(&os, config());
    assert_eq!(baseline.len(), 1);
    assert_eq!(baseline[0].listener.pid, 8);
    // The stale open and close are reported as such; the scanned listener
    // stays open.
    let reports = engine.next_reports().await.unwrap();
    assert_eq!(
        summary(&reports),
        [
            (Change::Opened, 7000, 5, Source::Ebpf),
            (Change::Closed, 7000, 5, Source::Ebpf)
        ]
    );
    assert_eq!(engine.listeners().map(|l| l.pid).collect::<Vec<_>>(), [8]);
}

#[tokio::test(start_paused = true)]
async fn drops_bring_a_spaced_resync_and_one_follow_up() {
    let os = FakeOs::new();
    let (mut engine, baseline) = start(&os, config());
    assert!(baseline.is_empty());

    // 8001's open is lost to a full ring buffer; 8000's arrives.
    os.world().listeners = vec![
        scanned(Proto::Tcp, "0.0.0.0", 8000, 1),
        scanned(Proto::Tcp, "0.0.0.0", 8001, 1),
    ];
    let t = os.world().boot_ns;
    os.emit([ev(Opened, t, 0x80, "0.0.0.0", 8000, 1)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Opened, 8000, 1, Source::Ebpf)]
    );
    os.world().drops = 3;
    // The loss is checked after the batch is out: the resync comes now.
    let first_at = Instant::now();
    let reports = engine.next_reports().await.unwrap();
    assert_eq!(
        summary(&reports),
        [(Change::Opened, 8001, 1, Source::Resync)]
    );
    let s = resyncs(&reports);
    assert_eq!(
        (s[0].reason, s[0].opened, s[0].closed, s[0].drops),
        (ResyncReason::Drops, 1, 0, 3)
    );
    assert_eq!(Instant::now(), first_at, "no wait for the first one");

    // More drops at once: the next resync waits out the spacing.
    os.world().drops = 5;
    let t = os.world().boot_ns;
    os.world()
        .listeners
        .push(scanned(Proto::Tcp, "0.0.0.0", 8002, 1));
    os.emit([ev(Opened, t, 0x82, "0.0.0.0", 8002, 1)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Opened, 8002, 1, Source::Ebpf)]
    );
    // While the second resync scans, 8002 closes: the scan still shows it,
    // so that key is left alone and settled by one follow-up.
    os.world().during_scan.push_back(Box::new(|w| {
        let t = w.boot_ns;
        w.ring.push(ev(Closed, t, 0x82, "0.0.0.0", 8002, 1));
    }));
    let reports = engine.next_reports().await.unwrap();
    let second_at = Instant::now();
    assert_eq!(second_at - first_at, resync::DROP_RESYNC_SPACING);
    assert_eq!(summary(&reports), [(Change::Closed, 8002, 1, Source::Ebpf)]);
    let s = resyncs(&reports);
    assert_eq!((s[0].opened, s[0].closed, s[0].drops), (0, 0, 5));

    os.world().listeners.retain(|l| l.port != 8002);
    let reports = engine.next_reports().await.unwrap();
    assert_eq!(Instant::now() - second_at, resync::DROP_RESYNC_SPACING);
    assert_eq!(resyncs(&reports).len(), 1, "the follow-up");
    assert!(
        summary(&reports).is_empty(),
        "the follow-up found it settled"
    );

    // And no more: nothing is due.
    assert!(
        within(&mut engine, Duration::from_secs(3600))
            .await
            .is_none()
    );
    assert_eq!(engine.stats().resyncs, 3);
    assert_eq!(os.world().scans, 4, "the baseline and three resyncs");
}

#[tokio::test(start_paused = true)]
async fn a_listen_without_bind_gets_its_port_from_the_host() {
    let os = FakeOs::new();
    let (mut engine, _) = start(&os, config());
    os.world()
        .sockets_of
        .insert(4, vec!["0.0.0.0:40001".parse().unwrap()]);
    let t = os.world().boot_ns;
    os.emit([ev(Opened, t, 0xf, "0.0.0.0", 0, 4)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Opened, 40001, 4, Source::Ebpf)]
    );
    os.emit([ev(Closed, t + 1, 0xf, "0.0.0.0", 40001, 4)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Closed, 40001, 4, Source::Ebpf)]
    );

    // Closed before the host could show its port: the close tells it.
    os.emit([
        ev(Opened, t + 2, 0x10, "::", 0, 7),
        ev(Closed, t + 3, 0x10, "::", 40002, 7),
    ]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [
            (Change::Opened, 40002, 7, Source::Ebpf),
            (Change::Closed, 40002, 7, Source::Ebpf)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_reused_socket_address_closes_the_listener_whose_close_was_lost() {
    let os = FakeOs::new();
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    os.emit([ev(Opened, t, 0xa, "127.0.0.1", 1000, 1)]);
    engine.next_reports().await.unwrap();
    os.emit([ev(Opened, t + 1, 0xa, "127.0.0.1", 2000, 2)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [
            (Change::Closed, 1000, 1, Source::Ebpf),
            (Change::Opened, 2000, 2, Source::Ebpf)
        ]
    );
    assert_eq!(
        engine.listeners().map(|l| l.port).collect::<Vec<_>>(),
        [2000]
    );
}

#[tokio::test(start_paused = true)]
async fn interval_and_requested_resyncs() {
    let os = FakeOs::new();
    let started = Instant::now();
    let (mut engine, _) = start(
        &os,
        EngineConfig {
            resync_interval: Some(Duration::from_secs(60)),
            ..EngineConfig::default()
        },
    );
    let reports = engine.next_reports().await.unwrap();
    assert_eq!(Instant::now() - started, Duration::from_secs(60));
    assert_eq!(resyncs(&reports)[0].reason, ResyncReason::Interval);

    os.world()
        .listeners
        .push(scanned(Proto::Tcp, "::", 9000, 3));
    let asked = Instant::now();
    engine.request_resync();
    let reports = engine.next_reports().await.unwrap();
    assert_eq!(Instant::now(), asked, "at once");
    assert_eq!(resyncs(&reports)[0].reason, ResyncReason::Requested);
    assert_eq!(
        summary(&reports),
        [(Change::Opened, 9000, 3, Source::Resync)]
    );
    // The interval counts again from the last resync.
    let reports = engine.next_reports().await.unwrap();
    assert_eq!(Instant::now() - asked, Duration::from_secs(60));
    assert_eq!(resyncs(&reports)[0].reason, ResyncReason::Interval);
}

#[tokio::test(start_paused = true)]
async fn the_procfs_backend_polls_at_its_interval() {
    let os = FakeOs::new();
    os.world().listeners = vec![scanned(Proto::Tcp, "0.0.0.0", 80, 1)];
    let started = Instant::now();
    let (mut engine, baseline) = start(
        &os,
        EngineConfig {
            backend: Backend::Procfs,
            poll_interval: Duration::from_secs(2),
            ..config()
        },
    );
    assert_eq!(engine.backend_name(), "procfs");
    assert_eq!(baseline.len(), 1);
    os.world().listeners = vec![scanned(Proto::Tcp, "0.0.0.0", 81, 2)];
    let mut got = summary(&engine.next_reports().await.unwrap());
    got.sort_by_key(|g| g.1);
    assert_eq!(Instant::now() - started, Duration::from_secs(2));
    assert_eq!(
        got,
        [
            (Change::Closed, 80, 1, Source::Procfs),
            (Change::Opened, 81, 2, Source::Procfs)
        ]
    );
    // Asked for: polls now.
    let asked = Instant::now();
    os.world().listeners.clear();
    engine.request_resync();
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Closed, 81, 2, Source::Procfs)]
    );
    assert_eq!(Instant::now(), asked);
    assert_eq!(engine.stats().resyncs, 2);
    assert!(matches!(
        engine.set_connections(true),
        Err(Error::ConnectionsNeedEbpf)
    ));
}

#[tokio::test(start_paused = true)]
async fn auto_falls_back_to_polling_when_the_programs_cannot_attach() {
    let os = FakeOs::new();
    os.world().attach_fails = true;
    let (engine, _) = start(&os, config());
    assert_eq!(engine.backend_name(), "procfs");
    assert!(
        engine
            .fallback_reason()
            .is_some_and(|r| r.contains("needs root"))
    );
    let err = Engine::start_with(
        &EngineConfig {
            backend: Backend::Ebpf,
            ..config()
        },
        os.os(),
    )
    .err();
    assert!(matches!(err, Some(Error::NotPermitted)), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn bad_settings_and_unknown_pids_are_refused() {
    let os = FakeOs::new();
    let with = |config: EngineConfig| Engine::start_with(&config, os.os()).err();
    let tree = |pid| EngineConfig {
        filter: Filter {
            pid: Some(pid),
            ..Filter::default()
        },
        ..config()
    };
    assert!(matches!(with(tree(77)), Some(Error::NoSuchProcess(77))));
    assert!(matches!(
        with(EngineConfig {
            ring_buffer_bytes: 5000,
            ..config()
        }),
        Some(Error::RingBufferSize(5000))
    ));
    assert!(matches!(
        with(EngineConfig {
            poll_interval: Duration::ZERO,
            ..config()
        }),
        Some(Error::ZeroInterval(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_process_tree_is_seeded_into_the_kernel_and_limits_the_scan() {
    let os = FakeOs::new();
    {
        let mut w = os.world();
        w.processes.insert(10);
        w.links = vec![(11, 10), (12, 11), (20, 1)];
        w.listeners = vec![
            scanned(Proto::Tcp, "0.0.0.0", 1011, 11),
            scanned(Proto::Tcp, "0.0.0.0", 1020, 20),
            scanned(Proto::Tcp, "0.0.0.0", 1000, 0),
        ];
    }
    let (_engine, baseline) = start(
        &os,
        EngineConfig {
            filter: Filter {
                pid: Some(10),
                ..Filter::default()
            },
            ..config()
        },
    );
    let mut watched: Vec<u32> = os.world().watched.iter().copied().collect();
    watched.sort();
    assert_eq!(watched, [10, 11, 12]);
    assert!(os.world().filter_tree);
    let ports: Vec<u16> = baseline.iter().map(|e| e.listener.port).collect();
    assert_eq!(ports, [1011]);
}

#[tokio::test(start_paused = true)]
async fn protocols_are_scanned_as_asked_and_kept_apart() {
    let os = FakeOs::new();
    os.world().listeners = vec![
        scanned(Proto::Tcp, "0.0.0.0", 53, 1),
        scanned(Proto::Udp, "0.0.0.0", 53, 1),
    ];
    let (_e, baseline) = start(&os, config());
    assert_eq!(os.world().scanned_protos, [Proto::Tcp]);
    assert_eq!(baseline.len(), 1);
    assert_eq!(baseline[0].listener.proto, Proto::Tcp);

    let udp_only = EngineConfig {
        filter: Filter {
            proto: Some(Proto::Udp),
            ..Filter::default()
        },
        ..config()
    };
    let (_e, baseline) = start(&os, udp_only);
    assert!(os.world().scanned_protos.is_empty());
    assert!(baseline.is_empty(), "UDP has no kernel events yet");
}
