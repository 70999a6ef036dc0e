//! Snapshots of the host's sockets (`portwatch list`, the TUI's
//! all-sockets view), read through the [`Host`] boundary so that they run
//! on the fakes too.

use std::{collections::HashMap, net::SocketAddr};

use crate::{
    engine,
    error::Result,
    event::{Listener, Proto},
    exposure::{self, Exposure, Published},
    filter::Filter,
    owner_cache::OwnerCache,
    socket::SocketInfo,
    sys::exposure_watch::FactsResult,
    sys::{Host, SocketQuery, SystemHost, exe_hash::ExeHashes},
};

/// Every listening socket of `proto` (both when `None`) in every network
/// namespace, with its owner and its exposure.
pub fn list_listeners(proto: Option<Proto>) -> Result<Vec<Listener>> {
    Ok(list(proto)?.listeners)
}

/// What `portwatch list` shows: the listeners, and the ports DNAT rules
/// publish that no listener is behind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    /// Every listening socket, with its owner, exposure and published
    /// ports.
    pub listeners: Vec<Listener>,
    /// Published ports whose target no listener answers.
    pub unbacked: Vec<Unbacked>,
}

/// A port a DNAT rule publishes, with no listener behind it: an exposure
/// no socket shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Unbacked {
    pub published: Published,
    /// Where the rule sends connections.
    pub to: SocketAddr,
}

/// [`Listing`] of `proto` (both when `None`).
pub fn list(proto: Option<Proto>) -> Result<Listing> {
    let mut host = SystemHost::reading_packages();
    let mut listeners = listeners_on(&mut host, proto)?;
    OwnerCache::default().opened_all(listeners.iter_mut(), &mut host);
    Ok(judged(&mut host, listeners))
}

impl Listing {
    /// Adds each owner's `exe_sha256` (read from the executable it runs,
    /// hashed once per file); an owner whose executable cannot be hashed
    /// keeps none, and the first reason why is returned.
    pub fn hash_executables(&mut self) -> Option<String> {
        let mut hashes = ExeHashes::default();
        let mut why_not = None;
        for l in &mut self.listeners {
            let Some(ctx) = &mut l.context else { continue };
            match hashes.of(l.pid) {
                Ok(hash) => std::sync::Arc::make_mut(ctx).exe_sha256 = Some(hash),
                Err(e) => {
                    why_not.get_or_insert_with(|| format!("pid {}: {e}", l.pid));
                }
            }
        }
        why_not
    }
}

/// Judges each listener's exposure with the facts of its namespace (and
/// portwatch's own), and finds the DNAT rules no listener is behind.
fn judged(host: &mut dyn Host, mut listeners: Vec<Listener>) -> Listing {
    let mut first: HashMap<u64, u32> = HashMap::new();
    if let Some(own) = host.own_netns() {
        first.insert(own, 0);
    }
    for l in listeners.iter().filter(|l| l.netns != 0) {
        first.entry(l.netns).or_insert(l.pid);
    }
    let facts: HashMap<u64, FactsResult> = first
        .into_iter()
        .map(|(netns, pid)| (netns, host.netns_facts(netns, pid, exposure::translate)))
        .collect();
    let read = || {
        facts
            .iter()
            .filter_map(|(n, f)| f.as_ref().ok().map(|f| (*n, f.as_ref())))
    };
    for l in &mut listeners {
        let (e, published) = match facts.get(&l.netns) {
            Some(Ok(f)) => (
                exposure::judge(l.proto, l.address, l.port, f),
                exposure::published_as(l, f, read()),
            ),
            Some(Err(why)) => (
                Exposure::Unknown {
                    why: format!("network namespace {}: {why}", l.netns),
                },
                Vec::new(),
            ),
            None => (
                Exposure::Unknown {
                    why: "its network namespace is not known".into(),
                },
                Vec::new(),
            ),
        };
        l.exposure = Some(e);
        l.published_as = published;
    }
    // Userland proxies (Docker's, root's, in a namespace root made): what
    // they reach is published on their listener.
    let proxies: Vec<exposure::Proxied> = listeners
        .iter()
        .filter(|l| exposure::is_trusted_proxy(l))
        .filter(|l| matches!(facts.get(&l.netns), Some(Ok(f)) if f.trusted))
        .filter_map(|l| {
            let (proto, to) = exposure::docker_proxy_target(&host.cmdline(l.pid))?;
            Some(exposure::Proxied {
                proto,
                to,
                published: Published {
                    netns: l.netns,
                    address: l.address,
                    port: l.port,
                    proto: l.proto,
                    exposure: l.exposure.clone()?,
                },
            })
        })
        .collect();
    for l in &mut listeners {
        if let Some(Ok(f)) = facts.get(&l.netns) {
            let via: Vec<Published> = exposure::proxied_to(l, f, proxies.iter()).collect();
            l.published_as.extend(via);
        }
    }
    let mut unbacked = Vec::new();
    for (netns, f) in read() {
        for d in &f.dnat {
            let backed = listeners.iter().any(|l| {
                matches!(facts.get(&l.netns), Some(Ok(f)) if exposure::forwards_to(d, netns, l, f))
            });
            if !backed {
                unbacked.push(Unbacked {
                    published: Published::of(netns, d, f),
                    to: SocketAddr::new(d.to_address, d.to_port.unwrap_or(d.port)),
                });
            }
        }
    }
    unbacked.sort_by_key(|u| (u.published.port, u.published.netns));
    Listing {
        listeners,
        unbacked,
    }
}

/// Every TCP and UDP socket of `proto` (both when `None`), in any state,
/// in every network namespace, with its owner, as `ss -tuanp` lists them.
pub fn list_sockets(proto: Option<Proto>) -> Result<Vec<SocketInfo>> {
    sockets_on(&mut SystemHost::new(), proto)
}

fn listeners_on(host: &mut dyn Host, proto: Option<Proto>) -> Result<Vec<Listener>> {
    let filter = Filter {
        proto,
        ..Filter::default()
    };
    let queries = engine::scan_queries(&filter);
    let mut listeners = host.scan_listeners(&queries, &|_| true)?.listeners;
    // A UDP socket on an ephemeral port is a client's as far as a scan
    // can tell (see `counts_as_bound`).
    let ephemeral = host.ephemeral_ports();
    listeners.retain(|l| engine::counts_as_bound(l, &ephemeral, |_| false));
    for l in &mut listeners {
        l.container = host.container(&l.cgroup);
    }
    Ok(listeners)
}

fn sockets_on(host: &mut dyn Host, proto: Option<Proto>) -> Result<Vec<SocketInfo>> {
    let queries: Vec<SocketQuery> = [Proto::Tcp, Proto::Udp]
        .into_iter()
        .filter(|p| proto.is_none_or(|want| want == *p))
        .map(SocketQuery::every_state)
        .collect();
    let mut sockets = host.scan_sockets(&queries)?;
    for s in &mut sockets {
        s.container = host.container(&s.cgroup);
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{FakeOs, scanned};

    #[test]
    fn list_keeps_every_listener_and_bound_udp_port_but_no_client_port() {
        let os = FakeOs::new();
        {
            let mut w = os.world();
            let mut docker = scanned(Proto::Tcp, "0.0.0.0", 80, 7);
            docker.cgroup = format!("/system.slice/docker-{}.scope", "ab".repeat(32));
            w.listeners = vec![
                docker,
                scanned(Proto::Udp, "0.0.0.0", 53, 8),
                // A DNS client's automatic port: not a bound port.
                scanned(Proto::Udp, "10.0.0.5", 40000, 9),
                // A TCP listener on an ephemeral port is one.
                scanned(Proto::Tcp, "127.0.0.1", 40001, 10),
            ];
        }
        let mut host = os.os().host;
        let got = listeners_on(host.as_mut(), None).unwrap();
        let ports: Vec<u16> = got.iter().map(|l| l.port).collect();
        assert_eq!(ports, [80, 53, 40001]);
        assert_eq!(
            got[0].container.as_ref().map(|c| c.label()).as_deref(),
            Some("docker:abababababab")
        );
        let udp = listeners_on(host.as_mut(), Some(Proto::Udp)).unwrap();
        assert_eq!(udp.iter().map(|l| l.port).collect::<Vec<_>>(), [53]);
        assert_eq!(os.world().scanned_protos, [Proto::Udp]);
    }

    #[test]
    fn the_socket_list_asks_for_the_protocols_wanted_and_names_containers() {
        let os = FakeOs::new();
        os.world().sockets = vec![
            SocketInfo {
                cgroup: "/system.slice/nginx.service".into(),
                ..SocketInfo::example(Proto::Tcp, "10.0.0.5:22", Some("10.0.0.9:51000"))
            },
            SocketInfo::example(Proto::Udp, "0.0.0.0:53", None),
        ];
        let mut host = os.os().host;
        let all = sockets_on(host.as_mut(), None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0].container.as_ref().map(|c| c.label()).as_deref(),
            Some("service:nginx.service")
        );
        let tcp = sockets_on(host.as_mut(), Some(Proto::Tcp)).unwrap();
        assert_eq!(tcp.len(), 1);
    }
}
