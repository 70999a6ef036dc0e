//! What a connected watcher has reported open, and its reconciliation
//! with a fresh baseline: after a reconnection, or after the daemon said
//! this watcher fell behind, only the difference is reported (ports gone
//! since as closed, new ones as opened), never a second open of a port
//! still open. Plain data: no socket, no clock.

use std::{collections::BTreeMap, net::IpAddr};

use super::PortChange;
use crate::event::{Change, Listener, Proto};

/// One socket as the daemon pairs its open and close (protocol,
/// namespace, address, port), and its owner: `SO_REUSEPORT` sockets of
/// two processes are two entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    proto: Proto,
    netns: u64,
    address: IpAddr,
    port: u16,
    pid: u32,
}

impl Key {
    fn of(l: &Listener) -> Key {
        Key {
            proto: l.proto,
            netns: l.netns,
            address: l.address,
            port: l.port,
            pid: l.pid,
        }
    }

    /// Whether `other` is the same socket address, whoever owns it.
    fn same_socket(&self, other: &Key) -> bool {
        Key { pid: 0, ..*self } == Key { pid: 0, ..*other }
    }
}

/// Sockets of one key, and the latest description of them.
#[derive(Debug)]
struct Entry {
    listener: Listener,
    /// Sockets of this owner on this address (one, but for a process
    /// that opened several with `SO_REUSEPORT`).
    count: usize,
}

/// What was reported open and not yet closed.
#[derive(Debug, Default)]
pub(crate) struct View {
    open: BTreeMap<Key, Entry>,
}

impl View {
    /// Sockets reported open and not closed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.values().map(|e| e.count).sum()
    }

    /// Distinct sockets (address, port, owner) open: what it holds in
    /// memory.
    pub(crate) fn keys(&self) -> usize {
        self.open.len()
    }

    /// A live open: counted, and the change to report.
    pub(crate) fn opened(&mut self, listener: Listener) -> PortChange {
        let change = PortChange::of(Change::Opened, &listener);
        let entry = self.open.entry(Key::of(&listener)).or_insert(Entry {
            listener: listener.clone(),
            count: 0,
        });
        entry.listener = listener;
        entry.count += 1;
        change
    }

    /// A live close: the change to report, if its open was reported. The
    /// daemon pairs a close with an open by socket address alone, so a
    /// close of another owner's socket on that address takes that one
    /// when this owner has none.
    pub(crate) fn closed(&mut self, listener: &Listener) -> Option<PortChange> {
        let key = Key::of(listener);
        let found = if self.open.contains_key(&key) {
            key
        } else {
            let first = Key { pid: 0, ..key };
            *self
                .open
                .range(first..)
                .next()
                .map(|(k, _)| k)
                .filter(|k| k.same_socket(&key))?
        };
        let entry = self.open.get_mut(&found)?;
        entry.count = entry.count.saturating_sub(1);
        if entry.count == 0 {
            self.open.remove(&found);
        }
        Some(PortChange::of(Change::Closed, listener))
    }

    /// Makes a fresh baseline the view: reports as closed what was open
    /// and is not in it (in the order of their addresses), then as opened
    /// what is new in it (in its order). What is in both is reported
    /// neither way.
    pub(crate) fn reconcile(&mut self, baseline: Vec<Listener>) -> Vec<PortChange> {
        let mut fresh: BTreeMap<Key, Entry> = BTreeMap::new();
        // Each key once, in the order the baseline first named it.
        let mut order = Vec::new();
        for listener in baseline {
            let key = Key::of(&listener);
            match fresh.get_mut(&key) {
                Some(entry) => {
                    entry.listener = listener;
                    entry.count += 1;
                }
                None => {
                    order.push(key);
                    fresh.insert(key, Entry { listener, count: 1 });
                }
            }
        }
        let mut changes = Vec::new();
        for (key, old) in &self.open {
            let still = fresh.get(key).map_or(0, |e| e.count);
            for _ in still..old.count {
                changes.push(PortChange::of(Change::Closed, &old.listener));
            }
        }
        for key in &order {
            let Some(new) = fresh.get(key) else { continue };
            let before = self.open.get(key).map_or(0, |e| e.count);
            for _ in before..new.count {
                changes.push(PortChange::of(Change::Opened, &new.listener));
            }
        }
        self.open = fresh;
        changes
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn listener(proto: Proto, port: u16, pid: u32) -> Listener {
        Listener {
            pid,
            netns: 1,
            comm: "srv".into(),
            ..Listener::new(proto, "127.0.0.1".parse().unwrap(), port)
        }
    }

    /// A change as `opened tcp 80 pid 10`, so that tests do not spell
    /// out every field of a `Port`.
    pub(crate) fn said(change: &PortChange) -> String {
        let (what, p) = match change {
            PortChange::Opened(p) => ("opened", p),
            PortChange::Closed(p) => ("closed", p),
        };
        format!("{what} {} {} pid {}", p.proto.as_str(), p.port, p.pid)
    }

    fn all(changes: &[PortChange]) -> Vec<String> {
        changes.iter().map(said).collect()
    }

    #[test]
    fn the_first_baseline_is_all_opened_in_its_order() {
        let mut view = View::default();
        let changes = view.reconcile(vec![
            listener(Proto::Tcp, 80, 10),
            listener(Proto::Udp, 53, 11),
        ]);
        assert_eq!(
            all(&changes),
            ["opened tcp 80 pid 10", "opened udp 53 pid 11"]
        );
        assert_eq!(view.len(), 2);
        // The same again: nothing to say.
        let again = view.reconcile(vec![
            listener(Proto::Udp, 53, 11),
            listener(Proto::Tcp, 80, 10),
        ]);
        assert!(again.is_empty(), "{:?}", all(&again));
    }

    #[test]
    fn a_fresh_baseline_reports_the_difference_only() {
        let mut view = View::default();
        view.reconcile(vec![
            listener(Proto::Tcp, 80, 10),
            listener(Proto::Tcp, 443, 10),
        ]);
        view.opened(listener(Proto::Udp, 53, 11));
        // Meanwhile 443 closed, 8080 opened, and port 80 changed owner.
        let changes = view.reconcile(vec![
            listener(Proto::Udp, 53, 11),
            listener(Proto::Tcp, 8080, 12),
            listener(Proto::Tcp, 80, 13),
        ]);
        assert_eq!(
            all(&changes),
            [
                "closed tcp 80 pid 10",
                "closed tcp 443 pid 10",
                "opened tcp 8080 pid 12",
                "opened tcp 80 pid 13",
            ]
        );
        // A close reports the port closed, with its state.
        match &changes[0] {
            PortChange::Closed(p) => assert_eq!(p.state.as_str(), "closed"),
            other => panic!("{other:?}"),
        }
        // Everything gone: everything closed, nothing left.
        let gone = view.reconcile(Vec::new());
        assert_eq!(gone.len(), 3);
        assert_eq!(view.len(), 0);
    }

    #[test]
    fn the_same_address_in_two_namespaces_is_two_ports() {
        let mut view = View::default();
        let other_ns = Listener {
            netns: 2,
            ..listener(Proto::Tcp, 80, 10)
        };
        view.reconcile(vec![listener(Proto::Tcp, 80, 10), other_ns.clone()]);
        assert_eq!(
            all(&view.reconcile(vec![other_ns])),
            ["closed tcp 80 pid 10"]
        );
    }

    #[test]
    fn sockets_sharing_an_address_are_counted() {
        let mut view = View::default();
        // One process, two SO_REUSEPORT sockets on port 80.
        let a = listener(Proto::Tcp, 80, 10);
        view.reconcile(vec![a.clone(), a.clone()]);
        assert_eq!(view.len(), 2);
        // One of them closed while away: one close, no open.
        assert_eq!(
            all(&view.reconcile(vec![a.clone()])),
            ["closed tcp 80 pid 10"]
        );
        // Two again: one open.
        assert_eq!(
            all(&view.reconcile(vec![a.clone(), a])),
            ["opened tcp 80 pid 10"]
        );
    }

    #[test]
    fn live_closes_pair_with_reported_opens_only() {
        let mut view = View::default();
        view.opened(listener(Proto::Tcp, 80, 10));
        // Never reported open: not reported closed.
        assert!(view.closed(&listener(Proto::Tcp, 81, 10)).is_none());
        // The daemon pairs by address: another owner's close takes it.
        let close = view.closed(&listener(Proto::Tcp, 80, 99)).unwrap();
        assert_eq!(said(&close), "closed tcp 80 pid 99");
        assert_eq!(view.len(), 0);
        assert!(view.closed(&listener(Proto::Tcp, 80, 10)).is_none());
        // A close of the owner's own socket is taken before another's.
        view.opened(listener(Proto::Tcp, 80, 10));
        view.opened(listener(Proto::Tcp, 80, 11));
        view.closed(&listener(Proto::Tcp, 80, 11)).unwrap();
        assert_eq!(
            all(&view.reconcile(vec![listener(Proto::Tcp, 80, 10)])),
            Vec::<String>::new()
        );
    }
}
