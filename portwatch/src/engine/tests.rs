//! The engine on a scripted OS ([`crate::sys::fake`]), under paused tokio
//! time: no root, no kernel, deterministic timers.

use std::time::Duration;

use portwatch_common::SockEventKind::{Closed, Opened};
use tokio::time::Instant;

use super::*;
use crate::{
    event::{KernelEvent, Proto},
    report::ResyncReason,
    sys::{
        HeldSocket,
        fake::{FakeOs, NETNS, kernel_event as ev, scanned},
    },
};

/// An event that names its socket by cookie, as the BTF tracepoint and
/// the listen confirmation do.
fn cev(
    kind: portwatch_common::SockEventKind,
    ts: u64,
    cookie: u64,
    addr: &str,
    port: u16,
    pid: u32,
) -> KernelEvent {
    KernelEvent {
        sock_is_cookie: true,
        ..ev(kind, ts, cookie, addr, port, pid)
    }
}

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

/// Every report until `limit` passes without one (paused time).
async fn all_within(engine: &mut Engine, limit: Duration) -> Vec<Report> {
    let mut all = Vec::new();
    while let Some(reports) = within(engine, limit).await {
        all.extend(reports);
    }
    all
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
    let (mut engine, startup) = start(&os, config());
    // What opened after the scan read the tables comes first, then the
    // baseline.
    let mut base: Vec<(u16, u32, Source)> = startup
        .iter()
        .map(|e| (e.listener.port, e.listener.pid, e.source))
        .collect();
    base[1..].sort_by_key(|b| (b.0, b.1));
    assert_eq!(
        base,
        [
            (7002, 6, Source::Ebpf),
            (7000, 5, Source::Baseline),
            (7001, 9, Source::Baseline)
        ]
    );
    // The opens the baseline adopted are not told again.
    assert!(summary(&engine.next_reports().await.unwrap()).is_empty());
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
    let (engine, startup) = start(&os, config());
    // The stale open and close are told first, as they happened; the
    // scanned listener stays open.
    let told: Vec<(Change, u16, u32, Source)> = startup
        .iter()
        .map(|e| (e.change, e.listener.port, e.listener.pid, e.source))
        .collect();
    assert_eq!(
        told,
        [
            (Change::Opened, 7000, 5, Source::Ebpf),
            (Change::Closed, 7000, 5, Source::Ebpf),
            (Change::Opened, 7000, 8, Source::Baseline)
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
    os.world().held.push(HeldSocket {
        pid: 4,
        local: "0.0.0.0:40001".parse().unwrap(),
        cookie: None,
    });
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
    let mut watched: Vec<u32> = os.world().watched.keys().copied().collect();
    watched.sort();
    assert_eq!(watched, [10, 11, 12]);
    assert!(os.world().filter_tree);
    // Seeded before the listener programs started: no listener of the tree
    // is judged outside it.
    assert_eq!(os.world().watched_at_start, 3);
    let ports: Vec<u16> = baseline.iter().map(|e| e.listener.port).collect();
    assert_eq!(ports, [1011]);
}

#[tokio::test(start_paused = true)]
async fn roots_are_added_and_removed_while_running() {
    let os = FakeOs::new();
    {
        let mut w = os.world();
        w.processes.extend([10, 30, 31]);
        w.links = vec![(11, 10), (31, 30), (32, 31)];
        w.listeners = vec![
            scanned(Proto::Tcp, "0.0.0.0", 1011, 11),
            scanned(Proto::Tcp, "0.0.0.0", 1031, 31),
            scanned(Proto::Tcp, "0.0.0.0", 1032, 32),
        ];
    }
    let tree_of = |pid| EngineConfig {
        filter: Filter {
            pid: Some(pid),
            ..Filter::default()
        },
        ..config()
    };
    let (mut engine, baseline) = start(&os, tree_of(10));
    assert_eq!(baseline.len(), 1);
    let limit = Duration::from_secs(5);

    // A second tree: its listeners come from a resync, labelled with it.
    engine.add_root(30).unwrap();
    assert_eq!(os.world().watched.get(&32), Some(&30));
    let r = within(&mut engine, limit).await.unwrap();
    let mut opened = summary(&r);
    opened.sort_by_key(|o| o.1);
    assert_eq!(
        opened,
        [
            (Change::Opened, 1031, 31, Source::Resync),
            (Change::Opened, 1032, 32, Source::Resync)
        ]
    );
    // A tree inside it, then the outer one removed: the inner stays.
    engine.add_root(31).unwrap();
    engine.remove_root(30).unwrap();
    let r = within(&mut engine, limit).await.unwrap();
    assert!(summary(&r).is_empty(), "{:?}", summary(&r));
    assert!(!os.world().watched.contains_key(&30));
    assert_eq!(os.world().watched.get(&32), Some(&31));
    // The first tree removed: its listener is closed to this watch.
    engine.remove_root(10).unwrap();
    let r = within(&mut engine, limit).await.unwrap();
    assert_eq!(summary(&r), [(Change::Closed, 1011, 11, Source::Resync)]);
    assert!(!os.world().watched.contains_key(&11));
    // A pid that is no root: nothing to do. One that does not exist, or
    // a watch without a tree: refused.
    engine.remove_root(99).unwrap();
    assert!(matches!(engine.add_root(99), Err(Error::NoSuchProcess(99))));
    let (mut all, _) = start(&FakeOs::new(), config());
    assert!(matches!(all.add_root(10), Err(Error::Refused(_))));
}

#[tokio::test(start_paused = true)]
async fn protocols_are_scanned_as_asked_and_kept_apart() {
    let os = FakeOs::new();
    os.world().listeners = vec![
        scanned(Proto::Tcp, "0.0.0.0", 53, 1),
        scanned(Proto::Udp, "0.0.0.0", 53, 1),
    ];
    let (_e, baseline) = start(&os, config());
    assert_eq!(os.world().scanned_protos, [Proto::Tcp, Proto::Udp]);
    assert_eq!(baseline.len(), 2, "one port number, two listeners");

    let udp_only = EngineConfig {
        filter: Filter {
            proto: Some(Proto::Udp),
            ..Filter::default()
        },
        ..config()
    };
    let (_e, baseline) = start(&os, udp_only);
    assert_eq!(os.world().scanned_protos, [Proto::Udp]);
    assert_eq!(baseline.len(), 1);
    assert_eq!(baseline[0].listener.proto, Proto::Udp);
}

/// A UDP event as the cgroup sock programs send it: by cookie, the close
/// without a port.
/// An engine started on a host whose sockets carry cookies, with its one
/// namespace readable; and the boot time it started at.
fn start_with_cookies(os: &FakeOs) -> (Engine, u64) {
    {
        let mut w = os.world();
        w.cookies = true;
        w.namespaces = [(NETNS, true)].into();
    }
    let (engine, _) = start(os, config());
    (engine, os.world().boot_ns)
}

/// A UDP bind by pid 7 at `t` in a cgroup no release program covered
/// yet.
fn unseen_bind(t: u64, cookie: u64, port: u16, cgroup: u64) -> KernelEvent {
    KernelEvent {
        release_unseen: Some(cgroup),
        ..uev(Opened, t, cookie, port, 7)
    }
}

fn uev(
    kind: portwatch_common::SockEventKind,
    ts: u64,
    cookie: u64,
    port: u16,
    pid: u32,
) -> KernelEvent {
    KernelEvent {
        proto: Proto::Udp,
        ..cev(kind, ts, cookie, "0.0.0.0", port, pid)
    }
}

fn udp(addr: &str, port: u16, pid: u32, cookie: u64) -> Listener {
    Listener {
        cookie: Some(cookie),
        ..scanned(Proto::Udp, addr, port, pid)
    }
}

#[test]
fn a_udp_socket_counts_as_bound_off_the_ephemeral_range_or_when_seen_bound() {
    let ephemeral = 32768..=60999;
    let never = |_| false;
    assert!(counts_as_bound(
        &udp("0.0.0.0", 53, 1, 5),
        &ephemeral,
        never
    ));
    assert!(counts_as_bound(
        &udp("0.0.0.0", 32767, 1, 5),
        &ephemeral,
        never
    ));
    assert!(counts_as_bound(
        &udp("0.0.0.0", 61000, 1, 5),
        &ephemeral,
        never
    ));
    // A client's port from the kernel, or one bound before portwatch
    // watched: no event can tell them apart, so neither counts.
    assert!(!counts_as_bound(
        &udp("0.0.0.0", 32768, 1, 5),
        &ephemeral,
        never
    ));
    assert!(!counts_as_bound(
        &udp("0.0.0.0", 60999, 1, 5),
        &ephemeral,
        never
    ));
    // One portwatch saw bound counts wherever its port is.
    assert!(counts_as_bound(
        &udp("0.0.0.0", 40000, 1, 5),
        &ephemeral,
        |c| c == 5
    ));
    assert!(!counts_as_bound(
        &udp("0.0.0.0", 40000, 1, 6),
        &ephemeral,
        |c| c == 5
    ));
    let mut no_cookie = udp("0.0.0.0", 40000, 1, 5);
    no_cookie.cookie = None;
    assert!(!counts_as_bound(&no_cookie, &ephemeral, |_| true));
    // TCP listeners always count.
    assert!(counts_as_bound(
        &scanned(Proto::Tcp, "0.0.0.0", 40000, 1),
        &ephemeral,
        never
    ));
}

#[tokio::test(start_paused = true)]
async fn udp_clients_are_left_out_and_baseline_owners_are_told_to_the_kernel() {
    let os = FakeOs::new();
    {
        let mut w = os.world();
        w.cookies = true;
        w.namespaces = [(NETNS, true)].into();
        w.listeners = vec![
            udp("0.0.0.0", 53, 1, 0x53),
            // A DNS client's socket, bound by the kernel at sendto().
            udp("0.0.0.0", 45000, 2, 0x45),
            Listener {
                cookie: Some(0x46),
                ..scanned(Proto::Tcp, "0.0.0.0", 45001, 3)
            },
        ];
    }
    let (mut engine, baseline) = start(&os, config());
    let mut ports: Vec<(Proto, u16)> = baseline
        .iter()
        .map(|e| (e.listener.proto, e.listener.port))
        .collect();
    ports.sort();
    assert_eq!(ports, [(Proto::Tcp, 45001), (Proto::Udp, 53)]);
    // The kernel learns the owner of the baseline's UDP socket only: its
    // release is reported, the client's is not.
    assert_eq!(os.world().seeded, [0x53]);
    let t = os.world().boot_ns;
    os.world().listeners.remove(0);
    os.emit([uev(Closed, t, 0x53, 0, 1)]);
    let closed = engine.next_reports().await.unwrap();
    assert_eq!(summary(&closed), [(Change::Closed, 53, 1, Source::Ebpf)]);
    // A resync finds the client still there and says nothing of it.
    engine.request_resync();
    let reports = within(&mut engine, Duration::from_secs(5)).await.unwrap();
    assert!(summary(&reports).is_empty(), "{reports:?}");
    let r = resyncs(&reports)[0];
    assert_eq!((r.opened, r.closed), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_udp_port_bound_live_is_closed_by_cookie_and_survives_resyncs_anywhere_it_is() {
    let os = FakeOs::new();
    let (mut engine, t) = start_with_cookies(&os);
    // bind(0): the kernel's port, from the ephemeral range; and a TCP
    // listener on the same port number.
    os.emit([
        uev(Opened, t, 0x10, 41000, 7),
        cev(Opened, t, 0x11, "0.0.0.0", 41000, 7),
    ]);
    let opened = engine.next_reports().await.unwrap();
    assert_eq!(
        summary(&opened),
        [
            (Change::Opened, 41000, 7, Source::Ebpf),
            (Change::Opened, 41000, 7, Source::Ebpf)
        ]
    );
    // The scan shows both; the UDP one counts because portwatch saw its
    // bind, though its port is ephemeral.
    os.world().listeners = vec![
        udp("0.0.0.0", 41000, 7, 0x10),
        Listener {
            cookie: Some(0x11),
            ..scanned(Proto::Tcp, "0.0.0.0", 41000, 7)
        },
    ];
    engine.request_resync();
    let reports = within(&mut engine, Duration::from_secs(5)).await.unwrap();
    let r = resyncs(&reports)[0];
    assert_eq!((r.opened, r.closed), (0, 0), "{reports:?}");
    // The release names no port: the cookie does. The TCP listener stays.
    os.world().listeners.remove(0);
    os.emit([uev(Closed, t + 1, 0x10, 0, 7)]);
    let closed = engine.next_reports().await.unwrap();
    let Report::Port(ev) = &closed[0] else {
        panic!("{closed:?}")
    };
    assert_eq!(
        (ev.change, ev.listener.proto, ev.listener.port),
        (Change::Closed, Proto::Udp, 41000)
    );
    assert_eq!(closed.len(), 1);
    // A release the kernel knew no bind of is nothing to report.
    os.emit([uev(Closed, t + 2, 0x99, 0, 7)]);
    assert!(summary(&engine.next_reports().await.unwrap()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn unbound_ports_are_looked_up_once_per_batch_and_by_cookie() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    // Ten listen() calls without bind() by one process in one batch: the
    // kernel's cookies tell which port is whose, whatever the order.
    let t = os.world().boot_ns;
    {
        let mut w = os.world();
        for i in 0..10u16 {
            w.held.push(HeldSocket {
                pid: 4,
                local: format!("0.0.0.0:{}", 41000 + 9 - i).parse().unwrap(),
                cookie: Some(u64::from(100 + 9 - i)),
            });
        }
    }
    os.emit((0..10u16).map(|i| cev(Opened, t, u64::from(100 + i), "0.0.0.0", 0, 4)));
    let mut opened: Vec<u16> = summary(&engine.next_reports().await.unwrap())
        .iter()
        .map(|s| s.1)
        .collect();
    opened.sort_unstable();
    assert_eq!(opened, (41000..41010).collect::<Vec<_>>());
    assert_eq!(os.world().held_lookups, 1, "one lookup for the whole batch");
    // Each close names its own port.
    for i in [3u16, 7, 0] {
        os.emit([cev(
            Closed,
            t + 1,
            u64::from(100 + i),
            "0.0.0.0",
            41000 + i,
            4,
        )]);
        assert_eq!(
            summary(&engine.next_reports().await.unwrap()),
            [(Change::Closed, 41000 + i, 4, Source::Ebpf)]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_unbound_port_never_found_is_counted_and_left_to_a_resync() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    // The owner handed the socket on and exited: its fds do not show it.
    os.emit([cev(Opened, t, 0x50, "0.0.0.0", 0, 4)]);
    assert!(summary(&engine.next_reports().await.unwrap()).is_empty());
    {
        let mut w = os.world();
        w.listeners = vec![
            Listener {
                cookie: Some(0x50),
                ..scanned(Proto::Tcp, "0.0.0.0", 41234, 8)
            },
            Listener {
                cookie: Some(0x51),
                ..scanned(Proto::Tcp, "127.0.0.1", 9000, 5)
            },
        ];
        w.namespaces = [(NETNS, true)].into();
    }
    // A second batch looks again, misses again and gives up.
    os.emit([cev(Opened, t + 1, 0x51, "127.0.0.1", 9000, 5)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Opened, 9000, 5, Source::Ebpf)]
    );
    assert_eq!(engine.stats().unresolved, 1);
    let reports = within(&mut engine, Duration::from_secs(1)).await.unwrap();
    assert_eq!(resyncs(&reports)[0].reason, ResyncReason::Unresolved);
    assert_eq!(
        summary(&reports),
        [(Change::Opened, 41234, 8, Source::Resync)]
    );
}

/// An open from a listen() whose return the kernel did not see.
fn unconfirmed(ts: u64, cookie: u64, addr: &str, port: u16, pid: u32) -> KernelEvent {
    KernelEvent {
        unconfirmed: true,
        ..cev(Opened, ts, cookie, addr, port, pid)
    }
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_open_is_reported_once_the_tables_show_it_listening() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    os.world().held.push(HeldSocket {
        pid: 4,
        local: "127.0.0.1:41500".parse().unwrap(),
        cookie: Some(0x60),
    });
    os.emit([unconfirmed(t, 0x60, "127.0.0.1", 41500, 4)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Opened, 41500, 4, Source::Ebpf)]
    );
    // Looked for in its socket's namespace, which the kernel saw: its
    // owner may have moved to another since it made the socket.
    assert_eq!(os.world().listening_asked, [(4, NETNS)]);
    // The close path's own open (the kernel's, once the socket closes)
    // repeats nothing.
    os.emit([
        cev(Opened, t + 1, 0x60, "127.0.0.1", 41500, 4),
        cev(Closed, t + 2, 0x60, "127.0.0.1", 41500, 4),
    ]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Closed, 41500, 4, Source::Ebpf)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_open_whose_close_says_it_never_listened_is_never_reported() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    // Its listen() failed (EADDRINUSE): the tables never show it, and its
    // close says it never listened.
    os.emit([unconfirmed(t, 0x61, "127.0.0.1", 41501, 4)]);
    assert!(summary(&engine.next_reports().await.unwrap()).is_empty());
    os.emit([KernelEvent {
        never_listened: true,
        ..cev(Closed, t + 1, 0x61, "127.0.0.1", 41501, 4)
    }]);
    assert!(summary(&engine.next_reports().await.unwrap()).is_empty());
    // No report, no resync for a second (at most the look already due,
    // which finds nothing to look for).
    let later = all_within(&mut engine, Duration::from_secs(1)).await;
    assert!(later.is_empty(), "{later:?}");
    assert_eq!(engine.stats().unresolved, 0);
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_open_still_in_its_listen_is_looked_for_again() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    // Not in the tables yet at the first look (the call still runs).
    os.emit([unconfirmed(t, 0x62, "0.0.0.0", 0, 4)]);
    assert!(summary(&engine.next_reports().await.unwrap()).is_empty());
    os.world().held.push(HeldSocket {
        pid: 9,
        local: "0.0.0.0:41502".parse().unwrap(),
        cookie: Some(0x62),
    });
    // The engine looks again on its own, and names the caller.
    let reports = within(&mut engine, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(
        summary(&reports),
        [(Change::Opened, 41502, 4, Source::Ebpf)]
    );
}

#[tokio::test(start_paused = true)]
async fn another_users_events_do_not_use_up_an_unconfirmed_opens_looks() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    os.emit([unconfirmed(t, 0x64, "127.0.0.1", 41504, 4)]);
    engine.next_reports().await.unwrap();
    // A hundred batches of someone else's listeners: no look for it.
    for i in 0..100u16 {
        os.emit([ev(
            Opened,
            t + 1,
            0x1000 + u64::from(i),
            "127.0.0.1",
            2000 + i,
            7,
        )]);
        engine.next_reports().await.unwrap();
    }
    assert_eq!(os.world().held_lookups, 1, "only its first look");
    assert_eq!(engine.stats().unresolved, 0);
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_open_never_seen_listening_nor_closed_is_left_to_a_resync() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    os.emit([unconfirmed(t, 0x63, "127.0.0.1", 41503, 4)]);
    let mut reports = engine.next_reports().await.unwrap();
    while resyncs(&reports).is_empty() {
        reports = within(&mut engine, Duration::from_secs(2)).await.unwrap();
    }
    assert_eq!(resyncs(&reports)[0].reason, ResyncReason::Unresolved);
    assert_eq!(engine.stats().unresolved, 1);
    assert_eq!(
        os.world().held_lookups,
        super::ebpf::UNCONFIRMED_LOOKS as usize,
        "its looks, then a resync"
    );
}

#[tokio::test(start_paused = true)]
async fn event_times_follow_a_step_of_the_wall_clock() {
    let os = FakeOs::new();
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    os.emit([ev(Opened, t, 0x1, "127.0.0.1", 1000, 1)]);
    let before = engine.next_reports().await.unwrap();
    // The wall clock is stepped an hour forward (NTP, an operator).
    os.world().wall_at_boot += chrono::TimeDelta::hours(1);
    let t = os.world().boot_ns;
    os.emit([ev(Opened, t, 0x2, "127.0.0.1", 1001, 1)]);
    let after = engine.next_reports().await.unwrap();
    let ts = |r: &[Report]| match &r[0] {
        Report::Port(e) => e.ts,
        other => panic!("{other:?}"),
    };
    let wall_now = {
        let w = os.world();
        w.wall_at_boot + chrono::TimeDelta::nanoseconds(i64::try_from(w.boot_ns).unwrap())
    };
    assert!(ts(&after) - ts(&before) >= chrono::TimeDelta::hours(1));
    assert!((wall_now - ts(&after)).abs() < chrono::TimeDelta::seconds(1));
}

#[tokio::test(start_paused = true)]
async fn a_resync_closes_nothing_in_a_namespace_it_could_not_read() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    // A listener in a namespace no process is in any more.
    let mut lonely = cev(Opened, t, 0x77, "0.0.0.0", 5353, 3);
    lonely.netns = NETNS + 9;
    os.emit([lonely, cev(Opened, t, 0x78, "0.0.0.0", 80, 3)]);
    engine.next_reports().await.unwrap();
    // The scan reads NETNS only, where port 80 is gone (its close lost).
    os.world().namespaces = [(NETNS, true)].into();
    engine.request_resync();
    let reports = engine.next_reports().await.unwrap();
    assert_eq!(summary(&reports), [(Change::Closed, 80, 3, Source::Resync)]);
    assert_eq!(
        engine.listeners().map(|l| l.port).collect::<Vec<_>>(),
        [5353]
    );
}

#[tokio::test(start_paused = true)]
async fn a_thread_or_an_unknown_namespace_is_refused() {
    let os = FakeOs::new();
    os.world().threads.insert(1235, 1234);
    let thread = EngineConfig {
        filter: Filter {
            pid: Some(1235),
            ..Filter::default()
        },
        ..config()
    };
    assert_eq!(
        Engine::start_with(&thread, os.os())
            .err()
            .map(|e| e.to_string()),
        Some("1235 is a thread of process 1234, not a process: watch 1234 instead".into())
    );
    let netns = EngineConfig {
        filter: Filter {
            netns: Some(42),
            ..Filter::default()
        },
        ..config()
    };
    assert_eq!(
        Engine::start_with(&netns, os.os())
            .err()
            .map(|e| e.to_string()),
        Some("no network namespace with inode 42 exists on this host".into())
    );
}

/// A UDP bind where no release program ran yet: the program is attached
/// to the socket's cgroup and the owner recorded; the socket, gone by the
/// next look while its owner is still recorded (the program never saw its
/// release), is reported closed then.
#[tokio::test(start_paused = true)]
async fn an_unseen_bind_released_before_the_program_ran_is_reported_closed() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    os.emit([unseen_bind(t, 0x20, 41100, 77)]);
    assert_eq!(
        summary(&engine.next_reports().await.unwrap()),
        [(Change::Opened, 41100, 7, Source::Ebpf)]
    );
    assert_eq!(os.world().covered, [77]);
    assert_eq!(os.world().seeded, [0x20]);
    assert_eq!(os.world().seeded_uncovered, 0);
    let closed = within(&mut engine, Duration::from_secs(1)).await.unwrap();
    assert_eq!(summary(&closed), [(Change::Closed, 41100, 7, Source::Ebpf)]);
    assert!(os.world().seeded.is_empty());
}

/// One still there at both looks is left to the release program (its
/// recorded owner stays), and one whose release the program saw (its
/// owner taken already) is not reported twice.
#[tokio::test(start_paused = true)]
async fn an_unseen_bind_still_there_or_seen_released_is_left_to_the_program() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    os.world().udp_alive = [0x21].into();
    os.world().released_before_seed.insert(0x22);
    os.emit([
        unseen_bind(t, 0x21, 41101, 78),
        unseen_bind(t, 0x22, 41102, 78),
    ]);
    assert_eq!(summary(&engine.next_reports().await.unwrap()).len(), 2);
    assert_eq!(os.world().covered, [78, 78]);
    // Both looks (10 ms, 1 s) report nothing.
    let later = summary(&all_within(&mut engine, Duration::from_secs(5)).await);
    assert!(later.is_empty(), "{later:?}");
    assert_eq!(os.world().seeded, [0x21]);
}

/// A live socket that one read of its table skipped (a dump is no
/// snapshot) is not reported closed: a miss is read twice.
#[tokio::test(start_paused = true)]
async fn an_unseen_bind_skipped_by_one_read_is_not_reported_closed() {
    let os = FakeOs::new();
    os.world().cookies = true;
    let (mut engine, _) = start(&os, config());
    let t = os.world().boot_ns;
    {
        let mut w = os.world();
        w.udp_alive = [0x23].into();
        w.udp_skipped_once = [0x23].into();
    }
    os.emit([unseen_bind(t, 0x23, 41103, 79)]);
    assert_eq!(summary(&engine.next_reports().await.unwrap()).len(), 1);
    let later = summary(&all_within(&mut engine, Duration::from_secs(5)).await);
    assert!(later.is_empty(), "{later:?}");
    assert!(os.world().udp_skipped_once.is_empty(), "not read");
    assert_eq!(os.world().seeded, [0x23]);
}

/// An unseen socket whose namespace cannot be read is left to a resync,
/// brought forward: gone from its scan, its owner is taken and its close
/// reported; found, it keeps its owner.
#[tokio::test(start_paused = true)]
async fn an_unseen_bind_that_cannot_be_looked_for_is_settled_by_a_resync() {
    let os = FakeOs::new();
    {
        let mut w = os.world();
        w.cookies = true;
        w.udp_unreadable = [NETNS].into();
        w.namespaces = [(NETNS, true)].into();
        w.listeners = vec![Listener {
            cookie: Some(0x25),
            ..scanned(Proto::Udp, "0.0.0.0", 41105, 7)
        }];
    }
    let (mut engine, _) = start(&os, config());
    os.world().seeded.clear();
    let t = os.world().boot_ns;
    os.emit([
        unseen_bind(t, 0x24, 41104, 80),
        unseen_bind(t, 0x26, 41106, 80),
    ]);
    let opened = summary(&engine.next_reports().await.unwrap());
    assert_eq!(opened.len(), 2);
    // The socket on 41106 is scanned from now on, with its cookie.
    os.world().listeners.push(Listener {
        cookie: Some(0x26),
        ..scanned(Proto::Udp, "0.0.0.0", 41106, 7)
    });
    let later = all_within(&mut engine, Duration::from_secs(5)).await;
    assert_eq!(
        resyncs(&later).iter().map(|r| r.reason).collect::<Vec<_>>(),
        [ResyncReason::Unresolved]
    );
    assert_eq!(
        summary(&later),
        [(Change::Closed, 41104, 7, Source::Resync)]
    );
    assert_eq!(os.world().seeded, [0x26]);
}

/// Sockets found at start have the release program attached to their own
/// cgroups before their owners are recorded; where that fails, no owner
/// is recorded (none would ever be taken).
#[tokio::test(start_paused = true)]
async fn the_sockets_found_at_start_are_covered_by_their_cgroups() {
    let os = FakeOs::new();
    {
        let mut w = os.world();
        w.cookies = true;
        w.namespaces = [(NETNS, true)].into();
        w.cover_fails = [12].into();
        w.listeners = [(0x40, 11, 5000), (0x41, 12, 5001), (0x42, 11, 5002)]
            .into_iter()
            .map(|(cookie, cgroup, port)| Listener {
                cookie: Some(cookie),
                socket_cgroup: cgroup,
                ..scanned(Proto::Udp, "0.0.0.0", port, 7)
            })
            .collect();
    }
    let (_engine, baseline) = start(&os, config());
    assert_eq!(baseline.len(), 3);
    assert_eq!(os.world().covered, [11, 12]);
    assert_eq!(os.world().seeded, [0x40, 0x42]);
    assert_eq!(os.world().seeded_uncovered, 0);
}

/// An unseen bind whose cgroup cannot be covered records no owner (none
/// would be taken); a resync, brought forward, settles its port.
#[tokio::test(start_paused = true)]
async fn an_unseen_bind_whose_cgroup_cannot_be_covered_is_left_to_a_resync() {
    let os = FakeOs::new();
    os.world().cover_fails = [81].into();
    let (mut engine, t) = start_with_cookies(&os);
    os.emit([unseen_bind(t, 0x27, 41107, 81)]);
    assert_eq!(summary(&engine.next_reports().await.unwrap()).len(), 1);
    assert!(os.world().seeded.is_empty());
    let later = all_within(&mut engine, Duration::from_secs(5)).await;
    assert_eq!(
        resyncs(&later).iter().map(|r| r.reason).collect::<Vec<_>>(),
        [ResyncReason::Unresolved]
    );
    assert_eq!(
        summary(&later),
        [(Change::Closed, 41107, 7, Source::Resync)]
    );
}

/// A resync between an unseen bind and its look that found the socket
/// gone and reported its close: the look takes the owner back and
/// reports nothing more.
#[tokio::test(start_paused = true)]
async fn an_unseen_socket_closed_by_a_resync_is_not_reported_closed_again() {
    let os = FakeOs::new();
    let (mut engine, t) = start_with_cookies(&os);
    os.emit([unseen_bind(t, 0x28, 41108, 82)]);
    assert_eq!(summary(&engine.next_reports().await.unwrap()).len(), 1);
    engine.request_resync();
    let resynced = engine.next_reports().await.unwrap();
    assert_eq!(
        summary(&resynced),
        [(Change::Closed, 41108, 7, Source::Resync)]
    );
    let later = summary(&all_within(&mut engine, Duration::from_secs(5)).await);
    assert!(later.is_empty(), "{later:?}");
    assert!(os.world().seeded.is_empty(), "the owner is taken back");
}
