//! Which listeners a watch reports: by address scope, namespace and
//! process tree. Pure logic.

use std::net::IpAddr;

use crate::event::Listener;

/// Which local addresses are reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
}

impl Filter {
    /// Whether any filter is set.
    pub fn is_active(&self) -> bool {
        self.scope != Scope::All || self.netns.is_some() || self.pid.is_some()
    }

    /// The address and namespace part of the filter (the process tree is
    /// decided by the kernel or by the scan).
    pub fn admits(&self, listener: &Listener) -> bool {
        scope_admits(self.scope, listener.address)
            && self.netns.is_none_or(|ns| ns == listener.netns)
    }
}

pub fn scope_admits(scope: Scope, address: IpAddr) -> bool {
    match scope {
        Scope::All => true,
        Scope::Local => matches!(
            address.to_string().as_str(),
            "127.0.0.1" | "0.0.0.0" | "::1" | "::"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Proto;

    fn listener(addr: &str, netns: u64) -> Listener {
        Listener {
            proto: Proto::Tcp,
            address: addr.parse().unwrap(),
            port: 1,
            pid: 1,
            comm: String::new(),
            uid: 0,
            skaddr: None,
            inode: None,
            netns,
            cgroup: String::new(),
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
        assert!(f.admits(&listener("10.1.1.1", 5)));
        assert!(!f.admits(&listener("10.1.1.1", 6)));
        assert!(!Filter::default().is_active());
    }
}
