//! Sockets through netlink sock_diag, as `ss` reads them.
//!
//! Reading /proc/net/tcp walks the whole established-connection hash table
//! of the namespace, empty buckets included, on every read; a sock_diag
//! dump asked for LISTEN only walks the listening table.

use std::{io, net::SocketAddr, os::fd::BorrowedFd};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla as _,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags, nlas::Nla},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::socket_table::{SocketEntry, SocketQuery};
use crate::event::Proto;

/// The sockets `queries` ask for, of both families, in the calling
/// thread's network namespace, tagged with `netns`.
pub(crate) fn sockets_here(queries: &[SocketQuery], netns: u64) -> io::Result<Vec<SocketEntry>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut out = Vec::new();
    for query in queries {
        for (family, id) in [
            (AF_INET, SocketId::new_v4()),
            (AF_INET6, SocketId::new_v6()),
        ] {
            match query.proto {
                Proto::Tcp => dump(&socket, family, IPPROTO_TCP, id, *query, netns, &mut out)?,
                Proto::Udp => {
                    dump(
                        &socket,
                        family,
                        IPPROTO_UDP,
                        id.clone(),
                        *query,
                        netns,
                        &mut out,
                    )?;
                    // The bind programs report UDP-Lite ports as UDP: a
                    // table without them would say they closed. A kernel
                    // without UDP-Lite has no handler for it (ENOENT).
                    match dump(
                        &socket,
                        family,
                        IPPROTO_UDPLITE,
                        id,
                        *query,
                        netns,
                        &mut out,
                    ) {
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                        other => other?,
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The same inside the network namespace `ns` (an nsfs fd): a
/// short-lived thread enters that namespace, and only that thread.
pub(crate) fn sockets_in(
    ns: BorrowedFd<'_>,
    queries: &[SocketQuery],
    netns: u64,
) -> io::Result<Vec<SocketEntry>> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // setns(2) changes the network namespace of this thread alone,
            // which ends with the scope.
            move_into_link_name_space(ns, Some(LinkNameSpaceType::Network))?;
            sockets_here(queries, netns)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace reader panicked")))
    })
}

/// The owner (uid) of the TCP socket of this network namespace whose local
/// end is `local` and whose peer is `remote`: one exact lookup (no dump).
/// None when there is no such socket.
pub(crate) fn tcp_owner(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u32>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let (family, mut id) = match local {
        SocketAddr::V4(_) => (AF_INET, SocketId::new_v4()),
        SocketAddr::V6(_) => (AF_INET6, SocketId::new_v6()),
    };
    id.source_address = local.ip();
    id.source_port = local.port();
    id.destination_address = remote.ip();
    id.destination_port = remote.port();
    // INET_DIAG_NOCOOKIE: any socket with these addresses.
    id.cookie = [0xff; 8];
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: id,
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut rx: Vec<u8> = Vec::with_capacity(8 * 1024);
    let n = socket.recv(&mut rx, 0)?;
    let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&rx[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(match msg.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => Some(r.header.uid),
        _ => None,
    })
}

/// The kernel writes a socket's 64-bit cookie as two 32-bit words in host
/// order, the low one first (`sock_diag_save_cookie`).
fn cookie(bytes: &[u8; 8]) -> u64 {
    let word = |i: usize| {
        u64::from(u32::from_ne_bytes([
            bytes[i],
            bytes[i + 1],
            bytes[i + 2],
            bytes[i + 3],
        ]))
    };
    word(0) | word(4) << 32
}

/// `INET_DIAG_CGROUP_ID` (Linux 5.9 and later; the crate has no name for
/// it): the socket's cgroup v2 id, in every dump row.
const INET_DIAG_CGROUP_ID: u16 = 21;

/// The socket's cgroup id from a row's attributes; 0 when absent.
fn cgroup_id(nlas: &[Nla]) -> u64 {
    nlas.iter()
        .find_map(|nla| match nla {
            Nla::Other(other) if other.kind() == INET_DIAG_CGROUP_ID => {
                let mut value = [0u8; 8];
                (other.value_len() == value.len()).then(|| {
                    other.emit_value(&mut value);
                    u64::from_ne_bytes(value)
                })
            }
            _ => None,
        })
        .unwrap_or(0)
}

/// `IPPROTO_UDPLITE`.
const IPPROTO_UDPLITE: u8 = 136;

fn dump(
    socket: &Socket,
    family: u8,
    protocol: u8,
    socket_id: SocketId,
    query: SocketQuery,
    netns: u64,
    out: &mut Vec<SocketEntry>,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_retain(query.states.0),
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;

    // The kernel batches a dump into datagrams of a page or a few.
    let mut rx: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        rx.clear();
        let n = socket.recv(&mut rx, 0)?;
        let mut at = 0;
        while at < n {
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&rx[at..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let h = &r.header;
                    let id = &h.socket_id;
                    out.push(SocketEntry {
                        proto: query.proto,
                        state: h.state,
                        local: SocketAddr::new(id.source_address, id.source_port),
                        remote: SocketAddr::new(id.destination_address, id.destination_port),
                        uid: h.uid,
                        inode: u64::from(h.inode),
                        cookie: Some(cookie(&id.cookie)),
                        netns,
                        cgroup: cgroup_id(&r.nlas),
                    });
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(e.code.map_or_else(
                        || io::Error::other("sock_diag error"),
                        |c| io::Error::from_raw_os_error(-c.get()),
                    ));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}
