//! The UDP aggregate mode on a scripted OS: counts by interval, sockets
//! still open reported one by one and closed by the kernel, the race
//! between a look and a seed, exited binders forgotten.

use std::time::Duration;

use portwatch_common::SockEventKind::Closed;

use super::*;
use crate::{
    event::{KernelEvent, Proto},
    report::UdpSummary,
    report::{BindCount, BindKey, PortClass},
    sys::{
        HeldUdp,
        fake::{FakeOs, NETNS, kernel_event, scanned},
    },
};

fn aggregate_os() -> FakeOs {
    let os = FakeOs::new();
    {
        let mut w = os.world();
        w.cookies = true;
        w.namespaces = [(NETNS, true)].into();
        w.processes = [7].into();
    }
    os
}

fn config() -> EngineConfig {
    EngineConfig {
        resync_interval: None,
        udp_aggregate: Some(Duration::from_secs(1)),
        ..EngineConfig::default()
    }
}

fn count(pid: u32, class: PortClass, binds: u64) -> BindCount {
    BindCount {
        key: BindKey { pid, class },
        binds,
        comm: b"churn\x1b[2J".to_vec(),
    }
}

fn held(port: u16, pid: u32, cookie: u64, connected: bool) -> HeldUdp {
    HeldUdp {
        listener: Listener {
            cookie: Some(cookie),
            ..scanned(Proto::Udp, "0.0.0.0", port, pid)
        },
        connected,
    }
}

fn opened(reports: &[Report]) -> Vec<(u16, u32, Source)> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Port(e) if e.change == Change::Opened => {
                Some((e.listener.port, e.listener.pid, e.source))
            }
            _ => None,
        })
        .collect()
}

fn summaries(reports: &[Report]) -> Vec<UdpSummary> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::UdpSummary(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

async fn next(engine: &mut Engine) -> Vec<Report> {
    tokio::time::timeout(Duration::from_secs(5), engine.next_reports())
        .await
        .expect("a reading within the interval")
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_interval_reports_counts_and_the_sockets_still_open() {
    let os = aggregate_os();
    let (mut engine, _) = Engine::start_with(&config(), os.os()).unwrap();
    {
        let mut w = os.world();
        w.udp_binds = vec![
            count(7, PortClass::Ephemeral, 100),
            count(7, PortClass::System, 1),
        ];
        w.held_udp = [vec![
            held(41000, 7, 0x41, false),
            held(53, 7, 0x53, false),
            // A client's socket, bound by the kernel at its first send.
            held(45000, 7, 0x45, true),
        ]]
        .into();
    }
    let reports = next(&mut engine).await;
    let mut ports = opened(&reports);
    ports.sort_by_key(|p| p.0);
    assert_eq!(
        ports,
        [(53, 7, Source::Aggregate), (41000, 7, Source::Aggregate)]
    );
    let s = summaries(&reports);
    let counted: Vec<_> = s.iter().map(|s| (s.class, s.binds, s.reported)).collect();
    assert_eq!(
        counted,
        [(PortClass::System, 1, 1), (PortClass::Ephemeral, 100, 1)]
    );
    assert!(s.iter().all(|s| s.pid == 7 && s.interval_ms == 1000));
    // The name is made safe.
    assert_eq!(s[0].comm, "churn\\x1b[2J");
    // The kernel knows their owners now: the release comes as an event.
    let mut seeded = os.world().seeded.clone();
    seeded.sort();
    assert_eq!(seeded, [0x41, 0x53]);
    let t = os.world().boot_ns;
    os.emit([KernelEvent {
        proto: Proto::Udp,
        sock_is_cookie: true,
        ..kernel_event(Closed, t, 0x41, "0.0.0.0", 0, 7)
    }]);
    let closed = next(&mut engine).await;
    let Some(Report::Port(e)) = closed.first() else {
        panic!("{closed:?}")
    };
    assert_eq!(
        (e.change, e.listener.port, e.source),
        (Change::Closed, 41000, Source::Ebpf)
    );
    // The next interval counts only what came since, and a socket told
    // of already is not told again.
    os.world().held_udp = [vec![held(53, 7, 0x53, false), held(45000, 7, 0x45, true)]].into();
    os.world().udp_binds = vec![
        count(7, PortClass::Ephemeral, 130),
        count(7, PortClass::System, 1),
    ];
    let reports = next(&mut engine).await;
    assert!(opened(&reports).is_empty(), "{reports:?}");
    let s = summaries(&reports);
    assert_eq!(
        s.iter()
            .map(|s| (s.class, s.binds, s.reported))
            .collect::<Vec<_>>(),
        [(PortClass::Ephemeral, 30, 0)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_socket_closed_between_the_look_and_its_seed_is_only_counted() {
    let os = aggregate_os();
    let (mut engine, _) = Engine::start_with(&config(), os.os()).unwrap();
    {
        let mut w = os.world();
        w.udp_binds = vec![count(7, PortClass::Other, 2)];
        // Seen at the first look, gone at the second; the kernel saw its
        // release before the seed, so no close will come.
        w.held_udp = [
            vec![held(5000, 7, 0x50, false), held(5001, 7, 0x51, false)],
            vec![held(5001, 7, 0x51, false)],
        ]
        .into();
    }
    let reports = next(&mut engine).await;
    assert_eq!(opened(&reports), [(5001, 7, Source::Aggregate)]);
    assert_eq!(summaries(&reports)[0].reported, 1);
    assert_eq!(os.world().seeded, [0x51]);
}

#[tokio::test(start_paused = true)]
async fn a_socket_whose_release_came_after_its_seed_is_reported_then_closed() {
    let os = aggregate_os();
    let (mut engine, _) = Engine::start_with(&config(), os.os()).unwrap();
    {
        let mut w = os.world();
        w.udp_binds = vec![count(7, PortClass::Other, 1)];
        w.held_udp = [vec![held(5000, 7, 0x50, false)], vec![]].into();
        // The seed was there when the release ran: the kernel took it
        // and sent the close.
        w.released_before_seed = [0x50].into();
    }
    let reports = next(&mut engine).await;
    assert_eq!(opened(&reports), [(5000, 7, Source::Aggregate)]);
}

#[tokio::test(start_paused = true)]
async fn a_fixed_port_no_binder_holds_is_looked_for_by_a_resync() {
    let os = aggregate_os();
    let (mut engine, _) = Engine::start_with(&config(), os.os()).unwrap();
    // A daemon bound port 5353 and exited; its child holds the socket.
    os.world().udp_binds = vec![count(9, PortClass::Other, 1)];
    os.world().listeners = vec![Listener {
        cookie: Some(0x5353),
        ..scanned(Proto::Udp, "0.0.0.0", 5353, 10)
    }];
    let reports = next(&mut engine).await;
    assert_eq!(summaries(&reports)[0].reported, 0);
    let reports = next(&mut engine).await;
    assert_eq!(opened(&reports), [(5353, 10, Source::Resync)]);
}

#[tokio::test(start_paused = true)]
async fn an_exited_binder_is_counted_once_then_forgotten() {
    let os = aggregate_os();
    let (mut engine, _) = Engine::start_with(&config(), os.os()).unwrap();
    os.world().udp_binds = vec![count(9, PortClass::Ephemeral, 5000)];
    let reports = next(&mut engine).await;
    let s = summaries(&reports);
    assert_eq!((s[0].pid, s[0].binds, s[0].reported), (9, 5000, 0));
    let w = os.world();
    assert!(w.udp_binds.is_empty());
    assert_eq!(
        w.forgotten,
        [BindKey {
            pid: 9,
            class: PortClass::Ephemeral
        }]
    );
}

#[test]
fn more_sockets_than_binds_are_not_all_reported() {
    use super::udp_aggregate::still_open;
    use crate::udp_tally::{PeriodBinds, Reading};
    let reading = Reading {
        binds: vec![PeriodBinds {
            key: BindKey {
                pid: 7,
                class: PortClass::Ephemeral,
            },
            binds: 1,
            comm: Vec::new(),
        }],
        forget: Vec::new(),
    };
    let held = vec![
        held(40000, 7, 1, false),
        held(40001, 7, 2, false),
        // Another process's, which bound nothing.
        held(40002, 8, 3, false),
        // Known already.
        held(40003, 7, 4, false),
    ];
    let out = still_open(
        &reading,
        held.clone(),
        &(32768..=60999),
        |c| c == 4,
        |_| true,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].port, 40000);
    // A socket the filter leaves out does not spend the budget of one it
    // admits.
    let out = still_open(
        &reading,
        held,
        &(32768..=60999),
        |c| c == 4,
        |l| l.port != 40000,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].port, 40001);
}

#[test]
fn a_zero_settle_interval_is_refused() {
    let config = EngineConfig {
        udp_aggregate: Some(Duration::ZERO),
        ..EngineConfig::default()
    };
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "the UDP settle interval must be longer than 0"
    );
}

#[test]
fn without_cookies_the_mode_is_refused() {
    let os = FakeOs::new();
    os.world().cookies = false;
    let err = Engine::start_with(&config(), os.os()).err().unwrap();
    assert!(err.to_string().contains("--udp-aggregate needs"), "{err}");
}
