//! Listening TCP sockets through netlink sock_diag, as `ss` reads them.
//!
//! Reading /proc/net/tcp walks the whole established-connection hash table
//! of the namespace, empty buckets included, on every read; a sock_diag
//! dump asked for LISTEN only walks the listening table.

use std::{fs::File, io, net::SocketAddr, os::fd::AsRawFd as _};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

use super::procfs_scan::ListenEntry;

/// The LISTEN sockets of both families in the calling thread's network
/// namespace, tagged with `netns`.
pub fn listening_here(netns: u64) -> io::Result<Vec<ListenEntry>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut out = Vec::new();
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        dump(&socket, family, id, netns, &mut out)?;
    }
    Ok(out)
}

/// The same for the network namespace of process `pid`: a short-lived
/// thread enters that namespace, and only that thread.
pub fn listening_in(pid: u32, netns: u64) -> io::Result<Vec<ListenEntry>> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) with an open namespace fd changes the network
            // namespace of this thread alone, which ends with the scope.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            listening_here(netns)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace reader panicked")))
    })
}

fn dump(
    socket: &Socket,
    family: u8,
    socket_id: SocketId,
    netns: u64,
    out: &mut Vec<ListenEntry>,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
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
                    out.push(ListenEntry {
                        local: SocketAddr::new(h.socket_id.source_address, h.socket_id.source_port),
                        uid: h.uid,
                        inode: u64::from(h.inode),
                        netns,
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
