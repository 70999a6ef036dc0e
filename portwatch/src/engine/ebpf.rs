//! The eBPF backend: kernel events applied to the listener table, checked
//! against procfs scans after losses, on a timer and on request.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use chrono::DateTime;
use portwatch_common::SockEventKind;
use tokio::time::Instant;

use super::{
    EngineConfig, Report, baseline_events,
    resync::ResyncSchedule,
    scan_queries,
    udp_aggregate::UdpAggregate,
    udp_seeds,
    unseen::{Found, UnseenBinds},
};
use crate::{
    error::{Error, Result},
    event::{Change, KernelEvent, Listener, PortEvent, Scan, Source},
    filter::{Filter, descendants},
    report::{Connection, ResyncReason, ResyncSummary, Stats},
    sys::{EventSource, HeldSocket, Host, SocketQuery, UdpTables, clock::BootClock},
    table::{ListenerTable, PairingPolicy, Unsettled},
};

/// Looks that may miss the port of a listener opened without `bind()`
/// (the kernel assigns it a moment after the event) before a resync is
/// left to find it.
const UNBOUND_LOOKS: u32 = 2;

/// Timed looks for an unconfirmed open (a `listen()` the kernel saw no
/// return of) before a resync is left to find it: 1, 4, 16, 64, 256 ms
/// after the first, then every second, about half a minute in all, so that
/// a call still running (another user's thread can be slowed down) is
/// found within a second of its end. Its close ends the looks: the kernel
/// always sends it, saying whether the socket ever listened.
pub(super) const UNCONFIRMED_LOOKS: u32 = 30;
const UNCONFIRMED_BACKOFF: Duration = Duration::from_millis(1);
const UNCONFIRMED_LOOK_CAP: Duration = Duration::from_secs(1);

pub(super) struct EbpfWatch {
    source: Box<dyn EventSource>,
    host: Box<dyn Host>,
    table: ListenerTable,
    clock: BootClock,
    policy: PairingPolicy,
    filter: Filter,
    queries: Vec<SocketQuery>,
    pending: Vec<KernelEvent>,
    /// Connection events waiting to be returned.
    connections: Vec<Connection>,
    /// Whether kernel events carry namespace inodes (needs BTF).
    netns_known: bool,
    events: u64,
    resyncs: u64,
    unresolved: u64,
    schedule: ResyncSchedule,
    /// The roots of the watched process trees (tree filter on).
    roots: Vec<u32>,
    /// The UDP aggregate mode's state, when on.
    aggregate: Option<UdpAggregate>,
    /// When to look again for unconfirmed opens.
    next_look: Option<Instant>,
    /// UDP sockets bound where no release program ran yet, whose owners
    /// userspace recorded once it ran (see `check_unseen`).
    unseen: UnseenBinds,
}

/// What ends a wait for kernel events besides the events.
#[derive(Clone, Copy)]
enum Due {
    Resync(ResyncReason),
    UdpTally,
    Look,
    Unseen,
}

impl EbpfWatch {
    /// Takes over attached programs: seeds the process tree, scans, and
    /// reconciles the scan with what the kernel reported meanwhile.
    /// Returns the start-up's events: what came and went before the scan
    /// ended (`source: ebpf`), then the baseline.
    pub(super) fn start(
        config: &EngineConfig,
        source: Box<dyn EventSource>,
        host: Box<dyn Host>,
    ) -> Result<(Self, Vec<PortEvent>)> {
        let netns_known = source.netns_known();
        let clock = BootClock::new(host.boot_now_ns(), host.wall_now());
        let table = ListenerTable::new(source.cookies());
        let mut w = Self {
            source,
            host,
            table,
            clock,
            policy: PairingPolicy {
                scan_end_ns: 0,
                drop_unknown_closes: config.filter.is_active(),
            },
            filter: config.filter.clone(),
            queries: scan_queries(&config.filter),
            pending: Vec::new(),
            connections: Vec::new(),
            netns_known,
            events: 0,
            resyncs: 0,
            unresolved: 0,
            schedule: ResyncSchedule::new(config.resync_interval, Instant::now()),
            roots: config.filter.pid.into_iter().collect(),
            aggregate: None,
            next_look: None,
            unseen: UnseenBinds::default(),
        };
        // The tree first, then the listener programs: a listener is judged
        // in or out of the tree when it opens.
        if let Some(root) = config.filter.pid {
            w.seed_tree(root)?;
        }
        w.source.start()?;
        if let Some(every) = config.udp_aggregate
            && config.filter.wants(crate::event::Proto::Udp)
            && w.source.udp_missing().is_none()
        {
            // Sockets found by a look are told apart from those the table
            // holds by cookie.
            if !w.source.cookies() {
                return Err(Error::UdpAggregateNeedsBtf);
            }
            // The range as the kernel programs got it at load, read once: a
            // reading must class ports as the kernel did.
            let ephemeral = w.host.ephemeral_ports();
            w.aggregate = Some(UdpAggregate::new(every, ephemeral, Instant::now()));
        }
        // Attached first, scanned second: whatever changes meanwhile waits
        // in the ring buffer and is reconciled here; the opens among it
        // also name owners the scan could not see.
        let scan_start_ns = w.host.boot_now_ns();
        let scan = w.scan()?;
        w.policy.scan_end_ns = w.host.boot_now_ns();
        w.source.read_now(&mut w.pending);
        w.prepare_pending();
        w.seed_udp_owners(&scan.listeners)?;
        w.table.seed(scan.listeners);
        w.table.adopt_startup_opens(&w.pending, scan_start_ns);
        let baseline: Vec<Listener> = w.table.listeners().cloned().collect();
        // What came and went before the scan ended, on sockets the
        // baseline does not hold, is told first, in order: a port the
        // baseline shows again after it then reads right. Events on the
        // baseline's own sockets follow it.
        let scan_end = w.policy.scan_end_ns;
        let pending = std::mem::take(&mut w.pending);
        let (early, late): (Vec<_>, Vec<_>) = {
            let is_history = w.table.history(&pending, scan_start_ns, scan_end);
            pending.into_iter().partition(|e| is_history(e))
        };
        w.pending = early;
        let mut events = Vec::new();
        w.apply_pending(&mut events, None);
        w.pending = late;
        let now = w.host.wall_now();
        events.extend(baseline_events(&baseline, Source::Baseline, now));
        Ok((w, events))
    }

    pub(super) fn table(&self) -> &ListenerTable {
        &self.table
    }

    pub(super) fn host(&self) -> &dyn Host {
        self.host.as_ref()
    }

    pub(super) fn host_mut(&mut self) -> &mut dyn Host {
        self.host.as_mut()
    }

    pub(super) fn listen_confirm_missing(&self) -> Option<&str> {
        self.source.listen_confirm_missing()
    }

    pub(super) fn udp_missing(&self) -> Option<&str> {
        self.source.udp_missing()
    }

    /// UDP sockets a scan found: the kernel learns their owners, so that
    /// their release is reported (no event told it of their bind). The
    /// release program is attached to their cgroups first; a socket whose
    /// cgroup cannot be covered keeps no owner (a recorded one would never
    /// be taken), and its close is left to a resync.
    fn seed_udp_owners(&mut self, listeners: &[Listener]) -> Result<()> {
        let udp: Vec<Listener> = listeners
            .iter()
            .filter(|l| l.proto == crate::event::Proto::Udp)
            .cloned()
            .collect();
        let udp = udp_seeds::covered(self.source.as_mut(), &udp);
        if udp.is_empty() {
            return Ok(());
        }
        self.source.seed_owners(&udp)
    }

    /// A UDP bind where no release program ran: the program is attached
    /// to the socket's cgroup, its owner recorded, and the socket looked
    /// for again shortly (it may have been released before the attach).
    /// Where the cgroup cannot be covered, a resync brought forward
    /// settles its port.
    fn cover_unseen(&mut self, ev: &KernelEvent) -> Result<()> {
        let seeds = udp_seeds::covered(self.source.as_mut(), &[ev.listener()]);
        if seeds.is_empty() {
            self.schedule.unresolved(Instant::now());
            return Ok(());
        }
        self.source.seed_owners(&seeds)?;
        if !self.unseen.add(ev.clone(), Instant::now()) {
            self.doubt(ev);
        }
        Ok(())
    }

    /// Takes back a recorded owner whose socket is gone or left; a
    /// failure leaves it for a resync.
    fn take_owner(&mut self, cookie: u64) {
        if let Err(e) = self.source.unseed_owner(cookie) {
            tracing::warn!("cannot take back a UDP socket's owner: {e}");
        }
    }

    /// Leaves an unseen socket, whose owner is recorded, to a resync
    /// brought forward: it keeps the owner if it finds the socket. Past
    /// the bound, the owner is taken now and the close left to the
    /// interval resync.
    fn doubt(&mut self, open: &KernelEvent) {
        let now = Instant::now();
        if self.unseen.doubt(open, now) {
            self.schedule.unresolved(now);
        } else {
            self.take_owner(open.sock);
        }
    }

    /// Looks for the unseen sockets due in their namespaces' tables (a
    /// miss read twice). One gone, whose owner is still recorded (so the
    /// release program did not see its release), is reported closed now;
    /// one there is looked for again, then left to the program; one whose
    /// namespace cannot be read is looked for again, then doubted.
    fn check_unseen(&mut self, out: &mut Vec<PortEvent>) {
        let now = Instant::now();
        let due = self.unseen.take_due(now);
        if due.is_empty() {
            return;
        }
        let first = self.host.udp_sockets(&UnseenBinds::owners(&due));
        let missed = UnseenBinds::missed(&due, &first);
        let second = if missed.is_empty() {
            UdpTables::default()
        } else {
            self.host.udp_sockets(&missed)
        };
        for u in due {
            let found = UnseenBinds::judge(&u, &first, &second);
            tracing::debug!(
                "UDP socket {:#x} bound before its cgroup was covered: {found:?}",
                u.open.sock
            );
            match found {
                Found::Gone => match self.source.unseed_owner(u.open.sock) {
                    // Unless a resync closed it already.
                    Ok(true) if self.table.has_id(u.open.sock) => {
                        let close = KernelEvent {
                            kind: SockEventKind::Closed,
                            ts_ns: self.host.boot_now_ns(),
                            closer_tgid: 0,
                            release_unseen: None,
                            ..u.open
                        };
                        let ts = self.clock.to_wall(close.ts_ns);
                        self.table.apply(&close, ts, self.policy, out);
                    }
                    // The program saw its release, or a resync did.
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("cannot take back a UDP socket's owner: {e}");
                        self.doubt(&u.open);
                    }
                },
                Found::There => {
                    let _left_to_the_program = self.unseen.again(u, now);
                }
                Found::Unknown => {
                    if let Some(u) = self.unseen.again(u, now) {
                        self.doubt(&u.open);
                    }
                }
            }
        }
    }

    pub(super) fn set_connections(&mut self, on: bool) -> Result<()> {
        self.source.set_connections(on)
    }

    pub(super) fn request_resync(&mut self) {
        self.schedule.request(Instant::now());
    }

    /// Watches the tree of `root` too: seeded in the kernel's watched set
    /// now, and a resync reports the listeners it holds already.
    pub(super) fn add_root(&mut self, root: u32) -> Result<()> {
        if self.roots.contains(&root) {
            return Ok(());
        }
        self.seed_tree(root)?;
        self.roots.push(root);
        self.request_resync();
        Ok(())
    }

    /// Stops watching the tree of `root`: its processes leave the watched
    /// set (those also below another root move to that tree), and a
    /// resync reports its listeners closed to this watch.
    pub(super) fn remove_root(&mut self, root: u32) -> Result<()> {
        if !self.roots.contains(&root) {
            return Ok(());
        }
        let others: Vec<u32> = self.roots.iter().copied().filter(|&r| r != root).collect();
        let links = if others.is_empty() {
            Vec::new()
        } else {
            self.host.parent_links()?
        };
        let stays: Vec<(u32, HashSet<u32>)> = others
            .iter()
            .map(|&r| (r, descendants(r, &links)))
            .collect();
        // A child forked meanwhile by a leaving process carries the
        // leaving label too: again until none is left.
        for _ in 0..8 {
            let mut leaving: HashSet<u32> = self.source.watched_under(root).into_iter().collect();
            if leaving.is_empty() {
                break;
            }
            for (other, tree) in &stays {
                let stay: Vec<u32> = tree.iter().copied().filter(|p| leaving.remove(p)).collect();
                self.source.watch_pids(&stay, *other)?;
            }
            let leaving: Vec<u32> = leaving.into_iter().collect();
            self.source.unwatch_pids(&leaving)?;
        }
        // Only once the kernel is told: a failure leaves it a root, to be
        // removed again.
        self.roots.retain(|&r| r != root);
        self.request_resync();
        Ok(())
    }

    /// Puts `root` and its current descendants in the kernel's watched set.
    /// The fork program is already attached, so a child forked from now on
    /// by a watched parent joins by itself; repeating the walk until it
    /// finds nobody new closes the gap of forks made while it ran.
    fn seed_tree(&mut self, root: u32) -> Result<()> {
        let mut seeded = HashSet::new();
        for _ in 0..8 {
            let links = self.host.parent_links()?;
            let tree = descendants(root, &links);
            let new: Vec<u32> = tree.difference(&seeded).copied().collect();
            if new.is_empty() {
                break;
            }
            self.source.watch_pids(&new, root)?;
            seeded.extend(new);
        }
        Ok(())
    }

    fn scan(&mut self) -> Result<Scan> {
        let tree = self.filter.pid.is_some();
        let source = &self.source;
        let owner_ok = |pid: u32| !tree || (pid != 0 && source.is_watched(pid));
        let mut scan = self.host.scan_listeners(&self.queries, &owner_ok)?;
        let ephemeral = self.host.ephemeral_ports();
        let table = &self.table;
        scan.listeners
            .retain(|l| super::counts_as_bound(l, &ephemeral, |c| table.has_id(c)));
        if !self.netns_known {
            // Events carry no namespace: compare on address and port alone.
            for l in &mut scan.listeners {
                l.netns = 0;
            }
            let read = !scan.namespaces.is_empty();
            scan.namespaces.clear();
            if read {
                scan.namespaces.insert(0, false);
            }
        }
        scan.listeners.retain(|l| self.filter.admits(l));
        for l in &mut scan.listeners {
            l.container = self.host.container(&l.cgroup);
        }
        Ok(scan)
    }

    pub(super) async fn next_reports(&mut self) -> Result<Vec<Report>> {
        // Drops of what was read (the previous batch, or start-up) are
        // checked once its reports are out, and only when a buffer's worth
        // was read since the last look: the counter reads (syscalls) stay
        // off the event's path, and still come before any wait.
        if self.source.loss_possible() {
            self.check_drops()?;
        }
        let due = self.due();
        if let Some((at, what)) = due
            && at <= Instant::now()
        {
            return self.run_due(what);
        }
        if self.pending.is_empty() {
            let read = std::future::poll_fn(|cx| self.source.poll_read(cx, &mut self.pending));
            match due {
                Some((at, what)) => {
                    tokio::select! {
                        r = read => r?,
                        _ = tokio::time::sleep_until(at) => return self.run_due(what),
                    }
                }
                None => read.await?,
            }
        }
        crate::bench_stages::mark_drained();
        let mut out = Vec::with_capacity(self.pending.len());
        self.apply_pending(&mut out, None);
        let mut reports: Vec<Report> = out.into_iter().map(Report::Port).collect();
        reports.extend(self.connections.drain(..).map(Report::Connection));
        Ok(reports)
    }

    /// The next timed work: a resync, the UDP tally's reading or a look
    /// for unconfirmed opens, whichever comes first.
    fn due(&self) -> Option<(Instant, Due)> {
        let resync = self
            .schedule
            .due()
            .map(|(at, reason)| (at, Due::Resync(reason)));
        let tally = self.aggregate.as_ref().map(|a| (a.next(), Due::UdpTally));
        let look = self.next_look.map(|at| (at, Due::Look));
        let unseen = self.unseen.next().map(|at| (at, Due::Unseen));
        [resync, tally, look, unseen]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    fn run_due(&mut self, what: Due) -> Result<Vec<Report>> {
        match what {
            Due::Resync(reason) => self.resync(reason),
            Due::UdpTally => self.udp_tally(),
            Due::Look => {
                self.next_look = None;
                let mut out = Vec::new();
                self.resolve_unbound(&mut out, true);
                Ok(out.into_iter().map(Report::Port).collect())
            }
            Due::Unseen => {
                let mut out = Vec::new();
                self.check_unseen(&mut out);
                Ok(out.into_iter().map(Report::Port).collect())
            }
        }
    }

    /// The aggregate mode's reading, every settle interval: the binds of
    /// the interval by process and port class, and, one by one, the
    /// sockets those processes still hold that the table does not.
    fn udp_tally(&mut self) -> Result<Vec<Report>> {
        let Some(aggregate) = self.aggregate.as_mut() else {
            return Ok(Vec::new());
        };
        let found = aggregate.read(
            Instant::now(),
            self.source.as_mut(),
            self.host.as_mut(),
            &self.table,
            &self.filter,
            self.netns_known,
        )?;
        if found.unaccounted {
            self.request_resync();
        }
        let mut reports = Vec::with_capacity(found.opened.len() + found.summaries.len());
        for (l, ts) in found.opened {
            reports.extend(self.table.found(l, ts, Source::Aggregate).map(Report::Port));
        }
        reports.extend(found.summaries.into_iter().map(Report::UdpSummary));
        Ok(reports)
    }

    /// Fills in what decoding cannot: namespace policy and cgroup paths.
    fn prepare_pending(&mut self) {
        for ev in self.pending.iter_mut().filter(|e| e.cgroup.is_empty()) {
            if !self.netns_known {
                ev.netns = 0;
            }
            ev.cgroup = self.host.cgroup_path(ev.cgroup_id);
            ev.container = self.host.container(&ev.cgroup);
        }
    }

    /// Applies buffered kernel events; with `since`, returns what events
    /// at or after that boot time touched.
    fn apply_pending(&mut self, out: &mut Vec<PortEvent>, since: Option<u64>) -> Unsettled {
        let mut touched = Unsettled::default();
        self.prepare_pending();
        // Both clocks read for every batch: a step of the wall clock (NTP,
        // a manual correction) shows in the next events' times.
        self.clock = BootClock::new(self.host.boot_now_ns(), self.host.wall_now());
        self.events += self.pending.len() as u64;
        // Drained in place: the buffer keeps its capacity for the next
        // batch instead of growing again from nothing.
        let mut pending = std::mem::take(&mut self.pending);
        for ev in pending.drain(..) {
            if since.is_some_and(|t| ev.ts_ns >= t) {
                touched.add(&ev);
            }
            let ts = self.clock.to_wall(ev.ts_ns);
            if matches!(ev.kind, SockEventKind::Connect | SockEventKind::Accept) {
                self.connection(&ev, ts);
                continue;
            }
            if !self.filter.admits_socket(ev.proto, ev.address, ev.netns) {
                continue;
            }
            self.table.apply(&ev, ts, self.policy, out);
            if ev.kind == SockEventKind::Opened
                && ev.release_unseen.is_some()
                && let Err(e) = self.cover_unseen(&ev)
            {
                // Its close is left to a resync, brought forward.
                tracing::warn!("a UDP socket's release cannot be watched: {e}");
                self.schedule.unresolved(Instant::now());
            }
        }
        self.pending = pending;
        self.resolve_unbound(out, false);
        touched
    }

    /// Turns a connection event into a [`Connection`]. An accepted one is
    /// attributed to the owner of the listener that accepted it.
    fn connection(&mut self, ev: &KernelEvent, ts: DateTime<chrono::Utc>) {
        let Some(remote) = ev.remote else { return };
        let outbound = ev.kind == SockEventKind::Connect;
        let (pid, comm) = if outbound {
            (ev.tgid, ev.comm.clone())
        } else {
            match self.table.listener_for(ev.netns, ev.address, ev.port) {
                Some(l) => (l.pid, l.comm.clone()),
                None => (0, String::new()),
            }
        };
        if self.filter.pid.is_some() && !self.source.is_watched(pid) {
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

    /// Finds the ports of listeners opened without `bind()` and reported
    /// by the state change alone (no listen confirmation), and whether
    /// unconfirmed opens (a `listen()` the kernel saw no return of) are
    /// listening: by now the kernel has assigned their ports, and the
    /// socket tables show them. One table read
    /// per namespace and one descriptor walk per owner, for the whole
    /// batch; a listener still not found at its last look is left to a
    /// resync (and counted), so that no backlog of them builds up and
    /// delays other events.
    ///
    /// After a batch (`timed` false) an unconfirmed open gets only its
    /// first look: events another user makes must not use up its looks
    /// (nor cost a table read each); the rest come on their schedule.
    fn resolve_unbound(&mut self, out: &mut Vec<PortEvent>, timed: bool) {
        let pending: Vec<(u64, Listener, bool)> = self
            .table
            .unbound()
            .filter(|(_, u)| timed || !u.unconfirmed || u.misses == 0)
            .map(|(id, u)| (id, u.listener.clone(), u.unconfirmed))
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut pids: Vec<u32> = pending.iter().map(|(_, l, _)| l.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        // By cookie: the namespaces' tables, whoever holds the socket.
        // Without: the owners' descriptors.
        let listening = if pending.iter().any(|(_, l, _)| l.cookie.is_some()) {
            let mut owners: Vec<(u32, u64)> =
                pending.iter().map(|(_, l, _)| (l.pid, l.netns)).collect();
            owners.sort_unstable();
            owners.dedup();
            self.host.listening_sockets(&owners)
        } else {
            Vec::new()
        };
        let held = if pending.iter().any(|(_, l, _)| l.cookie.is_none()) {
            self.host.held_listeners(&pids)
        } else {
            Vec::new()
        };
        let by_cookie: HashMap<u64, &HeldSocket> = listening
            .iter()
            .filter_map(|h| Some((h.cookie?, h)))
            .collect();
        let mut by_owner: HashMap<(u32, IpAddr), Vec<&HeldSocket>> = HashMap::new();
        for h in &held {
            by_owner.entry((h.pid, h.local.ip())).or_default().push(h);
        }
        let known = self.table.ports_by_owner();
        let mut taken = HashSet::new();
        for (id, l, unconfirmed) in pending {
            // By cookie where events carry one; else the first socket of
            // the owner at that address that the table does not hold yet.
            let found = match l.cookie {
                Some(cookie) => by_cookie.get(&cookie).copied(),
                None => by_owner
                    .get(&(l.pid, l.address))
                    .into_iter()
                    .flatten()
                    .find(|h| {
                        !taken.contains(&(h.pid, h.local))
                            && !known
                                .get(&(l.pid, l.netns))
                                .is_some_and(|k| k.contains(&(h.local.ip(), h.local.port())))
                    })
                    .copied(),
            };
            match found {
                Some(h) => {
                    taken.insert((h.pid, h.local));
                    out.extend(self.table.bind_unbound(id, h.local.port()));
                }
                None if unconfirmed => {
                    let misses = self.table.unbound_missed(id);
                    if misses >= UNCONFIRMED_LOOKS {
                        self.give_up_unbound(id);
                    } else {
                        let step = UNCONFIRMED_BACKOFF
                            .saturating_mul(4u32.saturating_pow(misses - 1))
                            .min(UNCONFIRMED_LOOK_CAP);
                        let at = Instant::now() + step;
                        self.next_look = Some(self.next_look.map_or(at, |n| n.min(at)));
                    }
                }
                None if self.table.unbound_missed(id) >= UNBOUND_LOOKS => self.give_up_unbound(id),
                None => {}
            }
        }
    }

    /// Leaves an open whose port was not found to a resync, and counts it.
    fn give_up_unbound(&mut self, id: u64) {
        self.table.give_up_unbound(id);
        self.unresolved += 1;
        self.schedule.unresolved(Instant::now());
    }

    fn check_drops(&mut self) -> Result<()> {
        let drops = self.source.read_counters()?.ring_full;
        self.schedule.drops_counted(drops, Instant::now());
        Ok(())
    }

    /// Doubted UDP sockets (see `doubt`) that the scan, which started at
    /// `started`, did not find are gone: their recorded owners are taken
    /// (the table's reconcile reports the close). Those found keep
    /// theirs, and so do those of namespaces it did not reach (counted as
    /// unresolved); those doubted since wait for the next resync.
    fn settle_doubts(&mut self, scan: &Scan, started: Instant) {
        if !self.unseen.has_doubts() {
            return;
        }
        let settled = self.unseen.settle(scan, started);
        for cookie in settled.gone {
            self.take_owner(cookie);
        }
        // Open for the table as for the release program, as the resync
        // could not tell.
        self.unresolved += settled.unreached as u64;
        if self.unseen.has_doubts() {
            self.schedule.unresolved(Instant::now());
        }
    }

    fn resync(&mut self, reason: ResyncReason) -> Result<Vec<Report>> {
        let started_at = Instant::now();
        self.schedule.start(started_at);
        let started = self.host.boot_now_ns();
        let scan = self.scan()?;
        // Events up to now: the ones older than the scan are already in it;
        // keys that changed while it ran are left for the next resync.
        self.source.read_now(&mut self.pending);
        let mut out = Vec::new();
        let unsettled = self.apply_pending(&mut out, Some(started));
        self.check_drops()?;
        // After lost events, a key that changed during the scan may still
        // hide a lost close or open: one more scan settles it.
        let disagreements = self.table.unsettled_disagreements(&scan, &unsettled);
        self.schedule.finish(reason, disagreements, Instant::now());
        self.settle_doubts(&scan, started_at);
        let now = self.host.wall_now();
        let fixes = self.table.reconcile(scan, &unsettled, now);
        let summary = ResyncSummary {
            reason,
            opened: fixes.iter().filter(|e| e.change == Change::Opened).count(),
            closed: fixes.iter().filter(|e| e.change == Change::Closed).count(),
            drops: self.schedule.drops(),
            ts: self.host.wall_now(),
        };
        let found: Vec<Listener> = fixes
            .iter()
            .filter(|e| e.change == Change::Opened)
            .map(|e| e.listener.clone())
            .collect();
        self.seed_udp_owners(&found)?;
        out.extend(fixes);
        self.resyncs += 1;
        let mut reports: Vec<Report> = out.into_iter().map(Report::Port).collect();
        reports.push(Report::Resync(summary));
        Ok(reports)
    }

    pub(super) fn stats(&self) -> Stats {
        let counters = match self.source.counters() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot read the kernel's counters: {e}");
                Default::default()
            }
        };
        Stats {
            events: self.events,
            drops: counters.ring_full,
            owners_full: counters.owners_full,
            binds_full: counters.binds_full,
            resyncs: self.resyncs,
            malformed: self.source.malformed(),
            unresolved: self.unresolved,
        }
    }
}
