//! The watch engine: attach, take the baseline, then turn kernel events
//! (or procfs polls) into reports, resynchronising with procfs when events
//! were lost and on a timer.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use portwatch_common::ListenKind;

use crate::{
    error::{Error, Result},
    event::{Change, KernelEvent, Listener, ListenerKey, PortEvent, Source},
    filter::Filter,
    rules::eval::Connection,
    sys::{
        bpf::{Hook, KernelProbe, ProbeConfig},
        cgroup::CgroupNames,
        clock::BootClock,
        privilege, procfs_scan,
    },
    table::{ApplyRules, ListenerTable},
};

/// Which event source to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// eBPF, or procfs polling with a warning when eBPF cannot load.
    #[default]
    Auto,
    Ebpf,
    Procfs,
}

/// Settings for [`Engine::start`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub backend: Backend,
    /// Ring buffer size in bytes: a power of two, at least 4096.
    pub ring_buffer_bytes: u32,
    pub hook: Hook,
    pub filter: Filter,
    /// Periodic procfs resynchronisation; `None` disables it (a resync
    /// still follows any lost event).
    pub resync_interval: Option<Duration>,
    /// Poll interval of the procfs backend.
    pub poll_interval: Duration,
    /// Report TCP connections too (for ExternalConnection rules). Costs a
    /// second program on the connection path while on.
    pub connections: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            ring_buffer_bytes: crate::sys::bpf::DEFAULT_RING_BUFFER_BYTES,
            hook: Hook::Auto,
            filter: Filter::default(),
            resync_interval: Some(Duration::from_secs(60)),
            poll_interval: Duration::from_secs(1),
            connections: false,
        }
    }
}

/// Counters a caller can read at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Kernel events received.
    pub events: u64,
    /// Events the kernel dropped because the ring buffer was full.
    pub drops: u64,
    /// Listeners whose owner the kernel could not remember (map full).
    pub owners_full: u64,
    /// procfs resynchronisations done.
    pub resyncs: u64,
}

/// Why a resynchronisation ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResyncReason {
    /// The kernel dropped events.
    Drops,
    /// `resync_interval` elapsed.
    Interval,
}

/// What a resynchronisation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResyncSummary {
    pub reason: ResyncReason,
    pub opened: usize,
    pub closed: usize,
    pub drops: u64,
    pub ts: DateTime<Utc>,
}

/// One thing to tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Port(PortEvent),
    Resync(ResyncSummary),
    /// A connection made or accepted (only with `connections` on).
    Connection(Connection),
}

/// A running watcher.
pub struct Engine {
    inner: Inner,
    /// Why eBPF was not used, when `Backend::Auto` fell back to procfs.
    fallback_reason: Option<String>,
}

enum Inner {
    Ebpf(Box<EbpfWatch>),
    Procfs(Box<PollWatch>),
}

impl Engine {
    /// Starts watching and returns the engine with the baseline: the
    /// listeners that exist now, as `opened` events with `source: baseline`.
    pub fn start(config: &EngineConfig) -> Result<(Self, Vec<PortEvent>)> {
        if let Some(pid) = config.filter.pid
            && !procfs_scan::process_exists(pid)
        {
            return Err(Error::NoSuchProcess(pid));
        }
        match config.backend {
            Backend::Ebpf => EbpfWatch::start(config).map(|(w, b)| (Self::ebpf(w, None), b)),
            Backend::Procfs => {
                PollWatch::start(config, Source::Baseline).map(|(w, b)| (Self::poll(w, None), b))
            }
            Backend::Auto => match EbpfWatch::start(config) {
                Ok((w, b)) => Ok((Self::ebpf(w, None), b)),
                Err(e @ (Error::NoSuchProcess(_) | Error::RingBufferSize(_))) => Err(e),
                Err(e) => {
                    let (w, b) = PollWatch::start(config, Source::Baseline)?;
                    Ok((Self::poll(w, Some(e.to_string())), b))
                }
            },
        }
    }

    fn ebpf(w: EbpfWatch, fallback_reason: Option<String>) -> Self {
        Self {
            inner: Inner::Ebpf(Box::new(w)),
            fallback_reason,
        }
    }

    fn poll(w: PollWatch, fallback_reason: Option<String>) -> Self {
        Self {
            inner: Inner::Procfs(Box::new(w)),
            fallback_reason,
        }
    }

    /// `"ebpf"` or `"procfs"`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner {
            Inner::Ebpf(_) => "ebpf",
            Inner::Procfs(_) => "procfs",
        }
    }

    /// Why `Backend::Auto` fell back to procfs, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Waits for the next reports (possibly none, when every event was
    /// already known). Cancel-safe: dropping the future loses nothing.
    pub async fn next_reports(&mut self) -> Result<Vec<Report>> {
        match &mut self.inner {
            Inner::Ebpf(w) => w.next_reports().await,
            Inner::Procfs(w) => w.next_reports().await,
        }
    }

    /// Turns connection events on or off (eBPF backend with BTF only).
    pub fn set_connections(&mut self, on: bool) -> Result<()> {
        match &mut self.inner {
            Inner::Ebpf(w) => w.probe.set_connections(on),
            Inner::Procfs(_) if on => Err(Error::NoBtf),
            Inner::Procfs(_) => Ok(()),
        }
    }

    /// Event, loss and resync counters.
    pub fn stats(&self) -> Stats {
        match &self.inner {
            Inner::Ebpf(w) => w.stats(),
            Inner::Procfs(w) => Stats {
                resyncs: w.polls,
                ..Stats::default()
            },
        }
    }

    /// The listeners open now, as far as the engine knows.
    pub fn listeners(&self) -> Vec<Listener> {
        let table = match &self.inner {
            Inner::Ebpf(w) => &w.table,
            Inner::Procfs(w) => &w.table,
        };
        table.listeners().cloned().collect()
    }
}

fn baseline_events(listeners: &[Listener], source: Source) -> Vec<PortEvent> {
    let now = Utc::now();
    listeners
        .iter()
        .map(|l| PortEvent {
            change: Change::Opened,
            listener: l.clone(),
            ts: now,
            source,
        })
        .collect()
}

/// Minimum spacing of resyncs triggered by drops, so that a storm that
/// keeps overflowing the ring buffer does not turn into a scan loop.
const DROP_RESYNC_SPACING: Duration = Duration::from_millis(250);

struct EbpfWatch {
    probe: KernelProbe,
    table: ListenerTable,
    clock: BootClock,
    rules: ApplyRules,
    filter: Filter,
    cgroups: CgroupNames,
    pending: Vec<KernelEvent>,
    /// Connection events waiting to be returned.
    connections: Vec<Connection>,
    /// Whether kernel events carry namespace inodes (needs BTF).
    netns_known: bool,
    events: u64,
    resyncs: u64,
    seen_drops: u64,
    /// The resync due is the follow-up of one that lost track of keys.
    settling: bool,
    last_resync: Option<Instant>,
    resync_due: Option<(Instant, ResyncReason)>,
    interval: Option<Duration>,
}

impl EbpfWatch {
    fn start(config: &EngineConfig) -> Result<(Self, Vec<PortEvent>)> {
        privilege::require_ebpf_privileges()?;
        let mut probe = KernelProbe::attach(&ProbeConfig {
            ring_buffer_bytes: config.ring_buffer_bytes,
            hook: config.hook,
            filter_tree: config.filter.pid.is_some(),
            connections: config.connections,
        })?;
        if let Some(root) = config.filter.pid {
            seed_tree(&mut probe, root)?;
        }
        let netns_known = probe.netns_known();
        let mut w = Self {
            probe,
            table: ListenerTable::new(),
            clock: BootClock::new(),
            rules: ApplyRules {
                scan_end_ns: 0,
                drop_unknown_closes: config.filter.is_active(),
            },
            filter: config.filter.clone(),
            cgroups: CgroupNames::new(),
            pending: Vec::new(),
            connections: Vec::new(),
            netns_known,
            events: 0,
            resyncs: 0,
            seen_drops: 0,
            settling: false,
            last_resync: None,
            resync_due: None,
            interval: config.resync_interval,
        };
        // Attached first, scanned second: whatever changes meanwhile waits
        // in the ring buffer and is reconciled by `apply_pending`; the opens
        // among it also name owners the scan could not see.
        let scan_start_ns = BootClock::boot_now_ns();
        let listeners = w.scan()?;
        w.rules.scan_end_ns = BootClock::boot_now_ns();
        w.probe.read_now(&mut w.pending);
        w.prepare_pending();
        w.table.seed(listeners);
        w.table.adopt_startup_opens(&w.pending, scan_start_ns);
        let baseline: Vec<Listener> = w.table.listeners().cloned().collect();
        w.schedule_interval();
        Ok((w, baseline_events(&baseline, Source::Baseline)))
    }

    fn scan(&self) -> Result<Vec<Listener>> {
        let tree = self.filter.pid.is_some();
        let owner_ok = |pid: u32| !tree || (pid != 0 && self.probe.is_watched(pid));
        let mut listeners = procfs_scan::scan_listeners(&owner_ok)?;
        if !self.netns_known {
            // Events carry no namespace: compare on address and port alone.
            for l in &mut listeners {
                l.netns = 0;
            }
        }
        listeners.retain(|l| self.filter.admits(l));
        Ok(listeners)
    }

    fn schedule_interval(&mut self) {
        if let Some(every) = self.interval
            && self.resync_due.is_none()
        {
            self.resync_due = Some((Instant::now() + every, ResyncReason::Interval));
        }
    }

    async fn next_reports(&mut self) -> Result<Vec<Report>> {
        // Drops of what was read (the previous batch, or start-up) are
        // checked once its reports are out, and only when a buffer's worth
        // was read since the last look: the counter reads (syscalls) stay
        // off the event's path, and still come before any wait.
        if self.probe.loss_possible() {
            self.check_drops()?;
        }
        if let Some((due, reason)) = self.resync_due
            && due <= Instant::now()
        {
            return self.resync(reason);
        }
        if self.pending.is_empty() {
            match self.resync_due {
                Some((due, reason)) => {
                    tokio::select! {
                        r = self.probe.read(&mut self.pending) => r?,
                        _ = tokio::time::sleep_until(due.into()) => return self.resync(reason),
                    }
                }
                None => self.probe.read(&mut self.pending).await?,
            }
        }
        let mut out = Vec::new();
        self.apply_pending(&mut out, None);
        let mut reports: Vec<Report> = out.into_iter().map(Report::Port).collect();
        reports.extend(self.connections.drain(..).map(Report::Connection));
        Ok(reports)
    }

    /// Fills in what decoding cannot: namespace policy and cgroup paths.
    fn prepare_pending(&mut self) {
        for ev in self.pending.iter_mut().filter(|e| e.cgroup.is_empty()) {
            if !self.netns_known {
                ev.netns = 0;
            }
            ev.cgroup = self.cgroups.path(ev.cgroup_id);
        }
    }

    /// Applies buffered kernel events; with `since`, returns the keys of
    /// events at or after that boot time.
    fn apply_pending(
        &mut self,
        out: &mut Vec<PortEvent>,
        since: Option<u64>,
    ) -> HashSet<ListenerKey> {
        let mut touched = HashSet::new();
        self.prepare_pending();
        self.events += self.pending.len() as u64;
        for ev in std::mem::take(&mut self.pending) {
            if since.is_some_and(|t| ev.ts_ns >= t) {
                touched.insert((ev.netns, ev.address, ev.port));
            }
            let ts = self.clock.to_wall(ev.ts_ns);
            if matches!(ev.kind, ListenKind::Connect | ListenKind::Accept) {
                self.connection(&ev, ts);
                continue;
            }
            if !self.filter.admits(&ev.listener()) {
                continue;
            }
            self.table.apply(&ev, ts, self.rules, out);
        }
        self.bind_unbound(out);
        touched
    }

    /// Turns a connection event into a [`Connection`]. An accepted one is
    /// attributed to the owner of the listener that accepted it.
    fn connection(&mut self, ev: &KernelEvent, ts: DateTime<Utc>) {
        let Some(remote) = ev.remote else { return };
        let outbound = ev.kind == ListenKind::Connect;
        let (pid, comm) = if outbound {
            (ev.tgid, ev.comm.clone())
        } else {
            match self.table.listener_for(ev.netns, ev.address, ev.port) {
                Some(l) => (l.pid, l.comm.clone()),
                None => (0, String::new()),
            }
        };
        if self.filter.pid.is_some() && !self.probe.is_watched(pid) {
            return;
        }
        self.connections.push(Connection {
            pid,
            comm,
            local: std::net::SocketAddr::new(ev.address, ev.port),
            remote,
            outbound,
            ts,
        });
    }

    /// Finds the port of listeners opened without `bind()`: by now the
    /// kernel has assigned it, and /proc shows it.
    fn bind_unbound(&mut self, out: &mut Vec<PortEvent>) {
        let unbound: Vec<(u64, Listener)> = self
            .table
            .unbound()
            .map(|(sk, l)| (sk, l.clone()))
            .collect();
        for (sk, l) in unbound {
            let known = self.table.ports_of(l.pid, l.netns);
            let port = procfs_scan::listening_sockets_of(l.pid)
                .into_iter()
                .find(|a| a.ip() == l.address && !known.contains(&(a.ip(), a.port())))
                .map(|a| a.port());
            if let Some(port) = port
                && let Some(ev) = self.table.bind_unbound(sk, port)
            {
                out.push(ev);
            }
        }
    }

    fn check_drops(&mut self) -> Result<()> {
        let drops = self.probe.read_counters()?.ring_full;
        if drops > self.seen_drops {
            self.seen_drops = drops;
            // New losses: the resync they bring is no follow-up.
            self.settling = false;
            let earliest = self
                .last_resync
                .map_or_else(Instant::now, |t| t + DROP_RESYNC_SPACING);
            let due = earliest.max(Instant::now());
            if self.resync_due.is_none_or(|(d, _)| d > due) {
                self.resync_due = Some((due, ResyncReason::Drops));
            }
        }
        Ok(())
    }

    fn resync(&mut self, reason: ResyncReason) -> Result<Vec<Report>> {
        self.resync_due = None;
        // Drops seen from here on schedule the next resync after the spacing.
        self.last_resync = Some(Instant::now());
        let started = BootClock::boot_now_ns();
        let scan = self.scan()?;
        // Events up to now: the ones older than the scan are already in it;
        // keys that changed while it ran are left for the next resync.
        self.probe.read_now(&mut self.pending);
        let mut out = Vec::new();
        let unsettled = self.apply_pending(&mut out, Some(started));
        self.check_drops()?;
        // After lost events, a key that changed during the scan may still
        // hide a lost close or open: one more scan, once, settles it.
        let follow_up = std::mem::take(&mut self.settling);
        if reason == ResyncReason::Drops
            && !follow_up
            && self.table.unsettled_disagreements(&scan, &unsettled) > 0
        {
            let due = Instant::now() + DROP_RESYNC_SPACING;
            if self.resync_due.is_none_or(|(d, _)| d > due) {
                self.resync_due = Some((due, ResyncReason::Drops));
                self.settling = true;
            }
        }
        let fixes = self.table.reconcile(scan, &unsettled, Utc::now());
        let summary = ResyncSummary {
            reason,
            opened: fixes.iter().filter(|e| e.change == Change::Opened).count(),
            closed: fixes.iter().filter(|e| e.change == Change::Closed).count(),
            drops: self.seen_drops,
            ts: Utc::now(),
        };
        out.extend(fixes);
        self.resyncs += 1;
        self.schedule_interval();
        let mut reports: Vec<Report> = out.into_iter().map(Report::Port).collect();
        reports.push(Report::Resync(summary));
        Ok(reports)
    }

    fn stats(&self) -> Stats {
        let counters = self.probe.counters().unwrap_or_default();
        Stats {
            events: self.events,
            drops: counters.ring_full,
            owners_full: counters.owners_full,
            resyncs: self.resyncs,
        }
    }
}

/// Puts `root` and its current descendants in the kernel's watched set.
/// The fork program is already attached, so a child forked from now on by
/// a watched parent joins by itself; repeating the walk until it finds
/// nobody new closes the gap of forks made while it ran.
fn seed_tree(probe: &mut KernelProbe, root: u32) -> Result<()> {
    let mut seeded = HashSet::new();
    for _ in 0..8 {
        let tree = procfs_scan::descendants(root, &procfs_scan::parent_links()?);
        let new: Vec<u32> = tree.difference(&seeded).copied().collect();
        if new.is_empty() {
            break;
        }
        probe.watch_pids(new.iter().copied())?;
        seeded.extend(new);
    }
    Ok(())
}

/// The fallback: compares procfs scans at a fixed interval.
struct PollWatch {
    table: ListenerTable,
    filter: Filter,
    interval: Duration,
    next: Instant,
    polls: u64,
}

impl PollWatch {
    fn start(config: &EngineConfig, source: Source) -> Result<(Self, Vec<PortEvent>)> {
        let mut w = Self {
            table: ListenerTable::new(),
            filter: config.filter.clone(),
            interval: config.poll_interval,
            next: Instant::now() + config.poll_interval,
            polls: 0,
        };
        let listeners = w.scan()?;
        w.table.seed(listeners.clone());
        Ok((w, baseline_events(&listeners, source)))
    }

    fn scan(&self) -> Result<Vec<Listener>> {
        // Without fork events, the tree is what the parent links show now.
        let tree = match self.filter.pid {
            Some(root) => Some(procfs_scan::descendants(
                root,
                &procfs_scan::parent_links()?,
            )),
            None => None,
        };
        let owner_ok = |pid: u32| tree.as_ref().is_none_or(|t| t.contains(&pid));
        let mut listeners = procfs_scan::scan_listeners(&owner_ok)?;
        listeners.retain(|l| self.filter.admits(l));
        Ok(listeners)
    }

    async fn next_reports(&mut self) -> Result<Vec<Report>> {
        tokio::time::sleep_until(self.next.into()).await;
        self.next = Instant::now() + self.interval;
        let scan = self.scan()?;
        self.polls += 1;
        Ok(self
            .table
            .reconcile(scan, &HashSet::new(), Utc::now())
            .into_iter()
            .map(|mut e| {
                e.source = Source::Procfs;
                Report::Port(e)
            })
            .collect())
    }
}
