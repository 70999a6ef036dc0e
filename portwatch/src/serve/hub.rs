//! Fans the monitor's events out to the clients of the event socket. Each
//! client has a bounded queue that the monitor loop only ever `try_send`s
//! to, so a slow or stuck client never slows the monitor or the others.
//! A client whose queue is full is marked lost; once it has read its queue
//! empty it gets a `lost` line, a fresh baseline and a ready line, and goes
//! on live. Baselines are what the hub itself published, so a client
//! never gets an open twice, nor one the monitor held back (a settle
//! time). Pure apart from the channels: the process tree is asked through
//! a closure.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{Sender, error::TrySendError};

use crate::{
    event::{Change, Listener, ListenerKey, PortEvent, Source},
    filter::Filter,
    monitor::MonitorEvent,
    policy::drift::{Drift, DriftKind},
    wire::{Line, ocsf::OcsfHost},
};

/// Whether `pid` is `root` or one of its descendants.
pub type InTree<'a> = dyn FnMut(u32, u32) -> bool + 'a;

/// A client that connected and whose request was accepted.
pub struct Join {
    pub filter: Filter,
    /// The client's user: one other than root gets owner contexts (cwd,
    /// executable, git work tree, login) of its own listeners only.
    pub uid: u32,
    /// Where its lines go: each item is one or more whole lines.
    pub tx: Sender<String>,
    /// It asked for OCSF records (`"format":"ocsf"`).
    pub ocsf: bool,
}

struct Client {
    filter: Filter,
    uid: u32,
    ocsf: bool,
    tx: Sender<String>,
    /// Listeners this client was told are open: a close goes to the
    /// clients that saw the open, and only to them.
    told: HashSet<ListenerKey>,
    /// Events not sent since its queue filled; 0 while it keeps up.
    lost: u64,
}

/// Every connected client, and what is open as published so far.
#[derive(Default)]
pub struct Hub {
    clients: Vec<Client>,
    open: HashMap<ListenerKey, Vec<Listener>>,
    /// The policy's drifts in force, as published: a client that joins
    /// later is told them after its baseline.
    drifting: Drifting,
    /// The host OCSF records name ([`Hub::set_ocsf_host`]).
    host: OcsfHost,
}

/// Drifts that have not ended: unexpected listeners, missing entries.
#[derive(Default)]
struct Drifting {
    unexpected: HashMap<(ListenerKey, u32), Drift>,
    missing: Vec<Drift>,
}

impl Drifting {
    fn note(&mut self, d: &Drift) {
        match (d.kind, &d.listener, &d.entry) {
            (DriftKind::Unexpected, Some(l), _) => {
                self.unexpected.insert((l.key(), l.pid), d.clone());
            }
            (DriftKind::Missing, _, Some(e))
                if !self.missing.iter().any(|m| m.entry.as_ref() == Some(e)) =>
            {
                self.missing.push(d.clone());
            }
            (DriftKind::Expected, _, Some(e)) => {
                self.missing.retain(|m| m.entry.as_ref() != Some(e))
            }
            (DriftKind::Expected, Some(l), None) => {
                self.unexpected.remove(&(l.key(), l.pid));
            }
            _ => {}
        }
    }

    fn all(&self) -> impl Iterator<Item = &Drift> {
        self.unexpected.values().chain(&self.missing)
    }
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// The host the OCSF records of clients that ask for them name.
    pub fn set_ocsf_host(&mut self, host: OcsfHost) {
        self.host = host;
    }

    /// Clients connected.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Adds a client: its baseline (what is open now, through its filter)
    /// and a ready line go first.
    pub fn join(
        &mut self,
        join: Join,
        backend: &str,
        now: DateTime<Utc>,
        in_tree: &mut InTree<'_>,
    ) {
        let mut client = Client {
            filter: join.filter,
            uid: join.uid,
            ocsf: join.ocsf,
            tx: join.tx,
            told: HashSet::new(),
            lost: 0,
        };
        let chunk = client.baseline(
            self.open.values().flatten(),
            self.drifting.all(),
            backend,
            now,
            in_tree,
            &self.host,
        );
        // A new queue has room for one item.
        if client.tx.try_send(chunk).is_ok() {
            self.clients.push(client);
        }
    }

    /// Sends `ev` to every client whose filter admits it.
    pub fn publish(&mut self, ev: &MonitorEvent, in_tree: &mut InTree<'_>) {
        // A client that joins later has the exposure as it is now.
        if let MonitorEvent::ExposureChanged(c) = ev {
            for l in self.open.get_mut(&c.listener.key()).into_iter().flatten() {
                l.exposure.clone_from(&c.listener.exposure);
                l.published_as.clone_from(&c.listener.published_as);
            }
        }
        if let MonitorEvent::Drift(d) = ev {
            self.drifting.note(d);
        }
        if let MonitorEvent::Port(p) = ev {
            let key = p.listener.key();
            match p.change {
                Change::Opened => self.open.entry(key).or_default().push(p.listener.clone()),
                Change::Closed => {
                    if let Some(same) = self.open.get_mut(&key) {
                        // The one of that owner, else any: downstream, a
                        // close is paired by its key alone.
                        let i = same
                            .iter()
                            .position(|l| l.pid == p.listener.pid)
                            .unwrap_or(0);
                        if i < same.len() {
                            same.swap_remove(i);
                        }
                        if same.is_empty() {
                            self.open.remove(&key);
                        }
                    }
                }
            }
        }
        // One look at the process tree per (root, pid), whatever the
        // number of clients that ask.
        let mut asked: Vec<(u32, u32, bool)> = Vec::new();
        let mut cached = |root: u32, pid: u32| {
            if let Some(&(_, _, yes)) = asked.iter().find(|(r, p, _)| (*r, *p) == (root, pid)) {
                return yes;
            }
            let yes = in_tree(root, pid);
            asked.push((root, pid, yes));
            yes
        };
        // Written once, however many clients take it.
        let mut lines = Lines::default();
        let host = &self.host;
        self.clients
            .retain_mut(|c| c.offer(ev, &mut lines, &mut cached, host));
    }

    /// Whether a client fell behind and waits for a fresh baseline.
    pub fn has_lost(&self) -> bool {
        self.clients.iter().any(|c| c.lost > 0)
    }

    /// Gives each lost client that has read its queue empty a `lost` line,
    /// a fresh baseline and a ready line.
    pub fn recover(&mut self, backend: &str, now: DateTime<Utc>, in_tree: &mut InTree<'_>) {
        let (open, drifting, host) = (&self.open, &self.drifting, &self.host);
        self.clients.retain_mut(|c| {
            if c.lost == 0 || c.tx.capacity() < c.tx.max_capacity() {
                return !c.tx.is_closed();
            }
            let mut chunk = Line::lost(c.lost, now).to_json();
            chunk.push('\n');
            c.told.clear();
            chunk.push_str(&c.baseline(
                open.values().flatten(),
                drifting.all(),
                backend,
                now,
                in_tree,
                host,
            ));
            c.lost = 0;
            c.tx.try_send(chunk).is_ok()
        });
    }
}

impl Client {
    /// The baseline lines, the ready line, and the drifts in force that
    /// are for this client, as one item; `told` is what it lists.
    fn baseline<'l>(
        &mut self,
        listeners: impl Iterator<Item = &'l Listener>,
        drifts: impl Iterator<Item = &'l Drift>,
        backend: &str,
        now: DateTime<Utc>,
        in_tree: &mut InTree<'_>,
        host: &OcsfHost,
    ) -> String {
        let ocsf = self.ocsf.then_some(host);
        let mut chunk = String::new();
        let mut n = 0;
        for l in listeners {
            if self.admits_open(l, in_tree) {
                self.told.insert(l.key());
                let line = Line::from(&PortEvent {
                    change: Change::Opened,
                    listener: self.shown(l),
                    ts: now,
                    source: Source::Baseline,
                });
                chunk.push_str(&text(&line, ocsf));
                n += 1;
            }
        }
        chunk.push_str(&Line::ready(backend, n, now).to_json());
        chunk.push('\n');
        for d in drifts {
            let shown = match &d.listener {
                // Of a listener it was just told of.
                Some(l) if self.told.contains(&l.key()) => Drift {
                    listener: Some(self.shown(l)),
                    ..d.clone()
                },
                Some(_) => continue,
                None if self.filter.pid.is_none() => d.clone(),
                None => continue,
            };
            chunk.push_str(&text(&Line::from(&shown), ocsf));
        }
        chunk
    }

    fn admits_open(&self, l: &Listener, in_tree: &mut InTree<'_>) -> bool {
        self.filter.admits(l) && self.filter.pid.is_none_or(|root| in_tree(root, l.pid))
    }

    /// The line for `ev` if this client gets it.
    /// Whether `ev` is for this client (and what it was told, updated).
    fn admits(&mut self, ev: &MonitorEvent, in_tree: &mut InTree<'_>) -> bool {
        match ev {
            MonitorEvent::Port(p) => match p.change {
                Change::Opened => {
                    let admitted = self.admits_open(&p.listener, in_tree);
                    if admitted {
                        self.told.insert(p.listener.key());
                    }
                    admitted
                }
                Change::Closed => self.told.remove(&p.listener.key()),
            },
            MonitorEvent::Alert(a) => {
                self.filter
                    .pid
                    .is_none_or(|root| a.pid != 0 && in_tree(root, a.pid))
                    && a.proto.is_none_or(|p| self.filter.wants(p))
            }
            MonitorEvent::Resync(_) | MonitorEvent::Notice(_) => true,
            MonitorEvent::UdpSummary(u) => {
                self.filter.wants(crate::event::Proto::Udp)
                    && self.filter.pid.is_none_or(|root| in_tree(root, u.pid))
            }
            // Of a listener this client was told of.
            MonitorEvent::ExposureChanged(c) => self.told.contains(&c.listener.key()),
            // Of a listener this client was told of; a missing entry to
            // the clients of the whole host.
            MonitorEvent::Drift(d) => match &d.listener {
                Some(l) => self.told.contains(&l.key()) || self.admits_open(l, in_tree),
                None => self.filter.pid.is_none(),
            },
            // Each client had its own when it joined; what a newer
            // library adds is not served.
            _ => false,
        }
    }

    /// Queues `ev` if it is for this client; false when the client is
    /// gone.
    fn offer(
        &mut self,
        ev: &MonitorEvent,
        lines: &mut Lines,
        in_tree: &mut InTree<'_>,
        host: &OcsfHost,
    ) -> bool {
        if self.lost > 0 {
            self.lost += 1;
            return !self.tx.is_closed();
        }
        if !self.admits(ev, in_tree) {
            return !self.tx.is_closed();
        }
        let whole = match ev {
            MonitorEvent::Port(p) => self.sees_context_of(&p.listener),
            MonitorEvent::Drift(d) => d.listener.as_ref().is_none_or(|l| self.sees_context_of(l)),
            _ => true,
        };
        let ocsf = self.ocsf.then_some(host);
        let line = if whole {
            lines
                .whole(self.ocsf)
                .get_or_insert_with(|| line_of(ev, ocsf))
        } else {
            lines.bare(self.ocsf).get_or_insert_with(|| match ev {
                MonitorEvent::Port(p) => line_of(
                    &MonitorEvent::Port(PortEvent {
                        listener: Listener {
                            context: None,
                            ..p.listener.clone()
                        },
                        ..p.clone()
                    }),
                    ocsf,
                ),
                MonitorEvent::Drift(d) => line_of(
                    &MonitorEvent::Drift(crate::policy::drift::Drift {
                        listener: d.listener.as_ref().map(|l| Listener {
                            context: None,
                            ..l.clone()
                        }),
                        ..d.clone()
                    }),
                    ocsf,
                ),
                _ => line_of(ev, ocsf),
            })
        };
        let Some(line) = line.clone() else {
            return !self.tx.is_closed();
        };
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.lost = 1;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

impl Client {
    /// Whether this client may see `l`'s owner context: root, or the
    /// owner's own user (what /proc shows each of them anyway).
    fn sees_context_of(&self, l: &Listener) -> bool {
        self.uid == 0 || self.uid == l.uid
    }

    /// `l` as this client is shown it.
    fn shown(&self, l: &Listener) -> Listener {
        if self.sees_context_of(l) {
            l.clone()
        } else {
            Listener {
                context: None,
                ..l.clone()
            }
        }
    }
}

/// An event's lines, written once however many clients take them: whole,
/// and without the owner's context; as portwatch's lines, and as OCSF.
#[derive(Default)]
struct Lines {
    whole: Option<Option<String>>,
    bare: Option<Option<String>>,
    whole_ocsf: Option<Option<String>>,
    bare_ocsf: Option<Option<String>>,
}

impl Lines {
    fn whole(&mut self, ocsf: bool) -> &mut Option<Option<String>> {
        if ocsf {
            &mut self.whole_ocsf
        } else {
            &mut self.whole
        }
    }

    fn bare(&mut self, ocsf: bool) -> &mut Option<Option<String>> {
        if ocsf {
            &mut self.bare_ocsf
        } else {
            &mut self.bare
        }
    }
}

/// `line` with its newline: its OCSF record for a client that asked for
/// them, where OCSF has a class for it; portwatch's line otherwise.
fn text(line: &Line, ocsf: Option<&OcsfHost>) -> String {
    let mut text = ocsf
        .and_then(|host| crate::wire::ocsf::record(line, host))
        .map_or_else(|| line.to_json(), |r| r.to_string());
    text.push('\n');
    text
}

/// The line of an event a client is served, with its newline.
fn line_of(ev: &MonitorEvent, ocsf: Option<&OcsfHost>) -> Option<String> {
    let line = match ev {
        MonitorEvent::Port(p) => Line::from(p),
        MonitorEvent::Alert(a) => Line::from(a),
        MonitorEvent::Resync(s) => Line::resync(s),
        MonitorEvent::Notice(n) => Line::from(n),
        MonitorEvent::ExposureChanged(c) => Line::from(c),
        MonitorEvent::Drift(d) => Line::from(d),
        MonitorEvent::UdpSummary(u) => Line::from(u),
        _ => return None,
    };
    Some(text(&line, ocsf))
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::{self, Receiver};

    use super::*;
    use crate::event::Proto;

    fn listener(proto: Proto, port: u16, pid: u32) -> Listener {
        Listener {
            pid,
            comm: "srv".into(),
            netns: 1,
            ..Listener::new(proto, "127.0.0.1".parse().unwrap(), port)
        }
    }

    fn port(change: Change, l: &Listener) -> MonitorEvent {
        MonitorEvent::Port(PortEvent {
            change,
            listener: l.clone(),
            ts: DateTime::UNIX_EPOCH,
            source: Source::Ebpf,
        })
    }

    /// Process 10 and its child 11 form the tree of 10; 20 is apart.
    fn tree(root: u32, pid: u32) -> bool {
        pid == root || (root == 10 && pid == 11)
    }

    fn client(hub: &mut Hub, filter: Filter, queue: usize) -> Receiver<String> {
        let (tx, rx) = mpsc::channel(queue);
        hub.join(
            Join {
                filter,
                tx,
                uid: 0,
                ocsf: false,
            },
            "ebpf",
            DateTime::UNIX_EPOCH,
            &mut tree,
        );
        rx
    }

    /// Every line queued, each as `event port` (or `event`).
    fn drain(rx: &mut Receiver<String>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            for line in chunk.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let event = v["event"].as_str().unwrap().to_string();
                if event == "drift" {
                    out.push(format!(
                        "drift {} {}",
                        v["drift"].as_str().unwrap(),
                        v["listener"]["port"]
                            .as_u64()
                            .or(v["entry"]["port"].as_u64())
                            .unwrap()
                    ));
                    continue;
                }
                out.push(match v["port"].as_u64() {
                    Some(p) => format!("{event} {p}"),
                    None => event,
                });
            }
        }
        out
    }

    #[test]
    fn a_client_that_joins_later_is_told_the_drifts_in_force() {
        let mut hub = Hub::new();
        let nc = listener(Proto::Tcp, 4444, 20);
        let sshd = listener(Proto::Tcp, 22, 10);
        let drift = |kind, l: Option<&Listener>, port: Option<u16>| {
            MonitorEvent::Drift(Drift {
                kind,
                listener: l.cloned(),
                entry: port.map(|p| crate::policy::Entry {
                    port: Some(crate::policy::PortSpec::One(p)),
                    ..Default::default()
                }),
                tags: Vec::new(),
                ts: DateTime::UNIX_EPOCH,
            })
        };
        for ev in [
            port(Change::Opened, &nc),
            drift(DriftKind::Unexpected, Some(&nc), None),
            port(Change::Opened, &sshd),
            drift(DriftKind::Missing, None, Some(80)),
            drift(DriftKind::Missing, None, Some(443)),
            drift(DriftKind::Expected, None, Some(443)),
        ] {
            hub.publish(&ev, &mut tree);
        }
        let mut all = client(&mut hub, Filter::default(), 8);
        let lines = drain(&mut all);
        assert_eq!(
            lines[lines.len() - 3..],
            ["ready", "drift unexpected 4444", "drift missing 80"],
            "{lines:?}"
        );
        // A client of one tree: no missing entries, no other tree's drift.
        let mut tree10 = client(
            &mut hub,
            Filter {
                pid: Some(10),
                ..Filter::default()
            },
            8,
        );
        assert_eq!(drain(&mut tree10), ["opened 22", "ready"]);
        // Ended drifts are not told.
        hub.publish(&port(Change::Closed, &nc), &mut tree);
        hub.publish(&drift(DriftKind::Expected, Some(&nc), None), &mut tree);
        hub.publish(&drift(DriftKind::Expected, None, Some(80)), &mut tree);
        let mut late = client(&mut hub, Filter::default(), 8);
        assert_eq!(drain(&mut late), ["opened 22", "ready"]);
    }

    #[test]
    fn each_client_gets_what_its_filter_admits_and_closes_of_what_it_saw() {
        let mut hub = Hub::new();
        let old_tcp = listener(Proto::Tcp, 22, 1);
        // Published before anyone joined: in every baseline it passes.
        hub.publish(&port(Change::Opened, &old_tcp), &mut tree);
        let mut all = client(&mut hub, Filter::default(), 16);
        let udp_only = Filter {
            proto: Some(Proto::Udp),
            ..Filter::default()
        };
        let mut udp = client(&mut hub, udp_only, 16);
        let tree_of_10 = Filter {
            pid: Some(10),
            ..Filter::default()
        };
        let mut mine = client(&mut hub, tree_of_10, 16);
        let (child_udp, other_tcp) = (listener(Proto::Udp, 53, 11), listener(Proto::Tcp, 80, 20));
        for ev in [
            port(Change::Opened, &child_udp),
            port(Change::Opened, &other_tcp),
            port(Change::Closed, &child_udp),
            port(Change::Closed, &old_tcp),
        ] {
            hub.publish(&ev, &mut tree);
        }
        assert_eq!(
            drain(&mut all),
            [
                "opened 22",
                "ready",
                "opened 53",
                "opened 80",
                "closed 53",
                "closed 22"
            ]
        );
        assert_eq!(drain(&mut udp), ["ready", "opened 53", "closed 53"]);
        assert_eq!(drain(&mut mine), ["ready", "opened 53", "closed 53"]);
    }

    #[test]
    fn a_client_that_falls_behind_is_told_and_gets_a_fresh_baseline() {
        let mut hub = Hub::new();
        let mut slow = client(&mut hub, Filter::default(), 2);
        let mut fast = client(&mut hub, Filter::default(), 64);
        let ls: Vec<Listener> = (1..=5).map(|p| listener(Proto::Tcp, p, 1)).collect();
        for l in &ls {
            hub.publish(&port(Change::Opened, l), &mut tree);
        }
        hub.publish(&port(Change::Closed, &ls[0]), &mut tree);
        // The fast one misses nothing.
        assert_eq!(
            drain(&mut fast),
            [
                "ready", "opened 1", "opened 2", "opened 3", "opened 4", "opened 5", "closed 1"
            ]
        );
        assert!(hub.has_lost());
        // Not yet read: no recovery into a queue that is not empty.
        hub.recover("ebpf", DateTime::UNIX_EPOCH, &mut tree);
        assert!(hub.has_lost());
        // Its queue held the ready line and the first open.
        assert_eq!(drain(&mut slow), ["ready", "opened 1"]);
        hub.recover("ebpf", DateTime::UNIX_EPOCH, &mut tree);
        assert!(!hub.has_lost());
        // The baseline comes from a map: in any order.
        let mut fresh = drain(&mut slow);
        fresh[1..5].sort();
        assert_eq!(
            fresh,
            [
                "lost", "opened 2", "opened 3", "opened 4", "opened 5", "ready"
            ]
        );
        // And live again, closes paired with the fresh baseline.
        hub.publish(&port(Change::Closed, &ls[1]), &mut tree);
        assert_eq!(drain(&mut slow), ["closed 2"]);
        assert_eq!(drain(&mut fast), ["closed 2"]);
    }

    #[test]
    fn a_client_that_left_is_dropped() {
        let mut hub = Hub::new();
        let rx = client(&mut hub, Filter::default(), 4);
        assert_eq!(hub.len(), 1);
        drop(rx);
        hub.publish(
            &port(Change::Opened, &listener(Proto::Tcp, 1, 1)),
            &mut tree,
        );
        assert!(hub.is_empty());
    }

    /// A user's client gets the owner context of its own user's
    /// listeners only, live and in its baseline; root's gets every one.
    #[test]
    fn owner_contexts_go_to_root_and_to_the_owners_own_user() {
        let with_context = |port: u16, uid: u32| Listener {
            uid,
            context: Some(std::sync::Arc::new(crate::owner::OwnerContext {
                cwd: Some("/home/secret".into()),
                ..Default::default()
            })),
            ..listener(Proto::Tcp, port, 10)
        };
        let mut hub = Hub::new();
        hub.publish(&port(Change::Opened, &with_context(80, 0)), &mut tree);
        let join = |hub: &mut Hub, uid: u32| {
            let (tx, rx) = mpsc::channel(16);
            let filter = Filter::default();
            hub.join(
                Join {
                    filter,
                    tx,
                    uid,
                    ocsf: false,
                },
                "ebpf",
                DateTime::UNIX_EPOCH,
                &mut tree,
            );
            rx
        };
        let (mut root, mut user) = (join(&mut hub, 0), join(&mut hub, 1000));
        hub.publish(&port(Change::Opened, &with_context(81, 1000)), &mut tree);
        let text = |rx: &mut Receiver<String>| {
            let mut all = String::new();
            while let Ok(chunk) = rx.try_recv() {
                all.push_str(&chunk);
            }
            all
        };
        let (root, user) = (text(&mut root), text(&mut user));
        let cwd_of = |all: &str, port: u16| {
            all.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|v| v["port"] == port)
                .map(|v| v["context"]["cwd"].clone())
        };
        assert_eq!(cwd_of(&root, 80), Some("/home/secret".into()));
        assert_eq!(cwd_of(&root, 81), Some("/home/secret".into()));
        assert_eq!(cwd_of(&user, 80), Some(serde_json::Value::Null), "{user}");
        assert_eq!(cwd_of(&user, 81), Some("/home/secret".into()), "{user}");
    }
}
