//! Snapshots of the host's sockets (`portwatch list`, the TUI's
//! all-sockets view), read through the [`Host`] boundary so that they run
//! on the fakes too.

use crate::{
    engine,
    error::Result,
    event::{Listener, Proto},
    filter::Filter,
    socket::SocketInfo,
    sys::{Host, SocketQuery, SystemHost},
};

/// Every listening socket of `proto` (both when `None`) in every network
/// namespace, with its owner, as `portwatch list` prints them.
pub fn list_listeners(proto: Option<Proto>) -> Result<Vec<Listener>> {
    listeners_on(&mut SystemHost::new(), proto)
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
