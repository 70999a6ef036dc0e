//! A scripted operating system for unit tests: a [`World`] that the fake
//! event source and the fake host share. Tests queue kernel events, set
//! drop counters and the listeners a scan finds, and script what happens
//! while a scan runs.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use chrono::{DateTime, TimeDelta, Utc};
use portwatch_common::SockEventKind;

use super::{EventSource, Host, KernelCounters, Os, ProbeConfig, ProcessUsage, SocketQuery};
use crate::{
    error::{Error, Result},
    event::{KernelEvent, Listener, Proto},
};

/// A change made while a scan runs (after it started, before it reads).
pub(crate) type DuringScan = Box<dyn FnOnce(&mut World) + Send>;

#[derive(Default)]
pub(crate) struct World {
    /// Events the kernel has written and userspace not yet read.
    pub ring: Vec<KernelEvent>,
    pub drops: u64,
    pub owners_full: u64,
    /// What a scan finds.
    pub listeners: Vec<Listener>,
    /// Run by the next scans, one each.
    pub during_scan: VecDeque<DuringScan>,
    pub scans: usize,
    /// The protocols the last scan asked for.
    pub scanned_protos: Vec<Proto>,
    /// What `listening_sockets_of` answers, per pid.
    pub sockets_of: HashMap<u32, Vec<SocketAddr>>,
    pub links: Vec<(u32, u32)>,
    pub processes: HashSet<u32>,
    pub usage: HashMap<u32, ProcessUsage>,
    /// CLOCK_BOOTTIME; every read advances it by 1 ns.
    pub boot_ns: u64,
    pub wall_at_boot: DateTime<Utc>,
    pub netns_known: bool,
    pub watched: HashSet<u32>,
    pub filter_tree: bool,
    pub connections: bool,
    /// Whether attaching fails (no privileges).
    pub attach_fails: bool,
    waker: Option<Waker>,
}

/// A handle on the shared world; clones share it.
#[derive(Clone)]
pub(crate) struct FakeOs(Arc<Mutex<World>>);

impl FakeOs {
    pub fn new() -> Self {
        let world = World {
            boot_ns: 1_000_000_000,
            wall_at_boot: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            netns_known: true,
            ..World::default()
        };
        Self(Arc::new(Mutex::new(world)))
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        // A test that panicked while holding the lock fails anyway.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kernel writes `events` into the ring buffer.
    pub fn emit(&self, events: impl IntoIterator<Item = KernelEvent>) {
        let mut w = self.world();
        w.ring.extend(events);
        if let Some(waker) = w.waker.take() {
            waker.wake();
        }
    }

    /// An [`Os`] on this world.
    pub fn os(&self) -> Os {
        let world = self.clone();
        Os {
            host: Box::new(FakeHost(self.clone())),
            attach: Box::new(move |config: &ProbeConfig| {
                let mut w = world.world();
                if w.attach_fails {
                    return Err(Error::NotPermitted);
                }
                w.filter_tree = config.filter_tree;
                w.connections = config.connections;
                drop(w);
                Ok(Box::new(FakeSource(world)) as Box<dyn EventSource>)
            }),
        }
    }
}

impl World {
    fn now_ns(&mut self) -> u64 {
        self.boot_ns += 1;
        self.boot_ns
    }
}

struct FakeSource(FakeOs);

impl EventSource for FakeSource {
    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut Vec<KernelEvent>) -> Poll<Result<()>> {
        let mut w = self.0.world();
        if w.ring.is_empty() {
            w.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        out.append(&mut w.ring);
        Poll::Ready(Ok(()))
    }

    fn read_now(&mut self, out: &mut Vec<KernelEvent>) {
        out.append(&mut self.0.world().ring);
    }

    fn loss_possible(&self) -> bool {
        true
    }

    fn read_counters(&mut self) -> Result<KernelCounters> {
        self.counters()
    }

    fn counters(&self) -> Result<KernelCounters> {
        let w = self.0.world();
        Ok(KernelCounters {
            ring_full: w.drops,
            owners_full: w.owners_full,
        })
    }

    fn malformed(&self) -> u64 {
        0
    }

    fn netns_known(&self) -> bool {
        self.0.world().netns_known
    }

    fn is_watched(&self, pid: u32) -> bool {
        let w = self.0.world();
        !w.filter_tree || w.watched.contains(&pid)
    }

    fn watch_pids(&mut self, pids: &[u32]) -> Result<()> {
        self.0.world().watched.extend(pids);
        Ok(())
    }

    fn set_connections(&mut self, on: bool) -> Result<()> {
        self.0.world().connections = on;
        Ok(())
    }
}

struct FakeHost(FakeOs);

impl Host for FakeHost {
    fn scan_listeners(
        &mut self,
        queries: &[SocketQuery],
        owner_ok: &dyn Fn(u32) -> bool,
    ) -> Result<Vec<Listener>> {
        let mut w = self.0.world();
        w.scans += 1;
        w.scanned_protos = queries.iter().map(|q| q.proto).collect();
        w.now_ns();
        if let Some(change) = w.during_scan.pop_front() {
            change(&mut w);
        }
        w.now_ns();
        let candidates = w.listeners.clone();
        // `owner_ok` asks the fake source, which takes the lock too.
        drop(w);
        Ok(candidates
            .into_iter()
            .filter(|l| queries.iter().any(|q| q.proto == l.proto))
            .filter(|l| owner_ok(l.pid))
            .collect())
    }

    fn listening_sockets_of(&mut self, pid: u32) -> Vec<SocketAddr> {
        self.0
            .world()
            .sockets_of
            .get(&pid)
            .cloned()
            .unwrap_or_default()
    }

    fn parent_links(&mut self) -> Result<Vec<(u32, u32)>> {
        Ok(self.0.world().links.clone())
    }

    fn process_exists(&self, pid: u32) -> bool {
        self.0.world().processes.contains(&pid)
    }

    fn boot_now_ns(&self) -> u64 {
        self.0.world().now_ns()
    }

    fn wall_now(&self) -> DateTime<Utc> {
        let w = self.0.world();
        w.wall_at_boot + TimeDelta::nanoseconds(i64::try_from(w.boot_ns).unwrap_or(i64::MAX))
    }

    fn cgroup_path(&mut self, id: u64) -> String {
        format!("/cg{id}")
    }

    fn process_usage(&self, pid: u32) -> Option<ProcessUsage> {
        self.0.world().usage.get(&pid).copied()
    }

    fn ticks_per_second(&self) -> u64 {
        100
    }
}

/// A kernel event for tests: `kind` on socket `sk`, owned by `pid`.
pub(crate) fn kernel_event(
    kind: SockEventKind,
    ts_ns: u64,
    sk: u64,
    addr: &str,
    port: u16,
    pid: u32,
) -> KernelEvent {
    KernelEvent {
        kind,
        proto: Proto::Tcp,
        ts_ns,
        skaddr: sk,
        cgroup_id: 1,
        tgid: pid,
        tid: pid,
        uid: 0,
        closer_tgid: pid,
        owner_known: true,
        netns: NETNS,
        address: addr
            .parse()
            .unwrap_or(std::net::IpAddr::V4([0, 0, 0, 0].into())),
        port,
        comm: format!("p{pid}"),
        cgroup: String::new(),
        remote: None,
    }
}

/// The namespace fake events and listeners live in.
pub(crate) const NETNS: u64 = 4026531840;

/// A listener as a scan finds it.
pub(crate) fn scanned(proto: Proto, addr: &str, port: u16, pid: u32) -> Listener {
    Listener {
        proto,
        address: addr
            .parse()
            .unwrap_or(std::net::IpAddr::V4([0, 0, 0, 0].into())),
        port,
        pid,
        comm: format!("p{pid}"),
        uid: 0,
        skaddr: None,
        inode: Some(u64::from(port)),
        netns: NETNS,
        cgroup: String::new(),
        opened_at: None,
    }
}
