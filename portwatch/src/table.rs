//! The table of open listeners: pairs every close with its open.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use portwatch_common::ListenKind;

use crate::event::{Change, KernelEvent, Listener, PortEvent, Proto, Source};

/// Open listeners, keyed by kernel socket address once the kernel has told
/// us about them, and by address and port while only a procfs scan has.
#[derive(Debug, Default)]
pub struct ListenerTable {
    by_sk: HashMap<u64, Listener>,
    /// Listeners from a procfs scan: /proc shows no socket address, so their
    /// close is matched on address and port.
    scanned: Vec<Listener>,
}

impl ListenerTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the listeners of a procfs scan taken at start-up.
    pub fn seed(&mut self, listeners: impl IntoIterator<Item = Listener>) {
        self.scanned.extend(listeners);
    }

    /// Every open listener.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.by_sk.values().chain(self.scanned.iter())
    }

    pub fn len(&self) -> usize {
        self.by_sk.len() + self.scanned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one kernel event and returns what to report, if anything.
    ///
    /// `scan_end_ns` is the boot-time at which the start-up procfs scan
    /// finished. Events older than that may already be part of the scan:
    /// an open that the scan already shows is not reported twice, and the
    /// close of a listener the scan never showed (it was gone before the
    /// scan) is not reported either.
    pub fn apply(
        &mut self,
        ev: &KernelEvent,
        ts: DateTime<Utc>,
        scan_end_ns: u64,
    ) -> Option<PortEvent> {
        let during_startup = ev.ts_ns <= scan_end_ns;
        match ev.kind {
            ListenKind::Opened => {
                let listener = Listener {
                    proto: Proto::Tcp,
                    address: ev.address,
                    port: ev.port,
                    pid: ev.tgid,
                    comm: ev.comm.clone(),
                    uid: ev.uid,
                    skaddr: Some(ev.skaddr),
                    inode: None,
                };
                if during_startup
                    && let Some(i) = self.scanned.iter().position(|l| same_socket(l, &listener))
                {
                    // Already reported by the scan: from now on its close can
                    // be matched by socket address.
                    let mut known = self.scanned.swap_remove(i);
                    known.skaddr = Some(ev.skaddr);
                    self.by_sk.insert(ev.skaddr, known);
                    return None;
                }
                self.by_sk.insert(ev.skaddr, listener.clone());
                Some(PortEvent {
                    change: Change::Opened,
                    listener,
                    ts,
                    source: Source::Ebpf,
                })
            }
            ListenKind::Closed => {
                let owner = self.by_sk.remove(&ev.skaddr).or_else(|| {
                    let i = self
                        .scanned
                        .iter()
                        .position(|l| l.address == ev.address && l.port == ev.port)?;
                    Some(self.scanned.swap_remove(i))
                });
                let listener = match owner {
                    Some(owner) => owner,
                    None if during_startup => return None,
                    // Never seen open (its open was lost): report it with what
                    // the close itself tells.
                    None => Listener {
                        proto: Proto::Tcp,
                        address: ev.address,
                        port: ev.port,
                        pid: ev.tgid,
                        comm: ev.comm.clone(),
                        uid: ev.uid,
                        skaddr: Some(ev.skaddr),
                        inode: None,
                    },
                };
                Some(PortEvent {
                    change: Change::Closed,
                    listener,
                    ts,
                    source: Source::Ebpf,
                })
            }
        }
    }
}

fn same_socket(scanned: &Listener, opened: &Listener) -> bool {
    scanned.address == opened.address && scanned.port == opened.port && scanned.pid == opened.pid
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ts() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn kev(kind: ListenKind, ts_ns: u64, sk: u64, addr: &str, port: u16, pid: u32) -> KernelEvent {
        KernelEvent {
            kind,
            ts_ns,
            skaddr: sk,
            cgroup_id: 1,
            tgid: pid,
            tid: pid,
            uid: 0,
            address: addr.parse().unwrap(),
            port,
            comm: format!("p{pid}"),
        }
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
        }
    }

    #[test]
    fn close_is_attributed_to_the_opener() {
        let mut t = ListenerTable::new();
        let open = t
            .apply(&kev(ListenKind::Opened, 10, 0xa, "0.0.0.0", 80, 1), ts(), 0)
            .unwrap();
        assert_eq!(
            (open.change, open.listener.pid, open.source),
            (Change::Opened, 1, Source::Ebpf)
        );
        // Closed by another process (a child that inherited the fd).
        let close = t
            .apply(&kev(ListenKind::Closed, 20, 0xa, "0.0.0.0", 80, 2), ts(), 0)
            .unwrap();
        assert_eq!((close.change, close.listener.pid), (Change::Closed, 1));
        assert!(t.is_empty());
    }

    #[test]
    fn startup_open_already_in_scan_is_not_repeated() {
        let mut t = ListenerTable::new();
        t.seed([scanned("127.0.0.1", 8080, 5)]);
        assert!(
            t.apply(
                &kev(ListenKind::Opened, 10, 0xb, "127.0.0.1", 8080, 5),
                ts(),
                100
            )
            .is_none()
        );
        assert_eq!(t.len(), 1);
        // The close now pairs by socket address.
        let close = t
            .apply(
                &kev(ListenKind::Closed, 200, 0xb, "127.0.0.1", 8080, 9),
                ts(),
                100,
            )
            .unwrap();
        assert_eq!(close.listener.pid, 5);
        assert_eq!(close.listener.inode, Some(42));
        assert!(t.is_empty());
    }

    #[test]
    fn startup_open_missing_from_scan_is_reported_with_its_close() {
        let mut t = ListenerTable::new();
        assert!(
            t.apply(&kev(ListenKind::Opened, 10, 0xc, "::1", 9, 3), ts(), 100)
                .is_some()
        );
        assert!(
            t.apply(&kev(ListenKind::Closed, 11, 0xc, "::1", 9, 3), ts(), 100)
                .is_some()
        );
    }

    #[test]
    fn close_before_scan_of_unknown_listener_is_dropped() {
        let mut t = ListenerTable::new();
        assert!(
            t.apply(&kev(ListenKind::Closed, 10, 0xd, "::", 22, 3), ts(), 100)
                .is_none()
        );
        // After start-up an unknown close is still reported, never lost.
        let late = t
            .apply(&kev(ListenKind::Closed, 300, 0xd, "::", 22, 3), ts(), 100)
            .unwrap();
        assert_eq!(late.listener.port, 22);
    }

    #[test]
    fn scanned_listener_close_matches_on_address_and_port() {
        let mut t = ListenerTable::new();
        t.seed([scanned("0.0.0.0", 22, 7), scanned("::", 22, 7)]);
        let close = t
            .apply(&kev(ListenKind::Closed, 500, 0xe, "::", 22, 0), ts(), 100)
            .unwrap();
        assert_eq!(
            (close.listener.pid, close.listener.address.to_string()),
            (7, "::".to_string())
        );
        assert_eq!(t.len(), 1);
    }
}
