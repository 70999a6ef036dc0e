//! The table of open listeners: pairs every close with its open and
//! reconciles the events with procfs scans. Pure logic, no OS access.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use portwatch_common::SockEventKind;

use crate::event::{Change, KernelEvent, Listener, ListenerKey, PortEvent, Source};

/// Open listeners, keyed by kernel socket address once the kernel has told
/// us about them, and by protocol, namespace, address and port while only
/// a procfs scan has.
#[derive(Debug, Default)]
pub struct ListenerTable {
    by_sk: HashMap<u64, Listener>,
    /// Listeners from a procfs scan: /proc shows no socket address, so their
    /// close is matched on their key.
    scanned: Vec<Listener>,
    /// Opened by `listen()` without `bind()`: the port is not known yet.
    /// Kept with the time of the open.
    unbound: HashMap<u64, (Listener, DateTime<Utc>)>,
}

/// How [`ListenerTable::apply`] pairs what it cannot match by address.
#[derive(Clone, Copy, Debug, Default)]
pub struct PairingPolicy {
    /// Boot time at which the start-up scan finished. Earlier events may
    /// already be part of the scan.
    pub scan_end_ns: u64,
    /// A filter is active: the close of a listener never seen open is not
    /// ours (the kernel filters opens, but not closes of listeners older
    /// than the watcher).
    pub drop_unknown_closes: bool,
}

fn port_event(change: Change, listener: Listener, ts: DateTime<Utc>, source: Source) -> PortEvent {
    PortEvent {
        change,
        listener,
        ts,
        source,
    }
}

impl ListenerTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the listeners of a procfs scan taken at start-up.
    pub fn seed(&mut self, listeners: impl IntoIterator<Item = Listener>) {
        self.scanned.extend(listeners);
    }

    /// Moves the scanned listener that the kernel's open `ev` describes
    /// (same key, same owner or an owner the scan did not see) under its
    /// socket address, so its close pairs by address and names the owner.
    /// Returns false when the scan holds no such listener.
    fn adopt(&mut self, ev: &KernelEvent) -> bool {
        let key = ev.key();
        let Some(i) = self
            .scanned
            .iter()
            .position(|l| l.key() == key && (l.pid == ev.tgid || l.pid == 0))
        else {
            return false;
        };
        let mut known = self.scanned.swap_remove(i);
        if known.pid == 0 {
            known.pid = ev.tgid;
            known.comm = ev.comm.clone();
            known.cgroup = ev.cgroup.clone();
        }
        known.skaddr = Some(ev.skaddr);
        self.by_sk.insert(ev.skaddr, known);
        true
    }

    /// Pairs scanned listeners with the kernel's open events that arrived
    /// while the scan ran. A paired listener closes by socket address, and
    /// when the scan found no owner (the socket was opened after the
    /// process list was read, or its fd was already gone), the event names
    /// it. Call after [`Self::seed`], before reporting the baseline.
    ///
    /// `scan_start_ns` is the boot time at which the scan began: a socket
    /// closed before it cannot be the one the scan saw (the port may have
    /// been reused since), so it is left to [`Self::apply`].
    pub fn adopt_startup_opens(&mut self, events: &[KernelEvent], scan_start_ns: u64) {
        let closed: HashSet<u64> = events
            .iter()
            .filter(|e| e.kind == SockEventKind::Closed && e.ts_ns < scan_start_ns)
            .map(|e| e.skaddr)
            .collect();
        for ev in events.iter().filter(|e| {
            e.kind == SockEventKind::Opened && e.port != 0 && !closed.contains(&e.skaddr)
        }) {
            self.adopt(ev);
        }
    }

    /// Every open listener with a known port.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.by_sk.values().chain(self.scanned.iter())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_sk.len() + self.scanned.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Listeners opened without `bind()` whose port is still unknown.
    pub fn unbound(&self) -> impl Iterator<Item = (u64, &Listener)> {
        self.unbound.iter().map(|(sk, (l, _))| (*sk, l))
    }

    /// The owner of the TCP listener that accepts connections on `port` at
    /// `address` (or on a wildcard address) in namespace `netns`.
    pub fn listener_for(
        &self,
        netns: u64,
        address: std::net::IpAddr,
        port: u16,
    ) -> Option<&Listener> {
        let mut candidates = self
            .listeners()
            .filter(|l| l.proto == crate::event::Proto::Tcp && l.netns == netns && l.port == port);
        let first = candidates.next()?;
        if first.address == address {
            return Some(first);
        }
        std::iter::once(first)
            .chain(candidates)
            .find(|l| l.address == address || l.address.is_unspecified())
    }

    /// The sockets a process already has in the table, in one namespace.
    pub fn ports_of(&self, pid: u32, netns: u64) -> HashSet<(std::net::IpAddr, u16)> {
        self.listeners()
            .filter(|l| l.pid == pid && l.netns == netns)
            .map(|l| (l.address, l.port))
            .collect()
    }

    /// Gives an unbound listener its port, found by other means (procfs),
    /// and reports it opened.
    pub fn bind_unbound(&mut self, skaddr: u64, port: u16) -> Option<PortEvent> {
        let (mut listener, ts) = self.unbound.remove(&skaddr)?;
        listener.port = port;
        self.by_sk.insert(skaddr, listener.clone());
        Some(port_event(Change::Opened, listener, ts, Source::Ebpf))
    }

    /// Applies one kernel event and appends what to report.
    pub fn apply(
        &mut self,
        ev: &KernelEvent,
        ts: DateTime<Utc>,
        policy: PairingPolicy,
        out: &mut Vec<PortEvent>,
    ) {
        let during_startup = ev.ts_ns <= policy.scan_end_ns;
        match ev.kind {
            SockEventKind::Opened => {
                let mut listener = ev.listener();
                listener.opened_at = Some(ts);
                if during_startup && listener.port != 0 && self.by_sk.contains_key(&ev.skaddr) {
                    // Adopted by the baseline already.
                    return;
                }
                // One socket address holds one live socket: whatever the
                // table still has at this address closed, and its close was
                // lost (a full ring buffer). An unbound one was never
                // reported, so it just goes.
                self.unbound.remove(&ev.skaddr);
                if let Some(stale) = self.by_sk.remove(&ev.skaddr) {
                    out.push(port_event(Change::Closed, stale, ts, Source::Ebpf));
                }
                if listener.port == 0 {
                    // The kernel assigns the port right after this event.
                    self.unbound.insert(ev.skaddr, (listener, ts));
                    return;
                }
                // Already reported by the scan: from now on its close pairs
                // by socket address, and names the owner.
                if during_startup && self.adopt(ev) {
                    return;
                }
                self.by_sk.insert(ev.skaddr, listener.clone());
                out.push(port_event(Change::Opened, listener, ts, Source::Ebpf));
            }
            SockEventKind::Closed => {
                if let Some((mut pending, opened_at)) = self.unbound.remove(&ev.skaddr) {
                    // Port 0 at close: the listen() failed, no port ever
                    // existed. Otherwise the close tells the port.
                    if ev.port != 0 {
                        pending.port = ev.port;
                        out.push(port_event(
                            Change::Opened,
                            pending.clone(),
                            opened_at,
                            Source::Ebpf,
                        ));
                        out.push(port_event(Change::Closed, pending, ts, Source::Ebpf));
                    }
                    return;
                }
                if let Some(known) = self.by_sk.remove(&ev.skaddr) {
                    out.push(port_event(Change::Closed, known, ts, Source::Ebpf));
                    return;
                }
                if ev.port == 0 {
                    return;
                }
                let key = ev.key();
                if let Some(i) = self.scanned.iter().position(|l| l.key() == key) {
                    let known = self.scanned.swap_remove(i);
                    out.push(port_event(Change::Closed, known, ts, Source::Ebpf));
                    return;
                }
                // Never seen open. With its owner known, the open was lost
                // (a full ring buffer): report it. Without, it is a listener
                // older than the watcher that the scan did not see or the
                // filter excluded.
                if ev.owner_known || !(during_startup || policy.drop_unknown_closes) {
                    out.push(port_event(Change::Closed, ev.listener(), ts, Source::Ebpf));
                }
            }
            // Connections are not listeners: the engine routes them apart.
            SockEventKind::Connect | SockEventKind::Accept => {}
        }
    }

    /// How many of the `unsettled` keys the table and `scan` disagree on.
    /// [`reconcile`](Self::reconcile) leaves those alone; after lost events
    /// one of them may hide a loss that only a later scan can settle.
    pub fn unsettled_disagreements(
        &self,
        scan: &[Listener],
        unsettled: &HashSet<ListenerKey>,
    ) -> usize {
        let mut diff: HashMap<ListenerKey, i64> = HashMap::new();
        for l in scan.iter().filter(|l| unsettled.contains(&l.key())) {
            *diff.entry(l.key()).or_default() += 1;
        }
        for l in self.listeners().filter(|l| unsettled.contains(&l.key())) {
            *diff.entry(l.key()).or_default() -= 1;
        }
        diff.values().filter(|d| **d != 0).count()
    }

    /// Makes the table agree with a procfs scan and reports the differences
    /// (`source: resync`). Keys in `unsettled` changed while the scan ran,
    /// so the scan may be stale for them: they are left alone.
    pub fn reconcile(
        &mut self,
        scan: Vec<Listener>,
        unsettled: &HashSet<ListenerKey>,
        ts: DateTime<Utc>,
    ) -> Vec<PortEvent> {
        let mut want: HashMap<ListenerKey, Vec<Listener>> = HashMap::new();
        for l in scan {
            if !unsettled.contains(&l.key()) {
                want.entry(l.key()).or_default().push(l);
            }
        }
        let mut have: HashMap<ListenerKey, usize> = HashMap::new();
        for l in self.listeners() {
            *have.entry(l.key()).or_default() += 1;
        }
        let mut out = Vec::new();

        // Too many in the table: closes that were lost.
        let mut excess: HashMap<ListenerKey, usize> = HashMap::new();
        for (key, n) in &have {
            if unsettled.contains(key) {
                continue;
            }
            let scanned = want.get(key).map_or(0, Vec::len);
            if *n > scanned {
                excess.insert(*key, n - scanned);
            }
        }
        let mut take = |l: &Listener| match excess.get_mut(&l.key()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        let mut gone = Vec::new();
        self.by_sk.retain(|_, l| {
            if take(l) {
                gone.push(l.clone());
                false
            } else {
                true
            }
        });
        self.scanned.retain(|l| {
            if take(l) {
                gone.push(l.clone());
                false
            } else {
                true
            }
        });
        out.extend(
            gone.into_iter()
                .map(|l| port_event(Change::Closed, l, ts, Source::Resync)),
        );

        // Owners the table lacked (pid 0) that the scan now knows: no
        // change to report, just better knowledge.
        for l in self
            .scanned
            .iter_mut()
            .chain(self.by_sk.values_mut())
            .filter(|l| l.pid == 0)
        {
            if let Some(found) = want
                .get(&l.key())
                .and_then(|v| v.iter().find(|s| s.pid != 0))
            {
                l.pid = found.pid;
                l.comm = found.comm.clone();
                l.cgroup = found.cgroup.clone();
            }
        }

        // Too few: opens that were lost.
        for (key, listeners) in want {
            let n = have.get(&key).copied().unwrap_or(0);
            for l in listeners.into_iter().skip(n) {
                self.scanned.push(l.clone());
                out.push(port_event(Change::Opened, l, ts, Source::Resync));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Proto;
    use std::net::IpAddr;

    const NS: u64 = 4026531840;

    fn ts() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn kev(
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
            netns: NS,
            address: addr.parse().unwrap(),
            port,
            comm: format!("p{pid}"),
            cgroup: String::new(),
            remote: None,
        }
    }

    fn key(addr: &str, port: u16) -> ListenerKey {
        ListenerKey {
            proto: Proto::Tcp,
            netns: NS,
            address: addr.parse().unwrap(),
            port,
        }
    }

    fn unknown_owner(mut ev: KernelEvent) -> KernelEvent {
        ev.owner_known = false;
        ev
    }

    fn scanned(addr: &str, port: u16, pid: u32) -> Listener {
        Listener {
            proto: Proto::Tcp,
            address: addr.parse::<IpAddr>().unwrap(),
            port,
            pid,
            comm: format!("p{pid}"),
            uid: 0,
            skaddr: None,
            inode: Some(42),
            netns: NS,
            cgroup: String::new(),
            opened_at: None,
        }
    }

    fn apply(t: &mut ListenerTable, ev: KernelEvent, policy: PairingPolicy) -> Vec<PortEvent> {
        let mut out = Vec::new();
        t.apply(&ev, ts(), policy, &mut out);
        out
    }

    fn startup(scan_end_ns: u64) -> PairingPolicy {
        PairingPolicy {
            scan_end_ns,
            drop_unknown_closes: false,
        }
    }

    #[test]
    fn close_keeps_the_owner_the_kernel_remembered() {
        let mut t = ListenerTable::new();
        let open = apply(
            &mut t,
            kev(SockEventKind::Opened, 10, 0xa, "0.0.0.0", 80, 1),
            startup(0),
        );
        assert_eq!(
            (open[0].change, open[0].listener.pid, open[0].source),
            (Change::Opened, 1, Source::Ebpf)
        );
        // The kernel names the owner (1) even though 2 closed it.
        let mut close = kev(SockEventKind::Closed, 20, 0xa, "0.0.0.0", 80, 1);
        close.closer_tgid = 2;
        let close = apply(&mut t, close, startup(0));
        assert_eq!(
            (close[0].change, close[0].listener.pid),
            (Change::Closed, 1)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn startup_open_already_in_scan_is_not_repeated() {
        let mut t = ListenerTable::new();
        t.seed([scanned("127.0.0.1", 8080, 5)]);
        assert!(
            apply(
                &mut t,
                kev(SockEventKind::Opened, 10, 0xb, "127.0.0.1", 8080, 5),
                startup(100)
            )
            .is_empty()
        );
        assert_eq!(t.len(), 1);
        let close = apply(
            &mut t,
            kev(SockEventKind::Closed, 200, 0xb, "127.0.0.1", 8080, 5),
            startup(100),
        );
        assert_eq!(
            (close[0].listener.pid, close[0].listener.inode),
            (5, Some(42))
        );
        assert!(t.is_empty());
    }

    #[test]
    fn startup_opens_name_the_owners_a_scan_missed() {
        let mut t = ListenerTable::new();
        t.seed([scanned("127.0.0.1", 7000, 0), scanned("127.0.0.1", 7001, 5)]);
        let opens = [
            kev(SockEventKind::Opened, 10, 0x70, "127.0.0.1", 7000, 9),
            kev(SockEventKind::Opened, 10, 0x71, "127.0.0.1", 7001, 5),
        ];
        t.adopt_startup_opens(&opens, 0);
        let mut owners: Vec<(u16, u32)> = t.listeners().map(|l| (l.port, l.pid)).collect();
        owners.sort();
        assert_eq!(owners, [(7000, 9), (7001, 5)]);
        for ev in opens {
            assert!(
                apply(&mut t, ev, startup(100)).is_empty(),
                "not reported twice"
            );
        }
        let close = apply(
            &mut t,
            kev(SockEventKind::Closed, 200, 0x70, "127.0.0.1", 7000, 9),
            startup(100),
        );
        assert_eq!((close[0].listener.pid, close[0].listener.port), (9, 7000));
    }

    #[test]
    fn startup_open_missing_from_scan_is_reported_with_its_close() {
        let mut t = ListenerTable::new();
        assert_eq!(
            apply(
                &mut t,
                kev(SockEventKind::Opened, 10, 0xc, "::1", 9, 3),
                startup(100)
            )
            .len(),
            1
        );
        assert_eq!(
            apply(
                &mut t,
                kev(SockEventKind::Closed, 11, 0xc, "::1", 9, 3),
                startup(100)
            )
            .len(),
            1
        );
    }

    #[test]
    fn unknown_closes_during_startup_or_under_a_filter_are_dropped() {
        let mut t = ListenerTable::new();
        let ev = || unknown_owner(kev(SockEventKind::Closed, 10, 0xd, "::", 22, 3));
        assert!(apply(&mut t, ev(), startup(100)).is_empty());
        let filtered = PairingPolicy {
            scan_end_ns: 0,
            drop_unknown_closes: true,
        };
        assert!(apply(&mut t, ev(), filtered).is_empty());
        // After start-up, without a filter, it is still reported: never lost.
        assert_eq!(apply(&mut t, ev(), startup(0))[0].listener.port, 22);
        // A close whose owner the kernel knew is reported even under a filter
        // (the kernel already filtered it): its open was lost.
        let known = kev(SockEventKind::Closed, 10, 0xd, "::", 22, 3);
        assert_eq!(apply(&mut t, known, filtered).len(), 1);
    }

    #[test]
    fn scanned_listener_close_matches_on_namespace_address_and_port() {
        let mut t = ListenerTable::new();
        t.seed([scanned("0.0.0.0", 22, 7), scanned("::", 22, 7)]);
        let mut other_ns = unknown_owner(kev(SockEventKind::Closed, 500, 0xe, "::", 22, 0));
        other_ns.netns = 1;
        assert_eq!(apply(&mut t, other_ns, startup(100))[0].listener.pid, 0);
        assert_eq!(t.len(), 2);
        let close = apply(
            &mut t,
            unknown_owner(kev(SockEventKind::Closed, 500, 0xe, "::", 22, 0)),
            startup(100),
        );
        assert_eq!(
            (close[0].listener.pid, close[0].listener.address.to_string()),
            (7, "::".to_string())
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn listen_without_bind_waits_for_its_port() {
        let mut t = ListenerTable::new();
        assert!(
            apply(
                &mut t,
                kev(SockEventKind::Opened, 10, 0xf, "0.0.0.0", 0, 4),
                startup(0)
            )
            .is_empty()
        );
        assert_eq!(t.unbound().count(), 1);
        let opened = t.bind_unbound(0xf, 40001).unwrap();
        assert_eq!(
            (opened.change, opened.listener.port),
            (Change::Opened, 40001)
        );
        let closed = apply(
            &mut t,
            kev(SockEventKind::Closed, 20, 0xf, "0.0.0.0", 40001, 4),
            startup(0),
        );
        assert_eq!(
            (closed[0].change, closed[0].listener.port),
            (Change::Closed, 40001)
        );
    }

    #[test]
    fn unbound_listener_closed_before_resolution_takes_the_close_port() {
        let mut t = ListenerTable::new();
        apply(
            &mut t,
            kev(SockEventKind::Opened, 10, 0xf, "::", 0, 4),
            startup(0),
        );
        let out = apply(
            &mut t,
            kev(SockEventKind::Closed, 11, 0xf, "::", 40002, 4),
            startup(0),
        );
        assert_eq!(
            out.iter()
                .map(|e| (e.change, e.listener.port))
                .collect::<Vec<_>>(),
            [(Change::Opened, 40002), (Change::Closed, 40002)]
        );
    }

    #[test]
    fn failed_listen_is_not_a_port() {
        let mut t = ListenerTable::new();
        apply(
            &mut t,
            kev(SockEventKind::Opened, 10, 0x10, "0.0.0.0", 0, 4),
            startup(0),
        );
        assert!(
            apply(
                &mut t,
                kev(SockEventKind::Closed, 11, 0x10, "0.0.0.0", 0, 4),
                startup(0)
            )
            .is_empty()
        );
        assert!(t.is_empty() && t.unbound().count() == 0);
    }

    #[test]
    fn reconcile_reports_lost_opens_and_closes() {
        let mut t = ListenerTable::new();
        apply(
            &mut t,
            kev(SockEventKind::Opened, 1, 0x1, "127.0.0.1", 1000, 1),
            startup(0),
        );
        apply(
            &mut t,
            kev(SockEventKind::Opened, 1, 0x2, "127.0.0.1", 1001, 1),
            startup(0),
        );
        // The scan: 1000 closed (its close was lost), 1002 opened (open lost).
        let scan = vec![scanned("127.0.0.1", 1001, 1), scanned("127.0.0.1", 1002, 1)];
        let out = t.reconcile(scan, &HashSet::new(), ts());
        let mut got: Vec<_> = out
            .iter()
            .map(|e| (e.change, e.listener.port, e.source))
            .collect();
        got.sort_by_key(|g| g.1);
        assert_eq!(
            got,
            [
                (Change::Closed, 1000, Source::Resync),
                (Change::Opened, 1002, Source::Resync)
            ]
        );
        let mut ports: Vec<u16> = t.listeners().map(|l| l.port).collect();
        ports.sort();
        assert_eq!(ports, [1001, 1002]);
        // A second pass finds nothing left to fix.
        let scan = vec![scanned("127.0.0.1", 1001, 1), scanned("127.0.0.1", 1002, 1)];
        assert!(t.reconcile(scan, &HashSet::new(), ts()).is_empty());
    }

    #[test]
    fn reconcile_leaves_unsettled_keys_alone_and_counts_duplicates() {
        let mut t = ListenerTable::new();
        t.seed([scanned("0.0.0.0", 80, 1)]);
        // SO_REUSEPORT: two sockets on one key in the scan, one in the table.
        let two = vec![
            scanned("0.0.0.0", 80, 1),
            scanned("0.0.0.0", 80, 2),
            scanned("::1", 5, 1),
        ];
        let unsettled: HashSet<ListenerKey> = [key("::1", 5)].into();
        assert_eq!(t.unsettled_disagreements(&two, &unsettled), 1);
        let out = t.reconcile(two, &unsettled, ts());
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].change, out[0].listener.pid), (Change::Opened, 2));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn unsettled_keys_that_agree_are_not_counted() {
        let mut t = ListenerTable::new();
        t.seed([scanned("0.0.0.0", 80, 1), scanned("0.0.0.0", 81, 1)]);
        let unsettled: HashSet<ListenerKey> = [key("0.0.0.0", 80), key("0.0.0.0", 81)].into();
        // 80 agrees; 81 is in the table but gone from the scan.
        let scan = vec![scanned("0.0.0.0", 80, 1)];
        assert_eq!(t.unsettled_disagreements(&scan, &unsettled), 1);
        assert_eq!(t.unsettled_disagreements(&scan, &HashSet::new()), 0);
    }

    #[test]
    fn a_reused_socket_address_closes_the_listener_whose_close_was_lost() {
        let mut t = ListenerTable::new();
        apply(
            &mut t,
            kev(SockEventKind::Opened, 10, 0xa, "127.0.0.1", 1000, 1),
            startup(0),
        );
        // The close of 1000 was lost; the kernel reuses the address 0xa.
        let out = apply(
            &mut t,
            kev(SockEventKind::Opened, 20, 0xa, "127.0.0.1", 2000, 2),
            startup(0),
        );
        let got: Vec<_> = out.iter().map(|e| (e.change, e.listener.port)).collect();
        assert_eq!(got, [(Change::Closed, 1000), (Change::Opened, 2000)]);
        let ports: Vec<u16> = t.listeners().map(|l| l.port).collect();
        assert_eq!(ports, [2000]);
    }
}
