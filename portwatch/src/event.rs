//! What portwatch reports: listeners and their opened/closed events, and
//! the kernel's socket events decoded into userspace types.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use chrono::{DateTime, Utc};
use portwatch_common::{
    AF_INET, AF_INET6, FLAG_NEVER_LISTENED, FLAG_OWNER_KNOWN, FLAG_RELEASE_UNSEEN,
    FLAG_SOCK_COOKIE, FLAG_UNCONFIRMED, IPPROTO_TCP, IPPROTO_UDP, SockEvent, SockEventKind,
};

use crate::{container::Container, safe_text::comm_text};

/// Transport protocol of a socket.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The lowercase name, as the JSON output spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// From an `IPPROTO_*` number.
    pub fn from_ipproto(n: u16) -> Option<Self> {
        match n {
            IPPROTO_TCP => Some(Proto::Tcp),
            IPPROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a listener appeared or went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Opened,
    Closed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Opened => "opened",
            Change::Closed => "closed",
        }
    }
}

/// Where an event's knowledge came from.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Source {
    /// The procfs scan taken at start-up.
    Baseline,
    /// A kernel event, as it happened.
    Ebpf,
    /// A later procfs scan that found a difference the events did not show.
    Resync,
    /// The polling fallback backend.
    Procfs,
    /// The UDP aggregate mode: a socket a process that bound one still
    /// held at the end of a settle interval.
    Aggregate,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Baseline => "baseline",
            Source::Ebpf => "ebpf",
            Source::Resync => "resync",
            Source::Procfs => "procfs",
            Source::Aggregate => "aggregate",
        }
    }
}

/// A listening socket and the process that owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    /// Owning process (thread group) id.
    pub pid: u32,
    /// Owner's name, made safe for terminals and JSON (see [`crate::safe_text`]).
    pub comm: String,
    pub uid: u32,
    /// The socket's cookie (`ss -e` prints it as `sk:`), when known: it
    /// names one socket for its whole life, in events and scans alike.
    pub cookie: Option<u64>,
    /// Socket inode, when the listener was seen by a procfs scan.
    pub inode: Option<u64>,
    /// Network namespace inode (as in `/proc/PID/ns/net`); 0 when unknown.
    pub netns: u64,
    /// Owner's cgroup v2 path (e.g. `/system.slice/nginx.service`); empty
    /// when unknown.
    pub cgroup: String,
    /// The cgroup v2 id of the socket itself: its creator's at socket(),
    /// which may differ from its owner's now. Known from sock_diag (a
    /// scan) and from a UDP bind in a cgroup the release program did not
    /// cover yet; 0 otherwise (other kernel events, listeners read from
    /// the event socket).
    pub socket_cgroup: u64,
    /// The container or service unit the owner runs in, from its cgroup.
    pub container: Option<Container>,
    /// When the listener opened, if it opened while portwatch watched
    /// (`None` for listeners older than the watch, or found by a scan).
    pub opened_at: Option<DateTime<Utc>>,
    /// Who can reach it, judged for its network namespace by a
    /// [`crate::monitor::Monitor`] or `list` (`None`: not judged).
    pub exposure: Option<Exposure>,
    /// DNAT rules (in any namespace) that send connections to it, each
    /// with its own exposure.
    pub published_as: Vec<Published>,
    /// Why its owner is there (see [`crate::owner`]), told by a
    /// [`crate::monitor::Monitor`] or `list` (`None`: not told, or no
    /// owner).
    pub context: Option<std::sync::Arc<crate::owner::OwnerContext>>,
}

impl Listener {
    /// A listener on `address:port` and nothing else known yet (no owner,
    /// namespace 0): fill in the rest with struct update syntax,
    /// `Listener { pid: 42, ..Listener::new(Proto::Tcp, addr, 80) }`.
    pub fn new(proto: Proto, address: IpAddr, port: u16) -> Listener {
        Listener {
            proto,
            address,
            port,
            pid: 0,
            comm: String::new(),
            uid: 0,
            cookie: None,
            inode: None,
            netns: 0,
            cgroup: String::new(),
            socket_cgroup: 0,
            container: None,
            opened_at: None,
            exposure: None,
            published_as: Vec::new(),
            context: None,
        }
    }

    /// What identifies a listening socket in a procfs scan and in events
    /// alike: protocol, namespace, address and port.
    pub fn key(&self) -> ListenerKey {
        ListenerKey {
            proto: self.proto,
            netns: self.netns,
            address: self.address,
            port: self.port,
        }
    }

    /// `address:port`, with IPv6 addresses in brackets.
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// See [`Listener::key`]. Several sockets may share one key
/// (`SO_REUSEPORT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    pub proto: Proto,
    pub netns: u64,
    pub address: IpAddr,
    pub port: u16,
}

/// What one scan of the socket tables saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    pub listeners: Vec<Listener>,
    /// The network namespaces whose tables were read, each with whether
    /// the read gave socket cookies (sock_diag) or not (/proc/net text).
    /// A listener of a namespace not in here was not looked for.
    pub namespaces: std::collections::HashMap<u64, bool>,
}

/// One report: a listener opened or closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortEvent {
    pub change: Change,
    pub listener: Listener,
    pub ts: DateTime<Utc>,
    pub source: Source,
}

/// A kernel [`SockEvent`] decoded into userspace types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    pub kind: SockEventKind,
    pub proto: Proto,
    pub ts_ns: u64,
    /// The socket's identity: its cookie, or with `sock_is_cookie` false
    /// (the classic tracepoint) the kernel address of its `struct sock`.
    pub sock: u64,
    pub sock_is_cookie: bool,
    pub cgroup_id: u64,
    /// Owner (for a close whose owner the kernel did not know: the closer).
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    /// For a close, the process that dropped the last reference.
    pub closer_tgid: u32,
    /// Whether the owner fields name the process that called `listen()`.
    pub owner_known: bool,
    /// An open whose `listen()` may yet fail (the kernel saw no return):
    /// reported only once the socket tables show it listening.
    pub unconfirmed: bool,
    /// A close of a socket the kernel never hashed as a listener: its
    /// `listen()` failed, and nothing is reported.
    pub never_listened: bool,
    /// A UDP bind in a cgroup no release program watches yet: `Some` of
    /// the socket's cgroup id (0 when unknown). The kernel recorded no
    /// owner; the engine has the program attached there, records it, and
    /// looks again whether the socket closed meanwhile.
    pub release_unseen: Option<u64>,
    pub netns: u64,
    pub address: IpAddr,
    pub port: u16,
    pub comm: String,
    /// Owner's cgroup path and container, filled in by the engine (the
    /// decoder cannot).
    pub cgroup: String,
    pub container: Option<Container>,
    /// The peer, for connection events.
    pub remote: Option<SocketAddr>,
}

impl KernelEvent {
    /// The listener this event describes, opened at `ts` if it is an open.
    pub fn listener(&self) -> Listener {
        Listener {
            proto: self.proto,
            address: self.address,
            port: self.port,
            pid: self.tgid,
            comm: self.comm.clone(),
            uid: self.uid,
            cookie: self.sock_is_cookie.then_some(self.sock),
            inode: None,
            netns: self.netns,
            cgroup: self.cgroup.clone(),
            socket_cgroup: self.release_unseen.unwrap_or(0),
            container: self.container.clone(),
            opened_at: None,
            exposure: None,
            published_as: Vec::new(),
            context: None,
        }
    }

    pub fn key(&self) -> ListenerKey {
        ListenerKey {
            proto: self.proto,
            netns: self.netns,
            address: self.address,
            port: self.port,
        }
    }

    /// Decodes one ring buffer record. `None` for a record of the wrong size,
    /// kind, protocol or address family, which only a mismatched kernel
    /// object sends.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<SockEvent>() {
            return None;
        }
        // SAFETY: the length was checked above, `SockEvent` is plain data
        // valid for any bit pattern, and `read_unaligned` needs no alignment.
        let raw: SockEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        Self::from_raw(&raw)
    }

    pub fn from_raw(raw: &SockEvent) -> Option<Self> {
        let ip = |a: &[u8; 16]| match raw.family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*a))),
            _ => None,
        };
        let address = ip(&raw.addr)?;
        let kind = SockEventKind::try_from(raw.kind).ok()?;
        let proto = Proto::from_ipproto(u16::from(raw.proto))?;
        let remote = matches!(kind, SockEventKind::Connect | SockEventKind::Accept)
            .then(|| ip(&raw.raddr).map(|r| SocketAddr::new(r, raw.rport)))
            .flatten();
        Some(Self {
            kind,
            proto,
            ts_ns: raw.ts_ns,
            sock: raw.sock,
            sock_is_cookie: raw.flags & FLAG_SOCK_COOKIE != 0,
            cgroup_id: raw.cgroup_id,
            tgid: raw.tgid,
            tid: raw.tid,
            uid: raw.uid,
            closer_tgid: raw.closer_tgid,
            owner_known: raw.flags & FLAG_OWNER_KNOWN != 0,
            unconfirmed: raw.flags & FLAG_UNCONFIRMED != 0,
            release_unseen: (raw.flags & FLAG_RELEASE_UNSEEN != 0).then_some(raw.sock_cgroup),
            never_listened: raw.flags & FLAG_NEVER_LISTENED != 0,
            netns: u64::from(raw.netns),
            address,
            port: raw.port,
            comm: comm_text(&raw.comm),
            cgroup: String::new(),
            container: None,
            remote,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn raw(kind: SockEventKind, family: u16, addr: [u8; 16], port: u16) -> SockEvent {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"srv\x1b");
        SockEvent {
            ts_ns: 5,
            sock: 0x1000,
            cgroup_id: 7,
            tgid: 100,
            tid: 101,
            uid: 1000,
            closer_tgid: 0,
            netns: 4026531840,
            kind: kind as u8,
            flags: FLAG_OWNER_KNOWN | FLAG_SOCK_COOKIE,
            family,
            port,
            proto: IPPROTO_TCP as u8,
            _pad: [0; 5],
            addr,
            comm,
            raddr: [0; 16],
            rport: 0,
            _pad2: [0; 6],
            sock_cgroup: 0,
        }
    }

    fn bytes_of(ev: &SockEvent) -> Vec<u8> {
        // SAFETY: SockEvent is plain data without implicit padding.
        unsafe {
            std::slice::from_raw_parts(
                (ev as *const SockEvent).cast::<u8>(),
                size_of::<SockEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_ipv4() {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let ev = KernelEvent::decode(&bytes_of(&raw(SockEventKind::Opened, AF_INET, addr, 8080)))
            .unwrap();
        assert_eq!(ev.address, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((ev.port, ev.tgid, ev.tid, ev.uid), (8080, 100, 101, 1000));
        assert_eq!((ev.kind, ev.proto), (SockEventKind::Opened, Proto::Tcp));
        assert_eq!(ev.comm, "srv\\x1b");
        assert!(ev.owner_known);
        assert_eq!(ev.netns, 4026531840);
        assert_eq!(ev.listener().cookie, Some(0x1000));
    }

    #[test]
    fn decodes_ipv6_mapped_and_udp() {
        let ev = KernelEvent::from_raw(&raw(SockEventKind::Closed, AF_INET6, [0; 16], 1)).unwrap();
        assert_eq!(ev.address.to_string(), "::");
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        let mut udp = raw(SockEventKind::Opened, AF_INET6, mapped.octets(), 1);
        udp.proto = IPPROTO_UDP as u8;
        let ev = KernelEvent::from_raw(&udp).unwrap();
        assert_eq!(ev.address.to_string(), "::ffff:10.1.2.3");
        assert_eq!(ev.proto, Proto::Udp);
    }

    #[test]
    fn rejects_garbage() {
        let ok = raw(SockEventKind::Opened, AF_INET, [0; 16], 1);
        assert!(KernelEvent::decode(&bytes_of(&ok)[..40]).is_none());
        let mut bad_kind = ok;
        bad_kind.kind = 9;
        assert!(KernelEvent::from_raw(&bad_kind).is_none());
        let mut bad_family = ok;
        bad_family.family = 1;
        assert!(KernelEvent::from_raw(&bad_family).is_none());
        let mut bad_proto = ok;
        bad_proto.proto = 1;
        assert!(KernelEvent::from_raw(&bad_proto).is_none());
    }

    #[test]
    fn keys_keep_protocols_apart() {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[0, 0, 0, 0]);
        let tcp = KernelEvent::from_raw(&raw(SockEventKind::Opened, AF_INET, addr, 53)).unwrap();
        let mut udp = tcp.clone();
        udp.proto = Proto::Udp;
        assert_ne!(tcp.key(), udp.key());
        assert_ne!(tcp.listener().key(), udp.listener().key());
    }
}

/// Who can reach a listener, as judged for its own network namespace.
#[derive(
    Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "exposure", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Exposure {
    /// Bound to a loopback address.
    Loopback,
    /// No non-loopback interface lets a new connection through.
    Filtered,
    /// These non-loopback interfaces let a new connection through.
    Reachable { reachable_via: Vec<String> },
    /// A rule on the way cannot be judged soundly: which, in its own words.
    Unknown { why: String },
}

impl Exposure {
    /// In a few words: `reachable via eth0`, `unknown: why` (made safe).
    pub fn describe(&self) -> String {
        match self {
            Exposure::Loopback => "loopback".into(),
            Exposure::Filtered => "filtered".into(),
            Exposure::Reachable { reachable_via } => {
                format!(
                    "reachable via {}",
                    crate::safe_text::safe_str(&reachable_via.join(","))
                )
            }
            Exposure::Unknown { why } => format!("unknown: {}", crate::safe_text::safe_str(why)),
        }
    }

    /// The verdict's name: `loopback`, `filtered`, `reachable`, `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Exposure::Loopback => "loopback",
            Exposure::Filtered => "filtered",
            Exposure::Reachable { .. } => "reachable",
            Exposure::Unknown { .. } => "unknown",
        }
    }
}

/// One way in to a listener through a DNAT rule.
#[derive(
    Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Published {
    /// The namespace whose rule it is.
    pub netns: u64,
    /// The address the rule answers on (the wildcard: any of that
    /// namespace's).
    pub address: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// Who can reach it there.
    #[serde(flatten)]
    pub exposure: Exposure,
}
