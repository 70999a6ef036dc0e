//! Which listeners a watch reports: by protocol, address scope, namespace
//! and process tree. Pure logic.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::event::{Listener, Proto};

/// Which local addresses are reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Scope {
    /// Every address.
    #[default]
    All,
    /// Only loopback and wildcard: 127.0.0.1, 0.0.0.0, ::1 and ::
    /// (what the Go port-watcher reported).
    Local,
}

/// The filters of one watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub scope: Scope,
    /// Only this network namespace (inode of `/proc/PID/ns/net`).
    pub netns: Option<u64>,
    /// Only this process and its descendants.
    pub pid: Option<u32>,
    /// Only this protocol; both when `None`.
    pub proto: Option<Proto>,
}

impl Filter {
    /// Whether any filter is set.
    pub fn is_active(&self) -> bool {
        self.scope != Scope::All
            || self.netns.is_some()
            || self.pid.is_some()
            || self.proto.is_some()
    }

    /// The protocol, address and namespace part of the filter (the process
    /// tree is decided by the kernel or by the scan).
    pub fn admits(&self, listener: &Listener) -> bool {
        self.admits_socket(listener.proto, listener.address, listener.netns)
    }

    /// [`Filter::admits`] from the fields it reads.
    pub fn admits_socket(&self, proto: Proto, address: IpAddr, netns: u64) -> bool {
        self.proto.is_none_or(|p| p == proto)
            && scope_admits(self.scope, address)
            && self.netns.is_none_or(|ns| ns == netns)
    }

    /// Whether listeners of `proto` can pass at all.
    pub fn wants(&self, proto: Proto) -> bool {
        self.proto.is_none_or(|p| p == proto)
    }
}

pub fn scope_admits(scope: Scope, address: IpAddr) -> bool {
    match scope {
        Scope::All => true,
        Scope::Local => {
            address == IpAddr::V4(Ipv4Addr::LOCALHOST)
                || address == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                || address == IpAddr::V6(Ipv6Addr::LOCALHOST)
                || address == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        }
    }
}

/// Pure: `root` and every process below it in the parent links.
pub(crate) fn descendants(root: u32, links: &[(u32, u32)]) -> HashSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(pid, ppid) in links {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = HashSet::from([root]);
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if out.insert(c) {
                stack.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(proto: Proto, addr: &str, netns: u64) -> Listener {
        Listener {
            pid: 1,
            netns,
            ..Listener::new(proto, addr.parse().unwrap(), 1)
        }
    }

    #[test]
    fn local_scope_is_the_four_addresses() {
        for a in ["127.0.0.1", "0.0.0.0", "::1", "::"] {
            assert!(scope_admits(Scope::Local, a.parse().unwrap()), "{a}");
        }
        for a in ["10.0.0.1", "127.0.0.2", "::ffff:127.0.0.1", "fe80::1"] {
            assert!(!scope_admits(Scope::Local, a.parse().unwrap()), "{a}");
            assert!(scope_admits(Scope::All, a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn namespace_filter() {
        let f = Filter {
            netns: Some(5),
            ..Filter::default()
        };
        assert!(f.is_active());
        assert!(f.admits(&listener(Proto::Tcp, "10.1.1.1", 5)));
        assert!(!f.admits(&listener(Proto::Tcp, "10.1.1.1", 6)));
        assert!(!Filter::default().is_active());
    }

    #[test]
    fn protocol_filter() {
        let f = Filter {
            proto: Some(Proto::Udp),
            ..Filter::default()
        };
        assert!(f.is_active());
        assert!(f.admits(&listener(Proto::Udp, "::", 1)));
        assert!(!f.admits(&listener(Proto::Tcp, "::", 1)));
        assert!(f.wants(Proto::Udp) && !f.wants(Proto::Tcp));
        assert!(Filter::default().wants(Proto::Tcp));
    }

    #[test]
    fn descendants_follow_links() {
        let links = [(2, 1), (3, 2), (4, 3), (5, 1), (6, 5)];
        let got = descendants(2, &links);
        assert_eq!(got, HashSet::from([2, 3, 4]));
        assert_eq!(descendants(9, &links), HashSet::from([9]));
    }
}
