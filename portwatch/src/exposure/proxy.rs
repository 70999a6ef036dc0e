//! Userland port proxies: Docker's `docker-proxy` listens on the host for
//! a published port and copies each connection to the container. Its
//! listener is the way in; the container's listener is what it reaches.

use std::net::{IpAddr, SocketAddr};

use crate::event::{Listener, Proto};

/// The name (`comm`) of Docker's userland proxy.
pub const DOCKER_PROXY: &str = "docker-proxy";

/// Where a `docker-proxy` sends connections, from its arguments
/// (`-proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip
/// 172.17.0.2 -container-port 80`).
pub fn docker_proxy_target(args: &[String]) -> Option<(Proto, SocketAddr)> {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag || a.strip_prefix('-') == Some(flag))
            .and_then(|i| args.get(i + 1))
    };
    let proto = match value("-proto").map_or("tcp", String::as_str) {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    let ip: IpAddr = value("-container-ip")?.parse().ok()?;
    let port: u16 = value("-container-port")?.parse().ok()?;
    Some((proto, SocketAddr::new(ip, port)))
}

/// A trusted proxy's listener, and where it sends connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxied {
    pub proto: Proto,
    pub to: SocketAddr,
    /// The proxy's listener, as a way in, with its exposure.
    pub published: super::Published,
}

/// The proxies among `proxies` that send connections to `l`, which is in
/// a namespace with `own` facts.
pub fn proxied_to<'a>(
    l: &'a Listener,
    own: &'a super::NetnsFacts,
    proxies: impl Iterator<Item = &'a Proxied> + 'a,
) -> impl Iterator<Item = super::Published> + 'a {
    proxies
        .filter(move |p| {
            let answers = l.address == p.to.ip()
                || (l.address.is_unspecified() && (l.address.is_ipv6() || p.to.is_ipv4()));
            // A namespace root made (see `published::forwards_to`).
            let here = (own.trusted || l.netns == p.published.netns)
                && own
                    .interfaces
                    .iter()
                    .any(|i| i.addresses.contains(&p.to.ip()));
            p.proto == l.proto && p.to.port() == l.port && answers && here
        })
        .map(|p| p.published.clone())
}

/// Whether listener `l` is a proxy whose word is taken: Docker's, run by
/// root (anyone can name a process `docker-proxy`).
pub fn is_trusted_proxy(l: &Listener) -> bool {
    l.comm == DOCKER_PROXY && l.uid == 0 && l.pid != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn a_docker_proxy_command_line_names_its_target() {
        assert_eq!(
            docker_proxy_target(&args(
                "/usr/bin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80 -use-listen-fd"
            )),
            Some((Proto::Tcp, "172.17.0.2:80".parse().unwrap()))
        );
        assert_eq!(
            docker_proxy_target(&args(
                "docker-proxy --proto udp --container-ip fd00::2 --container-port 53"
            )),
            Some((Proto::Udp, "[fd00::2]:53".parse().unwrap()))
        );
        assert_eq!(
            docker_proxy_target(&args("docker-proxy -container-ip 1.2.3.4")),
            None
        );
        assert_eq!(
            docker_proxy_target(&args(
                "docker-proxy -proto sctp -container-ip 1.2.3.4 -container-port 9"
            )),
            None
        );
    }
}
