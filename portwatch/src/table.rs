//! The table of open listeners: pairs every close with its open and
//! reconciles the events with procfs scans. Pure logic, no OS access.
//!
//! A socket's identity is its cookie where the kernel gives one (the BTF
//! tracepoint and the listen confirmation; sock_diag scans carry the same
//! cookie), so events and scans pair exactly. Events of the classic
//! tracepoint carry the socket's kernel address instead, which no scan
//! shows, and /proc/net text shows no cookie: those are paired on their
//! key (protocol, namespace, address, port).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use portwatch_common::SockEventKind;

use crate::event::{Change, KernelEvent, Listener, ListenerKey, PortEvent, Scan, Source};

/// Open listeners.
#[derive(Debug, Default)]
pub(crate) struct ListenerTable {
    /// Whether event identities are socket cookies, comparable with the
    /// cookies of a sock_diag scan.
    cookies: bool,
    /// Listeners by identity: every listener an event told us about, and,
    /// with cookies, every listener a sock_diag scan found.
    by_id: HashMap<u64, Listener>,
    /// Listeners from a scan that no event identity can name: their close
    /// is matched on their key.
    anonymous: Vec<Listener>,
    /// Opened by `listen()` without `bind()` and reported by the state
    /// change alone (no listen confirmation), or sent unconfirmed: the
    /// port, or whether it listens at all, is not known yet.
    unbound: HashMap<u64, Unbound>,
    /// Cookie -> kernel time of its last close, for a while: an open
    /// older than its socket's close (the confirmation racing a close on
    /// another CPU) is dropped, a socket listening again is not.
    closed_at: HashMap<u64, u64>,
}

/// A listener whose port is still to be found.
#[derive(Clone, Debug)]
pub(crate) struct Unbound {
    pub listener: Listener,
    pub opened_at: DateTime<Utc>,
    /// Lookups that did not find it so far.
    pub misses: u32,
    /// Its `listen()` may have failed (the kernel saw no return): looked
    /// for again, more and more slowly, until the tables show it or its
    /// close says it never listened.
    pub unconfirmed: bool,
}

/// How [`ListenerTable::apply`] pairs what it cannot match by identity.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PairingPolicy {
    /// Boot time at which the start-up scan finished. Earlier events may
    /// already be part of the scan.
    pub scan_end_ns: u64,
    /// A filter is active: the close of a listener never seen open is not
    /// ours (the kernel filters opens, but not closes of listeners older
    /// than the watcher).
    pub drop_unknown_closes: bool,
}

/// What changed while a resync's scan ran, so the scan may be stale for
/// it: socket identities and keys of the events from its start on.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unsettled {
    pub ids: HashSet<u64>,
    pub keys: HashSet<ListenerKey>,
}

impl Unsettled {
    pub(crate) fn add(&mut self, ev: &KernelEvent) {
        self.ids.insert(ev.sock);
        self.keys.insert(ev.key());
    }
}

fn port_event(change: Change, listener: Listener, ts: DateTime<Utc>, source: Source) -> PortEvent {
    PortEvent {
        change,
        listener,
        ts,
        source,
    }
}

/// Takes the owner a scan found for a listener whose owner was unknown.
fn learn_owner(known: &mut Listener, scanned: &Listener) {
    if known.pid == 0 && scanned.pid != 0 {
        known.pid = scanned.pid;
        known.comm = scanned.comm.clone();
        known.cgroup = scanned.cgroup.clone();
    }
}

impl ListenerTable {
    /// A table for events whose identities are socket cookies (`cookies`)
    /// or kernel addresses.
    pub(crate) fn new(cookies: bool) -> Self {
        Self {
            cookies,
            ..Self::default()
        }
    }

    /// The identity events would use for a scanned listener, if any.
    fn scan_id(&self, l: &Listener) -> Option<u64> {
        if self.cookies { l.cookie } else { None }
    }

    /// Adds the listeners of a procfs scan taken at start-up.
    pub(crate) fn seed(&mut self, listeners: impl IntoIterator<Item = Listener>) {
        for l in listeners {
            match self.scan_id(&l) {
                Some(id) => {
                    self.by_id.insert(id, l);
                }
                None => self.anonymous.push(l),
            }
        }
    }

    /// Adds a listener found by a look at a process's sockets (the UDP
    /// aggregate mode), which no event reported: it closes by identity.
    /// None when it has no identity events can name, or the table holds
    /// it already.
    pub(crate) fn found(
        &mut self,
        l: Listener,
        ts: DateTime<Utc>,
        source: Source,
    ) -> Option<PortEvent> {
        let id = self.scan_id(&l)?;
        if self.by_id.contains_key(&id) {
            return None;
        }
        self.by_id.insert(id, l.clone());
        Some(port_event(Change::Opened, l, ts, source))
    }

    /// Matches the kernel's open `ev` with the scanned listener it
    /// describes, which from now on closes by identity, and names its
    /// owner when the scan did not see one. Returns false when the scan
    /// holds no such listener.
    fn adopt(&mut self, ev: &KernelEvent) -> bool {
        if let Some(known) = self.by_id.get_mut(&ev.sock) {
            learn_owner(known, &ev.listener());
            return true;
        }
        let key = ev.key();
        let Some(i) = self
            .anonymous
            .iter()
            .position(|l| l.key() == key && (l.pid == ev.tgid || l.pid == 0))
        else {
            return false;
        };
        let mut known = self.anonymous.swap_remove(i);
        learn_owner(&mut known, &ev.listener());
        self.by_id.insert(ev.sock, known);
        true
    }

    /// Pairs scanned listeners with the kernel's open events that arrived
    /// while the scan ran. A paired listener closes by identity, and when
    /// the scan found no owner (the socket was opened after the process
    /// list was read, or its fd was already gone), the event names it.
    /// Call after [`Self::seed`], before reporting the baseline.
    ///
    /// `scan_start_ns` is the boot time at which the scan began: a socket
    /// closed before it cannot be the one the scan saw (the port may have
    /// been reused since), so it is left to [`Self::apply`].
    pub(crate) fn adopt_startup_opens(&mut self, events: &[KernelEvent], scan_start_ns: u64) {
        let closed: HashSet<u64> = events
            .iter()
            .filter(|e| e.kind == SockEventKind::Closed && e.ts_ns < scan_start_ns)
            .map(|e| e.sock)
            .collect();
        for ev in events
            .iter()
            .filter(|e| e.kind == SockEventKind::Opened && e.port != 0 && !closed.contains(&e.sock))
        {
            self.adopt(ev);
        }
    }

    /// Tells which of the start-up's `events` are history: on sockets
    /// that came and went before the scan ended (at `scan_end_ns`) and that
    /// the table, just seeded with the scan, does not hold. Without an
    /// identity to go by (an anonymous scanned listener) a socket is held
    /// if one has its key, unless it closed before the scan began (at
    /// `scan_start_ns`).
    pub(crate) fn history(
        &self,
        events: &[KernelEvent],
        scan_start_ns: u64,
        scan_end_ns: u64,
    ) -> impl Fn(&KernelEvent) -> bool + '_ {
        let closed_before: HashSet<u64> = events
            .iter()
            .filter(|e| e.kind == SockEventKind::Closed && e.ts_ns < scan_start_ns)
            .map(|e| e.sock)
            .collect();
        move |e| {
            e.ts_ns <= scan_end_ns
                && !self.by_id.contains_key(&e.sock)
                && (closed_before.contains(&e.sock)
                    || !self.anonymous.iter().any(|l| l.key() == e.key()))
        }
    }

    /// Whether a listener with identity `id` is open.
    pub(crate) fn has_id(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Every open listener with a known port.
    pub(crate) fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.by_id.values().chain(self.anonymous.iter())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len() + self.anonymous.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Listeners opened without `bind()` whose port is still unknown.
    pub(crate) fn unbound(&self) -> impl Iterator<Item = (u64, &Unbound)> {
        self.unbound.iter().map(|(id, u)| (*id, u))
    }

    /// Notes that a lookup did not find the port of `id`; returns how
    /// many lookups have missed it.
    pub(crate) fn unbound_missed(&mut self, id: u64) -> u32 {
        self.unbound.get_mut(&id).map_or(0, |u| {
            u.misses += 1;
            u.misses
        })
    }

    /// Forgets an unbound listener whose port cannot be found: a resync
    /// will report it from its scan.
    pub(crate) fn give_up_unbound(&mut self, id: u64) {
        self.unbound.remove(&id);
    }

    /// The owner of the TCP listener that accepts connections on `port` at
    /// `address` (or on a wildcard address) in namespace `netns`.
    pub(crate) fn listener_for(
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

    /// The sockets processes already have in the table, by (pid, netns).
    pub(crate) fn ports_by_owner(&self) -> HashMap<(u32, u64), HashSet<(std::net::IpAddr, u16)>> {
        let mut out: HashMap<(u32, u64), HashSet<_>> = HashMap::new();
        for l in self.listeners() {
            out.entry((l.pid, l.netns))
                .or_default()
                .insert((l.address, l.port));
        }
        out
    }

    /// Gives an unbound listener its port, found by other means (procfs),
    /// and reports it opened.
    pub(crate) fn bind_unbound(&mut self, id: u64, port: u16) -> Option<PortEvent> {
        let Unbound {
            mut listener,
            opened_at,
            ..
        } = self.unbound.remove(&id)?;
        listener.port = port;
        self.by_id.insert(id, listener.clone());
        Some(port_event(
            Change::Opened,
            listener,
            opened_at,
            Source::Ebpf,
        ))
    }

    /// Closes remembered per cookie: enough for the instant a race lasts.
    const CLOSES_KEPT: usize = 4096;

    /// Remembers when a socket (by cookie) closed.
    fn note_close(&mut self, ev: &KernelEvent) {
        if !ev.sock_is_cookie {
            return;
        }
        if self.closed_at.len() >= Self::CLOSES_KEPT {
            // The oldest half goes: a race spans microseconds.
            let mut times: Vec<u64> = self.closed_at.values().copied().collect();
            let (_, median, _) = times.select_nth_unstable(Self::CLOSES_KEPT / 2);
            let median = *median;
            self.closed_at.retain(|_, t| *t > median);
        }
        self.closed_at.insert(ev.sock, ev.ts_ns);
    }

    /// Whether an open is older than its socket's last close: the kernel
    /// confirmed it on one CPU while another closed the socket, and the
    /// close reached the ring first.
    fn closed_since(&self, ev: &KernelEvent) -> bool {
        ev.sock_is_cookie
            && self
                .closed_at
                .get(&ev.sock)
                .is_some_and(|&closed| ev.ts_ns < closed)
    }

    /// Applies one kernel event and appends what to report.
    pub(crate) fn apply(
        &mut self,
        ev: &KernelEvent,
        ts: DateTime<Utc>,
        policy: PairingPolicy,
        out: &mut Vec<PortEvent>,
    ) {
        let during_startup = ev.ts_ns <= policy.scan_end_ns;
        match ev.kind {
            SockEventKind::Opened if self.closed_since(ev) => {}
            SockEventKind::Opened => {
                let mut listener = ev.listener();
                listener.opened_at = Some(ts);
                // Known already, as it is: adopted by the baseline (with
                // cookies, also an open stamped a moment after the scan
                // saw the socket: the listen confirmation runs once the
                // socket is in the tables).
                if listener.port != 0
                    && (during_startup || self.cookies)
                    && let Some(known) = self.by_id.get_mut(&ev.sock)
                    && known.key() == listener.key()
                {
                    learn_owner(known, &listener);
                    return;
                }
                // The same for an open without its port yet (no bind(),
                // or unconfirmed) of a socket the tables already show
                // listening: a cookie names one socket, and it cannot
                // listen again without a close in between.
                if listener.port == 0
                    && self.cookies
                    && ev.sock_is_cookie
                    && let Some(known) = self.by_id.get_mut(&ev.sock)
                {
                    learn_owner(known, &listener);
                    return;
                }
                // One identity holds one live listener: whatever the table
                // still has under it closed, and its close was lost (a full
                // ring buffer; kernel addresses are reused at once, and a
                // socket can listen again after shutdown()). An unbound one
                // was never reported, so it just goes.
                self.unbound.remove(&ev.sock);
                if let Some(stale) = self.by_id.remove(&ev.sock) {
                    out.push(port_event(Change::Closed, stale, ts, Source::Ebpf));
                }
                if listener.port == 0 || ev.unconfirmed {
                    // The kernel assigns the port right after this event;
                    // an unconfirmed listen() may fail: found listening in
                    // the socket tables, it is reported with their port.
                    self.unbound.insert(
                        ev.sock,
                        Unbound {
                            listener,
                            opened_at: ts,
                            misses: 0,
                            unconfirmed: ev.unconfirmed,
                        },
                    );
                    return;
                }
                // Already reported by the scan: from now on its close pairs
                // by identity, and names the owner.
                if during_startup && self.adopt(ev) {
                    return;
                }
                self.by_id.insert(ev.sock, listener.clone());
                out.push(port_event(Change::Opened, listener, ts, Source::Ebpf));
            }
            SockEventKind::Closed if ev.never_listened => {
                self.note_close(ev);
                // Its listen() failed: an open held unconfirmed goes
                // unreported; one reported is closed.
                self.unbound.remove(&ev.sock);
                if let Some(known) = self.by_id.remove(&ev.sock) {
                    out.push(port_event(Change::Closed, known, ts, Source::Ebpf));
                }
            }
            SockEventKind::Closed => {
                self.note_close(ev);
                if let Some(pending) = self.unbound.remove(&ev.sock) {
                    // Port 0 at close: the listen() failed, no port ever
                    // existed. Otherwise the close tells the port.
                    if ev.port != 0 {
                        let mut l = pending.listener;
                        l.port = ev.port;
                        out.push(port_event(
                            Change::Opened,
                            l.clone(),
                            pending.opened_at,
                            Source::Ebpf,
                        ));
                        out.push(port_event(Change::Closed, l, ts, Source::Ebpf));
                    }
                    return;
                }
                if let Some(known) = self.by_id.remove(&ev.sock) {
                    out.push(port_event(Change::Closed, known, ts, Source::Ebpf));
                    return;
                }
                if ev.port == 0 {
                    return;
                }
                let key = ev.key();
                if let Some(i) = self.anonymous.iter().position(|l| l.key() == key) {
                    let known = self.anonymous.swap_remove(i);
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
    pub(crate) fn unsettled_disagreements(&self, scan: &Scan, unsettled: &Unsettled) -> usize {
        let mut diff: HashMap<ListenerKey, i64> = HashMap::new();
        for l in scan
            .listeners
            .iter()
            .filter(|l| unsettled.keys.contains(&l.key()))
        {
            *diff.entry(l.key()).or_default() += 1;
        }
        for l in self
            .listeners()
            .filter(|l| unsettled.keys.contains(&l.key()) && scan.namespaces.contains_key(&l.netns))
        {
            *diff.entry(l.key()).or_default() -= 1;
        }
        diff.values().filter(|d| **d != 0).count()
    }

    /// Makes the table agree with a procfs scan and reports the differences
    /// (`source: resync`). What changed while the scan ran (`unsettled`) is
    /// left alone, since the scan may be stale for it, and so is every
    /// listener of a namespace the scan could not read: a resync closes
    /// only what it saw gone.
    pub(crate) fn reconcile(
        &mut self,
        scan: Scan,
        unsettled: &Unsettled,
        ts: DateTime<Utc>,
    ) -> Vec<PortEvent> {
        let cookies = self.cookies;
        let namespaces = scan.namespaces;
        // Namespaces where scan and table name sockets the same way.
        let exact = |netns: u64| cookies && namespaces.get(&netns) == Some(&true);
        let read = |netns: u64| namespaces.contains_key(&netns);
        let mut out = Vec::new();

        // By identity.
        let mut by_key_scan = Vec::new();
        let mut seen = HashSet::new();
        for l in scan.listeners {
            let id = match (exact(l.netns), l.cookie) {
                (true, Some(id)) => id,
                _ => {
                    by_key_scan.push(l);
                    continue;
                }
            };
            if let Some(known) = self.by_id.get_mut(&id) {
                if known.key() == l.key() {
                    seen.insert(id);
                    learn_owner(known, &l);
                }
                // Else the same socket at another address: a UDP socket
                // bound to port 0 whose port the kernel released at a
                // disconnect, then bound implicitly at a send. Its bound
                // port is closed (left unseen, below), and the new one is
                // a client's, not a bound port.
                continue;
            }
            seen.insert(id);
            if unsettled.ids.contains(&id) {
                continue;
            }
            // Known from an earlier scan that showed no cookie.
            let key = l.key();
            if let Some(i) = self
                .anonymous
                .iter()
                .position(|a| a.key() == key && (a.pid == l.pid || a.pid == 0))
            {
                let mut known = self.anonymous.swap_remove(i);
                known.cookie = Some(id);
                learn_owner(&mut known, &l);
                self.by_id.insert(id, known);
                continue;
            }
            self.by_id.insert(id, l.clone());
            out.push(port_event(Change::Opened, l, ts, Source::Resync));
        }
        let mut gone = Vec::new();
        self.by_id.retain(|id, l| {
            let closed = exact(l.netns) && !seen.contains(id) && !unsettled.ids.contains(id);
            if closed {
                gone.push(l.clone());
            }
            !closed
        });
        self.anonymous.retain(|l| {
            let closed = exact(l.netns) && !unsettled.keys.contains(&l.key());
            if closed {
                gone.push(l.clone());
            }
            !closed
        });

        // By key, where identities do not compare: count per key.
        let by_key = |l: &Listener| read(l.netns) && !exact(l.netns);
        let mut want: HashMap<ListenerKey, Vec<Listener>> = HashMap::new();
        for l in by_key_scan {
            if !unsettled.keys.contains(&l.key()) {
                want.entry(l.key()).or_default().push(l);
            }
        }
        let mut have: HashMap<ListenerKey, usize> = HashMap::new();
        for l in self.listeners().filter(|l| by_key(l)) {
            *have.entry(l.key()).or_default() += 1;
        }
        // Too many in the table: closes that were lost.
        let mut excess: HashMap<ListenerKey, usize> = HashMap::new();
        for (key, n) in &have {
            if unsettled.keys.contains(key) {
                continue;
            }
            let scanned = want.get(key).map_or(0, Vec::len);
            if *n > scanned {
                excess.insert(*key, n - scanned);
            }
        }
        let mut take = |l: &Listener| {
            if !by_key(l) {
                return false;
            }
            match excess.get_mut(&l.key()) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        self.by_id.retain(|_, l| {
            if take(l) {
                gone.push(l.clone());
                false
            } else {
                true
            }
        });
        self.anonymous.retain(|l| {
            if take(l) {
                gone.push(l.clone());
                false
            } else {
                true
            }
        });
        // Closes before opens: a socket that replaced another on the same
        // address and port reads as the old one gone, then the new one
        // there (a consumer keyed by address and port keeps it).
        let opened = std::mem::take(&mut out);
        out.extend(
            gone.into_iter()
                .map(|l| port_event(Change::Closed, l, ts, Source::Resync)),
        );
        out.extend(opened);
        // Owners the table lacked (pid 0) that the scan now knows: no
        // change to report, just better knowledge.
        for l in self
            .anonymous
            .iter_mut()
            .chain(self.by_id.values_mut())
            .filter(|l| l.pid == 0)
        {
            if let Some(found) = want
                .get(&l.key())
                .and_then(|v| v.iter().find(|s| s.pid != 0))
            {
                learn_owner(l, found);
            }
        }
        // Too few: opens that were lost.
        for (key, listeners) in want {
            let n = have.get(&key).copied().unwrap_or(0);
            for l in listeners.into_iter().skip(n) {
                self.anonymous.push(l.clone());
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
            netns: NS,
            address: addr.parse().unwrap(),
            port,
            comm: format!("p{pid}"),
            cgroup: String::new(),
            container: None,
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
            pid,
            comm: format!("p{pid}"),
            inode: Some(42),
            netns: NS,
            ..Listener::new(Proto::Tcp, addr.parse::<IpAddr>().unwrap(), port)
        }
    }

    /// A scan of namespace NS through /proc text (no cookies).
    fn scan_of(listeners: Vec<Listener>) -> Scan {
        Scan {
            listeners,
            namespaces: [(NS, false)].into(),
        }
    }

    /// A scan of namespace NS through sock_diag: every listener with its
    /// cookie.
    fn diag_scan(listeners: Vec<Listener>) -> Scan {
        Scan {
            listeners,
            namespaces: [(NS, true)].into(),
        }
    }

    fn keys(keys: impl IntoIterator<Item = ListenerKey>) -> Unsettled {
        Unsettled {
            ids: HashSet::new(),
            keys: keys.into_iter().collect(),
        }
    }

    /// A listener a sock_diag scan found, with its cookie.
    fn with_cookie(cookie: u64, addr: &str, port: u16, pid: u32) -> Listener {
        Listener {
            cookie: Some(cookie),
            ..scanned(addr, port, pid)
        }
    }

    /// A kernel event carrying a cookie.
    fn cev(kind: SockEventKind, cookie: u64, addr: &str, port: u16, pid: u32) -> KernelEvent {
        KernelEvent {
            sock_is_cookie: true,
            ..kev(kind, 500, cookie, addr, port, pid)
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
        let mut t = ListenerTable::new(false);
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
        let mut t = ListenerTable::new(false);
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
        let mut t = ListenerTable::new(false);
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
        let mut t = ListenerTable::new(false);
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
        let mut t = ListenerTable::new(false);
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
        let mut t = ListenerTable::new(false);
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
        let mut t = ListenerTable::new(false);
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
        let mut t = ListenerTable::new(false);
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

    /// A cookie-named event.
    fn cookie_ev(kind: SockEventKind, ts_ns: u64, cookie: u64, port: u16) -> KernelEvent {
        KernelEvent {
            sock_is_cookie: true,
            ..kev(kind, ts_ns, cookie, "127.0.0.1", port, 4)
        }
    }

    #[test]
    fn an_open_older_than_its_sockets_close_is_dropped_a_new_listen_is_not() {
        let mut t = ListenerTable::new(true);
        // The close path reported open and close; the confirmation's open,
        // stamped before that close, arrives after it.
        let out = [
            cookie_ev(SockEventKind::Opened, 10, 0x20, 41000),
            cookie_ev(SockEventKind::Closed, 12, 0x20, 41000),
            cookie_ev(SockEventKind::Opened, 11, 0x20, 41000),
        ]
        .into_iter()
        .flat_map(|e| apply(&mut t, e, startup(0)))
        .map(|e| e.change)
        .collect::<Vec<_>>();
        assert_eq!(out, [Change::Opened, Change::Closed]);
        assert!(t.is_empty());
        // The same socket listening again after its close is reported.
        let again = apply(
            &mut t,
            cookie_ev(SockEventKind::Opened, 13, 0x20, 41001),
            startup(0),
        );
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn an_open_without_its_port_of_a_socket_already_listening_changes_nothing() {
        let mut t = ListenerTable::new(true);
        // The scan saw the socket listening; its open, without the port
        // yet (unbound, or unconfirmed), is applied after.
        apply(
            &mut t,
            cookie_ev(SockEventKind::Opened, 10, 0x22, 41003),
            startup(0),
        );
        let again = apply(
            &mut t,
            KernelEvent {
                unconfirmed: true,
                ..cookie_ev(SockEventKind::Opened, 11, 0x22, 0)
            },
            startup(0),
        );
        assert!(again.is_empty(), "no close and reopen: {again:?}");
        assert_eq!(t.unbound().count(), 0);
        let closed = apply(
            &mut t,
            cookie_ev(SockEventKind::Closed, 12, 0x22, 41003),
            startup(0),
        );
        assert_eq!(closed.len(), 1);
    }

    #[test]
    fn a_close_that_never_listened_reports_nothing() {
        let mut t = ListenerTable::new(true);
        let held = apply(
            &mut t,
            KernelEvent {
                unconfirmed: true,
                ..cookie_ev(SockEventKind::Opened, 10, 0x21, 41002)
            },
            startup(0),
        );
        assert!(held.is_empty(), "held until the tables show it: {held:?}");
        let closed = apply(
            &mut t,
            KernelEvent {
                never_listened: true,
                ..cookie_ev(SockEventKind::Closed, 11, 0x21, 41002)
            },
            startup(0),
        );
        assert!(closed.is_empty(), "{closed:?}");
        assert!(t.is_empty() && t.unbound().count() == 0);
    }

    #[test]
    fn failed_listen_is_not_a_port() {
        let mut t = ListenerTable::new(false);
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
    fn a_socket_that_replaced_another_is_reported_after_its_close() {
        let mut t = ListenerTable::new(true);
        apply(
            &mut t,
            kev(SockEventKind::Opened, 1, 0x1, "127.0.0.1", 1000, 1),
            startup(0),
        );
        // The old socket's close was lost; another process now holds the
        // same address and port (another cookie).
        let mut newer = scanned("127.0.0.1", 1000, 2);
        newer.cookie = Some(0x2);
        let mut scan = scan_of(vec![newer]);
        scan.namespaces.insert(NS, true);
        let out = t.reconcile(scan, &Unsettled::default(), ts());
        let got: Vec<_> = out.iter().map(|e| (e.change, e.listener.pid)).collect();
        assert_eq!(got, [(Change::Closed, 1), (Change::Opened, 2)]);
    }

    #[test]
    fn reconcile_reports_lost_opens_and_closes() {
        let mut t = ListenerTable::new(false);
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
        let scan = scan_of(vec![
            scanned("127.0.0.1", 1001, 1),
            scanned("127.0.0.1", 1002, 1),
        ]);
        let out = t.reconcile(scan, &Unsettled::default(), ts());
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
        let scan = scan_of(vec![
            scanned("127.0.0.1", 1001, 1),
            scanned("127.0.0.1", 1002, 1),
        ]);
        assert!(t.reconcile(scan, &Unsettled::default(), ts()).is_empty());
    }

    /// A UDP socket bound to port 0, disconnected (the kernel releases the
    /// port) and then sending from another port: the resync closes its
    /// bound port, though its cookie is the same, and opens nothing.
    #[test]
    fn reconcile_closes_a_socket_whose_port_changed_under_its_cookie() {
        let mut t = ListenerTable::new(true);
        let mut bound = scanned("0.0.0.0", 40000, 1);
        bound.proto = Proto::Udp;
        bound.cookie = Some(7);
        t.seed([bound.clone()]);
        let mut moved = bound.clone();
        moved.port = 40001;
        let scan = diag_scan(vec![moved]);
        let out = t.reconcile(scan, &Unsettled::default(), ts());
        let got: Vec<_> = out.iter().map(|e| (e.change, e.listener.port)).collect();
        assert_eq!(got, [(Change::Closed, 40000)]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn reconcile_leaves_unsettled_keys_alone_and_counts_duplicates() {
        let mut t = ListenerTable::new(false);
        t.seed([scanned("0.0.0.0", 80, 1)]);
        // SO_REUSEPORT: two sockets on one key in the scan, one in the table.
        let two = scan_of(vec![
            scanned("0.0.0.0", 80, 1),
            scanned("0.0.0.0", 80, 2),
            scanned("::1", 5, 1),
        ]);
        let unsettled = keys([key("::1", 5)]);
        assert_eq!(t.unsettled_disagreements(&two, &unsettled), 1);
        let out = t.reconcile(two, &unsettled, ts());
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].change, out[0].listener.pid), (Change::Opened, 2));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn unsettled_keys_that_agree_are_not_counted() {
        let mut t = ListenerTable::new(false);
        t.seed([scanned("0.0.0.0", 80, 1), scanned("0.0.0.0", 81, 1)]);
        let unsettled = keys([key("0.0.0.0", 80), key("0.0.0.0", 81)]);
        // 80 agrees; 81 is in the table but gone from the scan.
        let scan = scan_of(vec![scanned("0.0.0.0", 80, 1)]);
        assert_eq!(t.unsettled_disagreements(&scan, &unsettled), 1);
        assert_eq!(t.unsettled_disagreements(&scan, &Unsettled::default()), 0);
    }

    #[test]
    fn a_reused_socket_address_closes_the_listener_whose_close_was_lost() {
        let mut t = ListenerTable::new(false);
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

    #[test]
    fn closes_of_a_reuseport_group_name_the_socket_that_closed() {
        // Three processes listen on one address and port before the start.
        let mut t = ListenerTable::new(true);
        t.seed([
            with_cookie(11, "0.0.0.0", 8080, 1),
            with_cookie(12, "0.0.0.0", 8080, 2),
            with_cookie(13, "0.0.0.0", 8080, 3),
        ]);
        // The kernel did not know the owner (opened before portwatch).
        for (cookie, pid) in [(12, 2), (11, 1), (13, 3)] {
            let close = unknown_owner(cev(SockEventKind::Closed, cookie, "0.0.0.0", 8080, 99));
            let out = apply(&mut t, close, startup(0));
            assert_eq!((out[0].change, out[0].listener.pid), (Change::Closed, pid));
        }
        assert!(t.is_empty());
    }

    #[test]
    fn a_resync_by_cookie_closes_only_what_it_saw_gone() {
        let mut t = ListenerTable::new(true);
        let mut elsewhere = with_cookie(3, "0.0.0.0", 22, 7);
        elsewhere.netns = NS + 1;
        t.seed([
            with_cookie(1, "0.0.0.0", 80, 5),
            with_cookie(2, "0.0.0.0", 81, 5),
            elsewhere,
        ]);
        // 81 closed and a new socket listens on it (both events lost); 80
        // is unchanged; the namespace of 22 could not be read.
        let scan = diag_scan(vec![
            with_cookie(1, "0.0.0.0", 80, 5),
            with_cookie(4, "0.0.0.0", 81, 6),
        ]);
        let out = t.reconcile(scan, &Unsettled::default(), ts());
        let mut got: Vec<_> = out
            .iter()
            .map(|e| (e.change, e.listener.port, e.listener.pid))
            .collect();
        got.sort_by_key(|g| g.2);
        assert_eq!(got, [(Change::Closed, 81, 5), (Change::Opened, 81, 6)]);
        let mut left: Vec<(u16, u32)> = t.listeners().map(|l| (l.port, l.pid)).collect();
        left.sort();
        assert_eq!(left, [(22, 7), (80, 5), (81, 6)]);
    }

    #[test]
    fn a_resync_by_cookie_leaves_what_changed_during_its_scan() {
        let mut t = ListenerTable::new(true);
        // 5 opened after the scan read the table; 6 closed after it did.
        apply(
            &mut t,
            cev(SockEventKind::Opened, 5, "127.0.0.1", 1005, 1),
            startup(0),
        );
        let scan = diag_scan(vec![with_cookie(6, "127.0.0.1", 1006, 1)]);
        let unsettled = Unsettled {
            ids: [5, 6].into(),
            keys: HashSet::new(),
        };
        assert!(t.reconcile(scan, &unsettled, ts()).is_empty());
        let ports: Vec<u16> = t.listeners().map(|l| l.port).collect();
        assert_eq!(ports, [1005]);
    }

    #[test]
    fn a_socket_listening_again_after_shutdown_is_one_listener_with_a_new_port() {
        let mut t = ListenerTable::new(true);
        apply(
            &mut t,
            cev(SockEventKind::Opened, 9, "0.0.0.0", 40001, 1),
            startup(0),
        );
        let closed = apply(
            &mut t,
            cev(SockEventKind::Closed, 9, "0.0.0.0", 40001, 1),
            startup(0),
        );
        assert_eq!(closed[0].listener.port, 40001);
        apply(
            &mut t,
            cev(SockEventKind::Opened, 9, "0.0.0.0", 40002, 1),
            startup(0),
        );
        let closed = apply(
            &mut t,
            cev(SockEventKind::Closed, 9, "0.0.0.0", 40002, 1),
            startup(0),
        );
        assert_eq!(closed[0].listener.port, 40002);
        assert!(t.is_empty());
    }
}
