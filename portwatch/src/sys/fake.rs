//! A scripted operating system for unit tests: a [`World`] that the fake
//! event source and the fake host share. Tests queue kernel events, set
//! drop counters and the listeners a scan finds, and script what happens
//! while a scan runs.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use chrono::{DateTime, TimeDelta, Utc};
use portwatch_common::SockEventKind;

use super::{
    EventSource, HeldSocket, HeldUdp, Host, KernelCounters, Os, ProbeConfig, ProcessKind,
    ProcessUsage, SocketQuery, exposure_watch::FactsSource,
};
use crate::{
    error::{Error, Result},
    event::{KernelEvent, Listener, Proto, Scan},
    report::{BindCount, BindKey},
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
    /// What a scan of every socket finds.
    pub sockets: Vec<crate::socket::SocketInfo>,
    /// The namespaces a scan reads, and whether with cookies; by default
    /// NETNS, without.
    pub namespaces: HashMap<u64, bool>,
    /// Run by the next scans, one each.
    pub during_scan: VecDeque<DuringScan>,
    pub scans: usize,
    /// The protocols the last scan asked for.
    pub scanned_protos: Vec<Proto>,
    /// What `held_listeners` answers.
    pub held: Vec<HeldSocket>,
    /// How many times `held_listeners` was asked.
    pub held_lookups: usize,
    /// The owners `listening_sockets` was last asked for.
    pub listening_asked: Vec<(u32, u64)>,
    /// The cgroups `cover_release` was asked to cover, in order.
    pub covered: Vec<u64>,
    /// The UDP sockets (cookies) `udp_sockets` finds; every namespace
    /// asked for is read but those in `udp_unreadable`.
    pub udp_alive: HashSet<u64>,
    pub udp_unreadable: HashSet<u64>,
    /// Live sockets the next `udp_sockets` read skips, as a dump does when
    /// others close meanwhile.
    pub udp_skipped_once: HashSet<u64>,
    /// Cgroups `cover_release` fails for.
    pub cover_fails: HashSet<u64>,
    /// Owners seeded before their cgroup was covered (a leak).
    pub seeded_uncovered: usize,
    pub links: Vec<(u32, u32)>,
    pub processes: HashSet<u32>,
    /// Threads: tid -> their process.
    pub threads: HashMap<u32, u32>,
    pub namespaces_on_host: HashSet<u64>,
    pub usage: HashMap<u32, ProcessUsage>,
    /// CLOCK_BOOTTIME; every read advances it by 1 ns.
    pub boot_ns: u64,
    pub wall_at_boot: DateTime<Utc>,
    pub netns_known: bool,
    /// Whether events carry socket cookies.
    pub cookies: bool,
    /// Watched pid -> its tree's root.
    pub watched: HashMap<u32, u32>,
    pub filter_tree: bool,
    pub connections: bool,
    /// Whether attaching fails (no privileges).
    pub attach_fails: bool,
    /// How many processes were in the watched set when the listener
    /// programs were attached.
    pub watched_at_start: usize,
    /// Cookies of the UDP owners userspace told the kernel.
    pub seeded: Vec<u64>,
    /// The aggregate mode's tally of UDP binds, as the kernel keeps it.
    pub udp_binds: Vec<BindCount>,
    /// Tally entries userspace removed.
    pub forgotten: Vec<BindKey>,
    /// What `held_udp` answers, one answer per call (the last stays).
    pub held_udp: VecDeque<Vec<HeldUdp>>,
    /// Cookies whose release the kernel reported before their seed: a
    /// take-back finds them gone.
    pub released_before_seed: HashSet<u64>,
    waker: Option<Waker>,
    /// Each namespace's exposure facts (none: an empty namespace).
    pub netns_facts: HashMap<u64, crate::netns_facts::NetnsFacts>,
    /// The namespaces the exposure facts are watched for.
    pub facts_watched: HashSet<u64>,
    /// Processes' arguments.
    pub cmdlines: HashMap<u32, Vec<String>>,
    /// What /proc says of processes, for their owner contexts.
    pub owners: HashMap<u32, crate::owner::OwnerFacts>,
    /// Owner facts read so far.
    pub owner_reads: usize,
    /// Start-time reads: how often an owner was checked against /proc.
    pub start_time_reads: usize,
    /// Executables' packages.
    pub packages: HashMap<String, String>,
    /// Changed facts not yet read by the monitor.
    facts_changed: VecDeque<u64>,
    facts_waker: Option<Waker>,
}

/// A handle on the shared world; clones share it.
#[derive(Clone)]
pub(crate) struct FakeOs(Arc<Mutex<World>>);

impl FakeOs {
    pub(crate) fn new() -> Self {
        let world = World {
            boot_ns: 1_000_000_000,
            wall_at_boot: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            netns_known: true,
            namespaces: [(NETNS, false)].into(),
            namespaces_on_host: [NETNS].into(),
            ..World::default()
        };
        Self(Arc::new(Mutex::new(world)))
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // A test that panicked while holding the lock fails anyway.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kernel writes `events` into the ring buffer.
    pub(crate) fn emit(&self, events: impl IntoIterator<Item = KernelEvent>) {
        let mut w = self.world();
        w.ring.extend(events);
        if let Some(waker) = w.waker.take() {
            waker.wake();
        }
    }

    /// An [`Os`] on this world.
    pub(crate) fn os(&self) -> Os {
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
            facts: {
                let world = self.clone();
                // The world holds facts ready to judge: nothing to translate.
                Box::new(move |_| Ok(Box::new(FakeFacts(world)) as Box<dyn FactsSource>))
            },
        }
    }

    /// Changes the exposure facts of `netns`, as a rule or address
    /// change would.
    pub(crate) fn change_facts(&self, netns: u64, facts: crate::netns_facts::NetnsFacts) {
        let mut w = self.world();
        w.netns_facts.insert(netns, facts);
        if w.facts_watched.contains(&netns) {
            w.facts_changed.push_back(netns);
            if let Some(waker) = w.facts_waker.take() {
                waker.wake();
            }
        }
    }
}

/// [`FactsSource`] on the world.
struct FakeFacts(FakeOs);

impl FactsSource for FakeFacts {
    fn watch(&mut self, netns: u64, _pid: u32) {
        self.0.world().facts_watched.insert(netns);
    }

    fn forget(&mut self, netns: u64) {
        self.0.world().facts_watched.remove(&netns);
    }

    fn poll_changed(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(u64, super::exposure_watch::FactsResult)>> {
        let mut w = self.0.world();
        match w.facts_changed.pop_front() {
            Some(netns) => {
                let facts = w.netns_facts.get(&netns).cloned().unwrap_or_default();
                Poll::Ready(Some((netns, Ok(std::sync::Arc::new(facts)))))
            }
            None => {
                w.facts_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn own_netns(&self) -> Option<u64> {
        Some(NETNS)
    }

    fn read_now(&mut self, netns: u64, _pid: u32) -> super::exposure_watch::FactsResult {
        let w = self.0.world();
        Ok(std::sync::Arc::new(
            w.netns_facts.get(&netns).cloned().unwrap_or_default(),
        ))
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
    fn start(&mut self) -> Result<()> {
        let mut w = self.0.world();
        w.watched_at_start = w.watched.len();
        Ok(())
    }

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
            binds_full: 0,
        })
    }

    fn malformed(&self) -> u64 {
        0
    }

    fn netns_known(&self) -> bool {
        self.0.world().netns_known
    }

    fn listen_confirm_missing(&self) -> Option<&str> {
        None
    }

    fn cookies(&self) -> bool {
        self.0.world().cookies
    }

    fn udp_missing(&self) -> Option<&str> {
        None
    }

    fn seed_owners(&mut self, listeners: &[Listener]) -> Result<()> {
        let mut w = self.0.world();
        // An owner recorded where no release program runs is never taken.
        let uncovered = listeners
            .iter()
            .filter(|l| {
                !w.covered.contains(&l.socket_cgroup) || w.cover_fails.contains(&l.socket_cgroup)
            })
            .count();
        w.seeded_uncovered += uncovered;
        w.seeded.extend(listeners.iter().filter_map(|l| l.cookie));
        Ok(())
    }

    fn cover_release(&mut self, cgroup: u64) -> Result<()> {
        let mut w = self.0.world();
        w.covered.push(cgroup);
        if w.cover_fails.contains(&cgroup) {
            return Err(Error::MissingObject("a cgroup to attach to"));
        }
        Ok(())
    }

    fn unseed_owner(&mut self, cookie: u64) -> Result<bool> {
        let mut w = self.0.world();
        let before = w.seeded.len();
        w.seeded.retain(|c| *c != cookie);
        Ok(w.seeded.len() < before && !w.released_before_seed.contains(&cookie))
    }

    fn udp_binds(&self) -> Result<Vec<BindCount>> {
        Ok(self.0.world().udp_binds.clone())
    }

    fn forget_udp_binds(&mut self, keys: &[BindKey]) -> Result<()> {
        let mut w = self.0.world();
        w.udp_binds.retain(|c| !keys.contains(&c.key));
        w.forgotten.extend_from_slice(keys);
        Ok(())
    }

    fn is_watched(&self, pid: u32) -> bool {
        let w = self.0.world();
        !w.filter_tree || w.watched.contains_key(&pid)
    }

    fn watch_pids(&mut self, pids: &[u32], root: u32) -> Result<()> {
        self.0
            .world()
            .watched
            .extend(pids.iter().map(|&p| (p, root)));
        Ok(())
    }

    fn watched_under(&self, root: u32) -> Vec<u32> {
        let w = self.0.world();
        w.watched
            .iter()
            .filter(|(_, r)| **r == root)
            .map(|(p, _)| *p)
            .collect()
    }

    fn unwatch_pids(&mut self, pids: &[u32]) -> Result<()> {
        let mut w = self.0.world();
        for p in pids {
            w.watched.remove(p);
        }
        Ok(())
    }

    fn set_connections(&mut self, on: bool) -> Result<()> {
        self.0.world().connections = on;
        Ok(())
    }
}

struct FakeHost(FakeOs);

impl Host for FakeHost {
    fn scan_sockets(&mut self, queries: &[SocketQuery]) -> Result<Vec<crate::socket::SocketInfo>> {
        let w = self.0.world();
        Ok(w.sockets
            .iter()
            .filter(|s| queries.iter().any(|q| q.proto == s.proto))
            .cloned()
            .collect())
    }

    fn scan_listeners(
        &mut self,
        queries: &[SocketQuery],
        owner_ok: &dyn Fn(u32) -> bool,
    ) -> Result<Scan> {
        let mut w = self.0.world();
        w.scans += 1;
        w.scanned_protos = queries.iter().map(|q| q.proto).collect();
        w.now_ns();
        if let Some(change) = w.during_scan.pop_front() {
            change(&mut w);
        }
        w.now_ns();
        let candidates = w.listeners.clone();
        let namespaces = w.namespaces.clone();
        // `owner_ok` asks the fake source, which takes the lock too.
        drop(w);
        Ok(Scan {
            listeners: candidates
                .into_iter()
                .filter(|l| queries.iter().any(|q| q.proto == l.proto))
                .filter(|l| namespaces.contains_key(&l.netns))
                .filter(|l| owner_ok(l.pid))
                .collect(),
            namespaces,
        })
    }

    /// The fake's held sockets, whoever holds them: a namespace's table.
    fn listening_sockets(&mut self, owners: &[(u32, u64)]) -> Vec<HeldSocket> {
        let mut w = self.0.world();
        w.held_lookups += 1;
        w.listening_asked = owners.to_vec();
        w.held.clone()
    }

    fn held_listeners(&mut self, pids: &[u32]) -> Vec<HeldSocket> {
        let mut w = self.0.world();
        w.held_lookups += 1;
        w.held
            .iter()
            .filter(|h| pids.contains(&h.pid))
            .copied()
            .collect()
    }

    fn udp_sockets(&mut self, owners: &[(u32, u64)]) -> crate::sys::UdpTables {
        let mut w = self.0.world();
        let skipped = std::mem::take(&mut w.udp_skipped_once);
        let alive = w.udp_alive.difference(&skipped).copied().collect();
        let namespaces = owners
            .iter()
            .map(|o| o.1)
            .filter(|ns| !w.udp_unreadable.contains(ns))
            .collect();
        crate::sys::UdpTables { alive, namespaces }
    }

    fn held_udp(&mut self, pids: &[u32]) -> Vec<HeldUdp> {
        let mut w = self.0.world();
        let answer = if w.held_udp.len() > 1 {
            w.held_udp.pop_front().unwrap_or_default()
        } else {
            w.held_udp.front().cloned().unwrap_or_default()
        };
        answer
            .into_iter()
            .filter(|h| pids.contains(&h.listener.pid))
            .collect()
    }

    fn parent_links(&mut self) -> Result<Vec<(u32, u32)>> {
        Ok(self.0.world().links.clone())
    }

    fn cmdline(&self, pid: u32) -> Vec<String> {
        self.0
            .world()
            .cmdlines
            .get(&pid)
            .cloned()
            .unwrap_or_default()
    }

    fn process_kind(&self, pid: u32) -> ProcessKind {
        let w = self.0.world();
        if w.processes.contains(&pid) {
            ProcessKind::Process
        } else if let Some(tgid) = w.threads.get(&pid) {
            ProcessKind::ThreadOf(*tgid)
        } else {
            ProcessKind::Missing
        }
    }

    fn netns_exists(&self, ino: u64) -> bool {
        self.0.world().namespaces_on_host.contains(&ino)
    }

    fn ephemeral_ports(&self) -> std::ops::RangeInclusive<u16> {
        32768..=60999
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

    fn container(&mut self, cgroup: &str) -> Option<crate::container::Container> {
        crate::container::Container::classify(cgroup)
    }

    fn process_usage(&self, pid: u32) -> Option<ProcessUsage> {
        self.0.world().usage.get(&pid).copied()
    }

    fn ticks_per_second(&self) -> u64 {
        100
    }

    fn netns_facts(
        &mut self,
        netns: u64,
        _pid: u32,
        _translate: crate::netns_facts::Translate,
    ) -> super::exposure_watch::FactsResult {
        let w = self.0.world();
        Ok(Arc::new(
            w.netns_facts.get(&netns).cloned().unwrap_or_default(),
        ))
    }

    fn own_netns(&self) -> Option<u64> {
        Some(NETNS)
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        let mut w = self.0.world();
        w.start_time_reads += 1;
        w.owners.get(&pid).map(|f| f.start_time)
    }

    fn owner_facts_all(
        &mut self,
        pids: &[u32],
        memo: &mut crate::owner::AncestorMemo,
    ) -> Vec<Option<crate::owner::OwnerFacts>> {
        pids.iter().map(|&p| self.owner_facts(p, memo)).collect()
    }

    fn exe_id(&self, pid: u32) -> Option<(u64, u64)> {
        self.0.world().owners.get(&pid).and_then(|f| f.exe_id)
    }

    fn owner_facts(
        &mut self,
        pid: u32,
        _memo: &mut crate::owner::AncestorMemo,
    ) -> Option<crate::owner::OwnerFacts> {
        let mut w = self.0.world();
        w.owner_reads += 1;
        w.owners.get(&pid).cloned()
    }

    fn package_of(&mut self, exe: &str, _running: (u64, u64)) -> Option<String> {
        self.0.world().packages.get(exe).cloned()
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
        sock: sk,
        sock_is_cookie: false,
        cgroup_id: 1,
        tgid: pid,
        tid: pid,
        uid: 0,
        closer_tgid: pid,
        owner_known: true,
        unconfirmed: false,
        never_listened: false,
        release_unseen: None,
        netns: NETNS,
        address: addr
            .parse()
            .unwrap_or(std::net::IpAddr::V4([0, 0, 0, 0].into())),
        port,
        comm: format!("p{pid}"),
        cgroup: String::new(),
        container: None,
        remote: None,
    }
}

/// The namespace fake events and listeners live in.
pub(crate) const NETNS: u64 = 4026531840;

/// A listener as a scan finds it.
pub(crate) fn scanned(proto: Proto, addr: &str, port: u16, pid: u32) -> Listener {
    Listener {
        pid,
        comm: format!("p{pid}"),
        inode: Some(u64::from(port)),
        netns: NETNS,
        ..Listener::new(
            proto,
            addr.parse()
                .unwrap_or(std::net::IpAddr::V4([0, 0, 0, 0].into())),
            port,
        )
    }
}
